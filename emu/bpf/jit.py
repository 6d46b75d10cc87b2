"""The eBPF-to-x86-64 JIT, after arch/x86/net/bpf_jit_comp.c.

This module is the driver: bpf_int_jit_compile()'s passes, the subprogram
layout and the instruction cases that need the pass state (jumps, calls, arena
accesses); the byte encoders are jit_emit.py's and the ALU cases jit_alu.py's.
Each emits the kernel's bytes, so that images, instruction lengths and
exception-table entries are the ones a kernel would produce. The configuration modelled is a kernel without
CONFIG_X86_KERNEL_IBT/CFI (no ENDBR, no kCFI preamble), without retpolines,
rethunk or SLS padding (`ret` alone), without private stacks or tail calls, on
a CPU without BMI2 (shifts by a register go through CL).

Layout: one image at the load address holding every subprogram in instruction
order, each starting with its own prologue as jit_subprogs() JITs them; the
kernel places them in separate allocations, which changes only the call
displacements. Subprograms start at instruction 0 and at every target of a
bpf-to-bpf call (src 1) or of an ld_imm64 of BPF_PSEUDO_FUNC (src 4).

What the verifier would have patched in before the JIT is emitted inline so
that instruction indices stay the caller's: the ISA's div/mod by zero and
INT_MIN / -1 results (do_misc_fixups), the zero extension of R0 after a 32-bit
cmpxchg, and may_goto as a per-frame counter of BPF_MAX_LOOPS in the 8 bytes
below the frame's stack, set in the prologue.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from ..errors import EmuError
from ..x86.extable import ExtableEntry
from .insn import (
    BPF_ALU,
    BPF_ALU64,
    BPF_AND,
    BPF_ATOMIC,
    BPF_CALL,
    BPF_CMPXCHG,
    BPF_DW,
    BPF_EXIT,
    BPF_FETCH,
    BPF_FUNC_TAIL_CALL,
    BPF_HELPER_CALL,
    BPF_JA,
    BPF_JCOND,
    BPF_JEQ,
    BPF_JGE,
    BPF_JGT,
    BPF_JLE,
    BPF_JLT,
    BPF_JMP,
    BPF_JMP32,
    BPF_JNE,
    BPF_JSET,
    BPF_JSGE,
    BPF_JSGT,
    BPF_JSLE,
    BPF_JSLT,
    BPF_LD,
    BPF_LD_IMM64,
    BPF_LDX,
    BPF_LOAD_ACQ,
    BPF_MAY_GOTO,
    BPF_MEM,
    BPF_MEMSX,
    BPF_MOV,
    BPF_NOSPEC,
    BPF_OR,
    BPF_PROBE_MEM32,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_REG_FP,
    BPF_ST,
    BPF_STORE_REL,
    BPF_STX,
    BPF_TAIL_CALL,
    BPF_W,
    BPF_X,
    BPF_XOR,
    CAST_USER_IMM,
    Insn,
    check,
    ld_imm64,
)
from .jit_alu import emit_alu, emit_cast_user
from .jit_emit import (
    BPF_REG_0,
    X86_JA,
    X86_JAE,
    X86_JB,
    X86_JBE,
    X86_JE,
    X86_JG,
    X86_JGE,
    X86_JL,
    X86_JLE,
    X86_JNE,
    X86_REG_R12,
    add_1reg,
    add_2reg,
    emit_atomic,
    emit_atomic_fetch_loop,
    emit_atomic_index,
    emit_atomic_ld_st,
    emit_atomic_ld_st_index,
    emit_call,
    emit_ldsx,
    emit_ldsx_index,
    emit_ldx,
    emit_ldx_index,
    emit_mov_imm32,
    emit_mov_imm64,
    emit_mov_reg,
    emit_nops,
    emit_prologue,
    emit_return,
    emit_st,
    emit_st_index,
    emit_stx,
    emit_stx_index,
    is_imm8,
    is_imm8_jmp_offset,
    maybe_emit_1mod,
    maybe_emit_mod,
    pop_callee_regs,
    push_callee_regs,
    s32,
)
from .jit_extable import REG2PT_REGS, ArenaAccess

MAX_BPF_STACK = 512
BPF_MAX_LOOPS = 8 * 1024 * 1024  # may_goto's per-frame budget and bpf_loop()'s bound (include/linux/bpf.h)
E2BIG = 7
MAX_PASSES = 20
PADDING_PASSES = MAX_PASSES - 5

_X86_NAME = tuple(REG2PT_REGS)  # reg2pt_regs[] is in BPF register order, R0..R9
_JMP_COND = {BPF_JEQ: X86_JE, BPF_JSET: X86_JNE, BPF_JNE: X86_JNE, BPF_JGT: X86_JA, BPF_JLT: X86_JB,
             BPF_JGE: X86_JAE, BPF_JLE: X86_JBE, BPF_JSGT: X86_JG, BPF_JSLT: X86_JL, BPF_JSGE: X86_JGE,
             BPF_JSLE: X86_JLE}

CallResolver = Callable[[int, int], "int | None"]
"""resolve(src_reg, imm) -> absolute address, or None if unknown: src_reg 0 is a helper id, 2 a kfunc's BTF id."""


class JitError(EmuError):
    """A program this JIT refuses, as the kernel's JIT or verifier would: says which instruction and why."""

    def __init__(self, index: int | None, message: str):
        self.index, self.message = index, message
        super().__init__(message if index is None else f"insn {index}: {message}")


@dataclass(frozen=True)
class JitImage:
    """A JITed program. Addresses are absolute; insn_ranges[i] is what BPF slot i became (the second slot of an
    ld_imm64 gets the empty range at the end of the first); extable holds one EX_TYPE_BPF entry per arena access."""

    address: int
    code: bytes
    extable: tuple[ExtableEntry, ...]
    insn_ranges: tuple[tuple[int, int], ...]
    subprogs: tuple[int, ...]  # entry addresses, the main program first
    subprog_insns: tuple[int, ...]  # the first instruction index of each subprogram
    frame_sizes: tuple[int, ...]  # each subprogram's `sub rsp`: its rounded stack depth (+8 for may_goto's counter)
    passes: int

    @property
    def end(self) -> int:
        return self.address + len(self.code)

    def insn_at(self, address: int) -> int | None:
        """The BPF instruction whose code holds `address`; None in a prologue or outside the image."""
        i = bisect.bisect_right(self._starts, address) - 1
        while i >= 0 and self.insn_ranges[i][0] == self.insn_ranges[i][1]:
            i -= 1
        if i >= 0 and self.insn_ranges[i][0] <= address < self.insn_ranges[i][1]:
            return i
        return None

    @cached_property
    def _starts(self) -> list[int]:
        return [start for start, _ in self.insn_ranges]

    def __repr__(self) -> str:
        return (f"JitImage({self.address:#x}-{self.end:#x}, {len(self.code)} bytes, {len(self.insn_ranges)} insns, "
                f"{len(self.subprogs)} subprogs, {len(self.extable)} extable entries, {self.passes} passes)")


@dataclass
class _Func:
    """A subprogram, as jit_subprogs() sees it: its own bpf_prog, frame, callee-saved set and epilogue."""

    lo: int
    hi: int
    regs_used: tuple[bool, bool, bool, bool]
    stack_depth: int
    may_goto_slot: int | None  # rbp-relative offset of the may_goto counter
    entry: int = 0  # image offset of the prologue, updated every pass
    cleanup: int = 0  # image offset of the epilogue (ctx->cleanup_addr)


def detect_reg_usage(insns: list[Insn]) -> tuple[bool, bool, bool, bool]:
    """detect_reg_usage(): which of R6..R9 (rbx, r13, r14, r15) the prologue must save."""
    regs = {r for insn in insns for r in (insn.dst, insn.src)}
    return (6 in regs, 7 in regs, 8 in regs, 9 in regs)


class _Jit:
    """One program through bpf_int_jit_compile()'s passes; `jit_pass` is one run of the kernel's do_jit()."""

    def __init__(self, insns: list[Insn], address: int, kern_vm_start: int | None, user_vm_start: int | None,
                 resolve: CallResolver | None, stack_depth: int | Sequence[int],
                 arena_args: Mapping[int, Sequence[tuple[int, bool]]], loops: Mapping[int, tuple[int, int]]):
        check(insns)
        self.arena_args, self.loops = arena_args, loops
        self.insns, self.address = insns, address
        self.kern_vm_start, self.user_vm_start, self.resolve = kern_vm_start, user_vm_start, resolve
        self.second_slots = {i + 1 for i, insn in enumerate(insns) if insn.code == BPF_LD_IMM64}
        self.func_of = [0] * len(insns)
        self.funcs = self._subprogs(stack_depth)
        self.calls = {i: self._call_target(i) for i, insn in enumerate(insns)
                      if insn.cls == BPF_JMP and insn.op == BPF_CALL
                      and (insn.src != BPF_PSEUDO_CALL or insn.source == BPF_X)  # a callx is refused, any src
                      and i not in loops}
        self._check_jumps()
        n = len(insns)
        self.begin = [64 * (i + 1) for i in range(n)]
        self.end = [64 * (i + 2) for i in range(n)]
        for f in self.funcs:
            f.entry = self.begin[f.lo] - 64
            f.cleanup = 64 * (n + 1)
        self.padding = False
        self.accesses: list[tuple[int, ArenaAccess]] = []

    def _subprogs(self, stack_depth: int | Sequence[int]) -> list[_Func]:
        """check_subprogs(): a subprogram starts at 0 and at every bpf-to-bpf call or callback target."""
        if not self.insns:
            raise JitError(None, "the program has no instructions")
        starts = {0}
        for i, insn in enumerate(self.insns):
            if (insn.code == BPF_JMP | BPF_CALL and insn.src == BPF_PSEUDO_CALL) or (
                    insn.code == BPF_LD_IMM64 and insn.src == BPF_PSEUDO_FUNC):
                target = i + 1 + insn.imm
                if not 0 <= target < len(self.insns) or target in self.second_slots:
                    raise JitError(i, f"call to insn {target}, which is not an instruction of the program")
                starts.add(target)
        bounds = sorted(starts) + [len(self.insns)]
        depths = [stack_depth] * len(starts) if isinstance(stack_depth, int) else list(stack_depth)
        if len(depths) != len(starts):
            raise JitError(None, f"{len(depths)} stack depths given for {len(starts)} subprograms")
        funcs = []
        for k, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False)):
            body = self.insns[lo:hi]
            last = self.insns[hi - 1 - (hi - 1 in self.second_slots)]
            if last.code not in (BPF_JMP | BPF_EXIT, BPF_JMP | BPF_JA, BPF_JMP32 | BPF_JA):
                raise JitError(hi - 1, "last insn is not an exit or jmp")
            loop_slots = 3 * 8 if any(lo <= i < hi for i in self.loops) else 0  # optimize_bpf_loop()'s, past 512
            if not 0 <= depths[k] <= MAX_BPF_STACK + loop_slots:
                raise JitError(lo, f"stack depth {depths[k]} is not within 0..{MAX_BPF_STACK + loop_slots}")
            depth = (depths[k] + 7) & ~7
            slot = None
            if any(insn.code == BPF_JMP | BPF_JCOND for insn in body):
                depth += 8
                slot = -depth
            used = detect_reg_usage(body)
            if loop_slots:  # the inlined loop's R6..R8
                used = (True, True, True, used[3])
            funcs.append(_Func(lo, hi, used, depth, slot))
            self.func_of[lo:hi] = [k] * (hi - lo)
        return funcs

    def _call_target(self, i: int) -> int:
        insn = self.insns[i]
        if insn.source == BPF_X:
            raise JitError(i, "callx: Linux does not implement indirect calls")
        if insn.src == BPF_HELPER_CALL and insn.imm == BPF_FUNC_TAIL_CALL:
            raise JitError(i, "bpf_tail_call: tail calls are not supported by this JIT")
        what = "helper" if insn.src == BPF_HELPER_CALL else "kfunc with BTF id"
        func = self.resolve(insn.src, insn.imm) if self.resolve is not None else None
        if func is None:
            raise JitError(i, f"unknown {what} {insn.imm}")
        return func

    def _check_jumps(self) -> None:
        """check_cfg()'s "jump out of range": a jump stays inside its subprogram and lands on an instruction."""
        for i, insn in enumerate(self.insns):
            target = self._jump_target(i, insn)
            if target is None:
                continue
            f = self.funcs[self.func_of[i]]
            if not f.lo <= target < f.hi or target in self.second_slots:
                raise JitError(i, f"jump out of range from insn {i} to {target}")

    @staticmethod
    def _jump_target(i: int, insn: Insn) -> int | None:
        if insn.cls not in (BPF_JMP, BPF_JMP32) or insn.op in (BPF_CALL, BPF_EXIT, BPF_TAIL_CALL):
            return None
        return i + 1 + (insn.imm if insn.code == BPF_JMP32 | BPF_JA else insn.off)

    def jit_pass(self) -> bytearray:
        """do_jit(): one pass over every subprogram, updating begin/end (the kernel's addrs[]) in place."""
        image = bytearray()
        self.accesses = []
        insns = self.insns
        for f in self.funcs:
            f.entry = len(image)
            self._emit_prologue(image, f)
            seen_exit = False
            i = f.lo
            while i < f.hi:
                insn = insns[i]
                self.begin[i] = len(image)
                t = bytearray()
                if insn.code == BPF_JMP | BPF_EXIT:
                    if seen_exit:
                        self._emit_jmp(t, i, f.cleanup - self.end[i])
                    else:
                        seen_exit = True
                        f.cleanup = len(image)
                        pop_callee_regs(t, f.regs_used)
                        if self.kern_vm_start is not None:
                            t += b"\x41\x5c"  # pop r12
                        t.append(0xC9)  # leave
                        emit_return(t)
                else:
                    self._emit_insn(t, i, insn)
                image += t
                self.end[i] = len(image)
                if insn.code == BPF_LD_IMM64:
                    i += 1
                    self.begin[i] = self.end[i] = len(image)
                i += 1
        return image

    def _emit_prologue(self, image: bytearray, f: _Func) -> None:
        emit_prologue(image, f.stack_depth)
        if self.kern_vm_start is not None:
            image += b"\x41\x54"  # push r12
        push_callee_regs(image, f.regs_used)
        if self.kern_vm_start is not None:
            emit_mov_imm64(image, X86_REG_R12, self.kern_vm_start)
        if f.may_goto_slot is not None:
            emit_st(image, BPF_DW, BPF_REG_FP, f.may_goto_slot, BPF_MAX_LOOPS)

    def _pad(self, t: bytearray, i: int, short: int, allowed: tuple[int, ...], what: str) -> None:
        """jmp_padding: in a padded pass, nops before a jump of `short` bytes make up what it shrank by
        (INSN_SZ_DIFF against the previous pass), so the image can no longer shrink."""
        if self.padding:
            nops = (self.end[i] - self.begin[i]) - len(t) - short
            if nops not in allowed:
                raise JitError(i, f"unexpected {what} padding: {nops} bytes")
            emit_nops(t, nops)

    def _emit_cond_jmp(self, t: bytearray, i: int, jmp_cond: int, offset: int) -> None:
        """do_jit()'s emit_cond_jmp label: Jcc rel8 if it fits, else rel32."""
        if is_imm8_jmp_offset(offset):
            self._pad(t, i, 2, (0, 4), "jmp_cond")
            t += bytes((jmp_cond, offset & 0xFF))
        else:
            t += bytes((0x0F, jmp_cond + 0x10)) + s32(offset)

    def _emit_jmp(self, t: bytearray, i: int, offset: int) -> None:
        """do_jit()'s emit_jmp label: EB rel8 or E9 rel32."""
        if is_imm8_jmp_offset(offset):
            self._pad(t, i, 2, (0, 3), "jump")
            t += bytes((0xEB, offset & 0xFF))
        else:
            t.append(0xE9)
            t += s32(offset)

    def _jump_offset(self, i: int, delta: int) -> int:
        """addrs[i + off] - addrs[i]: from the end of this instruction to the start of the target."""
        return self.begin[i + 1 + delta] - self.end[i]

    def _emit_insn(self, t: bytearray, i: int, insn: Insn) -> None:
        cls = insn.cls
        if cls in (BPF_ALU, BPF_ALU64):
            self._emit_alu(t, i, insn)
        elif cls in (BPF_JMP, BPF_JMP32):
            self._emit_jmp_class(t, i, insn)
        elif insn.code == BPF_LD_IMM64:
            if insn.src == BPF_PSEUDO_FUNC:
                target = self.funcs[self.func_of[i + 1 + insn.imm]]
                emit_mov_imm64(t, insn.dst, self.address + target.entry)
            else:
                emit_mov_imm64(t, insn.dst, ld_imm64(insn, self.insns[i + 1]))
        elif cls == BPF_LD:
            raise JitError(i, f"{insn.name}: legacy packet loads are rewritten by the verifier before the JIT")
        else:
            self._emit_mem(t, i, insn)

    def _emit_alu(self, t: bytearray, i: int, insn: Insn) -> None:
        """addr_space_cast(cast_user) needs the program's arena; every other ALU case is emit_alu()'s."""
        if insn.code == BPF_ALU64 | BPF_MOV | BPF_X and insn.off == 1:
            if insn.imm != CAST_USER_IMM:
                raise JitError(i, "addr_space_cast(cast_kern) reaches the JIT only after the verifier "
                                  "lowers it to a 32-bit mov")
            if self.user_vm_start is None:
                raise JitError(i, "addr_space_cast insn can only be used in a program that has an arena")
            emit_cast_user(t, insn.dst, insn.src, self.user_vm_start)
        else:
            emit_alu(t, insn)

    def _emit_jmp_class(self, t: bytearray, i: int, insn: Insn) -> None:
        op, dst, is64 = insn.op, insn.dst, insn.cls == BPF_JMP
        if op == BPF_CALL:
            self._emit_call(t, i, insn)
        elif op == BPF_JA:
            delta = insn.imm if insn.cls == BPF_JMP32 else insn.off
            offset = -2 if delta == -1 else self._jump_offset(i, delta)  # a JA to itself is always jmp -2
            if offset:
                self._emit_jmp(t, i, offset)
            else:
                self._pad(t, i, 0, (0, 2, 5), "nop jump")
        elif op == BPF_TAIL_CALL:
            raise JitError(i, "bpf_tail_call: tail calls are not supported by this JIT")
        elif op == BPF_JCOND:
            if insn.src != BPF_MAY_GOTO:
                raise JitError(i, f"unknown conditional pseudo jump (src {insn.src})")
            self._emit_may_goto(t, i, insn)
        else:
            if insn.source == BPF_X:
                maybe_emit_mod(t, dst, insn.src, is64)
                t += bytes((0x85 if op == BPF_JSET else 0x39, add_2reg(0xC0, dst, insn.src)))
            elif op == BPF_JSET:
                maybe_emit_1mod(t, dst, is64)
                t += bytes((0xF7, add_1reg(0xC0, dst)))
                t += s32(insn.imm)
            elif insn.imm == 0:
                maybe_emit_mod(t, dst, dst, is64)
                t += bytes((0x85, add_2reg(0xC0, dst, dst)))
            else:
                maybe_emit_1mod(t, dst, is64)
                if is_imm8(insn.imm):
                    t += bytes((0x83, add_1reg(0xF8, dst), insn.imm & 0xFF))
                else:
                    t += bytes((0x81, add_1reg(0xF8, dst)))
                    t += s32(insn.imm)
            self._emit_cond_jmp(t, i, _JMP_COND[op], self._jump_offset(i, insn.off))

    def _emit_may_goto(self, t: bytearray, i: int, insn: Insn) -> None:
        """may_goto: if the frame's counter is 0, jump; else count down. sub 1 borrows exactly at 0 and adc puts the
        borrow back, so the counter stays 0 and CF says "spent" for the closing jb."""
        slot: int = self.funcs[self.func_of[i]].may_goto_slot  # type: ignore[assignment]  # a may_goto's function has one
        for ext, imm in ((5, 1), (2, 0)):  # sub qword [rbp + slot], 1; adc qword [rbp + slot], 0
            if is_imm8(slot):
                t += bytes((0x48, 0x83, add_1reg(0x40 | ext << 3, BPF_REG_FP), slot & 0xFF, imm))
            else:
                t += bytes((0x48, 0x83, add_1reg(0x80 | ext << 3, BPF_REG_FP))) + s32(slot) + bytes((imm,))
        self._emit_cond_jmp(t, i, X86_JB, self._jump_offset(i, insn.off))

    def _emit_call(self, t: bytearray, i: int, insn: Insn) -> None:
        if i in self.loops:
            self._emit_bpf_loop(t, i, *self.loops[i])
            return
        for regno, nullable in self.arena_args.get(i, ()):
            self._emit_arena_arg(t, regno, nullable)
        ip = self.address + self.begin[i] + len(t)
        if insn.src == BPF_PSEUDO_CALL:
            func = self.address + self.funcs[self.func_of[i + 1 + insn.imm]].entry
        else:
            func = self.calls[i]
        if not emit_call(t, func, ip):
            raise JitError(i, f"Target call {func:#x} is out of range of {ip:#x}")

    def _emit_bpf_loop(self, t: bytearray, i: int, callback: int, stack_base: int) -> None:
        """inline_bpf_loop()'s instructions, JITed: -E2BIG past BPF_MAX_LOOPS; else R6..R8 spilled and used as the
        bound, the counter and the ctx, the callback called with (counter, ctx) until it returns non-zero or the
        count is reached; R0 the count; R6..R8 restored."""
        r0, r1, r2, r3, r6, r7, r8 = 0, 1, 2, 3, 6, 7, 8
        maybe_emit_1mod(t, r1, True)
        t += bytes((0x81, add_1reg(0xF8, r1))) + s32(BPF_MAX_LOOPS)  # cmp r1, BPF_MAX_LOOPS
        too_many = bytearray()
        emit_mov_imm32(too_many, False, r0, -E2BIG)
        t += bytes((X86_JBE, len(too_many) + 2)) + too_many
        t += bytes((0xEB, 0))  # jmp to the end, patched below
        over = len(t)
        for k, reg in enumerate((r6, r7, r8)):
            emit_stx(t, BPF_DW, BPF_REG_FP, reg, stack_base + k * 8)
        emit_mov_reg(t, True, r6, r1)
        emit_mov_imm32(t, False, r7, 0)
        emit_mov_reg(t, True, r8, r3)
        head = len(t)
        maybe_emit_mod(t, r7, r6, True)
        t += bytes((0x39, add_2reg(0xC0, r7, r6), X86_JAE, 0))  # cmp r7, r6; jae done, patched below
        leave = len(t)
        emit_mov_reg(t, True, r1, r7)
        emit_mov_reg(t, True, r2, r8)
        func = self.address + self.funcs[self.func_of[callback]].entry
        ip = self.address + self.begin[i] + len(t)
        if not emit_call(t, func, ip):
            raise JitError(i, f"Target call {func:#x} is out of range of {ip:#x}")
        maybe_emit_1mod(t, r7, True)
        t += bytes((0x83, add_1reg(0xC0, r7), 1))  # add r7, 1
        t += bytes((0x48, 0x85, 0xC0, X86_JE, (head - (len(t) + 5)) & 0xFF))  # test rax, rax; je head
        t[leave - 1] = len(t) - leave
        emit_mov_reg(t, True, r0, r7)
        for k, reg in enumerate((r6, r7, r8)):
            emit_ldx(t, BPF_DW, reg, BPF_REG_FP, stack_base + k * 8)
        t[over - 1] = len(t) - over

    @staticmethod
    def _emit_arena_arg(t: bytearray, regno: int, nullable: bool) -> None:
        """An `__arena` kfunc argument, rebased before the call: `mov32 rX, rX; add rX, r12`, a
        nullable one only when it is not zero (`test rX, rX; je` over the add)."""
        emit_mov_reg(t, False, regno, regno)
        add = bytearray()
        maybe_emit_mod(add, regno, X86_REG_R12, True)
        add += bytes((0x01, add_2reg(0xC0, regno, X86_REG_R12)))
        if nullable:
            maybe_emit_mod(t, regno, regno, False)
            t += bytes((0x85, add_2reg(0xC0, regno, regno), X86_JE, len(add)))
        t += add

    def _emit_mem(self, t: bytearray, i: int, insn: Insn) -> None:
        cls, mode, size, dst, src, off = insn.cls, insn.mode, insn.size, insn.dst, insn.src, insn.off
        if cls == BPF_LDX and mode == BPF_MEM:
            emit_ldx(t, size, dst, src, off)
        elif cls == BPF_LDX and mode == BPF_MEMSX:
            emit_ldsx(t, size, dst, src, off)
        elif cls == BPF_ST and mode == BPF_MEM:
            emit_st(t, size, dst, off, insn.imm)
        elif cls == BPF_ST and mode == BPF_NOSPEC:
            t += b"\x0f\xae\xe8"  # lfence
        elif cls == BPF_STX and mode == BPF_MEM:
            emit_stx(t, size, dst, src, off)
        elif cls == BPF_STX and mode == BPF_ATOMIC:
            if insn.imm in (BPF_LOAD_ACQ, BPF_STORE_REL):
                emit_atomic_ld_st(t, insn.imm, dst, src, off, size)
            elif insn.imm in (BPF_AND | BPF_FETCH, BPF_OR | BPF_FETCH, BPF_XOR | BPF_FETCH):
                emit_atomic_fetch_loop(t, insn)
            else:
                emit_atomic(t, insn.imm, dst, src, off, size)
                self._zext_cmpxchg(t, insn)
        else:
            self._emit_arena(t, i, insn)

    @staticmethod
    def _zext_cmpxchg(t: bytearray, insn: Insn) -> None:
        """The verifier's BPF_ZEXT_REG(R0) after a 32-bit cmpxchg: x86 leaves rax's upper half when it matches."""
        if insn.imm == BPF_CMPXCHG and insn.size == BPF_W:
            emit_mov_reg(t, False, BPF_REG_0, BPF_REG_0)

    def _emit_arena(self, t: bytearray, i: int, insn: Insn) -> None:
        """BPF_PROBE_MEM32/MEM32SX/PROBE_ATOMIC: the r12-indexed access, then its populate_extable entry."""
        cls, mode, size, dst, src, off = insn.cls, insn.mode, insn.size, insn.dst, insn.src, insn.off
        if self.kern_vm_start is None:
            raise JitError(i, f"{insn.name} needs the program's arena (kern_vm_start in r12)")
        addr_reg = src if cls == BPF_LDX else dst
        if max(addr_reg, dst) > 9:
            raise JitError(i, "verifier error: an arena access through r10")
        start = len(t)
        if cls == BPF_LDX:
            (emit_ldx_index if mode == BPF_PROBE_MEM32 else emit_ldsx_index)(t, size, dst, src, X86_REG_R12, off)
            kind = "load"
        elif cls == BPF_ST:
            emit_st_index(t, size, dst, X86_REG_R12, off, insn.imm)
            kind = "store"
        elif cls == BPF_STX and mode == BPF_PROBE_MEM32:
            emit_stx_index(t, size, dst, src, X86_REG_R12, off)
            kind = "store"
        elif insn.imm in (BPF_AND | BPF_FETCH, BPF_OR | BPF_FETCH, BPF_XOR | BPF_FETCH):
            raise JitError(i, "AND/OR/XOR with FETCH on the arena: bpf_jit_supports_insn() is false on x86")
        else:
            if insn.imm in (BPF_LOAD_ACQ, BPF_STORE_REL):
                emit_atomic_ld_st_index(t, insn.imm, size, dst, src, X86_REG_R12, off)
            else:
                emit_atomic_index(t, insn.imm, size, dst, src, X86_REG_R12, off)
            kind = "atomic"  # as populate_extable writes every STX: DONT_CLEAR and dst, even for a load-acquire
        access = ArenaAccess(kind, len(t) - start, _X86_NAME[dst] if kind == "load" else None, _X86_NAME[addr_reg],
                             off)
        self.accesses.append((self.begin[i] + start, access))
        if kind == "atomic":
            self._zext_cmpxchg(t, insn)


def do_jit(insns: list[Insn], address: int, *, kern_vm_start: int | None = None, user_vm_start: int | None = None,
           resolve: CallResolver | None = None, stack_depth: int | Sequence[int] = MAX_BPF_STACK,
           arena_args: Mapping[int, Sequence[tuple[int, bool]]] | None = None,
           loops: Mapping[int, tuple[int, int]] | None = None) -> JitImage:
    """JIT a verified program to load at `address`, as bpf_int_jit_compile() drives do_jit().

    Passes run until no instruction changes size; from PADDING_PASSES on, jumps that would shrink are padded with
    nops so the image converges, and MAX_PASSES without convergence is an error. The converged pass is the image:
    the kernel's extra writing pass would see the same addrs[] and emit the same bytes. `kern_vm_start` (the arena's
    kernel base, loaded into r12) is given when the program has an arena, `user_vm_start` when it uses cast_user.
    `stack_depth` is the verifier-computed depth of every frame, or one per subprogram in order. `arena_args`:
    for a kfunc call's index, its `__arena` arguments (register, nullable) to rebase to kern_vm_start + (u32)reg.
    `loops`: for a bpf_loop() call's index, the callback's first instruction and the fp offset of its 3 spill slots.
    """
    jit = _Jit(insns, address, kern_vm_start, user_vm_start, resolve, stack_depth, arena_args or {}, loops or {})
    for npass in range(1, MAX_PASSES + 1):
        old_end = list(jit.end)
        jit.padding = npass > PADDING_PASSES
        image = jit.jit_pass()
        if jit.end == old_end:
            break
    else:
        raise JitError(None, f"bpf_jit: the image did not converge in {MAX_PASSES} passes")
    extable = tuple(access.extable_entry(address + at) for at, access in jit.accesses)
    ranges = tuple((address + b, address + e) for b, e in zip(jit.begin, jit.end, strict=True))
    return JitImage(address, bytes(image), extable, ranges, tuple(address + f.entry for f in jit.funcs),
                    tuple(f.lo for f in jit.funcs), tuple(f.stack_depth for f in jit.funcs), npass)
