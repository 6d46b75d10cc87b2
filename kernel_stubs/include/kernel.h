/*
 * What arena-emu's C kernel stubs need of the kernel's headers, so they build with
 * the kernel's flags but without a kernel tree: fixed-width types, the exception
 * table macro of arch/x86/include/asm/asm.h, and the kernel functions they call.
 */
#ifndef ARENA_EMU_KERNEL_H
#define ARENA_EMU_KERNEL_H

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long s64;
typedef unsigned long size_t;

#define NULL ((void *)0)
#define EFAULT 14

/* _ASM_EXTABLE(from, to) for inline assembly: the relative entry and EX_TYPE_DEFAULT (1) */
#define _ASM_EXTABLE(from, to)					\
	" .pushsection __ex_table, \"a\"\n"			\
	" .balign 4\n"						\
	" .long (" #from ") - .\n"				\
	" .long (" #to ") - .\n"				\
	" .long 1\n"						\
	" .popsection\n"

/* kernel_stubs/string.S */
void *memcpy(void *dst, const void *src, size_t len);
/* native: the arena's kern_vm_start, for code that gets user pointers out of the arena */
u64 bpf_arena_map_kern_vm_start(void *map);

#endif
