// SPDX-License-Identifier: GPL-2.0
/* An open hash table in the arena (after the kernel's arena_htab selftest, simplified). */
#include "bpf_arena_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 8);
} arena SEC(".maps");

struct bucket {
	int key;
	int value;
	struct bucket __arena *next;
};

struct htab {
	struct bucket __arena *buckets[16];
	__u32 n_buckets;
	__u32 count;
};

struct htab __arena htab;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct bucket);
} shadow SEC(".maps");

int lookups, misses;
char _license[] SEC("license") = "GPL";

static __noinline int htab_hash(int key)
{
	return (key * 31) & 15;
}

__noinline int htab_update(int key, int value)
{
	struct bucket __arena *b = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	int h = htab_hash(key);

	if (!b)
		return -12;
	b->key = key;
	b->value = value;
	b->next = htab.buckets[h];
	htab.buckets[h] = b;
	htab.count++;
	return 0;
}

SEC("syscall")
int arena_htab_llvm(void *ctx)
{
	struct bucket __arena *b;
	int i;

	htab.n_buckets = 16;
	for (i = 0; i < 32; i++)
		if (htab_update(i, i * 2))
			return 1;
	for (b = htab.buckets[htab_hash(7)]; b; b = b->next) {
		lookups++;
		if (b->key == 7)
			return b->value;
	}
	misses++;
	return -2;
}
