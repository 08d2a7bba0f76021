"""Recognition networks: a small registry and :func:`build_model`, the one place config meets constructor.

>>> from gaitheat.experiment import ModelConfig
>>> model = build_model(ModelConfig(widths=(4, 8, 16, 32), embed_dim=16), num_classes=10)
"""

from __future__ import annotations

from collections.abc import Callable

from gaitheat.experiment import ModelConfig
from gaitheat.models.gaitheat import BRANCHES, GaitHeat, GaitOutput


def _build_gaitheat(cfg: ModelConfig, num_classes: int) -> GaitHeat:
    return GaitHeat(
        num_classes,
        widths=cfg.widths,
        strides=cfg.strides,
        parts=cfg.parts,
        embed_dim=cfg.embed_dim,
        groups=cfg.groups,
        align=cfg.align,
        align_mode=cfg.align_mode,
        align_pixels=cfg.align_pixels,
        gamma_deg=cfg.gamma_deg,
        skip_prob=cfg.skip_prob,
        neck_to=cfg.neck_to,
        fusion=cfg.fusion,
    )


MODELS: dict[str, Callable[[ModelConfig, int], GaitHeat]] = {"gaitheat": _build_gaitheat}


def build_model(cfg: ModelConfig, num_classes: int) -> GaitHeat:
    """Build the network named by ``cfg.name`` for ``num_classes`` training identities.

    Raises:
        KeyError: unknown model name (the message lists the registered ones).
    """
    try:
        builder = MODELS[cfg.name]
    except KeyError:
        raise KeyError(f"unknown model {cfg.name!r}; registered models: {sorted(MODELS)}") from None
    return builder(cfg, num_classes)


__all__ = ["BRANCHES", "MODELS", "GaitHeat", "GaitOutput", "build_model"]
