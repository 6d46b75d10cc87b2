// SPDX-License-Identifier: GPL-2.0
/* A map attribute libbpf does not know: refused, since libbpf reads .maps strictly by default. */
#include "bpf_arena_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(max_entires, 1);
} typo SEC(".maps");

char _license[] SEC("license") = "GPL";
