/* SPDX-License-Identifier: GPL-2.0 */
/* Just enough of bpf_helpers.h and the arena selftests' common header to build BPF programs
 * for arena-emu with a bare clang: no kernel tree, no libbpf headers. `arena-emu build` puts
 * this folder on the include path: #include "bpf_arena_common.h". */
#ifndef BPF_ARENA_COMMON_H
#define BPF_ARENA_COMMON_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef _Bool bool;
#define true 1
#define false 0
#define NULL ((void *)0)

#define SEC(name) __attribute__((section(name), used))
#define __weak __attribute__((weak))
#define __ksym __attribute__((section(".ksyms")))
#define __kconfig __attribute__((section(".kconfig")))
#define __noinline __attribute__((noinline))
#define __always_inline inline __attribute__((always_inline))
#define __hidden __attribute__((visibility("hidden")))

#define ___bpf_concat(a, b) a##b
#define ___bpf_apply(fn, n) ___bpf_concat(fn, n)
/* BTF-defined map attributes: the value is carried by the type, not by data */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define __array(name, val) typeof(val) *name[]
#define __ulong(name, val) enum { ___bpf_apply(__unique_value, __COUNTER__) = val } name

/* enum bpf_map_type and map flags, from include/uapi/linux/bpf.h */
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_ARENA 33
#define BPF_F_NO_PREALLOC (1U << 0)
#define BPF_F_MMAPABLE (1U << 10)

#define BPF_STDOUT 1
#define BPF_STDERR 2

#define __arena __attribute__((address_space(1)))
#define __arena_global __attribute__((address_space(1)))
#define __arg_arena __attribute__((btf_decl_tag("arg:arena")))
/* bpf_experimental.h's loop condition: false once may_goto's budget is spent */
#define can_loop					\
	({ __label__ l_break, l_continue;		\
	bool ret = true;				\
	asm volatile goto("may_goto %l[l_break]"	\
		      :::: l_break);			\
	goto l_continue;				\
	l_break: ret = false;				\
	l_continue:;					\
	ret;						\
	})

/* An object's arena map, named `arena`: `pages` pages at user address `user_start` (0: where mmap() puts it) */
#define ARENA_MAP(pages, user_start)					\
	struct {							\
		__uint(type, BPF_MAP_TYPE_ARENA);			\
		__uint(map_flags, BPF_F_MMAPABLE);			\
		__uint(max_entries, pages);				\
		__ulong(map_extra, user_start);				\
	} arena SEC(".maps")
#define cast_kern(ptr) /* the compiler emits addr_space_cast itself */
#define cast_user(ptr)
#define NUMA_NO_NODE (-1)
#define PAGE_SIZE 4096

/* helpers are called by number (enum bpf_func_id) */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx, __u64 flags) = (void *)181;

void __arena *bpf_arena_alloc_pages(void *map, void __arena *addr, __u32 page_cnt, int node_id,
				    __u64 flags) __ksym __weak;
void bpf_arena_free_pages(void *map, void __arena *ptr, __u32 page_cnt) __ksym __weak;
int bpf_arena_reserve_pages(void *map, void __arena *addr, __u32 page_cnt) __ksym __weak;

#endif
