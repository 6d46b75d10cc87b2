// SPDX-License-Identifier: GPL-2.0
/* The README's tour: a loop that writes one page too many, and a kfunc that reads it. */
#include "bpf_arena_common.h"

ARENA_MAP(4, 0);

extern __u64 bpf_kfunc_arena_read_u64(__u64 *p__arena) __ksym;

__u64 last;

SEC("syscall")
int off_by_one(void *ctx)
{
	__u64 __arena *page = bpf_arena_alloc_pages(&arena, NULL, 2, NUMA_NO_NODE, 0);
	int i;

	if (!page)
		return 1;
	for (i = 0; i <= 2 && can_loop; i++)	/* one page too many */
		page[i * PAGE_SIZE / 8] = i + 1;
	last = bpf_kfunc_arena_read_u64((__u64 *)&page[2 * PAGE_SIZE / 8]);
	return 0;
}

char _license[] SEC("license") = "GPL";
