/*
 * test-export.c: `qckpt rename`, `pin`/`unpin`, `export` and `restore
 * --from` against real QEMU running the Linux test guest, on QEMU 7.2 and
 * 10.0.
 *
 * The VMs are rvm.h's (a restore relaunches QEMU, so each VM's serial
 * console is a unix socket this test listens on and every QEMU that runs
 * the VM connects to it as a new "life"; their guests tick every 100 ms).  An
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
#include "rvm.h"
#include "testutil.h"
#include "util.h"

#define BOOT_MS 300000u /* only a failure waits this long; an overloaded 2-core host took over 90 s */
#define WAIT_MS 30000u

static char *registry_path, *catalog_dir;
static const char *qemu_bin; /* NULL: QEMU 7.2 (harness_qemu()) */

/* ---- checks ----------------------------------------------------------- */

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
	if (group_files_setup("test-export", &registry_path, &catalog_dir) < 0)
		return -1;
	rvm_catalog_dir = catalog_dir;
	rvm_qemu_bin = &qemu_bin;
	rvm_append = "qckpt.tick_ms=100";
	/* restore --from registers in the default catalog: the same */
	setenv("QCKPT_CATALOG_DIR", catalog_dir, 1);
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
	group_files_teardown(&registry_path, &catalog_dir);
	qemu_bin = NULL;
	rvm_append = NULL;
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
