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
	uv_run(harness_loop(), UV_RUN_NOWAIT);
	for (size_t i = 0; i < vm->nlines; i++)
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
	spawn_run(vm);
	return vm;
}

void rvm_wait_boot(struct rvm *vm)
{
	if (wait_tick(vm, 1, BOOT_MS) <= 0)
		fail_msg("%s did not boot within %u ms: %s, %zu serial lines, last: %s", vm->name, BOOT_MS,
			 vm->proc_running ? "QEMU runs" : "qckpt run or QEMU exited",
			 vm->nlines, vm->nlines ? vm->lines[vm->nlines - 1] : "(none)");
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

/* Kill the VM's QEMU (whichever launch runs now), close and free. */
void rvm_kill_all(void)
{
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
