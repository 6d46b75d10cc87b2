// SPDX-License-Identifier: GPL-2.0
/* An arena pointer handed to a kernel function that reads it (after the kernel's arena_kfunc
 * selftest): the JIT rebases the argument to kern_vm_start + (u32)ptr, and a fault in the
 * kernel function is the fault path's to recover or not. */
#include "bpf_arena_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4);
	__ulong(map_extra, 1ull << 40);
} arena SEC(".maps");

extern __u64 bpf_kfunc_arena_read_u64(__u64 *p__arena) __ksym;
char _license[] SEC("license") = "GPL";

SEC("syscall")
int kfunc_read_allocated(void *ctx)
{
	__u64 __arena *p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!p)
		return -1;
	p[3] = 0x1234;
	return bpf_kfunc_arena_read_u64((__u64 *)&p[3]);
}

SEC("syscall")
int kfunc_read_unallocated(void *ctx)
{
	__u64 __arena *p = (__u64 __arena *)((1ull << 40) + 3 * PAGE_SIZE + 0x18);

	return bpf_kfunc_arena_read_u64((__u64 *)p);
}
