"""A parametric walker: identity (body and gait) parameters and a 3-D COCO-17 skeleton over time.

Body frame: x forward (walking direction), y to the person's left, z up, metres, origin on the
ground below the pelvis at t = 0. The gait cycle is driven by one phase per frame; the right leg
leads at phase 0 and the left leg is half a cycle behind. Joint angles are smooth periodic
functions of phase whose amplitudes, offsets and left/right asymmetries are the identity.

Identity lives only in :class:`Identity` (body proportions and motion). Everything that varies
between recordings of the same person (colours, lighting, camera, start position, small speed
changes) lives in :mod:`gaitheat.synth.scene`, so a network can only tell people apart by how they
are built and how they walk.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

NUM_JOINTS = 17
# COCO-17 indices used below
NOSE, L_EYE, R_EYE, L_EAR, R_EAR = 0, 1, 2, 3, 4
L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI = 5, 6, 7, 8, 9, 10
L_HIP, R_HIP, L_KNE, R_KNE, L_ANK, R_ANK = 11, 12, 13, 14, 15, 16


@dataclass(frozen=True)
class Identity:
    """Everything that makes one synthetic person recognisable: body and walk.

    Lengths are in metres, angles in radians, ``cadence`` in gait cycles per second (one cycle is
    two steps). ``*_asym`` values are signed relative differences between the left and right side.
    """

    height: float = 1.72
    leg_ratio: float = 0.53  # hip height / height
    thigh_ratio: float = 0.50  # thigh / (thigh + shank)
    arm_ratio: float = 0.335  # shoulder-to-wrist length / height
    upper_arm_ratio: float = 0.56  # upper arm / arm
    shoulder_width: float = 0.40
    hip_width: float = 0.30
    neck_ratio: float = 0.05  # neck length / height
    head_radius: float = 0.105
    mass: float = 1.0  # limb and torso thickness multiplier
    stride: float = 0.40  # hip flexion amplitude (rad); drives stride length
    cadence: float = 0.92
    arm_swing: float = 0.35  # shoulder flexion amplitude (rad)
    elbow_flex: float = 0.35  # mean elbow flexion (rad)
    knee_flex: float = 1.05  # peak swing knee flexion (rad)
    lean: float = 0.06  # forward torso pitch (rad)
    head_bob: float = 0.015  # extra vertical pelvis oscillation (m), twice per cycle
    sway: float = 0.025  # lateral pelvis oscillation (m), once per cycle
    pelvis_rot: float = 0.10  # pelvis yaw amplitude (rad)
    arm_abduction: float = 0.12  # arms held away from the body (rad)
    toe_out: float = 0.10  # feet turned outwards (rad)
    stride_asym: float = 0.0
    arm_asym: float = 0.0
    phase_asym: float = 0.0  # left leg phase lag beyond half a cycle (rad)
    head_tilt: float = 0.0  # head pitch (rad), positive looks down


# (mean, spread) of each identity parameter at difficulty 0; spreads shrink as difficulty rises.
_POPULATION: dict[str, tuple[float, float]] = {
    "height": (1.72, 0.10),
    "leg_ratio": (0.53, 0.025),
    "thigh_ratio": (0.50, 0.025),
    "arm_ratio": (0.335, 0.017),
    "upper_arm_ratio": (0.56, 0.03),
    "shoulder_width": (0.40, 0.045),
    "hip_width": (0.30, 0.035),
    "neck_ratio": (0.05, 0.012),
    "head_radius": (0.105, 0.01),
    "mass": (1.0, 0.22),
    "stride": (0.40, 0.07),
    "cadence": (0.92, 0.08),
    "arm_swing": (0.35, 0.14),
    "elbow_flex": (0.35, 0.2),
    "knee_flex": (1.05, 0.15),
    "lean": (0.06, 0.06),
    "head_bob": (0.015, 0.012),
    "sway": (0.025, 0.015),
    "pelvis_rot": (0.10, 0.05),
    "arm_abduction": (0.12, 0.06),
    "toe_out": (0.10, 0.08),
    "stride_asym": (0.0, 0.08),
    "arm_asym": (0.0, 0.2),
    "phase_asym": (0.0, 0.12),
    "head_tilt": (0.0, 0.12),
}
_POSITIVE = {"height", "mass", "stride", "cadence", "arm_swing", "knee_flex", "head_bob", "sway", "pelvis_rot"}


def sample_identity(rng: np.random.Generator, difficulty: float = 0.5) -> Identity:
    """Draw one person from the synthetic population.

    Args:
        rng: the only source of randomness.
        difficulty: 0 (people differ a lot) to 1 (people are close to the population mean: hard).
            The spread of every parameter is scaled by ``1 - 0.85 * difficulty``; per-recording
            nuisance does not shrink, so higher difficulty makes identities harder to separate.
    Returns:
        an :class:`Identity`.
    """
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    scale = 1.0 - 0.85 * difficulty
    values: dict[str, float] = {}
    for name, (mean, spread) in _POPULATION.items():
        # truncated at 2.5 sigma so no one is grotesque
        z = float(np.clip(rng.standard_normal(), -2.5, 2.5))
        v = mean + z * spread * scale
        values[name] = max(v, 0.2 * mean) if name in _POSITIVE else v
    return Identity(**values)


def identity_to_dict(identity: Identity) -> dict[str, float]:
    """Plain-data form of an identity (for JSON ground truth)."""
    return {k: round(float(v), 6) for k, v in dataclasses.asdict(identity).items()}


@dataclass(frozen=True)
class Pose3D:
    """One walking sequence in the body frame.

    Attributes:
        joints: (T, J, 3) COCO-17 joint centres, metres (J = 17).
        extra: named (T, 3) points the renderer needs (neck, pelvis, head, toes, hands).
    """

    joints: np.ndarray
    extra: dict[str, np.ndarray]


def _leg(hip: np.ndarray, flex: np.ndarray, knee: np.ndarray, thigh: float, shank: float,
         foot: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sagittal-plane leg chain. hip (T, 3); flex, knee (T,) radians. Returns knee, ankle, toe (T, 3)."""
    fwd = np.stack([np.sin(flex), np.zeros_like(flex), -np.cos(flex)], axis=1)
    k = hip + thigh * fwd
    sh = flex - knee
    ank = k + shank * np.stack([np.sin(sh), np.zeros_like(sh), -np.cos(sh)], axis=1)
    # the foot stays close to level: it pitches up a little at heel strike, down at push-off
    pitch = 0.35 * np.clip(sh, -0.6, 0.6)
    toe = ank + foot * np.stack([np.cos(pitch), np.zeros_like(pitch), np.sin(pitch)], axis=1)
    return k, ank, toe


def _arm(sho: np.ndarray, flex: np.ndarray, elbow: np.ndarray, abduct: float, side: float, upper: float,
         fore: float) -> tuple[np.ndarray, np.ndarray]:
    """Arm chain from the shoulder (T, 3); side +1 left, -1 right. Returns elbow, wrist (T, 3)."""
    out = side * np.sin(abduct)
    d1 = np.stack([np.sin(flex), np.full_like(flex, out), -np.cos(flex)], axis=1)
    d1 /= np.linalg.norm(d1, axis=1, keepdims=True)
    e = sho + upper * d1
    a2 = flex + elbow
    d2 = np.stack([np.sin(a2), np.full_like(a2, out * 0.5), -np.cos(a2)], axis=1)
    d2 /= np.linalg.norm(d2, axis=1, keepdims=True)
    return e, e + fore * d2


def _yaw(points: np.ndarray, angle: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Rotate (T, 3) points about the vertical axis through centre (T, 3) by angle (T,)."""
    c, s = np.cos(angle), np.sin(angle)
    d = points - centre
    return centre + np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1], d[:, 2]], axis=1)


def walk(identity: Identity, phase: np.ndarray, speed_scale: float = 1.0,
         kinematics: Kinematics | None = None) -> Pose3D:
    """Skeleton of ``identity`` at the given gait phases.

    Args:
        identity: body and walk parameters.
        phase: (T,) gait phase in radians (2 pi per cycle), one per frame.
        speed_scale: per-recording stride multiplier (nuisance, close to 1).
        kinematics: the person's hip, knee and ankle curves (:func:`sample_kinematics`); they then
            drive the legs instead of the parametric ``stride`` / ``knee_flex`` model (None: parametric,
            what the demo renders).
    Returns:
        :class:`Pose3D` in the body frame; forward progression is not applied (see ``advance``).
    """
    p = identity
    h = p.height
    leg = p.leg_ratio * h
    ankle_h = 0.045 * h
    thigh, shank = (leg - ankle_h) * p.thigh_ratio, (leg - ankle_h) * (1 - p.thigh_ratio)
    foot = 0.15 * h / 1.72
    arm = p.arm_ratio * h
    upper, fore = arm * p.upper_arm_ratio, arm * (1 - p.upper_arm_ratio)
    torso = h - leg - p.neck_ratio * h - 2 * p.head_radius

    joints = np.zeros((phase.shape[0], NUM_JOINTS, 3))
    extra: dict[str, np.ndarray] = {}
    amp = p.stride * speed_scale
    legs: dict[int, tuple[np.ndarray, ...]] = {}
    if kinematics is not None:
        legs, lowest = _normative_legs(p, kinematics, phase, speed_scale, thigh, shank, foot)
    else:
        for side, hip_i, ph, amp_side in ((1.0, L_HIP, phase + np.pi + p.phase_asym, amp * (1 + p.stride_asym / 2)),
                                          (-1.0, R_HIP, phase, amp * (1 - p.stride_asym / 2))):
            flex = amp_side * np.sin(ph) + 0.08
            # knee: large flexion in swing (hip moving forward), a small bump after heel strike
            knee = (p.knee_flex * np.clip(np.cos(ph + 0.5), 0, None) ** 2
                    + 0.15 * np.clip(np.sin(ph - 1.2), 0, None) + 0.05)
            hip = np.zeros((phase.shape[0], 3))
            hip[:, 1] = side * p.hip_width / 2
            legs[hip_i] = (hip, *_leg(hip, flex, knee, thigh, shank, foot))
        # stand on the lower foot: the pelvis height is whatever keeps the stance ankle at ankle height
        lowest = np.minimum(legs[L_HIP][2][:, 2], legs[R_HIP][2][:, 2])
    lift = ankle_h - lowest + p.head_bob * np.cos(2 * phase)
    sway = p.sway * np.sin(phase)
    rot = p.pelvis_rot * np.sin(phase)
    pelvis = np.stack([np.zeros_like(phase), sway, lift], axis=1)
    zero = np.zeros((phase.shape[0], 3))
    for hip_i, knee_i, ank_i, toe_name in ((L_HIP, L_KNE, L_ANK, "l_toe"), (R_HIP, R_KNE, R_ANK, "r_toe")):
        hip, k, a, t = legs[hip_i]
        side = 1.0 if hip_i == L_HIP else -1.0
        t = _yaw(t, np.full_like(rot, side * p.toe_out), a)
        for idx, pt in ((hip_i, hip), (knee_i, k), (ank_i, a)):
            joints[:, idx] = _yaw(pt, rot, zero) + pelvis
        extra[toe_name] = _yaw(t, rot, zero) + pelvis
    lean = p.lean + 0.02 * np.cos(2 * phase)
    neck = pelvis + torso * np.stack([np.sin(lean), np.zeros_like(lean), np.cos(lean)], axis=1)
    for side, sho_i, elb_i, wri_i, ph, sw in ((1.0, L_SHO, L_ELB, L_WRI, phase, 1 + p.arm_asym / 2),
                                              (-1.0, R_SHO, R_ELB, R_WRI, phase + np.pi, 1 - p.arm_asym / 2)):
        sho = neck + np.array([0.0, side * p.shoulder_width / 2, -0.04 * h / 1.72])
        sho = _yaw(sho, -0.6 * rot, neck)
        flex = p.arm_swing * speed_scale * sw * np.sin(ph) - 0.05
        elbow = p.elbow_flex + 0.25 * p.arm_swing * (1 + np.sin(ph))
        e, w = _arm(sho, flex, elbow, p.arm_abduction, side, upper, fore)
        joints[:, sho_i], joints[:, elb_i], joints[:, wri_i] = sho, e, w
        extra["l_hand" if side > 0 else "r_hand"] = w + 0.035 * (w - e) / np.linalg.norm(w - e, axis=1, keepdims=True)
    _head(joints, extra, neck, p)
    extra["neck"], extra["pelvis"] = neck, pelvis
    return Pose3D(joints=joints, extra=extra)


def _head(joints: np.ndarray, extra: dict[str, np.ndarray], neck: np.ndarray, p: Identity) -> None:
    """Head centre, face points and ears from the neck (T, 3); fills joints 0-4 in place."""
    r = p.head_radius
    centre = neck + np.array([0.01, 0.0, p.neck_ratio * p.height + r * 0.85])
    pitch = p.head_tilt
    fwd = np.array([np.cos(pitch), 0.0, -np.sin(pitch)])
    up = np.array([np.sin(pitch), 0.0, np.cos(pitch)])
    left = np.array([0.0, 1.0, 0.0])
    joints[:, NOSE] = centre + r * (0.98 * fwd - 0.25 * up)
    joints[:, L_EYE] = centre + r * (0.82 * fwd + 0.12 * up + 0.36 * left)
    joints[:, R_EYE] = centre + r * (0.82 * fwd + 0.12 * up - 0.36 * left)
    joints[:, L_EAR] = centre + r * (-0.05 * fwd + 0.98 * left)
    joints[:, R_EAR] = centre + r * (-0.05 * fwd - 0.98 * left)
    extra["head"] = centre
    extra["head_fwd"] = np.broadcast_to(fwd, centre.shape).copy()
    extra["head_up"] = np.broadcast_to(up, centre.shape).copy()


# ------------------------------------------------------------------------------ normative kinematics
#
# Sagittal-plane joint angles over one gait cycle of adults walking at their natural speed, from
# two published normative data sets that agree closely at this level of detail:
#
# * D. A. Winter, "The Biomechanics and Motor Control of Human Gait: Normal, Elderly and
#   Pathological", 2nd ed., University of Waterloo Press, 1991 (ensemble averages and
#   between-subject standard deviations, natural cadence);
# * M. P. Kadaba, H. K. Ramakrishnan, M. E. Wootten, "Measurement of lower extremity kinematics
#   during level walking", Journal of Orthopaedic Research 8(3):383-392, 1990 (40 adults).
#
# The key points below (percent of the cycle from heel strike, degrees; hip and knee flexion
# positive, ankle dorsiflexion positive) were read off the published mean curves at their
# landmarks (heel strike, loading response, mid stance, peak extension, toe off near 60%, peak swing
# flexion): a reading, good to about 2 degrees, not the tabulated data. The curves used are their
# Fourier series truncated at 6 harmonics, derived here (periodic monotone interpolation through the
# key points, then the Fourier integral; /work/notes/pretrain-kinematics-fit.py in the session notes).
NORMATIVE_KEYPOINTS: dict[str, tuple[tuple[float, float], ...]] = {
    "hip": ((0, 30), (10, 27), (20, 20), (30, 11), (40, 2), (50, -7), (55, -10), (60, -7), (65, 0),
            (70, 10), (75, 19), (80, 26), (85, 31), (88, 32), (95, 31)),
    "knee": ((0, 5), (5, 11), (12, 18), (15, 19), (20, 17), (30, 10), (40, 5), (45, 5), (50, 9), (55, 18),
             (60, 35), (65, 51), (70, 60), (73, 62), (80, 55), (85, 40), (90, 22), (95, 8)),
    "ankle": ((0, 0), (5, -4), (8, -6), (12, -2), (20, 4), (30, 7), (40, 9), (45, 10), (50, 8), (55, 0),
              (60, -12), (63, -16), (66, -15), (70, -9), (75, -3), (80, 0), (85, 1), (90, 1), (95, 0)),
}
# (a0, a1, b1, ..., a6, b6) in degrees: angle(c) = a0 + sum_k a_k cos(2 pi k c) + b_k sin(2 pi k c),
# c the fraction of the cycle from heel strike.
NORMATIVE: dict[str, tuple[float, ...]] = {
    "hip": (14.35, 19.38, -0.46, -3.01, -3.58, -0.65, 1.39, -0.05, -0.24, -0.17, 0.20, 0.06, 0.05),
    "knee": (23.41, -0.76, -20.80, -15.32, 6.17, -0.84, 3.71, -1.19, 0.42, -0.02, 0.73, 0.14, -0.14),
    "ankle": (0.29, -1.43, 5.79, 0.82, -6.35, -3.00, 0.63, 2.31, -0.33, -0.13, -0.91, 0.44, 0.46),
}
# Between-person standard deviation (degrees) of each angle at a given point of the cycle, averaged
# over the cycle: the width of the published +-1 SD bands of the same sources (hip about 5, knee
# about 5-6, ankle about 4-5 degrees).
NORMATIVE_SD: dict[str, float] = {"hip": 5.0, "knee": 5.5, "ankle": 4.5}
# How a person's deviation from the mean curve splits its variance over harmonics 0 (a constant
# offset: posture, marker-free "how bent"), 1 (range and timing of the main swing), 2 and 3 (shape):
# offsets and range dominate between-person differences in the published bands.
_DEVIATION_SHARE = (0.40, 0.40, 0.14, 0.06)
JOINTS_SAGITTAL = ("hip", "knee", "ankle")


@dataclass(frozen=True)
class Kinematics:
    """One person's sagittal joint-angle curves: Fourier coefficients in degrees (see :data:`NORMATIVE`).

    Attributes:
        hip, knee, ankle: ``(a0, a1, b1, ..., aK, bK)``; hip and knee flexion and ankle
            dorsiflexion positive, over the cycle fraction ``c`` from this leg's heel strike.
    """

    hip: tuple[float, ...]
    knee: tuple[float, ...]
    ankle: tuple[float, ...]


NORMATIVE_KINEMATICS = Kinematics(**NORMATIVE)


def fourier_curve(coeffs: tuple[float, ...] | np.ndarray, cycle: np.ndarray) -> np.ndarray:
    """Evaluate ``a0 + sum_k a_k cos(2 pi k c) + b_k sin(2 pi k c)`` at cycle fractions ``cycle`` (any shape)."""
    co = np.asarray(coeffs, dtype=np.float64)
    out = np.full(np.shape(cycle), co[0])
    for k in range(1, (co.size - 1) // 2 + 1):
        angle = 2 * np.pi * k * np.asarray(cycle)
        out = out + co[2 * k - 1] * np.cos(angle) + co[2 * k] * np.sin(angle)
    return out


def sample_kinematics(rng: np.random.Generator, difficulty: float = 0.5) -> Kinematics:
    """Draw one person's joint-angle curves: the normative mean plus a smooth personal deviation.

    The deviation of each joint is a random Fourier series of harmonics 0-3 whose coefficients are
    independent normals (truncated at 2.5 sigma), with variance ``share_k * SD**2`` for both the
    cosine and the sine term of harmonic k, so that at difficulty 0 the between-person SD at every
    point of the cycle is the published :data:`NORMATIVE_SD` (cos^2 + sin^2 = 1, and the shares
    sum to 1). The deviation is stationary over the cycle, where the published bands widen a
    little around peak knee flexion and push-off. Like the body parameters,
    the spread shrinks by ``1 - 0.85 * difficulty``.

    Args:
        rng: the only source of randomness.
        difficulty: 0 (people differ as much as the published spread) .. 1 (close to the mean).
    """
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    scale = 1.0 - 0.85 * difficulty
    curves = {}
    for joint in JOINTS_SAGITTAL:
        co = np.array(NORMATIVE[joint], dtype=np.float64)
        sd = NORMATIVE_SD[joint] * scale
        co[0] += sd * np.sqrt(_DEVIATION_SHARE[0]) * float(np.clip(rng.standard_normal(), -2.5, 2.5))
        for k, share in enumerate(_DEVIATION_SHARE[1:], start=1):
            z = np.clip(rng.standard_normal(2), -2.5, 2.5)
            # a cos + b sin with var(a) = var(b) = v has variance v at every point of the cycle
            co[2 * k - 1: 2 * k + 1] += sd * np.sqrt(share) * z
        curves[joint] = tuple(round(float(v), 4) for v in co)
    return Kinematics(**curves)


def kinematics_to_dict(kin: Kinematics) -> dict[str, list[float]]:
    """Plain-data form of a person's curves (for JSON ground truth)."""
    return {k: list(v) for k, v in dataclasses.asdict(kin).items()}


def hip_half_range(kin: Kinematics) -> float:
    """Half the hip's flexion-extension range over the cycle, radians (what drives stride length)."""
    hip = fourier_curve(kin.hip, np.arange(200) / 200)
    return float(np.deg2rad(hip.max() - hip.min()) / 2)


def _hip_peak_fraction(coeffs: tuple[float, ...]) -> float:
    """Cycle fraction where the hip curve's fundamental peaks (aligns curves with the arm and pelvis phase)."""
    return float(np.arctan2(coeffs[2], coeffs[1]) / (2 * np.pi)) % 1.0


_HIP_PEAK = _hip_peak_fraction(NORMATIVE["hip"])


def _leg_normative(hip: np.ndarray, flex: np.ndarray, knee: np.ndarray, dorsi: np.ndarray, thigh: float,
                   shank: float, foot: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sagittal leg chain driven by hip, knee and ankle angles (T,) radians. Returns knee, ankle, toe, heel (T, 3).

    The foot is perpendicular to the shank at zero dorsiflexion; dorsiflexion lifts the toe.
    """
    fwd = np.stack([np.sin(flex), np.zeros_like(flex), -np.cos(flex)], axis=1)
    k = hip + thigh * fwd
    sh = flex - knee
    ank = k + shank * np.stack([np.sin(sh), np.zeros_like(sh), -np.cos(sh)], axis=1)
    pitch = sh + dorsi
    along = np.stack([np.cos(pitch), np.zeros_like(pitch), np.sin(pitch)], axis=1)
    return k, ank, ank + foot * along, ank - 0.3 * foot * along


def _normative_legs(p: Identity, kin: Kinematics, phase: np.ndarray, speed_scale: float, thigh: float,
                    shank: float, foot: float) -> tuple[dict[int, tuple[np.ndarray, ...]], np.ndarray]:
    """Both legs from the person's joint-angle curves; returns {hip index: (hip, knee, ankle, toe)} and lowest (T,).

    The right leg's cycle fraction is aligned so that its hip flexion peaks where the parametric
    model's ``sin(phase)`` does (arms, pelvis rotation and sway keep their timing); the left leg
    runs half a cycle (plus ``phase_asym``) behind. ``speed_scale`` and ``stride_asym`` scale the
    hip's excursion about its mean, as they scale the parametric stride.
    """
    legs: dict[int, tuple[np.ndarray, ...]] = {}
    hip_mean = kin.hip[0]
    lowest = np.full(phase.shape, np.inf)
    for side, hip_i, ph, gain in ((1.0, L_HIP, phase + np.pi + p.phase_asym, 1 + p.stride_asym / 2),
                                  (-1.0, R_HIP, phase, 1 - p.stride_asym / 2)):
        cycle = ((ph - np.pi / 2) / (2 * np.pi) + _HIP_PEAK) % 1.0
        hip_deg = hip_mean + (fourier_curve(kin.hip, cycle) - hip_mean) * speed_scale * gain
        flex = np.deg2rad(hip_deg)
        knee = np.deg2rad(np.clip(fourier_curve(kin.knee, cycle), 0.0, None))
        dorsi = np.deg2rad(fourier_curve(kin.ankle, cycle))
        hip = np.zeros((phase.shape[0], 3))
        hip[:, 1] = side * p.hip_width / 2
        k, ank, toe, heel = _leg_normative(hip, flex, knee, dorsi, thigh, shank, foot)
        legs[hip_i] = (hip, k, ank, toe)
        # the sole is about ankle height below the ankle when the foot is level; a pitched foot's heel
        # or toe reaches lower
        lowest = np.minimum(lowest, np.minimum(ank[:, 2], np.minimum(heel[:, 2], toe[:, 2])))
    return legs, lowest
