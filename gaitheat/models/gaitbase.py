"""GaitBase (Fan et al., CVPR 2023 "OpenGait"; OpenGait ``configs/gaitbase``): ResNet9 on silhouettes.

Per frame, a 64 x 44 silhouette goes through a ResNet9 (3x3 stem, one BasicBlock per stage, widths
64-128-256-512, strides 1-2-2-1, no max-pool: the same trunk as GaitHeat's, one input channel), then
set pooling (max over frames), horizontal pooling into 16 strips (mean + max), a per-strip linear map
512 -> 256 (SeparateFCs) and a BNNeck with a cosine classifier. Loss: batch-all triplet (margin 0.2)
on the pre-BNNeck embeddings + cross-entropy (scale 16, label smoothing 0.1, OpenGait's default).
Retrieval, as released (``Baseline``: ``embed = embed_1``): the **pre-BNNeck** embeddings, Euclidean
distance.

Parameter count at the released CASIA-B config (``configs/gaitbase/gaitbase_da_casiab.yaml``: 74
classes): **7,305,408** (trunk 4,896,960 + SeparateFCs 2,097,152 + BNNeck 8,192 + classifier 303,104); at
CCPG (``gaitbase_ccpg.yaml``, 100 classes): 7,411,904 (only the classifier grows, 16 x 256 per class).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from gaitheat import transforms
from gaitheat.models import ModelOutput
from gaitheat.models.layers import BNNeck, SeparateFCs, horizontal_pool, set_max
from gaitheat.models.resnet9 import make_stages
from gaitheat.models.spec import FramePolicy, LossTerm, ModelConfig, ModelSpec
from gaitheat.models.winograd import inference_copy


def opengait_init(module: nn.Module) -> None:
    """OpenGait's ``BaseModel.init_parameters``: Xavier-uniform convs/linears, BN weights ~ N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


@dataclass(frozen=True)
class GaitBaseConfig(ModelConfig):
    """GaitBase at its released CASIA-B recipe (``gaitbase_da_casiab.yaml``: rotate and erase, p = 0.3)."""

    name: str = "gaitbase"
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    strides: tuple[int, int, int, int] = (1, 2, 2, 1)
    parts: int = 16
    embed_dim: int = 256
    margin: float = 0.2
    scale: float = 16.0
    smoothing: float = 0.1
    rotate_prob: float = 0.3
    erase_prob: float = 0.3

    @classmethod
    def tiny(cls) -> GaitBaseConfig:
        """A few-thousand-parameter variant for CPU tests."""
        return cls(widths=(4, 8, 16, 32), embed_dim=8)

    def spec(self) -> ModelSpec:
        augment = functools.partial(
            transforms.augment_maps, key="silhouettes", rotate=self.rotate_prob, erase=self.erase_prob
        )
        return ModelSpec(
            inputs={"silhouettes": "silhouettes"},
            frames=FramePolicy("random", "all"),
            losses=(
                LossTerm("embeddings", "triplet", margin=self.margin),
                LossTerm("logits", "ce", scale=self.scale, smoothing=self.smoothing),
            ),
            distance="euc",
            augment=augment,
            streaming="set_max",
        )


class GaitBase(nn.Module):
    """GaitBase: silhouettes (B, T, 64, 44) in [0, 1] -> pre-BNNeck embedding (B, D, P)."""

    Config: ClassVar[type[ModelConfig]] = GaitBaseConfig

    def __init__(
        self,
        num_classes: int,
        widths: Sequence[int] = (64, 128, 256, 512),
        strides: Sequence[int] = (1, 2, 2, 1),
        parts: int = 16,
        embed_dim: int = 256,
        config: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config if config is not None else GaitBaseConfig()
        self.parts = parts
        self.stages = nn.Sequential(*make_stages(widths, strides, in_channels=1))
        self.fc = SeparateFCs(parts, widths[-1], embed_dim)
        self.neck = BNNeck(parts, embed_dim, num_classes)
        opengait_init(self)

    @classmethod
    def from_config(cls, cfg: ModelConfig, num_classes: int) -> GaitBase:
        if not isinstance(cfg, GaitBaseConfig):
            raise TypeError(f"GaitBase needs a GaitBaseConfig, got {type(cfg).__name__}")
        return cls(num_classes, cfg.widths, cfg.strides, cfg.parts, cfg.embed_dim, config=cfg)

    def _embed(self, silhouettes: Tensor, lengths: Tensor | None) -> Tensor:
        """(B, T, H, W) -> (B, D, P) pre-BNNeck; padded frames are dropped before the CNN."""
        b, t = silhouettes.shape[:2]
        if lengths is None:
            frames = silhouettes.flatten(0, 1)
        else:
            if lengths.shape != (b,) or bool(((lengths < 1) | (lengths > t)).any()):
                raise ValueError(f"lengths must be ({b},) with values in 1..{t}, got {lengths.tolist()}")
            frames = silhouettes[torch.arange(t, device=lengths.device) < lengths[:, None]]
        maps = self.stages(frames.unsqueeze(1))
        return self.fc(horizontal_pool(set_max(maps, lengths, b), self.parts))

    def forward(self, *, silhouettes: Tensor, lengths: Tensor | None = None) -> ModelOutput:
        """-> features {"embeddings": (B, D, P), "logits": (B, K, P)}; ``embedding`` = the pre-BNNeck one."""
        emb = self._embed(silhouettes, lengths)
        _, logits = self.neck(emb)
        return ModelOutput(features={"embeddings": emb, "logits": logits}, embedding=emb)

    def embed(self, *, silhouettes: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, 64, 44) -> (B, D, P), the pre-BNNeck embedding (as released)."""
        return self._embed(silhouettes, lengths)

    def for_inference(self) -> nn.Module:
        """An eval-mode copy whose 3x3 convs at 128+ channels run by Winograd on CPU (exact up to rounding)."""
        return inference_copy(self)
