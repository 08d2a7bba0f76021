"""Progress: a bar on a terminal, periodic plain lines in a log (no carriage-return spam)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import termios

import pytest

from gaitheat.progress import Progress, track


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_one_line_per_interval_and_a_last_one(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr("gaitheat.progress.time.monotonic", clock)
    out = io.StringIO()
    bar = Progress(1000, desc="train", unit="step", stream=out, interval=30.0)
    for _ in range(1000):  # one step every 0.1 s: 100 s in all
        clock.now += 0.1
        bar.update()
        bar.set_postfix(loss="0.5")
    bar.close()
    bar.close()  # twice is harmless
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 4, lines  # at 30, 60 and 90 s, then the last at close
    assert lines[0].startswith("train: 300/1000 steps (30.0%), 10 steps/s, elapsed 30s, eta 1m10s; loss=0.5")
    assert lines[-1].startswith("train: 1000/1000 steps (100.0%)") and "eta" not in lines[-1]


def test_resumed_runs_count_from_initial_and_disabled_is_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr("gaitheat.progress.time.monotonic", clock)
    out = io.StringIO()
    with Progress(10, desc="x", unit="video", initial=4, stream=out, interval=0) as bar:
        clock.now += 2
        bar.update(2)
    assert out.getvalue() == "x: 6/10 videos (60.0%), 1 videos/s, elapsed 2s, eta 4s\n"
    quiet = io.StringIO()
    with Progress(10, stream=quiet, interval=0, enabled=False) as bar:
        bar.update(5)
    assert quiet.getvalue() == ""
    assert list(track(range(3), stream=quiet, enabled=False)) == [0, 1, 2]


def test_a_terminal_gets_a_bar() -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    with os.fdopen(follower, "w") as tty:
        with Progress(5, desc="bar", stream=tty, interval=1e9) as bar:
            bar.update(5)
        tty.flush()
        drawn = ""
        while select.select([leader], [], [], 0.5)[0]:
            drawn += os.read(leader, 4096).decode()
    os.close(leader)
    assert "\r" in drawn and "5/5" in drawn  # tqdm redraws in place on a terminal
