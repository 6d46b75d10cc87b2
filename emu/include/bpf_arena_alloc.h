/* SPDX-License-Identifier: GPL-2.0 */
/* A page-fragment allocator in the arena, with the interface of the selftests' bpf_arena_alloc.h: objects are
 * carved from the top of the current page downwards, and the page's last 8 bytes count its live objects; the
 * page goes back to the arena when that count drops to zero. Include it after the map named `arena`. */
#ifndef BPF_ARENA_ALLOC_H
#define BPF_ARENA_ALLOC_H
#include "bpf_arena_common.h"

#define round_up(x, y) ((((x) - 1) | ((__typeof__(x))((y) - 1))) + 1)

void __arena *cur_page;	/* the page being carved, or NULL before the first allocation */
int cur_offset;		/* where the last object carved from it starts */

static inline void __arena *bpf_alloc(unsigned int size)
{
	void __arena *page = cur_page;
	__u64 __arena *live;
	int start;

	size = round_up(size, 8);
	if (size >= PAGE_SIZE - 8)
		return NULL;
	if (!page) {
new_page:
		page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
		if (!page)
			return NULL;
		cur_page = page;
		cur_offset = PAGE_SIZE - 8;
		live = page + PAGE_SIZE - 8;
		*live = 0;
	} else {
		live = page + PAGE_SIZE - 8;
	}
	start = cur_offset - size;
	if (start < 0)
		goto new_page;
	(*live)++;
	cur_offset = start;
	return page + start;
}

static inline void bpf_free(void __arena *addr)
{
	void __arena *page = (void __arena *)((long)addr & ~(PAGE_SIZE - 1));
	__u64 __arena *live = page + PAGE_SIZE - 8;

	if (--(*live) == 0)
		bpf_arena_free_pages(&arena, page, 1);
}
#endif
