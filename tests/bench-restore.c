/*
 * bench-restore.c: how long `qckpt restore` takes to get a guest running
 * again, next to QEMU's own loadvm of a savevm snapshot and to a bare
 * `-incoming` start of the same memory file.  A benchmark, not a test: it
 * is built by `make tests/bench-restore` and run by scripts/bench-restore,
 * never by make check.
 *
 * For every QEMU x RAM size x guest load it launches one VM through
 * `qckpt run` (the test guest, one qcow2 disk), waits for the guest to
 * tick, takes one `qckpt checkpoint` in the mode auto picks, then measures:
 *   - qckpt: REPS x `qckpt restore VM CHECKPOINT`, from the command to the
 *     restored QEMU's RESUME;
 *   - loadvm: one `savevm`, then REPS x `loadvm` (HMP, on the observer
 *     monitor), from the command to RESUME;
 *   - bare: the VM's QEMU stopped, REPS x a QEMU started here with the
 *     same command line, a fresh overlay on the checkpoint's frozen image
 *     and `-incoming defer`, then migrate-incoming of the checkpoint's
 *     memory file (QEMU >= 9 with mapped-ram: `file:PATH`, multifd
 *     channels = online CPUs, the recorded capabilities; older QEMUs
 *     the file's fd through getfd and `fd:`, as qckpt), from the process
 *     start to RESUME (a `cont` is sent
 *     only when QEMU does not start the guest itself).
 * A restore starts a new QEMU, so this program does not use the harness's
 * hvm: the VM's serial console and its observer QMP monitor are unix
 * sockets this program listens on, in QEMU's client mode, and every QEMU
 * that runs the VM connects to both while it starts (a "life").  The
 * observer records every event with QEMU's timestamp and the time the
 * greeting came, and the end of each connection (the old QEMU is gone).
 *
 * Per measurement: to RESUME (QEMU's event timestamp minus the start, on
 * the wall clock), to the guest's first "qckpt-guest: tick" line after
 * the RESUME (received), QEMU's start (its process start, from /proc for
 * the QEMU `qckpt run` execs, to the QMP greeting), for qckpt the time
 * until the old QEMU's monitor closed, the load (MIGRATION setup ->
 * completed by QEMU's timestamps; loadvm: STOP -> RESUME) and the read
 * rate (the memory file's allocated bytes over the load).
 *
 * Environment (all optional), as bench-pause:
 *   QCKPT_BENCH_QEMUS "7.2 10", QCKPT_BENCH_SIZES "1024 4096",
 *   QCKPT_BENCH_LOADS "idle busy", QCKPT_BENCH_BUSY
 *   "qckpt.dirty_mib=256 qckpt.disk_writes=1", QCKPT_BENCH_REPS 5 (1..20),
 *   QCKPT_BENCH_METHODS "qckpt loadvm bare" (also "qckpt-cold" and
 *   "bare-cold": the same with the memory file dropped from the page cache
 *   first, posix_fadvise DONTNEED; the others read a file just written;
 *   "bare-many": the bare start with as many multifd channels as qckpt's
 *   load sets (16 per CPU, 16 to 64) instead of one per CPU;
 *   "qckpt-seq": qckpt with QCKPT_RESTORE_SEQUENTIAL=1, the old QEMU quit
 *   before the new one starts, as before the pre-start, and "ram-file-seq"
 *   with it).
 *   QCKPT_BENCH_VERBOSE=1 echoes `qckpt restore -v` (its own timings).
 *   QCKPT_BENCH_RAMFILE DIR on a file system with reflinks (XFS): beside
 *   each VM, one launched through `qckpt run --ram-file` with its catalog in
 *   DIR, checkpointed (ram-file mode) and restored REPS times: method
 *   "ram-file" (a reflink of the frozen RAM file, only the device state
 *   loaded).
 * Progress goes to stderr, the report (markdown) to stdout.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "restore.h"
#include "util.h"

#define BOOT_MS 300000u
#define WAIT_MS 120000u
#define MAX_REPS 20
#define MAX_CELLS 256
#define MAX_LIVES 64

static char *xfmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *xfmt(const char *f, ...)
{
	va_list ap;
	char *s;

	va_start(ap, f);
	if (vasprintf(&s, f, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);

	return v && v[0] ? v : def;
}

static int words(char *s, char **out, int max)
{
	int n = 0;

	for (char *t = strtok(s, " \t,"); t && n < max; t = strtok(NULL, " \t,"))
		out[n++] = t;
	return n;
}

/* Wall clock, microseconds: QEMU's event timestamps are on it. */
static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A process's start (ticks since boot, /proc) on the wall clock. */
static int64_t ticks_to_wall_us(long long ticks)
{
	struct timespec rt, bt;
	long hz = sysconf(_SC_CLK_TCK);

	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_BOOTTIME, &bt);
	return ticks * 1000000 / hz + ((int64_t)rt.tv_sec - bt.tv_sec) * 1000000 +
	       (rt.tv_nsec - bt.tv_nsec) / 1000;
}

/* harness_path() of a formatted name. */
static char *tmp_path(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *tmp_path(const char *f, ...)
{
	va_list ap;
	char *name, *path;

	va_start(ap, f);
	if (vasprintf(&name, f, ap) < 0)
		abort();
	va_end(ap);
	path = harness_path(name);
	free(name);
	return path;
}

/* ---- a VM whose console and observer monitor survive relaunches -------- */

struct line {
	char *text;
	int life;
	int64_t recv_us;
};

struct event {
	char *name;
	char *status; /* MIGRATION's data.status, else NULL */
	int life;
	int64_t ts_us;
};

struct bvm;

struct conn {
	uv_pipe_t pipe;
	struct bvm *vm;
	bool qmp;
	int life;
	char buf[65536];
	size_t len;
	/* observer: the reply to the command in flight */
	json_t *reply;
	int waiting_id;
};

struct bvm {
	char *name;
	char *serial_path, *obs_path;
	uv_pipe_t serial_server, obs_server;
	struct line *lines;
	size_t nlines, lcap;
	struct event *events;
	size_t nevents, ecap;
	int serial_lives, obs_lives;
	int64_t greet_us[MAX_LIVES], gone_us[MAX_LIVES];
	struct conn *obs; /* the latest observer connection, NULL once closed */
	int open;         /* handles and connections not closed yet */
	char **qemu_argv; /* QEMU's own command line (NULL-terminated) */
	char *disk;
	uv_process_t proc; /* the qckpt run or bare QEMU we started */
	bool proc_running;
	int next_id;
};

static void on_handle_closed(uv_handle_t *h)
{
	((struct bvm *)h->data)->open--;
}

static void on_conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;

	c->vm->open--;
	json_decref(c->reply);
	free(c);
}

static void on_write_done(uv_write_t *req, int status)
{
	(void)status;
	free(req->data);
	free(req);
}

static void conn_send(struct conn *c, const char *text)
{
	uv_write_t *req = malloc(sizeof *req);
	char *copy = xfmt("%s\r\n", text);
	uv_buf_t b = uv_buf_init(copy, (unsigned)strlen(copy));

	req->data = copy;
	if (uv_write(req, (uv_stream_t *)&c->pipe, &b, 1, on_write_done) < 0) {
		free(copy);
		free(req);
	}
}

static void add_line(struct bvm *vm, int life, const char *text, size_t len)
{
	if (len > 0 && text[len - 1] == '\r')
		len--;
	if (vm->nlines == vm->lcap) {
		vm->lcap = vm->lcap ? 2 * vm->lcap : 1024;
		vm->lines = realloc(vm->lines, vm->lcap * sizeof *vm->lines);
	}
	vm->lines[vm->nlines++] = (struct line){ strndup(text, len), life, now_us() };
}

static void add_event(struct bvm *vm, int life, json_t *msg)
{
	json_t *ts = json_object_get(msg, "timestamp");
	const char *status = json_string_value(
		json_object_get(json_object_get(msg, "data"), "status"));

	if (vm->nevents == vm->ecap) {
		vm->ecap = vm->ecap ? 2 * vm->ecap : 256;
		vm->events = realloc(vm->events, vm->ecap * sizeof *vm->events);
	}
	vm->events[vm->nevents++] = (struct event){
		strdup(json_string_value(json_object_get(msg, "event"))),
		status ? strdup(status) : NULL, life,
		(int64_t)json_integer_value(json_object_get(ts, "seconds")) * 1000000 +
			json_integer_value(json_object_get(ts, "microseconds")),
	};
}

static void on_qmp_message(struct conn *c, json_t *msg)
{
	json_t *id = json_object_get(msg, "id");

	if (json_object_get(msg, "QMP")) {
		if (c->life < MAX_LIVES)
			c->vm->greet_us[c->life] = now_us();
		conn_send(c, "{\"execute\": \"qmp_capabilities\"}");
	} else if (json_object_get(msg, "event")) {
		add_event(c->vm, c->life, msg);
	} else if (json_is_integer(id) && json_integer_value(id) == c->waiting_id) {
		json_decref(c->reply);
		c->reply = json_incref(msg);
	}
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	struct conn *c = h->data;

	(void)size;
	buf->base = c->buf + c->len;
	buf->len = sizeof c->buf - c->len;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	char *nl;

	(void)buf;
	if (n < 0) {
		if (c->qmp) {
			if (c->life < MAX_LIVES)
				c->vm->gone_us[c->life] = now_us();
			if (c->vm->obs == c)
				c->vm->obs = NULL;
		}
		uv_close((uv_handle_t *)s, on_conn_closed);
		return;
	}
	c->len += (size_t)n;
	while ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
		size_t len = (size_t)(nl - c->buf);

		if (c->qmp) {
			json_t *msg = json_loadb(c->buf, len, 0, NULL);

			if (msg)
				on_qmp_message(c, msg);
			json_decref(msg);
		} else {
			add_line(c->vm, c->life, c->buf, len);
		}
		c->len -= len + 1;
		memmove(c->buf, nl + 1, c->len);
	}
	if (c->len == sizeof c->buf)
		c->len = 0; /* a line longer than the buffer: dropped */
}

static void on_connection(uv_stream_t *server, int status)
{
	struct bvm *vm = server->data;
	bool qmp = server == (uv_stream_t *)&vm->obs_server;
	struct conn *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof *c);
	c->vm = vm;
	c->qmp = qmp;
	c->life = qmp ? ++vm->obs_lives : ++vm->serial_lives;
	vm->open++;
	uv_pipe_init(harness_loop(), &c->pipe, 0);
	c->pipe.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0) {
		uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
		return;
	}
	if (qmp)
		vm->obs = c;
	uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

static void listen_on(struct bvm *vm, uv_pipe_t *server, const char *path)
{
	uv_pipe_init(harness_loop(), server, 0);
	server->data = vm;
	vm->open++;
	unlink(path);
	if (uv_pipe_bind(server, path) < 0 ||
	    uv_listen((uv_stream_t *)server, 4, on_connection) < 0) {
		fprintf(stderr, "bench: cannot listen on %s\n", path);
		exit(1);
	}
}

static void on_proc_exit(uv_process_t *p, int64_t status, int sig)
{
	struct bvm *vm = p->data;

	(void)status;
	(void)sig;
	vm->proc_running = false;
	uv_close((uv_handle_t *)p, on_handle_closed);
}

/* Start argv as our child; its stdout dropped, stderr ours. */
static int spawn(struct bvm *vm, char **argv)
{
	uv_process_options_t po = { 0 };
	uv_stdio_container_t stdio[3] = {
		{ .flags = UV_IGNORE }, { .flags = UV_IGNORE },
		{ .flags = UV_INHERIT_FD, .data.fd = 2 },
	};
	int rc;

	po.file = argv[0];
	po.args = argv;
	po.stdio = stdio;
	po.stdio_count = 3;
	po.exit_cb = on_proc_exit;
	vm->proc.data = vm;
	rc = uv_spawn(harness_loop(), &vm->proc, &po);
	if (rc < 0) {
		fprintf(stderr, "bench: cannot start %s: %s\n", argv[0], uv_strerror(rc));
		uv_close((uv_handle_t *)&vm->proc, NULL);
		return -1;
	}
	vm->open++;
	vm->proc_running = true;
	return 0;
}

/* ---- waiting ------------------------------------------------------------ */

struct wait_life {
	struct bvm *vm;
	int life;
};

static bool greeted(void *p)
{
	struct wait_life *w = p;

	return w->vm->obs_lives >= w->life && w->life < MAX_LIVES &&
	       w->vm->greet_us[w->life] > 0;
}

static bool life_gone(void *p)
{
	struct wait_life *w = p;

	return w->life < MAX_LIVES && w->vm->gone_us[w->life] > 0;
}

struct wait_event {
	struct bvm *vm;
	int life;
	const char *name;
	const char *status; /* for MIGRATION: completed or failed */
	int64_t after_us;
	const struct event *found;
};

static bool event_seen(void *p)
{
	struct wait_event *w = p;

	for (size_t i = 0; i < w->vm->nevents; i++) {
		const struct event *e = &w->vm->events[i];

		if (e->life == w->life && e->ts_us >= w->after_us &&
		    strcmp(e->name, w->name) == 0 &&
		    (!w->status || (e->status && strstr(w->status, e->status)))) {
			w->found = e;
			return true;
		}
	}
	return false;
}

static const struct event *wait_event(struct bvm *vm, int life, const char *name,
				      const char *status, int64_t after_us, unsigned ms)
{
	struct wait_event w = { vm, life, name, status, after_us, NULL };

	harness_run_until(event_seen, &w, ms);
	return w.found;
}

static const struct event *find_event(struct bvm *vm, int life, const char *name,
				      const char *status, int64_t after_us)
{
	struct wait_event w = { vm, life, name, status, after_us, NULL };

	event_seen(&w);
	return w.found;
}

struct wait_tick {
	struct bvm *vm;
	int life;
	int64_t after_us;
	const struct line *found;
};

static bool tick_seen(void *p)
{
	struct wait_tick *w = p;

	for (size_t i = 0; i < w->vm->nlines; i++) {
		const struct line *l = &w->vm->lines[i];

		if ((w->life == 0 || l->life == w->life) && l->recv_us > w->after_us &&
		    strstr(l->text, "qckpt-guest: tick ")) {
			w->found = l;
			return true;
		}
	}
	return false;
}

/* The first tick line of serial life LIFE (0: any) received after AFTER. */
static const struct line *wait_tick(struct bvm *vm, int life, int64_t after_us, unsigned ms)
{
	struct wait_tick w = { vm, life, after_us, NULL };

	harness_run_until(tick_seen, &w, ms);
	return w.found;
}

static bool reply_in(void *p)
{
	struct bvm *vm = p;

	return vm->obs == NULL || vm->obs->reply != NULL;
}

/* A command on the current observer connection: 0 with *result (return
 * value), -1 on an error reply (*result its desc string), -2 no reply.
 * With fd >= 0 the command goes out with that fd (SCM_RIGHTS), written
 * straight to the socket: a few hundred bytes to an idle monitor. */
static int obs_cmd_fd(struct bvm *vm, const char *cmd, json_t *args, int fd,
		      json_t **result);

static int obs_cmd(struct bvm *vm, const char *cmd, json_t *args, json_t **result)
{
	return obs_cmd_fd(vm, cmd, args, -1, result);
}

static int send_with_fd(struct conn *c, const char *text, int fd)
{
	char ctl[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { (void *)text, strlen(text) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			     .msg_controllen = sizeof ctl };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	uv_os_fd_t sock;

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof fd);
	if (uv_fileno((uv_handle_t *)&c->pipe, &sock) != 0)
		return -1;
	return sendmsg(sock, &mh, 0) == (ssize_t)iov.iov_len ? 0 : -1;
}

static int obs_cmd_fd(struct bvm *vm, const char *cmd, json_t *args, int fd,
		      json_t **result)
{
	json_t *msg = json_pack("{s:s, s:i}", "execute", cmd, "id", ++vm->next_id);
	struct conn *c = vm->obs;
	char *text;
	int rc = -2;

	if (args)
		json_object_set_new(msg, "arguments", args);
	if (result)
		*result = NULL;
	if (!c) {
		json_decref(msg);
		return -2;
	}
	c->waiting_id = vm->next_id;
	json_decref(c->reply);
	c->reply = NULL;
	text = json_dumps(msg, JSON_COMPACT);
	if (fd >= 0) {
		char *line = xfmt("%s\r\n", text);

		if (send_with_fd(c, line, fd) != 0)
			c->waiting_id = -1;
		free(line);
	} else {
		conn_send(c, text);
	}
	free(text);
	json_decref(msg);
	harness_run_until(reply_in, vm, WAIT_MS);
	if (vm->obs == c && c->reply) {
		json_t *err = json_object_get(c->reply, "error");

		rc = err ? -1 : 0;
		if (result)
			*result = json_incref(err ? json_object_get(err, "desc")
						  : json_object_get(c->reply, "return"));
		json_decref(c->reply);
		c->reply = NULL;
	}
	return rc;
}

/* ---- results ------------------------------------------------------------ */

struct sample {
	double resume; /* ms from the command (or process start) to RESUME */
	double stopped; /* ms the guest did not run: the old guest's STOP or
			 * SHUTDOWN (loadvm: STOP) to the RESUME */
	double tick;   /* ms to the first tick line after RESUME */
	double start;  /* ms, QEMU's process start -> QMP greeting */
	double gone;   /* ms, command -> old QEMU's monitor closed */
	double begin;  /* ms, command -> MIGRATION setup (loadvm: STOP) */
	double load;   /* ms, MIGRATION setup -> completed; loadvm: STOP -> RESUME */
	double bytes, alloc; /* memory file */
};

struct cell {
	char *qemu;
	unsigned mib;
	const char *load;
	const char *method;
	char *detail; /* how it loaded, e.g. "paused, mapped-ram, 2 channels" */
	struct sample s[MAX_REPS];
	int n;
	char *note;
};

static struct cell cells[MAX_CELLS];
static int ncells;
static char *registry_path, *catalog_dir, *qckpt_bin;
/* QCKPT_BENCH_RAMFILE, and whether run_config launches its VM so now */
static const char *ramfile_dir;
static bool ramfile_vm;

static const char *vm_catalog(void)
{
	return ramfile_vm ? ramfile_dir : catalog_dir;
}

static struct cell *cell_for(const char *qemu, unsigned mib, const char *load,
			     const char *method)
{
	for (int i = 0; i < ncells; i++)
		if (strcmp(cells[i].qemu, qemu) == 0 && cells[i].mib == mib &&
		    strcmp(cells[i].load, load) == 0 && strcmp(cells[i].method, method) == 0)
			return &cells[i];
	if (ncells == MAX_CELLS)
		abort();
	cells[ncells] = (struct cell){ .qemu = strdup(qemu), .mib = mib, .load = load,
				       .method = method };
	return &cells[ncells++];
}

static void cell_fail(struct cell *c, char *msg)
{
	fprintf(stderr, "bench: %s %u %s %s: %s\n", c->qemu, c->mib, c->load, c->method, msg);
	if (!c->note)
		c->note = msg;
	else
		free(msg);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int stats(const struct cell *c, size_t off, double *mn, double *med, double *mx)
{
	double v[MAX_REPS];
	int n = 0;

	for (int i = 0; i < c->n; i++) {
		double x = *(const double *)((const char *)&c->s[i] + off);

		if (!isnan(x))
			v[n++] = x;
	}
	if (n == 0)
		return 0;
	qsort(v, (size_t)n, sizeof v[0], cmp_double);
	*mn = v[0];
	*mx = v[n - 1];
	*med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	return n;
}

static double median(const struct cell *c, size_t off)
{
	double mn, med, mx;

	return stats(c, off, &mn, &med, &mx) ? med : NAN;
}

static void put_num(double x)
{
	if (isnan(x))
		printf("-");
	else if (x >= 100 || x == (double)(long long)x)
		printf("%.0f", x);
	else if (x >= 10)
		printf("%.1f", x);
	else
		printf("%.2f", x);
}

static void put_col(double x)
{
	printf(" ");
	put_num(x);
	printf(" |");
}

/* The medians of read rate: allocated MiB / load s. */
static double rate_med(const struct cell *c)
{
	struct cell r = { .n = 0 };

	for (int k = 0; k < c->n; k++)
		if (!isnan(c->s[k].alloc) && c->s[k].load > 0)
			r.s[r.n++].load = c->s[k].alloc / 1048576.0 / (c->s[k].load / 1000.0);
	return median(&r, offsetof(struct sample, load));
}

static const struct cell *sibling(const struct cell *c, const char *method)
{
	for (int i = 0; i < ncells; i++)
		if (strcmp(cells[i].qemu, c->qemu) == 0 && cells[i].mib == c->mib &&
		    strcmp(cells[i].load, c->load) == 0 && strcmp(cells[i].method, method) == 0)
			return &cells[i];
	return NULL;
}

static void put_ratio(const struct cell *c, const char *method)
{
	const struct cell *o = sibling(c, method);
	double a = median(c, offsetof(struct sample, resume));
	double b = o ? median(o, offsetof(struct sample, resume)) : NAN;

	if (o == c || isnan(a) || isnan(b) || b <= 0)
		printf(" - |");
	else
		printf(" %.2fx |", a / b);
}

static void print_table(void)
{
	int notes = 0;

	printf("| QEMU | RAM | guest | method | to RESUME min / med / max ms "
	       "| guest stopped med ms | to first tick med ms | QEMU start med ms | old QEMU gone med ms "
	       "| load starts med ms | load med ms | memory file MiB (allocated) | read rate MiB/s "
	       "| vs bare -incoming | vs loadvm | vs bare-many |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (int i = 0; i < ncells; i++) {
		const struct cell *c = &cells[i];
		double mn, med, mx;

		printf("| %s | %u MiB | %s | %s%s%s%s |", c->qemu, c->mib, c->load, c->method,
		       c->detail ? " (" : "", c->detail ? c->detail : "", c->detail ? ")" : "");
		if (c->n == 0) {
			printf(" failed");
			if (c->note)
				printf(" [%d]", ++notes);
			printf(" | | | | | | | | | | | |\n");
			continue;
		}
		stats(c, offsetof(struct sample, resume), &mn, &med, &mx);
		printf(" ");
		put_num(mn);
		printf(" / ");
		put_num(med);
		printf(" / ");
		put_num(mx);
		if (c->note)
			printf(" [%d]", ++notes);
		printf(" |");
		put_col(median(c, offsetof(struct sample, stopped)));
		put_col(median(c, offsetof(struct sample, tick)));
		put_col(median(c, offsetof(struct sample, start)));
		put_col(median(c, offsetof(struct sample, gone)));
		put_col(median(c, offsetof(struct sample, begin)));
		put_col(median(c, offsetof(struct sample, load)));
		{
			double b = median(c, offsetof(struct sample, bytes));
			double a = median(c, offsetof(struct sample, alloc));

			if (isnan(b)) {
				printf(" - |");
			} else {
				printf(" ");
				put_num(b / 1048576.0);
				printf(" (");
				put_num(a / 1048576.0);
				printf(") |");
			}
		}
		put_col(rate_med(c));
		put_ratio(c, "bare");
		put_ratio(c, "loadvm");
		put_ratio(c, "bare-many");
		printf("\n");
	}
	printf("\nto RESUME: from the command (bare: QEMU's process start) to the "
	       "RESUME event's timestamp, seen on an observer QMP monitor that every "
	       "QEMU of the VM connects to; guest stopped: from the old guest's STOP "
	       "or SHUTDOWN (loadvm: its STOP) to that RESUME, by QEMU's timestamps; "
	       "to first tick: to the guest's first "
	       "\"qckpt-guest: tick\" line received after the RESUME (the guest ticks "
	       "every 200 ms); QEMU start: its process start (for qckpt, the `qckpt "
	       "run` that execs it, /proc, 10 ms resolution) to its QMP greeting; old "
	       "QEMU gone: the command to the old QEMU's monitor closing; load "
	       "starts: the command to MIGRATION setup (loadvm: STOP); load: "
	       "MIGRATION setup -> completed by QEMU's timestamps (loadvm: STOP -> "
	       "RESUME); read rate: the memory file's allocated MiB over the load; "
	       "vs: ratio of the to-RESUME medians.  All but the range are medians.\n");
	if (notes) {
		printf("\n");
		notes = 0;
		for (int i = 0; i < ncells; i++)
			if (cells[i].note)
				printf("[%d] %s %u MiB %s %s: %s\n", ++notes, cells[i].qemu,
				       cells[i].mib, cells[i].load, cells[i].method,
				       cells[i].note);
	}
}

/* ---- the VM ------------------------------------------------------------- */

static void push(char ***v, size_t *n, const char *s)
{
	*v = realloc(*v, (*n + 2) * sizeof **v);
	(*v)[(*n)++] = strdup(s);
	(*v)[*n] = NULL;
}

static void free_argv(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

/* QEMU's command line for the VM, disk DISK (qcow2), extra args after. */
static char **qemu_cmdline(struct bvm *vm, const char *qemu, unsigned mib,
			   const char *append, const char *disk, const char *extra)
{
	const char *guest = getenv("QCKPT_GUEST_DIR");
	char **v = NULL;
	size_t n = 0;
	char *s;

	push(&v, &n, qemu);
	for (const char *const *a = (const char *const[]){ "-accel", "tcg", "-nodefaults",
			"-no-user-config", "-display", "none", "-no-reboot", NULL }; *a; a++)
		push(&v, &n, *a);
	s = xfmt("%u", mib);
	push(&v, &n, "-m");
	push(&v, &n, s);
	free(s);
	s = xfmt("%s/vmlinuz", guest);
	push(&v, &n, "-kernel");
	push(&v, &n, s);
	free(s);
	s = xfmt("%s/initrd.img", guest);
	push(&v, &n, "-initrd");
	push(&v, &n, s);
	free(s);
	s = xfmt("console=ttyS0 quiet panic=-1%s%s", append ? " " : "", append ? append : "");
	push(&v, &n, "-append");
	push(&v, &n, s);
	free(s);
	s = xfmt("socket,id=serial0,path=%s", vm->serial_path);
	push(&v, &n, "-chardev");
	push(&v, &n, s);
	free(s);
	push(&v, &n, "-serial");
	push(&v, &n, "chardev:serial0");
	s = xfmt("socket,id=obs0,path=%s", vm->obs_path);
	push(&v, &n, "-chardev");
	push(&v, &n, s);
	free(s);
	push(&v, &n, "-mon");
	push(&v, &n, "chardev=obs0,mode=control");
	s = xfmt("file=%s,format=qcow2,if=none,id=drv0", disk);
	push(&v, &n, "-drive");
	push(&v, &n, s);
	free(s);
	push(&v, &n, "-device");
	push(&v, &n, "virtio-blk-pci,drive=drv0,id=vdisk0");
	if (extra) {
		push(&v, &n, "-incoming");
		push(&v, &n, extra);
	}
	return v;
}

static struct bvm *bvm_new(const char *name)
{
	struct bvm *vm = calloc(1, sizeof *vm);

	vm->name = strdup(name);
	vm->serial_path = tmp_path("%s.serial", name);
	vm->obs_path = tmp_path("%s.obs", name);
	listen_on(vm, &vm->serial_server, vm->serial_path);
	listen_on(vm, &vm->obs_server, vm->obs_path);
	return vm;
}

/* The pid and start (wall clock) of the VM's QEMU now, from vm.json. */
static long vm_pid(struct bvm *vm, int64_t *start_us)
{
	char *path = xfmt("%s/%s/vm.json", vm_catalog(), vm->name);
	json_t *st = json_load_file(path, 0, NULL);
	json_t *cl = json_object_get(st, "CommandLine");
	long pid = (long)json_integer_value(json_object_get(cl, "Pid"));
	long long start = json_integer_value(json_object_get(cl, "StartTime"));

	free(path);
	json_decref(st);
	if (pid <= 0 || proc_start_time(pid) != start)
		return -1;
	if (start_us)
		*start_us = ticks_to_wall_us(start);
	return pid;
}

static bool proc_done(void *p)
{
	return !((struct bvm *)p)->proc_running;
}

/* Kill the QEMU of the current life, and wait for its monitor to close. */
static void kill_life(struct bvm *vm, long pid)
{
	struct wait_life w = { vm, vm->obs_lives };

	if (pid > 0)
		kill((pid_t)pid, SIGKILL);
	if (vm->proc_running)
		uv_process_kill(&vm->proc, SIGKILL);
	harness_run_until(proc_done, vm, WAIT_MS);
	if (harness_run_until(life_gone, &w, WAIT_MS) < 0)
		fprintf(stderr, "bench: %s: QEMU's monitor did not close\n", vm->name);
}

static bool all_closed(void *p)
{
	return ((struct bvm *)p)->open == 0;
}

static void bvm_free(struct bvm *vm)
{
	kill_life(vm, vm_pid(vm, NULL));
	uv_close((uv_handle_t *)&vm->serial_server, on_handle_closed);
	uv_close((uv_handle_t *)&vm->obs_server, on_handle_closed);
	if (harness_run_until(all_closed, vm, WAIT_MS) < 0)
		fprintf(stderr, "bench: %s: connections still open\n", vm->name);
	unlink(vm->serial_path);
	unlink(vm->obs_path);
	for (size_t i = 0; i < vm->nlines; i++)
		free(vm->lines[i].text);
	for (size_t i = 0; i < vm->nevents; i++) {
		free(vm->events[i].name);
		free(vm->events[i].status);
	}
	free(vm->lines);
	free(vm->events);
	free_argv(vm->qemu_argv);
	free(vm->serial_path);
	free(vm->obs_path);
	free(vm->disk);
	free(vm->name);
	free(vm);
}

/* The first line of S, at most 300 characters, for a printf "%.*s". */
static int first_line(const char **s)
{
	size_t n;

	if (!*s || !(*s)[0])
		*s = "(no message)";
	n = strcspn(*s, "\n");
	return (int)(n > 300 ? 300 : n);
}

/* The MIGRATION setup -> completed time of life LIFE, ms. */
static double load_ms(struct bvm *vm, int life)
{
	const struct event *a = find_event(vm, life, "MIGRATION", "setup", 0);
	const struct event *b = find_event(vm, life, "MIGRATION", "completed", 0);

	return a && b ? (double)(b->ts_us - a->ts_us) / 1000.0 : NAN;
}

/* From T0 to life LIFE's MIGRATION setup, ms. */
static double begin_ms(struct bvm *vm, int life, int64_t t0)
{
	const struct event *a = find_event(vm, life, "MIGRATION", "setup", 0);

	return a ? (double)(a->ts_us - t0) / 1000.0 : NAN;
}

static double allocated(const char *path)
{
	struct stat st;

	return path && stat(path, &st) == 0 ? (double)st.st_blocks * 512.0 : NAN;
}

/* ---- the three ways back -------------------------------------------------- */

/* Drop the memory file from the page cache, for a cold-cache round. */
static void drop_cache(json_t *mem)
{
	const char *path = json_string_value(json_object_get(mem, "Path"));
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;

	if (fd < 0 || fdatasync(fd) != 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0)
		fprintf(stderr, "bench: cannot drop %s from the page cache\n", path ? path : "?");
	if (fd >= 0)
		close(fd);
}

static int measure_qckpt(struct bvm *vm, json_t *rec, bool cold, bool seq, struct sample *s,
			 char **msg)
{
	const char *id = json_string_value(json_object_get(rec, "Id"));
	json_t *mem = json_object_get(rec, "MemoryState");
	char *argv[] = { qckpt_bin, "restore", "-v", vm->name, (char *)id, NULL };
	char *err = NULL;
	int status, rc, old = vm->obs_lives, life = old + 1;
	int64_t t0, qstart = 0;
	const struct event *resume;
	const struct line *tick;
	struct wait_life w = { vm, life };

	if (cold)
		drop_cache(mem);
	if (seq) /* the old QEMU quits before the new one starts */
		setenv("QCKPT_RESTORE_SEQUENTIAL", "1", 1);
	t0 = now_us();
	rc = harness_run(argv, NULL, &err, &status);
	unsetenv("QCKPT_RESTORE_SEQUENTIAL");
	if (rc != 0 || status != 0) {
		const char *e = err;
		int len = first_line(&e);

		*msg = xfmt("qckpt restore exited %d: %.*s", status, len, e);
		free(err);
		return -1;
	}
	if (getenv("QCKPT_BENCH_VERBOSE"))
		fprintf(stderr, "%s", err);
	free(err);
	harness_run_until(greeted, &w, WAIT_MS);
	resume = wait_event(vm, life, "RESUME", NULL, 0, WAIT_MS);
	if (!resume) {
		*msg = xfmt("no RESUME from the restored QEMU (life %d)", life);
		return -1;
	}
	s->resume = (double)(resume->ts_us - t0) / 1000.0;
	{
		/* the old guest stopped: `stop` (the pre-start) or the quit */
		const struct event *st = find_event(vm, old, "STOP", NULL, t0);
		const struct event *sd = find_event(vm, old, "SHUTDOWN", NULL, t0);

		if (!st || (sd && sd->ts_us < st->ts_us))
			st = sd;
		s->stopped = st ? (double)(resume->ts_us - st->ts_us) / 1000.0 : NAN;
	}
	tick = wait_tick(vm, 0, resume->ts_us, WAIT_MS);
	s->tick = tick ? (double)(tick->recv_us - t0) / 1000.0 : NAN;
	s->start = vm_pid(vm, &qstart) > 0 && life < MAX_LIVES && vm->greet_us[life] > 0
			   ? (double)(vm->greet_us[life] - qstart) / 1000.0 : NAN;
	s->gone = old < MAX_LIVES && vm->gone_us[old] > 0
			  ? (double)(vm->gone_us[old] - t0) / 1000.0 : NAN;
	s->load = load_ms(vm, life);
	s->begin = begin_ms(vm, life, t0);
	s->bytes = (double)json_integer_value(json_object_get(mem, "Bytes"));
	s->alloc = allocated(json_string_value(json_object_get(mem, "Path")));
	return 0;
}

static int hmp(struct bvm *vm, const char *line, char **msg)
{
	json_t *r = NULL;
	int rc = obs_cmd(vm, "human-monitor-command",
			 json_pack("{s:s}", "command-line", line), &r);
	const char *text = json_string_value(r);

	if (rc != 0 || (text && text[0] && (strstr(text, "rror") || strstr(text, "annot")))) {
		*msg = xfmt("%s: %s", line, text ? text : "no reply");
		json_decref(r);
		return -1;
	}
	json_decref(r);
	return 0;
}

static int measure_loadvm(struct bvm *vm, struct sample *s, char **msg)
{
	int life = vm->obs_lives;
	int64_t t0 = now_us();
	const struct event *stop, *resume;
	const struct line *tick;

	if (hmp(vm, "loadvm benchsnap", msg) != 0)
		return -1;
	resume = wait_event(vm, life, "RESUME", NULL, t0, WAIT_MS);
	stop = find_event(vm, life, "STOP", NULL, t0);
	if (!resume) {
		*msg = xfmt("no RESUME after loadvm");
		return -1;
	}
	s->resume = (double)(resume->ts_us - t0) / 1000.0;
	tick = wait_tick(vm, 0, resume->ts_us, WAIT_MS);
	s->tick = tick ? (double)(tick->recv_us - t0) / 1000.0 : NAN;
	s->load = stop ? (double)(resume->ts_us - stop->ts_us) / 1000.0 : NAN;
	s->stopped = s->load;
	s->begin = stop ? (double)(stop->ts_us - t0) / 1000.0 : NAN;
	s->start = s->gone = s->bytes = s->alloc = NAN;
	return 0;
}

static bool has_cap(json_t *caps, const char *name)
{
	size_t i;
	json_t *c;

	json_array_foreach(caps, i, c)
		if (json_is_string(c) && strcmp(json_string_value(c), name) == 0)
			return true;
	return false;
}

/* Set up and start the load on the bare QEMU; its detail for the table. */
static int bare_load(struct bvm *vm, json_t *mem, long cpus, char **detail, char **msg)
{
	json_t *rcaps = json_object_get(mem, "Capabilities");
	const char *path = json_string_value(json_object_get(mem, "Path"));
	json_t *caps = json_array(), *r = NULL;
	bool mapped = has_cap(rcaps, "mapped-ram");
	size_t i;
	json_t *c;
	char *uri;
	int rc;

	json_array_append_new(caps, json_pack("{s:s, s:b}", "capability", "events", "state", 1));
	json_array_foreach(rcaps, i, c)
		if (json_is_string(c) && strcmp(json_string_value(c), "background-snapshot") != 0)
			json_array_append_new(caps, json_pack("{s:s, s:b}", "capability",
							      json_string_value(c), "state", 1));
	rc = obs_cmd(vm, "migrate-set-capabilities", json_pack("{s:o}", "capabilities", caps), &r);
	if (rc == 0 && mapped) {
		json_decref(r);
		rc = obs_cmd(vm, "migrate-set-parameters",
			     json_pack("{s:I}", "multifd-channels", (json_int_t)(cpus > 0 ? cpus : 2)), &r);
	}
	if (rc == 0 && !mapped) {
		/* as qckpt does before QEMU 9: the file's fd by name */
		int fd = open(path, O_RDONLY | O_CLOEXEC);

		json_decref(r);
		rc = fd < 0 ? -2 : obs_cmd_fd(vm, "getfd", json_pack("{s:s}", "fdname", "bench"),
					      fd, &r);
		if (fd >= 0)
			close(fd);
	}
	if (rc == 0) {
		json_decref(r);
		uri = mapped ? xfmt("file:%s", path) : xfmt("fd:bench");
		if (!*detail)
			*detail = mapped ? xfmt("file:, mapped-ram, %ld multifd channels", cpus)
					 : xfmt("fd:");
		rc = obs_cmd(vm, "migrate-incoming", json_pack("{s:s}", "uri", uri), &r);
		free(uri);
	}
	if (rc != 0) {
		*msg = xfmt("%s", json_string_value(r) ? json_string_value(r) : "no reply");
		json_decref(r);
		return -1;
	}
	json_decref(r);
	return 0;
}

static int measure_bare(struct bvm *vm, json_t *rec, const char *qemu, unsigned mib,
			const char *append, bool cold, long channels, char **detail,
			struct sample *s, char **msg)
{
	static int serial;
	json_t *mem = json_object_get(rec, "MemoryState");
	json_t *disk0 = json_array_get(json_object_get(rec, "Disks"), 0);
	const char *frozen = json_string_value(json_object_get(disk0, "CheckpointImage"));
	char *ovl = tmp_path("bare%d.qcow2", ++serial);
	char **argv = NULL;
	int life = vm->obs_lives + 1, rc = -1;
	struct wait_life w = { vm, life };
	const struct event *done, *resume;
	const struct line *tick;
	int64_t t0;
	json_t *st = NULL;

	if (!frozen || disk_create_overlay(ovl, frozen, "qcow2") != 0) {
		*msg = xfmt("cannot make an overlay on %s", frozen ? frozen : "(no image)");
		goto out;
	}
	argv = qemu_cmdline(vm, qemu, mib, append, ovl, "defer");
	if (cold)
		drop_cache(mem);
	t0 = now_us();
	if (spawn(vm, argv) != 0 || harness_run_until(greeted, &w, WAIT_MS) < 0) {
		*msg = xfmt("the bare QEMU did not greet");
		goto out;
	}
	s->start = (double)(vm->greet_us[life] - t0) / 1000.0;
	if (bare_load(vm, mem, channels, detail, msg) != 0)
		goto out;
	done = wait_event(vm, life, "MIGRATION", "completed failed", 0, WAIT_MS);
	if (!done || strcmp(done->status, "completed") != 0) {
		*msg = xfmt("the bare load %s", done ? "failed" : "did not complete");
		goto out;
	}
	/* QEMU starts the guest itself when the state says it ran */
	if (!find_event(vm, life, "RESUME", NULL, 0) &&
	    obs_cmd(vm, "query-status", NULL, &st) == 0 &&
	    strcmp(json_string_value(json_object_get(st, "status")) ?: "", "running") != 0)
		obs_cmd(vm, "cont", NULL, NULL);
	resume = wait_event(vm, life, "RESUME", NULL, 0, WAIT_MS);
	if (!resume) {
		*msg = xfmt("no RESUME from the bare QEMU");
		goto out;
	}
	s->resume = (double)(resume->ts_us - t0) / 1000.0;
	tick = wait_tick(vm, 0, resume->ts_us, WAIT_MS);
	s->tick = tick ? (double)(tick->recv_us - t0) / 1000.0 : NAN;
	s->gone = s->stopped = NAN;
	s->load = load_ms(vm, life);
	s->begin = begin_ms(vm, life, t0);
	s->bytes = (double)json_integer_value(json_object_get(mem, "Bytes"));
	s->alloc = allocated(json_string_value(json_object_get(mem, "Path")));
	rc = 0;
out:
	json_decref(st);
	if (vm->proc_running || vm->obs_lives >= life)
		kill_life(vm, -1);
	free_argv(argv);
	unlink(ovl);
	free(ovl);
	return rc;
}

/* ---- one configuration -------------------------------------------------- */

static char *qemu_version(struct bvm *vm)
{
	json_t *r = NULL, *q;
	char *v;

	if (obs_cmd(vm, "query-version", NULL, &r) != 0) {
		json_decref(r);
		return xfmt("?");
	}
	q = json_object_get(r, "qemu");
	v = xfmt("%lld.%lld.%lld", (long long)json_integer_value(json_object_get(q, "major")),
		 (long long)json_integer_value(json_object_get(q, "minor")),
		 (long long)json_integer_value(json_object_get(q, "micro")));
	json_decref(r);
	return v;
}

static char *versions_seen[8];
static int nversions;

static void note_version(const char *ver, const char *bin)
{
	for (int i = 0; i < nversions; i++)
		if (strncmp(versions_seen[i], ver, strlen(ver)) == 0 &&
		    versions_seen[i][strlen(ver)] == ' ')
			return;
	if (nversions < 8)
		versions_seen[nversions++] = xfmt("%s (%s)", ver, bin);
}

static bool want(char **methods, int n, const char *m)
{
	for (int i = 0; i < n; i++)
		if (strcmp(methods[i], m) == 0)
			return true;
	return false;
}

static void record(struct cell *c, int r, int rc, struct sample *s, char *msg)
{
	if (rc == 0) {
		c->s[c->n++] = *s;
		fprintf(stderr, "bench: %s %u %s %s #%d: RESUME %.0f ms, tick %.0f, start %.0f, "
			"gone %.0f, load at %.0f for %.0f ms\n", c->qemu, c->mib, c->load, c->method,
			r + 1, s->resume, s->tick, s->start, s->gone, s->begin, s->load);
	} else {
		cell_fail(c, msg);
	}
}

static void run_config(const char *qemu, const char *label, unsigned mib, const char *load,
		       const char *busy, char **methods, int nm, int reps)
{
	static int vmserial;
	char *name = xfmt("r%d", ++vmserial);
	const char *app = strcmp(load, "busy") == 0 ? busy : NULL;
	struct bvm *vm = bvm_new(name);
	char **argv = NULL, *ver = NULL, *out = NULL, *err = NULL, *msg = NULL;
	char *ckname = xfmt("bench-%s", name);
	size_t n = 0;
	json_t *rec = NULL;
	const struct line *tick;
	int status;
	uint64_t t0 = uv_hrtime();

	fprintf(stderr, "bench: QEMU %s, %u MiB, %s: booting\n", label, mib, load);
	vm->disk = tmp_path("%s-disk0.qcow2", name);
	if (disk_create(vm->disk, HVM_QCOW2, 64) != 0)
		abort();
	vm->qemu_argv = qemu_cmdline(vm, qemu, mib, app, vm->disk, NULL);
	push(&argv, &n, qckpt_bin);
	push(&argv, &n, "run");
	push(&argv, &n, "--dir");
	push(&argv, &n, vm_catalog());
	if (ramfile_vm)
		push(&argv, &n, "--ram-file");
	push(&argv, &n, name);
	push(&argv, &n, "--");
	for (size_t i = 0; vm->qemu_argv[i]; i++)
		push(&argv, &n, vm->qemu_argv[i]);
	if (spawn(vm, argv) != 0)
		goto fail;
	{
		struct wait_life w = { vm, 1 };

		harness_run_until(greeted, &w, 30000);
	}
	ver = vm->obs ? qemu_version(vm) : xfmt("%s", label);
	/* let a busy guest fill its dirty set once (bench-pause waits as long) */
	tick = wait_tick(vm, 1, 0, BOOT_MS);
	for (int k = 0; tick && k < 15; k++)
		tick = wait_tick(vm, 1, tick->recv_us, 60000);
	if (!tick) {
		msg = xfmt("the VM did not boot (%s)", qemu);
		goto fail;
	}
	note_version(ver, qemu);
	fprintf(stderr, "bench: booted in %.1f s\n", (double)(uv_hrtime() - t0) / 1e9);
	{
		char *ck[] = { qckpt_bin, "checkpoint", "--passthru", "-q", name, ckname, NULL };

		if (harness_run(ck, &out, &err, &status) != 0 || status != 0) {
			const char *e = err;
			int len = first_line(&e);

			msg = xfmt("qckpt checkpoint: %.*s", len, e);
			goto fail;
		}
		rec = json_loads(out, JSON_DISABLE_EOF_CHECK, NULL);
		if (!rec || !json_is_object(json_object_get(rec, "MemoryState"))) {
			msg = xfmt("the checkpoint has no memory: %.200s", out);
			goto fail;
		}
	}
	for (int variant = 0; variant < 3; variant++) {
		/* as it comes, the memory file out of the page cache, the
		 * old QEMU quit before the new one starts */
		static const char *const names[2][3] = {
			{ "qckpt", "qckpt-cold", "qckpt-seq" },
			{ "ram-file", "ram-file-cold", "ram-file-seq" },
		};
		const char *method = names[ramfile_vm][variant];
		bool cold = variant == 1, seq = variant == 2;
		struct cell *c;

		if (!want(methods, nm, method))
			continue;
		c = cell_for(ver, mib, load, method);
		c->detail = xfmt("%s checkpoint",
				 json_string_value(json_object_get(rec, "Mode")) ?: "auto");
		for (int r = 0; r < reps; r++) {
			struct sample s = { 0 };
			char *m = NULL;
			int rc = measure_qckpt(vm, rec, cold, seq, &s, &m);

			record(c, r, rc, &s, m);
			if (rc != 0)
				break;
		}
	}
	if (want(methods, nm, "loadvm") && vm->obs && !ramfile_vm) {
		struct cell *c = cell_for(ver, mib, load, "loadvm");
		char *m = NULL;

		if (hmp(vm, "savevm benchsnap", &m) != 0) {
			cell_fail(c, m);
		} else {
			for (int r = 0; r < reps; r++) {
				struct sample s = { 0 };
				int rc = measure_loadvm(vm, &s, &m);

				record(c, r, rc, &s, m);
				if (rc != 0)
					break;
			}
		}
	}
	kill_life(vm, vm_pid(vm, NULL));
	for (int variant = 0; variant < 3; variant++) {
		static const char *const bare_names[] = { "bare", "bare-cold", "bare-many" };
		const char *method = bare_names[variant];
		long cpus = sysconf(_SC_NPROCESSORS_ONLN), channels = cpus > 0 ? cpus : 2;
		struct cell *c;

		if (!want(methods, nm, method) || ramfile_vm)
			continue;
		if (variant == 2)
			channels = restore_load_channels();
		c = cell_for(ver, mib, load, method);
		for (int r = 0; r < reps; r++) {
			struct sample s = { 0 };
			char *m = NULL;
			int rc = measure_bare(vm, rec, qemu, mib, app, variant == 1, channels,
					      &c->detail, &s, &m);

			record(c, r, rc, &s, m);
			if (rc != 0)
				break;
		}
	}
	goto out;
fail:
	for (int i = 0; i < nm; i++)
		cell_fail(cell_for(ver ? ver : label, mib, load, methods[i]),
			  xfmt("%s", msg ? msg : "setup failed"));
out:
	free(msg);
	json_decref(rec);
	bvm_free(vm);
	if (ramfile_vm) {
		/* its RAM files and the checkpoint's reflink */
		char *rm = xfmt("rm -rf '%s/%s'", ramfile_dir, name);

		if (system(rm) != 0)
			fprintf(stderr, "bench: %s failed\n", rm);
		free(rm);
	}
	free_argv(argv);
	free(out);
	free(err);
	free(ver);
	free(ckname);
	free(name);
}

/* ---- the machine -------------------------------------------------------- */

static void print_machine(const char *qemus_list)
{
	char line[512], model[256] = "?";
	double load[3] = { -1, -1, -1 };
	long memkib = 0;
	FILE *f = fopen("/proc/cpuinfo", "r");
	struct utsname u;

	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "model name", 10) == 0) {
			char *p = strchr(line, ':');

			if (p) {
				snprintf(model, sizeof model, "%s", p + 2);
				model[strcspn(model, "\n")] = 0;
			}
			break;
		}
	if (f)
		fclose(f);
	f = fopen("/proc/meminfo", "r");
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "MemTotal: %ld", &memkib) == 1)
			break;
	if (f)
		fclose(f);
	getloadavg(load, 3);
	uname(&u);
	printf("- machine: %ld CPUs online (nproc), %s, %ld MiB RAM, %s %s, no KVM (-accel tcg)\n",
	       sysconf(_SC_NPROCESSORS_ONLN), model, memkib / 1024, u.sysname, u.release);
	printf("- load average at start: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
	printf("- QEMUs asked for: %s\n", qemus_list);
}

int main(void)
{
	char *qemus_s = strdup(env_or("QCKPT_BENCH_QEMUS", "7.2 10"));
	char *sizes_s = strdup(env_or("QCKPT_BENCH_SIZES", "1024 4096"));
	char *loads_s = strdup(env_or("QCKPT_BENCH_LOADS", "idle busy"));
	char *methods_s = strdup(env_or("QCKPT_BENCH_METHODS", "qckpt loadvm bare"));
	const char *busy = env_or("QCKPT_BENCH_BUSY", "qckpt.dirty_mib=256 qckpt.disk_writes=1");
	int reps = atoi(env_or("QCKPT_BENCH_REPS", "5"));
	char *qemus[8], *sizes[8], *loads[4], *methods[8];
	int nq, ns, nl, nm, rc;
	uint64_t t0 = uv_hrtime();
	time_t now = time(NULL);
	char date[64];
	double load[3];
	FILE *f;

	if (reps < 1 || reps > MAX_REPS) {
		fprintf(stderr, "bench: QCKPT_BENCH_REPS must be 1..%d\n", MAX_REPS);
		return 2;
	}
	printf("# qckpt restore benchmark\n\n");
	print_machine(qemus_s);
	nq = words(qemus_s, qemus, 8);
	ns = words(sizes_s, sizes, 8);
	nl = words(loads_s, loads, 4);
	nm = words(methods_s, methods, 8);
	rc = harness_init();
	if (rc != 0)
		return rc;
	qckpt_bin = (char *)harness_qckpt();
	if (!qckpt_bin) {
		fprintf(stderr, "bench: set QCKPT_BIN to the qckpt program\n");
		return 2;
	}
	ramfile_dir = getenv("QCKPT_BENCH_RAMFILE");
	if (ramfile_dir && !ramfile_dir[0])
		ramfile_dir = NULL;
	registry_path = harness_path("registry");
	catalog_dir = harness_path("catalog");
	mkdir(catalog_dir, 0700);
	f = fopen(registry_path, "w");
	if (!f)
		abort();
	fprintf(f, "# written by bench-restore\n");
	fclose(f);
	setenv("QCKPT_REGISTRY", registry_path, 1);
	strftime(date, sizeof date, "%Y-%m-%d %H:%M %Z", localtime(&now));
	printf("- date: %s; %d rounds per cell; busy guest: `%s`; 1 qcow2 disk (64 MiB); "
	       "memory files in the page cache (just written)\n", date, reps, busy);

	for (int q = 0; q < nq; q++) {
		const char *bin;

		if (strcmp(qemus[q], "7.2") == 0 || strcmp(qemus[q], "7") == 0)
			bin = harness_qemu();
		else if (strncmp(qemus[q], "10", 2) == 0)
			bin = harness_qemu10();
		else
			bin = qemus[q];
		if (!bin) {
			fprintf(stderr, "bench: QEMU %s not found (QCKPT_QEMU10), skipped\n", qemus[q]);
			cell_for(qemus[q], 0, "-", "-")->note = xfmt("QEMU %s not found", qemus[q]);
			continue;
		}
		for (int s = 0; s < ns; s++)
			for (int l = 0; l < nl; l++) {
				/* qckpt-seq asks for ram-file-seq too */
				char *rf_methods[] = { "ram-file", "ram-file-seq" };

				run_config(bin, qemus[q], (unsigned)strtoul(sizes[s], NULL, 10),
					   loads[l], busy, methods, nm, reps);
				if (ramfile_dir == NULL)
					continue;
				ramfile_vm = true;
				run_config(bin, qemus[q], (unsigned)strtoul(sizes[s], NULL, 10),
					   loads[l], busy, rf_methods,
					   want(methods, nm, "qckpt-seq") ? 2 : 1, reps);
				ramfile_vm = false;
			}
	}

	for (int i = 0; i < nversions; i++)
		printf("- QEMU: %s\n", versions_seen[i]);
	getloadavg(load, 3);
	printf("- load average at end: %.2f %.2f %.2f; run took %.1f min\n\n", load[0],
	       load[1], load[2], (double)(uv_hrtime() - t0) / 6e10);
	print_table();
	free(qemus_s);
	free(sizes_s);
	free(loads_s);
	free(methods_s);
	return 0;
}
