// SPDX-License-Identifier: GPL-2.0
/* cpu v4 arithmetic on values read from the arena: signed division and modulo with the ISA's answers
 * for 0 and -1 divisors, sign-extending register moves, byte swaps. */
#include "bpf_arena_common.h"

ARENA_MAP(4, 0);

struct args {
	__s64 a;
	__s64 b;
	__s32 c;
};

__s64 quot, rem, ext, swapped;
char _license[] SEC("license") = "GPL";

SEC("syscall")
int alu_v4(struct args *x)
{
	__s64 __arena *p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!p)
		return -1;
	p[0] = x->a;
	p[1] = x->b;
	quot = p[0] / p[1];
	rem = p[0] % p[1];
	ext = (__s64)(__s8)x->c + (__s64)(__s16)(x->c >> 8);
	swapped = __builtin_bswap64(p[0]) ^ __builtin_bswap32((__u32)x->c);
	return quot + rem;
}
