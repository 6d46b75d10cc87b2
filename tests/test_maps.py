"""Array and hash maps from Python: map_create()'s checks with the kernel's errors, elements in guest memory,
and the user-space view (bytes in, bytes out), as libbpf's bpf_map__*_elem() give it. The errno values are
the host's (Linux's), not the emulator's own constants; ENOTSUPP is kernel-internal, so it has none."""

from errno import E2BIG, EEXIST, EINVAL, ENOENT, ENOMEM, EPERM

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu import Machine
from emu.bpf.arena import BPF_F_MMAPABLE
from emu.bpf.arraymap import ArrayMap
from emu.bpf.bpf_map import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_F_NO_COMMON_LRU,
    BPF_F_NO_PREALLOC,
    BPF_F_PRESERVE_ELEMS,
    BPF_F_RDONLY,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY,
    BPF_F_WRONLY_PROG,
    BPF_F_ZERO_SEED,
    BPF_NOEXIST,
    ENOTSUPP,
    MapError,
)
from emu.bpf.hashtab import BPF_MAP_TYPE_HASH, HTAB_ELEM_KEY, KMALLOC_MAX_SIZE, NUM_POSSIBLE_CPUS, HashMap
from emu.bpf.kfuncs import KfuncCall
from emu.bpf.maps import BPF_MAP_TYPE_ARENA, BPF_MAP_TYPE_ARRAY
from emu.errors import EmuError


@pytest.fixture
def m():
    with Machine() as machine:
        yield machine


def errno_of(fn, *args) -> int:
    with pytest.raises(MapError) as e:
        fn(*args)
    return e.value.errno


# -- array ---------------------------------------------------------------------

@pytest.mark.parametrize(("key_size", "value_size", "max_entries", "flags", "errno"), [
    (4, 8, 0, 0, EINVAL),                          # no elements
    (8, 8, 4, 0, EINVAL),                          # the key is a u32 index
    (4, 0, 4, 0, EINVAL),                          # no value
    (4, 8, 4, BPF_F_NO_PREALLOC, EINVAL),          # not in ARRAY_CREATE_FLAG_MASK
    (4, 8, 4, BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG, EINVAL),  # bpf_map_flags_access_ok()
    (4, 8, 4, BPF_F_RDONLY | BPF_F_WRONLY, EINVAL),  # bpf_get_file_flag()
    (4, 8, 4, BPF_F_PRESERVE_ELEMS, EINVAL),       # perf event arrays only
    (4, 1 << 31, 1, 0, E2BIG),                     # over INT_MAX
    (4, 1 << 20, 1 << 10, 0, ENOMEM),              # 1 GiB: more than guest RAM
    (4, 8, 1 << 32, 0, EINVAL),                    # not a u32
])
def test_array_map_alloc_refuses_as_the_kernel_does(m, key_size, value_size, max_entries, flags, errno):
    before = len(m.bpf.maps)
    assert errno_of(m.bpf.map_create, BPF_MAP_TYPE_ARRAY, key_size, value_size, max_entries, flags) == errno
    assert len(m.bpf.maps) == before


def test_an_array_is_contiguous_zeroed_values_rounded_up_to_8_bytes(m):
    a = m.bpf.map_create(BPF_MAP_TYPE_ARRAY, 4, 12, 3, name="arr")
    assert isinstance(a, ArrayMap) and m.bpf.maps[a.map_ptr] is a and m.bpf.bpf_map(a.map_ptr) is a
    assert a.elem_size == 16
    assert [a.map_lookup_elem(i.to_bytes(4, "little")) for i in range(4)] == [a.value, a.value + 16, a.value + 32, 0]
    assert m.read(a.value, 48) == bytes(48)
    assert repr(a) == f"<ArrayMap arr array key 4 value 12 max_entries 3 flags 0x0 at {a.map_ptr:#x}>"


def test_array_update_flags_and_errors(m):
    a = m.bpf.map_create(BPF_MAP_TYPE_ARRAY, 4, 12, 3)
    a.update_elem(1, b"A" * 12)
    a.update_elem(1, b"B" * 12, BPF_EXIST)
    assert a.lookup_elem(1) == b"B" * 12
    assert m.read(a.value + 16, 16) == b"B" * 12 + bytes(4)  # value_size bytes copied, the padding stays
    assert errno_of(a.update_elem, 1, b"C" * 12, BPF_NOEXIST) == EEXIST  # every element exists
    assert errno_of(a.update_elem, 3, b"C" * 12) == E2BIG
    assert errno_of(a.update_elem, 0, b"C" * 12, 3) == EINVAL
    assert errno_of(a.update_elem, 0, b"C" * 12, BPF_F_LOCK) == EINVAL  # no spin lock in the value
    assert errno_of(a.delete_elem, 1) == EINVAL
    assert errno_of(a.lookup_elem, 3) == ENOENT
    assert errno_of(a.update_elem, 0, b"short") == EINVAL  # libbpf's size check
    assert a.map_update_elem(bytes(4), b"C" * 12, BPF_NOEXIST | BPF_F_LOCK, 0) == -EEXIST  # the kernel's order


def test_array_keys_run_in_index_order_and_a_bad_key_restarts(m):
    a = m.bpf.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 3)
    assert list(a) == [i.to_bytes(4, "little") for i in range(3)]
    assert a.get_next_key(7) == bytes(4)
    assert a.get_next_key(2) is None


def test_internal_maps_give_direct_value_addresses(m):
    bss = m.bpf.map_create(BPF_MAP_TYPE_ARRAY, 4, 20, 1, BPF_F_MMAPABLE, name="prog.bss")
    assert bss.map_direct_value_addr(8) == bss.value + 8
    assert errno_of(bss.map_direct_value_addr, 20) == EINVAL
    arr = m.bpf.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 2)
    assert errno_of(arr.map_direct_value_addr, 0) == ENOTSUPP


def test_user_space_access_flags(m):
    ro = m.bpf.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1, BPF_F_RDONLY)
    assert ro.lookup_elem(0) == bytes(8)
    assert errno_of(ro.update_elem, 0, 1) == EPERM
    wo = m.bpf.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1, BPF_F_WRONLY)
    wo.update_elem(0, 5)
    assert errno_of(wo.lookup_elem, 0) == EPERM


def test_int_keys_and_values_are_little_endian(m):
    a = m.bpf.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 2)
    a.update_elem(1, -2)
    assert a.lookup_elem(1) == (-2).to_bytes(8, "little", signed=True)
    assert errno_of(a.update_elem, 1, 1 << 64) == EINVAL


def test_only_array_and_hash_maps_are_modelled(m):
    with pytest.raises(EmuError, match="create_arena"):
        m.bpf.map_create(BPF_MAP_TYPE_ARENA, 0, 0, 1, BPF_F_MMAPABLE)
    with pytest.raises(EmuError, match="ringbuf is not modelled"):
        m.bpf.map_create(27, 0, 0, 4096)


def test_kfunc_call_arena_names_only_arenas(m):
    arena = m.create_arena(4)
    a = m.bpf.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1)
    call = KfuncCall(m.bpf, m.memory, 0, 0)
    assert call.arena(arena.map_ptr) is arena
    assert call.arena(a.map_ptr) is None
    assert m.bpf.bpf_map(arena.map_ptr) is None


# -- hash ----------------------------------------------------------------------

@pytest.mark.parametrize(("key_size", "value_size", "max_entries", "flags", "errno"), [
    (4, 8, 0, 0, EINVAL),
    (0, 8, 4, 0, EINVAL),
    (4, 0, 4, 0, EINVAL),
    (4, 8, 4, BPF_F_MMAPABLE, EINVAL),             # not in HTAB_CREATE_FLAG_MASK
    (4, 8, 4, BPF_F_NO_COMMON_LRU, EINVAL),        # LRU only
    (4, 8, 4, BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG, EINVAL),
    (4, KMALLOC_MAX_SIZE - HTAB_ELEM_KEY - 4, 4, 0, E2BIG),  # key + value must stay under KMALLOC_MAX_SIZE - 48
    (4, 8, (1 << 31) + 1, 0, E2BIG),               # htab_map_alloc(): max_entries over 2^31
    (4, 8, (1 << 27) + 1, 0, E2BIG),               # 2^28 buckets of 16 bytes overflow a u32
    (4, 8, 1 << 27, 0, ENOMEM),                    # 2^27 buckets fit, their 8 GiB of elements do not
    (4, 1 << 16, 1 << 14, 0, ENOMEM),              # 1 GiB of elements
])
def test_htab_map_alloc_refuses_as_the_kernel_does(m, key_size, value_size, max_entries, flags, errno):
    assert errno_of(m.bpf.map_create, BPF_MAP_TYPE_HASH, key_size, value_size, max_entries, flags) == errno


def test_the_largest_element_the_kernel_allows_is_accepted(m):
    h = m.bpf.map_create(BPF_MAP_TYPE_HASH, 4, KMALLOC_MAX_SIZE - HTAB_ELEM_KEY - 5, 1, BPF_F_ZERO_SEED)
    assert isinstance(h, HashMap)


def test_no_prealloc_allocates_at_update_and_reuses_what_was_freed(m):
    """htab_map_update_elem() without prealloc: a new element per update, the replaced one freed at once onto the
    CPU's free list and taken by the next allocation there; -E2BIG only for a new key once max_entries are in use."""
    h = m.bpf.map_create(BPF_MAP_TYPE_HASH, 4, 8, 2, BPF_F_NO_PREALLOC, name="np")
    size = h.elem_size
    assert (h.elems, size, len(h)) == (0, HTAB_ELEM_KEY + 8 + 8, 0)  # nothing allocated at creation
    assert h.map_update_elem(b"k001", b"A" * 8, BPF_ANY, 0) == 0
    a = h.map_lookup_elem(b"k001") - HTAB_ELEM_KEY - 8
    assert a % 4096 == 0  # the first element of the cache's first page
    assert h.map_update_elem(b"k001", b"B" * 8, BPF_ANY, 0) == 0  # a replacement is a new element
    assert h.map_lookup_elem(b"k001") == a + size + HTAB_ELEM_KEY + 8
    assert m.memory.read(a + HTAB_ELEM_KEY + 8, 8) == b"A" * 8  # the freed one keeps its bytes until reused
    assert h.map_update_elem(b"k002", b"C" * 8, BPF_ANY, 0) == 0
    assert h.map_lookup_elem(b"k002") == a + HTAB_ELEM_KEY + 8  # ... which the next allocation takes
    assert h.map_update_elem(b"k003", b"D" * 8, BPF_ANY, 0) == -E2BIG  # full, and the key is new
    assert h.map_update_elem(b"k002", b"E" * 8, BPF_EXIST, 0) == 0  # full, but a replacement is allowed
    assert h.map_lookup_elem(b"k002") == a + 2 * size + HTAB_ELEM_KEY + 8
    assert h.map_update_elem(b"k001", b"F" * 8, BPF_NOEXIST, 0) == -EEXIST
    assert h.map_delete_elem(b"k001", 1) == 0  # freed onto CPU 1's list
    assert h.map_update_elem(b"k004", b"G" * 8, BPF_ANY, 1) == 0
    assert h.map_lookup_elem(b"k004") == a + size + HTAB_ELEM_KEY + 8
    assert h.lookup_elem(b"k004") == b"G" * 8 and list(h) == [b"k002", b"k004"]


def test_no_prealloc_creates_what_prealloc_cannot(m):
    """1 GiB of elements is -ENOMEM to preallocate (above), nothing to create without prealloc."""
    h = m.bpf.map_create(BPF_MAP_TYPE_HASH, 4, 1 << 16, 1 << 14, BPF_F_NO_PREALLOC)
    h.update_elem(7, b"x" * (1 << 16))
    assert h.lookup_elem(7) == b"x" * (1 << 16)


def test_hash_elements_live_in_the_preallocated_pool(m):
    h = m.bpf.map_create(BPF_MAP_TYPE_HASH, 6, 12, 4, name="h")
    assert h.elem_size == HTAB_ELEM_KEY + 8 + 16
    h.update_elem(b"key-01", b"v" * 12)
    addr = h.map_lookup_elem(b"key-01")
    elem = addr - HTAB_ELEM_KEY - 8
    assert h.elems <= elem < h.elems + h.elem_size * (4 + NUM_POSSIBLE_CPUS) and (elem - h.elems) % h.elem_size == 0
    assert m.read(elem + HTAB_ELEM_KEY, 6) == b"key-01" and m.read(addr, 12) == b"v" * 12
    assert h.map_lookup_elem(b"key-02") == 0


def test_hash_update_semantics_and_filling_up(m):
    h = m.bpf.map_create(BPF_MAP_TYPE_HASH, 4, 8, 2)
    assert errno_of(h.update_elem, 1, 10, BPF_EXIST) == ENOENT
    h.update_elem(1, 10, BPF_NOEXIST)
    assert errno_of(h.update_elem, 1, 11, BPF_NOEXIST) == EEXIST
    h.update_elem(1, 11, BPF_EXIST)
    h.update_elem(2, 20)
    assert errno_of(h.update_elem, 3, 30) == E2BIG  # all max_entries elements in use; the spares are not for this
    h.update_elem(2, 21, BPF_ANY)                    # replacing still works when full
    assert errno_of(h.update_elem, 3, 30, 4 << 1) == EINVAL
    assert errno_of(h.update_elem, 3, 30, BPF_F_LOCK) == EINVAL
    h.delete_elem(1)
    assert errno_of(h.delete_elem, 1) == ENOENT
    h.update_elem(3, 30)
    assert {k: h.lookup_elem(k) for k in h} == {(2).to_bytes(4, "little"): (21).to_bytes(8, "little"),
                                                       (3).to_bytes(4, "little"): (30).to_bytes(8, "little")}


def test_replacing_a_value_moves_it_to_the_cpus_spare_element(m):
    """alloc_htab_elem(): the old element becomes the spare, still holding the old value."""
    h = m.bpf.map_create(BPF_MAP_TYPE_HASH, 4, 8, 4)
    h.update_elem(1, 10)
    first = h.map_lookup_elem((1).to_bytes(4, "little"))
    h.update_elem(1, 11)
    second = h.map_lookup_elem((1).to_bytes(4, "little"))
    assert second != first and m.read_u64(first) == 10 and m.read_u64(second) == 11
    h.update_elem(1, 12)
    assert h.map_lookup_elem((1).to_bytes(4, "little")) == first and m.read_u64(first) == 12


def test_a_deleted_element_is_the_next_one_reused(m):
    h = m.bpf.map_create(BPF_MAP_TYPE_HASH, 4, 8, 4)
    h.update_elem(1, 10)
    addr = h.map_lookup_elem((1).to_bytes(4, "little"))
    h.delete_elem(1)
    assert m.read_u64(addr) == 10  # preallocated: a stale pointer still reads the old bytes
    h.update_elem(2, 20)
    assert h.map_lookup_elem((2).to_bytes(4, "little")) == addr


def test_hash_keys_run_in_first_insertion_order(m):
    h = m.bpf.map_create(BPF_MAP_TYPE_HASH, 4, 8, 8)
    for k in (5, 3, 9):
        h.update_elem(k, k)
    h.update_elem(5, 50)   # keeps its place
    h.delete_elem(3)
    h.update_elem(3, 30)   # goes last
    assert [int.from_bytes(k, "little") for k in h] == [5, 9, 3]
    assert h.get_next_key(4) == (5).to_bytes(4, "little")  # a missing key starts from the first
    assert h.get_next_key(3) is None


OPS = st.lists(st.tuples(st.sampled_from(["update", "delete", "lookup"]), st.integers(0, 7),
                         st.integers(0, 2 ** 64 - 1), st.sampled_from([BPF_ANY, BPF_NOEXIST, BPF_EXIST])),
               max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(max_entries=st.integers(1, 6), ops=OPS)
def test_a_hash_map_behaves_as_a_bounded_dict(m, max_entries, ops):
    h = m.bpf.map_create(BPF_MAP_TYPE_HASH, 4, 8, max_entries)
    model: dict[int, int] = {}
    for op, k, v, flags in ops:
        key = k.to_bytes(4, "little")
        if op == "update":
            if k in model and flags == BPF_NOEXIST:
                want = -EEXIST
            elif k not in model and flags == BPF_EXIST:
                want = -ENOENT
            elif k not in model and len(model) == max_entries:
                want = -E2BIG
            else:
                want, model[k] = 0, v
            assert h.map_update_elem(key, v.to_bytes(8, "little"), flags, k % 2) == want
        elif op == "delete":
            assert h.map_delete_elem(key, k % 2) == (0 if model.pop(k, None) is not None else -ENOENT)
        else:
            addr = h.map_lookup_elem(key)
            assert (m.read_u64(addr) if addr else None) == model.get(k)
    assert len(h) == len(model) and sorted(int.from_bytes(k, "little") for k in h) == sorted(model)
    addrs = [h.map_lookup_elem(k.to_bytes(4, "little")) for k in model]
    assert len(set(addrs)) == len(addrs) and [m.read_u64(a) for a in addrs] == list(model.values())
