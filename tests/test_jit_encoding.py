"""The JIT's bytes against what arch/x86/net/bpf_jit_comp.c emits, and its exception-table entries.

The expected bytes are worked out from the kernel's emitters (reg2hex[], add_2mod(), emit_insn_suffix() ...);
the extable entries are also checked against jit_extable.arena_access(), which derives them from the
machine code through capstone, independently of the JIT.
"""

from pathlib import Path

import pytest
from bpf_asm import assemble, parse_data
from jit_runner import jit as runner_jit

from emu.bpf.insn import decode
from emu.bpf.jit import do_jit
from emu.bpf.jit_extable import DONT_CLEAR, FIXUP_ARENA_ACCESS, REG2PT_REGS, arena_access
from emu.x86.decode import decode_operands, disasm
from emu.x86.extable import EX_TYPE_BPF

BASE = 0xFFFF_FFFF_A000_0000
KERN_VM_START = 0xFFFF_C904_0000_0000
NOP5, NOP3 = "0f 1f 44 00 00", "0f 1f 00"
FRAME = f"{NOP5} {NOP3} 55 48 89 e5"  # emit_prologue() without CFI: nops, push rbp; mov rbp, rsp


def jit(source: str, **kw):
    return do_jit(decode(assemble(source)), BASE, **kw)


def insn_bytes(image, index: int) -> str:
    start, end = image.insn_ranges[index]
    return image.code[start - BASE:end - BASE].hex(" ")


@pytest.mark.parametrize(("source", "want"), [
    ("mov %r0, %r1", "48 89 f8"),  # EMIT_mov(): REX.W 89 /r, dst in r/m
    ("mov32 %r0, %r1", "89 f8"),
    ("mov %r7, %r1", "49 89 fd"),  # r13 needs REX.B
    ("mov %r0, 0", "31 c0"),  # emit_mov_imm32(): xor for zero
    ("mov %r1, -1", "48 c7 c7 ff ff ff ff"),  # sign_propagate: mov r64, simm32
    ("mov32 %r7, 5", "41 bd 05 00 00 00"),  # mov r13d, imm32
    ("lddw %r0, 0x123456789", "48 b8 89 67 45 23 01 00 00 00"),  # emit_mov_imm64(): movabs
    ("add %r0, 1", "48 83 c0 01"),
    ("add %r0, 0x1000", "48 05 00 10 00 00"),  # the short rax form
    ("sub32 %r2, 0x1000", "81 ee 00 10 00 00"),
    ("ldxdw %r0, [%r1+8]", "48 8b 47 08"),  # emit_ldx(): always a displacement
    ("ldxw %r3, [%r10-4]", "8b 55 fc"),
    ("ldxb %r0, [%r1+0]", "48 0f b6 47 00"),
    ("stxb [%r10-1], %r2", "40 88 75 ff"),  # emit_stx(): REX for sil
    ("stdw [%r1+0x100], -1", "48 c7 87 00 01 00 00 ff ff ff ff"),  # disp32, imm32 sign-extended
    ("lock fetch_add [%r1+0], %r2", "f0 48 0f c1 77 00"),  # emit_atomic(): lock xadd
    ("lsh %r0, 1", "48 d1 e0"),
    ("be64 %r6", "48 0f cb"),
    ("neg32 %r5", "41 f7 d8"),
])
def test_single_instruction_encodings(source, want):
    assert insn_bytes(jit(source + "\nexit"), 0) == want


def test_the_prologue_and_epilogue():
    image = jit("mov %r6, %r1\nmov %r0, %r6\nexit", stack_depth=8)
    assert image.code.hex(" ") == " ".join([
        FRAME, "48 81 ec 08 00 00 00",  # sub rsp, 8
        "53",  # push rbx: R6 is used
        "48 89 fb", "48 89 d8",  # the two movs
        "5b c9 c3",  # pop rbx; leave; ret
    ])


def test_the_prologue_of_a_program_with_an_arena():
    image = jit("mov %r0, 0\nexit", kern_vm_start=KERN_VM_START, stack_depth=0)
    assert image.code.hex(" ") == " ".join([
        FRAME, "41 54",  # push r12
        "49 bc 00 00 00 00 04 c9 ff ff",  # movabs r12, kern_vm_start
        "31 c0", "41 5c c9 c3",  # pop r12 before leave
    ])


def test_jumps_shrink_to_rel8_and_grow_to_rel32():
    near = jit("jeq %r1, 0, +1\nmov %r0, 1\nexit")
    assert insn_bytes(near, 0) == "48 85 ff 74 05"  # test rdi, rdi; je +5
    body = "\n".join(["add %r0, 0x1000"] * 30)
    far = jit(f"jeq %r1, 0, out\n{body}\nout:\nexit")
    assert insn_bytes(far, 0) == "48 85 ff 0f 84 b4 00 00 00"  # 30 x 6 bytes: rel32
    assert far.passes >= 2


def test_a_second_exit_jumps_to_the_first_epilogue():
    image = jit("jeq %r1, 0, +1\nexit\nexit")
    start, _ = image.insn_ranges[1]
    assert insn_bytes(image, 2) == f"eb {(start - image.insn_ranges[2][1]) & 0xff:02x}"


def test_a_helper_call_is_rel32_to_the_resolved_address():
    target = BASE + 0x1000
    image = jit("call 7\nexit", resolve=lambda src, imm: target if (src, imm) == (0, 7) else None)
    start, end = image.insn_ranges[0]
    assert image.code[start - BASE] == 0xE8
    assert start + 5 + int.from_bytes(image.code[start - BASE + 1:end - BASE], "little", signed=True) == target


def test_subprograms_each_get_a_prologue_and_calls_land_on_them():
    image = jit("call local f\nexit\nf:\nmov %r0, 1\nexit", stack_depth=0)
    assert image.subprog_insns == (0, 2)
    entry = image.subprogs[1]
    assert image.code[entry - BASE:entry - BASE + 12].hex(" ") == FRAME
    start, end = image.insn_ranges[0]
    assert start + 5 + int.from_bytes(image.code[start - BASE + 1:end - BASE], "little", signed=True) == entry


def test_each_subprogram_can_have_its_own_stack_depth():
    image = jit("call local f\nexit\nf:\nmay_goto +0\nexit", stack_depth=[20, 0])
    assert image.frame_sizes == (24, 8)  # rounded up; may_goto's counter below the callee's (empty) stack
    main, sub = image.subprogs
    assert image.code[main - BASE + 12:main - BASE + 19].hex(" ") == "48 81 ec 18 00 00 00"
    assert image.code[sub - BASE + 12:sub - BASE + 19].hex(" ") == "48 81 ec 08 00 00 00"


def test_ld_imm64_of_a_pseudo_func_is_the_subprogram_address():
    image = jit("ldfunc %r1, cb\nmov %r0, 0\nexit\ncb:\nexit")
    assert insn_bytes(image, 0) == "48 c7 c7 " + image.subprogs[1].to_bytes(8, "little")[:4].hex(" ")
    assert image.insn_ranges[1] == (image.insn_ranges[0][1],) * 2  # the second slot is empty


def test_insn_at_maps_addresses_back_to_instructions():
    image = jit("mov %r0, 1\nlddw %r2, 0x1122334455667788\nexit")
    assert image.insn_at(image.insn_ranges[0][0]) == 0
    assert image.insn_at(image.insn_ranges[1][1] - 1) == 1
    assert image.insn_at(image.insn_ranges[3][0]) == 3
    assert image.insn_at(BASE) is None  # the prologue
    assert repr(image).startswith(f"JitImage({BASE:#x}-")


PT = REG2PT_REGS


@pytest.mark.parametrize(("source", "want_bytes", "fixup", "off"), [
    # LDX: the destination is cleared, the address register is src
    ("ldxdw.a %r0, [%r1+0]", "4a 8b 44 27 00", 5 | PT["rax"] << 8 | PT["rdi"] << 16, 0),
    ("ldxb.a %r7, [%r9+0x7fff]", "47 0f b6 ac 27 ff 7f 00 00", 9 | PT["r13"] << 8 | PT["r15"] << 16, 0x7FFF),
    ("ldxwsx.a %r2, [%r3-2]", "4a 63 74 22 fe", 5 | PT["rsi"] << 8 | PT["rdx"] << 16, -2),
    # ST/STX/atomics: DONT_CLEAR, the address register is dst
    ("stxw.a [%r2-8], %r3", "42 89 54 26 f8", 5 | DONT_CLEAR << 8 | PT["rsi"] << 16, -8),
    ("sth.a [%r6+2], 7", "66 42 c7 44 23 02 07 00", 8 | DONT_CLEAR << 8 | PT["rbx"] << 16, 2),
    ("lock.a add [%r1+16], %r2", "f0 4a 01 74 27 10", 6 | DONT_CLEAR << 8 | PT["rdi"] << 16, 16),
])
def test_arena_accesses_get_the_kernels_extable_entry(source, want_bytes, fixup, off):
    image = jit(source + "\nexit", kern_vm_start=KERN_VM_START)
    start, end = image.insn_ranges[0]
    assert image.code[start - BASE:end - BASE].hex(" ") == want_bytes
    [entry] = image.extable
    assert entry.insn == start and entry.type == EX_TYPE_BPF
    assert entry.fixup == fixup | FIXUP_ARENA_ACCESS
    assert entry.data == EX_TYPE_BPF | (off & 0xFFFF) << 16
    decoded = decode_operands(image.code[start - BASE:end - BASE], start)
    assert arena_access(decoded).extable_entry(start) == entry


def test_an_arena_load_acquire_is_encoded_as_populate_extable_writes_every_stx():
    """DONT_CLEAR and dst as the address register, though the address is in src: what the kernel writes."""
    image = jit("ldacqw.a %r0, [%r1+4]\nexit", kern_vm_start=KERN_VM_START)
    start, end = image.insn_ranges[0]
    assert image.code[start - BASE:end - BASE].hex(" ") == "42 8b 44 27 04"  # mov eax, [rdi + r12 + 4]
    assert image.extable[0].fixup == 5 | DONT_CLEAR << 8 | PT["rax"] << 16 | FIXUP_ARENA_ACCESS


def test_every_arena_access_of_a_program_has_its_entry():
    image = jit("mov32 %r2, %r1\nldxw.a %r0, [%r2+0]\nstw.a [%r2+4], 1\nlock32.a xchg [%r2+8], %r0\n"
                "ldxdw %r3, [%r1+0]\nexit", kern_vm_start=KERN_VM_START)
    assert [e.insn for e in image.extable] == [image.insn_ranges[i][0] for i in (1, 2, 3)]


CASES = [case for case in map(parse_data, sorted((Path(__file__).parent / "jit_cases").glob("*.data")))
         if case.error is None]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_image_decodes_whole_and_insn_ranges_fall_on_instruction_boundaries(case):
    image = runner_jit(case.program)
    insns = disasm(image.code, image.address)
    boundaries = {i.address for i in insns} | {image.end}
    assert sum(i.size for i in insns) == len(image.code)
    for start, end in image.insn_ranges:
        assert start in boundaries and end in boundaries
    assert set(image.subprogs) <= boundaries


def test_arena_kfunc_arguments_are_rebased_before_the_call():
    """mov32 rX, rX; add rX, r12 before a kfunc call, for each `__arena` argument; a nullable one
    only when it is not zero (test; je over the add)."""
    from emu.bpf.insn import Insn
    from emu.bpf.jit import do_jit

    call = Insn(0x85, 0, 2, 0, 7)
    image = do_jit([call, call, Insn(0x95)], 0xFFFF_FFFF_A000_0000, kern_vm_start=0xFFFF_C900_1000_0000,
                   resolve=lambda src, imm: 0xFFFF_FFFF_A000_1000, arena_args={0: [(1, False)], 1: [(2, True)]})
    (first, _), (second, _) = image.insn_ranges[:2]
    code = image.code[first - image.address:]
    assert code[:5] == bytes.fromhex("89ff4c01e7")  # mov edi, edi; add rdi, r12
    assert code[5] == 0xE8  # the call
    code = image.code[second - image.address:]
    assert code[:9] == bytes.fromhex("89f685f674034c01e6")  # mov esi, esi; test esi, esi; je +3; add rsi, r12
