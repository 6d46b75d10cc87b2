// SPDX-License-Identifier: GPL-2.0
/* Map definitions beyond the plain ones: a map of arrays, a program array, a pinned map. */
#include "bpf_arena_common.h"

#define BPF_MAP_TYPE_PROG_ARRAY 3
#define BPF_MAP_TYPE_ARRAY_OF_MAPS 12
#define LIBBPF_PIN_BY_NAME 1

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 8);
	__uint(key_size, sizeof(__u32));
	__array(values, int(void *));
} jmp_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__uint(key_size, 8);
	__uint(value_size, 24);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(numa_node, 1);
} pinned SEC(".maps");

SEC("syscall")
int use_maps(void *ctx)
{
	__u32 key = 0;

	return bpf_map_lookup_elem(&outer, &key) != NULL && bpf_map_lookup_elem(&pinned, &key) != NULL;
}

char _license[] SEC("license") = "GPL";
