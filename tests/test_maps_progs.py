"""Maps from JITed BPF programs: bpf_map_lookup_elem(), bpf_map_update_elem() and bpf_map_delete_elem()
(helpers 1-3) read the key and value where the program points and return what the kernel's return,
and a value pointer the program writes through is the memory Python reads back. The map pointers and
value addresses are ld_imm64 constants, as resolve_pseudo_ldimm64() leaves them."""

from errno import E2BIG, EEXIST, EINVAL, ENOENT

import pytest
from bpf_asm import assemble

from emu import Machine
from emu.bpf.arena import BPF_F_MMAPABLE
from emu.bpf.bpf_map import BPF_ANY, BPF_EXIST, BPF_NOEXIST
from emu.bpf.hashtab import BPF_MAP_TYPE_HASH
from emu.bpf.maps import BPF_MAP_TYPE_ARRAY


@pytest.fixture
def m():
    with Machine(cpus=2) as machine:
        yield machine


def call_with_key(map_ptr: int, helper: int, before: str = "", after: str = "exit") -> bytes:
    """The u32 key in r1 goes on the stack; `before` runs next, then the helper with the map in r1 and the key's
    address in r2, then `after`."""
    return assemble(f"""stxw [%r10-4], %r1
{before}
lddw %r1, {map_ptr:#x}
mov %r2, %r10
add %r2, -4
call {helper}
{after}
""")


def lookup_and_store(map_ptr: int) -> bytes:
    """(key, value): look the key up, store the u64 value through the pointer, return the pointer."""
    return call_with_key(map_ptr, 1, "mov %r6, %r2", "jeq %r0, 0, +1\nstxdw [%r0+0], %r6\nexit")


def update(map_ptr: int) -> bytes:
    """(key, value, flags): bpf_map_update_elem() of the key and a u64 value from the stack."""
    return call_with_key(map_ptr, 2, "stxdw [%r10-16], %r2\nmov %r4, %r3\nmov %r3, %r10\nadd %r3, -16")


def delete(map_ptr: int) -> bytes:
    return call_with_key(map_ptr, 3)


def increment(map_ptr: int) -> bytes:
    """(key): add 1 to the key's u64 value through the looked-up pointer; -1 if there is none."""
    return call_with_key(map_ptr, 1, after="""jne %r0, 0, +2
mov %r0, -1
exit
ldxdw %r1, [%r0+0]
add %r1, 1
stxdw [%r0+0], %r1
mov %r0, 0
exit""")


def load(m: Machine, map_ptr: int) -> None:
    for name, build in (("lookup", lookup_and_store), ("update", update), ("delete", delete),
                        ("increment", increment)):
        m.load_bpf_insns(build(map_ptr), name)


def ret(m: Machine, name: str, *args: int, cpu: int = 0) -> int:
    """What the program returned, as a signed long (a helper's negative errno)."""
    r = m.call(name, *args, cpu=cpu)
    assert r.status == "returned", r
    return r.ret_signed


def lookup(m: Machine, key: int, value: int, cpu: int = 0) -> int:
    """The value address the lookup program got (and stored `value` at), unsigned."""
    return ret(m, "lookup", key, value, cpu=cpu) & (1 << 64) - 1


def test_a_program_writes_an_array_value_that_python_reads(m):
    a = m.bpf.map_create(BPF_MAP_TYPE_ARRAY, 4, 12, 3)
    load(m, a.map_ptr)
    assert lookup(m, 2, 0x1122_3344_5566_7788) == a.value + 2 * 16
    assert a.lookup_elem(2) == (0x1122_3344_5566_7788).to_bytes(8, "little") + bytes(4)
    assert lookup(m, 3, 1) == 0  # NULL past the end
    a.update_elem(1, (41).to_bytes(12, "little"))
    assert ret(m, "increment", 1) == 0 and a.lookup_elem(1)[:8] == (42).to_bytes(8, "little")


def test_array_helpers_return_the_kernels_errors(m):
    a = m.bpf.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 3)
    load(m, a.map_ptr)
    assert ret(m, "update", 0, 7, BPF_ANY) == 0 and a.lookup_elem(0) == (7).to_bytes(8, "little")
    assert ret(m, "update", 0, 8, BPF_EXIST) == 0 and a.lookup_elem(0) == (8).to_bytes(8, "little")
    assert ret(m, "update", 0, 9, BPF_NOEXIST) == -EEXIST
    assert ret(m, "update", 3, 9, BPF_ANY) == -E2BIG
    assert ret(m, "update", 0, 9, 3) == -EINVAL
    assert ret(m, "delete", 0) == -EINVAL
    assert a.lookup_elem(0) == (8).to_bytes(8, "little")


def test_hash_helpers_insert_replace_delete_and_fill_up(m):
    h = m.bpf.map_create(BPF_MAP_TYPE_HASH, 4, 8, 3)
    load(m, h.map_ptr)
    assert ret(m, "delete", 10) == -ENOENT  # an empty map is still a map
    assert ret(m, "update", 10, 100, BPF_EXIST) == -ENOENT
    assert lookup(m, 10, 0) == 0
    assert [ret(m, "update", k, k * 10, BPF_NOEXIST) for k in (1, 2, 3)] == [0, 0, 0]
    assert ret(m, "update", 4, 40, BPF_ANY) == -E2BIG  # every preallocated element is in use
    assert ret(m, "update", 2, 21, BPF_NOEXIST) == -EEXIST
    assert ret(m, "update", 2, 22, BPF_EXIST) == 0      # replacing needs no free element
    assert h.lookup_elem(2) == (22).to_bytes(8, "little")
    assert ret(m, "delete", 1) == 0 and ret(m, "delete", 1) == -ENOENT
    assert ret(m, "update", 4, 40, BPF_ANY) == 0
    assert {int.from_bytes(k, "little"): int.from_bytes(h.lookup_elem(k), "little") for k in h} == {
        2: 22, 3: 30, 4: 40}


def test_a_hash_value_pointer_is_the_element_python_sees(m):
    h = m.bpf.map_create(BPF_MAP_TYPE_HASH, 4, 8, 4)
    load(m, h.map_ptr)
    h.update_elem(7, 5)
    assert lookup(m, 7, 0) == h.map_lookup_elem((7).to_bytes(4, "little"))
    assert [ret(m, "increment", 7) for _ in range(3)] == [0, 0, 0]
    assert h.lookup_elem(7) == (3).to_bytes(8, "little")  # the lookup stored 0, then three increments
    assert ret(m, "increment", 8) == -1


def test_a_replace_on_another_cpu_moves_the_value_there(m):
    """The value of a replaced key moves to the updating CPU's spare; the old address keeps the old bytes."""
    h = m.bpf.map_create(BPF_MAP_TYPE_HASH, 4, 8, 4)
    load(m, h.map_ptr)
    assert ret(m, "update", 1, 10, BPF_ANY, cpu=1) == 0
    old = lookup(m, 1, 10)
    assert ret(m, "update", 1, 11, BPF_ANY, cpu=1) == 0
    new = lookup(m, 1, 11, cpu=1)
    assert new != old and m.read_u64(old) == 10 and m.read_u64(new) == 11


def test_global_data_through_direct_value_addresses(m):
    """`.data` and `.bss` as libbpf makes them: one-element arrays, the loader writing `.data`'s initial bytes,
    the program reaching globals at map_direct_value_addr() + offset, Python reading `.bss` back."""
    data = m.bpf.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1, BPF_F_MMAPABLE, name="prog.data")
    bss = m.bpf.map_create(BPF_MAP_TYPE_ARRAY, 4, 16, 1, BPF_F_MMAPABLE, name="prog.bss")
    data.update_elem(0, 40)
    m.load_bpf_insns(assemble(f"""lddw %r1, {data.map_direct_value_addr(0):#x}
ldxdw %r0, [%r1+0]
lddw %r2, {bss.map_direct_value_addr(8):#x}
stxdw [%r2+0], %r0
add %r0, 2
exit
"""), "globals")
    assert ret(m, "globals") == 42
    assert bss.lookup_elem(0) == bytes(8) + (40).to_bytes(8, "little")


def test_helpers_on_a_pointer_that_is_no_array_or_hash_map(m):
    arena = m.create_arena(4)
    load(m, arena.map_ptr)
    assert lookup(m, 0, 0) == 0
    assert ret(m, "update", 0, 0, BPF_ANY) == -EINVAL
    assert ret(m, "delete", 0) == -EINVAL
