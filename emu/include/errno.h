/* SPDX-License-Identifier: GPL-2.0 */
/* The errno values BPF programs return (include/uapi/asm-generic/errno-base.h, errno.h): the BPF target has no libc. */
#ifndef BPF_ERRNO_H
#define BPF_ERRNO_H
#define EPERM 1
#define ENOENT 2
#define EINTR 4
#define EIO 5
#define E2BIG 7
#define EBADF 9
#define EAGAIN 11
#define ENOMEM 12
#define EACCES 13
#define EFAULT 14
#define EBUSY 16
#define EEXIST 17
#define EINVAL 22
#define ENOSPC 28
#define ERANGE 34
#define EDEADLK 35
#define ENOSYS 38
#define ENOTSUP 95
#define EOPNOTSUPP 95
#define ETIMEDOUT 110
#endif
