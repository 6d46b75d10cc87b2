// SPDX-License-Identifier: GPL-2.0
/* A syscall program takes its arguments in ctx, as BPF_PROG_TEST_RUN's ctx_in hands them over. */
#include "bpf_arena_common.h"

ARENA_MAP(8, 0);

struct args {
	__u32 pages;
	__s32 fill;
	__u64 ret_addr;
};

char _license[] SEC("license") = "GPL";

SEC("syscall")
int alloc_n(struct args *args)
{
	int __arena *p = bpf_arena_alloc_pages(&arena, NULL, args->pages, NUMA_NO_NODE, 0);
	__u32 i;

	if (!p)
		return -12;
	for (i = 0; i < args->pages && i < 8; i++)
		p[i * PAGE_SIZE / sizeof(int)] = args->fill + i;
	args->ret_addr = (__u64)p;
	return 0;
}
