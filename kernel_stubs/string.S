/*
 * memcpy and memset, the two shapes of arch/x86/lib/: memcpy as the
 * FSRM form (`rep movsb`, which restarts after a fault with its partial
 * progress in %rsi/%rdi/%rcx), memset as memset_orig's store loop.
 * Neither has an exception-table entry: a fault in them is an oops
 * unless something in page_fault_oops() handles it.
 */
	.text
/* void *memcpy(void *dst, const void *src, size_t len) */
SYM_FUNC_START(memcpy)
	mov	%rdi, %rax
	mov	%rdx, %rcx
	rep movsb
	ret
SYM_FUNC_END(memcpy)

/* void *memset(void *dst, int c, size_t len): 8 bytes a store, then the tail */
SYM_FUNC_START(memset)
	push	%rbp
	mov	%rsp, %rbp
	mov	%rdi, %r9		/* return value */
	movzbl	%sil, %ecx
	movabs	$0x0101010101010101, %rax
	imul	%rcx, %rax		/* the byte in all eight lanes */
	mov	%rdx, %rcx
	shr	$3, %rcx
	jz	2f
1:	mov	%rax, (%rdi)
	add	$8, %rdi
	dec	%rcx
	jnz	1b
2:	and	$7, %edx
	jz	4f
3:	movb	%al, (%rdi)
	inc	%rdi
	dec	%edx
	jnz	3b
4:	mov	%r9, %rax
	pop	%rbp
	ret
SYM_FUNC_END(memset)
