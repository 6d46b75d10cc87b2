"""One source file into a Unit: statement by statement, as GNU as reads it.

Each statement is labels, then a kernel macro, a directive or an
instruction. Instructions are only checked to be plain text here, with their
numbers in hex and their local labels renamed; keystone sees them at layout.
"""

from __future__ import annotations

import re

from ..errors import Diagnostic
from .directives import directive
from .lexer import clean_line, split_args, split_statements, strip_comments, to_hex_literals
from .macros import MACRO, expand
from .unit import Insn, Source, Unit

_LABEL = re.compile(r"^\s*([A-Za-z_.$][\w.$]*|\d+)\s*:(?!:)")
_SAFE_INSN = re.compile(r"^[A-Za-z][\w.]*(\s+[\w\s$%()\[\],:*+\-.'<>~|&^/!]*)?$")


def parse(source: Source, syntax: str, diags: list[Diagnostic]) -> Unit:
    """`source` parsed; its errors go to `diags`."""
    unit = Unit(source, syntax, diags)
    for lineno, line in enumerate(strip_comments(source.text), start=1):
        try:
            line = clean_line(line)
        except ValueError as e:
            unit.error(lineno, str(e))
            continue
        for stmt in split_statements(line):
            stmt = stmt.strip()
            while True:
                m = _LABEL.match(stmt)
                if not m:
                    break
                unit.define_label(m.group(1), lineno)
                stmt = stmt[m.end():].strip()
            if not stmt:
                continue
            if stmt.startswith("#"):
                unit.error(lineno, f"preprocessor directives are not supported ('{stmt.split()[0]}'); use .equ/.set")
                continue
            m = MACRO.match(stmt)
            if m:
                expand(unit, m.group(1), split_args(m.group(2)), lineno)
                continue
            m = re.match(r"^([A-Za-z_.$][\w.$]*)\s*=\s*(.+)$", stmt)
            if m and not stmt.startswith("."):
                stmt = f".set {m.group(1)}, {m.group(2)}"
            if stmt.startswith("."):
                try:
                    unit.section = directive(unit, stmt, lineno)
                except ValueError as e:
                    unit.error(lineno, str(e))
                continue
            mnemonic = stmt.split(None, 1)[0]
            if not _SAFE_INSN.match(stmt):
                unit.error(lineno, f"cannot parse '{stmt}'")
                continue
            if unit.section == "bss":
                unit.error(lineno, f"instruction '{mnemonic}' in .bss")
                continue
            try:
                text = to_hex_literals(unit.rename_numeric(stmt, lineno))
            except ValueError as e:
                unit.error(lineno, str(e))
                continue
            unit.add(Insn(source.name, lineno, unit.section, text=text, source=stmt, syntax=unit.syntax))
    for n, lineno in unit.pending_forward.items():
        unit.error(lineno, f"local label '{n}' referenced as '{n}f' is never defined after that point")
    return unit
