/*
 * The kernel's arena fault reports (tools/testing/selftests/bpf/progs/stream.c):
 * a load and a store at user_vm_start + 0x7fff, a page no one allocated, and
 * a store from a subprogram, fixed up by ex_handler_bpf() and reported to the main
 * program's stderr; the programs return 0. Kept beside stream.bpf.c as the JIT-style
 * dialect's example (README, "BPF programs"), whose reports quote these lines.
 * As the x86 JIT emits them: R1 = rdi, R0 = rax, kern_vm_start in r12, and
 * every arena pointer a 32-bit offset (cast_kern is a 32-bit mov).
 */
	BPF_ARENA(arena, 100)

	.text
/* int stream_arena_read_fault(void *ctx): return *(u32 __arena *)(user_vm_start + 0x7fff); */
SYM_FUNC_START(stream_arena_read_fault)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$ARENA_USER_VM_START + 0x7fff, %rdi	/* fault_addr */
	mov	%edi, %edi				/* cast_kern */
	mov	0x0(%rdi,%r12,1), %eax			/* r0 = *(u32 *)(r1 + 0) */
	pop	%r12
	leave
	ret
SYM_FUNC_END(stream_arena_read_fault)
	BPF_PROG(stream_arena_read_fault)

/* int stream_arena_write_fault(void *ctx): *(u32 __arena *)(user_vm_start + 0x7fff) = 1; return 0; */
SYM_FUNC_START(stream_arena_write_fault)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$ARENA_USER_VM_START + 0x7fff, %rdi
	mov	%edi, %edi
	movl	$1, 0x0(%rdi,%r12,1)			/* *(u32 *)(r1 + 0) = 1 */
	xor	%eax, %eax
	pop	%r12
	leave
	ret
SYM_FUNC_END(stream_arena_write_fault)
	BPF_PROG(stream_arena_write_fault)

/* static __noinline int subprog(void): *(int __arena *)0xdeadbeef = 1; */
SYM_FUNC_START_LOCAL(subprog)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	mov	$0xdeadbeef, %edi
	movl	$1, 0x0(%rdi,%r12,1)
	xor	%eax, %eax
	pop	%r12
	leave
	ret
SYM_FUNC_END(subprog)
	BPF_SUBPROG(subprog, stream_arena_subprog_fault)

/* int stream_arena_subprog_fault(void *ctx): return subprog(); */
SYM_FUNC_START(stream_arena_subprog_fault)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	call	subprog
	pop	%r12
	leave
	ret
SYM_FUNC_END(stream_arena_subprog_fault)
	BPF_PROG(stream_arena_subprog_fault)
