// SPDX-License-Identifier: GPL-2.0
/* Kernel functions touching arena pages no one allocated, called from BPF programs: the
 * scenarios of the scratch-page work (dc11a4dba246, f64c723741c9) and its hazards. Each
 * program runs under every policy (scenarios/, `arena-emu compare`).
 *
 * The kfuncs are kernel code (kernel_stubs/arena_kfuncs.S, loaded first). Their arguments
 * are named *__arena, so the JIT rebases each to kern_vm_start + (u32)ptr before the call.
 * The arena sits at a fixed user address (map_extra), as several selftests place theirs,
 * so a program can name page k of it: ARENA_BASE + k * PAGE_SIZE.
 */
#include "bpf_arena_common.h"

#define ARENA_BASE 0x7f7d26200000ull
#define PAGE(k) ((__u64 __arena *)(ARENA_BASE + (k) * PAGE_SIZE))
/* The arena pointer whose low 32 bits are `off`: the JIT's rebasing keeps only those */
#define AT_OFFSET(off) ((__u64 __arena *)((ARENA_BASE & ~0xffffffffull) + (off)))

ARENA_MAP(1024, ARENA_BASE);

struct node {
	struct node __arena *next;
	__u64 value;
};

extern __u64 bpf_kfunc_arena_read_u64(__u64 *p__arena) __ksym;
extern void bpf_kfunc_arena_write_u64(__u64 *p__arena, __u64 val) __ksym;
extern __u64 bpf_kfunc_arena_read_far(__u64 *p__arena) __ksym;
extern __u64 bpf_kfunc_arena_read_below(__u64 *p__arena) __ksym;
extern void *bpf_kfunc_arena_copy(void *dst__arena, const void *src__arena, __u64 len) __ksym;
extern __u64 bpf_kfunc_arena_list_sum(struct node *head__arena, void *p__map) __ksym;

char _license[] SEC("license") = "GPL";

/* arena_kfunc.c arena_arg_unpopulated: a 2-page object whose second page was never
 * allocated; the kfunc reads it. Returns what the kfunc read. */
SEC("syscall")
__u64 arena_arg_unpopulated(void *ctx)
{
	__u64 __arena *val = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!val)
		return 1;
	*val = 1;
	return bpf_kfunc_arena_read_u64((__u64 *)(val + PAGE_SIZE / sizeof(*val)));
}

/* Hazard 1: a kfunc reads page 1, then the program allocates page 1 there, frees it and
 * allocates it again. Returns bit 0: the first allocation succeeded, bit 1: the second
 * did, bit 2: the new page did not read zero. */
SEC("syscall")
__u64 alloc_over_scratch(void *ctx)
{
	__u64 __arena *page;
	__u64 result = 0;

	bpf_kfunc_arena_read_u64((__u64 *)PAGE(1));
	page = bpf_arena_alloc_pages(&arena, PAGE(1), 1, NUMA_NO_NODE, 0);
	if (page) {
		result |= 1;
		bpf_arena_free_pages(&arena, page, 1);
	}
	page = bpf_arena_alloc_pages(&arena, PAGE(1), 1, NUMA_NO_NODE, 0);
	if (page) {
		result |= 2;
		if (*page)
			result |= 4;
	}
	return result;
}

/* Hazard 2: a kfunc writes 0x41 through page 1; the program frees page 1 (over the scratch
 * PTE); a kfunc then reads through page 2. Returns what it read: 0x41 means the scratch
 * page outlived the free, as the merged code intends. */
SEC("syscall")
__u64 free_over_scratch(void *ctx)
{
	bpf_kfunc_arena_write_u64((__u64 *)PAGE(1), 0x41);
	bpf_arena_free_pages(&arena, PAGE(1), 1);
	return bpf_kfunc_arena_read_u64((__u64 *)PAGE(2));
}

/* Hazard 4: a kfunc writes 0x41 through page 1, another reads through page 2. Returns what
 * it read: 0x41 is the aliasing of one shared page. */
SEC("syscall")
__u64 scratch_aliasing(void *ctx)
{
	bpf_kfunc_arena_write_u64((__u64 *)PAGE(1), 0x41);
	return bpf_kfunc_arena_read_u64((__u64 *)PAGE(2));
}

/* After recovery the program's own accesses to the page are not caught: a kfunc reads
 * page 1, then the program stores 7 there and loads it back (no fault, no report: the
 * store went to the scratch page). Returns the load. */
SEC("syscall")
__u64 not_caught_after_recovery(void *ctx)
{
	volatile __u64 __arena *page = PAGE(1);

	bpf_kfunc_arena_read_u64((__u64 *)PAGE(1));
	*page = 7;
	return *page;
}

/* Hazard 3 on one CPU: a kfunc reads page 1 (this CPU now caches the scratch translation),
 * the program allocates page 1 (scratch replaced, no TLB flush on x86) and stores 7 to it,
 * then a kfunc reads page 2, also scratch. Returns what that read: 7 means the store went
 * to the scratch page through the stale translation and the new page never got it. */
SEC("syscall")
__u64 lost_write(void *ctx)
{
	bpf_kfunc_arena_read_u64((__u64 *)PAGE(1));
	bpf_arena_alloc_pages(&arena, PAGE(1), 1, NUMA_NO_NODE, 0);
	*PAGE(1) = 7;
	return bpf_kfunc_arena_read_u64((__u64 *)PAGE(2));
}

/* Two kfunc reads of one page: one scratch install, one report. Returns their sum. */
SEC("syscall")
__u64 same_page_twice(void *ctx)
{
	return bpf_kfunc_arena_read_u64((__u64 *)PAGE(1)) + bpf_kfunc_arena_read_u64((__u64 *)(PAGE(1) + 1));
}

/* A kfunc reads just below arena offset 0: the lower half-guard. */
SEC("syscall")
__u64 lower_guard(void *ctx)
{
	return bpf_kfunc_arena_read_below((__u64 *)AT_OFFSET(0));
}

/* A kfunc reads 32 KiB - 8 past the last page of the 4 GiB window: the upper half-guard. */
SEC("syscall")
__u64 upper_guard(void *ctx)
{
	return bpf_kfunc_arena_read_far((__u64 *)AT_OFFSET(0xfffff000));
}

/* A kfunc copies three allocated pages (their first words 1s, 2s, 3s) to pages 4-6, never
 * allocated, with `rep movsb`. Returns the first word of page 4 as the program then reads it. */
SEC("syscall")
__u64 copy_to_unallocated(void *ctx)
{
	__u64 __arena *src = bpf_arena_alloc_pages(&arena, NULL, 3, NUMA_NO_NODE, 0);
	__u64 __arena *dst;

	if (!src)
		return 1;
	dst = src + 4 * PAGE_SIZE / sizeof(*src);
	src[0] = 0x0101010101010101ull;
	src[PAGE_SIZE / sizeof(*src)] = 0x0202020202020202ull;
	src[2 * PAGE_SIZE / sizeof(*src)] = 0x0303030303030303ull;
	bpf_kfunc_arena_copy((void *)dst, (void *)src, 3 * PAGE_SIZE);
	return *dst;
}

/* A kfunc walks a 3-node list the program built in an allocated page. Returns the sum. */
SEC("syscall")
__u64 kfunc_list_sum(void *ctx)
{
	struct node __arena *n = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!n)
		return 0;
	n[0].next = &n[1];
	n[0].value = 1;
	n[1].next = &n[2];
	n[1].value = 2;
	n[2].next = NULL;
	n[2].value = 3;
	return bpf_kfunc_arena_list_sum((struct node *)n, &arena);
}
