"""One-line assertions about what a fault did, with messages a kernel developer reads at a glance.

Each helper finds the fault it is about, checks it, and on failure says what
was expected, what happened, and the fault's whole story (PTE before and
after, the handler chain, the stream report). They work on a CallResult (its
faults) or a Machine (every fault it has seen). The pytest plugin registers
this module for assertion rewriting (emu.testing re-exports it).
"""

from __future__ import annotations

import re

from ..bpf.stream import BPF_STDERR
from ..kernel.events import COMPLETED, RESTART, SKIP, FaultEvent
from ..machine import OOPS, CallResult, Machine
from ..mm.layout import PAGE_MASK

__all__ = ["assert_fault_at", "assert_fixed_up", "assert_no_fault", "assert_oops", "assert_reported_once",
           "assert_restarted", "assert_text_matches", "assert_write_lost", "text_matches"]


_CALL_SITE = re.compile(r" @ (\S+:\d+)$", re.M)  # a call trace's source line, as bpf_stream_dump_stack() adds it


def _events(where: CallResult | Machine) -> list[FaultEvent]:
    return list(where.faults if isinstance(where, CallResult) else where.events)


def _address(machine: Machine | None, at: int | str) -> int:
    if isinstance(at, int):
        return at
    if machine is None:
        raise TypeError(f"'{at}' is a symbol: pass machine= to resolve it")
    name, _, off = at.partition("+")
    return machine.symbol(name) + (int(off, 0) if off else 0)


def _stories(events: list[FaultEvent]) -> str:
    return "\n".join(e.story() for e in events) if events else "(no faults)"


def _fail(summary: str, events: list[FaultEvent]) -> None:
    raise AssertionError(f"{summary}\n{_stories(events)}")


def _the_fault(where: CallResult | Machine, at: int | str, machine: Machine | None, what: str) -> FaultEvent:
    events = _events(where)
    addr = _address(machine if machine is not None else where if isinstance(where, Machine) else None, at)
    mine = [e for e in events if e.rip == addr]
    if not mine:
        _fail(f"expected {what} at {addr:#x}, but no fault happened there; the faults were:", events)
    return mine[0]


def assert_fault_at(where: CallResult | Machine, source: str, *, resolution: str | None = None,
                    action: str | None = None) -> FaultEvent:
    """A fault at the C line `source` ("x.bpf.c:42": a file name or any trailing part of its path,
    as gdb matches it), resolved by `resolution` and handled by `action` when given. A fault in
    code without lines of its own (an assembly kfunc) is at the C line its stream report's call
    trace names (`... @ x.bpf.c:42`): the line that called it."""
    file, _, line = source.rpartition(":")
    events = _events(where)

    def names_line(text: str) -> bool:
        f, _, n = text.rpartition(":")
        return bool(file) and n == line and (f == file or f.endswith("/" + file))

    def called_from(e: FaultEvent) -> bool:
        return not e.source and any(names_line(m) for m in _CALL_SITE.findall(e.stream or ""))
    mine = [e for e in events if e.source and names_line(e.source)] or [e for e in events if called_from(e)]
    if not mine:
        _fail(f"expected a fault at {source}, but none happened there; the faults were:", events)
    e = mine[0]
    problems = []
    if resolution is not None and e.resolution != resolution:
        problems.append(f"it was resolved by {e.resolution or 'nothing yet'}, not {resolution}")
    if action is not None and e.action != action:
        problems.append(f"its handler's action was {e.action or 'none'}, not {action}")
    if problems:
        _fail(f"fault #{e.seq} at {source} <{e.where}>: " + "; ".join(problems), [e])
    return e


def assert_restarted(where: CallResult | Machine, at: int | str, *, machine: Machine | None = None,
                     resolution: str = "scratch") -> FaultEvent:
    """The instruction at `at` faulted, bpf_arena_handle_page_fault() (or `resolution`) fixed
    the PTE, RIP stayed on the instruction, and the restarted instruction then completed."""
    e = _the_fault(where, at, machine, "a fault restarted after the scratch fixup")
    problems = []
    if e.resolution != resolution:
        problems.append(f"it was resolved by {e.resolution or 'nothing yet'}, not {resolution}")
    if e.action != RESTART:
        problems.append(f"the instruction was not restarted ({e.action or 'no handler ran'})")
    if e.pte_before != 0:
        problems.append(f"the PTE was {e.pte_before:#x} before the fault, not none")
    if e.pte_after == 0:
        problems.append("the PTE is still none after the handler")
    if e.retry != COMPLETED:
        problems.append(f"the restarted instruction did not complete ({e.retry or 'not seen again'})")
    if problems:
        _fail(f"fault #{e.seq} at {e.rip:#x} <{e.where}>: " + "; ".join(problems), [e])
    return e


def assert_fixed_up(where: CallResult | Machine, at: int | str, *, cleared: str | None,
                    machine: Machine | None = None) -> FaultEvent:
    """A BPF arena access at `at` faulted and ex_handler_bpf() fixed it up: `cleared` zeroed
    (None for a store or an atomic), the instruction skipped, not restarted."""
    e = _the_fault(where, at, machine, "a BPF access fixed up by the exception table")
    problems = []
    if (e.resolution, e.handler) != ("extable", "ex_handler_bpf"):
        problems.append(f"it was resolved by {e.handler or e.resolution or 'nothing yet'}, not ex_handler_bpf")
    if e.action != SKIP:
        problems.append(f"the instruction was not skipped ({e.action or 'no handler ran'})")
    if e.cleared != cleared:
        problems.append(f"{e.cleared or 'no register'} was cleared, not {cleared or 'no register'}")
    if problems:
        _fail(f"fault #{e.seq} at {e.rip:#x} <{e.where}>: " + "; ".join(problems), [e])
    return e


def assert_reported_once(machine: Machine, address: int, *, access: str | None = None) -> str:
    """Exactly one report in the BPF programs' stderr names `address` (a user address, as the
    kernel prints it). Looks without consuming; returns the report."""
    text = machine.stream_text(BPF_STDERR)
    reports = [r for r in re.split(r"(?=^ERROR: )", text, flags=re.M) if r.startswith("ERROR: ")]
    line = re.compile(rf"^ERROR: Arena (READ|WRITE) access at unmapped address {address:#x}$", re.M)
    mine = [r for r in reports if line.search(r)]
    if len(mine) != 1:
        raise AssertionError(f"expected one stderr report of unmapped address {address:#x}, found {len(mine)}; "
                             f"stderr holds:\n{text or '(nothing)'}")
    found = line.search(mine[0])
    assert found is not None  # mine holds only the reports it matches
    if access is not None and found.group(1) != access.upper():
        raise AssertionError(f"the report of {address:#x} is not a {access.upper()} access:\n{mine[0]}")
    return mine[0]


def assert_oops(result: CallResult, first_line: str) -> None:
    """The call oopsed, and its report starts with `first_line` ({{regex}} holes allowed)."""
    if result.status != OOPS:
        raise AssertionError(f"expected an oops, but the call {result.status}: {result!r}\n"
                             f"{_stories(result.faults)}")
    head = (result.oops or "").split("\n", 1)[0]
    if not text_matches(head, first_line):
        raise AssertionError(f"the oops starts\n  {head}\nnot\n  {first_line}\n\n{result.oops}")


def assert_no_fault(where: CallResult | Machine) -> None:
    events = _events(where)
    if events:
        _fail(f"expected no fault, but {len(events)} happened:", events)


def assert_write_lost(machine: Machine, address: int, value: int, *, size: int = 8) -> None:
    """`value` was written to `address` but the page the tables map there now does not hold it
    (the store went through a stale translation, to the scratch page)."""
    have = int.from_bytes(machine.read(address, size), "little")
    if have == value:
        raise AssertionError(f"the write of {value:#x} reached {address:#x}: the page mapped there holds it\n"
                             f"PTE now: {machine.pte(address & PAGE_MASK):#x}")


_HOLE = re.compile(r"\{\{(.*?)\}\}(?!\})")  # a hole ends at the last of a run of braces: {{[0-9]{2}}}


def text_matches(actual: str, expected: str) -> bool:
    """Whether `actual` is `expected` with each {{regex}} hole matched by its pattern, as the
    kernel's selftests write expected stream text."""
    return _template(expected).fullmatch(actual) is not None


def _template(expected: str) -> re.Pattern:
    parts, pos = [], 0
    for m in _HOLE.finditer(expected):
        parts.append(re.escape(expected[pos:m.start()]))
        parts.append(f"(?:{m.group(1)})")
        pos = m.end()
    parts.append(re.escape(expected[pos:]))
    return re.compile("".join(parts), re.S)


def assert_text_matches(actual: str, expected: str) -> None:
    """Compare a stream report or an oops with a template with {{regex}} holes; on failure,
    say which line is the first to differ."""
    if text_matches(actual, expected):
        return
    want, have = expected.split("\n"), actual.split("\n")
    for i, w in enumerate(want):
        h = have[i] if i < len(have) else None
        if h is None or not text_matches(h, w):
            raise AssertionError(f"line {i + 1} differs:\n  expected: {w}\n  actual:   "
                                 f"{h if h is not None else '(the text ends)'}\n\nthe whole text:\n{actual}")
    raise AssertionError(f"the text goes on after {len(want)} lines:\n{actual}")
