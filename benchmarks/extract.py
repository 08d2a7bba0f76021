"""Extraction throughput: real multi-person video (vtest.avi) and a single-person clip, decode to files.

For each clip it prints person-frames per second end to end (decode, detect, crop, pose, track,
filter, write ``.ghs`` files; the vtest clip is the first video this process extracts, so its one-off
costs, such as importing ``trackers``, are inside), the pose model's invoke time alone in the same run
(and the detector's), the overhead ratio ``end_to_end / pose_invoke - 1`` (goal <= 0.30; the detector
counts as overhead; also given against pose + detector invoke time), and the same ratios in CPU time
(this process and its threads, so decoding and the background import count even when they overlap
on another core). Default settings throughout: on vtest the BlazePose detector searches the whole
frame and 20 tiles at the first frame, then spreads that search over ``detect_every`` = 30 frames
and searches around anyone just lost (see :class:`gaitheat.detect.DetectionSchedule`); a whole-frame
search is split between the detector thread and the caller. The cold vtest row runs in a fresh
process per repetition (the first video a process extracts, so its one-off costs are inside); a
third row, ``vtest-warm``, extracts the same clip again in a warm process (no one-off imports); the
JSON headline keys stay the cold row's. The detector runs on its own thread beside the pose model, which
can slow the pose invokes down a little; so the same number of invokes is also timed alone after the
run (:func:`pose_invoke_alone`), and ``overhead_ratio`` uses whichever invoke time is smaller (the
larger ratio); ``overhead_in_run`` is the ratio over the in-run invoke time alone.

Then the speed-up of ``--workers 2`` over 1 on four 60-frame vtest clips (goal >= 1.7x), measured two
ways, each under its own key. ``two_worker_speedup_per_core`` gives each worker one core, as strong
scaling is measured and as ``taskset`` or a Slurm allocation would: the 1-worker run's affinity mask
holds one core (the extractor then runs without its detector thread) and the 2-worker run's two.
``two_worker_speedup_all_cores`` lets the 1-worker run use every core, so its detector, decoding
and association threads already take part of the second core and a second process gains less.
(An earlier ``two_worker_speedup`` key changed meaning between these two; it is gone.) Both
runs start from this process, whose imports are warm; with 2 workers it extracts beside one spawned
worker that starts cold, both taking clips from one queue. Model loading and worker start are
included. The CPU totals (this process plus children) give the speed-up projected for two idle cores.
The same is then measured on a larger batch, eight 90-frame clips
(``two_worker_speedup_larger_batch_per_core``, ``..._all_cores``): a dataset batch has thousands of videos, so
the spawned worker's fixed start (about 1 s of CPU, mostly imports) and the last video's tail weigh
less there than in four 60-frame clips. The
single-person clip is a synthetic walker from :mod:`gaitheat.synth` (no real single-walker video
installs offline).

    .venv/bin/python benchmarks/extract.py [--frames 100] [--reps 3] [--json]

Every figure is the median over ``--reps`` repetitions (each speed-up is the median of the
per-repetition ratios); the table also shows the fastest repetition, labelled ``fastest``. With
``--json`` the last line is one JSON object with keys ``person_frames_per_s``, ``overhead_ratio``,
``vtest_tracks`` (vtest, cold), ``two_worker_speedup_per_core``, ``two_worker_speedup_all_cores``,
plus the single-person clip's values, the other speed-ups, ``fastest`` (the same keys at the fastest
repetition), ``reps`` and the raw timings of every repetition. Wall-clock numbers need an idle
machine; the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("GAITHEAT_TEST_DATA", REPO / ".cache/opencv-doc/usr/share/doc/opencv-doc/examples/data"))


def write_clip(src: Path, out: Path, start: int, frames: int) -> Path:
    """Copy frames ``[start, start + frames)`` of a video into an MJPG AVI."""
    import cv2

    out.parent.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(src))
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    writer = None
    for _ in range(frames):
        ok, frame = capture.read()
        if not ok:
            break
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"MJPG"), 10, (frame.shape[1], frame.shape[0]))
        writer.write(frame)
    capture.release()
    if writer is None:
        raise SystemExit(f"{src}: no frames")
    writer.release()
    return out


def single_person_clip(out: Path, frames: int) -> Path:
    from gaitheat.synth import render_sequence, subject_identity, write_video

    rendered = render_sequence(subject_identity(0, "001", 0.3), "nm-01", "090", frames=frames, seed=1)
    write_video(out, rendered.frames)
    return out


def measure(source: Path, root: Path) -> dict[str, float]:
    """One end-to-end run into ``root`` with timers on both models."""
    from gaitheat.detect import BlazePoseDetector
    from gaitheat.extract import ExtractConfig
    from gaitheat.extract_store import extract_one_to_store
    from gaitheat.pose.blazepose import BlazePoseBackend

    cfg = ExtractConfig()
    pose = BlazePoseBackend()
    detector = BlazePoseDetector(score_threshold=cfg.detect_score, tiles=cfg.tiles, tile_size=cfg.tile_size)
    start, cpu = time.perf_counter(), time.process_time()
    record = extract_one_to_store(source, root, cfg, pose=pose, boxes=detector)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    alone = pose_invoke_alone(pose.invokes)
    if record["status"] != "done":
        raise SystemExit(f"{source}: extraction failed: {record.get('error')}")
    person_frames = record["person_frames"]
    stored = [root / p for p in record["sequences"]]
    from gaitheat.storage import SequenceFile

    lengths = [SequenceFile(p).num_frames for p in stored]
    return {
        "frames": record["frames"], "person_frames": person_frames, "wall_s": wall,
        "pose_invoke_s": pose.invoke_seconds, "detector_invoke_s": detector.invoke_seconds,
        "person_frames_per_s": person_frames / wall,
        # the larger of the two denominators' ratios: never flattered by the detector thread's contention
        "overhead_ratio": wall / min(pose.invoke_seconds, alone) - 1,
        "overhead_in_run": wall / pose.invoke_seconds - 1,
        "overhead_vs_models": wall / (pose.invoke_seconds + detector.invoke_seconds) - 1,
        "cpu_s": cpu, "pose_invoke_cpu_s": pose.invoke_cpu_seconds,
        "detector_invoke_cpu_s": detector.invoke_cpu_seconds,
        "cpu_overhead_ratio": cpu / pose.invoke_cpu_seconds - 1,
        "cpu_overhead_vs_models": cpu / (pose.invoke_cpu_seconds + detector.invoke_cpu_seconds) - 1,
        "tracks_20": sum(n >= 20 for n in lengths), "sequences": len(stored),
        "pose_invokes": pose.invokes, "pose_invoke_alone_s": alone, "overhead_vs_pose_alone": wall / alone - 1,
    }


def pose_invoke_alone(invokes: int, sample: int = 256) -> float:
    """Seconds ``invokes`` pose-model invokes take with nothing else running: a fresh backend's mean over
    ``sample`` invokes (after a warm-up), times ``invokes``.

    The extractor runs the detector on a second thread while the pose model runs, so the invoke time
    measured in the run can be inflated by the two sharing the machine; this is the ratio's
    denominator without that (the model's cost does not depend on the crop's content).
    """
    import numpy as np

    from gaitheat.pose.blazepose import BlazePoseBackend

    pose = BlazePoseBackend()
    crops = np.random.default_rng(0).integers(0, 256, (sample, 256, 192, 3), dtype=np.uint8)
    pose(crops[:8])
    pose.invoke_seconds, pose.invokes = 0.0, 0
    pose(crops)
    return pose.invoke_seconds / pose.invokes * invokes


def worker_speedup(clips: list[Path], work: Path, per_core: bool) -> dict[str, float]:
    """Wall and CPU time of extract_to_store on ``clips`` with 1 and with 2 workers (model loading included).

    Both runs start in this process, which has already extracted (so its imports are warm); with 2
    workers it extracts too, beside one spawned worker that starts cold. CPU time is this process's
    plus its children's. ``per_core``: each worker gets one core (the process's affinity mask is set to
    one core for the 1-worker run and two for the 2-worker run, as ``taskset`` or a Slurm allocation
    would; the extractor sees one core and runs without its detector thread); otherwise both runs may
    use every core, so the 1-worker run's detector, decoding and association threads use the second
    core too.
    """
    from gaitheat.extract import ExtractConfig
    from gaitheat.extract_store import extract_to_store

    cores = sorted(os.sched_getaffinity(0))
    out: dict[str, float] = {}
    try:
        for workers in (1, 2):
            if per_core:
                os.sched_setaffinity(0, cores[:workers])
            before, start = os.times(), time.perf_counter()
            summary = extract_to_store(clips, work / f"w{workers}", ExtractConfig(), workers=workers)
            out[f"wall_{workers}"] = time.perf_counter() - start
            after = os.times()
            out[f"cpu_{workers}"] = sum(getattr(after, f) - getattr(before, f)
                                        for f in ("user", "system", "children_user", "children_system"))
            if summary["failed"]:
                raise SystemExit(f"worker run failed: {summary['failures']}")
    finally:
        os.sched_setaffinity(0, cores)
    out["speedup"] = out["wall_1"] / out["wall_2"]
    # On 2 idle cores each worker gets a core: the pool takes about half its total CPU time.
    out["projected_idle_speedup"] = out["cpu_1"] / (out["cpu_2"] / 2)
    return out


def measure_cold(source: Path, root: Path) -> dict[str, float]:
    """:func:`measure` in a fresh process: the first video it extracts, one-off costs inside."""
    proc = subprocess.run([sys.executable, __file__, "--measure-one", str(source), str(root)], capture_output=True,
                          text=True, check=False, env={**os.environ, "PYTHONPATH": str(REPO) + os.pathsep
                                                       + os.environ.get("PYTHONPATH", "")})
    if proc.returncode != 0:
        raise SystemExit(f"cold run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def median_row(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per key, the median over repetitions (counts that must agree, such as frames, come from the first)."""
    return {k: statistics.median(r[k] for r in runs) if isinstance(runs[0][k], float) else runs[0][k]
            for k in runs[0]}


def fastest(runs: list[dict[str, float]]) -> dict[str, float]:
    return min(runs, key=lambda r: r["wall_s"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100, help="vtest.avi frames for the throughput run")
    parser.add_argument("--single-frames", type=int, default=60, help="frames of the single-person clip")
    parser.add_argument("--worker-clips", type=int, default=4, help="vtest clips for the worker speed-up")
    parser.add_argument("--worker-frames", type=int, default=60, help="frames per worker clip")
    parser.add_argument("--batch-clips", type=int, default=8, help="vtest clips for the larger batch (0: skip)")
    parser.add_argument("--batch-frames", type=int, default=90, help="frames per larger-batch clip")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every measurement (medians reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--measure-one", nargs=2, metavar=("CLIP", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_one:
        print(json.dumps(measure(Path(args.measure_one[0]), Path(args.measure_one[1]))))
        return 0
    if not (DATA / "vtest.avi").is_file():
        raise SystemExit(f"vtest.avi not found in {DATA} (set GAITHEAT_TEST_DATA)")
    if args.reps < 1:
        raise SystemExit("--reps must be >= 1")
    load_before = f"{os.getloadavg()[0]:.1f}"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        vtest = write_clip(DATA / "vtest.avi", work / "vtest.avi", 0, args.frames)
        single = single_person_clip(work / "single" / "001-nm-01-090.avi", args.single_frames)
        runs: dict[str, list[dict[str, float]]] = {"vtest": [], "single": [], "vtest-warm": []}
        for rep in range(args.reps):  # cold: each in a fresh process
            runs["vtest"].append(measure_cold(vtest, work / f"store-vtest-{rep}"))
        measure(single, work / "store-warm-up")  # this process's one-off costs, not timed
        for rep in range(args.reps):
            runs["single"].append(measure(single, work / f"store-single-{rep}"))
            # the same vtest clip in this warm process: the per-frame pipeline without one-off costs
            runs["vtest-warm"].append(measure(vtest, work / f"store-vtest-warm-{rep}"))
        rows = {name: median_row(r) for name, r in runs.items()}
        clips = [write_clip(DATA / "vtest.avi", work / "clips" / f"clip{i}.avi", i * 150, args.worker_frames)
                 for i in range(args.worker_clips)]
        batch_clips = [write_clip(DATA / "vtest.avi", work / "batch" / f"clip{i}.avi", i * args.batch_frames,
                                  args.batch_frames) for i in range(args.batch_clips)]
        batches = {"small": (clips, f"{args.worker_clips} x {args.worker_frames}")}
        if batch_clips:
            batches["larger"] = (batch_clips, f"{args.batch_clips} x {args.batch_frames}")
        pool_runs = {(batch, mode): [worker_speedup(inputs, work / f"pool-{batch}-{mode}-{rep}",
                                                    per_core=mode == "per_core") for rep in range(args.reps)]
                     for batch, (inputs, _) in batches.items() for mode in ("per_core", "all_cores")}
        pools = {key: median_row(r) for key, r in pool_runs.items()}
        pool_best = {key: max(r, key=lambda x: x["speedup"]) for key, r in pool_runs.items()}
    print(f"medians of {args.reps} repetition(s); 'fastest' = the repetition with the shortest wall time "
          "(speed-ups: the largest)")
    print(f"{'clip':10} {'frames':>6} {'person-fr':>9} {'wall s':>7} {'pose inv s':>10} {'alone s':>7} "
          f"{'det inv s':>9} {'pf/s':>6} {'fastest':>7} {'overhead':>8} {'in run':>6} {'vs models':>9} "
          f"{'tracks>=20':>10}")
    for name, r in rows.items():
        best = fastest(runs[name])
        print(f"{name:10} {r['frames']:>6} {r['person_frames']:>9} {r['wall_s']:>7.2f} {r['pose_invoke_s']:>10.2f} "
              f"{r['pose_invoke_alone_s']:>7.2f} {r['detector_invoke_s']:>9.2f} {r['person_frames_per_s']:>6.1f} "
              f"{best['person_frames_per_s']:>7.1f} {r['overhead_ratio']:>8.2f} {r['overhead_in_run']:>6.2f} "
              f"{r['overhead_vs_models']:>9.2f} {r['tracks_20']:>10}")
    print("overhead = wall / pose invoke - 1 (the issue's ratio), with the smaller of the invoke time measured in the "
          "run and\n  the same invokes timed alone afterwards (the detector thread can slow invokes down); in run = "
          "in-run invokes only;\n  vs models = wall / (pose + detector invoke) - 1; vtest is cold (a fresh process "
          "per repetition), vtest-warm and single run in a warm process")
    print(f"{'clip':10} {'cpu s':>7} {'pose cpu s':>10} {'det cpu s':>9} {'cpu overhead':>12} {'vs models':>9}")
    for name, r in rows.items():
        print(f"{name:10} {r['cpu_s']:>7.2f} {r['pose_invoke_cpu_s']:>10.2f} {r['detector_invoke_cpu_s']:>9.2f} "
              f"{r['cpu_overhead_ratio']:>12.2f} {r['cpu_overhead_vs_models']:>9.2f}")
    print("(CPU-time ratios are robust to other jobs on a shared machine; load average before/after: "
          f"{load_before} / {os.getloadavg()[0]:.1f})")
    print(f"{'workers':10} {'clips':>9} {'cores 1 / 2':>11} {'1 worker s':>10} {'2 workers s':>11} {'speed-up':>8} "
          f"{'fastest':>7} {'cpu 1 s':>7} {'cpu 2 s':>7} {'projected':>9}")
    for (batch, mode), r in pools.items():
        cores = "1 / 2" if mode == "per_core" else "2 / 2"
        print(f"{mode:10} {batches[batch][1]:>9} {cores:>11} {r['wall_1']:>10.2f} {r['wall_2']:>11.2f} "
              f"{r['speedup']:>7.2f}x {pool_best[batch, mode]['speedup']:>6.2f}x {r['cpu_1']:>7.2f} "
              f"{r['cpu_2']:>7.2f} {r['projected_idle_speedup']:>8.2f}x")
    print("speed-up of 2 workers over 1 (goal >= 1.7x), the median of the repetitions' ratios: per_core = one core "
          "per worker\n  (1 worker on 1 core, 2 on 2 cores: the scaling of --workers); all_cores = the 1-worker run "
          "may use the second\n  core for its detector, decoding and association threads. projected = CPU time of 1 "
          "worker / (CPU time of 2 / 2).\n  Model loading and the spawned worker's cold start are inside; the larger "
          f"batch weighs them less, as a dataset batch does. (machine cores: {os.cpu_count()})")
    if args.json:
        def headline(v: dict[str, float], s: dict[str, float], w: dict[str, float],
                     p: dict[tuple[str, str], dict[str, float]]) -> dict[str, object]:
            return {
                "person_frames_per_s": round(v["person_frames_per_s"], 3),
                "overhead_ratio": round(v["overhead_ratio"], 4), "overhead_in_run": round(v["overhead_in_run"], 4),
                "vtest_tracks": v["tracks_20"],
                "two_worker_speedup_per_core": round(p["small", "per_core"]["speedup"], 4),
                "two_worker_speedup_all_cores": round(p["small", "all_cores"]["speedup"], 4),
                "single_person_frames_per_s": round(s["person_frames_per_s"], 3),
                "single_overhead_ratio": round(s["overhead_ratio"], 4),
                "cpu_overhead_ratio": round(v["cpu_overhead_ratio"], 4),
                "single_cpu_overhead_ratio": round(s["cpu_overhead_ratio"], 4),
                "warm_overhead_ratio": round(w["overhead_ratio"], 4),
                "warm_cpu_overhead_ratio": round(w["cpu_overhead_ratio"], 4),
                "two_worker_speedup_larger_batch_per_core":
                    round(p["larger", "per_core"]["speedup"], 4) if batch_clips else None,
                "two_worker_speedup_larger_batch_all_cores":
                    round(p["larger", "all_cores"]["speedup"], 4) if batch_clips else None,
            }

        out = headline(rows["vtest"], rows["single"], rows["vtest-warm"], pools)
        best = headline(fastest(runs["vtest"]), fastest(runs["single"]), fastest(runs["vtest-warm"]), pool_best)
        print(json.dumps({**out, "reps": args.reps, "fastest": best, "runs": runs,
                          "workers": {f"{batch}_{mode}": r for (batch, mode), r in pool_runs.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
