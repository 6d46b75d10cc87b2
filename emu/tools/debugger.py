"""The debugger: gdb's commands over one machine and one call, plus the arena's own.

`Debugger.execute(line)` runs one command and returns its output; the REPL,
scripts (-x/-ex) and gdb's `monitor` all go through it, so every front end
prints the same thing. Whether the last command failed is kept, for gdb
-batch's exit status.
"""

from __future__ import annotations

from ..errors import EmuError
from . import arena_views, cpus, execution, inspection, source
from .commands import Command, registry
from .inferior import CommandError, Inferior


class Debugger(Inferior):
    """An Inferior with gdb's command line on top."""

    failed = False  # the last command's answer was an error
    _repeat: str | None = None  # what an empty line from a terminal runs

    def execute(self, line: str, from_tty: bool = False) -> str:
        """Run one command line; errors come back as one line, and the session goes on.
        From a terminal (or a pipe) an empty line runs the last command again, as gdb's
        does; x then goes on from where it stopped. In a script it does nothing."""
        line = line.strip()
        if not line and from_tty and self._repeat:
            line = self._repeat
        self.failed = False
        if not line or line.startswith("#"):
            return ""
        word, _, rest = line.partition(" ")
        name, fmt = (word.split("/", 1) + [""])[:2] if not word.startswith("x/") else ("x", "")
        cmd = COMMANDS.get(ALIASES_CMD.get(name, name))
        if cmd is None:
            self.failed = True
            return f"Undefined command: \"{name}\".  Try \"help\"."
        self._repeat = (word if cmd.name == "x" else line) if cmd.repeats else None
        try:
            out = cmd.run(self, line[len("x"):].strip() if cmd.name == "x" else rest.strip(), fmt)
        except (CommandError, EmuError) as e:
            self.failed = True
            return str(e)
        return "\n".join(out) if isinstance(out, list) else (out or "")


_OWN: dict[str, Command] = {}
command = registry(_OWN)


@command("help", "help [COMMAND]", ("h",))
def _help(_d: Inferior, rest: str, _fmt: str):
    if rest:
        cmd = COMMANDS.get(ALIASES_CMD.get(rest, rest))
        if cmd is None:
            raise CommandError(f"Undefined command: \"{rest}\".  Try \"help\".")
        also = f" (also {', '.join(cmd.aliases)})" if cmd.aliases else ""
        return cmd.help + also
    return [f"{c.name:<12} {c.help.split(':', 1)[-1].strip() if ':' in c.help else c.help}"
            for c in COMMANDS.values()]


@command("quit", "quit: leave", ("q",), repeats=False)
def _quit(d: Inferior, _rest: str, _fmt: str):
    d.quit = True


COMMANDS: dict[str, Command] = {**execution.COMMANDS, **source.COMMANDS, **inspection.COMMANDS,
                                **arena_views.COMMANDS, **cpus.COMMANDS, **_OWN}
ALIASES_CMD: dict[str, str] = {a: c.name for c in COMMANDS.values() for a in c.aliases}
