// SPDX-License-Identifier: GPL-2.0
/* bpf_loop() over arena memory, which the verifier inlines when its flags are 0 (after the kernel's
 * bpf_loop and verifier_arena selftests). */
#include "bpf_arena_common.h"

ARENA_MAP(4, 1ull << 40);

struct walk {
	int __arena *values;
	int sum;
	int stop_at;
};

int kept_a, kept_b;
char _license[] SEC("license") = "GPL";

static int add_one(__u32 i, void *ctx)
{
	struct walk *w = ctx;

	if (w->values[i] == w->stop_at)
		return 1;
	w->sum += w->values[i];
	return 0;
}

SEC("syscall")
int loop_sum(void *ctx)
{
	struct walk w = { .stop_at = -1 };
	int a = kept_a * 3, b = kept_b + 5;
	long n;
	int i;

	w.values = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!w.values)
		return -1;
	for (i = 0; i < 100; i++)
		w.values[i] = i;
	w.values[40] = -1;
	n = bpf_loop(100, add_one, &w, 0);
	kept_a = a;
	kept_b = b;
	return n * 100000 + w.sum;
}

SEC("syscall")
int loop_too_many(void *ctx)
{
	struct walk w = { .stop_at = -1 };

	return bpf_loop((1 << 23) + 1, add_one, &w, 0);
}

static int read_missing(__u32 i, void *ctx)
{
	volatile int __arena *p = (int __arena *)((1ull << 40) + 3 * PAGE_SIZE);

	*(int *)ctx += *p + 1;
	return 0;
}

SEC("syscall")
int loop_callback_fault(void *ctx)
{
	int n = 0;

	bpf_loop(2, read_missing, &n, 0);
	return n;
}

static int fill(__u32 i, void *ctx)
{
	((volatile char *)ctx)[i] = i;
	return 0;
}

SEC("syscall")
int loop_full_stack(void *ctx)
{
	char buf[496];
	int i, sum = 0;

	bpf_loop(sizeof(buf), fill, buf, 0);
	for (i = 0; i < sizeof(buf); i += 64)
		sum += ((volatile char *)buf)[i];
	return sum;
}

static int add_index(__u32 i, void *ctx)
{
	*(long *)ctx += i;
	return 0;
}

SEC("syscall")
int loops_in_can_loop(void *ctx)
{
	long s = 0, t = 0;
	int i;

	for (i = 0; i < 5 && can_loop; i++) {
		bpf_loop(4, add_index, &s, 0);
		t += i;
	}
	return s * 100 + t;
}
