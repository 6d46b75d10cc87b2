// SPDX-License-Identifier: GPL-2.0
/* The kernel's arena fault reports (tools/testing/selftests/bpf/progs/stream.c): a load and a
 * store at user_vm_start + 0x7fff, a page no one allocated, and a store from a subprogram. Each
 * access is fixed up by ex_handler_bpf() and reported to the main program's stderr; the programs
 * return 0.
 *
 * The selftest reads user_vm_start from the map (struct bpf_arena, through BTF); this loader does
 * no CO-RE, so the arena sits at a fixed user address instead (map_extra).
 */
#include "bpf_arena_common.h"

#define ARENA_BASE 0x7f7d26200000ull

ARENA_MAP(100, ARENA_BASE);

char _license[] SEC("license") = "GPL";

SEC("syscall")
int stream_arena_read_fault(void *ctx)
{
	return *(volatile __u32 __arena *)(ARENA_BASE + 0x7fff);
}

SEC("syscall")
int stream_arena_write_fault(void *ctx)
{
	*(volatile __u32 __arena *)(ARENA_BASE + 0x7fff) = 1;
	return 0;
}

static __noinline int subprog(void)
{
	*(volatile int __arena *)0xdeadbeef = 1;
	return 0;
}

SEC("syscall")
int stream_arena_subprog_fault(void *ctx)
{
	return subprog();
}
