"""Download the official YOLACT / YOLACT++ weights (re-uploaded to Hugging Face by the author)."""

from __future__ import annotations

from pathlib import Path

from partialstyle.errors import PartialStyleError
from partialstyle.weights.http_download import download

_HUB = "https://huggingface.co/dbolya"

# config name -> (Hugging Face repository, file name). Sizes and hashes are not published.
OFFICIAL_WEIGHTS: dict[str, tuple[str, str]] = {
    "yolact_base": ("yolact-base", "yolact_base_54_800000.pth"),
    "yolact_im700": ("yolact-im700", "yolact_im700_54_800000.pth"),
    "yolact_resnet50": ("yolact-resnet50", "yolact_resnet50_54_800000.pth"),
    "yolact_darknet53": ("yolact-darknet53", "yolact_darknet53_54_800000.pth"),
    "yolact_plus_base": ("yolact-plus-base", "yolact_plus_base_54_800000.pth"),
    "yolact_plus_resnet50": ("yolact-plus-resnet50", "yolact_plus_resnet50_54_800000.pth"),
}

# torch.save writes a zip archive since torch 1.6 and a raw pickle (protocol 2) before it;
# the 2019 official files may be either.
_TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80\x02")


def weights_url(name: str) -> str:
    repository, file_name = OFFICIAL_WEIGHTS[_known(name)]
    return f"{_HUB}/{repository}/resolve/main/{file_name}?download=true"


def fetch_yolact(name: str, dest_dir: Path) -> Path:
    """Download the official weights of config `name` into dest_dir (resuming); returns the file.

    The file keeps its official name, from which the loader recognises the config.
    """
    _, file_name = OFFICIAL_WEIGHTS[_known(name)]
    path = download(weights_url(name), Path(dest_dir) / file_name)
    with open(path, "rb") as f:
        start = f.read(4)
    if not start.startswith(_TORCH_FILE_STARTS):
        path.unlink()
        raise PartialStyleError(
            f"{weights_url(name)} did not return a PyTorch checkpoint (file starts with "
            f"{start!r}); deleted it"
        )
    return path


def _known(name: str) -> str:
    name = name.removesuffix("_config")
    if name not in OFFICIAL_WEIGHTS:
        raise PartialStyleError(
            f"unknown YOLACT model {name!r}; choose one of {', '.join(OFFICIAL_WEIGHTS)}"
        )
    return name
