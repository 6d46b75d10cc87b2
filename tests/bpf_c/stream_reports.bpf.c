// SPDX-License-Identifier: GPL-2.0
/* A program's streams (after the kernel's stream selftest): stdout filled to its capacity, and arena faults
 * reported to stderr, from the program, from an inline-assembly access past the arena's pages, and from a
 * static subprogram. */
#define BPF_NO_KFUNC_PROTOTYPES
#include <vmlinux.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_helpers.h>
#include "bpf_misc.h"
#include "bpf_experimental.h"
#include "bpf_arena_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
} arena SEC(".maps");

#define ENOSPC 28
#define FILL "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

int size;
u64 fault_addr;
void *arena_ptr;

SEC("syscall")
__success __retval(0)
int stream_exhaust(void *ctx)
{
	size = 0;
	bpf_repeat(BPF_MAX_LOOPS) {
		if (bpf_stream_printk(BPF_STDOUT, FILL) == -ENOSPC && size == 99954)
			return 0;
		size += sizeof(FILL) - 1;
	}
	return 1;
}

SEC("syscall")
int stream_syscall(void *ctx)
{
	bpf_stream_printk(BPF_STDOUT, "foo");
	return 0;
}

SEC("syscall")
int stream_arena_write_fault(void *ctx)
{
	struct bpf_arena *ptr = (void *)&arena;
	u64 user_vm_start;

	barrier_var(ptr);
	user_vm_start = ptr->user_vm_start;
	fault_addr = user_vm_start + 0x7fff;
	bpf_addr_space_cast(user_vm_start, 0, 1);
	asm volatile ("r1 = %0; r2 = 1; *(u32 *)(r1 + 0x7fff) = r2;" : : "r"(user_vm_start) : "r1", "r2");
	return 0;
}

SEC("syscall")
int stream_arena_read_fault(void *ctx)
{
	struct bpf_arena *ptr = (void *)&arena;
	u64 user_vm_start;

	barrier_var(ptr);
	user_vm_start = ptr->user_vm_start;
	fault_addr = user_vm_start + 0x7fff;
	bpf_addr_space_cast(user_vm_start, 0, 1);
	asm volatile ("r1 = %0; r1 = *(u32 *)(r1 + 0x7fff);" : : "r"(user_vm_start) : "r1");
	return 0;
}

static __noinline void subprog(void)
{
	int __arena *addr = (int __arena *)0xdeadbeef;

	arena_ptr = &arena;
	*addr = 1;
}

SEC("syscall")
int stream_arena_subprog_fault(void *ctx)
{
	subprog();
	return 0;
}

char _license[] SEC("license") = "GPL";
