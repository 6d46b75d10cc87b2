"""Scenarios: one TOML file each in scenarios/, run by the CLI, the tests and `compare` alike.

A scenario names the files to load (kernel code first, then at most one BPF object, a
built `.bpf.o` or its `.bpf.c`), a program to run (a BPF object's program runs as
BPF_PROG_TEST_RUN runs it; any other function is called with `args`), and what the
kernel version behind each policy does with it:

    title = "a kfunc reads an unallocated page for a BPF program"
    files = ["kernel_stubs/arena_kfuncs.S", "bpf_progs/scratch.bpf.o"]
    entry = "arena_arg_unpopulated"
    [meaning]                   # optional: return values worth a name in the table
    "0x7" = "write lost"
    [expect]                    # every policy; a key may add knobs: "scratch+flush-on-replace"
    oops = { status = "oops" }
    scratch = { ret = 0, reports = 1, faults = 1 }
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from ..asm.exprs import ExprError, evaluate
from ..bpf.stream import BPF_STDERR
from ..corpus import corpus_dir, find_source
from ..errors import EmuError
from ..machine import RETURNED, Machine
from ..policy import POLICIES, Policy
from .build import build_bpf

_EXPECT_KEYS = {"status", "ret", "reports", "faults"}


@dataclass(frozen=True)
class Outcome:
    """What one run of a scenario did: how the call ended, and what the programs reported."""

    status: str
    ret: int | None
    reports: int  # ERROR reports in the programs' stderr streams
    faults: int

    def matches(self, expect: dict) -> bool:
        want = {"status": RETURNED, **expect}
        return all(getattr(self, k) == v for k, v in want.items())

    def cell(self, meaning: dict[int, str]) -> str:
        """The outcome in a few words, as the comparison table shows it."""
        if self.status != RETURNED or self.ret is None:
            return self.status
        what = meaning.get(self.ret, f"ret {self.ret:#x}")
        return f"{what}, {self.reports} report{'s' if self.reports != 1 else ''}"

    def to_json(self) -> dict:
        return {"status": self.status, "ret": self.ret, "reports": self.reports, "faults": self.faults}


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    files: tuple[str, ...]
    entry: str
    args: tuple[str, ...]
    meaning: dict[int, str]
    expect: dict[str, dict] = field(repr=False)
    path: str = ""

    def run(self, policy: Policy) -> tuple[Outcome, Machine]:
        m = Machine(policy=policy)
        return self.run_on(m), m

    def run_on(self, m: Machine) -> Outcome:
        """Load the scenario's files into `m` and make its call."""
        here = Path(self.path).parent
        paths = [find_source(f, here) for f in self.files]
        objects = [p for p in paths if p.name.endswith((".bpf.o", ".bpf.c"))]
        if len(objects) > 1:
            raise EmuError(f"{self.path}: files: one BPF object per scenario, not {len(objects)}")
        m.load(*(str(p) for p in paths if p not in objects))
        obj = m.load_bpf(str(build_bpf(objects[0]) if objects[0].name.endswith(".c") else objects[0])) \
            if objects else None
        if obj is not None and self.entry in obj.programs:
            if self.args:
                raise EmuError(f"{self.path}: args: {self.entry} is a BPF program, run as BPF_PROG_TEST_RUN runs it")
            r = obj.run(self.entry)
        else:
            scope = m.symbol_scope()
            try:
                args = [evaluate(a, scope) for a in self.args]
            except ExprError as e:
                raise EmuError(f"{self.path}: args: {e}") from None
            r = m.call(self.entry, *args)
        reports = m.stream_text(BPF_STDERR).count("ERROR: ")
        return Outcome(r.status, r.ret, reports, len(r.faults))


def load_scenario(path: Path) -> Scenario:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise EmuError(f"{path}: {e}") from None
    missing = [k for k in ("title", "files", "entry", "expect") if k not in doc]
    if missing:
        raise EmuError(f"{path}: missing {', '.join(missing)}")
    expect = doc["expect"]
    for key, want in expect.items():
        name, *knobs = key.split("+")
        Policy.parse(name, knobs)
        if not isinstance(want, dict) or set(want) - _EXPECT_KEYS:
            raise EmuError(f"{path}: expect.{key} takes {', '.join(sorted(_EXPECT_KEYS))}")
    absent = [p for p in POLICIES if p not in expect]
    if absent:
        raise EmuError(f"{path}: no expectation for {', '.join(absent)}: a scenario states every policy's outcome")
    try:
        meaning = {int(k, 0): v for k, v in doc.get("meaning", {}).items()}
    except ValueError as e:
        raise EmuError(f"{path}: meaning: {e}") from None
    return Scenario(path.stem, doc["title"], tuple(doc["files"]), doc["entry"], tuple(doc.get("args", [])),
                    meaning, expect, str(path))


def load_scenarios(extra: Sequence[str] = ()) -> list[Scenario]:
    """The shipped scenarios, then the files named in `extra` (whose `files` are found beside
    the scenario file first)."""
    return [load_scenario(p) for p in [*sorted(corpus_dir("scenarios").glob("*.toml")), *map(Path, extra)]]


def policy_of(key: str) -> Policy:
    name, *knobs = key.split("+")
    return Policy.parse(name, knobs)
