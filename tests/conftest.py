import pytest

from emu import Machine
from emu.corpus import bpf_prog, stub
from emu.tools.debugger import Debugger

pytest_plugins = ["pytester"]

STUBS = ("maccess.S", "string.S", "list.S")


@pytest.fixture
def d() -> Debugger:
    """A debugger stopped at the entry of a call whose kfunc faults (scratch.S's arena_arg_unpopulated)."""
    dbg = Debugger([bpf_prog("scratch.S")], "arena_arg_unpopulated")
    dbg.execute("set context off")
    return dbg


@pytest.fixture
def stubs(machine: Machine) -> Machine:
    """A machine with every kernel_stubs/ file loaded."""
    machine.load(*(stub(f) for f in STUBS))
    return machine


SPIN = """
	.text
SYM_FUNC_START(spin)
	push	%rbp
	mov	%rsp, %rbp
1:	inc	%rax
	jmp	1b
SYM_FUNC_END(spin)
"""


@pytest.fixture
def spin_file(tmp_path) -> str:
    """A kernel function that never returns."""
    path = tmp_path / "spin.S"
    path.write_text(SPIN)
    return str(path)

