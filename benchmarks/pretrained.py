"""The shipped pretrained model on a held-out store: CASIA-B rank-1 per view, open-set FAR/FRR, size, speed.

Usage::

    .venv/bin/python benchmarks/pretrained.py --data-root STORE --partition PART.json           # shipped model
    .venv/bin/python benchmarks/pretrained.py --data-root STORE --partition PART.json --json    # last line: JSON
    .venv/bin/python benchmarks/pretrained.py --weights W.safetensors ...     # another exported model
    .venv/bin/python benchmarks/pretrained.py --checkpoint run/last.pt ...    # a .pt, exported first (temp folder)
    .venv/bin/python benchmarks/pretrained.py ... --out MODEL_CARD.json --card MODEL_CARD.md --record

``STORE`` holds the held-out identities (the partition's ``TEST_SET``), all ten CASIA-B conditions;
with fewer than the 11 views (e.g. the demo's store) pass ``--allow-incomplete`` and read the
numbers as a check of the mechanics only: the table says which views were there.

Closed set: the CASIA-B protocol exactly as ``gaitheat evaluate`` runs it (gallery nm-01..04, probes
NM nm-05/06, BG, CL; rank-1 per probe view with identical views excluded, mean over probe views),
from the same embeddings (``gaitheat.evaluate.embed_store`` + ``evaluate_embeddings``).

Open set, through the real gallery (SQLite + search, ``gaitheat.gallery``): the test subjects, sorted,
alternate between *enrolled* (even positions) and *strangers* (odd), and the strangers alternate
between a calibration half and an evaluation half. The gallery holds the enrolled subjects' nm-01..04
sequences (every view). The threshold is calibrated (EER rule, as ``gaitheat gallery calibrate``)
on the enrolled subjects' nm-05 walks and the calibration strangers' nm-05/06 walks; FAR and FRR at
that threshold are measured on different walks: the enrolled subjects' nm-06 and the evaluation
strangers' nm-05/06. FRR counts an enrolled walk not both accepted and correctly named (open-set
identification). ``tar_at_far1`` is 1 - FRR on the evaluation walks at the largest threshold whose
FAR there is <= 1%.

Speed: ``infer_ms_per_frame`` is the median over 10 timed runs (after 3 warm-up runs) of embedding
one 60-frame clip on the CPU with the inference-ready network (as ``enrol``/``identify`` run it),
divided by 60. ``weights_mb`` is the ``.safetensors`` size in MB (10^6 bytes).

JSON keys (``--json``, last line): ``nm_rank1_11views``, ``bg_rank1_11views``, ``cl_rank1_11views`` (fractions,
mean over the probe views present), ``tar_at_far1``, ``weights_mb``, ``infer_ms_per_frame``. ``--out``
writes everything (per-view tables, FAR/FRR, counts, provenance) for ``--card`` (MODEL_CARD.md's
results section is generated from it) and ``--record`` (the calibrated threshold into the sidecar).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CLIP_FRAMES = 60
WARMUP, REPEATS = 3, 10
KEYS = ("nm_rank1_11views", "bg_rank1_11views", "cl_rank1_11views", "tar_at_far1", "weights_mb", "infer_ms_per_frame")


class BenchmarkError(Exception):
    """A clear, one-line reason the benchmark cannot run (exit 2)."""


def resolve_weights(weights: str | None, checkpoint: str | None, scratch: Path) -> Path:
    """The ``.safetensors`` to measure: given, exported from ``checkpoint`` into ``scratch``, or the shipped one."""
    from gaitheat.pretrained import export_pretrained, no_model_message, shipped_model

    if weights and checkpoint:
        raise BenchmarkError("give --weights or --checkpoint, not both")
    if checkpoint:
        if not Path(checkpoint).is_file():
            raise BenchmarkError(f"{checkpoint}: no such checkpoint file")
        return export_pretrained(checkpoint, scratch, Path(checkpoint).stem, max_bytes=None).weights
    if weights:
        if not Path(weights).is_file():
            raise BenchmarkError(f"{weights}: no such weights file")
        return Path(weights)
    shipped = shipped_model()
    if shipped is None:
        raise BenchmarkError("no shipped pretrained model to benchmark: " + no_model_message().split(": ", 1)[1]
                             + "; or pass --weights / --checkpoint")
    return shipped.weights


def split_open_set(subjects: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(enrolled, calibration strangers, evaluation strangers) of the sorted test subjects."""
    ordered = sorted(subjects)
    enrolled, strangers = ordered[0::2], ordered[1::2]
    return enrolled, strangers[0::2], strangers[1::2]


def open_set(emb: np.ndarray, subjects: list[str], conditions: list[str], sha256: str, distance: str,
             scratch: Path) -> dict[str, Any]:
    """Calibrate a threshold on one set of walks and measure FAR / FRR / TAR@FAR1% on another (module docstring)."""
    from gaitheat.gallery.db import GalleryDB, SequenceSource
    from gaitheat.gallery.index import open_searcher
    from gaitheat.gallery.service import calibrate, open_set_curve

    enrolled, cal_strangers, eval_strangers = split_open_set(sorted(set(subjects)))
    if len(enrolled) < 2 or not cal_strangers or not eval_strangers:
        raise BenchmarkError(f"open set needs at least 4 test subjects (got {len(set(subjects))})")
    def rows(who: list[str], conds: tuple[str, ...]) -> list[int]:
        return [i for i, (s, c) in enumerate(zip(subjects, conditions, strict=True)) if s in who and c in conds]

    pick = {"gallery": rows(enrolled, ("nm-01", "nm-02", "nm-03", "nm-04")),
            "cal": rows(enrolled, ("nm-05",)) + rows(cal_strangers, ("nm-05", "nm-06")),
            "eval": rows(enrolled, ("nm-06",)) + rows(eval_strangers, ("nm-05", "nm-06"))}
    for name, found in pick.items():
        if not found:
            raise BenchmarkError(f"open set: no {name} sequences (the store needs nm-01..06 of the test subjects)")
    with GalleryDB(scratch / "open-set.db", create=True) as db:
        for person in enrolled:
            items = [(emb[i], SequenceSource(f"{person}-{conditions[i]}-{i}")) for i in pick["gallery"]
                     if subjects[i] == person]
            db.enrol(person, items, sha256, "benchmark", distance)
        searcher = open_searcher(db, "exact")
        names = [subjects[i] for i in pick["cal"]]
        cal = calibrate(db, searcher, emb[pick["cal"]], names, store=False)
        top = [searcher.top_people(emb[i], 1)[0] for i in pick["eval"]]
    truth = [subjects[i] for i in pick["eval"]]
    best = np.array([d for _, d in top])
    correct = np.array([n == t for (n, _), t in zip(top, truth, strict=True)])
    known = np.array([t in enrolled for t in truth])
    accepted = best <= cal.chosen
    far = float(accepted[~known].mean())
    frr = float(1.0 - (accepted[known] & correct[known]).mean())
    at_far1 = open_set_curve(best, correct, known, target_far=0.01)
    c = int(np.searchsorted(at_far1.thresholds, at_far1.chosen))
    return {"threshold": cal.chosen, "rule": cal.rule, "calibration_eer": cal.eer, "far": far, "frr": frr,
            "tar_at_far1": float(1.0 - at_far1.frr[c]), "threshold_at_far1": at_far1.chosen,
            "enrolled": len(enrolled), "calibration_strangers": len(cal_strangers),
            "evaluation_strangers": len(eval_strangers), "gallery_sequences": len(pick["gallery"]),
            "calibration_walks": {"known": cal.known, "strangers": cal.strangers},
            "evaluation_walks": {"known": int(known.sum()), "strangers": int((~known).sum())},
            "closed_set_rank1_eval_known": float(correct[known].mean())}


def infer_ms_per_frame(model: Any, spec: Any) -> float:
    """Median ms per frame of embedding one CLIP_FRAMES clip on the CPU (module docstring)."""
    import torch

    from gaitheat.evaluate import embed_sequences
    from gaitheat.pretrained import check_input

    clip = np.concatenate([check_input(seed) for seed in range(CLIP_FRAMES // 16 + 1)])[:CLIP_FRAMES]
    times = []
    with torch.inference_mode():
        for i in range(WARMUP + REPEATS):
            start = time.perf_counter()
            embed_sequences(model, [clip], device="cpu", precision="auto", spec=spec)
            if i >= WARMUP:
                times.append((time.perf_counter() - start) * 1000 / CLIP_FRAMES)
    return statistics.median(times)


def _inference(model: Any) -> Any:
    """The network as enrol / identify run it (GaitHeat: BatchNorm folded, channels-last)."""
    for_inference = getattr(model, "for_inference", None)
    return for_inference() if callable(for_inference) else model.eval()


def measure(weights: Path, data_root: str, partition: str, allow_incomplete: bool = False, device: str = "cpu",
            progress: bool = True) -> dict[str, Any]:
    """Every number of the benchmark for one exported model (see the module docstring)."""
    import torch

    from gaitheat.evaluate import embed_store, eval_distance, protocol_rows, resolve_protocol
    from gaitheat.gallery.db import DISTANCE_NAMES
    from gaitheat.pretrained import evaluation_config, load_pretrained, read_info
    from gaitheat.protocols import evaluate_embeddings

    if not Path(data_root).is_dir():
        raise BenchmarkError(f"--data-root {data_root}: not a folder")
    if not Path(partition).is_file():
        raise BenchmarkError(f"--partition {partition}: no such file")
    info = read_info(weights)
    overrides = [f"data.root={data_root}", "data.dataset=custom", f"data.partition={partition}",
                 "eval.protocol=casia-b", f"eval.partition={partition}"]
    if allow_incomplete:
        overrides.append("eval.allow_incomplete=true")
    cfg = evaluation_config(weights, overrides)  # the model's own config, pointed at this store
    protocol = resolve_protocol(cfg.eval, getattr(cfg.model, "gamma_deg", 5.0))
    target = cfg.model.for_target(protocol.gamma_deg, cfg.model)
    model, _, loaded = load_pretrained(weights, map_location=device, model_config=target)  # SHA-256 checked
    model = _inference(model)
    spec = target.spec()
    rows, used_partition, missing = protocol_rows(cfg, protocol, data_root)
    emb = embed_store(model, data_root, rows, torch.device(device), cfg.data.frames_test_max, 1, 0, cfg.eval.precision,
                      progress=progress, spec=spec, window=cfg.data.frames_test, needed_by=f"model {target.name}")
    subjects, conditions, views = [r.subject for r in rows], [r.condition for r in rows], [r.view for r in rows]
    closed = evaluate_embeddings(protocol, emb, subjects, conditions, views, eval_distance(cfg.eval, spec))
    sets = {name: {"rank1": s["rank1"] / 100.0,
                   "per_view": {v: x / 100.0 for v, x in zip(closed["views"], s["per_view"]["rank1"], strict=True)},
                   "probes": s["num_probes"]}
            for name, s in closed["sets"].items()}
    with tempfile.TemporaryDirectory() as scratch:
        opened = open_set(emb, subjects, conditions, loaded["sha256"], DISTANCE_NAMES[spec.distance], Path(scratch))
    ms = infer_ms_per_frame(model if device == "cpu" else _inference(load_pretrained(weights, model_config=target)[0]),
                            spec)
    keys = {"nm_rank1_11views": sets["NM"]["rank1"], "bg_rank1_11views": sets["BG"]["rank1"],
            "cl_rank1_11views": sets["CL"]["rank1"], "tar_at_far1": opened["tar_at_far1"],
            "weights_mb": weights.stat().st_size / 1e6, "infer_ms_per_frame": ms}
    import os

    import gaitheat

    return {
        "keys": keys,
        "model": {"name": info.name, "sha256": loaded["sha256"], "size_bytes": weights.stat().st_size,
                  "parameters": info.meta.get("parameters"), "widths": info.meta.get("model", {}).get("widths"),
                  "step": loaded["step"], "train_subjects": info.meta.get("train_subjects")},
        "data": {"root": str(data_root), "partition": used_partition, "subjects": len(set(subjects)),
                 "sequences": len(rows), "views": closed["views"], "complete": not missing,
                 "left_out": missing.to_dict() if missing else None},
        "closed_set": {"protocol": "casia-b", "distance": closed["distance"],
                       "gamma_deg": getattr(target, "gamma_deg", None), "sets": sets},
        "open_set": opened,
        "speed": {"infer_ms_per_frame": ms, "clip_frames": CLIP_FRAMES, "repeats": REPEATS, "statistic": "median",
                  "device": "cpu", "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()},
        "measured": {"date": time.strftime("%Y-%m-%d", time.gmtime()), "gaitheat_version": gaitheat.__version__,
                     "torch_version": torch.__version__},
    }


def format_table(res: dict[str, Any]) -> str:
    """Per-view rank-1 of NM / BG / CL, then the open-set and speed lines."""
    views = res["data"]["views"]
    lines = [f"model {res['model']['name']} (sha256 {res['model']['sha256'][:12]}..., step {res['model']['step']}) on "
             f"{res['data']['subjects']} held-out subjects, {res['data']['sequences']} sequences, views "
             f"{len(views)} of 11" + ("" if res["data"]["complete"] else " (INCOMPLETE store: mechanics check only)"),
             "", "rank-1 (identical views excluded)  " + " ".join(f"{v:>5}" for v in views) + "   mean"]
    for name, s in res["closed_set"]["sets"].items():
        lines.append(f"{name:<34}" + " ".join(f"{s['per_view'][v]:5.3f}" for v in views) + f"  {s['rank1']:5.3f}")
    o = res["open_set"]
    lines += ["", f"open set: threshold {o['threshold']:.4f} (EER rule on {o['calibration_walks']['known']} known + "
              f"{o['calibration_walks']['strangers']} stranger walks); on {o['evaluation_walks']['known']} known + "
              f"{o['evaluation_walks']['strangers']} other stranger walks: FAR {o['far']:.3f}, FRR {o['frr']:.3f}; "
              f"TAR at FAR 1% {o['tar_at_far1']:.3f}",
              f"weights {res['keys']['weights_mb']:.2f} MB; inference {res['keys']['infer_ms_per_frame']:.3f} ms per "
              f"frame (median of {REPEATS}, {CLIP_FRAMES}-frame clip, CPU, {res['speed']['torch_threads']} threads)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-root", required=True, help="held-out heatmap store")
    parser.add_argument("--partition", required=True, help="partition JSON whose TEST_SET are the held-out subjects")
    parser.add_argument("--weights", help="exported .safetensors (default: the shipped model)")
    parser.add_argument("--checkpoint", help="a training .pt, exported through gaitheat.pretrained first")
    parser.add_argument("--allow-incomplete", action="store_true",
                        help="a store without all 11 views (mechanics check)")
    parser.add_argument("--device", default="cpu", help="device for the evaluation embeddings (timing is on the CPU)")
    parser.add_argument("--out", help="write the full results JSON here (what --card reads)")
    parser.add_argument("--card", help="regenerate this MODEL_CARD.md's results section from the results")
    parser.add_argument("--record", action="store_true",
                        help="store the calibrated threshold in the measured model's sidecar")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object with the issue's keys")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from gaitheat.atomic import atomic_write_text
    from gaitheat.model_card import update_card
    from gaitheat.pretrained import record_calibration

    try:
        with tempfile.TemporaryDirectory() as scratch:
            weights = resolve_weights(args.weights, args.checkpoint, Path(scratch))
            res = measure(weights, args.data_root, args.partition, args.allow_incomplete, args.device,
                          progress=not args.no_progress)
            if args.record:
                if args.checkpoint:
                    raise BenchmarkError("--record writes into the measured weights' sidecar: use --weights or "
                                         "the shipped model, not --checkpoint (a temporary export)")
                o = res["open_set"]
                record_calibration(weights, o["threshold"], {
                    "rule": o["rule"], "calibration_eer": o["calibration_eer"], "far_evaluation_walks": o["far"],
                    "frr_evaluation_walks": o["frr"], "data": res["data"]["root"], "complete": res["data"]["complete"],
                    "date": res["measured"]["date"], "by": "benchmarks/pretrained.py --record"})
    except (BenchmarkError, ValueError) as exc:  # ValueError: tampered weights, bad store ... (names the file)
        print(f"benchmarks/pretrained.py: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(res))
    if args.out:
        atomic_write_text(args.out, json.dumps(res, indent=1) + "\n")
    if args.card:
        update_card(args.card, res)
    if args.json:
        print(json.dumps(res["keys"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
