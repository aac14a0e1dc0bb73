/*
 * util.c: see util.h.  Files that must survive a crash (catalog records,
 * registry rewrites) all go through write_file_atomic().
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <dirent.h>
#include <unistd.h>
#include <uv.h>

#include "util.h"

static void *check_alloc(void *p)
{
	if (p == NULL) {
		fputs("qckpt: out of memory\n", stderr);
		abort();
	}
	return p;
}

void *xmalloc(size_t size)
{
	return check_alloc(malloc(size ? size : 1));
}

void *xcalloc(size_t n, size_t size)
{
	return check_alloc(calloc(n ? n : 1, size ? size : 1));
}

void *xrealloc(void *p, size_t size)
{
	return check_alloc(realloc(p, size ? size : 1));
}

char *xstrdup(const char *s)
{
	return check_alloc(strdup(s));
}

char *xstrndup(const char *s, size_t n)
{
	return check_alloc(strndup(s, n));
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return check_alloc(s);
}

int read_whole_file(const char *path, char **text)
{
	FILE *f = fopen(path, "r");
	size_t cap = 4096, len = 0, n;
	char *buf;

	if (f == NULL)
		return -errno;
	buf = xmalloc(cap);
	while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len < 2)
			buf = xrealloc(buf, cap *= 2);
	}
	if (ferror(f)) {
		int err = errno ? -errno : -EIO;

		fclose(f);
		free(buf);
		return err;
	}
	fclose(f);
	buf[len] = '\0';
	*text = buf;
	return 0;
}

int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

int open_temp_beside(const char *path, int mode, char **tmp)
{
	static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

	for (int attempt = 0; attempt < 100; attempt++) {
		unsigned char r[6];
		char suffix[7];
		int fd;

		if (uv_random(NULL, NULL, r, sizeof r, 0, NULL) != 0)
			return -EIO;
		for (size_t i = 0; i < sizeof r; i++)
			suffix[i] = chars[r[i] % (sizeof chars - 1)];
		suffix[6] = '\0';
		*tmp = xasprintf("%s.tmp.%s", path, suffix);
		fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd >= 0)
			return fd;
		fd = -errno;
		free(*tmp);
		*tmp = NULL;
		if (fd != -EEXIST)
			return fd;
	}
	return -EEXIST;
}

int write_file_atomic(const char *path, const char *data, size_t len,
		      int mode)
{
	char *tmp = NULL;
	char *dir = dir_name(path);
	int fd, rc;

	fd = open_temp_beside(path, mode, &tmp);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	rc = write_all(fd, data, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc == 0)
		rc = fsync_dir(dir);
	if (rc < 0)
		unlink(tmp);
out:
	free(tmp);
	free(dir);
	return rc;
}

int mkdir_p(const char *path, int mode)
{
	char *p = xstrdup(path);
	int rc = 0;

	for (char *s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;

		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST) {
			rc = -errno;
			break;
		}
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	return rc;
}

/* May PATH's parent ST be changed only by root or EUID?  Others' writes to
 * a sticky directory (/tmp) cannot rename or remove our entries. */
static int safe_parent(const struct stat *st)
{
	if (st->st_uid != 0 && st->st_uid != geteuid())
		return 0;
	return (st->st_mode & (S_IWGRP | S_IWOTH)) == 0 || (st->st_mode & S_ISVTX);
}

static int check_parents(const char *path, char *err, size_t errlen)
{
	char *p = dir_name(path);
	int rc = 0;

	for (;;) {
		struct stat st;

		/* A symlink others made (in /tmp) could point anywhere. */
		if (lstat(p, &st) == 0 && S_ISLNK(st.st_mode) && st.st_uid != 0 &&
		    st.st_uid != geteuid()) {
			snprintf(err, errlen, "%s is a symbolic link of uid %u", p, (unsigned)st.st_uid);
			rc = -1;
		} else if (stat(p, &st) < 0) {
			snprintf(err, errlen, "%s: %s", p, strerror(errno));
			rc = -1;
		} else if (!safe_parent(&st)) {
			snprintf(err, errlen, "%s can be changed by uid %u or by others (mode %04o), so a directory in it is not private",
				 p, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
			rc = -1;
		}
		if (rc < 0 || strcmp(p, "/") == 0 || strcmp(p, ".") == 0)
			break;
		char *up = dir_name(p);

		free(p);
		p = up;
	}
	free(p);
	return rc;
}

int private_dir(const char *path, char *err, size_t errlen)
{
	char *parent = dir_name(path);
	struct stat st;
	int rc = mkdir_p(parent, 0700);

	free(parent);
	if (rc == 0 && mkdir(path, 0700) < 0 && errno != EEXIST)
		rc = -errno;
	if (rc == 0 && lstat(path, &st) < 0)
		rc = -errno;
	if (rc < 0) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(-rc));
		return -1;
	}
	if (S_ISLNK(st.st_mode))
		snprintf(err, errlen, "%s is a symbolic link, not a private directory", path);
	else if (!S_ISDIR(st.st_mode))
		snprintf(err, errlen, "%s is not a directory", path);
	else if (st.st_uid != geteuid())
		snprintf(err, errlen, "%s is owned by uid %u, not %u", path,
			 (unsigned)st.st_uid, (unsigned)geteuid());
	else if ((st.st_mode & 077) != 0)
		snprintf(err, errlen, "%s has mode %04o, not 0700 (chmod 700 it if it is yours)",
			 path, (unsigned)(st.st_mode & 07777));
	else
		return check_parents(path, err, errlen);
	return -1;
}

int remove_dir_files(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;

	if (d == NULL)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char *f = xasprintf("%s/%s", path, de->d_name);

		unlink(f);
		free(f);
	}
	closedir(d);
	return rmdir(path) < 0 ? -errno : 0;
}

void uuid_generate_str(char out[37])
{
	unsigned char b[16];

	if (uv_random(NULL, NULL, b, sizeof b, 0, NULL) != 0) {
		/* uv_random only fails without any entropy source; still unique
		 * enough for a catalog when mixed with time and pid. */
		uint64_t t = uv_hrtime() ^ ((uint64_t)getpid() << 32);

		for (size_t i = 0; i < sizeof b; i++)
			b[i] = (unsigned char)(t >> ((i % 8) * 8)) ^ (unsigned char)rand();
	}
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
		 b[10], b[11], b[12], b[13], b[14], b[15]);
}

int64_t wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

uint64_t mono_ms(void)
{
	return uv_hrtime() / 1000000;
}

void format_iso8601(int64_t epoch_ms, char *out, size_t len)
{
	time_t t = (time_t)(epoch_ms / 1000);
	struct tm tm;
	char base[32], zone[8];

	localtime_r(&t, &tm);
	strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
	strftime(zone, sizeof zone, "%z", &tm); /* +0100 -> +01:00 */
	snprintf(out, len, "%s.%03d%.3s:%.2s", base, (int)(epoch_ms % 1000),
		 zone, zone + 3);
}

char *absolute_path(const char *path)
{
	char buf[PATH_MAX];

	if (realpath(path, buf) == NULL)
		return NULL;
	return xstrdup(buf);
}

char *dir_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

char *base_stem(const char *path)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	const char *dot = strrchr(base, '.');

	return xstrndup(base, dot && dot != base ? (size_t)(dot - base) : strlen(base));
}

long long proc_start_time(long pid)
{
	char path[64], buf[1024], *p;
	long long start = -1;
	size_t n;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	f = fopen(path, "re");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* the command name, field 2, may hold spaces and ')': skip to the last
	 * ')', then fields 3 to 21, then the start time */
	p = strrchr(buf, ')');
	for (int field = 2; p != NULL && field < 22; field++)
		p = strchr(p + 1, ' ');
	if (p != NULL && sscanf(p + 1, "%lld", &start) != 1)
		start = -1;
	return start;
}

int proc_is_zombie(long pid)
{
	char path[64], buf[1024], *p;
	size_t n;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	f = fopen(path, "re");
	if (f == NULL)
		return 0;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* field 3, the state, follows the last ')' of the command name */
	p = strrchr(buf, ')');
	return p != NULL && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

int parse_long(const char *text, long min, long max, long *out)
{
	const char *p = text;
	long v = 0;
	int neg = *p == '-';

	if (neg || *p == '+')
		p++;
	if (*p == '\0')
		return -EINVAL;
	/* Digit by digit, so an overflow is seen before it happens. */
	for (; *p; p++) {
		int d = *p - '0';

		if (d < 0 || d > 9)
			return -EINVAL;
		if (neg ? v < (LONG_MIN + d) / 10 : v > (LONG_MAX - d) / 10) {
			while (*++p)
				if (*p < '0' || *p > '9')
					return -EINVAL;
			return -ERANGE;
		}
		v = v * 10 + (neg ? -d : d);
	}
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int parse_double(const char *text, double min, double max, double *out)
{
	const char *digits = text + (text[0] == '-' || text[0] == '+');
	char *end;
	double v;

	/* An optional sign, then digits and '.' only: no blanks, exponents,
	 * hex, "inf" or "nan", which strtod would take. */
	if (digits[0] == '\0' || digits[strspn(digits, "0123456789.")] != '\0')
		return -EINVAL;
	errno = 0;
	v = strtod(text, &end);
	if (end == text || *end != '\0')
		return -EINVAL;
	if (errno == ERANGE || !isfinite(v) || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

void text_strip_controls(char *s)
{
	unsigned char *p = (unsigned char *)s;

	for (; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			*p = '?';
		} else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			p[0] = '?';
			p[1] = '?';
			p++;
		}
	}
}

const char *qemu_img_program(void)
{
	const char *env = getenv("QEMU_IMG");

	return env != NULL && env[0] != '\0' ? env : "qemu-img";
}
