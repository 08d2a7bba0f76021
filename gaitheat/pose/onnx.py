"""User-supplied top-down heatmap models through ONNX Runtime (HRNet-W32 for GaitHeat, ViTPose for GaitHeat++).

The model must take ``(N, 3, 256, 192)`` float32 RGB normalised as mmpose does (mean 123.675,
116.28, 103.53; std 58.395, 57.12, 57.375 on 0-255 pixels) and return ``(N, 17, 64, 48)`` COCO-17
heatmaps as its first output. Heatmaps are kept raw (regression outputs, peaks about 0-1, possibly
slightly negative), exactly what the paper stores. With ``flip_test`` the mirrored crop is run too
and its heatmaps, mirrored back with left/right channels swapped (and shifted one pixel for HRNet,
``flip_shift``), are averaged in, as in mmpose's test configs. These models have no presence output,
so presence is 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gaitheat.pose.base import COCO17_FLIP_PAIRS, HEATMAP_HW, INPUT_HW, PoseResult, decode_heatmaps, empty_result

MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


def flip_back(heatmaps: np.ndarray, shift: bool = False) -> np.ndarray:
    """Heatmaps of a mirrored crop ``(N, 17, H, W)`` mapped back to the original crop.

    Mirrors the width axis and swaps left/right joints; ``shift`` moves the result one pixel right
    (mmpose's ``shift_heatmap`` for models without UDP).
    """
    order = np.arange(heatmaps.shape[1])
    for left, right in COCO17_FLIP_PAIRS:
        order[left], order[right] = right, left
    out = heatmaps[:, order, :, ::-1]
    if shift:
        out = np.concatenate([out[..., :1], out[..., :-1]], axis=-1)
    return np.ascontiguousarray(out)


class OnnxPoseBackend:
    """ONNX Runtime pose backend.

    Args:
        model_path: the ``.onnx`` file (required).
        flip_test: also run the mirrored crop and average.
        flip_shift: shift flipped heatmaps one pixel (HRNet; not ViTPose/UDP).
        num_threads: intra-op threads.
        providers: ONNX Runtime providers; default CUDA when available, else CPU.
    """

    input_size: tuple[int, int] = INPUT_HW

    def __init__(self, model_path: str | Path | None = None, flip_test: bool = False, flip_shift: bool = False,
                 num_threads: int = 1, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        from gaitheat.assets import file_sha256_cached

        if model_path is None:
            raise ValueError("the onnx pose backend needs a model file (--pose-model PATH)")
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX pose model not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        available = ort.get_available_providers()
        chosen = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self._session = ort.InferenceSession(str(path), options, providers=chosen)
        except (RuntimeError, ValueError) as exc:  # onnxruntime raises subclasses of RuntimeError
            raise ValueError(f"{path}: ONNX Runtime cannot load this model ({exc})") from exc
        inputs = self._session.get_inputs()
        self._input = inputs[0].name
        shape = inputs[0].shape
        if len(shape) != 4 or tuple(shape[1:]) not in ((3, *INPUT_HW), ("3", "256", "192")):
            raise ValueError(f"{path}: expected input (N, 3, 256, 192), model has {shape}")
        self.model_path = path
        self.name = f"onnx:{path.stem}"
        self.sha256 = file_sha256_cached(path)
        self.flip_test, self.flip_shift = flip_test, flip_shift

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = np.asarray(self._session.run(None, {self._input: batch})[0], np.float32)
        if out.shape[1:] != (17, *HEATMAP_HW):
            raise ValueError(f"{self.model_path}: expected heatmaps (N, 17, 64, 48), model gave {out.shape}")
        return out

    def __call__(self, crops: np.ndarray) -> PoseResult:
        """Heatmaps for ``crops`` ``(N, 256, 192, 3)`` uint8 RGB."""
        if crops.ndim != 4 or crops.shape[1:] != (*INPUT_HW, 3):
            raise ValueError(f"ONNX backend expects crops (N, {INPUT_HW[0]}, {INPUT_HW[1]}, 3), got {crops.shape}")
        if len(crops) == 0:
            return empty_result()
        batch = np.ascontiguousarray(((crops.astype(np.float32) - MEAN) / STD).transpose(0, 3, 1, 2))
        heatmaps = self._run(batch)
        if self.flip_test:
            mirrored = self._run(np.ascontiguousarray(batch[..., ::-1]))
            heatmaps = (heatmaps + flip_back(mirrored, self.flip_shift)) / 2
        return PoseResult(heatmaps, decode_heatmaps(heatmaps), np.ones(len(crops), np.float32))
