/*
 * Kernel functions touching arena pages no one allocated, called from BPF programs: the
 * scenarios of the scratch-page work (dc11a4dba246, f64c723741c9) and its hazards. The demo
 * and `compare` run scratch.bpf.c; this assembly stays because the debugger's, REPL's and gdb
 * server's tests step through its exact instructions, and touch_pages(n) (bench/) takes a
 * register argument. Arena pointers handed to kfuncs are rebased as the verifier does for an
 * *__arena argument: `mov %eXX, %eXX; add %r12, %rXX` (kern_vm_start + (u32)p).
 * Page k of the arena is at user address ARENA_USER_VM_START + k * 4096.
 */
	BPF_ARENA(arena, 1024)
	BPF_KSYM(bpf_kfunc_arena_read_u64)
	BPF_KSYM(bpf_kfunc_arena_write_u64)
	BPF_KSYM(bpf_kfunc_arena_read_far)
	BPF_KSYM(bpf_kfunc_arena_read_below)
	BPF_KSYM(bpf_kfunc_arena_copy)
	BPF_KSYM(bpf_kfunc_arena_touch_pages)
	BPF_KSYM(bpf_kfunc_arena_list_sum)

	.set	PAGE1, ARENA_USER_VM_START + 0x1000
	.set	PAGE2, ARENA_USER_VM_START + 0x2000

	.text
/*
 * arena_kfunc.c arena_arg_unpopulated: a 2-page object whose second page was
 * never allocated; the kfunc reads it. Returns what the kfunc read.
 */
SYM_FUNC_START(arena_arg_unpopulated)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	push	%rbx
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$arena, %rdi
	xor	%esi, %esi
	mov	$1, %edx
	mov	$-1, %ecx
	xor	%r8d, %r8d
	call	bpf_arena_alloc_pages		/* page 0 only */
	mov	%eax, %ebx
	movq	$1, 0x0(%rbx,%r12,1)
	lea	0x1000(%rbx), %edi		/* val + PAGE_SIZE, rebased */
	add	%r12, %rdi
	call	bpf_kfunc_arena_read_u64
	pop	%rbx
	pop	%r12
	leave
	ret
SYM_FUNC_END(arena_arg_unpopulated)
	BPF_PROG(arena_arg_unpopulated)

/*
 * Hazard 1: a kfunc reads page 1, then the program allocates page 1 there,
 * frees it and allocates it again. Returns bit 0: the first allocation
 * succeeded, bit 1: the second did, bit 2: the new page did not read zero.
 */
SYM_FUNC_START(alloc_over_scratch)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	push	%rbx
	push	%r13
	movabs	$ARENA_KERN_VM_START, %r12
	xor	%r13d, %r13d			/* r7 = result bits */
	movabs	$PAGE1, %rdi
	mov	%edi, %edi
	add	%r12, %rdi
	call	bpf_kfunc_arena_read_u64
	movabs	$arena, %rdi
	movabs	$PAGE1, %rsi
	mov	$1, %edx
	mov	$-1, %ecx
	xor	%r8d, %r8d
	call	bpf_arena_alloc_pages
	test	%rax, %rax
	jz	1f
	or	$1, %r13
	movabs	$arena, %rdi
	mov	%rax, %rsi
	mov	$1, %edx
	call	bpf_arena_free_pages
1:	movabs	$arena, %rdi
	movabs	$PAGE1, %rsi
	mov	$1, %edx
	mov	$-1, %ecx
	xor	%r8d, %r8d
	call	bpf_arena_alloc_pages
	test	%rax, %rax
	jz	2f
	or	$2, %r13
	mov	%eax, %ebx
	mov	0x0(%rbx,%r12,1), %rax
	test	%rax, %rax
	jz	2f
	or	$4, %r13
2:	mov	%r13, %rax
	pop	%r13
	pop	%rbx
	pop	%r12
	leave
	ret
SYM_FUNC_END(alloc_over_scratch)
	BPF_PROG(alloc_over_scratch)

/*
 * Hazard 2: a kfunc writes 0x41 through page 1; the program frees page 1 (over
 * the scratch PTE); a kfunc then reads through page 2. Returns what it read:
 * 0x41 means the scratch page outlived the free, as the merged code intends.
 */
SYM_FUNC_START(free_over_scratch)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$PAGE1, %rdi
	mov	%edi, %edi
	add	%r12, %rdi
	mov	$0x41, %esi
	call	bpf_kfunc_arena_write_u64
	movabs	$arena, %rdi
	movabs	$PAGE1, %rsi
	mov	$1, %edx
	call	bpf_arena_free_pages
	movabs	$PAGE2, %rdi
	mov	%edi, %edi
	add	%r12, %rdi
	call	bpf_kfunc_arena_read_u64
	pop	%r12
	leave
	ret
SYM_FUNC_END(free_over_scratch)
	BPF_PROG(free_over_scratch)

/*
 * Hazard 4: a kfunc writes 0x41 through page 1, another reads through page 2.
 * Returns what it read: 0x41 is the aliasing of one shared page.
 */
SYM_FUNC_START(scratch_aliasing)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$PAGE1, %rdi
	mov	%edi, %edi
	add	%r12, %rdi
	mov	$0x41, %esi
	call	bpf_kfunc_arena_write_u64
	movabs	$PAGE2, %rdi
	mov	%edi, %edi
	add	%r12, %rdi
	call	bpf_kfunc_arena_read_u64
	pop	%r12
	leave
	ret
SYM_FUNC_END(scratch_aliasing)
	BPF_PROG(scratch_aliasing)

/*
 * After recovery the program's own accesses to the page are not caught: a
 * kfunc reads page 1, then the program stores 7 there and loads it back
 * (no fault, no report: the store went to the scratch page). Returns the load.
 */
SYM_FUNC_START(not_caught_after_recovery)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$PAGE1, %rdi
	mov	%edi, %edi
	add	%r12, %rdi
	call	bpf_kfunc_arena_read_u64
	movabs	$PAGE1, %rdi
	mov	%edi, %edi
	movq	$7, 0x0(%rdi,%r12,1)
	mov	0x0(%rdi,%r12,1), %rax
	pop	%r12
	leave
	ret
SYM_FUNC_END(not_caught_after_recovery)
	BPF_PROG(not_caught_after_recovery)

/*
 * Hazard 3 on one CPU: a kfunc reads page 1 (this CPU now caches the scratch
 * translation), the program allocates page 1 (scratch replaced, no TLB flush
 * on x86) and stores 7 to it, then a kfunc reads page 2, also scratch.
 * Returns what that read: 7 means the store went to the scratch page through
 * the stale translation and the new page never got it.
 */
SYM_FUNC_START(lost_write)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$PAGE1, %rdi
	mov	%edi, %edi
	add	%r12, %rdi
	call	bpf_kfunc_arena_read_u64
	movabs	$arena, %rdi
	movabs	$PAGE1, %rsi
	mov	$1, %edx
	mov	$-1, %ecx
	xor	%r8d, %r8d
	call	bpf_arena_alloc_pages
	movabs	$PAGE1, %rdi
	mov	%edi, %edi
	movq	$7, 0x0(%rdi,%r12,1)
	movabs	$PAGE2, %rdi
	mov	%edi, %edi
	add	%r12, %rdi
	call	bpf_kfunc_arena_read_u64
	pop	%r12
	leave
	ret
SYM_FUNC_END(lost_write)
	BPF_PROG(lost_write)

/* Two kfunc reads of one page: one scratch install, one report. Returns their sum. */
SYM_FUNC_START(same_page_twice)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	push	%rbx
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$PAGE1, %rdi
	mov	%edi, %edi
	add	%r12, %rdi
	call	bpf_kfunc_arena_read_u64
	mov	%rax, %rbx
	movabs	$PAGE1 + 8, %rdi
	mov	%edi, %edi
	add	%r12, %rdi
	call	bpf_kfunc_arena_read_u64
	add	%rbx, %rax
	pop	%rbx
	pop	%r12
	leave
	ret
SYM_FUNC_END(same_page_twice)
	BPF_PROG(same_page_twice)

/* A kfunc reads just below arena offset 0: the lower half-guard. */
SYM_FUNC_START(lower_guard)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	mov	%r12, %rdi			/* kern_vm_start + (u32)0 */
	call	bpf_kfunc_arena_read_below
	pop	%r12
	leave
	ret
SYM_FUNC_END(lower_guard)
	BPF_PROG(lower_guard)

/* A kfunc reads 32 KiB - 8 past the last page of the 4 GiB window: the upper half-guard. */
SYM_FUNC_START(upper_guard)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	mov	$0xfffff000, %edi
	add	%r12, %rdi
	call	bpf_kfunc_arena_read_far
	pop	%r12
	leave
	ret
SYM_FUNC_END(upper_guard)
	BPF_PROG(upper_guard)

/*
 * `rep movsb` from three allocated pages (filled with 1, 2, 3) to pages 4-6,
 * never allocated. Returns the first word of page 4 as the program then reads it.
 */
SYM_FUNC_START(copy_to_unallocated)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	push	%rbx
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$arena, %rdi
	xor	%esi, %esi
	mov	$3, %edx
	mov	$-1, %ecx
	xor	%r8d, %r8d
	call	bpf_arena_alloc_pages		/* pages 0-2 */
	mov	%eax, %ebx
	movabs	$0x0101010101010101, %rax
	mov	%rax, 0x0(%rbx,%r12,1)
	shl	$1, %rax
	mov	%rax, 0x1000(%rbx,%r12,1)
	movabs	$0x0303030303030303, %rax
	mov	%rax, 0x2000(%rbx,%r12,1)
	lea	0x4000(%rbx), %edi		/* dst: page 4, rebased */
	add	%r12, %rdi
	mov	%ebx, %esi			/* src: page 0, rebased */
	add	%r12, %rsi
	mov	$0x3000, %edx
	call	bpf_kfunc_arena_copy
	mov	0x4000(%rbx,%r12,1), %rax
	pop	%rbx
	pop	%r12
	leave
	ret
SYM_FUNC_END(copy_to_unallocated)
	BPF_PROG(copy_to_unallocated)

/* u64 touch_pages(u64 n): a kfunc reads one byte from each of pages 1..n (none allocated). */
SYM_FUNC_START(touch_pages)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	mov	%rdi, %rsi
	movabs	$PAGE1, %rdi
	mov	%edi, %edi
	add	%r12, %rdi
	call	bpf_kfunc_arena_touch_pages
	pop	%r12
	leave
	ret
SYM_FUNC_END(touch_pages)
	BPF_PROG(touch_pages)

/* u64 kfunc_list_sum(void): build a 3-node list in page 0 and have a kfunc walk it. */
SYM_FUNC_START(kfunc_list_sum)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	push	%rbx
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$arena, %rdi
	xor	%esi, %esi
	mov	$1, %edx
	mov	$-1, %ecx
	xor	%r8d, %r8d
	call	bpf_arena_alloc_pages
	mov	%rax, %rbx			/* r6 = node 0, a user pointer */
	mov	%eax, %edi
	lea	16(%rbx), %rax
	mov	%rax, 0x0(%rdi,%r12,1)
	movq	$1, 0x8(%rdi,%r12,1)
	lea	32(%rbx), %rax
	mov	%rax, 0x10(%rdi,%r12,1)
	movq	$2, 0x18(%rdi,%r12,1)
	movq	$0, 0x20(%rdi,%r12,1)
	movq	$3, 0x28(%rdi,%r12,1)
	add	%r12, %rdi
	movabs	$arena, %rsi
	call	bpf_kfunc_arena_list_sum
	pop	%rbx
	pop	%r12
	leave
	ret
SYM_FUNC_END(kfunc_list_sum)
	BPF_PROG(kfunc_list_sum)
