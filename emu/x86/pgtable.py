"""x86-64 4-level page tables in guest memory (arch/x86/include/asm/pgtable_types.h).

The walker reads memory only through a `PhysReader` (two methods), so it runs the
same over guest RAM or a test's dict. A walk is a value: one stage per level,
printable level by level or as the kernel's dump_pagetable() one-liner.
P4D is folded into the PGD, as the kernel does with 4-level paging.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Literal, NamedTuple, Protocol, overload

from ..errors import EmuError
from ..mm.layout import PAGE_SIZE, is_canonical
from ..mm.physmem import FrameKind, PhysMem

_PAGE_PRESENT = 1 << 0
_PAGE_RW = 1 << 1
_PAGE_USER = 1 << 2
_PAGE_PWT = 1 << 3
_PAGE_PCD = 1 << 4
_PAGE_ACCESSED = 1 << 5
_PAGE_DIRTY = 1 << 6
_PAGE_PSE = 1 << 7
_PAGE_GLOBAL = 1 << 8
_PAGE_NX = 1 << 63

PTE_PFN_MASK = 0x000F_FFFF_FFFF_F000

# Upper levels are installed as the kernel's _PAGE_TABLE (P RW US A D): access
# rights are decided by the leaf, and dumps read like a real machine's "...067".
_PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY

PAGE_KERNEL = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_NX
PAGE_KERNEL_RO = _PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_NX
PAGE_KERNEL_ROX = _PAGE_PRESENT | _PAGE_ACCESSED
PAGE_USER = PAGE_KERNEL | _PAGE_USER

_FLAG_NAMES = (
    (_PAGE_PRESENT, "P"), (_PAGE_RW, "RW"), (_PAGE_USER, "US"), (_PAGE_PWT, "PWT"),
    (_PAGE_PCD, "PCD"), (_PAGE_ACCESSED, "A"), (_PAGE_DIRTY, "D"), (_PAGE_PSE, "PS"),
    (_PAGE_GLOBAL, "G"), (_PAGE_NX, "NX"),
)

_SHIFTS = {"PGD": 39, "P4D": 39, "PUD": 30, "PMD": 21, "PTE": 12}


def flag_names(entry: int) -> str:
    names = [name for bit, name in _FLAG_NAMES if entry & bit]
    return " ".join(names) if names else "-"


def pte_pfn(entry: int) -> int:
    return (entry & PTE_PFN_MASK) >> 12


def pte_present(entry: int) -> bool:
    return bool(entry & _PAGE_PRESENT)


def mk_pte(pfn: int, prot: int) -> int:
    """The kernel's mk_pte(page, prot)."""
    return (pfn << 12) | prot


PTRS_PER_TABLE = 512


def index(level: str, va: int) -> int:
    return (va >> _SHIFTS[level]) & (PTRS_PER_TABLE - 1)


class PhysReader(Protocol):
    """Where a walk gets its memory from."""

    def read_u64(self, pa: int) -> int: ...

    def contains(self, pa: int, length: int = 1) -> bool: ...


class WalkStage(NamedTuple):
    """One level of a walk: which table, which slot, what it held. (NamedTuples, this and
    PageWalk: immutable like a frozen dataclass, and built twice as fast, for every fault.)"""

    level: str
    table: int  # physical address of the table
    index: int  # type: ignore[assignment]  # the slot in the table; shadows tuple.index(), never called here
    entry: int

    @property
    def present(self) -> bool:
        return pte_present(self.entry)

    @property
    def leaf(self) -> bool:
        return self.level == "PTE" or (self.level in ("PUD", "PMD") and bool(self.entry & _PAGE_PSE))

    def __str__(self) -> str:
        return (f"{self.level}[{self.index:3d}] @ {self.table + self.index * 8:#x} = "
                f"{self.entry:#018x}  {flag_names(self.entry)}")


class PageWalk(NamedTuple):
    """A whole walk of one virtual address; `pa` is None where it stopped short."""

    va: int
    cr3: int
    stages: tuple[WalkStage, ...]
    pa: int | None
    stopped: str | None  # why there is no pa: "not-present PMD", "non-canonical", ...

    @property
    def pte(self) -> int:
        """The last entry reached: the PTE value when the walk got that far, else 0."""
        last = self.stages[-1] if self.stages else None
        return last.entry if last is not None and last.level == "PTE" else 0

    @property
    def leaf(self) -> WalkStage | None:
        last = self.stages[-1] if self.stages else None
        return last if last is not None and last.present and last.leaf else None

    def dump_pagetable(self) -> str:
        """arch/x86/mm/fault.c dump_pagetable(): `PGD 2067 P4D 2067 PUD 3067 PMD 0`."""
        return " ".join(f"{s.level} {s.entry:x}" for s in self.stages)

    def __str__(self) -> str:
        lines = [f"walk {self.va:#018x}  CR3 = {self.cr3:#x}"]
        lines += [f"  {s}" for s in self.stages]
        if self.pa is not None:
            lines.append(f"  -> physical {self.pa:#x}")
        else:
            lines.append(f"  -> no translation: {self.stopped}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        where = f"pa={self.pa:#x}" if self.pa is not None else f"stopped={self.stopped!r}"
        return f"PageWalk(va={self.va:#x}, {self.dump_pagetable()!r}, {where})"


_WALK_LEVELS = (("PGD", 39), ("PUD", 30), ("PMD", 21), ("PTE", 12))
_new = tuple.__new__  # a NamedTuple without its generated __new__: half the cost, twice a fault


def walk(mem: PhysReader, cr3: int, va: int) -> PageWalk:
    """Translate `va` as the MMU would, recording every level it reads."""
    if not is_canonical(va):
        return PageWalk(va, cr3, (), None, "non-canonical address")
    stages: list[WalkStage] = []
    table = cr3 & PTE_PFN_MASK
    for level, shift in _WALK_LEVELS:
        i = (va >> shift) & 511
        if not mem.contains(table + i * 8, 8):
            return PageWalk(va, cr3, tuple(stages), None, f"{level} table {table:#x} outside guest RAM")
        entry = mem.read_u64(table + i * 8)
        stages.append(_new(WalkStage, (level, table, i, entry)))
        if not entry & _PAGE_PRESENT:
            return _new(PageWalk, (va, cr3, tuple(stages), None, f"not-present {level}"))
        if shift == 12 or (shift != 39 and entry & _PAGE_PSE):
            mask = (1 << shift) - 1
            return _new(PageWalk, (va, cr3, tuple(stages), (entry & PTE_PFN_MASK & ~mask) | (va & mask), None))
        if shift == 39:  # P4D is folded: the kernel prints the PGD entry again
            stages.append(_new(WalkStage, ("P4D", table, i, entry)))
        table = entry & PTE_PFN_MASK
    raise AssertionError("unreachable: the PTE level is always a leaf")


CapturedWalk = tuple[int, int, int, tuple[int, ...]]  # (va, cr3, RAM size, the entries read)


def capture_walk(mem: PhysMem, cr3: int, va: int) -> CapturedWalk:
    """The entries walk() would read for `va`, as plain integers: a fault keeps them and makes
    its PageWalk from them only when someone looks (replay_walk()), after the tables changed.
    Spelled out level by level: a fault captures two or three walks, and the loop cost twice."""
    size = mem.size
    if (va >> 47) not in (0, 0x1_FFFF):
        return va, cr3, size, ()
    words, end = mem.words, size - 8
    slot = (cr3 & PTE_PFN_MASK) | ((va >> 36) & 0xFF8)
    if slot > end:
        return va, cr3, size, ()
    pgd = words[slot >> 3]
    slot = (pgd & PTE_PFN_MASK) | ((va >> 27) & 0xFF8)
    if not pgd & _PAGE_PRESENT or slot > end:
        return va, cr3, size, (pgd,)
    pud = words[slot >> 3]
    slot = (pud & PTE_PFN_MASK) | ((va >> 18) & 0xFF8)
    if not pud & _PAGE_PRESENT or pud & _PAGE_PSE or slot > end:
        return va, cr3, size, (pgd, pud)
    pmd = words[slot >> 3]
    slot = (pmd & PTE_PFN_MASK) | ((va >> 9) & 0xFF8)
    if not pmd & _PAGE_PRESENT or pmd & _PAGE_PSE or slot > end:
        return va, cr3, size, (pgd, pud, pmd)
    return va, cr3, size, (pgd, pud, pmd, words[slot >> 3])


class _Captured:
    """A PhysReader that gives back a capture's entries in the order walk() reads them."""

    def __init__(self, size: int, entries: tuple[int, ...]):
        self.size, self._entries = size, iter(entries)

    def read_u64(self, pa: int) -> int:
        return next(self._entries)

    def contains(self, pa: int, length: int = 1) -> bool:
        return pa >= 0 and pa + length <= self.size


def captured_pa(captured: CapturedWalk) -> int | None:
    """The physical address a capture_walk() reached (walk(...).pa), None where it stopped short."""
    va, _, _, entries = captured
    if not entries:
        return None
    last, shift = entries[-1], (39, 30, 21, 12)[len(entries) - 1]
    if not last & _PAGE_PRESENT or not (shift == 12 or (shift != 39 and last & _PAGE_PSE)):
        return None
    mask = (1 << shift) - 1
    return (last & PTE_PFN_MASK & ~mask) | (va & mask)


def replay_walk(captured: CapturedWalk) -> PageWalk:
    """The PageWalk of a capture_walk(): walk() itself, over the entries it read then."""
    va, cr3, size, entries = captured
    return walk(_Captured(size, entries), cr3, va)


def translate(mem: PhysReader, cr3: int, va: int) -> int | None:
    """walk(...).pa without recording the walk: the fault path reads stacks and code through
    this, a few words per fault, and building the stages costs five times as much."""
    if not is_canonical(va):
        return None
    table = cr3 & PTE_PFN_MASK
    for shift in (39, 30, 21, 12):
        slot = table + ((va >> shift) & 511) * 8
        if not mem.contains(slot, 8):
            return None
        entry = mem.read_u64(slot)
        if not entry & _PAGE_PRESENT:
            return None
        if shift == 12 or (shift != 39 and entry & _PAGE_PSE):
            mask = (1 << shift) - 1
            return (entry & PTE_PFN_MASK & ~mask) | (va & mask)
        table = entry & PTE_PFN_MASK
    raise AssertionError("unreachable: the PTE level is always a leaf")


class PageTables:
    """One address space (one CR3): map, unmap, change and walk 4 KiB pages.

    Tables are allocated on demand, so a sparse 4 GiB range costs page-table
    frames only where something is mapped (one PTE page per 2 MiB touched).
    """

    def __init__(self, mem: PhysMem):
        self.mem = mem
        self.root = mem.alloc_frame(FrameKind.PGTABLE) << 12
        # Told [(va, old PTE), ...] whenever present PTEs change: a TLB may still hold the old ones.
        # told of every write over a present PTE: (first page, old PTEs, new PTEs)
        self.listeners: list[Callable[[int, array, array], None]] = []
        self.generation = 0  # bumped by every PTE write, so a cached translation knows it may be old

    def _changed(self, va: int, old: int, new: int) -> None:
        self.generation += 1
        if old & _PAGE_PRESENT and old != new:
            for listener in self.listeners:
                listener(va, array("Q", [old]), array("Q", [new]))

    @overload
    def pte_slot(self, va: int, create: Literal[True]) -> int: ...
    @overload
    def pte_slot(self, va: int, create: bool = False) -> int | None: ...

    def pte_slot(self, va: int, create: bool = False) -> int | None:
        """Physical address of the PTE for `va`, allocating tables when `create`."""
        if not is_canonical(va):
            raise EmuError(f"non-canonical address {va:#x}")
        table, words = self.root, self.mem.words
        for level, shift in (("PGD", 39), ("PUD", 30), ("PMD", 21)):
            slot = table + ((va >> shift) & 511) * 8
            entry = words[slot >> 3]
            if not entry & _PAGE_PRESENT:
                if not create:
                    return None
                entry = (self.mem.alloc_frame(FrameKind.PGTABLE) << 12) | _PAGE_TABLE
                self.mem.write_u64(slot, entry)
            elif entry & _PAGE_PSE:
                raise EmuError(f"{va:#x} is inside a {level} large page; 4 KiB operations need a PTE")
            table = entry & PTE_PFN_MASK
        return table + ((va >> 12) & 511) * 8

    def get_ptes(self, va: int, n: int) -> array:
        """The n PTEs from `va` on, all in one PTE table (zeros where no table exists)."""
        slot = self._run_slot(va, n, create=False)
        return array("Q", bytes(8 * n) if slot is None else self.mem.read(slot, 8 * n))

    def set_ptes(self, va: int, values: array) -> None:
        """set_pte() on a run of consecutive pages within one PTE table, in one write."""
        slot = self._run_slot(va, len(values), create=True)
        self.generation += 1
        if self.listeners:
            old = array("Q", self.mem.read(slot, 8 * len(values)))
            if any(old):
                for listener in self.listeners:
                    listener(va, old, values)
        self.mem.write(slot, values.tobytes())

    @overload
    def _run_slot(self, va: int, n: int, create: Literal[True]) -> int: ...
    @overload
    def _run_slot(self, va: int, n: int, create: bool) -> int | None: ...

    def _run_slot(self, va: int, n: int, create: bool) -> int | None:
        if index("PTE", va) + n > PTRS_PER_TABLE:
            raise EmuError(f"{n} PTEs from {va:#x} cross a PTE table")
        return self.pte_slot(va, create)

    def get_pte(self, va: int) -> int:
        slot = self.pte_slot(va)
        return 0 if slot is None else self.mem.read_u64(slot)

    def set_pte(self, va: int, value: int) -> int:
        """Write a raw PTE (no TLB flush: that is the caller's business); returns the old one."""
        slot = self.pte_slot(va, create=True)
        old = self.mem.read_u64(slot)
        self.mem.write_u64(slot, value)
        self._changed(va, old, value)
        return old

    def ptep_try_set(self, va: int, value: int) -> bool:
        """mm: ptep_try_set(): install `value` only over an all-zero PTE (cmpxchg 0 -> pte)."""
        slot = self.pte_slot(va, create=True)
        self.generation += 1
        return self.mem.cmpxchg_u64(slot, 0, value) == 0

    def map(self, va: int, pfn: int, prot: int = PAGE_KERNEL) -> None:
        if va % PAGE_SIZE:
            raise EmuError(f"mapping a page at unaligned address {va:#x}")
        self.set_pte(va, mk_pte(pfn, prot))

    def unmap(self, va: int) -> int:
        """pte_clear(); returns the old PTE (0 when nothing was mapped)."""
        slot = self.pte_slot(va)
        if slot is None:
            return 0
        old = self.mem.read_u64(slot)
        self.mem.write_u64(slot, 0)
        self._changed(va, old, 0)
        return old

    def walk(self, va: int) -> PageWalk:
        return walk(self.mem, self.root, va)

    def translate(self, va: int) -> int | None:
        """translate() over guest RAM, whose size capture_walk() checks without a call per level:
        the fault path's stack walks translate a page or two per fault."""
        return captured_pa(capture_walk(self.mem, self.root, va))

    def translate_mapped(self, va: int) -> int:
        """translate() of an address that must be mapped: a stack, a section just installed."""
        pa = self.translate(va)
        if pa is None:
            raise EmuError(f"{va:#x} is not mapped")
        return pa
