import pytest

from emu import Machine
from emu.corpus import stub

STUBS = ("maccess.S", "string.S", "list.S")


@pytest.fixture
def machine() -> Machine:
    return Machine()


@pytest.fixture
def stubs(machine: Machine) -> Machine:
    """A machine with every kernel_stubs/ file loaded."""
    machine.load(*(stub(f) for f in STUBS))
    return machine
