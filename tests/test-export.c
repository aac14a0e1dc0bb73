/*
 * test-export.c: `qckpt rename`, `pin`/`unpin`, `export` and `restore
 * --from` against real QEMU running the Linux test guest, on QEMU 7.2 and
 * 10.0.
 *
 * The VMs are test-restore.c's (its rvm code, copied: a restore relaunches
 * QEMU, so each VM's serial console is a unix socket this test listens on
 * and every QEMU that runs the VM connects to it as a new "life").  An
 * export keeps the VM's command, so the QEMU started from an export, by
 * plain QEMU as its README says or by `restore --from` as a new VM, is one
 * more life of the same listener: its ticks are told apart from the
 * original guest's, which must keep ticking untouched.
 *
 * On 7.2 checkpoints are made in paused mode (live pre-copy under TCG can
 * lose dirty pages there, issue 7); on 10.0 live.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "harness.h"
#include "testutil.h"
#include "util.h"

#define BOOT_MS 300000u /* only a failure waits this long; an overloaded 2-core host took over 90 s */
#define WAIT_MS 30000u

static char *registry_path, *catalog_dir;
static const char *qemu_bin; /* NULL: QEMU 7.2 (harness_qemu()) */
static int serial_no;

/* ---- VMs whose serial console survives a relaunch ----------------------- */

struct rvm;

struct rconn {
	uv_pipe_t pipe;
	struct rvm *vm;
	int life;
	char buf[4096];
	size_t len;
};

struct rvm {
	char *name;
	char *serial_path;
	uv_pipe_t server;
	char **lines;
	int *life_of;
	size_t nlines, cap, cursor;
	int lives;            /* QEMU connections so far */
	char **disks;
	unsigned ndisks;
	char **argv;          /* qckpt run ... -- QEMU ... */
	uv_process_t proc;    /* the `qckpt run` we started, our child */
	int proc_running;
	int open;             /* handles not closed yet */
};

#define MAX_VMS 8
static struct rvm *vms[MAX_VMS];

static void add_line(struct rvm *vm, int life, const char *text, size_t len)
{
	if (len > 0 && text[len - 1] == '\r')
		len--;
	if (vm->nlines == vm->cap) {
		vm->cap = vm->cap ? 2 * vm->cap : 256;
		vm->lines = realloc(vm->lines, vm->cap * sizeof *vm->lines);
		vm->life_of = realloc(vm->life_of, vm->cap * sizeof *vm->life_of);
	}
	vm->lines[vm->nlines] = strndup(text, len);
	vm->life_of[vm->nlines++] = life;
	if (getenv("QCKPT_VERBOSE"))
		fprintf(stderr, "[%s/%d] %.*s\n", vm->name, life, (int)len, text);
}

static void on_serial_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	struct rconn *c = h->data;

	buf->base = c->buf + c->len;
	buf->len = sizeof c->buf - c->len;
}

static void on_conn_closed(uv_handle_t *h)
{
	struct rconn *c = h->data;

	c->vm->open--;
	free(c);
}

static void on_vm_handle_closed(uv_handle_t *h)
{
	((struct rvm *)h->data)->open--;
}

static void on_serial_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct rconn *c = s->data;
	char *nl;

	if (n < 0) {
		uv_close((uv_handle_t *)s, on_conn_closed);
		return;
	}
	c->len += (size_t)n;
	while ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
		add_line(c->vm, c->life, c->buf, (size_t)(nl - c->buf));
		c->len -= (size_t)(nl + 1 - c->buf);
		memmove(c->buf, nl + 1, c->len);
	}
	if (c->len == sizeof c->buf)
		c->len = 0; /* a line longer than the buffer: drop it */
}

static void on_serial_connection(uv_stream_t *server, int status)
{
	struct rvm *vm = server->data;
	struct rconn *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof *c);
	c->vm = vm;
	c->life = ++vm->lives;
	vm->open++;
	uv_pipe_init(harness_loop(), &c->pipe, 0);
	c->pipe.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0) {
		uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
		return;
	}
	uv_read_start((uv_stream_t *)&c->pipe, on_serial_alloc, on_serial_read);
}

static void on_run_exit(uv_process_t *p, int64_t status, int sig)
{
	struct rvm *vm = p->data;

	vm->proc_running = 0;
	uv_close((uv_handle_t *)p, on_vm_handle_closed);
}

static void push(char ***v, size_t *n, const char *s)
{
	*v = realloc(*v, (*n + 2) * sizeof **v);
	(*v)[(*n)++] = strdup(s);
	(*v)[*n] = NULL;
}

static void spawn_run(struct rvm *vm)
{
	uv_process_options_t po = { 0 };
	uv_stdio_container_t stdio[3] = {
		{ .flags = UV_IGNORE }, { .flags = UV_IGNORE },
		{ .flags = UV_INHERIT_FD, .data.fd = 2 },
	};

	po.file = vm->argv[0];
	po.args = vm->argv;
	po.stdio = stdio;
	po.stdio_count = 3;
	po.exit_cb = on_run_exit;
	vm->proc.data = vm;
	vm->open++;
	assert_int_equal(uv_spawn(harness_loop(), &vm->proc, &po), 0);
	vm->proc_running = 1;
}

struct life_wait {
	struct rvm *vm;
	int life;
};

static bool life_reached(void *arg)
{
	struct life_wait *w = arg;

	return w->vm->lives >= w->life;
}

/* The next "tick N" of life LIFE after the cursor: N, or -1. */
static long wait_tick(struct rvm *vm, int life, unsigned timeout_ms);

struct tick_wait {
	struct rvm *vm;
	int life;
	long tick;
};

static bool tick_seen(void *arg)
{
	struct tick_wait *w = arg;
	struct rvm *vm = w->vm;

	for (; vm->cursor < vm->nlines; vm->cursor++) {
		const char *p = strstr(vm->lines[vm->cursor], "qckpt-guest: tick ");

		if (p != NULL && vm->life_of[vm->cursor] == w->life) {
			w->tick = strtol(p + strlen("qckpt-guest: tick "), NULL, 10);
			vm->cursor++;
			return true;
		}
	}
	return false;
}

static long wait_tick(struct rvm *vm, int life, unsigned timeout_ms)
{
	struct tick_wait w = { vm, life, -1 };
	struct life_wait lw = { vm, life };

	if (harness_run_until(life_reached, &lw, timeout_ms) < 0)
		return -1;
	harness_run_until(tick_seen, &w, timeout_ms);
	return w.tick;
}

/* Whether life LIFE printed a line containing TEXT (so far). */
static bool life_printed(struct rvm *vm, int life, const char *text)
{
	uv_run(harness_loop(), UV_RUN_NOWAIT);
	for (size_t i = 0; i < vm->nlines; i++)
		if (vm->life_of[i] == life && strstr(vm->lines[i], text) != NULL)
			return true;
	return false;
}

static const char *qemu(void)
{
	return qemu_bin ? qemu_bin : harness_qemu();
}

/* Start a VM through `qckpt run` without waiting for it to boot. */
static struct rvm *rvm_launch(const char *base, unsigned ndisks, unsigned mem_mib)
{
	struct rvm *vm = calloc(1, sizeof *vm);
	const char *guest = getenv("QCKPT_GUEST_DIR");
	size_t n = 0;
	char *s;
	int slot;

	for (slot = 0; slot < MAX_VMS && vms[slot] != NULL; slot++)
		;
	assert_true(slot < MAX_VMS);
	vms[slot] = vm;
	vm->name = fmt("%s%d", base, ++serial_no);
	vm->serial_path = fmt("%s/%s.serial", harness_tmpdir(), vm->name);
	uv_pipe_init(harness_loop(), &vm->server, 0);
	vm->server.data = vm;
	vm->open++;
	unlink(vm->serial_path);
	assert_int_equal(uv_pipe_bind(&vm->server, vm->serial_path), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&vm->server, 4, on_serial_connection), 0);

	push(&vm->argv, &n, harness_qckpt());
	push(&vm->argv, &n, "run");
	push(&vm->argv, &n, "--dir");
	push(&vm->argv, &n, catalog_dir);
	push(&vm->argv, &n, vm->name);
	push(&vm->argv, &n, "--");
	push(&vm->argv, &n, qemu());
	for (const char *const *a = (const char *const[]){ "-accel", "tcg", "-nodefaults",
			"-no-user-config", "-display", "none", "-no-reboot", NULL }; *a; a++)
		push(&vm->argv, &n, *a);
	s = fmt("%u", mem_mib);
	push(&vm->argv, &n, "-m");
	push(&vm->argv, &n, s);
	free(s);
	s = fmt("%s/vmlinuz", guest);
	push(&vm->argv, &n, "-kernel");
	push(&vm->argv, &n, s);
	free(s);
	s = fmt("%s/initrd.img", guest);
	push(&vm->argv, &n, "-initrd");
	push(&vm->argv, &n, s);
	free(s);
	push(&vm->argv, &n, "-append");
	push(&vm->argv, &n, "console=ttyS0 quiet panic=-1 qckpt.tick_ms=100");
	s = fmt("socket,id=serial0,path=%s", vm->serial_path);
	push(&vm->argv, &n, "-chardev");
	push(&vm->argv, &n, s);
	free(s);
	push(&vm->argv, &n, "-serial");
	push(&vm->argv, &n, "chardev:serial0");
	vm->ndisks = ndisks;
	vm->disks = calloc(ndisks + 1, sizeof *vm->disks);
	for (unsigned i = 0; i < ndisks; i++) {
		vm->disks[i] = fmt("%s/%s-disk%u.raw", harness_tmpdir(), vm->name, i);
		assert_int_equal(disk_create(vm->disks[i], HVM_RAW, 16), 0);
		s = fmt("file=%s,format=raw,if=none,id=drv%u", vm->disks[i], i);
		push(&vm->argv, &n, "-drive");
		push(&vm->argv, &n, s);
		free(s);
		s = fmt("virtio-blk-pci,drive=drv%u,id=vdisk%u", i, i);
		push(&vm->argv, &n, "-device");
		push(&vm->argv, &n, s);
		free(s);
	}
	spawn_run(vm);
	return vm;
}

static void rvm_wait_boot(struct rvm *vm)
{
	if (wait_tick(vm, 1, BOOT_MS) <= 0)
		fail_msg("%s did not boot within %u ms: %s, %zu serial lines, last: %s", vm->name, BOOT_MS,
			 vm->proc_running ? "QEMU runs" : "qckpt run or QEMU exited",
			 vm->nlines, vm->nlines ? vm->lines[vm->nlines - 1] : "(none)");
}

static struct rvm *rvm_start(const char *base, unsigned ndisks, unsigned mem_mib)
{
	struct rvm *vm = rvm_launch(base, ndisks, mem_mib);

	rvm_wait_boot(vm);
	return vm;
}

static json_t *vm_json(struct rvm *vm)
{
	char *path = fmt("%s/%s/vm.json", catalog_dir, vm->name);
	json_t *st = json_load_file(path, 0, NULL);

	free(path);
	assert_non_null(st);
	return st;
}

/* The pid of the VM's QEMU now (vm.json's launch), or -1 if it is gone. */
static long vm_pid(struct rvm *vm)
{
	json_t *st = vm_json(vm), *cl = json_object_get(st, "CommandLine");
	long pid = (long)json_integer_value(json_object_get(cl, "Pid"));
	long long start = json_integer_value(json_object_get(cl, "StartTime"));

	json_decref(st);
	return pid > 0 && proc_start_time(pid) == start ? pid : -1;
}

static bool all_closed(void *arg)
{
	return ((struct rvm *)arg)->open == 0;
}

/* Kill the VM's QEMU (whichever launch runs now), close and free. */
static void rvm_kill_all(void)
{
	for (int i = 0; i < MAX_VMS; i++) {
		struct rvm *vm = vms[i];
		long pid;

		if (vm == NULL)
			continue;
		vms[i] = NULL;
		pid = vm_pid(vm);
		if (pid > 0)
			kill((pid_t)pid, SIGKILL);
		if (vm->proc_running)
			uv_process_kill(&vm->proc, SIGKILL);
		uv_close((uv_handle_t *)&vm->server, on_vm_handle_closed);
		unlink(vm->serial_path);
		/* the serial connections end when QEMU does */
		if (harness_run_until(all_closed, vm, WAIT_MS) < 0)
			fail_msg("%s: its QEMU did not go away", vm->name);
		for (size_t k = 0; k < vm->nlines; k++)
			free(vm->lines[k]);
		for (unsigned k = 0; k < vm->ndisks; k++)
			free(vm->disks[k]);
		for (size_t k = 0; vm->argv[k]; k++)
			free(vm->argv[k]);
		free(vm->lines);
		free(vm->life_of);
		free(vm->disks);
		free(vm->argv);
		free(vm->name);
		free(vm->serial_path);
		free(vm);
	}
}

/* ---- checks ----------------------------------------------------------- */


/* ---- checks ----------------------------------------------------------- */

static json_t *rec_disk(json_t *rec, size_t i)
{
	return json_array_get(json_object_get(rec, "Disks"), i);
}

static long frozen_counter(json_t *rec)
{
	long c = disk_read_counter(jstr(rec_disk(rec, 0), "CheckpointImage"));

	assert_true(c > 0);
	return c;
}

static const char *save_mode(void)
{
	/* 7.2's live pre-copy under TCG can lose dirty pages (issue 7) */
	return qemu_bin ? "live" : "paused";
}

/* A restored or exported guest carries on from COUNTER: its first tick
 * is COUNTER or the next one (the guest writes N before printing tick N),
 * and it never boots. */
static void carries_on(struct rvm *vm, int life, long counter, const char *what)
{
	long tick = wait_tick(vm, life, BOOT_MS);

	if (tick != counter && tick != counter + 1)
		fail_msg("%s: the guest (life %d of %s) printed tick %ld, the checkpoint holds %ld",
			 what, life, vm->name, tick, counter);
	assert_false(life_printed(vm, life, "qckpt-guest: boot"));
}

/* The record of VM's checkpoint WHAT as `list --json` prints it. */
static json_t *listed(const char *vm, const char *what)
{
	struct run r = qckpt("list", "--json", vm, NULL);
	json_t *lines, *rec, *found = NULL;
	size_t i;

	assert_int_equal(r.status, 0);
	lines = json_lines(r.out);
	json_array_foreach(lines, i, rec)
		if (strcmp(jstr(rec, "Name"), what) == 0 || strcmp(jstr(rec, "Id"), what) == 0)
			found = json_incref(rec);
	json_decref(lines);
	run_free(&r);
	if (found == NULL)
		fail_msg("%s: no checkpoint %s in 'list --json'", vm, what);
	return found;
}

/* VMs this test made besides the rvms (restore --from) and a QEMU
 * started from a README: killed before the rvms, whose serial listeners
 * they are connected to. */
static char *extra_vms[4];
static size_t nextra;
static struct child *plain_qemu;

/* The pid vm.json records for VMNAME's launch, or 0 (not yet written:
 * a restore that boots afresh returns before its QEMU runs). */
static long pid_of(const char *vmname)
{
	char *path = fmt("%s/%s/vm.json", catalog_dir, vmname);
	json_t *st = json_load_file(path, 0, NULL);
	long pid = (long)json_integer_value(json_object_get(json_object_get(st, "CommandLine"), "Pid"));

	free(path);
	json_decref(st);
	return pid;
}

static void kill_extras(void)
{
	while (nextra > 0) {
		char *name = extra_vms[--nextra];
		long pid = pid_of(name);

		/* never kill(0): that is this test's whole process group */
		if (pid > 0)
			kill((pid_t)pid, SIGKILL);
		free(name);
	}
	if (plain_qemu != NULL) {
		kill(plain_qemu->proc.pid, SIGKILL);
		harness_run_until(child_done, plain_qemu, WAIT_MS);
		free(plain_qemu);
		plain_qemu = NULL;
	}
}

static void test_rename_pin_and_unpin_rewrite_the_record_and_restore_follows_the_new_name(void **state)
{
	struct rvm *vm = rvm_start("ren", 1, 128);
	json_t *a = checkpoint_ok(vm->name, save_mode(), "first", NULL);
	json_t *b = checkpoint_ok(vm->name, "disk-only", "second", NULL);
	json_t *l;
	struct run r;
	int life;

	r = qckpt("rename", vm->name, "first", "renamed", NULL);
	assert_int_equal(r.status, 0);
	run_free(&r);
	/* a name another checkpoint of the VM has is refused */
	r = qckpt("rename", vm->name, "renamed", "second", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "already called 'second'"));
	run_free(&r);
	r = qckpt("rename", vm->name, "renamed", "bad\tname", NULL);
	assert_int_equal(r.status, 2);
	run_free(&r);
	l = listed(vm->name, jstr(a, "Id"));
	assert_string_equal(jstr(l, "Name"), "renamed");
	assert_false(json_is_true(json_object_get(l, "Pinned")));
	json_decref(l);
	/* the child names its parent by the new name */
	l = listed(vm->name, "second");
	assert_string_equal(jstr(l, "ParentCheckpointName"), "renamed");
	json_decref(l);

	r = qckpt("pin", vm->name, "renamed", NULL);
	assert_int_equal(r.status, 0);
	run_free(&r);
	l = listed(vm->name, "renamed");
	assert_true(json_is_true(json_object_get(l, "Pinned")));
	json_decref(l);
	l = listed(vm->name, "second");
	assert_true(json_is_false(json_object_get(l, "Pinned")));
	json_decref(l);
	r = qckpt("unpin", vm->name, "renamed", NULL);
	assert_int_equal(r.status, 0);
	run_free(&r);
	l = listed(vm->name, "renamed");
	assert_true(json_is_false(json_object_get(l, "Pinned")));
	json_decref(l);

	/* the old name is gone, the new one restores */
	r = qckpt("restore", vm->name, "first", NULL);
	assert_int_equal(r.status, 1);
	run_free(&r);
	life = vm->lives + 1;
	r = qckpt("restore", vm->name, "renamed", NULL);
	if (r.status != 0)
		fail_msg("qckpt restore %s renamed: exit %d: %s", vm->name, r.status, r.err);
	run_free(&r);
	carries_on(vm, life, frozen_counter(a), "restore by the new name");

	/* a disk-only checkpoint exports without memory; restore --from
	 * boots the new VM afresh on its disks */
	{
		char *dir = fmt("%s/export-%s-disks", harness_tmpdir(), vm->name);
		char *fresh = fmt("%s-fresh", vm->name), *mem = fmt("%s/memory.state", dir);
		char *readme = fmt("%s/README", dir), *text;
		char *line = fmt("qckpt-guest: disk vda counter=%ld", frozen_counter(b));

		r = qckpt("export", vm->name, "second", dir, NULL);
		if (r.status != 0)
			fail_msg("qckpt export of a disk-only checkpoint: exit %d: %s", r.status, r.err);
		run_free(&r);
		assert_int_equal(access(mem, F_OK), -1);
		text = read_file(readme);
		assert_non_null(strstr(text, "boots afresh"));
		assert_null(strstr(text, "-incoming"));
		free(text);
		life = vm->lives + 1;
		r = qckpt("restore", "--from", dir, fresh, NULL);
		extra_vms[nextra++] = strdup(fresh);
		if (r.status != 0)
			fail_msg("qckpt restore --from %s: exit %d: %s", dir, r.status, r.err);
		assert_non_null(strstr(r.err, "boots fresh"));
		run_free(&r);
		assert_true(wait_tick(vm, life, BOOT_MS) > 0);
		assert_true(life_printed(vm, life, "qckpt-guest: boot"));
		assert_true(life_printed(vm, life, line));
		free(line);
		free(readme);
		free(mem);
		free(fresh);
		free(dir);
	}
	json_decref(a);
	json_decref(b);
}

/*
 * qemu-img held: QEMU_IMG names a script that first reads one line from a
 * FIFO the test holds open, then execs the real qemu-img; each started
 * copy appends a line to a log, so the test knows when the export is under
 * way and lets it go on when it has seen what it wanted.
 */
struct held {
	char *fifo, *log, *script;
	int fd;
	size_t want;
};

static struct held hold_qemu_img(const char *tag)
{
	struct held h = { 0 };
	char *text;
	FILE *f;

	h.fifo = fmt("%s/hold-%s.fifo", harness_tmpdir(), tag);
	h.log = fmt("%s/hold-%s.log", harness_tmpdir(), tag);
	h.script = fmt("%s/hold-%s.sh", harness_tmpdir(), tag);
	h.want = 2; /* the VM's two disks */
	unlink(h.fifo);
	unlink(h.log);
	assert_int_equal(mkfifo(h.fifo, 0600), 0);
	/* read-write: the scripts' opens never block, their reads do */
	h.fd = open(h.fifo, O_RDWR | O_CLOEXEC);
	assert_true(h.fd >= 0);
	text = fmt("#!/bin/sh\necho started >>'%s'\nread go <'%s'\nexec '%s' \"$@\"\n",
		   h.log, h.fifo, harness_qemu_img());
	f = fopen(h.script, "w");
	fputs(text, f);
	fclose(f);
	chmod(h.script, 0700);
	free(text);
	setenv("QEMU_IMG", h.script, 1);
	return h;
}

static bool lines_held(void *arg)
{
	struct held *h = arg;
	size_t n = 0;
	FILE *f = fopen(h->log, "r");
	int c;

	if (f == NULL)
		return false;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n >= h->want;
}

static void release_qemu_img(struct held *h)
{
	for (size_t i = 0; i < h->want; i++)
		assert_int_equal(write(h->fd, "go\n", 3), 3);
	close(h->fd);
	unlink(h->fifo);
	free(h->fifo);
	free(h->log);
	free(h->script);
}

/* Export with qemu-img failing (QEMU_IMG=false), or interrupted by
 * SIGINT mid-way: nothing stays behind. */
static void export_failure_leaves_nothing(struct rvm *vm)
{
	char *dir = fmt("%s/failed-export-%s", harness_tmpdir(), vm->name);
	char *full = fmt("%s/full-%s", harness_tmpdir(), vm->name), *junk = fmt("%s/x", full);
	struct run r;
	FILE *f;

	setenv("QEMU_IMG", "false", 1);
	r = qckpt("export", vm->name, "c", dir, NULL);
	unsetenv("QEMU_IMG");
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "qemu-img convert"));
	assert_int_equal(access(dir, F_OK), -1);
	run_free(&r);
	{
		struct held h = hold_qemu_img("int");
		char *bin = strdup(harness_qckpt());
		char *argv[] = { bin, "export", vm->name, "c", dir, NULL };
		struct child c = { 0 };

		child_start(&c, argv);
		unsetenv("QEMU_IMG");
		assert_int_equal(harness_run_until(lines_held, &h, WAIT_MS), 0);
		/* held, never released: the interrupt ends the copies */
		kill(c.proc.pid, SIGINT);
		assert_int_equal(harness_run_until(child_done, &c, WAIT_MS), 0);
		release_qemu_img(&h);
		assert_int_equal(c.status, 1);
		assert_non_null(strstr(c.errbuf, "interrupted"));
		assert_int_equal(access(dir, F_OK), -1);
		free(bin);
	}
	/* DIR must be new or empty */
	mkdir(full, 0700);
	f = fopen(junk, "w");
	fclose(f);
	r = qckpt("export", vm->name, "c", full, NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "is not empty"));
	run_free(&r);
	free(dir);
	free(full);
	free(junk);
}

/* The README's plain QEMU command: the line after "    cd DIR". */
static char *readme_command(const char *dir)
{
	char *path = fmt("%s/README", dir), *text = read_file(path), *p, *cd, *cmd;

	cd = fmt("\n    cd %s\n    ", dir);
	p = strstr(text, cd);
	if (p == NULL)
		fail_msg("%s has no '    cd %s' line followed by the command:\n%s", path, dir, text);
	p += strlen(cd);
	cmd = strndup(p, strcspn(p, "\n"));
	free(cd);
	free(text);
	free(path);
	return cmd;
}

static char *qmp_status(const char *sock)
{
	struct run r = qckpt("qmp", sock, "query-status", NULL);
	json_t *j = json_loads(r.out ? r.out : "", 0, NULL);
	char *s = strdup(r.status == 0 && jstr(j, "status") ? jstr(j, "status") : "none");

	json_decref(j);
	run_free(&r);
	return s;
}

/* Start the export as its README says, with plain QEMU; resume the guest
 * (the README's cont) when the load leaves it paused; it carries on. */
static void start_with_plain_qemu(struct rvm *vm, json_t *rec, const char *dir, long counter)
{
	char *cmd = readme_command(dir), *sock = fmt("%s/qmp.sock", dir);
	char *line = fmt("cd '%s' && exec %s", dir, cmd);
	char *argv[] = { "/bin/sh", "-c", line, NULL };
	struct child *c = calloc(1, sizeof *c);
	int life = vm->lives + 1, tries;
	char *st = NULL;

	assert_non_null(strstr(cmd, "-incoming"));
	child_start(c, argv);
	plain_qemu = c;
	/* No QMP event marks the end of an incoming load's run-state
	 * change: ask until it is no longer "inmigrate" (or QEMU is up). */
	for (tries = 0; tries < 600; tries++) {
		free(st);
		st = qmp_status(sock);
		if (strcmp(st, "paused") == 0 || strcmp(st, "running") == 0 || c->exited)
			break;
	}
	if (strcmp(st, "paused") != 0 && strcmp(st, "running") != 0)
		fail_msg("QEMU from the README (%s) is '%s' after the load: %s", cmd, st, c->errbuf);
	if (strcmp(st, "paused") == 0 && strcmp(jstr(rec, "GuestState"), "running") == 0) {
		struct run r = qckpt("qmp", sock, "cont", NULL);

		assert_int_equal(r.status, 0);
		run_free(&r);
	}
	carries_on(vm, life, counter, "plain QEMU per the README");
	free(st);
	free(cmd);
	free(sock);
	free(line);
	/* the child handle is the harness loop's until QEMU is killed */
}

/* --progress=json on stderr (qckpt(1) PROGRESS): "checking", "copying
 * disks", "copying memory" if the disks finish first, "recording", "done"
 * last, in that order; figures only while the disks are copied (qemu-img -p's
 * percent of their virtual sizes), done never over total. */
static void check_export_progress(const char *vm, const char *err)
{
	static const char *const order[] = {
		"checking", "copying disks", "copying memory", "recording", "done",
	};
	size_t next = 0, seen = 0;

	for (const char *p = err; *p != '\0';) {
		size_t len = strcspn(p, "\n");
		json_t *o = p[0] == '{' ? json_loadb(p, len, 0, NULL) : NULL;

		if (o != NULL) {
			const char *phase = jstr(o, "Phase");
			json_t *done = json_object_get(o, "BytesDone");

			assert_string_equal(jstr(o, "VMName"), vm);
			while (next < 5 && strcmp(order[next], phase) != 0)
				next++;
			if (next == 5)
				fail_msg("export phase '%s' out of order: %s", phase, err);
			if (json_is_integer(done)) {
				assert_string_equal(phase, "copying disks");
				assert_true(json_integer_value(done) <=
					    json_integer_value(json_object_get(o, "BytesTotal")));
			}
			seen |= 1u << next;
			json_decref(o);
		}
		p += len + (p[len] == '\n');
	}
	if ((seen & 0xb) != 0xb || next != 4)
		fail_msg("export progress without checking, copying disks, recording and done last: %s", err);
}

static void test_export_of_a_running_vm_starts_with_plain_qemu_and_as_a_new_vm(void **state)
{
	struct rvm *vm = rvm_start("exp", 2, 256);
	json_t *rec = checkpoint_ok(vm->name, save_mode(), "c", NULL);
	char *dir = fmt("%s/export-%s", harness_tmpdir(), vm->name);
	char *newname = fmt("%s-copy", vm->name);
	char *qckpt_bin = strdup(harness_qckpt());
	char *argv[] = { qckpt_bin, "export", vm->name, "c", dir, NULL };
	long counter = frozen_counter(rec), pid = vm_pid(vm), during = 0, tick;
	struct child exp = { 0 };
	json_t *erec;
	struct run r;
	int life;

	export_failure_leaves_nothing(vm);

	/* the export reads only frozen images: the guest ticks while it is
	 * held with its qemu-img runs waiting */
	{
		struct held h = hold_qemu_img(vm->name);
		long t0 = wait_tick(vm, 1, WAIT_MS);

		child_start(&exp, argv);
		unsetenv("QEMU_IMG");
		assert_int_equal(harness_run_until(lines_held, &h, WAIT_MS), 0);
		while ((tick = wait_tick(vm, 1, WAIT_MS)) > 0 && tick < t0 + 3)
			during++;
		assert_true(tick >= t0 + 3); /* three ticks with the export under way */
		assert_false(exp.exited);
		release_qemu_img(&h);
	}
	harness_run_until(child_done, &exp, WAIT_MS);
	if (exp.status != 0)
		fail_msg("qckpt export: exit %d: %s", exp.status, exp.errbuf);
	assert_int_equal(vm_pid(vm), pid);

	/* the same again with its progress as JSON lines */
	{
		char *dir2 = fmt("%s/export-json-%s", harness_tmpdir(), vm->name);
		char *path = fmt("%s/memory.state", dir2);

		r = qckpt("export", "--progress=json", vm->name, "c", dir2, NULL);
		if (r.status != 0)
			fail_msg("qckpt export --progress=json: exit %d: %s", r.status, r.err);
		check_export_progress(vm->name, r.err);
		assert_int_equal(access(path, R_OK), 0);
		run_free(&r);
		free(path);
		free(dir2);
	}

	/* self-contained: flattened disk, memory, record naming them */
	{
		char *path = fmt("%s/checkpoint.json", dir), *img;

		erec = json_load_file(path, 0, NULL);
		assert_non_null(erec);
		assert_string_equal(jstr(erec, "Id"), jstr(rec, "Id"));
		assert_string_equal(jstr(json_object_get(erec, "MemoryState"), "Path"), "memory.state");
		/* both disks, converted at once, each what its frozen image
		 * holds (the guest writes N to one disk, then the other: the
		 * instant can fall between the two) */
		assert_int_equal(json_array_size(json_object_get(erec, "Disks")), 2);
		for (size_t i = 0; i < 2; i++) {
			img = fmt("%s/%s", dir, jstr(rec_disk(erec, i), "CheckpointImage"));
			assert_string_equal(jstr(rec_disk(erec, i), "Device"), jstr(rec_disk(rec, i), "Device"));
			assert_int_equal(disk_read_counter(img),
					 disk_read_counter(jstr(rec_disk(rec, i), "CheckpointImage")));
			free(img);
		}
		free(path);
		path = fmt("%s/memory.state", dir);
		assert_int_equal(access(path, R_OK), 0);
		free(path);
	}

	/* restore --from: a new VM from the export; DIR only read */
	life = vm->lives + 1;
	r = qckpt("restore", "--from", dir, newname, NULL);
	extra_vms[nextra++] = strdup(newname);
	if (r.status != 0)
		fail_msg("qckpt restore --from %s %s: exit %d: %s", dir, newname, r.status, r.err);
	run_free(&r);
	carries_on(vm, life, counter, "restore --from");
	{
		struct run l = qckpt("list", "--json", newname, NULL);
		json_t *lines = json_lines(l.out);

		assert_int_equal(json_array_size(lines), 1);
		assert_string_equal(jstr(json_array_get(lines, 0), "VMName"), newname);
		assert_string_equal(jstr(json_array_get(lines, 0), "Name"), "c");
		json_decref(lines);
		run_free(&l);
	}
	/* a second import under that name is refused */
	r = qckpt("restore", "--from", dir, newname, NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "already registered"));
	run_free(&r);
	/* a directory that is no export: one line, nothing registered */
	{
		char *other = fmt("%s-other", newname);

		r = qckpt("restore", "--from", harness_tmpdir(), other, NULL);
		assert_int_equal(r.status, 1);
		assert_non_null(strstr(r.err, "is not a qckpt export"));
		assert_int_equal(strchr(r.err, '\n') - r.err + 1, (long)strlen(r.err));
		run_free(&r);
		r = qckpt("vms", "--names", NULL);
		assert_null(strstr(r.out, other));
		run_free(&r);
		free(other);
	}

	/* plain QEMU, as the README says (writes into DIR: last) */
	start_with_plain_qemu(vm, rec, dir, counter);

	/* the original VM: the same QEMU, still ticking on */
	assert_int_equal(vm_pid(vm), pid);
	tick = wait_tick(vm, 1, WAIT_MS);
	assert_true(tick > counter);
	json_decref(erec);
	json_decref(rec);
	free(qckpt_bin);
	free(dir);
	free(newname);
}

/* ---- groups -------------------------------------------------------------- */

static int setup(void **state)
{
	FILE *f;

	registry_path = harness_path("registry");
	catalog_dir = harness_path("catalog");
	mkdir(catalog_dir, 0700);
	setenv("QCKPT_REGISTRY", registry_path, 1);
	/* restore --from registers in the default catalog: the same */
	setenv("QCKPT_CATALOG_DIR", catalog_dir, 1);
	f = fopen(registry_path, "w");
	fputs("# written by test-export\n", f);
	fclose(f);
	return 0;
}

static int setup_qemu10(void **state)
{
	qemu_bin = harness_require_qemu10();
	if (qemu_bin == NULL)
		return -1;
	return setup(state);
}

static int teardown_test(void **state)
{
	kill_extras();
	rvm_kill_all();
	return 0;
}

static int teardown(void **state)
{
	free(registry_path);
	free(catalog_dir);
	qemu_bin = NULL;
	return 0;
}

#define T(f) cmocka_unit_test_teardown(f, teardown_test)

int main(void)
{
	int rc = harness_init(), failed = 0;
	const struct CMUnitTest tests[] = {
		T(test_rename_pin_and_unpin_rewrite_the_record_and_restore_follows_the_new_name),
		T(test_export_of_a_running_vm_starts_with_plain_qemu_and_as_a_new_vm),
	};
	const struct CMUnitTest tests_qemu10[] = {
		T(test_export_of_a_running_vm_starts_with_plain_qemu_and_as_a_new_vm),
	};

	if (rc != 0)
		return rc;
	if (harness_qckpt() == NULL) {
		fprintf(stderr, "QCKPT_BIN not set: run through make check\n");
		return HARNESS_SKIP;
	}
	if (getenv("QCKPT_TEST_FILTER"))
		cmocka_set_test_filter(getenv("QCKPT_TEST_FILTER"));
	failed += cmocka_run_group_tests_name("qckpt export", tests, setup, teardown);
	if (harness_want_qemu10())
		failed += cmocka_run_group_tests_name("qckpt export on QEMU 10",
						      tests_qemu10, setup_qemu10, teardown);
	return failed ? 1 : 0;
}
