// SPDX-License-Identifier: GPL-2.0
/* Atomics on a page no one allocated (arena_atomics.c, BPF_PROBE_ATOMIC). The JIT encodes every
 * atomic with DONT_CLEAR: the fault is reported as a WRITE and no register is zeroed, not even
 * the fetch destination. */
#include "bpf_arena_common.h"

#define ARENA_BASE 0x7f7d26200000ull

ARENA_MAP(16, ARENA_BASE);

char _license[] SEC("license") = "GPL";

/* An add whose old value is not used: BPF_ATOMIC BPF_ADD, `lock add`. Returns 7. */
SEC("syscall")
__u64 atomic_add_unallocated(void *ctx)
{
	__sync_fetch_and_add((__u64 __arena *)(ARENA_BASE + 0x5000), 7);
	return 7;
}

/* A fetching add: BPF_ADD | BPF_FETCH, `lock xadd`. Returns 7: not fetched, not cleared. */
SEC("syscall")
__u64 atomic_xadd_unallocated(void *ctx)
{
	return __sync_fetch_and_add((__u64 __arena *)(ARENA_BASE + 0x5008), 7);
}
