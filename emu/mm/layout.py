"""Guest virtual address layout, after the x86-64 kernel's (Documentation/arch/x86/x86_64/mm.rst).

Addresses are the kernel's so that reports read like a real machine's: text at
__START_KERNEL_map + 16 MiB, kernel stacks and arenas in the vmalloc area.
"""

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = ~(PAGE_SIZE - 1) & 0xFFFF_FFFF_FFFF_FFFF

# 4-level paging: everything at or above this is kernel space.
TASK_SIZE_MAX = 0x0000_7FFF_FFFF_F000

VMALLOC_START = 0xFFFF_C900_0000_0000
KERNEL_TEXT_START = 0xFFFF_FFFF_8100_0000  # __START_KERNEL

# Kernel stacks (CONFIG_VMAP_STACK): THREAD_SIZE bytes per CPU, with an unmapped
# guard page below each, so an overflow faults as it does in the kernel.
THREAD_SIZE = 4 * PAGE_SIZE
STACKS_START = VMALLOC_START + 0x10_0000
STACK_STRIDE = THREAD_SIZE + 4 * PAGE_SIZE

# The machine's own code page, just below kernel text. A call returns to
# CALL_RETURN_ADDR, never executed: the CPU stops when RIP reaches it. It is not
# at the start of the page because Unicorn, stopping at a page's first byte,
# fetches from the page before it.
MACHINE_PAGE = KERNEL_TEXT_START - PAGE_SIZE
CALL_RETURN_ADDR = MACHINE_PAGE + 0x100

# Native kfuncs (Python bodies) have their entry points in the page below.
KFUNC_PAGE = MACHINE_PAGE - PAGE_SIZE

MASK64 = 0xFFFF_FFFF_FFFF_FFFF


def stack_top(cpu_index: int) -> int:
    return STACKS_START + cpu_index * STACK_STRIDE + THREAD_SIZE


def is_canonical(addr: int) -> bool:
    top = addr >> 47
    return top == 0 or top == 0x1_FFFF


def fault_in_kernel_space(addr: int) -> bool:
    """arch/x86/mm/fault.c fault_in_kernel_space(): kernel half of the address space."""
    return addr >= TASK_SIZE_MAX
