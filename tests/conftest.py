import pytest

from emu import Machine
from emu.corpus import stub

pytest_plugins = ["pytester"]

STUBS = ("maccess.S", "string.S", "list.S")


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

