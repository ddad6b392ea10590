#pragma once
#include <sys/types.h>

/* copy_file_range(2): the kernel copies between two files without the bytes
   passing through user space. glibc (2.27 and later) declares it only under
   _GNU_SOURCE, which would change other shared definitions (fd_set) under the
   other C modules, so the prototype is spelled here. */
extern ssize_t copy_file_range(int fd_in, off_t *off_in, int fd_out, off_t *off_out, size_t len, unsigned int flags);

static inline ssize_t qb_copy_file_range(int fd_in, off_t *off_in, int fd_out, off_t *off_out, size_t len) {
    return copy_file_range(fd_in, off_in, fd_out, off_out, len, 0);
}
