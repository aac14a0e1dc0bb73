/*
 * test-remove.c: `qckpt remove` against real QEMU running the Linux test
 * guest, on QEMU 7.2 and 10.0.
 *
 * The VMs are rvm.h's (launched through `qckpt run`, serial
 * console on a socket of this test that every QEMU of the VM connects to,
 * lines kept per QEMU "life"), because a removal is proven by restoring
 * what remains.  Around each removal the test keeps a raw copy of what
 * every remaining checkpoint's frozen image reads (qemu-img convert) and
 * compares it after (qemu-img compare): a removal must leave every view
 * byte for byte as it was, while the running guest keeps ticking on its
 * (shorter) chain.  On 7.2 checkpoints are taken in paused mode (7.2's
 * live pre-copy under TCG can lose pages: issue 7).
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
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "catalog.h"
#include "harness.h"
#include "rvm.h"
#include "testutil.h"
#include "util.h"

#define WAIT_MS 30000u

static char *registry_path, *catalog_dir;
/* An --as-job process the test stopped: killed by the teardown if the
 * test fails before letting it go on. */
static pid_t stopped_job;
static const char *qemu_bin; /* NULL: QEMU 7.2 (harness_qemu()) */


/* ---- checks ----------------------------------------------------------- */

static struct run restore(struct rvm *vm, const char *what, const char *opt)
{
	struct run r = opt ? qckpt("restore", "-v", opt, vm->name, what, NULL)
			   : qckpt("restore", "-v", vm->name, what, NULL);

	return r;
}

static void restore_counter_ok(struct rvm *vm, json_t *rec, const char *what, long counter);

/* Restore VM to REC (named by WHAT): it succeeds, a new QEMU runs the
 * guest, which carries on from the checkpoint's counter and never boots. */
static void restore_ok(struct rvm *vm, json_t *rec, const char *what)
{
	restore_counter_ok(vm, rec, what, frozen_counter(rec));
}

/* The same, with the counter read before (while QEMU may lock the image). */
static void restore_counter_ok(struct rvm *vm, json_t *rec, const char *what, long counter)
{
	int life = vm->lives + 1;
	long tick;
	struct run r = restore(vm, what, NULL);
	json_t *st;

	if (r.status != 0)
		fail_msg("qckpt restore %s %s: exit %d: %s", vm->name, what, r.status, r.err);
	assert_non_null(strstr(r.err, "restored to"));
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

static size_t count_lines(const char *text)
{
	size_t n = 0;

	for (; text && *text; text++)
		n += *text == '\n';
	return n;
}

/* ---- views of the remaining checkpoints --------------------------------- */

static json_t *records(struct rvm *vm)
{
	struct run r = qckpt("list", "--json", vm->name, NULL);
	json_t *list;

	if (r.status != 0)
		fail_msg("qckpt list %s: %s", vm->name, r.err);
	list = json_lines(r.out);
	run_free(&r);
	return list;
}

static size_t count_records(struct rvm *vm)
{
	json_t *list = records(vm);
	size_t n = json_array_size(list);

	json_decref(list);
	return n;
}

static json_t *record_by_id(struct rvm *vm, const char *id)
{
	json_t *list = records(vm), *x, *found = NULL;
	size_t i;

	json_array_foreach(list, i, x)
		if (strcmp(jstr(x, "Id"), id) == 0)
			found = json_incref(x);
	json_decref(list);
	return found;
}

static char *view_path(const char *id)
{
	return fmt("%s/view-%s.raw", harness_tmpdir(), id);
}

/* A raw copy of what every checkpoint's frozen image reads now. */
static void keep_views(struct rvm *vm)
{
	json_t *list = records(vm), *x;
	size_t i;

	json_array_foreach(list, i, x) {
		char *out = view_path(jstr(x, "Id"));
		char *cmd = fmt("%s convert -U -O raw '%s' '%s'", harness_qemu_img(),
				jstr(rec_disk(x, 0), "CheckpointImage"), out);
		struct run r = shell(cmd);

		if (r.status != 0)
			fail_msg("%s: %s", cmd, r.err);
		run_free(&r);
		free(cmd);
		free(out);
	}
	json_decref(list);
}

/* Every remaining checkpoint reads what it read before the removal (those
 * made since keep_views() aside). */
static void views_unchanged(struct rvm *vm)
{
	json_t *list = records(vm), *x;
	size_t i;

	json_array_foreach(list, i, x) {
		char *kept = view_path(jstr(x, "Id"));
		char *cmd;

		if (access(kept, F_OK) < 0) {
			free(kept);
			continue;
		}
		cmd = fmt("%s compare -U -q '%s' '%s'", harness_qemu_img(), kept,
				jstr(rec_disk(x, 0), "CheckpointImage"));
		struct run r = shell(cmd);

		if (r.status != 0)
			fail_msg("checkpoint %s no longer reads as before (%s): exit %d %s%s",
				 jstr(x, "Name"), cmd, r.status, r.out, r.err);
		run_free(&r);
		free(cmd);
		free(kept);
	}
	json_decref(list);
}

static size_t chain_length(struct rvm *vm)
{
	json_t *st = vm_json(vm);
	size_t n = json_array_size(json_object_get(json_array_get(json_object_get(st, "Disks"), 0), "Chain"));

	json_decref(st);
	return n;
}

static char *active_image(struct rvm *vm)
{
	json_t *st = vm_json(vm);
	char *a = strdup(jstr(json_array_get(json_object_get(st, "Disks"), 0), "ActiveImage"));

	json_decref(st);
	return a;
}

/* The guest of the current life goes on ticking, and its disk (the
 * active image, through its chain) holds its latest count. */
static void guest_goes_on(struct rvm *vm)
{
	long t1 = wait_tick(vm, vm->lives, WAIT_MS), t2 = wait_tick(vm, vm->lives, WAIT_MS);
	char *active = active_image(vm);
	long c = disk_read_counter(active);

	if (t1 <= 0 || t2 <= t1)
		fail_msg("%s: the guest stopped ticking after the removal (%ld, %ld)", vm->name, t1, t2);
	if (c < t2)
		fail_msg("%s: its disk %s holds counter %ld, the guest printed tick %ld", vm->name, active, c, t2);
	free(active);
}

static void remove_ok(struct rvm *vm, const char *what, const char *opt)
{
	struct run r = opt ? qckpt("remove", "-v", opt, vm->name, what, NULL)
			   : qckpt("remove", "-v", vm->name, what, NULL);
	char *journal = fmt("%s/%s/remove-journal.json", catalog_dir, vm->name);

	if (r.status != 0)
		fail_msg("qckpt remove %s %s: exit %d: %s", vm->name, what, r.status, r.err);
	assert_non_null(strstr(r.err, "removed"));
	assert_int_equal(access(journal, F_OK), -1);
	free(journal);
	run_free(&r);
}

static void ticks(struct rvm *vm, int n)
{
	while (n-- > 0)
		assert_true(wait_tick(vm, vm->lives, WAIT_MS) > 0);
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* ---- tests ------------------------------------------------------------------ */

/*
 *   O - A - B - C            (left behind by the restore of A)
 *        `- D - E - Now
 * B: a middle node off the running branch (qemu-img commit while the VM
 * runs); D: a middle node of the running chain (block-commit); E: the
 * newest, the VM's parent (active commit and pivot); A: a node with two
 * children (block-stream into the running one, qemu-img rebase of the
 * other); O: the oldest, now under two branches on the original image,
 * which stays.  Each leaves every other checkpoint reading as before.
 */
static void test_remove_middle_newest_two_children_and_oldest(void **state)
{
	struct rvm *vm = rvm_start("tree", 1, 128);
	json_t *o, *a, *b, *c, *d, *e, *now;
	size_t len;
	char *gone, *active;

	o = checkpoint_ok(vm->name, save_mode(), "O", NULL);
	ticks(vm, 1);
	a = checkpoint_ok(vm->name, save_mode(), "A", NULL);
	ticks(vm, 2);
	b = checkpoint_ok(vm->name, save_mode(), "B", NULL);
	ticks(vm, 2);
	c = checkpoint_ok(vm->name, save_mode(), "C", NULL);
	restore_ok(vm, a, "A");
	ticks(vm, 2);
	d = checkpoint_ok(vm->name, save_mode(), "D", NULL);
	ticks(vm, 2);
	e = checkpoint_ok(vm->name, save_mode(), "E", NULL);

	/* B: C's frozen image comes down into B's, C then names that */
	keep_views(vm);
	gone = strdup(jstr(rec_disk(c, 0), "CheckpointImage"));
	remove_ok(vm, "B", NULL);
	views_unchanged(vm);
	assert_null(record_by_id(vm, jstr(b, "Id")));
	now = record_by_id(vm, jstr(c, "Id"));
	assert_string_equal(jstr(rec_disk(now, 0), "CheckpointImage"), jstr(rec_disk(b, 0), "CheckpointImage"));
	assert_string_equal(jstr(now, "ParentCheckpointId"), jstr(a, "Id"));
	assert_false(exists(gone));
	assert_false(exists(jstr(json_object_get(b, "MemoryState"), "Path")));
	json_decref(now);
	free(gone);
	guest_goes_on(vm);

	/* D: in the chain QEMU runs on */
	len = chain_length(vm);
	remove_ok(vm, "D", NULL);
	views_unchanged(vm);
	assert_int_equal(chain_length(vm), len - 1);
	now = record_by_id(vm, jstr(e, "Id"));
	assert_string_equal(jstr(now, "ParentCheckpointId"), jstr(a, "Id"));
	json_decref(now);
	guest_goes_on(vm);

	/* E, the newest: the guest now writes to E's frozen image */
	now = record_by_id(vm, jstr(e, "Id"));
	gone = active_image(vm);
	remove_ok(vm, "E", NULL);
	views_unchanged(vm);
	active = active_image(vm);
	assert_string_equal(active, jstr(rec_disk(now, 0), "CheckpointImage"));
	assert_false(exists(gone));
	assert_int_equal(chain_length(vm), len - 2);
	json_decref(now);
	free(active);
	free(gone);
	guest_goes_on(vm);
	{
		json_t *st = vm_json(vm);

		assert_string_equal(jstr(st, "CurrentCheckpointId"), jstr(a, "Id"));
		json_decref(st);
	}

	/* A, with two children: C's branch and the running one */
	gone = strdup(jstr(rec_disk(a, 0), "CheckpointImage"));
	remove_ok(vm, "A", NULL);
	views_unchanged(vm);
	assert_false(exists(gone));
	assert_int_equal(chain_length(vm), len - 3);
	free(gone);
	guest_goes_on(vm);

	/* O, the oldest: its image is the disk's original, which stays */
	remove_ok(vm, "O", NULL);
	views_unchanged(vm);
	assert_true(exists(jstr(rec_disk(o, 0), "CheckpointImage")));
	guest_goes_on(vm);
	assert_int_equal(count_records(vm), 1);
	now = record_by_id(vm, jstr(c, "Id"));
	assert_true(json_is_null(json_object_get(now, "ParentCheckpointId")));
	restore_ok(vm, now, "C");
	json_decref(now);
	json_decref(o);
	json_decref(a);
	json_decref(b);
	json_decref(c);
	json_decref(d);
	json_decref(e);
	rvm_kill_all();
}

/* A - B - C - Now, remove A with its children: nothing left, the VM runs
 * on as before, and checkpoints and restores again. */
static void test_remove_including_children_takes_the_subtree(void **state)
{
	struct rvm *vm = rvm_start("subtree", 1, 128);
	json_t *a = checkpoint_ok(vm->name, save_mode(), "A", NULL), *d;

	ticks(vm, 1);
	json_decref(checkpoint_ok(vm->name, save_mode(), "B", NULL));
	ticks(vm, 1);
	json_decref(checkpoint_ok(vm->name, save_mode(), "C", NULL));
	remove_ok(vm, "A", "--including-children");
	assert_int_equal(count_records(vm), 0);
	assert_int_equal(chain_length(vm), 1);
	guest_goes_on(vm);
	d = checkpoint_ok(vm->name, save_mode(), "D", NULL);
	ticks(vm, 2);
	restore_ok(vm, d, "D");
	json_decref(a);
	json_decref(d);
	rvm_kill_all();
}

/* --progress=json on stderr (qckpt(1) PROGRESS): every line a phase of
 * the removal's, "checking" first and "done" last, and the merge QEMU
 * does as "merging" with query-jobs' figures (done never over total,
 * figures in no other phase). */
static void check_remove_progress(const char *vm, const char *err)
{
	static const char *const phases[] = { "checking", "recording", "merging", "finishing", "done" };
	const char *first = NULL, *last = NULL;
	int merging = 0, figures = 0;

	const char *p = err;
	json_t *o;

	for (; (o = progress_next(&p, vm)) != NULL; json_decref(o)) {
		const char *phase = jstr(o, "Phase");
		size_t k = 0;

		while (k < 5 && strcmp(phases[k], phase) != 0)
			k++;
		if (k == 5)
			fail_msg("remove phase '%s' is none of the man page's: %s", phase, err);
		if (first == NULL)
			first = phases[k];
		last = phases[k];
		merging |= strcmp(phase, "merging") == 0;
		if (json_is_integer(json_object_get(o, "BytesDone"))) {
			assert_string_equal(phase, "merging");
			figures++;
		}
	}
	assert_non_null(first);
	assert_string_equal(first, "checking");
	assert_string_equal(last, "done");
	if (!merging || figures == 0)
		fail_msg("no \"merging\" line with QEMU's job figures: %s", err);
}

/* A - B - Now, B removed on the running VM (an active commit): its
 * progress as JSON lines, the guest going on, A still restoring. */
static void test_remove_progress_json_shows_the_merge_with_qemus_figures(void **state)
{
	struct rvm *vm = rvm_start("rmprog", 1, 128);
	json_t *a = checkpoint_ok(vm->name, save_mode(), "A", NULL);
	struct run r;

	ticks(vm, 1);
	json_decref(checkpoint_ok(vm->name, save_mode(), "B", NULL));
	ticks(vm, 1);
	r = qckpt("remove", "--progress=json", vm->name, "B", NULL);
	if (r.status != 0)
		fail_msg("qckpt remove --progress=json %s B: exit %d: %s", vm->name, r.status, r.err);
	assert_non_null(strstr(r.err, "removed 'B'"));
	check_remove_progress(vm->name, r.err);
	run_free(&r);
	guest_goes_on(vm);
	restore_ok(vm, a, "A");
	json_decref(a);
	rvm_kill_all();
}

static bool pid_gone(void *arg)
{
	return kill((pid_t)(intptr_t)arg, 0) < 0;
}

/* QEMU not running: qemu-img commits offline, and the VM starts again
 * from a remaining checkpoint. */
static void test_remove_on_a_stopped_vm_merges_offline(void **state)
{
	struct rvm *vm = rvm_start("stopped", 1, 128);
	json_t *a, *b, *c;
	long pid = vm_pid(vm);
	struct run r;

	a = checkpoint_ok(vm->name, save_mode(), "A", NULL);
	ticks(vm, 1);
	b = checkpoint_ok(vm->name, save_mode(), "B", NULL);
	ticks(vm, 1);
	c = checkpoint_ok(vm->name, save_mode(), "C", NULL);
	r = qckpt("qmp", vm->name, "quit", NULL);
	run_free(&r);
	assert_int_equal(harness_run_until(pid_gone, (void *)(intptr_t)pid, WAIT_MS), 0);
	keep_views(vm);
	remove_ok(vm, "B", NULL);
	views_unchanged(vm);
	remove_ok(vm, "C", NULL); /* the active layer, committed offline */
	views_unchanged(vm);
	assert_int_equal(chain_length(vm), 2);
	r = qckpt("disks", vm->name, NULL);
	if (r.status != 0)
		fail_msg("qckpt disks after an offline remove: %s", r.err);
	run_free(&r);
	restore_ok(vm, a, "A");
	json_decref(a);
	json_decref(b);
	json_decref(c);
	rvm_kill_all();
}

/* A paused guest stays paused; removing its oldest checkpoint commits the
 * next one into the original image.  QEMU 10 activates the inactive disks
 * for it (blockdev-set-active) and inactivates them again.  On 7.2 a paused checkpoint leaves the
 * disks inactive (postmigrate), which 7.2 cannot undo without resuming:
 * the remove says so and changes nothing; once resumed it works. */
static void test_remove_on_a_paused_vm(void **state)
{
	struct rvm *vm = rvm_start("paused", 1, 128);
	struct run r = qckpt("qmp", vm->name, "stop", NULL);
	json_t *p1, *p2, *now;
	char *st;

	run_free(&r);
	/* paused mode: the save completes a migration, which leaves the
	 * disks inactive (postmigrate) on every QEMU */
	p1 = checkpoint_ok(vm->name, "paused", "P1", NULL);
	p2 = checkpoint_ok(vm->name, "paused", "P2", NULL);
	keep_views(vm);
	st = vm_status(vm);
	assert_string_equal(st, "postmigrate");
	if (qemu_bin == NULL) {
		r = qckpt("remove", vm->name, "P1", NULL);
		assert_int_equal(r.status, 1);
		assert_non_null(strstr(r.err, "inactive"));
		assert_int_equal(count_lines(r.err), 1);
		run_free(&r);
		assert_int_equal(count_records(vm), 2);
		r = qckpt("qmp", vm->name, "cont", NULL);
		run_free(&r);
		r = qckpt("qmp", vm->name, "stop", NULL);
		run_free(&r);
		remove_ok(vm, "P1", NULL); /* the oldest: P2 comes down into the original image */
	} else {
		r = qckpt("remove", "-v", vm->name, "P1", NULL);
		if (r.status != 0)
			fail_msg("qckpt remove %s P1 (inactive disks): %s", vm->name, r.err);
		assert_non_null(strstr(r.err, "activating its block nodes"));
		run_free(&r);
	}
	free(st);
	views_unchanged(vm);
	st = vm_status(vm);
	assert_true(strcmp(st, "paused") == 0 || strcmp(st, "postmigrate") == 0);
	free(st);
	r = qckpt("qmp", vm->name, "cont", NULL);
	run_free(&r);
	guest_goes_on(vm);
	/* P2 was taken paused: it comes back paused, then counts on */
	now = record_by_id(vm, jstr(p2, "Id"));
	{
		int life = vm->lives + 1;
		long counter = frozen_counter(now), tick;

		r = restore(vm, "P2", NULL);
		if (r.status != 0)
			fail_msg("qckpt restore %s P2: %s", vm->name, r.err);
		run_free(&r);
		st = vm_status(vm);
		assert_string_equal(st, "paused");
		free(st);
		r = qckpt("qmp", vm->name, "cont", NULL);
		run_free(&r);
		tick = wait_tick(vm, life, WAIT_MS);
		if (tick != counter && tick != counter + 1)
			fail_msg("%s restored to P2 (counter %ld) printed tick %ld", vm->name, counter, tick);
	}
	json_decref(now);
	json_decref(p1);
	json_decref(p2);
	rvm_kill_all();
}

/* qckpt killed while QEMU merges: every checkpoint still reads as it did,
 * the journal is there, and the same remove run again finishes. */
static void test_remove_killed_mid_merge_finishes_when_run_again(void **state)
{
	struct rvm *vm = rvm_start("killed", 1, 128);
	json_t *a, *b, *c, *now;
	long counter;
	char *journal = fmt("%s/%s/remove-journal.json", catalog_dir, vm->name);
	char *argv[] = { (char *)harness_qckpt(), "remove", vm->name, "B", NULL };
	struct child ch;
	struct child_said stopped = { &ch, "test: stopped at job" };

	a = checkpoint_ok(vm->name, save_mode(), "A", NULL);
	ticks(vm, 1);
	b = checkpoint_ok(vm->name, save_mode(), "B", NULL);
	ticks(vm, 1);
	c = checkpoint_ok(vm->name, save_mode(), "C", NULL);
	counter = frozen_counter(c);
	keep_views(vm);
	setenv("QCKPT_TEST_REMOVE_STOP_AT", "job", 1);
	child_start(&ch, argv);
	unsetenv("QCKPT_TEST_REMOVE_STOP_AT");
	assert_int_equal(harness_run_until(child_said, &stopped, WAIT_MS), 0);
	assert_false(ch.exited);
	uv_process_kill(&ch.proc, SIGKILL);
	assert_int_equal(harness_run_until(child_done, &ch, WAIT_MS), 0);
	assert_true(exists(journal));
	/* C restores now, before the remove is finished (QEMU may hold the
	 * merged layer until its job is dismissed: the restore quits it) */
	now = record_by_id(vm, jstr(c, "Id"));
	restore_counter_ok(vm, now, "C", counter);
	json_decref(now);
	views_unchanged(vm);
	remove_ok(vm, "B", NULL);
	views_unchanged(vm);
	assert_int_equal(count_records(vm), 2);
	guest_goes_on(vm);
	restore_ok(vm, a, "A");
	free(journal);
	json_decref(a);
	json_decref(b);
	json_decref(c);
	rvm_kill_all();
}

static void test_remove_refuses_an_unknown_checkpoint_in_one_line(void **state)
{
	struct rvm *vm = rvm_start("unknown", 1, 128);
	json_t *a = checkpoint_ok(vm->name, "disk-only", "A", NULL);
	struct run r = qckpt("remove", vm->name, "nope", NULL);

	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, vm->name));
	assert_non_null(strstr(r.err, "no checkpoint 'nope'"));
	assert_int_equal(count_lines(r.err), 1);
	run_free(&r);
	r = qckpt("remove", "--whatif", vm->name, "A", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "What if: Performing operation \"Remove\""));
	run_free(&r);
	assert_int_equal(count_records(vm), 1);
	json_decref(a);
	rvm_kill_all();
}

/* Two VMs in one command, at once: each loses its own A, each VM's
 * active layer committed into its own frozen image. */
static void test_two_vms_in_one_command(void **state)
{
	struct rvm *v1 = rvm_launch("multi", 1, 128), *v2 = rvm_launch("multi", 1, 128);
	char *both = fmt("%s,%s", v1->name, v2->name);
	struct run r;

	rvm_wait_boot(v1);
	rvm_wait_boot(v2);
	json_decref(checkpoint_ok(v1->name, save_mode(), "A", NULL));
	json_decref(checkpoint_ok(v2->name, save_mode(), "A", NULL));
	r = qckpt("remove", both, "A", NULL);
	if (r.status != 0)
		fail_msg("qckpt remove %s A: %s", both, r.err);
	assert_non_null(strstr(r.err, v1->name));
	assert_non_null(strstr(r.err, v2->name));
	run_free(&r);
	assert_int_equal(count_records(v1), 0);
	assert_int_equal(count_records(v2), 0);
	assert_int_equal(chain_length(v1), 1);
	assert_int_equal(chain_length(v2), 1);
	guest_goes_on(v1);
	guest_goes_on(v2);
	free(both);
	rvm_kill_all();
}

/* `qckpt pin VM ID`: "Pinned": true in the record. */
static void pin(struct rvm *vm, json_t *rec)
{
	struct run r = qckpt("pin", vm->name, jstr(rec, "Id"), NULL);

	if (r.status != 0)
		fail_msg("qckpt pin %s %s: %s", vm->name, jstr(rec, "Id"), r.err);
	run_free(&r);
}

/* prune --keep 5 over seven, then checkpoint --keep 3: the oldest go
 * first, the pinned one and the newest (the VM's parent) stay, and what
 * stays restores. */
static void test_keep_3_over_ten_checkpoints_leaves_three_that_restore(void **state)
{
	struct rvm *vm = rvm_start("keep", 1, 128);
	json_t *recs[10], *list, *now;
	char name[16];
	char *mode = fmt("--mode=%s", save_mode());
	struct run r;

	for (int i = 0; i < 7; i++) {
		snprintf(name, sizeof name, "k%d", i + 1);
		recs[i] = checkpoint_ok(vm->name, save_mode(), name, NULL);
	}
	pin(vm, recs[0]);
	r = qckpt("prune", "--older-than", "3x", vm->name, NULL);
	assert_int_equal(r.status, 2);
	run_free(&r);
	r = qckpt("prune", "-v", "--keep", "5", vm->name, NULL);
	if (r.status != 0)
		fail_msg("qckpt prune: %s", r.err);
	run_free(&r);
	list = records(vm);
	assert_int_equal(json_array_size(list), 5);
	assert_string_equal(jstr(json_array_get(list, 0), "Name"), "k1");
	assert_string_equal(jstr(json_array_get(list, 1), "Name"), "k4");
	json_decref(list);
	for (int i = 7; i < 10; i++) {
		if (i == 9)
			keep_views(vm);
		snprintf(name, sizeof name, "k%d", i + 1);
		r = i < 9 ? qckpt("checkpoint", "--passthru", mode, vm->name, name, NULL)
			  : qckpt("checkpoint", "--passthru", mode, "--keep", "3", vm->name, name, NULL);
		if (r.status != 0)
			fail_msg("qckpt checkpoint %s: %s", name, r.err);
		list = json_lines(r.out);
		recs[i] = json_incref(json_array_get(list, 0));
		json_decref(list);
		run_free(&r);
	}
	list = records(vm);
	assert_int_equal(json_array_size(list), 3);
	assert_string_equal(jstr(json_array_get(list, 0), "Name"), "k1");
	assert_string_equal(jstr(json_array_get(list, 1), "Name"), "k9");
	assert_string_equal(jstr(json_array_get(list, 2), "Name"), "k10");
	json_decref(list);
	views_unchanged(vm);
	guest_goes_on(vm);
	now = record_by_id(vm, jstr(recs[8], "Id"));
	restore_ok(vm, now, "k9");
	json_decref(now);
	now = record_by_id(vm, jstr(recs[0], "Id"));
	restore_ok(vm, now, "k1");
	json_decref(now);
	for (int i = 0; i < 10; i++)
		json_decref(recs[i]);
	free(mode);
	rvm_kill_all();
}

/* ---- --older-than ----------------------------------------------------------- */

#define DAY_MS (24 * 3600 * 1000LL)

/* Make REC AGE_MS old, as if taken then: its CreationTime and
 * CreationEpochMs rewritten through the catalog's own writer. */
static void age_record(json_t *rec, int64_t age_ms)
{
	char *path = fmt("%s/checkpoint.json", jstr(rec, "Path"));
	json_t *r = json_load_file(path, 0, NULL);
	int64_t born = wall_ms() - age_ms;
	char when[40];

	assert_non_null(r);
	format_iso8601(born, when, sizeof when);
	json_object_set_new(r, "CreationTime", json_string(when));
	json_object_set_new(r, "CreationEpochMs", json_integer(born));
	assert_int_equal(catalog_write_record(jstr(rec, "Path"), r), 0);
	json_decref(r);
	free(path);
}

/* VM's checkpoints' names, oldest first, comma-separated. */
static char *names_of(struct rvm *vm)
{
	json_t *list = records(vm), *x;
	char *out = strdup(""), *next;
	size_t i;

	json_array_foreach(list, i, x) {
		next = fmt("%s%s%s", out, i ? "," : "", jstr(x, "Name"));
		free(out);
		out = next;
	}
	json_decref(list);
	return out;
}

/* Every checkpoint VM has restores, the guest carrying on from each. */
static void all_restore(struct rvm *vm)
{
	json_t *list = records(vm), *x;
	size_t i;

	json_array_foreach(list, i, x)
		restore_ok(vm, x, jstr(x, "Id"));
	json_decref(list);
}

/*
 * k1 .. k6 made 10, 9, 8, 7 and 2 days and an hour ago (their records
 * aged through the catalog's writer), k2 pinned, the VM restored to k4,
 * so that its parent is old too: prune --older-than 3d removes k1 and k3,
 * nothing else, every other checkpoint reads as before and restores.
 */
static void test_prune_older_than_removes_exactly_the_older_unpinned_checkpoints_the_vm_is_not_on(void **state)
{
	static const int64_t age[] = { 10 * DAY_MS, 9 * DAY_MS, 8 * DAY_MS, 7 * DAY_MS,
				       2 * DAY_MS, 3600 * 1000LL };
	struct rvm *vm = rvm_start("older", 1, 128);
	json_t *recs[6];
	char name[8], *names, *whatif;
	struct run r;

	for (int i = 0; i < 6; i++) {
		snprintf(name, sizeof name, "k%d", i + 1);
		recs[i] = checkpoint_ok(vm->name, save_mode(), name, NULL);
		age_record(recs[i], age[i]);
		ticks(vm, 1);
	}
	pin(vm, recs[1]);
	restore_ok(vm, recs[3], "k4");
	names = names_of(vm);
	assert_string_equal(names, "k1,k2,k3,k4,k5,k6");
	free(names);
	r = qckpt("prune", "--whatif", "--older-than", "3d", vm->name, NULL);
	whatif = fmt("What if: Performing operation \"Prune\" on target \"%s\".\n", vm->name);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, whatif);
	free(whatif);
	run_free(&r);
	keep_views(vm);
	r = qckpt("prune", "--older-than", "3d", vm->name, NULL);
	if (r.status != 0)
		fail_msg("qckpt prune --older-than 3d %s: exit %d: %s", vm->name, r.status, r.err);
	if (strstr(r.err, "removed 'k1', 'k3'\n") == NULL)
		fail_msg("prune --older-than 3d should remove k1 and k3 only: %s", r.err);
	run_free(&r);
	names = names_of(vm);
	assert_string_equal(names, "k2,k4,k5,k6");
	free(names);
	views_unchanged(vm);
	guest_goes_on(vm);
	all_restore(vm);
	for (int i = 0; i < 6; i++)
		json_decref(recs[i]);
	rvm_kill_all();
}

/* ---- --as-job, --confirm ------------------------------------------------------- */

struct file_wait {
	const char *path, *text;
};

static bool file_has(void *arg)
{
	struct file_wait *w = arg;
	FILE *f = fopen(w->path, "r");
	char buf[8192];
	size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;

	if (f != NULL)
		fclose(f);
	buf[n] = '\0';
	return strstr(buf, w->text) != NULL;
}

static void on_file_changed(uv_fs_event_t *h, const char *name, int events, int status)
{
	/* waking harness_run_until is all: file_has reads the file */
}

static void on_watch_closed(uv_handle_t *h)
{
	*(bool *)h->data = true;
}

static bool flag_set(void *arg)
{
	return *(bool *)arg;
}

/* Wait until the file PATH (which exists) holds TEXT: its changes wake the
 * loop (inotify), nothing polls. */
static void wait_file_has(const char *path, const char *text, unsigned timeout_ms)
{
	struct file_wait w = { path, text };
	uv_fs_event_t watch;
	bool closed = false;
	int rc;

	assert_int_equal(uv_fs_event_init(harness_loop(), &watch), 0);
	assert_int_equal(uv_fs_event_start(&watch, on_file_changed, path, 0), 0);
	rc = harness_run_until(file_has, &w, timeout_ms);
	watch.data = &closed;
	uv_close((uv_handle_t *)&watch, on_watch_closed);
	harness_run_until(flag_set, &closed, WAIT_MS);
	if (rc < 0)
		fail_msg("%s did not say '%s' within %u ms", path, text, timeout_ms);
}

static json_t *job_show(const char *id)
{
	struct run r = qckpt("job", "show", id, NULL);
	json_t *job = json_loads(r.out, 0, NULL);

	if (r.status != 0 || job == NULL)
		fail_msg("qckpt job show %s: exit %d: %s", id, r.status, r.err);
	run_free(&r);
	return job;
}

/*
 * remove --as-job returns a job id at once, and the job's own process
 * holds the VM's lock for the whole removal (stopped here mid-merge by
 * QCKPT_TEST_REMOVE_STOP_AT, after the command that started it exited):
 * a checkpoint of the VM meanwhile is refused naming the job.  Let go on,
 * `job wait` sees it Completed, `job show` says so, `job receive` gives
 * the removed record (--passthru); A restores, and the VM checkpoints again.
 */
static void test_remove_as_job_holds_the_vm_lock_until_job_wait_sees_it_completed(void **state)
{
	struct rvm *vm = rvm_start("rmjob", 1, 128);
	json_t *a = checkpoint_ok(vm->name, save_mode(), "A", NULL), *job;
	struct run r;
	char id[16], *errors, *expect, *names;
	long pid;

	ticks(vm, 1);
	json_decref(checkpoint_ok(vm->name, save_mode(), "B", NULL));
	ticks(vm, 1);
	setenv("QCKPT_TEST_REMOVE_STOP_AT", "job", 1);
	r = qckpt("remove", "--as-job", "--passthru", vm->name, "B", NULL);
	unsetenv("QCKPT_TEST_REMOVE_STOP_AT");
	job_started(&r, id, sizeof id);
	run_free(&r);
	errors = fmt("%s/%s/errors", getenv("QCKPT_JOBS_DIR"), id);
	wait_file_has(errors, "test: stopped at job", WAIT_MS);
	free(errors);
	job = job_show(id);
	assert_string_equal(jstr(job, "State"), "Running");
	pid = (long)json_integer_value(json_object_get(job, "Pid"));
	stopped_job = (pid_t)pid;
	json_decref(job);

	r = qckpt("checkpoint", "--mode=disk-only", vm->name, "C", NULL);
	expect = fmt("qckpt: %s: 'qckpt remove' (pid %ld, job %s) is changing this VM; wait for it or 'qckpt job wait %s', then run this again\n",
		     vm->name, pid, id, id);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.err, expect);
	free(expect);
	run_free(&r);
	/* no C; B's record went first, before the merge (the journal has it) */
	names = names_of(vm);
	assert_string_equal(names, "A");
	free(names);

	assert_int_equal(kill((pid_t)pid, SIGCONT), 0);
	stopped_job = 0;
	job_wait_completed(id, 120);
	job = job_show(id);
	assert_string_equal(jstr(job, "State"), "Completed");
	assert_int_equal(json_integer_value(json_object_get(job, "ExitStatus")), 0);
	json_decref(job);
	job = job_received_one(id);
	assert_string_equal(jstr(job, "Name"), "B");
	json_decref(job);
	assert_int_equal(count_records(vm), 1);
	guest_goes_on(vm);
	restore_ok(vm, a, "A");
	json_decref(checkpoint_ok(vm->name, "disk-only", "C", NULL));
	json_decref(a);
	rvm_kill_all();
}

/* `qckpt remove --confirm` on a terminal (a pty from script(1)), ANSWER
 * typed on it. */
static struct run remove_confirm(struct rvm *vm, const char *what, const char *answer)
{
	char *cmd = fmt("printf '%s\\n' | script -qec \"'%s' remove --confirm --progress=none %s %s\" /dev/null",
			answer, getenv("QCKPT_BIN"), vm->name, what);
	struct run r = shell(cmd);

	free(cmd);
	return r;
}

/* --confirm asks on the terminal which checkpoint of which VM it is about
 * to remove: No leaves it, Yes removes it; A still restores. */
static void test_remove_confirm_asks_on_the_terminal_and_removes_only_on_yes(void **state)
{
	struct rvm *vm = rvm_start("confirm", 1, 128);
	json_t *a = checkpoint_ok(vm->name, save_mode(), "A", NULL);
	char *prompt = fmt("Performing the operation \"Remove\" on target \"%s\" (checkpoint \"B\")", vm->name);
	struct run r;

	ticks(vm, 1);
	json_decref(checkpoint_ok(vm->name, save_mode(), "B", NULL));
	r = remove_confirm(vm, "B", "n");
	if (r.status != 0 || strstr(r.out, prompt) == NULL)
		fail_msg("remove --confirm, answered n: exit %d: %s", r.status, r.out);
	assert_null(strstr(r.out, "removed"));
	run_free(&r);
	assert_int_equal(count_records(vm), 2);
	r = remove_confirm(vm, "B", "y");
	if (r.status != 0 || strstr(r.out, prompt) == NULL || strstr(r.out, "removed 'B'") == NULL)
		fail_msg("remove --confirm, answered y: exit %d: %s", r.status, r.out);
	run_free(&r);
	assert_int_equal(count_records(vm), 1);
	guest_goes_on(vm);
	restore_ok(vm, a, "A");
	free(prompt);
	json_decref(a);
	rvm_kill_all();
}

/* ---- the VM's lock ---------------------------------------------------------------- */

/* Hold VM's lock as another program may (qckpt(1) FILES: the file and
 * flock are the contract), CONTENT written in it as a holder describes
 * itself.  The descriptor; close it to let go. */
static int hold_lock(struct rvm *vm, const char *content)
{
	char *path = fmt("%s/%s/.lock", catalog_dir, vm->name);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(pwrite(fd, content, strlen(content), 0), (ssize_t)strlen(content));
	free(path);
	return fd;
}

/* ERR has exactly one line about VM, and it says WHY. */
static void refused_once(const struct run *r, const char *vm, const char *why)
{
	char *prefix = fmt("qckpt: %s: ", vm);
	const char *p = strstr(r->err, prefix), *next = p ? strstr(p + 1, prefix) : NULL;
	char *line = p ? strndup(p, strcspn(p, "\n")) : NULL;

	if (r->status != 1 || line == NULL || next != NULL || strstr(line, why) == NULL)
		fail_msg("expected exit 1 and one line \"%s...%s\": exit %d: %s", prefix, why, r->status, r->err);
	free(line);
	free(prefix);
}

/*
 * While something else holds v1's lock, checkpoint, restore and remove of
 * v1,v2 fail for v1 at once, in one line naming the holder, and do v2
 * (remove as a job, which completes); pin too; list reads on.  A holder that wrote nothing (flock(1)) is named
 * by the file.  Once it lets go, the same commands go through on v1.
 */
static void test_a_held_vm_lock_refuses_the_commands_that_change_that_vm_only(void **state)
{
	struct rvm *v1 = rvm_launch("lock", 1, 128), *v2 = rvm_launch("lock", 1, 128);
	char *both = fmt("%s,%s", v1->name, v2->name), *mode = fmt("--mode=%s", save_mode());
	char *content = fmt("{\"Command\":\"prune\",\"Pid\":%ld}\n", (long)getpid());
	char *holder = fmt("'qckpt prune' (pid %ld) is changing this VM; wait for it, then run this again",
			   (long)getpid());
	json_t *a1, *lines;
	struct run r;
	char id[16];
	int fd, life;

	rvm_wait_boot(v1);
	rvm_wait_boot(v2);
	a1 = checkpoint_ok(v1->name, save_mode(), "A", NULL);
	json_decref(checkpoint_ok(v2->name, save_mode(), "A", NULL));
	ticks(v1, 1);
	ticks(v2, 1);
	fd = hold_lock(v1, content);

	r = qckpt("checkpoint", "--passthru", mode, both, "B", NULL);
	refused_once(&r, v1->name, holder);
	lines = json_lines(r.out);
	assert_int_equal(json_array_size(lines), 1);
	assert_string_equal(jstr(json_array_get(lines, 0), "VMName"), v2->name);
	json_decref(lines);
	run_free(&r);
	assert_int_equal(count_records(v1), 1);
	assert_int_equal(count_records(v2), 2);

	life = v2->lives + 1;
	r = qckpt("restore", both, "A", NULL);
	refused_once(&r, v1->name, holder);
	assert_non_null(strstr(r.err, "restored to 'A'"));
	run_free(&r);
	assert_true(wait_tick(v2, life, WAIT_MS) > 0);

	/* --as-job: v1 refused before the job starts (exit 1), v2's removal
	 * is the job's, which completes */
	r = qckpt("remove", "--as-job", both, "B", NULL);
	refused_once(&r, v1->name, holder);
	snprintf(id, sizeof id, "%.*s", (int)strcspn(r.out, "\n"), r.out);
	assert_true(atoi(id) > 0);
	run_free(&r);
	job_wait_completed(id, 120);
	assert_int_equal(count_records(v2), 1);

	r = qckpt("pin", v1->name, "A", NULL);
	refused_once(&r, v1->name, holder);
	run_free(&r);
	r = qckpt("list", v1->name, NULL);
	assert_int_equal(r.status, 0);
	run_free(&r);

	/* a holder that says nothing: the file is named */
	assert_int_equal(ftruncate(fd, 0), 0);
	r = qckpt("rename", v1->name, "A", "A2", NULL);
	refused_once(&r, v1->name, "another process holds its lock");
	run_free(&r);

	close(fd);
	json_decref(checkpoint_ok(v1->name, save_mode(), "B", NULL));
	restore_ok(v1, a1, "A");
	remove_ok(v1, "B", NULL);
	guest_goes_on(v1);
	assert_int_equal(count_records(v1), 1);
	json_decref(a1);
	free(both);
	free(mode);
	free(content);
	free(holder);
	rvm_kill_all();
}

/* ---- groups -------------------------------------------------------------- */

static int setup(void **state)
{
	if (group_files_setup("test-remove", &registry_path, &catalog_dir) < 0)
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
	if (stopped_job > 0)
		kill(stopped_job, SIGKILL);
	stopped_job = 0;
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
		T(test_remove_refuses_an_unknown_checkpoint_in_one_line),
		T(test_remove_middle_newest_two_children_and_oldest),
		T(test_remove_including_children_takes_the_subtree),
		T(test_remove_on_a_stopped_vm_merges_offline),
		T(test_remove_on_a_paused_vm),
		T(test_remove_killed_mid_merge_finishes_when_run_again),
		T(test_keep_3_over_ten_checkpoints_leaves_three_that_restore),
		T(test_two_vms_in_one_command),
		T(test_remove_progress_json_shows_the_merge_with_qemus_figures),
		T(test_prune_older_than_removes_exactly_the_older_unpinned_checkpoints_the_vm_is_not_on),
		T(test_remove_as_job_holds_the_vm_lock_until_job_wait_sees_it_completed),
		T(test_remove_confirm_asks_on_the_terminal_and_removes_only_on_yes),
		T(test_a_held_vm_lock_refuses_the_commands_that_change_that_vm_only),
	};
	const struct CMUnitTest tests_qemu10[] = {
		T(test_remove_middle_newest_two_children_and_oldest),
		T(test_remove_on_a_paused_vm),
		T(test_remove_killed_mid_merge_finishes_when_run_again),
		T(test_remove_progress_json_shows_the_merge_with_qemus_figures),
		T(test_prune_older_than_removes_exactly_the_older_unpinned_checkpoints_the_vm_is_not_on),
		T(test_remove_as_job_holds_the_vm_lock_until_job_wait_sees_it_completed),
	};

	if (rc != 0)
		return rc;
	if (harness_qckpt() == NULL) {
		fprintf(stderr, "QCKPT_BIN not set: run through make check\n");
		return HARNESS_SKIP;
	}
	if (getenv("QCKPT_TEST_FILTER"))
		cmocka_set_test_filter(getenv("QCKPT_TEST_FILTER"));
	/* Two programs of this one source (Makefile.am): test-remove and
	 * test-remove-qemu10. */
	if (harness_group("default"))
		failed += cmocka_run_group_tests_name("qckpt remove", tests, setup, teardown);
	if (harness_group("qemu10") && harness_want_qemu10())
		failed += cmocka_run_group_tests_name("qckpt remove on QEMU 10",
						      tests_qemu10, setup_qemu10, teardown);
	return failed ? 1 : 0;
}
