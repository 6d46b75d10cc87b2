// SPDX-License-Identifier: GPL-2.0
/* Atomic operations on arena globals (after the kernel's arena_atomics selftest). */
#include "bpf_arena_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
} arena SEC(".maps");

__u64 __arena_global add64_value = 1;
__u32 __arena_global add32_value = 1;
__u64 __arena_global xchg64_value = 1;
__u64 __arena_global and64_value = 0x110ull << 32;
__u64 add64_result;
__u64 xchg64_result;
bool skip_tests;
char _license[] SEC("license") = "GPL";

SEC("syscall")
int add(const void *ctx)
{
	add64_result = __sync_fetch_and_add(&add64_value, 2);
	__sync_fetch_and_add(&add32_value, 2);
	return 0;
}

SEC("syscall")
int and(const void *ctx)
{
	__sync_fetch_and_and(&and64_value, 0x011ull << 32);
	return 0;
}

SEC("syscall")
int xchg(const void *ctx)
{
	xchg64_result = __sync_lock_test_and_set(&xchg64_value, 2);
	return 0;
}
