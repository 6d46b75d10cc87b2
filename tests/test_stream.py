"""BPF streams against kernel/bpf/stream.c and the stream selftests."""

import pytest

from emu.bpf.stream import (
    BPF_STREAM_MAX_CAPACITY,
    ENOSPC,
    BpfStream,
    BpfStreamStage,
    FormatError,
    bstr_printf,
)


def test_stream_exhaust_fails_once_99954_bytes_of_54_byte_strings_are_in():
    """progs/stream.c stream_exhaust: -ENOSPC when the accumulated size is 99954 = 1851 * 54."""
    s = BpfStream()
    line = b"x" * 54
    results = [s.bpf_stream_push_str(line) for _ in range(1852)]
    assert results[:1851] == [0] * 1851
    assert results[1851] == -ENOSPC
    assert s.capacity == 99954


def test_a_stream_never_reaches_its_capacity():
    s = BpfStream()
    assert s.bpf_stream_push_str(b"a" * (BPF_STREAM_MAX_CAPACITY - 1)) == 0
    assert s.bpf_stream_push_str(b"b") == -ENOSPC
    t = BpfStream()
    assert t.bpf_stream_push_str(b"a" * BPF_STREAM_MAX_CAPACITY) == -ENOSPC
    assert t.capacity == 0


def test_reads_are_destructive_may_split_an_element_and_release_capacity_when_it_is_done():
    """prog_tests/stream.c test_stream_syscall: "foo" read as 2 bytes, then 1, then 0."""
    s = BpfStream()
    s.bpf_stream_push_str(b"foo")
    assert s.bpf_stream_read(2) == b"fo"
    assert s.capacity == 3  # the element is not consumed yet
    assert s.bpf_stream_read(1) == b"o"
    assert s.capacity == 0
    assert s.bpf_stream_read(10) == b""


def test_reads_return_elements_in_the_order_they_were_pushed():
    s = BpfStream()
    for word in (b"one ", b"two ", b"three"):
        s.bpf_stream_push_str(word)
    assert s.bpf_stream_read(6) == b"one tw"
    assert s.pending() == 7
    assert s.bpf_stream_read(100) == b"o three"


def test_a_staged_report_is_committed_whole_or_not_at_all():
    s = BpfStream()
    s.bpf_stream_push_str(b"z" * (BPF_STREAM_MAX_CAPACITY - 100))
    ss = BpfStreamStage()
    for _ in range(3):
        ss.bpf_stream_printk("x" * 40 + "\n")  # 123 bytes: only two lines would fit
    assert s.push_staged(ss.elems) == -ENOSPC
    assert s.pending() == BPF_STREAM_MAX_CAPACITY - 100
    small = BpfStreamStage()
    small.bpf_stream_printk("x" * 40 + "\n")
    small.bpf_stream_printk("y" * 40 + "\n")
    assert s.push_staged(small.elems) == 0
    assert s.capacity == BPF_STREAM_MAX_CAPACITY - 100 + 82


@pytest.mark.parametrize(("fmt", "args", "out"), [
    ("n=%d\n", [5], "n=5\n"),
    ("%d %i", [0xFFFF_FFFF, (1 << 64) - 2], "-1 -2"),
    ("%lld %llu", [(1 << 64) - 1, (1 << 64) - 1], "-1 18446744073709551615"),
    ("%u", [(1 << 64) - 1], "4294967295"),
    ("%x %lx %#llx %08X", [0xDEADBEEF1, 0xDEADBEEF1, 255, 0xABC], "eadbeef1 deadbeef1 0xff 00000ABC"),
    ("[%-4d] [%4d] [%+d]", [7, 7, 7], "[7   ] [   7] [+7]"),
    ("%hhu %hd", [0x1FF, 0xFFFF], "255 -1"),
    ("%c%c", [ord("o"), ord("k")], "ok"),
    ("%px %p", [0xFFFFC90000001000, 16], "0xffffc90000001000 0x0000000000000010"),
    ("100%%", [], "100%"),
    ("%s!", [0x1000], "hello!"),
    ("%.3s", [0x1000], "hel"),
])
def test_bstr_printf_conversions(fmt, args, out):
    strings = {0x1000: "hello"}
    assert bstr_printf(fmt, args, strings.get) == out


@pytest.mark.parametrize(("fmt", "args"), [("%d %d", [1]), ("%f", [1]), ("%n", [1]), ("%q", [])])
def test_bstr_printf_refuses_what_the_kernel_refuses(fmt, args):
    with pytest.raises(FormatError):
        bstr_printf(fmt, args, lambda _p: None)


def test_an_unreadable_string_prints_efault():
    assert bstr_printf("%s", [0xDEAD], lambda _p: None) == "(efault)"
