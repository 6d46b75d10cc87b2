// SPDX-License-Identifier: GPL-2.0
/* BPF programs calling the C kfuncs of kernel_stubs/arena_kfuncs_c.c, as arena_kfunc.bpf.c calls
 * the assembly ones: load the kernel object first
 * (`arena-emu run kernel_stubs/arena_kfuncs_c.c bpf_progs/arena_kfunc_c.bpf.o --prog ...`). */
#include "bpf_arena_common.h"

ARENA_MAP(16, 0x7f7d26200000ull);

struct node {
	struct node __arena *next;
	__u64 value;
};

extern __u64 bpf_kfunc_c_arena_read_u64(__u64 *p__arena) __ksym;
extern void *bpf_kfunc_c_arena_copy(void *dst__arena, const void *src__arena, __u64 len) __ksym;
extern __u64 bpf_kfunc_c_arena_list_sum(struct node *head__arena, void *p__map) __ksym;

char _license[] SEC("license") = "GPL";

/* Page 0 allocated and 7 stored there; the C kfunc reads page 0 (7) and page 1 (never allocated:
 * recovered under the scratch policies, an oops before them). Returns page 0's value plus what
 * page 1 read. */
SEC("syscall")
__u64 c_kfunc_read_unallocated(void *ctx)
{
	__u64 __arena *page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	__u64 first;

	if (!page)
		return 1;
	*page = 7;
	first = bpf_kfunc_c_arena_read_u64((__u64 *)page);
	return first + bpf_kfunc_c_arena_read_u64((__u64 *)(page + PAGE_SIZE / sizeof(*page)));
}

/* A list of three nodes (values 1, 2, 3) built by the program on page 0, summed by the C kfunc,
 * which follows each node's user pointer with bpf_arena_map_kern_vm_start(). */
SEC("syscall")
__u64 c_kfunc_list_sum(void *ctx)
{
	struct node __arena *n = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!n)
		return 1;
	n[0].next = &n[1];
	n[0].value = 1;
	n[1].next = &n[2];
	n[1].value = 2;
	n[2].next = NULL;
	n[2].value = 3;
	return bpf_kfunc_c_arena_list_sum((struct node *)n, &arena);
}

/* The C kfunc copies 16 bytes from page 0 (0x41 each) to page 2, never allocated: a write fault in
 * memcpy (kernel_stubs/string.S) called from C. Returns what page 0 holds after. */
SEC("syscall")
__u64 c_kfunc_copy_to_unallocated(void *ctx)
{
	volatile __u64 __arena *page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!page)
		return 1;
	page[0] = 0x4141414141414141ull;
	page[1] = 0x4141414141414141ull;
	bpf_kfunc_c_arena_copy((void *)(page + 2 * PAGE_SIZE / sizeof(*page)), (void *)page, 16);
	return page[0];
}
