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
 *
 * Reading a busy 1 GiB guest's 250-350 MiB back takes 70-120 ms here,
 * longer than QEMU's start it runs beside.  So the record also keeps the
 * file's stamp when it was hashed (MemoryState.ChecksumStamp: inode,
 * modification and change times to the nanosecond): a restore whose file
 * still has that stamp was not written to, renamed over or copied since,
 * and is not read again unless asked to (--verify), as git's index and
 * rsync's quick check trust a file's stat.  What a stamp cannot see is
 * a write in the same clock tick as the stat (kernels before 6.13 keep
 * coarse change times) and a disk that rots under a file system without
 * checksums.
 */
#ifndef MEMSUM_H
#define MEMSUM_H

#include <sys/stat.h>
#include <jansson.h>

/* "xxh3-64:" and 16 hex digits, and the NUL. */
#define MEMSUM_LEN 25

/*
 * The checksum of the file open on FD into OUT.  Reads it with pread
 * (never through a mapping: a file cut short meanwhile is an error, not a
 * SIGBUS).  Blocking: call it from the thread pool.  0 or -errno.
 */
int memsum_fd(int fd, char out[MEMSUM_LEN]);

/* The same of the file at PATH; ST (if not NULL) gets its stat, taken
 * before the first read, so that a write meanwhile changes what a later
 * memsum_stamp_matches() sees. */
int memsum_path(const char *path, char out[MEMSUM_LEN], struct stat *st);

/* ST as MemoryState.ChecksumStamp; new reference. */
json_t *memsum_stamp(const struct stat *st);

/* Whether ST is the file STAMP (MemoryState.ChecksumStamp) was taken of,
 * unchanged since; NULL or a malformed stamp never matches. */
int memsum_stamp_matches(json_t *stamp, const struct stat *st);

/* Whether S is a checksum of a kind memsum_fd computes. */
int memsum_known(const char *s);

#endif
