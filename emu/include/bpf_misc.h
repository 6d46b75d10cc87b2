/* SPDX-License-Identifier: GPL-2.0 */
/* A stand-in for bpf_misc.h, so programs written like the kernel's arena selftests build unchanged: what they
 * use from it is in bpf_arena_common.h. */
#include "bpf_arena_common.h"
