// SPDX-License-Identifier: GPL-2.0
/* Externs of every kind libbpf resolves: a kfunc, a typed kernel variable, Kconfig values. */
#include "bpf_arena_common.h"

extern unsigned int CONFIG_HZ __kconfig;
extern bool CONFIG_BPF_ARENA __kconfig __weak;
extern const int bpf_prog_active __ksym;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;

SEC("syscall")
int read_externs(void *ctx)
{
	int ret;

	bpf_rcu_read_lock();
	ret = CONFIG_HZ + CONFIG_BPF_ARENA + (long)&bpf_prog_active;
	bpf_rcu_read_unlock();
	return ret;
}

char _license[] SEC("license") = "GPL";
