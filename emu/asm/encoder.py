"""The bridge to keystone: one checked instruction at a time, symbols already values.

keystone 0.9.2 hangs or crashes on some malformed operands, so each operand
must parse before keystone sees it. Its own symbol resolver drops the fixup
addend, so every symbol is replaced by its value first; a `sym(%rip)` operand
is encoded twice, the second time with the displacement the first length gives.

keystone also cuts a number that does not fit its field without a word
(`mov $4294967296, %eax` as `mov $0, %eax`), so each AT&T operand's expression is
evaluated here, as gas evaluates it, keystone gets plain 0x numbers, and capstone
reads the bytes back: every number must come out as it went in, or the line is
an error, where gas errs or warns.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field

from capstone import CS_ARCH_X86, CS_MODE_64, Cs, CsError
from capstone.x86 import X86_OP_IMM, X86_OP_MEM, X86_REG_RIP
from keystone import (
    KS_ARCH_X86,
    KS_ERR_ASM_MNEMONICFAIL,
    KS_ERR_ASM_SYMBOL_MISSING,
    KS_MODE_64,
    KS_OPT_SYNTAX_ATT,
    Ks,
    KsError,
)

from .exprs import MASK64, ExprError, check_syntax, evaluate64, fits, signed64
from .lexer import split_args
from .unit import Insn

_OPERAND_IDENT = re.compile(r"(?<![\w.%'])[A-Za-z_.][\w.$]*")
_RIP_INTEL = re.compile(r"\[\s*rip\s*([+-][^\]]*)\]", re.IGNORECASE)
_MNEMONIC = re.compile(r"[A-Za-z][A-Za-z0-9.]*")
_ATT_REG = r"%[a-z][a-z0-9]*(?:\([0-7]\))?"
_ATT_BASE = re.compile(rf"^\(\s*(?:{_ATT_REG})?\s*(?:,\s*{_ATT_REG}\s*(?:,\s*(?:0x)?[1248]\s*)?)?\)$")
_ATT_SEG = re.compile(rf"^{_ATT_REG}\s*:\s*")
_INTEL_SIZE = re.compile(r"^(?:(?:byte|word|dword|qword|tbyte|xmmword|ymmword)\s+ptr\s+)?"
                         r"(?:[a-z]s\s*:\s*)?", re.IGNORECASE)
_PREFIXES = frozenset({"rep", "repe", "repz", "repne", "repnz", "lock", "notrack", "data16", "addr32"})


class _Refused(Exception):
    """An operand keystone must not see; the message is the whole diagnostic."""


@dataclass
class _Operands:
    """An instruction's operands as keystone gets them, and the numbers its bytes must hold."""

    texts: list[str] = field(default_factory=list)
    numbers: list[tuple[str, int]] = field(default_factory=list)  # ("imm" | "disp" | "any", value)
    imms: dict[int, int] = field(default_factory=dict)  # the immediates: operand index -> value
    rip: int | None = None  # the index of a `sym(%rip)` operand, whose text holds `{0}` for its displacement
    target: int = 0  # and the address it names
    intel: bool = False

    def text(self, head: str, disp: int = 0, zero_imms: bool = False) -> str:
        """As keystone gets it; `zero_imms`: every immediate 0, to learn whether it is their size that fails."""
        texts = list(self.texts)
        for i in self.imms if zero_imms else ():
            texts[i] = "0x0" if self.intel else "$0x0"
        if self.rip is not None:
            texts[self.rip] = texts[self.rip].format(f"{'-' if disp < 0 else '+'} {abs(disp):#x}" if self.intel
                                                     else _hex(disp))
        return f"{head} {', '.join(texts)}".strip()


def _hex(value: int) -> str:
    return f"-{-value:#x}" if value < 0 else f"{value:#x}"


def _value(expr: str, values: dict[str, int], source: str) -> int:
    """An operand's expression, evaluated as gas does; a _Refused says why not."""
    try:
        return evaluate64(expr, values)
    except ExprError as e:
        if str(e).startswith("undefined symbol"):
            raise _Refused(f"{e} in '{source}'") from None
        raise _Refused(f"invalid operand in '{source}': {e}") from None


def _displacement(value: int, source: str) -> int:
    """`value` as a signed 32-bit displacement, or gas's error."""
    if not -(1 << 31) <= signed64(value) < 1 << 31:
        raise _Refused(f"{value & MASK64:#x} out of range of signed 32bit displacement in '{source}'")
    return signed64(value)


def _intel_terms(inner: str) -> list[str]:
    """An Intel address split at its top-level + and -, each term keeping its sign."""
    terms, cur, depth = [], "", 0
    for c in inner:
        depth += (c == "(") - (c == ")")
        if c in "+-" and depth == 0 and cur.strip() and cur.rstrip()[-1] not in "+-*/%&|^~!<>(":
            terms.append(cur.strip())
            cur = ""
        cur += c
    return [*terms, cur.strip()]


def _imm_width(insn, op, value: int) -> int | None:
    """The bytes of `op` that hold `value`: its size when it holds it sign-extended, the
    field's when the field is narrower and read unsigned (`ret $imm16`); None when neither."""
    if (op.imm - value) % (1 << 8 * op.size) == 0:
        return op.size
    narrow = insn.imm_size
    if narrow < op.size and 0 <= op.imm < 1 << 8 * narrow and (op.imm - value) % (1 << 8 * narrow) == 0:
        return narrow
    return None


def _lost(insn, kind: str, value: int) -> str | None:
    """None when the decoded `insn` holds `value` in an operand of `kind`, else what became of it."""
    for op in insn.operands:
        if op.type == X86_OP_MEM and kind != "imm":
            # keystone may reach an absolute address RIP-relative (`jmp *8`): the same address
            disp = op.mem.disp + (insn.address + insn.size if op.mem.base == X86_REG_RIP and kind == "any" else 0)
            if (disp - value) & MASK64 == 0:
                return None
        width = _imm_width(insn, op, value) if op.type == X86_OP_IMM and kind != "disp" else None
        if width is None:
            continue
        if width < 8 and not fits(value, width):
            cut = value & ((1 << 8 * width) - 1)
            return (f"{value & MASK64:#x} does not fit in {8 * width} bits"
                    f" (GNU as: '{value & MASK64:#x} shortened to {cut:#x}')")
        return None
    return f"{value & MASK64:#x} cannot be encoded"


@contextlib.contextmanager
def quiet_stderr():
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


class Encoder:
    """A keystone engine per syntax, and the checks that keep it from hanging."""

    def __init__(self) -> None:
        self._ks = {"att": Ks(KS_ARCH_X86, KS_MODE_64), "intel": Ks(KS_ARCH_X86, KS_MODE_64)}
        self._ks["att"].syntax = KS_OPT_SYNTAX_ATT
        self._cs = Cs(CS_ARCH_X86, CS_MODE_64)
        self._cs.detail = True

    def mentions_symbol(self, text: str) -> bool:
        """Whether an encoding could change with addresses: any identifier that is not a register."""
        _head, operands = self._split_mnemonic(text)
        return any(tok.lower() not in _OPERAND_KEYWORDS for tok in _OPERAND_IDENT.findall(operands))

    @staticmethod
    def _split_mnemonic(text: str) -> tuple[str, str]:
        """(prefixes and mnemonic, operands): `rep movsb` has no operands."""
        words = text.split()
        i = 0
        while i < len(words) - 1 and words[i].lower() in _PREFIXES:
            i += 1
        head = " ".join(words[:i + 1])
        return head, text.strip()[len(" ".join(words[:i + 1])):].strip() if i == 0 else " ".join(words[i + 1:])

    @staticmethod
    def _substitute(operands: str, values: dict[str, int]) -> tuple[str, str | None]:
        """Symbols replaced by their values (keystone's own resolver drops the fixup
        addend, so a resolved `call foo` would land 4 bytes off); (text, missing symbol)."""
        missing: list[str] = []

        def repl(m: re.Match) -> str:
            name = m.group(0)
            if name.lower() in _OPERAND_KEYWORDS:
                return name
            if name not in values:
                missing.append(name)
                return name
            return hex(values[name] & 0xFFFF_FFFF_FFFF_FFFF)
        text = _OPERAND_IDENT.sub(repl, operands)
        return text, (missing[0] if missing else None)

    @staticmethod
    def _att(operands: str, values: dict[str, int], source: str) -> _Operands:
        """AT&T operands with every expression evaluated, each number to be checked in the bytes."""
        out = _Operands()
        for arg in split_args(operands):
            star = "*" if arg.startswith("*") else ""
            op = arg.removeprefix("*").strip()
            if not op:
                raise _Refused(f"invalid operand in '{source}': empty operand")
            if re.fullmatch(_ATT_REG, op):
                out.texts.append(star + op)
                continue
            if op.startswith("$"):
                value = _value(op[1:], values, source)
                out.numbers.append(("imm", value))
                out.imms[len(out.texts)] = value
                out.texts.append(f"{star}${_hex(value)}")
                continue
            seg = _ATT_SEG.match(op)
            prefix = star + (seg.group(0).replace(" ", "") if seg else "")
            op = op[seg.end():] if seg else op
            paren = op.find("(%") if "(%" in op else op.find("(,")
            base = op[paren:].replace(" ", "") if paren >= 0 else ""
            if base and not _ATT_BASE.match(base):
                raise _Refused(f"invalid operand in '{source}': bad memory operand '{op}'")
            disp = op[:paren].strip() if base else op
            if not disp:
                out.texts.append(prefix + base)
            elif base == "(%rip)" and _OPERAND_IDENT.search(disp):
                out.rip, out.target = len(out.texts), _value(disp, values, source)
                out.texts.append(prefix + "{0}" + base)
            elif base:
                value = _displacement(_value(disp, values, source), source)
                out.numbers.append(("disp", value))
                out.texts.append(f"{prefix}{_hex(value)}{base}")
            else:
                value = _value(disp, values, source)
                out.numbers.append(("any", value))
                out.texts.append(f"{prefix}{value & MASK64:#x}")
        return out

    @staticmethod
    def _check_intel(op: str) -> str | None:
        """keystone hangs or crashes on some malformed operands, so each must parse first."""
        m = _INTEL_SIZE.match(op)
        op = op[m.end():] if m else op
        if op.startswith("["):
            if not op.endswith("]"):
                return f"bad memory operand '{op}'"
            op = op[1:-1]
        return check_syntax(op)

    def _intel(self, operands: str, values: dict[str, int], source: str) -> _Operands:
        """Intel operands with symbols replaced by values; a plain number is checked in the bytes."""
        for op in split_args(operands):
            problem = "empty operand" if not op else self._check_intel(op)
            if problem is not None:
                raise _Refused(f"invalid operand in '{source}': {problem}")
        out = _Operands(intel=True)
        rip = _RIP_INTEL.search(operands)
        if rip and _OPERAND_IDENT.search(rip.group(1)):
            out.target = _value(rip.group(1), values, source)
            operands = operands[:rip.start()] + "[rip {0}]" + operands[rip.end():]
        operands, missing = self._substitute(operands, values)
        if missing is not None:
            raise _Refused(f"undefined symbol '{missing}' in '{source}'")
        for i, op in enumerate(split_args(operands)):
            if "{0}" in op:
                out.rip = i
            elif "[" in op:
                op = self._intel_memory(op, out, source)
            elif not _OPERAND_IDENT.search(op):
                out.imms[i] = _value(op, values, source)
                out.numbers.append(("any", out.imms[i]))
            out.texts.append(op)
        return out

    @staticmethod
    def _intel_memory(op: str, out: _Operands, source: str) -> str:
        """`[regs + expr]` with its expression evaluated here, as in AT&T: keystone's own
        evaluation is not gas's, and it cuts a displacement to 32 bits without a word."""
        start, end = op.index("["), op.rindex("]")
        regs: list[str] = []
        nums: list[str] = []
        for term in _intel_terms(op[start + 1:end]):
            (regs if _OPERAND_IDENT.search(term) else nums).append(term)
        if not nums:
            return op
        value = _value(" ".join(nums), {}, source)
        if regs:
            value = _displacement(value, source)
            out.numbers.append(("disp", value))
            inner = f"{' '.join(regs).removeprefix('+').strip()} {'-' if value < 0 else '+'} {abs(value):#x}"
        else:
            out.numbers.append(("any", value))
            inner = f"{value & MASK64:#x}"
        return f"{op[:start]}[{inner}]{op[end + 1:]}"

    def _asm(self, insn: Insn, text: str) -> bytes:
        encoding, _count = self._ks[insn.syntax].asm(text, insn.address)
        return bytes(encoding or b"")

    def _read_back(self, code: bytes, insn: Insn, numbers: list[tuple[str, int]]) -> str | None:
        """What capstone finds of `numbers` in `code`: None when each is there as written."""
        if not numbers:
            return None
        try:
            decoded = next(self._cs.disasm(code, insn.address, 1), None)
        except CsError:
            decoded = None
        if decoded is None:
            return f"'{insn.source}' encodes to bytes that do not decode"
        for kind, value in numbers:
            problem = _lost(decoded, kind, value)
            if problem is not None:
                return f"{problem} in '{insn.source}'"
        return None

    def _mismatch(self, insn: Insn, head: str, ops: _Operands) -> str | None:
        """keystone says "invalid mnemonic" for an immediate no form of the instruction takes
        (`add $0x100000000, %rax`); gas says "operand type mismatch", and so does this."""
        if not ops.imms:
            return None
        try:
            self._asm(insn, ops.text(head, zero_imms=True))
        except KsError:
            return None
        value = max(ops.imms.values(), key=lambda v: abs(signed64(v)))
        return f"operand type mismatch for '{head}' in '{insn.source}': no immediate of it takes {value & MASK64:#x}"

    def encode(self, insn: Insn, values: dict[str, int]) -> tuple[bytes, None] | tuple[None, str]:
        """(bytes, None) or (None, error message), with the symbols of `values`."""
        head, operands = self._split_mnemonic(insn.text)
        if not all(_MNEMONIC.fullmatch(w) for w in head.split()):
            return None, f"no such instruction: '{insn.source}'"
        parse = self._att if insn.syntax == "att" else self._intel
        try:
            ops = parse(operands, values, insn.source) if operands else _Operands()
        except _Refused as e:
            return None, str(e)
        try:
            code = self._asm(insn, ops.text(head))
            if ops.rip is not None:
                disp = ops.target - (insn.address + len(code))
                if not -(1 << 31) <= disp < 1 << 31:
                    return None, f"RIP-relative target out of range in '{insn.source}'"
                code = self._asm(insn, ops.text(head, disp))
        except KsError as e:
            if e.errno == KS_ERR_ASM_MNEMONICFAIL:
                return None, self._mismatch(insn, head, ops) or f"no such instruction: '{insn.source}'"
            if e.errno == KS_ERR_ASM_SYMBOL_MISSING:
                return None, f"undefined symbol in '{insn.source}'"
            return None, f"invalid instruction '{insn.source}': {str(e).split(' (')[0].lower()}"
        if not code:
            return None, f"'{insn.source}' assembles to nothing"
        problem = self._read_back(code, insn, ops.numbers)
        if problem is not None:
            return None, problem
        return code, None


_OPERAND_KEYWORDS = frozenset(
    [f"r{i}{s}" for i in range(8, 16) for s in ("", "d", "w", "b")]
    + [p + r for r in ("ax", "bx", "cx", "dx", "si", "di", "sp", "bp", "ip") for p in ("r", "e", "")]
    + ["al", "ah", "bl", "bh", "cl", "ch", "dl", "dh", "sil", "dil", "spl", "bpl",
       "cs", "ds", "es", "fs", "gs", "ss", "byte", "word", "dword", "qword", "xmmword", "ptr", "tbyte",
       "rflags", "eflags", "offset", "rel", "near", "far", "short", "rip"]
    + [f"cr{i}" for i in range(9)] + [f"dr{i}" for i in range(8)]
    + [f"xmm{i}" for i in range(16)] + [f"ymm{i}" for i in range(16)] + [f"st{i}" for i in range(8)] + ["st"]
)
