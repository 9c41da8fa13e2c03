"""Train a Johnson-style network for one style picture with perceptual losses (Johnson et al. 2016).

The loss compares VGG16 features: content at relu2_2 (keep the photo's layout) and Gram matrices at
relu1_2, relu2_2, relu3_3 and relu4_3 (match the picture's textures). The result is saved as a plain
state dict of ``TransformerNet``, the same format as pytorch/examples' published checkpoints.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image, UnidentifiedImageError
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from partialstyle.device import resolve_device
from partialstyle.errors import PartialStyleError
from partialstyle.style.johnson import TransformerNet
from partialstyle.weights.load import load_weights

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Ends (exclusive) of the VGG16 feature slices: relu1_2, relu2_2, relu3_3, relu4_3.
VGG16_RELU_ENDS = (4, 9, 16, 23)
CONTENT_LAYER = 1  # relu2_2


class ImageFolderFlat(Dataset):
    """Every picture under a folder (any depth), resized and centre-cropped to a square, 0..255."""

    def __init__(self, root: Path, size: int):
        self.paths = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        picture = read_rgb(self.paths[index])
        picture = TF.center_crop(TF.resize(picture, self.size), [self.size, self.size])
        return TF.pil_to_tensor(picture).float()


class VGGFeatures(nn.Module):
    """Frozen VGG16 ``features`` cut into the four slices the losses read; 0..255 RGB in."""

    def __init__(self, features: nn.Module):
        super().__init__()
        layers = list(features.children())
        starts = (0,) + VGG16_RELU_ENDS[:-1]
        self.slices = nn.ModuleList(
            nn.Sequential(*layers[a:b]) for a, b in zip(starts, VGG16_RELU_ENDS, strict=True)
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255)
        self.requires_grad_(False)
        self.eval()

    def forward(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        x = (pixels - self.mean) / self.std
        outputs = []
        for block in self.slices:
            x = block(x)
            outputs.append(x)
        return outputs


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Channel correlations, normalised by the feature map size so any resolution compares."""
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)
    return flat @ flat.transpose(1, 2) / (channels * height * width)


class PerceptualLoss(nn.Module):
    """Weighted content + style loss of stylised images against their photos and one style."""

    def __init__(
        self, vgg: VGGFeatures, style: torch.Tensor, content_weight: float, style_weight: float
    ):
        super().__init__()
        self.vgg = vgg
        self.content_weight = content_weight
        self.style_weight = style_weight
        with torch.no_grad():
            self.style_grams = [gram_matrix(f) for f in vgg(style)]

    def forward(
        self, stylised: torch.Tensor, photos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(content loss, style loss), both already weighted; inputs are 0..255 batches."""
        ours = self.vgg(stylised)
        with torch.no_grad():
            target = self.vgg(photos)[CONTENT_LAYER]
        content = self.content_weight * F.mse_loss(ours[CONTENT_LAYER], target)
        style = sum(
            F.mse_loss(gram_matrix(f), g.expand(f.shape[0], -1, -1))
            for f, g in zip(ours, self.style_grams, strict=True)
        )
        return content, self.style_weight * style


def pretrained_vgg16_features() -> nn.Module:
    """torchvision's ImageNet VGG16 features; downloaded once into torch's cache."""
    from torchvision.models import VGG16_Weights, vgg16

    try:
        return vgg16(weights=VGG16_Weights.IMAGENET1K_V1).features
    except (urllib.error.URLError, OSError) as exc:
        raise PartialStyleError(
            f"cannot download torchvision's VGG16 weights for training ({exc}); connect to the "
            "internet once, or pass your own VGG16 features module"
        ) from None


def train_style(
    style_image: Path,
    dataset_dir: Path,
    out: Path,
    epochs: int = 2,
    image_size: int = 256,
    batch_size: int = 4,
    lr: float = 1e-3,
    content_weight: float = 1e5,
    style_weight: float = 1e10,
    vgg: nn.Module | None = None,
    progress: bool = True,
    *,
    start_from: Path | None = None,
    device: torch.device | str | None = None,
) -> Path:
    """Train a ``TransformerNet`` for ``style_image`` on the photos in ``dataset_dir``.

    Writes ``out`` (a state dict for ``load_weights("johnson")``) and, after every epoch, a
    checkpoint ``<out stem>.epoch<k>.pth`` plus a preview ``<out stem>.epoch<k>.png`` of the first
    photo. The style picture is scaled so its shorter side is ``image_size``, which keeps its brush
    strokes at the scale of the training crops. ``start_from`` fine-tunes an existing checkpoint.
    """
    if epochs < 1 or image_size < 16 or batch_size < 1:
        raise ValueError("epochs and batch_size must be at least 1 and image_size at least 16")
    device = resolve_device("auto") if device is None else torch.device(device)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    dataset = ImageFolderFlat(Path(dataset_dir), image_size)
    if len(dataset) == 0:
        raise PartialStyleError(
            f"no training pictures ({', '.join(sorted(IMAGE_SUFFIXES))}) under {dataset_dir}"
        )
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) > batch_size
    )

    style = TF.pil_to_tensor(TF.resize(read_rgb(Path(style_image)), image_size)).float()[None]
    features = VGGFeatures(vgg if vgg is not None else pretrained_vgg16_features()).to(device)
    loss_fn = PerceptualLoss(features, style.to(device), content_weight, style_weight)

    net = load_weights("johnson", start_from, device) if start_from else TransformerNet().to(device)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    preview_photo = dataset[0][None].to(device)

    for epoch in range(1, epochs + 1):
        _train_epoch(net, loader, loss_fn, optimizer, f"epoch {epoch}/{epochs}", progress)
        torch.save(net.state_dict(), out.with_name(f"{out.stem}.epoch{epoch}.pth"))
        save_preview(net, preview_photo, out.with_name(f"{out.stem}.epoch{epoch}.png"))
    torch.save(net.state_dict(), out)
    return out


def _train_epoch(net, loader, loss_fn, optimizer, label: str, progress: bool) -> None:
    """One pass over the photos, one optimiser step per batch; the bar shows the losses."""
    device = next(net.parameters()).device
    bar = tqdm(loader, desc=label, unit="batch", disable=not progress, leave=False)
    for photos in bar:
        photos = photos.to(device)
        optimizer.zero_grad(set_to_none=True)
        content, style = loss_fn(net.raw(photos), photos)
        (content + style).backward()
        optimizer.step()
        bar.set_postfix(content=f"{content.item():.3g}", style=f"{style.item():.3g}")


@torch.no_grad()
def save_preview(net: TransformerNet, photo: torch.Tensor, path: Path) -> None:
    """Write the network's rendering of one 0..255 photo as a PNG, to watch training progress."""
    was_training = net.training
    net.eval()
    styled = net(photo / 255.0)[0]
    net.train(was_training)
    TF.to_pil_image(styled.cpu()).save(path)


def read_rgb(path: Path) -> Image.Image:
    """Open a picture as RGB, with one clear error line when it is missing or not an image."""
    try:
        with Image.open(path) as picture:
            return picture.convert("RGB")
    except FileNotFoundError:
        raise PartialStyleError(f"picture {path} does not exist") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise PartialStyleError(f"cannot read picture {path} ({exc})") from None
