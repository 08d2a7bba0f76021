"""Enrol people from walking videos, identify the people in a new video, calibrate the open-set threshold.

The chain per input: video -> :func:`gaitheat.extract.extract_video` (one heatmap sequence per
tracked person) -> :func:`gaitheat.evaluate.embed_sequences` with the checkpoint's network (the
retrieval embedding, (D, P)) -> the gallery (:mod:`gaitheat.gallery.db`, :mod:`gaitheat.gallery.index`).
A ``.ghs`` heatmap file is accepted wherever a video is, and skips extraction.

Open set: a track is named only if its nearest gallery person is within the gallery's threshold,
else it is ``unknown``; without a threshold (none calibrated, none given) nobody is named: every
track is ``unverified``, its nearest names still listed, since a nearest name alone says nothing
about whether the walker is anyone in the gallery at all. The threshold comes from
:func:`calibrate` on a labelled set that includes people not in the gallery: false accepts are
strangers within the threshold, false rejects are enrolled people not both within the threshold
and correctly named (an open-set identification error rate, so misidentifications count against
the threshold too).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gaitheat.gallery.db import DISTANCE_NAME, DISTANCE_NAMES, GalleryDB, GalleryError, SequenceSource
from gaitheat.gallery.index import GallerySearcher
from gaitheat.storage import HeatmapSequence

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
UNVERIFIED = "unverified"


@dataclass
class Embedder:
    """A loaded checkpoint that turns sequences into retrieval embeddings through the model's spec.

    Attributes:
        spec: the model's :class:`~gaitheat.models.spec.ModelSpec` (its inputs are loaded from each
            sequence; None: GaitHeat's raw heatmaps, e.g. an ONNX export).
        distance: the gallery distance name of the model (:data:`gaitheat.gallery.db.DISTANCE_NAMES`).
    """

    model: Any
    sha256: str
    checkpoint: str
    device: str | None = None
    precision: str = "auto"  # gaitheat.device.resolve_precision: fp16 on CUDA, bf16 on native-bf16 CPUs
    spec: Any = None
    distance: str = DISTANCE_NAME

    def embed(self, sequences: Sequence[HeatmapSequence | np.ndarray]) -> np.ndarray:
        """Sequences (or raw (T, J, H, W) heatmap arrays) -> (N, D, P) float32.

        Raises:
            StoreError: a sequence lacks a section the model's inputs need.
        """
        from gaitheat.evaluate import embed_sequences

        return embed_sequences(self.model, sequences, device=self.device, precision=self.precision,
                               spec=self.spec)


def load_embedder(checkpoint: str | Path, device: str | None = None) -> Embedder:
    """Load a checkpoint (on CUDA when available unless ``device`` says otherwise).

    A ``.onnx`` file (``gaitheat export-onnx``) is run by ONNX Runtime on the CPU instead; its
    ``sha256`` is that of the checkpoint it was exported from, so galleries accept either.
    """
    from gaitheat.export_onnx import OnnxModel, is_onnx_path

    if is_onnx_path(checkpoint):
        onnx = OnnxModel(checkpoint)  # OnnxError (a ValueError) names the file
        return Embedder(onnx, onnx.sha256, str(Path(checkpoint).resolve()), "cpu")
    import torch

    from gaitheat.checkpoint import load_model

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, cfg, info = load_model(checkpoint, map_location=device)
    for_inference = getattr(model, "for_inference", None)  # GaitHeat: BN folded, channels-last, Winograd convs
    model = for_inference() if callable(for_inference) else model.eval()
    spec = cfg.model.spec()
    return Embedder(model, str(info["sha256"]), str(Path(checkpoint).resolve()), device, spec=spec,
                    distance=DISTANCE_NAMES[spec.distance])


@dataclass
class Track:
    """One person in one input, embedded.

    Attributes:
        source: the input path.
        track_id: tracker id (-1 for a ``.ghs`` file).
        frame_indices: (T,) source frame of each heatmap frame.
        boxes: (T, 4) xyxy source-pixel boxes, or None.
        embedding: (D, P) retrieval embedding.
    """

    source: str
    track_id: int
    frame_indices: np.ndarray
    boxes: np.ndarray | None
    embedding: np.ndarray

    @property
    def frames(self) -> int:
        return len(self.frame_indices)


def extract_tracks(inputs: Sequence[str | Path], embedder: Embedder, extract_cfg: Any = None,
                   progress: bool = False, pose: Any = None) -> list[Track]:
    """Every tracked person of every input, embedded (inputs without a person give no track).

    Args:
        inputs: videos, frame folders, images or ``.ghs`` heatmap files.
        embedder: the loaded checkpoint.
        extract_cfg: :class:`gaitheat.extract.ExtractConfig` (defaults when None).
        progress: progress over the inputs on stderr (a bar on a terminal, else periodic lines).
        pose: a ready pose backend to re-use across calls (built at the first video when None).
    """
    from gaitheat.extract import ExtractConfig, build_pose, extract_video
    from gaitheat.progress import track
    from gaitheat.storage import StoreError, read_sequence
    from gaitheat.video import VideoError

    cfg = extract_cfg or ExtractConfig()
    out: list[Track] = []
    for path in track([Path(p) for p in inputs], desc="extract", unit="video", enabled=progress):
        if not path.exists():
            raise GalleryError(path, "no such video")
        if path.suffix == ".ghs":
            try:
                seq = read_sequence(path)
            except StoreError as exc:  # names the file; one line, not a traceback
                raise GalleryError(path, f"not a readable heatmap sequence ({exc.reason})") from exc
            found = [(-1, seq)]
        else:
            pose = pose or build_pose(cfg)  # one pose model for all inputs
            try:
                found = [(t.track_id, t.sequence) for t in extract_video(path, cfg, pose=pose)]
            except VideoError as exc:
                raise GalleryError(path, f"cannot read the video ({exc})") from exc
            except StoreError as exc:
                raise GalleryError(path, str(exc)) from exc
        if not found:
            log.warning("%s: nobody walking was found", path)
            continue
        try:
            emb = embedder.embed([s for _, s in found])
        except StoreError as exc:  # a .ghs without the model's input section: one line naming it
            raise GalleryError(path, exc.reason) from exc
        out += [Track(str(path), tid, s.frame_indices, s.boxes, e) for (tid, s), e in zip(found, emb, strict=True)]
    return out


def main_track(tracks: Sequence[Track]) -> Track:
    """The person an enrolment video is about: the longest track (warns when another is close)."""
    best = max(tracks, key=lambda t: t.frames)
    rivals = [t for t in tracks if t is not best and t.frames >= 0.5 * best.frames]
    if rivals:
        log.warning("%s: %d people walk here; enrolling the longest track (%d, %d frames)",
                    best.source, len(rivals) + 1, best.track_id, best.frames)
    return best


def enrol_tracks(db: GalleryDB, name: str, tracks: Sequence[Track], embedder: Embedder) -> list[int]:
    """Store the main track of each input for ``name``, all in one transaction; returns embedding ids."""
    if name.strip().lower() in (UNKNOWN, UNVERIFIED):  # the labels identify prints for nobody
        raise GalleryError(db.path, f"invalid person name {name!r}")
    by_source: dict[str, list[Track]] = {}
    for t in tracks:
        by_source.setdefault(t.source, []).append(t)
    if not by_source:
        raise GalleryError(db.path, f"nobody walking was found in the videos for {name!r}; nothing enrolled")
    items = []
    for source, mine in by_source.items():
        t = main_track(mine)
        extra = {"first_frame": int(t.frame_indices[0]), "last_frame": int(t.frame_indices[-1])}
        items.append((t.embedding, SequenceSource(source, t.track_id, t.frames, extra)))
    return db.enrol(name, items, embedder.sha256, embedder.checkpoint, embedder.distance)


@dataclass
class Identification:
    """Who one track is: ``label`` is the best name, ``unknown`` beyond the threshold, ``unverified`` without one."""

    track: Track
    label: str
    matches: list[tuple[str, float]]
    threshold: float | None

    def to_json(self) -> dict[str, Any]:
        return {"source": self.track.source, "track_id": self.track.track_id, "frames": self.track.frames,
                "first_frame": int(self.track.frame_indices[0]), "last_frame": int(self.track.frame_indices[-1]),
                "label": self.label, "best_distance": self.matches[0][1] if self.matches else None,
                "matches": [{"name": n, "distance": d} for n, d in self.matches]}


def decide(matches: list[tuple[str, float]], threshold: float | None) -> str:
    """The open-set decision for one ranked match list (no threshold: nobody can be named)."""
    if not matches:
        return UNKNOWN
    if threshold is None:
        return UNVERIFIED
    return UNKNOWN if matches[0][1] > threshold else matches[0][0]


def identify_tracks(searcher: GallerySearcher, tracks: Sequence[Track], k: int, threshold: float | None
                    ) -> list[Identification]:
    out = []
    for t in tracks:
        matches = searcher.top_people(t.embedding, k)
        out.append(Identification(t, decide(matches, threshold), matches, threshold))
    return out


# ------------------------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """False-accept / false-reject trade-off of an open-set threshold on a labelled set.

    Attributes:
        thresholds: (M,) candidate thresholds, ascending.
        far: (M,) fraction of strangers (people not in the gallery) accepted as someone.
        frr: (M,) fraction of enrolled people not accepted as themselves.
        eer: equal error rate (mean of FAR and FRR where they are closest).
        eer_threshold: threshold at the EER.
        chosen: the threshold selected (EER, or the largest meeting ``target_far``).
        known / strangers: probe counts.
        rank1: closed-set rank-1 accuracy of the enrolled probes.
    """

    thresholds: np.ndarray
    far: np.ndarray
    frr: np.ndarray
    eer: float
    eer_threshold: float
    chosen: float
    known: int
    strangers: int
    rank1: float
    rule: str = "eer"
    extra: dict[str, Any] = field(default_factory=dict)

    def table(self, rows: int = 11) -> list[tuple[float, float, float]]:
        """(threshold, FAR, FRR) at ``rows`` evenly spaced points plus the chosen threshold."""
        picks = np.unique(np.linspace(0, len(self.thresholds) - 1, rows).round().astype(int))
        out = [(float(self.thresholds[i]), float(self.far[i]), float(self.frr[i])) for i in picks]
        c = int(np.searchsorted(self.thresholds, self.chosen))
        c = min(c, len(self.thresholds) - 1)
        out.append((float(self.thresholds[c]), float(self.far[c]), float(self.frr[c])))
        return sorted(set(out))

    def summary(self) -> dict[str, Any]:
        return {"rule": self.rule, "threshold": self.chosen, "eer": self.eer, "eer_threshold": self.eer_threshold,
                "known_probes": self.known, "stranger_probes": self.strangers, "rank1": self.rank1, **self.extra}


def open_set_curve(best: np.ndarray, correct: np.ndarray, known: np.ndarray, target_far: float | None = None
                   ) -> Calibration:
    """FAR / FRR over every useful threshold, from each probe's nearest gallery person.

    Args:
        best: (Q,) distance to the nearest gallery person.
        correct: (Q,) that person is the probe's own identity.
        known: (Q,) the probe's identity is enrolled.
        target_far: choose the largest threshold with FAR <= this; None: the EER threshold.
    """
    best, correct, known = np.asarray(best, np.float64), np.asarray(correct, bool), np.asarray(known, bool)
    if known.sum() == 0 or (~known).sum() == 0:
        raise ValueError("calibration needs probes of enrolled people AND of people not in the gallery "
                         f"(got {int(known.sum())} enrolled, {int((~known).sum())} strangers)")
    # Thresholds halfway between consecutive observed distances: a threshold sitting exactly on one
    # probe's distance would flip on the smallest change of that probe.
    observed = np.unique(best)
    thresholds = np.concatenate([[0.0], (observed[:-1] + observed[1:]) / 2, [observed[-1] * 1.001 + 1e-6]])
    accepted = best[None, :] <= thresholds[:, None]  # (M, Q)
    far = accepted[:, ~known].mean(1)
    frr = 1.0 - (accepted[:, known] & correct[known]).mean(1)
    i = int(np.argmin(np.abs(far - frr)))
    eer, eer_t = float((far[i] + frr[i]) / 2), float(thresholds[i])
    chosen, rule = eer_t, "eer"
    if target_far is not None:
        ok = np.nonzero(far <= target_far)[0]
        chosen, rule = float(thresholds[ok[-1]]), f"far<={target_far:g}"
    return Calibration(thresholds, far, frr, eer, eer_t, chosen, int(known.sum()), int((~known).sum()),
                       float(correct[known].mean()), rule)


def calibrate(db: GalleryDB, searcher: GallerySearcher, embeddings: np.ndarray, names: Sequence[str],
              target_far: float | None = None, store: bool = True) -> Calibration:
    """Measure the trade-off for labelled probes (N, D, P) and, if ``store``, save the chosen threshold.

    Probes must not be the enrolled sequences themselves (their distance would be 0).
    """
    if len(embeddings) != len(names):
        raise ValueError(f"{len(embeddings)} embeddings but {len(names)} names")
    enrolled = db.names()
    top = [searcher.top_people(e, 1)[0] for e in np.asarray(embeddings, np.float32)]
    best = np.array([d for _, d in top])
    if np.any(best < 1e-6):
        log.warning("some calibration probes are at distance 0: are they the enrolled sequences themselves?")
    correct = np.array([n == name for (n, _), name in zip(top, names, strict=True)])
    known = np.array([name in enrolled for name in names])
    result = open_set_curve(best, correct, known, target_far)
    if store:
        db.set_threshold(result.chosen, result.summary())
    return result
