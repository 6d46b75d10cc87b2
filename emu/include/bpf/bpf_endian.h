/* SPDX-License-Identifier: GPL-2.0 */
/* bpf/bpf_endian.h's byte-order conversions, for the little-endian BPF target this project runs. */
#ifndef BPF_ENDIAN_H
#define BPF_ENDIAN_H
#define bpf_htons(x) ((__u16)__builtin_bswap16(x))
#define bpf_ntohs(x) ((__u16)__builtin_bswap16(x))
#define bpf_htonl(x) ((__u32)__builtin_bswap32(x))
#define bpf_ntohl(x) ((__u32)__builtin_bswap32(x))
#define bpf_cpu_to_be64(x) ((__u64)__builtin_bswap64(x))
#define bpf_be64_to_cpu(x) ((__u64)__builtin_bswap64(x))
#endif
