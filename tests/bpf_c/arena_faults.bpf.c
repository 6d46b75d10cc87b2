// SPDX-License-Identifier: GPL-2.0
/* Accesses the kernel's JIT recovers through the exception table: a freed page, pages never
 * allocated, the lower guard; and pages that exist, read with sign-extending loads and through
 * subprograms taking arena pointers (after the kernel's verifier_arena and stream selftests). */
#include "bpf_arena_common.h"

#define NR_PAGES 64

ARENA_MAP(100, 1ull << 44);

__u64 freed_at;
__s64 signed_sum;
char _license[] SEC("license") = "GPL";

SEC("syscall")
int read_after_free(void *ctx)
{
	volatile __u64 __arena *page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!page)
		return -1;
	*page = 42;
	bpf_arena_free_pages(&arena, (void __arena *)page, 1);
	freed_at = (__u64)page;
	return *page;
}

SEC("syscall")
int read_never_allocated(void *ctx)
{
	volatile __u32 __arena *p = (__u32 __arena *)((1ull << 44) + 5 * PAGE_SIZE + 12);

	return *p + 7;
}

SEC("syscall")
int write_never_allocated(void *ctx)
{
	volatile __u64 __arena *p = (__u64 __arena *)((1ull << 44) + 6 * PAGE_SIZE);

	*p = 1;
	return *p;
}

SEC("syscall")
int read_below_start(void *ctx)
{
	volatile __u64 __arena *p = (__u64 __arena *)((1ull << 44) - 8);

	return *p + 3;
}

SEC("syscall")
int read_lower_guard(void *ctx)
{
	volatile __u64 __arena *first = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!first)
		return -1;
	return first[-1] + 3;
}

SEC("syscall")
int many_pages_signed(void *ctx)
{
	char __arena *base = bpf_arena_alloc_pages(&arena, NULL, NR_PAGES, NUMA_NO_NODE, 0);
	__s64 sum = 0;
	int i;

	if (!base)
		return -1;
	for (i = 0; i < NR_PAGES; i++) {
		char __arena *page = base + i * PAGE_SIZE;

		*(volatile __s8 __arena *)page = -i - 1;
		*(volatile __s16 __arena *)(page + 2) = -300 * i - 1;
		*(volatile __s32 __arena *)(page + 4) = -30000000 * i - 1;
	}
	for (i = 0; i < NR_PAGES; i++) {
		char __arena *page = base + i * PAGE_SIZE;

		sum += *(volatile __s8 __arena *)page;
		sum += *(volatile __s16 __arena *)(page + 2);
		sum += *(volatile __s32 __arena *)(page + 4);
	}
	signed_sum = sum;
	return *(volatile __s8 __arena *)(base + (NR_PAGES - 1) * PAGE_SIZE);
}

static __noinline int sum_static(int __arena *v, int n)
{
	int s = 0, i;

	for (i = 0; i < n && i < 16; i++)
		s += v[i];
	return s;
}

__noinline int sum_global(int __arena *v __arg_arena, int n)
{
	int s = 0, i;

	for (i = 0; i < n && i < 16; i++)
		s += v[i];
	return s;
}

SEC("syscall")
int subprog_args(void *ctx)
{
	int __arena *v = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	int i;

	if (!v)
		return -1;
	for (i = 0; i < 16; i++)
		v[i] = i + 1;
	return sum_static(v, 16) * 1000 + sum_global(v + 8, 8);
}
