"""BPF: the arena, programs, streams, the JIT's exception table and native kfuncs (kernel/bpf/)."""
