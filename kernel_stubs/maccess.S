/*
 * copy_from_kernel_nofault(dst, src, size) - copy from kernel memory that may
 * not be mapped.  Returns 0, or -EFAULT (-14) as soon as a load faults.
 *
 * After mm/maccess.c: copy 8 bytes at a time, then 1, each load through
 * __get_kernel_nofault(), whose load carries an _ASM_EXTABLE entry that sends
 * a fault to the Efault label instead of page_fault_oops().
 */
	.text
SYM_FUNC_START(copy_from_kernel_nofault)
	push	%rbp
	mov	%rsp, %rbp
1:	cmp	$8, %rdx
	jb	3f
2:	mov	(%rsi), %rax
	_ASM_EXTABLE(2b, 6f)
	mov	%rax, (%rdi)
	add	$8, %rsi
	add	$8, %rdi
	sub	$8, %rdx
	jmp	1b
3:	test	%rdx, %rdx
	jz	5f
4:	movb	(%rsi), %al
	_ASM_EXTABLE(4b, 6f)
	movb	%al, (%rdi)
	inc	%rsi
	inc	%rdi
	dec	%rdx
	jnz	4b
5:	xor	%eax, %eax
	pop	%rbp
	ret
6:	mov	$-14, %rax		/* -EFAULT */
	pop	%rbp
	ret
SYM_FUNC_END(copy_from_kernel_nofault)

/*
 * get_kernel_nofault_u64(src) - the single load of __get_kernel_nofault():
 * returns *src, or 0 when it faults (the fixup leaves %rax cleared).
 */
SYM_FUNC_START(get_kernel_nofault_u64)
	xor	%eax, %eax
1:	mov	(%rdi), %rax
2:	ret
	_ASM_EXTABLE(1b, 2b)
SYM_FUNC_END(get_kernel_nofault_u64)
