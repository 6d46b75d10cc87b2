// SPDX-License-Identifier: GPL-2.0
/* An XDP program reading its packet through xdp_md's data and data_end, with the bounds check
 * the verifier asks for: drops a packet whose first byte is 0xff, marks the others. */
#include "bpf_arena_common.h"

#define XDP_DROP 1
#define XDP_PASS 2

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

__u64 seen_len;

SEC("xdp")
int xdp_mark(struct xdp_md *ctx)
{
	__u8 *data = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;

	if (data + 2 > end)
		return XDP_DROP;
	seen_len = end - data;
	if (data[0] == 0xff)
		return XDP_DROP;
	data[1] = 0x42;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
