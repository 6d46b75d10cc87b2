"""Run a JIT image on a bare Unicorn, and the same program on the reference interpreter.

Kernel-like addresses without page tables: Unicorn's virtual TLB maps them
one to one. The memory buffer sits inside the arena (kern_vm_start + 64K), so
a program reaches it both through r1, a full pointer, and through its low 32
bits with the PROBE_MEM32 forms, as an arena pointer after cast_kern. A fault
on an arena access is fixed up through the image's exception table with
emu.bpf.jit_extable.ex_handler_bpf(), as the kernel's page-fault path would.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpf_interp
from unicorn import UC_ARCH_X86, UC_MODE_64, UC_TLB_VIRTUAL, Uc, UcError, x86_const
from unicorn.x86_const import UC_X86_REG_RAX, UC_X86_REG_RDI, UC_X86_REG_RIP, UC_X86_REG_RSI, UC_X86_REG_RSP

from emu.bpf.insn import BPF_HELPER_CALL, decode
from emu.bpf.jit import JitImage, do_jit
from emu.bpf.jit_extable import PT_REGS_NAMES, REG2PT_REGS, ex_handler_bpf

IMAGE = 0xFFFF_FFFF_A000_0000
HELPERS = 0xFFFF_FFFF_A100_0000
RET = HELPERS + 0xFF0  # the return address the test pushes: emulation stops there
STACK, STACK_SIZE = 0xFFFF_C900_0000_0000, 0x10000
STACK_TOP = STACK + STACK_SIZE - 0x100
KERN_VM_START = 0xFFFF_C904_0000_0000
MEM = KERN_VM_START + 0x10000
USER_VM_START = 0x7F00_0000_0000
PAGE = 0x1000

_HELPER_CODE = {
    1: bytes.fromhex("488d0437c3"),  # lea rax, [rdi + rsi]; ret
    2: bytes.fromhex("4889f8480fafc6c3"),  # mov rax, rdi; imul rax, rsi; ret
    # every caller-saved register trashed, 42 returned
    3: bytes.fromhex("48c7c7ffffffff48c7c6ffffffff48c7c2ffffffff48c7c1ffffffff49c7c0ffffffff"
                     "49c7c1ffffffff49c7c2ffffffff49c7c3ffffffffb82a000000c3"),
}
HELPER_ADDR = {n: HELPERS + 0x100 * n for n in _HELPER_CODE}
KFUNC_ADDR = {100: HELPER_ADDR[1], 101: HELPER_ADDR[2]}
PY_HELPERS = {1: lambda a, b, *_: a + b, 2: lambda a, b, *_: a * b, 3: lambda *_: 42}
PY_KFUNCS = {100: PY_HELPERS[1], 101: PY_HELPERS[2]}
_UC_REG = {name: getattr(x86_const, f"UC_X86_REG_{name.upper()}") for name in REG2PT_REGS}


def resolve(src: int, imm: int) -> int | None:
    return (HELPER_ADDR if src == BPF_HELPER_CALL else KFUNC_ADDR).get(imm)


def jit(program: bytes, stack_depth: int = 512) -> JitImage:
    return do_jit(decode(program), IMAGE, kern_vm_start=KERN_VM_START, user_vm_start=USER_VM_START,
                  resolve=resolve, stack_depth=stack_depth)


@dataclass
class Run:
    r0: int
    mem: bytes
    faults: list[int]


def _round(n: int) -> int:
    return max(PAGE, (n + PAGE - 1) // PAGE * PAGE)


def run_image(image: JitImage, mem: bytes = b"", timeout_s: float = 5.0) -> Run:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
    uc.mem_map(IMAGE, _round(len(image.code)))
    uc.mem_write(IMAGE, image.code)
    uc.mem_map(HELPERS, PAGE)
    for n, code in _HELPER_CODE.items():
        uc.mem_write(HELPER_ADDR[n], code)
    uc.mem_write(RET, b"\xcc")
    uc.mem_map(STACK, STACK_SIZE)
    uc.mem_map(MEM, _round(len(mem)))
    uc.mem_write(MEM, mem)
    uc.mem_write(STACK_TOP, RET.to_bytes(8, "little"))
    uc.reg_write(UC_X86_REG_RSP, STACK_TOP)
    uc.reg_write(UC_X86_REG_RDI, MEM)
    uc.reg_write(UC_X86_REG_RSI, len(mem))
    extable = {e.insn: e for e in image.extable}
    faults: list[int] = []
    rip = image.address
    while True:
        try:
            uc.emu_start(rip, RET, timeout=int(timeout_s * 1e6))
        except UcError:
            rip = uc.reg_read(UC_X86_REG_RIP)
            entry = extable.get(rip)
            if entry is None:
                raise
            done = ex_handler_bpf(entry, rip, lambda off: uc.reg_read(_UC_REG[PT_REGS_NAMES[off]]),
                                  lambda _write, addr, _ip: faults.append(addr))
            if done.cleared:
                uc.reg_write(_UC_REG[done.cleared], 0)
            rip = done.resume_at
            continue
        if uc.reg_read(UC_X86_REG_RIP) != RET:
            raise TimeoutError(f"the program did not return within {timeout_s}s")
        return Run(uc.reg_read(UC_X86_REG_RAX), bytes(uc.mem_read(MEM, len(mem))), faults)


def run_jit(program: bytes, mem: bytes = b"", stack_depth: int = 512) -> Run:
    return run_image(jit(program, stack_depth), mem)


def run_interp(program: bytes, mem: bytes = b"", stack_depth: int = 512) -> Run:
    memory = bpf_interp.Memory({MEM: bytearray(mem), STACK: bytearray(STACK_SIZE)})
    # r10 where the JIT has it: below the return address and the pushed rbp
    res = bpf_interp.run(program, memory, {1: MEM, 2: len(mem)}, STACK_TOP - 8, stack_depth=stack_depth,
                         helpers=PY_HELPERS, kfuncs=PY_KFUNCS, kern_vm_start=KERN_VM_START,
                         user_vm_start=USER_VM_START)
    return Run(res.r0, bytes(memory.regions[MEM]), res.faults)
