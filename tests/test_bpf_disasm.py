"""kernel/bpf/disasm.c's text for every instruction form, and bpf_insn_prepare_dump()'s rewrites."""

import pytest

from emu.bpf.disasm import BpfInsnCbs, print_bpf_insn
from emu.bpf.insn import Insn
from emu.bpf.prog_info import bpf_insn_prepare_dump

CASES = [
    # ALU and ALU64, immediate and register
    (Insn(0xB7, 0, 0, 0, 0), "(b7) r0 = 0"),
    (Insn(0xB4, 6, 0, 0, -1), "(b4) w6 = -1"),
    (Insn(0x07, 2, 0, 0, -4), "(07) r2 += -4"),
    (Insn(0x0C, 1, 2), "(0c) w1 += w2"),
    (Insn(0xCF, 3, 4), "(cf) r3 s>>= r4"),
    (Insn(0x3F, 1, 2, 1), "(3f) r1 s/= r2"),
    (Insn(0x97, 1, 0, 1, 7), "(97) r1 s%= 7"),
    (Insn(0xBF, 1, 2, 8), "(bf) r1 = (s8)r2"),
    (Insn(0xBF, 1, 2, 32), "(bf) r1 = (s32)r2"),
    (Insn(0xBC, 1, 2, 16), "(bc) w1 = (s16)w2"),
    (Insn(0x87, 5), "(87) r5 = -r5"),
    (Insn(0x84, 5), "(84) w5 = -w5"),
    (Insn(0xD4, 1, 0, 0, 16), "(d4) r1 = le16 r1"),
    (Insn(0xDC, 1, 0, 0, 32), "(dc) r1 = be32 r1"),
    (Insn(0xD7, 1, 0, 0, 64), "(d7) r1 = bswap64 r1"),
    (Insn(0xBF, 1, 2, 1, 1), "(bf) r1 = addr_space_cast(r2, 0, 1)"),
    (Insn(0xBF, 1, 2, 1, 1 << 16), "(bf) r1 = addr_space_cast(r2, 1, 0)"),
    # loads and stores
    (Insn(0x79, 1, 10, -8), "(79) r1 = *(u64 *)(r10 -8)"),
    (Insn(0x61, 3, 1, 0), "(61) r3 = *(u32 *)(r1 +0)"),
    (Insn(0x91, 3, 1, 2), "(91) r3 = *(s8 *)(r1 +2)"),
    (Insn(0x81, 3, 1, 4), "(81) r3 = *(s32 *)(r1 +4)"),
    (Insn(0x63, 10, 6, -4), "(63) *(u32 *)(r10 -4) = r6"),
    (Insn(0x7A, 10, 0, -16, 42), "(7a) *(u64 *)(r10 -16) = 42"),
    (Insn(0x72, 1, 0, 3, -1), "(72) *(u8 *)(r1 +3) = -1"),
    (Insn(0xC2), "(c2) nospec"),
    (Insn(0x30, 0, 0, 0, 12), "(30) r0 = *(u8 *)skb[12]"),
    (Insn(0x48, 0, 7, 0, 2), "(48) r0 = *(u16 *)skb[r7 + 2]"),
    # atomics
    (Insn(0xDB, 1, 2, 0, 0x00), "(db) lock *(u64 *)(r1 +0) += r2"),
    (Insn(0xC3, 1, 2, 8, 0x40), "(c3) lock *(u32 *)(r1 +8) |= r2"),
    (Insn(0xDB, 1, 2, 0, 0x50), "(db) lock *(u64 *)(r1 +0) &= r2"),
    (Insn(0xDB, 1, 2, 0, 0xA0), "(db) lock *(u64 *)(r1 +0) ^= r2"),
    (Insn(0xDB, 1, 0, 0, 0x01), "(db) r0 = atomic64_fetch_add((u64 *)(r1 +0), r0)"),
    (Insn(0xC3, 1, 3, -8, 0x51), "(c3) r3 = atomic_fetch_and((u32 *)(r1 -8), r3)"),
    (Insn(0xDB, 1, 3, 0, 0xE1), "(db) r3 = atomic64_xchg((u64 *)(r1 +0), r3)"),
    (Insn(0xDB, 1, 3, 0, 0xF1), "(db) r0 = atomic64_cmpxchg((u64 *)(r1 +0), r0, r3)"),
    (Insn(0xD3, 4, 1, 0, 0x100), "(d3) r4 = load_acquire((u8 *)(r1 +0))"),
    (Insn(0xDB, 1, 4, 8, 0x110), "(db) store_release((u64 *)(r1 +8), r4)"),
    # jumps, calls, exit
    (Insn(0x25, 1, 0, 3, 5), "(25) if r1 > 0x5 goto pc+3"),
    (Insn(0x55, 1, 0, -7, -1), "(55) if r1 != 0xffffffff goto pc-7"),
    (Insn(0x6D, 1, 2, 1), "(6d) if r1 s> r2 goto pc+1"),
    (Insn(0xA6, 1, 0, 2, 9), "(a6) if w1 < 0x9 goto pc+2"),
    (Insn(0xDE, 1, 2, 2), "(de) if w1 s<= w2 goto pc+2"),
    (Insn(0x05, 0, 0, -2), "(05) goto pc-2"),
    (Insn(0x06, 0, 0, 0, 1000), "(06) gotol pc+1000"),
    (Insn(0xE5, 0, 0, 4), "(e5) may_goto pc+4"),
    (Insn(0x85, 0, 0, 0, 1), "(85) call bpf_map_lookup_elem#1"),
    (Insn(0x85, 0, 0, 0, 9999), "(85) call unknown#9999"),
    (Insn(0x85, 0, 2, 0, 0x10000), "(85) call kernel-function#65536"),
    (Insn(0x85, 0, 1, 0, 5), "(85) call pc+5"),
    (Insn(0x95), "(95) exit"),
    # the verifier's internal arena forms: disasm.c has no text for them
    (Insn(0x79 ^ 0x60 ^ 0xA0, 1, 1, 0), "BUG_ldx_b9"),
    (Insn(0xC1, 1, 1, 0), "BUG_ldx_c1"),
    (Insn(0xDB ^ 0xC0 ^ 0xE0, 1, 2, 0, 1), "BUG_fb"),
    (Insn(0x7A ^ 0x60 ^ 0xA0, 1, 0, 0, 1), "BUG_st_ba"),
]


@pytest.mark.parametrize("insn,text", CASES, ids=[t for _, t in CASES])
def test_print_bpf_insn_spells_each_form_as_the_kernel(insn, text):
    assert print_bpf_insn([insn], 0) == text


def test_ld_imm64_reads_both_slots_and_the_callbacks_name_it():
    insns = [Insn(0x18, 1, 0, 0, 0x1000), Insn(0, 0, 0, 0, 0x100)]
    assert print_bpf_insn(insns, 0) == "(18) r1 = 0x10000001000"
    insns = [Insn(0x18, 1, 1, 0, 3), Insn(0)]
    named = BpfInsnCbs(cb_imm=lambda insn, nxt, full: f"map[id:{insn.imm}]")
    assert print_bpf_insn(insns, 0, named) == "(18) r1 = map[id:3]"
    assert print_bpf_insn(insns[:1], 0) == "BUG_ld_18"  # no second slot


def test_a_call_is_named_by_the_callback_unless_it_is_a_known_helper():
    cbs = BpfInsnCbs(cb_call=lambda insn: "bpf_arena_alloc_pages" if insn.src == 2 else None)
    assert print_bpf_insn([Insn(0x85, 0, 2, 0, -8192)], 0, cbs) == "(85) call bpf_arena_alloc_pages#-8192"
    assert print_bpf_insn([Insn(0x85, 0, 0, 0, 1)], 0, cbs) == "(85) call bpf_map_lookup_elem#1"
    assert print_bpf_insn([Insn(0x85, 0, 1, 0, 5)], 0, cbs) == "(85) call pc+5"


def test_prepare_dump_turns_arena_forms_back_and_maps_into_ids():
    insns = [Insn(0x61 ^ 0x60 ^ 0xA0, 1, 2, 4), Insn(0xC1, 1, 2, 4), Insn(0xDB ^ 0xC0 ^ 0xE0, 1, 2, 0, 1),
             Insn(0x72 ^ 0x60 ^ 0xA0, 1, 0, 0, 7), Insn(0x18, 1, 0, 0, 0x2000), Insn(0, 0, 0, 0, -0x3700),
             Insn(0x18, 2, 0, 0, 0x2010), Insn(0, 0, 0, 0, -0x3700), Insn(0x18, 3, 0, 0, 5), Insn(0),
             Insn(0xF5)]
    ptr = 0xFFFF_C900_0000_2000
    lookup = {ptr: (1, 4, 0), ptr + 0x10: (2, 5, 0x10)}.get  # a map pointer, an address in a map's value
    out = bpf_insn_prepare_dump(insns, lookup)
    texts = [print_bpf_insn(out, i) for i in (0, 1, 2, 3, 10)]
    assert texts == ["(61) r1 = *(u32 *)(r2 +4)", "(81) r1 = *(s32 *)(r2 +4)",
                     "(db) r2 = atomic64_fetch_add((u64 *)(r1 +0), r2)", "(72) *(u8 *)(r1 +0) = 7",
                     "(85) call unknown#12"]  # bpf_tail_call: a helper this project does not name
    assert (out[4].src, out[4].imm, out[5].imm) == (1, 4, 0)
    assert (out[6].src, out[6].imm, out[7].imm) == (2, 5, 0x10)
    assert out[8:10] == insns[8:10]  # a plain number stays one
