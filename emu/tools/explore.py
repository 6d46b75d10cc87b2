"""Several CPUs, deterministically interleaved: schedules, runs, and exploration.

A schedule is a list of steps, each `CPU:UNTIL`: run that CPU for N
instructions (`0:12`), to a named point (`1:@fault`: it takes a fault and
stops before the handler; `0:@free-before-flush`: inside arena_free_pages(),
the range returned, the TLB not yet flushed), to an address (`1:@sym+0x1c`,
`1:@file.S:40`), or to its end (`0:*`). After the steps every CPU still
running runs to its end, the ones that did not run last first. The same
schedule always gives the same run.

Exploration enumerates every schedule of up to `bound` steps, with each step's
end at any instruction count of that CPU or any named point, or samples them
at random with a seed, or (by default, reduction.py) runs one schedule per class
of equivalent ones; it groups the runs by outcome and keeps the shortest
schedule that reaches each, so it can be replayed with `--schedule`.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..asm.exprs import ExprError, evaluate
from ..bpf.arena import FREE_BEFORE_FLUSH
from ..bpf.stream import BPF_STDERR
from ..errors import EmuError
from ..machine import Machine
from ..policy import DEFAULT_POLICY, Policy
from .loading import load_files

POINTS = ("fault", FREE_BEFORE_FLUSH)
_STEP = re.compile(r"^(\d+):(\*|\d+|@\S+)$")


@dataclass(frozen=True)
class Step:
    cpu: int
    until: int | str | None  # instructions, "@point-or-location", or None: to the end

    def __str__(self) -> str:
        return f"{self.cpu}:{'*' if self.until is None else self.until}"


@dataclass(frozen=True)
class Schedule:
    steps: tuple[Step, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Schedule:
        steps = []
        for word in text.split():
            m = _STEP.match(word)
            if not m:
                raise EmuError(f"bad schedule step '{word}': CPU:N, CPU:@POINT, CPU:@SYM+OFF, CPU:@FILE:LINE or CPU:*")
            until = m.group(2)
            steps.append(Step(int(m.group(1)), None if until == "*" else int(until) if until.isdigit() else until))
        return cls(tuple(steps))

    def __str__(self) -> str:
        return " ".join(map(str, self.steps)) or "(each CPU to its end, in order)"


@dataclass(frozen=True)
class Entry:
    cpu: int
    symbol: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What a run ended with: each CPU's status and return value, the reports, and the probe."""

    cpus: tuple[tuple[str, int | None], ...]
    reports: int
    faults: int
    probe: int | None = None
    probed: bool = False  # a probe was asked for (None then means its address is unmapped)

    def __str__(self) -> str:
        parts = [f"cpu{i} {s}{'' if r is None else f' {r:#x}'}" for i, (s, r) in enumerate(self.cpus)]
        parts.append(f"{self.reports} report{'s' if self.reports != 1 else ''}")
        if self.probe is not None:
            parts.append(f"probe {self.probe:#x}")
        elif self.probed:
            parts.append("probe unmapped")
        return ", ".join(parts)


@dataclass
class Scenario:
    """A multi-CPU run to repeat under many schedules: files, one entry per CPU, a setup
    call before them, and a probe (an address whose u64 is read at the end)."""

    files: tuple[str, ...]
    entries: tuple[Entry, ...]
    policy: str | Policy | None = None
    setup: Entry | None = None
    probe: str | None = None
    cpus: int = 2
    budget: int = 1_000_000
    _scope: dict = field(default_factory=dict, repr=False)

    def machine(self) -> Machine:
        """The machine with the files loaded: assembly and kernel objects linked as one unit,
        then each BPF object (built from `.bpf.c`) as libbpf loads it, against the kfuncs just linked."""
        m = Machine(cpus=self.cpus, budget=self.budget, policy=self.policy or DEFAULT_POLICY)
        load_files(m, self.files)
        return m

    def start(self) -> Machine:
        m = self.machine()
        if self.setup is not None:
            r = m.call(self.setup.symbol, *self._args(m, self.setup), cpu=self.setup.cpu)
            if r.status != "returned":
                raise EmuError(f"the setup call {self.setup.symbol} did not return: {r!r}")
        for e in self.entries:
            m.start_call(e.symbol, *self._args(m, e), cpu=e.cpu)
        return m

    def _args(self, m: Machine, e: Entry) -> list[int]:
        return [_eval(m, a) for a in e.args]

    def run(self, schedule: Schedule) -> tuple[Outcome, Machine]:
        m = self.start()
        run_schedule(m, schedule, [e.cpu for e in self.entries])
        return self.outcome(m), m

    def outcome(self, m: Machine) -> Outcome:
        results = {e.cpu: m.results[e.cpu] for e in self.entries}
        probe = None
        if self.probe is not None:
            probe = m.read_u64_or_none(_eval(m, self.probe))
        return Outcome(tuple((results[c].status, results[c].ret) for c in sorted(results)),
                       m.stream_text(BPF_STDERR).count("ERROR: "), len(m.events), probe, self.probe is not None)


def _eval(m: Machine, text: str) -> int:
    try:
        return evaluate(text, m.symbol_scope())
    except ExprError as e:
        raise EmuError(f"'{text}': {e}") from None


def _location(m: Machine, spec: str) -> int:
    fm = re.fullmatch(r"(\S+):(\d+)", spec)
    if fm:
        hits = m.line_addresses(fm.group(1), int(fm.group(2)))
        if not hits:
            raise EmuError(f"no instruction at {spec}")
        return hits[0]
    return _eval(m, spec)


def _run_step(m: Machine, step: Step) -> None:
    """Run one CPU for one step; a CPU that has finished is skipped."""
    if step.cpu not in m.running_cpus():
        return
    if isinstance(step.until, int) or step.until is None:
        m.resume(step.until, cpu=step.cpu)  # None: on to the end or the next stop, held or not
        return
    name = step.until[1:]
    if name in POINTS:
        m.preempt = lambda cpu, point: cpu == step.cpu and point == name
        try:
            m.resume(cpu=step.cpu)  # a count would stop a held CPU after its handler
        finally:
            m.preempt = None
        return
    m.resume_until(_location(m, name), cpu=step.cpu, why=f"reached {name}")


def _counted(m: Machine, cpu: int) -> int | None:
    """A count for a run to the end: the call's whole budget, asked for explicitly so that the
    instructions are counted (a schedule's steps are counts) whatever resume() does without one."""
    state = m.executor.calls.get(cpu)
    return (state.budget or None) if state is not None else None


def run_schedule(m: Machine, schedule: Schedule, order: list[int], turns: int | None = None) -> None:
    """Play the schedule's steps, then run every CPU still running to its end: in turns of
    `turns` instructions, or one after the other, the CPUs that did not run last first."""
    last = None
    for step in schedule.steps:
        _run_step(m, step)
        last = step.cpu
    rest = [c for c in order if c != last] + ([last] if last is not None else [])
    if turns:
        while m.running_cpus():
            for c in rest:
                if c in m.running_cpus():
                    m.resume(turns, cpu=c)
        return
    for c in rest:
        while c in m.running_cpus():
            m.resume(_counted(m, c), cpu=c)


def schedules(scenario: Scenario, bound: int) -> Iterator[Schedule]:
    """Every schedule of 1 to `bound` steps, each on another CPU than the step before,
    each ending at any instruction count the CPU ran alone, or at a named point."""
    lengths = _lengths(scenario)
    cpus = [e.cpu for e in scenario.entries]
    ends = {c: [*range(1, lengths[c] + 1), *(f"@{p}" for p in POINTS)] for c in cpus}
    yield Schedule()
    for k in range(1, bound + 1):
        for order in itertools.product(cpus, repeat=k):
            if any(a == b for a, b in itertools.pairwise(order)):
                continue  # two steps in a row on one CPU are one step
            for combo in itertools.product(*(ends[c] for c in order)):
                yield Schedule(tuple(Step(c, u) for c, u in zip(order, combo, strict=True)))


def sample(scenario: Scenario, n: int, seed: int, bound: int = 3) -> Iterator[Schedule]:
    """n random schedules, the same ones for the same seed."""
    rng = random.Random(seed)
    lengths = _lengths(scenario)
    cpus = [e.cpu for e in scenario.entries]
    for _ in range(n):
        steps = []
        for _ in range(rng.randint(1, bound)):
            c = rng.choice(cpus)
            end = rng.choice([*range(1, lengths[c] + 1), *(f"@{p}" for p in POINTS)])
            steps.append(Step(c, end))
        yield Schedule(tuple(steps))


def _lengths(scenario: Scenario) -> dict[int, int]:
    """How many instructions each CPU runs when the CPUs run one after the other."""
    out: dict[int, int] = {}
    with scenario.start() as m:
        for e in scenario.entries:
            result = m.resume(_counted(m, e.cpu), cpu=e.cpu)
            while e.cpu in m.running_cpus():
                result = m.resume(_counted(m, e.cpu), cpu=e.cpu)
            if result.insns is None:
                raise EmuError("a schedule counts instructions: the scenario needs an instruction budget")
            out[e.cpu] = result.insns
    return out


@dataclass
class Exploration:
    runs: int = 0
    outcomes: dict[Outcome, tuple[Schedule, int]] = field(default_factory=dict)  # -> (shortest schedule, count)
    space: int | None = None  # schedules of the exhaustive search at the same bound, when reduced
    first: dict[Outcome, int] = field(default_factory=dict)  # -> the run that found it first (from 1)

    def add(self, outcome: Outcome, schedule: Schedule) -> None:
        self.runs += 1
        self.first.setdefault(outcome, self.runs)
        best, count = self.outcomes.get(outcome, (schedule, 0))
        if len(str(schedule)) < len(str(best)) or count == 0:
            best = schedule
        self.outcomes[outcome] = (best, count + 1)

    def report(self) -> str:
        of = "" if self.space is None else f" (of {self.space} at this bound, reduced)"
        lines = [f"{self.runs} schedules{of}, {len(self.outcomes)} distinct outcome(s):"]
        for outcome, (schedule, count) in sorted(self.outcomes.items(), key=lambda kv: -kv[1][1]):
            lines.append(f"  {count:>6} x  {outcome}")
            lines.append(f"           replay: --schedule '{schedule}'")
        return "\n".join(lines)

    def to_json(self) -> dict:
        """The counts and each outcome, for `explore --json`."""
        return {"schedules": self.runs, "space": self.space, "outcomes": [
            {"outcome": str(o), "count": count, "first": self.first[o], "schedule": str(s) if s.steps else "",
             "cpus": [{"status": st, "ret": r} for st, r in o.cpus], "reports": o.reports, "faults": o.faults,
             "probe": o.probe} for o, (s, count) in sorted(self.outcomes.items(), key=lambda kv: -kv[1][1])]}


def _run_one(args: tuple[Scenario, str]) -> tuple[Outcome, str]:
    scenario, text = args
    outcome, m = scenario.run(Schedule.parse(text))
    m.close()
    return outcome, text


def explore(scenario: Scenario, plan: Iterator[Schedule], workers: int = 1,
            progress: Callable[[Exploration], None] | None = None) -> Exploration:
    """Run every schedule of `plan` (on `workers` processes) and group the outcomes."""
    result = Exploration()
    texts = [str(s) if s.steps else "" for s in plan]
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for outcome, text in pool.imap(_run_one, [(scenario, t) for t in texts], chunksize=16):
                result.add(outcome, Schedule.parse(text))
                if progress is not None:
                    progress(result)
    else:
        for text in texts:
            outcome, _ = _run_one((scenario, text))
            result.add(outcome, Schedule.parse(text))
            if progress is not None:
                progress(result)
    return result

