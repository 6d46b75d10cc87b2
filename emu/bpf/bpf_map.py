"""The kernel's struct bpf_map and its element operations (include/linux/bpf.h's bpf_map_ops), and the
user-space view of them that the BPF_MAP_*_ELEM commands give (kernel/bpf/syscall.c).

A map's element storage lives in guest kernel memory, so the address a program gets
from bpf_map_lookup_elem() reads and writes the bytes the Python side sees. The
`struct bpf_map` itself is a stand-in: a vmalloc'ed page whose address is the map
pointer (what ld_imm64 of a map yields, and what helpers take); its fields live in
Python, as the arena's do.

Two faces: the `map_*` methods are bpf_map_ops as a program reaches them through the
helpers (an address, or a negative errno); the others are what libbpf's
bpf_map__lookup_elem() and friends give user space (bytes in and out, MapError raised).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

from ..errors import EmuError
from ..mm.layout import PAGE_SIZE
from ..mm.vmalloc import VmallocArea
from .maps import MAP_TYPE_NAMES

BPF_ANY, BPF_NOEXIST, BPF_EXIST, BPF_F_LOCK = 0, 1, 2, 4  # update flags

# enum of map_flags (include/uapi/linux/bpf.h)
BPF_F_NO_PREALLOC, BPF_F_NO_COMMON_LRU, BPF_F_NUMA_NODE = 1 << 0, 1 << 1, 1 << 2
BPF_F_RDONLY, BPF_F_WRONLY, BPF_F_ZERO_SEED = 1 << 3, 1 << 4, 1 << 6
BPF_F_RDONLY_PROG, BPF_F_WRONLY_PROG = 1 << 7, 1 << 8
BPF_F_PRESERVE_ELEMS, BPF_F_INNER_MAP = 1 << 11, 1 << 12
BPF_F_ACCESS_MASK = BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG

EPERM, ENOENT, E2BIG, ENOMEM, EEXIST, EINVAL, ENOTSUPP = 1, 2, 7, 12, 17, 22, 524
ERRNO_NAMES = {EPERM: "EPERM", ENOENT: "ENOENT", E2BIG: "E2BIG", ENOMEM: "ENOMEM", EEXIST: "EEXIST",
               EINVAL: "EINVAL", ENOTSUPP: "ENOTSUPP"}

U32_MAX = 0xFFFF_FFFF
INT_MAX = 0x7FFF_FFFF


class MapError(EmuError):
    """A map command refused: `errno` is the positive error number the kernel (or libbpf) returns negated."""

    def __init__(self, errno: int, why: str):
        self.errno = errno
        super().__init__(f"-{ERRNO_NAMES[errno]}: {why}")


def round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def map_create_check(key_size: int, value_size: int, max_entries: int, map_flags: int, flag_mask: int) -> None:
    """What map_create() and every type's alloc_check() refuse alike, all -EINVAL: an attribute that is no u32
    (union bpf_attr), a flag outside the type's `flag_mask`, a program denied both reads and writes
    (bpf_map_flags_access_ok()), and user space denied both (bpf_get_file_flag())."""
    for attr, v in (("key_size", key_size), ("value_size", value_size), ("max_entries", max_entries),
                    ("map_flags", map_flags)):
        if not 0 <= v <= U32_MAX:
            raise MapError(EINVAL, f"{attr} {v} is not a u32")
    if map_flags & ~flag_mask:
        raise MapError(EINVAL, f"map_flags {map_flags & ~flag_mask:#x} are not this map type's")
    for both in (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG, BPF_F_RDONLY | BPF_F_WRONLY):
        if map_flags & both == both:
            raise MapError(EINVAL, f"map_flags {both:#x}: both read-only and write-only")


def bpf_map_area_alloc(vmalloc: VmallocArea, size: int) -> int:
    """bpf_map_area_alloc(): zeroed vmalloc memory, or -ENOMEM when guest RAM cannot hold it."""
    mem = vmalloc.memory.mem
    if -(-size // PAGE_SIZE) > mem.nr_frames - 1 - mem.frames_in_use():
        raise MapError(ENOMEM, f"{size} bytes do not fit in guest RAM")
    return vmalloc.vmalloc(size)


class Map(ABC):
    """struct bpf_map: the attributes map_create() copies in (bpf_map_init_from_attr()) and the map pointer.
    A subclass checks and allocates its storage first, then calls this, so a refused map allocates nothing."""

    def __init__(self, vmalloc: VmallocArea, map_type: int, key_size: int, value_size: int, max_entries: int,
                 map_flags: int, name: str):
        self.memory = vmalloc.memory
        self.map_type, self.key_size, self.value_size = map_type, key_size, value_size
        self.max_entries, self.map_flags, self.name = max_entries, map_flags, name
        self.map_ptr = vmalloc.vmalloc(PAGE_SIZE)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.name or '(anonymous)'} {MAP_TYPE_NAMES[self.map_type]}"
                f" key {self.key_size} value {self.value_size} max_entries {self.max_entries}"
                f" flags {self.map_flags:#x} at {self.map_ptr:#x}>")

    # -- bpf_map_ops: what the helpers call -------------------------------------

    @abstractmethod
    def map_lookup_elem(self, key: bytes) -> int:
        """The value's kernel address, or 0 (NULL)."""

    @abstractmethod
    def map_update_elem(self, key: bytes, value: bytes, flags: int, cpu: int) -> int:
        """0, or a negative errno. `cpu` is the CPU it runs on (what this_cpu_ptr() picks)."""

    @abstractmethod
    def map_delete_elem(self, key: bytes, cpu: int) -> int:
        """0, or a negative errno."""

    @abstractmethod
    def map_get_next_key(self, key: bytes | None) -> bytes | None:
        """The key after `key` (the first for None or a missing key); None for -ENOENT, at the end."""

    # -- user space: syscall.c's map_lookup_elem() and friends, as libbpf calls them ----------

    def lookup_elem(self, key: bytes | int) -> bytes:
        """bpf_map__lookup_elem(): a copy of the value (bpf_map_copy_value()); -ENOENT when there is none."""
        if self.map_flags & BPF_F_WRONLY:
            raise MapError(EPERM, f"map '{self.name}' is write-only to user space")
        addr = self.map_lookup_elem(self._encode(key, self.key_size, "key"))
        if not addr:
            raise MapError(ENOENT, f"no element {key!r} in map '{self.name}'")
        return self.memory.read(addr, self.value_size)

    def update_elem(self, key: bytes | int, value: bytes | int, flags: int = BPF_ANY) -> None:
        """bpf_map__update_elem(); the syscall runs on CPU 0."""
        self._writable()
        self._check(self.map_update_elem(self._encode(key, self.key_size, "key"),
                                         self._encode(value, self.value_size, "value"), flags, 0), key)

    def delete_elem(self, key: bytes | int) -> None:
        self._writable()
        self._check(self.map_delete_elem(self._encode(key, self.key_size, "key"), 0), key)

    def get_next_key(self, key: bytes | int | None = None) -> bytes | None:
        """bpf_map__get_next_key(): None where the kernel returns -ENOENT (after the last key)."""
        return self.map_get_next_key(None if key is None else self._encode(key, self.key_size, "key"))

    def __iter__(self) -> Iterator[bytes]:
        """Every key, in map_get_next_key() order, as `bpftool map dump` walks them."""
        key = self.get_next_key()
        while key is not None:
            yield key
            key = self.get_next_key(key)

    def _writable(self) -> None:
        if self.map_flags & BPF_F_RDONLY:
            raise MapError(EPERM, f"map '{self.name}' is read-only to user space")

    def _check(self, ret: int, key: bytes | int) -> None:
        if ret:
            raise MapError(-ret, f"map '{self.name}', key {key!r}")

    def _encode(self, v: bytes | int, size: int, what: str) -> bytes:
        """libbpf's validate_map_op(): a key or value of exactly the map's size; an int is little-endian."""
        if isinstance(v, int):
            try:
                return v.to_bytes(size, "little", signed=v < 0)
            except OverflowError:
                raise MapError(EINVAL, f"map '{self.name}': {what} {v} does not fit in {size} bytes") from None
        if len(v) != size:
            raise MapError(EINVAL, f"map '{self.name}': {what} is {len(v)} bytes, the map's {what}_size is {size}")
        return bytes(v)
