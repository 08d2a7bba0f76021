"""The three metric classes gaitheat uses (TrackEval's own ``metrics/__init__`` imports all of them)."""

from .clear import CLEAR
from .hota import HOTA
from .identity import Identity

__all__ = ["CLEAR", "HOTA", "Identity"]
