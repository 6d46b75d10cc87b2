/* SPDX-License-Identifier: GPL-2.0 */
/* A doubly linked list of arena objects, with the interface of the selftests' bpf_arena_list.h: hlist-style
 * nodes (next, and a pointer to whatever points at this node), heads of one pointer, and a walk bounded by the
 * open-coded number iterator so the verifier accepts it. */
#ifndef BPF_ARENA_LIST_H
#define BPF_ARENA_LIST_H
#include "bpf_arena_common.h"

struct arena_list_node;
typedef struct arena_list_node __arena arena_list_node_t;

struct arena_list_node {
	arena_list_node_t *next;
	arena_list_node_t * __arena *pprev;
};

struct arena_list_head {
	struct arena_list_node __arena *first;
};
typedef struct arena_list_head __arena arena_list_head_t;

#define list_entry(ptr, type, member) arena_container_of(ptr, type, member)
/* the entry holding node `ptr`, or NULL for a NULL node */
#define list_entry_safe(ptr, type, member)					\
	({ typeof(*ptr) *___node = (ptr);					\
	   ___node ? list_entry(___node, type, member) : NULL; })

/* Walk at most a million entries; the body may delete `pos`, as the next node is read before it runs. */
#define list_for_each_entry(pos, head, member)					\
	for (struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), \
	     *___next = (bpf_iter_num_new(&___it, 0, 1000000),			\
			 pos = list_entry_safe((head)->first, typeof(*(pos)), member),	\
			 (void)bpf_iter_num_destroy, (void *)0);			\
	     bpf_iter_num_next(&___it) && pos &&				\
		({ ___next = (void *)pos->member.next; 1; });			\
	     pos = list_entry_safe((void __arena *)___next, typeof(*(pos)), member))

static inline void list_add_head(arena_list_node_t *n, arena_list_head_t *h)
{
	arena_list_node_t *first = h->first;

	WRITE_ONCE(n->next, first);
	if (first)
		WRITE_ONCE(first->pprev, &n->next);
	WRITE_ONCE(h->first, n);
	WRITE_ONCE(n->pprev, &h->first);
}

static inline void __list_del(arena_list_node_t *n)
{
	arena_list_node_t *next = n->next;
	arena_list_node_t * __arena *pprev = n->pprev;

	WRITE_ONCE(*pprev, next);
	if (next)
		WRITE_ONCE(next->pprev, pprev);
}

/* the kernel's list poison values, so a use after list_del() faults at a recognisable address */
#define LIST_POISON1 ((void __arena *)0x100)
#define LIST_POISON2 ((void __arena *)0x122)

static inline void list_del(arena_list_node_t *n)
{
	__list_del(n);
	n->next = LIST_POISON1;
	n->pprev = LIST_POISON2;
}
#endif
