// SPDX-License-Identifier: GPL-2.0
/* Open-coded iterators, bpf_loop() callbacks, static and __weak subprograms over the arena, and a program's
 * stream output (after the kernel's iters, arena and stream selftests). */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <errno.h>
#include "bpf_experimental.h"

ARENA_MAP(4, 0);

__u64 __arena squares[16];
int __arena total = 1000;
int empty_ret, big_ret, repeats, nested, reversed_turns;
__u32 cpu;
__u64 t0, t1;
__u32 swapped;

static int add_square(__u32 i, void *ctx)
{
	int *acc = ctx;

	squares[i] = (__u64)i * i;
	*acc += i * i;
	return i == 9;	/* stop after the tenth turn */
}

static __noinline int sum_static(__u64 __arena *p, int n)
{
	int i, s = 0;

	bpf_for(i, 0, n)
		s += p[i];
	return s;
}

__weak int sum_weak(__u64 __arena *p __arg_arena, int n)
{
	int s = 0;

	for (int i = 0; i < n && can_loop; i++)
		s += p[i];
	return s;
}

SEC("syscall")
int iterate(void *ctx)
{
	struct bpf_iter_num it;
	int acc = 0, i, j;

	bpf_loop(16, add_square, &acc, 0);
	total += acc;
	bpf_repeat(5)
		repeats++;
	bpf_for(i, 0, 4)
		bpf_for(j, i, 4)
			nested += 10 * i + j;
	empty_ret = bpf_iter_num_new(&it, 5, 4);	/* start > end: -EINVAL, no turn */
	while (bpf_iter_num_next(&it))
		reversed_turns++;
	bpf_iter_num_destroy(&it);
	big_ret = bpf_iter_num_new(&it, 0, (1 << 23) + 1);	/* more than BPF_MAX_LOOPS: -E2BIG */
	bpf_iter_num_destroy(&it);
	cpu = bpf_get_smp_processor_id();
	t0 = bpf_ktime_get_ns();
	t1 = bpf_ktime_get_ns();
	swapped = bpf_htons(0x1234) << 16 | bpf_htons(0xabcd);
	return sum_static(squares, 10) * 1000 + sum_weak(squares, 3);
}

SEC("syscall")
int speak(void *ctx)
{
	bpf_stream_printk(BPF_STDOUT, "total %d squares[3] %llu\n", total, squares[3]);
	bpf_stream_printk(BPF_STDERR, "no arguments\n");
	bpf_printk("trace %d %d %d", 1, 2, 3);
	bpf_printk("five %d %d %d %d %s", 1, 2, 3, 4, "five");
	bpf_printk("none");
	return bpf_stream_printk(BPF_STDOUT, "%d%d%d%d%d%d%d%d%d%d%d%d\n", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12);
}

char _license[] SEC("license") = "GPL";
