"""Which source line each loaded instruction came from, and the text of that line.

One table serves the stream report's `line @ file:line`, the debugger's `list`
and `break FILE:LINE`, and the oops's `kernel BUG at file:line`.
"""

from __future__ import annotations

import bisect
import re

_COMMENT = re.compile(r"/\*.*?(\*/|$)|\s#.*$")


class LineTable:
    def __init__(self) -> None:
        self.lines: dict[int, tuple[str, int]] = {}  # instruction address -> (file, line)
        self.sources: dict[str, list[str]] = {}  # file -> its lines
        self._starts: list[int] = []  # sorted(self.lines), for bisection
        self.debuginfo: set[str] = set()  # files whose lines come from a compiler's debug info
        self.paths: dict[str, str] = {}  # file -> where it is on disk, for gdb

    def add(self, lines: dict[int, tuple[str, int]], sources: dict[str, str], debuginfo: bool = False,
            paths: dict[str, str] | None = None) -> None:
        for name, text in sources.items():
            self.sources[name] = text.splitlines()
        self.paths.update(paths or {})
        if debuginfo:
            self.debuginfo.update(file for file, _ in lines.values())
        self.lines.update(lines)
        self._starts = sorted(self.lines)

    def debug_line(self, addr: int) -> str | None:
        """FILE:LINE of compiled code (what scripts/decode_stacktrace.sh adds to a trace), None
        for assembly, whose stories and oopses stay as the kernel prints them."""
        where = self.containing(addr)
        return f"{where[0]}:{where[1]}" if where is not None and where[0] in self.debuginfo else None

    def get(self, addr: int) -> tuple[str, int] | None:
        """The line of the instruction that starts at `addr`."""
        return self.lines.get(addr)

    def containing(self, addr: int) -> tuple[str, int] | None:
        """The line of the last instruction that starts at or before `addr`."""
        i = bisect.bisect_right(self._starts, addr)
        return self.lines[self._starts[i - 1]] if i else None

    def source(self, file: str, line: int) -> str:
        """The line's text with comments dropped and blanks folded, as a report quotes it."""
        text = self.sources.get(file, [])
        return " ".join(_COMMENT.sub(" ", text[line - 1]).split()) if 0 < line <= len(text) else ""

    def addresses(self, file: str, line: int) -> list[int]:
        """The instructions assembled from FILE:LINE (FILE may be a path's last part), lowest first."""
        return sorted(a for a, (f, n) in self.lines.items() if n == line and (f == file or f.endswith("/" + file)))
