/*
 * A linked list in the arena, after tools/testing/selftests/bpf/progs/arena_list.c.
 * struct node { struct node __arena *next; u64 value; } - 16 bytes; `next`
 * holds a user-space pointer (cast_user), 0 ends the list, and a walk turns
 * each one back into an arena offset (cast_kern, a 32-bit mov). User space can build
 * the list through its own mapping of the arena and BPF walks it, as the selftest does.
 * Kept beside arena_list.bpf.c: here arena_list_build(n) and arena_list_sum(head) take
 * register arguments, as the README's and the plugin docs' examples call them.
 */
	BPF_ARENA(arena, 16)

	.text
/*
 * u64 arena_list_build(u64 n): one page, nodes 0..n-1 with value i + 1,
 * node i linked to node i + 1; returns the head (a user pointer), 0 if the
 * allocation fails or n is 0 or more than fit in a page.
 */
SYM_FUNC_START(arena_list_build)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	push	%rbx
	push	%r13
	push	%r14
	movabs	$ARENA_KERN_VM_START, %r12
	mov	%rdi, %r13			/* r7 = n */
	xor	%eax, %eax
	test	%r13, %r13
	jz	3f
	cmp	$256, %r13
	ja	3f
	movabs	$arena, %rdi
	xor	%esi, %esi
	mov	$1, %edx
	mov	$-1, %ecx
	xor	%r8d, %r8d
	call	bpf_arena_alloc_pages
	test	%rax, %rax
	jz	3f
	mov	%rax, %r14			/* r8 = head, user pointer */
	xor	%ebx, %ebx			/* r6 = i */
1:	mov	%rbx, %rdx
	shl	$4, %rdx
	add	%r14, %rdx			/* r3 = &node[i], user pointer */
	lea	1(%rbx), %rcx			/* r4 = i + 1 */
	mov	%rdx, %rax
	add	$16, %rax			/* r0 = &node[i + 1] */
	cmp	%r13, %rcx
	jb	2f
	xor	%eax, %eax			/* the last node: next = NULL */
2:	mov	%edx, %edx			/* cast_kern */
	mov	%rax, 0x0(%rdx,%r12,1)		/* node->next */
	mov	%rcx, 0x8(%rdx,%r12,1)		/* node->value = i + 1 */
	mov	%rcx, %rbx
	cmp	%r13, %rbx
	jb	1b
	mov	%r14, %rax
3:	pop	%r14
	pop	%r13
	pop	%rbx
	pop	%r12
	leave
	ret
SYM_FUNC_END(arena_list_build)
	BPF_PROG(arena_list_build)

/*
 * u64 arena_list_sum(struct node __arena *head): the sum of the values. A
 * next pointer into an unallocated page reads as a node of zeros (the JIT's
 * fixup clears the destination), so the walk ends there.
 */
SYM_FUNC_START(arena_list_sum)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	push	%rbx
	movabs	$ARENA_KERN_VM_START, %r12
	mov	%rdi, %rbx			/* r6 = head */
	xor	%eax, %eax
1:	test	%rbx, %rbx
	jz	2f
	mov	%ebx, %ebx			/* cast_kern */
	mov	0x8(%rbx,%r12,1), %rdx		/* r3 = node->value */
	add	%rdx, %rax
	mov	0x0(%rbx,%r12,1), %rbx		/* r6 = node->next */
	jmp	1b
2:	pop	%rbx
	pop	%r12
	leave
	ret
SYM_FUNC_END(arena_list_sum)
	BPF_PROG(arena_list_sum)
