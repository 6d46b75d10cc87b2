"""Partial-order reduction of `explore`: one schedule per class of equivalent ones.

An instruction is *visible* when another CPU can observe it or change what it
does: an access to memory other than the CPU's own stack (shared data, arena
pages, through its TLB and the page tables), a native kfunc or helper (the
arena allocator, PTEs, TLB flushes and shootdowns, streams), a fault and its
handler, a named preemption point. Everything else touches only the CPU's
registers and stack, so it commutes with every step of every other CPU.

So a step `c:N` that ends between two visible instructions gives the same
outcome as `c:V`, V the last visible instruction at or before N, with the
invisible rest run at the start of CPU c's next step (or in the tail); a step
with no visible instruction gives the same as `c:1`. Replacing every step of a
schedule this way (left to right, each CPU carrying its deferred instructions)
keeps its length, its CPUs and so the tail's order: every schedule of the
exhaustive search at a bound has one here with the same steps' CPUs and the
same outcome. The search therefore tries, at each point, for each CPU other
than the last one: `c:1`, `c:V` for each visible instruction V up to
`length + lead` (the exhaustive bound on a step, `length`, plus the invisible
instructions before the first visible one, which a carried step may include),
a held fault's handler (`c:1`: every count runs just it and the restarted
instruction), each named point the CPU reaches (and, when it ends past the window,
one step to a point it never reaches: to its end), and `c:1` on a finished CPU
(a step the exhaustive search skips, which still orders the tail). Such a pass,
`c:1` with no visible instruction, matters only last (it orders the tail) or before
a step of the CPU that ran before it (it splits that CPU's run in two steps, each
within the bound on a step); before any other step the schedule without it is the
same run, so a pass is followed only by the CPU before it. A step
longer than `length` is not in the exhaustive space: the reduced space is
equivalent to a superset of it, never missing an outcome.

This rests on two properties of the machine, which the tests check against the
exhaustive search rather than prove: `resume(N)` then `resume(M)` runs what
`resume(N + M)` runs, and every effect of Python-side code (kfuncs, the fault path)
happens in an instruction marked visible. Two visible instructions that commute
(two reads of one flag) still make two schedules: this is preemption only at
visible operations, not DPOR's backtracking on dependences.

Visible instructions are found by stepping the CPU one instruction at a time
with Unicorn memory hooks, only over the window a step may end in, and only
while exploring; the run that gives a schedule's outcome probes the first CPU
of its tail on the way, so a schedule with two CPUs costs one run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import unicorn

from ..machine import Machine
from ..mm.layout import KFUNC_PAGE, PAGE_SIZE, THREAD_SIZE, stack_top
from .explore import POINTS, Exploration, Outcome, Scenario, Schedule, Step, _counted, _lengths, _run_step

_MEM = unicorn.UC_HOOK_MEM_READ | unicorn.UC_HOOK_MEM_WRITE


@dataclass(frozen=True)
class Visit:
    """One schedule run to its end, and the steps that may follow it."""

    steps: tuple[Step, ...]
    outcome: Outcome
    children: tuple[Step, ...]
    passes: frozenset[Step] = frozenset()  # the children that run no visible instruction


@dataclass(frozen=True)
class Node:
    """A schedule to run, with what the search needs to probe its next steps."""

    scenario: Scenario
    steps: tuple[Step, ...]
    bound: int
    lengths: tuple[tuple[int, int], ...]
    passed: bool = False  # the last step ran no visible instruction


def full_space(lengths: dict[int, int], cpus: list[int], bound: int) -> int:
    """How many schedules the exhaustive search runs at `bound` (explore.schedules()),
    counted without listing them: each step on another CPU than the one before."""
    ends = {c: lengths[c] + len(POINTS) for c in cpus}
    total, ending = 1, dict(ends)  # ending[c]: schedules of k steps whose last step is on c
    for _ in range(bound):
        total += sum(ending.values())
        ending = {c: ends[c] * sum(n for d, n in ending.items() if d != c) for c in cpus}
    return total


def visit(node: Node) -> Visit:
    """Run a schedule as explore.run_schedule() does, and list the steps that may follow it."""
    sc, steps = node.scenario, node.steps
    lengths = dict(node.lengths)
    order = [e.cpu for e in sc.entries]
    m = sc.start()
    try:
        for step in steps:
            _run_step(m, step)
        last = steps[-1].cpu if steps else None
        running = m.running_cpus()
        targets = [c for c in order if c != last] if len(steps) < node.bound and len(running) > 1 else []
        if node.passed:  # only a step on the CPU before the pass needs it; any other goes without
            targets = [c for c in targets if len(steps) > 1 and c == steps[-2].cpu]
        children: dict[int, list[Step]] = {c: [Step(c, 1)] for c in targets if c not in running}
        passes = {Step(c, 1) for c in children}
        rest = [c for c in order if c != last] + ([last] if last is not None else [])
        untouched = True  # no CPU has run since the schedule's steps: the first one can be probed
        for c in rest:
            if c not in m.running_cpus():
                continue
            if untouched and c in targets:
                children[c], visible = probe(m, c, lengths[c])
                if not visible:
                    passes.add(Step(c, 1))
            untouched = False
            while c in m.running_cpus():
                m.resume(_counted(m, c), cpu=c)
        outcome = sc.outcome(m)
    finally:
        m.close()
    for c in targets:
        if c not in children:
            children[c], visible = _probe_apart(node, c, lengths[c])
            if not visible:
                passes.add(Step(c, 1))
    return Visit(steps, outcome, tuple(s for c in targets for s in children[c]), frozenset(passes))


def _probe_apart(node: Node, cpu: int, length: int) -> tuple[list[Step], bool]:
    m = node.scenario.start()
    try:
        for step in node.steps:
            _run_step(m, step)
        return probe(m, cpu, length)
    finally:
        m.close()


def probe(m: Machine, cpu: int, length: int) -> tuple[list[Step], bool]:
    """The steps of `cpu` from here that the reduction keeps (see the module's docstring), and
    whether its next instruction is visible (else `c:1` is a pass); runs the CPU to its end."""
    state = m.executor.calls[cpu]
    points: list[str] = []

    def note(c: int, point: str) -> bool:
        if c == cpu and point not in points:
            points.append(point)
        return False

    counts = [1]
    visible = True  # a held fault's handler, at least
    m.preempt = note
    try:
        if state.held is None:
            counts += _visible_counts(m, cpu, length)
            visible = counts[1:2] == [1]
        whole = cpu not in m.running_cpus()  # it ended inside the window: every visible count is kept
        while cpu in m.running_cpus():
            m.resume(_counted(m, cpu), cpu=cpu)
    finally:
        m.preempt = None
    ends = [f"@{p}" for p in POINTS if p in points]
    # A point never reached runs the CPU to its end, the same as its last visible count with the
    # invisible rest carried; past the window that count is not kept, so one such step is.
    unreached = [] if whole else [f"@{p}" for p in POINTS if p not in points][:1]
    return [Step(cpu, n) for n in sorted(set(counts))] + [Step(cpu, u) for u in ends + unreached], visible


def _visible_counts(m: Machine, cpu: int, length: int) -> list[int]:
    """Step `cpu` an instruction at a time over the window a step may end in; the counts
    after which a visible instruction has just run."""
    c = m.executor.cpus[cpu]
    state = m.executor.calls[cpu]
    top = stack_top(cpu)
    own = {m.memory.pgtables.translate_mapped(va) >> 12 for va in range(top - THREAD_SIZE, top, PAGE_SIZE)}
    touched = [False]

    def on_access(_uc, _access, address, _size, _value, _data) -> None:
        if address >> 12 not in own:  # Unicorn's memory hooks see physical addresses here
            touched[0] = True

    hook = c.uc.hook_add(_MEM, on_access)
    c.uc.ctl_flush_tb()  # code translated before carries no memory hook
    out: list[int] = []
    limit = None
    try:
        for i in itertools.count(1):
            if cpu not in m.running_cpus() or (limit is not None and i > limit):
                break
            rip = c.reg("rip")
            native = KFUNC_PAGE <= rip < KFUNC_PAGE + PAGE_SIZE or state.kfunc is not None
            events = len(m.events)
            touched[0] = False
            m.resume(1, cpu=cpu)
            if touched[0] or native or len(m.events) != events:
                out.append(i)
                if limit is None:
                    limit = length + i - 1
    finally:
        c.uc.hook_del(hook)
        c.uc.ctl_flush_tb()
    return out


def reduced(scenario: Scenario, bound: int, run: Callable[[list[Node]], Iterable[Visit]] | None = None,
            progress: Callable[[Exploration], None] | None = None) -> Exploration:
    """Explore the reduced space level by level (all schedules of k steps, then of k+1), in
    one deterministic order whatever runs the levels (`run`: a process pool, a cluster)."""
    lengths = _lengths(scenario)
    cpus = [e.cpu for e in scenario.entries]
    result = Exploration(space=full_space(lengths, cpus, bound))
    frozen = tuple(sorted(lengths.items()))
    level: list[tuple[tuple[Step, ...], bool]] = [((), False)]
    while level:
        nodes = [Node(scenario, steps, bound, frozen, passed) for steps, passed in level]
        level = []
        for v in (run or _serial)(nodes):
            result.add(v.outcome, Schedule(v.steps))
            level.extend(((*v.steps, child), child in v.passes) for child in v.children)
            if progress is not None:
                progress(result)
    return result


def _serial(nodes: list[Node]) -> Iterator[Visit]:
    return map(visit, nodes)
