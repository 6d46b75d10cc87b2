// SPDX-License-Identifier: GPL-2.0
/* A hash table of arena lists (after the kernel's arena_htab selftest and its bpf_arena_htab.h): the table and
 * its elements come from the page-fragment allocator, its buckets from two whole pages, the global functions
 * take __arg_arena pointers, and updating a key replaces its element, freeing the old one. */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <errno.h>
#include "bpf_experimental.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 100);
} arena SEC(".maps");

#include "bpf_arena_alloc.h"
#include "bpf_arena_list.h"

struct bucket {
	struct arena_list_head head;
};

struct table {
	struct bucket __arena *buckets;
	int n_buckets;
};

struct entry {
	int hash;
	int key;
	int value;
	struct arena_list_node node;
};

void __arena *htab_for_user;
int zero;
int found_7, found_999, found_missing;

static struct arena_list_head __arena *bucket_of(struct table __arena *t, __u32 hash)
{
	return &t->buckets[hash & (t->n_buckets - 1)].head;
}

static struct entry __arena *find(struct arena_list_head __arena *head, int key)
{
	struct entry __arena *e;

	list_for_each_entry(e, head, node)
		if (e->hash == key && e->key == key)
			return e;
	return NULL;
}

__weak int table_lookup(struct table __arena *t __arg_arena, int key)
{
	struct entry __arena *e = find(bucket_of(t, key), key);

	return e ? e->value : 0;
}

__weak int table_update(struct table __arena *t __arg_arena, int key, int value)
{
	struct arena_list_head __arena *head = bucket_of(t, key);
	struct entry __arena *old = find(head, key), *e;

	e = bpf_alloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->key = key;
	e->hash = key;
	e->value = value;
	list_add_head(&e->node, head);
	if (old) {
		list_del(&old->node);
		bpf_free(old);
	}
	return 0;
}

void table_init(struct table __arena *t)
{
	void __arena *buckets = bpf_arena_alloc_pages(&arena, NULL, 2, NUMA_NO_NODE, 0);

	t->buckets = buckets;
	t->n_buckets = 2 * PAGE_SIZE / sizeof(struct bucket);
}

SEC("syscall")
int arena_htab_llvm(void *ctx)
{
	struct table __arena *t;
	__u64 i;

	t = bpf_alloc(sizeof(*t));
	table_init(t);
	for (i = zero; i < 1000; i++)
		table_update(t, i, i);
	for (i = zero; i < 1000; i++)	/* every key again: each element replaced, the old one freed */
		table_update(t, i, i * 3);
	found_7 = table_lookup(t, 7);
	found_999 = table_lookup(t, 999);
	found_missing = table_lookup(t, 1000);
	htab_for_user = t;
	return 0;
}

char _license[] SEC("license") = "GPL";
