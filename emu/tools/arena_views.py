"""The commands gdb does not have: the kernel state the arena lives in. Page
walks, what a CPU's TLB may still hold, the arena's pages, the fault log, the
BPF streams and the policy the machine models.
"""

from __future__ import annotations

from ..bpf.arena import Arena
from ..bpf.stream import BPF_STDERR, BPF_STDOUT, STREAM_NAMES
from ..x86.pgtable import flag_names, pte_present
from .commands import Command, registry
from .inferior import CommandError, Inferior

COMMANDS: dict[str, Command] = {}
command = registry(COMMANDS)


@command("pte", "pte ADDR: the page walk level by level, the flags, and what the frame holds")
def _pte(d: Inferior, rest: str, _fmt: str):
    va = d.value(rest)
    w = d.m.walk(va)
    out = str(w).splitlines()
    if w.stages and w.stages[-1].level == "PTE" or w.pa is not None:
        pte = w.stages[-1].entry
        out.append(f"  PTE flags: {flag_names(pte) or 'none'}{d._frame_note(pte)}")
    return out


@command("tlb", "tlb: the translations this CPU may still have cached that the tables no longer say")
def _tlb(d: Inferior, _rest: str, _fmt: str):
    stale = d.cpu.maybe_stale
    if not stale:
        return "No PTE this CPU may have cached has changed since its last flush of it."
    out = ["page                old PTE (maybe cached)        PTE now"]
    for va in sorted(stale):
        old = stale[va]
        out.append(f"{va:#018x}  {old:#018x}{d._frame_note(old):<28}  {d._pte_line(va)}")
    return out


@command("arena", "arena: each arena's pages: allocated, reserved and free runs; scratched PTEs")
def _arena(d: Inferior, _rest: str, _fmt: str):
    if not d.m.arenas:
        return "No arena."
    out = []
    for a in d.m.arenas.values():
        out += _arena_view(d, a)
    return out


def _arena_view(d: Inferior, a: Arena) -> list[str]:
    out = [f"arena '{a.name}': {a.max_entries} pages, user {a.user_vm_start:#x}-{a.user_vm_end:#x}, "
           f"kern_vm_start {a.kern_vm_start:#x}, policy {a.policy}"]
    free = a.rt.runs()
    kinds: list[tuple[str, int, int]] = []
    for pgoff in range(a.max_entries):
        uaddr = a.user_addr(pgoff)
        pte = d.m.pte(a.kern_addr(uaddr))
        is_free = any(s <= pgoff < e for s, e in free)
        kind = "free" if is_free and not a.is_scratch(pte) else (
            "scratch" if a.is_scratch(pte) else "allocated" if pte_present(pte) and not a.is_garbage(pte)
            else "free" if is_free else "reserved")
        if kinds and kinds[-1][0] == kind and kinds[-1][2] == pgoff:
            kinds[-1] = (kind, kinds[-1][1], pgoff + 1)
        else:
            kinds.append((kind, pgoff, pgoff + 1))
    for kind, s, e in kinds:
        note = " (free in the range tree)" if kind == "scratch" and any(fs <= s < fe for fs, fe in free) else ""
        out.append(f"  pages {s:>7}-{e - 1:<7} {a.user_addr(s):#x}  {kind}{note}")
    if a.scratch_pfn is not None:
        out.append(f"  scratch page: frame {a.scratch_pfn:#x}")
    return out


@command("faults", "faults [N]: the fault log, one line each; faults N: fault N's whole story")
def _faults(d: Inferior, rest: str, _fmt: str):
    events = d.m.events
    if rest:
        n = int(d.value(rest))
        if not 1 <= n <= len(events):
            raise CommandError(f"No fault #{n}: there are {len(events)}.")
        return events[n - 1].story()
    return [e.summary() for e in events] or "No faults."


@command("stream", "stream [stdout|stderr]: what the BPF programs' streams hold (not consumed)")
def _stream(d: Inferior, rest: str, _fmt: str):
    ids = {"stdout": [BPF_STDOUT], "stderr": [BPF_STDERR], "": [BPF_STDOUT, BPF_STDERR]}.get(rest)
    if ids is None:
        raise CommandError("stream takes stdout or stderr")
    out = []
    for p in d.m.progs:
        if p.main is None:
            for i in ids:
                text = p.streams[i].peek().decode(errors="replace")
                if text:
                    out.append(f"--- {p.name} {STREAM_NAMES[i]} ---\n{text.rstrip()}")
    return out or "The streams are empty."


@command("policy", "policy: the kernel this machine models, and its knobs")
def _policy(d: Inferior, _rest: str, _fmt: str):
    return f"policy {d.policy.name}, knobs: {', '.join(d.policy.knobs) or 'none'}"
