// SPDX-License-Identifier: GPL-2.0
/* Atomic read-modify-writes on arena pages that exist and on a page that does not (after the
 * kernel's arena_atomics selftest). The x86 JIT has a fault fixup for each, which skips the
 * instruction and clears no register. */
#include "bpf_arena_common.h"

ARENA_MAP(4, 1ull << 40);

__u64 __arena_global counter = 10;
__u64 old_add, old_xchg, old_cmpxchg, failed_cmpxchg;
__u64 old32_add, old32_xchg, old32_cmpxchg;
char _license[] SEC("license") = "GPL";

static __always_inline __u64 rmw(__u64 __arena *p)
{
	__sync_fetch_and_add(p, 1);
	old_add = __sync_fetch_and_add(p, 5);
	old_xchg = __sync_lock_test_and_set(p, 100);
	old_cmpxchg = __sync_val_compare_and_swap(p, 100, 200);
	failed_cmpxchg = __sync_val_compare_and_swap(p, 7, 300);
	return *p;
}

SEC("syscall")
int rmw_global(void *ctx)
{
	return rmw(&counter);
}

SEC("syscall")
int rmw_page(void *ctx)
{
	__u64 __arena *p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!p)
		return -1;
	*p = 3;
	return rmw(p);
}

SEC("syscall")
int rmw_unallocated(void *ctx)
{
	return rmw((__u64 __arena *)((1ull << 40) + 2 * PAGE_SIZE + 16));
}

static __always_inline __u32 rmw32(__u32 __arena *p)
{
	old32_add = __sync_fetch_and_add(p, 5);
	old32_xchg = __sync_lock_test_and_set(p, 0xfffffff0);
	old32_cmpxchg = __sync_val_compare_and_swap(p, 0xfffffff0, 0x80000001);
	return p[0];
}

SEC("syscall")
int rmw32_page(void *ctx)
{
	__u32 __arena *p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!p)
		return -1;
	*p = 0xfffffffe;
	return rmw32(p) == 0x80000001;
}

SEC("syscall")
int rmw32_unallocated(void *ctx)
{
	return rmw32((__u32 __arena *)((1ull << 40) + PAGE_SIZE + 4));
}
