/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot: whole reads and writes of file descriptors.
 *
 * read(2) and write(2) may do less than asked (a signal, a pipe, a socket,
 * a file's end); these loop until all is done, retry EINTR and return
 * -errno.  A read comes back short only at the end of the file (or when
 * the peer closed a socket): the caller decides whether that is an error.
 * The initrd agent links this file too: nothing here beyond libc.
 */
#ifndef NBDROOT_IO_H
#define NBDROOT_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Bytes read (fewer than len only at the end), or -errno. */
ssize_t full_read(int fd, void *buf, size_t len);
ssize_t full_pread(int fd, void *buf, size_t len, uint64_t off);

/* 0 when all of buf is written, or -errno. */
int full_write(int fd, const void *buf, size_t len);
int full_pwrite(int fd, const void *buf, size_t len, uint64_t off);
/* To a socket whose peer may be gone: -EPIPE rather than SIGPIPE. */
int full_send(int fd, const void *buf, size_t len);

/* The text of a small file (/proc, /sys): at most len - 1 bytes, ended
 * with a NUL, without trailing newlines and blanks.  Its length, or
 * -errno. */
ssize_t read_small_file(const char *path, char *buf, size_t len);

/* fsync of a directory, and of the directory a path is in: what makes a
 * file's creation, rename or removal there durable.  0 or -errno. */
int fsync_dir(const char *dir);
int fsync_dir_of(const char *path);

/* Replaces the file at path with len bytes of buf, whole or not at all
 * and durable when it returns 0: written to tmp (mode 0600, not through a
 * symbolic link), fsynced, renamed over path, its directory fsynced.  On
 * failure tmp is gone and path untouched.  0 or -errno. */
int write_file_durable(const char *path, const char *tmp, const void *buf, size_t len);

#endif
