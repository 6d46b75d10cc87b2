// SPDX-License-Identifier: GPL-2.0
/* A singly linked list whose nodes live in the arena, summed by a syscall program
 * (after the kernel's arena_list selftest, in our own words). */
#include "bpf_arena_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 100);
	__ulong(map_extra, 1ull << 44);
} arena SEC(".maps");

struct elem {
	struct elem __arena *next;
	int value;
	unsigned int seen:1;
	unsigned int tag:7;
};

struct elem __arena *list_head;
int __arena list_count;
int list_sum;
int expected_count = -1;
const volatile int cnt_limit = 64;
char _license[] SEC("license") = "GPL";

static __noinline int push(int value)
{
	struct elem __arena *n = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!n)
		return -1;
	n->value = value;
	n->next = list_head;
	list_head = n;
	list_count++;
	return 0;
}

SEC("syscall")
int arena_list_add(void *ctx)
{
	int i;

	for (i = 0; i < cnt_limit && i < 10; i++)
		if (push(i))
			return 1;
	return 0;
}

SEC("syscall")
int arena_list_sum(void *ctx)
{
	struct elem __arena *n;
	int sum = 0, cnt = 0;

	for (n = list_head; n && cnt < 100; n = n->next) {
		sum += n->value;
		n->seen = 1;
		cnt++;
	}
	list_sum = sum;
	expected_count = cnt;
	return 0;
}
