// SPDX-License-Identifier: GPL-2.0
/* A BPF program hands an arena pointer to a kernel function, after arena_kfunc.c (arena_arg_forms,
 * arena_arg_unpopulated). The JIT rebases an *__arena argument to kern_vm_start + (u32)arg before
 * the call; the kfunc (kernel_stubs/arena_kfuncs.S, loaded first) then reads it as plain kernel
 * memory, with no exception table. A 2-page arena; only the first page is allocated. */
#include "bpf_arena_common.h"

#define ARENA_BASE 0x7f7d26200000ull

ARENA_MAP(2, ARENA_BASE);

extern __u64 bpf_kfunc_arena_read_u64(__u64 *p__arena) __ksym;

char _license[] SEC("license") = "GPL";

SEC("syscall")
__u64 kfunc_read_allocated(void *ctx)
{
	__u64 __arena *page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!page)
		return 1;
	*page = 0x1234;
	return bpf_kfunc_arena_read_u64((__u64 *)page);
}

/* The kfunc faults: page 1 was never allocated. */
SEC("syscall")
__u64 kfunc_read_unallocated(void *ctx)
{
	return bpf_kfunc_arena_read_u64((__u64 *)(__u64 __arena *)(ARENA_BASE + PAGE_SIZE));
}
