"""GaitGraph2 (Teepe et al., CVPRW 2022; FastPoseGait ``gaitgraph2``): a three-branch ResGCN.

The three input branches see joints, velocities and bones, each 5 channels per joint and frame,
computed inside :meth:`GaitGraph2.forward` from the raw keypoints (x, y, score):

* joints: x, y, score, x - x_nose, y - y_nose;
* velocities: x[t+1] - x[t], y[t+1] - y[t], score, x[t+2] - x[t], y[t+2] - y[t] (0 in the last two frames);
* bones: joint - parent (x, y), score, and the bone's angles to the x and y axes.

The released transform (``GaitGraph_MultiInput``) writes the score over channel 3 of the velocity
and bone branches after filling it, so it feeds [v1x, v1y, 0, score, v2y] and [bx, by, 0, score,
angle_y]: it loses the two-frame x velocity and the x angle. We keep all five quantities (the
parameter count is the same); a released checkpoint would need that channel order.

Joints a pose model missed (x == 0) move to their frame's mean and get score 0 (``NormalizeEmpty``).
The 128-d embedding is not normalised in the model; the SupCon loss is taken on L2 distances of
unit vectors (``SupConLoss_Lp``). At test (TTA) the embeddings of the clip, the time-reversed clip and
the left/right-swapped clip are concatenated (384-d); distance: cosine (the released ``metric: cos``).

Released CASIA-B config: input branches (5, 64, 32), main stream (32, 128, 256), reduction 8:
**350,822** parameters.
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
from gaitheat.models.gaitgraph import ResGCN
from gaitheat.models.graph import COCO_CENTER, COCO_FLIP, COCO_PARENT
from gaitheat.models.pose_features import bone_angles, bones, fill_empty, per_sequence, velocities
from gaitheat.models.spec import FramePolicy, LossTerm, ModelConfig, ModelSpec


def multi_input(kp: Tensor) -> Tensor:
    """(B, T, V, 3) keypoints -> (B, 3, 5, T, V): the joint, velocity and bone branches' inputs."""
    xy, score = kp[..., :2], kp[..., 2:3]
    rel = xy - xy[:, :, COCO_CENTER : COCO_CENTER + 1]
    v1, v2 = velocities(xy)
    bone = bones(xy, COCO_PARENT)
    joints = torch.cat([xy, score, rel], -1)
    motion = torch.cat([v1, score, v2], -1)
    limbs = torch.cat([bone, score, bone_angles(bone)], -1)
    return torch.stack([joints, motion, limbs], 1).permute(0, 1, 4, 2, 3)


@dataclass(frozen=True)
class GaitGraph2Config(ModelConfig):
    """GaitGraph2 at its released CASIA-B recipe (``configs/gaitgraph2/gaitgraph2.yaml``).

    Noise and move amounts are in crop heatmap pixels, half the released CASIA-B frame-pixel ones
    (see :class:`gaitheat.models.gaitgraph.GaitGraphConfig`).
    """

    name: str = "gaitgraph2"
    input_branch: tuple[int, ...] = (5, 64, 32)
    main_stream: tuple[int, ...] = (32, 128, 256)
    embed_dim: int = 128
    reduction: int = 8
    temperature: float = 0.01
    tta: bool = True
    swap_prob: float = 0.1
    reverse_prob: float = 0.5
    point_noise: float = 0.025  # released 0.05
    joint_noise: float = 0.125  # released 0.25
    move: tuple[float, float] = (2.0, 0.5)  # released RandomMove (4, 1)

    @classmethod
    def tiny(cls) -> GaitGraph2Config:
        """A few-thousand-parameter variant for CPU tests."""
        return cls(input_branch=(5, 8, 8), main_stream=(8, 16, 32), embed_dim=16, reduction=4)

    def spec(self) -> ModelSpec:
        augment = functools.partial(
            transforms.augment_keypoints,
            flip=COCO_FLIP,
            swap_prob=self.swap_prob,
            reverse_prob=self.reverse_prob,
            point_std=self.point_noise,
            joint_std=self.joint_noise,
            move=self.move,
        )
        return ModelSpec(
            inputs={"keypoints": "keypoints"},
            frames=FramePolicy("window", "window"),
            losses=(LossTerm("embeddings", "supcon", temperature=self.temperature, similarity="l2"),),
            distance="cos",
            augment=augment,
        )


class GaitGraph2(nn.Module):
    """GaitGraph2: keypoints (B, T, 17, 3) -> embedding (B, D, 1) in training, (B, 3D, 1) from :meth:`embed`."""

    Config: ClassVar[type[ModelConfig]] = GaitGraph2Config

    def __init__(
        self,
        input_branch: Sequence[int] = (5, 64, 32),
        main_stream: Sequence[int] = (32, 128, 256),
        embed_dim: int = 128,
        reduction: int = 8,
        tta: bool = True,
        config: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config if config is not None else GaitGraph2Config()
        self.tta = tta
        self.net = ResGCN(3, input_branch, main_stream, embed_dim, reduction)

    @classmethod
    def from_config(cls, cfg: ModelConfig, num_classes: int) -> GaitGraph2:
        """Build from a :class:`GaitGraph2Config` (``num_classes`` is unused: SupCon has no classifier)."""
        if not isinstance(cfg, GaitGraph2Config):
            raise TypeError(f"GaitGraph2 needs a GaitGraph2Config, got {type(cfg).__name__}")
        return cls(cfg.input_branch, cfg.main_stream, cfg.embed_dim, cfg.reduction, cfg.tta, config=cfg)

    def _embed(self, keypoints: Tensor) -> Tensor:
        """(B, T, 17, 3) cleaned keypoints -> (B, D)."""
        return self.net(multi_input(keypoints))

    def forward(self, *, keypoints: Tensor, lengths: Tensor | None = None) -> ModelOutput:
        """(B, T, 17, 3) keypoints -> features {"embeddings": (B, D, 1)} (also the ``embedding``)."""
        emb = per_sequence(lambda x: self._embed(fill_empty(x)), keypoints, lengths).unsqueeze(-1)
        return ModelOutput(features={"embeddings": emb}, embedding=emb)

    def embed(self, *, keypoints: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, 17, 3) -> (B, 3D, 1) with TTA (clip, reversed clip, swapped joints), else (B, D, 1)."""

        def one(x: Tensor) -> Tensor:
            x = fill_empty(x)
            if not self.tta:
                return self._embed(x)
            return torch.cat([self._embed(x), self._embed(x.flip(1)), self._embed(x[:, :, list(COCO_FLIP)])], 1)

        return per_sequence(one, keypoints, lengths).unsqueeze(-1)

    def for_inference(self) -> nn.Module:
        return self.eval()
