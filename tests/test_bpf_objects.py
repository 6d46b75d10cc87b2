"""Clang-built arena programs through machine.load_bpf(): what the kernel returns, faults and reports."""

import pytest
from bpf_build import BPF_C, build

from emu import Machine
from emu.corpus import stub

POLICIES = ("oops", "map-always", "scratch-v1", "scratch")


def line(name: str, text: str) -> str:
    """`file:line` of the one line of tests/bpf_c/<name>.bpf.c that holds `text`."""
    lines = (BPF_C / f"{name}.bpf.c").read_text().splitlines()
    (n,) = [i + 1 for i, s in enumerate(lines) if text in s]
    return f"{name}.bpf.c:{n}"


def load(name: str, policy: str = "scratch", *flags: str, kfuncs: bool = False):
    m = Machine(policy=policy)
    if kfuncs:
        m.load(stub("arena_kfuncs.S"))
    return m, m.load_bpf(str(build(name, *flags)))


def report_head(m: Machine) -> list[str]:
    return [s for s in m.stream_text().splitlines() if s.startswith("ERROR")]


@pytest.mark.parametrize("policy", POLICIES)
def test_a_kfunc_gets_the_rebased_arena_pointer(policy):
    _, obj = load("arena_kfunc", policy, kfuncs=True)
    r = obj.run("kfunc_read_allocated")
    assert (r.status, r.ret, r.faults) == ("returned", 0x1234, [])


@pytest.mark.parametrize("policy", POLICIES)
def test_a_kfunc_faulting_on_an_unallocated_page(policy):
    m, obj = load("arena_kfunc", policy, kfuncs=True)
    arena = obj.maps["arena"]
    r = obj.run("kfunc_read_unallocated")
    kaddr = arena.kern_vm_start + 3 * 4096 + 0x18  # the kfunc's %rdi: kern_vm_start + (u32)ptr
    if policy == "map-always":
        assert (r.status, r.ret, r.faults) == ("returned", 0, [])
        return
    (f,) = r.faults
    assert (f.address, f.where) == (kaddr, "bpf_kfunc_arena_read_u64+0x4/0x10")
    if policy == "oops":
        assert (r.status, f.resolution, f.action) == ("oops", "oops", "stop")
        assert r.oops.splitlines()[0] == f"BUG: unable to handle page fault for address: {kaddr:016x}"
        assert "RDI: " + f"{kaddr:016x}" in r.oops and m.stream_text() == ""
        return
    assert (r.status, r.ret, f.resolution, f.action, f.completed) == ("returned", 0, "scratch", "restart", True)
    page = arena.user_vm_start + 3 * 4096  # the scratch report names the page, not the byte
    text = m.stream_text().splitlines()
    assert report_head(m) == [f"ERROR: Arena READ access at unmapped address {page:#x}"]
    source = "return bpf_kfunc_arena_read_u64((__u64 *)p);"
    assert f"  {source} @ {line('arena_kfunc', source)}" in text
