"""A small eBPF assembler and the bpf_conformance `.data` format, for the JIT's tests.

The syntax is ubpf's, as bpf_conformance's tests use it: `mov %r0, 1`, a `32`
suffix for ALU/JMP32 (`add32`, `jeq32`), `lddw %r0, 0x..`, `ldxw %r0, [%r1+4]`,
`stw [%r1+4], 5`, `stxdw [%r10-8], %r1`, `jeq %r1, 5, +2` or a label, `ja`,
`call N` (helper), `exit`. Added for the v4 ISA and the kernel's forms:
`sdiv`/`smod`, `movsx8`/`movsx16`/`movsx32` (and `movsx8_32`, `movsx16_32`),
`le16`/`be32`/`swap64`, `ldxbsx`/`ldxhsx`/`ldxwsx`, `gotol`, `may_goto`,
`call kfunc N`, `call local L`, `callx %r1`, `tail_call`, `nospec`,
`ldfunc %r1, L` (ld_imm64 of BPF_PSEUDO_FUNC), `cast_user %r1, %r2`,
`lock[32] OP [%r1+0], %r2` with OP add/and/or/xor, fetch_add.., xchg, cmpxchg,
`ldacqw %r0, [%r1+0]` / `strelw [%r1+0], %r2` (load-acquire, store-release, any
size), and a `.a` suffix on loads, stores and atomics for the arena probe modes.

A `.data` file has `-- asm` or `-- raw` (one little-endian 64-bit slot per
line), optionally `-- mem` (hex bytes, passed in r1 with its length in r2),
and `-- result` (the expected r0) or `-- error` (text the error must contain).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

ALU_OPS = {"add": 0x00, "sub": 0x10, "mul": 0x20, "div": 0x30, "sdiv": 0x30, "or": 0x40, "and": 0x50, "lsh": 0x60,
           "rsh": 0x70, "neg": 0x80, "mod": 0x90, "smod": 0x90, "xor": 0xA0, "mov": 0xB0, "arsh": 0xC0}
JMP_OPS = {"jeq": 0x10, "jgt": 0x20, "jge": 0x30, "jset": 0x40, "jne": 0x50, "jsgt": 0x60, "jsge": 0x70,
           "jlt": 0xA0, "jle": 0xB0, "jslt": 0xC0, "jsle": 0xD0}
SIZES = {"b": 0x10, "h": 0x08, "w": 0x00, "dw": 0x18}
ATOMIC_OPS = {"add": 0x00, "or": 0x40, "and": 0x50, "xor": 0xA0, "xchg": 0xE1, "cmpxchg": 0xF1}
_MEM = re.compile(r"\[\s*%r(\d+)\s*(?:([+-])\s*(\w+))?\s*\]")


class AsmSyntaxError(ValueError):
    pass


def _reg(text: str) -> int:
    if not re.fullmatch(r"%r\d+", text):
        raise AsmSyntaxError(f"not a register: {text}")
    return int(text[2:])


def _num(text: str) -> int:
    return int(text, 0)


def _s32(value: int) -> int:
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value >> 31 else value


def _mem(text: str) -> tuple[int, int]:
    m = _MEM.fullmatch(text.strip())
    if not m:
        raise AsmSyntaxError(f"not a memory operand: {text}")
    off = _num(m.group(3)) if m.group(3) else 0
    return int(m.group(1)), -off if m.group(2) == "-" else off


def _slot(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, src << 4 | dst, off, _s32(imm))


def assemble(text: str) -> bytes:
    """Two passes: the first counts slots to place labels, the second encodes."""
    lines = []
    for raw in text.splitlines():
        line = raw.split("#")[0].strip()
        if line:
            lines.append(line)
    labels, pc = {}, 0
    for line in lines:
        if line.endswith(":"):
            labels[line[:-1]] = pc
        else:
            pc += 2 if line.split()[0] in ("lddw", "ldfunc") else 1
    out, pc = bytearray(), 0
    for line in lines:
        if line.endswith(":"):
            continue
        slots = _encode(line, pc, labels)
        out += slots
        pc += len(slots) // 8
    return bytes(out)


def _target(text: str, pc: int, labels: dict[str, int]) -> int:
    """A jump operand: +N/-N as written, or a label as the offset from the next slot."""
    if text[0] in "+-":
        return _num(text)
    if text not in labels:
        raise AsmSyntaxError(f"unknown label {text}")
    return labels[text] - pc - 1


def _encode(line: str, pc: int, labels: dict[str, int]) -> bytes:
    mnemonic, _, rest = line.partition(" ")
    ops = [o.strip() for o in re.split(r",(?![^\[]*\])", rest)] if rest.strip() else []
    arena = mnemonic.endswith(".a")
    mnemonic = mnemonic.removesuffix(".a")
    if mnemonic == "exit":
        return _slot(0x95)
    if mnemonic == "nospec":
        return _slot(0xC2)
    if mnemonic == "tail_call":
        return _slot(0xF5)
    if mnemonic == "ja":
        return _slot(0x05, off=_target(ops[0], pc, labels))
    if mnemonic == "gotol":
        return _slot(0x06, imm=_target(ops[0], pc, labels))
    if mnemonic == "may_goto":
        return _slot(0xE5, off=_target(ops[0], pc, labels))
    if mnemonic == "call":
        words = rest.split()
        if len(words) == 1:
            return _slot(0x85, imm=_num(words[0]))
        if words[0] == "kfunc":
            return _slot(0x85, src=2, imm=_num(words[1]))
        if words[0] == "local":
            return _slot(0x85, src=1, imm=_target(words[1], pc, labels))
        raise AsmSyntaxError(f"bad call: {line}")
    if mnemonic == "callx":
        return _slot(0x8D, dst=_reg(ops[0]))
    if mnemonic == "lddw":
        value = _num(ops[1]) & (2**64 - 1)
        return _slot(0x18, _reg(ops[0]), imm=value) + _slot(0, imm=value >> 32)
    if mnemonic == "ldfunc":
        return _slot(0x18, _reg(ops[0]), src=4, imm=_target(ops[1], pc, labels)) + _slot(0)
    if mnemonic == "cast_user":
        return _slot(0xBF, _reg(ops[0]), _reg(ops[1]), off=1, imm=1 << 16)
    if mnemonic in ("lock", "lock32"):
        return _atomic(mnemonic, rest, arena)
    m = re.fullmatch(r"(le|be|swap)(16|32|64)", mnemonic)
    if m:
        code = {"le": 0xD4, "be": 0xDC, "swap": 0xD7}[m.group(1)]
        return _slot(code, _reg(ops[0]), imm=int(m.group(2)))
    m = re.fullmatch(r"ldx(dw|w|h|b)(sx)?", mnemonic)
    if m:
        mode = (0xC0 if arena else 0x80) if m.group(2) else (0xA0 if arena else 0x60)
        src, off = _mem(ops[1])
        return _slot(0x01 | mode | SIZES[m.group(1)], _reg(ops[0]), src, off)
    m = re.fullmatch(r"st(x?)(dw|w|h|b)", mnemonic)
    if m:
        dst, off = _mem(ops[0])
        mode = 0xA0 if arena else 0x60
        if m.group(1):
            return _slot(0x03 | mode | SIZES[m.group(2)], dst, _reg(ops[1]), off)
        return _slot(0x02 | mode | SIZES[m.group(2)], dst, off=off, imm=_num(ops[1]))
    m = re.fullmatch(r"(ldacq|strel)(dw|w|h|b)", mnemonic)
    if m:
        code = (0xE3 if arena else 0xC3) | SIZES[m.group(2)]
        if m.group(1) == "ldacq":
            src, off = _mem(ops[1])
            return _slot(code, _reg(ops[0]), src, off, 0x100)
        dst, off = _mem(ops[0])
        return _slot(code, dst, _reg(ops[1]), off, 0x110)
    m = re.fullmatch(r"movsx(8|16|32)(_32)?", mnemonic)
    if m:
        return _slot(0xBC if m.group(2) else 0xBF, _reg(ops[0]), _reg(ops[1]), off=int(m.group(1)))
    base = mnemonic.removesuffix("32")
    is32 = base != mnemonic
    if base in JMP_OPS:
        cls = 0x06 if is32 else 0x05
        return _operand(cls | JMP_OPS[base], ops[0], ops[1], _target(ops[2], pc, labels))
    if base in ALU_OPS:
        cls = 0x04 if is32 else 0x07
        off = 1 if base in ("sdiv", "smod") else 0
        if base == "neg":
            return _slot(cls | 0x80, _reg(ops[0]))
        return _operand(cls | ALU_OPS[base], ops[0], ops[1], off)
    raise AsmSyntaxError(f"unknown mnemonic {mnemonic!r}")


def _operand(code: int, dst: str, operand: str, off: int) -> bytes:
    if operand.startswith("%"):
        return _slot(code | 0x08, _reg(dst), _reg(operand), off)
    return _slot(code, _reg(dst), off=off, imm=_num(operand))


def _atomic(mnemonic: str, rest: str, arena: bool) -> bytes:
    op, _, operands = rest.strip().partition(" ")
    mem, src = [o.strip() for o in re.split(r",(?![^\[]*\])", operands)]
    fetch = op.startswith("fetch_")
    imm = ATOMIC_OPS[op.removeprefix("fetch_")] | (1 if fetch else 0)
    dst, off = _mem(mem)
    code = (0xE3 if arena else 0xC3) | (0x00 if mnemonic == "lock32" else 0x18)
    return _slot(code, dst, _reg(src), off, imm)


@dataclass(frozen=True)
class Case:
    name: str
    program: bytes
    mem: bytes
    result: int | None
    error: str | None


def parse_data(path: Path) -> Case:
    sections: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        if line.startswith("-- "):
            current = line[3:].strip()
            sections[current] = []
        elif current is not None and line.strip() and not line.lstrip().startswith("#"):
            sections[current].append(line)
    if "raw" in sections:
        program = b"".join(struct.pack("<Q", int(w, 16)) for w in sections["raw"])
    else:
        program = assemble("\n".join(sections["asm"]))
    mem = bytes.fromhex("".join(sections.get("mem", [])))
    result = _num(sections["result"][0].strip()) if "result" in sections else None
    error = " ".join(s.strip() for s in sections["error"]) if "error" in sections else None
    return Case(path.stem, program, mem, result, error)
