"""A debugger command: its name, its help line, its aliases, the function that
runs it, and whether an empty line repeats it. Each command module keeps a table
of its own; debugger.py joins them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .inferior import Inferior


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    fn: Callable[[Inferior, str, str], str | list[str] | None]
    aliases: tuple[str, ...] = ()
    repeats: bool = True  # gdb repeats a command on an empty line unless it calls dont_repeat()

    def run(self, d: Inferior, rest: str, fmt: str):
        return self.fn(d, rest, fmt)


def registry(table: dict[str, Command]):
    """The decorator that adds a command function to `table`."""
    def command(name: str, help: str, aliases: tuple[str, ...] = (), repeats: bool = True):
        def register(fn):
            table[name] = Command(name, help, fn, aliases, repeats)
            return fn
        return register
    return command
