// SPDX-License-Identifier: GPL-2.0
/* A list of arena objects from the page-fragment allocator, built by one program and torn down by another
 * (after the kernel's arena_list selftest): vmlinux.h-style includes, a may_goto-bounded loop, a walk bounded
 * by the number iterator, list_del() and bpf_free(), and arena globals with an initial value. */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include "bpf_experimental.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 100);
	__ulong(map_extra, 1ull << 44);
} arena SEC(".maps");

#include "bpf_arena_alloc.h"
#include "bpf_arena_list.h"

struct elem {
	struct arena_list_node node;
	__u64 value;
};

struct arena_list_head __arena *list_head;
int list_sum;
int cnt;
int zero;

long __arena arena_sum;
int __arena test_val = 1;
struct arena_list_head __arena global_head;

SEC("syscall")
int arena_list_add(void *ctx)
{
	__u64 i;

	list_head = &global_head;
	for (i = zero; i < cnt; cond_break, i++) {
		struct elem __arena *n = bpf_alloc(sizeof(*n));

		test_val++;
		n->value = i;
		arena_sum += i;
		list_add_head(&n->node, list_head);
	}
	return 0;
}

SEC("syscall")
int arena_list_del(void *ctx)
{
	struct elem __arena *n;
	int sum = 0;

	arena_sum = 0;
	list_for_each_entry(n, list_head, node) {
		sum += n->value;
		arena_sum += n->value;
		list_del(&n->node);
		bpf_free(n);
	}
	list_sum = sum;
	return 0;
}

char _license[] SEC("license") = "GPL";
