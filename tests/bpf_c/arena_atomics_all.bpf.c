// SPDX-License-Identifier: GPL-2.0
/* Every atomic the x86 JIT takes on the arena, on __arena globals with initial values (after the kernel's
 * arena_atomics selftest): fetch_add/sub, xchg, cmpxchg that fails and that succeeds, the non-fetching
 * and/or/xor that a discarded C11 result selects, load-acquire and store-release, and the same atomics
 * on a freed page, each of which must be recovered. */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <stdatomic.h>
#include "bpf_arena_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 10);
	__ulong(map_extra, 1ull << 44);
} arena SEC(".maps");

__u32 pid;

__u64 __arena_global add64_value = 1;
__u64 __arena_global add64_result;
__u32 __arena_global add32_value = 1;
__u32 __arena_global add32_result;
__u64 __arena_global add_stack_value_copy;
__u64 __arena_global add_stack_result;
__u64 __arena_global add_noreturn_value = 1;

SEC("raw_tp/sys_enter")
int add(const void *ctx)
{
	__u64 add_stack_value = 1;

	if (pid != (bpf_get_current_pid_tgid() >> 32))
		return 0;
	add64_result = __sync_fetch_and_add(&add64_value, 2);
	add32_result = __sync_fetch_and_add(&add32_value, 2);
	add_stack_result = __sync_fetch_and_add(&add_stack_value, 2);
	add_stack_value_copy = add_stack_value;
	__sync_fetch_and_add(&add_noreturn_value, 2);
	return 1;
}

__s64 __arena_global sub64_value = 1;
__s64 __arena_global sub64_result;
__s32 __arena_global sub32_value = 1;
__s32 __arena_global sub32_result;

SEC("raw_tp/sys_enter")
int sub(const void *ctx)
{
	sub64_result = __sync_fetch_and_sub(&sub64_value, 2);
	sub32_result = __sync_fetch_and_sub(&sub32_value, 2);
	return 0;
}

_Atomic __u64 __arena_global and64_value = 0x110ull << 32;
_Atomic __u64 __arena_global or64_value = 0x110ull << 32;
_Atomic __u64 __arena_global xor64_value = 0x110ull << 32;
_Atomic __u32 __arena_global and32_value = 0x110;

SEC("raw_tp/sys_enter")
int bitwise(const void *ctx)
{
	/* the result discarded: BPF_AND/OR/XOR without BPF_FETCH, which x86 JITs on the arena */
	__c11_atomic_fetch_and(&and64_value, 0x011ull << 32, memory_order_relaxed);
	__c11_atomic_fetch_or(&or64_value, 0x011ull << 32, memory_order_relaxed);
	__c11_atomic_fetch_xor(&xor64_value, 0x011ull << 32, memory_order_relaxed);
	__c11_atomic_fetch_and(&and32_value, 0x011, memory_order_relaxed);
	return 0;
}

__u32 __arena_global cmpxchg32_value = 1;
__u32 __arena_global cmpxchg32_result_fail;
__u32 __arena_global cmpxchg32_result_succeed;
__u64 __arena_global cmpxchg64_value = 1;
__u64 __arena_global cmpxchg64_result_fail;
__u64 __arena_global cmpxchg64_result_succeed;
__u64 __arena_global xchg64_value = 1;
__u64 __arena_global xchg64_result;
__u32 __arena_global xchg32_value = 1;
__u32 __arena_global xchg32_result;

SEC("raw_tp/sys_enter")
int exchange(const void *ctx)
{
	cmpxchg64_result_fail = __sync_val_compare_and_swap(&cmpxchg64_value, 0, 3);
	cmpxchg64_result_succeed = __sync_val_compare_and_swap(&cmpxchg64_value, 1, 2);
	cmpxchg32_result_fail = __sync_val_compare_and_swap(&cmpxchg32_value, 0, 3);
	cmpxchg32_result_succeed = __sync_val_compare_and_swap(&cmpxchg32_value, 1, 2);
	xchg64_result = __sync_lock_test_and_set(&xchg64_value, 2);
	xchg32_result = __sync_lock_test_and_set(&xchg32_value, 2);
	return 0;
}

#if __BPF_CPU_VERSION__ >= 4	/* clang emits load-acquire and store-release from cpu v4 on */
__u8 __arena_global acq8 = 0x12;
__u16 __arena_global acq16 = 0x1234;
__u32 __arena_global acq32 = 0x12345678;
__u64 __arena_global acq64 = 0x1234567890abcdef;
__u64 __arena_global acq_sum;
__u64 __arena_global rel64;
__u32 __arena_global rel32;

SEC("syscall")
int acquire_release(void *ctx)
{
	acq_sum = __atomic_load_n(&acq8, __ATOMIC_ACQUIRE) + __atomic_load_n(&acq16, __ATOMIC_ACQUIRE) +
		  __atomic_load_n(&acq32, __ATOMIC_ACQUIRE) + __atomic_load_n(&acq64, __ATOMIC_ACQUIRE);
	__atomic_store_n(&rel64, 0x1122334455667788ull, __ATOMIC_RELEASE);
	__atomic_store_n(&rel32, 0x99aabbcc, __ATOMIC_RELEASE);
	return 0;
}
#endif

__u64 __arena_global uaf_sink;
volatile __u64 __arena_global uaf_recovery_fails;

SEC("syscall")
int uaf(const void *ctx)
{
	__u32 __arena *page32;
	__u64 __arena *page64;
	void __arena *page;

	page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	bpf_arena_free_pages(&arena, page, 1);
	uaf_recovery_fails = 12;

	page32 = (__u32 __arena *)page;
	uaf_sink += __sync_fetch_and_add(page32, 1);
	uaf_recovery_fails -= 1;
	__sync_add_and_fetch(page32, 1);
	uaf_recovery_fails -= 1;
	uaf_sink += __sync_fetch_and_sub(page32, 1);
	uaf_recovery_fails -= 1;
	uaf_sink += __sync_val_compare_and_swap(page32, 0, 1);
	uaf_recovery_fails -= 1;
	uaf_sink += __sync_lock_test_and_set(page32, 1);
	uaf_recovery_fails -= 1;
	__c11_atomic_fetch_or((_Atomic __u32 __arena *)page32, 1, memory_order_relaxed);
	uaf_recovery_fails -= 1;

	page64 = (__u64 __arena *)page;
	uaf_sink += __sync_fetch_and_add(page64, 1);
	uaf_recovery_fails -= 1;
	__sync_add_and_fetch(page64, 1);
	uaf_recovery_fails -= 1;
	uaf_sink += __sync_fetch_and_sub(page64, 1);
	uaf_recovery_fails -= 1;
	uaf_sink += __sync_val_compare_and_swap(page64, 0, 1);
	uaf_recovery_fails -= 1;
	uaf_sink += __sync_lock_test_and_set(page64, 1);
	uaf_recovery_fails -= 1;
	__c11_atomic_fetch_xor((_Atomic __u64 __arena *)page64, 1, memory_order_relaxed);
	uaf_recovery_fails -= 1;
	return 0;
}

char _license[] SEC("license") = "GPL";
