"""The filter on every kind of source users filter, in the real OBS.

libobs renders them along different paths: asynchronous sources (media, webcams) hand over
frames, synchronous ones (image, color, text) draw with the current effect, scenes draw
themselves (custom draw). One at a time, each source is added to the program scene with the
filter on it; its output must be the library's stylization of what the source shows, with
the source's transparency kept. (The media source is the shared session's camera.)
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from obs_harness import ObsSession

from partialstyle.obs import settings
from partialstyle.pipeline import Pipeline

pytestmark = pytest.mark.obs

FILTER_KIND = "partialstyle_filter"
SCENE = "Scene"
EXACT = {
    "person_style": "multistyle:8",
    "background_style": "multistyle:19",
    "temporal_smoothing": 0.0,
    "morph_seconds": 0.0,
    "stabilize": 0.0,
}


def screenshot_rgba(session: ObsSession, source: str) -> np.ndarray:
    """The source through its filters at its own size (PNG: alpha kept)."""
    request = {"sourceName": source, "imageFormat": "png"}
    reply = session.client.send("GetSourceScreenshot", request, raw=True)
    data = base64.b64decode(reply["imageData"].split(",", 1)[1])
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGRA)
    elif image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)


def photo_png(root: Path, astronaut: np.ndarray, transparent: bool) -> Path:
    """The astronaut at 320×320; with a transparent corner region when asked."""
    image = cv2.resize(astronaut, (320, 320), interpolation=cv2.INTER_AREA)
    alpha = np.full((320, 320), 255, np.uint8)
    if transparent:
        alpha[:, :80] = 0  # a fully transparent strip
        alpha[:80, 80:] = 128  # and a half-transparent one
    path = root / f"photo-{'alpha' if transparent else 'plain'}.png"
    cv2.imwrite(str(path), cv2.cvtColor(np.dstack([image, alpha]), cv2.COLOR_RGBA2BGRA))
    return path


def filtered_and_plain(session: ObsSession, name: str):
    """The source's output through the filter (once it is styled) and without it."""
    client = session.client
    filter_name = f"PS {name}"
    client.create_source_filter(name, filter_name, FILTER_KIND, EXACT)
    try:

        def results() -> int:
            return session.filter_stats().get(filter_name, {}).get("results", 0)

        session.wait_for(lambda: results() >= 3, 120, what=f"styled frames from {name}")
        time.sleep(0.5)
        filtered = screenshot_rgba(session, name)
        client.set_source_filter_enabled(name, filter_name, False)
        time.sleep(0.3)
        plain = screenshot_rgba(session, name)
    finally:
        client.remove_source_filter(name, filter_name)
    return filtered, plain


def check_styled(filtered: np.ndarray, plain: np.ndarray, what: str) -> None:
    shown = plain[..., 3] > 0
    assert shown.mean() > 0.05, f"{what}: the source shows nothing"
    expected = Pipeline(*settings.to_pipeline(EXACT)).process(np.ascontiguousarray(plain))
    difference = np.abs(filtered[..., :3].astype(int) - expected[..., :3]).mean(-1)[shown]
    unstyled = np.abs(filtered[..., :3].astype(int) - plain[..., :3]).mean(-1)[shown]
    assert difference.mean() < 12.0, f"{what}: not the library's stylization"
    assert unstyled.mean() > 3 * difference.mean(), f"{what}: looks unstyled"
    assert np.abs(filtered[..., 3].astype(int) - plain[..., 3]).max() <= 1, f"{what}: alpha"


@pytest.fixture()
def added(obs_session: ObsSession):
    """Inputs added to the program scene by a test, removed afterwards."""
    names: list[str] = []
    yield names
    scenes = {scene["sceneName"] for scene in obs_session.client.get_scene_list().scenes}
    for name in reversed(names):
        if name in scenes:
            obs_session.client.remove_scene(name)
        else:
            obs_session.client.remove_input(name)


@pytest.mark.parametrize("transparent", [False, True], ids=["image", "image-with-alpha"])
def test_image_sources(obs_session, astronaut, added, transparent):
    path = photo_png(obs_session.root, astronaut, transparent)
    name = f"Photo {'alpha' if transparent else 'plain'}"
    obs_session.client.create_input(SCENE, name, "image_source", {"file": str(path)}, True)
    added.append(name)
    filtered, plain = filtered_and_plain(obs_session, name)
    if transparent:
        assert (plain[:, :80, 3] == 0).all() and (filtered[:, :80, 3] == 0).all()
    check_styled(filtered, plain, name)


def test_color_source(obs_session, added):
    settings_ = {"color": 0xFF3366CC, "width": 320, "height": 180}
    obs_session.client.create_input(SCENE, "Color", "color_source_v3", settings_, True)
    added.append("Color")
    filtered, plain = filtered_and_plain(obs_session, "Color")
    check_styled(filtered, plain, "color source")


def test_text_source(obs_session, added):
    text = {"text": "Partial Style", "font": {"face": "Sans", "size": 96, "flags": 1}}
    obs_session.client.create_input(SCENE, "Text", "text_ft2_source_v2", text, True)
    added.append("Text")
    filtered, plain = filtered_and_plain(obs_session, "Text")
    check_styled(filtered, plain, "text source")


def test_nested_scene(obs_session, astronaut, added):
    client = obs_session.client
    client.create_scene("Nested")
    path = photo_png(obs_session.root, astronaut, transparent=False)
    client.create_input("Nested", "Nested photo", "image_source", {"file": str(path)}, True)
    client.create_scene_item(SCENE, "Nested", True)
    added.extend(["Nested", "Nested photo"])
    filtered, plain = filtered_and_plain(obs_session, "Nested")
    check_styled(filtered, plain, "nested scene")


def test_after_another_filter(obs_session, astronaut, added):
    """Second in a chain: the filter's target is the filter before it, rendered as is. The
    output is the stylization of the first filter's output."""
    client = obs_session.client
    path = photo_png(obs_session.root, astronaut, transparent=False)
    client.create_input(SCENE, "Chained", "image_source", {"file": str(path)}, True)
    added.append("Chained")
    # OBS's own colour correction first: a picture that differs from the source's.
    client.create_source_filter("Chained", "Warm", "color_filter_v2", {"gamma": 0.4})
    filtered, plain = filtered_and_plain(obs_session, "Chained")
    original = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert np.abs(plain[..., :3].astype(int) - original).mean() > 5  # the first filter acts
    check_styled(filtered, plain, "after another filter")
