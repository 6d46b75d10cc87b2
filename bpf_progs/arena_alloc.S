/*
 * Allocation and use after free, after verifier_arena.c's basic_alloc1/2
 * (tools/testing/selftests/bpf/progs): the arena is placed at the top of a
 * 4 GiB window, 2 pages, so its pages sit at low32 0xffffe000 and 0xfffff000.
 *
 * bpf_arena_alloc_pages(map, addr, page_cnt, node_id, flags) returns a user
 * pointer; cast_kern (a 32-bit mov) keeps its offset for [src + r12 + off].
 */
	BPF_ARENA(arena, 2, 0x100000000 - 2 * 4096)

	.text
/*
 * u64 alloc_write_free_read(void *ctx):
 *	page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
 *	*page = 42; before = *page;
 *	bpf_arena_free_pages(&arena, page, 1);
 *	after = *page;			// use after free: reads 0
 *	return before << 32 | after;
 */
SYM_FUNC_START(alloc_write_free_read)
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
	mov	%rax, %rbx			/* r6 = page (user pointer) */
	mov	%ebx, %edi			/* cast_kern */
	movq	$42, 0x0(%rdi,%r12,1)
	mov	0x0(%rdi,%r12,1), %r13		/* r7 = before */
	movabs	$arena, %rdi
	mov	%rbx, %rsi
	mov	$1, %edx
	call	bpf_arena_free_pages
	mov	%ebx, %edi
	mov	0x0(%rdi,%r12,1), %rax		/* r0 = after: faults, cleared */
	shl	$32, %r13
	or	%r13, %rax
	pop	%r13
	pop	%rbx
	pop	%r12
	leave
	ret
SYM_FUNC_END(alloc_write_free_read)
	BPF_PROG(alloc_write_free_read)

/*
 * u64 two_pages_and_outside(void *ctx), basic_alloc2 with the top-of-window arena:
 *	page = bpf_arena_alloc_pages(&arena, NULL, 2, NUMA_NO_NODE, 0);
 *	page[0] = 1; page[1024] = 2;		// both pages, 4 KiB apart
 *	page[-1] = 3; page[2048] = 4;		// just outside: dropped
 *	return page[-1] + page[2048] << 8 | page[0] << 16 | page[1024] << 24;
 * With u32 elements, page[-1] is the byte below the arena's first page
 * (low32 0xffffdffc) and page[2048] the first one past its last page
 * (low32 0x0: off 0x2000 carries the address past 4 GiB, kern_vm_start +
 * 0x100000000, the upper guard). Both are fixed up; the program returns
 * 0x02010000.
 */
SYM_FUNC_START(two_pages_and_outside)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	push	%rbx
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$arena, %rdi
	xor	%esi, %esi
	mov	$2, %edx
	mov	$-1, %ecx
	xor	%r8d, %r8d
	call	bpf_arena_alloc_pages
	mov	%eax, %ebx			/* r6 = cast_kern(page) */
	movl	$1, 0x0(%rbx,%r12,1)
	movl	$2, 0x1000(%rbx,%r12,1)
	movl	$3, -0x4(%rbx,%r12,1)
	movl	$4, 0x2000(%rbx,%r12,1)
	mov	-0x4(%rbx,%r12,1), %eax
	mov	0x2000(%rbx,%r12,1), %edx
	shl	$8, %edx
	or	%edx, %eax
	mov	0x0(%rbx,%r12,1), %edx
	shl	$16, %edx
	or	%edx, %eax
	mov	0x1000(%rbx,%r12,1), %edx
	shl	$24, %edx
	or	%edx, %eax
	pop	%rbx
	pop	%r12
	leave
	ret
SYM_FUNC_END(two_pages_and_outside)
	BPF_PROG(two_pages_and_outside)
