"""Tracking metrics (HOTA, IDF1, MOTA, identity switches) with TrackEval, and extraction's tracks as MOT rows.

The metrics are TrackEval's own classes (:mod:`gaitheat._vendor.trackeval`, the official MOTChallenge
evaluator, copied unchanged); this module only turns MOTChallenge rows into TrackEval's per-frame
input: ids and the IoU matrix of ground truth against predicted boxes per frame. As MOTChallenge's
own evaluation does, ground-truth rows flagged 0 (``gt.txt`` column 7, e.g. people mostly hidden) are
ignored: they are removed, with the predicted boxes that match them (IoU >= 0.5, Hungarian).

MOT rows are float arrays ``(N, >=6)``: ``frame, id, x, y, w, h[, flag, class, visibility]``, frames
and ids 1-based, boxes in pixels (top-left corner, width, height). Readers accept a MOTChallenge text
file, a crowd scene's JSON (:mod:`gaitheat.synth.crowd`), or a store of extracted sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["evaluate_tracks", "format_mot_rows", "read_mot", "read_tracks", "sequence_purity", "sequence_rows",
           "store_purity", "store_tracks"]

MATCH_IOU = 0.5  # CLEAR/Identity threshold (HOTA averages over 0.05..0.95)


def read_mot(path: str | Path) -> np.ndarray:
    """MOTChallenge text rows ``(N, 9)`` (columns 7-9 default to flag 1, class 1, visibility 1).

    Raises:
        ValueError: naming the file, if it is unreadable or a row is malformed.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ValueError(f"{p}: cannot read MOT file ({exc})") from exc
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.replace(" ", "").split(",")]
        except ValueError as exc:
            raise ValueError(f"{p}:{number}: not a MOTChallenge row: {line[:80]!r}") from exc
        if len(values) < 6 or not np.isfinite(values[:6]).all() or values[0] < 1 or values[4] < 0 or values[5] < 0:
            raise ValueError(f"{p}:{number}: a MOT row needs frame >= 1, id, x, y, w >= 0, h >= 0: {line[:80]!r}")
        rows.append([*values, 1.0, 1.0, 1.0][:9])
    return np.array(rows, np.float64).reshape(-1, 9)


def format_mot_rows(rows: np.ndarray) -> str:
    """MOTChallenge text of rows ``(N, >=6)`` (a tracker's output: flag/class/visibility written -1 if absent)."""
    out = []
    for r in np.asarray(rows, np.float64):
        tail = ",".join(f"{v:g}" for v in r[6:9]) if len(r) >= 9 else "-1,-1,-1"
        out.append(f"{int(r[0])},{int(r[1])},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.2f},{tail}")
    return "\n".join(out) + ("\n" if out else "")


def sequence_rows(track: int, frame_indices: np.ndarray, image_keypoints: np.ndarray, crop_boxes: np.ndarray,
                  padding: float = 1.25) -> np.ndarray:
    """MOT rows ``(T, 9)`` of one extracted sequence, id ``track``: frame ``index + 1`` and the box around the
    pose's confident joints (the box the tracker followed, :func:`gaitheat.crop.keypoints_box`), or the crop
    box shrunk by its padding when too few joints are confident."""
    from gaitheat.crop import keypoints_box

    rows = []
    for frame, kps, crop in zip(frame_indices, image_keypoints, crop_boxes, strict=True):
        box = keypoints_box(kps)
        if box is None:
            c, half = (crop[:2] + crop[2:]) / 2, (crop[2:] - crop[:2]) / (2 * padding)
            box = np.concatenate([c - half, c + half])
        rows.append([int(frame) + 1, track, box[0], box[1], box[2] - box[0], box[3] - box[1], 1, 1, 1])
    return np.array(rows, np.float64).reshape(-1, 9)


def store_tracks(root: str | Path, source: str | Path | None = None) -> np.ndarray:
    """The stored sequences of ``source`` (all when None) as MOT rows ``(N, 9)``, one track per sequence
    (:func:`sequence_rows`, id ``track_id + 1``; ids of different sources may repeat)."""
    from gaitheat.storage import SequenceFile, iter_sequence_files

    wanted = str(Path(source).resolve()) if source is not None else None
    parts = [np.zeros((0, 9))]
    for path in iter_sequence_files(root):
        seq = SequenceFile(path)
        if wanted is not None and seq.meta.source != wanted:
            continue
        arrays = seq.arrays()
        if "image_keypoints" not in arrays or "boxes" not in arrays:
            continue
        parts.append(sequence_rows(int(seq.meta.extra.get("track_id", 0)) + 1, arrays["frame_indices"],
                                   arrays["image_keypoints"], arrays["boxes"], float(seq.meta.crop_padding or 1.25)))
    out = np.concatenate(parts)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def read_tracks(path: str | Path, source: str | Path | None = None) -> np.ndarray:
    """MOT rows from a MOT text file, a crowd scene JSON (its ground truth) or a store root (``source``'s tracks)."""
    p = Path(path)
    if p.is_dir() and not (p / f"{p.name}.json").exists():
        return store_tracks(p, source)
    if p.suffix == ".json" or p.is_dir():
        from gaitheat.synth.crowd import load_crowd_truth, mot_rows

        return mot_rows(load_crowd_truth(p)[1])
    return read_mot(p)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``(len(a), len(b))`` of MOT boxes (x, y, w, h)."""
    from gaitheat.detect import iou_matrix

    def xyxy(r: np.ndarray) -> np.ndarray:
        return np.concatenate([r[:, :2], r[:, :2] + r[:, 2:4]], axis=1)

    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    return np.asarray(iou_matrix(xyxy(a), xyxy(b)), np.float64)


def _sequence_data(gt: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """TrackEval's per-sequence input from MOT rows, ignored ground truth (flag 0) removed with its matches."""
    from scipy.optimize import linear_sum_assignment

    frames = int(max(gt[:, 0].max(initial=0), pred[:, 0].max(initial=0)))
    gt_ids = {v: i for i, v in enumerate(np.unique(gt[gt[:, 6] != 0, 1]))}
    per_frame: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    kept_pred: set[float] = set()
    for f in range(1, frames + 1):
        g, p = gt[gt[:, 0] == f], pred[pred[:, 0] == f]
        iou = _iou(g[:, 2:6], p[:, 2:6])
        drop = np.zeros(len(p), bool)
        if len(g) and len(p) and np.any(g[:, 6] == 0):
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols, strict=True):
                drop[c] |= bool(g[r, 6] == 0 and iou[r, c] >= MATCH_IOU)
        live = g[:, 6] != 0
        per_frame.append((g[live, 1], p[~drop, 1], iou[np.ix_(live, ~drop)]))
        kept_pred.update(p[~drop, 1].tolist())
    tr_ids = {v: i for i, v in enumerate(sorted(kept_pred))}
    data: dict[str, Any] = {"num_timesteps": frames, "num_gt_ids": len(gt_ids), "num_tracker_ids": len(tr_ids),
                            "gt_ids": [], "tracker_ids": [], "similarity_scores": []}
    for g_ids, p_ids, iou in per_frame:
        data["gt_ids"].append(np.array([gt_ids[v] for v in g_ids.tolist()], int))
        data["tracker_ids"].append(np.array([tr_ids[v] for v in p_ids.tolist()], int))
        data["similarity_scores"].append(iou)
    data["num_gt_dets"] = sum(len(x) for x in data["gt_ids"])
    data["num_tracker_dets"] = sum(len(x) for x in data["tracker_ids"])
    return data


def evaluate_tracks(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """HOTA, DetA, AssA, IDF1, IDP, IDR, MOTA, MOTP and identity switches over (ground truth, predicted)
    pairs of MOT rows, one pair per video, combined as TrackEval combines sequences.

    HOTA, DetA and AssA are averages over TrackEval's 19 IoU thresholds 0.05..0.95; the others use IoU 0.5.
    """
    from gaitheat._vendor.trackeval.metrics import CLEAR, HOTA, Identity

    metrics = [HOTA(), CLEAR({"PRINT_CONFIG": False}), Identity({"PRINT_CONFIG": False})]
    per_seq: list[dict[str, dict[str, Any]]] = []
    for gt, pred in pairs:
        data = _sequence_data(np.asarray(gt, np.float64).reshape(-1, 9), _as9(pred))
        per_seq.append({m.get_name(): m.eval_sequence(data) for m in metrics})
    if not per_seq:
        raise ValueError("no sequences to evaluate")
    combined = {m.get_name(): m.combine_sequences({str(i): s[m.get_name()] for i, s in enumerate(per_seq)})
                for m in metrics}
    h, c, i = combined["HOTA"], combined["CLEAR"], combined["Identity"]
    return {"hota": float(np.mean(h["HOTA"])), "deta": float(np.mean(h["DetA"])), "assa": float(np.mean(h["AssA"])),
            "idf1": float(i["IDF1"]), "idp": float(i["IDP"]), "idr": float(i["IDR"]), "mota": float(c["MOTA"]),
            "motp": float(c["MOTP"]), "id_switches": int(c["IDSW"]), "fragmentations": int(c["Frag"]),
            "mostly_tracked": int(c["MT"]), "mostly_lost": int(c["ML"])}


def _as9(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, np.float64).reshape(len(rows), -1) if len(rows) else np.zeros((0, 9))
    if rows.shape[1] < 9:
        rows = np.concatenate([rows, np.ones((len(rows), 9 - rows.shape[1]))], axis=1)
    return rows[:, :9]


# ------------------------------------------------------------------------------- sequence purity

MATCH_DISTANCE = 0.25  # median joint distance / body height beyond which a pose is nobody's
CONTAMINATING_JOINTS = 4  # another person's visible joints inside the person box that make a frame contaminated


def frame_people(image_keypoints: np.ndarray, frame_indices: np.ndarray, joints: np.ndarray,
                 boxes: np.ndarray, min_score: float = 0.3) -> np.ndarray:
    """The ground-truth person each stored frame shows: ``(T,)`` 0-based person row, -1 when nobody.

    A frame shows the person whose joints are nearest the stored pose's confident joints (median
    distance of the same joints, over that person's body height), if that is below ``MATCH_DISTANCE``.

    Args:
        image_keypoints: ``(T, 17, 3)`` the stored poses in source pixels (x, y, score).
        frame_indices: ``(T,)`` 0-based source frames.
        joints: ``(P, F, 17, 2)`` ground-truth joints; ``boxes`` ``(P, F, 4)`` (NaN when absent).
    """
    out = np.full(len(frame_indices), -1, np.int64)
    for k, (f, kps) in enumerate(zip(frame_indices.tolist(), image_keypoints, strict=True)):
        if f >= joints.shape[1]:
            continue
        good = kps[:, 2] >= min_score
        if good.sum() < 3:
            continue
        present = ~np.isnan(boxes[:, f, 0])
        height = np.maximum(boxes[:, f, 3] - boxes[:, f, 1], 1.0)
        dist = np.median(np.linalg.norm(joints[:, f][:, good] - kps[None, good, :2], axis=2), axis=1) / height
        dist[~present] = np.inf
        best = int(np.argmin(dist))
        if dist[best] <= MATCH_DISTANCE:
            out[k] = best
    return out


def contaminated_frames(image_keypoints: np.ndarray, frame_indices: np.ndarray, people: np.ndarray,
                        joints: np.ndarray, joints_visible: np.ndarray) -> np.ndarray:
    """``(T,)`` bool: another person (not ``people[k]``) has at least ``CONTAMINATING_JOINTS`` visible joints
    inside the frame's person box (the box around the stored pose's confident joints): the crop holds two people."""
    from gaitheat.crop import keypoints_box

    out = np.zeros(len(frame_indices), bool)
    for k, (f, kps) in enumerate(zip(frame_indices.tolist(), image_keypoints, strict=True)):
        box = keypoints_box(kps)
        if box is None or f >= joints.shape[1]:
            continue
        j, vis = joints[:, f], joints_visible[:, f]
        inside = vis & (j[..., 0] >= box[0]) & (j[..., 0] <= box[2]) & (j[..., 1] >= box[1]) & (j[..., 1] <= box[3])
        counts = inside.sum(axis=1)
        if people[k] >= 0:
            counts[people[k]] = 0
        out[k] = bool(np.any(counts >= CONTAMINATING_JOINTS))
    return out


def sequence_purity(image_keypoints: np.ndarray, frame_indices: np.ndarray, truth: Any) -> dict[str, Any]:
    """Purity of one stored sequence against a crowd scene's :class:`~gaitheat.synth.crowd.CrowdTruth`.

    Returns:
        ``person`` (majority ground-truth row, -1 if none), ``purity`` (share of frames showing that
        person), ``contaminated`` (share of frames whose crop holds another person, see
        :func:`contaminated_frames`) and ``frames``.
    """
    people = frame_people(image_keypoints, frame_indices, truth.joints, truth.boxes)
    matched = people[people >= 0]
    major = int(np.bincount(matched).argmax()) if len(matched) else -1
    dirty = contaminated_frames(image_keypoints, frame_indices, people, truth.joints, truth.joints_visible)
    n = max(len(frame_indices), 1)
    return {"person": major, "purity": float((people == major).sum() / n) if major >= 0 else 0.0,
            "contaminated": float(dirty.sum() / n), "frames": len(frame_indices)}


def store_purity(root: str | Path, scene: str | Path, source: str | Path | None = None) -> list[dict[str, Any]]:
    """:func:`sequence_purity` of every stored sequence of ``source`` (the scene's video by default) in ``root``;
    ``person`` is given as the scene's 1-based person id (0: nobody)."""
    from gaitheat.storage import SequenceFile, iter_sequence_files
    from gaitheat.synth.crowd import load_crowd_truth

    record, truth = load_crowd_truth(scene)
    folder = Path(scene) if Path(scene).is_dir() else Path(scene).parent
    video = Path(source) if source is not None else folder / f"{record['scene']}.avi"
    wanted = str(video.resolve())
    out = []
    for path in iter_sequence_files(root):
        seq = SequenceFile(path)
        if seq.meta.source != wanted:
            continue
        arrays = seq.arrays()
        if "image_keypoints" not in arrays:
            continue
        res = sequence_purity(arrays["image_keypoints"], arrays["frame_indices"], truth)
        out.append({"path": str(path.relative_to(root)), **res, "person": res["person"] + 1})
    return out
