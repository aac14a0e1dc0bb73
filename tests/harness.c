/*
 * harness.c: real QEMU processes for tests, on one libuv loop (see
 * harness.h).  Sections: global state and exit cleanup, loop helpers, child
 * programs, line buffers, the observer monitor, VMs, disk images.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define OBSERVER_TIMEOUT_MS 15000u
#define QMP_CALL_TIMEOUT_MS 30000u
#define QUIT_TIMEOUT_MS 10000u
#define RUN_TIMEOUT_MS 120000u

/* ------------------------------------------------------------------ */
/* Global state and exit cleanup                                       */

static uv_loop_t loop;
static bool loop_ready;
static char tmpdir[PATH_MAX];
static char *qemu_path, *qemu_img_path, *qemu_io_path, *setpriv_path;
static char *guest_kernel, *guest_initrd;
static char *qemu10_path;
static bool verbose;
static unsigned vm_seq;

/* Every child we started, so atexit can kill the ones still running. */
#define MAX_CHILDREN 256
static pid_t children[MAX_CHILDREN];

static void child_started(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == 0) {
			children[i] = pid;
			return;
		}
}

static void child_exited(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == pid)
			children[i] = 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag,
			struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	remove(path);
	return 0;
}

/* harness_count_qemu, harness_count_serial_line */
static unsigned qemus_started, guest_boots;

void harness_count_qemu(void)
{
	qemus_started++;
}

void harness_count_serial_line(const char *line)
{
	if (strstr(line, "qckpt-guest: boot") != NULL)
		guest_boots++;
}

/* Whether LIST (words separated by commas or spaces) holds WORD. */
static bool in_list(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; p != NULL && *p != '\0'; p += strcspn(p, ", ")) {
		p += strspn(p, ", ");
		if (strncmp(p, word, n) == 0 && (p[n] == '\0' || strchr(", ", p[n]) != NULL))
			return true;
	}
	return false;
}

bool harness_group_in(const char *groups, const char *name)
{
	return groups == NULL || in_list(groups, name);
}

static void harness_atexit(void)
{
	if (qemus_started > 0) {
		printf("# harness: %u QEMU started, %u guest boots\n", qemus_started, guest_boots);
		fflush(stdout);
	}
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] > 0) {
			kill(children[i], SIGKILL);
			waitpid(children[i], NULL, 0);
			children[i] = 0;
		}
	if (tmpdir[0]) {
		const char *keep = getenv("QCKPT_KEEP_TMP");
		if (keep && strcmp(keep, "1") == 0)
			fprintf(stderr, "harness: kept %s\n", tmpdir);
		else
			nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	}
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		abort();
	return p;
}

static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p)
		abort();
	return p;
}

static bool is_executable(const char *path)
{
	return path && path[0] && access(path, X_OK) == 0;
}

/* A program by env override or PATH lookup; malloc'd or NULL. */
static char *find_program(const char *env, const char *name)
{
	const char *v = env ? getenv(env) : NULL;
	if (v && v[0])
		return is_executable(v) ? xstrdup(v) : NULL;
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	char *copy = xstrdup(path), *save = NULL;
	for (char *dir = strtok_r(copy, ":", &save); dir;
	     dir = strtok_r(NULL, ":", &save)) {
		char *p = xasprintf("%s/%s", dir, name);
		if (is_executable(p)) {
			free(copy);
			return p;
		}
		free(p);
	}
	free(copy);
	return NULL;
}

static bool env_is(const char *name, const char *value)
{
	const char *v = getenv(name);
	return v && strcmp(v, value) == 0;
}

/* NAME=<temp dir>/<sub>, the directory created 0700; 0 or -1. */
static int setenv_private_dir(const char *name, const char *sub)
{
	char *path = xasprintf("%s/%s", tmpdir, sub);
	char *p = path + strlen(tmpdir);
	int rc = 0;

	/* each component below the temp dir, e.g. home/.local/share */
	while (rc == 0 && (p = strchr(p + 1, '/')) != NULL) {
		*p = 0;
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			rc = -1;
		*p = '/';
	}
	if (rc == 0 && mkdir(path, 0700) < 0 && errno != EEXIST)
		rc = -1;
	if (rc < 0)
		fprintf(stderr, "harness: mkdir %s: %s\n", path, strerror(errno));
	else
		setenv(name, path, 1);
	free(path);
	return rc;
}

/*
 * Every place qckpt (and anything the tests run) would use by default is
 * moved into the temp dir, so the suite leaves nothing behind in
 * /var/lib/qckpt, /run/qckpt, /etc/qckpt or the home directory, even as
 * root and even when a test forgets to pass its own paths.  Tests that set
 * QCKPT_REGISTRY, QCKPT_JOBS_DIR... themselves override these.
 */
static int isolate_environment(void)
{
	unsetenv("QCKPT_REGISTRY");
	if (setenv_private_dir("HOME", "home") != 0 ||
	    setenv_private_dir("XDG_CONFIG_HOME", "home/.config") != 0 ||
	    setenv_private_dir("XDG_DATA_HOME", "home/.local/share") != 0 ||
	    setenv_private_dir("XDG_RUNTIME_DIR", "run") != 0 ||
	    setenv_private_dir("QCKPT_RUNTIME_DIR", "run/qckpt") != 0 ||
	    setenv_private_dir("QCKPT_JOBS_DIR", "run/qckpt/jobs") != 0 ||
	    setenv_private_dir("QCKPT_CATALOG_DIR", "home/catalog") != 0)
		return -1;
	return 0;
}

/* A missing QEMU or guest fails instead of skipping: only the exact values
 * count, so CI=false or QCKPT_REQUIRE_QEMU=0 still skip. */
static bool qemu_required(void)
{
	return env_is("CI", "true") || env_is("QCKPT_REQUIRE_QEMU", "1");
}

int harness_init(void)
{
	bool required = qemu_required();
	const char *missing = NULL;

	verbose = env_is("QCKPT_VERBOSE", "1");
	if (!loop_ready) {
		if (uv_loop_init(&loop) != 0)
			abort();
		loop_ready = true;
		atexit(harness_atexit);
		signal(SIGPIPE, SIG_IGN);
	}

	/* a make check without some programs */
	if (in_list(getenv("QCKPT_SKIP_TESTS"), program_invocation_short_name)) {
		printf("harness: %s is in QCKPT_SKIP_TESTS: skipping\n",
		       program_invocation_short_name);
		return HARNESS_SKIP;
	}

	qemu_path = find_program("QEMU_SYSTEM", "qemu-system-x86_64");
	qemu_img_path = find_program("QEMU_IMG", "qemu-img");
	if (qemu_img_path) {
		char *dir = xstrdup(qemu_img_path);
		char *slash = strrchr(dir, '/');
		if (slash) {
			*slash = 0;
			qemu_io_path = xasprintf("%s/qemu-io", dir);
			if (!is_executable(qemu_io_path)) {
				free(qemu_io_path);
				qemu_io_path = NULL;
			}
		}
		free(dir);
	}
	if (!qemu_io_path)
		qemu_io_path = find_program(NULL, "qemu-io");
	setpriv_path = find_program(NULL, "setpriv");

	const char *gdir = getenv("QCKPT_GUEST_DIR");
	char *gdefault = NULL;
	if ((!gdir || !gdir[0]) && getenv("QCKPT_TOP_BUILDDIR"))
		gdir = gdefault = xasprintf("%s/tests/guest",
					    getenv("QCKPT_TOP_BUILDDIR"));
	if (gdir && gdir[0]) {
		guest_kernel = xasprintf("%s/vmlinuz", gdir);
		guest_initrd = xasprintf("%s/initrd.img", gdir);
	}
	free(gdefault);

	if (!qemu_path)
		missing = "qemu-system-x86_64 (set QEMU_SYSTEM or PATH)";
	else if (!qemu_img_path)
		missing = "qemu-img (set QEMU_IMG or PATH)";
	else if (!qemu_io_path)
		missing = "qemu-io (next to qemu-img or in PATH)";
	else if (!guest_kernel || access(guest_kernel, R_OK) != 0 ||
		 access(guest_initrd, R_OK) != 0)
		missing = "the test guest (QCKPT_GUEST_DIR with vmlinuz and "
			  "initrd.img; scripts/make-test-guest DIR builds it)";
	if (missing) {
		fprintf(stderr, "harness: missing %s: %s\n", missing,
			required ? "FAIL (CI=true or QCKPT_REQUIRE_QEMU=1)"
				 : "skipping");
		return required ? 1 : HARNESS_SKIP;
	}

	const char *tmp = getenv("TMPDIR");
	if (!tmp || !tmp[0])
		tmp = "/tmp";
	snprintf(tmpdir, sizeof tmpdir, "%s/qckpt-test.XXXXXX", tmp);
	if (!mkdtemp(tmpdir)) {
		fprintf(stderr, "harness: mkdtemp %s: %s\n", tmpdir, strerror(errno));
		tmpdir[0] = 0;
		return 1;
	}
	char abs[PATH_MAX];
	if (realpath(tmpdir, abs))
		memcpy(tmpdir, abs, sizeof tmpdir);
	/* unix socket paths are limited to 107 bytes */
	if (strlen(tmpdir) > 80) {
		fprintf(stderr, "harness: temp dir path too long for sockets: %s\n",
			tmpdir);
		return 1;
	}

	if (isolate_environment() != 0)
		return 1;

	const char *q10 = getenv("QCKPT_QEMU10");
	if (q10 && q10[0])
		qemu10_path = is_executable(q10) ? xstrdup(q10) : NULL;
	else if (getenv("QCKPT_TOP_BUILDDIR")) {
		char *p = xasprintf("%s/qemu10/qemu-system-x86_64",
				    getenv("QCKPT_TOP_BUILDDIR"));
		if (is_executable(p))
			qemu10_path = p;
		else
			free(p);
	}
	return 0;
}

uv_loop_t *harness_loop(void) { return &loop; }
const char *harness_tmpdir(void) { return tmpdir; }
const char *harness_qemu10(void) { return qemu10_path; }

bool harness_want_qemu10(void)
{
	if (qemu10_path != NULL || qemu_required() || env_is("QCKPT_REQUIRE_QEMU10", "1"))
		return true;
	fprintf(stderr, "QEMU 10 not found: its group is skipped (scripts/get-qemu10)\n");
	return false;
}

const char *harness_require_qemu10(void)
{
	if (qemu10_path == NULL)
		fprintf(stderr, "QEMU 10 not found (scripts/get-qemu10), required under CI\n");
	return qemu10_path;
}
const char *harness_qemu(void) { return qemu_path; }
const char *harness_qemu_img(void) { return qemu_img_path; }

const char *harness_qckpt(void)
{
	const char *bin = getenv("QCKPT_BIN");
	return is_executable(bin) ? bin : NULL;
}

char *harness_path(const char *name)
{
	return xasprintf("%s/%s", tmpdir, name);
}

/* ------------------------------------------------------------------ */
/* Loop helpers                                                        */

static void on_timer_fired(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

static void on_timer_closed(uv_handle_t *h)
{
	*(bool *)h->data = true;
}

int harness_run_until(bool (*cond)(void *arg), void *arg, unsigned timeout_ms)
{
	uv_timer_t timer;
	bool fired = false, closed = false;
	int rc = 0;

	uv_timer_init(&loop, &timer);
	timer.data = &fired;
	uv_timer_start(&timer, on_timer_fired, timeout_ms, 0);
	while (!cond(arg)) {
		if (fired) {
			rc = -1;
			break;
		}
		uv_run(&loop, UV_RUN_ONCE);
	}
	timer.data = &closed;
	uv_close((uv_handle_t *)&timer, on_timer_closed);
	while (!closed)
		uv_run(&loop, UV_RUN_ONCE);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Growing buffers; lines are cut at '\n' with a trailing '\r' removed */

struct buf {
	char *data;
	size_t len, cap;
};

static void buf_append(struct buf *b, const char *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->data = xrealloc(b->data, b->cap);
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0;
}

/* Calls fn for each complete line and keeps the rest. */
static void buf_lines(struct buf *b, void (*fn)(void *arg, char *line),
		      void *arg)
{
	size_t start = 0;
	for (size_t i = 0; i < b->len; i++) {
		if (b->data[i] != '\n')
			continue;
		b->data[i] = 0;
		if (i > start && b->data[i - 1] == '\r')
			b->data[i - 1] = 0;
		fn(arg, b->data + start);
		start = i + 1;
	}
	memmove(b->data, b->data + start, b->len - start);
	b->len -= start;
	if (b->data)
		b->data[b->len] = 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
	(void)h;
	out->base = malloc(suggested);
	out->len = out->base ? suggested : 0;
}

/* ------------------------------------------------------------------ */
/* Child programs (harness_run)                                        */

struct child {
	uv_process_t proc;
	uv_pipe_t out, err;
	struct buf obuf, ebuf;
	int open;    /* handles not yet closed */
	int streams; /* pipes not yet at EOF */
	bool exited;
	int status;
};

static void on_child_closed(uv_handle_t *h)
{
	struct child *c = h->data;
	c->open--;
}

static void on_child_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct child *c = s->data;
	if (n > 0)
		buf_append(s == (uv_stream_t *)&c->out ? &c->obuf : &c->ebuf,
			   b->base, (size_t)n);
	free(b->base);
	if (n < 0) {
		c->streams--;
		uv_close((uv_handle_t *)s, on_child_closed);
	}
}

static void on_child_exit(uv_process_t *p, int64_t status, int signum)
{
	struct child *c = p->data;
	c->exited = true;
	c->status = signum ? 128 + signum : (int)status;
	child_exited(p->pid);
	uv_close((uv_handle_t *)p, on_child_closed);
}

static bool child_done(void *arg)
{
	struct child *c = arg;
	return c->exited && c->streams == 0;
}

static bool child_closed(void *arg)
{
	return ((struct child *)arg)->open == 0;
}

int harness_run(char *const argv[], char **out, char **err, int *exit_status)
{
	struct child c;
	uv_process_options_t o;
	uv_stdio_container_t stdio[3];

	memset(&c, 0, sizeof c);
	memset(&o, 0, sizeof o);
	uv_pipe_init(&loop, &c.out, 0);
	uv_pipe_init(&loop, &c.err, 0);
	c.out.data = c.err.data = c.proc.data = &c;
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&c.out;
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&c.err;
	o.file = argv[0];
	o.args = (char **)argv;
	o.stdio = stdio;
	o.stdio_count = 3;
	o.exit_cb = on_child_exit;

	int rc = uv_spawn(&loop, &c.proc, &o);
	if (rc < 0) {
		fprintf(stderr, "harness: cannot run %s: %s\n", argv[0],
			uv_strerror(rc));
		c.open = 2;
		uv_close((uv_handle_t *)&c.out, on_child_closed);
		uv_close((uv_handle_t *)&c.err, on_child_closed);
		harness_run_until(child_closed, &c, 1000);
		return -1;
	}
	child_started(c.proc.pid);
	c.open = 3;
	c.streams = 2;
	uv_read_start((uv_stream_t *)&c.out, on_alloc, on_child_read);
	uv_read_start((uv_stream_t *)&c.err, on_alloc, on_child_read);
	if (harness_run_until(child_done, &c, RUN_TIMEOUT_MS) < 0) {
		fprintf(stderr, "harness: %s still running after %u ms, killing it\n",
			argv[0], RUN_TIMEOUT_MS);
		if (!c.exited)
			uv_process_kill(&c.proc, SIGKILL);
		harness_run_until(child_done, &c, 5000);
	}
	harness_run_until(child_closed, &c, 5000);
	if (exit_status)
		*exit_status = c.status;
	if (out)
		*out = c.obuf.data ? c.obuf.data : xstrdup("");
	else
		free(c.obuf.data);
	if (err)
		*err = c.ebuf.data ? c.ebuf.data : xstrdup("");
	else
		free(c.ebuf.data);
	return 0;
}

/* Runs a helper program; 0 if it exited 0, else prints its stderr, -1. */
static int run_quiet(char *const argv[], char **out)
{
	char *err = NULL;
	int status = -1;
	if (harness_run(argv, out, &err, &status) < 0)
		return -1;
	if (status != 0) {
		fprintf(stderr, "harness: %s exited %d: %s", argv[0], status, err);
		free(err);
		if (out) {
			free(*out);
			*out = NULL;
		}
		return -1;
	}
	free(err);
	return 0;
}

/* ------------------------------------------------------------------ */
/* VMs                                                                 */

struct hvm {
	char *name;
	char **argv; /* QEMU's own arguments, NULL-terminated */
	char *qmp_path, *obs_path;
	char *agent_path, *fs_path;
	char **disks;
	unsigned ndisks;

	uv_process_t proc;
	uv_pipe_t in, out, err;    /* QEMU's stdin (never written), serial, stderr */
	uv_pipe_t obs_server, obs; /* observer: our listening socket, QEMU's connection */
	int open;                  /* libuv handles not yet closed */
	bool exited;
	int status;
	pid_t pid;

	struct buf out_buf, err_buf, obs_buf;
	char **lines;
	size_t nlines, lines_cap, line_cursor;

	struct hvm_event **events;
	size_t nevents, events_cap, event_cursor;

	bool obs_connected, obs_ready, obs_lost;
	int64_t next_id, wait_id;
	json_t *reply; /* the whole reply message for wait_id */
};

static void on_vm_closed(uv_handle_t *h)
{
	struct hvm *vm = h->data;
	vm->open--;
}

static void vm_close(struct hvm *vm, uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, on_vm_closed);
}

static void on_serial_line(void *arg, char *line)
{
	struct hvm *vm = arg;
	if (vm->nlines == vm->lines_cap) {
		vm->lines_cap = vm->lines_cap ? vm->lines_cap * 2 : 256;
		vm->lines = xrealloc(vm->lines, vm->lines_cap * sizeof *vm->lines);
	}
	vm->lines[vm->nlines++] = xstrdup(line);
	harness_count_serial_line(line);
	if (verbose)
		fprintf(stderr, "[%s serial] %s\n", vm->name, line);
}

static void on_stderr_line(void *arg, char *line)
{
	struct hvm *vm = arg;
	fprintf(stderr, "[%s qemu] %s\n", vm->name, line);
}

static void on_vm_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct hvm *vm = s->data;
	bool serial = s == (uv_stream_t *)&vm->out;
	if (n > 0) {
		struct buf *bf = serial ? &vm->out_buf : &vm->err_buf;
		buf_append(bf, b->base, (size_t)n);
		buf_lines(bf, serial ? on_serial_line : on_stderr_line, vm);
	}
	free(b->base);
	if (n < 0)
		vm_close(vm, (uv_handle_t *)s);
}

static void on_vm_exit(uv_process_t *p, int64_t status, int signum)
{
	struct hvm *vm = p->data;
	vm->exited = true;
	vm->status = signum ? 128 + signum : (int)status;
	child_exited(p->pid);
	if (verbose)
		fprintf(stderr, "[%s] QEMU exited, status %d\n", vm->name, vm->status);
}

/* ---- the observer monitor ---- */

static void on_obs_written(uv_write_t *req, int status)
{
	(void)status;
	free(req->data);
	free(req);
}

static int obs_send(struct hvm *vm, json_t *msg)
{
	char *text = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (!text || !vm->obs_connected || vm->obs_lost) {
		free(text);
		return -1;
	}
	size_t n = strlen(text);
	text = xrealloc(text, n + 2);
	text[n] = '\n';
	text[n + 1] = 0;
	uv_write_t *req = malloc(sizeof *req);
	if (!req)
		abort();
	req->data = text;
	uv_buf_t b = uv_buf_init(text, (unsigned)n + 1);
	if (uv_write(req, (uv_stream_t *)&vm->obs, &b, 1, on_obs_written) < 0) {
		free(text);
		free(req);
		return -1;
	}
	return 0;
}

static void record_event(struct hvm *vm, json_t *msg)
{
	struct hvm_event *e = calloc(1, sizeof *e);
	if (!e)
		abort();
	json_t *ts = json_object_get(msg, "timestamp");
	json_t *data = json_object_get(msg, "data");
	e->name = xstrdup(json_string_value(json_object_get(msg, "event")));
	e->data = data ? json_incref(data) : json_object();
	e->ts_us = json_integer_value(json_object_get(ts, "seconds")) * 1000000 +
		   json_integer_value(json_object_get(ts, "microseconds"));
	e->recv_ms = uv_now(&loop);
	if (vm->nevents == vm->events_cap) {
		vm->events_cap = vm->events_cap ? vm->events_cap * 2 : 64;
		vm->events = xrealloc(vm->events, vm->events_cap * sizeof *vm->events);
	}
	vm->events[vm->nevents++] = e;
	if (verbose) {
		char *d = json_dumps(e->data, JSON_COMPACT);
		fprintf(stderr, "[%s event] %s %s\n", vm->name, e->name, d ? d : "");
		free(d);
	}
}

static void on_obs_line(void *arg, char *line)
{
	struct hvm *vm = arg;
	json_error_t jerr;
	if (!line[0])
		return;
	json_t *msg = json_loads(line, 0, &jerr);
	if (!msg) {
		fprintf(stderr, "[%s observer] not JSON: %.200s\n", vm->name, line);
		return;
	}
	if (json_object_get(msg, "QMP")) {
		obs_send(vm, json_pack("{s:s, s:s}", "execute", "qmp_capabilities",
				       "id", "capabilities"));
	} else if (json_object_get(msg, "event")) {
		record_event(vm, msg);
	} else {
		json_t *id = json_object_get(msg, "id");
		if (json_is_string(id) &&
		    strcmp(json_string_value(id), "capabilities") == 0)
			vm->obs_ready = true;
		else if (json_is_integer(id) &&
			 json_integer_value(id) == vm->wait_id && !vm->reply)
			vm->reply = json_incref(msg);
	}
	json_decref(msg);
}

static void on_obs_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct hvm *vm = s->data;
	if (n > 0) {
		buf_append(&vm->obs_buf, b->base, (size_t)n);
		buf_lines(&vm->obs_buf, on_obs_line, vm);
	}
	free(b->base);
	if (n < 0) {
		vm->obs_lost = true;
		vm_close(vm, (uv_handle_t *)s);
	}
}

static void on_obs_connection(uv_stream_t *server, int status)
{
	struct hvm *vm = server->data;
	if (status < 0 || vm->obs_connected)
		return;
	uv_pipe_init(&loop, &vm->obs, 0);
	vm->obs.data = vm;
	vm->open++;
	if (uv_accept(server, (uv_stream_t *)&vm->obs) < 0) {
		vm->obs_lost = true;
		vm_close(vm, (uv_handle_t *)&vm->obs);
		return;
	}
	vm->obs_connected = true;
	uv_read_start((uv_stream_t *)&vm->obs, on_alloc, on_obs_read);
	/* one connection only: stop listening */
	vm_close(vm, (uv_handle_t *)&vm->obs_server);
	unlink(vm->obs_path);
}

/* ---- building the command line ---- */

struct argv_builder {
	char **v;
	size_t n, cap;
};

static void arg_add(struct argv_builder *a, char *owned)
{
	if (a->n + 2 > a->cap) {
		a->cap = a->cap ? a->cap * 2 : 64;
		a->v = xrealloc(a->v, a->cap * sizeof *a->v);
	}
	a->v[a->n++] = owned;
	a->v[a->n] = NULL;
}

#define ARG(a, ...) arg_add((a), xasprintf(__VA_ARGS__))

static const char *fmt_name(enum hvm_disk_format f)
{
	return f == HVM_RAW ? "raw" : "qcow2";
}

static void add_disk_args(struct argv_builder *a, const struct hvm_opts *o,
			  const char *path, const char *id, const char *fmt,
			  bool ro)
{
	if (strchr(path, ','))
		fprintf(stderr, "harness: image path with a comma: %s\n", path);
	if (o->blockdev) {
		ARG(a, "-blockdev");
		ARG(a, "driver=file,filename=%s,node-name=file%s%s", path, id + 3,
		    ro ? ",read-only=on" : "");
		ARG(a, "-blockdev");
		ARG(a, "driver=%s,file=file%s,node-name=%s%s", fmt, id + 3, id,
		    ro ? ",read-only=on" : "");
	} else {
		ARG(a, "-drive");
		ARG(a, "file=%s,format=%s,if=none,id=%s%s", path, fmt, id,
		    ro ? ",readonly=on" : "");
	}
	ARG(a, "-device");
	ARG(a, "virtio-blk-pci,drive=%s,id=vdisk%s", id, id + 3);
}

static char **build_argv(struct hvm *vm, const struct hvm_opts *o,
			 const char *ro_path)
{
	struct argv_builder a = {0};
	const char *fmt = fmt_name(o->disk_format);

	ARG(&a, "%s", o->qemu ? o->qemu : qemu_path);
	ARG(&a, "-accel");
	ARG(&a, "tcg");
	ARG(&a, "-nodefaults");
	ARG(&a, "-no-user-config");
	ARG(&a, "-display");
	ARG(&a, "none");
	ARG(&a, "-name");
	ARG(&a, "%s", o->qemu_name ? o->qemu_name : vm->name);
	ARG(&a, "-m");
	ARG(&a, "%u", o->mem_mib ? o->mem_mib : 256);
	ARG(&a, "-kernel");
	ARG(&a, "%s", o->kernel ? o->kernel : guest_kernel);
	ARG(&a, "-initrd");
	ARG(&a, "%s", o->initrd ? o->initrd : guest_initrd);
	ARG(&a, "-append");
	ARG(&a, HARNESS_GUEST_CMDLINE "%s%s%s", o->agent ? " qckpt.agent=1" : "",
	    o->append ? " " : "", o->append ? o->append : "");
	ARG(&a, "-no-reboot");
	ARG(&a, "-chardev");
	ARG(&a, "stdio,id=serial0,signal=off");
	ARG(&a, "-serial");
	ARG(&a, "chardev:serial0");
	ARG(&a, "-chardev");
	ARG(&a, "socket,id=qmp0,path=%s,server=on,wait=off", vm->qmp_path);
	ARG(&a, "-mon");
	ARG(&a, "chardev=qmp0,mode=control");
	ARG(&a, "-chardev");
	ARG(&a, "socket,id=observer0,path=%s", vm->obs_path);
	ARG(&a, "-mon");
	ARG(&a, "chardev=observer0,mode=control");
	for (unsigned i = 0; i < vm->ndisks; i++) {
		char id[16];
		snprintf(id, sizeof id, "drv%u", i);
		add_disk_args(&a, o, vm->disks[i], id, fmt, false);
	}
	if (ro_path)
		add_disk_args(&a, o, ro_path, "drvro", "raw", true);
	if (vm->fs_path) {
		add_disk_args(&a, o, vm->fs_path, "drvfs", "raw", false);
		/* The guest tells this disk by its serial. */
		char *dev = a.v[a.n - 1];

		a.v[a.n - 1] = xasprintf("%s,serial=qckpt-fs", dev);
		free(dev);
	}
	if (vm->agent_path) {
		ARG(&a, "-device");
		ARG(&a, "virtio-serial");
		ARG(&a, "-chardev");
		ARG(&a, "socket,path=%s,server=on,wait=off,id=qga0", vm->agent_path);
		ARG(&a, "-device");
		ARG(&a, "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0");
	}
	if (o->cdrom) {
		if (o->blockdev) {
			ARG(&a, "-device");
			ARG(&a, "ide-cd,id=cd0");
		} else {
			ARG(&a, "-drive");
			ARG(&a, "if=none,id=cd0,media=cdrom");
			ARG(&a, "-device");
			ARG(&a, "ide-cd,drive=cd0,id=cdrom0");
		}
	}
	if (o->paused)
		ARG(&a, "-S");
	if (o->incoming) {
		ARG(&a, "-incoming");
		ARG(&a, "%s", o->incoming);
	}
	for (const char *const *x = o->extra_args; x && *x; x++)
		ARG(&a, "%s", *x);
	return a.v;
}

static bool obs_ready_or_exited(void *arg)
{
	struct hvm *vm = arg;
	return vm->obs_ready || vm->exited || vm->obs_lost;
}

static bool vm_all_closed(void *arg)
{
	return ((struct hvm *)arg)->open == 0;
}

static struct hvm *vm_alloc(const struct hvm_opts *o)
{
	struct hvm *vm = calloc(1, sizeof *vm);
	if (!vm)
		abort();
	if (o->exact_name && o->name)
		vm->name = xstrdup(o->name);
	else
		vm->name = xasprintf("%s%u", o->name ? o->name : "vm", ++vm_seq);
	vm->qmp_path = xasprintf("%s/%s.qmp", tmpdir, vm->name);
	vm->obs_path = xasprintf("%s/%s.obs", tmpdir, vm->name);
	if (o->agent || o->agent_port)
		vm->agent_path = xasprintf("%s/%s.qga", tmpdir, vm->name);
	vm->status = -1;
	vm->next_id = 1;
	return vm;
}

static int vm_create_disks(struct hvm *vm, const struct hvm_opts *o,
			   char **ro_path)
{
	if (o->disk_paths) {
		while (o->disk_paths[vm->ndisks])
			vm->ndisks++;
		vm->disks = calloc(vm->ndisks + 1, sizeof *vm->disks);
		for (unsigned i = 0; i < vm->ndisks; i++)
			vm->disks[i] = xstrdup(o->disk_paths[i]);
	} else {
		vm->ndisks = o->ndisks;
		vm->disks = calloc(vm->ndisks + 1, sizeof *vm->disks);
		for (unsigned i = 0; i < vm->ndisks; i++) {
			vm->disks[i] = xasprintf("%s/%s-disk%u.%s", tmpdir, vm->name,
						 i, fmt_name(o->disk_format));
			if (disk_create(vm->disks[i], o->disk_format,
					o->disk_mib ? o->disk_mib : 16) < 0)
				return -1;
		}
	}
	if (o->readonly_disk) {
		*ro_path = xasprintf("%s/%s-ro.raw", tmpdir, vm->name);
		if (disk_create(*ro_path, HVM_RAW, 1) < 0)
			return -1;
	}
	if (o->fs_disk) {
		vm->fs_path = xasprintf("%s/%s-fs.raw", tmpdir, vm->name);
		if (disk_create_ext4(vm->fs_path, 16) < 0)
			return -1;
	}
	return 0;
}

struct hvm *hvm_start(const struct hvm_opts *o)
{
	struct hvm *vm = vm_alloc(o);
	char *ro_path = NULL;
	uv_process_options_t po;
	uv_stdio_container_t stdio[3];
	int rc;

	if (vm_create_disks(vm, o, &ro_path) < 0)
		goto fail_early;
	vm->argv = build_argv(vm, o, ro_path);
	free(ro_path);
	ro_path = NULL;

	/* The observer socket: QEMU connects to us while it starts. */
	uv_pipe_init(&loop, &vm->obs_server, 0);
	vm->obs_server.data = vm;
	vm->open++;
	unlink(vm->obs_path);
	rc = uv_pipe_bind(&vm->obs_server, vm->obs_path);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&vm->obs_server, 1, on_obs_connection);
	if (rc < 0) {
		fprintf(stderr, "harness: listen on %s: %s\n", vm->obs_path,
			uv_strerror(rc));
		vm_close(vm, (uv_handle_t *)&vm->obs_server);
		goto fail;
	}

	/* setpriv --pdeathsig: QEMU dies with us even if atexit never runs. */
	struct argv_builder full = {0};
	if (setpriv_path) {
		ARG(&full, "%s", setpriv_path);
		ARG(&full, "--pdeathsig");
		ARG(&full, "KILL");
	}
	for (const char *const *x = o->argv_prefix; x && *x; x++)
		ARG(&full, "%s", *x);
	for (char **x = vm->argv; *x; x++)
		ARG(&full, "%s", *x);

	uv_pipe_init(&loop, &vm->in, 0);
	uv_pipe_init(&loop, &vm->out, 0);
	uv_pipe_init(&loop, &vm->err, 0);
	vm->in.data = vm->out.data = vm->err.data = vm->proc.data = vm;
	vm->open += 3;
	memset(&po, 0, sizeof po);
	stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
	stdio[0].data.stream = (uv_stream_t *)&vm->in;
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&vm->out;
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&vm->err;
	po.file = full.v[0];
	po.args = full.v;
	po.stdio = stdio;
	po.stdio_count = 3;
	po.exit_cb = on_vm_exit;
	rc = uv_spawn(&loop, &vm->proc, &po);
	for (size_t i = 0; i < full.n; i++)
		free(full.v[i]);
	free(full.v);
	if (rc < 0) {
		fprintf(stderr, "harness: cannot start %s: %s\n", vm->argv[0],
			uv_strerror(rc));
		vm->exited = true;
		goto fail;
	}
	vm->open++;
	vm->pid = vm->proc.pid;
	child_started(vm->pid);
	harness_count_qemu();
	uv_read_start((uv_stream_t *)&vm->out, on_alloc, on_vm_read);
	uv_read_start((uv_stream_t *)&vm->err, on_alloc, on_vm_read);

	harness_run_until(obs_ready_or_exited, vm, OBSERVER_TIMEOUT_MS);
	if (!vm->obs_ready) {
		fprintf(stderr, "harness: %s: observer monitor not ready (%s)\n",
			vm->name, vm->exited ? "QEMU exited" : "timeout");
		goto fail;
	}
	return vm;

fail_early:
	free(ro_path);
fail:
	hvm_free(vm);
	return NULL;
}

pid_t hvm_pid(const struct hvm *vm) { return vm->pid; }
const char *hvm_name(const struct hvm *vm) { return vm->name; }
const char *hvm_qmp_path(const struct hvm *vm) { return vm->qmp_path; }
unsigned hvm_ndisks(const struct hvm *vm) { return vm->ndisks; }
const char *hvm_agent_path(const struct hvm *vm) { return vm->agent_path; }
const char *hvm_fs_disk_path(const struct hvm *vm) { return vm->fs_path; }
char *const *hvm_argv(const struct hvm *vm) { return vm->argv; }

const char *hvm_disk_path(const struct hvm *vm, unsigned i)
{
	return i < vm->ndisks ? vm->disks[i] : NULL;
}

/* ---- serial ---- */

struct serial_wait {
	struct hvm *vm;
	const char *substr;
	long found;
};

static bool serial_match(void *arg)
{
	struct serial_wait *w = arg;
	struct hvm *vm = w->vm;
	for (; vm->line_cursor < vm->nlines; vm->line_cursor++)
		if (strstr(vm->lines[vm->line_cursor], w->substr)) {
			w->found = (long)vm->line_cursor++;
			return true;
		}
	return vm->exited && vm->out_buf.len == 0 && uv_is_closing((uv_handle_t *)&vm->out);
}

long hvm_wait_serial(struct hvm *vm, const char *substr, unsigned timeout_ms)
{
	struct serial_wait w = {vm, substr, -1};
	size_t cursor = vm->line_cursor;
	harness_run_until(serial_match, &w, timeout_ms);
	if (w.found < 0)
		vm->line_cursor = cursor; /* a failed wait consumes nothing */
	return w.found;
}

static long tick_of(const char *line)
{
	const char *p = strstr(line, "qckpt-guest: tick ");
	return p ? strtol(p + strlen("qckpt-guest: tick "), NULL, 10) : -1;
}

long hvm_wait_tick(struct hvm *vm, unsigned timeout_ms)
{
	long i = hvm_wait_serial(vm, "qckpt-guest: tick ", timeout_ms);
	return i < 0 ? -1 : tick_of(vm->lines[i]);
}

long hvm_last_tick(struct hvm *vm)
{
	uv_run(&loop, UV_RUN_NOWAIT); /* take in what is already there */
	for (size_t i = vm->nlines; i-- > 0;) {
		long t = tick_of(vm->lines[i]);
		if (t >= 0)
			return t;
	}
	return -1;
}

void hvm_consume_serial(struct hvm *vm)
{
	uv_run(&loop, UV_RUN_NOWAIT);
	vm->line_cursor = vm->nlines;
}

size_t hvm_serial_count(const struct hvm *vm) { return vm->nlines; }

const char *hvm_serial_line(const struct hvm *vm, size_t i)
{
	return i < vm->nlines ? vm->lines[i] : NULL;
}

/* ---- QMP on the observer ---- */

static bool reply_or_lost(void *arg)
{
	struct hvm *vm = arg;
	return vm->reply || vm->obs_lost || vm->exited;
}

int hvm_qmp(struct hvm *vm, const char *cmd, json_t *args, json_t **result)
{
	json_t *msg = json_pack("{s:s, s:I}", "execute", cmd, "id",
				(json_int_t)vm->next_id);
	if (result)
		*result = NULL;
	if (args)
		json_object_set_new(msg, "arguments", args);
	vm->wait_id = vm->next_id++;
	json_decref(vm->reply);
	vm->reply = NULL;
	if (obs_send(vm, msg) < 0) {
		fprintf(stderr, "harness: %s: %s: observer not connected\n",
			vm->name, cmd);
		return -2;
	}
	harness_run_until(reply_or_lost, vm, QMP_CALL_TIMEOUT_MS);
	json_t *reply = vm->reply;
	vm->reply = NULL;
	vm->wait_id = 0;
	if (!reply) {
		fprintf(stderr, "harness: %s: %s: no reply (%s)\n", vm->name, cmd,
			vm->exited || vm->obs_lost ? "QEMU gone" : "timeout");
		return -2;
	}
	json_t *ret = json_object_get(reply, "return");
	int rc = 0;
	if (!ret) {
		ret = json_object_get(reply, "error");
		fprintf(stderr, "harness: %s: %s: %s\n", vm->name, cmd,
			json_string_value(json_object_get(ret, "desc")));
		rc = -1;
	}
	if (result && ret)
		*result = json_incref(ret);
	json_decref(reply);
	return rc;
}

char *hvm_status(struct hvm *vm)
{
	json_t *r = NULL;
	char *s = NULL;
	if (hvm_qmp(vm, "query-status", NULL, &r) == 0)
		s = xstrdup(json_string_value(json_object_get(r, "status")));
	json_decref(r);
	return s;
}

/* ---- events ---- */

struct event_wait {
	struct hvm *vm;
	const char *name;
	const struct hvm_event *found;
};

static bool event_match(void *arg)
{
	struct event_wait *w = arg;
	struct hvm *vm = w->vm;
	for (; vm->event_cursor < vm->nevents; vm->event_cursor++)
		if (strcmp(vm->events[vm->event_cursor]->name, w->name) == 0) {
			w->found = vm->events[vm->event_cursor++];
			return true;
		}
	return vm->obs_lost;
}

const struct hvm_event *hvm_wait_event(struct hvm *vm, const char *name,
				       unsigned timeout_ms)
{
	struct event_wait w = {vm, name, NULL};
	size_t cursor = vm->event_cursor;
	harness_run_until(event_match, &w, timeout_ms);
	if (!w.found)
		vm->event_cursor = cursor;
	return w.found;
}

size_t hvm_event_count(const struct hvm *vm) { return vm->nevents; }

const struct hvm_event *hvm_event(const struct hvm *vm, size_t i)
{
	return i < vm->nevents ? vm->events[i] : NULL;
}

void hvm_consume_events(struct hvm *vm)
{
	uv_run(&loop, UV_RUN_NOWAIT);
	vm->event_cursor = vm->nevents;
}

double hvm_pause_ms(const struct hvm *vm, size_t from)
{
	for (size_t i = from; i < vm->nevents; i++) {
		if (strcmp(vm->events[i]->name, "STOP") != 0)
			continue;
		for (size_t j = i + 1; j < vm->nevents; j++)
			if (strcmp(vm->events[j]->name, "RESUME") == 0)
				return (double)(vm->events[j]->ts_us -
						vm->events[i]->ts_us) / 1000.0;
		return -1;
	}
	return -1;
}

/* ---- ending ---- */

static bool vm_exited(void *arg)
{
	return ((struct hvm *)arg)->exited;
}

int hvm_wait_exit(struct hvm *vm, unsigned timeout_ms)
{
	if (harness_run_until(vm_exited, vm, timeout_ms) < 0)
		return -1;
	return vm->status;
}

int hvm_exited(const struct hvm *vm)
{
	return vm->exited ? vm->status : -1;
}

int hvm_kill(struct hvm *vm, int signum)
{
	if (vm->exited)
		return -1;
	return uv_process_kill(&vm->proc, signum) < 0 ? -1 : 0;
}

int hvm_quit(struct hvm *vm)
{
	if (vm->exited)
		return vm->status;
	hvm_qmp(vm, "quit", NULL, NULL);
	int status = hvm_wait_exit(vm, QUIT_TIMEOUT_MS);
	if (status < 0) {
		fprintf(stderr, "harness: %s did not quit, killing it\n", vm->name);
		hvm_kill(vm, SIGKILL);
		hvm_wait_exit(vm, QUIT_TIMEOUT_MS);
		return -1;
	}
	return status;
}

void hvm_free(struct hvm *vm)
{
	if (!vm)
		return;
	if (vm->pid && !vm->exited) {
		hvm_kill(vm, SIGKILL);
		hvm_wait_exit(vm, QUIT_TIMEOUT_MS);
	}
	if (vm->pid)
		vm_close(vm, (uv_handle_t *)&vm->proc);
	if (vm->in.loop) {
		vm_close(vm, (uv_handle_t *)&vm->in);
		vm_close(vm, (uv_handle_t *)&vm->out);
		vm_close(vm, (uv_handle_t *)&vm->err);
	}
	if (vm->obs_server.loop)
		vm_close(vm, (uv_handle_t *)&vm->obs_server);
	if (vm->obs_connected)
		vm_close(vm, (uv_handle_t *)&vm->obs);
	harness_run_until(vm_all_closed, vm, 5000);
	if (vm->open)
		fprintf(stderr, "harness: %s: %d handles still open\n", vm->name,
			vm->open);

	unlink(vm->obs_path);
	for (char **x = vm->argv; x && *x; x++)
		free(*x);
	free(vm->argv);
	for (unsigned i = 0; i < vm->ndisks; i++)
		free(vm->disks[i]);
	free(vm->disks);
	for (size_t i = 0; i < vm->nlines; i++)
		free(vm->lines[i]);
	free(vm->lines);
	for (size_t i = 0; i < vm->nevents; i++) {
		free(vm->events[i]->name);
		json_decref(vm->events[i]->data);
		free(vm->events[i]);
	}
	free(vm->events);
	json_decref(vm->reply);
	free(vm->out_buf.data);
	free(vm->err_buf.data);
	free(vm->obs_buf.data);
	free(vm->qmp_path);
	free(vm->agent_path);
	free(vm->fs_path);
	free(vm->obs_path);
	free(vm->name);
	free(vm);
}

/* ------------------------------------------------------------------ */
/* Disk images                                                         */

int disk_create(const char *path, enum hvm_disk_format fmt, unsigned mib)
{
	char size[32];
	snprintf(size, sizeof size, "%uM", mib);
	char *argv[] = {qemu_img_path, "create", "-q", "-f",
			(char *)fmt_name(fmt), (char *)path, size, NULL};
	return run_quiet(argv, NULL);
}

int disk_create_ext4(const char *path, unsigned mib)
{
	char size[32];
	snprintf(size, sizeof size, "%uM", mib);
	/* Fully initialised, so the guest's kernel does no lazy init writes. */
	char *argv[] = {"/sbin/mke2fs", "-q", "-F", "-t", "ext4", "-E",
			"lazy_itable_init=0,lazy_journal_init=0", (char *)path,
			size, NULL};
	return run_quiet(argv, NULL);
}

int disk_fsck(const char *path, char **out)
{
	char *argv[] = {"/sbin/e2fsck", "-f", "-n", (char *)path, NULL};
	char *text = NULL, *err = NULL;
	int status;

	if (harness_run(argv, &text, &err, &status) < 0)
		return -1;
	if (out != NULL)
		*out = xasprintf("%s%s", text ? text : "", err ? err : "");
	free(text);
	free(err);
	return status;
}

int disk_create_overlay(const char *path, const char *backing,
			const char *backing_fmt)
{
	char *argv[] = {qemu_img_path, "create", "-q", "-f", "qcow2", "-b",
			(char *)backing, "-F", (char *)backing_fmt, (char *)path,
			NULL};
	return run_quiet(argv, NULL);
}

/* qemu-io's "read -v" dump: "00000000:  71 63 6b ...  qckpt.co" */
static size_t parse_hexdump(const char *text, unsigned char *out, size_t max)
{
	size_t n = 0;
	for (const char *line = text; line && *line;) {
		const char *end = strchr(line, '\n');
		char *colon;
		unsigned long off = strtoul(line, &colon, 16);
		if (colon != line && *colon == ':' && off == n) {
			const char *p = colon + 1;
			while (*p == ' ')
				p++;
			for (;;) {
				unsigned v;
				int used;
				if (n == max || sscanf(p, "%2x%n", &v, &used) != 1 ||
				    used != 2)
					break;
				out[n++] = (unsigned char)v;
				p += 2;
				/* one space: more bytes; two: the ASCII column */
				if (p[0] != ' ' || p[1] == ' ' || p[1] == '\n' || !p[1])
					break;
				p++;
			}
		}
		line = end ? end + 1 : NULL;
	}
	return n;
}

long disk_read_counter(const char *image_path)
{
	char *out = NULL;
	char *argv[] = {qemu_io_path, "-r", "-U", "-c", "read -v 0 25",
			(char *)image_path, NULL};
	if (run_quiet(argv, &out) < 0)
		return -1;
	unsigned char rec[25];
	size_t n = parse_hexdump(out, rec, sizeof rec);
	free(out);
	static const char prefix[] = "qckpt-counter ";
	if (n != 25 || memcmp(rec, prefix, sizeof prefix - 1) != 0 ||
	    rec[24] != '\n')
		return -1;
	long v = 0;
	for (size_t i = sizeof prefix - 1; i < 24; i++) {
		if (rec[i] < '0' || rec[i] > '9')
			return -1;
		v = v * 10 + (rec[i] - '0');
	}
	return v;
}
