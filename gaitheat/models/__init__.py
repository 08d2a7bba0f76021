"""Recognition networks: a lazy registry and :func:`build_model`, the one place config meets constructor.

:data:`MODELS` maps a model name (the ``model.name`` of a config) to ``"module:Class"``; the module
is imported on first use, so one broken model file never breaks the others, and loading a config
imports only its own model. A model class carries its config dataclass as ``Class.Config`` (a
:class:`~gaitheat.models.spec.ModelConfig` whose ``spec()`` says what the model takes) and builds
itself with ``Class.from_config(cfg, num_classes)``. Adding a model is one file here, one YAML and
one line in :data:`MODELS` (see ``gaitheat/models/spec.py`` for the interface).

>>> from gaitheat.experiment import GaitHeatConfig
>>> model = build_model(GaitHeatConfig(widths=(4, 8, 16, 32), embed_dim=16), num_classes=10)
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gaitheat.models.spec import FramePolicy, InputKind, LossTerm, ModelConfig, ModelSpec

if TYPE_CHECKING:
    from torch import Tensor, nn

MODELS: dict[str, str] = {
    "gaitheat": "gaitheat.models.gaitheat:GaitHeat",
    "gaitgraph": "gaitheat.models.gaitgraph:GaitGraph",
    "gaitgraph2": "gaitheat.models.gaitgraph2:GaitGraph2",
    "gaittr": "gaitheat.models.gaittr:GaitTR",
    "gpgait": "gaitheat.models.gpgait:GPGait",
    "skeletongait": "gaitheat.models.skeletongait:SkeletonGait",
    "gaitbase": "gaitheat.models.gaitbase:GaitBase",
}


@dataclass
class ModelOutput:
    """What a model's ``forward`` returns (GaitHeat's :class:`GaitOutput` has the same two attributes).

    Attributes:
        features: named outputs the loss terms route by (``"fusion/embeddings"`` (B, D, P), ...).
        embedding: (B, D, P) retrieval embedding (single-vector models: P = 1).
    """

    features: dict[str, Tensor]
    embedding: Tensor


def _unknown(name: str) -> KeyError:
    match = difflib.get_close_matches(name, list(MODELS), n=1, cutoff=0.0)
    hint = f"; did you mean {match[0]!r}?" if match else ""
    return KeyError(f"unknown model {name!r}{hint} (registered models: {sorted(MODELS)})")


def model_class(name: str) -> Any:
    """The model class registered as ``name`` (its module imported now).

    Raises:
        KeyError: unknown name (naming the nearest registered one).
    """
    try:
        target = MODELS[name]
    except KeyError:
        raise _unknown(name) from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def config_class(name: str) -> type[ModelConfig]:
    """The config dataclass of model ``name`` (``Class.Config``)."""
    cls: type[ModelConfig] = model_class(name).Config
    return cls


def build_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """Build the network named by ``cfg.name`` for ``num_classes`` training identities.

    Raises:
        KeyError: unknown model name (the message lists the registered ones).
    """
    module: nn.Module = model_class(cfg.name).from_config(cfg, num_classes)
    return module


def __getattr__(name: str) -> Any:
    # GaitHeat's names, imported on first use so the registry stays lazy
    if name in ("BRANCHES", "GaitHeat", "GaitOutput"):
        return getattr(importlib.import_module("gaitheat.models.gaitheat"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BRANCHES", "MODELS", "FramePolicy", "GaitHeat", "GaitOutput", "InputKind", "LossTerm", "ModelConfig",
           "ModelOutput", "ModelSpec", "build_model", "config_class", "model_class"]
