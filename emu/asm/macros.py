"""The kernel's .S macros, and the BPF ones this project adds beside them.

SYM_FUNC_START/SYM_CODE_START and their _END (include/linux/linkage.h)
align, label and export a function; _ASM_EXTABLE (arch/x86/include/asm/asm.h)
adds an exception table entry. BPF_ARENA, BPF_KSYM, BPF_PROG and BPF_SUBPROG
say in assembly what a BPF object's ELF sections say: its arena maps, the
kernel functions it calls, and which functions are its programs.
"""

from __future__ import annotations

import re

from ..errors import Diagnostic
from .declarations import ArenaDecl, BpfFunc
from .exprs import ExprError, evaluate64
from .lexer import IDENT
from .unit import Align, Extable, Unit

MACRO = re.compile(r"^\s*(SYM_FUNC_START|SYM_FUNC_START_LOCAL|SYM_FUNC_END|SYM_CODE_START|SYM_CODE_START_LOCAL|"
                   r"SYM_CODE_END|_ASM_EXTABLE|BPF_PROG|BPF_SUBPROG|BPF_ARENA|BPF_KSYM)\s*\((.*)\)\s*$")
_ARENA_FIELDS = ("max_entries", "map_extra", "map_flags")


def expand(unit: Unit, macro: str, args: list[str], lineno: int) -> None:
    """One macro line of `unit`, with its arguments split."""
    if macro == "_ASM_EXTABLE":
        if len(args) != 2 or not all(args):
            unit.error(lineno, "_ASM_EXTABLE takes two arguments: (from, to)")
            return
        unit.add(Extable(unit.source.name, lineno, unit.section,
                         insn=unit.rename_numeric(args[0], lineno), fixup=unit.rename_numeric(args[1], lineno)))
        return
    if macro.startswith("BPF_"):
        _bpf_macro(unit, macro, args, lineno)
        return
    if len(args) != 1 or not IDENT.fullmatch(args[0]):
        unit.error(lineno, f"{macro} takes one symbol name")
        return
    if macro.endswith("_END"):
        if args[0] not in unit.labels:
            unit.error(lineno, f"{macro}({args[0]}) without a start")
        else:
            unit.define_label(f".L__end_{args[0]}", lineno)
        return
    if unit.section != "text":
        unit.error(lineno, f"{macro} outside .text")
        return
    unit.add(Align(unit.source.name, lineno, unit.section, boundary=16))
    if not macro.endswith("_LOCAL"):
        unit.globals.add(args[0])
    unit.define_label(args[0], lineno)


def _bpf_macro(unit: Unit, macro: str, args: list[str], lineno: int) -> None:
    if macro == "BPF_ARENA":
        if not 2 <= len(args) <= 1 + len(_ARENA_FIELDS) or not IDENT.fullmatch(args[0]):
            unit.error(lineno, "BPF_ARENA takes a map name, max_entries, and optionally map_extra and map_flags")
            return
        try:
            params = {f: evaluate64(a, {}) for f, a in zip(_ARENA_FIELDS, args[1:], strict=False)}
        except ExprError as e:
            unit.error(lineno, f"BPF_ARENA: {e}")
            return
        unit.arenas.append(ArenaDecl(args[0], params, unit.source.name, lineno))
        return
    if macro == "BPF_KSYM":
        if len(args) != 1 or not IDENT.fullmatch(args[0]):
            unit.error(lineno, "BPF_KSYM takes the name of a kernel function")
        else:
            unit.ksyms.append((args[0], unit.source.name, lineno))
        return
    want = 1 if macro == "BPF_PROG" else 2
    if len(args) != want or not all(IDENT.fullmatch(a) for a in args):
        unit.error(lineno, "BPF_PROG takes a function name" if want == 1
                   else "BPF_SUBPROG takes a function name and the name of its main program")
        return
    first = next((line for name, _, line in unit.bpf if name == args[0]), None)
    if first is not None:
        unit.error(lineno, f"'{args[0]}' is already declared a BPF function at line {first}")
        return
    unit.bpf.append((args[0], args[1] if want == 2 else None, lineno))


def bpf_funcs(units: list[Unit], local_values: dict[int, dict[str, int]], diags: list[Diagnostic]) -> list[BpfFunc]:
    """The BPF_PROG/BPF_SUBPROG functions at their linked addresses, each checked to be a whole function."""
    mains = {name for unit in units for name, main, _ in unit.bpf if main is None}
    out = []
    for unit in units:
        values = local_values[id(unit)]
        for name, main, line in unit.bpf:
            label = unit.labels.get(name)
            in_text = label is not None and label.section == "text"
            problem = (f"'{name}' is not a function in this file's .text" if not in_text
                       else f"BPF function '{name}' needs SYM_FUNC_END({name})" if f".L__end_{name}" not in values
                       else f"'{main}' is not declared with BPF_PROG" if main is not None and main not in mains
                       else None)
            if problem:
                diags.append(Diagnostic(unit.source.name, line, problem))
            else:
                out.append(BpfFunc(name, main, values[name], values[f".L__end_{name}"], unit.source.name, line))
    return out
