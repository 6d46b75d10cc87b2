"""The assembler: GNU-as-like sources in, one linked Image out.

keystone 0.9.2 encodes instructions, and only instructions: it reads decimal
literals as hex once any option is set, lacks numeric local labels, and some
directives crash the process. So the rest is ours: parser.py reads each file
(lexer.py, directives.py, macros.py) into a Unit; this module resolves
symbols across files, lays the sections out, relaxes branches until every
instruction keeps its size, and emits the Image; encoder.py hands keystone
one checked instruction at a time, its symbols already resolved.
"""

from __future__ import annotations

from ..errors import AsmError, Diagnostic
from ..x86.extable import ExtableEntry
from .declarations import Declarations
from .encoder import Encoder, quiet_stderr
from .exprs import MASK64, ExprError, evaluate, evaluate64, fits
from .image import SECTIONS, Image, LinkedSection
from .macros import bpf_funcs
from .parser import parse
from .unit import Align, Data, Extable, Insn, Label, Source, Unit

_MAX_RELAX_PASSES = 16
_CACHE_SIZE = 256
_CACHE: dict[tuple, Image] = {}
_DECLS: dict[tuple, Declarations] = {}


class Assembler:
    """Turns sources into an Image at given section bases, against already-loaded symbols."""

    def __init__(self) -> None:
        self._encoder = Encoder()

    def declarations(self, sources: list[Source], syntax: str = "att") -> Declarations:
        """The BPF_ARENA and BPF_KSYM lines of `sources`, which must be met before the link."""
        key = (syntax, tuple((s.name, s.text) for s in sources))
        if key not in _DECLS:
            diags: list[Diagnostic] = []
            units = [parse(s, syntax, diags) for s in sources]
            if diags:
                raise AsmError(diags)
            if len(_DECLS) >= _CACHE_SIZE:
                _DECLS.pop(next(iter(_DECLS)))
            _DECLS[key] = Declarations([d for u in units for d in u.arenas], [k for u in units for k in u.ksyms])
        return _DECLS[key]

    def assemble(self, sources: list[Source], bases: dict[str, int], extern: dict[str, int],
                 syntax: str = "att") -> Image:
        """Parse, lay out and encode `sources` as one link. `extern`: symbols already defined.

        Images are cached per process (the same files at the same addresses against
        the same symbols link the same way), so a test suite assembles each file once.
        Callers must treat the returned Image as read-only.
        """
        key = (syntax, tuple((s.name, s.text) for s in sources), tuple(sorted(bases.items())),
               tuple(sorted(extern.items())))
        image = _CACHE.get(key)
        if image is None:
            image = self._assemble(sources, bases, extern, syntax)
            if len(_CACHE) >= _CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = image
        return image

    def _assemble(self, sources: list[Source], bases: dict[str, int], extern: dict[str, int],
                  syntax: str) -> Image:
        diags: list[Diagnostic] = []
        units = [parse(s, syntax, diags) for s in sources]
        if diags:
            raise AsmError(diags)
        owner: dict[str, Unit] = {}
        for unit in units:
            for g in sorted(unit.globals):
                if g not in unit.labels and g not in unit.equs:
                    diags.append(Diagnostic(unit.source.name, 1, f"symbol '{g}' is declared global but not defined"))
                elif g in owner:
                    diags.append(Diagnostic(unit.source.name, unit.labels[g].line if g in unit.labels else 1,
                                            f"symbol '{g}' is already defined in {owner[g].source.name}"))
                elif g in extern:
                    diags.append(Diagnostic(unit.source.name, unit.labels[g].line if g in unit.labels else 1,
                                            f"symbol '{g}' is already defined by the machine"))
                else:
                    owner[g] = unit
        if diags:
            raise AsmError(diags)
        with quiet_stderr():
            return self._link(units, bases, extern, owner, diags)

    def _scope(self, unit: Unit, extern: dict[str, int], global_values: dict[str, int],
               local_values: dict[int, dict[str, int]]) -> dict[str, int]:
        scope = dict(extern)
        scope.update(global_values)
        scope.update(local_values[id(unit)])
        return scope

    def _link(self, units, bases, extern, owner, diags) -> Image:
        for unit in units:
            for item in unit.items:
                if isinstance(item, Data):
                    item.size = len(item.raw) if not item.width else item.width * len(item.exprs)
        prev_sizes: dict[int, int] | None = None
        for _ in range(_MAX_RELAX_PASSES):
            local_values, global_values = self._place(units, bases)
            self._eval_equs(units, extern, global_values, local_values, owner, diags, final=False)
            sizes: dict[int, int] = {}
            for unit in units:
                scope = self._scope(unit, extern, global_values, local_values)
                for item in unit.items:
                    if not isinstance(item, Insn) or (item.fixed and prev_sizes is not None):
                        continue
                    code, error = self._encoder.encode(item, scope)
                    if error is not None:
                        diags.append(Diagnostic(item.file, item.line, error))
                        continue
                    assert code is not None  # encode() gives bytes or an error
                    item.fixed = item.fixed or not self._encoder.mentions_symbol(item.text)
                    sizes[id(item)] = item.size = len(code)
            if diags:
                raise AsmError(self._dedup(diags))
            if prev_sizes is not None and sizes.keys() <= prev_sizes.keys() and all(
                    prev_sizes[k] == v for k, v in sizes.items()):
                break
            prev_sizes = {**(prev_sizes or {}), **sizes}
        else:
            first = next(i for u in units for i in u.items if isinstance(i, Insn))
            raise AsmError([Diagnostic(first.file, first.line, "branch relaxation did not converge")])
        local_values, global_values = self._place(units, bases)
        self._eval_equs(units, extern, global_values, local_values, owner, diags, final=True)
        if diags:
            raise AsmError(self._dedup(diags))
        return self._emit(units, bases, extern, global_values, local_values, diags)

    @staticmethod
    def _dedup(diags: list[Diagnostic]) -> list[Diagnostic]:
        seen, out = set(), []
        for d in diags:
            if str(d) not in seen:
                seen.add(str(d))
                out.append(d)
        return out

    def _place(self, units, bases) -> tuple[dict[int, dict[str, int]], dict[str, int]]:
        """Assign addresses with the current sizes; returns label values per unit and globals."""
        cursor = dict(bases)
        local_values: dict[int, dict[str, int]] = {}
        global_values: dict[str, int] = {}
        for sect in SECTIONS:
            for unit in units:
                cursor[sect] = _align_up(cursor[sect], 16)
                for item in unit.items:
                    if item.section != sect:
                        continue
                    item.address = cursor[sect]
                    if isinstance(item, Align):
                        item.size = _align_up(item.address, item.boundary) - item.address
                    cursor[sect] += item.size
        for unit in units:
            values = {name: label.address for name, label in unit.labels.items()}
            local_values[id(unit)] = values
            for g in unit.globals:
                if g in values:
                    global_values[g] = values[g]
        return local_values, global_values

    def _eval_equs(self, units, extern, global_values, local_values, owner, diags, final: bool) -> None:
        """Evaluate .set/.equ symbols (they may name labels, and each other)."""
        pending = [(u, n) for u in units for n in u.equs]
        for _ in range(len(pending) + 1):
            left = []
            for unit, name in pending:
                expr, line = unit.equs[name]
                scope = self._scope(unit, extern, global_values, local_values)
                try:
                    value = evaluate64(expr, scope)
                except ExprError:
                    left.append((unit, name))
                    continue
                local_values[id(unit)][name] = value
                if name in unit.globals:
                    global_values[name] = value
            if len(left) == len(pending):
                break
            pending = left
        if final:
            for unit, name in pending:
                expr, line = unit.equs[name]
                scope = self._scope(unit, extern, global_values, local_values)
                try:
                    evaluate64(expr, scope)
                except ExprError as e:
                    diags.append(Diagnostic(unit.source.name, line, f"cannot evaluate '{name}': {e}"))

    def _emit(self, units, bases, extern, global_values, local_values, diags) -> Image:
        sections = {s: LinkedSection(s, bases[s], bytearray()) for s in SECTIONS}
        lines: dict[int, tuple[str, int]] = {}
        extable: list[ExtableEntry] = []
        symbols: list[tuple[str, int, str, bool, str]] = []
        for sect in SECTIONS:
            for unit in units:
                out = sections[sect]
                scope = self._scope(unit, extern, global_values, local_values)
                pad_to = _align_up(bases[sect] + len(out.data), 16) - bases[sect]
                out.data += (b"\x90" if sect == "text" else b"\0") * (pad_to - len(out.data))
                for item in unit.items:
                    if item.section != sect:
                        continue
                    assert item.address == bases[sect] + len(out.data)
                    if isinstance(item, Insn):
                        code, error = self._encoder.encode(item, scope)
                        if code is None or len(code) != item.size:
                            message = error or "encoding changed size in the final pass"
                            diags.append(Diagnostic(item.file, item.line, message))
                            continue
                        out.data += code
                        lines[item.address] = (item.file, item.line)
                    elif isinstance(item, Data):
                        out.data += item.raw if not item.width else self._data_bytes(item, scope, diags)
                    elif isinstance(item, Align):
                        fill = item.fill if item.fill is not None else (0x90 if sect == "text" else 0)
                        out.data += bytes([fill]) * item.size
                    elif isinstance(item, Extable):
                        self._extable_entry(item, scope, extable, diags)
                    elif isinstance(item, Label) and not item.name.startswith(".L"):
                        symbols.append((item.name, item.address, sect, item.name in unit.globals, unit.source.name))
        for unit in units:
            for name in unit.equs:
                symbols.append((name, local_values[id(unit)][name], "abs", name in unit.globals, unit.source.name))
        funcs = bpf_funcs(units, local_values, diags)
        if diags:
            raise AsmError(self._dedup(diags))
        return Image(sections, symbols, extable, lines, funcs)

    @staticmethod
    def _extable_entry(item: Extable, scope: dict[str, int], extable: list[ExtableEntry],
                       diags: list[Diagnostic]) -> None:
        """One _ASM_EXTABLE entry; an instruction has one fixup at most (the machine's table holds one)."""
        try:
            entry = ExtableEntry(evaluate64(item.insn, scope) & MASK64, evaluate64(item.fixup, scope) & MASK64)
        except ExprError as e:
            diags.append(Diagnostic(item.file, item.line, f"_ASM_EXTABLE: {e}"))
            return
        if any(e.insn == entry.insn for e in extable):
            diags.append(Diagnostic(item.file, item.line, f"_ASM_EXTABLE: a second entry for {entry.insn:#x}"))
            return
        extable.append(entry)

    @staticmethod
    def _data_bytes(item: Data, scope: dict[str, int], diags: list[Diagnostic]) -> bytes:
        out = bytearray()
        for expr in item.exprs:
            try:
                value = evaluate(expr, dict(scope, **{".": item.address + len(out)}))
            except ExprError as e:
                diags.append(Diagnostic(item.file, item.line, str(e)))
                value = 0
            if not fits(value, item.width):
                shown = value & MASK64 if value <= MASK64 else value
                diags.append(Diagnostic(item.file, item.line, f"value {shown:#x} does not fit in {item.width} byte(s)"))
            out += (value & ((1 << (8 * item.width)) - 1)).to_bytes(item.width, "little")
        return bytes(out)


def _align_up(value: int, boundary: int) -> int:
    return (value + boundary - 1) & ~(boundary - 1)
