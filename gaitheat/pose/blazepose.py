"""BlazePose-full heatmaps through LiteRT (the offline default backend).

``pose_landmark_full.tflite`` (from the ``mediapipe==0.10.21`` wheel, see :mod:`gaitheat.assets`)
takes a 256x256 RGB square in [0, 1] and returns, among others, 64x64x39 heatmap logits at stride 4
(``Identity_3``) and a person-presence probability (``Identity_1``).

How the GaitHeat crop fits the square: the backend receives the paper's 256x192 (H x W) crop of the
1.25x padded, 3:4 person box, and letterboxes it into the 256x256 input with 32 black columns either
side, exactly as MediaPipe's ``ImageToTensorCalculator`` (``keep_aspect_ratio``, zero border) would
for a 3:4 region. Heatmap columns 8..55 (crop pixels 32..223) then cover the 3:4 box and nothing
else, giving ``(17, 64, 48)`` maps with cell ``(i, j)`` at crop pixel ``(4j, 4i)``. Blanking the side
columns (rather than showing the neighbouring image) keeps other people out of the model's view in
crowds and makes its input the same one an mmpose 256x192 model sees.

The same invoke also returns a ``[1, 256, 256, 1]`` person segmentation (``Identity_2``), read at no
extra model cost as :attr:`PoseResult.masks`. It holds **logits**, not probabilities: on a synthetic
walker and on messi5.jpg its values run from about -1700 to +270 (89% below 0, 11% above 1), where
a probability would stay in [0, 1]; MediaPipe's graph puts them through a sigmoid
(``TensorsToSegmentationCalculator``, ``activation: SIGMOID``) before use. Mask pixel ``(r, c)`` is
input pixel ``(r, c)`` (shifting the binarised mask by a pixel never raised its IoU with the
renderer's true body mask on average), so columns 32..223 are the 256x192 crop, the same
letterbox as the heatmaps. It is binarised at logit 0, i.e. probability 0.5, the sigmoid's midpoint:
against the renderer's true body mask on 36 synthetic crops (views 000-126, nm/bg/cl) the mean IoU is
0.85 at logit -2 (p = 0.12), 0.92 at 0, 0.93 at 0.5, 0.92 at 1 and 0.91 at 8, so the plain midpoint
is within 0.01 of the best and needs no tuning to this renderer.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from gaitheat.pose.base import HEATMAP_HW, INPUT_HW, PoseResult, decode_heatmaps, empty_result

# BlazePose-33 channels of the COCO-17 joints (nose, eyes, ears, shoulders, elbows, wrists, hips,
# knees, ankles); "left" is the person's left in both layouts.
COCO17_FROM_BLAZEPOSE = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
_SQUARE = 256
_PAD = (_SQUARE - INPUT_HW[1]) // 2  # 32 black columns either side
_COLUMNS = slice(_PAD // 4, _PAD // 4 + HEATMAP_HW[1])  # heatmap columns 8:56
_CROP_COLUMNS = slice(_PAD, _PAD + INPUT_HW[1])  # input (and mask) columns 32:224
MASK_LOGIT_THRESHOLD = 0.0  # segmentation logit above which a crop pixel is the person (p > 0.5)


class BlazePoseBackend:
    """BlazePose-full heatmap backend (``name="blazepose-full"``).

    Args:
        model_path: a ``pose_landmark_full.tflite``; None finds and SHA-256-checks the bundled one.
        num_threads: LiteRT threads (a second thread barely helps on this model).
    """

    name = "blazepose-full"
    input_size: tuple[int, int] = INPUT_HW

    def __init__(self, model_path: str | Path | None = None, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from gaitheat import assets

        path = assets.verify_asset(assets.POSE_LANDMARK_FULL) if model_path is None else Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: pose model file not found")
        self.model_path = path
        self.sha256 = assets.file_sha256_cached(path)
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"{path}: LiteRT cannot load this model ({exc})") from exc
        outputs = {d["name"]: d["index"] for d in self._interpreter.get_output_details()}
        inputs = self._interpreter.get_input_details()
        if "Identity_3" not in outputs or "Identity_1" not in outputs or tuple(inputs[0]["shape"]) != (1, 256, 256, 3):
            raise ValueError(f"{path}: not a BlazePose landmark model (needs input [1,256,256,3] and "
                             f"outputs Identity_1, Identity_3; got {sorted(outputs)})")
        self._input = inputs[0]["index"]
        self._heatmap = outputs["Identity_3"]
        self._presence = outputs["Identity_1"]
        self._mask = outputs.get("Identity_2")  # segmentation logits; absent from a model without one
        # Wall and CPU time spent inside invoke(), for benchmarks (CPU time is robust to a shared machine;
        # with one LiteRT thread the model runs on the calling thread, so thread_time() sees all of it).
        self.invoke_seconds = self.invoke_cpu_seconds = 0.0
        self.invokes = 0

    def __call__(self, crops: np.ndarray) -> PoseResult:
        """Heatmaps for ``crops`` ``(N, 256, 192, 3)`` uint8 RGB (see the module docstring)."""
        if crops.ndim != 4 or crops.shape[1:] != (*INPUT_HW, 3):
            raise ValueError(f"BlazePose backend expects crops (N, {INPUT_HW[0]}, {INPUT_HW[1]}, 3), got {crops.shape}")
        if len(crops) == 0:
            return empty_result(None if self._mask is None else INPUT_HW)
        logits = np.empty((len(crops), *HEATMAP_HW, len(COCO17_FROM_BLAZEPOSE)), np.float32)
        presence = np.empty(len(crops), np.float32)
        masks = None if self._mask is None else np.empty((len(crops), *INPUT_HW), bool)
        scale = np.float32(1 / 255)
        for i, crop in enumerate(crops):
            # Straight into the interpreter's buffers (tensor() views, released before invoke): no copies.
            square = self._interpreter.tensor(self._input)()
            square[0, :, :_PAD] = 0
            square[0, :, _PAD + INPUT_HW[1]:] = 0
            np.multiply(crop, scale, out=square[0, :, _PAD:_PAD + INPUT_HW[1]])
            del square
            start, cpu = time.perf_counter(), time.thread_time()
            self._interpreter.invoke()
            self.invoke_seconds += time.perf_counter() - start
            self.invoke_cpu_seconds += time.thread_time() - cpu
            self.invokes += 1
            logits[i] = self._interpreter.tensor(self._heatmap)()[0, :, _COLUMNS][..., COCO17_FROM_BLAZEPOSE]
            presence[i] = self._interpreter.tensor(self._presence)()[0, 0]
            if masks is not None:
                # The crop's columns of the 256x256 logits, binarised straight from the interpreter's buffer.
                np.greater(self._interpreter.tensor(self._mask)()[0, :, _CROP_COLUMNS, 0], MASK_LOGIT_THRESHOLD,
                           out=masks[i])
        heatmaps = np.ascontiguousarray(np.transpose(_sigmoid(logits), (0, 3, 1, 2)))
        return PoseResult(heatmaps, decode_heatmaps(heatmaps), presence, masks)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Logits reach about -88; clipping keeps exp() finite without changing any float32 result.
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))).astype(np.float32)
