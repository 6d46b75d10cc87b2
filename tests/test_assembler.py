"""The assembler front end: GNU as syntax in, exact bytes out, clear errors, no crashes."""

import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.asm.assembler import Assembler, Source
from emu.errors import AsmError
from emu.x86.decode import disasm
from emu.x86.extable import ExtableEntry

BASES = {"text": 0xFFFF_FFFF_8100_0000, "rodata": 0xFFFF_FFFF_8200_0000,
         "data": 0xFFFF_FFFF_8280_0000, "bss": 0xFFFF_FFFF_8300_0000}
T = BASES["text"]

# Each line with the bytes GNU as 2.40 (`as --64`) gives for it. The decimal
# literals read differently as hex (100 vs 0x100), so a front end that let
# keystone read them would fail every row.
GNU_AS = [
    ("addq $100, %rsp", "4883c464"),
    ("mov 16(%rsp), %rax", "488b442410"),
    ("lea -4096(%rax), %rax", "488d8000f0ffff"),
    ("movl $10, %eax", "b80a000000"),
    ("mov -8(%rbp), %rcx", "488b4df8"),
    ("mov -16(%rbp), %rcx", "488b4df0"),
    ("subq $4096, %rsp", "4881ec00100000"),
    ("movb $255, (%rdi)", "c607ff"),
    ("cmp $1000000, %rdx", "4881fa40420f00"),
    ("mov 100(%rdi,%rsi,8), %r12", "4c8b64f764"),
    ("movq $-100, %rax", "48c7c09cffffff"),
]


def assemble(*texts, extern=None, syntax="att"):
    sources = [Source(f"f{i}.S", t) for i, t in enumerate(texts)]
    return Assembler().assemble(sources, BASES, extern or {}, syntax)


def text_bytes(image):
    return bytes(image.sections["text"].data)


def errors(*texts, **kw):
    with pytest.raises(AsmError) as e:
        assemble(*texts, **kw)
    return [str(d) for d in e.value.diagnostics]


@pytest.mark.parametrize(("line", "expected"), GNU_AS)
def test_decimal_literals_assemble_as_gnu_as_does(line, expected):
    assert text_bytes(assemble(line)).hex() == expected


@pytest.mark.skipif(shutil.which("as") is None or shutil.which("objcopy") is None, reason="needs GNU binutils")
def test_the_table_still_matches_the_systems_gnu_as(tmp_path):
    src = tmp_path / "lines.s"
    src.write_text("\n".join(line for line, _ in GNU_AS) + "\n")
    subprocess.run(["as", "--64", "-o", str(tmp_path / "l.o"), str(src)], check=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(tmp_path / "l.o"), str(tmp_path / "l.bin")],
                   check=True)
    assert (tmp_path / "l.bin").read_bytes().hex() == "".join(b for _, b in GNU_AS)


def test_intel_syntax_reads_decimals_as_decimal_too():
    image = assemble(".intel_syntax noprefix\nmov rax, [rdi + 16]\nadd rsp, 100\n")
    assert text_bytes(image).hex() == "488b4710" "4883c464"
    assert text_bytes(assemble("mov rax, [rdi + 16]", syntax="intel")).hex() == "488b4710"


def test_numeric_local_labels_refer_back_and_forward():
    image = assemble("""
1:  dec %rdi
    jnz 1b
    jmp 1f
    nop
1:  jmp 1b
""")
    insns = disasm(text_bytes(image), T)
    assert [(i.mnemonic, i.op_str) for i in insns] == [
        ("decq", "%rdi"), ("jne", f"{T:#x}"), ("jmp", f"{T + 8:#x}"), ("nop", ""), ("jmp", f"{T + 8:#x}")]


def test_branches_to_symbols_land_exactly_on_them():
    """keystone's own resolver drops the fixup addend; ours must not."""
    image = assemble("""
SYM_FUNC_START(f)
    call g
    jmp g
    lea g(%rip), %rax
    lea g+8(%rip), %rax
    ret
SYM_FUNC_END(f)
SYM_FUNC_START(g)
    ret
""")
    g = next(a for n, a, *_ in image.symbols if n == "g")
    insns = disasm(text_bytes(image), T)
    assert insns[0].op_str == f"{g:#x}" and insns[1].op_str == f"{g:#x}"
    for insn, target in ((insns[2], g), (insns[3], g + 8)):
        disp = int.from_bytes(insn.raw[3:7], "little", signed=True)
        assert insn.address + insn.size + disp == target


def test_short_and_long_branches_are_relaxed_to_fit():
    image = assemble("jmp 1f\n.fill 200, 1, 0x90\n1: jmp 2f\n2: ret\n")
    insns = disasm(text_bytes(image), T)
    assert insns[0].raw.hex() == "e9c8000000"  # 200 bytes away: rel32
    assert insns[-2].raw.hex() == "eb00"  # right after: rel8


def test_symbols_resolve_across_files_and_against_the_machine():
    image = assemble("SYM_FUNC_START(a)\n call b\n movabs $ARENA_KERN_VM_START, %r12\n ret\n",
                     ".globl b\nb: ret\n", extern={"ARENA_KERN_VM_START": 0xFFFF_C900_0100_8000})
    insns = disasm(text_bytes(image), T)
    b = next(addr for name, addr, *_ in image.symbols if name == "b")
    assert insns[0].op_str == f"{b:#x}"
    assert insns[1].raw.hex() == "49bc0080000100c9ffff"


def test_a_file_cannot_call_another_files_local_symbol():
    assert errors("call helper\n", "helper: ret\n") == ["f0.S:1: error: undefined symbol 'helper' in 'call helper'"]


def test_section_and_symbol_directives_are_accepted():
    image = assemble("""
    .file "x.S"
    .text
    .globl f
    .type f, @function
    .p2align 4
f:  .cfi_startproc
    ret
    .cfi_endproc
    .size f, .-f
    .section .rodata.str, "a"
    .align 8
msg: .asciz "hi\\n"
    .section .data
    .balign 16
ptr: .quad f, msg + 1
    .bss
buf: .zero 64
    .pushsection .text
g:  ret
    .popsection
""")
    assert text_bytes(image) == b"\xc3\xc3"  # .pushsection .text continues right after f
    assert bytes(image.sections["rodata"].data) == b"hi\n\0"
    f = next(a for n, a, *_ in image.symbols if n == "f")
    assert bytes(image.sections["data"].data) == f.to_bytes(8, "little") + (BASES["rodata"] + 1).to_bytes(8, "little")
    assert bytes(image.sections["bss"].data) == bytes(64)


def test_data_directives_and_expressions():
    image = assemble(".data\n.set N, 4096 * 2 + 010\n.byte 1, 255, -1\n.short 0x1234\n.long N\n.quad N << 4\n"
                     ".ascii \"a\\tb\"\n.fill 2, 4, 0x11\n.skip 2, 0xee\n")
    assert bytes(image.sections["data"].data).hex() == (
        "01ffff" "3412" "08200000" "8000020000000000" "610962" "1100000011000000" "eeee")


def test_asm_extable_records_insn_and_fixup_addresses():
    image = assemble("SYM_FUNC_START(f)\n1: mov (%rdi), %rax\n2: ret\n  _ASM_EXTABLE(1b, 2b)\n")
    assert image.extable == [ExtableEntry(T, T + 3)]


def test_line_map_points_each_instruction_at_its_source_line():
    image = assemble("\n  nop\n  /* a\n  comment */ push %rbp; pop %rbp\n")
    assert image.lines == {T: ("f0.S", 2), T + 1: ("f0.S", 4), T + 2: ("f0.S", 4)}


@pytest.mark.parametrize(("source", "message"), [
    ("movq %rax", "f0.S:1: error: invalid instruction 'movq %rax': invalid operand"),
    ("  nop\n  frobnicate %rax\n", "f0.S:2: error: no such instruction: 'frobnicate %rax'"),
    ("call nowhere", "f0.S:1: error: undefined symbol 'nowhere' in 'call nowhere'"),
    ("jmp 1b", "f0.S:1: error: no previous definition of local label '1' for '1b'"),
    ("jmp 2f", "f0.S:1: error: local label '2' referenced as '2f' is never defined after that point"),
    (".section .weird", "f0.S:1: error: unsupported section '.weird' (use .text, .rodata, .data or .bss)"),
    (".frob 1", "f0.S:1: error: unsupported directive '.frob'"),
    ("#define N 4", "f0.S:1: error: preprocessor directives are not supported ('#define'); use .equ/.set"),
    (".data\n.byte 300", "f0.S:2: error: value 0x12c does not fit in 1 byte(s)"),
    ("x: nop\nx: nop", "f0.S:2: error: symbol 'x' is already defined"),
    (".p2align 3, 0, 1, 5", "f0.S:1: error: .p2align takes an alignment[, fill[, max]]"),
    (".ascii foo", "f0.S:1: error: expected a string in double quotes, got 'foo'"),
    ("_ASM_EXTABLE(1b)", "f0.S:1: error: _ASM_EXTABLE takes two arguments: (from, to)"),
    (".bss\nnop", "f0.S:2: error: instruction 'nop' in .bss"),
    ("mov {%rax}, %rbx", "f0.S:1: error: cannot parse 'mov {%rax}, %rbx'"),
])
def test_bad_source_gets_file_line_and_a_message(source, message):
    assert errors(source) == [message]


def test_every_bad_line_is_reported_not_just_the_first():
    assert errors("nop\nfoo\nbar\n") == ["f0.S:2: error: no such instruction: 'foo'",
                                         "f0.S:3: error: no such instruction: 'bar'"]


def test_a_global_defined_twice_names_both_files():
    assert errors(".globl x\nx: ret\n", ".globl x\nx: ret\n") == [
        "f1.S:2: error: symbol 'x' is already defined in f0.S"]


def test_keystone_diagnostics_never_reach_stderr(capfd):
    errors("frobnicate %rax\n.section .weird\n")
    assert capfd.readouterr().err == ""


DIRECTIVES = [".text", ".data", ".bss", ".section .rodata", ".section", ".p2align 4", ".p2align", ".align 16",
              ".align 3", ".globl foo", ".globl", ".type foo, @function", ".size foo, .-foo", ".byte 1",
              ".quad foo", ".asciz \"x\"", ".zero 8", ".set x, 1", ".pushsection .data", ".popsection",
              ".intel_syntax noprefix", ".att_syntax", ".equ", ".fill 1,2", ".skip -1", ".long 1/0"]
LINES = st.one_of(
    st.sampled_from(DIRECTIVES),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    st.builds(lambda m, o: f"{m} {o}", st.sampled_from(["mov", "jmp", "call", "lea", "push", "rep", "lock", ".byte"]),
              st.text(alphabet="%$()[]+-*,:0123456789abcdefrsxip.1bf ", max_size=24)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LINES, max_size=8))
def test_random_lines_never_kill_the_process(lines):
    """keystone segfaults on some directives; the front end must never hand it one."""
    try:
        assemble("\n".join(lines))
    except AsmError as e:
        assert all(":" in str(d) for d in e.diagnostics)
