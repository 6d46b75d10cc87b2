"""One file as the parser leaves it: its items in order, its labels and symbols.

Items are what layout and emit walk: labels, instructions, data, alignment
and extable entries, each in a section. Numeric local labels (`1:`, `1b`,
`2f`) can be defined again and again, so each definition gets its own
`.L__local_N_K` name here and every reference the one it means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import Diagnostic
from .declarations import ArenaDecl

_NUMERIC_REF = re.compile(r"(?<![\w.$])(\d+)([bf])(?![\w.$])")


@dataclass
class Source:
    """One file of assembly: `name` is what diagnostics print."""

    name: str
    text: str


@dataclass
class Item:
    file: str
    line: int
    section: str
    address: int = 0
    size: int = 0


@dataclass
class Label(Item):
    name: str = ""


@dataclass
class Insn(Item):
    text: str = ""  # as keystone gets it
    source: str = ""  # as the user wrote it
    syntax: str = "att"
    fixed: bool = False  # encoding cannot depend on addresses


@dataclass
class Data(Item):
    width: int = 0  # 0: `raw` holds the bytes
    exprs: list[str] = field(default_factory=list)
    raw: bytes = b""


@dataclass
class Align(Item):
    boundary: int = 1
    fill: int | None = None  # None: NOPs in text, zeros elsewhere


@dataclass
class Extable(Item):
    insn: str = ""
    fixup: str = ""


class Unit:
    """One parsed file; while it is parsed, also the section its next item goes to."""

    def __init__(self, source: Source, syntax: str, diags: list[Diagnostic]):
        self.source = source
        self.syntax = syntax
        self.diags = diags  # the parse's diagnostics, shared by the files of one link
        self.section = "text"
        self.section_stack: list[str] = []  # .pushsection's
        self.items: list[Item] = []
        self.globals: set[str] = set()
        self.equs: dict[str, tuple[str, int]] = {}  # name -> (expression, line)
        self.labels: dict[str, Label] = {}
        self.local_defs: dict[str, int] = {}  # numeric label -> definitions so far
        self.pending_forward: dict[str, int] = {}  # numeric label -> line of a `Nf` still unresolved
        self.bpf: list[tuple[str, str | None, int]] = []  # BPF_PROG / BPF_SUBPROG: name, main, line
        self.arenas: list[ArenaDecl] = []
        self.ksyms: list[tuple[str, str, int]] = []

    def error(self, line: int, msg: str) -> None:
        self.diags.append(Diagnostic(self.source.name, line, msg))

    def add(self, item: Item) -> None:
        self.items.append(item)

    def define_label(self, name: str, lineno: int) -> None:
        if name.isdigit():
            k = self.local_defs.get(name, 0)
            self.local_defs[name] = k + 1
            self.pending_forward.pop(name, None)
            name = f".L__local_{name}_{k}"
        elif name in self.labels or name in self.equs:
            self.error(lineno, f"symbol '{name}' is already defined")
            return
        label = Label(self.source.name, lineno, self.section, name=name)
        self.labels[name] = label
        self.add(label)

    def rename_numeric(self, text: str, lineno: int) -> str:
        """`Nb` and `Nf` in `text` as the label names they refer to."""
        def repl(m: re.Match) -> str:
            n, d = m.group(1), m.group(2)
            k = self.local_defs.get(n, 0)
            if d == "b":
                if k == 0:
                    self.error(lineno, f"no previous definition of local label '{n}' for '{n}b'")
                    return m.group(0)
                return f".L__local_{n}_{k - 1}"
            self.pending_forward.setdefault(n, lineno)
            return f".L__local_{n}_{k}"
        return _NUMERIC_REF.sub(repl, text)
