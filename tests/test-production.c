/*
 * test-production.c: production checkpoints (type=production and
 * production-only) against real QEMU running the Linux test guest with
 * Debian's qemu-ga, and against a scripted fake agent (tests/fakeqmp.c in
 * agent mode) for what a real agent will not do on demand: refuse a freeze,
 * never answer it, die before the thaw.
 *
 * The guest's file system disk (serial qckpt-fs, ext4) has a writer loop,
 * so a checkpoint image that e2fsck finds clean was taken frozen; the
 * writer going on afterwards shows the thaw happened.  Nothing sleeps:
 * every wait is for output or an event, with a timeout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "testutil.h"
#include "fakeqmp.h"
#include "qmp.h"

#define BOOT_MS 90000u
#define WAIT_MS 30000u

static const char *qemu_bin;
static int vm_serial;
static char *registry_path;
static char *catalog_dir;

static void registry_add(const char *name, const char *socket, const char *extra)
{
	FILE *f = fopen(registry_path, "a");

	assert_non_null(f);
	fprintf(f, "%s unix:%s dir=%s %s\n", name, socket, catalog_dir, extra);
	fclose(f);
}

/* The one JSON object qckpt printed with --passthru. */
static json_t *one_record(const char *out)
{
	json_t *r = json_loads(out ? out : "", JSON_DISABLE_EOF_CHECK, NULL);

	assert_non_null(r);
	return r;
}

static int count_lines(const char *text)
{
	int n = 0;

	for (; text && *text; text++)
		n += *text == '\n';
	return n;
}

/* Entries in the test's temp dir and in the VM's catalog directory: what a
 * failed checkpoint must leave exactly as it found. */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static int leftovers(const char *vm)
{
	char *cat = fmt("%s/%s", catalog_dir, vm);
	int n = count_entries(harness_tmpdir()) * 1000 + count_entries(cat);

	free(cat);
	return n;
}

static struct hvm *boot(struct hvm_opts o, const char *name)
{
	struct hvm *vm;

	o.name = name;
	o.qemu = qemu_bin;
	vm = hvm_start(&o);
	assert_non_null(vm);
	assert_true(hvm_wait_tick(vm, BOOT_MS) > 0);
	return vm;
}

/* Boot a guest with a counter disk, the ext4 disk and qemu-ga, and wait
 * until the agent runs and the file system is being written. */
static struct hvm *boot_with_agent(const char *base, bool agent)
{
	struct hvm_opts o = { .ndisks = 1, .fs_disk = true, .agent = agent,
			      .agent_port = !agent };
	char *name = fmt("%s%d", base, ++vm_serial);
	struct hvm *vm;

	o.name = name;
	o.qemu = qemu_bin;
	vm = hvm_start(&o);
	free(name);
	assert_non_null(vm);
	/* In the guest's order: mount, agent, then the ticks. */
	assert_true(hvm_wait_serial(vm, "qckpt-guest: fs mounted", BOOT_MS) >= 0);
	if (agent)
		assert_true(hvm_wait_serial(vm, "qckpt-guest: agent /dev/", WAIT_MS) >= 0);
	assert_true(hvm_wait_tick(vm, WAIT_MS) > 0);
	assert_true(hvm_wait_serial(vm, "qckpt-guest: fs 2", WAIT_MS) >= 0);
	return vm;
}

/* The guest is running and its fs writer goes on: nothing stayed frozen. */
static void assert_guest_runs_and_writes(struct hvm *vm)
{
	char *st = hvm_status(vm);

	assert_non_null(st);
	assert_string_equal(st, "running");
	free(st);
	hvm_consume_serial(vm);
	assert_true(hvm_wait_serial(vm, "qckpt-guest: fs ", WAIT_MS) >= 0);
	assert_true(hvm_wait_serial(vm, "qckpt-guest: fs ", WAIT_MS) >= 0);
	assert_true(hvm_wait_tick(vm, WAIT_MS) > 0);
}

/* ---- asking the agent ourselves (the library against real qemu-ga) ---- */

struct agent_query {
	qmp_client client;
	int connected, status, done, closed;
	char answer[64];
};

static void on_query_reply(qmp_client *c, int status, json_t *result,
			   const struct qmp_error *e, void *arg)
{
	struct agent_query *q = arg;

	q->status = status;
	snprintf(q->answer, sizeof q->answer, "%s",
		 json_is_string(result) ? json_string_value(result) : "?");
	q->done = 1;
}

static void on_query_connect(qmp_client *c, int status)
{
	struct agent_query *q = c->data;

	q->connected = 1;
	q->status = status;
	if (status == 0)
		assert_int_equal(qmp_client_execute(c, "guest-fsfreeze-status", NULL,
						    on_query_reply, q), 0);
	else
		q->done = 1;
}

static void on_query_closed(qmp_client *c)
{
	((struct agent_query *)c->data)->closed = 1;
}

static bool query_done(void *arg)
{
	return ((struct agent_query *)arg)->done;
}

static bool query_closed(void *arg)
{
	return ((struct agent_query *)arg)->closed;
}

static void assert_agent_says_thawed(struct hvm *vm)
{
	struct agent_query q = { 0 };

	assert_int_equal(qmp_client_init(harness_loop(), &q.client), 0);
	q.client.data = &q;
	assert_int_equal(qmp_client_connect_agent(&q.client, hvm_agent_path(vm), 10000,
						  on_query_connect), 0);
	assert_int_equal(harness_run_until(query_done, &q, 20000), 0);
	assert_int_equal(q.status, 0);
	assert_string_equal(q.answer, "thawed");
	qmp_client_close(&q.client, on_query_closed);
	assert_int_equal(harness_run_until(query_closed, &q, 5000), 0);
}

/* ---- with the real agent ------------------------------------------------ */

static void test_production_freezes_the_guest_around_a_disk_only_checkpoint(void **state)
{
	struct hvm *vm = boot_with_agent("prod", true);
	char *extra = fmt("agent=%s type=production", hvm_agent_path(vm));
	json_t *rec, *disks;
	struct run r;
	size_t stops_before;
	char *fsck_out = NULL;
	int fsck;

	registry_add(hvm_name(vm), hvm_qmp_path(vm), extra);
	hvm_consume_events(vm);
	stops_before = hvm_event_count(vm);
	r = qckpt("checkpoint", hvm_name(vm), "--passthru", "-v", NULL);
	if (r.status != 0)
		fprintf(stderr, "%s", r.err);
	assert_int_equal(r.status, 0);
	rec = one_record(r.out);
	assert_string_equal(jstr(rec, "CheckpointType"), "Production");
	assert_null(json_object_get(rec, "MemoryState"));
	assert_true(json_integer_value(json_object_get(rec, "FrozenFilesystems")) >= 1);
	assert_true(json_is_integer(json_object_get(rec, "FreezeMs")));
	assert_int_equal(json_integer_value(json_object_get(rec, "PauseMs")), 0);
	fprintf(stderr, "production on %s: frozen %lld file system(s), freeze request to thaw answer %lld ms, %lld ms in all\n",
		qemu_bin, (long long)json_integer_value(json_object_get(rec, "FrozenFilesystems")),
		(long long)json_integer_value(json_object_get(rec, "FreezeMs")),
		(long long)json_integer_value(json_object_get(rec, "DurationMs")));
	assert_non_null(strstr(r.err, "guest file systems frozen"));
	assert_non_null(strstr(r.err, "guest file systems thawed"));
	/* Both disks: the counter disk and the file system. */
	disks = json_object_get(rec, "Disks");
	assert_int_equal(json_array_size(disks), 2);
	assert_true(disk_read_counter(jstr(json_array_get(disks, 0), "CheckpointImage")) > 0);
	assert_string_equal(jstr(json_array_get(disks, 1), "CheckpointImage"), hvm_fs_disk_path(vm));
	/* Taken frozen: the file system image needs no journal replay, no fix. */
	fsck = disk_fsck(hvm_fs_disk_path(vm), &fsck_out);
	if (fsck != 0)
		fprintf(stderr, "e2fsck on the frozen image: %d\n%s", fsck, fsck_out);
	assert_int_equal(fsck, 0);
	free(fsck_out);
	/* The guest was never stopped: no STOP event on the observer. */
	for (size_t i = stops_before; i < hvm_event_count(vm); i++)
		assert_string_not_equal(hvm_event(vm, i)->name, "STOP");
	assert_guest_runs_and_writes(vm);
	assert_agent_says_thawed(vm);
	json_decref(rec);
	run_free(&r);
	free(extra);
	hvm_free(vm);
}

static void test_production_without_a_running_agent_falls_back_to_standard(void **state)
{
	struct hvm *vm = boot_with_agent("noga", false);
	char *extra = fmt("agent=%s type=production", hvm_agent_path(vm));
	json_t *rec;
	struct run r;

	registry_add(hvm_name(vm), hvm_qmp_path(vm), extra);
	setenv("QCKPT_AGENT_TIMEOUT_MS", "1500", 1);
	r = qckpt("checkpoint", hvm_name(vm), "--passthru", NULL);
	unsetenv("QCKPT_AGENT_TIMEOUT_MS");
	assert_int_equal(r.status, 0);
	rec = one_record(r.out);
	assert_string_equal(jstr(rec, "CheckpointType"), "Standard");
	assert_non_null(json_object_get(rec, "MemoryState"));
	/* One warning line naming the VM, the reason and what it did. */
	assert_non_null(strstr(r.err, hvm_name(vm)));
	assert_non_null(strstr(r.err, "did not answer"));
	assert_non_null(strstr(r.err, "taking a standard checkpoint instead of a production one"));
	assert_guest_runs_and_writes(vm);
	json_decref(rec);
	run_free(&r);
	free(extra);
	hvm_free(vm);
}

static void test_production_only_without_agent_fails_and_leaves_nothing(void **state)
{
	struct hvm *vm = boot_with_agent("ponly", false);
	char *extra = fmt("agent=%s type=production-only", hvm_agent_path(vm));
	struct run r;
	int before;

	registry_add(hvm_name(vm), hvm_qmp_path(vm), extra);
	before = leftovers(hvm_name(vm));
	setenv("QCKPT_AGENT_TIMEOUT_MS", "1500", 1);
	r = qckpt("checkpoint", hvm_name(vm), NULL);
	unsetenv("QCKPT_AGENT_TIMEOUT_MS");
	assert_int_equal(r.status, 1);
	assert_int_equal(count_lines(r.err), 1);
	assert_non_null(strstr(r.err, hvm_name(vm)));
	assert_non_null(strstr(r.err, "production-only"));
	assert_non_null(strstr(r.err, "qemu-ga"));
	assert_non_null(strstr(r.err, "--type production"));
	assert_int_equal(leftovers(hvm_name(vm)), before);
	assert_guest_runs_and_writes(vm);
	run_free(&r);
	free(extra);
	hvm_free(vm);
}

/* ---- with a fake agent: refusals, silence, death ----------------------- */

struct fake_case {
	struct hvm *vm;
	struct fakeqmp *fake;
	char *agent;
	int before;
};

static void fake_case_start(struct fake_case *c, const char *base, const char *type)
{
	struct hvm_opts o = { .ndisks = 1 };
	char *name = fmt("%s%d", base, ++vm_serial);
	char *extra;

	c->vm = boot(o, name);
	free(name);
	c->agent = fmt("%s/%s.fakeqga", harness_tmpdir(), hvm_name(c->vm));
	c->fake = fakeqmp_new(harness_loop(), c->agent);
	assert_non_null(c->fake);
	fakeqmp_expect(c->fake, "guest-sync-delimited", FAKEQMP_AGENT_SYNC);
	extra = fmt("agent=%s type=%s", c->agent, type);
	registry_add(hvm_name(c->vm), hvm_qmp_path(c->vm), extra);
	free(extra);
	c->before = leftovers(hvm_name(c->vm));
}

static void fake_case_end(struct fake_case *c)
{
	const char *err = fakeqmp_error(c->fake);

	if (err != NULL)
		fail_msg("fake agent: %s", err);
	fakeqmp_free(c->fake);
	free(c->agent);
	hvm_free(c->vm);
}

static const char *fake_command_name(struct fake_case *c, size_t i)
{
	return jstr(fakeqmp_command(c->fake, i), "execute");
}

static void test_refused_freeze_falls_back_to_standard(void **state)
{
	struct fake_case c;
	json_t *rec;
	struct run r;

	fake_case_start(&c, "refused", "production");
	fakeqmp_expect(c.fake, "guest-fsfreeze-freeze",
		       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"failed to freeze /mnt: Device or resource busy\"}, \"id\": %ID%}");
	r = qckpt("checkpoint", hvm_name(c.vm), "--passthru", NULL);
	assert_int_equal(r.status, 0);
	rec = one_record(r.out);
	assert_string_equal(jstr(rec, "CheckpointType"), "Standard");
	assert_non_null(json_object_get(rec, "MemoryState"));
	assert_non_null(strstr(r.err, "Device or resource busy"));
	assert_non_null(strstr(r.err, "taking a standard checkpoint instead"));
	/* The agent thaws by itself after a failed freeze: no thaw was sent. */
	assert_int_equal(fakeqmp_command_count(c.fake), 2);
	assert_true(hvm_wait_tick(c.vm, WAIT_MS) > 0);
	json_decref(rec);
	run_free(&r);
	fake_case_end(&c);
}

/* What a guest agent says is the guest's text: printed and recorded only
 * without control characters (no escape sequences, no forged lines). */
static void test_guest_agent_text_is_stripped_of_control_characters(void **state)
{
	struct fake_case c;
	struct run r;
	const char *nl;

	fake_case_start(&c, "ctl", "production-only");
	fakeqmp_expect(c.fake, "guest-fsfreeze-freeze",
		       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"busy\\u001b[2J\\u001b]0;owned\\u0007\\r\\nqckpt: forged line\\u0085\"}, \"id\": %ID%}");
	r = qckpt("checkpoint", hvm_name(c.vm), NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "busy"));
	assert_non_null(strstr(r.err, "forged line"));
	assert_null(strchr(r.err, '\x1b'));
	assert_null(strchr(r.err, '\a'));
	assert_null(strchr(r.err, '\r'));
	assert_null(strstr(r.err, "\xc2\x85"));
	nl = strchr(r.err, '\n');
	assert_non_null(nl);
	if (nl[1] != '\0')
		fail_msg("more than one line: %s", r.err);
	assert_true(hvm_wait_tick(c.vm, WAIT_MS) > 0);
	run_free(&r);
	fake_case_end(&c);
}

/*
 * A production checkpoint whose freeze fails turns into a standard one in
 * the mode asked for; background mode then needs room for the guest's
 * memory exactly as when asked for directly (a failed background save
 * hangs QEMU 7.2's guest), so without it the fallback refuses, touching
 * nothing.
 */
static void test_fallback_to_background_checks_the_room_first(void **state)
{
	struct hvm_opts o = { .ndisks = 1 };
	char *small = fmt("%s/small-prod", harness_tmpdir());
	char *name = fmt("roomfb%d", ++vm_serial);
	struct hvm *vm;
	struct fakeqmp *fake;
	char *agent;
	struct run r;
	FILE *f;

	mkdir(small, 0700);
	if (mount("qckpt-test", small, "tmpfs", 0, "size=1m") != 0) {
		if (getenv("CI") || getenv("QCKPT_REQUIRE_QEMU"))
			fail_msg("cannot mount a small tmpfs (%s): run the tests as root", strerror(errno));
		skip();
	}
	vm = boot(o, name);
	agent = fmt("%s/%s.fakeqga", harness_tmpdir(), hvm_name(vm));
	fake = fakeqmp_new(harness_loop(), agent);
	fakeqmp_expect(fake, "guest-sync-delimited", FAKEQMP_AGENT_SYNC);
	fakeqmp_expect(fake, "guest-fsfreeze-freeze",
		       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"cannot freeze\"}, \"id\": %ID%}");
	f = fopen(registry_path, "a");
	fprintf(f, "%s unix:%s dir=%s agent=%s type=production\n", hvm_name(vm),
		hvm_qmp_path(vm), small, agent);
	fclose(f);
	r = qckpt("checkpoint", "--mode=background", hvm_name(vm), "fb", NULL);
	assert_int_equal(r.status, 1);
	if (strstr(r.err, "needs room") == NULL)
		fail_msg("%s", r.err);
	assert_true(hvm_wait_tick(vm, WAIT_MS) > 0);
	{
		char *cmd = fmt("find %s -name '*.state' -o -name checkpoint.json | wc -l", small);
		struct run c = shell(cmd);

		assert_int_equal(atoi(c.out), 0);
		run_free(&c);
		free(cmd);
	}
	run_free(&r);
	fakeqmp_free(fake);
	free(agent);
	hvm_free(vm);
	umount(small);
	free(small);
	free(name);
}

static void test_stuck_freeze_is_bounded_then_thawed_and_production_only_fails(void **state)
{
	struct fake_case c;
	struct run r;

	fake_case_start(&c, "stuck", "production-only");
	fakeqmp_expect(c.fake, "guest-fsfreeze-freeze", NULL); /* never answers */
	fakeqmp_expect(c.fake, "guest-fsfreeze-thaw", "{\"return\": 0, \"id\": %ID%}");
	setenv("QCKPT_AGENT_TIMEOUT_MS", "1500", 1);
	r = qckpt("checkpoint", hvm_name(c.vm), NULL);
	unsetenv("QCKPT_AGENT_TIMEOUT_MS");
	assert_int_equal(r.status, 1);
	assert_int_equal(count_lines(r.err), 1);
	assert_non_null(strstr(r.err, "did not answer guest-fsfreeze-freeze within 1500 ms"));
	/* A freeze without an answer may still happen: qckpt thawed. */
	assert_int_equal(fakeqmp_command_count(c.fake), 3);
	assert_string_equal(fake_command_name(&c, 2), "guest-fsfreeze-thaw");
	assert_int_equal(leftovers(hvm_name(c.vm)), c.before);
	assert_true(hvm_wait_tick(c.vm, WAIT_MS) > 0);
	run_free(&r);
	fake_case_end(&c);
}

static void test_stuck_freeze_with_production_thaws_then_takes_a_standard_one(void **state)
{
	struct fake_case c;
	json_t *rec;
	struct run r;

	fake_case_start(&c, "stuckp", "production");
	fakeqmp_expect(c.fake, "guest-fsfreeze-freeze", NULL);
	fakeqmp_expect(c.fake, "guest-fsfreeze-thaw", "{\"return\": 1, \"id\": %ID%}");
	setenv("QCKPT_AGENT_TIMEOUT_MS", "1500", 1);
	r = qckpt("checkpoint", hvm_name(c.vm), "--passthru", NULL);
	unsetenv("QCKPT_AGENT_TIMEOUT_MS");
	assert_int_equal(r.status, 0);
	rec = one_record(r.out);
	assert_string_equal(jstr(rec, "CheckpointType"), "Standard");
	assert_non_null(json_object_get(rec, "MemoryState"));
	assert_non_null(strstr(r.err, "did not answer guest-fsfreeze-freeze"));
	assert_int_equal(fakeqmp_command_count(c.fake), 3);
	assert_string_equal(fake_command_name(&c, 2), "guest-fsfreeze-thaw");
	assert_true(hvm_wait_tick(c.vm, WAIT_MS) > 0);
	json_decref(rec);
	run_free(&r);
	fake_case_end(&c);
}

static void test_agent_dying_before_the_thaw_keeps_the_checkpoint_and_says_so(void **state)
{
	struct fake_case c;
	struct run r, list;

	fake_case_start(&c, "dies", "production");
	fakeqmp_expect(c.fake, "guest-fsfreeze-freeze", "{\"return\": 1, \"id\": %ID%}");
	fakeqmp_expect(c.fake, "guest-fsfreeze-thaw", NULL);
	fakeqmp_hangup(c.fake);
	r = qckpt("checkpoint", hvm_name(c.vm), NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "the checkpoint was taken"));
	assert_non_null(strstr(r.err, "may still be frozen"));
	assert_non_null(strstr(r.err, "guest-fsfreeze-thaw"));
	/* The disks were switched while frozen: that checkpoint is kept. */
	list = qckpt("list", hvm_name(c.vm), "--json", NULL);
	assert_int_equal(list.status, 0);
	assert_non_null(strstr(list.out, "\"Production\""));
	assert_true(hvm_wait_tick(c.vm, WAIT_MS) > 0);
	run_free(&list);
	run_free(&r);
	fake_case_end(&c);
}

static void test_production_only_without_agent_setting_says_what_to_add(void **state)
{
	struct hvm_opts o = { .ndisks = 1 };
	char *name = fmt("noset%d", ++vm_serial);
	struct hvm *vm = boot(o, name);
	struct run r;

	free(name);
	registry_add(hvm_name(vm), hvm_qmp_path(vm), "type=production-only");
	r = qckpt("checkpoint", hvm_name(vm), NULL);
	assert_int_equal(r.status, 1);
	assert_int_equal(count_lines(r.err), 1);
	assert_non_null(strstr(r.err, "add agent=SOCKET"));
	run_free(&r);
	hvm_free(vm);
}

/* ---- groups --------------------------------------------------------------- */

static int setup_common(void)
{
	return group_files_setup("test-production", &registry_path, &catalog_dir);
}

static int teardown(void **state)
{
	group_files_teardown(&registry_path, &catalog_dir);
	return 0;
}

static int setup_default(void **state)
{
	qemu_bin = harness_qemu();
	return setup_common();
}

static int setup_qemu10(void **state)
{
	qemu_bin = harness_require_qemu10();
	if (qemu_bin == NULL)
		return -1;
	return setup_common();
}

#define REAL_AGENT_TESTS                                                              \
	cmocka_unit_test(test_production_freezes_the_guest_around_a_disk_only_checkpoint), \
	cmocka_unit_test(test_production_without_a_running_agent_falls_back_to_standard)

int main(void)
{
	int rc = harness_init();
	const struct CMUnitTest tests_default[] = {
		REAL_AGENT_TESTS,
		cmocka_unit_test(test_production_only_without_agent_fails_and_leaves_nothing),
		cmocka_unit_test(test_refused_freeze_falls_back_to_standard),
		cmocka_unit_test(test_guest_agent_text_is_stripped_of_control_characters),
		cmocka_unit_test(test_fallback_to_background_checks_the_room_first),
		cmocka_unit_test(test_stuck_freeze_is_bounded_then_thawed_and_production_only_fails),
		cmocka_unit_test(test_stuck_freeze_with_production_thaws_then_takes_a_standard_one),
		cmocka_unit_test(test_agent_dying_before_the_thaw_keeps_the_checkpoint_and_says_so),
		cmocka_unit_test(test_production_only_without_agent_setting_says_what_to_add),
	};
	const struct CMUnitTest tests_qemu10[] = { REAL_AGENT_TESTS };
	int failed;

	if (rc != 0)
		return rc;
	if (getenv("QCKPT_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("QCKPT_TEST_FILTER"));
	failed = cmocka_run_group_tests_name("production on QEMU (default)", tests_default,
					     setup_default, teardown);
	if (harness_want_qemu10())
		failed += cmocka_run_group_tests_name("production on QEMU 10", tests_qemu10,
						      setup_qemu10, teardown);
	return failed ? 1 : 0;
}
