"""Synthetic crowds: several walkers in one video, with per-frame, occlusion-aware ground truth.

A scene holds 2-8 people of the same population as :mod:`gaitheat.synth.dataset` (subject ``"103"``
here is the same person as subject ``"103"`` of ``write_dataset`` with the same seed and
difficulty, so a separate single-person walk can enrol them). Scene types:

- ``crossing``: people walk in opposite directions, paths crossing at an angle, 0.5-1.0 m apart in
  depth, meeting mid-video;
- ``side_by_side``: pairs walk together at the same speed, 0.3-1.0 m apart;
- ``overtaking``: the same direction at different speeds, the faster one starting behind;
- ``passing_behind``: opposite directions, one 1.5-3 m behind the other.

Every person is rendered into their own z-buffer and the frame keeps the nearest surface per pixel,
so each pixel has an owner: a person's visibility is the share of their body's pixels that they own
in the frame, and a joint is visible when its pixel belongs to its person.

Files per scene (MOTChallenge layout, readable by standard tools)::

    <out>/<scene>/<scene>.avi          # MJPG, 25 fps
    <out>/<scene>/<scene>.json         # the repository's ground truth (see write_scene)
    <out>/<scene>/gt/gt.txt            # frame,id,x,y,w,h,flag,class,visibility (1-based frames and ids)
    <out>/<scene>/seqinfo.ini

In ``gt.txt`` the full (unoccluded) box of the body inside the frame is given; ``flag`` is 1 when at
least :data:`MIN_VISIBILITY` of the person is visible and 0 (ignored by the metrics) otherwise.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gaitheat.atomic import atomic_write_text
from gaitheat.synth import scene as S
from gaitheat.synth import walker as W
from gaitheat.synth.dataset import FPS, _finish, _seed, subject_identity, write_video
from gaitheat.synth.render import Camera

SCENE_TYPES = ("crossing", "side_by_side", "overtaking", "passing_behind")
CROWD_SIZE = (270, 480)  # (H, W): wide enough for several people
MIN_VISIBILITY = 0.25  # less visible than this: ignored by the tracking metrics
MIN_PIXELS = 30  # fewer body pixels in the frame than this: the person is absent


@dataclass(frozen=True)
class CrowdWalker:
    """One person of a scene: who, where and how fast.

    Attributes:
        subject: population name (same person as ``write_dataset``'s subject of that name).
        heading: walking direction in degrees (as a view: 090 left to right, 270 right to left,
            000 towards the camera, 180 away).
        meet: (2,) ground point (x, depth) in metres where the person is at ``meet_time``.
        speed: ground speed in m/s.
        speed_scale: stride multiplier that makes the legs match ``speed``.
    """

    subject: str
    heading: float
    meet: tuple[float, float]
    speed: float
    speed_scale: float


@dataclass(frozen=True)
class CrowdScene:
    """A scene's layout: its type, people, camera and length (everything else comes from ``seed``)."""

    name: str
    kind: str
    walkers: tuple[CrowdWalker, ...]
    camera_height: float
    figure_px: float
    depth: float
    frames: int
    seed: int
    difficulty: float


def natural_speed(identity: W.Identity, speed_scale: float = 1.0) -> float:
    """Ground speed (m/s) of ``identity``'s walk, as :mod:`gaitheat.synth.dataset` moves its walkers."""
    leg = identity.leg_ratio * identity.height
    return float(identity.cadence * 4 * leg * np.sin(identity.stride * speed_scale) * 0.9)


def _scale_for(identity: W.Identity, speed: float) -> float:
    """The stride multiplier (clipped to 0.8-1.25) whose natural speed is ``speed``."""
    leg = identity.leg_ratio * identity.height
    s = np.clip(speed / (identity.cadence * 4 * leg * 0.9), -1.0, 1.0)
    return float(np.clip(np.arcsin(s) / identity.stride, 0.8, 1.25))


def plan_scene(kind: str, subjects: list[str], frames: int, seed: int, difficulty: float = 0.5,
               name: str = "") -> CrowdScene:
    """Lay out one scene of ``kind`` with the given people (2-8), from ``seed`` only.

    Walkers meet (cross, pass, draw level) in the middle of the video near the image centre.
    """
    if kind not in SCENE_TYPES:
        raise ValueError(f"scene type must be one of {list(SCENE_TYPES)}, got {kind!r}")
    if not 2 <= len(subjects) <= 8:
        raise ValueError(f"a crowd scene has 2-8 walkers, got {len(subjects)}")
    rng = _seed(seed, "crowd", kind, name or "scene")
    people = [subject_identity(seed, s, difficulty) for s in subjects]
    # mostly across the image (where gait is seen best), sometimes diagonal or frontal
    axis = float(rng.choice([90.0, 90.0, 60.0, 120.0, 30.0, 150.0]) + rng.uniform(-10, 10))
    depth = float(rng.uniform(5.5, 7.0))
    base = float(np.mean([natural_speed(p) for p in people]))
    walkers = []
    for i, (subject, person) in enumerate(zip(subjects, people, strict=True)):
        group, member = divmod(i, 2)
        side = 1.0 if group % 2 == 0 else -1.0  # pairs (groups) alternate direction
        heading = axis
        lateral, along = 0.0, 0.0
        speed = natural_speed(person)
        if kind == "crossing":
            heading = axis + (180.0 if i % 2 else 0.0) + rng.uniform(-25, 25)
            offset = (i - (len(subjects) - 1) / 2) * rng.uniform(0.5, 1.0)
        elif kind == "passing_behind":
            heading = axis + (180.0 if i % 2 else 0.0) + rng.uniform(-8, 8)
            offset = (i - (len(subjects) - 1) / 2) * rng.uniform(1.5, 3.0)
        elif kind == "side_by_side":
            heading = axis + (0.0 if side > 0 else 180.0)
            speed = base * rng.uniform(0.97, 1.03) if member == 0 else speed
            offset = (group - (-(-len(subjects) // 2) - 1) / 2) * 1.6
            lateral = member * rng.uniform(0.3, 1.0)
            along = rng.uniform(-0.15, 0.15)
        else:  # overtaking: same direction, the faster one a little behind at the start
            speed = base * (1.0 + 0.25 * (i - (len(subjects) - 1) / 2) / max(len(subjects) - 1, 1) * 2)
            offset = (i - (len(subjects) - 1) / 2) * rng.uniform(0.5, 1.0)
        walkers.append((subject, person, heading, offset, lateral, along, speed))
    out: list[CrowdWalker] = []
    for i, (subject, person, heading, offset, lateral, along, speed) in enumerate(walkers):
        if kind == "side_by_side" and i % 2 == 1:
            speed = out[-1].speed  # the pair keeps step: same ground speed as its partner
        h = np.deg2rad(heading)
        fwd = np.array([np.sin(h), -np.cos(h)])
        left = np.array([-fwd[1], fwd[0]])
        # offsets spread people in depth (or, for frontal walks, sideways), partners side by side
        spread = np.array([0.0, 1.0]) if abs(fwd[0]) > 0.5 else np.array([1.0, 0.0])
        meet = np.array([0.0, depth]) + offset * spread + lateral * left + along * fwd
        scale = _scale_for(person, speed)
        out.append(CrowdWalker(subject, round(heading % 360.0, 3), (float(meet[0]), float(meet[1])),
                               float(speed), scale))
    return CrowdScene(name=name or f"{kind}-{seed}", kind=kind, walkers=tuple(out),
                      camera_height=float(rng.uniform(0.9, 2.0)), figure_px=float(rng.uniform(0.45, 0.6)),
                      depth=depth, frames=frames, seed=seed, difficulty=difficulty)


@dataclass(frozen=True)
class CrowdTruth:
    """Per-frame ground truth of P people over T frames (rows of P follow ``CrowdScene.walkers``).

    Attributes:
        boxes: (P, T, 4) float32 full body box (x1, y1, x2, y2) inside the frame; NaN when absent.
        visibility: (P, T) float32 share of the body's in-frame pixels the person owns (0 when absent).
        joints: (P, T, 17, 2) float32 COCO-17 joints in image pixels.
        joints_visible: (P, T, 17) bool: joint inside the frame and its pixel shows its own person.
    """

    boxes: np.ndarray
    visibility: np.ndarray
    joints: np.ndarray
    joints_visible: np.ndarray


def render_scene(scene: CrowdScene, size: tuple[int, int] = CROWD_SIZE) -> tuple[np.ndarray, CrowdTruth]:
    """Render ``scene``: frames (T, H, W, 3) uint8 RGB and its :class:`CrowdTruth`."""
    import cv2

    from gaitheat.synth.render import _draw_one  # one z-buffer per person, composited below

    rng = _seed(scene.seed, "crowd-render", scene.name)
    t_count, p_count = scene.frames, len(scene.walkers)
    base = S.sample_recording(rng, "nm-01", size)  # light, background, compression: one per scene
    camera = Camera(focal=scene.figure_px * size[0] * scene.depth / 1.72, height=scene.camera_height, size=size)
    times = (np.arange(t_count) - (t_count - 1) / 2) / FPS
    people, recs, poses, origins = [], [], [], []
    for w in scene.walkers:
        person = subject_identity(scene.seed, w.subject, scene.difficulty)
        rec = S.sample_recording(_seed(scene.seed, "crowd-person", scene.name, w.subject), "nm-01", size)
        phase = rec.phase0 + 2 * np.pi * person.cadence * np.arange(t_count) / FPS
        h = np.deg2rad(w.heading)
        origin = np.asarray(w.meet)[None, :] + times[:, None] * w.speed * np.array([np.sin(h), -np.cos(h)])[None, :]
        people.append((person, phase))
        recs.append(rec)
        poses.append(W.walk(person, phase, w.speed_scale))
        origins.append(origin)
    camera = _fit_camera(camera, np.concatenate([o[:, 1] for o in origins]))
    scene_rec = dataclasses.replace(base, camera=camera)
    bg = S.background(scene_rec)
    view = [f"{w.heading:.3f}" for w in scene.walkers]
    j3 = [S.to_ground(p.joints, v, o) for p, v, o in zip(poses, view, origins, strict=True)]
    extra = [{k: S.to_ground(val, v, np.zeros_like(o) if k.startswith("head_") else o) for k, val in p.extra.items()}
             for p, v, o in zip(poses, view, origins, strict=True)]
    uv = np.stack([camera.project(j)[0] for j in j3]).astype(np.float32)  # (P, T, 17, 2)
    truth = CrowdTruth(np.full((p_count, t_count, 4), np.nan, np.float32), np.zeros((p_count, t_count), np.float32),
                       uv, np.zeros((p_count, t_count, 17), bool))
    noise_rng = np.random.default_rng(rng.integers(2**31))
    frames = np.empty((t_count, *size, 3), np.uint8)
    hh, ww = size
    for t in range(t_count):
        images = np.broadcast_to(bg, (p_count, hh, ww, 3)).copy()
        zbuf = np.full((p_count, hh, ww), np.inf, np.float32)
        for p in range(p_count):
            person, phase = people[p]
            rec = dataclasses.replace(recs[p], camera=camera)
            caps = S.body_capsules(j3[p][t], {k: v[t] for k, v in extra[p].items()}, person, rec, "nm", phase[t])
            for cap in caps:
                _draw_one(images[p], zbuf[p], cap, camera, scene_rec.light, scene_rec.ambient)
        owner = np.argmin(zbuf, axis=0)
        covered = np.isfinite(zbuf.min(axis=0))
        img = np.where(covered[..., None], np.take_along_axis(images, owner[None, ..., None], 0)[0], bg)
        _truth_of_frame(truth, t, zbuf, owner, covered)
        frames[t] = _finish(img.astype(np.float32), scene_rec, noise_rng, cv2)
    return frames, truth


def _fit_camera(camera: Camera, depths: np.ndarray, tallest: float = 2.0) -> Camera:
    """Shorten the focal length, if needed, so everyone (up to ``tallest`` m) stays inside the frame's
    height at their nearest depth; unlike :func:`gaitheat.synth.scene.fit_camera` the camera may be
    above the people's heads."""
    h = camera.size[0]
    near = float(np.min(depths)) - 0.3
    focal = min(camera.focal, (h / 2 - 3) * near / camera.height)
    if tallest > camera.height:
        focal = min(focal, (h / 2 - 3) * near / (tallest - camera.height))
    return dataclasses.replace(camera, focal=focal)


def _truth_of_frame(truth: CrowdTruth, t: int, zbuf: np.ndarray, owner: np.ndarray, covered: np.ndarray) -> None:
    """Fill frame ``t`` of ``truth`` from per-person z-buffers (P, H, W) and the pixel owners (H, W)."""
    hh, ww = owner.shape
    for p in range(zbuf.shape[0]):
        mask = np.isfinite(zbuf[p])
        area = int(mask.sum())
        if area < MIN_PIXELS:
            continue
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        truth.boxes[p, t] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        truth.visibility[p, t] = float((mask & covered & (owner == p)).sum()) / area
        xy = np.round(truth.joints[p, t]).astype(int)
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < ww) & (xy[:, 1] >= 0) & (xy[:, 1] < hh)
        x, y = np.clip(xy[:, 0], 0, ww - 1), np.clip(xy[:, 1], 0, hh - 1)
        truth.joints_visible[p, t] = inside & (owner[y, x] == p) & covered[y, x]


def mot_rows(truth: CrowdTruth) -> np.ndarray:
    """Ground truth as MOTChallenge rows (N, 9): frame, id (both 1-based), x, y, w, h, flag, class, visibility."""
    rows = []
    for p in range(truth.boxes.shape[0]):
        for t in range(truth.boxes.shape[1]):
            b = truth.boxes[p, t]
            if np.isnan(b[0]):
                continue
            vis = float(truth.visibility[p, t])
            rows.append([t + 1, p + 1, b[0], b[1], b[2] - b[0], b[3] - b[1], int(vis >= MIN_VISIBILITY), 1, vis])
    out = np.array(rows, np.float64).reshape(-1, 9)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def scene_paths(out: str | Path, name: str) -> dict[str, Path]:
    """Paths of one scene's files (``video``, ``json``, ``gt``, ``seqinfo``)."""
    folder = Path(out) / name
    return {"video": folder / f"{name}.avi", "json": folder / f"{name}.json", "gt": folder / "gt" / "gt.txt",
            "seqinfo": folder / "seqinfo.ini"}


def format_mot(rows: np.ndarray) -> str:
    """MOTChallenge text: integers for frame/id/flag/class, two decimals for boxes, 4 for visibility."""
    lines = [f"{int(r[0])},{int(r[1])},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.2f},{int(r[6])},{int(r[7])},{r[8]:.4f}"
             for r in rows]
    return "\n".join(lines) + ("\n" if lines else "")


def write_scene(out: str | Path, scene: CrowdScene, size: tuple[int, int] = CROWD_SIZE) -> dict[str, Path]:
    """Render ``scene`` and write its video, JSON and MOTChallenge ground truth; returns the paths.

    The JSON holds ``scene``/``type``/``fps``/``size``/``seed``, ``camera_height``, ``people`` (id, subject,
    heading, speed, identity) and the :class:`CrowdTruth` arrays as lists (``boxes`` with null when absent).
    """
    frames, truth = render_scene(scene, size)
    paths = scene_paths(out, scene.name)
    people = [{"id": i + 1, "subject": w.subject, "heading": w.heading, "speed": round(w.speed, 4),
               "identity": W.identity_to_dict(subject_identity(scene.seed, w.subject, scene.difficulty))}
              for i, w in enumerate(scene.walkers)]
    boxes = np.round(truth.boxes.astype(np.float64), 2)
    record: dict[str, Any] = {
        "scene": scene.name, "type": scene.kind, "fps": FPS, "size": list(size), "seed": scene.seed,
        "difficulty": scene.difficulty, "camera_height": round(scene.camera_height, 4), "people": people,
        "boxes": [[None if np.isnan(b[0]) else b.tolist() for b in per] for per in boxes],
        "visibility": np.round(truth.visibility, 4).tolist(), "joints": np.round(truth.joints, 2).tolist(),
        "joints_visible": truth.joints_visible.astype(int).tolist(),
    }  # fmt: skip
    ini = (f"[Sequence]\nname={scene.name}\nimDir=img1\nframeRate={int(FPS)}\nseqLength={scene.frames}\n"
           f"imWidth={size[1]}\nimHeight={size[0]}\nimExt=.jpg\n")
    paths["gt"].parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths["json"], json.dumps(record, separators=(",", ":")))
    atomic_write_text(paths["gt"], format_mot(mot_rows(truth)))
    atomic_write_text(paths["seqinfo"], ini)
    write_video(paths["video"], frames)  # last: a scene with its video is finished
    return paths


def load_crowd_truth(path: str | Path) -> tuple[dict[str, Any], CrowdTruth]:
    """Read a scene's JSON (or the scene folder / video next to it): (record, :class:`CrowdTruth`)."""
    p = Path(path)
    if p.is_dir():
        p = p / f"{p.name}.json"
    elif p.suffix != ".json":
        p = p.with_suffix(".json")
    try:
        record = json.loads(p.read_text())
        boxes = np.array([[[np.nan] * 4 if b is None else b for b in per] for per in record["boxes"]], np.float32)
        truth = CrowdTruth(boxes, np.asarray(record["visibility"], np.float32),
                           np.asarray(record["joints"], np.float32), np.asarray(record["joints_visible"], bool))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{p}: not a readable crowd ground-truth file ({exc})") from exc
    return record, truth


def crowd_plan(scenes_per_type: int, kinds: tuple[str, ...] | list[str], walkers: tuple[int, int],
               subjects: int | list[str], frames: int, seed: int, difficulty: float) -> list[CrowdScene]:
    """The scenes of ``write_crowds``: per type, ``scenes_per_type`` scenes of walkers[0]..walkers[1] people
    drawn from ``subjects`` (a count means ``001`` .. ``subjects``, the names ``write_dataset`` gives)."""
    names = [f"{i:03d}" for i in range(1, subjects + 1)] if isinstance(subjects, int) else list(subjects)
    plan = []
    for kind in kinds:
        for k in range(scenes_per_type):
            rng = _seed(seed, "crowd-cast", kind, k)
            count = int(rng.integers(walkers[0], walkers[1] + 1))
            if count > len(names):
                raise ValueError(f"a scene of {count} walkers needs at least {count} subjects, got {len(names)}")
            cast = [names[i] for i in sorted(rng.choice(len(names), count, replace=False))]
            plan.append(plan_scene(kind, cast, frames, seed, difficulty, name=f"{kind}-{k:03d}"))
    return plan


def write_crowds(out: str | Path, scenes_per_type: int = 2, kinds: tuple[str, ...] | list[str] = SCENE_TYPES,
                 walkers: tuple[int, int] = (2, 3), subjects: int | list[str] = 8, frames: int = 60, seed: int = 0,
                 difficulty: float = 0.5, size: tuple[int, int] = CROWD_SIZE,
                 progress: bool = True) -> dict[str, int]:
    """Render crowd scenes (see :func:`crowd_plan`); finished scenes (video present) are skipped."""
    from gaitheat.progress import track

    if not 2 <= walkers[0] <= walkers[1] <= 8:
        raise ValueError(f"walkers per scene must be within 2-8, got {walkers[0]}-{walkers[1]}")
    plan = crowd_plan(scenes_per_type, kinds, walkers, subjects, frames, seed, difficulty)
    counts = {"written": 0, "skipped": 0}
    for scene in track(plan, desc="crowd", unit="scene", enabled=progress):
        if scene_paths(out, scene.name)["video"].exists():
            counts["skipped"] += 1
            continue
        write_scene(out, scene, size)
        counts["written"] += 1
    return counts
