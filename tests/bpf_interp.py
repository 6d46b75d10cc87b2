"""A reference eBPF interpreter for the JIT's tests, written from the ISA document, not from the JIT.

Documentation/bpf/standardization/instruction-set.rst gives the semantics;
the kernel adds what the JIT's input carries beyond it: arena accesses
(address = kern_vm_start + src + off; a fault clears a load's destination and
skips a store, as ex_handler_bpf() does), cast_user, and may_goto's per-frame
budget kept in the 8 bytes below each frame's stack. It decodes the raw slots
itself and shares no code with emu.bpf.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
MAX_LOOPS = 8 * 1024 * 1024
POISON = 0xDEAD_BEEF_DEAD_BEEF  # what a call leaves in R1..R5


class Fault(Exception):
    """An access to memory no region holds."""


class InterpError(Exception):
    """A program the interpreter cannot run (unsupported, or out of steps)."""


def sx(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


@dataclass
class Memory:
    regions: dict[int, bytearray] = field(default_factory=dict)

    def _find(self, addr: int, size: int) -> tuple[bytearray, int]:
        for base, buf in self.regions.items():
            if base <= addr and addr + size <= base + len(buf):
                return buf, addr - base
        raise Fault(hex(addr))

    def load(self, addr: int, size: int) -> int:
        buf, at = self._find(addr & M64, size)
        return int.from_bytes(buf[at:at + size], "little")

    def store(self, addr: int, size: int, value: int) -> None:
        buf, at = self._find(addr & M64, size)
        buf[at:at + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


SIZES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}


def _alu(op: int, dst: int, src: int, bits: int, off: int) -> int:
    """One ALU operation on `bits`-wide unsigned operands, ISA edge cases included; returns the unmasked result."""
    if op == 0x00:
        return dst + src
    if op == 0x10:
        return dst - src
    if op == 0x20:
        return dst * src
    if op == 0x30:  # DIV / SDIV
        if src == 0:
            return 0
        if off == 0:
            return dst // src
        a, b = sx(dst, bits), sx(src, bits)
        q = abs(a) // abs(b)
        return q if (a < 0) == (b < 0) else -q
    if op == 0x40:
        return dst | src
    if op == 0x50:
        return dst & src
    if op == 0x60:
        return dst << (src & (bits - 1))
    if op == 0x70:
        return dst >> (src & (bits - 1))
    if op == 0x80:
        return -dst
    if op == 0x90:  # MOD / SMOD
        if src == 0:
            return dst
        if off == 0:
            return dst % src
        a, b = sx(dst, bits), sx(src, bits)
        r = abs(a) % abs(b)
        return -r if a < 0 else r
    if op == 0xA0:
        return dst ^ src
    if op == 0xB0:  # MOV / MOVSX
        return sx(src, off) if off else src
    if op == 0xC0:
        return sx(dst, bits) >> (src & (bits - 1))
    raise InterpError(f"alu op {op:#x}")


def _cond(op: int, a: int, b: int, bits: int) -> bool:
    sa, sb = sx(a, bits), sx(b, bits)
    return {0x10: a == b, 0x20: a > b, 0x30: a >= b, 0x40: bool(a & b), 0x50: a != b, 0x60: sa > sb,
            0x70: sa >= sb, 0xA0: a < b, 0xB0: a <= b, 0xC0: sa < sb, 0xD0: sa <= sb}[op]


def _bswap(value: int, bits: int) -> int:
    return int.from_bytes((value & ((1 << bits) - 1)).to_bytes(bits // 8, "little"), "big")


@dataclass
class Frame:
    return_pc: int
    saved: list[int]  # R6..R10 of the caller


@dataclass
class Result:
    r0: int
    faults: list[int]  # the address of each faulting arena access, as ex_handler_bpf() reports it


def run(program: bytes, memory: Memory, regs: dict[int, int], stack_top: int, *, stack_depth: int = 512,
        frame_size: int = 1024, helpers: dict[int, Callable[..., int]] | None = None,
        kfuncs: dict[int, Callable[..., int]] | None = None, kern_vm_start: int = 0, user_vm_start: int = 0,
        max_steps: int = 1_000_000) -> Result:
    """Run from slot 0 until the main frame exits. Each frame's stack is frame_size bytes below stack_top,
    frames growing down; the may_goto budget sits at fp - round_up(stack_depth, 8) - 8."""
    slots = [struct.unpack_from("<BBhi", program, 8 * k) for k in range(len(program) // 8)]
    r = [0] * 11
    for k, v in regs.items():
        r[k] = v & M64
    r[10] = stack_top
    slot = -((stack_depth + 7) // 8 * 8) - 8
    memory.store(r[10] + slot, 8, MAX_LOOPS)
    frames: list[Frame] = []
    faults: list[int] = []
    pc = 0
    for _ in range(max_steps):
        code, regbyte, off, imm = slots[pc]
        dst, src = regbyte & 0xF, regbyte >> 4
        cls, op = code & 7, code & 0xF0
        pc += 1
        if cls in (4, 7):  # ALU, ALU64
            bits = 64 if cls == 7 else 32
            mask = (1 << bits) - 1
            if op == 0xD0:  # END
                width = imm
                if cls == 4 and not code & 0x08:  # TO_LE on a little-endian host: truncate
                    r[dst] = r[dst] & ((1 << width) - 1)
                else:
                    r[dst] = _bswap(r[dst], width)
                continue
            if cls == 7 and op == 0xB0 and code & 0x08 and off == 1:  # addr_space_cast
                low = r[src] & M32
                r[dst] = low | (user_vm_start & ~M32) if (imm == 1 << 16 and low) else low
                continue
            b = (r[src] if code & 0x08 else (imm & M64 if cls == 7 else imm & M32)) & mask
            r[dst] = _alu(op, r[dst] & mask, b, bits, off) & mask
        elif cls in (5, 6):  # JMP, JMP32
            if code == 0x85:
                pc = _call(src, imm, r, pc, frames, memory, helpers or {}, kfuncs or {}, frame_size, slot)
                continue
            if code == 0x95:
                if not frames:
                    return Result(r[0], faults)
                f = frames.pop()
                r[6:11] = f.saved
                pc = f.return_pc
                continue
            if code == 0xE5:  # may_goto
                left = memory.load(r[10] + slot, 8)
                if left == 0:
                    pc += off
                else:
                    memory.store(r[10] + slot, 8, left - 1)
                continue
            if op == 0x00:
                pc += imm if cls == 6 else off
                continue
            bits = 64 if cls == 5 else 32
            mask = (1 << bits) - 1
            b = r[src] if code & 0x08 else imm & M64
            if _cond(op, r[dst] & mask, b & mask, bits):
                pc += off
        elif cls == 0:  # LD: only ld_imm64
            if code != 0x18 or src == 4:
                raise InterpError(f"ld opcode {code:#x} src {src}")
            r[dst] = (imm & M32) | (slots[pc][3] & M32) << 32
            pc += 1
        elif code == 0xC2:  # nospec
            continue
        else:
            mode, size = code & 0xE0, SIZES[code & 0x18]
            arena = mode in (0xA0, 0xE0) or (cls == 1 and mode == 0xC0)
            load_acquire = cls == 3 and mode in (0xC0, 0xE0) and imm == 0x100
            base = r[src] if cls == 1 or load_acquire else r[dst]
            addr = ((kern_vm_start if arena else 0) + base + off) & M64
            try:
                _mem(cls, mode, size, dst, src, imm, addr, r, memory)
            except Fault:
                if not arena:
                    raise
                faults.append((base + off) & M64)  # what ex_handler_bpf() reports: the register plus off
                if cls == 1:
                    r[dst] = 0
    raise InterpError("out of steps")


def _mem(cls: int, mode: int, size: int, dst: int, src: int, imm: int, addr: int, r: list[int],
         memory: Memory) -> None:
    if cls == 1:  # LDX: MEM/PROBE_MEM32 zero-extend, MEMSX/PROBE_MEM32SX sign-extend
        value = memory.load(addr, size)
        r[dst] = sx(value, 8 * size) & M64 if mode in (0x80, 0xC0) else value
    elif cls == 2:
        memory.store(addr, size, imm)
    elif mode in (0x60, 0xA0):
        memory.store(addr, size, r[src])
    else:
        _atomic(imm, size, dst, src, addr, r, memory)


def _atomic(imm: int, size: int, dst: int, src: int, addr: int, r: list[int], memory: Memory) -> None:
    if imm == 0x100:  # LOAD_ACQ
        r[dst] = memory.load(addr, size)
        return
    if imm == 0x110:  # STORE_REL
        memory.store(addr, size, r[src])
        return
    mask = (1 << (8 * size)) - 1
    old = memory.load(addr, size)
    if imm == 0xF1:  # CMPXCHG
        if old == r[0] & mask:
            memory.store(addr, size, r[src])
        r[0] = old
        return
    if imm == 0xE1:  # XCHG
        memory.store(addr, size, r[src])
        r[src] = old
        return
    new = {0x00: old + r[src], 0x40: old | r[src], 0x50: old & r[src], 0xA0: old ^ r[src]}[imm & 0xF0]
    memory.store(addr, size, new)
    if imm & 1:  # FETCH
        r[src] = old


def _call(src: int, imm: int, r: list[int], pc: int, frames: list[Frame], memory: Memory,
          helpers: dict[int, Callable[..., int]], kfuncs: dict[int, Callable[..., int]], frame_size: int,
          slot: int) -> int:
    if src == 1:  # bpf-to-bpf: a new frame with its own stack and may_goto budget
        frames.append(Frame(pc, r[6:11]))
        r[10] -= frame_size
        memory.store(r[10] + slot, 8, MAX_LOOPS)
        return pc + imm
    table = helpers if src == 0 else kfuncs
    if imm not in table:
        raise InterpError(f"no function {imm} (src {src})")
    r[0] = table[imm](*r[1:6]) & M64
    r[1:6] = [POISON] * 5
    return pc
