/*
 * BPF programs calling the C kfuncs of kernel_stubs/arena_kfuncs_c.c (`arena-emu run
 * kernel_stubs/arena_kfuncs_c.c bpf_progs/arena_kfunc_c.S ...`). Kept beside arena_kfunc_c.bpf.c:
 * the kernel-C and gdb symbol-file tests step through and name this exact code.
 */
	BPF_ARENA(arena, 16)
	BPF_KSYM(bpf_kfunc_c_arena_read_u64)
	BPF_KSYM(bpf_kfunc_c_arena_write_u64)
	BPF_KSYM(bpf_kfunc_c_arena_copy)
	BPF_KSYM(bpf_kfunc_c_arena_list_sum)

	.text
/* page 0 allocated and 7 stored there; the C kfunc reads page 0 (7) and page 1 (never
 * allocated: recovered under the scratch policies, an oops before them). Returns
 * page 0's value plus what page 1 read. */
SYM_FUNC_START(c_kfunc_read_unallocated)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	push	%rbx
	push	%r13
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$arena, %rdi
	xor	%esi, %esi
	mov	$1, %edx
	mov	$-1, %ecx
	xor	%r8d, %r8d
	call	bpf_arena_alloc_pages
	mov	%eax, %ebx
	movq	$7, 0x0(%rbx,%r12,1)
	mov	%ebx, %edi
	add	%r12, %rdi
	call	bpf_kfunc_c_arena_read_u64
	mov	%rax, %r13
	lea	0x1000(%rbx), %edi
	add	%r12, %rdi
	call	bpf_kfunc_c_arena_read_u64
	add	%r13, %rax
	pop	%r13
	pop	%rbx
	pop	%r12
	leave
	ret
SYM_FUNC_END(c_kfunc_read_unallocated)
	BPF_PROG(c_kfunc_read_unallocated)

/* a list of three nodes (values 1, 2, 3) built by the program on page 0, summed by the C
 * kfunc, which follows each node's user pointer with bpf_arena_map_kern_vm_start() */
SYM_FUNC_START(c_kfunc_list_sum)
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
	mov	%rax, %rbx			/* user address of node 0 */
	lea	0x10(%rax), %rdx
	mov	%ebx, %esi
	mov	%rdx, 0x0(%rsi,%r12,1)		/* node0.next = &node1 */
	movq	$1, 0x8(%rsi,%r12,1)
	lea	0x20(%rbx), %rdx
	lea	0x10(%rbx), %esi
	mov	%rdx, 0x0(%rsi,%r12,1)		/* node1.next = &node2 */
	movq	$2, 0x8(%rsi,%r12,1)
	lea	0x20(%rbx), %esi
	movq	$0, 0x0(%rsi,%r12,1)
	movq	$3, 0x8(%rsi,%r12,1)
	mov	%ebx, %edi
	add	%r12, %rdi
	movabs	$arena, %rsi
	call	bpf_kfunc_c_arena_list_sum
	pop	%rbx
	pop	%r12
	leave
	ret
SYM_FUNC_END(c_kfunc_list_sum)
	BPF_PROG(c_kfunc_list_sum)

/* the C kfunc copies 16 bytes from page 0 (0x41 each) to page 2, never allocated: a write
 * fault in memcpy (kernel_stubs/string.S) called from C. Returns what page 0 holds after. */
SYM_FUNC_START(c_kfunc_copy_to_unallocated)
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
	mov	%eax, %ebx
	movabs	$0x4141414141414141, %rax
	mov	%rax, 0x0(%rbx,%r12,1)
	mov	%rax, 0x8(%rbx,%r12,1)
	lea	0x2000(%rbx), %edi
	add	%r12, %rdi
	mov	%ebx, %esi
	add	%r12, %rsi
	mov	$16, %edx
	call	bpf_kfunc_c_arena_copy
	mov	0x0(%rbx,%r12,1), %rax
	pop	%rbx
	pop	%r12
	leave
	ret
SYM_FUNC_END(c_kfunc_copy_to_unallocated)
	BPF_PROG(c_kfunc_copy_to_unallocated)
