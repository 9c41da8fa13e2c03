"""The `partialstyle` command end to end, in-process, on real models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from partialstyle import models_cache, modelstore
from partialstyle.cli import main


@pytest.fixture()
def photo(tmp_path: Path, astronaut: np.ndarray) -> Path:
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(astronaut[::2, ::2], cv2.COLOR_RGB2BGR))
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.usefixtures("default_models")
def test_image_person_and_background_styles(photo, tmp_path, capsys):
    out = tmp_path / "out.png"
    code = main(
        [
            "image",
            str(photo),
            str(out),
            "--person-style",
            "multistyle:starry-swirls",
            "--background-style",
            "multistyle:7",
            "--strength",
            "0.9",
        ]
    )
    assert code == 0, capsys.readouterr().err
    result, original = cv2.imread(str(out)), cv2.imread(str(photo))
    assert result.shape == original.shape
    assert np.abs(result.astype(int) - original).mean() > 20


@pytest.mark.usefixtures("default_models")
def test_mask_png_matches_input_size(photo, tmp_path):
    out = tmp_path / "mask.png"
    assert main(["mask", str(photo), str(out)]) == 0
    mask = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint8 and mask.shape == (256, 256)
    assert (mask > 250).mean() > 0.2 and (mask < 5).mean() > 0.2


@pytest.mark.usefixtures("default_models")
def test_video_keeps_size_frame_rate_and_count(tmp_path, astronaut):
    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 24.0, (160, 96))
    for shift in range(6):
        frame = cv2.resize(np.roll(astronaut, 8 * shift, axis=1), (160, 96))
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    assert main(["video", str(clip), str(out), "--style", "multistyle:3", "--quiet"]) == 0
    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(24.0)
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (
        160,
        96,
    )
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.usefixtures("default_models")
def test_styles_sheet_and_list(tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    assert main(["styles", "--sheet", str(sheet)]) == 0
    image = cv2.imread(str(sheet))
    assert image.shape[0] > 4 * 192 and image.shape[1] > 7 * 192
    assert main(["styles"]) == 0
    listing = capsys.readouterr().out
    assert "multistyle:19" in listing and "multistyle:starry-swirls" in listing


@pytest.mark.parametrize(
    "args, words",
    [
        (["image", "missing.png", "out.png", "--style", "multistyle:1"], "does not exist"),
        (["image", "{photo}", "out.xyz", "--style", "multistyle:1"], "cannot write out.xyz"),
        (["image", "{photo}", "{tmp}/out.png", "--style", "multistyle:99"], "out of range"),
        (["image", "{photo}", "{tmp}/out.png"], "no style chosen"),
        (
            ["image", "{photo}", "{tmp}/out.png", "--style", "x", "--person-style", "y"],
            "--style alone",
        ),
        (
            ["image", "{photo}", "{tmp}/out.png", "--style", "multistyle:1", "--strength", "2"],
            "outside 0..1",
        ),
        (
            ["image", "{photo}", "{tmp}/out.png", "--style", "multistyle:1", "--device", "tpu"],
            "unknown device",
        ),
        (["mask", "{photo}", "{tmp}/mask.jpg"], "as PNG"),
        (["video", "{tmp}/none.mp4", "{tmp}/o.mp4", "--style", "multistyle:1"], "does not exist"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, words, photo, tmp_path, capsys):
    assert main([arg.format(photo=photo, tmp=tmp_path) for arg in args]) == 2
    assert words in _error_line(capsys)


def test_unreadable_image_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["image", str(bad), str(tmp_path / "o.png"), "--style", "multistyle:1"]) == 2
    assert "cannot read" in _error_line(capsys)


def test_missing_model_names_file_and_fix(photo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PARTIALSTYLE_MODELS", str(tmp_path / "empty"))
    monkeypatch.setattr(modelstore, "_checked", set())
    monkeypatch.setattr(models_cache, "_loaded", {})  # as in a fresh process
    code = main(["image", str(photo), str(tmp_path / "o.png"), "--style", "multistyle:1"])
    assert code == 2
    line = _error_line(capsys)
    assert "multistyle26.safetensors is missing" in line and "partialstyle models prepare" in line


@pytest.mark.usefixtures("default_models")
def test_corrupt_model_is_detected(tmp_path, monkeypatch, capsys):
    copy = tmp_path / "models"
    copy.mkdir()
    for name in ("multistyle26", "selfie", "selfie-landscape"):
        shutil.copy(modelstore.models_dir() / modelstore.entry(name).file, copy)
    monkeypatch.setenv("PARTIALSTYLE_MODELS", str(copy))
    monkeypatch.setattr(modelstore, "_checked", set())
    data = bytearray((copy / "selfie.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "selfie.safetensors").write_bytes(bytes(data))
    assert modelstore.verify()["selfie"] == "corrupt"
    assert main(["models", "verify"]) == 2
    assert "partialstyle models prepare" in capsys.readouterr().err


@pytest.mark.usefixtures("default_models")
def test_models_prepare_is_quick_when_ready(capsys):
    assert main(["models", "prepare"]) == 0
    assert capsys.readouterr().out.count(": ready") == len(modelstore.manifest())


def test_manifest_records_sources_and_checksums():
    data = json.loads(modelstore.manifest_path().read_text())["models"]
    for model in data.values():
        assert all(len(source["sha256"]) == 64 for source in model["sources"])
        assert len(model["converted_sha256"]) == 64
        assert model["package"] and model["version"] and model["license"]


def test_train_style_checks_its_inputs(tmp_path, photo, capsys):
    assert main(["train-style", str(tmp_path / "none.jpg"), "--dataset", str(tmp_path)]) == 2
    assert "does not exist" in _error_line(capsys)
    assert main(["train-style", str(photo), "--dataset", str(tmp_path / "nowhere")]) == 2
    assert "dataset folder" in _error_line(capsys)


def test_fetch_needs_a_known_name(capsys):
    assert main(["models", "fetch", "nonsense"]) == 2
    assert "nothing called 'nonsense'" in _error_line(capsys)


@pytest.mark.usefixtures("default_models")
def test_sheet_includes_pictures_as_styles(photo, tmp_path):
    sheet = tmp_path / "sheet.png"
    assert (
        main(["styles", "--sheet", str(sheet), "--photo", str(photo), "--picture", str(photo)]) == 0
    )
    assert cv2.imread(str(sheet)).shape[0] > 0
