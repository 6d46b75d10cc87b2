"""GNU as directives: sections, symbols, data, strings, space and alignment.

A directive that GNU as has and this does not is an error, never skipped,
except the ones that only carry debug or ELF symbol information (.file,
.loc, .cfi_*, .size, .type, ...), which mean nothing to a flat image.
"""

from __future__ import annotations

from .exprs import ExprError, evaluate64
from .image import SECTIONS
from .lexer import IDENT, parse_string, split_args
from .unit import Align, Data, Unit

_DATA_WIDTHS = {".byte": 1, ".2byte": 2, ".word": 2, ".short": 2, ".value": 2, ".hword": 2,
                ".4byte": 4, ".long": 4, ".int": 4, ".8byte": 8, ".quad": 8}
_IGNORED = {".file", ".loc", ".ident", ".code64", ".hidden", ".protected", ".internal", ".size", ".type",
            ".nops", ".addrsig", ".addrsig_sym", ".note"}


def directive(unit: Unit, stmt: str, lineno: int) -> str:
    """Apply one directive statement; returns the section after it. A ValueError says what is wrong."""
    word, _, rest = stmt.partition(" ")
    word = word.lower() if word.lower() in _DATA_WIDTHS else word
    rest = rest.strip()
    if "\t" in word:
        word, _, more = word.partition("\t")
        rest = (more + " " + rest).strip()
    name, section, stack = unit.source.name, unit.section, unit.section_stack
    if word in (".text", ".data", ".bss", ".rodata"):
        return word[1:]
    if word in (".section", ".pushsection"):
        args = split_args(rest)
        if not args or not args[0]:
            raise ValueError(f"{word} needs a section name")
        target = _section_of(args[0])
        if word == ".pushsection":
            stack.append(section)
        return target
    if word == ".popsection":
        if not stack:
            raise ValueError(".popsection without .pushsection")
        return stack.pop()
    if word == ".previous":
        raise ValueError(".previous is not supported; use .pushsection/.popsection")
    if word in (".globl", ".global", ".weak"):
        names = [a for a in split_args(rest)]
        if not names or not all(IDENT.fullmatch(n) for n in names):
            raise ValueError(f"{word} needs symbol names")
        unit.globals.update(names)
        return section
    if word == ".local":
        return section
    if word in (".intel_syntax", ".att_syntax"):
        unit.syntax = "intel" if word == ".intel_syntax" else "att"
        if rest and rest not in ("noprefix", "prefix"):
            raise ValueError(f"{word} takes 'prefix' or 'noprefix', not '{rest}'")
        if unit.syntax == "intel" and rest == "prefix":
            raise ValueError(".intel_syntax prefix is not supported; use noprefix")
        return section
    if word in _IGNORED or word.startswith(".cfi_"):
        return section
    if word in (".set", ".equ", ".equiv"):
        args = split_args(rest)
        if len(args) != 2 or not IDENT.fullmatch(args[0]):
            raise ValueError(f"{word} takes a symbol and an expression")
        if args[0] in unit.labels or (word == ".equiv" and args[0] in unit.equs):
            raise ValueError(f"symbol '{args[0]}' is already defined")
        unit.equs[args[0]] = (unit.rename_numeric(args[1], lineno), lineno)
        return section
    if word in _DATA_WIDTHS:
        exprs = split_args(rest)
        if not exprs or not all(exprs):
            raise ValueError(f"{word} needs at least one value")
        _require_data_section(section, word)
        unit.add(Data(name, lineno, section, width=_DATA_WIDTHS[word],
                      exprs=[unit.rename_numeric(e, lineno) for e in exprs]))
        return section
    if word in (".ascii", ".asciz", ".string"):
        parts = split_args(rest)
        if not parts:
            raise ValueError(f"{word} needs a string")
        raw = b"".join(parse_string(p) + (b"\0" if word != ".ascii" else b"") for p in parts)
        _require_data_section(section, word)
        unit.add(Data(name, lineno, section, raw=raw))
        return section
    if word in (".zero", ".skip", ".space", ".fill"):
        args = split_args(rest)
        try:
            nums = [evaluate64(a, {}) for a in args]
        except ExprError as e:
            raise ValueError(f"{word}: {e}") from None
        if word == ".fill":
            if not 1 <= len(nums) <= 3:
                raise ValueError(".fill takes repeat[, size[, value]]")
            repeat, size, value = (nums + [1, 0])[:3] if len(nums) == 1 else (nums + [0])[:3]
            if not 0 <= repeat <= 1 << 24 or size not in (1, 2, 4, 8):
                raise ValueError(".fill repeat or size out of range")
            raw = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little") * repeat
        else:
            if not 1 <= len(nums) <= (1 if word == ".zero" else 2):
                raise ValueError(f"{word} takes a size" + ("" if word == ".zero" else "[, fill]"))
            if not 0 <= nums[0] <= 1 << 24:
                raise ValueError(f"{word} size {nums[0]} out of range")
            raw = bytes([(nums[1] if len(nums) > 1 else 0) & 0xFF]) * nums[0]
        if section == "bss" and any(raw):
            raise ValueError(f"non-zero {word} in .bss")
        unit.add(Data(name, lineno, section, raw=raw))
        return section
    if word in (".align", ".balign", ".p2align"):
        args = split_args(rest)
        try:
            nums = [evaluate64(a, {}) for a in args if a]
        except ExprError as e:
            raise ValueError(f"{word}: {e}") from None
        if not 1 <= len(nums) <= 3:
            raise ValueError(f"{word} takes an alignment[, fill[, max]]")
        boundary = 1 << nums[0] if word == ".p2align" else nums[0]
        if boundary <= 0 or boundary & (boundary - 1) or boundary > 1 << 16:
            raise ValueError(f"{word}: alignment {boundary} is not a power of two up to 65536")
        unit.add(Align(name, lineno, section, boundary=boundary, fill=nums[1] & 0xFF if len(nums) > 1 else None))
        return section
    raise ValueError(f"unsupported directive '{word}'")


def _section_of(name: str) -> str:
    name = name.strip().strip('"')
    for sect in SECTIONS:
        if name == "." + sect or name.startswith("." + sect + "."):
            return sect
    if name.startswith(".init.text") or name.startswith(".noinstr.text"):
        return "text"
    raise ValueError(f"unsupported section '{name}' (use .text, .rodata, .data or .bss)")


def _require_data_section(section: str, word: str) -> None:
    if section == "bss":
        raise ValueError(f"{word} in .bss (only .zero/.skip are allowed there)")
