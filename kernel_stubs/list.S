/*
 * Walking a list through pointers, as kernel code does with
 * include/linux/list.h:  struct list_head { next, prev }, circular, with the
 * entry's payload after it.  No exception-table entries: a bad `next`
 * pointer is a kernel oops.
 */
	.text
/* size_t list_count(struct list_head *head) */
SYM_FUNC_START(list_count)
	push	%rbp
	mov	%rsp, %rbp
	xor	%eax, %eax
	mov	(%rdi), %rdx		/* pos = head->next */
1:	cmp	%rdi, %rdx
	je	2f
	inc	%rax
	mov	(%rdx), %rdx		/* pos = pos->next */
	jmp	1b
2:	pop	%rbp
	ret
SYM_FUNC_END(list_count)

/* u64 list_sum(struct list_head *head): sum of the u64 after each list_head */
SYM_FUNC_START(list_sum)
	push	%rbp
	mov	%rsp, %rbp
	xor	%eax, %eax
	mov	(%rdi), %rdx
1:	cmp	%rdi, %rdx
	je	2f
	add	16(%rdx), %rax
	mov	(%rdx), %rdx
	jmp	1b
2:	pop	%rbp
	ret
SYM_FUNC_END(list_sum)

/* A static three-entry list, built by the linker: values 10, 20, 30. */
	.data
	.globl	demo_list
demo_list:
	.quad	node_a, node_c		/* head: next, prev */
node_a:	.quad	node_b, demo_list, 10
node_b:	.quad	node_c, node_a, 20
node_c:	.quad	demo_list, node_b, 30
