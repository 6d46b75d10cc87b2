"""`arena-emu debug`: the debugger at a prompt, or from a script.

At a terminal, prompt_toolkit does the line editing, history (kept across
sessions) and completion of commands and symbols. Otherwise (a pipe, -x,
-ex, --batch) commands are read as lines and echoed after the prompt, so a
run reads like a transcript. Ctrl-C stops a running `continue`; Ctrl-D leaves.
An empty line repeats the last command at a terminal and from a pipe, not in
a script, as in gdb.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable
from pathlib import Path

from .debugger import ALIASES_CMD, COMMANDS, Debugger

PROMPT = "(arena-emu) "


def history_path() -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "arena-emu" / "history"


def use_color(stream=sys.stdout) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


class Session:
    """One debugging session: commands in, output out, Ctrl-C routed to the debugger."""

    def __init__(self, debugger: Debugger, out=None):
        self.d = debugger
        self.out = out if out is not None else sys.stdout  # the stdout of now, not of import time
        self.failed = False  # the last command failed: gdb -batch then exits 1

    def say(self, text: str) -> None:
        if text:
            print(text, file=self.out, flush=True)

    def run_one(self, line: str, echo: bool = False, from_tty: bool = False) -> bool:
        """Run a command; False once the session should end."""
        if echo:
            self.say(PROMPT + line.rstrip("\n"))
        previous = signal.signal(signal.SIGINT, lambda *_: self.d.interrupt())
        try:
            self.say(self.d.execute(line, from_tty))
        finally:
            signal.signal(signal.SIGINT, previous)
        self.failed = self.d.failed
        return not self.d.quit

    def run_script(self, lines: Iterable[str], from_tty: bool = False) -> bool:
        """Run lines as they come; `from_tty` for a pipe, where an empty line repeats, as gdb's stdin."""
        return all(self.run_one(line, echo=True, from_tty=from_tty) for line in lines)

    def interact(self) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.completion import WordCompleter
        from prompt_toolkit.history import FileHistory

        path = history_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        words = sorted(set(COMMANDS) | set(ALIASES_CMD) | {s.name for s in self.d.m.kallsyms.symbols()}
                       | {"breakpoints", "registers", "fault", "oops", "scratch", "stdout", "stderr", "context"})
        prompt = PromptSession[str](history=FileHistory(str(path)), completer=WordCompleter(words, sentence=False))
        while True:
            try:
                line = prompt.prompt(PROMPT)
            except KeyboardInterrupt:
                continue
            except EOFError:
                self.say("quit")
                return
            if not self.run_one(line, from_tty=True):
                return


def banner(d: Debugger) -> str:
    rip = d.cpu.reg("rip")
    args = ", ".join(hex(a) for a in d.args)
    return "\n".join([f"arena-emu debugger: {d.entry}({args}) under policy {d.policy}; \"help\" lists the commands.",
                      f"Stopped at the entry, {rip:#x} in {d.m.symbolize(rip)}.", *d._after_stop()])
