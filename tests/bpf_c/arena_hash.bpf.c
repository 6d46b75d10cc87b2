// SPDX-License-Identifier: GPL-2.0
/* A chained hash table in the arena, walked with can_loop (after the kernel's arena_htab selftest, whose
 * bpf_arena_htab.h loops with may_goto). */
#include "bpf_arena_common.h"

ARENA_MAP(16, 0);

struct bucket {
	int key;
	int value;
	struct bucket __arena *next;
};

struct bucket __arena *table[8] __arena_global;
int found, steps;
char _license[] SEC("license") = "GPL";

__noinline struct bucket __arena *bucket_new(int key, int value)
{
	struct bucket __arena *b = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (b) {
		b->key = key;
		b->value = value;
	}
	return b;
}

SEC("syscall")
int hash_fill_and_find(void *ctx)
{
	struct bucket __arena *b;
	int i;

	for (i = 0; i < 12 && can_loop; i++) {
		b = bucket_new(i, i * i);
		if (!b)
			return -12;
		b->next = table[i & 7];
		table[i & 7] = b;
	}
	for (b = table[9 & 7]; b && can_loop; b = b->next) {
		steps++;
		if (b->key == 9)
			return found = b->value;
	}
	return -2;
}

SEC("syscall")
int spin_forever(void *ctx)
{
	int n = 0;

	while (can_loop)
		n++;
	return n;
}
