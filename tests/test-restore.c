/*
 * test-restore.c: `qckpt restore` against real QEMU running the Linux test
 * guest, on QEMU 7.2 and 10.0.
 *
 * A restore quits the VM's QEMU and starts a new one, detached, through
 * `qckpt run`: the VMs are rvm.h's, whose serial console survives that,
 * one "life" per QEMU.
 *
 * A restore is checked from the guest: the restored guest prints ticks
 * that continue from the counter the checkpoint's frozen image holds (the
 * guest writes N to its disk before it prints "tick N"), and never
 * "qckpt-guest: boot".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "cmdline.h"
#include "harness.h"
#include "rvm.h"
#include "testutil.h"
#include "util.h"

#define BOOT_MS 300000u /* only a failure waits this long; an overloaded 2-core host took over 90 s */
#define WAIT_MS 30000u

static char *registry_path, *catalog_dir;
static const char *qemu_bin; /* NULL: QEMU 7.2 (harness_qemu()) */

static const char *qemu(void)
{
	return qemu_bin ? qemu_bin : harness_qemu();
}

/* ---- checks ----------------------------------------------------------- */

static char *xstrdup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static struct run restore(struct rvm *vm, const char *what, const char *opt)
{
	struct run r = opt ? qckpt("restore", "-v", opt, vm->name, what, NULL)
			   : qckpt("restore", "-v", vm->name, what, NULL);

	return r;
}

/* --progress=json on stderr: the restore's phases in their order, ending
 * in done (qckpt(1) PROGRESS); loaded bytes never more than the total.
 * The new QEMU starts after the old one stopped, or (the pre-start)
 * before, but loads only after it in both. */
static void check_restore_progress(const char *vm, const char *err)
{
	static const char *const order[] = {
		"checking", "preparing", "stopping", "starting QEMU", "stopping", "loading memory", "done",
	};
	size_t next = 0;
	const char *last = NULL;

	const char *p = err;
	json_t *o;

	for (; (o = progress_next(&p, vm)) != NULL; json_decref(o)) {
		const char *phase = jstr(o, "Phase");

		while (next < 7 && strcmp(order[next], phase) != 0)
			next++;
		if (next == 7)
			fail_msg("restore phase '%s' out of order: %s", phase, err);
		last = order[next];
	}
	assert_non_null(last);
	assert_string_equal(last, "done");
	assert_non_null(strstr(err, "\"Phase\":\"loading memory\""));
}

/* Restore VM to REC (named by WHAT): it succeeds, a new QEMU runs the
 * guest, which carries on from the checkpoint's counter and never boots. */
static void restore_ok(struct rvm *vm, json_t *rec, const char *what)
{
	int life = vm->lives + 1;
	long counter = frozen_counter(rec), tick;
	struct run r = restore(vm, what, "--progress=json");
	json_t *st;

	if (r.status != 0)
		fail_msg("qckpt restore %s %s: exit %d: %s", vm->name, what, r.status, r.err);
	assert_non_null(strstr(r.err, "restored to"));
	check_restore_progress(vm->name, r.err);
	tick = wait_tick(vm, life, WAIT_MS);
	if (tick != counter && tick != counter + 1)
		fail_msg("%s restored to %s (counter %ld) printed tick %ld", vm->name, what, counter, tick);
	assert_false(life_printed(vm, life, "qckpt-guest: boot"));
	st = vm_json(vm);
	assert_null(json_object_get(st, "PendingRestore"));
	assert_string_equal(jstr(st, "CurrentCheckpointId"), jstr(rec, "Id"));
	json_decref(st);
	run_free(&r);
}

static void test_restore_by_name_id_and_id_prefix(void **state)
{
	struct rvm *vm = rvm_start("byname", 1, 128);
	json_t *a = checkpoint_ok(vm->name, save_mode(), "first", NULL);
	char prefix[9];

	assert_true(wait_tick(vm, 1, WAIT_MS) > 0);
	restore_ok(vm, a, "first");
	restore_ok(vm, a, jstr(a, "Id"));
	snprintf(prefix, sizeof prefix, "%.8s", jstr(a, "Id"));
	restore_ok(vm, a, prefix);
	{
		/* --as-job --passthru: the job's output is the VM as `qckpt vms
		 * --json` shows it, running again */
		int life = vm->lives + 1;
		long counter = frozen_counter(a), tick;
		struct run r = qckpt("restore", "--as-job", "--passthru", vm->name, prefix, NULL);
		char id[16];
		json_t *lines;

		job_started(&r, id, sizeof id);
		job_wait_completed(id, 90);
		lines = job_received_one(id);
		assert_string_equal(jstr(lines, "Name"), vm->name);
		assert_string_equal(jstr(lines, "State"), "running");
		json_decref(lines);
		run_free(&r);
		tick = wait_tick(vm, life, WAIT_MS);
		assert_true(tick == counter || tick == counter + 1);
	}
	json_decref(a);
	rvm_kill_all();
}

static void test_restore_refuses_an_ambiguous_or_unknown_name_listing_candidates(void **state)
{
	struct rvm *vm = rvm_start("ambig", 1, 128);
	json_t *a = checkpoint_ok(vm->name, "disk-only", "twin", NULL);
	json_t *b = checkpoint_ok(vm->name, "disk-only", "twin", NULL);
	long pid = vm_pid(vm);
	char id8[9];
	struct run r = qckpt("restore", "--whatif", vm->name, "twin", NULL);
	char *whatif = fmt("What if: Performing operation \"Restore\" on target \"%s\".\n", vm->name);

	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, whatif);
	free(whatif);
	run_free(&r);
	r = restore(vm, "twin", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "'twin' matches 2 checkpoints"));
	snprintf(id8, sizeof id8, "%.8s", jstr(a, "Id"));
	assert_non_null(strstr(r.err, id8));
	snprintf(id8, sizeof id8, "%.8s", jstr(b, "Id"));
	assert_non_null(strstr(r.err, id8));
	run_free(&r);
	r = restore(vm, "nosuch", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "no checkpoint 'nosuch'; it has 2"));
	run_free(&r);
	/* untouched: the same QEMU runs on */
	assert_int_equal(vm_pid(vm), pid);
	assert_true(wait_tick(vm, 1, WAIT_MS) > 0);
	json_decref(a);
	json_decref(b);
	rvm_kill_all();
}

/* A, run, B, restore A, run, C: C branches from A; every node restores
 * to its own counter. */
static void test_restore_walks_a_tree_of_checkpoints(void **state)
{
	struct rvm *vm = rvm_start("tree", 1, 128);
	json_t *a, *b, *c;
	long t;

	a = checkpoint_ok(vm->name, save_mode(), "A", NULL);
	while ((t = wait_tick(vm, 1, WAIT_MS)) > 0 && t < frozen_counter(a) + 3)
		;
	b = checkpoint_ok(vm->name, save_mode(), "B", NULL);
	assert_string_equal(jstr(b, "ParentCheckpointId"), jstr(a, "Id"));
	restore_ok(vm, a, "A");
	while ((t = wait_tick(vm, vm->lives, WAIT_MS)) > 0 && t < frozen_counter(a) + 2)
		;
	c = checkpoint_ok(vm->name, save_mode(), "C", NULL);
	/* the restored VM's next checkpoint is a child of the restored one */
	assert_string_equal(jstr(c, "ParentCheckpointId"), jstr(a, "Id"));
	assert_true(frozen_counter(c) < frozen_counter(b) + 100);
	restore_ok(vm, b, "B");
	restore_ok(vm, c, "C");
	restore_ok(vm, a, "A");
	json_decref(a);
	json_decref(b);
	json_decref(c);
	rvm_kill_all();
}

static char *vm_status(struct rvm *vm)
{
	struct run r = qckpt("qmp", vm->name, "query-status", NULL);
	json_t *o;
	char *s;

	assert_int_equal(r.status, 0);
	o = json_loads(r.out, 0, NULL);
	assert_non_null(o);
	s = strdup(jstr(o, "status"));
	json_decref(o);
	run_free(&r);
	return s;
}

static void test_paused_checkpoint_comes_back_paused(void **state)
{
	struct rvm *vm = rvm_start("paused", 1, 128);
	struct run r = qckpt("qmp", vm->name, "stop", NULL);
	json_t *a;
	char *st;
	long counter, tick;
	int life;

	assert_int_equal(r.status, 0);
	run_free(&r);
	a = checkpoint_ok(vm->name, "auto", "stopped", NULL);
	assert_string_equal(jstr(a, "GuestState"), "paused");
	r = qckpt("qmp", vm->name, "cont", NULL);
	run_free(&r);
	life = vm->lives + 1;
	r = restore(vm, "stopped", NULL);
	if (r.status != 0)
		fail_msg("%s", r.err);
	assert_non_null(strstr(r.err, "loaded and paused"));
	run_free(&r);
	st = vm_status(vm);
	assert_string_equal(st, "paused");
	free(st);
	r = qckpt("qmp", vm->name, "cont", NULL);
	run_free(&r);
	counter = frozen_counter(a);
	tick = wait_tick(vm, life, WAIT_MS);
	assert_true(tick == counter || tick == counter + 1);
	json_decref(a);
	rvm_kill_all();
}

static void test_disk_only_checkpoint_boots_fresh_on_its_disks(void **state)
{
	struct rvm *vm = rvm_start("diskonly", 1, 128);
	json_t *a = checkpoint_ok(vm->name, "disk-only", "disks", NULL);
	int life = vm->lives + 1;
	long counter = frozen_counter(a);
	char *line = fmt("qckpt-guest: disk vda counter=%ld", counter);
	struct run r = restore(vm, "disks", NULL);

	if (r.status != 0)
		fail_msg("%s", r.err);
	assert_non_null(strstr(r.err, "holds no memory: the VM boots fresh on its disks"));
	assert_true(wait_tick(vm, life, BOOT_MS) > 0);
	assert_true(life_printed(vm, life, "qckpt-guest: boot"));
	assert_true(life_printed(vm, life, line));
	free(line);
	run_free(&r);
	json_decref(a);
	rvm_kill_all();
}

static void test_no_relaunch_then_run_picks_up_the_restore(void **state)
{
	struct rvm *vm = rvm_start("norelaunch", 1, 128);
	json_t *a = checkpoint_ok(vm->name, save_mode(), "later", NULL), *st;
	struct run r = restore(vm, "later", "--no-relaunch");
	long counter = frozen_counter(a), tick;
	int life;

	if (r.status != 0)
		fail_msg("%s", r.err);
	assert_non_null(strstr(r.out, "the next 'qckpt run"));
	run_free(&r);
	/* the old QEMU is gone, nothing runs, the restore is pending */
	assert_int_equal(vm_pid(vm), -1);
	st = vm_json(vm);
	assert_string_equal(jstr(json_object_get(st, "PendingRestore"), "CheckpointId"), jstr(a, "Id"));
	json_decref(st);
	/* a plain `qckpt run` (systemd, a script) starts from it */
	life = vm->lives + 1;
	spawn_run(vm);
	tick = wait_tick(vm, life, WAIT_MS);
	assert_true(tick == counter || tick == counter + 1);
	assert_false(life_printed(vm, life, "qckpt-guest: boot"));
	/* and clears it: the next QEMU boots normally on its disks */
	st = vm_json(vm);
	assert_null(json_object_get(st, "PendingRestore"));
	assert_string_equal(jstr(st, "CurrentCheckpointId"), jstr(a, "Id"));
	json_decref(st);
	json_decref(a);
	rvm_kill_all();
}

/* Change the byte in the middle of PATH, a file of BYTES bytes (a hole
 * there becomes data: a change all the same). */
static void damage(const char *path, long long bytes)
{
	int fd = open(path, O_RDWR);
	unsigned char c;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, bytes / 2), 1);
	c ^= 0x55;
	assert_int_equal(pwrite(fd, &c, 1, bytes / 2), 1);
	close(fd);
}

/* Checked before the old QEMU is let go: the VM runs on, vm.json
 * unchanged.  One changed byte is found by the checksum recorded with the
 * checkpoint (QEMU's load would take a changed RAM page as it is). */
static void test_restore_refuses_a_damaged_or_truncated_memory_file_or_a_missing_image(void **state)
{
	struct rvm *vm = rvm_start("refuse", 1, 128);
	json_t *a = checkpoint_ok(vm->name, save_mode(), "cut", NULL);
	json_t *b = checkpoint_ok(vm->name, save_mode(), "gone", NULL);
	json_t *c = checkpoint_ok(vm->name, save_mode(), "flip", NULL);
	const char *mem = jstr(json_object_get(a, "MemoryState"), "Path");
	const char *cmem = jstr(json_object_get(c, "MemoryState"), "Path");
	long pid = vm_pid(vm);
	char *before = fmt("%s/%s/vm.json", catalog_dir, vm->name), *text = read_file(before), *after;
	struct run r;

	assert_true(strncmp(jstr(json_object_get(c, "MemoryState"), "Checksum"), "xxh3-64:", 8) == 0);
	/* the modification time put back: the change time still moved */
	{
		struct stat st;
		struct timespec times[2];

		assert_int_equal(stat(cmem, &st), 0);
		times[0] = st.st_atim;
		times[1] = st.st_mtim;
		damage(cmem, json_integer_value(json_object_get(json_object_get(c, "MemoryState"), "Bytes")));
		assert_int_equal(utimensat(AT_FDCWD, cmem, times, 0), 0);
	}
	r = restore(vm, "flip", NULL);
	assert_int_equal(r.status, 1);
	if (strstr(r.err, "does not match the checksum") == NULL || strstr(r.err, cmem) == NULL)
		fail_msg("want the checksum's refusal naming %s: %s", cmem, r.err);
	run_free(&r);
	/* vm.json is the catalog's before: C is still where the VM grows from */
	after = read_file(before);
	assert_string_equal(after, text);
	free(after);
	assert_int_equal(vm_pid(vm), pid);

	assert_int_equal(truncate(mem, json_integer_value(json_object_get(json_object_get(a, "MemoryState"), "Bytes")) / 2), 0);
	r = restore(vm, "cut", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "cut short"));
	assert_non_null(strstr(r.err, mem));
	run_free(&r);
	/* B's frozen image is A's overlay: move it away */
	{
		char *img = fmt("%s", jstr(rec_disk(b, 0), "CheckpointImage"));
		char *moved = fmt("%s.moved", img);

		assert_int_equal(rename(img, moved), 0);
		r = restore(vm, "gone", NULL);
		assert_int_equal(r.status, 1);
		assert_non_null(strstr(r.err, "missing"));
		assert_non_null(strstr(r.err, img));
		run_free(&r);
		assert_int_equal(rename(moved, img), 0);
		free(img);
		free(moved);
	}
	assert_int_equal(vm_pid(vm), pid);
	after = read_file(before);
	assert_string_equal(after, text);
	assert_true(wait_tick(vm, 1, WAIT_MS) > 0);
	free(before);
	free(text);
	free(after);
	json_decref(a);
	json_decref(b);
	json_decref(c);
	rvm_kill_all();
}

/* Restore VM to REC (with OPT) and want WANT, not NOT, in what -v says;
 * the guest carries on from the checkpoint. */
static void restore_saying(struct rvm *vm, json_t *rec, const char *opt, const char *want,
			   const char *not)
{
	int life = vm->lives + 1;
	long counter = frozen_counter(rec), tick;
	struct run r = restore(vm, jstr(rec, "Id"), opt);

	if (r.status != 0 || strstr(r.err, want) == NULL || (not && strstr(r.err, not) != NULL))
		fail_msg("want exit 0 and '%s' (not '%s'): exit %d: %s", want, not ? not : "", r.status, r.err);
	run_free(&r);
	tick = wait_tick(vm, life, WAIT_MS);
	assert_true(tick == counter || tick == counter + 1);
}

/* A memory state with the stamp it was hashed with is not read again;
 * --verify reads it, and so does a restore of a file whose stamp moved
 * (here chmod: only the change time) and whose contents did not.  Each
 * restore brings the guest back to the checkpoint's counter. */
static void test_restore_reads_the_memory_state_again_only_when_its_stamp_moved(void **state)
{
	struct rvm *vm = rvm_start("stamp", 1, 128);
	json_t *a = checkpoint_ok(vm->name, save_mode(), "kept", NULL);
	json_t *mem = json_object_get(a, "MemoryState");
	const char *path = jstr(mem, "Path");
	json_t *stamp = json_object_get(mem, "ChecksumStamp");
	struct stat st;

	(void)state;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(json_integer_value(json_object_get(stamp, "Inode")), (json_int_t)st.st_ino);
	assert_int_equal(json_integer_value(json_object_get(stamp, "ChangeTimeNs")),
			 (json_int_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec);
	restore_saying(vm, a, NULL, "not read again", "matches its checksum");
	restore_saying(vm, a, "--verify", "matches its checksum", "not read again");
	assert_int_equal(chmod(path, st.st_mode & 0640), 0);
	restore_saying(vm, a, NULL, "matches its checksum", NULL);
	json_decref(a);
	rvm_kill_all();
}

/* VM NAME launched through a wrapper around QEMU (*WRAPPER) that, while
 * its marker (*MARKER, made later by touch()) exists, runs the shell line
 * MARKED instead: $q is QEMU, $m the marker, "$@" QEMU's arguments. */
static struct rvm *rvm_start_wrapped(const char *name, const char *marked, char **wrapper,
				     char **marker)
{
	const char *saved = qemu_bin;
	struct rvm *vm;
	FILE *f;

	*wrapper = fmt("%s/qemu-wrapper-%d", harness_tmpdir(), rvm_serial_no + 1);
	*marker = fmt("%s.marked", *wrapper);
	f = fopen(*wrapper, "w");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\nq='%s' m='%s'\nif [ -e \"$m\" ]; then %s; fi\nexec \"$q\" \"$@\"\n",
		qemu(), *marker, marked);
	fclose(f);
	chmod(*wrapper, 0755);
	qemu_bin = *wrapper;
	vm = rvm_start(name, 1, 128);
	qemu_bin = saved;
	return vm;
}

static void touch(const char *path)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fclose(f);
}

/* The restored QEMU dies before its memory is loaded: here it starts with
 * less RAM than the checkpoint (a wrapper adds -m), so QEMU rejects the
 * stream and exits mid-load, every time.  Nothing is recorded as restored,
 * the restore stays pending, and a second `qckpt restore` completes it. */
static void test_qemu_dying_during_the_restore_leaves_it_pending_and_restorable(void **state)
{
	char *wrapper, *marker;
	struct rvm *vm = rvm_start_wrapped("dying", "exec \"$q\" \"$@\" -m 64", &wrapper, &marker);
	json_t *a, *st;
	struct run r;
	char *current;
	int life;

	a = checkpoint_ok(vm->name, save_mode(), "again", NULL);
	st = vm_json(vm);
	current = xstrdup_or_null(jstr(st, "CurrentCheckpointId"));
	json_decref(st);
	touch(marker);
	/* QEMU 10.0.2 with direct-io does not fail such a load, it hangs:
	 * qckpt's load deadline ends it (a minute by default) */
	setenv("QCKPT_RESTORE_LOAD_TIMEOUT", "10", 1);
	r = restore(vm, "again", NULL);
	unsetenv("QCKPT_RESTORE_LOAD_TIMEOUT");
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "run 'qckpt restore"));
	assert_non_null(strstr(r.err, "again' again"));
	run_free(&r);
	st = vm_json(vm);
	assert_non_null(json_object_get(st, "PendingRestore"));
	/* nothing recorded as restored: while the load is pending the VM is
	 * on no checkpoint (the one just taken was current before) */
	assert_non_null(current);
	assert_null(jstr(st, "CurrentCheckpointId"));
	free(current);
	json_decref(st);
	unlink(marker);
	life = vm->lives + 1;
	(void)life;
	restore_ok(vm, a, "again");
	json_decref(a);
	free(wrapper);
	free(marker);
	rvm_kill_all();
}

/* The pre-started QEMU fails after it has connected to the restore
 * monitor (the old QEMU already told to quit): here a wrapper adds a
 * device QEMU does not know, once.  The restore starts it again, one
 * after the other, and the guest carries on from the checkpoint. */
static void test_a_new_qemu_failing_as_it_starts_is_started_again(void **state)
{
	char *wrapper, *marker;
	struct rvm *vm = rvm_start_wrapped("refail",
		"rm -f \"$m\"; exec \"$q\" \"$@\" -device qckpt-no-such-device", &wrapper, &marker);
	json_t *a;
	struct run r;
	long counter, tick;
	int life;

	(void)state;
	a = checkpoint_ok(vm->name, save_mode(), "back", NULL);
	counter = frozen_counter(a);
	touch(marker);
	life = vm->lives + 1;
	r = restore(vm, "back", NULL);
	if (r.status != 0)
		fail_msg("qckpt restore: exit %d: %s", r.status, r.err);
	if (strstr(r.err, "failed as it started") == NULL && strstr(r.err, "could not start beside") == NULL)
		fail_msg("want the pre-start's failure said: %s", r.err);
	/* QEMU's own words are in the log the warning names */
	{
		char *log = fmt("%s/%s/qemu.log", catalog_dir, vm->name), *text;

		if (strstr(r.err, log) == NULL)
			fail_msg("want the log %s named: %s", log, r.err);
		text = read_file(log);
		assert_non_null(strstr(text, "qckpt-no-such-device"));
		free(text);
		free(log);
	}
	run_free(&r);
	assert_int_not_equal(access(marker, F_OK), 0);
	tick = wait_tick(vm, life + 1, WAIT_MS);
	if (tick != counter && tick != counter + 1)
		fail_msg("restored to counter %ld, printed tick %ld", counter, tick);
	assert_false(life_printed(vm, life + 1, "qckpt-guest: boot"));
	json_decref(a);
	free(wrapper);
	free(marker);
	rvm_kill_all();
}

/* Drop PATH from the page cache. */
static void uncache(const char *path)
{
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	close(fd);
}

/* QEMU >= 9.1 with mapped-ram: a memory state in the page cache (as one
 * just saved is, or one its checksum was just read from) is read through
 * it; one that is not, with direct-io (O_DIRECT would read from the disk
 * what RAM already holds): one whose checksum is not read (its stamp
 * unchanged, or an older qckpt's checkpoint without one).  All restore
 * the guest. */
static void test_restore_reads_a_cached_memory_state_through_the_page_cache(void **state)
{
	struct rvm *vm = rvm_start("cache", 1, 256);
	json_t *a = checkpoint_ok(vm->name, save_mode(), "warm", NULL), *rec;
	const char *path = jstr(json_object_get(a, "MemoryState"), "Path");
	char *recpath = fmt("%s/checkpoint.json", jstr(a, "Path"));

	restore_saying(vm, a, NULL, "from the page cache", "direct-io");
	/* out of the cache, its stamp unchanged: not read again, direct-io
	 * (the temp dir's file system has O_DIRECT) */
	uncache(path);
	restore_saying(vm, a, NULL, "direct-io", NULL);
	/* --verify: the checksum reads it back in, the load uses that */
	uncache(path);
	restore_saying(vm, a, "--verify", "from the page cache", "direct-io");
	/* no checksum to read: direct-io */
	rec = json_load_file(recpath, 0, NULL);
	assert_non_null(rec);
	assert_int_equal(json_object_del(json_object_get(rec, "MemoryState"), "Checksum"), 0);
	assert_int_equal(json_dump_file(rec, recpath, 0), 0);
	json_decref(rec);
	uncache(path);
	restore_saying(vm, a, NULL, "direct-io", NULL);
	free(recpath);
	json_decref(a);
	rvm_kill_all();
}

static void test_three_vms_restored_in_one_command(void **state)
{
	struct rvm *v[3];
	json_t *recs[3];
	char *names;
	int lives[3];
	struct run r;

	/* booted side by side: one after the other is too slow under TCG on
	 * a busy host */
	for (int i = 0; i < 3; i++)
		v[i] = rvm_launch("three", 1, 128);
	for (int i = 0; i < 3; i++)
		rvm_wait_boot(v[i]);
	for (int i = 0; i < 3; i++) {
		recs[i] = checkpoint_ok(v[i]->name, save_mode(), "lab", NULL);
		lives[i] = v[i]->lives + 1;
	}
	names = fmt("%s,%s,%s", v[0]->name, v[1]->name, v[2]->name);
	r = qckpt("restore", names, "lab", NULL);
	if (r.status != 0)
		fail_msg("%s", r.err);
	for (int i = 0; i < 3; i++) {
		long counter = frozen_counter(recs[i]);
		long tick = wait_tick(v[i], lives[i], WAIT_MS);

		if (tick != counter && tick != counter + 1)
			fail_msg("%s: counter %ld, tick %ld", v[i]->name, counter, tick);
		json_decref(recs[i]);
	}
	free(names);
	run_free(&r);
	rvm_kill_all();
}

static void test_save_current_checkpoints_the_state_before(void **state)
{
	struct rvm *vm = rvm_start("savecur", 1, 128);
	json_t *a = checkpoint_ok(vm->name, save_mode(), "base", NULL), *list, *saved = NULL;
	struct run r;
	long t, before;
	size_t i;
	json_t *rec;

	while ((t = wait_tick(vm, 1, WAIT_MS)) > 0 && t < frozen_counter(a) + 3)
		;
	before = t;
	r = restore(vm, "base", "--save-current");
	if (r.status != 0)
		fail_msg("%s", r.err);
	assert_non_null(strstr(r.err, "the current state is saved as checkpoint"));
	run_free(&r);
	r = qckpt("list", "--json", vm->name, NULL);
	list = json_lines(r.out);
	assert_int_equal(json_array_size(list), 2);
	json_array_foreach(list, i, rec)
		if (strcmp(jstr(rec, "Id"), jstr(a, "Id")) != 0)
			saved = rec;
	assert_non_null(saved);
	/* it holds the state from before the restore, later than base */
	assert_true(disk_read_counter(jstr(rec_disk(saved, 0), "CheckpointImage")) >= before);
	assert_true(wait_tick(vm, vm->lives, WAIT_MS) > 0);
	json_decref(list);
	run_free(&r);
	json_decref(a);
	rvm_kill_all();
}

static void test_the_same_checkpoint_restores_twenty_times(void **state)
{
	struct rvm *vm = rvm_start("twenty", 1, 128);
	json_t *a = checkpoint_ok(vm->name, save_mode(), "again", NULL);
	const char *frozen = jstr(rec_disk(a, 0), "CheckpointImage");
	struct stat st0, st1;

	assert_int_equal(stat(frozen, &st0), 0);
	for (int i = 0; i < 20; i++)
		restore_ok(vm, a, "again");
	/* the frozen image was never written */
	assert_int_equal(stat(frozen, &st1), 0);
	assert_int_equal(st0.st_mtime, st1.st_mtime);
	assert_int_equal(st0.st_size, st1.st_size);
	json_decref(a);
	rvm_kill_all();
}

/* A VM started by hand (not through `qckpt run`): refused, nothing made,
 * and the commands to do it by hand are printed. */
static void test_vm_without_recorded_command_line_gets_the_commands_instead(void **state)
{
	struct hvm_opts o = { .name = "byhand", .ndisks = 1, .disk_format = HVM_RAW, .mem_mib = 128 };
	struct hvm *vm = hvm_start(&o);
	FILE *f;
	json_t *a;
	struct run r;
	char *line, *p, *overlay;

	assert_non_null(vm);
	assert_true(hvm_wait_tick(vm, BOOT_MS) > 0);
	f = fopen(registry_path, "a");
	fprintf(f, "%s unix:%s dir=%s\n", hvm_name(vm), hvm_qmp_path(vm), catalog_dir);
	fclose(f);
	a = checkpoint_ok(hvm_name(vm), "paused", "manual", NULL);
	r = qckpt("restore", hvm_name(vm), "manual", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "not launched through 'qckpt run'"));
	line = fmt("qemu-img create -f qcow2 -b %s -F raw ", jstr(rec_disk(a, 0), "CheckpointImage"));
	p = strstr(r.out, line);
	assert_non_null(p);
	overlay = strndup(p + strlen(line), strcspn(p + strlen(line), "\n"));
	/* the command runs the disk on that overlay and loads the memory */
	assert_non_null(strstr(r.out, overlay));
	assert_non_null(strstr(strstr(r.out, line) + strlen(line), overlay));
	assert_non_null(strstr(r.out, jstr(json_object_get(a, "MemoryState"), "Path")));
	assert_non_null(strstr(r.out, "-incoming"));
	/* nothing was made, the VM runs on */
	assert_int_not_equal(access(overlay, F_OK), 0);
	assert_true(hvm_wait_tick(vm, WAIT_MS) > 0);
	free(overlay);
	free(line);
	run_free(&r);
	json_decref(a);
	hvm_free(vm);
}

/* A running VM whose command can run twice: the new QEMU starts, and
 * loads, while the old one still runs; the old guest is stopped, the new
 * one goes on from the checkpoint, and the VM's QMP socket is the new
 * QEMU's when the command returns.  A restore of that restored VM (its
 * socket was bound under another name) does the same. */
static void test_restore_starts_the_new_qemu_beside_the_old_one(void **state)
{
	struct rvm *vm = rvm_start("beside", 1, 128);
	json_t *a = checkpoint_ok(vm->name, save_mode(), "here", NULL), *st, *cl;
	long counter = frozen_counter(a), tick, pid;
	int life = vm->lives + 1;
	char *status;
	struct run r;

	vm->max_open_lives = vm->open_lives;
	r = restore(vm, "here", "--progress=json");
	if (r.status != 0)
		fail_msg("qckpt restore: exit %d: %s", r.status, r.err);
	assert_non_null(strstr(r.err, "starts beside the old one"));
	check_restore_progress(vm->name, r.err);
	run_free(&r);
	tick = wait_tick(vm, life, WAIT_MS);
	if (tick != counter && tick != counter + 1)
		fail_msg("restored to counter %ld, printed tick %ld", counter, tick);
	assert_false(life_printed(vm, life, "qckpt-guest: boot"));
	/* both QEMUs had the console open at once: the new one started
	 * before the old one quit */
	assert_true(vm->max_open_lives >= 2);
	/* the VM's socket answers, and it is the new QEMU */
	status = vm_status(vm);
	assert_string_equal(status, "running");
	free(status);
	pid = vm_pid(vm);
	assert_true(pid > 0);
	st = vm_json(vm);
	cl = json_object_get(st, "CommandLine");
	assert_null(json_object_get(st, "PrestartCommandLine"));
	assert_null(json_object_get(st, "PendingRestore"));
	assert_int_equal(json_integer_value(json_object_get(cl, "Pid")), pid);
	/* the name it was bound under is gone: renamed onto the VM's */
	assert_non_null(jstr(cl, "MonitorBoundAt"));
	assert_int_not_equal(access(jstr(cl, "MonitorBoundAt"), F_OK), 0);
	json_decref(st);
	restore_ok(vm, a, "here");
	assert_int_not_equal(vm_pid(vm), pid);
	json_decref(a);
	rvm_kill_all();
}

/* A restore killed (SIGKILL: no undo runs) once its pre-started QEMU has
 * connected, before the old one is quit, leaves that QEMU waiting
 * beside the old one, whose guest it had paused.
 * The next restore of the VM ends it (and its socket beside the VM's),
 * restores, and the guest carries on from the checkpoint. */
static void test_a_restore_killed_in_its_pre_start_is_cleaned_up_by_the_next(void **state)
{
	struct rvm *vm = rvm_start("orphan", 1, 128);
	json_t *a = checkpoint_ok(vm->name, save_mode(), "here", NULL), *st, *pre;
	char *argv[] = { (char *)harness_qckpt(), "restore", vm->name, "here", NULL };
	long old_pid = vm_pid(vm);
	char *status;
	struct child ch;
	struct child_said stopped = { &ch, "test: stopped at restore-handover" };
	long orphan;
	char *aside;

	setenv("QCKPT_TEST_STOP_AT", "restore-handover", 1);
	child_start(&ch, argv);
	unsetenv("QCKPT_TEST_STOP_AT");
	assert_int_equal(harness_run_until(child_said, &stopped, WAIT_MS), 0);
	assert_false(ch.exited);
	uv_process_kill(&ch.proc, SIGKILL);
	assert_int_equal(harness_run_until(child_done, &ch, WAIT_MS), 0);
	st = vm_json(vm);
	pre = json_deep_copy(json_object_get(st, "PrestartCommandLine"));
	json_decref(st);
	assert_non_null(pre);
	orphan = (long)json_integer_value(json_object_get(pre, "Pid"));
	aside = xstrdup(jstr(pre, "MonitorBoundAt"));
	assert_true(cmdline_launch_is_running(pre));
	assert_int_equal(access(aside, F_OK), 0);
	/* the old QEMU is still there, its guest paused (stopped while the
	 * new QEMU started; only the undo, never run, would continue it) */
	status = vm_status(vm);
	assert_string_equal(status, "paused");
	free(status);
	assert_int_equal(vm_pid(vm), old_pid);
	restore_ok(vm, a, "here");
	assert_false(cmdline_launch_is_running(pre));
	assert_int_not_equal(vm_pid(vm), orphan);
	assert_int_not_equal(access(aside, F_OK), 0);
	free(aside);
	json_decref(pre);
	json_decref(a);
	rvm_kill_all();
}

/* A TCP port on the loopback that nobody listens on now. */
static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static bool port_answers(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;

	if (fd >= 0)
		close(fd);
	return ok;
}

/* Restore VM to REC: the old QEMU quits before the new one starts, for
 * the reason WHY; the guest carries on from the checkpoint. */
static void restore_one_after_the_other(struct rvm *vm, json_t *rec, const char *why)
{
	int life = vm->lives + 1;
	long counter = frozen_counter(rec), tick;
	struct run r = restore(vm, jstr(rec, "Id"), NULL);

	if (r.status != 0)
		fail_msg("qckpt restore %s: exit %d: %s", vm->name, r.status, r.err);
	assert_non_null(strstr(r.err, "the old QEMU quits before the new one starts"));
	if (strstr(r.err, why) == NULL)
		fail_msg("want '%s' in: %s", why, r.err);
	assert_null(strstr(r.err, "starts beside the old one"));
	run_free(&r);
	tick = wait_tick(vm, life, WAIT_MS);
	if (tick != counter && tick != counter + 1)
		fail_msg("%s restored to counter %ld, printed tick %ld", vm->name, counter, tick);
	assert_false(life_printed(vm, life, "qckpt-guest: boot"));
}

/* A -pidfile or a forwarded host port cannot be held by two QEMUs: such a
 * VM is restored one after the other, and the new QEMU has them. */
static void test_a_pidfile_or_a_hostfwd_port_restores_one_after_the_other(void **state)
{
	char *pidfile = fmt("%s/seq%d.pid", harness_tmpdir(), rvm_serial_no + 1);
	int port = free_port();
	char *fwd = fmt("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:22", port);
	const char *pid_args[] = { "-pidfile", pidfile, NULL };
	const char *net_args[] = { "-netdev", fwd, "-device", "virtio-net-pci,netdev=n0,romfile=", NULL };
	struct rvm *pv, *nv;
	json_t *a, *b;
	char *text;

	rvm_qemu_args = pid_args;
	pv = rvm_launch("seqpid", 1, 128);
	rvm_qemu_args = net_args;
	nv = rvm_launch("seqnet", 1, 128);
	rvm_qemu_args = NULL;
	rvm_wait_boot(pv);
	rvm_wait_boot(nv);
	a = checkpoint_ok(pv->name, save_mode(), "p", NULL);
	b = checkpoint_ok(nv->name, save_mode(), "n", NULL);
	restore_one_after_the_other(pv, a, "-pidfile");
	text = read_file(pidfile);
	assert_non_null(text);
	assert_int_equal(strtol(text, NULL, 10), vm_pid(pv));
	free(text);
	restore_one_after_the_other(nv, b, "hostfwd");
	assert_true(port_answers(port));
	json_decref(a);
	json_decref(b);
	free(fwd);
	free(pidfile);
	rvm_kill_all();
}

/* ---- groups -------------------------------------------------------------- */

static int setup(void **state)
{
	if (group_files_setup("test-restore", &registry_path, &catalog_dir) < 0)
		return -1;
	rvm_catalog_dir = catalog_dir;
	rvm_qemu_bin = &qemu_bin;
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
	return 0;
}

#define T(f) cmocka_unit_test_teardown(f, teardown_test)

int main(void)
{
	int rc = harness_init(), failed = 0;
	const struct CMUnitTest tests[] = {
		T(test_restore_by_name_id_and_id_prefix),
		T(test_restore_refuses_an_ambiguous_or_unknown_name_listing_candidates),
		T(test_restore_walks_a_tree_of_checkpoints),
		T(test_paused_checkpoint_comes_back_paused),
		T(test_disk_only_checkpoint_boots_fresh_on_its_disks),
		T(test_no_relaunch_then_run_picks_up_the_restore),
		T(test_restore_refuses_a_damaged_or_truncated_memory_file_or_a_missing_image),
		T(test_restore_reads_the_memory_state_again_only_when_its_stamp_moved),
		T(test_qemu_dying_during_the_restore_leaves_it_pending_and_restorable),
		T(test_a_new_qemu_failing_as_it_starts_is_started_again),
		T(test_three_vms_restored_in_one_command),
		T(test_save_current_checkpoints_the_state_before),
		T(test_vm_without_recorded_command_line_gets_the_commands_instead),
		T(test_restore_starts_the_new_qemu_beside_the_old_one),
		T(test_a_restore_killed_in_its_pre_start_is_cleaned_up_by_the_next),
		T(test_a_pidfile_or_a_hostfwd_port_restores_one_after_the_other),
	};
	const struct CMUnitTest tests_qemu10[] = {
		T(test_restore_by_name_id_and_id_prefix),
		T(test_restore_walks_a_tree_of_checkpoints),
		T(test_paused_checkpoint_comes_back_paused),
		T(test_no_relaunch_then_run_picks_up_the_restore),
		T(test_qemu_dying_during_the_restore_leaves_it_pending_and_restorable),
		T(test_a_new_qemu_failing_as_it_starts_is_started_again),
		T(test_three_vms_restored_in_one_command),
		T(test_the_same_checkpoint_restores_twenty_times),
		T(test_restore_reads_a_cached_memory_state_through_the_page_cache),
		T(test_restore_starts_the_new_qemu_beside_the_old_one),
		T(test_a_pidfile_or_a_hostfwd_port_restores_one_after_the_other),
	};

	if (rc != 0)
		return rc;
	if (harness_qckpt() == NULL) {
		fprintf(stderr, "QCKPT_BIN not set: run through make check\n");
		return HARNESS_SKIP;
	}
	if (getenv("QCKPT_TEST_FILTER"))
		cmocka_set_test_filter(getenv("QCKPT_TEST_FILTER"));
	/* Two programs of this one source (Makefile.am): test-restore and
	 * test-restore-qemu10. */
	if (harness_group("default"))
		failed += cmocka_run_group_tests_name("qckpt restore", tests, setup, teardown);
	if (harness_group("qemu10") && harness_want_qemu10())
		failed += cmocka_run_group_tests_name("qckpt restore on QEMU 10",
						      tests_qemu10, setup_qemu10, teardown);
	return failed ? 1 : 0;
}
