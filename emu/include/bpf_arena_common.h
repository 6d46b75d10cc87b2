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
/* the kernel's own names, as vmlinux.h gives them */
typedef __s8 s8;
typedef __u8 u8;
typedef __s16 s16;
typedef __u16 u16;
typedef __s32 s32;
typedef __u32 u32;
typedef __s64 s64;
typedef __u64 u64;
typedef unsigned long size_t;
typedef long ssize_t;
typedef unsigned long uintptr_t;
#ifndef bool /* <stdbool.h> may come first */
typedef _Bool bool;
#endif
#ifndef true
#define true 1
#define false 0
#endif
#ifndef NULL
#define NULL ((void *)0)
#endif

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
/* bpf_helpers.h's other global-function argument tags; of these tags the verifier here reads only arg:arena */
#define __arg_ctx __attribute__((btf_decl_tag("arg:ctx")))
#define __arg_nonnull __attribute__((btf_decl_tag("arg:nonnull")))
#define __arg_nullable __attribute__((btf_decl_tag("arg:nullable")))
#define __arg_trusted __attribute__((btf_decl_tag("arg:trusted")))
#define __arg_untrusted __attribute__((btf_decl_tag("arg:untrusted")))
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
/* bpf_experimental.h's explicit cast of a variable between address spaces: (var, 0, 1) is cast_kern */
#define bpf_addr_space_cast(var, dst_as, src_as)				\
	asm volatile("%[reg] = addr_space_cast(%[reg], " #dst_as ", " #src_as ")" : [reg] "+r"(var))
#ifndef __BPF_FEATURE_ARENA_CAST
#define __BPF_FEATURE_ARENA_CAST 1 /* the older name some selftests still test for */
#endif
#define NUMA_NO_NODE (-1)
#define __PAGE_SIZE 4096 /* vmlinux.h has it as an enum value */
#define PAGE_SIZE __PAGE_SIZE

/* bpf_helpers.h's and the kernel's small utilities */
#ifndef offsetof
#define offsetof(type, member) __builtin_offsetof(type, member)
#endif
#ifndef container_of
#define container_of(ptr, type, member) ((type *)((void *)(ptr) - offsetof(type, member)))
#endif
/* container_of() for a pointer into the arena: the result stays an __arena pointer */
#define arena_container_of(ptr, type, member)					\
	({ void __arena *___mp = (void __arena *)(ptr);				\
	   (type *)(___mp - offsetof(type, member)); })
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define barrier() asm volatile("" ::: "memory")
/* hide a value from the optimizer, so it is neither assumed nor folded */
#define barrier_var(var) asm volatile("" : "+r"(var))
/* make the compiler keep a value it would otherwise drop */
#define __sink(expr) asm volatile("" : : "g"(expr))
#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, val) ((*(volatile typeof(x) *)&(x)) = (val))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* bpf_misc.h's test_loader annotations: accepted and ignored (the tests state their expectations in Python) */
#define __success
#define __failure
#define __retval(x)
#define __msg(x)
#define __description(x)
#define __log_level(x)
#define __flag(x)
#define __auxiliary
#define __stderr(x)
#define __stdout(x)
#define __arch_x86_64
#define __arch_arm64
#define __arch_s390x
#define __arch_riscv64
#define __naked __attribute__((naked))
/* and its inline-assembly operands */
#define __imm(name) [name] "i"(name)
#define __imm_const(name, expr) [name] "i"(expr)
#define __imm_addr(name) [name] "i"(&name)
#define __imm_ptr(name) [name] "r"(&name)
#define __clobber_all "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "memory"
#define __clobber_common "r0", "r1", "r2", "r3", "r4", "r5", "memory"

/* helpers are called by number (enum bpf_func_id) */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_trace_printk)(const char *fmt, __u32 fmt_size, ...) = (void *)6;
static __u32 (*bpf_get_prandom_u32)(void) = (void *)7;
static __u32 (*bpf_get_smp_processor_id)(void) = (void *)8;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx, __u64 flags) = (void *)181;
static long (*bpf_trace_vprintk)(const char *fmt, __u32 fmt_size, const void *data, __u32 data_len) = (void *)177;
#define BPF_ANY 0
#define BPF_NOEXIST 1
#define BPF_EXIST 2

void __arena *bpf_arena_alloc_pages(void *map, void __arena *addr, __u32 page_cnt, int node_id,
				    __u64 flags) __ksym __weak;
void bpf_arena_free_pages(void *map, void __arena *ptr, __u32 page_cnt) __ksym __weak;
int bpf_arena_reserve_pages(void *map, void __arena *addr, __u32 page_cnt) __ksym __weak;

/* The arena's user address, read from the map as the selftests read struct bpf_arena's field. Here the map is
 * this layout, not the kernel's struct (arena-emu's struct bpf_map stand-in keeps the field at this offset). */
struct bpf_arena {
	__u8 __map[256];
	__u64 user_vm_start;
	__u64 user_vm_end;
};
#define arena_base(map) ((void __arena *)((struct bpf_arena *)(map))->user_vm_start)

/* kernel/bpf/stream.c; bpf_stream_printk() packs its arguments as bpf_helpers.h does */
int bpf_stream_vprintk(int stream_id, const char *fmt__str, const void *args, __u32 len__sz,
		       void *aux__prog) __ksym __weak;
#define ___bpf_nth(_, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, N, ...) N
#define ___bpf_narg(args...) ___bpf_nth(_, ##args, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define ___bpf_put0(a, i)
#define ___bpf_put1(a, i, x) a[i] = (__u64)(x);
#define ___bpf_put2(a, i, x, args...) a[i] = (__u64)(x); ___bpf_put1(a, (i) + 1, args)
#define ___bpf_put3(a, i, x, args...) a[i] = (__u64)(x); ___bpf_put2(a, (i) + 1, args)
#define ___bpf_put4(a, i, x, args...) a[i] = (__u64)(x); ___bpf_put3(a, (i) + 1, args)
#define ___bpf_put5(a, i, x, args...) a[i] = (__u64)(x); ___bpf_put4(a, (i) + 1, args)
#define ___bpf_put6(a, i, x, args...) a[i] = (__u64)(x); ___bpf_put5(a, (i) + 1, args)
#define ___bpf_put7(a, i, x, args...) a[i] = (__u64)(x); ___bpf_put6(a, (i) + 1, args)
#define ___bpf_put8(a, i, x, args...) a[i] = (__u64)(x); ___bpf_put7(a, (i) + 1, args)
#define ___bpf_put9(a, i, x, args...) a[i] = (__u64)(x); ___bpf_put8(a, (i) + 1, args)
#define ___bpf_put10(a, i, x, args...) a[i] = (__u64)(x); ___bpf_put9(a, (i) + 1, args)
#define ___bpf_put11(a, i, x, args...) a[i] = (__u64)(x); ___bpf_put10(a, (i) + 1, args)
#define ___bpf_put12(a, i, x, args...) a[i] = (__u64)(x); ___bpf_put11(a, (i) + 1, args)
#define ___bpf_fill(a, args...) ___bpf_apply(___bpf_put, ___bpf_narg(args))(a, 0, ##args)
/* bpf_printk(): the format in a static array, as bpf_helpers.h builds it; trace_printk() takes three arguments at
 * most, more go to trace_vprintk() in an array */
#define ___bpf_printk_pick(args...) ___bpf_nth(_, ##args, v, v, v, v, v, v, v, v, v, , , , )
#define bpf_printk(fmt, args...) ___bpf_apply(___bpf_printk, ___bpf_printk_pick(args))(fmt, ##args)
#define ___bpf_printk(fmt, args...)						\
	({ static const char ___fmt[] = fmt;					\
	   bpf_trace_printk(___fmt, sizeof(___fmt), ##args); })
#define ___bpf_printkv(fmt, args...)						\
	({ static const char ___fmt[] = fmt;					\
	   unsigned long long ___param[___bpf_narg(args)];			\
	   ___bpf_fill(___param, ##args);					\
	   bpf_trace_vprintk(___fmt, sizeof(___fmt), ___param, sizeof(___param)); })
#define bpf_stream_printk(stream_id, fmt, args...)					\
	({ static const char ___fmt[] = fmt;						\
	   unsigned long long ___param[___bpf_narg(args) + 1];				\
	   ___bpf_fill(___param, ##args);						\
	   bpf_stream_vprintk(stream_id, ___fmt, ___param, ___bpf_narg(args) * 8, NULL); })

/* The open-coded number iterator (kernel/bpf/bpf_iter.c) and bpf_experimental.h's loops over it */
#define BPF_MAX_LOOPS (8 * 1024 * 1024) /* the most turns bpf_iter_num_new() and bpf_loop() take */
struct bpf_iter_num {
	__u64 __opaque[1];
} __attribute__((aligned(8)));
int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __ksym __weak;
int *bpf_iter_num_next(struct bpf_iter_num *it) __ksym __weak;
void bpf_iter_num_destroy(struct bpf_iter_num *it) __ksym __weak;

/* i takes start, start + 1, ..., end - 1; the iterator is destroyed when the loop's scope ends. The (void) use of
 * bpf_iter_num_destroy makes clang emit its BTF, which a cleanup() call alone does not. */
#define bpf_for(i, start, end)								\
	for (struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), \
	     *___once __attribute__((unused)) =						\
		(bpf_iter_num_new(&___it, (start), (end)), (void)bpf_iter_num_destroy, (void *)0); \
	     ({ int *___v = bpf_iter_num_next(&___it);					\
		___v && ((i) = *___v, (i) >= (start) && (i) < (end)); });)
/* cur = each value an iterator of `type` yields: bpf_for_each(num, v, 0, 3) gives v a pointer to 0, 1, 2 */
#define bpf_for_each(type, cur, args...)						\
	for (struct bpf_iter_##type ___it __attribute__((aligned(8), cleanup(bpf_iter_##type##_destroy))), \
	     *___once __attribute__((unused)) =						\
		(bpf_iter_##type##_new(&___it, ##args), (void)bpf_iter_##type##_destroy, (void *)0); \
	     (((cur) = bpf_iter_##type##_next(&___it)));)
/* N turns of a loop without a counter */
#define bpf_repeat(N)									\
	for (struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), \
	     *___once __attribute__((unused)) =						\
		(bpf_iter_num_new(&___it, 0, (N)), (void)bpf_iter_num_destroy, (void *)0); \
	     bpf_iter_num_next(&___it);)

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
/* a statement: leave the enclosing loop once may_goto's budget is spent */
#define cond_break					\
	({ __label__ l_break, l_continue;		\
	asm volatile goto("may_goto %l[l_break]"	\
		      :::: l_break);			\
	goto l_continue;				\
	l_break: break;					\
	l_continue:;					\
	})

#endif
