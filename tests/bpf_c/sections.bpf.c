// SPDX-License-Identifier: GPL-2.0
/* One program per kind of SEC() name: the ones BPF_PROG_TEST_RUN runs, and four it refuses. */
#include "bpf_arena_common.h"

ARENA_MAP(4, 0);
int hits;

SEC("raw_tp/sys_enter") int rawtp(void *ctx) { hits++; return 1; }
SEC("fentry/bpf_fentry_test1") int fent(void *ctx) { hits++; return 2; }
SEC("socket") int sock(void *ctx) { hits++; return 3; }
SEC("tc") int tc_prog(void *ctx) { hits++; return 4; }
SEC("xdp") int xdp_prog(void *ctx) { hits++; return 5; }
SEC("syscall") int sys(void *ctx) { hits++; return 6; }
SEC("tp/syscalls/sys_enter_nanosleep") int tp(void *ctx) { hits++; return 7; }
SEC("kprobe/do_nanosleep") int kp(void *ctx) { hits++; return 8; }
SEC("perf_event") int pe(void *ctx) { hits++; return 9; }
SEC("tp_btf/sys_enter") int tpbtf(void *ctx) { hits++; return 10; }
SEC("fexit/bpf_fentry_test1") int fex(void *ctx) { hits++; return 11; }

char _license[] SEC("license") = "GPL";
