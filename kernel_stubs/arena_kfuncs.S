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
