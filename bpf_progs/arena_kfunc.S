/*
 * A BPF program hands an arena pointer to a kernel function, after
 * arena_kfunc.c (arena_arg_forms, arena_arg_unpopulated). The verifier
 * rebases an *__arena argument to kern_vm_start + (u32)arg before the call;
 * the kfunc then reads it as plain kernel memory, with no exception table.
 * A 2-page arena; only the first page is allocated.
 */
	BPF_ARENA(arena, 2)
	BPF_KSYM(bpf_kfunc_arena_read_u64)

	.text
/* u64 kfunc_read_allocated(void *ctx): page = alloc(1); *page = 0x1234; return bpf_kfunc_arena_read_u64(page); */
SYM_FUNC_START(kfunc_read_allocated)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$arena, %rdi
	xor	%esi, %esi
	mov	$1, %edx
	mov	$-1, %ecx
	xor	%r8d, %r8d
	call	bpf_arena_alloc_pages
	mov	%eax, %edi			/* cast_kern */
	movq	$0x1234, 0x0(%rdi,%r12,1)
	mov	%eax, %edi			/* the verifier's rebase of p__arena: */
	add	%r12, %rdi			/*   kern_vm_start + (u32)arg */
	call	bpf_kfunc_arena_read_u64
	pop	%r12
	leave
	ret
SYM_FUNC_END(kfunc_read_allocated)
	BPF_PROG(kfunc_read_allocated)

/* u64 kfunc_read_unallocated(void *ctx): return bpf_kfunc_arena_read_u64(user_vm_start + 4096); the kfunc faults */
SYM_FUNC_START(kfunc_read_unallocated)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$ARENA_USER_VM_START + 0x1000, %rdi
	mov	%edi, %edi
	add	%r12, %rdi
	call	bpf_kfunc_arena_read_u64
	pop	%r12
	leave
	ret
SYM_FUNC_END(kfunc_read_unallocated)
	BPF_PROG(kfunc_read_unallocated)
