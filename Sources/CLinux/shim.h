#include <sys/xattr.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <linux/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* syncfs(2): the C library declares it only under _GNU_SOURCE. */
static inline int imgbench_syncfs(int fd) {
    return (int)syscall(SYS_syncfs, fd);
}

/* statx(2) through its system call: the C library declares it only under _GNU_SOURCE. */
static inline int imgbench_statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buffer) {
    return (int)syscall(SYS_statx, dirfd, path, flags, mask, buffer);
}

/* gettid(2): the C library declares it only under _GNU_SOURCE. */
static inline int imgbench_gettid(void) {
    return (int)syscall(SYS_gettid);
}

/* O_NOATIME: the C library defines it only under _GNU_SOURCE (its value on Linux, every arch
   but alpha, sparc and parisc: 01000000). */
#ifndef O_NOATIME
#define IMGBENCH_O_NOATIME 01000000
#else
#define IMGBENCH_O_NOATIME O_NOATIME
#endif
static inline int imgbench_o_noatime(void) {
    return IMGBENCH_O_NOATIME;
}
