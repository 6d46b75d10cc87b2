"""The arena's page allocator: kernel/bpf/range_tree.c semantics.

A set of page offsets where a SET bit means FREE, as in the kernel. Kept as
sorted, disjoint [start, end) runs of free pages, so a whole 4 GiB arena is
one run and first-fit allocation from the lowest address is cheap.
"""

from __future__ import annotations

import bisect


class RangeTree:
    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def runs(self) -> list[tuple[int, int]]:
        """The free runs, lowest first, as (start, end) with end exclusive."""
        return list(zip(self._starts, self._ends, strict=True))

    def is_range_tree_set(self, start: int, length: int) -> bool:
        """is_range_tree_set(): every page of [start, start+length) is free.
        (The kernel returns 0 for yes; this returns True.)"""
        i = bisect.bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= start + length

    def range_tree_find(self, length: int) -> int | None:
        """range_tree_find(): the first free run long enough, lowest address first."""
        for s, e in zip(self._starts, self._ends, strict=True):
            if e - s >= length:
                return s
        return None

    def range_tree_clear(self, start: int, length: int) -> None:
        """range_tree_clear(): mark [start, start+length) used."""
        end = start + length
        i = bisect.bisect_right(self._ends, start)
        while i < len(self._starts) and self._starts[i] < end:
            s, e = self._starts[i], self._ends[i]
            pieces = [(s, start)] if s < start else []
            if e > end:
                pieces.append((end, e))
            self._starts[i:i + 1] = [p[0] for p in pieces]
            self._ends[i:i + 1] = [p[1] for p in pieces]
            i += len(pieces)

    def range_tree_set(self, start: int, length: int) -> None:
        """range_tree_set(): mark [start, start+length) free, merging with neighbours."""
        if length <= 0:
            return
        end = start + length
        lo = bisect.bisect_left(self._ends, start)  # first run that ends at or after start
        hi = bisect.bisect_right(self._starts, end)  # runs before hi start at or before end
        if lo < hi:
            start = min(start, self._starts[lo])
            end = max(end, self._ends[hi - 1])
        self._starts[lo:hi] = [start]
        self._ends[lo:hi] = [end]
