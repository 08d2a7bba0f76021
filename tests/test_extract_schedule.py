"""When the detector runs: the sweep spread over frames, re-detection around lost people, the
pre-pose duplicate filter, and association that lags behind the frames while ``trackers`` imports."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from gaitheat.detect import DetectionSchedule, sweep_slots
from gaitheat.extract import _already_followed
from gaitheat.track import BackgroundTracks, PersonTracker, TrackCollector


@pytest.mark.parametrize(("views", "period"), [(21, 30), (21, 10), (5, 5), (1, 30), (40, 7)])
def test_sweep_searches_every_view_once_per_period_evenly(views: int, period: int) -> None:
    for start in (0, 3, 17):  # any window of `period` consecutive steps
        seen = [i for step in range(start, start + period) for i in sweep_slots(views, period, step)]
        assert sorted(seen) == list(range(views))
    per_step = [len(sweep_slots(views, period, step)) for step in range(period)]
    assert max(per_step) - min(per_step) <= 1


class SweepingSource:
    """Records the views it is asked to search; finds nobody."""

    every_frame = False

    def __init__(self) -> None:
        self.full_calls = 0
        self.scanned: list[list[tuple[int, int, int]]] = []

    def views(self, width: int, height: int) -> list[tuple[int, int, int]]:
        return [(0, 0, max(width, height))] + [(x, 0, 100) for x in range(0, 400, 100)]

    def __call__(self, rgb: np.ndarray, frame_index: int) -> np.ndarray:
        self.full_calls += 1
        return np.zeros((0, 5), np.float32)

    def scan(self, rgb: np.ndarray, views: list[tuple[int, int, int]]) -> np.ndarray:
        self.scanned.append(list(views))
        return np.zeros((0, 5), np.float32)


def test_schedule_full_search_when_nobody_is_followed_else_a_spread_sweep() -> None:
    source = SweepingSource()
    schedule = DetectionSchedule(source, period=10, periodic=True, lost_frames=0)
    rgb = np.zeros((300, 400, 3), np.uint8)
    nobody, someone = np.zeros((0, 5), np.float32), np.array([[150, 50, 200, 250, 0.9]], np.float32)
    schedule(rgb, 0, 0, nobody)
    assert source.full_calls == 1 and not source.scanned
    for step in range(1, 21):
        schedule(rgb, step, step, someone)
    assert source.full_calls == 1
    searched = [v for views in source.scanned for v in views]
    assert sorted(searched) == sorted(source.views(400, 300) * 2)  # each view once per 10 frames
    assert max(len(v) for v in source.scanned) == 1
    # Single-subject dataset videos: nothing while the subject is followed.
    quiet = SweepingSource()
    still = DetectionSchedule(quiet, period=10, periodic=False, lost_frames=0)
    for step in range(12):
        still(rgb, step, step, someone)
    assert quiet.full_calls == 0 and all(not v for v in quiet.scanned)


def test_schedule_searches_around_a_lost_person_then_stops() -> None:
    source = SweepingSource()
    schedule = DetectionSchedule(source, period=1000, periodic=False, lost_frames=2)
    rgb = np.zeros((300, 400, 3), np.uint8)
    person = np.array([[150, 50, 200, 250, 0.9]], np.float32)
    other = np.array([[20, 50, 60, 150, 0.9]], np.float32)
    schedule.update(np.concatenate([person, other]), other)  # `person` found nobody this frame: lost
    for step in range(4):
        schedule(rgb, step, step, other)
        schedule.update(other, other)
    searched = [views for views in source.scanned if views]
    assert len(searched) == 2  # two frames, one square each
    x0, y0, side = searched[0][0]
    assert y0 + side / 2 == pytest.approx(150, abs=1)
    assert side == round(1.6 * 200) and x0 + side / 2 == pytest.approx(175, abs=1)
    # A lost person at the frame edge walked out: not searched for.
    edge = SweepingSource()
    at_edge = DetectionSchedule(edge, period=1000, periodic=False, lost_frames=2)
    at_edge.update(np.array([[380, 50, 400, 250, 0.9]], np.float32), other)
    at_edge(rgb, 0, 0, other)
    assert not edge.scanned


def test_detections_of_people_already_followed_are_not_posed_again() -> None:
    carried = np.array([[100, 100, 140, 220, 0.9]], np.float32)
    detected = np.array([
        [98, 95, 142, 230, 0.8],    # the same person, box slightly taller: followed already
        [135, 100, 175, 220, 0.8],  # beside them, centre outside their box: a new person
        [110, 140, 130, 180, 0.8],  # centre inside but a third of the height (someone far behind)
    ], np.float32)
    assert _already_followed(detected, carried).tolist() == [True, False, False]
    assert _already_followed(detected, carried[:0]).tolist() == [False, False, False]


def test_background_association_equals_associating_each_frame_at_once() -> None:
    rng = np.random.default_rng(0)
    frames = []
    for t in range(15):
        boxes = np.array([[10 + 3 * t, 10, 50 + 3 * t, 110, 0.9], [200 - 2 * t, 20, 240 - 2 * t, 130, 0.8]],
                         np.float32)
        boxes[:, :4] += rng.normal(0, 0.5, (2, 4)).astype(np.float32)
        frames.append({"boxes": boxes, "value": np.arange(2) + 10 * t})
    direct_tracker, direct = PersonTracker("bytetrack", fps=10), TrackCollector()
    for t, people in enumerate(frames):
        direct.add_frame(t, people, direct_tracker.update(people["boxes"]))
    release = threading.Event()

    def slow_tracker() -> PersonTracker:  # as if trackers were still importing
        release.wait()
        return PersonTracker("bytetrack", fps=10)

    with BackgroundTracks(slow_tracker) as background:
        for t, people in enumerate(frames[:5]):
            background.add_frame(t, people)
        assert background.collector.track_ids == []  # the tracker is not built yet: frames wait in order
        release.set()
        for t, people in enumerate(frames[5:], start=5):
            background.add_frame(t, people)
        collected = background.finish()
    assert collected.track_ids == direct.track_ids == [0, 1]
    for track_id in direct.track_ids:
        f1, r1 = direct.stacked(track_id)
        f2, r2 = collected.stacked(track_id)
        assert np.array_equal(f1, f2) and np.array_equal(r1["value"], r2["value"])


def test_background_association_error_reaches_the_caller() -> None:
    def broken() -> PersonTracker:
        raise ImportError("no trackers here")

    with BackgroundTracks(broken) as background, pytest.raises(ImportError, match="no trackers here"):
        background.finish()
    # a frame loop that fails leaves no thread behind
    with pytest.raises(RuntimeError), BackgroundTracks(lambda: PersonTracker("bytetrack", fps=10)) as background:
        thread = background._thread
        raise RuntimeError("decode failed")
    assert not thread.is_alive()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux affinity masks")
def test_available_cores_follows_the_affinity_mask() -> None:
    from gaitheat.cores import available_cores

    cores = sorted(os.sched_getaffinity(0))
    assert available_cores() == len(cores)
    try:
        os.sched_setaffinity(0, cores[:1])  # as taskset -c or a one-CPU Slurm allocation
        assert available_cores() == 1
    finally:
        os.sched_setaffinity(0, cores)
