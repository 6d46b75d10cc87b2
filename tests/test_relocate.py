"""bpf_object__relocate(): subprograms appended once, calls and globals resolved, as libbpf does."""

import pytest
from bpf_build import build

from emu.bpf.insn import decode
from emu.bpf.object_file import BpfObject
from emu.bpf.relocate import LdImm, MapRef, RelocError, bpf_object__relocate

ARENA_USER = 0x1000_0000_0000
MAPS = {"arena": MapRef(0xFFFF_C900_0000_1000, ARENA_USER, 33), "arena_li.bss": MapRef(0xA000, 0xB000, 2),
        "arena_li.data": MapRef(0xC000, 0xD000, 2), "arena_li.rodata": MapRef(0xE000, 0xF000, 2)}


@pytest.fixture(scope="module")
def obj():
    return BpfObject.open(build("arena_list"))


def _imm64(insns, i):
    return (insns[i].imm & 0xFFFF_FFFF) | (insns[i + 1].imm & 0xFFFF_FFFF) << 32


def test_a_subprogram_is_appended_once_and_its_call_points_at_it(obj):
    linked = bpf_object__relocate(obj, obj.program("arena_list_add"), MAPS.__getitem__, lambda n: 7, lambda n: None)
    insns = decode(linked.insns)
    push = next(p for p in obj.programs if p.name == "push")
    assert linked.subprogs == (0, obj.program("arena_list_add").insn_cnt)
    assert len(insns) == obj.program("arena_list_add").insn_cnt + push.insn_cnt
    (call,) = [i for i, x in enumerate(insns[:linked.subprogs[1]]) if x.code == 0x85]
    assert (insns[call].src, call + insns[call].imm + 1) == (1, linked.subprogs[1])
    assert linked.origin[linked.subprogs[1]] == (".text", push.sec_insn_off)
    kfunc = next(i for i, x in enumerate(insns) if x.code == 0x85 and x.src == 2)
    assert (insns[kfunc].imm, linked.kfuncs) == (7, {7: "bpf_arena_alloc_pages"})


def test_maps_and_globals_become_addresses(obj):
    linked = bpf_object__relocate(obj, obj.program("arena_list_add"), MAPS.__getitem__, lambda n: 7, lambda n: None)
    insns = decode(linked.insns)
    kinds = {i: (d.kind, d.map_name) for i, d in linked.ldimm.items()}
    assert sorted(kinds.values()) == [("map", "arena"), ("map_value", "arena"), ("map_value", "arena_li.bss"),
                                      ("map_value", "arena_li.rodata")]
    for i, d in linked.ldimm.items():
        assert insns[i].src == {"map": 1, "map_value": 2}[d.kind]  # BPF_PSEUDO_MAP_FD / MAP_VALUE, for the verifier
        if d.kind == "map":
            assert _imm64(insns, i) == MAPS["arena"].map_ptr
    arena_global = next(i for i, d in linked.ldimm.items() if d == LdImm("map_value", "arena", 33))
    assert _imm64(insns, arena_global) == ARENA_USER  # list_count, at offset 0 of the arena's globals


def test_a_map_the_object_does_not_have_is_refused(obj):
    def missing(name):
        raise RelocError(f"no map {name}")
    with pytest.raises(RelocError, match="no map"):
        bpf_object__relocate(obj, obj.program("arena_list_sum"), missing, lambda n: 7, lambda n: None)
