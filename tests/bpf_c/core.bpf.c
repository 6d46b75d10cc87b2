// SPDX-License-Identifier: GPL-2.0
/* A CO-RE field access: the struct is relocated against the kernel's at load time. */
#include "bpf_arena_common.h"

struct task_struct___local {
	int pid;
	int tgid;
} __attribute__((preserve_access_index));

SEC("syscall")
int core_read(struct task_struct___local *task)
{
	return task->tgid;
}

char _license[] SEC("license") = "GPL";
