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
		/* --ram-file is for an export of a ram-file checkpoint only */
		r = qckpt("restore", "--from", dir, "--ram-file", fresh, NULL);
		assert_int_equal(r.status, 1);
		assert_non_null(strstr(r.err, "keeps no RAM file"));
		run_free(&r);
		r = qckpt("restore", "--ram-file=/tmp", vm->name, "second", NULL);
		assert_int_equal(r.status, 2);
		assert_non_null(strstr(r.err, "--ram-file goes with --from"));
		run_free(&r);
		life = vm->lives + 1;
		r = qckpt("restore", "--from", dir, fresh, NULL);
		rvm_add_extra(fresh);
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
	restore_from_ok(vm, dir, newname, counter, "restore --from");
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
