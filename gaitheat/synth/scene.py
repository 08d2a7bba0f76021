"""Per-recording nuisance (clothes, light, camera, background, path) and the body's capsules.

Nothing here is identity: a :class:`Recording` is drawn afresh for every sequence, so colours,
lighting, figure size, start position and small speed changes never tell people apart. The
covariates follow CASIA-B: ``nm`` normal, ``bg`` a bag (on a shoulder strap or in a hand, swinging),
``cl`` a coat (wider torso and upper legs, long sleeves).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from gaitheat.synth import walker as W
from gaitheat.synth.render import Camera, Capsule

CONDITIONS = tuple([f"nm-{i:02d}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"])
VIEWS = tuple(f"{a:03d}" for a in range(0, 181, 18))
COVARIATES = ("nm", "bg", "cl")


def covariate_of(condition: str) -> str:
    """``"bg-02"`` -> ``"bg"``; raises ValueError for names outside CASIA-B's nm/bg/cl."""
    cov = condition.split("-", 1)[0]
    if cov not in COVARIATES:
        raise ValueError(f"condition {condition!r}: expected nm-XX, bg-XX or cl-XX")
    return cov


@dataclass(frozen=True)
class Recording:
    """Everything about one recording that is not the person.

    Attributes:
        colours: name -> (3,) RGB in [0, 1] for skin, hair, shirt, trousers, shoes, coat, bag.
        light: (3,) unit vector towards the light in camera axes.
        ambient: ambient share of the brightness.
        camera: the pin-hole camera.
        distance: depth of the walking path's midpoint in metres.
        lateral: sideways offset of that midpoint in metres.
        start: offset of the start along the path in metres.
        speed_scale: stride multiplier (small per-recording change of speed).
        phase0: gait phase at the first frame.
        quality: JPEG quality applied to every frame.
        blur: Gaussian blur sigma in pixels.
        noise: sensor noise sigma in 8-bit levels.
        bag: "" (none), "shoulder" or "hand".
        bag_side: +1 left, -1 right.
        long_sleeves: shirt sleeves reach the wrists.
        bg_seed: seed of the background texture.
    """

    colours: dict[str, np.ndarray]
    light: np.ndarray
    ambient: float
    camera: Camera
    distance: float
    lateral: float
    start: float
    speed_scale: float
    phase0: float
    quality: int
    blur: float
    noise: float
    bag: str
    bag_side: float
    long_sleeves: bool
    bg_seed: int


def _colour(rng: np.random.Generator, lo: float = 0.1, hi: float = 0.9) -> np.ndarray:
    return rng.uniform(lo, hi, 3)


def sample_recording(rng: np.random.Generator, condition: str, size: tuple[int, int]) -> Recording:
    """Draw the nuisance of one recording.

    Args:
        rng: the only source of randomness.
        condition: CASIA-B condition name (``nm-01`` ... ``cl-02``), sets bag/coat.
        size: frame (H, W) in pixels.
    """
    cov = covariate_of(condition)
    skin = np.array([0.95, 0.76, 0.62]) * rng.uniform(0.45, 1.05)
    colours = {
        "skin": np.clip(skin, 0, 1), "hair": _colour(rng, 0.02, 0.45), "shirt": _colour(rng),
        "trousers": _colour(rng, 0.05, 0.7), "shoes": _colour(rng, 0.02, 0.4), "coat": _colour(rng, 0.1, 0.7),
        "bag": _colour(rng, 0.05, 0.6),
    }  # fmt: skip
    light = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.9, -0.3), rng.uniform(-0.9, -0.4)])
    # draw every value whatever the condition, so nm/bg/cl recordings with one seed differ only by
    # the covariate itself
    bag_kind, bag_side, sleeves = rng.random(), rng.random(), rng.random()
    h, _ = size
    # Figures of 55-70% of the frame height (a 1.72 m person at the path's midpoint): smaller ones
    # lose too much to the upscaled, compressed crop (median joint error 1.6 vs 1.2 cells).
    figure_px = rng.uniform(0.55, 0.7) * h
    distance = rng.uniform(5.0, 7.0)
    camera = Camera(focal=figure_px * distance / 1.72, height=rng.uniform(0.8, 1.1), size=size)
    return Recording(
        colours=colours, light=light / np.linalg.norm(light), ambient=float(rng.uniform(0.25, 0.45)),
        camera=camera, distance=distance, lateral=float(rng.uniform(-0.3, 0.3)),
        start=float(rng.uniform(-0.25, 0.25)), speed_scale=float(rng.uniform(0.94, 1.06)),
        phase0=float(rng.uniform(0, 2 * np.pi)), quality=int(rng.integers(30, 75)),
        blur=float(rng.uniform(0.4, 0.9)), noise=float(rng.uniform(1.0, 3.0)),
        bag=("shoulder" if bag_kind < 0.5 else "hand") if cov == "bg" else "",
        bag_side=1.0 if bag_side < 0.5 else -1.0, long_sleeves=bool(sleeves < 0.4),
        bg_seed=int(rng.integers(2**31)),
    )


def background(rec: Recording) -> np.ndarray:
    """A textured wall and tiled floor as seen by ``rec.camera``: (H, W, 3) float32 RGB in [0, 1]."""
    import cv2

    rng = np.random.default_rng(rec.bg_seed)
    h, w = rec.camera.size
    wall_depth = rec.distance + rng.uniform(2.0, 5.0)
    # low-frequency blotches plus fine grain, on a random base colour
    blotch = cv2.resize(rng.uniform(-1, 1, (6, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0, 1, (h, w)).astype(np.float32)
    wall = _colour(rng, 0.3, 0.85)[None, None, :] * (1 + 0.12 * blotch + 0.03 * grain)[..., None]
    floor_col = _colour(rng, 0.2, 0.7)
    cam = rec.camera
    rows = np.arange(h, dtype=np.float32)[:, None] - (h - 1) / 2
    cols = np.arange(w, dtype=np.float32)[None, :] - (w - 1) / 2
    depth = np.where(rows > 0, cam.focal * cam.height / np.maximum(rows, 1e-3), 1e6)
    gx = cols * depth / cam.focal
    tile = rng.uniform(0.4, 0.9)
    checker = ((np.floor(gx / tile) + np.floor(depth / tile)) % 2).astype(np.float32)
    floor = floor_col[None, None, :] * (0.85 + 0.15 * checker + 0.03 * grain)[..., None]
    is_floor = (depth < wall_depth)[..., None]
    return np.clip(np.where(is_floor, floor, wall), 0, 1).astype(np.float32)


def path_positions(rec: Recording, view: str, speed: float, frames: int, fps: float) -> np.ndarray:
    """Ground positions (T, 2) of the body origin for a walk seen from ``view`` degrees.

    View 000 walks towards the camera, 090 across the image left to right, 180 away from it.
    """
    heading = _heading(view)
    length = speed * frames / fps
    centre = np.array([rec.lateral, rec.distance])
    s = rec.start - length / 2 + speed * np.arange(frames) / fps
    return centre[None, :] + s[:, None] * heading[None, :]


def fit_camera(camera: Camera, depths: np.ndarray, tallest: float = 2.0) -> Camera:
    """Shorten the focal length, if needed, so a person up to ``tallest`` metres stays in frame.

    Args:
        camera: the recording's camera.
        depths: (T,) depths of the walker along the path (frontal views come close to the camera).
        tallest: height in metres to keep inside the frame, head to toe.
    """
    h = camera.size[0]
    near = float(np.min(depths)) - 0.3  # feet reach forward of the body origin
    focal = min(camera.focal, (h / 2 - 3) * near / camera.height, (h / 2 - 3) * near / (tallest - camera.height))
    return dataclasses.replace(camera, focal=focal)


def _heading(view: str) -> np.ndarray:
    a = np.deg2rad(float(view))
    return np.array([np.sin(a), -np.cos(a)])


def to_ground(points: np.ndarray, view: str, origin: np.ndarray) -> np.ndarray:
    """Body-frame points (T, ..., 3) to the ground frame, for body origins (T, 2)."""
    f = _heading(view)
    left = np.array([-f[1], f[0]])
    out = np.empty_like(points)
    shape = (-1,) + (1,) * (points.ndim - 2)
    out[..., 0] = origin[:, 0].reshape(shape) + points[..., 0] * f[0] + points[..., 1] * left[0]
    out[..., 1] = origin[:, 1].reshape(shape) + points[..., 0] * f[1] + points[..., 1] * left[1]
    out[..., 2] = points[..., 2]
    return out


def body_capsules(j: np.ndarray, ex: dict[str, np.ndarray], person: W.Identity, rec: Recording, cov: str,
                  phase: float) -> list[Capsule]:
    """Capsules of one frame, ground frame.

    Args:
        j: (J, 3) COCO-17 joints in the ground frame.
        ex: extra named (3,) points (neck, pelvis, head, head_fwd, head_up, toes, hands), ground frame.
        person: body proportions (radii scale with ``mass`` and height).
        rec: colours, bag and sleeves of this recording.
        cov: ``nm``, ``bg`` or ``cl``.
        phase: gait phase of this frame (the bag swings with it).
    """
    c = rec.colours
    s = person.mass * person.height / 1.72
    coat = cov == "cl"
    top = c["coat"] if coat else c["shirt"]
    arm_c = top if (coat or rec.long_sleeves) else c["skin"]
    wide = 1.3 if coat else 1.0
    caps: list[Capsule] = []

    def add(a: np.ndarray, b: np.ndarray, ra: float, rb: float, col: np.ndarray) -> None:
        caps.append(Capsule(a, b, ra, rb, col))

    pelvis, neck = ex["pelvis"], ex["neck"]
    mid_hip = (j[W.L_HIP] + j[W.R_HIP]) / 2
    for hip, kne, ank, toe in ((W.L_HIP, W.L_KNE, W.L_ANK, "l_toe"), (W.R_HIP, W.R_KNE, W.R_ANK, "r_toe")):
        add(j[hip], j[kne], 0.075 * s, 0.052 * s, c["trousers"])
        add(j[kne], j[ank], 0.05 * s, 0.038 * s, c["trousers"])
        # the shoe sits below the ankle joint, as on a real foot
        drop = np.array([0.0, 0.0, -0.04 * s])
        heel = j[ank] - 0.3 * (ex[toe] - j[ank]) + drop
        add(heel, ex[toe] + drop, 0.038, 0.032, c["shoes"])
        add(j[ank], j[ank] + drop, 0.04 * s, 0.038, c["shoes"])
        if coat:  # coat skirt over the upper legs
            add(j[hip], j[hip] + 0.5 * (j[kne] - j[hip]), 0.1 * s, 0.095 * s, top)
    add(j[W.L_HIP], j[W.R_HIP], 0.1 * s * wide, 0.1 * s * wide, top if coat else c["trousers"])
    for sho, hip in ((W.L_SHO, W.L_HIP), (W.R_SHO, W.R_HIP)):
        inner = j[sho] + 0.25 * (neck - j[sho])
        add(j[hip] + 0.3 * (mid_hip - j[hip]), inner, 0.08 * s * wide, 0.07 * s * wide, top)
    add(pelvis + 0.35 * (neck - pelvis), neck - 0.12 * (neck - pelvis), 0.11 * s * wide, 0.1 * s * wide, top)
    head = ex["head"]
    add(neck, head, 0.045 * s, 0.045 * s, c["skin"])
    r = person.head_radius
    add(head, head, r, r, c["skin"])
    hair = head - 0.22 * r * ex["head_fwd"] + 0.14 * r * ex["head_up"]
    add(hair, hair, 0.98 * r, 0.98 * r, c["hair"])
    caps.extend(_face(j, head, ex["head_fwd"], ex["head_up"], r, c["skin"]))
    for sho, elb, wri, hand in ((W.L_SHO, W.L_ELB, W.L_WRI, "l_hand"), (W.R_SHO, W.R_ELB, W.R_WRI, "r_hand")):
        add(j[sho], j[elb], 0.052 * s * wide, 0.044 * s * wide, top)
        add(j[elb], j[wri], 0.042 * s * wide, 0.034 * s, arm_c)
        add(ex[hand], ex[hand], 0.04, 0.04, c["skin"])
    if cov == "bg":
        caps.extend(_bag(j, ex, rec, phase))
    return caps


def _face(j: np.ndarray, head: np.ndarray, fwd: np.ndarray, up: np.ndarray, r: float,
          skin: np.ndarray) -> list[Capsule]:
    """Eyes, nose, mouth and ears: the cues that tell a face from the back of a head."""
    dark = np.array([0.08, 0.06, 0.06])
    caps = []
    for eye in (W.L_EYE, W.R_EYE):
        d = j[eye] - head
        pos = head + 0.9 * r * d / np.linalg.norm(d)
        caps.append(Capsule(pos, pos, 0.17 * r, 0.17 * r, dark))
    nose = head + r * (0.95 * fwd - 0.25 * up)
    caps.append(Capsule(nose, nose, 0.16 * r, 0.16 * r, skin * 0.9))
    left = j[W.L_EAR] - j[W.R_EAR]
    left /= np.linalg.norm(left) + 1e-9
    mouth = head + r * (0.8 * fwd - 0.52 * up)
    caps.append(Capsule(mouth - 0.25 * r * left, mouth + 0.25 * r * left, 0.08 * r, 0.08 * r,
                        np.array([0.45, 0.12, 0.12])))
    caps.extend(Capsule(j[ear], j[ear], 0.2 * r, 0.2 * r, skin) for ear in (W.L_EAR, W.R_EAR))
    return caps


def _bag(j: np.ndarray, ex: dict[str, np.ndarray], rec: Recording, phase: float) -> list[Capsule]:
    """A bag that swings with the walk: hanging from one hand, or on a strap across the body."""
    col = rec.colours["bag"]
    left = j[W.L_HIP] - j[W.R_HIP]
    left /= np.linalg.norm(left) + 1e-9
    fwd = ex["neck"] - ex["pelvis"]
    fwd = fwd - fwd @ left * left
    fwd[2] = 0.0
    nf = np.linalg.norm(fwd)
    fwd = fwd / nf if nf > 1e-6 else np.cross(left, np.array([0.0, 0.0, 1.0]))
    swing = 0.06 * np.sin(2 * phase)
    if rec.bag == "hand":
        wri = j[W.L_WRI] if rec.bag_side > 0 else j[W.R_WRI]
        top = wri + np.array([0.0, 0.0, -0.04]) + rec.bag_side * 0.03 * left
        bottom = top + np.array([0.0, 0.0, -0.25]) + swing * fwd
        return [Capsule(top, bottom, 0.06, 0.08, col)]
    # shoulder bag: strap from one shoulder to the bag at the other hip, bag against the thigh
    sho = j[W.L_SHO] if rec.bag_side > 0 else j[W.R_SHO]
    hip = j[W.R_HIP] if rec.bag_side > 0 else j[W.L_HIP]
    centre = hip - rec.bag_side * 0.13 * left + swing * fwd + np.array([0.0, 0.0, 0.02])
    return [
        Capsule(sho, centre, 0.015, 0.015, col),
        Capsule(centre - 0.08 * fwd, centre + 0.08 * fwd, 0.085, 0.085, col),
    ]
