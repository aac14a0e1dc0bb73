/*
 * util.h: small helpers every module needs: allocation that never returns
 * NULL, whole-file reads, crash-safe file writes, ids and timestamps.
 */
#ifndef UTIL_H
#define UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Read a whole file (NUL-terminated); 0 or -errno. */
int read_whole_file(const char *path, char **text);

/*
 * Write DATA to PATH so that a crash leaves either the old file or the new
 * one: write a temporary file beside it, fsync it, rename it over PATH,
 * fsync the directory.  0 or -errno.
 */
int write_file_atomic(const char *path, const char *data, size_t len,
		      int mode);

/*
 * Open a new temporary file beside PATH ("PATH.tmp.XXXXXX", random) with
 * O_EXCL|O_NOFOLLOW|O_CLOEXEC and MODE, so nobody can have prepared it or
 * a symlink in its place.  The fd, its name in *tmp (new string), or -errno.
 */
int open_temp_beside(const char *path, int mode, char **tmp);

/* mkdir -p with MODE for the directories it creates; 0 or -errno. */
int mkdir_p(const char *path, int mode);

/*
 * Create PATH (and missing parents, 0700) or check the one there: a
 * directory, not a symlink, owned by the effective user, mode 0700 (no
 * access for group and others), under parents that only root or that user
 * can change (sticky directories like /tmp are fine).  0, or -1 with the
 * reason in err ("/tmp/qckpt-0 is owned by uid 65534, not 0").
 */
int private_dir(const char *path, char *err, size_t errlen);

/* fsync a directory (after creating or renaming entries in it). */
int fsync_dir(const char *path);

/* Remove a directory and the files in it (one level). */
int remove_dir_files(const char *path);

/* A random (version 4) UUID, 36 characters plus NUL. */
void uuid_generate_str(char out[37]);

/* "2026-11-25T07:43:44.123+01:00" for a wall-clock time in ms. */
void format_iso8601(int64_t epoch_ms, char *out, size_t len);
/* Wall clock in ms since the epoch. */
int64_t wall_ms(void);
/* Monotonic clock in ms. */
uint64_t mono_ms(void);

/*
 * When process pid started, in clock ticks since boot (/proc/PID/stat,
 * field 22), or -1 if there is no such process.  A pid and its start time
 * name one process for good: the start time survives exec, and a reused
 * pid has another one.
 */
long long proc_start_time(long pid);
/* Whether process pid has exited but was never reaped (its parent gone
 * and an init that does not reap, as in some containers): its /proc entry
 * and start time remain, but it runs no more. */
int proc_is_zombie(long pid);

/*
 * Numbers given by users: the whole of TEXT (no blanks, nothing after),
 * in [MIN, MAX], checked before any conversion, so "1e30", "nan", "inf"
 * and overflow are refused, never undefined.  0 or -EINVAL (not such a
 * number) or -ERANGE (a number, out of range).  parse_long takes decimal
 * integers, parse_double decimal numbers ("0.5", "2").
 */
int parse_long(const char *text, long min, long max, long *out);
int parse_double(const char *text, double min, double max, double *out);

/* Absolute path of PATH (which must exist) in a new string, or NULL. */
char *absolute_path(const char *path);
/* The directory part of PATH, in a new string. */
char *dir_name(const char *path);
/* The last component of PATH without its extension, in a new string. */
char *base_stem(const char *path);

/* Text from outside (a guest agent's error): control characters, C0, DEL
 * and UTF-8 C1 (U+0080..U+009F), become '?' in place, so that printing or
 * recording it cannot move the cursor, recolour a terminal or forge a
 * second line. */
void text_strip_controls(char *s);

/* The qemu-img to run: $QEMU_IMG, else "qemu-img" from PATH (export's
 * converts, remove's offline merges). */
const char *qemu_img_program(void);

#endif
