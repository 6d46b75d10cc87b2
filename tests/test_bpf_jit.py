"""The JIT's exception-table entries, derived by decoding BPF programs (arch/x86/net/bpf_jit_comp.c)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emu.bpf.jit_extable import DONT_CLEAR, FIXUP_ARENA_ACCESS, ArenaAccess, BpfFixup
from emu.errors import AsmError
from emu.x86.extable import EX_TYPE_BPF


def prog(body: str, name: str = "p") -> str:
    return f"""
	BPF_ARENA(arena, 4)
	.text
SYM_FUNC_START({name})
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
{body}
	pop	%r12
	leave
	ret
SYM_FUNC_END({name})
	BPF_PROG({name})
"""


BPF_REGS = " (R0-R9 map to rax, rdi, rsi, rdx, rcx, r8, rbx, r13, r14, r15)"
PT = {"rax": 80, "rdi": 112, "rsi": 104, "rdx": 96, "rcx": 88, "r8": 72, "rbx": 40, "r13": 16, "r14": 8, "r15": 0}


@pytest.mark.parametrize(("insn", "length", "reg", "addr_reg", "off"), [
    ("mov 0x7fff(%rdi,%r12,1), %rax", 8, PT["rax"], PT["rdi"], 0x7FFF),  # LDX DW, disp32
    ("mov -0x8000(%rsi,%r12,1), %ebx", 8, PT["rbx"], PT["rsi"], -0x8000),  # LDX W
    ("movzbl 0x10(%r15,%r12,1), %r13d", 6, PT["r13"], PT["r15"], 0x10),  # LDX B: movzx, disp8
    ("movzwl (%rdx,%r12,1), %ecx", 5, PT["rcx"], PT["rdx"], 0),
    ("movslq 4(%r8,%r12,1), %r14", 5, PT["r14"], PT["r8"], 4),  # LDSX W
    ("mov %rsi, 0x8(%rdi,%r12,1)", 5, DONT_CLEAR, PT["rdi"], 8),  # STX DW
    ("movb $1, -1(%rbx,%r12,1)", 6, DONT_CLEAR, PT["rbx"], -1),  # ST B
    ("lock add %rsi, (%rdi,%r12,1)", 5, DONT_CLEAR, PT["rdi"], 0),  # atomic add
    ("lock xadd %rax, 0x18(%rdi,%r12,1)", 7, DONT_CLEAR, PT["rdi"], 0x18),  # fetch add
    ("xchg %rax, (%rdi,%r12,1)", 4, DONT_CLEAR, PT["rdi"], 0),  # xchg: locked without a prefix
    ("lock cmpxchg %rsi, (%rdi,%r12,1)", 6, DONT_CLEAR, PT["rdi"], 0),
])
def test_every_arena_access_gets_the_jit_encoded_entry(machine, insn, length, reg, addr_reg, off):
    image = machine.load_source(prog(insn))
    at = next(a for a, (_f, line) in sorted(image.lines.items()) if line == 9)
    entry = machine.search_exception_tables(at)
    assert entry is not None and entry.type == EX_TYPE_BPF
    assert entry.fixup == length | reg << 8 | addr_reg << 16 | FIXUP_ARENA_ACCESS
    assert entry.data == EX_TYPE_BPF | (off & 0xFFFF) << 16
    assert BpfFixup.decode(entry) == BpfFixup(length, reg, True, addr_reg, off)


def test_only_arena_accesses_of_bpf_programs_get_entries(machine):
    machine.load_source(prog("mov (%rdi), %rax\n\tmov 8(%rbp), %rax\n\tmov (%rdi,%r12,1), %rax") + """
SYM_FUNC_START(not_bpf)
	mov (%rdi,%r12,1), %rax
	ret
SYM_FUNC_END(not_bpf)
""")
    assert len(machine.extable._entries) == 1
    assert machine.extable._entries[0].insn == machine.symbol("p") + 1 + 3 + 2 + 10 + 3 + 4


@pytest.mark.parametrize(("insn", "message"), [
    ("mov (%rdi,%r12,2), %rax", "an arena access has scale 1, not 2"),
    ("mov 0x8000(%rdi,%r12,1), %rax", "offset 0x8000 does not fit the s16 `off` of a BPF instruction"),
    ("mov (%r12,%rdi,1), %rax", "r12 is the index of an arena access, [src + r12 + off], never its base"),
    ("mov (%rdi,%r12,1), %r9", "the destination r9 is not a BPF register" + BPF_REGS),
    ("mov (%r10,%r12,1), %rax", "the address register r10 is not a BPF register" + BPF_REGS),
    ("add (%rdi,%r12,1), %rax", "'add' is not a load, store or atomic the JIT emits on the arena"),
    ("lock incq (%rdi,%r12,1)", "'lock inc' is not an atomic the JIT emits on the arena"),
])
def test_an_access_the_jit_would_not_emit_is_a_load_error_with_its_line(machine, insn, message):
    with pytest.raises(AsmError) as e:
        machine.load_source(prog(insn), name="bad.S")
    assert str(e.value) == f"bad.S:9: error: BPF program 'p': {message}"
    assert "p" not in machine.kallsyms  # nothing was installed


def test_bpf_program_declarations_are_checked(machine):
    with pytest.raises(AsmError) as e:
        machine.load_source("\t.text\nSYM_FUNC_START(f)\n\tret\n\tBPF_PROG(f)\n\tBPF_SUBPROG(g, f)\n"
                            "\tBPF_PROG(h, i)\n\tBPF_ARENA(a)\n\tBPF_KSYM(nope)\n", name="d.S")
    assert str(e.value).splitlines() == [
        "d.S:6: error: BPF_PROG takes a function name",
        "d.S:7: error: BPF_ARENA takes a map name, max_entries, and optionally map_extra and map_flags",
    ]
    with pytest.raises(AsmError) as e:
        machine.load_source("\t.text\nSYM_FUNC_START(f)\n\tret\n\tBPF_PROG(f)\n\tBPF_SUBPROG(g, f)\n", name="d.S")
    assert str(e.value).splitlines() == [
        "d.S:4: error: BPF function 'f' needs SYM_FUNC_END(f)",
        "d.S:5: error: 'g' is not a function in this file's .text",
    ]
    with pytest.raises(AsmError) as e:
        machine.load_source("\tBPF_KSYM(no_such_kfunc)\n", name="k.S")
    assert str(e.value) == "k.S:1: error: BPF_KSYM: the kernel has no function 'no_such_kfunc' " \
                           "(neither native nor in kernel_stubs/)"


def test_an_arena_access_without_an_arena_is_refused(machine):
    src = prog("mov (%rdi,%r12,1), %rax").replace("BPF_ARENA(arena, 4)", "").replace("$ARENA_KERN_VM_START", "$0")
    with pytest.raises(AsmError) as e:
        machine.load_source(src, name="n.S")
    assert str(e.value) == ("n.S:9: error: BPF program 'p' accesses an arena, but there is none: "
                            "declare one with BPF_ARENA")


def test_bpf_arena_errors_are_the_kernels(machine):
    with pytest.raises(AsmError) as e:
        machine.load_source("\tBPF_ARENA(arena, 0x100001)\n", name="a.S")
    assert str(e.value) == "a.S:1: error: BPF_ARENA: arena_map_alloc() failed: -E2BIG: 1048577 pages is more than 4 GiB"


@given(length=st.integers(1, 15), dst=st.sampled_from([*PT, None]), addr=st.sampled_from(list(PT)),
       off=st.integers(-0x8000, 0x7FFF))
def test_the_fixup_word_round_trips(length, dst, addr, off):
    access = ArenaAccess("load" if dst else "store", length, dst, addr, off)
    fx = BpfFixup.decode(access.extable_entry(0xFFFF_FFFF_A000_0000))
    assert fx == BpfFixup(length, PT[dst] if dst else DONT_CLEAR, True, PT[addr], off)
    assert fx.is_write == (dst is None)
