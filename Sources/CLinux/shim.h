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

/* sched_getaffinity(2), for the number of CPUs this process may run on
   (taskset, a container's cpuset). Also declared by glibc only under
   _GNU_SOURCE, and with CPU_COUNT a macro; the name is bound with an asm
   label so that no declaration of glibc's can clash with this one. The
   mask holds 1024 CPUs, as cpu_set_t does. Returns the count, or -1. */
extern int qb_sched_getaffinity(pid_t pid, size_t cpusetsize, void *mask) __asm__("sched_getaffinity");

static inline int qb_affinity_cpu_count(void) {
    unsigned long mask[1024 / (8 * sizeof(unsigned long))] = {0};
    if (qb_sched_getaffinity(0, sizeof mask, mask) != 0) return -1;
    int count = 0;
    for (size_t i = 0; i < sizeof mask / sizeof mask[0]; i++) count += __builtin_popcountl(mask[i]);
    return count;
}
