"""The YOLACT network and the segmenter that runs it on an RGB image like the official eval."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from partialstyle.errors import PartialStyleError

from .backbone import build_backbone
from .config import ASPECT_RATIOS, FPN_CHANNELS, RGB_MEAN, RGB_STD, YolactConfig
from .detect import Detections, postprocess
from .fpn import FPN
from .head import MaskIoUNet, PredictionHead, ProtoNet
from .priors import make_priors


@dataclass
class YolactOutput:
    """Raw network output for a batch; N is the number of priors."""

    loc: Tensor  # [B, N, 4] box offsets
    class_probabilities: Tensor  # [B, N, 81] softmax, channel 0 = background
    coefficients: Tensor  # [B, N, 32] mask coefficients (tanh)
    prototypes: Tensor  # [B, h, w, 32]
    priors: Tensor  # [N, 4] (cx, cy, w, h) relative


class Yolact(nn.Module):
    """YOLACT / YOLACT++ for inference, with module names matching the official checkpoints."""

    def __init__(self, config: YolactConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config)
        in_channels = tuple(config.stage_channels[i] for i in config.selected_stages)
        # Registration order follows the official model so state_dict() lists keys in file order.
        self.proto_net = ProtoNet()
        if config.use_maskiou:
            self.maskiou_net = MaskIoUNet()
        self.fpn = FPN(in_channels)
        # One head shared by all five levels; the official model stores only index 0.
        self.prediction_layers = nn.ModuleList([PredictionHead(config.anchors_per_location)])
        # Training-only auxiliary head. It is in every official checkpoint, so it is built to
        # load them strictly, but inference never runs it.
        self.semantic_seg_conv = nn.Conv2d(FPN_CHANNELS, 80, 1)
        self._priors_cache: dict[tuple, Tensor] = {}

    def priors_for(self, feature_sizes: list[tuple[int, int]], device: torch.device) -> Tensor:
        key = (tuple(feature_sizes), str(device))
        if key not in self._priors_cache:
            self._priors_cache[key] = make_priors(
                feature_sizes,
                self.config.scales,
                ASPECT_RATIOS,
                self.config.max_size,
                self.config.square_anchors,
                device,
            )
        return self._priors_cache[key]

    def forward(self, images: Tensor) -> YolactOutput:
        """images: [B, 3, S, S], already normalised (see YolactSegmenter.preprocess)."""
        stages = self.backbone(images)
        levels = self.fpn([stages[i] for i in self.config.selected_stages])
        prototypes = self.proto_net(levels[0])
        head = self.prediction_layers[0]
        loc, logits, coefficients = zip(*(head(level) for level in levels), strict=True)
        priors = self.priors_for([tuple(level.shape[-2:]) for level in levels], images.device)
        return YolactOutput(
            loc=torch.cat(loc, dim=1),
            class_probabilities=F.softmax(torch.cat(logits, dim=1), dim=-1),
            coefficients=torch.cat(coefficients, dim=1),
            prototypes=prototypes,
            priors=priors,
        )


class YolactSegmenter:
    """Instance segmentation of RGB frames with an official YOLACT / YOLACT++ checkpoint."""

    def __init__(self, model: Yolact, device: torch.device) -> None:
        self.model = model.eval().to(device)
        self.config = model.config
        self.device = device
        self._mean = torch.tensor(RGB_MEAN, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(RGB_STD, device=device).view(1, 3, 1, 1)

    def preprocess(self, image: Tensor) -> Tensor:
        """uint8 RGB [H, W, 3] -> the normalised [1, 3, S, S] network input.

        Like the official FastBaseTransform: stretch (no aspect ratio kept, no padding) to
        max_size x max_size with bilinear resampling, then ImageNet mean/std for ResNets or
        a plain /255 for DarkNet.
        """
        if image.dim() != 3 or image.shape[-1] != 3 or image.dtype != torch.uint8:
            raise PartialStyleError(
                f"YOLACT expects a uint8 RGB image of shape [H, W, 3], got {image.dtype} "
                f"{list(image.shape)}"
            )
        x = image.to(self.device).permute(2, 0, 1)[None].float()
        size = self.config.max_size
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        if self.config.backbone == "darknet":
            return x / 255.0
        return (x - self._mean) / self._std

    @torch.inference_mode()
    def detect(self, image: Tensor, score_threshold: float = 0.3, top_k: int = 15) -> Detections:
        """Detect and segment instances in one uint8 RGB image [H, W, 3]."""
        height, width = int(image.shape[0]), int(image.shape[1])
        output = self.model(self.preprocess(image))
        return postprocess(
            output.loc[0],
            output.class_probabilities[0],
            output.coefficients[0],
            output.prototypes[0],
            output.priors,
            (height, width),
            score_threshold,
            top_k,
            maskiou_net=self.model.maskiou_net if self.config.use_maskiou else None,
        )
