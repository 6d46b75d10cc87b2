// SPDX-License-Identifier: GPL-2.0
/* Two CPUs increment one arena counter without an atomic, through the C kfuncs of
 * kernel_stubs/arena_kfuncs_c.c: `explore` finds the lost update (both return 1, the
 * counter ends at 1), which no schedule that runs one increment after the other shows. */
#include "bpf_arena_common.h"

ARENA_MAP(4, 1ull << 44);

extern __u64 bpf_kfunc_c_arena_read_u64(__u64 *p__arena) __ksym;
extern void bpf_kfunc_c_arena_write_u64(__u64 *p__arena, __u64 val) __ksym;

__u64 __arena *counter;
char _license[] SEC("license") = "GPL";

SEC("syscall")
int setup(void *ctx)
{
	counter = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	return counter ? 0 : -1;
}

SEC("syscall")
int increment(void *ctx)
{
	__u64 seen = bpf_kfunc_c_arena_read_u64((__u64 *)counter);

	bpf_kfunc_c_arena_write_u64((__u64 *)counter, seen + 1);
	return seen + 1;
}
