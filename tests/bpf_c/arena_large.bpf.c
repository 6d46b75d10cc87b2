// SPDX-License-Identifier: GPL-2.0
/* A 4 GiB arena (after the kernel's verifier_arena_large selftest): the first and the next-to-last page, the
 * last page refused (it holds the __arena globals), a use after free reading 0, pages on both sides of an
 * allocation never allocated, reserved pages, the allocator filling freed gaps, and 2051 pages at once walked
 * with bpf_for(). */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include "bpf_misc.h"
#include "bpf_experimental.h"
#include "bpf_arena_common.h"

#define ARENA_SIZE (1ull << 32)

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, ARENA_SIZE / PAGE_SIZE);
} arena SEC(".maps");

SEC("syscall")
__success __retval(0)
int first_and_last(void *ctx)
{
	volatile char __arena *first, *high, *top, *again;
	void __arena *base;

	first = base = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!first)
		return 1;
	*first = 1;
	high = bpf_arena_alloc_pages(&arena, base + ARENA_SIZE - 2 * PAGE_SIZE, 1, NUMA_NO_NODE, 0);
	if (!high)
		return 2;
	*high = 2;
	top = bpf_arena_alloc_pages(&arena, base + ARENA_SIZE - PAGE_SIZE, 1, NUMA_NO_NODE, 0);
	if (top)
		return 3;
	if (*first != 1 || *high != 2)
		return 4;
	bpf_arena_free_pages(&arena, (void __arena *)first, 1);
	if (*high != 2)
		return 5;
	if (*first != 0)	/* freed: the load faults and reads 0 */
		return 6;
	again = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!again)
		return 7;
	*again = 3;
	if (again != first)
		return 8;
	if (*(first + PAGE_SIZE) != 0 || *(first - PAGE_SIZE) != 0)
		return 9;
	if (*(high + PAGE_SIZE) != 0 || *(high - PAGE_SIZE) != 0)
		return 10;
	return 0;
}

SEC("syscall")
int reserved(void *ctx)
{
	volatile char __arena *page;
	char __arena *base = arena_base(&arena) + 16384 * PAGE_SIZE;
	int i;

	if (bpf_arena_reserve_pages(&arena, base, 4))
		return 1;
	for (i = 0; i < 4 && can_loop; i++) {
		page = base + i * PAGE_SIZE;
		*page = 0x5a;	/* dropped: a reserved page is not allocated */
	}
	for (i = 0; i < 4 && can_loop; i++) {
		page = base + i * PAGE_SIZE;
		if (*page)
			return 2 + i;
	}
	/* overlapping a reservation: refused */
	if (bpf_arena_alloc_pages(&arena, base - 3 * PAGE_SIZE, 5, NUMA_NO_NODE, 0))
		return 10;
	/* freeing covers reserved pages too, after which they can be allocated */
	bpf_arena_free_pages(&arena, base + 2 * PAGE_SIZE, 2);
	if (!bpf_arena_alloc_pages(&arena, base + 2 * PAGE_SIZE, 2, NUMA_NO_NODE, 0))
		return 11;
	return 0;
}

#define PAGE_CNT 100
__u8 __arena * __arena page[PAGE_CNT];
__u8 __arena *base;

__noinline int alloc_pages(int page_cnt, int pages_atonce, bool first_pass, int max_idx, int step)
{
	__u8 __arena *pg;
	int i, pg_idx;

	for (i = 0; i < page_cnt; i++) {
		pg = bpf_arena_alloc_pages(&arena, NULL, pages_atonce, NUMA_NO_NODE, 0);
		if (!pg)
			return step;
		pg_idx = (unsigned long)(pg - base) / PAGE_SIZE;
		if (first_pass) {
			if (pg_idx != i)
				return step + 100;
		} else if (pg_idx >= max_idx || (pg_idx & 1)) {
			return step + 200;
		}
		*pg = pg_idx;
		page[pg_idx] = pg;
		cond_break;
	}
	return 0;
}

SEC("syscall")
int fill_gaps(void *ctx)
{
	__u8 __arena *pg;
	int i, err;

	base = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!base)
		return 1;
	bpf_arena_free_pages(&arena, (void __arena *)base, 1);
	err = alloc_pages(PAGE_CNT, 1, true, PAGE_CNT, 2);
	if (err)
		return err;
	for (i = 0; i < PAGE_CNT; i += 2) {
		pg = page[i];
		if (*pg != i)
			return 3;
		bpf_arena_free_pages(&arena, (void __arena *)pg, 1);
		page[i] = NULL;
		cond_break;
	}
	err = alloc_pages(PAGE_CNT / 2, 1, false, PAGE_CNT, 4);
	if (err)
		return err;
	for (i = 0; i < PAGE_CNT; i += 4) {
		pg = page[i];
		if (*pg != i)
			return 5;
		bpf_arena_free_pages(&arena, (void __arena *)pg, 2);
		page[i] = NULL;
		barrier();
		page[i + 1] = NULL;
		cond_break;
	}
	err = alloc_pages(PAGE_CNT / 4, 2, false, PAGE_CNT, 6);
	if (err)
		return err;
	for (i = 0; i < PAGE_CNT; i += 2) {
		pg = page[i];
		if (*pg != i)
			return 7;
		cond_break;
	}
	pg = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!pg)
		return 8;
	if ((pg - base) / PAGE_SIZE < PAGE_CNT)
		return 9;
	return 0;
}

SEC("socket")
int many_at_once(void *ctx)
{
	char __arena *pages;
	u64 i;

	pages = bpf_arena_alloc_pages(&arena, NULL, 2051, NUMA_NO_NODE, 0);
	if (!pages)
		return -1;
	bpf_for(i, 0, 2051)
		pages[i * PAGE_SIZE] = 123;
	bpf_for(i, 0, 2051)
		if (pages[i * PAGE_SIZE] != 123)
			return i;
	bpf_arena_free_pages(&arena, pages, 1025);
	return 0;
}

char _license[] SEC("license") = "GPL";
