"""Render walking sequences and write them as a CASIA-B-shaped tree of real video files.

Layout (the same names CASIA-B uses, so ``gaitheat extract`` reads it unchanged)::

    <out>/<subject>/<condition>/<view>/<subject>-<condition>-<view>.avi    # MJPG, 25 fps
    <out>/<subject>/<condition>/<view>/<subject>-<condition>-<view>.json   # ground truth
    <out>/<subject>/<condition>/<view>/<subject>-<condition>-<view>.mask.npz  # true body masks

The ground-truth JSON holds the projected COCO-17 joints ``(T, 17, 2)`` and the figure's box
``(T, 4)`` (x1, y1, x2, y2) in image pixels, the gait phase, the identity parameters and the
recording's nuisance. The mask file holds, per frame, which pixels the renderer drew as body (bag
included; before blur, noise and JPEG), bit-packed (:func:`load_body_masks`): the ground truth of
extracted silhouettes. Every sequence has its own seed derived from (seed, subject, condition,
view), so the same arguments give the same bytes whatever the number of workers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from gaitheat.atomic import TMP_MARKER, atomic_write_text
from gaitheat.synth import scene as S
from gaitheat.synth import walker as W

log = logging.getLogger(__name__)

FPS = 25.0
DEFAULT_SIZE = (240, 320)  # CASIA-B frames are 320 x 240


class Rendered(NamedTuple):
    """One rendered sequence (unpacks as ``frames, joints, boxes``).

    Attributes:
        frames: (T, H, W, 3) uint8 RGB, already blurred, noised and JPEG-compressed.
        joints: (T, J, 2) float32 COCO-17 joints in image pixels (x = column, y = row).
        boxes: (T, 4) float32 figure box (x1, y1, x2, y2) in image pixels.
    """

    frames: np.ndarray
    joints: np.ndarray
    boxes: np.ndarray


def _seed(*parts: int | str) -> np.random.Generator:
    """A generator keyed by stable hashes of the parts (Python's ``hash`` is salted per process)."""
    keys = [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]
    return np.random.default_rng(np.random.SeedSequence(keys))


MOTIONS = ("parametric", "normative")


def subject_identity(seed: int, subject: str, difficulty: float) -> W.Identity:
    """The identity of ``subject`` in the population drawn with ``seed`` (same for every recording)."""
    return W.sample_identity(_seed(seed, "identity", subject), difficulty)


def subject_person(seed: int, subject: str, difficulty: float, motion: str = "parametric",
                   ) -> tuple[W.Identity, W.Kinematics | None]:
    """Identity and, for ``motion="normative"``, joint-angle curves of ``subject`` (same for every recording).

    The curves come from their own generator, so the body of a subject is the same under both
    motions; the identity's ``stride`` becomes the curves' hip half-range (it sets walking speed).
    """
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, got {motion!r}")
    person = subject_identity(seed, subject, difficulty)
    if motion == "parametric":
        return person, None
    kin = W.sample_kinematics(_seed(seed, "kinematics", subject), difficulty)
    return dataclasses.replace(person, stride=round(W.hip_half_range(kin), 6)), kin


def render_sequence(identity: W.Identity, condition: str, view: str, frames: int, seed: int,
                    size: tuple[int, int] = DEFAULT_SIZE) -> Rendered:
    """Render one recording of ``identity`` walking under ``condition`` seen from ``view``.

    Args:
        identity: the person (see :func:`gaitheat.synth.sample_identity`).
        condition: CASIA-B condition, ``nm-01`` .. ``nm-06``, ``bg-01``, ``bg-02``, ``cl-01``, ``cl-02``.
        view: angle in degrees as CASIA-B writes it, ``"000"`` .. ``"180"`` (any angle works).
        frames: number of frames T.
        seed: seed of this recording's nuisance (colours, light, camera, start, speed).
        size: frame (H, W) in pixels.
    Returns:
        :class:`Rendered` frames, joints and boxes.
    """
    frames_out, joints, boxes, _ = _render(identity, condition, view, frames, _seed(seed, "recording"), size)
    return Rendered(frames_out, joints, boxes)


def render_sequence_with_masks(identity: W.Identity, condition: str, view: str, frames: int, seed: int,
                               size: tuple[int, int] = DEFAULT_SIZE) -> tuple[Rendered, np.ndarray]:
    """:func:`render_sequence` (the same frames) plus the true body masks ``(T, H, W)`` bool."""
    masks: list[np.ndarray] = []
    frames_out, joints, boxes, _ = _render(identity, condition, view, frames, _seed(seed, "recording"), size, masks)
    return Rendered(frames_out, joints, boxes), np.stack(masks)


def _render(identity: W.Identity, condition: str, view: str, frames: int, rng: np.random.Generator,
            size: tuple[int, int], masks_out: list[np.ndarray] | None = None,
            kinematics: W.Kinematics | None = None, fps: float = FPS,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Render one recording; each frame's body mask ``(H, W)`` bool is appended to ``masks_out`` if given.

    ``kinematics`` drives the legs with the person's joint-angle curves (:func:`gaitheat.synth.walker.walk`);
    ``fps`` is the frame rate of time (a lower rate samples the same walk more sparsely).
    """
    import cv2

    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    cov = S.covariate_of(condition)
    rec = S.sample_recording(rng, condition, size)
    phase = rec.phase0 + 2 * np.pi * identity.cadence * np.arange(frames) / fps
    pose = W.walk(identity, phase, rec.speed_scale, kinematics)
    leg = identity.leg_ratio * identity.height
    speed = identity.cadence * 4 * leg * np.sin(identity.stride * rec.speed_scale) * 0.9
    origin = S.path_positions(rec, view, speed, frames, fps)
    rec = dataclasses.replace(rec, camera=S.fit_camera(rec.camera, origin[:, 1]))
    joints3 = S.to_ground(pose.joints, view, origin)
    zero = np.zeros_like(origin)
    extra = {k: S.to_ground(v, view, zero if k.startswith("head_") else origin) for k, v in pose.extra.items()}
    uv, _ = rec.camera.project(joints3)
    bg = S.background(rec)
    noise_rng = np.random.default_rng(rng.integers(2**31))
    out = np.empty((frames, *size, 3), np.uint8)
    boxes = np.empty((frames, 4), np.float32)
    for t in range(frames):
        img = bg.copy()
        caps = S.body_capsules(joints3[t], {k: v[t] for k, v in extra.items()}, identity, rec, cov, phase[t])
        mask = _draw(img, caps, rec)
        boxes[t] = _mask_box(mask, uv[t])
        if masks_out is not None:
            masks_out.append(mask)
        out[t] = _finish(img, rec, noise_rng, cv2)
    info = {"quality": rec.quality, "bag": rec.bag, "figure_px": round(rec.camera.focal * 1.72 / rec.distance, 2),
            "camera_height": round(rec.camera.height, 4), "speed": round(float(speed), 4)}
    info["phase"] = np.round(phase, 5).tolist()
    return out, uv.astype(np.float32), boxes, info


def _draw(img: np.ndarray, caps: list, rec: S.Recording) -> np.ndarray:
    from gaitheat.synth.render import draw_capsules

    return draw_capsules(img, caps, rec.camera, rec.light, rec.ambient)


def _mask_box(mask: np.ndarray, uv: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:  # figure fully outside the frame: fall back to the joints' extent
        return np.array([*uv.min(axis=0), *uv.max(axis=0)], np.float32)
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def _finish(img: np.ndarray, rec: S.Recording, rng: np.random.Generator, cv2: Any) -> np.ndarray:
    """Blur, sensor noise and JPEG compression, so clean renders look like real footage."""
    img = cv2.GaussianBlur(img, (0, 0), rec.blur)
    img = img * 255.0 + rng.normal(0.0, rec.noise, img.shape[:2])[..., None]
    bgr = np.clip(img, 0, 255).astype(np.uint8)[..., ::-1]
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, rec.quality])
    if not ok:
        raise RuntimeError("OpenCV failed to JPEG-encode a synthetic frame")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def write_video(path: str | Path, frames: np.ndarray, fps: float = FPS) -> None:
    """Write (T, H, W, 3) uint8 RGB frames as an MJPG .avi, atomically (temporary file + rename).

    MJPG through OpenCV's built-in encoder needs no FFmpeg, is readable by every OpenCV build, and is
    byte-for-byte reproducible.
    """
    import os

    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}{TMP_MARKER}{os.getpid()}.avi")
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(tmp), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV could not open an MJPG video writer")
    try:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))
    finally:
        writer.release()
    try:
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(f"{path}: could not move the finished video into place") from exc


def sequence_paths(out: str | Path, subject: str, condition: str, view: str) -> tuple[Path, Path]:
    """(video, ground-truth JSON) paths of one sequence in the CASIA-B tree."""
    folder = Path(out) / subject / condition / view
    stem = f"{subject}-{condition}-{view}"
    return folder / f"{stem}.avi", folder / f"{stem}.json"


def mask_path(video: str | Path) -> Path:
    """The true body mask file of a synthetic video: ``<stem>.mask.npz`` beside it."""
    return Path(video).with_suffix(".mask.npz")


def save_body_masks(path: str | Path, masks: np.ndarray) -> None:
    """Write ``(T, H, W)`` bool masks bit-packed along W, deflated (``.npz``), atomically and reproducibly."""
    import io
    import zipfile

    from gaitheat.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    # np.savez stamps the wall-clock time into the zip; a fixed stamp keeps "same seed, same bytes".
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in (("packed", np.packbits(masks.astype(bool), axis=-1)),
                            ("shape", np.array(masks.shape, np.int64))):
            member = io.BytesIO()
            np.save(member, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, member.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    atomic_write_bytes(path, buffer.getvalue())


def load_body_masks(path: str | Path) -> np.ndarray:
    """Read the true body masks of a synthetic sequence (its video, JSON or mask path): ``(T, H, W)`` bool.

    Raises:
        ValueError: naming the file, if it is missing or not a mask file of this format.
    """
    p = Path(path)
    p = p if p.name.endswith(".mask.npz") else mask_path(p)
    try:
        with np.load(p, allow_pickle=False) as data:
            packed, shape = data["packed"], tuple(int(v) for v in data["shape"])
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise ValueError(f"{p}: not a readable synthetic body-mask file ({exc})") from exc
    if len(shape) != 3 or packed.shape != (shape[0], shape[1], -(-shape[2] // 8)):
        raise ValueError(f"{p}: packed masks {packed.shape} do not match the stated shape {shape}")
    return np.unpackbits(packed, axis=-1, count=shape[2]).astype(bool)


@dataclass(frozen=True)
class _Job:
    out: str
    subject: str
    condition: str
    view: str
    frames: int
    seed: int
    difficulty: float
    size: tuple[int, int]
    motion: str = "parametric"
    fps: float = FPS


def _write_one(job: _Job) -> str:
    import cv2

    cv2.setNumThreads(1)  # one worker per core; OpenCV's own threads would only contend
    video, gt = sequence_paths(job.out, job.subject, job.condition, job.view)
    if video.exists() and gt.exists() and mask_path(video).exists():
        return "skipped"
    person, kin = subject_person(job.seed, job.subject, job.difficulty, job.motion)
    rng = _seed(job.seed, "recording", job.subject, job.condition, job.view)
    masks: list[np.ndarray] = []
    frames, joints, boxes, info = _render(person, job.condition, job.view, job.frames, rng, job.size, masks,
                                          kin, job.fps)
    record = {
        "subject": job.subject, "condition": job.condition, "view": job.view, "fps": job.fps,
        "size": list(job.size), "seed": job.seed, "difficulty": job.difficulty,
        "joints": np.round(joints, 3).tolist(), "boxes": np.round(boxes, 3).tolist(),
        "identity": W.identity_to_dict(person), "recording": info,
    }  # fmt: skip
    if kin is not None:  # only the normative motion has curves (the parametric record stays as it was)
        record["motion"], record["kinematics"] = job.motion, W.kinematics_to_dict(kin)
    # ground truth first: a video without its JSON or masks is treated as unfinished and redone
    atomic_write_text(gt, json.dumps(record, separators=(",", ":")))
    save_body_masks(mask_path(video), np.stack(masks))
    write_video(video, frames, job.fps)
    return "written"


def write_dataset(out: str | Path, subjects: int | Sequence[str], conditions: Sequence[str] = S.CONDITIONS,
                  views: Sequence[str] = S.VIEWS, frames: int = 60, seed: int = 0, difficulty: float = 0.5,
                  size: tuple[int, int] = DEFAULT_SIZE, workers: int = 1, progress: bool = True,
                  motion: str = "parametric", fps: float = FPS) -> dict[str, int]:
    """Render a CASIA-B-shaped tree of synthetic walker videos; finished sequences are skipped.

    Args:
        out: root folder of the tree.
        subjects: a count (names ``001``, ``002``, ...) or explicit subject names.
        conditions: CASIA-B conditions to record for every subject.
        views: view angles (``"000"`` .. ``"180"``).
        frames: frames per sequence.
        seed: population and recording seed; the same seed gives the same bytes.
        difficulty: 0 (people very different) .. 1 (people close together).
        size: frame (H, W).
        workers: processes rendering in parallel.
        progress: show a progress bar on stderr.
        motion: ``parametric`` (the demo's sinusoidal legs) or ``normative`` (legs driven by published
            normative hip, knee and ankle curves with a personal deviation, :func:`subject_person`).
        fps: frame rate of the rendered walk and of the video file (25, CASIA-B's, by default).
    Returns:
        counts ``{"written": n, "skipped": m}``.
    """
    from gaitheat.progress import Progress

    names = [f"{i:03d}" for i in range(1, subjects + 1)] if isinstance(subjects, int) else list(subjects)
    for c in conditions:
        S.covariate_of(c)
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, got {motion!r}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    jobs = [_Job(str(out), s, c, v, frames, seed, difficulty, tuple(size), motion, fps)  # type: ignore[arg-type]
            for s in names for c in conditions for v in views]
    counts = {"written": 0, "skipped": 0}
    bar = Progress(len(jobs), desc="synth", unit="sequence", enabled=progress)
    try:
        if workers <= 1:
            for job in jobs:
                counts[_write_one(job)] += 1
                bar.update()
        else:
            import multiprocessing as mp

            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                for status in pool.map(_write_one, jobs, chunksize=4):
                    counts[status] += 1
                    bar.update()
    finally:
        bar.close()
    log.info("synth: %d written, %d already there, in %s", counts["written"], counts["skipped"], out)
    return counts


def load_ground_truth(path: str | Path) -> dict[str, Any]:
    """Read a ground-truth JSON (the video path or the JSON path) with ``joints``/``boxes`` as arrays."""
    p = Path(path)
    p = p.with_suffix(".json") if p.suffix != ".json" else p
    try:
        record = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: not a readable synthetic ground-truth file ({exc})") from exc
    record["joints"] = np.asarray(record["joints"], np.float32)
    record["boxes"] = np.asarray(record["boxes"], np.float32)
    return record
