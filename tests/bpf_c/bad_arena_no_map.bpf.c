// SPDX-License-Identifier: GPL-2.0
/* An arena global with no arena map to hold it: libbpf refuses the object. */
#include "bpf_arena_common.h"

int __arena orphan = 1;

SEC("syscall")
int touch(void *ctx)
{
	return orphan;
}

char _license[] SEC("license") = "GPL";
