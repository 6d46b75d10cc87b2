/*
 * The kfuncs of arena_kfuncs.S written in C, as a kernel developer writes them:
 * built with the kernel's flags (`arena-emu build --kernel`), they take __arena
 * pointers that the verifier rebased to kernel addresses, and have no exception
 * table entries of their own, so an unallocated page is a kernel fault and the
 * fault path's policy decides what happens.
 */
#include "kernel.h"

struct node {
	u64 next;	/* a user pointer into the arena; 0 ends the list */
	u64 value;
};

static const char ksym_owner[] = "arena_kfuncs_c";	/* .rodata */
u64 c_kfunc_calls = 0;					/* .bss */
u32 c_kfunc_last_len = 0xffffffff;			/* .data */

u64 bpf_kfunc_c_arena_read_u64(u64 *p__arena)
{
	c_kfunc_calls++;
	return *p__arena;
}

void bpf_kfunc_c_arena_write_u64(u64 *p__arena, u64 val)
{
	c_kfunc_calls++;
	*p__arena = val;
}

/* memcpy() is kernel_stubs/string.S: C calling assembly */
void *bpf_kfunc_c_arena_copy(void *dst__arena, const void *src__arena, u64 len)
{
	c_kfunc_calls++;
	c_kfunc_last_len = (u32)len;
	return memcpy(dst__arena, src__arena, len);
}

u64 bpf_kfunc_c_arena_list_sum(struct node *head__arena, void *p__map)
{
	u64 base = bpf_arena_map_kern_vm_start(p__map), sum = 0;
	struct node *n = head__arena;

	c_kfunc_calls++;
	while (n) {
		sum += n->value;
		n = n->next ? (struct node *)(base + (u32)n->next) : NULL;
	}
	return sum;
}

/* copy_from_kernel_nofault() for one u64, guarded by the exception table: -EFAULT, no oops */
s64 c_read_u64_nofault(u64 *dst, const u64 *src)
{
	u64 val;
	int err = 0;

	asm volatile("1:	movq (%[src]), %[val]\n"
		     "2:\n"
		     " .pushsection .fixup, \"ax\"\n"
		     "3:	movl %[efault], %[err]\n"
		     "	jmp 2b\n"
		     " .popsection\n"
		     _ASM_EXTABLE(1b, 3b)
		     : [val] "=r" (val), [err] "+r" (err)
		     : [src] "r" (src), [efault] "i" (-EFAULT));
	if (!err)
		*dst = val;
	return err;
}

/* the first byte of the owner's name, from .rodata */
u64 c_kfunc_owner_initial(void)
{
	return (u8)ksym_owner[0];
}
