"""The pytest plugin (entry point `pytest11`): machines, arenas and policies as fixtures.

Installed with arena-emu, it gives any suite the `machine`, `arena`, `load`
and `policy` fixtures, the `policies` and `arena` markers, and the options
--arena-policy, --arena-cpus and --arena-budget (or arena_policy, arena_cpus,
arena_budget in the ini file). See docs/pytest-plugin.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("emu.testing.asserts")

from ..asm.image import Image  # noqa: E402  (after the rewrite hook, as pytest asks)
from ..bpf.object_load import LoadedObject  # noqa: E402
from ..corpus import find_source  # noqa: E402
from ..errors import EmuError  # noqa: E402
from ..kernel.events import EventText  # noqa: E402
from ..machine import DEFAULT_BUDGET, Machine  # noqa: E402
from ..policy import DEFAULT_POLICY, POLICIES, Policy  # noqa: E402
from ..tools.build import build_bpf  # noqa: E402
from ..tools.loading import built, is_bpf_object, load_files  # noqa: E402

DEFAULT_ARENA_PAGES = 16


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("arena-emu")
    group.addoption("--arena-policy", default=None, metavar="NAME[+KNOB...]",
                    help=f"policy of the machine fixture (default {DEFAULT_POLICY}; one of {', '.join(POLICIES)})")
    group.addoption("--arena-cpus", default=None, type=int, metavar="N", help="CPUs of the machine fixture (1)")
    group.addoption("--arena-budget", default=None, type=int, metavar="N",
                    help=f"instruction budget of each call (default {DEFAULT_BUDGET})")
    parser.addini("arena_policy", "policy of the machine fixture", default=DEFAULT_POLICY)
    parser.addini("arena_cpus", "CPUs of the machine fixture", default="1")
    parser.addini("arena_budget", "instruction budget of each call", default=str(DEFAULT_BUDGET))


def pytest_configure(config: pytest.Config) -> None:
    _check_options(config)
    config.addinivalue_line("markers", "policies(*names): run the test once under each policy (names may add "
                                       "knobs: 'scratch+flush-on-replace'); the policy shows in the test id")
    config.addinivalue_line("markers", "arena(max_entries=16, map_extra=0, flags=BPF_F_MMAPABLE): the arena "
                                       "fixture's parameters")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("policies")
    if marker is None:
        return
    names = list(marker.args)
    for name in names:
        _policy(name)  # a bad name fails at collection, with the policy's own message
    if "policy" not in metafunc.fixturenames:
        metafunc.fixturenames.append("policy")
    metafunc.parametrize("policy", names, indirect=True, ids=names)


def pytest_assertrepr_compare(op: str, left: object, right: object) -> list[str] | None:
    """`assert fault.resolution == "scratch"` failing: the comparison, then the fault's story."""
    event = next((getattr(v, "event", None) for v in (left, right) if isinstance(v, EventText)), None)
    if event is None or op not in ("==", "!="):
        return None
    return [f"{left!r} {op} {right!r}", f"{event!r}:", *(f"  {line}" for line in event.brief()),
            "the whole story:", *event.story().splitlines()]


def _policy(key: str) -> Policy:
    name, *knobs = key.split("+")
    return Policy.parse(name, knobs)


def _check_options(config: pytest.Config) -> None:
    """A bad --arena-* option (or ini value) is a usage error, as pytest's own options are,
    not an error in every test's setup."""
    try:
        _policy(_option(config, "policy"))
        cpus, budget = int(_option(config, "cpus")), int(_option(config, "budget"))
    except (EmuError, ValueError) as e:
        raise pytest.UsageError(f"arena-emu: {e}") from None
    if not 1 <= cpus <= 8:
        raise pytest.UsageError(f"arena-emu: --arena-cpus takes 1 to 8, not {cpus}")
    if budget < 0:
        raise pytest.UsageError(f"arena-emu: --arena-budget takes 0 (no count) or a positive count, not {budget}")


def _option(config: pytest.Config, name: str) -> str:
    value = config.getoption(f"--arena-{name}")
    return str(value) if value is not None else config.getini(f"arena_{name}")


@pytest.fixture
def policy(request: pytest.FixtureRequest) -> Policy:
    """The policy of this test's machine: the `policies` marker's, else --arena-policy / arena_policy."""
    return _policy(getattr(request, "param", None) or _option(request.config, "policy"))


@pytest.fixture
def machine(policy: Policy, request: pytest.FixtureRequest) -> Iterator[Machine]:
    """A fresh machine (about a millisecond to build), under `policy`; closed after the test."""
    with Machine(policy=policy, cpus=int(_option(request.config, "cpus")),
                 budget=int(_option(request.config, "budget"))) as m:
        yield m


@pytest.fixture
def arena(machine: Machine, request: pytest.FixtureRequest):
    """An arena on `machine`; the `arena` marker sets max_entries, map_extra and flags."""
    marker = request.node.get_closest_marker("arena")
    kwargs = {"max_entries": DEFAULT_ARENA_PAGES} | (marker.kwargs if marker else {})
    return machine.create_arena(**kwargs)


class Loader:
    """load(path, ...) assembles files as one link; load.source(text) assembles a string.
    A path is taken as given, else from the project's bpf_progs/ or kernel_stubs/. C is built
    first (kernel `.c`, BPF `.bpf.c`); a BPF object is loaded after the kernel files, as libbpf
    loads it, and returned instead of their image."""

    def __init__(self, machine: Machine, root: Path):
        self.machine, self.root = machine, root

    def __call__(self, *paths: str | Path) -> Image | LoadedObject:
        files = [built(str(self._find(p))) for p in paths]
        objects = [f for f in files if is_bpf_object(f)]
        image = self.machine.load(*(f for f in files if f not in objects))
        return load_files(self.machine, objects) or image

    def source(self, text: str, name: str = "<inline>.S") -> Image:
        return self.machine.load_source(text, name=name)

    def _find(self, path: str | Path) -> Path:
        return find_source(path, self.root)


@pytest.fixture
def load(machine: Machine, request: pytest.FixtureRequest) -> Loader:
    """Assemble and load files or inline assembly into `machine`."""
    return Loader(machine, Path(str(request.config.rootpath)))


@pytest.fixture
def bpf_object(machine: Machine, request: pytest.FixtureRequest):
    """Build a BPF program in C (or take a built .bpf.o) and load it into `machine` as libbpf does:
    `obj = bpf_object("x.bpf.c")`, then `obj.run("prog")`. Built once, cached by content."""
    root = Path(str(request.config.rootpath))

    def load_bpf(path: str | Path) -> LoadedObject:
        found = find_source(path, root)
        return machine.load_bpf(str(build_bpf(found) if found.name.endswith(".bpf.c") else found))
    return load_bpf
