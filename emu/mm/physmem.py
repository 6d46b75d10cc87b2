"""Guest physical memory: one host buffer shared by every CPU, and its page frames.

The buffer is an anonymous mmap, so untouched frames cost no host memory and
come zeroed; a large arena costs only what is written. Each CPU maps the same
buffer with Unicorn's mem_map_ptr, so all CPUs see one RAM.
"""

from __future__ import annotations

import ctypes
import enum
import mmap
import struct
import sys
from collections import deque
from collections.abc import Iterable
from itertools import repeat

from ..errors import EmuError
from .layout import PAGE_SHIFT, PAGE_SIZE

_U64 = struct.Struct("<Q")


class FrameKind(enum.IntEnum):
    """What a page frame holds; the debugger and reports name frames by it."""

    FREE = 0
    PGTABLE = 1
    TEXT = 2
    DATA = 3
    STACK = 4
    ARENA = 5
    SCRATCH = 6
    GARBAGE = 7
    RESERVED = 8  # frame 0, never handed out, so that PFN 0 always means "none"


class OutOfMemory(EmuError):
    pass


MAX_RAM = 64 << 30  # a frame-kind byte per page is kept: 16 MiB of bookkeeping at most


def _name_the_bad_frame(kinds: bytearray, pfns: Iterable[int]) -> None:
    """Raise for the first frame of `pfns` that free_frame() would refuse."""
    seen: set[int] = set()
    for pfn in pfns:
        if not 0 < pfn < len(kinds) or kinds[pfn] == FrameKind.FREE or pfn in seen:
            raise EmuError(f"freeing frame {pfn:#x} that is not allocated")
        seen.add(pfn)


class _Words:
    """`words` on a big-endian host, where a native memoryview would read guest words backwards."""

    def __init__(self, mem: PhysMem):
        self._mem = mem

    def __getitem__(self, i: int) -> int:
        return self._mem.read_u64(i << 3)


class PhysMem:
    """Guest RAM plus a page-frame allocator that knows what each frame holds."""

    def __init__(self, size: int):
        if size <= 0 or size % PAGE_SIZE:
            raise EmuError(f"guest RAM size must be a positive multiple of {PAGE_SIZE}, not {size}")
        if size > MAX_RAM:
            raise EmuError(f"guest RAM is at most {MAX_RAM >> 30} GiB, not {size:#x} bytes")
        self.size = size
        self.nr_frames = size >> PAGE_SHIFT
        try:
            self._buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        except OSError as e:
            raise EmuError(f"cannot reserve {size >> 20} MiB of host memory for guest RAM: {e.strerror}") from None
        self._cbuf = ctypes.c_char.from_buffer(self._buf)
        self.host_address = ctypes.addressof(self._cbuf)
        # Guest RAM as 64-bit words, `words[pa >> 3]` for an aligned pa: page walks and stack walks
        # read a dozen per fault, and indexing costs no Python call where read_u64() costs one.
        self.words: memoryview | _Words = memoryview(self._buf).cast("Q") if sys.byteorder == "little" else _Words(self)
        self._kinds = bytearray(self.nr_frames)
        self._kinds[0] = FrameKind.RESERVED
        self._next_pfn = 1
        self._free: list[int] = []

    # -- frames ---------------------------------------------------------------

    def alloc_frame(self, kind: FrameKind) -> int:
        """A zeroed frame; returns its PFN."""
        if self._free:
            pfn = self._free.pop()
            ctypes.memset(self.host_address + (pfn << PAGE_SHIFT), 0, PAGE_SIZE)
        elif self._next_pfn < self.nr_frames:
            pfn = self._next_pfn  # never used: the anonymous mapping is still zero
            self._next_pfn += 1
        else:
            raise OutOfMemory(f"guest RAM exhausted ({self.size >> 20} MiB, all {self.nr_frames} frames in use)")
        self._kinds[pfn] = kind
        return pfn

    def alloc_frames(self, kind: FrameKind, n: int) -> list[int]:
        """n zeroed frames at once: freed ones first, then never-used ones in one run."""
        fresh = n - min(n, len(self._free))
        if fresh > self.nr_frames - self._next_pfn:
            raise OutOfMemory(f"guest RAM exhausted ({self.size >> 20} MiB): {n} frames asked, "
                              f"{len(self._free) + self.nr_frames - self._next_pfn} free")
        reused = [self._free.pop() for _ in range(n - fresh)]
        for pfn in reused:
            ctypes.memset(self.host_address + (pfn << PAGE_SHIFT), 0, PAGE_SIZE)
            self._kinds[pfn] = kind
        start = self._next_pfn
        self._next_pfn += fresh
        self._kinds[start:start + fresh] = bytes([kind]) * fresh
        return reused + list(range(start, start + fresh))

    def free_frames(self, groups: list[range | list[int]]) -> None:
        """free_frame() on every frame of each group, checked and freed a group at a time: a
        run of consecutive frames (a range) with slice operations, a list with a few bulk
        ones; a whole arena's pages go in one call. A frame not allocated, or freed twice, is
        named as free_frame() names it, and nothing of its group is freed."""
        kinds = self._kinds
        for group in groups:
            if not group:
                continue
            if isinstance(group, range):
                bad = group.start <= 0 or group.stop > self.nr_frames or FrameKind.FREE in kinds[group.start:group.stop]
            else:
                bad = min(group) <= 0 or max(group) >= self.nr_frames or len(set(group)) != len(group) or \
                    FrameKind.FREE in bytes(map(kinds.__getitem__, group))
            if bad:
                _name_the_bad_frame(kinds, group)
            if isinstance(group, range):
                kinds[group.start:group.stop] = bytes(len(group))  # FrameKind.FREE
            else:
                deque(map(kinds.__setitem__, group, repeat(FrameKind.FREE)), maxlen=0)
            self._free += group

    def free_frame(self, pfn: int) -> None:
        if not 0 < pfn < self.nr_frames or self._kinds[pfn] == FrameKind.FREE:
            raise EmuError(f"freeing frame {pfn:#x} that is not allocated")
        self._kinds[pfn] = FrameKind.FREE
        self._free.append(pfn)

    def kind(self, pfn: int) -> FrameKind | None:
        """What frame `pfn` holds, or None when it lies outside guest RAM."""
        if 0 <= pfn < self.nr_frames:
            return FrameKind(self._kinds[pfn])
        return None

    def frames_of(self, kind: FrameKind) -> int:
        return self._kinds.count(kind)

    def frames_in_use(self) -> int:
        return self._next_pfn - 1 - len(self._free)

    # -- bytes ----------------------------------------------------------------

    def contains(self, pa: int, length: int = 1) -> bool:
        return pa >= 0 and pa + length <= self.size

    def _check(self, pa: int, length: int) -> None:
        if not self.contains(pa, length):
            raise EmuError(f"physical access {pa:#x}+{length} is outside guest RAM ({self.size:#x} bytes)")

    def read(self, pa: int, length: int) -> bytes:
        self._check(pa, length)
        return self._buf[pa:pa + length]

    def write(self, pa: int, data: bytes) -> None:
        self._check(pa, len(data))
        self._buf[pa:pa + len(data)] = data

    def read_u64(self, pa: int) -> int:
        return _U64.unpack_from(self._buf, pa)[0]

    def write_u64(self, pa: int, value: int) -> None:
        _U64.pack_into(self._buf, pa, value)

    def cmpxchg_u64(self, pa: int, old: int, new: int) -> int:
        """Compare-and-exchange; returns the value found. Atomic: CPUs run one at a time."""
        cur = _U64.unpack_from(self._buf, pa)[0]
        if cur == old:
            _U64.pack_into(self._buf, pa, new)
        return cur
