/*
 * memsum.c: the memory state's checksum (see memsum.h for why and what).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "memsum.h"

#define BLOCK (64 * 1024)
#define CHUNK (4 * 1024 * 1024) /* one pread: 64 blocks */
#define PREFIX "xxh3-64:"

static int all_zero(const unsigned char *p, size_t n)
{
	return p[0] == 0 && memcmp(p, p + 1, n - 1) == 0;
}

/* Hash the data in [off, end): every non-zero block with its offset. */
static int sum_extent(XXH3_state_t *st, int fd, unsigned char *buf, off_t off, off_t end)
{
	/* OFF is a block's start; the last block read in full, holes and
	 * all, so that a block that straddles a hole hashes the same
	 * whichever side of it is data */
	while (off < end) {
		size_t want = (size_t)(end - off < CHUNK ? end - off : CHUNK);
		ssize_t n = pread(fd, buf, (want + BLOCK - 1) / BLOCK * BLOCK, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* cut short while we read */
		for (ssize_t b = 0; b < n; b += BLOCK) {
			size_t len = (size_t)(n - b < BLOCK ? n - b : BLOCK);
			uint64_t at = (uint64_t)(off + b);

			if (all_zero(buf + b, len))
				continue;
			XXH3_64bits_update(st, &at, sizeof at);
			XXH3_64bits_update(st, buf + b, len);
		}
		off += n;
	}
	return 0;
}

int memsum_fd(int fd, char out[MEMSUM_LEN])
{
	XXH3_state_t *st = XXH3_createState();
	unsigned char *buf = malloc(CHUNK + BLOCK);
	struct stat sb;
	off_t data = 0, hole, done = 0;
	uint64_t size;
	int rc = 0;

	if (st == NULL || buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		goto out;
	}
	XXH3_64bits_reset(st);
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	while (rc == 0 && done < sb.st_size) {
		data = lseek(fd, done, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break; /* only a hole is left */
		if (data < 0 && errno == EINVAL) {
			data = done; /* no SEEK_DATA here: all of it is data */
			hole = sb.st_size;
		} else if (data < 0 || (hole = lseek(fd, data, SEEK_HOLE)) < 0) {
			rc = -errno;
			break;
		}
		if (hole > sb.st_size)
			hole = sb.st_size;
		/* from its block's start, unless the last extent ended in
		 * that block: then it is hashed already */
		data = data / BLOCK * BLOCK;
		if (data < done)
			data = done;
		if (data < hole)
			rc = sum_extent(st, fd, buf, data, hole);
		done = (hole + BLOCK - 1) / BLOCK * BLOCK;
	}
	size = (uint64_t)sb.st_size;
	XXH3_64bits_update(st, &size, sizeof size);
	if (rc == 0)
		snprintf(out, MEMSUM_LEN, PREFIX "%016llx", (unsigned long long)XXH3_64bits_digest(st));
out:
	XXH3_freeState(st);
	free(buf);
	return rc;
}

int memsum_path(const char *path, char out[MEMSUM_LEN], struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	rc = st != NULL && fstat(fd, st) < 0 ? -errno : memsum_fd(fd, out);
	close(fd);
	return rc;
}

static json_int_t ns(const struct timespec *t)
{
	return (json_int_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

json_t *memsum_stamp(const struct stat *st)
{
	return json_pack("{s:I, s:I, s:I}", "Inode", (json_int_t)st->st_ino,
			 "ModifyTimeNs", ns(&st->st_mtim), "ChangeTimeNs", ns(&st->st_ctim));
}

/* The device is left out: its number can change at a reboot (LVM, btrfs
 * subvolumes) where the file did not, and a file copied or moved to
 * another file system has a new change time anyway. */
int memsum_stamp_matches(json_t *stamp, const struct stat *st)
{
	json_t *ino = json_object_get(stamp, "Inode");
	json_t *mt = json_object_get(stamp, "ModifyTimeNs");
	json_t *ct = json_object_get(stamp, "ChangeTimeNs");

	return json_is_integer(ino) && json_is_integer(mt) && json_is_integer(ct) &&
	       json_integer_value(ino) == (json_int_t)st->st_ino &&
	       json_integer_value(mt) == ns(&st->st_mtim) &&
	       json_integer_value(ct) == ns(&st->st_ctim);
}

int memsum_known(const char *s)
{
	return s != NULL && strncmp(s, PREFIX, strlen(PREFIX)) == 0 &&
	       strlen(s) == MEMSUM_LEN - 1;
}
