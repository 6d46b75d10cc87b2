// SPDX-License-Identifier: GPL-2.0
/* A BPF_F_NO_PREALLOC hash map from a program: an update allocates, a replacement moves the key's value to a
 * new element while a pointer to the old one still reads the old value, and a full map refuses a new key. */
#include "bpf_arena_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} h SEC(".maps");

__u64 old_seen, new_seen;
long full_ret, replace_ret;
__u64 first_elem, second_elem;

SEC("syscall")
int churn(void *ctx)
{
	__u32 k1 = 1, k2 = 2, k3 = 3;
	__u64 v = 10, *old, *cur;

	bpf_map_update_elem(&h, &k1, &v, BPF_ANY);
	old = bpf_map_lookup_elem(&h, &k1);
	if (!old)
		return 1;
	v = 20;
	bpf_map_update_elem(&h, &k1, &v, BPF_ANY);
	cur = bpf_map_lookup_elem(&h, &k1);
	if (!cur)
		return 2;
	old_seen = *old;	/* the freed element, not yet reused */
	new_seen = *cur;
	first_elem = (__u64)old;
	second_elem = (__u64)cur;
	bpf_map_update_elem(&h, &k2, &v, BPF_ANY);
	full_ret = bpf_map_update_elem(&h, &k3, &v, BPF_ANY);
	replace_ret = bpf_map_update_elem(&h, &k2, &v, BPF_EXIST);
	return 0;
}

char _license[] SEC("license") = "GPL";
