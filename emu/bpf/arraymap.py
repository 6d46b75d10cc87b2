"""BPF_MAP_TYPE_ARRAY: kernel/bpf/arraymap.c.

Every element exists from creation: max_entries values, each rounded up to 8 bytes,
contiguous and zeroed in vmalloc memory, so a lookup is an address computed from the
index. The internal maps of `.data`, `.rodata` and `.bss` are one-element arrays whose
value the program addresses directly (map_direct_value_addr()).

Created as root: bpf_bypass_spec_v1() holds, so max_entries is not rounded up to a power
of two. The kernel places the values after struct bpf_array in one allocation; here the
values have their own (page-aligned, as an mmapable array's are), and the map pointer is
the stand-in page of bpf_map.Map. No value has a spin lock (there is no BTF), so
BPF_F_LOCK is refused as the kernel refuses it for such a value.
"""

from __future__ import annotations

from ..mm.vmalloc import VmallocArea
from .arena import BPF_F_MMAPABLE
from .bpf_map import (
    BPF_EXIST,
    BPF_F_ACCESS_MASK,
    BPF_F_INNER_MAP,
    BPF_F_LOCK,
    BPF_F_NUMA_NODE,
    BPF_F_PRESERVE_ELEMS,
    BPF_NOEXIST,
    E2BIG,
    EEXIST,
    EINVAL,
    ENOTSUPP,
    INT_MAX,
    U32_MAX,
    Map,
    MapError,
    bpf_map_area_alloc,
    map_create_check,
    round_up,
)
from .maps import BPF_MAP_TYPE_ARRAY

ARRAY_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_MMAPABLE | BPF_F_ACCESS_MASK | BPF_F_PRESERVE_ELEMS | BPF_F_INNER_MAP


def array_map_alloc_check(key_size: int, value_size: int, max_entries: int, map_flags: int) -> None:
    """array_map_alloc_check() for BPF_MAP_TYPE_ARRAY."""
    map_create_check(key_size, value_size, max_entries, map_flags, ARRAY_CREATE_FLAG_MASK)
    if max_entries == 0 or key_size != 4 or value_size == 0:
        raise MapError(EINVAL, f"an array has key_size 4 and nonzero value_size and max_entries, not key_size "
                               f"{key_size}, value_size {value_size}, max_entries {max_entries}")
    if map_flags & BPF_F_PRESERVE_ELEMS:
        raise MapError(EINVAL, "BPF_F_PRESERVE_ELEMS is for perf event arrays")
    if value_size > INT_MAX:
        raise MapError(E2BIG, f"value_size {value_size} is over INT_MAX")


class ArrayMap(Map):
    """array_map_alloc(): `value` is the address of element 0, `elem_size` the stride."""

    def __init__(self, vmalloc: VmallocArea, key_size: int, value_size: int, max_entries: int, map_flags: int = 0,
                 name: str = ""):
        array_map_alloc_check(key_size, value_size, max_entries, map_flags)
        self.elem_size = round_up(value_size, 8)
        self.value = bpf_map_area_alloc(vmalloc, max_entries * self.elem_size)
        super().__init__(vmalloc, BPF_MAP_TYPE_ARRAY, key_size, value_size, max_entries, map_flags, name)

    def _index(self, key: bytes) -> int:
        return int.from_bytes(key[:4], "little")

    def map_lookup_elem(self, key: bytes) -> int:
        """array_map_lookup_elem(): NULL past the end."""
        index = self._index(key)
        return self.value + self.elem_size * index if index < self.max_entries else 0

    def map_update_elem(self, key: bytes, value: bytes, flags: int, cpu: int) -> int:
        """array_map_update_elem(): every element exists, so BPF_NOEXIST is -EEXIST and past the end is -E2BIG;
        value_size bytes are copied, the padding to elem_size stays."""
        index = self._index(key)
        if flags & ~BPF_F_LOCK > BPF_EXIST:
            return -EINVAL
        if index >= self.max_entries:
            return -E2BIG
        if flags & BPF_NOEXIST:
            return -EEXIST
        if flags & BPF_F_LOCK:
            return -EINVAL
        self.memory.write(self.value + self.elem_size * index, value)
        return 0

    def map_delete_elem(self, key: bytes, cpu: int) -> int:
        """array_map_delete_elem(): an array's elements cannot be deleted."""
        return -EINVAL

    def map_get_next_key(self, key: bytes | None) -> bytes | None:
        """array_map_get_next_key(): index order; a missing or out-of-range key starts at 0."""
        index = U32_MAX if key is None else self._index(key)
        if index >= self.max_entries:
            return bytes(4)
        if index == self.max_entries - 1:
            return None
        return (index + 1).to_bytes(4, "little")

    def map_direct_value_addr(self, off: int = 0) -> int:
        """array_map_direct_value_addr(), plus the offset as resolve_pseudo_ldimm64() adds it: what ld_imm64 of
        BPF_PSEUDO_MAP_VALUE yields, the address of a `.data`/`.rodata`/`.bss` global."""
        if self.max_entries != 1:
            raise MapError(ENOTSUPP, f"map '{self.name}' has {self.max_entries} elements: direct access needs one")
        if not 0 <= off < self.value_size:
            raise MapError(EINVAL, f"invalid access to map value pointer, value_size={self.value_size} off={off}")
        return self.value + off
