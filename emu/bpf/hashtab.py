"""BPF_MAP_TYPE_HASH, preallocated or not (BPF_F_NO_PREALLOC): kernel/bpf/hashtab.c.

As htab_map_alloc() with prealloc_init() builds it: max_entries + num_possible_cpus()
elements of elem_size bytes in one vmalloc'ed pool, each a struct htab_elem header, the
key and the value (both rounded up to 8 bytes), handed out by a per-CPU freelist
(kernel/bpf/percpu_freelist.c). One spare element per CPU (alloc_extra_elems()) takes an
existing key's update: the new value goes into the spare and the old element becomes
the spare, so the key's value moves, and a program's pointer to the old one keeps reading
the old bytes until that CPU's next replacing update reuses it. A deleted element goes
back on the freelist of the CPU that deleted it.

The buckets are a Python dict (key -> element): no jhash, no hlist in guest memory.
Iteration order (map_get_next_key()) is therefore ours, not the kernel's bucket order:
keys in the order they were first inserted; an update of an existing key keeps its
place; a deleted and re-added key goes last.

With BPF_F_NO_PREALLOC nothing is allocated at creation: an update allocates a new element
(bpf_mem_cache_alloc()), refused with -E2BIG only when max_entries keys are in use and the
key is new; a replaced or deleted element is freed at once (bpf_mem_cache_free()) onto its
CPU's free list, which the next allocation on that CPU reuses, last freed first. The
elements come from vmalloc'ed pages carved into elements (the cache's refill), not from
the kernel's slab, so their addresses are this project's own. Not modelled: the per-CPU
and LRU variants, and spin locks (BPF_F_LOCK is refused, as for a value without one).
"""

from __future__ import annotations

from ..mm.layout import PAGE_SIZE
from ..mm.vmalloc import VmallocArea
from .bpf_map import (
    BPF_EXIST,
    BPF_F_ACCESS_MASK,
    BPF_F_LOCK,
    BPF_F_NO_COMMON_LRU,
    BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE,
    BPF_F_ZERO_SEED,
    BPF_NOEXIST,
    E2BIG,
    EEXIST,
    EINVAL,
    ENOENT,
    ENOMEM,
    U32_MAX,
    Map,
    MapError,
    bpf_map_area_alloc,
    map_create_check,
    round_up,
)

BPF_MAP_TYPE_HASH = 1
HTAB_CREATE_FLAG_MASK = BPF_F_NO_PREALLOC | BPF_F_NO_COMMON_LRU | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK | BPF_F_ZERO_SEED
HTAB_ELEM_KEY = 48  # offsetof(struct htab_elem, key): hash_node/fnode 16, ptr_to_pptr/lru_node 24, hash 4, aligned 8
KMALLOC_MAX_SIZE = 1 << 22  # SLUB on x86-64: 1 << (MAX_PAGE_ORDER + PAGE_SHIFT)
SIZEOF_BUCKET = 16  # struct bucket: an hlist_nulls_head and a lock, padded
NUM_POSSIBLE_CPUS = 8  # a Machine has 1 to 8 CPUs, so all 8 are possible


def htab_map_alloc_check(key_size: int, value_size: int, max_entries: int, map_flags: int) -> None:
    """htab_map_alloc_check() for BPF_MAP_TYPE_HASH (not LRU, not per-CPU; created as root, so BPF_F_ZERO_SEED
    is allowed), then htab_map_alloc()'s size checks."""
    map_create_check(key_size, value_size, max_entries, map_flags, HTAB_CREATE_FLAG_MASK)
    if map_flags & BPF_F_NO_COMMON_LRU:
        raise MapError(EINVAL, "BPF_F_NO_COMMON_LRU is for LRU hash maps")
    if max_entries == 0 or key_size == 0 or value_size == 0:
        raise MapError(EINVAL, f"a hash map has nonzero key_size, value_size and max_entries, not key_size "
                               f"{key_size}, value_size {value_size}, max_entries {max_entries}")
    if key_size + value_size >= KMALLOC_MAX_SIZE - HTAB_ELEM_KEY:
        raise MapError(E2BIG, f"key_size + value_size {key_size + value_size} is not under KMALLOC_MAX_SIZE "
                              f"less struct htab_elem")
    if max_entries > 1 << 31 or 1 << (max_entries - 1).bit_length() > U32_MAX // SIZEOF_BUCKET:
        raise MapError(E2BIG, f"max_entries {max_entries}: too many buckets")


class _PcpuFreelist:
    """kernel/bpf/percpu_freelist.c: a LIFO per CPU; a pop starts at its CPU's list and goes round the others."""

    def __init__(self, elems: list[int]):
        """pcpu_freelist_populate(): consecutive runs, the first nr % ncpus CPUs taking one more."""
        n, m = divmod(len(elems), NUM_POSSIBLE_CPUS)
        self.heads: list[list[int]] = []
        for cpu in range(NUM_POSSIBLE_CPUS):
            take = n + (cpu < m)
            self.heads.append(elems[:take])
            elems = elems[take:]

    def pop(self, cpu: int) -> int | None:
        for i in range(NUM_POSSIBLE_CPUS):
            head = self.heads[(cpu + i) % NUM_POSSIBLE_CPUS]
            if head:
                return head.pop()
        return None

    def push(self, cpu: int, elem: int) -> None:
        self.heads[cpu].append(elem)


class _MemCache:
    """bpf_mem_cache of one element size (kernel/bpf/memalloc.c): a LIFO free list per CPU, refilled with a
    vmalloc'ed page's worth of elements when empty (alloc_bulk()); a free goes on the freeing CPU's list."""

    def __init__(self, vmalloc: VmallocArea, elem_size: int):
        self.vmalloc, self.elem_size = vmalloc, elem_size
        self.free_llist: list[list[int]] = [[] for _ in range(NUM_POSSIBLE_CPUS)]

    def bpf_mem_cache_alloc(self, cpu: int) -> int | None:
        """An element, or None when guest RAM is exhausted (-ENOMEM)."""
        free = self.free_llist[cpu]
        if not free:
            size = max(PAGE_SIZE, self.elem_size)
            try:
                page = bpf_map_area_alloc(self.vmalloc, size)
            except MapError:
                return None
            free.extend(reversed(range(page, page + size - self.elem_size + 1, self.elem_size)))
        return free.pop()

    def bpf_mem_cache_free(self, cpu: int, elem: int) -> None:
        self.free_llist[cpu].append(elem)


class HashMap(Map):
    """htab_map_alloc(): with prealloc, `elems` is the pool's address and `elem_size` its stride; without,
    `elems` is 0 and elements come from a bpf_mem_cache at update time."""

    def __init__(self, vmalloc: VmallocArea, key_size: int, value_size: int, max_entries: int, map_flags: int = 0,
                 name: str = ""):
        htab_map_alloc_check(key_size, value_size, max_entries, map_flags)
        self.elem_size = HTAB_ELEM_KEY + round_up(key_size, 8) + round_up(value_size, 8)
        self._table: dict[bytes, int] = {}
        self._cache: _MemCache | None = None
        if map_flags & BPF_F_NO_PREALLOC:
            self.elems, self._cache = 0, _MemCache(vmalloc, self.elem_size)
            super().__init__(vmalloc, BPF_MAP_TYPE_HASH, key_size, value_size, max_entries, map_flags, name)
            return
        num_entries = max_entries + NUM_POSSIBLE_CPUS
        self.elems = bpf_map_area_alloc(vmalloc, self.elem_size * num_entries)
        self._freelist = _PcpuFreelist([self.elems + i * self.elem_size for i in range(num_entries)])
        # alloc_extra_elems(): the creating syscall, on CPU 0, pops one spare per possible CPU; the pool has
        # NUM_POSSIBLE_CPUS more elements than max_entries, so no pop comes back empty
        spares = [self._freelist.pop(0) for _ in range(NUM_POSSIBLE_CPUS)]
        self._extra = [elem for elem in spares if elem is not None]
        super().__init__(vmalloc, BPF_MAP_TYPE_HASH, key_size, value_size, max_entries, map_flags, name)

    def __len__(self) -> int:
        return len(self._table)

    def _value_addr(self, elem: int) -> int:
        return elem + HTAB_ELEM_KEY + round_up(self.key_size, 8)

    def map_lookup_elem(self, key: bytes) -> int:
        """htab_map_lookup_elem(): the value inside the key's element, or NULL."""
        elem = self._table.get(key)
        return self._value_addr(elem) if elem is not None else 0

    def map_update_elem(self, key: bytes, value: bytes, flags: int, cpu: int) -> int:
        """htab_map_update_elem() and check_flags(); alloc_htab_elem() takes the CPU's spare for an existing
        key and pops the freelist for a new one (-E2BIG when it is empty: every element is in use)."""
        if flags & ~BPF_F_LOCK > BPF_EXIST or flags & BPF_F_LOCK:
            return -EINVAL
        old = self._table.get(key)
        if old is not None and flags == BPF_NOEXIST:
            return -EEXIST
        if old is None and flags == BPF_EXIST:
            return -ENOENT
        if self._cache is not None:  # alloc_htab_elem() without prealloc: a full map still takes a replacement
            if old is None and len(self._table) >= self.max_entries:
                return -E2BIG
            elem = self._cache.bpf_mem_cache_alloc(cpu)
            if elem is None:
                return -ENOMEM
            self._write(elem, key, value)
            if old is not None:
                self._cache.bpf_mem_cache_free(cpu, old)
            return 0
        if old is not None:
            new, self._extra[cpu] = self._extra[cpu], old
        else:
            popped = self._freelist.pop(cpu)
            if popped is None:
                return -E2BIG
            new = popped
        self._write(new, key, value)
        return 0

    def _write(self, elem: int, key: bytes, value: bytes) -> None:
        self.memory.write(elem + HTAB_ELEM_KEY, key)
        self.memory.write(self._value_addr(elem), value)
        self._table[key] = elem

    def map_delete_elem(self, key: bytes, cpu: int) -> int:
        """htab_map_delete_elem(): free_htab_elem() pushes the element on this CPU's freelist."""
        elem = self._table.pop(key, None)
        if elem is None:
            return -ENOENT
        if self._cache is not None:
            self._cache.bpf_mem_cache_free(cpu, elem)
        else:
            self._freelist.push(cpu, elem)
        return 0

    def map_get_next_key(self, key: bytes | None) -> bytes | None:
        """htab_map_get_next_key(), in our order (see the module): a missing key starts from the first."""
        keys = list(self._table)
        if key is None or key not in self._table:
            return keys[0] if keys else None
        i = keys.index(key) + 1
        return keys[i] if i < len(keys) else None
