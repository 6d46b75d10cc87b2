"""Fault events: every fault with its whole story, as a value a test can assert on."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..x86.pgtable import CapturedWalk, PageWalk, flag_names, replay_walk
from ..x86.traps import TRAP_NAMES, ErrorCode

# What happened to the faulting instruction.
RESTART = "restart"  # RIP left at the instruction; it runs again
FIXUP = "fixup"  # RIP moved to an exception-table fixup label
SKIP = "skip"  # RIP moved past the instruction (BPF extable)
STOP = "stop"  # the call ended (oops)

# What the restarted instruction then did, seen at the CPU's next stop.
COMPLETED = "completed"  # it retired: execution went on past it
PROGRESSED = "progressed"  # it faulted again further on (a string instruction's next page)
REFAULTED = "refaulted"  # it faulted again at the same address, no progress


@dataclass(frozen=True)
class Observation:
    """Where a CPU was at its next stop after a restart."""

    rip: int
    started: int  # instructions started in this call so far
    rcx: int
    fault_address: int | None  # CR2 when the stop is another fault, else None
    returned: bool = False


def observe_retry(event: FaultEvent, now: Observation) -> str | None:
    """Decide what the restarted instruction did, from the CPU state at its next stop.

    The instruction counter counts every instruction started (each `rep`
    iteration too), so a re-fault of the very same attempt is exactly one start
    after the fault. None: the run stopped before the instruction was retried.
    """
    if now.returned or now.rip != event.rip:
        return COMPLETED
    delta = now.started - event.started
    if delta <= 0:
        return None
    same_page = now.fault_address is not None and now.fault_address >> 12 == event.address >> 12
    if delta == 1:
        if now.fault_address is None:
            return None
        return REFAULTED if same_page else PROGRESSED
    if event.string_op and 0 < event.rcx - now.rcx <= delta:
        return PROGRESSED  # the same rep instruction, iterations done since the restart
    return COMPLETED  # it retired, and execution came back to it later


# A line of a fault's story: its text, or (template, *args) for str.format, or (function, *args),
# made text when first read. A fault appends several; most are never read, and formatting them
# cost more than the rest of the fault. Arguments that are tuples are Steps themselves.
Step = str | tuple[Any, ...]


def render_step(step: Step) -> str:
    if isinstance(step, str):
        return step
    head, *args = step
    args = [render_step(a) if type(a) is tuple else a for a in args]
    return head.format(*args) if type(head) is str else head(*args)


class Steps:
    """A `steps` field: a list of Steps, each made text the first time the list is read, in place,
    so what a reader gets is a plain list of strings it may append to."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj: object, owner: type | None = None) -> list[str]:
        if obj is None:
            return ()  # type: ignore[return-value]  # the dataclass's default: made a fresh list in __set__
        steps = obj.__dict__[self.slot]
        for i, step in enumerate(steps):
            if type(step) is not str:
                steps[i] = render_step(step)
        return steps

    def __set__(self, obj: object, value: Iterable[Step]) -> None:
        obj.__dict__[self.slot] = value if type(value) is list else list(value)


def steps_of(obj: object) -> list[Step]:
    """The Steps of a FaultEvent or a Decision as kept, to append to without making them text."""
    steps: list[Step] = obj.__dict__["_steps"]
    return steps


class _Walk:
    """A walk field: a PageWalk, or the entries a fault captured, made a PageWalk when read."""

    def __init__(self, slot: str = ""):
        self.slot = slot

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj: object, owner: type | None = None) -> PageWalk | None:
        if obj is None:
            return None
        value = obj.__dict__[self.slot]
        if type(value) is tuple:
            value = obj.__dict__[self.slot] = replay_walk(value)
        return value

    def __set__(self, obj: object, value: PageWalk | CapturedWalk | None) -> None:
        obj.__dict__[self.slot] = value


class _Stream:
    """`stream`: the text a fault wrote to a stream, kept as the elements pushed, joined when read."""

    def __get__(self, obj: object, owner: type | None = None) -> str | None:
        if obj is None:
            return None
        value = obj.__dict__["_stream"]
        if type(value) is list:
            value = obj.__dict__["_stream"] = b"".join(value).decode(errors="replace")
        return value

    def __set__(self, obj: object, value: str | list[bytes] | None) -> None:
        obj.__dict__["_stream"] = value


class EventText(str):
    """A fault event's resolution, action, handler or retry: a plain string that knows its event,
    so a failing `assert fault.resolution == "scratch"` can show the whole story (the pytest plugin's
    pytest_assertrepr_compare)."""

    event: FaultEvent

    def __repr__(self) -> str:
        return repr(str(self))


_T = TypeVar("_T", str, str | None)


class _Text(Generic[_T]):
    """A FaultEvent field read back as EventText. Wrapped when read, which tests do, not when
    set, which every fault does; a descriptor on these five fields only, where a __setattr__
    would run for every field of every event."""

    def __init__(self, default: _T):
        self.default: _T = default

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj: FaultEvent | None, owner: type | None = None) -> _T:
        if obj is None:
            return self.default  # what the dataclass takes as the field's default
        value: _T = obj.__dict__[self.slot]
        if type(value) is tuple:  # `retry`: the next stop's Observation fields, judged when read
            value = obj.__dict__[self.slot] = observe_retry(obj, Observation(*value))
        if value is None:
            return value
        text = EventText(value)
        text.event = obj
        return text

    def __set__(self, obj: FaultEvent, value: _T | tuple[int, int, int, int | None, bool]) -> None:
        obj.__dict__[self.slot] = value


@dataclass
class FaultEvent:
    """One exception taken by a CPU, recorded before and after handling."""

    seq: int
    cpu: int
    vector: int
    rip: int
    where: str  # RIP as `symbol+0xoff/0xsize`
    address: int  # CR2 for #PF; for other vectors the decoded operand address, if any
    error_code: ErrorCode
    user_mode: bool
    walk_before: PageWalk | None  # a _Walk too, set below: a required field cannot be one here
    started: int
    rcx: int
    string_op: bool
    insn: str = ""  # the faulting instruction, disassembled
    steps: Steps = Steps()  # the fault path as it ran
    resolution: _Text[str] = _Text("")  # "spurious", "extable", "oops", ...
    handler: _Text[str] = _Text("")
    action: _Text[str] = _Text("")
    resume_at: int | None = None
    walk_after: _Walk = _Walk()
    retry: _Text[str | None] = _Text(None)
    report: str | None = None  # the oops text, when the call stopped
    cleared: _Text[str | None] = _Text(None)  # the register ex_handler_bpf() zeroed
    stream: _Stream = _Stream()  # what this fault wrote to a BPF program's stderr
    source: str | None = None  # FILE:LINE of the faulting instruction, for compiled code with debug info
    bpf_insn: str | None = None  # `INDEX: TEXT` of the BPF instruction the JIT made the faulting code of

    @property
    def pte_before(self) -> int:
        return self.walk_before.pte if self.walk_before else 0

    @property
    def pte_after(self) -> int:
        return self.walk_after.pte if self.walk_after else 0

    @property
    def restarted(self) -> bool:
        return self.action == RESTART

    @property
    def completed(self) -> bool | None:
        """Whether the restarted instruction then retired; None when not restarted or not seen."""
        if self.action != RESTART or self.retry is None:
            return None
        return self.retry == COMPLETED

    @property
    def kind(self) -> str:
        if self.vector == 14:
            return f"#PF {self.error_code.access}"
        return TRAP_NAMES.get(self.vector, f"vector {self.vector}")

    def summary(self) -> str:
        """One line, as `faults` lists it."""
        then = {RESTART: "restart", FIXUP: f"fixup -> {self.resume_at:#x}" if self.resume_at is not None else "fixup",
                SKIP: f"skip, {self.cleared} = 0" if self.cleared else "skip",
                STOP: "stop"}.get(self.action, self.action)
        tail = f" [{self.retry}]" if self.retry else ""
        head = f"#{self.seq} cpu{self.cpu} {self.kind} {self.address:#x} at {self.where}: "
        if not self.action:
            return head + "caught, the handler has not run yet"
        return f"{head}{self.resolution} ({then}){tail}"

    def _then(self) -> str:
        """Where execution went after the handler."""
        if self.action == RESTART:
            return f"restart at {self.rip:#x}" + (f": {self.retry}" if self.retry else "")
        if self.action == FIXUP:
            return f"continue at {self.resume_at:#x}"
        if self.action == SKIP:
            cleared = f"{self.cleared} = 0" if self.cleared else "no register cleared"
            return f"skip to {self.resume_at:#x}, {cleared}"
        if self.action == STOP:
            return "the call stops here (oops)"
        return ""

    def brief(self) -> list[str]:
        """The story in four lines, for places that truncate (pytest's assertion messages)."""
        then = self._then() or "the handler has not run yet"
        lines = [f"{self.kind} at {self.rip:#x} <{self.where}>: {self.insn}, address {self.address:#x}",
                 f"PTE before {self.pte_before:#x}, after {self.pte_after:#x}; "
                 f"{self.resolution or '-'} by {self.handler or '-'}: {then}"]
        if self.stream:
            lines.append(f"stderr: {self.stream.splitlines()[0]}")
        return lines

    def story(self) -> str:
        """The whole story, step by step like the kernel's path."""
        lines = [f"fault #{self.seq} on CPU {self.cpu}: {self.kind} at {self.rip:#x} <{self.where}>"]
        if self.insn:
            lines.append(f"  instruction: {self.insn}")
        if self.bpf_insn:
            lines.append(f"  BPF instruction: {self.bpf_insn}")
        if self.source:
            lines.append(f"  source: {self.source}")
        if self.vector == 14:
            lines.append(f"  address (CR2): {self.address:#x}")
            lines.append(f"  error code: {self.error_code}")
        if self.walk_before is not None:
            lines.append(f"  PTE before: {_pte_text(self.walk_before)}")
        lines += [f"  {s}" for s in self.steps]
        if self.walk_after is not None:
            lines.append(f"  PTE after:  {_pte_text(self.walk_after)}")
        if self.action:
            lines.append(f"  {self._then()}")
        if self.stream:
            lines.append(f"  stderr: {self.stream.splitlines()[0]}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<FaultEvent {self.summary()}>"


# After the dataclass made its __init__, which then sets it through the descriptor.
FaultEvent.walk_before = _Walk("_walk_before")  # type: ignore[assignment]


def _pte_text(w: PageWalk) -> str:
    if w.stages and w.stages[-1].level == "PTE":
        return f"{w.pte:#018x} ({flag_names(w.pte)})" if w.pte else "0 (none)"
    return f"no PTE ({w.stopped})" if w.stopped else w.dump_pagetable()


def fault_taken(seq: int, cpu: int, vector: int, rip: int, where: str, address: int, error_code: ErrorCode,
                walk_before: PageWalk | CapturedWalk | None, started: int, rcx: int, string_op: bool, insn: str,
                source: str | None, bpf_insn: str | None) -> FaultEvent:
    """A FaultEvent as a CPU's exception hook makes one, before its handler ran: what
    FaultEvent(...) makes, without a Python call per field (this runs for every fault)."""
    event = object.__new__(FaultEvent)
    event.__dict__ = {
        "seq": seq, "cpu": cpu, "vector": vector, "rip": rip, "where": where, "address": address,
        "error_code": error_code, "user_mode": False, "_walk_before": walk_before, "started": started, "rcx": rcx,
        "string_op": string_op, "insn": insn, "_steps": [], "_resolution": "", "_handler": "", "_action": "",
        "resume_at": None, "_walk_after": None, "_retry": None, "report": None, "_cleared": None, "_stream": None,
        "source": source, "bpf_insn": bpf_insn}
    return event
