// SPDX-License-Identifier: GPL-2.0
/* The kernel's arena_htab selftest as its users write it: the table from the shipped bpf_arena_htab.h, a
 * thousand keys inserted and then all replaced, the table handed to user space; and bpf_for_each() over
 * numbers. */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include "bpf_experimental.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 100);
} arena SEC(".maps");

#include "bpf_arena_htab.h"

void __arena *htab_for_user;
int zero, looked_up, each_sum;

SEC("syscall")
int arena_htab_llvm(void *ctx)
{
	struct htab __arena *htab;
	__u64 i;
	int *v;

	htab = bpf_alloc(sizeof(*htab));
	cast_kern(htab);
	htab_init(htab);
	for (i = zero; i < 1000; i++)
		htab_update_elem(htab, i, i);
	for (i = zero; i < 1000; i++)
		htab_update_elem(htab, i, i + 1);
	looked_up = htab_lookup_elem(htab, 500) + htab_lookup_elem(htab, 5000);
	bpf_for_each(num, v, 3, 7)
		each_sum += *v;
	cast_user(htab);
	htab_for_user = htab;
	return 0;
}

char _license[] SEC("license") = "GPL";
