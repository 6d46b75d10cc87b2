"""The CPU a command looks at and runs: `cpu N` as the machine numbers them,
`thread N` as gdb does, from 1.
"""

from __future__ import annotations

from .commands import Command, registry
from .inferior import CommandError, Inferior

COMMANDS: dict[str, Command] = {}
command = registry(COMMANDS)


@command("cpu", "cpu [N]: the CPU the commands look at and run (no N: list the CPUs)")
def _cpu(d: Inferior, rest: str, _fmt: str):
    return _switch(d, rest, 0)


@command("thread", "thread [N]: gdb's name for cpu, numbered from 1 (thread 2 is CPU 1)")
def _thread(d: Inferior, rest: str, _fmt: str):
    return _switch(d, rest, 1)


def _switch(d: Inferior, rest: str, first: int):
    if not rest:
        return threads(d)
    n = int(d.value(rest))
    cpu = n - first
    if not 0 <= cpu < len(d.m.cpus):
        raise CommandError(f"Invalid CPU {n}: this machine has {len(d.m.cpus)}.")
    d.current = cpu
    state = "running a call" if d.running else "idle"
    return f"[Switching to CPU {cpu} ({state})]\n" + "\n".join(d._after_stop()) if d.running else \
        f"[Switching to CPU {cpu} ({state})]"


def threads(d: Inferior) -> list[str]:
    """gdb's `info threads`: one line per CPU, the current one marked."""
    out = ["  Id   CPU   State      Where"]
    for c in d.m.cpus:
        mark = "*" if c.index == d.current else " "
        result = d.m.results.get(c.index)
        state = "stopped" if c.index in d.m.running_cpus() else (result.status if result else "idle")
        where = d.m.symbolize(c.reg("rip")) if result else ""
        out.append(f"{mark} {c.index + 1:<4} {c.index:<5} {state:<10} {where}")
    return out
