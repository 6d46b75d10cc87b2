// SPDX-License-Identifier: GPL-2.0
/* An iterator outside the stack: the verifier's process_iter_arg() refuses it. */
#include "bpf_arena_common.h"

struct bpf_iter_num it_global;

SEC("syscall")
int iter_in_bss(void *ctx)
{
	bpf_iter_num_new(&it_global, 0, 3);
	return 0;
}

char _license[] SEC("license") = "GPL";
