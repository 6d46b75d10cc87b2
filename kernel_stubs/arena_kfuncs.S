/*
 * Kernel functions that take __arena pointers. By the time they run the
 * pointer is a kernel address: for a kfunc argument named *__arena the
 * verifier rebases the program's 32-bit arena pointer to
 * kern_vm_start + (u32)arg before the call (the program does it with
 * `mov %eXX, %eXX; add %r12, %rXX`). They have no exception-table entries:
 * an unallocated page is a kernel fault, and what happens then is the
 * fault path's policy.
 */
	.text
/* u64 bpf_kfunc_arena_read_u64(u64 *p__arena) */
SYM_FUNC_START(bpf_kfunc_arena_read_u64)
	push	%rbp
	mov	%rsp, %rbp
	mov	(%rdi), %rax
	pop	%rbp
	ret
SYM_FUNC_END(bpf_kfunc_arena_read_u64)

/* void bpf_kfunc_arena_write_u64(u64 *p__arena, u64 val) */
SYM_FUNC_START(bpf_kfunc_arena_write_u64)
	push	%rbp
	mov	%rsp, %rbp
	mov	%rsi, (%rdi)
	pop	%rbp
	ret
SYM_FUNC_END(bpf_kfunc_arena_write_u64)

/* u64 bpf_kfunc_arena_read_far(u64 *p__arena): the word 32 KiB - 8 past p, the farthest
 * a kfunc may go past an arena pointer it was handed (Documentation/bpf/kfuncs.rst) */
SYM_FUNC_START(bpf_kfunc_arena_read_far)
	push	%rbp
	mov	%rsp, %rbp
	mov	0x7ff8(%rdi), %rax
	pop	%rbp
	ret
SYM_FUNC_END(bpf_kfunc_arena_read_far)

/* u64 bpf_kfunc_arena_read_below(u64 *p__arena): the word just below p; for an arena
 * offset of 0 that is the lower half of the guard, which nothing recovers */
SYM_FUNC_START(bpf_kfunc_arena_read_below)
	push	%rbp
	mov	%rsp, %rbp
	mov	-8(%rdi), %rax
	pop	%rbp
	ret
SYM_FUNC_END(bpf_kfunc_arena_read_below)

/* void *bpf_kfunc_arena_copy(void *dst__arena, const void *src__arena, u64 len): memcpy
 * with `rep movsb`, which restarts after a fault with its partial progress */
SYM_FUNC_START(bpf_kfunc_arena_copy)
	push	%rbp
	mov	%rsp, %rbp
	mov	%rdi, %rax
	mov	%rdx, %rcx
	rep movsb
	pop	%rbp
	ret
SYM_FUNC_END(bpf_kfunc_arena_copy)

/* u64 bpf_kfunc_arena_touch_pages(u8 *p__arena, u64 n): read one byte of each of n pages
 * from p on; returns their sum */
SYM_FUNC_START(bpf_kfunc_arena_touch_pages)
	push	%rbp
	mov	%rsp, %rbp
	xor	%eax, %eax
	test	%rsi, %rsi
	jz	2f
1:	movzbl	(%rdi), %edx
	add	%rdx, %rax
	add	$0x1000, %rdi
	dec	%rsi
	jnz	1b
2:	pop	%rbp
	ret
SYM_FUNC_END(bpf_kfunc_arena_touch_pages)

/* u64 bpf_kfunc_arena_list_sum(struct node *head__arena, void *p__map): walk a list
 * built in the arena (struct node { next, value }, next a user pointer, 0 ends it) and
 * sum the values. Each next pointer is rebased with the arena's kern_vm_start, which
 * kernel code gets from the map (bpf_arena_map_kern_vm_start()). */
SYM_FUNC_START(bpf_kfunc_arena_list_sum)
	push	%rbp
	mov	%rsp, %rbp
	push	%rbx
	push	%r12
	mov	%rdi, %rbx
	mov	%rsi, %rdi
	call	bpf_arena_map_kern_vm_start
	mov	%rax, %r12
	xor	%eax, %eax
1:	add	8(%rbx), %rax
	mov	(%rbx), %rbx
	test	%rbx, %rbx
	jz	2f
	mov	%ebx, %ebx
	add	%r12, %rbx
	jmp	1b
2:	pop	%r12
	pop	%rbx
	pop	%rbp
	ret
SYM_FUNC_END(bpf_kfunc_arena_list_sum)
