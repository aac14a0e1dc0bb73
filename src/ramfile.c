/*
 * ramfile.c: see ramfile.h.  What was measured behind it (QEMU 7.2 and
 * 10.0, TCG, XFS on a loop device): a FICLONE of a 256 MiB to 16 GiB RAM
 * file is a metadata operation, but XFS first writes back the source's
 * dirty pages (the guest's writes through QEMU's shared mapping), so a
 * flush while the guest still runs keeps that out of the pause.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ramfile.h"
#include "util.h"

int ramfile_clone(const char *src, const char *dst)
{
	int in, out, rc = 0;

	if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (out < 0) {
		rc = -errno;
		close(in);
		return rc;
	}
	/* No fsync here: inside a guest's pause it cost 30-100 ms (an XFS
	 * log force) against 1-16 ms for the clone; ramfile_sync later. */
	if (ioctl(out, FICLONE, in) < 0)
		rc = -errno;
	close(out);
	close(in);
	if (rc < 0)
		unlink(dst);
	return rc;
}

int ramfile_sync(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int ramfile_flush(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	/* Data only: the clone needs the pages on disk, not the metadata. */
	if (fdatasync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* One reflink of SRC to DST (removed again): 0 or -errno. */
static int probe_clone(const char *src, const char *dst)
{
	int rc;

	unlink(dst);
	rc = ramfile_clone(src, dst);
	unlink(dst);
	return rc;
}

int ramfile_probe(const char *from_dir, const char *to_dir, char *why, size_t len)
{
	char *src = xasprintf("%s/.qckpt-reflink-probe.%d", from_dir, (int)getpid());
	char *here = xasprintf("%s.copy", src);
	char *there = xasprintf("%s/.qckpt-reflink-probe.%d.copy", to_dir, (int)getpid());
	int fd, rc;

	unlink(src);
	fd = open(src, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || write(fd, "qckpt", 5) != 5) {
		snprintf(why, len, "cannot write in %s: %s", from_dir, strerror(errno));
		rc = -1;
	} else if ((rc = probe_clone(src, here)) < 0) {
		if (rc == -EOPNOTSUPP || rc == -ENOTTY || rc == -EINVAL || rc == -EXDEV)
			snprintf(why, len, "its file system cannot make reflinks (FICLONE: %s)",
				 strerror(-rc));
		else
			snprintf(why, len, "a reflink in %s failed: %s", from_dir, strerror(-rc));
	} else if ((rc = probe_clone(src, there)) == -EXDEV) {
		snprintf(why, len, "the catalog directory %s is on another file system, and reflinks cannot cross them",
			 to_dir);
	} else if (rc < 0) {
		snprintf(why, len, "a reflink from %s to %s failed: %s", from_dir, to_dir, strerror(-rc));
	}
	if (fd >= 0)
		close(fd);
	unlink(src);
	free(src);
	free(here);
	free(there);
	return rc < 0 ? -1 : 0;
}

/* ---- the command line ------------------------------------------------- */

/* QEMU's sizes: a number, maybe with a fraction, and a suffix B K M G T P
 * E (either case); without one, UNIT. */
static int parse_size(const char *text, long long unit, long long *bytes)
{
	char *end;
	double v;
	long long mul = unit;

	errno = 0;
	v = strtod(text, &end);
	if (end == text || errno != 0 || v < 0)
		return -1;
	switch (*end) {
	case '\0': break;
	case 'b': case 'B': mul = 1; break;
	case 'k': case 'K': mul = 1ll << 10; break;
	case 'm': case 'M': mul = 1ll << 20; break;
	case 'g': case 'G': mul = 1ll << 30; break;
	case 't': case 'T': mul = 1ll << 40; break;
	case 'p': case 'P': mul = 1ll << 50; break;
	case 'e': case 'E': mul = 1ll << 60; break;
	default: return -1;
	}
	if (*end != '\0' && end[1] != '\0')
		return -1;
	if (v * (double)mul >= 9.2e18)
		return -1;
	*bytes = (long long)(v * (double)mul);
	return 0;
}

int ramfile_ram_size(const struct cmdline *c, long long *bytes, char *why, size_t len)
{
	const char *value = NULL;

	for (size_t i = 1; i < c->argc; i++) {
		int takes;
		const char *opt = cmdline_option(c, i, &takes);

		if (opt != NULL && takes && i + 1 < c->argc) {
			if (strcmp(opt, "m") == 0)
				value = c->argv[i + 1];
			i++;
		}
	}
	*bytes = 128ll << 20; /* QEMU's default */
	if (value != NULL) {
		struct qopts o;
		const char *size;
		int rc = 0;

		qopts_parse(value, "size", &o);
		size = qopts_get(&o, "size");
		if (size != NULL && (parse_size(size, 1ll << 20, bytes) < 0 || *bytes <= 0)) {
			snprintf(why, len, "cannot read the RAM size in '-m %s'", value);
			rc = -1;
		}
		qopts_free(&o);
		if (rc < 0)
			return -1;
	}
	return 0;
}

int ramfile_has_backend(const struct cmdline *c, char *why, size_t len)
{
	for (size_t i = 1; i < c->argc; i++) {
		int takes, found = 0;
		const char *opt = cmdline_option(c, i, &takes);
		struct qopts o;

		if (opt == NULL || !takes || i + 1 >= c->argc)
			continue;
		if (strcmp(opt, "mem-path") == 0) {
			found = 1;
		} else if (strcmp(opt, "machine") == 0 || strcmp(opt, "M") == 0) {
			qopts_parse(c->argv[i + 1], "type", &o);
			found = qopts_has(&o, "memory-backend");
			qopts_free(&o);
		} else if (strcmp(opt, "numa") == 0) {
			qopts_parse(c->argv[i + 1], "type", &o);
			found = qopts_has(&o, "memdev");
			qopts_free(&o);
		}
		if (found) {
			snprintf(why, len, "-%s %s", opt, c->argv[i + 1]);
			return 1;
		}
		i++;
	}
	return 0;
}

const char *ramfile_backend_id(const struct cmdline *c)
{
	const char *type = NULL;

	for (size_t i = 1; i < c->argc; i++) {
		int takes;
		const char *opt = cmdline_option(c, i, &takes);

		if (opt == NULL || !takes || i + 1 >= c->argc)
			continue;
		if (strcmp(opt, "machine") == 0 || strcmp(opt, "M") == 0) {
			struct qopts o;

			qopts_parse(c->argv[i + 1], "type", &o);
			if (qopts_get(&o, "type") != NULL &&
			    strncmp(qopts_get(&o, "type"), "microvm", 7) == 0)
				type = "microvm.ram";
			else if (qopts_get(&o, "type") != NULL)
				type = "pc.ram";
			qopts_free(&o);
		}
		i++;
	}
	return type ? type : "pc.ram";
}

void ramfile_add_backend(struct cmdline *c, const char *id, const char *path,
			 long long bytes)
{
	char *esc = qopts_escape(path);
	char *obj = xasprintf("memory-backend-file,id=%s,size=%lld,share=on,mem-path=%s",
			      id, bytes, esc);
	char *machine = xasprintf("memory-backend=%s", id);

	cmdline_append(c, "-object", obj, "-machine", machine, NULL);
	free(machine);
	free(obj);
	free(esc);
}

char *ramfile_new_path(const char *dir, const char *vm)
{
	char id[37];

	uuid_generate_str(id);
	return xasprintf("%s/%s.%.8s.ram", dir, vm, id);
}

/* ---- the thread pool -------------------------------------------------- */

static void on_work(uv_work_t *req)
{
	struct ramfile_work *w = req->data;
	uint64_t t0 = mono_ms();

	w->rc = w->op == RAMFILE_CLONE ? ramfile_clone(w->src, w->dst) : ramfile_flush(w->src);
	w->ms = (long long)(mono_ms() - t0);
}

static void on_work_done(uv_work_t *req, int status)
{
	struct ramfile_work *w = req->data;

	if (status < 0)
		w->rc = status;
	w->cb(w);
}

int ramfile_queue(uv_loop_t *loop, struct ramfile_work *w, enum ramfile_op op,
		  const char *src, const char *dst,
		  void (*cb)(struct ramfile_work *w), void *data)
{
	int rc;

	w->op = op;
	w->src = xstrdup(src);
	w->dst = dst ? xstrdup(dst) : NULL;
	w->cb = cb;
	w->data = data;
	w->req.data = w;
	rc = uv_queue_work(loop, &w->req, on_work, on_work_done);
	if (rc < 0) {
		free(w->src);
		free(w->dst);
		w->src = w->dst = NULL;
	}
	return rc;
}

void ramfile_work_free(struct ramfile_work *w)
{
	if (w == NULL)
		return;
	free(w->src);
	free(w->dst);
	free(w);
}

/* ---- a full copy ---------------------------------------------------------- */

/* What one read takes, and the piece left as a hole when it is all zeros. */
#define COPY_BUF (1 << 20)
#define COPY_ZERO_PIECE (64 << 10)

static int all_zero(const char *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static int write_all(int fd, const char *p, size_t n, long long off)
{
	while (n > 0) {
		ssize_t put = pwrite(fd, p, n, (off_t)off);

		if (put < 0 && errno == EINTR)
			continue;
		if (put <= 0)
			return put < 0 ? -errno : -EIO;
		p += put;
		n -= (size_t)put;
		off += put;
	}
	return 0;
}

/* SRC's data in [FROM, TO) into DST at the same offsets; holes and zero
 * pieces are skipped (DST was truncated to its size: they read zeros). */
static int copy_range(struct ramfile_copy *c, long long from, long long to, char *buf)
{
	long long off = from;

	while (off < to) {
		off_t data = lseek(c->in, (off_t)off, SEEK_DATA), hole;

		if (data < 0)
			return errno == ENXIO ? 0 : -errno; /* no data after OFF */
		if (data >= to)
			return 0;
		if ((hole = lseek(c->in, data, SEEK_HOLE)) < 0)
			return -errno;
		if (hole > to)
			hole = (off_t)to;
		for (off = data; off < hole;) {
			size_t want = (size_t)(hole - off < COPY_BUF ? hole - off : COPY_BUF);
			ssize_t got;
			int rc;

			if (atomic_load(&c->cancel))
				return -EINTR;
			got = pread(c->in, buf, want, (off_t)off);
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0)
				return got < 0 ? -errno : -EIO; /* SRC shrank */
			for (size_t p = 0; p < (size_t)got; p += COPY_ZERO_PIECE) {
				size_t n = (size_t)got - p < COPY_ZERO_PIECE ? (size_t)got - p : COPY_ZERO_PIECE;

				if (!all_zero(buf + p, n) && (rc = write_all(c->out, buf + p, n, off + (long long)p)) < 0)
					return rc;
			}
			off += got;
		}
	}
	return 0;
}

/* The first piece: open both, a reflink if the file systems allow. */
static int copy_open(struct ramfile_copy *c)
{
	struct stat st;

	if ((c->in = open(c->src, O_RDONLY | O_CLOEXEC)) < 0 || fstat(c->in, &st) < 0)
		return -errno;
	c->size = st.st_size;
	c->out = open(c->dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (c->out < 0)
		return -errno;
	if (ioctl(c->out, FICLONE, c->in) == 0) {
		c->reflinked = 1;
		c->next = c->size;
		return 0;
	}
	/* Not here (another file system, or none that reflinks): copy. */
	if (errno != EOPNOTSUPP && errno != ENOTTY && errno != EINVAL && errno != EXDEV &&
	    errno != ENOSYS)
		return -errno;
	return ftruncate(c->out, (off_t)c->size) < 0 ? -errno : 0;
}

/* In the thread pool: the loop reads done (progress) meanwhile, so the
 * piece's end goes to next, and on_copy_done moves it over. */
static void on_copy_work(uv_work_t *req)
{
	struct ramfile_copy *c = req->data;
	long long from = c->done;
	char *buf;

	c->next = from;
	if (atomic_load(&c->cancel))
		c->rc = -EINTR;
	else if (c->in < 0)
		c->rc = copy_open(c);
	if (c->rc == 0 && c->next < c->size) {
		long long to = c->size - from < RAMFILE_COPY_CHUNK ? c->size : from + RAMFILE_COPY_CHUNK;

		buf = xmalloc(COPY_BUF);
		c->rc = copy_range(c, from, to, buf);
		free(buf);
		if (c->rc == 0)
			c->next = to;
	}
	/* The end, either way: the copy on disk, or no half copy left. */
	if (c->rc == 0 && c->next >= c->size && fsync(c->out) < 0)
		c->rc = -errno;
	if (c->rc < 0 || c->next >= c->size) {
		if (c->in >= 0)
			close(c->in);
		if (c->out >= 0) {
			close(c->out);
			if (c->rc < 0)
				unlink(c->dst);
		}
		c->in = c->out = -1;
	}
}

static void on_copy_done(uv_work_t *req, int status)
{
	struct ramfile_copy *c = req->data;
	int rc;

	if (status < 0 && c->rc == 0)
		c->rc = status;
	c->done = c->next;
	if (c->rc == 0 && c->done < c->size) {
		if (c->on_progress != NULL)
			c->on_progress(c);
		if ((rc = uv_queue_work(c->loop, &c->req, on_copy_work, on_copy_done)) == 0)
			return;
		c->rc = rc;
		close(c->in);
		close(c->out);
		unlink(c->dst);
		c->in = c->out = -1;
	}
	if (c->rc == 0 && c->on_progress != NULL)
		c->on_progress(c);
	c->on_done(c);
}

int ramfile_copy_start(uv_loop_t *loop, struct ramfile_copy *c, const char *src,
		       const char *dst, void (*on_progress)(struct ramfile_copy *c),
		       void (*on_done)(struct ramfile_copy *c), void *data)
{
	int rc;

	c->loop = loop;
	c->src = xstrdup(src);
	c->dst = xstrdup(dst);
	c->in = c->out = -1;
	c->size = c->done = c->next = 0;
	c->reflinked = 0;
	c->rc = 0;
	atomic_store(&c->cancel, 0);
	c->on_progress = on_progress;
	c->on_done = on_done;
	c->data = data;
	c->req.data = c;
	rc = uv_queue_work(loop, &c->req, on_copy_work, on_copy_done);
	if (rc < 0)
		ramfile_copy_free(c);
	return rc;
}

void ramfile_copy_cancel(struct ramfile_copy *c)
{
	atomic_store(&c->cancel, 1);
}

void ramfile_copy_free(struct ramfile_copy *c)
{
	free(c->src);
	free(c->dst);
	c->src = c->dst = NULL;
}

/* ---- a command's memory backend ------------------------------------------- */

int ramfile_set_backend_path(struct cmdline *c, const char *path)
{
	int changed = 0;

	for (size_t i = 1; i < c->argc; i++) {
		int takes;
		const char *opt = cmdline_option(c, i, &takes);
		struct qopts o;

		if (opt == NULL || !takes || i + 1 >= c->argc)
			continue;
		if (strcmp(opt, "object") == 0) {
			qopts_parse(c->argv[i + 1], "qom-type", &o);
			if (strcmp(qopts_get(&o, "qom-type") ?: "", "memory-backend-file") == 0 &&
			    qopts_true(qopts_get(&o, "share"))) {
				qopts_set(&o, "mem-path", path);
				free(c->argv[i + 1]);
				c->argv[i + 1] = qopts_format(&o);
				changed++;
			}
			qopts_free(&o);
		}
		i++;
	}
	return changed;
}
