"""Stack traces through guest memory (arch/x86/kernel/unwind_frame.c, dumpstack.c).

Reads go through a callable that translates virtual addresses with our page
tables, so the walk sees exactly what the guest's unwinder would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MAX_FRAMES = 64

ReadU64 = Callable[[int], "int | None"]


def walk_stack_frames(read_u64: ReadU64, rbp: int, stack_lo: int, stack_hi: int) -> list[tuple[int, int]]:
    """(frame address, return address) pairs found by following saved RBPs, innermost first.

    Each frame is [saved rbp][return address] at rbp; the walk stops at a NULL
    or unreadable frame, one outside the task's stack, or one that does not
    move up the stack (a corrupted chain cannot loop).
    """
    out: list[tuple[int, int]] = []
    frame = rbp
    while len(out) < MAX_FRAMES and stack_lo <= frame and frame + 16 <= stack_hi and frame % 8 == 0:
        ret = read_u64(frame + 8)
        nxt = read_u64(frame)
        if ret is None or nxt is None or ret == 0:
            break
        out.append((frame, ret))
        if nxt <= frame:
            break
        frame = nxt
    return out


ENTRY, PUSHED, RETURNING, FRAMED = "entry", "pushed", "returning", "framed"


def frame_state(insn: str | None, at_entry: bool) -> str:
    """Where the innermost function is in setting up or tearing down its frame, from the
    instruction at RIP (AT&T text): before `push %rbp` (its first instruction, or that push),
    between the push and `mov %rsp,%rbp`, at its `ret`, or framed (RBP is its frame).

    unwind_frame.c's __unwind_start() handles a frame that is not set up when it starts from
    regs at IP 0 (a call through a NULL pointer): the return address is at SP, and the real
    BP is the next frame's. The same holds wherever RBP is not yet (or no longer) the
    function's frame: at its first instruction and at its `ret` the return address is at
    (%rsp), after its `push %rbp` at 8(%rsp); the walk then goes on from RBP, the caller's
    frame (emu/x86/unwind_orc.py's unwind_frames() takes the state)."""
    if at_entry or insn == "pushq %rbp":
        return ENTRY
    if insn == "movq %rsp, %rbp":
        return PUSHED
    if insn is not None and insn.removeprefix("repz ").split(" ", 1)[0] == "retq":
        return RETURNING
    return FRAMED


@dataclass(frozen=True)
class TraceEntry:
    address: int
    reliable: bool  # on the frame-pointer chain; the kernel prints the others with "? "


def show_trace(read_u64: ReadU64, rsp: int, rbp: int, stack_lo: int, stack_hi: int,
               is_text: Callable[[int], bool]) -> list[TraceEntry]:
    """show_trace_log_lvl(): scan the stack from RSP up; every word that is a text
    address is printed, reliable when it is the next return address of the chain."""
    chain = walk_stack_frames(read_u64, rbp, stack_lo, stack_hi)
    slots = {frame + 8: ret for frame, ret in chain}
    out = []
    for slot in range(max(rsp, stack_lo) & ~7, stack_hi, 8):
        word = read_u64(slot)
        if word is None:
            break
        if slot in slots:
            out.append(TraceEntry(word, True))
        elif is_text(word):
            out.append(TraceEntry(word, False))
        if len(out) >= MAX_FRAMES:
            break
    return out
