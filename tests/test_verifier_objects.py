"""bpf_check() on what clang makes of tests/bpf_c/: the arena programs pass, and their verified form JITs.

There is no libbpf relocation stage in the project yet, so `relocated()` below does the part of
bpf_object__relocate() the verifier's input needs: the .text subprograms appended, calls and callback
addresses pointed at them, ld_imm64 and kfunc calls given their pseudo kinds, and what each loads.
"""

from dataclasses import replace

import pytest
from bpf_build import build

from emu.bpf.btf import DeclTag, Func, FuncProto, Ptr
from emu.bpf.insn import BPF_LD_IMM64, BPF_PSEUDO_CALL, BPF_PSEUDO_FUNC, BPF_PSEUDO_KFUNC_CALL, Insn, decode
from emu.bpf.jit import do_jit
from emu.bpf.maps import BPF_MAP_TYPE_ARENA
from emu.bpf.object_file import ARENA_SEC, BpfObject, BpfProgram, ExternKind, RelocKind
from emu.bpf.verifier import ArenaInfo, ArgKind, KfuncInfo, LdImm64, LdKind, ProgInfo, VerifierError, bpf_check

USER_VM_START, KERN_VM_START = 0x1_0000_0000, 0xFFFF_C900_0000_0000
MAP_ADDR, VALUE_ADDR, KSYM_ADDR = 0xFFFF_8880_0000_1000, 0xFFFF_8880_0010_0000, 0xFFFF_FFFF_8100_0000
BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_BTF_ID = 1, 2, 3


def _global_args(obj: BpfObject, name: str) -> tuple[ArgKind, ...]:
    """btf_prepare_func_args(), roughly: arg:arena decl tags, else a pointer is memory and the rest scalars."""
    types = obj.btf.types
    fid = next(i for i, t in enumerate(types) if isinstance(t, Func) and t.name == name)
    proto = types[types[fid].type]
    assert isinstance(proto, FuncProto)
    arena = {t.component_idx for t in types if isinstance(t, DeclTag) and t.type == fid and t.name == "arg:arena"}
    return tuple(ArgKind.ARENA if k in arena else ArgKind.MEM if isinstance(types[p.type], Ptr) else ArgKind.SCALAR
                 for k, p in enumerate(proto.params))


def relocated(obj: BpfObject, prog: BpfProgram) -> tuple[list[Insn], ProgInfo]:
    """The program, then each .text function it needs (transitively), in the order first needed, as libbpf appends
    them; `placed` maps a .text function's section offset (in instructions) to where it went."""
    insns = decode(prog.insns)
    lds: dict[int, LdImm64] = {}
    kfuncs: dict[int, KfuncInfo] = {}
    text = obj.sections.get(".text")
    funcs = {p.sec_insn_off: p for p in text.programs} if text is not None else {}
    placed: dict[int, int] = {}
    todo = [(prog, 0, prog.relocs)]
    while todo:
        piece, at, relocs = todo.pop(0)
        for r in relocs:
            i = r.insn_idx - piece.sec_insn_off + at
            target = _target(insns[i], r) if r.kind in (RelocKind.CALL, RelocKind.SUBPROG_ADDR) else None
            if target is not None and target not in placed:
                callee = funcs[target]
                placed[target] = len(insns)
                insns += decode(callee.insns)
                lo, hi = callee.sec_insn_off, callee.sec_insn_off + callee.insn_cnt
                todo.append((callee, placed[target], [t for t in text.relocs if lo <= t.insn_idx < hi]))
            _apply(obj, insns, i, r, placed.get(target), lds, kfuncs)
    globals_ = {at: _global_args(obj, funcs[off].name) for off, at in placed.items() if funcs[off].is_global}
    arena = ArenaInfo(USER_VM_START) if obj.arena_map is not None else None
    return insns, ProgInfo(prog.name, prog.prog_type, arena, lds, kfuncs, globals_,
                           line_info=lambda i: obj.source_line(prog, i))


def _target(insn: Insn, r) -> int:
    """The .text instruction a call or callback address names (bpf_program__reloc_code())."""
    return r.sym_off // 8 + insn.imm + 1 if insn.code != BPF_LD_IMM64 else (r.sym_off + insn.imm) // 8


def _apply(obj, insns, i, r, target, lds, kfuncs) -> None:
    """One relocation, as bpf_program__reloc_code() and bpf_object__relocate_data() apply it."""
    insn = insns[i]
    if target is not None:
        src = BPF_PSEUDO_CALL if insn.code != BPF_LD_IMM64 else BPF_PSEUDO_FUNC
        insns[i] = replace(insn, src=src, imm=target - i - 1)
    elif r.kind == RelocKind.LD64:
        lds[i] = LdImm64(LdKind.MAP_PTR, MAP_ADDR, obj.map(r.target).type)
        insns[i] = replace(insn, src=BPF_PSEUDO_MAP_FD)
    elif r.kind == RelocKind.DATA:
        m = obj.arena_map if r.target == ARENA_SEC else obj.map(r.target)
        arena = m.type == BPF_MAP_TYPE_ARENA
        lds[i] = LdImm64(LdKind.MAP_VALUE, (USER_VM_START if arena else VALUE_ADDR) + insn.imm, m.type)
        insns[i] = replace(insn, src=BPF_PSEUDO_MAP_VALUE)
    else:
        e = next(e for e in obj.externs if e.name == r.sym_name)
        if r.kind == RelocKind.EXTERN_CALL:
            kfuncs[i] = KfuncInfo(e.name)
            insns[i] = replace(insn, src=BPF_PSEUDO_KFUNC_CALL, imm=e.btf_id)
        elif e.kind == ExternKind.KSYM:
            lds[i] = LdImm64(LdKind.KSYM, KSYM_ADDR)
            insns[i] = replace(insn, src=BPF_PSEUDO_BTF_ID)


PASSING = [("arena_htab", "arena_htab_llvm"), ("arena_list", "arena_list_add"), ("arena_list", "arena_list_sum"),
           ("arena_atomics", "add"), ("arena_atomics", "xchg"), ("stream", "stream_arena_read_fault"),
           ("verifier_arena", "basic_alloc1"), ("verifier_arena", "reserve_then_alloc"),
           ("verifier_arena", "alloc_in_a_loop")]


@pytest.mark.parametrize("name, prog", PASSING)
def test_arena_programs_verify_and_jit(name, prog):
    obj = BpfObject.open(build(name))
    insns, info = relocated(obj, obj.program(prog))
    v = bpf_check(insns, info)
    assert len(v.insns) == len(insns) and v.probe_count > 0
    casts = [i for i, insn in enumerate(insns) if insn.code == 0xBF and insn.off == 1 and insn.imm == 1]
    assert casts and all(v.insns[i] == Insn(0xBC, insns[i].dst, insns[i].src) for i in casts)
    image = do_jit(list(v.insns), 0xFFFF_FFFF_A000_0000, kern_vm_start=KERN_VM_START, user_vm_start=USER_VM_START,
                   resolve=lambda src, imm: 0xFFFF_FFFF_8100_0000, stack_depth=v.stack_depths)
    assert len(image.extable) == v.probe_count


def test_a_fetching_and_on_the_arena_is_refused_on_x86():
    obj = BpfObject.open(build("arena_atomics"))
    insns, info = relocated(obj, obj.program("and"))
    with pytest.raises(VerifierError) as e:
        bpf_check(insns, info)
    assert e.value.message == "BPF_ATOMIC stores into R1 arena is not allowed"
    assert str(e.value).endswith("arena_atomics.bpf.c:31: __sync_fetch_and_and(&and64_value, 0x011ull << 32);)")
