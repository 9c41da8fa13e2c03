"""A real (tiny) optimisation: random-init VGG16 features stand in for the ImageNet weights, which
need a download; the training loop, losses and checkpoint format are the real ones."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.models import vgg16

from partialstyle.errors import PartialStyleError
from partialstyle.style.johnson import TransformerNet
from partialstyle.style.train_style import (
    ImageFolderFlat,
    PerceptualLoss,
    VGGFeatures,
    read_rgb,
    train_style,
)
from partialstyle.weights.load import load_weights

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """Four 64x64 photos in a nested folder, and a style picture (a stained micrograph)."""
    root = tmp_path_factory.mktemp("train")
    photos = root / "photos" / "nested"
    photos.mkdir(parents=True)
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        picture = Image.fromarray(getattr(skimage_data, name)()).resize((80, 64))
        picture.save(photos / f"{name}.png")
    style = root / "style.jpg"
    Image.fromarray(skimage_data.immunohistochemistry()).resize((96, 96)).save(style)
    return root / "photos", style


@pytest.fixture(scope="module")
def random_vgg() -> torch.nn.Module:
    torch.manual_seed(0)
    return vgg16(weights=None).features


def _loss(checkpoint, vgg, photos, style) -> float:
    """The training objective of a checkpoint on all four photos, with the training's weights."""
    style_pixels = TF.pil_to_tensor(TF.resize(read_rgb(style), 64)).float()[None]
    loss = PerceptualLoss(VGGFeatures(vgg), style_pixels, content_weight=1e5, style_weight=1e10)
    batch = torch.stack(list(ImageFolderFlat(photos, 64)))
    with torch.no_grad():
        content, style_part = loss(load_weights("johnson", checkpoint).raw(batch), batch)
    return float(content + style_part)


@pytest.mark.slow
def test_training_lowers_the_loss_and_saves_loadable_checkpoints(pictures, random_vgg, tmp_path):
    photos, style = pictures
    torch.manual_seed(1)
    start = tmp_path / "start.pth"
    torch.save(TransformerNet().state_dict(), start)

    out = train_style(
        style,
        photos,
        tmp_path / "mine.pth",
        epochs=3,
        image_size=64,
        batch_size=2,
        vgg=random_vgg,
        progress=False,
        start_from=start,
        device="cpu",
    )
    assert out == tmp_path / "mine.pth"
    for epoch in (1, 2, 3):
        assert (tmp_path / f"mine.epoch{epoch}.pth").is_file()
        preview = Image.open(tmp_path / f"mine.epoch{epoch}.png")
        assert preview.size == (64, 64)
    # 6 Adam steps took the loss from 149k to 119k when this test was written
    before = _loss(start, random_vgg, photos, style)
    after = _loss(out, random_vgg, photos, style)
    assert after < 0.9 * before, (before, after)


def test_empty_dataset_and_missing_style_are_clear(pictures, random_vgg, tmp_path):
    _, style = pictures
    (tmp_path / "empty").mkdir()
    with pytest.raises(PartialStyleError, match="no training pictures"):
        train_style(style, tmp_path / "empty", tmp_path / "x.pth", vgg=random_vgg, device="cpu")
    photos, _ = pictures
    with pytest.raises(PartialStyleError, match="does not exist"):
        train_style(tmp_path / "nope.jpg", photos, tmp_path / "x.pth", vgg=random_vgg, device="cpu")
