/*
 * memsum.h: the checksum of a checkpoint's memory state, recorded as
 * MemoryState.Checksum when the checkpoint is taken and checked before a
 * restore lets go of the running QEMU.  QEMU's own load finds a damaged
 * device section but not a changed RAM page: that guest would run on
 * with it.  And the restore quits the old QEMU before the new one loads
 * (restore.c), so a damaged file must be found before, not by the load.
 *
 * XXH3-64 (libxxhash) over the file's non-zero 64 KiB blocks, each
 * preceded by its offset, then the file's size: holes and written zeros
 * hash alike, so a copy that filled the holes (cp without --sparse,
 * an export) has the same checksum, and the holes of a mapped-ram file
 * cost nothing to read.
 */
#ifndef MEMSUM_H
#define MEMSUM_H

/* "xxh3-64:" and 16 hex digits, and the NUL. */
#define MEMSUM_LEN 25

/*
 * The checksum of the file open on FD into OUT.  Reads it with pread
 * (never through a mapping: a file cut short meanwhile is an error, not a
 * SIGBUS).  Blocking: call it from the thread pool.  0 or -errno.
 */
int memsum_fd(int fd, char out[MEMSUM_LEN]);

/* The same of the file at PATH. */
int memsum_path(const char *path, char out[MEMSUM_LEN]);

/* Whether S is a checksum of a kind memsum_fd computes. */
int memsum_known(const char *s);

#endif
