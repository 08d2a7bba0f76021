"""`gaitheat eval-tracks`: score tracks against ground truth (HOTA, IDF1, MOTA with TrackEval; sequence purity)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "Score tracks against ground truth: HOTA, IDF1, MOTA, identity switches (and purity for a store)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gt", metavar="GT", help="ground truth: MOTChallenge gt.txt, or a crowd scene's JSON or folder")
    parser.add_argument("pred", metavar="PRED",
                        help="tracks: a MOTChallenge text file, or a store root written by `gaitheat extract`")
    parser.add_argument("--source", metavar="VIDEO",
                        help="with a store as PRED: the video whose tracks to score (default: the scene's video)")
    parser.add_argument("--json", metavar="OUT", help="write the figures as JSON ('-' for stdout)")


def _scene_video(gt: Path) -> Path | None:
    folder = gt if gt.is_dir() else gt.parent
    video = folder / f"{folder.name}.avi"
    return video if video.exists() else None


def run(args: argparse.Namespace) -> int:
    from gaitheat.atomic import atomic_write_text
    from gaitheat.cli import UserError
    from gaitheat.storage import StoreError
    from gaitheat.tracking_metrics import evaluate_tracks, read_tracks, store_purity

    gt_path, pred_path = Path(args.gt), Path(args.pred)
    store = pred_path.is_dir()
    source = Path(args.source) if args.source else _scene_video(gt_path) if store else None
    if store and source is None:
        raise UserError(f"{pred_path} is a store: name the video whose tracks to score with --source")
    try:
        gt = read_tracks(gt_path)
        pred = read_tracks(pred_path, source)
        result: dict[str, object] = {"gt": str(gt_path), "pred": str(pred_path), **evaluate_tracks([(gt, pred)])}
        if store and (gt_path.suffix == ".json" or gt_path.is_dir()):
            result["sequences"] = store_purity(pred_path, gt_path, source)
    except (ValueError, StoreError) as exc:
        raise UserError(str(exc)) from exc
    keys = ("hota", "deta", "assa", "idf1", "mota", "id_switches")
    print("  ".join(f"{k} {result[k]:.3f}" if isinstance(result[k], float) else f"{k} {result[k]}" for k in keys))
    for seq in result.get("sequences", []):  # type: ignore[attr-defined]
        print(f"  {seq['path']}: person {seq['person']}, purity {seq['purity']:.3f}, "
              f"contaminated {seq['contaminated']:.3f}, {seq['frames']} frames")
    if args.json == "-":
        print(json.dumps(result, indent=1))
    elif args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0
