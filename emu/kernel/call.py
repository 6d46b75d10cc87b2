"""How a call ended, as the front ends and tests read it."""

from __future__ import annotations

from dataclasses import dataclass, field

from .events import FaultEvent

RETURNED, OOPS, BUDGET, ERROR = "returned", "oops", "budget", "error"
STOPPED = "stopped"  # a started call that can go on: a step done, a breakpoint, a caught fault


@dataclass
class CallResult:
    """How a call ended: `status` is returned, oops, budget or error."""

    entry: str
    status: str
    ret: int | None = None
    insns: int | None = 0  # None: not counted (no budget, or past the counted prefix of a call with none)
    faults: list[FaultEvent] = field(default_factory=list)
    oops: str | None = None
    error: str | None = None

    @property
    def after(self) -> str:
        """How many instructions the call ran, for text output: a number only when counted."""
        return "after an uncounted number of instructions" if self.insns is None else f"after {self.insns} instructions"

    @property
    def ret_signed(self) -> int | None:
        return None if self.ret is None else self.ret - (1 << 64) if self.ret >> 63 else self.ret

    def to_json(self) -> dict:
        return {
            "entry": self.entry, "status": self.status, "ret": self.ret, "ret_signed": self.ret_signed,
            "insns": self.insns, "faults": [event_json(e) for e in self.faults],
            "oops": self.oops, "error": self.error,
        }

    def __repr__(self) -> str:
        if self.status == RETURNED:
            what = f"ret={self.ret:#x}"
        elif self.status == OOPS:
            what = (self.oops or "").split("\n", 1)[0]
        else:
            what = self.error or ""
        insns = "uncounted" if self.insns is None else self.insns
        return f"<CallResult {self.entry}: {self.status} {what}, {len(self.faults)} fault(s), {insns} insns>"


def event_json(e: FaultEvent) -> dict:
    def hx(v: int | None) -> str | None:
        return None if v is None else f"{v:#x}"
    return {
        "seq": e.seq, "cpu": e.cpu, "vector": e.vector, "kind": e.kind, "rip": hx(e.rip), "where": e.where,
        "insn": e.insn, "address": hx(e.address), "error_code": hx(e.error_code.value),
        "access": e.error_code.access, "error_code_text": e.error_code.describe(),
        "pte_before": hx(e.pte_before), "pte_after": hx(e.pte_after),
        "resolution": e.resolution, "handler": e.handler, "action": e.action, "resume_at": hx(e.resume_at),
        "retry": e.retry, "completed": e.completed, "cleared": e.cleared, "stream": e.stream, "source": e.source,
        "bpf_insn": e.bpf_insn,
        "steps": e.steps,
    }
