/*
 * test-qmp-qemu.c: the qmp/ client library against real QEMU processes.
 *
 * One group of tests per QEMU: Debian's (7.2) and, when the harness finds
 * it (scripts/get-qemu10), 10.0.  Each group boots one test guest and runs
 * the protocol tests on its primary monitor; the last test migrates that
 * guest into a file through a passed file descriptor, restores it in a new
 * QEMU and proves from the serial ticks and the disk counter that the bytes
 * were a valid state.  The harness's observer monitor is the independent
 * witness.  Nothing sleeps: waits are for output or events, with timeouts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "qmp.h"

#define BOOT_TIMEOUT_MS 90000u
#define WAIT_MS 20000u

/* ---- a synchronous view of the asynchronous client, for tests ---- */

struct lib_event {
	char *name;
	json_t *data;
	struct qmp_timestamp ts;
};

struct conn {
	qmp_client client;
	bool connect_done, closed;
	int connect_status;
	struct lib_event events[256];
	size_t nevents, event_cursor;
};

struct call {
	bool done;
	int status;
	json_t *result;
	char error_class[64];
};

static void on_lib_event(qmp_client *client, const char *name, json_t *data,
			 const struct qmp_timestamp *ts, void *arg)
{
	struct conn *c = arg;
	if (c->nevents == sizeof c->events / sizeof c->events[0])
		return;
	struct lib_event *e = &c->events[c->nevents++];
	e->name = strdup(name);
	e->data = json_incref(data);
	e->ts = *ts;
}

static void on_lib_connect(qmp_client *client, int status)
{
	struct conn *c = client->data;
	c->connect_done = true;
	c->connect_status = status;
}

static bool connect_done(void *arg) { return ((struct conn *)arg)->connect_done; }
static bool conn_closed(void *arg) { return ((struct conn *)arg)->closed; }
static bool call_done(void *arg) { return ((struct call *)arg)->done; }

static struct conn *conn_open(struct hvm *vm)
{
	struct conn *c = calloc(1, sizeof *c);
	assert_non_null(c);
	assert_int_equal(qmp_client_init(harness_loop(), &c->client), 0);
	c->client.data = c;
	qmp_client_on_event(&c->client, on_lib_event, c);
	assert_int_equal(qmp_client_connect(&c->client, hvm_qmp_path(vm), 10000,
					    on_lib_connect), 0);
	assert_int_equal(harness_run_until(connect_done, c, 15000), 0);
	if (c->connect_status != 0)
		fail_msg("connect: %s", qmp_strerror(c->connect_status));
	return c;
}

static void on_lib_closed(qmp_client *client)
{
	((struct conn *)client->data)->closed = true;
}

static void conn_close(struct conn *c)
{
	if (!c)
		return;
	qmp_client_close(&c->client, on_lib_closed);
	harness_run_until(conn_closed, c, 5000);
	assert_true(c->closed);
	for (size_t i = 0; i < c->nevents; i++) {
		free(c->events[i].name);
		json_decref(c->events[i].data);
	}
	free(c);
}

static void on_call_reply(qmp_client *client, int status, json_t *result,
			  const struct qmp_error *error, void *arg)
{
	struct call *call = arg;
	call->done = true;
	call->status = status;
	call->result = result ? json_incref(result) : NULL;
	if (error && error->klass)
		snprintf(call->error_class, sizeof call->error_class, "%s",
			 error->klass);
}

/* Execute and wait; returns the status, *result (new ref) if asked. */
static int call_fd(struct conn *c, const char *cmd, json_t *args, int fd,
		   json_t **result)
{
	struct call call = {0};
	int rc = fd >= 0 ? qmp_client_execute_fd(&c->client, cmd, args, fd,
						  on_call_reply, &call)
			 : qmp_client_execute(&c->client, cmd, args,
					      on_call_reply, &call);
	if (rc < 0)
		return rc;
	assert_int_equal(harness_run_until(call_done, &call, 60000), 0);
	if (call.status == QMP_ECOMMAND)
		fprintf(stderr, "%s: %s\n", cmd, call.error_class);
	if (result)
		*result = call.result;
	else
		json_decref(call.result);
	return call.status;
}

static int call(struct conn *c, const char *cmd, json_t *args, json_t **result)
{
	return call_fd(c, cmd, args, -1, result);
}

struct event_wait {
	struct conn *c;
	const char *name;
	const char *status; /* for MIGRATION: wanted data.status */
	struct lib_event *found;
};

static bool event_seen(void *arg)
{
	struct event_wait *w = arg;
	for (; w->c->event_cursor < w->c->nevents; w->c->event_cursor++) {
		struct lib_event *e = &w->c->events[w->c->event_cursor];
		if (strcmp(e->name, w->name) != 0)
			continue;
		if (w->status && strcmp(json_string_value(json_object_get(
					       e->data, "status")) ?: "",
					w->status) != 0)
			continue;
		w->found = e;
		w->c->event_cursor++;
		return true;
	}
	return false;
}

static struct lib_event *wait_lib_event(struct conn *c, const char *name,
					const char *status, unsigned timeout_ms)
{
	struct event_wait w = {c, name, status, NULL};
	harness_run_until(event_seen, &w, timeout_ms);
	return w.found;
}

/* ---- fixture: one booted guest per QEMU ---- */

struct fixture {
	const char *label;
	const char *qemu;
	struct hvm *vm;
	struct conn *conn;
};

static struct fixture *fx;
static struct fixture fx72 = {.label = "QEMU (default)"};
static struct fixture fx10 = {.label = "QEMU 10"};

static int group_setup(struct fixture *f)
{
	fx = f;
	struct hvm_opts o = {.name = "lib", .qemu = f->qemu, .ndisks = 2,
			     .readonly_disk = true, .cdrom = true};
	f->vm = hvm_start(&o);
	if (!f->vm)
		return -1;
	if (hvm_wait_tick(f->vm, BOOT_TIMEOUT_MS) < 0) {
		fprintf(stderr, "%s: the guest did not boot\n", f->label);
		return -1;
	}
	return 0;
}

static int setup_default(void **state)
{
	fx72.qemu = harness_qemu();
	return group_setup(&fx72);
}

static int setup_qemu10(void **state)
{
	fx10.qemu = harness_require_qemu10();
	if (fx10.qemu == NULL)
		return -1;
	return group_setup(&fx10);
}

/* cmocka runs it after a failed setup too: fx is then NULL (the previous
 * group's teardown cleared it) or the fixture the setup began. */
static int group_teardown(void **state)
{
	if (fx == NULL)
		return 0;
	hvm_free(fx->vm);
	fx->vm = NULL;
	fx = NULL;
	return 0;
}

/* Each test gets a fresh connection to the primary monitor. */
static int test_setup(void **state)
{
	if (!fx->vm)
		return 0;
	fx->conn = conn_open(fx->vm);
	return 0;
}

static int test_teardown(void **state)
{
	conn_close(fx->conn);
	fx->conn = NULL;
	return 0;
}

#define REQUIRE_VM()                                                       \
	do {                                                               \
		if (!fx->vm) {                                             \
			fprintf(stderr, "%s: not available\n", fx->label); \
			skip();                                            \
		}                                                          \
	} while (0)

/* ---- tests ---- */

static void test_negotiation_reports_the_version_of_query_version(void **state)
{
	REQUIRE_VM();
	qmp_client *c = &fx->conn->client;
	json_t *v = NULL;
	assert_int_equal(hvm_qmp(fx->vm, "query-version", NULL, &v), 0);
	json_t *q = json_object_get(v, "qemu");
	assert_int_equal(c->state, QMP_STATE_READY);
	assert_non_null(c->greeting);
	assert_int_equal(c->version_major, json_integer_value(json_object_get(q, "major")));
	assert_int_equal(c->version_minor, json_integer_value(json_object_get(q, "minor")));
	assert_int_equal(c->version_micro, json_integer_value(json_object_get(q, "micro")));
	assert_int_equal(qmp_client_version(c), c->version_major * 10000 +
						c->version_minor * 100 +
						c->version_micro);
	char num[32];
	snprintf(num, sizeof num, "%d.%d.%d", c->version_major,
		 c->version_minor, c->version_micro);
	assert_memory_equal(c->version_string, num, strlen(num));
	fprintf(stderr, "%s: %s\n", fx->label, c->version_string);
	json_decref(v);

	/* and the library's own query-version agrees */
	json_t *r = NULL;
	assert_int_equal(call(fx->conn, "query-version", NULL, &r), 0);
	assert_int_equal(json_integer_value(json_object_get(
				 json_object_get(r, "qemu"), "major")),
			 c->version_major);
	json_decref(r);
}

static void test_query_block_sees_the_disks(void **state)
{
	REQUIRE_VM();
	json_t *r = NULL;
	assert_int_equal(call(fx->conn, "query-block", NULL, &r), 0);
	assert_true(json_is_array(r));
	bool drv0 = false, drv1 = false, ro = false, cd = false;
	size_t i;
	json_t *dev;
	json_array_foreach(r, i, dev) {
		const char *name = json_string_value(json_object_get(dev, "device"));
		json_t *ins = json_object_get(dev, "inserted");
		if (!name)
			continue;
		if (strcmp(name, "drv0") == 0)
			drv0 = strcmp(json_string_value(json_object_get(ins, "file")),
				      hvm_disk_path(fx->vm, 0)) == 0;
		else if (strcmp(name, "drv1") == 0)
			drv1 = ins != NULL;
		else if (strcmp(name, "drvro") == 0)
			ro = json_is_true(json_object_get(ins, "ro"));
		else if (strcmp(name, "cd0") == 0)
			cd = ins == NULL && json_is_true(json_object_get(dev, "removable"));
	}
	json_decref(r);
	assert_true(drv0);
	assert_true(drv1);
	assert_true(ro);
	assert_true(cd);
}

static void test_stop_and_cont_deliver_stop_and_resume_events(void **state)
{
	REQUIRE_VM();
	hvm_consume_events(fx->vm);
	size_t first = hvm_event_count(fx->vm);
	assert_int_equal(call(fx->conn, "stop", NULL, NULL), 0);
	struct lib_event *stop = wait_lib_event(fx->conn, "STOP", NULL, WAIT_MS);
	assert_non_null(stop);
	assert_int_equal(call(fx->conn, "cont", NULL, NULL), 0);
	struct lib_event *resume = wait_lib_event(fx->conn, "RESUME", NULL, WAIT_MS);
	assert_non_null(resume);

	/* The observer saw the same events with the same timestamps. */
	const struct hvm_event *ostop = hvm_wait_event(fx->vm, "STOP", WAIT_MS);
	const struct hvm_event *oresume = hvm_wait_event(fx->vm, "RESUME", WAIT_MS);
	assert_non_null(ostop);
	assert_non_null(oresume);
	int64_t stop_us = stop->ts.seconds * 1000000 + stop->ts.microseconds;
	int64_t resume_us = resume->ts.seconds * 1000000 + resume->ts.microseconds;
	assert_true(stop->ts.seconds > 1500000000);
	assert_int_equal(stop_us, ostop->ts_us);
	assert_int_equal(resume_us, oresume->ts_us);
	assert_true(resume_us >= stop_us);
	double pause = hvm_pause_ms(fx->vm, first);
	assert_true(pause >= 0);
	fprintf(stderr, "%s: stop/cont paused the guest %.1f ms\n", fx->label, pause);
	/* and the guest goes on ticking */
	hvm_consume_serial(fx->vm);
	assert_true(hvm_wait_tick(fx->vm, WAIT_MS) > 0);
}

struct inflight {
	int done, bad;
	int last_index;
	bool in_order;
};

struct inflight_arg {
	struct inflight *state;
	int index;
	char kind; /* 's' query-status, 'n' query-name, 'v' query-version */
};

static void on_inflight_reply(qmp_client *client, int status, json_t *result,
			      const struct qmp_error *error, void *arg)
{
	struct inflight_arg *a = arg;
	struct inflight *s = a->state;
	bool ok = status == 0;
	if (ok && a->kind == 's')
		ok = json_object_get(result, "running") != NULL;
	else if (ok && a->kind == 'n')
		ok = json_is_object(result) && !json_object_get(result, "running");
	else if (ok && a->kind == 'v')
		ok = json_object_get(result, "qemu") != NULL;
	s->bad += !ok;
	if (a->index < s->last_index)
		s->in_order = false;
	s->last_index = a->index;
	s->done++;
}

static bool inflight_all_done(void *arg)
{
	return ((struct inflight *)arg)->done == 300;
}

static void test_many_commands_in_flight_complete_once_each(void **state)
{
	REQUIRE_VM();
	static const char *const cmds[] = {"query-status", "query-name",
					   "query-version"};
	struct inflight s = {.last_index = -1, .in_order = true};
	struct inflight_arg args[300];
	for (int i = 0; i < 300; i++) {
		args[i] = (struct inflight_arg){&s, i, "snv"[i % 3]};
		assert_int_equal(qmp_client_execute(&fx->conn->client, cmds[i % 3],
						    NULL, on_inflight_reply,
						    &args[i]), 0);
	}
	assert_int_equal(harness_run_until(inflight_all_done, &s, 60000), 0);
	assert_int_equal(s.done, 300);
	assert_int_equal(s.bad, 0);
	assert_true(s.in_order); /* QEMU answers one monitor in order */
}

static void test_unknown_command_fails_with_qemu_error_class(void **state)
{
	REQUIRE_VM();
	struct call c = {0};
	assert_int_equal(qmp_client_execute(&fx->conn->client, "no-such-command",
					    NULL, on_call_reply, &c), 0);
	assert_int_equal(harness_run_until(call_done, &c, WAIT_MS), 0);
	assert_int_equal(c.status, QMP_ECOMMAND);
	assert_string_equal(c.error_class, "CommandNotFound");
	assert_null(c.result);
}

static void test_large_reply_query_qmp_schema(void **state)
{
	REQUIRE_VM();
	json_t *r = NULL;
	assert_int_equal(call(fx->conn, "query-qmp-schema", NULL, &r), 0);
	assert_true(json_is_array(r));
	char *text = json_dumps(r, JSON_COMPACT);
	fprintf(stderr, "%s: query-qmp-schema: %zu entries, %zu bytes\n",
		fx->label, json_array_size(r), strlen(text));
	assert_true(json_array_size(r) > 500);
	free(text);
	json_decref(r);
}

/* Migration into a file through an fd passed with getfd, then restore. */
static void test_fd_migration_restores_guest_from_saved_tick(void **state)
{
	REQUIRE_VM();
	struct hvm *src = fx->vm;
	struct conn *c = fx->conn;
	char *memfile = harness_path("migrate.state");
	json_t *caps = json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability",
				 "events", "state", 1);

	assert_true(hvm_wait_tick(src, WAIT_MS) > 0);
	assert_int_equal(call(c, "migrate-set-capabilities", json_deep_copy(caps), NULL), 0);
	assert_int_equal(call(c, "migrate-set-parameters",
			      json_pack("{s:i, s:i}", "max-bandwidth", 0,
					"downtime-limit", 10), NULL), 0);
	/* QEMU < 9.0 under TCG loses dirty pages in pre-copy (fixed by QEMU
	 * commit 03bfc2188f): a live save there restores into a crashing
	 * guest now and then.  Save it stopped, so that this test fails only
	 * for the library's faults; QEMU 10 saves it live. */
	if (qmp_client_version(&c->client) < 90000)
		assert_int_equal(call(c, "stop", NULL, NULL), 0);
	int fd = open(memfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(call_fd(c, "getfd", json_pack("{s:s}", "fdname", "memfd"),
				 fd, NULL), 0);
	close(fd);
	assert_int_equal(call(c, "migrate", json_pack("{s:s}", "uri", "fd:memfd"),
			      NULL), 0);
	assert_non_null(wait_lib_event(c, "MIGRATION", "completed", 60000));

	long saved = hvm_last_tick(src);
	/* QEMU sends the completed event before it leaves finish-migrate */
	char *st = hvm_status(src);
	assert_non_null(st);
	if (strcmp(st, "postmigrate") != 0)
		assert_string_equal(st, "finish-migrate");
	free(st);
	conn_close(c);
	fx->conn = NULL;
	assert_int_equal(hvm_quit(src), 0);
	long disk = disk_read_counter(hvm_disk_path(src, 0));
	long disk1 = disk_read_counter(hvm_disk_path(src, 1));

	/* The guest writes vda, then vdb, then prints the tick: stopped
	 * between the two writes, vdb holds the counter before. */
	assert_true(disk1 == disk || disk1 == disk - 1);

	/* Restore: same disks, -incoming defer, paused. */
	const char *disks[] = {hvm_disk_path(src, 0), hvm_disk_path(src, 1), NULL};
	struct hvm_opts o = {.name = "restore", .qemu = fx->qemu,
			     .disk_paths = disks, .readonly_disk = true,
			     .cdrom = true, .incoming = "defer", .paused = true};
	struct hvm *dst = hvm_start(&o);
	assert_non_null(dst);
	fx->vm = dst;
	hvm_free(src);
	c = fx->conn = conn_open(dst);
	assert_int_equal(call(c, "migrate-set-capabilities", caps, NULL), 0);
	fd = open(memfile, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(call_fd(c, "getfd", json_pack("{s:s}", "fdname", "restore"),
				 fd, NULL), 0);
	close(fd);
	assert_int_equal(call(c, "migrate-incoming",
			      json_pack("{s:s}", "uri", "fd:restore"), NULL), 0);
	assert_non_null(wait_lib_event(c, "MIGRATION", "completed", 60000));
	assert_int_equal(call(c, "cont", NULL, NULL), 0);

	long first = hvm_wait_tick(dst, WAIT_MS);
	fprintf(stderr, "%s: saved at tick %ld, disk counter %ld, restored guest "
			"printed tick %ld first\n", fx->label, saved, disk, first);
	/* It continued (no reboot) from the saved counter; a line cut by the
	 * stop may hide one tick. */
	assert_true(first > saved && first <= saved + 2);
	assert_true(disk == first - 1 || disk == first);
	for (size_t i = 0; i < hvm_serial_count(dst); i++)
		assert_null(strstr(hvm_serial_line(dst, i), "qckpt-guest: boot"));
	/* and it writes its disks again */
	long later = hvm_wait_tick(dst, WAIT_MS);
	assert_true(later > first);
	assert_true(disk_read_counter(hvm_disk_path(dst, 0)) >= later);
	free(memfile);
}

#define QMP_TESTS                                                              \
	{                                                                      \
		cmocka_unit_test_setup_teardown(                               \
			test_negotiation_reports_the_version_of_query_version, \
			test_setup, test_teardown),                            \
		cmocka_unit_test_setup_teardown(                               \
			test_query_block_sees_the_disks, test_setup,           \
			test_teardown),                                        \
		cmocka_unit_test_setup_teardown(                               \
			test_stop_and_cont_deliver_stop_and_resume_events,     \
			test_setup, test_teardown),                            \
		cmocka_unit_test_setup_teardown(                               \
			test_many_commands_in_flight_complete_once_each,       \
			test_setup, test_teardown),                            \
		cmocka_unit_test_setup_teardown(                               \
			test_unknown_command_fails_with_qemu_error_class,      \
			test_setup, test_teardown),                            \
		cmocka_unit_test_setup_teardown(                               \
			test_large_reply_query_qmp_schema, test_setup,         \
			test_teardown),                                        \
		/* last: it replaces the group's VM */                         \
		cmocka_unit_test_setup_teardown(                               \
			test_fd_migration_restores_guest_from_saved_tick,      \
			test_setup, test_teardown),                            \
	}

int main(void)
{
	int rc = harness_init();
	if (rc != 0)
		return rc;
	/* QCKPT_TEST_FILTER=pattern runs only the matching tests. */
	if (getenv("QCKPT_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("QCKPT_TEST_FILTER"));
	const struct CMUnitTest tests_default[] = QMP_TESTS;
	const struct CMUnitTest tests_qemu10[] = QMP_TESTS;
	int failed = cmocka_run_group_tests_name("qmp on QEMU (default)",
						 tests_default, setup_default,
						 group_teardown);
	if (harness_want_qemu10())
		failed += cmocka_run_group_tests_name("qmp on QEMU 10", tests_qemu10,
						      setup_qemu10, group_teardown);
	return failed ? 1 : 0;
}
