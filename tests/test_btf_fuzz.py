"""Damaged input is a result or one clear error: truncated, random and byte-mutated ELF, BTF and .BTF.ext."""

import contextlib

import pytest
from bpf_build import build
from btf_blob import every_kind
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.bpf.btf import Btf, BtfError
from emu.bpf.btf_ext import BtfExt
from emu.bpf.elf import read_elf
from emu.bpf.object_file import BpfObject, BpfObjectError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def object_bytes() -> bytes:
    return build("arena_list").read_bytes()


@pytest.fixture(scope="module")
def btf_sections(object_bytes) -> tuple[bytes, bytes]:
    elf = read_elf(object_bytes, "arena_list.bpf.o")
    return elf.section(".BTF").data, elf.section(".BTF.ext").data


def mutations(size: int):
    """Up to 8 (position, byte) overwrites of a buffer of `size` bytes."""
    return st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 255)), max_size=8)


def mutate(data: bytes, changes) -> bytes:
    out = bytearray(data)
    for pos, byte in changes:
        out[pos] = byte
    return bytes(out)


def open_or_refuse(data: bytes) -> None:
    try:
        BpfObject.from_bytes(data, "fuzz")
    except BpfObjectError as e:
        assert "\n" not in str(e)


def parse_btf_or_refuse(data: bytes) -> Btf | None:
    try:
        btf = Btf.parse(data)
    except BtfError as e:
        assert "\n" not in str(e)
        return None
    for t in btf:  # every helper works, or says why not, on whatever parsed
        for helper in (btf.resolve_size, btf.type_name, btf.skip_mods_and_typedefs):
            with contextlib.suppress(BtfError):
                helper(t.id)
    btf.dump()
    return btf


BLOB = every_kind().bytes()


@FUZZ
@given(data=st.data())
def test_truncated_objects(object_bytes, data):
    open_or_refuse(object_bytes[:data.draw(st.integers(0, len(object_bytes)))])


@FUZZ
@given(data=st.data())
def test_mutated_objects(object_bytes, data):
    open_or_refuse(mutate(object_bytes, data.draw(mutations(len(object_bytes)))))


@FUZZ
@given(raw=st.binary(max_size=512))
def test_random_bytes_after_an_elf_magic(raw):
    open_or_refuse(b"\x7fELF\x02\x01\x01" + raw)


@FUZZ
@given(data=st.data())
def test_mutated_and_truncated_btf(btf_sections, data):
    btf = data.draw(st.sampled_from((btf_sections[0], BLOB)))
    btf = mutate(btf, data.draw(mutations(len(btf))))
    parse_btf_or_refuse(btf[:data.draw(st.integers(0, len(btf)))])


@FUZZ
@given(raw=st.binary(max_size=256))
def test_random_btf_after_a_header(raw):
    parse_btf_or_refuse(BLOB[:8] + raw)


@FUZZ
@given(data=st.data())
def test_mutated_and_truncated_btf_ext(btf_sections, data):
    btf = Btf.parse(btf_sections[0])
    ext = mutate(btf_sections[1], data.draw(mutations(len(btf_sections[1]))))
    try:
        BtfExt.parse(ext[:data.draw(st.integers(0, len(ext)))], btf)
    except BtfError as e:
        assert "\n" not in str(e)
