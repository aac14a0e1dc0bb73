/*
 * rvm.c: see rvm.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "rvm.h"
#include "testutil.h"
#include "util.h"

#define BOOT_MS 300000u /* only a failure waits this long; an overloaded 2-core host took over 90 s */
#define WAIT_MS 30000u

char *rvm_catalog_dir;
const char *const *rvm_qemu_bin;
const char *const *rvm_run_args;
int rvm_serial_no;
const char *rvm_append;
const char *const *rvm_qemu_args;

/* ---- VMs whose serial console survives a relaunch ----------------------- */

static struct rvm *vms[RVM_MAX];

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
	harness_count_serial_line(vm->lines[vm->nlines - 1]);
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
		c->vm->open_lives--;
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
	harness_count_qemu();
	vm->open++;
	uv_pipe_init(harness_loop(), &c->pipe, 0);
	c->pipe.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0) {
		uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
		return;
	}
	if (++vm->open_lives > vm->max_open_lives)
		vm->max_open_lives = vm->open_lives;
	uv_read_start((uv_stream_t *)&c->pipe, on_serial_alloc, on_serial_read);
}

static void on_run_exit(uv_process_t *p, int64_t status, int sig)
{
	struct rvm *vm = p->data;

	vm->proc_running = 0;
	vm->exit_status = (int)status;
	vm->exit_signal = sig;
	uv_close((uv_handle_t *)p, on_vm_handle_closed);
}

static void push(char ***v, size_t *n, const char *s)
{
	*v = realloc(*v, (*n + 2) * sizeof **v);
	(*v)[(*n)++] = strdup(s);
	(*v)[*n] = NULL;
}

void spawn_run(struct rvm *vm)
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

long wait_tick(struct rvm *vm, int life, unsigned timeout_ms)
{
	struct tick_wait w = { vm, life, -1 };
	struct life_wait lw = { vm, life };

	if (harness_run_until(life_reached, &lw, timeout_ms) < 0)
		return -1;
	harness_run_until(tick_seen, &w, timeout_ms);
	return w.tick;
}

/* Whether life LIFE printed a line containing TEXT (so far). */
bool life_printed(struct rvm *vm, int life, const char *text)
{
	return life_printed_since(vm, life, 0, text);
}

bool life_printed_since(struct rvm *vm, int life, size_t from, const char *text)
{
	uv_run(harness_loop(), UV_RUN_NOWAIT);
	for (size_t i = from; i < vm->nlines; i++)
		if (vm->life_of[i] == life && strstr(vm->lines[i], text) != NULL)
			return true;
	return false;
}

static const char *qemu(void)
{
	return rvm_qemu_bin && *rvm_qemu_bin ? *rvm_qemu_bin : harness_qemu();
}

/* Start a VM through `qckpt run` without waiting for it to boot. */
struct rvm *rvm_launch(const char *base, unsigned ndisks, unsigned mem_mib)
{
	struct rvm *vm = calloc(1, sizeof *vm);
	const char *guest = getenv("QCKPT_GUEST_DIR");
	size_t n = 0;
	char *s;
	int slot;

	for (slot = 0; slot < RVM_MAX && vms[slot] != NULL; slot++)
		;
	assert_true(slot < RVM_MAX);
	vms[slot] = vm;
	vm->name = fmt("%s%d", base, ++rvm_serial_no);
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
	push(&vm->argv, &n, rvm_catalog_dir);
	for (const char *const *a = rvm_run_args; a != NULL && *a != NULL; a++)
		push(&vm->argv, &n, *a);
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
	s = fmt(HARNESS_GUEST_CMDLINE "%s%s", rvm_append ? " " : "",
		rvm_append ? rvm_append : "");
	push(&vm->argv, &n, "-append");
	push(&vm->argv, &n, s);
	free(s);
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
	for (const char *const *a = rvm_qemu_args; a != NULL && *a != NULL; a++)
		push(&vm->argv, &n, *a);
	spawn_run(vm);
	return vm;
}

void rvm_wait_boot(struct rvm *vm)
{
	char how[64] = "QEMU runs";

	if (wait_tick(vm, 1, BOOT_MS) <= 0) {
		if (!vm->proc_running)
			snprintf(how, sizeof how, "qckpt run or QEMU exited (status %d, signal %d)",
				 vm->exit_status, vm->exit_signal);
		fail_msg("%s did not boot within %u ms: %s, %zu serial lines, last: %s", vm->name, BOOT_MS,
			 how, vm->nlines, vm->nlines ? vm->lines[vm->nlines - 1] : "(none)");
	}
}

struct rvm *rvm_start(const char *base, unsigned ndisks, unsigned mem_mib)
{
	struct rvm *vm = rvm_launch(base, ndisks, mem_mib);

	rvm_wait_boot(vm);
	return vm;
}

json_t *vm_json(struct rvm *vm)
{
	char *path = fmt("%s/%s/vm.json", rvm_catalog_dir, vm->name);
	json_t *st = json_load_file(path, 0, NULL);

	free(path);
	assert_non_null(st);
	return st;
}

/* The pid of the VM's QEMU now (vm.json's launch), or -1 if it is gone. */
long vm_pid(struct rvm *vm)
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

/* ---- exports ------------------------------------------------------------- */

/* VMs this test made besides the rvms (restore --from) and a QEMU
 * started from a README: killed before the rvms, whose serial listeners
 * they are connected to. */
static char *extra_vms[RVM_MAX];
static size_t nextra;
static struct child *plain_qemu;

void rvm_add_extra(const char *name)
{
	assert_true(nextra < RVM_MAX);
	extra_vms[nextra++] = strdup(name);
}

/* The pid vm.json records for VMNAME's launch, or 0 (not yet written:
 * a restore that boots afresh returns before its QEMU runs). */
static long pid_of(const char *vmname)
{
	char *path = fmt("%s/%s/vm.json", rvm_catalog_dir, vmname);
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

void carries_on(struct rvm *vm, int life, long counter, const char *what)
{
	long tick = wait_tick(vm, life, BOOT_MS);

	if (tick != counter && tick != counter + 1)
		fail_msg("%s: the guest (life %d of %s) printed tick %ld, the checkpoint holds %ld",
			 what, life, vm->name, tick, counter);
	assert_false(life_printed(vm, life, "qckpt-guest: boot"));
}

int restore_from_ok(struct rvm *vm, const char *dir, const char *name, long counter,
		    const char *what)
{
	int life = vm->lives + 1;
	struct run r = qckpt("restore", "--from", dir, name, NULL);

	rvm_add_extra(name);
	if (r.status != 0)
		fail_msg("qckpt restore --from %s %s: exit %d: %s", dir, name, r.status, r.err);
	run_free(&r);
	carries_on(vm, life, counter, what);
	return life;
}

/* The README's plain QEMU commands as one shell line: "cd DIR", then the
 * indented lines after "    cd DIR" up to a blank line, the last exec'd. */
static char *readme_commands(const char *dir)
{
	char *path = fmt("%s/README", dir), *text = read_file(path), *p, *cd, *line;

	cd = fmt("\n    cd %s\n", dir);
	p = strstr(text, cd);
	if (p == NULL || strncmp(p + strlen(cd), "    ", 4) != 0)
		fail_msg("%s has no '    cd %s' line followed by the command:\n%s", path, dir, text);
	p += strlen(cd);
	line = fmt("cd '%s'", dir);
	while (strncmp(p, "    ", 4) == 0) {
		size_t len = strcspn(p + 4, "\n");
		int last = strncmp(p + 4 + len, "\n    ", 5) != 0;
		char *next = fmt("%s && %s%.*s", line, last ? "exec " : "", (int)len, p + 4);

		free(line);
		line = next;
		p += 4 + len + (p[4 + len] == '\n');
	}
	free(cd);
	free(text);
	free(path);
	return line;
}

static char *sock_status(const char *sock)
{
	struct run r = qckpt("qmp", sock, "query-status", NULL);
	json_t *j = json_loads(r.out ? r.out : "", 0, NULL);
	char *s = strdup(r.status == 0 && jstr(j, "status") ? jstr(j, "status") : "none");

	json_decref(j);
	run_free(&r);
	return s;
}

void start_with_plain_qemu(struct rvm *vm, json_t *rec, const char *dir, long counter)
{
	char *line = readme_commands(dir), *sock = fmt("%s/qmp.sock", dir);
	char *argv[] = { "/bin/sh", "-c", line, NULL };
	struct child *c = calloc(1, sizeof *c);
	int life = vm->lives + 1, tries;
	char *st = NULL;

	assert_null(plain_qemu);
	assert_non_null(strstr(line, "-incoming"));
	child_start(c, argv);
	plain_qemu = c;
	/* No QMP event marks the end of an incoming load's run-state
	 * change: ask until it is no longer "inmigrate" (or QEMU is up). */
	for (tries = 0; tries < 600; tries++) {
		free(st);
		st = sock_status(sock);
		if (strcmp(st, "paused") == 0 || strcmp(st, "running") == 0 || c->exited)
			break;
	}
	if (strcmp(st, "paused") != 0 && strcmp(st, "running") != 0)
		fail_msg("QEMU from the README (%s) is '%s' after the load: %s", line, st, c->errbuf);
	if (strcmp(st, "paused") == 0 && strcmp(jstr(rec, "GuestState"), "running") == 0) {
		struct run r = qckpt("qmp", sock, "cont", NULL);

		assert_int_equal(r.status, 0);
		run_free(&r);
	}
	carries_on(vm, life, counter, "plain QEMU per the README");
	free(st);
	free(sock);
	free(line);
	/* the child handle is the harness loop's until QEMU is killed */
}

json_t *progress_next(const char **p, const char *vm)
{
	while (**p != '\0') {
		size_t len = strcspn(*p, "\n");
		json_t *o = (*p)[0] == '{' ? json_loadb(*p, len, 0, NULL) : NULL;
		json_t *done;

		*p += len + ((*p)[len] == '\n');
		if (o == NULL)
			continue;
		assert_string_equal(jstr(o, "VMName"), vm);
		done = json_object_get(o, "BytesDone");
		if (json_is_integer(done))
			assert_true(json_integer_value(done) <=
				    json_integer_value(json_object_get(o, "BytesTotal")));
		return o;
	}
	return NULL;
}

void check_export_progress(const char *vm, const char *err)
{
	static const char *const order[] = {
		"checking", "copying disks", "copying memory", "recording", "done",
	};
	size_t next = 0, seen = 0;

	const char *p = err;
	json_t *o;

	for (; (o = progress_next(&p, vm)) != NULL; json_decref(o)) {
		const char *phase = jstr(o, "Phase");

		while (next < 5 && strcmp(order[next], phase) != 0)
			next++;
		if (next == 5)
			fail_msg("export phase '%s' out of order: %s", phase, err);
		if (json_is_integer(json_object_get(o, "BytesDone")) &&
		    strcmp(phase, "copying disks") != 0 && strcmp(phase, "copying memory") != 0)
			fail_msg("export figures in phase '%s': %s", phase, err);
		seen |= 1u << next;
	}
	if ((seen & 0xb) != 0xb || next != 4)
		fail_msg("export progress without checking, copying disks, recording and done last: %s", err);
}

/* Kill the VM's QEMU (whichever launch runs now), close and free. */
void rvm_kill_all(void)
{
	kill_extras();
	for (int i = 0; i < RVM_MAX; i++) {
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

json_t *rec_disk(json_t *rec, size_t i)
{
	return json_array_get(json_object_get(rec, "Disks"), i);
}

long frozen_counter(json_t *rec)
{
	long c = disk_read_counter(jstr(rec_disk(rec, 0), "CheckpointImage"));

	assert_true(c > 0);
	return c;
}

const char *save_mode(void)
{
	/* 7.2's live pre-copy under TCG can lose dirty pages (issue 7) */
	return rvm_qemu_bin != NULL && *rvm_qemu_bin != NULL ? "live" : "paused";
}
