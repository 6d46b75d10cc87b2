// SPDX-License-Identifier: GPL-2.0
/* About a thousand BPF instructions for `python -m bench`: an unrolled walk over arena memory with
 * loads, stores, atomics and branches, to time load + verify + JIT of an object. */
#include "bpf_arena_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 16);
} arena SEC(".maps");

__u64 total;

#define STEP(i)								\
	do {								\
		__u64 v = p[(i) % 64];					\
		if (v > (i))						\
			v -= (i);					\
		p[((i) + 1) % 64] = v ^ (i);				\
		__sync_fetch_and_add(&p[((i) + 7) % 64], v);		\
		sum += v * 3;						\
	} while (0)
#define STEP10(i) STEP(i); STEP(i + 1); STEP(i + 2); STEP(i + 3); STEP(i + 4); \
	STEP(i + 5); STEP(i + 6); STEP(i + 7); STEP(i + 8); STEP(i + 9)

SEC("syscall")
int walk(void *ctx)
{
	__u64 __arena *p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	__u64 sum = 0;

	if (!p)
		return -1;
	STEP10(0); STEP10(10); STEP10(20); STEP10(30); STEP10(40);
	STEP10(50); STEP10(60); STEP10(70); STEP10(80); STEP10(90);
	total = sum;
	return 0;
}

char _license[] SEC("license") = "GPL";
