#include "bpf_arena_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4);
} arena SEC(".maps");

__u64 runs;			/* .bss: kept from one run to the next */

SEC("syscall")
int use_after_free(void *ctx)
{
	__u64 __arena *page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!page)
		return -1;
	*page = 42;
	bpf_arena_free_pages(&arena, page, 1);
	runs++;
	return *page;		/* the page is gone: the load faults, and reads 0 */
}

char _license[] SEC("license") = "GPL";
