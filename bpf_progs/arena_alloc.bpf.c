// SPDX-License-Identifier: GPL-2.0
/* Allocation and use after free, after verifier_arena.c's basic_alloc1/2
 * (tools/testing/selftests/bpf/progs): the arena is placed at the top of a 4 GiB window, 2 pages,
 * so its pages sit at low32 0xffffe000 and 0xfffff000. */
#include "bpf_arena_common.h"

ARENA_MAP(2, 0x100000000ull - 2 * PAGE_SIZE);

char _license[] SEC("license") = "GPL";

/* Returns what the page held before the free (high half) and after it (low half: the use
 * after free faults, and the load reads 0). */
SEC("syscall")
__u64 alloc_write_free_read(void *ctx)
{
	volatile __u64 __arena *page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	__u64 before, after;

	if (!page)
		return 1;
	*page = 42;
	before = *page;
	bpf_arena_free_pages(&arena, (void __arena *)page, 1);
	after = *page;
	return before << 32 | after;
}

/* basic_alloc2 with the top-of-window arena: both pages, 4 KiB apart, and the u32 just outside
 * each end (page[-1], below the first page; page[2048], past 4 GiB: the upper guard). The
 * accesses outside are fixed up: stores dropped, loads read 0. Returns 0x02010000. */
SEC("syscall")
__u64 two_pages_and_outside(void *ctx)
{
	volatile __u32 __arena *page = bpf_arena_alloc_pages(&arena, NULL, 2, NUMA_NO_NODE, 0);

	if (!page)
		return 1;
	page[0] = 1;
	page[1024] = 2;
	page[-1] = 3;
	page[2048] = 4;
	return page[-1] | page[2048] << 8 | page[0] << 16 | page[1024] << 24;
}
