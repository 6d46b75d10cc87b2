/* SPDX-License-Identifier: GPL-2.0 */
/* A hash table in the arena, with the interface and element layout of the selftests' bpf_arena_htab.h: buckets
 * are arena list heads (bpf_arena_list.h), elements come from the page-fragment allocator (bpf_arena_alloc.h), a
 * key's hash is the key itself, and an update of a key adds a new element and frees the old one. Include it
 * after the map named `arena`. */
#ifndef BPF_ARENA_HTAB_H
#define BPF_ARENA_HTAB_H
#include <errno.h>
#include "bpf_arena_alloc.h"
#include "bpf_arena_list.h"

struct htab_bucket {
	struct arena_list_head head;
};
typedef struct htab_bucket __arena htab_bucket_t;

struct htab {
	htab_bucket_t *buckets;
	int n_buckets;	/* a power of two */
};

struct hashtab_elem {
	int hash;
	int key;
	int value;
	struct arena_list_node hash_node;
};
typedef struct hashtab_elem __arena hashtab_elem_t;

static inline arena_list_head_t *select_bucket(struct htab __arena *htab, __u32 hash)
{
	htab_bucket_t *buckets = htab->buckets;

	return &buckets[hash & (htab->n_buckets - 1)].head;
}

static inline int htab_hash(int key)
{
	return key;
}

static hashtab_elem_t *lookup_elem_raw(arena_list_head_t *head, __u32 hash, int key)
{
	hashtab_elem_t *e;

	list_for_each_entry(e, head, hash_node)
		if (e->hash == hash && e->key == key)
			return e;
	return NULL;
}

/* the key's value, or 0 when the key is absent */
__weak int htab_lookup_elem(struct htab __arena *htab __arg_arena, int key)
{
	hashtab_elem_t *e = lookup_elem_raw(select_bucket(htab, key), htab_hash(key), key);

	return e ? e->value : 0;
}

/* 0, or -ENOMEM when the allocator has no page left */
__weak int htab_update_elem(struct htab __arena *htab __arg_arena, int key, int value)
{
	arena_list_head_t *head = select_bucket(htab, key);
	hashtab_elem_t *old = lookup_elem_raw(head, htab_hash(key), key);
	hashtab_elem_t *e = bpf_alloc(sizeof(*e));

	if (!e)
		return -ENOMEM;
	e->key = key;
	e->hash = htab_hash(key);
	e->value = value;
	list_add_head(&e->hash_node, head);
	if (old) {
		list_del(&old->hash_node);
		bpf_free(old);
	}
	return 0;
}

/* two pages of buckets */
void htab_init(struct htab __arena *htab)
{
	void __arena *buckets = bpf_arena_alloc_pages(&arena, NULL, 2, NUMA_NO_NODE, 0);

	htab->buckets = buckets;
	htab->n_buckets = 2 * PAGE_SIZE / sizeof(struct htab_bucket);
}
#endif
