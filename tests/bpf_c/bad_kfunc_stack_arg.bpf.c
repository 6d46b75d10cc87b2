// SPDX-License-Identifier: GPL-2.0
/* A stack pointer where a kfunc takes an arena pointer: the verifier refuses it. */
#include "bpf_arena_common.h"

ARENA_MAP(1, 0);

extern __u64 bpf_kfunc_arena_read_u64(__u64 *p__arena) __ksym;
char _license[] SEC("license") = "GPL";

SEC("syscall")
int stack_arg(void *ctx)
{
	__u64 v = 5;

	return bpf_kfunc_arena_read_u64(&v);
}
