// SPDX-License-Identifier: GPL-2.0
/* bpf_loop() with flags the verifier cannot prove 0: the kernel calls the helper, which is not modelled. */
#include "bpf_arena_common.h"

__u64 loop_flags;
char _license[] SEC("license") = "GPL";

static int nothing(__u32 i, void *ctx)
{
	return 0;
}

SEC("syscall")
int loop_flags_unknown(void *ctx)
{
	return bpf_loop(3, nothing, NULL, loop_flags);
}
