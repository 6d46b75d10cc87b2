"""bpf_check(): each rewrite, each rejection, spills, joins at merges, subprograms and kfunc arguments."""

import pytest
from bpf_asm import assemble

from emu.bpf.btf_ext import LineInfo
from emu.bpf.insn import BPF_ALU, BPF_ALU64, BPF_MOV, BPF_X, Insn, decode
from emu.bpf.jit import do_jit
from emu.bpf.maps import BPF_MAP_TYPE_ARENA
from emu.bpf.sec_defs import ProgType
from emu.bpf.verifier import (
    ArenaArg,
    ArenaInfo,
    ArgKind,
    KfuncInfo,
    LdImm64,
    LdKind,
    ProgInfo,
    VerifierError,
    bpf_check,
)
from emu.errors import EmuError

ARENA = ArenaInfo(user_vm_start=0x7F00_0000_0000)
BPF_MAP_TYPE_ARRAY = 2


def asm(text: str) -> list[Insn]:
    """bpf_asm, plus `cast_kern %rA, %rB` (addr_space_cast(rB, 0, 1)), which it does not spell."""
    lines = [ln.split("#")[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    kern, pc = [], 0
    for ln in lines:
        if ln.endswith(":"):
            continue
        if ln.startswith("cast_kern"):
            kern.append(pc)
        pc += 2 if ln.split()[0] in ("lddw", "ldfunc") else 1
    insns = decode(assemble("\n".join(ln.replace("cast_kern", "cast_user") for ln in lines)))
    for i in kern:
        insns[i] = Insn(insns[i].code, insns[i].dst, insns[i].src, 1, 1)
    return insns


def check(text: str, **kw) -> tuple[list[Insn], list[Insn]]:
    insns = asm(text)
    kw.setdefault("arena", ARENA)
    return insns, list(bpf_check(insns, ProgInfo("p", **kw)).insns)


def rejects(text: str, message: str, **kw) -> VerifierError:
    kw.setdefault("arena", ARENA)
    with pytest.raises(VerifierError) as e:
        bpf_check(asm(text), ProgInfo("p", **kw))
    assert e.value.message == message, str(e.value)
    return e.value


def mov32(dst: int, src: int) -> Insn:
    return Insn(BPF_ALU | BPF_MOV | BPF_X, dst, src)


# -- rewrites ------------------------------------------------------------------------------------------------------

ARENA_ACCESSES = """
    cast_kern %r1, %r1
    ldxw %r2, [%r1+4]
    ldxhsx %r3, [%r1+8]
    stw [%r1+0], 7
    stxdw [%r1+16], %r2
    lock add [%r1+24], %r2
    lock fetch_add [%r1+24], %r3
    mov %r0, 0
    exit
"""


def test_arena_accesses_become_the_probe_forms():
    before, after = check(ARENA_ACCESSES)
    assert after[0] == mov32(1, 1)
    assert after[1:7] == asm(ARENA_ACCESSES.replace("ldxw ", "ldxw.a ").replace("ldxhsx ", "ldxhsx.a ")
                             .replace("stw ", "stw.a ").replace("stxdw ", "stxdw.a ")
                             .replace("lock ", "lock.a "))[1:7]
    assert after[7:] == before[7:]
    assert bpf_check(before, ProgInfo("p", arena=ARENA)).probe_count == 6


def test_the_verified_arena_program_jits():
    v = bpf_check(asm(ARENA_ACCESSES), ProgInfo("p", arena=ARENA))
    image = do_jit(list(v.insns), 0xFFFF_FFFF_A000_0000, kern_vm_start=0xFFFF_C900_0000_0000,
                   stack_depth=v.stack_depths)
    assert len(image.extable) == v.probe_count


def test_casts_are_lowered_as_the_kernel_lowers_them():
    text = "cast_kern %r2, %r1\ncast_user %r3, %r2\nmov %r0, 0\nexit"
    before, after = check(text)
    assert after[:2] == [mov32(2, 1), before[1]]
    _, after = check(text, arena=ArenaInfo(ARENA.user_vm_start, no_user_conv=True))
    assert after[:2] == [mov32(2, 1), mov32(3, 2)]


def test_alu64_on_an_arena_pointer_becomes_32_bit():
    before, after = check("cast_kern %r1, %r1\nadd %r1, 8\nlsh %r1, 1\nldxdw %r0, [%r1+0]\nexit")
    assert after[1] == Insn(BPF_ALU | 0x00, 1, 0, 0, 8)
    assert after[2].cls == BPF_ALU and after[2].op == 0x60
    assert check("cast_kern %r1, %r1\nadd32 %r1, 8\nmov %r0, 0\nexit")[1][1].cls == BPF_ALU
    assert check("mov %r1, 1\nadd %r1, 8\nmov %r0, 0\nexit")[1][1].cls == BPF_ALU64


def test_a_stack_spill_of_an_arena_pointer_fills_back_an_arena_pointer():
    _, after = check("""
        cast_kern %r1, %r1
        stxdw [%r10-8], %r1
        mov %r1, 0
        ldxdw %r2, [%r10-8]
        stw [%r2+0], 1
        mov %r0, 0
        exit
    """)
    assert after[1].mode == 0x60 and after[3].mode == 0x60  # the stack itself is plain memory
    assert after[4].mode == 0xA0


def test_a_pointer_loaded_from_the_arena_must_be_cast_again():
    rejects("cast_kern %r1, %r1\nldxdw %r2, [%r1+0]\nldxdw %r0, [%r2+0]\nexit", "R2 invalid mem access 'scalar'")


def test_ld_imm64_of_maps_loads_their_addresses():
    text = "lddw %r1, 0\nstw [%r1+0], 1\nlddw %r2, 0\nlddw %r3, 0\ncast_kern %r3, %r3\nstw [%r3+0], 1\nmov %r0, 0\nexit"
    insns = asm(text)
    insns[0] = Insn(0x18, 1, 2)
    insns[3] = Insn(0x18, 2, 1, 0, 5)
    insns[5] = Insn(0x18, 3, 2)
    lds = {0: LdImm64(LdKind.MAP_VALUE, 0xFFFF_8880_1234_5678, BPF_MAP_TYPE_ARRAY),
           3: LdImm64(LdKind.MAP_PTR, 0xFFFF_8880_0000_1000, BPF_MAP_TYPE_ARRAY),
           5: LdImm64(LdKind.MAP_VALUE, ARENA.user_vm_start + 64, BPF_MAP_TYPE_ARENA)}
    v = bpf_check(insns, ProgInfo("p", arena=ARENA, ld_imm64=lds))
    assert v.insns[0:2] == (Insn(0x18, 1, 0, 0, 0x1234_5678), Insn(0, imm=-0x7780))
    assert v.insns[3].src == 0 and v.insns[5] == Insn(0x18, 3, 0, 0, 64) and v.insns[6].imm == 0x7F00
    assert v.insns[2].mode == 0x60 and v.insns[8].mode == 0xA0 and v.probe_count == 1


def test_an_arena_global_is_a_scalar_until_cast():
    insns = asm("lddw %r1, 0\nstw [%r1+0], 1\nmov %r0, 0\nexit")
    insns[0] = Insn(0x18, 1, 2)
    lds = {0: LdImm64(LdKind.MAP_VALUE, ARENA.user_vm_start, BPF_MAP_TYPE_ARENA)}
    with pytest.raises(VerifierError, match="R1 invalid mem access 'scalar'"):
        bpf_check(insns, ProgInfo("p", arena=ARENA, ld_imm64=lds))
    with pytest.raises(VerifierError, match="fd 0 is not pointing to valid bpf_map"):
        bpf_check(insns, ProgInfo("p", arena=ARENA))
    with pytest.raises(VerifierError, match="arena's user address must be set via map_extra or mmap()"):
        bpf_check(insns, ProgInfo("p", arena=ArenaInfo(0), ld_imm64=lds))


# -- joins at merges -----------------------------------------------------------------------------------------------

def test_arena_on_both_sides_of_a_merge_is_still_arena():
    _, after = check("""
        mov %r2, 0
        mov %r3, 0
        jeq %r2, 0, other
        cast_kern %r1, %r1
        ja join
    other:
        cast_kern %r1, %r3
    join:
        stxdw [%r1+0], %r2
        mov %r0, 0
        exit
    """)
    assert after[6].mode == 0xA0


def test_arena_and_scalar_at_a_merge_is_the_kernels_scalar_error():
    rejects("""
        mov %r2, 0
        jeq %r2, 0, other
        cast_kern %r1, %r1
        ja join
    other:
        mov %r1, 4096
    join:
        stxdw [%r1+0], %r2
        mov %r0, 0
        exit
    """, "R1 invalid mem access 'scalar'")


def test_arena_and_stack_at_a_merge_is_one_insn_with_two_pointer_types():
    rejects("""
        mov %r3, %r10
        add %r3, -8
        jeq %r1, 0, join
        cast_kern %r3, %r1
    join:
        stdw [%r3+0], 1
        mov %r0, 0
        exit
    """, "same insn cannot be used with different pointers")


def test_a_register_written_on_one_path_only_is_not_readable_after_the_merge():
    rejects("mov %r0, 0\njeq %r1, 0, +1\nmov %r2, 1\nmov %r0, %r2\nexit", "R2 !read_ok")


def test_a_stack_slot_written_on_one_path_only_is_uninitialized_after_the_merge():
    rejects("mov %r0, 0\njeq %r1, 0, +1\nstdw [%r10-8], 1\nldxdw %r0, [%r10-8]\nexit",
            "invalid read from stack off -8+0 size 8")


def test_a_bounded_loop_over_the_arena_is_verified():
    _, after = check("""
        cast_kern %r1, %r1
        mov %r2, 0
    loop:
        stxdw [%r1+0], %r2
        add %r1, 8
        add %r2, 1
        jlt %r2, 16, loop
        mov %r0, 0
        exit
    """)
    assert after[2].mode == 0xA0 and after[3].cls == BPF_ALU and after[4].cls == BPF_ALU64


# -- rejections ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("mov %r0, %r2\nexit", "R2 !read_ok"),
    ("exit", "R0 !read_ok"),
    ("ldxdw %r0, [%r10-8]\nexit", "invalid read from stack off -8+0 size 8"),
    ("stw [%r10-8], 1\nldxdw %r0, [%r10-8]\nexit", "invalid read from stack off -8+4 size 8"),
    ("stdw [%r10-520], 1\nmov %r0, 0\nexit", "invalid write to stack R10 off=-520 size=8"),
    ("ldxdw %r0, [%r10+0]\nexit", "invalid read from stack R10 off=0 size=8"),
    ("stdw [%r10-4], 1\nmov %r0, 0\nexit", "misaligned stack access off (0x0; 0x0)+0+-4 size 8"),
    ("stxw [%r10-8], %r1\nmov %r0, 0\nexit", "invalid size of register spill"),
    ("stxdw [%r10-8], %r1\nldxw %r0, [%r10-8]\nexit", "invalid size of register fill"),
    ("mov %r10, 0\nexit", "frame pointer is read only"),
    ("mov %r0, 0\nja +1\nmov %r0, 1\nexit", "unreachable insn 2"),
    ("mov %r0, 0\njeq %r0, 0, +5\nexit", "jump out of range from insn 1 to 7"),
    ("mov %r0, 0\njeq %r0, 0, +1\nlddw %r0, 1\nexit", "jump into the middle of ldimm64 insn 2"),
    ("mov %r0, 0", "last insn is not an exit or jmp"),
    ("ldxdw %r0, [%r2+0]\nexit", "R2 !read_ok"),
    ("mov %r2, 8\nldxdw %r0, [%r2+0]\nexit", "R2 invalid mem access 'scalar'"),
    ("ldxw %r0, [%r1+0]\nand %r1, 1\nexit", "R1 bitwise operator &= on pointer prohibited"),
    ("mov %r0, 0\nmul %r1, 2\nexit", "R1 pointer arithmetic with *= operator prohibited"),
    ("mov %r0, 0\nadd32 %r1, 2\nexit", "R1 32-bit pointer arithmetic prohibited"),
    ("mov %r0, 0\nadd %r1, %r10\nexit", "R1 pointer += pointer prohibited"),
    ("mov %r0, 0\nlock add [%r1+0], %r0\nexit", "BPF_ATOMIC stores into R1 ctx is not allowed"),
    ("cast_kern %r1, %r1\nmov %r0, 0\nlock fetch_and [%r1+0], %r0\nexit",
     "BPF_ATOMIC stores into R1 arena is not allowed"),
    ("cast_kern %r1, %r1\nmov %r0, 0\nmov %r2, 1\nxor %r2, %r1\nexit",
     "R2 pointer arithmetic on arena prohibited"),
    ("stw [%r1+0], 1\nmov %r0, 0\nexit", "BPF_ST stores into R1 ctx is not allowed"),
    ("callx %r1\nmov %r0, 0\nexit", "BPF_CALL uses reserved fields"),
    ("mov %r0, 0\nldxw.a %r0, [%r1+0]\nexit", "unknown opcode a1"),
    ("mov %r0, 0\ntail_call\nexit", "unknown opcode f5"),
])
def test_rejections_carry_the_kernels_message(text, message):
    rejects(text, message)


def test_casts_need_an_arena_and_a_known_address_space():
    rejects("cast_kern %r1, %r1\nmov %r0, 0\nexit",
            "addr_space_cast insn can only be used in a program that has an associated arena", arena=None)
    insns = asm("cast_kern %r1, %r1\nmov %r0, 0\nexit")
    insns[0] = Insn(BPF_ALU64 | BPF_MOV | BPF_X, 1, 1, 1, 2)
    with pytest.raises(VerifierError, match="addr_space_cast insn can only convert between address space 1 and 0"):
        bpf_check(insns, ProgInfo("p", arena=ARENA))


def test_uninitialized_stack_reads_are_allowed_with_cap_perfmon():
    check("ldxdw %r0, [%r10-8]\nexit", allow_uninit_stack=True)


def test_the_error_is_one_line_with_the_source_line():
    line = LineInfo(0, "prog.c", "\treturn *p;  ", 12, 9)
    e = rejects("mov %r1, 0\nldxdw %r0, [%r1+0]\nexit", "R1 invalid mem access 'scalar'",
                line_info=lambda i: line if i == 1 else None)
    assert str(e) == "prog p: insn 1: R1 invalid mem access 'scalar' (prog.c:12: return *p;)"
    assert isinstance(e, EmuError)
    assert str(rejects("exit", "R0 !read_ok")) == "prog p: insn 0: R0 !read_ok"


# -- ctx, packets, helpers -----------------------------------------------------------------------------------------

def test_xdp_packet_pointers_come_from_the_ctx():
    check("ldxw %r2, [%r1+0]\nldxb %r0, [%r2+14]\nexit", prog_type=ProgType.XDP)
    rejects("ldxw %r2, [%r1+4]\nldxb %r0, [%r2+0]\nexit", "R2 invalid mem access 'pkt_end'", prog_type=ProgType.XDP)
    rejects("ldxw %r2, [%r1+0]\nldxb %r0, [%r2+14]\nexit", "R2 invalid mem access 'scalar'")


def test_map_lookup_elem_returns_a_map_value():
    check("call 1\njeq %r0, 0, +1\nldxdw %r0, [%r0+0]\nexit")
    rejects("call 5\nldxdw %r0, [%r0+0]\nexit", "R0 invalid mem access 'scalar'")
    rejects("call 5\nmov %r0, %r1\nexit", "R1 !read_ok")


# -- subprograms ---------------------------------------------------------------------------------------------------

SUBPROGS = """
    stdw [%r10-16], 0
    cast_kern %r1, %r1
    call local sub
    stw [%r0+0], 1
    mov %r0, 0
    exit
sub:
    stdw [%r10-8], 0
    stw [%r1+0], 2
    mov %r0, %r1
    exit
"""


def test_a_static_subprogram_takes_and_returns_arena_pointers():
    v = bpf_check(asm(SUBPROGS), ProgInfo("p", arena=ARENA))
    assert v.subprog_starts == (0, 6) and v.stack_depths == (16, 8)
    assert v.insns[3].mode == 0xA0 and v.insns[6].mode == 0x60 and v.insns[7].mode == 0xA0
    assert v.probe_count == 2


def test_a_stack_pointer_into_the_callers_frame_counts_in_the_callers_depth():
    v = bpf_check(asm("mov %r1, %r10\nadd %r1, -24\ncall local sub\nexit\nsub:\nstdw [%r1+0], 0\nmov %r0, 0\nexit"),
                  ProgInfo("p"))
    assert v.stack_depths == (24, 0)


def test_a_global_function_types_its_arguments_from_its_prototype():
    text = "cast_kern %r1, %r1\nmov %r2, 0\ncall local f\nexit\nf:\nstw [%r1+0], 1\nldxw %r0, [%r2+0]\nexit"
    v = bpf_check(asm(text), ProgInfo("p", arena=ARENA, global_funcs={4: (ArgKind.ARENA, ArgKind.MEM)}))
    assert v.insns[4].mode == 0xA0 and v.insns[5].mode == 0x60
    with pytest.raises(VerifierError, match=r"R1 is not a pointer to arena or scalar\."):
        bpf_check(asm(text.replace("cast_kern %r1, %r1", "mov %r1, %r10")),
                  ProgInfo("p", arena=ARENA, global_funcs={4: (ArgKind.ARENA, ArgKind.MEM)}))


def test_arena_kfunc_arguments_are_listed_for_the_jit():
    text = "cast_kern %r1, %r1\nmov %r2, 0\nmov %r3, 3\ncall kfunc 77\nexit"
    info = KfuncInfo("bpf_kfunc_arena_copy", arena_args=frozenset({1}), nullable_args=frozenset({2}))
    v = bpf_check(asm(text), ProgInfo("p", arena=ARENA, kfuncs={3: info}))
    assert v.arena_args == {3: (ArenaArg(1), ArenaArg(2, nullable=True))}
    assert v.insns == tuple(asm(text.replace("cast_kern %r1, %r1", "mov32 %r1, %r1")))
    with pytest.raises(VerifierError, match=r"R1 is not a pointer to arena or scalar\."):
        bpf_check(asm(text.replace("cast_kern %r1, %r1", "mov %r1, %r10")),
                  ProgInfo("p", arena=ARENA, kfuncs={3: info}))
    with pytest.raises(VerifierError, match="kernel btf_id 77 is not a function"):
        bpf_check(asm(text), ProgInfo("p", arena=ARENA))
    with pytest.raises(VerifierError, match="arena pointer requires a program with an associated arena"):
        bpf_check(asm(text.replace("cast_kern %r1, %r1", "mov %r1, 1")), ProgInfo("p", kfuncs={3: info}))


def test_map_pointers_and_map_values():
    insns = asm("lddw %r1, 0\nldxdw %r0, [%r1+0]\nexit")
    insns[0] = Insn(0x18, 1, 1, 0, 3)
    with pytest.raises(VerifierError, match="R1 map_ptr access is modelled only for an arena's struct bpf_arena"):
        bpf_check(insns, ProgInfo("p", ld_imm64={0: LdImm64(LdKind.MAP_PTR, 0xFFFF_8880_0000_1000, 2)}))


@pytest.mark.parametrize("access, error", [
    ("ldxdw %r0, [%r1+256]", None),  # user_vm_start, what arena_base() reads
    ("ldxdw %r0, [%r1+264]", None),  # user_vm_end
    ("ldxw %r0, [%r1+256]", "R1 bpf_arena access at off=256 size=4 is not modelled"),
    ("ldxdw %r0, [%r1+0]", "R1 bpf_arena access at off=0 size=8 is not modelled"),
    ("ldxdw %r0, [%r1-8]", "R1 is bpf_arena invalid negative access: off=-8"),
    ("stdw [%r1+256], 0", "only read from bpf_arena is supported"),
])
def test_an_arena_map_pointer_reads_its_user_addresses(access, error):
    """check_ptr_to_map_access() for struct bpf_arena: reads only, of the fields the shipped header declares."""
    insns = asm(f"lddw %r1, 0\n{access}\nmov %r0, 0\nexit")
    insns[0] = Insn(0x18, 1, 1, 0, 3)
    info = ProgInfo("p", arena=ArenaInfo(1 << 32), ld_imm64={0: LdImm64(LdKind.MAP_PTR, 0xFFFF_C900_0000_0000, 33)})
    if error is None:
        assert bpf_check(insns, info).insns[2] == insns[2]
        return
    with pytest.raises(VerifierError, match=f"^prog p: insn 2: {error}"):
        bpf_check(insns, info)


def test_stack_and_map_value_at_a_merge_are_both_plain_memory():
    v = bpf_check(asm("""
        mov %r6, %r10
        add %r6, -8
        stdw [%r10-8], 0
        call 1
        jeq %r0, 0, join
        mov %r6, %r0
    join:
        ldxdw %r0, [%r6+0]
        exit
    """), ProgInfo("p"))
    assert v.insns[6].mode == 0x60 and v.stack_depths == (8,)


def test_a_variable_stack_offset_counts_the_whole_stack():
    v = bpf_check(asm("""
        mov %r2, %r10
        mov %r3, 2
    loop:
        add %r2, -8
        stdw [%r2+0], 0
        sub %r3, 1
        jne %r3, 0, loop
        mov %r0, 0
        exit
    """), ProgInfo("p"))
    assert v.stack_depths == (512,)


def test_a_callback_is_a_subprogram_typed_with_scalar_arguments():
    v = bpf_check(asm("ldfunc %r2, cb\nmov %r1, 4\nmov %r3, 0\nmov %r4, 0\ncall 181\nexit\ncb:\nmov %r0, 0\nexit"),
                  ProgInfo("p"))
    assert v.subprog_starts == (0, 7)
    rejects("ldfunc %r2, cb\nmov %r0, 0\nexit\ncb:\nldxdw %r0, [%r1+0]\nexit", "R1 invalid mem access 'scalar'")
