// SPDX-License-Identifier: GPL-2.0
/* An arena pointer handed to a kernel function that reads it (after the kernel's arena_kfunc
 * selftest): the JIT rebases the argument to kern_vm_start + (u32)ptr, and a fault in the
 * kernel function is the fault path's to recover or not. */
#include "bpf_arena_common.h"

ARENA_MAP(4, 1ull << 40);

struct node {
	struct node __arena *next;
	__u64 value;
};

extern __u64 bpf_kfunc_arena_read_u64(__u64 *p__arena) __ksym;
extern void *bpf_kfunc_arena_copy(void *dst__arena, const void *src__arena, __u64 len) __ksym;
extern __u64 bpf_kfunc_arena_list_sum(struct node *head__arena, void *p__map) __ksym;
char _license[] SEC("license") = "GPL";

SEC("syscall")
int kfunc_read_allocated(void *ctx)
{
	__u64 __arena *p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!p)
		return -1;
	p[3] = 0x1234;
	return bpf_kfunc_arena_read_u64((__u64 *)&p[3]);
}

SEC("syscall")
int kfunc_read_unallocated(void *ctx)
{
	__u64 __arena *p = (__u64 __arena *)((1ull << 40) + 3 * PAGE_SIZE + 0x18);

	return bpf_kfunc_arena_read_u64((__u64 *)p);
}

SEC("syscall")
int kfunc_copy_and_sum(void *ctx)
{
	struct node __arena *nodes = bpf_arena_alloc_pages(&arena, NULL, 2, NUMA_NO_NODE, 0);
	struct node __arena *copy = nodes + PAGE_SIZE / sizeof(*nodes);
	int i;

	if (!nodes)
		return -1;
	for (i = 0; i < 4; i++) {
		nodes[i].value = 10 * (i + 1);
		nodes[i].next = i < 3 ? &copy[i + 1] : NULL;
	}
	bpf_kfunc_arena_copy((void *)copy, (void *)nodes, 4 * sizeof(*nodes));
	return bpf_kfunc_arena_list_sum((struct node *)copy, &arena);
}
