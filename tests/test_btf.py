"""The BTF reader: every kind, the helpers, `.BTF.ext`, and the BTF clang emits for the arena programs."""

import struct

import pytest
from bpf_build import BPF_C, build
from btf_blob import BtfBlob, every_kind

from emu.bpf.btf import Btf, BtfError
from emu.bpf.btf_ext import BtfExt
from emu.bpf.btf_types import BtfKind, Composite, Func, FuncProto, Linkage, Member
from emu.bpf.object_file import BpfObject, RelocKind
from emu.errors import EmuError


@pytest.fixture(scope="module")
def blob() -> Btf:
    return Btf.parse(every_kind().bytes())


def test_every_kind_parses_and_dumps_as_bpftool_does(blob):
    assert [t.kind for t in blob] == [
        BtfKind.INT, BtfKind.INT, BtfKind.PTR, BtfKind.ARRAY, BtfKind.STRUCT, BtfKind.UNION, BtfKind.ENUM,
        BtfKind.FWD, BtfKind.TYPEDEF, BtfKind.VOLATILE, BtfKind.CONST, BtfKind.RESTRICT, BtfKind.FUNC_PROTO,
        BtfKind.FUNC, BtfKind.VAR, BtfKind.DATASEC, BtfKind.FLOAT, BtfKind.DECL_TAG, BtfKind.TYPE_TAG,
        BtfKind.ENUM64]
    assert len(blob) == 21 and repr(blob[0]) == "[0] void"
    dump = blob.dump().splitlines()
    assert dump[0] == "[1] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED"
    assert dump[4:8] == ["[5] STRUCT 'pair' size=24 vlen=3", "\t'a' type_id=1 bits_offset=0",
                         "\t'flags' type_id=2 bits_offset=32 bitfield_size=3", "\t'v' type_id=4 bits_offset=64"]
    assert "[14] FUNC 'printk' type_id=13 linkage=global" in dump
    assert "[15] VAR 'g' type_id=11, linkage=global" in dump
    assert "[8] FWD 'later' fwd_kind=union" in dump


def test_values_of_each_kind(blob):
    pair = blob.find("pair", BtfKind.STRUCT)
    assert pair.member("flags") == Member("flags", 2, 32, 3)
    assert pair.member("v").byte_offset == 8
    enum = blob.find("e")
    assert enum.signed and [(v.name, v.value) for v in enum.values] == [("NEG", -1), ("ONE", 1)]
    assert blob[1].signed and not blob[2].signed
    assert blob.find("big").values[0].value == 1 << 44
    proto = blob[13]
    assert isinstance(proto, FuncProto) and proto.variadic and proto.ret_type == 1
    assert blob.find("arg:arena").component_idx == 0
    assert blob.find("double").size == 8
    assert blob.find("printk").linkage == Linkage.GLOBAL
    assert blob.find("nothing") is None and blob.find("int", BtfKind.STRUCT) is None


def test_resolve_through_modifiers_and_typedefs(blob):
    const = 11  # const volatile pair_t
    assert blob.skip_mods_and_typedefs(const).name == "pair"
    assert blob.resolve_type(15).name == "pair"  # the VAR too
    assert blob.resolve_size(const) == 24
    assert blob.resolve_size(4) == 16  # int[4]
    assert blob.resolve_size(3) == 8  # void *
    assert blob.resolve_size(15) == 24  # the VAR g
    with pytest.raises(BtfError, match="has no size"):
        blob.resolve_size(14)  # a FUNC
    with pytest.raises(BtfError, match="no definition"):
        blob.resolve_type(8)  # the FWD


def test_type_names_in_c(blob):
    assert blob.type_name(11) == "const volatile pair_t"
    assert blob.type_name(4) == "int [4]"
    assert blob.type_name(14) == "int printk(void *, ...)"
    assert blob.type_name(8) == "union later"
    assert blob.type_name(3) == "void *"


def test_fields_flatten_anonymous_members():
    b = BtfBlob()
    i = b.int("int", 4, signed=True)
    inner = b.add(BtfKind.UNION, "", 2, 4, b.records(("lo", i, 0), ("hi", i, 0)))
    b.add(BtfKind.STRUCT, "outer", 2, 8, b.records(("first", i, 0), ("", inner, 32)))
    btf = Btf.parse(b.bytes())
    assert [(f.name, f.bit_offset) for f in btf.fields(3)] == [("first", 0), ("lo", 32), ("hi", 32)]
    with pytest.raises(BtfError, match="not a struct or union"):
        btf.fields(1)


def test_a_longer_header_is_honoured():
    assert len(Btf.parse(every_kind().bytes(hdr_len=32))) == 21


def _bad(mutate) -> bytes:
    b = BtfBlob()
    mutate(b)
    return b.bytes()


MALFORMED = {
    "short": (b"\x9f\xeb\x01\x00", "too short"),
    "magic": (every_kind().bytes(magic=0x1234), "bad magic 0x1234"),
    "big-endian": (every_kind().bytes(magic=0x9FEB), "big-endian"),
    "hdr_len": (every_kind().bytes()[:4] + struct.pack("<I", 4096) + every_kind().bytes()[8:], "header length"),
    "strings past end": (every_kind().bytes()[:-3], "string section"),
    "type id": (_bad(lambda b: b.add(BtfKind.PTR, size_or_type=7)), "type id 7 out of range"),
    "name offset": (_bad(lambda b: b.types.extend(struct.pack("<III", 999, 1 << 24, 4) + bytes(4))),
                    "offset 0x3e7 outside the string section"),
    "kind": (_bad(lambda b: b.add(25)), "unsupported BTF kind 25"),
    "loop": (_bad(lambda b: (b.add(BtfKind.CONST, size_or_type=2), b.add(BtfKind.VOLATILE, size_or_type=1))),
             r"loop in type chain \[1\] -> \[2\] -> \[1\]"),
    "truncated members": (_bad(lambda b: b.add(BtfKind.STRUCT, "s", 3, 8, bytes(12))), "truncated type \\[1\\]"),
    "linkage": (_bad(lambda b: b.add(BtfKind.FUNC, "f", 7, 0)), "invalid linkage 7"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_btf_is_one_line_btf_error(name):
    data, message = MALFORMED[name]
    with pytest.raises(BtfError, match=message) as e:
        Btf.parse(data)
    assert isinstance(e.value, EmuError) and "\n" not in str(e.value)


def _ext(btf: Btf, func_rec: bytes, line_rec: bytes = b"", rec_size: int = 8) -> bytes:
    func = struct.pack("<I", rec_size) + func_rec
    line = struct.pack("<I", 16) + line_rec if line_rec else b""
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(func), len(func), len(line))
    return hdr + func + line


def test_btf_ext_records():
    b = every_kind()
    file_off, line_off = b.s("x.bpf.c"), b.s("\treturn printk(fmt);")
    sec = b.s("syscall")
    btf = Btf.parse(b.bytes())
    func = struct.pack("<IIII", sec, 1, 0, 14)
    line = struct.pack("<II", sec, 2) + struct.pack("<IIII", 0, file_off, line_off, 7 << 10 | 2) \
        + struct.pack("<IIII", 24, file_off, line_off, 8 << 10)
    ext = BtfExt.parse(_ext(btf, func, line), btf)
    assert ext.func_info == {"syscall": (ext.func_info["syscall"][0],)}
    assert ext.func_info["syscall"][0].name == "printk"
    first, second = ext.line_info["syscall"]
    assert (first.line_num, first.line_col, second.insn_idx) == (7, 2, 3)
    assert str(first) == "x.bpf.c:7:2: return printk(fmt);"
    assert ext.line_at("syscall", 16) == first and ext.line_at("syscall", 24) == second
    assert ext.line_at("other", 0) is None


@pytest.mark.parametrize("data, message", [
    (b"\x9f\xeb", "too short"),
    (struct.pack("<HBBI", 0x1234, 1, 0, 24) + bytes(24), "bad magic"),
    (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 8, 8, 0) + struct.pack("<II", 4, 0), "record size 4 invalid"),
    (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 12, 12, 0) + struct.pack("<III", 8, 0, 0), "do not fit"),
    (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 20, 20, 0) + struct.pack("<IIIII", 8, 0, 1, 0, 1),
     "not a FUNC"),
    (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 64, 64, 0) + bytes(8), "runs past the section end"),
])
def test_malformed_btf_ext(blob, data, message):
    with pytest.raises(BtfError, match=message):
        BtfExt.parse(data, blob)


# --- BTF as clang emits it for the arena programs ---


@pytest.fixture(scope="module")
def arena_list() -> BpfObject:
    return BpfObject.open(build("arena_list"))


def test_struct_of_an_arena_list(arena_list):
    btf = arena_list.btf
    elem = btf.find("elem", BtfKind.STRUCT)
    assert isinstance(elem, Composite) and elem.size == 16
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in btf.fields(elem.id)] == [
        ("next", 0, 0), ("value", 64, 0), ("seen", 96, 1), ("tag", 97, 7)]
    assert btf.type_name(elem.member("next").type) == "struct elem *"


def test_datasecs_get_their_sizes_and_offsets_from_the_elf(arena_list):
    btf = arena_list.btf
    bss = btf.find(".bss", BtfKind.DATASEC)
    assert bss.size == 12
    assert [(btf[v.type].name, v.offset, v.size) for v in bss.vars] == [("list_head", 0, 8), ("list_sum", 8, 4)]
    data = btf.find(".data", BtfKind.DATASEC)
    assert [(btf[v.type].name, v.offset, v.size) for v in data.vars] == [("expected_count", 0, 4)]
    assert btf.type_name(btf.find("cnt_limit").id) == "const volatile int cnt_limit"


def test_programs_and_kfuncs_are_funcs(arena_list):
    btf = arena_list.btf
    prog = btf.find("arena_list_add", BtfKind.FUNC)
    assert isinstance(prog, Func) and prog.linkage == Linkage.GLOBAL
    assert btf.type_name(prog.id) == "int arena_list_add(void *)"
    assert btf[prog.type].params[0].name == "ctx"
    assert btf.find("push", BtfKind.FUNC).linkage == Linkage.STATIC
    kfunc = btf.find("bpf_arena_alloc_pages", BtfKind.FUNC)
    assert kfunc.linkage == Linkage.EXTERN
    assert btf.type_name(kfunc.id) == "void *bpf_arena_alloc_pages(void *, void *, __u32, int, __u64)"
    ksyms = btf.find(".ksyms", BtfKind.DATASEC)
    assert [btf[v.type].name for v in ksyms.vars] == ["bpf_arena_alloc_pages"]


def test_map_extra_is_an_enum64(arena_list):
    arena = arena_list.btf.find("arena", BtfKind.VAR)
    extra = arena_list.btf.resolve_type(arena.id).member("map_extra")
    assert arena_list.btf[extra.type].kind == BtfKind.ENUM64
    assert arena_list.btf[extra.type].values[0].value == 1 << 44


def _source_line(name: str, text: str) -> int:
    lines = (BPF_C / name).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def test_func_info_per_section(arena_list):
    fi = arena_list.btf_ext.func_info
    assert [(f.name, f.insn_idx) for f in fi[".text"]] == [("push", 0)]
    total = arena_list.program("arena_list_sum")
    assert [(f.name, f.insn_idx) for f in fi["syscall"]] == [
        ("arena_list_add", 0), ("arena_list_sum", total.sec_insn_off)]


def test_line_info_gives_the_c_line_of_an_instruction(arena_list):
    push = arena_list.sections[".text"]
    call = next(r for r in push.relocs if r.kind == RelocKind.EXTERN_CALL)
    li = arena_list.btf_ext.line_at(".text", call.offset)
    assert li.file_name.endswith("arena_list.bpf.c")
    assert li.line_num == _source_line("arena_list.bpf.c", "bpf_arena_alloc_pages(&arena")
    assert "bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0)" in li.line
    first = arena_list.btf_ext.line_info["syscall"][0]
    assert first.insn_off == 0 and first.line.startswith("int arena_list_add(void *ctx)")


def test_decl_tag_marks_an_arena_argument():
    btf = BpfObject.open(build("verifier_arena")).btf
    tag = btf.find("arg:arena", BtfKind.DECL_TAG)
    assert btf[tag.type].name == "subprog_arena" and tag.component_idx == 0


def test_alignment(blob):
    assert [blob.align_of(i) for i in (1, 3, 4, 5, 17, 20)] == [4, 8, 4, 4, 8, 8]
    with pytest.raises(BtfError, match="has no alignment"):
        blob.align_of(14)


def test_a_struct_that_holds_itself_is_refused():
    b = BtfBlob()
    i = b.int("int", 4)
    b.add(BtfKind.STRUCT, "a", 2, 8, b.records(("x", i, 0), ("self", 3, 32)))
    b.add(BtfKind.TYPEDEF, "a_t", size_or_type=2)
    with pytest.raises(BtfError, match=r"a type contains itself \[2\] -> \[3\] -> \[2\]"):
        Btf.parse(b.bytes())
    ok = BtfBlob()
    i = ok.int("int", 4)
    ok.add(BtfKind.STRUCT, "node", 2, 16, ok.records(("next", 3, 0), ("v", i, 64)))
    ok.add(BtfKind.PTR, size_or_type=2)
    assert Btf.parse(ok.bytes()).type_name(3) == "struct node *"  # through a pointer it may
