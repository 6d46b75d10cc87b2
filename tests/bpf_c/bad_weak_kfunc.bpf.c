// SPDX-License-Identifier: GPL-2.0
/* A __weak kfunc no kernel has, called: libbpf leaves the call with id 0, and the verifier refuses it. */
#include "bpf_arena_common.h"

ARENA_MAP(2, 0);

int bpf_arena_no_such_kfunc(void *map, __u32 page_cnt) __ksym __weak;

SEC("syscall")
int call_missing(void *ctx)
{
	return bpf_arena_no_such_kfunc(&arena, 1);
}

char _license[] SEC("license") = "GPL";
