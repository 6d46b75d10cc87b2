// SPDX-License-Identifier: GPL-2.0
/* Races between CPUs around the scratch page (DESIGN.md hazards 3 and 5), one program per CPU:
 * smp.S in C. The README's `explore` examples and tests/test_smp.py keep running smp.S, whose
 * schedules count its instructions (`1:11`, `2:7`); this file's instructions are the compiler's,
 * so a schedule for it counts other numbers, or names C lines (`1:@smp.bpf.c:LINE`).
 *
 * Pages: 1 for hazard 3, 2 for the double fault, 3 for the free race (three CPUs). Kfuncs:
 * kernel_stubs/arena_kfuncs.S, loaded first.
 */
#include "bpf_arena_common.h"

#define ARENA_BASE 0x7f7d26200000ull
#define PAGE(k) ((__u64 __arena *)(ARENA_BASE + (k) * PAGE_SIZE))
#define TRIES 100

ARENA_MAP(16, ARENA_BASE);

extern __u64 bpf_kfunc_arena_read_u64(__u64 *p__arena) __ksym;

volatile __u64 h3_allocated;	/* CPU 0 to CPU 1: page 1 is allocated */
volatile __u64 race_allocated;	/* CPU 1 to CPU 2: page 3 is allocated again */

char _license[] SEC("license") = "GPL";

/* Hazard 3, CPU 1: a kfunc reads page 1 (the scratch page is mapped and this CPU caches it); then,
 * once CPU 0 says page 1 is allocated, the program stores 7 to it. Returns 0 when it stored, 1
 * when it gave up waiting, so every completed store comes after the allocation. */
SEC("syscall")
int h3_reader(void *ctx)
{
	int i;

	bpf_kfunc_arena_read_u64((__u64 *)PAGE(1));
	for (i = 0; i < TRIES && can_loop; i++) {
		if (h3_allocated) {
			*PAGE(1) = 7;
			return 0;
		}
	}
	return 1;
}

/* Hazard 3, CPU 0: allocate page 1, then say so. */
SEC("syscall")
int h3_alloc(void *ctx)
{
	bpf_arena_alloc_pages(&arena, PAGE(1), 1, NUMA_NO_NODE, 0);
	h3_allocated = 1;
	return 0;
}

/* Both CPUs: a kfunc reads page 2. With --schedule '0:@fault' both take the fault. */
SEC("syscall")
__u64 fault_reader(void *ctx)
{
	return bpf_kfunc_arena_read_u64((__u64 *)PAGE(2));
}

/* The free race, setup (CPU 0): allocate page 3. */
SEC("syscall")
int race_setup(void *ctx)
{
	return bpf_arena_alloc_pages(&arena, PAGE(3), 1, NUMA_NO_NODE, 0) ? 0 : 1;
}

/* The free race, CPU 0: free page 3. */
SEC("syscall")
int race_free(void *ctx)
{
	bpf_arena_free_pages(&arena, PAGE(3), 1);
	return 0;
}

/* The free race, CPU 1: allocate page 3 again; when that works, say so. */
SEC("syscall")
int race_alloc(void *ctx)
{
	if (!bpf_arena_alloc_pages(&arena, PAGE(3), 1, NUMA_NO_NODE, 0))
		return 1;
	race_allocated = 1;
	return 0;
}

/* The free race, CPU 2: store 1 to page 3, so this CPU caches its translation (a store: Unicorn
 * walks the tables again for the first store through an entry a load filled, where hardware would
 * not); then, once CPU 1 says it allocated page 3 again, store 7 to it. Returns 0 when it stored
 * 7, 1 when it gave up. */
SEC("syscall")
int race_access(void *ctx)
{
	volatile __u64 __arena *page = PAGE(3);
	int i;

	*page = 1;
	for (i = 0; i < TRIES && can_loop; i++) {
		if (race_allocated) {
			*page = 7;
			return 0;
		}
	}
	return 1;
}
