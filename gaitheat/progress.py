"""Progress for long jobs: a bar on a terminal, a plain line at a fixed interval anywhere else.

A tqdm bar redraws itself with carriage returns; written into a file (a Slurm log, ``nohup``, CI)
every redraw becomes text, and one training run's log grows to megabytes. So :class:`Progress`
draws a tqdm bar only when its stream is a terminal, and otherwise writes one line every
``interval`` seconds (and one when it closes)::

    train: 1200/30000 steps (4.0%), 2.31 steps/s, elapsed 8m40s, eta 3h27m; loss=0.4127

Every long loop in gaitheat (extract, train, evaluate, synth, enrol) reports through this module.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")

DEFAULT_INTERVAL = 30.0  # seconds between lines in a log: about 120 lines an hour


def log_interval() -> float:
    """Seconds between progress lines off a terminal (``GAITHEAT_PROGRESS_INTERVAL`` overrides the default)."""
    try:
        return max(0.0, float(os.environ.get("GAITHEAT_PROGRESS_INTERVAL", DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class Progress:
    """Counts work done; shows it as a bar on a terminal or as periodic lines in a log.

    Args:
        total: units expected (None when unknown).
        desc: what is counted ("train", "extract").
        unit: the unit's name, singular ("step", "video").
        initial: units already done (a resumed run).
        enabled: False shows nothing (``--no-progress``, ranks other than 0).
        stream: where to write (default: stderr).
        interval: seconds between log lines off a terminal (default: :func:`log_interval`).
        bar: force the bar (True) or the log lines (False); default: the bar on a terminal only.
    """

    def __init__(self, total: int | None = None, *, desc: str = "", unit: str = "it", initial: int = 0,
                 enabled: bool = True, stream: IO[str] | None = None, interval: float | None = None,
                 bar: bool | None = None) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.interval = log_interval() if interval is None else interval
        self._postfix: dict[str, str] = {}
        self._start = self._last = time.monotonic()
        self._start_n = self._logged_n = initial
        self._closed = False
        self._bar: Any = None
        if enabled and (bar if bar is not None else _is_terminal(self.stream)):
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream,
                             dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and time.monotonic() - self._last >= self.interval:
            self._write()

    def set_postfix(self, **values: Any) -> None:
        """Figures shown after the count (e.g. ``loss="0.41"``); they appear with the next bar refresh or line."""
        self._postfix = {k: str(v) for k, v in values.items()}
        if self._bar is not None:
            self._bar.set_postfix(self._postfix, refresh=False)

    def line(self) -> str:
        """The log line for the current count."""
        elapsed = time.monotonic() - self._start
        done = self.n - self._start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        units = self.unit if self.unit.endswith("s") else self.unit + "s"
        if self.total:
            text = f"{self.desc}: {self.n}/{self.total} {units} ({100.0 * self.n / self.total:.1f}%)"
        else:
            text = f"{self.desc}: {self.n} {units}"
        text += f", {rate:.3g} {units}/s, elapsed {_duration(elapsed)}"
        if self.total and rate > 0 and self.n < self.total:
            text += f", eta {_duration((self.total - self.n) / rate)}"
        if self._postfix:
            text += "; " + ", ".join(f"{k}={v}" for k, v in self._postfix.items())
        return text

    def _write(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._last, self._logged_n = time.monotonic(), self.n

    def close(self) -> None:
        """Finish: close the bar, or write a last line if anything happened since the previous one."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.n != self._logged_n:
            self._write()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real file
        return False


def track(items: Iterable[T], *, total: int | None = None, **kwargs: Any) -> Iterator[T]:
    """Iterate ``items`` with a :class:`Progress` (``total`` from ``len(items)`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, **kwargs) as bar:
        for item in items:
            yield item
            bar.update()
