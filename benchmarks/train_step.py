"""Training-step and inference cost of GaitHeat at full width: our path vs the released computation.

On the same weights and the same synthetic walker heatmaps (P x K sequences of T frames, normalised
per sequence, spines tilted up to +-25 degrees so PGHA does real work), one run times:

* **(b) faithful**: :func:`gaitheat.models.reference.official_forward`, the released forward restated
  op by op: two-pass fp32 PGHA, 5-D layout with SetBlockWrapper copies, all three heads also at
  inference, NCHW, BatchNorm unfolded (built like the release, it reproduces the released code's
  outputs: ``tests/test_golden.py``; here it runs on the same weights, groups and pixel convention as (a));
* **(a) ours**: ``GaitHeat.forward`` (one composite warp, packed stream-major frames, no layout
  copies) for training, compiled with ``torch.compile`` as ``gaitheat train`` does by default
  (``train.compile``; :func:`gaitheat.train.compile_for_training`: fused BatchNorm/ReLU/adds, planned
  buffers, channels-last convs; the warm-up rep compiles); ``--eager`` trains (a) uncompiled. For
  inference :func:`gaitheat.models.inference.optimise_for_inference` (BatchNorm folded into the
  convs, channels-last weights, Winograd F(4x4, 3x3) for the 3x3 convs of stages 2-4:
  :mod:`gaitheat.models.winograd`) and ``embed`` (fusion head only) under ``inference_mode``.
  ``--precision bf16`` runs (a) under bf16 autocast instead of fp32;
* optional variants of (a) (``--variants``): ``eager`` (training without compilation),
  ``cl-train`` (eager channels-last training; on CPU its BatchNorm training kernel loses precision,
  see the note in ``gaitheat.models.inference``), ``bf16`` (bf16 autocast training and inference),
  ``nofold`` (inference without BN folding and channels-last, and with folding only), ``direct``
  (inference with every conv run directly, Winograd off: what it gains), ``compile``
  (inference with ``torch.compile`` and weight freezing).

Both modes run under the same allocator: glibc's default unless ``--retain-heap``, which keeps freed
memory in the heap for every mode alike (:mod:`gaitheat.heap`; ``gaitheat train`` and ``evaluate`` do
this on CPU by default). On CPU most of an eager step's extra cost is page-faulting its activations
in afresh, so that run shows how much of the gap is allocation rather than arithmetic.

A training step is forward + the six GaitHeat losses + backward + SGD step. Modes are interleaved
rep by rep, so a busy machine slows all of them alike. The table shows the fastest and the median
timed rep and the process CPU time; speedups compare the fastest reps (on a shared machine, the least
disturbed). Peak memory of a training step is the peak resident-set growth during the step (sampled
every millisecond after ``malloc_trim``) on CPU, ``max_memory_allocated`` growth on CUDA, per frame.
The embedding check compares (a) with two-pass PGHA to (b) (the same function: float tolerance), for
the inference embedding and for the compiled training forward (batch-statistics BatchNorm, PGHA's
skip off), and reports how far the single composite warp, and bf16 when asked for, move the embedding.

    .venv/bin/python benchmarks/train_step.py                      # P=2 K=2 T=30, 1 warm-up + 2 reps
    .venv/bin/python benchmarks/train_step.py --quick --variants bf16,nofold,compile
    .venv/bin/python benchmarks/train_step.py --json --variants eager   # last line: one JSON object
    .venv/bin/python benchmarks/train_step.py --json --retain-heap      # both modes without page faults

JSON keys: params_full_width, train_speedup, infer_speedup, train_s_per_frame, infer_ms_per_frame,
peak_mb_per_train_frame (all for (a); speedups are (b) time / (a) time), then the same for (b)
(``faithful_*``), CPU-time speedups, embedding differences and ``<kind>_speedup_<variant>``;
``train_speedup_auto`` / ``infer_speedup_auto``: ``precision: auto`` (always run; what it resolves to on
this machine is ``precision_auto``) over (a) in fp32, fastest reps.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import json
import math
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from gaitheat.device import amp_for, resolve_precision
from gaitheat.experiment import ModelConfig, TrainConfig
from gaitheat.heap import retain_freed_memory
from gaitheat.losses import gait_loss
from gaitheat.models import GaitHeat, build_model
from gaitheat.models.inference import optimise_for_inference
from gaitheat.models.reference import official_forward
from gaitheat.train import compile_for_training
from gaitheat.transforms import normalise_sequence

# upright COCO-17 skeleton (x, y) in heatmap pixels; the walker generator tilts and shifts it
SKELETON = np.array(
    [(24, 9), (23, 8), (25, 8), (22, 9), (26, 9), (19, 16), (29, 16), (17, 25), (31, 25), (16, 33), (32, 33),
     (21, 35), (27, 35), (21, 45), (27, 45), (21, 55), (27, 55)],
    dtype=np.float32,
)  # fmt: skip


def walker_heatmaps(t: int, rng: np.random.Generator, max_tilt_deg: float = 25.0) -> np.ndarray:
    """(T, 17, 64, 48) float32 heatmaps of a tilted, jittered, swinging skeleton, normalised per sequence."""
    yy, xx = np.mgrid[0:64, 0:48].astype(np.float32)
    tilt = math.radians(rng.uniform(-max_tilt_deg, max_tilt_deg))
    frames = []
    for i in range(t):
        pts = SKELETON.copy()
        swing = 4 * math.sin(2 * math.pi * i / 12)
        pts[[7, 9, 13, 15], 0] += swing  # left arm and leg swing against the right ones
        pts[[8, 10, 14, 16], 0] -= swing
        a = tilt + rng.normal(0, 0.03)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=np.float32)
        pts = ((pts - (24, 32)) @ rot.T + (24, 32) + rng.normal(0, 0.7, size=pts.shape)).astype(np.float32)
        d2 = (xx - pts[:, 0, None, None]) ** 2 + (yy - pts[:, 1, None, None]) ** 2
        frames.append(rng.uniform(0.5, 0.95, (17, 1, 1)) * np.exp(-d2 / (2 * 2.0**2)) - 0.01)
    return normalise_sequence(np.stack(frames).astype(np.float32))


class PeakMemory:
    """Peak memory growth of the block, in bytes: RSS sampled by a thread on CPU, the allocator on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0
        self._stop = threading.Event()
        self._libc = None
        with contextlib.suppress(OSError):
            self._libc = ctypes.CDLL("libc.so.6")

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def _sample(self, base: int) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss() - base)
            time.sleep(0.001)

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            yield
            torch.cuda.synchronize()
            self.peak = max(self.peak, torch.cuda.max_memory_allocated() - base)
            return
        if self._libc is not None:
            self._libc.malloc_trim(0)  # hand freed heap back, so the baseline RSS is the live set
        self._stop.clear()
        thread = threading.Thread(target=self._sample, args=(self._rss(),), daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()


@dataclass
class Row:
    """One timed mode: wall and process-CPU seconds per call over the timed reps, frames per call, peak bytes."""

    name: str
    kind: str  # "train" | "infer"
    frames: int
    run: Callable[[], object]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    memory: PeakMemory | None = None

    @property
    def best(self) -> float:
        """Fastest timed rep: on a shared machine the least disturbed one."""
        return min(self.wall)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_runner(
    model: GaitHeat, x: torch.Tensor, labels: torch.Tensor, faithful: bool, bf16: bool = False, compiled: bool = False,
    precision: str | None = None,
) -> Callable[[], object]:
    """One SGD training step (forward, six losses, backward, step) of its own copy of ``model``.

    ``compiled`` runs the step as ``gaitheat train`` does with ``train.compile: true``
    (:func:`gaitheat.train.compile_for_training`); the first call compiles. ``precision`` (e.g. ``auto``)
    replaces ``bf16`` and goes through :func:`gaitheat.device.amp_for`, GradScaler included, as in training.
    """
    cfg = ModelConfig()  # its loss settings (GaitHeat's six terms)
    amp = amp_for(precision or ("bf16" if bf16 else "fp32"), x.device)
    scaler = torch.amp.GradScaler(x.device.type, enabled=amp.grad_scaler)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    forward = compile_for_training(model, x.device) if compiled else model

    def step() -> object:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=amp.dtype, enabled=amp.autocast):
            out = official_forward(model, x) if faithful else forward(x)
        loss, _ = gait_loss(out, labels, cfg)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    return step


def infer_runner(model: GaitHeat, x: torch.Tensor, faithful: bool, bf16: bool = False, precision: str | None = None
                 ) -> Callable[[], torch.Tensor]:
    """Embed the batch: (b) the full official forward under no_grad, (a) ``embed`` under inference_mode."""
    amp = amp_for(precision or ("bf16" if bf16 else "fp32"), x.device)

    def run() -> torch.Tensor:
        ctx = torch.no_grad() if faithful else torch.inference_mode()
        with ctx, torch.autocast(x.device.type, dtype=amp.dtype, enabled=amp.autocast):
            return (official_forward(model, x).embedding if faithful else model.embed(x)).float()

    return run


def build_rows(
    args: argparse.Namespace, base: GaitHeat, x: torch.Tensor, labels: torch.Tensor, compiled: bool
) -> list[Row]:
    """(b) and (a) for training and inference, then the requested variants of (a)."""
    frames = x.shape[0] * x.shape[1]
    variants = set(filter(None, args.variants.split(",")))
    bf16 = args.precision == "bf16"

    def train_model(channels_last: bool) -> GaitHeat:
        m = copy.deepcopy(base).train()
        return m.to(memory_format=torch.channels_last) if channels_last else m  # type: ignore[call-overload]

    eval_faithful = copy.deepcopy(base).eval()
    eval_faithful.align_mode = "two_pass"
    fast = optimise_for_inference(base)
    suffix = " bf16" if bf16 else ""
    ours_train = train_runner(train_model(False), x, labels, False, bf16, compiled=compiled)
    rows = [
        Row("(b) faithful", "train", frames, train_runner(train_model(False), x, labels, True)),
        Row("(a) ours" + suffix, "train", frames, ours_train),
        Row("(b) faithful", "infer", frames, infer_runner(eval_faithful, x, True)),
        Row("(a) ours" + suffix, "infer", frames, infer_runner(fast, x, False, bf16)),
    ]
    # precision auto (the default of train.precision and eval.precision), resolved for this device
    auto = f"(a) precision auto = {resolve_precision('auto', x.device)}"
    rows.append(Row(auto, "train", frames, train_runner(train_model(False), x, labels, False, compiled=compiled,
                                                        precision="auto")))
    rows.append(Row(auto, "infer", frames, infer_runner(fast, x, False, precision="auto")))
    if "eager" in variants and compiled:
        eager_step = train_runner(train_model(False), x, labels, False, bf16)
        rows.append(Row("(a) eager" + suffix, "train", frames, eager_step))
    if "cl-train" in variants:
        cl_step = train_runner(train_model(True), x, labels, False, bf16)
        rows.append(Row("(a) channels-last" + suffix, "train", frames, cl_step))
    if "bf16" in variants and not bf16:
        rows.append(
            Row("(a) + bf16 autocast", "train", frames, train_runner(train_model(True), x, labels, False, True))
        )
        rows.append(Row("(a) + bf16 autocast", "infer", frames, infer_runner(fast, x, False, True)))
    if "nofold" in variants:
        plain = optimise_for_inference(base, fold_bn=False, channels_last=False)
        rows.append(Row("(a) embed only, NCHW", "infer", frames, infer_runner(plain, x, False, bf16)))
        folded = optimise_for_inference(base, channels_last=False)
        rows.append(Row("(a) + BN fold, NCHW", "infer", frames, infer_runner(folded, x, False, bf16)))
    if "direct" in variants:
        direct = optimise_for_inference(base, winograd=False)
        rows.append(Row("(a) direct convs", "infer", frames, infer_runner(direct, x, False, bf16)))
    if "compile" in variants:
        compiled_model = optimise_for_inference(base, compile=True)
        t0 = time.perf_counter()
        infer_runner(compiled_model, x, False, bf16)()
        print(f"torch.compile: first call (compilation) {time.perf_counter() - t0:.1f} s", flush=True)
        rows.append(Row("(a) + torch.compile", "infer", frames, infer_runner(compiled_model, x, False, bf16)))
    for row in rows:
        # trimming the heap to take the baseline would undo --retain-heap, and its RSS never grows
        if row.kind == "train" and not (args.retain_heap and x.device.type == "cpu"):
            row.memory = PeakMemory(x.device)
    return rows


def run_rows(rows: list[Row], device: torch.device, warmup: int, reps: int) -> None:
    """Interleave the modes rep by rep; the first ``warmup`` reps are not timed."""
    for rep in range(warmup + reps):
        for row in rows:
            ctx = row.memory.measure() if row.memory is not None else contextlib.nullcontext()
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            with ctx:
                row.run()
                sync(device)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            if rep >= warmup:
                row.wall.append(elapsed)
                row.cpu.append(cpu)
            print(f"  rep {rep} {row.kind:5s} {row.name:26s} wall {elapsed:7.2f} s  cpu {cpu:7.2f} s", flush=True)


def embedding_check(base: GaitHeat, x: torch.Tensor, bf16: bool, compiled: bool) -> dict[str, float]:
    """(a) two-pass vs (b): the same function; (a) composite vs (b): one warp instead of two; bf16 vs (b).

    Inference compares the retrieval embeddings; training compares the pre-BNNeck fusion embeddings of
    the training forward (relative to their largest magnitude, as they are not unit vectors).
    """
    two_pass = copy.deepcopy(base)
    two_pass.align_mode = "two_pass"
    with torch.inference_mode():
        ref = official_forward(copy.deepcopy(base).eval(), x).embedding
        same = optimise_for_inference(two_pass).embed(x)
        fast = optimise_for_inference(base)
        ours = fast.embed(x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            half = fast.embed(x).float()
    # the training forward, compiled as (a) trains when train.compile is on: batch-statistics BatchNorm,
    # PGHA's random skip off in both so they warp the same frames
    train_ours, train_ref = copy.deepcopy(base).train(), copy.deepcopy(base).train()
    for m in (train_ours, train_ref):
        m.skip_prob = 0.0
    train_ours.align_mode = "two_pass"
    forward = compile_for_training(train_ours, x.device) if compiled else train_ours
    with torch.no_grad():
        train_same = forward(x).embeddings["fusion"]
        train_ref_emb = official_forward(train_ref, x).embeddings["fusion"]
    out = {
        "max_rel_diff_train_two_pass": float((train_same - train_ref_emb).abs().max() / train_ref_emb.abs().max()),
        "max_abs_diff_two_pass": float((same - ref).abs().max()),
        "max_abs_diff_composite": float((ours - ref).abs().max()),
        "mean_strip_cosine_composite": float((ours * ref).sum(1).mean()),  # strips are unit vectors
    }
    if bf16:
        out["max_abs_diff_bf16"] = float((half - ref).abs().max())
        out["mean_strip_cosine_bf16"] = float((half * ref).sum(1).mean())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--p", type=int, default=2, help="identities per batch")
    parser.add_argument("--k", type=int, default=2, help="sequences per identity")
    parser.add_argument("--frames", type=int, default=30, help="frames per sequence (T)")
    parser.add_argument("--quick", action="store_true", help="T=6, 1 timed rep: a smoke run, not a measurement")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="autocast dtype of (a)")
    parser.add_argument("--variants", default="", help="comma list: eager, cl-train, bf16, nofold, direct, compile")
    parser.add_argument("--eager", action="store_true", help="train (a) without torch.compile (train.compile: false)")
    parser.add_argument(
        "--retain-heap",
        action="store_true",
        help="glibc keeps freed memory for reuse (no mmap per large tensor, no trimming), for every mode alike",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.reps = 6, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.retain_heap:
        retain_freed_memory()
    device = torch.device(args.device)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    b = args.p * args.k
    x = torch.from_numpy(np.stack([walker_heatmaps(args.frames, rng) for _ in range(b)])).to(device)
    labels = torch.arange(args.p).repeat_interleave(args.k).to(device)
    base = build_model(ModelConfig(), num_classes=74).to(device)
    params = sum(p.numel() for p in base.parameters())
    with torch.no_grad():  # move BatchNorm statistics off their initial values, as after training
        base.train()
        base(x)
    base.eval()

    print(f"GaitHeat full width: {params:,} parameters; P={args.p} K={args.k} T={args.frames} "
          f"({b * args.frames} frames); device {device}; {torch.get_num_threads()} threads; "
          f"torch {torch.__version__}", flush=True)  # fmt: skip
    compiled = TrainConfig().compile and not args.eager
    check = embedding_check(base, x, args.precision == "bf16" or "bf16" in args.variants, compiled)
    rows = build_rows(args, base, x, labels, compiled)
    run_rows(rows, device, args.warmup, args.reps)

    extra = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "compiled": compiled,
        "retain_heap": args.retain_heap,
    }
    report(rows, check, params, args.json, extra)
    return 0


def report(rows: list[Row], check: dict[str, float], params: int, as_json: bool, extra: dict[str, object]) -> None:
    """Print the table (and the JSON line). Speedups compare the fastest timed reps."""
    faithful = {r.kind: r for r in rows if r.name.startswith("(b)")}
    print(f"\n{'mode':26s} {'kind':6s} {'best s':>8s} {'median s':>9s} {'per frame':>11s} {'cpu/frame':>11s} "
          f"{'speedup':>8s} {'peak MB/frame':>14s}")  # fmt: skip
    for r in rows:
        per, cpu = r.best / r.frames, min(r.cpu) / r.frames
        fmt = (lambda v: f"{v:.3f} s") if r.kind == "train" else (lambda v: f"{v * 1e3:.1f} ms")
        mem = f"{r.memory.peak / 2**20 / r.frames:.1f}" if r.memory is not None else "-"
        print(f"{r.name:26s} {r.kind:6s} {r.best:8.2f} {statistics.median(r.wall):9.2f} {fmt(per):>11s} "
              f"{fmt(cpu):>11s} {faithful[r.kind].best / r.best:7.2f}x {mem:>14s}")  # fmt: skip
    print("\nembeddings: " + ", ".join(f"{k} {v:.3g}" for k, v in check.items()))
    ours = {r.kind: r for r in reversed(rows) if r.name.startswith("(a) ours")}
    mem_ours, mem_ref = ours["train"].memory, faithful["train"].memory

    def mb_per_frame(memory: PeakMemory | None, frames: int) -> float | None:
        return None if memory is None else round(memory.peak / 2**20 / frames, 2)

    result = {
        "params_full_width": params,
        "train_speedup": round(faithful["train"].best / ours["train"].best, 3),
        "infer_speedup": round(faithful["infer"].best / ours["infer"].best, 3),
        "train_s_per_frame": round(ours["train"].best / ours["train"].frames, 4),
        "infer_ms_per_frame": round(1e3 * ours["infer"].best / ours["infer"].frames, 2),
        "peak_mb_per_train_frame": mb_per_frame(mem_ours, ours["train"].frames),
        "faithful_train_s_per_frame": round(faithful["train"].best / faithful["train"].frames, 4),
        "faithful_infer_ms_per_frame": round(1e3 * faithful["infer"].best / faithful["infer"].frames, 2),
        "faithful_peak_mb_per_train_frame": mb_per_frame(mem_ref, faithful["train"].frames),
        "cpu_train_speedup": round(min(faithful["train"].cpu) / min(ours["train"].cpu), 3),
        "cpu_infer_speedup": round(min(faithful["infer"].cpu) / min(ours["infer"].cpu), 3),
        "frames_per_step": ours["train"].frames,
        **extra,
        **check,
    }
    for r in rows:
        if r.name.startswith("(a) precision auto"):  # auto over (a), fp32 unless --precision bf16
            result[f"{r.kind}_speedup_auto"] = round(ours[r.kind].best / r.best, 3)
            result["precision_auto"] = r.name.rsplit(" ", 1)[-1]
        elif not r.name.startswith(("(a) ours", "(b)")):
            key = r.name.removeprefix("(a) ").replace(" ", "_").replace(",", "").replace("+_", "")
            result[f"{r.kind}_speedup_{key}"] = round(faithful[r.kind].best / r.best, 3)
    if as_json:
        print(json.dumps(result))


if __name__ == "__main__":
    raise SystemExit(main())
