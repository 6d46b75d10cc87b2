// SPDX-License-Identifier: GPL-2.0
/* Faulting arena accesses whose reports go to the program's stderr stream
 * (after the kernel's stream selftest). */
#include "bpf_arena_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
} arena SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, __u64);
} last_addr SEC(".maps");

int bpf_stream_vprintk(int stream_id, const char *fmt__str, const void *args, __u32 len__sz,
		       void *aux__prog) __ksym;

static const char msg[] = "arena fault at %llx\n";

SEC("syscall")
int stream_arena_read_fault(void *ctx)
{
	__u64 __arena *p = (__u64 __arena *)0x1000;
	__u64 args[1];
	__u64 *slot;
	int key = 0;

	args[0] = *p;
	slot = bpf_map_lookup_elem(&last_addr, &key);
	if (slot)
		*slot = args[0];
	bpf_stream_vprintk(BPF_STDOUT, "read %llu\n", args, sizeof(args), NULL);
	return bpf_stream_vprintk(BPF_STDERR, msg, args, sizeof(args), NULL);
}

char _license[] SEC("license") = "GPL";
