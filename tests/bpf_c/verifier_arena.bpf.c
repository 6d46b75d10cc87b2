// SPDX-License-Identifier: GPL-2.0
/* Arena page allocation, reservation and freeing from several program types
 * (after the kernel's verifier_arena selftest). */
#include "bpf_arena_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2);
#ifdef __BPF_FEATURE_ADDR_SPACE_CAST
	__ulong(map_extra, 0x1ull << 32);
#endif
} arena SEC(".maps");

static volatile int zero;

int __noinline subprog_arena(int __arena *page __arg_arena)
{
	return *page + 1;
}

SEC("syscall")
int basic_alloc1(void *ctx)
{
	volatile int __arena *page1, *page2, *no_page;

	page1 = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!page1)
		return 1;
	*page1 = 1;
	page2 = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!page2)
		return 2;
	*page2 = 2;
	no_page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (no_page)
		return 3;
	if (*page1 != 1)
		return 4;
	bpf_arena_free_pages(&arena, (void __arena *)page2, 1);
	return 0;
}

SEC("syscall")
int reserve_then_alloc(void *ctx)
{
	char __arena *base = (char __arena *)(0x1ull << 32);
	int ret;

	ret = bpf_arena_reserve_pages(&arena, base, 1);
	if (ret)
		return 1;
	if (bpf_arena_alloc_pages(&arena, base, 1, NUMA_NO_NODE, 0))
		return 2;
	return subprog_arena((int __arena *)(base + PAGE_SIZE + zero));
}

static int touch_page(__u32 i, void *ctx)
{
	char __arena *page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!page)
		return 1;
	*page = i;
	return 0;
}

SEC("syscall")
int alloc_in_a_loop(void *ctx)
{
	return bpf_loop(2, touch_page, NULL, 0);
}

SEC("?tc")
int not_autoloaded(void *ctx)
{
	return 0;
}

char _license[] SEC("license") = "GPL";
