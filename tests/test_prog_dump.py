"""`arena-emu prog dump xlated|jited`: a loaded program as bpftool prints it, line by line."""

import json
import re
import subprocess
import sys

import pytest
from bpf_build import BPF_C, build, build_exact
from elftools.elf.elffile import ELFFile

from emu.bpf.btf import Btf
from emu.bpf.insn import Insn
from emu.bpf.prog_info import kernel_syms_search
from emu.machine import Machine
from emu.tools.cli import main
from emu.tools.prog_dump import bpf_prog_linfo_lfind, btf_dumper_type_only, dump_jited, dump_xlated, program_info
from emu.tools.prog_dump import prog_dump as dump_of

TAG = "813e1825de069be8"

XLATED = f"""\
int dump_me(void * ctx):
; int dump_me(void *ctx)
   0: (b4) w6 = 1
; __u32 key = 1;
   1: (63) *(u32 *)(r10 -4) = r6
   2: (bf) r2 = r10
   3: (07) r2 += -4
; __u64 *v = bpf_map_lookup_elem(&hits, &key);
   4: (18) r1 = map[id:1]
   6: (85) call bpf_map_lookup_elem#-8064
; if (!v)
   7: (15) if r0 == 0x0 goto pc+12
; *v += 1;
   8: (79) r1 = *(u64 *)(r0 +0)
; *v += 1;
   9: (07) r1 += 1
; *v += 1;
  10: (7b) *(u64 *)(r0 +0) = r1
; total = 5;
  11: (18) r1 = 0x10000001000
  13: (bc) w1 = w1
  14: (b7) r2 = 5
  15: (7b) *(u64 *)(r1 +0) = r2
; return bump(&total, *v) > 3;
  16: (79) r1 = *(u64 *)(r0 +0)
; return bump(&total, *v) > 3;
  17: (85) call pc+4#bpf_prog_{TAG}_bump
; return bump(&total, *v) > 3;
  18: (25) if r0 > 0x3 goto pc+1
  19: (b4) w6 = 0
; }}
  20: (bc) w0 = w6
  21: (95) exit
__u64 bump(__u64 * p, __u64 by):
; static __noinline __u64 bump(__u64 __arena *p, __u64 by)
  22: (bf) r0 = r1
; return __sync_fetch_and_add(p, by);
  23: (18) r1 = 0x10000001000
  25: (bc) w1 = w1
  26: (db) r0 = atomic64_fetch_add((u64 *)(r1 +0), r0)
; return __sync_fetch_and_add(p, by);
  27: (95) exit
"""

JITED_BUMP = f"""\
__u64 bump(__u64 * p, __u64 by):
bpf_prog_{TAG}_bump:
; static __noinline __u64 bump(__u64 __arena *p, __u64 by)
   0:\tnopl\t(%rax, %rax)
\t0f 1f 44 00 00\x20
   5:\tnopl\t(%rax)
\t0f 1f 00\x20
   8:\tpushq\t%rbp
\t55\x20
   9:\tmovq\t%rsp, %rbp
\t48 89 e5\x20
   c:\tpushq\t%r12
\t41 54\x20
   e:\tmovabsq\t$18446683600838508544, %r12
\t49 bc 00 c0 00 10 00 c9 ff ff\x20
  18:\tmovq\t%rdi, %rax
\t48 89 f8\x20
; return __sync_fetch_and_add(p, by);
  1b:\tmovabsq\t$0x10000001000, %rdi
\t48 bf 00 10 00 00 00 01 00 00\x20
  25:\tmovl\t%edi, %edi
\t89 ff\x20
  27:\tlock xaddq\t%rax, (%rdi, %r12)\t; extable: fixup 0x80700107, dst none, arena reg rdi, off 0
\tf0 4a 0f c1 44 27 00\x20
; return __sync_fetch_and_add(p, by);
  2e:\tpopq\t%r12
\t41 5c\x20
  30:\tleave
\tc9\x20
  31:\tretq
\tc3\x20

"""


@pytest.fixture(scope="module")
def obj_path():
    return build_exact("dump")


def _dump(path, mode, **kw):
    m = Machine()
    return dump_of(m.bpf, m.load_bpf(str(path)), "dump_me", mode, **kw)


def test_xlated_is_bpftools_text_with_c_lines_and_function_prototypes(obj_path):
    assert _dump(obj_path, "xlated").text == XLATED


def test_xlated_linum_and_opcodes_add_the_file_line_column_and_bytes(obj_path):
    lines = _dump(obj_path, "xlated", linum=True, opcodes=True).text.splitlines()
    src = BPF_C / "dump.bpf.c"
    assert lines[:8] == [
        "int dump_me(void * ctx):",
        f"; int dump_me(void *ctx) [file:{src} line_num:23 line_col:0]",
        "   0: (b4) w6 = 1",
        "       b4 06 00 00 01 00 00 00",
        f"; __u32 key = 1; [file:{src} line_num:25 line_col:8]",
        "   1: (63) *(u32 *)(r10 -4) = r6",
        "       63 6a fc ff 00 00 00 00",
        "   2: (bf) r2 = r10",
    ]
    at = lines.index("   4: (18) r1 = map[id:1]")  # ld_imm64: both slots' bytes on one line
    assert lines[at + 1] == "       18 11 00 00 01 00 00 00 00 00 00 00 00 00 00 00"


def test_jited_prints_each_function_with_its_symbol_lines_and_exception_table_entries(obj_path):
    text = _dump(obj_path, "jited", opcodes=True).text
    main_fn, bump = text.split("\n\n", 1)
    assert bump == JITED_BUMP
    assert main_fn.splitlines()[:3] == ["int dump_me(void * ctx):", f"bpf_prog_{TAG}_dump_me:",
                                        "; int dump_me(void *ctx)"]
    assert "  60:\tmovq\t%rsi, (%rdi, %r12)\t; extable: fixup 0x80700105, dst none, arena reg rdi, off 0" in main_fn


def test_json_has_bpftools_fields(obj_path):
    xlated = _dump(obj_path, "xlated", linum=True).json
    assert xlated[0] == {"proto": "int dump_me(void * ctx)", "src": "int dump_me(void *ctx)",
                         "file": str(BPF_C / "dump.bpf.c"), "line_num": 23, "disasm": "(b4) w6 = 1"}
    jited = _dump(obj_path, "jited").json
    assert [f["name"] for f in jited] == [f"bpf_prog_{TAG}_dump_me", f"bpf_prog_{TAG}_bump"]
    xadd = next(i for i in jited[1]["insns"] if i["operation"] == "lock xaddq")
    assert xadd == {"pc": "0x27", "operation": "lock xaddq", "operands": ["%rax", "%rdi", "%r12"],
                    "extable": "fixup 0x80700107, dst none, arena reg rdi, off 0"}
    # bpftool's jit_disasm.c writes a null into the operands array of an instruction without operands
    assert jited[1]["insns"][-1] == {"pc": "0x31", "operation": "retq", "operands": [None]}


def test_the_cli_dumps_a_bpf_c_file_and_says_what_is_wrong_in_one_line(obj_path, capsys):
    src = str(BPF_C / "dump.bpf.c")
    assert main(["prog", "dump", "xlated", src]) == 0
    assert capsys.readouterr().out == XLATED
    assert main(["prog", "dump", "jited", src, "--prog", "nope"]) == 2
    assert capsys.readouterr().err == "arena-emu: no program 'nope' in dump: there are dump_me\n"
    assert main(["prog", "dump", "xlated", str(BPF_C / "nothing.bpf.o")]) == 2
    assert capsys.readouterr().err == f"arena-emu: cannot read {BPF_C / 'nothing.bpf.o'}: no such file\n"
    assert main(["prog", "dump", "xlated", __file__]) == 2
    assert capsys.readouterr().err.endswith(": not a BPF object (an ELF file for EM_BPF, as clang -target bpf "
                                            "makes)\n")
    assert main(["prog", "dump", "xlated", str(obj_path), "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)  # one object per instruction printed: an ld_imm64 is one
    assert len(docs) == 25 and docs[15] == {"src": "return bump(&total, *v) > 3;",
                                            "disasm": f"(85) call pc+4#bpf_prog_{TAG}_bump"}


def test_an_object_with_several_programs_needs_prog():
    out = subprocess.run([sys.executable, "-m", "emu", "prog", "dump", "xlated", str(build("arena_list"))],
                         capture_output=True, text=True)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr.endswith("has 2 programs: name one with --prog (arena_list_add, arena_list_sum)\n")


def test_bytecode_loaded_without_an_object_dumps_without_lines_or_prototypes():
    """The JIT's output for four instructions, compiler-independent: a helper call named by kallsyms with its
    distance from the call base, a conditional jump, the frame the JIT sets up."""
    code = b"".join(i.encode() for i in [Insn(0x85, 0, 0, 0, 7), Insn(0x07, 0, 0, 0, 2), Insn(0x25, 0, 0, 1, 5),
                                         Insn(0xB7), Insn(0x95)])
    m = Machine()
    info = program_info(m.bpf, m.load_bpf_insns(code, "tiny"))
    assert dump_xlated(info, kernel_syms_search(m.bpf.kallsyms)).text == (
        "   0: (85) call bpf_get_prandom_u32#-7968\n"
        "   1: (07) r0 += 2\n"
        "   2: (25) if r0 > 0x5 goto pc+1\n"
        "   3: (b7) r0 = 0\n"
        "   4: (95) exit\n")
    assert m.symbol("bpf_get_prandom_u32") == 0xFFFF_FFFF_8100_0000 - 7968
    assert dump_jited(info).text == (
        f"bpf_prog_{info.tag}_tiny:\n"
        "   0:\tnopl\t(%rax, %rax)\n"
        "   5:\tnopl\t(%rax)\n"
        "   8:\tpushq\t%rbp\n"
        "   9:\tmovq\t%rsp, %rbp\n"
        "   c:\tsubq\t$0x200, %rsp\n"
        "  13:\tcallq\t0xffffffff80ffe0e0\n"
        "  18:\taddq\t$2, %rax\n"
        "  1c:\tcmpq\t$5, %rax\n"
        "  20:\tja\t0xffffffff81000024\n"
        "  22:\txorl\t%eax, %eax\n"
        "  24:\tleave\n"
        "  25:\tretq\n"
        "\n")


def test_lfind_returns_the_last_record_not_past_the_key_from_nr_skip_on():
    keys = [0, 0, 3, 7]
    assert [bpf_prog_linfo_lfind(keys, k, s) for k, s in ((0, 0), (1, 1), (2, 2), (3, 2), (9, 3), (9, 4))] == \
        [1, 1, None, 2, 3, None]


def test_btf_dumper_type_only_spells_functions_as_bpftool(obj_path):
    btf = Btf.parse(_btf_section(obj_path))
    func = btf.find("bump")
    assert btf_dumper_type_only(btf, func.id) == "__u64 bump(__u64 * p, __u64 by)"
    assert btf_dumper_type_only(btf, btf.find("dump_me").id) == "int dump_me(void * ctx)"


def _btf_section(path) -> bytes:
    with open(path, "rb") as f:
        return ELFFile(f).get_section_by_name(".BTF").data()


def test_the_readmes_dump_examples_are_what_the_commands_print(capsys):
    build_exact("use_after_free")
    readme = (BPF_C.parent.parent / "README.md").read_text()
    section = readme.split("### Dumping a program", 1)[1].split("\n## ", 1)[0]
    pairs = re.findall(r"```sh\narena-emu (prog dump [^\n]*)\n```\n```text\n(.*?)```", section, re.S)
    assert len(pairs) == 2
    for command, text in pairs:
        args = command.split()
        args[3] = str(BPF_C.parent.parent / args[3])
        assert main(args) == 0
        assert text in capsys.readouterr().out


def test_kernel_files_load_first_and_a_kfunc_call_is_named_by_kallsyms(capsys):
    obj = str(build("arena_kfunc"))
    assert main(["prog", "dump", "xlated", obj, "--prog", "kfunc_copy_and_sum"]) == 2
    assert capsys.readouterr().err == ("arena-emu: extern (func ksym) 'bpf_kfunc_arena_copy': not found in kernel "
                                       "or module BTFs\n")
    stubs = str(BPF_C.parent.parent / "kernel_stubs" / "arena_kfuncs.S")
    assert main(["prog", "dump", "xlated", stubs, obj, "--prog", "kfunc_copy_and_sum"]) == 0
    calls = re.findall(r"\(85\) call (\S+)", capsys.readouterr().out)
    m = Machine()
    m.load(stubs)
    base = 0xFFFF_FFFF_8100_0000  # stands in for __bpf_call_base: the imm is the distance from kernel text
    assert calls == ["bpf_arena_alloc_pages#-8192",
                     f"bpf_kfunc_arena_copy#{m.symbol('bpf_kfunc_arena_copy') - base}",
                     f"bpf_kfunc_arena_list_sum#{m.symbol('bpf_kfunc_arena_list_sum') - base}"]


def test_xlated_json_opcodes_of_an_ld_imm64_run_twelve_bytes_from_its_imm_as_bpftools():
    code = b"".join(i.encode() for i in [Insn(0x18, 1, 0, 0, 0x1000), Insn(0, 0, 0, 0, 0x100), Insn(0x95)])
    m = Machine()
    info = program_info(m.bpf, m.load_bpf_insns(code, "ld"))
    first = dump_xlated(info, kernel_syms_search(m.bpf.kallsyms), opcodes=True).json[0]
    assert first == {"disasm": "(18) r1 = 0x10000001000",
                     "opcodes": {"code": "0x18", "src_reg": "0x0", "dst_reg": "0x1", "off": ["0x00", "0x00"],
                                 "imm": ["0x00", "0x10", "0x00", "0x00", "0x00", "0x00", "0x00", "0x00",
                                         "0x00", "0x01", "0x00", "0x00"]}}
