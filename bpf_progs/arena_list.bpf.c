// SPDX-License-Identifier: GPL-2.0
/* A linked list in the arena, after tools/testing/selftests/bpf/progs/arena_list.c. A node's
 * `next` holds a user-space pointer, NULL ends the list. User space can build the list through its
 * own mapping of the arena and have BPF sum it, as the selftest does; or arena_list_build()
 * builds it. Programs take their input and leave their output in globals (skel->bss). */
#include "bpf_arena_common.h"

#define ARENA_BASE 0x7f7d26200000ull
#define NODES_PER_PAGE (PAGE_SIZE / sizeof(struct node))

ARENA_MAP(16, ARENA_BASE);

struct node {
	struct node __arena *next;
	__u64 value;
};

__u64 list_len;				/* arena_list_build's input: how many nodes */
struct node __arena *list_head;		/* its output (NULL when it failed); arena_list_sum's input */
__u64 list_sum;				/* arena_list_sum's output */

char _license[] SEC("license") = "GPL";

/* One page, nodes 0..list_len-1 with value i + 1, node i linked to node i + 1. */
SEC("syscall")
int arena_list_build(void *ctx)
{
	struct node __arena *nodes;
	__u64 i, n = list_len;

	list_head = NULL;
	if (n == 0 || n > NODES_PER_PAGE)
		return 1;
	nodes = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!nodes)
		return 1;
	for (i = 0; i < n && can_loop; i++) {
		nodes[i].next = i + 1 < n ? &nodes[i + 1] : NULL;
		nodes[i].value = i + 1;
	}
	list_head = nodes;
	return 0;
}

/* The sum of the values from list_head on. A next pointer into an unallocated page reads as a
 * node of zeros (the JIT's fixup clears the destination), so the walk ends there. */
SEC("syscall")
int arena_list_sum(void *ctx)
{
	struct node __arena *n;
	__u64 sum = 0;

	for (n = list_head; n && can_loop; n = n->next)
		sum += n->value;
	list_sum = sum;
	return 0;
}
