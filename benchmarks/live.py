"""Live identification on this machine: processed frame rate, event latency, memory over 10k frames, ONNX.

The network is GaitHeat at full width (64-128-256-512, random weights: speed does not depend on
training), frames at their native size, the real pose model (BlazePose via LiteRT) and detector,
ByteTrack, and an exact gallery of 100 people. Measured:

* ``fps_1_person`` / ``fps_3_people``: sustained processed frames per second of the whole live loop
  (:func:`gaitheat.live.run_live`) with one person, resp. three people, in every frame: the frames of
  a synthetic walker video (320 x 240) where the walker is wholly in view (about 85 of 220), looped;
  and three such walkers (subjects 001-003) side by side in one 960 x 240 frame, each looped with its
  own phase. Read as fast as the loop takes frames (drop policy ``none``: the source never starves
  it), after a warm-up of 20 frames; the network runs at full width on every good frame of every
  person (``--embed-every K``: on every K-th, an option of ``gaitheat identify``). Goals: >= 25 and
  >= 10. (Until this session the videos were a whole walker video and a crossing scene, in which the
  walker was in view on 84 of the 200 timed frames and the "three people" scene had 1.2 people per
  frame on average: frames without work inflated both rates.)
* ``event_latency_s``: the same single-person frames (twice as many) delivered in real time (25 fps) with the live
  drop policy (``latest``): the median, over the identity events (the first, at the minimum window,
  and its refinements), of the time from the arrival of the frame that completed the window to its
  event (the ``latency_s`` field of the events). Goal: <= 0.5 s.
* ``rss_mb_after_1k_frames`` / ``rss_mb_after_10k_frames``: resident memory of a soak of 10,000 frames
  through the tracker and the identifier (track windows, cached features, events) from a synthetic
  frame source: three people at a time with synthetic heatmaps, a new person every 150 frames
  (track churn), at the ``cpu-small`` width so the soak takes minutes, not an hour; the pose model
  and decoder keep no state between frames. Goal: 10k within 10 % of 1k.
* ``fps_1_person_small_net`` / ``fps_3_people_small_net`` (part ``small``): the
  same two runs with the network at 1/8 width (``cpu-small``: 8-16-32-64, stride 1 in the first stage).
* ``fps_1_person_shipped`` / ``fps_3_people_shipped`` (part ``shipped``): the same two runs with the real
  shipped model (``gaitheat-synth``: 1/8 width, stride 2 in the first stage, 8 strips), which is what
  ``gaitheat identify`` uses when no checkpoint is given.
* ``torch_infer_ms_per_frame`` / ``onnx_infer_ms_per_frame`` / ``onnx_int8_infer_ms_per_frame``: the
  full-width network on one 30-frame sequence, per frame, median of reps, all on the same cores. PyTorch
  runs the 3x3 convs of stages 2-4 by Winograd's F(4x4, 3x3) (:mod:`gaitheat.models.winograd`, as every
  PyTorch embedding on a CPU does); the ONNX graphs run them as ONNX Runtime does, directly.

    .venv/bin/python benchmarks/live.py             # table
    .venv/bin/python benchmarks/live.py --json      # last line: one JSON object
    .venv/bin/python benchmarks/live.py --quick     # shorter videos and soak (a smoke run)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def random_embedder(folder: Path, config: str = "") -> Any:
    """A random-weight checkpoint written to ``folder`` and loaded as the gallery loads it: full width, or the
    model of the named packaged config (``cpu-small``: 1/8 width, the width of ``make pretrained``'s model)."""
    import torch

    from gaitheat.config import load_config, to_dict
    from gaitheat.experiment import ExperimentConfig
    from gaitheat.gallery.service import load_embedder
    from gaitheat.models import build_model

    torch.manual_seed(0)
    cfg = load_config(ExperimentConfig, config) if config else ExperimentConfig()
    model = build_model(cfg.model, 10)
    path = folder / f"{config or 'full'}.pt"
    torch.save({"step": 0, "model": model.state_dict(), "config": to_dict(cfg), "num_classes": 10}, path)
    return load_embedder(path, "cpu"), path


def shipped_model_embedder() -> Any:
    """The shipped pretrained model (SHA-256 verified), loaded as ``gaitheat identify`` loads it without
    ``--checkpoint``."""
    from gaitheat.gallery.service import load_embedder
    from gaitheat.pretrained import default_checkpoint, no_model_message

    path = default_checkpoint()
    if path is None:
        raise SystemExit(f"part 'shipped': {no_model_message()}")
    return load_embedder(path, "cpu")


def searcher_for(embedder: Any, folder: Path) -> Any:
    """:func:`gallery_searcher` in ``folder`` (made if missing) for embeddings of ``embedder``'s shape."""
    folder.mkdir(exist_ok=True)
    return gallery_searcher(folder, embedder.embed([np.zeros((2, 17, 64, 48), np.float32)]).shape[1:])


def gallery_searcher(folder: Path, shape: tuple[int, int], people: int = 100) -> Any:
    from gaitheat.gallery.db import GalleryDB, SequenceSource
    from gaitheat.gallery.index import open_searcher

    rng = np.random.default_rng(0)
    db = GalleryDB(folder / "g.db", create=True)
    for i in range(people):
        e = rng.normal(size=shape).astype(np.float32)
        e /= np.linalg.norm(e, axis=0, keepdims=True)
        db.enrol(f"person-{i:03d}", [(e, SequenceSource("x.avi", 0, 30))], "bench")
    return open_searcher(db, "exact")


class ArrayReader:
    """Frames from memory, the :class:`gaitheat.live_source.FrameReader` interface: as fast as taken
    (``pace`` 0, nothing dropped) or at ``pace`` frames per second with the ``latest`` drop policy."""

    def __init__(self, frames: list[np.ndarray], fps: float, pace: float = 0.0) -> None:
        self.frames, self.fps, self.pace = frames, fps, pace
        self.delivered = self.dropped = self.reconnects = 0
        self.end_reason = "end of frames"
        self._i = 0
        self._latest: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = False
        if pace:
            threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        from gaitheat.live_source import Received

        start = time.monotonic()
        for i, rgb in enumerate(self.frames):
            if self._stop.is_set():
                break
            time.sleep(max(0.0, start + i / self.pace - time.monotonic()))
            with self._lock:
                self.dropped += self._latest is not None
                self._latest = Received(i, rgb, time.monotonic())
                self.delivered += 1
        self._done = True

    def get(self, timeout: float = 0.5) -> Any:
        from gaitheat.live_source import Received

        if not self.pace:
            if self._i >= len(self.frames):
                return None
            self._i += 1
            self.delivered += 1
            return Received(self._i - 1, self.frames[self._i - 1], time.monotonic())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                item, self._latest = self._latest, None
            if item is not None:
                return item
            if self._done:
                return None
            time.sleep(0.001)
        return None

    @property
    def ended(self) -> bool:
        return self._i >= len(self.frames) if not self.pace else self._done and self._latest is None

    def stop(self) -> None:
        self._stop.set()


def decode(path: Path) -> list[np.ndarray]:
    from gaitheat.video import decode_frames

    return [f.rgb for f in decode_frames(path)]


def in_view(frames: list[np.ndarray]) -> list[np.ndarray]:
    """The frames of a synthetic walker video where the walker is wholly inside the image: foreground
    (pixels away from the video's median, the static background) that touches neither side border."""
    background = np.median(np.stack(frames[::4]), axis=0)
    keep = []
    for rgb in frames:
        columns = np.flatnonzero((np.abs(rgb.astype(np.float32) - background).max(axis=2) > 40).any(axis=0))
        if len(columns) > 8 and columns[0] > 4 and columns[-1] < rgb.shape[1] - 5:
            keep.append(rgb)
    if len(keep) < 30:
        raise SystemExit(f"the synthetic walker is in view on only {len(keep)} frames")
    return keep


def looped(segment: list[np.ndarray], n: int, offset: int = 0) -> list[np.ndarray]:
    return [segment[(i + offset) % len(segment)] for i in range(n)]


def run_loop(frames: list[np.ndarray], embedder: Any, searcher: Any, pace: float, min_frames: int = 30,
             warmup: int = 20, workers: int | None = None, embed_every: int = 1) -> dict[str, Any]:
    """The live loop over ``frames``: processed fps after ``warmup`` frames, identity latencies (all, and
    the first of each person: from the frame completing the minimum window)."""
    from gaitheat.extract import ExtractConfig
    from gaitheat.live import LiveConfig, LiveIdentifier, PeopleFinder, frame_net_for, run_live

    events: list[dict[str, Any]] = []
    cfg = LiveConfig(min_frames=min_frames, embed_every=embed_every)
    identifier = LiveIdentifier(frame_net_for(embedder, workers), searcher, 1.0, cfg, events.append)
    finder = PeopleFinder(ExtractConfig(), fps=25.0)
    # warm-up (pose model, detector, tracker import, first network calls) outside the timed part
    run_live(ArrayReader(frames[:warmup], 25.0), finder, identifier)
    identifier = LiveIdentifier(identifier.net, searcher, 1.0, cfg, events.append)
    events.clear()
    start = time.monotonic()
    stats = run_live(ArrayReader(frames[warmup:], 25.0, pace), finder, identifier)
    seconds = time.monotonic() - start
    finder.close()
    people = sum(1 for e in events if e["event"] == "enter")
    return {"fps": stats.processed / seconds, "frames": stats.processed, "seconds": seconds, "embedded": stats.embedded,
            "latencies": stats.latencies, "tracks": people,
            "first_latencies": [e["latency_s"] for e in events if e["event"] == "identity" and e["revision"] == 1],
            "identities": sum(1 for e in events if e["event"] == "identity")}


def soak(frames: int, checkpoints: tuple[int, ...]) -> dict[int, float]:
    """RSS after each of ``checkpoints`` frames of synthetic people through tracker + identifier."""
    import torch

    from gaitheat.gallery.service import Embedder
    from gaitheat.live import LiveConfig, LiveIdentifier, frame_net_for
    from gaitheat.models import build_model
    from gaitheat.models.inference import optimise_for_inference
    from gaitheat.track import PersonTracker
    from tests.conftest import gaussian_heatmaps

    torch.manual_seed(0)
    from gaitheat.config import load_config
    from gaitheat.experiment import ExperimentConfig

    cfg = load_config(ExperimentConfig, "cpu-small")
    model = optimise_for_inference(build_model(cfg.model, 4).eval())
    net = frame_net_for(Embedder(model, "soak", "soak", "cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        searcher = gallery_searcher(Path(tmp), (32, 16), 50)
        identifier = LiveIdentifier(net, searcher, 1.0, LiveConfig(lost_seconds=0.5, stats_every_s=1e9),
                                    lambda e: None)
        tracker = PersonTracker(fps=25.0, lost_seconds=0.5)
        rng = np.random.default_rng(0)
        bank = gaussian_heatmaps(64, rng)  # heatmap frames reused: the soak is about state, not pixels
        out: dict[int, float] = {}
        for f in range(frames):
            # three people walking across 640 px, each replaced by a newcomer every 150 frames
            boxes, rows = [], []
            for k in range(3):
                age = (f + 50 * k) % 150
                x = 20 + 4 * age + 200 * k % 400
                boxes.append([x, 100 + 60 * k, x + 60, 260 + 60 * k, 0.9])
                rows.append(bank[(f + 7 * k) % len(bank)])
            b = np.array(boxes, np.float32)
            people = {"boxes": b, "heatmaps": np.stack(rows),
                      "keypoints": np.concatenate([np.zeros((3, 17, 2)), np.full((3, 17, 1), 0.9)], 2).astype(
                          np.float32)}
            identifier.observe(f, f / 25.0, time.monotonic(), people, tracker.update(b))
            if f + 1 in checkpoints:
                out[f + 1] = rss_mb()
        identifier.finish(frames, frames / 25.0)
    return out


def infer_ms(embedder_model: Any, onnx_paths: dict[str, Path], reps: int) -> dict[str, float]:
    """ms per frame of the full-width network on a 30-frame sequence: PyTorch and each ONNX file."""
    import torch

    from gaitheat.export_onnx import OnnxModel
    from tests.conftest import gaussian_heatmaps

    x = gaussian_heatmaps(30, np.random.default_rng(0))
    out = {}
    runners: dict[str, Any] = {name: OnnxModel(p).run for name, p in onnx_paths.items()}

    def torch_run(a: np.ndarray) -> Any:
        with torch.inference_mode():
            return embedder_model.embed(torch.from_numpy(a))

    runners = {"torch": torch_run, **runners}
    for name, run in runners.items():
        run(x[None])  # warm-up
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            run(x[None])
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times) * 1000 / len(x)
    return out


def describe(r: dict[str, Any]) -> str:
    return (f"{r['frames']} frames in {r['seconds']:.1f} s, {r['tracks']} tracks, {r['identities']} identity events, "
            f"{r.get('embedded', 0)} person-frames through the network")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument("--quick", action="store_true", help="short videos and a 2k-frame soak (smoke run)")
    parser.add_argument("--parts", default="fps,small,shipped,latency,soak,onnx",
                        help="comma list of what to run: fps, latency, soak, onnx, small, shipped "
                             "(JSON: only their keys)")
    parser.add_argument("--net-workers", type=int, default=None, metavar="N",
                        help="network worker threads of the live loop (default: as gaitheat identify, one per core)")
    parser.add_argument("--embed-every", type=int, default=1, metavar="K",
                        help="network on every K-th good frame of a person (default 1, as gaitheat identify)")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))

    import torch

    from gaitheat.cores import available_cores
    from gaitheat.export_onnx import export_onnx, int8_path_for
    from gaitheat.synth import write_dataset
    from gaitheat.synth.dataset import sequence_paths

    torch.set_num_threads(1)  # as gaitheat identify on a live source: the pose model has the other core
    n = 70 if args.quick else 220
    soak_frames = 1500 if args.quick else 10_000
    with tempfile.TemporaryDirectory(prefix="gaitheat-live-bench-") as tmp:
        folder = Path(tmp)
        embedder, ckpt = random_embedder(folder)
        searcher = searcher_for(embedder, folder)
        subjects = ["001", "002", "003"]
        write_dataset(folder / "videos", subjects, ["nm-01"], ["090"], frames=220, seed=1, difficulty=0.5,
                      workers=1, progress=False)
        # A walker crosses the 320-px image in about 85 frames: the stretch where they are wholly in view,
        # looped, keeps one person (and, three such images side by side, three) in every timed frame.
        seen = [in_view(decode(sequence_paths(folder / "videos", s, "nm-01", "090")[0])) for s in subjects]
        one = looped(seen[0], n)
        three = [np.concatenate(row, axis=1) for row in zip(*(looped(v, n, 29 * i) for i, v in enumerate(seen)),
                                                              strict=True)]
        print(f"videos: one walker {one[0].shape[1]} x {one[0].shape[0]} ({len(seen[0])} frames in view, looped), "
              f"three side by side {three[0].shape[1]} x {three[0].shape[0]} "
              f"({', '.join(str(len(v)) for v in seen)} frames in view)", flush=True)

        nan: dict[str, Any] = {"fps": float("nan"), "frames": 0, "seconds": 0.0, "tracks": 0, "identities": 0,
                               "latencies": [], "first_latencies": []}
        w = args.net_workers
        k = args.embed_every

        def fps_runs(net: Any, searcher: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            """The loop as fast as it goes, one walker and three walkers in every frame."""
            return (run_loop(one, net, searcher, pace=0.0, workers=w, embed_every=k),
                    run_loop(three, net, searcher, pace=0.0, workers=w, embed_every=k))

        r1, r3 = fps_runs(embedder, searcher) if "fps" in parts else (nan, nan)
        r1s = r3s = r1p = r3p = nan
        if "small" in parts:
            small_embedder, _ = random_embedder(folder, "cpu-small")
            r1s, r3s = fps_runs(small_embedder, searcher_for(small_embedder, folder / "small"))
        if "shipped" in parts:
            shipped_embedder = shipped_model_embedder()
            r1p, r3p = fps_runs(shipped_embedder, searcher_for(shipped_embedder, folder / "shipped"))
        # latency: real-time source (the video twice), first identity after 10 good frames so that a
        # person identified at ~5 fps still gives several events; the window's size does not enter it
        paced = run_loop(looped(seen[0], 2 * n), embedder, searcher, pace=25.0, min_frames=10,
                         workers=w, embed_every=k) if "latency" in parts else nan
        rss = soak(soak_frames, (1000, soak_frames)) if "soak" in parts else {1000: float("nan"),
                                                                               soak_frames: float("nan")}
        ms = {"torch": float("nan"), "onnx": float("nan"), "onnx_int8": float("nan")}
        diffs = (float("nan"), float("nan"))
        if "onnx" in parts:
            export = export_onnx(ckpt, folder / "full.onnx", int8=True)
            torch.set_num_threads(available_cores())  # the network alone: every core, for all three runtimes
            ms = infer_ms(embedder.model, {"onnx": Path(export.path), "onnx_int8": int8_path_for(export.path)},
                          reps=3 if args.quick else 5)
            diffs = (export.max_abs_diff, export.int8_max_abs_diff or float("nan"))

    latency = statistics.median(paced["latencies"]) if paced["latencies"] else float("nan")
    rows = [
        ("fps_1_person", r1["fps"], describe(r1)),
        ("fps_3_people", r3["fps"], describe(r3)),
        ("fps_1_person_small_net", r1s["fps"], "1/8-width network (cpu-small); " + describe(r1s)),
        ("fps_3_people_small_net", r3s["fps"], "1/8-width network; " + describe(r3s)),
        ("fps_1_person_shipped", r1p["fps"], "shipped model (gaitheat-synth); " + describe(r1p)),
        ("fps_3_people_shipped", r3p["fps"], "shipped model; " + describe(r3p)),
        ("event_latency_s", latency, f"median of {len(paced['latencies'])} identity events, real-time 25 fps "
                                     f"source, {paced['fps']:.1f} fps processed; first identities: "
                                     f"{', '.join(f'{v:.3f}' for v in paced['first_latencies']) or '-'} s"),
        ("rss_mb_after_1k_frames", rss[1000], "soak: tracker + identifier, synthetic people"),
        (f"rss_mb_after_{soak_frames // 1000}k_frames", rss[soak_frames], f"{rss[soak_frames] / rss[1000] - 1:+.1%}"),
        ("torch_infer_ms_per_frame", ms["torch"], "full width, T=30, folded BN, channels-last, Winograd"),
        ("onnx_infer_ms_per_frame", ms["onnx"], f"ONNX Runtime fp32 (max |diff| {diffs[0]:.1e})"),
        ("onnx_int8_infer_ms_per_frame", ms["onnx_int8"], f"dynamic int8 (max |diff| {diffs[1]:.3f})"),
    ]
    print(f"{'metric':<30} {'value':>10}  note")
    for name, value, note in rows:
        print(f"{name:<30} {value:>10.3f}  {note}")
    if args.json:
        keys = {"fps": ("fps_1_person", "fps_3_people"), "latency": ("event_latency_s",),
                "soak": ("rss_mb_after_1k_frames", "rss_mb_after_10k_frames"),
                "onnx": ("torch_infer_ms_per_frame", "onnx_infer_ms_per_frame", "onnx_int8_infer_ms_per_frame"),
                "small": ("fps_1_person_small_net", "fps_3_people_small_net"),
                "shipped": ("fps_1_person_shipped", "fps_3_people_shipped")}
        values = {"fps_1_person": r1["fps"], "fps_3_people": r3["fps"], "event_latency_s": latency,
                  "rss_mb_after_1k_frames": rss[1000], "rss_mb_after_10k_frames": rss[soak_frames],
                  "torch_infer_ms_per_frame": ms["torch"], "onnx_infer_ms_per_frame": ms["onnx"],
                  "onnx_int8_infer_ms_per_frame": ms["onnx_int8"], "fps_1_person_small_net": r1s["fps"],
                  "fps_3_people_small_net": r3s["fps"], "fps_1_person_shipped": r1p["fps"],
                  "fps_3_people_shipped": r3p["fps"]}
        print(json.dumps({k: round(values[k], 3) for part in ("fps", "latency", "soak", "onnx", "small", "shipped")
                          if part in parts
                          for k in keys[part]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
