"""The assembler front end: GNU-as-like source in, a laid-out image out.

keystone 0.9.2 encodes instructions, and only instructions: it reads decimal
literals as hex once any option is set, lacks numeric local labels, and some
directives crash the process. So this module owns everything else: comments,
labels (`1:` / `1b` / `2f` included), directives and data, sections, the
kernel's SYM_FUNC_START/_ASM_EXTABLE lines, symbols across files, layout and
branch relaxation. keystone sees one instruction at a time, with decimal
literals rewritten to hex and every symbol resolved through its callback.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field

from keystone import (
    KS_ARCH_X86,
    KS_ERR_ASM_MNEMONICFAIL,
    KS_ERR_ASM_SYMBOL_MISSING,
    KS_MODE_64,
    KS_OPT_SYNTAX_ATT,
    Ks,
    KsError,
)

from ..errors import AsmError, Diagnostic
from ..x86.extable import ExtableEntry
from .exprs import ExprError, check_syntax, evaluate

SECTIONS = ("text", "rodata", "data", "bss")
_MAX_RELAX_PASSES = 16
_CACHE_SIZE = 256
_CACHE: dict[tuple, Image] = {}
_DECLS: dict[tuple, Declarations] = {}

_LABEL = re.compile(r"^\s*([A-Za-z_.$][\w.$]*|\d+)\s*:(?!:)")
_IDENT = re.compile(r"[A-Za-z_.][\w.$]*")
_OPERAND_IDENT = re.compile(r"(?<![\w.%'])[A-Za-z_.][\w.$]*")
_RIP_ATT = re.compile(r"([^\s,(]*)\(%rip\)")
_RIP_INTEL = re.compile(r"\[\s*rip\s*([+-][^\]]*)\]", re.IGNORECASE)
_MNEMONIC = re.compile(r"[A-Za-z][A-Za-z0-9.]*")
_ATT_REG = r"%[a-z][a-z0-9]*(?:\([0-7]\))?"
_ATT_BASE = re.compile(rf"^\(\s*(?:{_ATT_REG})?\s*(?:,\s*{_ATT_REG}\s*(?:,\s*(?:0x)?[1248]\s*)?)?\)$")
_ATT_SEG = re.compile(rf"^{_ATT_REG}\s*:\s*")
_INTEL_SIZE = re.compile(r"^(?:(?:byte|word|dword|qword|tbyte|xmmword|ymmword)\s+ptr\s+)?"
                         r"(?:[a-z]s\s*:\s*)?", re.IGNORECASE)
_PREFIXES = frozenset({"rep", "repe", "repz", "repne", "repnz", "lock", "notrack", "data16", "addr32"})
_SAFE_INSN = re.compile(r"^[A-Za-z][\w.]*(\s+[\w\s$%()\[\],:*+\-.'<>~|&^/!]*)?$")
_NUMERIC_REF = re.compile(r"(?<![\w.$])(\d+)([bf])(?![\w.$])")
_DECIMAL = re.compile(r"(?<![\w.'])(\d+)(?![\w.'])")
_MACRO = re.compile(r"^\s*(SYM_FUNC_START|SYM_FUNC_START_LOCAL|SYM_FUNC_END|SYM_CODE_START|SYM_CODE_START_LOCAL|"
                    r"SYM_CODE_END|_ASM_EXTABLE|BPF_PROG|BPF_SUBPROG|BPF_ARENA|BPF_KSYM)\s*\((.*)\)\s*$")
_ARENA_FIELDS = ("max_entries", "map_extra", "map_flags")


@dataclass
class Source:
    """One file of assembly: `name` is what diagnostics print."""

    name: str
    text: str


@dataclass
class _Item:
    file: str
    line: int
    section: str
    address: int = 0
    size: int = 0


@dataclass
class _Label(_Item):
    name: str = ""


@dataclass
class _Insn(_Item):
    text: str = ""  # as keystone gets it
    source: str = ""  # as the user wrote it
    syntax: str = "att"
    fixed: bool = False  # encoding cannot depend on addresses


@dataclass
class _Data(_Item):
    width: int = 0  # 0: `raw` holds the bytes
    exprs: list[str] = field(default_factory=list)
    raw: bytes = b""


@dataclass
class _Align(_Item):
    boundary: int = 1
    fill: int | None = None  # None: NOPs in text, zeros elsewhere


@dataclass
class _Extable(_Item):
    insn: str = ""
    fixup: str = ""


@dataclass(frozen=True)
class BpfFunc:
    """A function a file declares as BPF: `main` is None for a main program."""

    name: str
    main: str | None
    start: int
    end: int
    file: str
    line: int


@dataclass(frozen=True)
class ArenaDecl:
    """BPF_ARENA(name, max_entries[, map_extra[, map_flags]]): the arena map a BPF object declares."""

    name: str
    params: dict[str, int]
    file: str
    line: int


@dataclass(frozen=True)
class Declarations:
    """What a BPF object asks of the kernel before it can be linked: its arena maps, and the
    kernel functions it calls (`extern ... __ksym` in BPF C, BPF_KSYM(name) here)."""

    arenas: list[ArenaDecl]
    ksyms: list[tuple[str, str, int]]  # name, file, line


@dataclass
class LinkedSection:
    name: str
    start: int
    data: bytearray


@dataclass(eq=False)
class Image:
    """What the linker hands the machine: bytes per section, symbols, extable, line map."""

    sections: dict[str, LinkedSection]
    symbols: list[tuple[str, int, str, bool, str]]  # name, address, section, global, file
    extable: list[ExtableEntry]
    lines: dict[int, tuple[str, int]]  # instruction address -> (file, line)
    bpf_funcs: list[BpfFunc] = field(default_factory=list)


class _Unit:
    """One parsed file."""

    def __init__(self, source: Source, syntax: str):
        self.source = source
        self.syntax = syntax
        self.items: list[_Item] = []
        self.globals: set[str] = set()
        self.equs: dict[str, tuple[str, int]] = {}  # name -> (expression, line)
        self.labels: dict[str, _Label] = {}
        self.local_defs: dict[str, int] = {}  # numeric label -> definitions so far
        self.pending_forward: dict[str, int] = {}  # numeric label -> line of a `Nf` still unresolved
        self.bpf: list[tuple[str, str | None, int]] = []  # BPF_PROG / BPF_SUBPROG: name, main, line
        self.arenas: list[ArenaDecl] = []
        self.ksyms: list[tuple[str, str, int]] = []


def _strip_comments(text: str) -> list[str]:
    """Remove /* */, // and # comments outside string literals; keep line numbers."""
    out, i, n = [], 0, len(text)
    cur: list[str] = []
    in_block = False
    in_str = False
    while i < n:
        c = text[i]
        if in_block:
            if text.startswith("*/", i):
                in_block = False
                i += 2
                continue
            if c == "\n":
                out.append("".join(cur))
                cur = []
            i += 1
            continue
        if in_str:
            cur.append(c)
            if c == "\\" and i + 1 < n:
                cur.append(text[i + 1])
                i += 2
                continue
            if c == '"' or c == "\n":
                in_str = False
                if c == "\n":
                    cur.pop()
                    out.append("".join(cur))
                    cur = []
            i += 1
            continue
        if c == '"':
            in_str = True
            cur.append(c)
        elif text.startswith("/*", i):
            in_block = True
            i += 2
            continue
        elif c == "#" or text.startswith("//", i):
            rest = text[i:].split("\n", 1)[0]
            at_line_start = i == 0 or text[i - 1] == "\n" or "".join(cur).strip() == ""
            if at_line_start and c == "#" and re.match(r"#\s*(define|if|ifdef|ifndef|else|elif|endif|undef)\b", rest):
                cur.append(rest)  # kept: reported as unsupported below
            i += len(rest)
            continue
        elif c == "\n":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def _split_statements(line: str) -> list[str]:
    """Split on `;` outside string and character literals."""
    parts, cur, in_str = [], [], False
    for i, c in enumerate(line):
        if c == '"' and (i == 0 or line[i - 1] != "\\"):
            in_str = not in_str
        if c == ";" and not in_str:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


def _split_args(text: str) -> list[str]:
    """Comma-separated arguments, respecting parentheses and strings."""
    args, cur, depth, in_str = [], [], 0, False
    for i, c in enumerate(text):
        if c == '"' and (i == 0 or text[i - 1] != "\\"):
            in_str = not in_str
        if not in_str:
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            elif c == "," and depth == 0:
                args.append("".join(cur).strip())
                cur = []
                continue
        cur.append(c)
    tail = "".join(cur).strip()
    if tail or args:
        args.append(tail)
    return args


_ESCAPES = {"n": 10, "t": 9, "r": 13, "b": 8, "f": 12, "v": 11, "a": 7, "\\": 92, '"': 34, "'": 39, "0": 0}


def _parse_string(text: str) -> bytes:
    """A GNU as string literal with its escapes."""
    text = text.strip()
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError(f"expected a string in double quotes, got '{text}'")
    body, out, i = text[1:-1], bytearray(), 0
    while i < len(body):
        c = body[i]
        if c == '"':
            raise ValueError("unescaped '\"' inside a string")
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        i += 1
        if i >= len(body):
            raise ValueError("string ends with a lone backslash")
        e = body[i]
        if e == "x":
            m = re.match(r"[0-9A-Fa-f]{1,2}", body[i + 1:])
            if not m:
                raise ValueError("\\x with no hex digits")
            out.append(int(m.group(), 16))
            i += 1 + len(m.group())
        elif e in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i:])
            out.append(int(m.group(), 8) & 0xFF)
            i += len(m.group())
        elif e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 1
        else:
            raise ValueError(f"unknown escape '\\{e}'")
    return bytes(out)


def _to_hex_literals(text: str) -> str:
    """keystone reads every plain number as hex once an option is set: write them in 0x form."""
    def repl(m: re.Match) -> str:
        digits = m.group(1)
        if len(digits) > 1 and digits[0] == "0":
            if not set(digits) <= set("01234567"):
                raise ValueError(f"bad octal number '{digits}'")
            return hex(int(digits, 8))
        return hex(int(digits))
    return _DECIMAL.sub(repl, text)


_DATA_WIDTHS = {".byte": 1, ".2byte": 2, ".word": 2, ".short": 2, ".value": 2, ".hword": 2,
                ".4byte": 4, ".long": 4, ".int": 4, ".8byte": 8, ".quad": 8}
_IGNORED = {".file", ".loc", ".ident", ".code64", ".hidden", ".protected", ".internal", ".size", ".type",
            ".nops", ".addrsig", ".addrsig_sym", ".note"}


class Assembler:
    """Turns sources into an Image at given section bases, against already-loaded symbols."""

    def __init__(self) -> None:
        self._ks = {"att": Ks(KS_ARCH_X86, KS_MODE_64), "intel": Ks(KS_ARCH_X86, KS_MODE_64)}
        self._ks["att"].syntax = KS_OPT_SYNTAX_ATT
        self._values: dict[str, int] = {}

    # -- parsing --------------------------------------------------------------

    def _parse(self, source: Source, syntax: str, diags: list[Diagnostic]) -> _Unit:
        unit = _Unit(source, syntax)
        section_stack: list[str] = []
        section = "text"

        def err(line: int, msg: str) -> None:
            diags.append(Diagnostic(source.name, line, msg))

        def add(item: _Item) -> None:
            unit.items.append(item)

        def define_label(name: str, lineno: int) -> None:
            if name.isdigit():
                k = unit.local_defs.get(name, 0)
                unit.local_defs[name] = k + 1
                unit.pending_forward.pop(name, None)
                name = f".L__local_{name}_{k}"
            elif name in unit.labels or name in unit.equs:
                err(lineno, f"symbol '{name}' is already defined")
                return
            label = _Label(source.name, lineno, section, name=name)
            unit.labels[name] = label
            add(label)

        def rename_numeric(text: str, lineno: int) -> str:
            def repl(m: re.Match) -> str:
                n, d = m.group(1), m.group(2)
                k = unit.local_defs.get(n, 0)
                if d == "b":
                    if k == 0:
                        err(lineno, f"no previous definition of local label '{n}' for '{n}b'")
                        return m.group(0)
                    return f".L__local_{n}_{k - 1}"
                unit.pending_forward.setdefault(n, lineno)
                return f".L__local_{n}_{k}"
            return _NUMERIC_REF.sub(repl, text)

        for lineno, line in enumerate(_strip_comments(source.text), start=1):
            for stmt in _split_statements(line):
                stmt = stmt.strip()
                while True:
                    m = _LABEL.match(stmt)
                    if not m:
                        break
                    define_label(m.group(1), lineno)
                    stmt = stmt[m.end():].strip()
                if not stmt:
                    continue
                if stmt.startswith("#"):
                    err(lineno, f"preprocessor directives are not supported ('{stmt.split()[0]}'); use .equ/.set")
                    continue
                m = _MACRO.match(stmt)
                if m:
                    macro, args = m.group(1), _split_args(m.group(2))
                    if macro == "_ASM_EXTABLE":
                        if len(args) != 2 or not all(args):
                            err(lineno, "_ASM_EXTABLE takes two arguments: (from, to)")
                            continue
                        add(_Extable(source.name, lineno, section,
                                     insn=rename_numeric(args[0], lineno), fixup=rename_numeric(args[1], lineno)))
                        continue
                    if macro.startswith("BPF_"):
                        self._bpf_macro(unit, macro, args, lineno, err)
                        continue
                    if len(args) != 1 or not _IDENT.fullmatch(args[0]):
                        err(lineno, f"{macro} takes one symbol name")
                        continue
                    if macro.endswith("_END"):
                        if args[0] not in unit.labels:
                            err(lineno, f"{macro}({args[0]}) without a start")
                        else:
                            define_label(f".L__end_{args[0]}", lineno)
                        continue
                    if section != "text":
                        err(lineno, f"{macro} outside .text")
                        continue
                    add(_Align(source.name, lineno, section, boundary=16))
                    if not macro.endswith("_LOCAL"):
                        unit.globals.add(args[0])
                    define_label(args[0], lineno)
                    continue
                m = re.match(r"^([A-Za-z_.$][\w.$]*)\s*=\s*(.+)$", stmt)
                if m and not stmt.startswith("."):
                    stmt = f".set {m.group(1)}, {m.group(2)}"
                if stmt.startswith("."):
                    word, _, rest = stmt.partition(" ")
                    word = word.lower() if word.lower() in _DATA_WIDTHS else word
                    rest = rest.strip()
                    if "\t" in word:
                        word, _, more = word.partition("\t")
                        rest = (more + " " + rest).strip()
                    try:
                        section = self._directive(unit, word, rest, lineno, section, section_stack,
                                                  add, rename_numeric)
                    except ValueError as e:
                        err(lineno, str(e))
                    continue
                mnemonic = stmt.split(None, 1)[0]
                if not _SAFE_INSN.match(stmt):
                    err(lineno, f"cannot parse '{stmt}'")
                    continue
                if section == "bss":
                    err(lineno, f"instruction '{mnemonic}' in .bss")
                    continue
                try:
                    text = _to_hex_literals(rename_numeric(stmt, lineno))
                except ValueError as e:
                    err(lineno, str(e))
                    continue
                add(_Insn(source.name, lineno, section, text=text, source=stmt, syntax=unit.syntax))
        for n, lineno in unit.pending_forward.items():
            err(lineno, f"local label '{n}' referenced as '{n}f' is never defined after that point")
        return unit

    @staticmethod
    def _bpf_macro(unit: _Unit, macro: str, args: list[str], lineno: int, err) -> None:
        if macro == "BPF_ARENA":
            if not 2 <= len(args) <= 1 + len(_ARENA_FIELDS) or not _IDENT.fullmatch(args[0]):
                err(lineno, "BPF_ARENA takes a map name, max_entries, and optionally map_extra and map_flags")
                return
            try:
                params = {f: evaluate(a, {}) for f, a in zip(_ARENA_FIELDS, args[1:], strict=False)}
            except ExprError as e:
                err(lineno, f"BPF_ARENA: {e}")
                return
            unit.arenas.append(ArenaDecl(args[0], params, unit.source.name, lineno))
            return
        if macro == "BPF_KSYM":
            if len(args) != 1 or not _IDENT.fullmatch(args[0]):
                err(lineno, "BPF_KSYM takes the name of a kernel function")
            else:
                unit.ksyms.append((args[0], unit.source.name, lineno))
            return
        want = 1 if macro == "BPF_PROG" else 2
        if len(args) != want or not all(_IDENT.fullmatch(a) for a in args):
            err(lineno, "BPF_PROG takes a function name" if want == 1
                else "BPF_SUBPROG takes a function name and the name of its main program")
            return
        unit.bpf.append((args[0], args[1] if want == 2 else None, lineno))

    def declarations(self, sources: list[Source], syntax: str = "att") -> Declarations:
        """The BPF_ARENA and BPF_KSYM lines of `sources`, which must be met before the link."""
        key = (syntax, tuple((s.name, s.text) for s in sources))
        if key not in _DECLS:
            diags: list[Diagnostic] = []
            units = [self._parse(s, syntax, diags) for s in sources]
            if diags:
                raise AsmError(diags)
            if len(_DECLS) >= _CACHE_SIZE:
                _DECLS.pop(next(iter(_DECLS)))
            _DECLS[key] = Declarations([d for u in units for d in u.arenas], [k for u in units for k in u.ksyms])
        return _DECLS[key]

    def _directive(self, unit, word, rest, lineno, section, stack, add, rename):
        name = unit.source.name
        if word in (".text", ".data", ".bss", ".rodata"):
            return word[1:]
        if word in (".section", ".pushsection"):
            args = _split_args(rest)
            if not args or not args[0]:
                raise ValueError(f"{word} needs a section name")
            target = self._section_of(args[0])
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
            names = [a for a in _split_args(rest)]
            if not names or not all(_IDENT.fullmatch(n) for n in names):
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
            args = _split_args(rest)
            if len(args) != 2 or not _IDENT.fullmatch(args[0]):
                raise ValueError(f"{word} takes a symbol and an expression")
            if args[0] in unit.labels or (word == ".equiv" and args[0] in unit.equs):
                raise ValueError(f"symbol '{args[0]}' is already defined")
            unit.equs[args[0]] = (rename(args[1], lineno), lineno)
            return section
        if word in _DATA_WIDTHS:
            exprs = _split_args(rest)
            if not exprs or not all(exprs):
                raise ValueError(f"{word} needs at least one value")
            self._require_data_section(section, word)
            add(_Data(name, lineno, section, width=_DATA_WIDTHS[word], exprs=[rename(e, lineno) for e in exprs]))
            return section
        if word in (".ascii", ".asciz", ".string"):
            parts = _split_args(rest)
            if not parts:
                raise ValueError(f"{word} needs a string")
            raw = b"".join(_parse_string(p) + (b"\0" if word != ".ascii" else b"") for p in parts)
            self._require_data_section(section, word)
            add(_Data(name, lineno, section, raw=raw))
            return section
        if word in (".zero", ".skip", ".space", ".fill"):
            args = _split_args(rest)
            try:
                nums = [evaluate(a, {}) for a in args]
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
            add(_Data(name, lineno, section, raw=raw))
            return section
        if word in (".align", ".balign", ".p2align"):
            args = _split_args(rest)
            try:
                nums = [evaluate(a, {}) for a in args if a]
            except ExprError as e:
                raise ValueError(f"{word}: {e}") from None
            if not 1 <= len(nums) <= 3:
                raise ValueError(f"{word} takes an alignment[, fill[, max]]")
            boundary = 1 << nums[0] if word == ".p2align" else nums[0]
            if boundary <= 0 or boundary & (boundary - 1) or boundary > 1 << 16:
                raise ValueError(f"{word}: alignment {boundary} is not a power of two up to 65536")
            add(_Align(name, lineno, section, boundary=boundary, fill=nums[1] & 0xFF if len(nums) > 1 else None))
            return section
        raise ValueError(f"unsupported directive '{word}'")

    @staticmethod
    def _section_of(name: str) -> str:
        name = name.strip().strip('"')
        for sect in SECTIONS:
            if name == "." + sect or name.startswith("." + sect + "."):
                return sect
        if name.startswith(".init.text") or name.startswith(".noinstr.text"):
            return "text"
        raise ValueError(f"unsupported section '{name}' (use .text, .rodata, .data or .bss)")

    @staticmethod
    def _require_data_section(section: str, word: str) -> None:
        if section == "bss":
            raise ValueError(f"{word} in .bss (only .zero/.skip are allowed there)")

    # -- encoding -------------------------------------------------------------

    @contextlib.contextmanager
    def _quiet_stderr(self):
        """keystone prints LLVM diagnostics on fd 2; ours are the only ones a user should see."""
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)

    @staticmethod
    def _split_mnemonic(text: str) -> tuple[str, str]:
        """(prefixes and mnemonic, operands): `rep movsb` has no operands."""
        words = text.split()
        i = 0
        while i < len(words) - 1 and words[i].lower() in _PREFIXES:
            i += 1
        head = " ".join(words[:i + 1])
        return head, text.strip()[len(" ".join(words[:i + 1])):].strip() if i == 0 else " ".join(words[i + 1:])

    def _substitute(self, operands: str) -> tuple[str, str | None]:
        """Symbols replaced by their values (keystone's own resolver drops the fixup
        addend, so a resolved `call foo` would land 4 bytes off); (text, missing symbol)."""
        missing: list[str] = []

        def repl(m: re.Match) -> str:
            name = m.group(0)
            if name.lower() in _OPERAND_KEYWORDS:
                return name
            if name not in self._values:
                missing.append(name)
                return name
            return hex(self._values[name] & 0xFFFF_FFFF_FFFF_FFFF)
        text = _OPERAND_IDENT.sub(repl, operands)
        return text, (missing[0] if missing else None)

    @staticmethod
    def _check_operand(op: str, syntax: str) -> str | None:
        """keystone hangs or crashes on some malformed operands, so each must parse first."""
        op = op.strip()
        if not op:
            return "empty operand"
        if syntax == "att":
            op = op.removeprefix("*").strip()
            if re.fullmatch(_ATT_REG, op):
                return None
            if op.startswith("$"):
                return check_syntax(op[1:])
            op = _ATT_SEG.sub("", op)
            paren = op.find("(%") if "(%" in op else op.find("(,")
            if paren >= 0:
                if not _ATT_BASE.match(op[paren:].replace(" ", "")):
                    return f"bad memory operand '{op}'"
                op = op[:paren].strip()
                if not op:
                    return None
            return check_syntax(op)
        m = _INTEL_SIZE.match(op)
        op = op[m.end():] if m else op
        if op.startswith("["):
            if not op.endswith("]"):
                return f"bad memory operand '{op}'"
            op = op[1:-1]
        return check_syntax(op)

    def _check(self, insn: _Insn, head: str, operands: str) -> str | None:
        if not all(_MNEMONIC.fullmatch(w) for w in head.split()):
            return f"no such instruction: '{insn.source}'"
        if not operands:
            return None
        for op in _split_args(operands):
            problem = self._check_operand(op, insn.syntax)
            if problem is not None:
                return f"invalid operand in '{insn.source}': {problem}"
        return None

    def _asm(self, insn: _Insn, text: str) -> bytes:
        encoding, _count = self._ks[insn.syntax].asm(text, insn.address)
        return bytes(encoding or b"")

    def _encode(self, insn: _Insn) -> tuple[bytes | None, str | None]:
        """(bytes, None) or (None, error message), with the symbols of `self._values`."""
        head, operands = self._split_mnemonic(insn.text)
        problem = self._check(insn, head, operands)
        if problem is not None:
            return None, problem
        rip = (_RIP_ATT if insn.syntax == "att" else _RIP_INTEL).search(operands)
        target = None
        if rip and _OPERAND_IDENT.search(rip.group(1)):
            # `sym(%rip)` means sym - next_ip: encode once to learn the length, then fix the disp.
            expr = rip.group(1).lstrip("+")
            try:
                target = evaluate(expr, self._values)
            except ExprError as e:
                return None, f"{e} in '{insn.source}'"
            hole = "0x0(%rip)" if insn.syntax == "att" else "[rip + 0x0]"
            operands = operands[:rip.start()] + hole + operands[rip.end():]
        operands, missing = self._substitute(operands)
        if missing is not None:
            return None, f"undefined symbol '{missing}' in '{insn.source}'"
        text = f"{head} {operands}".strip()
        try:
            code = self._asm(insn, text)
            if target is not None:
                disp = target - (insn.address + len(code))
                if not -(1 << 31) <= disp < 1 << 31:
                    return None, f"RIP-relative target out of range in '{insn.source}'"
                sign = "+" if disp >= 0 else "-"
                fixed = f"{disp:#x}(%rip)" if insn.syntax == "att" else f"[rip {sign} {abs(disp):#x}]"
                code = self._asm(insn, text.replace(hole, fixed, 1))
        except KsError as e:
            if e.errno == KS_ERR_ASM_MNEMONICFAIL:
                return None, f"no such instruction: '{insn.source}'"
            if e.errno == KS_ERR_ASM_SYMBOL_MISSING:
                return None, f"undefined symbol in '{insn.source}'"
            return None, f"invalid instruction '{insn.source}': {str(e).split(' (')[0].lower()}"
        if not code:
            return None, f"'{insn.source}' assembles to nothing"
        return code, None

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
        units = [self._parse(s, syntax, diags) for s in sources]
        if diags:
            raise AsmError(diags)
        owner: dict[str, _Unit] = {}
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
        with self._quiet_stderr():
            return self._link(units, bases, extern, owner, diags)

    def _scope(self, unit: _Unit, extern: dict[str, int], global_values: dict[str, int],
               local_values: dict[int, dict[str, int]]) -> dict[str, int]:
        scope = dict(extern)
        scope.update(global_values)
        scope.update(local_values[id(unit)])
        return scope

    def _link(self, units, bases, extern, owner, diags) -> Image:
        for unit in units:
            for item in unit.items:
                if isinstance(item, _Data):
                    item.size = len(item.raw) if not item.width else item.width * len(item.exprs)
        prev_sizes: dict[int, int] | None = None
        for _ in range(_MAX_RELAX_PASSES):
            local_values, global_values = self._place(units, bases)
            self._eval_equs(units, extern, global_values, local_values, owner, diags, final=False)
            sizes: dict[int, int] = {}
            for unit in units:
                self._values = self._scope(unit, extern, global_values, local_values)
                for item in unit.items:
                    if not isinstance(item, _Insn) or (item.fixed and prev_sizes is not None):
                        continue
                    code, error = self._encode(item)
                    if error is not None:
                        diags.append(Diagnostic(item.file, item.line, error))
                        continue
                    item.fixed = item.fixed or not self._mentions_symbol(item.text)
                    sizes[id(item)] = item.size = len(code)
            if diags:
                raise AsmError(self._dedup(diags))
            if prev_sizes is not None and sizes.keys() <= prev_sizes.keys() and all(
                    prev_sizes[k] == v for k, v in sizes.items()):
                break
            prev_sizes = {**(prev_sizes or {}), **sizes}
        else:
            first = next(i for u in units for i in u.items if isinstance(i, _Insn))
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

    def _mentions_symbol(self, text: str) -> bool:
        """Whether an encoding could change with addresses: any identifier that is not a register."""
        _head, operands = self._split_mnemonic(text)
        return any(tok.lower() not in _OPERAND_KEYWORDS for tok in _OPERAND_IDENT.findall(operands))

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
                    if isinstance(item, _Align):
                        item.size = _align_up(item.address, item.boundary) - item.address
                    cursor[sect] += item.size
        for unit in units:
            values = {name: label.address for name, label in unit.labels.items()}
            local_values[id(unit)] = values
            for g in unit.globals:
                if g in values:
                    global_values[g] = values[g]
        self._ends = cursor
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
                    value = evaluate(expr, scope)
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
                    evaluate(expr, scope)
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
                    if isinstance(item, _Insn):
                        self._values = scope
                        code, error = self._encode(item)
                        if error is not None or len(code) != item.size:
                            message = error or "encoding changed size in the final pass"
                            diags.append(Diagnostic(item.file, item.line, message))
                            continue
                        out.data += code
                        lines[item.address] = (item.file, item.line)
                    elif isinstance(item, _Data):
                        out.data += item.raw if not item.width else self._data_bytes(item, scope, diags)
                    elif isinstance(item, _Align):
                        fill = item.fill if item.fill is not None else (0x90 if sect == "text" else 0)
                        out.data += bytes([fill]) * item.size
                    elif isinstance(item, _Extable):
                        try:
                            extable.append(ExtableEntry(evaluate(item.insn, scope), evaluate(item.fixup, scope)))
                        except ExprError as e:
                            diags.append(Diagnostic(item.file, item.line, f"_ASM_EXTABLE: {e}"))
                    elif isinstance(item, _Label) and not item.name.startswith(".L"):
                        symbols.append((item.name, item.address, sect, item.name in unit.globals, unit.source.name))
        for unit in units:
            for name in unit.equs:
                symbols.append((name, local_values[id(unit)][name], "abs", name in unit.globals, unit.source.name))
        bpf_funcs = self._bpf_funcs(units, local_values, diags)
        if diags:
            raise AsmError(self._dedup(diags))
        return Image(sections, symbols, extable, lines, bpf_funcs)

    @staticmethod
    def _bpf_funcs(units, local_values, diags: list[Diagnostic]) -> list[BpfFunc]:
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

    @staticmethod
    def _data_bytes(item: _Data, scope: dict[str, int], diags: list[Diagnostic]) -> bytes:
        out = bytearray()
        lo, hi = -(1 << (8 * item.width - 1)), (1 << (8 * item.width)) - 1
        for expr in item.exprs:
            try:
                value = evaluate(expr, dict(scope, **{".": item.address + len(out)}))
            except ExprError as e:
                diags.append(Diagnostic(item.file, item.line, str(e)))
                value = 0
            if item.width < 8 and not lo <= value <= hi:
                diags.append(Diagnostic(item.file, item.line, f"value {value:#x} does not fit in {item.width} byte(s)"))
            out += (value & ((1 << (8 * item.width)) - 1)).to_bytes(item.width, "little")
        return bytes(out)


def _align_up(value: int, boundary: int) -> int:
    return (value + boundary - 1) & ~(boundary - 1)


_OPERAND_KEYWORDS = frozenset(
    [f"r{i}{s}" for i in range(8, 16) for s in ("", "d", "w", "b")]
    + [p + r for r in ("ax", "bx", "cx", "dx", "si", "di", "sp", "bp", "ip") for p in ("r", "e", "")]
    + ["al", "ah", "bl", "bh", "cl", "ch", "dl", "dh", "sil", "dil", "spl", "bpl",
       "cs", "ds", "es", "fs", "gs", "ss", "byte", "word", "dword", "qword", "xmmword", "ptr", "tbyte",
       "rflags", "eflags", "offset", "rel", "near", "far", "short", "rip"]
    + [f"cr{i}" for i in range(9)] + [f"dr{i}" for i in range(8)]
    + [f"xmm{i}" for i in range(16)] + [f"ymm{i}" for i in range(16)] + [f"st{i}" for i in range(8)] + ["st"]
)

