// SPDX-License-Identifier: GPL-2.0
/* A small program for `prog dump`: a map lookup, a static function, arena loads, a store and an atomic. */
#include "bpf_arena_common.h"

ARENA_MAP(2, 1ull << 40);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

__u64 __arena total;
char _license[] SEC("license") = "GPL";

static __noinline __u64 bump(__u64 __arena *p, __u64 by)
{
	return __sync_fetch_and_add(p, by);
}

SEC("syscall")
int dump_me(void *ctx)
{
	__u32 key = 1;
	__u64 *v = bpf_map_lookup_elem(&hits, &key);

	if (!v)
		return 1;
	*v += 1;
	total = 5;
	return bump(&total, *v) > 3;
}
