"""kernel_stubs/: each function does what its kernel counterpart does."""

import pytest

from emu.mm.layout import PAGE_SIZE

HOLE = 0xFFFF_C900_4000_0000


def test_copy_from_kernel_nofault_copies_mapped_memory(stubs):
    src, dst = stubs.vmalloc(PAGE_SIZE), stubs.vmalloc(PAGE_SIZE)
    stubs.write(src, b"0123456789abcdefXYZ")
    result = stubs.call("copy_from_kernel_nofault", dst, src, 19)
    assert (result.status, result.ret, result.faults) == ("returned", 0, [])
    assert stubs.read(dst, 20) == b"0123456789abcdefXYZ\0"


def test_copy_from_kernel_nofault_stops_at_the_first_unmapped_byte_with_efault(stubs):
    src, dst = stubs.vmalloc(PAGE_SIZE), stubs.vmalloc(2 * PAGE_SIZE)
    stubs.write(src + PAGE_SIZE - 16, b"A" * 16)  # the last 16 mapped bytes; the next page is the guard
    result = stubs.call("copy_from_kernel_nofault", dst, src + PAGE_SIZE - 16, 64)
    assert result.ret_signed == -14
    assert stubs.read(dst, 24) == b"A" * 16 + bytes(8)
    (e,) = result.faults
    assert (e.address, e.resolution) == (src + PAGE_SIZE, "extable")


def test_get_kernel_nofault_u64(stubs):
    va = stubs.vmalloc(PAGE_SIZE)
    stubs.write_u64(va, 0x1122_3344_5566_7788)
    assert stubs.call("get_kernel_nofault_u64", va).ret == 0x1122_3344_5566_7788
    faulted = stubs.call("get_kernel_nofault_u64", HOLE)
    assert (faulted.ret, faulted.faults[0].resolution) == (0, "extable")


@pytest.mark.parametrize("length", [0, 1, 7, 8, 9, 64, 4095, 4096])
def test_memset_fills_exactly_length_bytes(stubs, length):
    buf = stubs.vmalloc(2 * PAGE_SIZE)
    stubs.write(buf, b"\xee" * (length + 8))
    result = stubs.call("memset", buf, 0x5A, length)
    assert result.ret == buf
    assert stubs.read(buf, length + 8) == b"\x5a" * length + b"\xee" * 8


@pytest.mark.parametrize("length", [0, 1, 100, 4096, 5000])
def test_memcpy_copies_with_rep_movsb(stubs, length):
    src, dst = stubs.vmalloc(2 * PAGE_SIZE), stubs.vmalloc(2 * PAGE_SIZE)
    data = bytes((i * 13) & 0xFF for i in range(length))
    stubs.write(src, data)
    assert stubs.call("memcpy", dst, src, length).ret == dst
    assert stubs.read(dst, length) == data


def test_memcpy_into_an_unmapped_page_is_an_oops_without_a_handler(stubs):
    src = stubs.vmalloc(PAGE_SIZE)
    result = stubs.call("memcpy", HOLE, src, 16)
    assert result.status == "oops"
    assert "#PF: supervisor write access in kernel mode" in result.oops
    assert "RIP: 0010:memcpy+0x6/0x" in result.oops


def test_list_walkers_on_the_linker_built_list(stubs):
    head = stubs.symbol("demo_list")
    assert stubs.call("list_count", head).ret == 3
    assert stubs.call("list_sum", head).ret == 60


def test_list_walkers_on_a_list_built_in_memory(stubs):
    mem = stubs.vmalloc(PAGE_SIZE)
    nodes = [mem + 0x100 * i for i in range(1, 6)]
    ring = [mem] + nodes
    for i, node in enumerate(ring):
        stubs.write_u64(node, ring[(i + 1) % len(ring)])  # next
        stubs.write_u64(node + 8, ring[i - 1])  # prev
    for i, node in enumerate(nodes):
        stubs.write_u64(node + 16, 1 << i)
    assert stubs.call("list_count", mem).ret == 5
    assert stubs.call("list_sum", mem).ret == 0b11111


def test_a_list_with_a_dangling_next_pointer_oopses_in_the_walker(stubs):
    head = stubs.symbol("demo_list")
    stubs.write_u64(head + 0x10, HOLE)  # node_a->next
    result = stubs.call("list_sum", head)
    assert result.status == "oops"
    assert result.oops.splitlines()[0] == f"BUG: unable to handle page fault for address: {HOLE + 16:016x}"
    assert (result.faults[0].where, result.faults[0].insn) == ("list_sum+0xe/0x19", "addq 0x10(%rdx), %rax")
