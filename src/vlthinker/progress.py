"""Progress output for long work: one line per update on stderr, with rate and ETA."""

from __future__ import annotations

import sys
import time


class Progress:
    """Prints ``label: done/total (rate/s, ETA)`` at most every ``every_s`` seconds, and at the end."""

    def __init__(self, label: str, every_s: float = 5.0, stream=None, unit: str = "items"):
        self.label = label
        self.every_s = every_s
        self.stream = stream or sys.stderr
        self.unit = unit
        self.start = time.monotonic()
        self._last = 0.0

    def __call__(self, done: int, total: int, extra: str = "") -> None:
        now = time.monotonic()
        if done < total and now - self._last < self.every_s:
            return
        self._last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("nan")
        suffix = f", {extra}" if extra else ""
        self.stream.write(
            f"{self.label}: {done}/{total} {self.unit} ({rate:.1f}/s, elapsed {elapsed:.0f}s, ETA {eta:.0f}s{suffix})\n"
        )
        self.stream.flush()
