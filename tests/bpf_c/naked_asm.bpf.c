// SPDX-License-Identifier: GPL-2.0
/* Programs in BPF assembly, as the verifier selftests write them: __naked functions whose inline assembly
 * reaches an __arena global through ld_imm64 and an explicit addr_space_cast, with bpf_misc.h's operands. */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include "bpf_misc.h"

ARENA_MAP(2, 0);

__u64 __arena_global val = 5;

SEC("syscall")
__success __retval(5)
__naked int naked_read(void *ctx)
{
	asm volatile ("r1 = %[val] ll;"
		      "r1 = addr_space_cast(r1, 0x0, 0x1);"
		      "r0 = *(u64 *)(r1 + 0);"
		      "exit;"
		      : : __imm_addr(val) : __clobber_all);
}

SEC("syscall")
__success __retval(0)
__naked int naked_unallocated(void *ctx)
{
	asm volatile ("r1 = %[val] ll;"
		      "r1 = addr_space_cast(r1, 0x0, 0x1);"
		      "r2 = 7;"
		      "*(u64 *)(r1 - 4096) = r2;"	/* the page below the globals: never allocated */
		      "r0 = *(u64 *)(r1 - 4096);"
		      "exit;"
		      : : __imm_addr(val) : __clobber_all);
}

char _license[] SEC("license") = "GPL";
