// SPDX-License-Identifier: GPL-2.0
/* More arena globals than the arena has pages for. */
#include "bpf_arena_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
} arena SEC(".maps");

char __arena big[2 * PAGE_SIZE] = { 1 };

SEC("syscall")
int touch(void *ctx)
{
	return big[PAGE_SIZE];
}

char _license[] SEC("license") = "GPL";
