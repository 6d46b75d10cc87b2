"""A progress line on stderr while exploring, on a terminal only: schedules done, outcomes, rate."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .explore import Exploration


class Progress:
    """Redrawn at most ten times a second; `done()` clears it, so the report prints clean."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.start = self._drawn = time.monotonic()
        self.shown = False

    def __call__(self, result: Exploration) -> None:
        now = time.monotonic()
        if now - self._drawn < 0.1:
            return
        self._drawn = now
        rate = result.runs / max(now - self.start, 1e-9)
        space = f" (of {result.space})" if result.space else ""
        self.stream.write(f"\r{result.runs} schedules{space}, {len(result.outcomes)} outcome(s), {rate:.0f}/s ")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
