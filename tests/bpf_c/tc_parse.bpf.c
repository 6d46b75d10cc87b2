// SPDX-License-Identifier: GPL-2.0
/* A tc classifier reading its packet through __sk_buff's data, data_end and len: shots a packet
 * whose first byte is 0xff, marks the others. */
#include "bpf_arena_common.h"

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

struct __sk_buff {
	__u32 len;
	__u32 pkt_type, mark, queue_mapping, protocol, vlan_present, vlan_tci, vlan_proto, priority;
	__u32 ingress_ifindex, ifindex, tc_index, cb[5], hash, tc_classid;
	__u32 data;
	__u32 data_end;
};

__u64 seen_len;

SEC("tc")
int tc_mark(struct __sk_buff *skb)
{
	__u8 *data = (__u8 *)(long)skb->data;
	__u8 *end = (__u8 *)(long)skb->data_end;

	seen_len = skb->len;
	if (data + 2 > end)
		return TC_ACT_SHOT;
	if (data[0] == 0xff)
		return TC_ACT_SHOT;
	data[1] = 0x42;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
