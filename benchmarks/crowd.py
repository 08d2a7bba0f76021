"""Extraction in crowds, against synthetic ground truth: tracking, sequence purity, identification.

A fixed seeded set of crowd scenes (:mod:`gaitheat.synth.crowd`: 2 scenes of each type, crossing,
side by side, overtaking and passing behind, 2-3 walkers, 60 frames at 25 fps, 480x270) is extracted
with the default :class:`gaitheat.extract.ExtractConfig`, every frame. Then:

- tracking: HOTA, IDF1, MOTA and identity switches (TrackEval, :mod:`gaitheat.tracking_metrics`) of
  the stored sequences (one track each; the whole-body box around the pose model's person mask in every
  frame the tracker gave the track, see ``ExtractConfig.tracks_out``) against the scenes' ``gt.txt``
  (full-body boxes), combined over all scenes;
- purity: per stored sequence, the share of frames showing its majority ground-truth person, and
  the share of frames whose person box holds another person's visible joints (contamination);
- identification: every crowd walker is enrolled from a separate single-person walk (the same
  person of the synthetic population, another recording, view 090), with a small GaitHeat checkpoint
  trained by the demo recipe; each crowd sequence with a ground-truth person is identified (closed
  set, nearest in the gallery); ``crowd_identify_rank1`` = sequences named correctly / sequences with
  a ground-truth person. Both sides embed every second frame, the frame rate the demo trains on.

The walkers are subjects 101-108 of the demo's population (seed 0, difficulty 0.15): people the
demo never trained on. Rendered videos are cached in ``--work``.

    .venv/bin/python benchmarks/crowd.py [--checkpoint CKPT] [--json]

With ``--json`` the last line is one JSON object with keys ``idf1``, ``hota``, ``id_switches``,
``sequence_purity`` (median over sequences), ``contaminated_frame_fraction`` (contaminated stored
frames / stored frames) and ``crowd_identify_rank1`` (null without a checkpoint). Goals: idf1 >= 0.80,
sequence_purity >= 0.95, contaminated_frame_fraction <= 0.05.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SEED, DIFFICULTY, FRAMES = 0, 0.15, 60
NAMES = [f"{i:03d}" for i in range(101, 109)]
DEMO_CHECKPOINTS = (Path("/work/demo_cache"), REPO / "demo")


def find_checkpoint() -> Path | None:
    """The newest ``*.pt`` of a demo run (``/work/demo_cache`` or ``./demo``), if any."""
    found = [p for root in DEMO_CHECKPOINTS if root.is_dir() for p in root.rglob("*.pt")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def render(work: Path) -> list[Any]:
    from gaitheat.synth.crowd import SCENE_TYPES, crowd_plan, scene_paths, write_scene

    plan = crowd_plan(2, SCENE_TYPES, (2, 3), NAMES, FRAMES, SEED, DIFFICULTY)
    for scene in plan:
        if not scene_paths(work / "scenes", scene.name)["video"].exists():
            write_scene(work / "scenes", scene)
    return plan


def extract_scenes(work: Path, plan: list[Any], pose: Any, cfg: Any) -> list[dict[str, Any]]:
    """Per scene: its type, the extracted tracks, MOT rows of prediction and ground truth, purity per track."""
    from gaitheat.extract import extract_video_report
    from gaitheat.synth.crowd import load_crowd_truth, scene_paths
    from gaitheat.tracking_metrics import read_mot, sequence_purity, sequence_rows

    out = []
    for scene in plan:
        paths = scene_paths(work / "scenes", scene.name)
        start = time.perf_counter()
        report = extract_video_report(paths["video"], cfg, pose=pose)
        seconds = time.perf_counter() - start
        _, truth = load_crowd_truth(paths["json"])
        purity = [sequence_purity(t.sequence.image_keypoints, t.sequence.frame_indices, truth) for t in report.tracks]
        # the tracker's boxes of the stored tracks, every frame (also those dropped from the sequences); an
        # extractor without them (before they were reported) is scored on the stored frames
        pred = getattr(report, "track_rows", None)
        if pred is None:
            pred = np.concatenate([np.zeros((0, 9))] + [
                sequence_rows(t.track_id + 1, t.sequence.frame_indices, t.sequence.image_keypoints, t.sequence.boxes,
                              cfg.crop_padding) for t in report.tracks])
        out.append({"scene": scene, "tracks": report.tracks, "pred": pred, "gt": read_mot(paths["gt"]),
                    "purity": purity, "seconds": seconds})
    return out


def identify(work: Path, results: list[dict[str, Any]], checkpoint: Path, pose: Any, cfg: Any) -> dict[str, Any]:
    """Enrol each walker from a single-person walk, identify every crowd sequence; rank-1 over those with a person."""
    from gaitheat.extract import extract_video
    from gaitheat.gallery.service import load_embedder
    from gaitheat.synth import sequence_paths, write_dataset

    embedder = load_embedder(checkpoint, device="cpu")
    write_dataset(work / "enrol", NAMES, ["nm-01"], ["090"], frames=FRAMES, seed=SEED, difficulty=DIFFICULTY,
                  progress=False)
    names, gallery = [], []
    for name in NAMES:
        video, _ = sequence_paths(work / "enrol", name, "nm-01", "090")
        tracks = extract_video(video, cfg, pose=pose)
        if tracks:
            names.append(name)
            gallery.append(embedder.embed([tracks[0].sequence.heatmaps[::2]])[0])
    emb = np.stack(gallery).reshape(len(gallery), -1)
    correct = total = 0
    for r in results:
        walkers = r["scene"].walkers
        for t, p in zip(r["tracks"], r["purity"], strict=True):
            if p["person"] < 0:
                continue
            probe = embedder.embed([t.sequence.heatmaps[::2]])[0].reshape(-1)
            best = int(np.argmin(np.linalg.norm(emb - probe[None], axis=1)))
            correct += names[best] == walkers[p["person"]].subject
            total += 1
    return {"enrolled": len(names), "identified": total, "correct": correct,
            "rank1": correct / total if total else None, "checkpoint": str(checkpoint)}


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    from gaitheat.tracking_metrics import evaluate_tracks

    def block(rs: list[dict[str, Any]]) -> dict[str, Any]:
        purity = [p for r in rs for p in r["purity"]]
        frames = sum(p["frames"] for p in purity)
        dirty = sum(p["contaminated"] * p["frames"] for p in purity)
        return {**evaluate_tracks([(r["gt"], r["pred"]) for r in rs]), "sequences": len(purity),
                "walkers": sum(len(r["scene"].walkers) for r in rs),
                "sequence_purity": float(np.median([p["purity"] for p in purity])) if purity else 0.0,
                "contaminated_frame_fraction": dirty / frames if frames else 0.0}

    kinds = sorted({r["scene"].kind for r in results})
    return {"all": block(results), **{k: block([r for r in results if r["scene"].kind == k]) for k in kinds}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, help="cache of rendered scenes (default: a temporary folder)")
    parser.add_argument("--checkpoint", type=Path, help="GaitHeat checkpoint (default: the newest demo run's)")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    from gaitheat.extract import ExtractConfig, build_pose

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        start = time.perf_counter()
        plan = render(work)
        rendered = time.perf_counter() - start
        cfg = ExtractConfig(created="2000-01-01T00:00:00+00:00")
        pose = build_pose(cfg)
        results = extract_scenes(work, plan, pose, cfg)
        table = summarise(results)
        checkpoint = args.checkpoint or find_checkpoint()
        ident = identify(work, results, checkpoint, pose, cfg) if checkpoint else None
    seconds = sum(r["seconds"] for r in results)
    print(f"{len(plan)} scenes rendered/loaded in {rendered:.1f} s; extraction {seconds:.1f} s")
    print(f"{'scenes':<15} {'walkers':>7} {'seqs':>5} {'HOTA':>6} {'IDF1':>6} {'MOTA':>6} {'IDsw':>5} "
          f"{'purity':>7} {'contam':>7}")
    for name, row in table.items():
        print(f"{name:<15} {row['walkers']:>7} {row['sequences']:>5} {row['hota']:>6.3f} {row['idf1']:>6.3f} "
              f"{row['mota']:>6.3f} {row['id_switches']:>5} {row['sequence_purity']:>7.3f} "
              f"{row['contaminated_frame_fraction']:>7.3f}")
    if ident:
        print(f"identification: {ident['correct']}/{ident['identified']} sequences named correctly "
              f"({ident['enrolled']} walkers enrolled, {ident['checkpoint']})")
    else:
        print("identification: no checkpoint (run the demo or pass --checkpoint)", file=sys.stderr)
    if args.json:
        a = table["all"]
        rank1 = None if not ident or ident["rank1"] is None else round(ident["rank1"], 4)
        print(json.dumps({"idf1": round(a["idf1"], 4), "hota": round(a["hota"], 4), "id_switches": a["id_switches"],
                          "sequence_purity": round(a["sequence_purity"], 4),
                          "contaminated_frame_fraction": round(a["contaminated_frame_fraction"], 4),
                          "crowd_identify_rank1": rank1}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
