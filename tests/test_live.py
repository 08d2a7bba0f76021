"""Live identification: incremental embedding, events, and the real pipeline on an MJPEG stream over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import gaussian_heatmaps


def tiny_model(seed: int = 0) -> Any:
    import torch

    from gaitheat.config import load_config
    from gaitheat.experiment import ExperimentConfig
    from gaitheat.models import build_model
    from gaitheat.models.inference import optimise_for_inference

    torch.manual_seed(seed)
    cfg = load_config(ExperimentConfig, "cpu-small", ["model.parts=4"])
    return optimise_for_inference(build_model(cfg.model, 4).eval())


def people_row(heatmaps: np.ndarray, x: float, score: float = 0.9) -> dict[str, np.ndarray]:
    keypoints = np.zeros((1, 17, 3), np.float32)
    keypoints[..., 2] = score
    return {"boxes": np.array([[x, 10, x + 40, 110, 0.9]], np.float32), "heatmaps": heatmaps[None],
            "keypoints": keypoints}


def test_incremental_embedding_equals_batch_and_names_the_enrolled(tmp_path: Path) -> None:
    """Frame-by-frame features + running max give the batch embedding of the window (range_tol 0);
    the enrolled walker is named at distance ~0, a stranger is ``unknown``; memory stays at the window."""
    from gaitheat.evaluate import embed_sequences
    from gaitheat.gallery.db import GalleryDB, SequenceSource
    from gaitheat.gallery.index import open_searcher
    from gaitheat.live import LiveConfig, LiveIdentifier, TorchFrameNet

    model = tiny_model()
    rng = np.random.default_rng(0)
    walker_a, walker_b = gaussian_heatmaps(20, rng) * 1.7, gaussian_heatmaps(20, rng)
    cfg = LiveConfig(min_frames=6, window=10, refine_every=5, range_tol=0.0, lost_seconds=100)
    # the gallery holds A's last 10 frames (what the final identity uses) and another person
    last_a, other = embed_sequences(model, [walker_a[-10:], gaussian_heatmaps(20, rng)])
    db = GalleryDB(tmp_path / "g.db", create=True)
    db.enrol("alice", [(last_a, SequenceSource("a.avi", 0, 10))], "sha")
    db.enrol("bob", [(other, SequenceSource("b.avi", 0, 20))], "sha")
    searcher = open_searcher(db, "exact")
    dist_to_bob = searcher.top_people(last_a, 2)[1][1]
    events: list[dict[str, Any]] = []
    live = LiveIdentifier(TorchFrameNet(model), searcher, dist_to_bob / 4, cfg, events.append)
    for f in range(20):
        people = {k: np.concatenate([a, b]) for (k, a), b in
                  zip(people_row(walker_a[f], 10).items(), people_row(walker_b[f], 300).values(), strict=True)}
        live.observe(f, f / 25, 0.0, people, np.array([0, 1]))
        assert all(len(t.window.features) <= 10 and len(t.window.raw) <= 10 for t in live.tracks.values())
    live.finish(19, 1.0)
    kinds = [(e["event"], e["track_id"]) for e in events]
    assert kinds[:2] == [("enter", 0), ("enter", 1)] and [k for k in kinds if k[0] == "leave"] == [
        ("leave", 0), ("leave", 1)]
    assert all([k for k in kinds if k[1] == tid][-1] == ("leave", tid) for tid in (0, 1))
    ident = [e for e in events if e["event"] == "identity"]
    # the first at 6 frames, then every 5, and a last one at the end for the frames since
    assert [e["frame"] for e in ident if e["track_id"] == 0] == [5, 10, 15, 19]
    assert [e["frames_used"] for e in ident if e["track_id"] == 0] == [6, 10, 10, 10]
    final_a = [e for e in ident if e["track_id"] == 0][-1]
    assert final_a["name"] == "alice" and final_a["distance"] < 1e-4  # equals the batch embedding
    assert all(e["name"] == "unknown" and e["distance"] > e["threshold"] for e in ident if e["track_id"] == 1)
    assert {"time", "t", "frame", "latency_s", "matches", "revision"} <= set(final_a)


def test_embed_every_second_frame_keeps_the_schedule_and_embeds_half(tmp_path: Path) -> None:
    """``embed_every=2``: identities on the same good-frame counts as with every frame, each over every
    second frame of the last ``window`` (the batch embedding of those frames), half the network work."""
    from gaitheat.evaluate import embed_sequences
    from gaitheat.gallery.db import GalleryDB, SequenceSource
    from gaitheat.gallery.index import open_searcher
    from gaitheat.live import LiveConfig, LiveIdentifier, TorchFrameNet

    model = tiny_model()
    walker = gaussian_heatmaps(21, np.random.default_rng(5))
    db = GalleryDB(tmp_path / "g.db", create=True)
    # the gallery holds the final window's embedding: frames 11, 13, ..., 19 (every second of the last 10 walked)
    sparse = embed_sequences(model, [walker[11:21:2]])[0]
    db.enrol("cara", [(sparse, SequenceSource("c.avi", 0, 5))], "sha")
    searcher = open_searcher(db, "exact")
    runs = {}
    for k in (1, 2):
        events: list[dict[str, Any]] = []
        live = LiveIdentifier(TorchFrameNet(model), searcher, None,
                              LiveConfig(min_frames=6, window=10, refine_every=5, range_tol=0.0, lost_seconds=100,
                                         embed_every=k), events.append)
        for f in range(20):
            live.observe(f, f / 25, 0.0, people_row(walker[f + 1], 10), np.array([0]))
        live.finish(19, 1.0)
        runs[k] = ([e for e in events if e["event"] == "identity"], live.stats.embedded)
    every, half = runs[1], runs[2]
    assert [e["frame"] for e in half[0]] == [e["frame"] for e in every[0]] == [5, 10, 15, 19]
    assert [e["frames_used"] for e in half[0]] == [3, 5, 5, 5] and every[1] == 20 and half[1] == 10
    # the search's Euclidean distance has float32 cancellation near 0 (about 1e-4 for identical embeddings)
    whole = searcher.top_people(embed_sequences(model, [walker[11:21]])[0], 1)[0][1]
    assert half[0][-1]["distance"] < 1e-3 < whole - 1e-3 and abs(every[0][-1]["distance"] - whole) < 1e-3


_TRIM_PROBE = """
import ctypes
from gaitheat.live import release_free_memory
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
blocks = [libc.malloc(4096) for _ in range(20000)]  # 80 MB of heap, touched
for block in blocks:
    ctypes.memset(block, 1, 4096)
for block in blocks[:-1]:  # freed below a block still in use: glibc keeps these pages
    libc.free(block)
before = rss()
assert release_free_memory() is True
print(round(before - rss()))
"""


def test_release_free_memory_returns_freed_heap_pages() -> None:
    """80 MB freed below a live block stay resident (what grew an endless live run); a trim gives them back.
    In a fresh interpreter: the heap's state is process-wide."""
    import platform
    import subprocess
    import sys

    assert platform.libc_ver()[0] == "glibc"
    freed_mb = int(subprocess.run([sys.executable, "-c", _TRIM_PROBE], capture_output=True, text=True, check=True,
                                  cwd=Path(__file__).resolve().parent.parent).stdout)
    assert freed_mb >= 60


def test_identifier_trims_the_heap_every_trim_every_s() -> None:
    from gaitheat.live import LiveConfig, LiveIdentifier

    people = {"boxes": np.zeros((0, 5), np.float32), "heatmaps": np.zeros((0, 17, 64, 48), np.float32),
              "keypoints": np.zeros((0, 17, 3), np.float32)}
    counts = {}
    for every in (0.0, 1e-9, 3600.0):
        live = LiveIdentifier(None, None, None, LiveConfig(trim_every_s=every), lambda e: None)
        for f in range(3):
            live.observe(f, f / 25, 0.0, people, np.zeros(0, np.int64))
        counts[every] = live.stats.trims
    assert counts == {0.0: 0, 1e-9: 3, 3600.0: 0}
    with pytest.raises(ValueError, match="trim_every_s"):
        LiveConfig(trim_every_s=-1)


def test_range_tolerance_limits_refreshes_and_stays_close() -> None:
    from gaitheat.evaluate import embed_sequences
    from gaitheat.live import TorchFrameNet, TrackWindow

    model, net = tiny_model(), None
    net = TorchFrameNet(model)
    frames = gaussian_heatmaps(24, np.random.default_rng(1))
    loose, exact = TrackWindow(16), TrackWindow(16)
    for f in frames:
        loose.add(f, net, 0.05)
        exact.add(f, net, 0.0)
    batch = embed_sequences(model, [frames[-16:]])[0]
    assert np.abs(exact.embedding(net) - batch).max() < 1e-5
    assert loose.refreshes < exact.refreshes
    assert np.abs(loose.embedding(net) - batch).max() < 0.05


def live_events(net: Any, searcher: Any, frames: tuple[np.ndarray, np.ndarray]) -> list[dict[str, Any]]:
    """The events of two people walking ``frames`` through a LiveIdentifier on ``net``."""
    from gaitheat.live import LiveConfig, LiveIdentifier

    events: list[dict[str, Any]] = []
    live = LiveIdentifier(net, searcher, None, LiveConfig(min_frames=4, window=8, refine_every=3, lost_seconds=100),
                          events.append)
    for f in range(len(frames[0])):
        people = {k: np.concatenate([a, b]) for (k, a), b in
                  zip(people_row(frames[0][f], 10).items(), people_row(frames[1][f], 300).values(), strict=True)}
        live.observe(f, f / 25, 0.0, people, np.array([0, 1]))
    live.finish(len(frames[0]) - 1, 1.0)
    live.close()
    return events


def test_network_workers_give_the_same_events_as_the_caller_thread(tmp_path: Path) -> None:
    """Frames in the network on two worker threads at once: the same identities, frames and distances
    as running each batch on the identifier's thread (only the scheduling differs)."""
    from gaitheat.gallery.db import GalleryDB, SequenceSource
    from gaitheat.gallery.index import open_searcher
    from gaitheat.live import Pending, TorchFrameNet

    model = tiny_model()
    rng = np.random.default_rng(4)
    frames = (gaussian_heatmaps(17, rng) * 1.3, gaussian_heatmaps(17, rng))
    db = GalleryDB(tmp_path / "g.db", create=True)
    for name in ("ann", "ben"):
        db.enrol(name, [(rng.normal(size=(32, 4)).astype(np.float32), SequenceSource("x.avi", 0, 9))], "sha")
    searcher = open_searcher(db, "exact")
    serial = live_events(TorchFrameNet(model, workers=0), searcher, frames)
    threaded_net = TorchFrameNet(model, workers=2, threads=1)
    batch = threaded_net.submit(frames[0][:3])
    row = Pending(batch, 2).result()
    assert row.shape[0] == 1 and float((row - threaded_net.features(frames[0][2:3])).abs().max()) < 1e-5
    threaded = live_events(threaded_net, searcher, frames)
    # the same events in the same order (written by the events thread), identities on the same frames
    assert [(e["event"], e["track_id"], e["frame"]) for e in threaded] == [
        (e["event"], e["track_id"], e["frame"]) for e in serial]
    ident = [(e, f) for e, f in zip(serial, threaded, strict=True) if e["event"] == "identity"]
    assert len(ident) >= 8  # both people, first at 4 frames, every 3 after, a final one
    assert [(e["frames_used"], e["revision"], e["name"]) for e, _ in ident] == [
        (f["frames_used"], f["revision"], f["name"]) for _, f in ident]
    assert np.allclose([e["distance"] for e, _ in ident], [f["distance"] for _, f in ident], atol=1e-6)
    leaves = [(e, f) for e, f in zip(serial, threaded, strict=True) if e["event"] == "leave"]
    assert len(leaves) == 2 and all(e["name"] == f["name"] for e, f in leaves)  # the last identity's
    assert np.allclose([e["distance"] for e, _ in leaves], [f["distance"] for _, f in leaves], atol=1e-5)


def test_a_network_error_on_a_worker_is_raised_not_lost() -> None:
    """A batch that fails on a worker thread (whose result nobody may wait for) fails close and later submits."""
    from gaitheat.live import TorchFrameNet

    class Broken:
        def frame_maps(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("network broke")

    net = TorchFrameNet(Broken(), workers=2, threads=1)
    future = net.submit(np.zeros((1, 17, 64, 48), np.float32))
    with pytest.raises(RuntimeError, match="network broke"):
        future.result()
    with pytest.raises(RuntimeError, match="network broke"):
        net.close()  # waits for the workers, so the failure is recorded by now
    with pytest.raises(RuntimeError, match="network broke"):
        net.submit(np.zeros((1, 17, 64, 48), np.float32))


# ------------------------------------------------------------------ the real pipeline on an HTTP stream

SERVER = Path(__file__).with_name("mjpeg_server.py")


def start_server(video: Path, port: int = 0, *args: str) -> tuple[Any, int]:
    """The MJPEG server as its own process; returns it and its port once it listens."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, str(SERVER), str(video), str(port), *args], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("ready "), f"server did not start: {line!r}"
    return proc, int(line.split()[1])


@pytest.fixture(scope="module")
def walkers_gallery(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny (random-weight) checkpoint and a gallery of two synthetic walkers enrolled through the
    real extraction; ``threshold`` is a quarter of the distance between the two enrolled people."""
    from gaitheat.extract import ExtractConfig
    from gaitheat.gallery.db import GalleryDB
    from gaitheat.gallery.index import open_searcher
    from gaitheat.gallery.service import enrol_tracks, extract_tracks, load_embedder
    from gaitheat.synth import write_dataset
    from gaitheat.synth.dataset import sequence_paths
    from tests.conftest import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("live")
    ckpt = write_tiny_checkpoint(root / "tiny.pt")
    write_dataset(root / "videos", ["001", "002"], ["nm-01"], ["090"], frames=24, seed=3, difficulty=0.0,
                  workers=1, progress=False)
    embedder = load_embedder(ckpt, "cpu")
    gallery = root / "walkers.db"
    with GalleryDB(gallery, create=True) as db:
        for subject in ("001", "002"):
            video = sequence_paths(root / "videos", subject, "nm-01", "090")[0]
            tracks = extract_tracks([video], embedder, ExtractConfig(frame_stride=2, min_frames=6))
            enrol_tracks(db, f"walker-{subject}", tracks, embedder)
        searcher = open_searcher(db, "exact")
        matrix = db.load_matrix()
        assert len(matrix.names) == 2
        gap = searcher.top_people(matrix.vectors[0], 2)[1][1]
    return {"checkpoint": ckpt, "gallery": gallery, "threshold": gap / 4}


def read_events(path: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


def live_args(world: dict[str, Any], url: str, events: Path, *extra: str) -> list[str]:
    return ["identify", url, "--gallery", str(world["gallery"]), "--checkpoint", str(world["checkpoint"]),
            "--threshold", f"{world['threshold']:.6f}", "--events", str(events), "--min-frames", "8",
            "--window", "16", "--refine-every", "8", "--no-progress", *extra]


@pytest.mark.slow
def test_live_identify_on_an_mjpeg_stream(walkers_gallery: dict[str, Any], media_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """vtest.avi's walkers, none enrolled, streamed over HTTP: schema, enter/leave per track, unknown."""
    from gaitheat.cli import main

    server, port = start_server(media_dir / "vtest.avi", 0, "--frames", "40", "--once")
    events_file = tmp_path / "events.jsonl"
    try:
        code = main(live_args(walkers_gallery, f"http://127.0.0.1:{port}/stream.mjpg", events_file,
                              "--drop", "none", "--reconnect-timeout", "1"))
    finally:
        server.kill()
        server.wait()
    assert code == 0
    events = read_events(events_file)
    stdout_events = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(stdout_events) == len(events)  # the same stream on stdout
    assert all({"event", "time", "t", "frame"} <= set(e) for e in events)
    assert events[0]["status"] == "started" and events[-1]["status"] == "ended"
    assert events[-1]["processed"] == 40 and events[-1]["dropped"] == 0 and events[-1]["processed_fps"] > 0
    enters = [e["track_id"] for e in events if e["event"] == "enter"]
    leaves = [e["track_id"] for e in events if e["event"] == "leave"]
    assert len(enters) >= 2 and sorted(enters) == sorted(leaves) and len(set(enters)) == len(enters)
    idents = [e for e in events if e["event"] == "identity"]
    assert idents, "nobody walked 8 good frames in 40 frames of vtest.avi"
    for e in idents:
        assert {"track_id", "name", "distance", "threshold", "frames_used", "revision", "latency_s",
                "matches"} <= set(e)
        assert 8 <= e["frames_used"] <= 16
        assert e["name"] == "unknown" and e["distance"] > e["threshold"]  # nobody in vtest.avi is enrolled
        assert {m["name"] for m in e["matches"]} <= {"walker-001", "walker-002"}
    for tid in {e["track_id"] for e in idents}:  # identities come between the track's enter and leave
        order = [e["event"] for e in events if e.get("track_id") == tid]
        assert order[0] == "enter" and order[-1] == "leave" and "identity" in order[1:-1]


@pytest.mark.slow
def test_live_stream_reconnects_after_the_server_dies(walkers_gallery: dict[str, Any], media_dir: Path,
                                                      tmp_path: Path) -> None:
    """The server is killed mid-stream and comes back 1 s later with more frames: the client says it is
    reconnecting, reconnects, goes on identifying, and ends cleanly when the stream is gone for good."""
    import threading
    import time

    from gaitheat.cli import main

    video = media_dir / "vtest.avi"
    first, port = start_server(video, 0, "--frames", "200", "--fps", "10")
    servers = [first]
    events_file = tmp_path / "events.jsonl"

    def kill_and_restart() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (events_file.exists() and '"enter"' in events_file.read_text()):
            time.sleep(0.2)
        first.kill()  # mid-stream: the client sees the connection drop
        first.wait()
        time.sleep(1.0)
        servers.append(start_server(video, port, "--start", "100", "--frames", "15", "--once")[0])

    controller = threading.Thread(target=kill_and_restart)
    controller.start()
    try:
        code = main(live_args(walkers_gallery, f"http://127.0.0.1:{port}/", events_file, "--reconnect-timeout", "3"))
    finally:
        controller.join(timeout=60)
        for server in servers:
            server.kill()
            server.wait()
    assert code == 0 and len(servers) == 2
    events = read_events(events_file)
    statuses = [e["status"] for e in events if e["event"] == "status"]
    assert "reconnecting" in statuses and "connected" in statuses
    assert statuses.index("reconnecting") < statuses.index("connected") < len(statuses) - 1
    assert statuses[-1] == "ended" and events[-1]["reconnects"] >= 1
    after = events.index(next(e for e in events if e.get("status") == "connected"))
    assert any(e["event"] != "status" for e in events[after:])  # frames were processed after reconnecting
    enters = sorted(e["track_id"] for e in events if e["event"] == "enter")
    assert enters and enters == sorted(e["track_id"] for e in events if e["event"] == "leave")


@pytest.mark.slow
def test_ctrl_c_flushes_final_events_and_exits_cleanly(walkers_gallery: dict[str, Any], media_dir: Path,
                                                       tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    events_file = tmp_path / "events.jsonl"
    args = live_args(walkers_gallery, str(media_dir / "vtest.avi"), events_file, "--live")
    proc = subprocess.Popen([sys.executable, "-m", "gaitheat", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal's
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (events_file.exists() and '"enter"' in events_file.read_text()):
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    events = read_events(events_file)
    assert events[-1]["status"] == "ended" and events[-1]["reason"] == "interrupted"
    assert events[-1]["processed"] < 795  # stopped early, not at the end of the file
    enters = sorted(e["track_id"] for e in events if e["event"] == "enter")
    assert enters and enters == sorted(e["track_id"] for e in events if e["event"] == "leave")
    assert "Traceback" not in err
