#ifndef FERRY_CLINUX_SHIM_H
#define FERRY_CLINUX_SHIM_H
#include <sys/types.h>
#include <stdint.h>

/* GNU extensions that glibc exports but Swift's Glibc module hides without _GNU_SOURCE. */
extern int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
extern int fallocate(int fd, int mode, off_t offset, off_t len);
extern ssize_t copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len, unsigned int flags);

extern int sync_file_range(int fd, int64_t offset, int64_t nbytes, unsigned int flags);

extern int mallopt(int param, int value);

#define CLINUX_M_ARENA_MAX (-8)
#define CLINUX_RENAME_NOREPLACE (1 << 0)
#define CLINUX_SYNC_FILE_RANGE_WRITE 2
#define CLINUX_FALLOC_FL_KEEP_SIZE 0x01
/* O_DIRECT, which glibc defines only under _GNU_SOURCE; its value differs by architecture. */
#if defined(__aarch64__) || defined(__arm__)
#define CLINUX_O_DIRECT 0200000
#elif defined(__powerpc__) || defined(__powerpc64__)
#define CLINUX_O_DIRECT 0400000
#else
#define CLINUX_O_DIRECT 040000
#endif

#endif
