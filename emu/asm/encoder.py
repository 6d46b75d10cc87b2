"""The bridge to keystone: one checked instruction at a time, symbols already values.

keystone 0.9.2 hangs or crashes on some malformed operands, so each operand
must parse before keystone sees it. Its own symbol resolver drops the fixup
addend, so every symbol is replaced by its value first; a `sym(%rip)` operand
is encoded twice, the second time with the displacement the first length gives.
"""

from __future__ import annotations

import contextlib
import os
import re

from keystone import (
    KS_ARCH_X86,
    KS_ERR_ASM_MNEMONICFAIL,
    KS_ERR_ASM_SYMBOL_MISSING,
    KS_MODE_64,
    KS_OPT_SYNTAX_ATT,
    Ks,
    KsError,
)

from .exprs import ExprError, check_syntax, evaluate
from .lexer import split_args
from .unit import Insn

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

    def _check(self, insn: Insn, head: str, operands: str) -> str | None:
        if not all(_MNEMONIC.fullmatch(w) for w in head.split()):
            return f"no such instruction: '{insn.source}'"
        if not operands:
            return None
        for op in split_args(operands):
            problem = self._check_operand(op, insn.syntax)
            if problem is not None:
                return f"invalid operand in '{insn.source}': {problem}"
        return None

    def _asm(self, insn: Insn, text: str) -> bytes:
        encoding, _count = self._ks[insn.syntax].asm(text, insn.address)
        return bytes(encoding or b"")

    def encode(self, insn: Insn, values: dict[str, int]) -> tuple[bytes | None, str | None]:
        """(bytes, None) or (None, error message), with the symbols of `values`."""
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
                target = evaluate(expr, values)
            except ExprError as e:
                return None, f"{e} in '{insn.source}'"
            hole = "0x0(%rip)" if insn.syntax == "att" else "[rip + 0x0]"
            operands = operands[:rip.start()] + hole + operands[rip.end():]
        operands, missing = self._substitute(operands, values)
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


_OPERAND_KEYWORDS = frozenset(
    [f"r{i}{s}" for i in range(8, 16) for s in ("", "d", "w", "b")]
    + [p + r for r in ("ax", "bx", "cx", "dx", "si", "di", "sp", "bp", "ip") for p in ("r", "e", "")]
    + ["al", "ah", "bl", "bh", "cl", "ch", "dl", "dh", "sil", "dil", "spl", "bpl",
       "cs", "ds", "es", "fs", "gs", "ss", "byte", "word", "dword", "qword", "xmmword", "ptr", "tbyte",
       "rflags", "eflags", "offset", "rel", "near", "far", "short", "rip"]
    + [f"cr{i}" for i in range(9)] + [f"dr{i}" for i in range(8)]
    + [f"xmm{i}" for i in range(16)] + [f"ymm{i}" for i in range(16)] + [f"st{i}" for i in range(8)] + ["st"]
)
