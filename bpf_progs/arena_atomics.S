/*
 * Atomics on a page no one allocated (arena_atomics.c, BPF_PROBE_ATOMIC).
 * The JIT encodes every atomic with DONT_CLEAR: the fault is reported as a
 * WRITE and no register is zeroed, not even the fetch destination.
 */
	BPF_ARENA(arena, 16)

	.text
/* u64 atomic_add_unallocated(void *ctx): __sync_fetch_and_add(page, 7) without fetch; return 7 */
SYM_FUNC_START(atomic_add_unallocated)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$ARENA_USER_VM_START + 0x5000, %rdi
	mov	%edi, %edi
	mov	$7, %esi
	lock add %rsi, 0x0(%rdi,%r12,1)		/* lock *(u64 *)(r1 + 0) += r2 */
	mov	%rsi, %rax			/* r0 = r2: still 7 */
	pop	%r12
	leave
	ret
SYM_FUNC_END(atomic_add_unallocated)
	BPF_PROG(atomic_add_unallocated)

/* u64 atomic_xadd_unallocated(void *ctx): r0 = 7; r0 = atomic_fetch_add(page, r0); return r0 (7: not fetched, not cleared) */
SYM_FUNC_START(atomic_xadd_unallocated)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	movabs	$ARENA_USER_VM_START + 0x5008, %rdi
	mov	%edi, %edi
	mov	$7, %eax
	lock xadd %rax, 0x0(%rdi,%r12,1)
	pop	%r12
	leave
	ret
SYM_FUNC_END(atomic_xadd_unallocated)
	BPF_PROG(atomic_xadd_unallocated)
