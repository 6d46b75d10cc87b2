"""Unwinding compiled code by its unwind tables, as arch/x86/kernel/unwind_orc.c does.

The kernel's default unwinder reads ORC tables that objtool derives from each
object; a C object here brings its DWARF call-frame information (.debug_frame
or .eh_frame), which says the same thing per address: where the canonical frame
address is (rsp or rbp plus an offset), and where the caller's rbp was saved.
With it a walk goes through functions that never set up a frame pointer, such
as gcc's leaf functions. Code without tables (assembly, JIT images) is walked by
its frame pointers, as before.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

from .unwind import ENTRY, FRAMED, PUSHED, RETURNING

ORC_REG_SP, ORC_REG_BP = "sp", "bp"
DWARF_RSP, DWARF_RBP = 7, 6
MAX_FRAMES = 64


@dataclass(frozen=True)
class OrcEntry:
    """From `start` up to the next entry: CFA = sp_reg + sp_offset; the caller's rbp at CFA +
    bp_offset, or unchanged when bp_offset is None; the return address at CFA - 8."""

    start: int
    end: int
    sp_reg: str
    sp_offset: int
    bp_offset: int | None


class OrcTable:
    """Every loaded object's entries, found by address (orc_find())."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._entries: list[OrcEntry] = []

    def __bool__(self) -> bool:
        return bool(self._entries)

    def add(self, entries: list[OrcEntry]) -> None:
        for e in entries:
            i = bisect.bisect_left(self._starts, e.start)
            self._starts.insert(i, e.start)
            self._entries.insert(i, e)

    def find(self, ip: int) -> OrcEntry | None:
        i = bisect.bisect_right(self._starts, ip) - 1
        return self._entries[i] if i >= 0 and ip < self._entries[i].end else None


def entries_from_cfi(rows: list[tuple[int, int, int, int, int | None]]) -> list[OrcEntry]:
    """OrcEntries from decoded CFI rows (start, end, CFA register, CFA offset, rbp's offset from
    the CFA); a row whose CFA is neither rsp nor rbp based has no entry (it is walked by frame
    pointer, as ORC_TYPE_UNDEFINED would stop the kernel's walk)."""
    out = []
    for start, end, reg, offset, bp in rows:
        if reg in (DWARF_RSP, DWARF_RBP) and end > start:
            out.append(OrcEntry(start, end, ORC_REG_SP if reg == DWARF_RSP else ORC_REG_BP, offset, bp))
    return out


def unwind_frames(table: OrcTable, read: Callable[[int], int | None], ip: int, sp: int, bp: int,
                  stack_lo: int, stack_hi: int, state: str = FRAMED) -> list[int]:
    """RIP, then each return address: by the table where it covers the code (the lookup of a
    return address uses ip - 1, the call instruction, as unwind_orc.c does), by frame pointer
    elsewhere, the innermost frame by its `state` (see frame_state()); the walk stops at an
    unreadable or zero return address, or where it leaves the stack."""
    frames = [ip]
    lookup = ip
    first = {ENTRY: sp, RETURNING: sp, PUSHED: sp + 8}.get(state) if table.find(ip) is None else None
    if first is not None and stack_lo <= first and first + 8 <= stack_hi:
        ret = read(first)
        if not ret:
            return frames
        frames.append(ret)
        sp, lookup = first + 8, ret - 1
    while len(frames) < MAX_FRAMES:
        entry = table.find(lookup)
        if entry is not None:
            cfa = (sp if entry.sp_reg == ORC_REG_SP else bp) + entry.sp_offset
            if not stack_lo <= cfa - 8 < stack_hi:
                break
            ret = read(cfa - 8)
            new_bp = read(cfa + entry.bp_offset) if entry.bp_offset is not None else bp
            new_sp = cfa
        else:
            if not (stack_lo <= bp and bp + 16 <= stack_hi and bp % 8 == 0) or bp < sp:
                break
            ret, new_bp, new_sp = read(bp + 8), read(bp), bp + 16
        if not ret or new_bp is None:
            break
        frames.append(ret)
        sp, bp, lookup = new_sp, new_bp, ret - 1
    return frames
