/*
 * Races between CPUs around the scratch page (DESIGN.md hazards 3 and 5), one program per
 * CPU; pages 1 (hazard 3), 2 (the double fault), 3 (the free race, three CPUs). Kept beside
 * smp.bpf.c because a schedule counts instructions (`2:7`, `1:11`): written by hand, these
 * keep their counts for the README's `explore` examples and tests/test_smp.py.
 * `arena-emu explore` interleaves them; the schedules in the comments reach each outcome.
 */
	BPF_ARENA(arena, 16)
	BPF_KSYM(bpf_kfunc_arena_read_u64)

	.set	PAGE1, ARENA_USER_VM_START + 0x1000
	.set	PAGE2, ARENA_USER_VM_START + 0x2000
	.set	PAGE3, ARENA_USER_VM_START + 0x3000

	.data
h3_allocated:	.quad 0

	.text
/*
 * Hazard 3, CPU 1: a kfunc reads page 1 (the scratch page is mapped and this
 * CPU caches it); then, once CPU 0 says page 1 is allocated (h3_allocated),
 * the program stores 7 to it. Returns 0 when it stored, 1 when it gave up
 * waiting (100 tries), so every completed store comes after the allocation.
 */
SYM_FUNC_START(h3_reader)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$PAGE1, %rdi
	mov	%edi, %edi
	add	%r12, %rdi
	call	bpf_kfunc_arena_read_u64
	mov	$100, %ecx			/* line 34: --schedule '1:@smp.S:34' stops here */
1:	movabs	$h3_allocated, %rax
	cmpq	$0, (%rax)
	jne	2f
	dec	%ecx
	jnz	1b
	mov	$1, %eax
	jmp	3f
2:	movabs	$PAGE1, %rdi
	mov	%edi, %edi
	movq	$7, 0x0(%rdi,%r12,1)
	xor	%eax, %eax
3:	pop	%r12
	leave
	ret
SYM_FUNC_END(h3_reader)
	BPF_PROG(h3_reader)

/* Hazard 3, CPU 0: allocate page 1, then say so. */
SYM_FUNC_START(h3_alloc)
	push	%rbp
	mov	%rsp, %rbp
	movabs	$arena, %rdi
	movabs	$PAGE1, %rsi
	mov	$1, %edx
	mov	$-1, %ecx
	xor	%r8d, %r8d
	call	bpf_arena_alloc_pages
	movabs	$h3_allocated, %rdi
	movq	$1, (%rdi)
	leave
	ret
SYM_FUNC_END(h3_alloc)
	BPF_PROG(h3_alloc)

/* Both CPUs: a kfunc reads page 2. With --schedule '0:@fault' both take the fault. */
SYM_FUNC_START(fault_reader)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$PAGE2, %rdi
	mov	%edi, %edi
	add	%r12, %rdi
	call	bpf_kfunc_arena_read_u64
	pop	%r12
	leave
	ret
SYM_FUNC_END(fault_reader)
	BPF_PROG(fault_reader)

	.data
race_allocated:	.quad 0

	.text
/* The free race, setup (CPU 0): allocate page 3. */
SYM_FUNC_START(race_setup)
	push	%rbp
	mov	%rsp, %rbp
	movabs	$arena, %rdi
	movabs	$PAGE3, %rsi
	mov	$1, %edx
	mov	$-1, %ecx
	xor	%r8d, %r8d
	call	bpf_arena_alloc_pages
	leave
	ret
SYM_FUNC_END(race_setup)
	BPF_PROG(race_setup)

/* The free race, CPU 0: free page 3. */
SYM_FUNC_START(race_free)
	push	%rbp
	mov	%rsp, %rbp
	movabs	$arena, %rdi
	movabs	$PAGE3, %rsi
	mov	$1, %edx
	call	bpf_arena_free_pages
	leave
	ret
SYM_FUNC_END(race_free)
	BPF_PROG(race_free)

/* The free race, CPU 1: allocate page 3 again; when that works, say so (race_allocated). */
SYM_FUNC_START(race_alloc)
	push	%rbp
	mov	%rsp, %rbp
	movabs	$arena, %rdi
	movabs	$PAGE3, %rsi
	mov	$1, %edx
	mov	$-1, %ecx
	xor	%r8d, %r8d
	call	bpf_arena_alloc_pages
	test	%rax, %rax
	jz	1f
	movabs	$race_allocated, %rdi
	movq	$1, (%rdi)
1:	leave
	ret
SYM_FUNC_END(race_alloc)
	BPF_PROG(race_alloc)

/*
 * The free race, CPU 2: store 1 to page 3, so this CPU caches its translation
 * (a store: Unicorn walks the tables again for the first store through an entry
 * a load filled, where hardware would not); then, once CPU 1 says it allocated
 * page 3 again, store 7 to it. Returns 0 when it stored 7, 1 when it gave up.
 * --schedule '2:7 0:@free-before-flush': CPU 0's free has put page 3 back in
 * the allocator but not flushed any TLB; CPU 1 allocates it; CPU 2's 7 goes
 * through its stale translation to the old page, which the free then releases.
 */
SYM_FUNC_START(race_access)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$PAGE3, %rdi
	mov	%edi, %edi
	movq	$1, 0x0(%rdi,%r12,1)
	mov	$100, %ecx
1:	movabs	$race_allocated, %rax
	cmpq	$0, (%rax)
	jne	2f
	dec	%ecx
	jnz	1b
	mov	$1, %eax
	jmp	3f
2:	movq	$7, 0x0(%rdi,%r12,1)
	xor	%eax, %eax
3:	pop	%r12
	leave
	ret
SYM_FUNC_END(race_access)
	BPF_PROG(race_access)
