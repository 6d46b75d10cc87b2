"""machine.load_bpf() on damaged objects: it loads them or says why in one line, and never crashes."""

import functools
import io
import os
import tempfile

import pytest
from bpf_build import build
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu import Machine
from emu.errors import EmuError

FUZZ = settings(max_examples=int(os.environ.get("BPF_OBJ_FUZZ", 200)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
# what the loader reads: the headers, the programs, their relocations, the symbols, BTF and .BTF.ext
READ = ("syscall", ".text", ".relsyscall", ".rel.text", ".symtab", ".strtab", ".BTF", ".BTF.ext", ".maps",
        ".addr_space.1", ".data", ".bss", "license", ".ksyms")


@functools.cache
def _object(name: str = "arena_faults", *flags: str) -> tuple[bytes, tuple[tuple[int, int], ...]]:
    """The compiled object and the file ranges the loader reads (the ELF header and sections)."""
    data = build(name, *(flags or ("-mcpu=v4",))).read_bytes()
    elf = ELFFile(io.BytesIO(data))
    ranges = [(0, 64), (elf["e_shoff"], elf["e_shnum"] * elf["e_shentsize"])]
    for sec in elf.iter_sections():
        if sec.name in READ and sec["sh_type"] != "SHT_NOBITS" and sec["sh_size"]:
            ranges.append((sec["sh_offset"], sec["sh_size"]))
    return data, tuple(ranges)


def _load(data: bytes) -> None:
    fd, path = tempfile.mkstemp(suffix=".bpf.o")
    try:
        os.write(fd, data)
        os.close(fd)
        with Machine() as m:
            try:
                m.load_bpf(path)
            except EmuError as e:
                assert str(e) and "\n" not in str(e), repr(e)
    finally:
        os.unlink(path)


@FUZZ
@given(st.data())
def test_a_truncated_object(data):
    obj, _ = _object()
    _load(obj[:data.draw(st.integers(0, len(obj) - 1))])


@FUZZ
@given(st.data())
def test_an_object_with_bytes_changed_where_the_loader_reads(data):
    obj, ranges = _object()
    out = bytearray(obj)
    for _ in range(data.draw(st.integers(1, 6))):
        start, size = data.draw(st.sampled_from(ranges))
        out[start + data.draw(st.integers(0, size - 1))] = data.draw(st.integers(0, 255))
    _load(bytes(out))


@FUZZ
@given(st.data())
def test_a_selftest_style_object_with_bytes_changed(data):
    """The same over an object that calls the number iterator's kfuncs and has the page-fragment allocator's
    globals and __arena globals with initial values."""
    obj, ranges = _object("arena_list_del", "-mcpu=v3")
    out = bytearray(obj)
    for _ in range(data.draw(st.integers(1, 6))):
        start, size = data.draw(st.sampled_from(ranges))
        out[start + data.draw(st.integers(0, size - 1))] = data.draw(st.integers(0, 255))
    _load(bytes(out))


def _patched(name: str, section: str, old: bytes, new: bytes) -> bytes:
    """The object with every `old` in one section's bytes replaced by `new` (of the same length)."""
    data = bytearray(build(name).read_bytes())
    sec = ELFFile(io.BytesIO(bytes(data))).get_section_by_name(section)
    start, end = sec["sh_offset"], sec["sh_offset"] + sec["sh_size"]
    data[start:end] = data[start:end].replace(old, new)
    return bytes(data)


def test_a_control_character_in_a_btf_name_stays_on_the_message_line(tmp_path):
    path = tmp_path / "arena_list.bpf.o"
    path.write_bytes(_patched("arena_list", ".BTF", b"\0type\0", b"\0ty\ne\0"))
    with Machine() as m, pytest.raises(EmuError, match=r"map 'arena': unknown field 'ty\\ne'$"):
        m.load_bpf(str(path))


def test_two_functions_of_one_name_are_linked_as_two(tmp_path):
    """Relocation goes by function, not by name: two programs whose names a damaged .strtab empties."""
    path = tmp_path / "arena_loop.bpf.o"
    path.write_bytes(_patched("arena_loop", ".strtab", b"\0loop_sum\0", b"\0\0oop_sum\0")
                     .replace(b"\0add_one\0", b"\0\0dd_one\0"))
    with Machine() as m, pytest.raises(EmuError, match=r"^a program name is a C identifier, not ''$"):
        m.load_bpf(str(path))
