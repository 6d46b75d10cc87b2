"""The object reader: what bpf_object__open() finds in the arena programs of tests/bpf_c/, and what it refuses."""

import struct

import pytest
from bpf_build import build
from elftools.elf.elffile import ELFFile

from emu.bpf.arena import BPF_F_MMAPABLE
from emu.bpf.btf_types import Linkage
from emu.bpf.maps import BPF_F_RDONLY_PROG, BPF_MAP_TYPE_ARENA, MapKind, internal_map_name
from emu.bpf.object_file import BpfObject, BpfObjectError, Extern, ExternKind, RelocKind, RelocType
from emu.bpf.sec_defs import SECTION_DEFS, ProgType, find_sec_def, sec_def_matches
from emu.errors import EmuError

BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY, BPF_F_NO_PREALLOC = 1, 2, 1


@pytest.fixture(scope="module")
def objs() -> dict[str, BpfObject]:
    names = ("arena_list", "arena_htab", "arena_atomics", "verifier_arena", "stream")
    return {n: BpfObject.open(build(n)) for n in names}


def test_programs_by_section_and_subprograms(objs):
    obj = objs["arena_list"]
    assert obj.name == "arena_list" and obj.license == "GPL"
    assert [(p.name, p.sec_name, p.subprog) for p in obj.programs] == [
        ("push", ".text", True), ("arena_list_add", "syscall", False), ("arena_list_sum", "syscall", False)]
    assert [p.name for p in obj.entry_programs] == ["arena_list_add", "arena_list_sum"]
    syscall = obj.sections["syscall"]
    add, total = syscall.programs
    assert (add.sec_insn_off, total.sec_insn_off) == (0, add.insn_cnt)
    assert syscall.insns == add.insns + total.insns
    assert obj.program("arena_list_sum") is total and not total.subprog and total.is_global
    assert not obj.programs[0].is_global  # static push
    with pytest.raises(KeyError):
        obj.program("push")  # subprograms are not programs to look up


def test_the_arena_map_and_its_attributes(objs):
    arena = objs["arena_list"].arena_map
    assert arena.name == "arena" and arena.kind == MapKind.USER
    assert (arena.type, arena.map_flags, arena.max_entries, arena.map_extra) == (
        BPF_MAP_TYPE_ARENA, BPF_F_MMAPABLE, 100, 1 << 44)
    assert (arena.key_size, arena.value_size, arena.sec_offset) == (0, 0, 0)
    assert repr(arena) == ("<BpfMap arena arena key 0 value 0 max_entries 100 flags 0x400"
                           " map_extra 0x100000000000>")


def test_a_hash_map_takes_key_and_value_sizes_from_their_types(objs):
    obj = objs["arena_htab"]
    shadow = obj.map("shadow")
    assert (shadow.type, shadow.max_entries, shadow.map_flags) == (BPF_MAP_TYPE_HASH, 128, BPF_F_NO_PREALLOC)
    assert (shadow.key_size, shadow.value_size) == (4, 16)
    assert obj.btf.type_name(shadow.key_type_id) == "__u32"
    assert obj.btf.type_name(shadow.value_type_id) == "struct bucket"
    assert shadow.sec_offset == 24  # after the arena's three members in .maps, from the ELF symbol


def test_internal_maps_for_data_rodata_bss(objs):
    obj = objs["arena_list"]
    data, rodata, bss = (obj.map(s) for s in (".data", ".rodata", ".bss"))
    assert [m.name for m in (data, rodata, bss)] == ["arena_li.data", "arena_li.rodata", "arena_li.bss"]
    assert {m.kind for m in (data, rodata, bss)} == {MapKind.DATA, MapKind.RODATA, MapKind.BSS}
    for m in (data, rodata, bss):
        assert (m.type, m.key_size, m.max_entries) == (BPF_MAP_TYPE_ARRAY, 4, 1)
    assert data.data == struct.pack("<i", -1) and rodata.data == struct.pack("<i", 64) and bss.data is None
    assert bss.value_size == 12
    assert rodata.map_flags == BPF_F_RDONLY_PROG | BPF_F_MMAPABLE and data.map_flags == BPF_F_MMAPABLE
    assert [(v.name, v.offset, v.size) for v in bss.variables] == [("list_head", 0, 8), ("list_sum", 8, 4)]


def test_a_map_of_static_variables_is_not_mmapable(objs):
    bss = objs["verifier_arena"].map(".bss")
    assert bss.name == "verifier.bss" and bss.map_flags == 0
    assert [(v.name, v.linkage) for v in bss.variables] == [("zero", Linkage.STATIC)]


def test_arena_globals_with_their_initial_values(objs):
    obj = objs["arena_atomics"]
    assert [(v.name, v.offset, v.size) for v in obj.arena_globals] == [
        ("add64_value", 0, 8), ("add32_value", 8, 4), ("xchg64_value", 16, 8), ("and64_value", 24, 8)]
    assert struct.unpack_from("<QIxxxxQQ", obj.arena_data) == (1, 1, 1, 0x110 << 32)
    assert [v.name for v in objs["arena_htab"].arena_globals] == ["htab"]
    assert objs["arena_htab"].arena_globals[0].size == 16 * 8 + 8


def test_extern_kfuncs(objs):
    obj = objs["verifier_arena"]
    assert [(e.name, e.kind, e.is_func, e.weak) for e in obj.externs] == [
        ("bpf_arena_alloc_pages", ExternKind.KSYM, True, True),
        ("bpf_arena_free_pages", ExternKind.KSYM, True, True),
        ("bpf_arena_reserve_pages", ExternKind.KSYM, True, True)]
    stream = objs["stream"].kfuncs
    assert [(e.name, e.weak) for e in stream] == [("bpf_stream_vprintk", True)]  # the shipped header's __weak wins
    assert objs["stream"].btf.type_name(stream[0].type_id) == "int (int, const char *, const void *, __u32, void *)"


def _by_symbol(relocs) -> dict:
    return {r.sym_name: (r.kind, r.target) for r in relocs}


def test_relocations_are_classified_as_libbpf_does(objs):
    obj = objs["arena_list"]
    push, add, _ = obj.programs
    assert _by_symbol(push.relocs) == {
        "arena": (RelocKind.LD64, "arena"),
        "bpf_arena_alloc_pages": (RelocKind.EXTERN_CALL, "bpf_arena_alloc_pages"),
        "list_head": (RelocKind.DATA, "arena_li.bss"),
        "list_count": (RelocKind.DATA, "arena")}
    assert _by_symbol(add.relocs) == {"cnt_limit": (RelocKind.DATA, "arena_li.rodata"),
                                      ".text": (RelocKind.CALL, ".text")}
    for r in push.relocs + add.relocs:
        code = obj.sections[".text" if r in push.relocs else "syscall"].insns[r.offset]
        assert r.type == {0x18: RelocType.R_BPF_64_64, 0x85: RelocType.R_BPF_64_32}[code]
    call = next(r for r in push.relocs if r.kind == RelocKind.EXTERN_CALL)
    assert repr(call) == (f"<Relocation insn {call.insn_idx} R_BPF_64_32 'bpf_arena_alloc_pages':"
                          " kfunc call 'bpf_arena_alloc_pages'+0>")


def test_calls_to_global_and_static_subprograms(objs):
    obj = objs["arena_htab"]
    calls = [r for r in obj.program("arena_htab_llvm").relocs if r.kind == RelocKind.CALL]
    update = next(p for p in obj.programs if p.name == "htab_update")
    assert [(r.sym_name, r.sym_off) for r in calls] == [("htab_update", update.sec_insn_off * 8), (".text", 0)]


def test_arena_global_relocations_carry_the_variable_offset(objs):
    obj = objs["arena_atomics"]
    data = {(r.sym_name, r.sym_off) for p in obj.programs for r in p.relocs if r.target == "arena"}
    assert data == {("add64_value", 0), ("add32_value", 8), ("and64_value", 24), ("xchg64_value", 16)}


def test_a_static_variable_is_relocated_through_its_section(objs):
    obj = objs["stream"]
    data = _by_symbol(r for r in obj.program("stream_arena_read_fault").relocs if r.kind == RelocKind.DATA)
    assert data == {".rodata": (RelocKind.DATA, "stream.rodata"), ".rodata.str1.1": (RelocKind.DATA, ".rodata.str1.1")}
    assert obj.map(".rodata").data == b"arena fault at %llx\n\0"


def test_string_literals_get_a_map_of_their_own(objs):
    strings = objs["stream"].map(".rodata.str1.1")
    assert (strings.name, strings.kind, strings.data) == (".rodata.str1.1", MapKind.RODATA, b"read %llu\n\0")
    assert strings.map_flags == BPF_F_RDONLY_PROG and strings.variables == ()  # no DATASEC: not mmapable


def test_a_question_mark_section_is_not_autoloaded(objs):
    obj = objs["verifier_arena"]
    quiet = obj.program("not_autoloaded")
    assert (quiet.sec_name, quiet.autoload, quiet.prog_type) == ("tc", False, ProgType.SCHED_CLS)
    assert obj.sections["?tc"].index == quiet.sec_idx  # the ELF section keeps its name
    assert obj.program("basic_alloc1").autoload


def test_program_types_from_sec_names(objs):
    prog = objs["arena_list"].program("arena_list_add")
    assert (prog.prog_type, prog.sleepable) == (ProgType.SYSCALL, True)
    push = objs["arena_list"].programs[0]
    assert push.subprog and push.prog_type is None


@pytest.mark.parametrize("sec, prog_type, sleepable", [
    ("syscall", ProgType.SYSCALL, True), ("xdp", ProgType.XDP, False), ("tc/ingress", ProgType.SCHED_CLS, False),
    ("fentry/bpf_fentry_test1", ProgType.TRACING, False), ("fentry.s/x", ProgType.TRACING, True),
    ("struct_ops/enqueue", ProgType.STRUCT_OPS, False), ("kprobe", ProgType.KPROBE, False),
    ("fentryx", None, False), ("syscall/x", None, False), ("my_section", None, False),
])
def test_sec_def_matching(sec, prog_type, sleepable):
    d = find_sec_def(sec)
    assert (d.prog_type, d.sleepable) == (prog_type, sleepable) if prog_type else d is None


@pytest.mark.parametrize("obj, real, name", [
    ("arena_demo", ".bss", "arena_de.bss"), ("arena_demo", ".rodata", "arena_de.rodata"),
    ("my_object_name", ".kconfig", "my_obje.kconfig"), ("x", ".data", "x.data"),
    ("arena_demo", ".rodata.str1.1", ".rodata.str1.1"), ("o", ".data.custom_long_name", ".data.custom_lo"),
    ("a-b", ".bss", "a_b.bss"),
])
def test_internal_map_names(obj, real, name):
    assert internal_map_name(obj, real) == name


@pytest.mark.parametrize("name, message", [
    ("bad_arena_no_map", "the ARENA map should be explicitly declared"),
    ("bad_static_prog", "program 'hidden_prog' is static and not supported"),
    ("bad_arena_too_small", r"declared ARENA map size \(4096\) is too small .* of size 8192"),
    ("bad_map_field", "map 'typo': unknown field 'max_entires'"),
])
def test_objects_libbpf_refuses(name, message):
    with pytest.raises(BpfObjectError, match=message):
        BpfObject.open(build(name))


def _patched(path, patch) -> bytes:
    data = bytearray(path.read_bytes())
    with open(path, "rb") as f:
        patch(data, ELFFile(f))
    return bytes(data)


def _machine(data, elf):
    data[18:20] = struct.pack("<H", 62)  # EM_X86_64


def _reloc_on_alu(data, elf):
    sec = elf.get_section_by_name("syscall")
    data[sec["sh_offset"] + 8] = 0xB7  # the ld_imm64 of cnt_limit becomes a mov


def _rel_symbol(data, elf):
    rel = elf.get_section_by_name(".relsyscall")
    struct.pack_into("<Q", data, rel["sh_offset"] + 8, 999 << 32 | 1)


def _shoff(data, elf):
    struct.pack_into("<Q", data, 0x28, len(data) + 64)


def _btf_magic(data, elf):
    struct.pack_into("<H", data, elf.get_section_by_name(".BTF")["sh_offset"], 0x1234)


def _legacy_maps(data, elf):
    strtab = elf.get_section(elf["e_shstrndx"])["sh_offset"]
    at = data.index(b".maps\0", strtab)
    data[at:at + 6] = b"maps\0\0"


@pytest.mark.parametrize("patch, message", [
    (_machine, "not a BPF object file"),
    (_reloc_on_alu, r"invalid relo against 'cnt_limit' for insns\[1\].code 0xb7"),
    (_rel_symbol, "symbol 999 out of range"),
    (_shoff, "malformed ELF"),
    (_btf_magic, r"^arena_list: \.BTF: bad magic 0x1234"),
    (_legacy_maps, "legacy map definitions in 'maps' section are not supported"),
])
def test_a_damaged_object_is_one_line_bpf_object_error(patch, message):
    data = _patched(build("arena_list"), patch)
    with pytest.raises(BpfObjectError, match=message) as e:
        BpfObject.from_bytes(data, "arena_list")
    assert isinstance(e.value, EmuError) and "\n" not in str(e.value)


@pytest.mark.parametrize("data, message", [
    (b"", "not an ELF file"), (b"\x7fELF", "malformed ELF"), (b"MZ\x90\x00" * 20, "not an ELF file")])
def test_not_an_object(data, message):
    with pytest.raises(BpfObjectError, match=message):
        BpfObject.from_bytes(data)


def test_a_missing_file(tmp_path):
    with pytest.raises(BpfObjectError, match="No such file"):
        BpfObject.open(tmp_path / "absent.bpf.o")


def test_kconfig_and_ksym_externs_and_the_kconfig_map():
    obj = BpfObject.open(build("ksyms"))
    assert [(e.name, e.kind, e.is_func, e.weak, e.data_off, e.size) for e in obj.externs] == [
        ("CONFIG_HZ", ExternKind.KCONFIG, False, False, 0, 4),  # by alignment first, as cmp_externs() sorts
        ("CONFIG_BPF_ARENA", ExternKind.KCONFIG, False, True, 4, 1),
        ("bpf_prog_active", ExternKind.KSYM, False, False, 0, 0),
        ("bpf_rcu_read_lock", ExternKind.KSYM, True, False, 0, 0),
        ("bpf_rcu_read_unlock", ExternKind.KSYM, True, False, 0, 0)]
    assert obj.btf.type_name(obj.externs[2].type_id) == "int"
    kconfig = obj.map(".kconfig")
    assert (kconfig.name, kconfig.kind, kconfig.value_size) == ("ksyms.kconfig", MapKind.KCONFIG, 5)
    assert kconfig.map_flags == BPF_F_RDONLY_PROG | BPF_F_MMAPABLE
    assert _by_symbol(obj.program("read_externs").relocs) == {
        "bpf_rcu_read_lock": (RelocKind.EXTERN_CALL, "bpf_rcu_read_lock"),
        "bpf_prog_active": (RelocKind.EXTERN_LD64, "bpf_prog_active"),
        "CONFIG_HZ": (RelocKind.EXTERN_LD64, "CONFIG_HZ"),
        "CONFIG_BPF_ARENA": (RelocKind.EXTERN_LD64, "CONFIG_BPF_ARENA"),
        "bpf_rcu_read_unlock": (RelocKind.EXTERN_CALL, "bpf_rcu_read_unlock")}


def test_co_re_relocations_are_read_from_btf_ext():
    obj = BpfObject.open(build("core"))
    (relo,) = obj.btf_ext.core_relos["syscall"]
    assert obj.btf[relo.type_id].name == "task_struct___local"
    assert (relo.insn_off, relo.access_str, relo.kind) == (0, "0:1", 0)  # BPF_CORE_FIELD_BYTE_OFFSET of tgid


def test_source_line_of_a_program_instruction(objs):
    obj = objs["arena_list"]
    total = obj.program("arena_list_sum")
    first = obj.source_line(total, 0)
    assert first.line.startswith("int arena_list_sum(void *ctx)")
    assert obj.source_line(total, total.insn_cnt) is None
    lines = {obj.source_line(total, i).line.strip() for i in range(total.insn_cnt)}
    assert "list_sum = sum;" in lines


def test_a_callback_is_a_subprogram_address(objs):
    obj = objs["verifier_arena"]
    (r,) = obj.program("alloc_in_a_loop").relocs
    assert (r.kind, r.sym_name, r.sym_off) == (RelocKind.SUBPROG_ADDR, ".text", 0)
    insns = obj.sections["syscall"].insns
    imm = int.from_bytes(insns[r.offset + 4:r.offset + 8], "little")  # a static callee: the addend is its offset
    touch = next(p for p in obj.programs if p.name == "touch_page")
    assert touch.subprog and imm == touch.sec_insn_off * 8


def test_arena_pointers_are_cast_by_the_compiler(objs):
    """BPF_ALU64 | BPF_MOV | BPF_X with off 1 is addr_space_cast: the build flags give the arena its casts."""
    insns = objs["arena_list"].sections[".text"].insns
    casts = [i for i in range(0, len(insns), 8) if insns[i] == 0xBF and insns[i + 2:i + 4] == b"\x01\x00"]
    assert casts and all(insns[i + 4:i + 8] == b"\x01\x00\x00\x00" for i in casts)  # imm 1: as(1) to as(0)


def test_short_reprs(objs):
    obj = objs["arena_list"]
    assert repr(obj) == "<BpfObject arena_list: 2 programs, 1 subprograms, 4 maps, 1 externs>"
    syscall = obj.sections["syscall"]
    assert repr(syscall) == (f"<ProgSection syscall [{syscall.index}]: {len(syscall.insns) // 8} insns, 2 programs,"
                             f" {len(syscall.relocs)} relocations>")
    add = obj.program("arena_list_add")
    assert repr(add) == f'<BpfProgram arena_list_add SEC("syscall") insns 0..{add.insn_cnt}>'


def test_map_in_map_prog_array_and_pinning():
    obj = BpfObject.open(build("map_in_map"))
    outer, prog_array, pinned = obj.map("outer"), obj.map("jmp_table"), obj.map("pinned")
    assert (outer.type_name, outer.key_size, outer.value_size) == ("array_of_maps", 4, 4)
    inner = outer.inner
    assert (inner.name, inner.type_name, inner.key_size, inner.value_size, inner.max_entries) == (
        "outer.inner", "array", 4, 8, 4)
    assert (prog_array.type_name, prog_array.value_size, prog_array.inner) == ("prog_array", 4, None)
    assert (pinned.key_size, pinned.value_size, pinned.pinning, pinned.numa_node) == (8, 24, 1, 1)


def test_no_two_sec_defs_match_one_name():
    for d in SECTION_DEFS:
        stem = d.sec.removesuffix("+")
        for name in (stem, stem + "/x") if d.sec.endswith("+") else (stem,):
            assert [m.sec for m in SECTION_DEFS if sec_def_matches(m, name)] == [d.sec]


@pytest.mark.parametrize("name, essential", [
    ("bpf_arena_alloc_pages", "bpf_arena_alloc_pages"), ("bpf_arena_alloc_pages___v2", "bpf_arena_alloc_pages"),
    ("a___b___c", "a___b"), ("x____y", "x____y"), ("___x", "___x"), ("bpf_foo___", "bpf_foo___")])
def test_extern_essential_names(name, essential):
    assert Extern(name, ExternKind.KSYM, True, False, 1, 2, 3).essent_name == essential
