// SPDX-License-Identifier: GPL-2.0
/* A static function as an entry program: libbpf refuses programs that are not global. */
#include "bpf_arena_common.h"

SEC("syscall")
static int hidden_prog(void *ctx)
{
	return 0;
}

char _license[] SEC("license") = "GPL";
