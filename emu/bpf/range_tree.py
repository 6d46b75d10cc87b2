"""The arena's page allocator: kernel/bpf/range_tree.c, its order of operations included.

A set of page offsets where a SET bit means FREE, as in the kernel. The kernel
keeps each free run in two trees: an interval tree by address, and a tree by
size (larger to the left, an equal size inserted to the right of the ones
there) that range_tree_find() searches for the best fit. Here the runs are
sorted, disjoint [start, end) lists, and the size tree is a sorted list of
(size, -seq, start): `seq` counts insertions, so among runs of one size the one
inserted last comes first, as the kernel's search finds it.
"""

from __future__ import annotations

import bisect


class RangeTree:
    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._seqs: list[int] = []
        self._by_size: list[tuple[int, int, int]] = []
        self._seq = 0

    def runs(self) -> list[tuple[int, int]]:
        """The free runs, lowest first, as (start, end) with end exclusive."""
        return list(zip(self._starts, self._ends, strict=True))

    def _insert(self, start: int, end: int) -> None:
        """range_it_insert(): into both trees; a run changed by clear or set is inserted anew."""
        self._seq += 1
        i = bisect.bisect_left(self._starts, start)
        self._starts.insert(i, start)
        self._ends.insert(i, end)
        self._seqs.insert(i, self._seq)
        bisect.insort(self._by_size, (end - start, -self._seq, start))

    def _remove(self, i: int) -> tuple[int, int]:
        """range_it_remove(): out of both trees; returns the run."""
        start, end, seq = self._starts.pop(i), self._ends.pop(i), self._seqs.pop(i)
        del self._by_size[bisect.bisect_left(self._by_size, (end - start, -seq, start))]
        return start, end

    def _first(self, start: int, last: int) -> int | None:
        """range_it_iter_first(): the lowest run overlapping [start, last]."""
        i = bisect.bisect_right(self._ends, start)
        return i if i < len(self._starts) and self._starts[i] <= last else None

    def is_range_tree_set(self, start: int, length: int) -> bool:
        """is_range_tree_set(): every page of [start, start+length) is free.
        (The kernel returns 0 for yes; this returns True.)"""
        i = self._first(start, start + length - 1)
        return i is not None and self._starts[i] <= start and self._ends[i] >= start + length

    def range_tree_find(self, length: int) -> int | None:
        """range_tree_find() -> __find_range(): best fit, the start of the smallest free run that
        holds `length` pages (of several that size, the one inserted last)."""
        i = bisect.bisect_left(self._by_size, (length, -self._seq - 1, -1))
        return self._by_size[i][2] if i < len(self._by_size) else None

    def range_tree_clear(self, start: int, length: int) -> None:
        """range_tree_clear(): mark [start, start+length) used, splitting the runs it cuts."""
        last = start + length - 1
        while (i := self._first(start, last)) is not None:
            s, e = self._starts[i], self._ends[i]
            self._remove(i)
            if s < start:
                self._insert(s, start)
            if e > last + 1:
                self._insert(last + 1, e)
                break

    def range_tree_set(self, start: int, length: int) -> None:
        """range_tree_set(): mark [start, start+length) free, merging with the runs beside it."""
        if length <= 0 or self.is_range_tree_set(start, length):
            return
        last = start + length - 1
        self.range_tree_clear(start, length)
        left = self._first(start - 1, start - 1) if start else None
        right = self._first(last + 1, last + 1)
        if left is not None and right is not None:
            s, _ = self._remove(left)
            _, e = self._remove(left)  # the right run now sits where the left one was
            self._insert(s, e)
        elif left is not None:
            s, _ = self._remove(left)
            self._insert(s, last + 1)
        elif right is not None:
            _, e = self._remove(right)
            self._insert(start, e)
        else:
            self._insert(start, last + 1)
