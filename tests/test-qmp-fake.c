/*
 * test-qmp-fake.c: the QMP client (qmp/client.c) against the scripted fake
 * server (tests/fakeqmp.c), for everything real QEMU cannot be made to do
 * on demand: malformed or split greetings, replies out of order or never,
 * connections dropped mid-message.  Tests never sleep: they run the loop
 * until a condition holds, with a guard timer failing them if it never does.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "qmp.h"
#include "fakeqmp.h"

#define GUARD_MS 10000
#define MAX_REPLIES 256

/* What one command's callback saw. */
struct reply {
	int calls;
	int seq; /* order of completion among all callbacks */
	int status;
	json_t *result;
	char klass[64];
	char desc[256];
	struct fixture *f;
};

struct fixture {
	uv_loop_t loop;
	uv_timer_t guard;
	int timed_out;
	int seq;
	char dir[64];
	char address[128];
	struct fakeqmp *fake;
	qmp_client client;

	int connect_calls, connect_status;
	int disconnect_calls, disconnect_status, disconnect_seq;
	int close_calls;
	int events;
	char event_name[64];
	json_t *event_data;
	struct qmp_timestamp event_ts;
	int traced_in, traced_out;
	int close_in_callback; /* close the client from the next reply/connect */
	struct reply replies[MAX_REPLIES];
};

/* --- fixture and loop helpers ------------------------------------------ */

static void on_guard(uv_timer_t *timer)
{
	struct fixture *f = timer->data;

	f->timed_out = 1;
}

#define RUN_UNTIL(f, cond)                                                   \
	do {                                                                 \
		uv_timer_start(&(f)->guard, on_guard, GUARD_MS, 0);          \
		while (!(cond) && !(f)->timed_out)                           \
			uv_run(&(f)->loop, UV_RUN_ONCE);                     \
		uv_timer_stop(&(f)->guard);                                  \
		assert_false((f)->timed_out);                                \
	} while (0)

static void on_trace(qmp_client *client, char dir, const char *text,
		     size_t len, void *arg)
{
	struct fixture *f = arg;

	if (dir == '<')
		f->traced_in++;
	else
		f->traced_out++;
}

static void on_disconnect(qmp_client *client, int status, void *arg)
{
	struct fixture *f = arg;

	f->disconnect_calls++;
	f->disconnect_status = status;
	f->disconnect_seq = ++f->seq;
}

static int setup_address(void **state, const char *kind)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_int_equal(uv_loop_init(&f->loop), 0);
	uv_timer_init(&f->loop, &f->guard);
	f->guard.data = f;
	snprintf(f->dir, sizeof(f->dir), "/tmp/qckpt-fake-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	if (strcmp(kind, "unix") == 0)
		snprintf(f->address, sizeof(f->address), "unix:%s/qmp.sock",
			 f->dir);
	else
		snprintf(f->address, sizeof(f->address), "tcp:127.0.0.1:0");
	f->fake = fakeqmp_new(&f->loop, f->address);
	assert_non_null(f->fake);
	snprintf(f->address, sizeof(f->address), "%s",
		 fakeqmp_address(f->fake));
	assert_int_equal(qmp_client_init(&f->loop, &f->client), 0);
	f->client.data = f;
	qmp_client_on_trace(&f->client, on_trace, f);
	qmp_client_on_disconnect(&f->client, on_disconnect, f);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_address(state, "unix");
}

static int setup_tcp(void **state)
{
	return setup_address(state, "tcp");
}

static void on_closed(qmp_client *client)
{
	struct fixture *f = client->data;

	f->close_calls++;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int i;

	qmp_client_close(&f->client, on_closed); /* no-op if already closing */
	fakeqmp_free(f->fake);
	uv_close((uv_handle_t *)&f->guard, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->close_calls, 1);
	assert_int_equal(f->client.state, QMP_STATE_CLOSED);
	assert_int_equal(uv_loop_close(&f->loop), 0); /* no handle left open */
	for (i = 0; i < MAX_REPLIES; i++)
		json_decref(f->replies[i].result);
	json_decref(f->event_data);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void on_connect(qmp_client *client, int status)
{
	struct fixture *f = client->data;

	f->connect_calls++;
	f->connect_status = status;
	if (f->close_in_callback)
		qmp_client_close(client, on_closed);
}

/* Connect and run until the connect callback ran. */
static int connect_fake(struct fixture *f)
{
	assert_int_equal(qmp_client_connect(&f->client, f->address, 0,
					    on_connect), 0);
	RUN_UNTIL(f, f->connect_calls > 0);
	assert_int_equal(f->connect_calls, 1);
	return f->connect_status;
}

static void on_reply(qmp_client *client, int status, json_t *result,
		     const struct qmp_error *error, void *arg)
{
	struct reply *r = arg;

	r->calls++;
	r->seq = ++r->f->seq;
	r->status = status;
	if (result != NULL)
		r->result = json_incref(result);
	if (error != NULL) {
		snprintf(r->klass, sizeof(r->klass), "%s", error->klass);
		snprintf(r->desc, sizeof(r->desc), "%s", error->desc);
	}
	if (r->f->close_in_callback)
		qmp_client_close(client, on_closed);
}

static struct reply *execute(struct fixture *f, int i, const char *command,
			     json_t *args)
{
	struct reply *r = &f->replies[i];

	r->f = f;
	assert_int_equal(qmp_client_execute(&f->client, command, args,
					    on_reply, r), 0);
	return r;
}

static void assert_fake_kept_script(struct fixture *f)
{
	const char *error = fakeqmp_error(f->fake);

	if (error != NULL)
		fail_msg("fake server: %s", error);
}

/* --- connecting ------------------------------------------------------------ */

static void test_connect_negotiates_capabilities_and_reads_version(void **state)
{
	struct fixture *f = *state;

	fakeqmp_negotiate(f->fake);
	assert_int_equal(connect_fake(f), 0);
	assert_int_equal(f->client.state, QMP_STATE_READY);
	assert_int_equal(f->client.version_major, 7);
	assert_int_equal(f->client.version_minor, 2);
	assert_int_equal(f->client.version_micro, 0);
	assert_int_equal(qmp_client_version(&f->client), 70200);
	assert_string_equal(f->client.version_string, "7.2.0 (fake)");
	assert_true(json_is_array(json_object_get(f->client.greeting,
						  "capabilities")));
	assert_int_equal(fakeqmp_command_count(f->fake), 1);
	assert_string_equal(json_string_value(json_object_get(
				    fakeqmp_command(f->fake, 0), "execute")),
			    "qmp_capabilities");
	assert_true(json_is_string(json_object_get(fakeqmp_command(f->fake, 0),
						   "id")));
	assert_fake_kept_script(f);
}

static void test_greeting_arriving_in_pieces_is_assembled(void **state)
{
	struct fixture *f = *state;

	fakeqmp_send_chunks(f->fake, FAKEQMP_GREETING, 7);
	fakeqmp_expect(f->fake, "qmp_capabilities", "{\"return\": {}, \"id\": %ID%}");
	assert_int_equal(connect_fake(f), 0);
	assert_int_equal(qmp_client_version(&f->client), 70200);
}

static void test_malformed_greeting_fails_connect_with_eproto(void **state)
{
	struct fixture *f = *state;

	fakeqmp_send(f->fake, "{\"QMP\": {\"version\": \"seven\"}}\r\n");
	assert_int_equal(connect_fake(f), QMP_EPROTO);
	assert_int_equal(f->client.state, QMP_STATE_DISCONNECTED);
	assert_int_equal(f->disconnect_calls, 0); /* the connect cb said it */
	assert_int_equal(qmp_client_execute(&f->client, "stop", NULL, on_reply,
					    NULL), QMP_ENOTREADY);
}

static void test_garbage_instead_of_greeting_fails_connect_with_eproto(void **state)
{
	struct fixture *f = *state;

	fakeqmp_send(f->fake, "SSH-2.0-OpenSSH_9.2\r\n");
	assert_int_equal(connect_fake(f), QMP_EPROTO);
}

static void test_capabilities_error_fails_connect_with_ecommand(void **state)
{
	struct fixture *f = *state;

	fakeqmp_greet(f->fake);
	fakeqmp_expect(f->fake, "qmp_capabilities",
		       "{\"error\": {\"class\": \"GenericError\", \"desc\": "
		       "\"no\"}, \"id\": %ID%}");
	assert_int_equal(connect_fake(f), QMP_ECOMMAND);
}

static void test_connect_times_out_when_no_greeting_comes(void **state)
{
	struct fixture *f = *state;

	/* An empty script: like a monitor busy with another client. */
	assert_int_equal(qmp_client_connect(&f->client, f->address, 50,
					    on_connect), 0);
	RUN_UNTIL(f, f->connect_calls > 0);
	assert_int_equal(f->connect_status, QMP_ETIMEDOUT);
}

static void test_connect_to_missing_socket_fails(void **state)
{
	struct fixture *f = *state;
	char address[160];

	snprintf(address, sizeof(address), "%s/nothing-here.sock", f->dir);
	assert_int_equal(qmp_client_connect(&f->client, address, 0, on_connect),
			 0);
	RUN_UNTIL(f, f->connect_calls > 0);
	assert_int_equal(f->connect_status, UV_ENOENT);
	assert_int_equal(f->disconnect_calls, 0);
}

static void test_bad_addresses_are_rejected_with_eaddr(void **state)
{
	static const char *bad[] = {
		"", "unix:", "tcp:", "tcp:host", "tcp:host:", "tcp::4444",
		"tcp:host:0", "tcp:host:65536", "tcp:host:44x", "tcp:host:-1",
		"tcp:[::1:4444", "/a/path/longer/than/sun_path/"
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.sock",
	};
	struct fixture *f = *state;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (qmp_client_connect(&f->client, bad[i], 0, on_connect) !=
		    QMP_EADDR)
			fail_msg("address \"%s\" was accepted", bad[i]);
	assert_int_equal(qmp_client_connect(&f->client, NULL, 0, on_connect),
			 QMP_EADDR);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(f->connect_calls, 0);
	assert_int_equal(f->client.state, QMP_STATE_INIT);
	assert_string_equal(qmp_strerror(QMP_EADDR),
			    "QMP monitor address not understood (expected "
			    "unix:PATH, PATH, tcp:HOST:PORT or tls:HOST:PORT)");
	assert_string_equal(qmp_strerror(UV_ENOENT), uv_strerror(UV_ENOENT));
}

static void test_tcp_address_connects_and_negotiates(void **state)
{
	struct fixture *f = *state;

	fakeqmp_negotiate(f->fake);
	assert_int_equal(strncmp(f->address, "tcp:127.0.0.1:", 14), 0);
	assert_int_equal(connect_fake(f), 0);
	assert_int_equal(qmp_client_version(&f->client), 70200);
}

static void test_fd_over_tcp_is_not_supported(void **state)
{
	struct fixture *f = *state;

	fakeqmp_negotiate(f->fake);
	assert_int_equal(connect_fake(f), 0);
	assert_int_equal(qmp_client_execute_fd(&f->client, "getfd",
					       json_pack("{s:s}", "fdname", "x"),
					       0, on_reply, &f->replies[0]),
			 QMP_ENOTSUP);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(f->replies[0].calls, 0);
}

static void test_execute_before_connect_is_enotready(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(qmp_client_execute(&f->client, "stop",
					    json_object(), on_reply,
					    &f->replies[0]), QMP_ENOTREADY);
	assert_int_equal(f->replies[0].calls, 0);
}

/* --- commands ------------------------------------------------------------- */

static void test_command_success_passes_return_value(void **state)
{
	struct fixture *f = *state;
	struct reply *r;
	json_t *sent;

	fakeqmp_negotiate(f->fake);
	fakeqmp_expect(f->fake, "query-status",
		       "{\"return\": {\"status\": \"running\", \"running\": true}, "
		       "\"id\": %ID%}");
	assert_int_equal(connect_fake(f), 0);
	r = execute(f, 0, "query-status", json_pack("{s:i}", "x", 1));
	RUN_UNTIL(f, r->calls > 0);
	assert_int_equal(r->status, 0);
	assert_string_equal(json_string_value(json_object_get(r->result,
							      "status")),
			    "running");
	sent = fakeqmp_command(f->fake, 1);
	assert_int_equal(json_integer_value(json_object_get(
				 json_object_get(sent, "arguments"), "x")), 1);
	assert_fake_kept_script(f);
}

static void test_command_error_keeps_class_and_desc_verbatim(void **state)
{
	struct fixture *f = *state;
	struct reply *r;

	fakeqmp_negotiate(f->fake);
	fakeqmp_expect(f->fake, "frobnicate",
		       "{\"id\": %ID%, \"error\": {\"class\": \"CommandNotFound\", "
		       "\"desc\": \"The command frobnicate has not been found\"}}");
	assert_int_equal(connect_fake(f), 0);
	r = execute(f, 0, "frobnicate", NULL);
	RUN_UNTIL(f, r->calls > 0);
	assert_int_equal(r->status, QMP_ECOMMAND);
	assert_null(r->result);
	assert_string_equal(r->klass, "CommandNotFound");
	assert_string_equal(r->desc, "The command frobnicate has not been found");
}

static void test_replies_matched_by_id_when_out_of_order(void **state)
{
	struct fixture *f = *state;
	int i;

	fakeqmp_negotiate(f->fake);
	fakeqmp_expect_hold(f->fake, "one", "{\"return\": 1, \"id\": %ID%}");
	fakeqmp_expect_hold(f->fake, "two", "{\"return\": 2, \"id\": %ID%}");
	fakeqmp_expect_hold(f->fake, "three", "{\"return\": 3, \"id\": %ID%}");
	fakeqmp_release(f->fake);
	assert_int_equal(connect_fake(f), 0);
	execute(f, 1, "one", NULL);
	execute(f, 2, "two", NULL);
	execute(f, 3, "three", NULL);
	RUN_UNTIL(f, f->replies[1].calls > 0 && f->replies[2].calls > 0 &&
			     f->replies[3].calls > 0);
	for (i = 1; i <= 3; i++) {
		assert_int_equal(f->replies[i].status, 0);
		assert_int_equal(json_integer_value(f->replies[i].result), i);
	}
	/* Released last-held first. */
	assert_true(f->replies[3].seq < f->replies[2].seq);
	assert_true(f->replies[2].seq < f->replies[1].seq);
	assert_fake_kept_script(f);
}

static void test_many_commands_in_flight_each_complete_once(void **state)
{
	struct fixture *f = *state;
	int i, n = MAX_REPLIES, done;

	fakeqmp_negotiate(f->fake);
	for (i = 0; i < n; i++)
		fakeqmp_expect_hold(f->fake, "query-name",
				    "{\"return\": {}, \"id\": %ID%}");
	fakeqmp_release(f->fake);
	assert_int_equal(connect_fake(f), 0);
	for (i = 0; i < n; i++)
		execute(f, i, "query-name", NULL);
	RUN_UNTIL(f, fakeqmp_finished(f->fake) && f->replies[0].calls > 0);
	for (i = 0, done = 0; i < n; i++) {
		assert_int_equal(f->replies[i].calls, 1);
		assert_int_equal(f->replies[i].status, 0);
		done++;
	}
	assert_int_equal(done, n);
	assert_null(f->client.pending);
}

static void test_reply_with_unknown_id_is_ignored(void **state)
{
	struct fixture *f = *state;
	struct reply *r;

	fakeqmp_negotiate(f->fake);
	fakeqmp_send(f->fake, "{\"return\": {}, \"id\": \"someone-else\"}\r\n"
			      "{\"return\": {}}\r\n");
	fakeqmp_expect(f->fake, "cont", "{\"return\": {}, \"id\": %ID%}");
	assert_int_equal(connect_fake(f), 0);
	r = execute(f, 0, "cont", NULL);
	RUN_UNTIL(f, r->calls > 0);
	assert_int_equal(r->calls, 1);
	assert_int_equal(r->status, 0);
}

static void test_timeout_fails_command_and_late_reply_is_ignored(void **state)
{
	struct fixture *f = *state;
	struct reply *slow = &f->replies[0];
	int traced;

	fakeqmp_negotiate(f->fake);
	fakeqmp_expect_hold(f->fake, "slow", "{\"return\": \"late\", \"id\": %ID%}");
	fakeqmp_expect(f->fake, "ping", "{\"return\": {}, \"id\": %ID%}");
	fakeqmp_release(f->fake);
	fakeqmp_expect(f->fake, "ping", "{\"return\": {}, \"id\": %ID%}");
	assert_int_equal(connect_fake(f), 0);
	slow->f = f;
	assert_int_equal(qmp_client_execute_ex(&f->client, "slow", NULL, -1, 30,
					       on_reply, slow), 0);
	RUN_UNTIL(f, slow->calls > 0);
	assert_int_equal(slow->status, QMP_ETIMEDOUT);
	assert_null(slow->result);

	execute(f, 1, "ping", NULL);
	RUN_UNTIL(f, f->replies[1].calls > 0);
	traced = f->traced_in;
	execute(f, 2, "ping", NULL);
	RUN_UNTIL(f, f->replies[2].calls > 0);
	assert_int_equal(f->traced_in, traced + 2); /* the late reply, then ping */
	assert_int_equal(slow->calls, 1);
	assert_int_equal(f->client.state, QMP_STATE_READY);
}

static void test_default_timeout_applies_to_execute(void **state)
{
	struct fixture *f = *state;
	struct reply *r;

	fakeqmp_negotiate(f->fake);
	fakeqmp_expect(f->fake, "stop", NULL); /* never answered */
	assert_int_equal(connect_fake(f), 0);
	qmp_client_set_timeout(&f->client, 20);
	r = execute(f, 0, "stop", NULL);
	RUN_UNTIL(f, r->calls > 0);
	assert_int_equal(r->status, QMP_ETIMEDOUT);
}

/* --- events ------------------------------------------------------------------ */

static void on_event(qmp_client *client, const char *name, json_t *data,
		     const struct qmp_timestamp *ts, void *arg)
{
	struct fixture *f = arg;

	f->events++;
	snprintf(f->event_name, sizeof(f->event_name), "%s", name);
	json_decref(f->event_data);
	f->event_data = json_incref(data);
	f->event_ts = *ts;
	if (f->close_in_callback)
		qmp_client_close(client, on_closed);
}

static void test_events_carry_name_data_and_timestamp(void **state)
{
	struct fixture *f = *state;

	qmp_client_on_event(&f->client, on_event, f);
	fakeqmp_negotiate(f->fake);
	fakeqmp_event(f->fake, "STOP", NULL);
	fakeqmp_event(f->fake, "MIGRATION", "{\"status\": \"completed\"}");
	assert_int_equal(connect_fake(f), 0);
	RUN_UNTIL(f, f->events == 2);
	assert_string_equal(f->event_name, "MIGRATION");
	assert_string_equal(json_string_value(json_object_get(f->event_data,
							      "status")),
			    "completed");
	assert_int_equal(f->event_ts.seconds, 1700000000);
	assert_int_equal(f->event_ts.microseconds, 123456);
}

static void test_event_without_data_gets_empty_object(void **state)
{
	struct fixture *f = *state;

	qmp_client_on_event(&f->client, on_event, f);
	fakeqmp_negotiate(f->fake);
	fakeqmp_event(f->fake, "RESUME", NULL);
	assert_int_equal(connect_fake(f), 0);
	RUN_UNTIL(f, f->events == 1);
	assert_string_equal(f->event_name, "RESUME");
	assert_true(json_is_object(f->event_data));
	assert_int_equal(json_object_size(f->event_data), 0);
}

/* --- losing and closing the connection ------------------------------------------ */

static void test_connection_dropped_mid_message_fails_all_pending_then_disconnects(void **state)
{
	struct fixture *f = *state;
	int i;

	fakeqmp_negotiate(f->fake);
	fakeqmp_expect(f->fake, "a", NULL);
	fakeqmp_expect(f->fake, "b", NULL);
	fakeqmp_expect(f->fake, "c", NULL);
	fakeqmp_send(f->fake, "{\"return\": {}, \"id\": \"qck");
	fakeqmp_hangup(f->fake);
	assert_int_equal(connect_fake(f), 0);
	execute(f, 0, "a", NULL);
	execute(f, 1, "b", NULL);
	execute(f, 2, "c", NULL);
	RUN_UNTIL(f, f->disconnect_calls > 0);
	assert_int_equal(f->disconnect_calls, 1);
	assert_int_equal(f->disconnect_status, QMP_ECLOSED);
	for (i = 0; i < 3; i++) {
		assert_int_equal(f->replies[i].calls, 1);
		assert_int_equal(f->replies[i].status, QMP_ECLOSED);
		assert_true(f->replies[i].seq < f->disconnect_seq);
	}
	assert_int_equal(f->client.state, QMP_STATE_DISCONNECTED);
	assert_int_equal(qmp_client_execute(&f->client, "d", NULL, on_reply,
					    &f->replies[3]), QMP_ENOTREADY);
}

static void test_protocol_error_fails_pending_with_eproto(void **state)
{
	struct fixture *f = *state;
	struct reply *r;

	fakeqmp_negotiate(f->fake);
	fakeqmp_expect(f->fake, "a", NULL);
	fakeqmp_send(f->fake, "<html>\r\n");
	assert_int_equal(connect_fake(f), 0);
	r = execute(f, 0, "a", NULL);
	RUN_UNTIL(f, f->disconnect_calls > 0);
	assert_int_equal(r->calls, 1);
	assert_int_equal(r->status, QMP_EPROTO);
	assert_int_equal(f->disconnect_status, QMP_EPROTO);
}

static void test_close_from_inside_reply_callback_completes_the_rest(void **state)
{
	struct fixture *f = *state;

	fakeqmp_negotiate(f->fake);
	fakeqmp_expect(f->fake, "a", "{\"return\": {}, \"id\": %ID%}");
	fakeqmp_expect(f->fake, "b", NULL);
	fakeqmp_expect(f->fake, "c", NULL);
	assert_int_equal(connect_fake(f), 0);
	execute(f, 0, "a", NULL);
	execute(f, 1, "b", NULL);
	execute(f, 2, "c", NULL);
	f->close_in_callback = 1;
	RUN_UNTIL(f, f->close_calls > 0);
	assert_int_equal(f->replies[0].status, 0);
	assert_int_equal(f->replies[1].calls, 1);
	assert_int_equal(f->replies[1].status, QMP_ECLOSED);
	assert_int_equal(f->replies[2].calls, 1);
	assert_int_equal(f->replies[2].status, QMP_ECLOSED);
	assert_int_equal(f->disconnect_calls, 0); /* the user asked */
}

static void test_close_from_inside_connect_callback(void **state)
{
	struct fixture *f = *state;

	fakeqmp_negotiate(f->fake);
	f->close_in_callback = 1;
	assert_int_equal(connect_fake(f), 0);
	RUN_UNTIL(f, f->close_calls > 0);
	assert_int_equal(f->client.state, QMP_STATE_CLOSED);
}

static void test_close_from_inside_event_callback_stops_delivery(void **state)
{
	struct fixture *f = *state;

	qmp_client_on_event(&f->client, on_event, f);
	fakeqmp_negotiate(f->fake);
	/* Two events in one write: the second must not be delivered. */
	fakeqmp_send(f->fake,
		     "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, "
		     "\"microseconds\": 2}}\r\n{\"event\": \"RESUME\", "
		     "\"timestamp\": {\"seconds\": 1, \"microseconds\": 3}}\r\n");
	assert_int_equal(connect_fake(f), 0);
	f->close_in_callback = 1;
	RUN_UNTIL(f, f->close_calls > 0);
	assert_int_equal(f->events, 1);
	assert_string_equal(f->event_name, "STOP");
}

static void test_close_while_connecting_reports_eclosed(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(qmp_client_connect(&f->client, f->address, 0,
					    on_connect), 0);
	qmp_client_close(&f->client, on_closed);
	RUN_UNTIL(f, f->close_calls > 0);
	assert_int_equal(f->connect_calls, 1);
	assert_int_equal(f->connect_status, QMP_ECLOSED);
}

static void test_close_completes_pending_with_eclosed_before_close_cb(void **state)
{
	struct fixture *f = *state;

	fakeqmp_negotiate(f->fake);
	fakeqmp_expect(f->fake, "a", NULL);
	assert_int_equal(connect_fake(f), 0);
	execute(f, 0, "a", NULL);
	qmp_client_close(&f->client, on_closed);
	assert_int_equal(f->replies[0].calls, 1);
	assert_int_equal(f->replies[0].status, QMP_ECLOSED);
	assert_int_equal(f->close_calls, 0); /* handles close asynchronously */
	RUN_UNTIL(f, f->close_calls > 0);
	RUN_UNTIL(f, fakeqmp_peer_closed(f->fake));
}

static void on_disconnect_close(qmp_client *client, int status, void *arg)
{
	on_disconnect(client, status, arg);
	qmp_client_close(client, on_closed);
}

static void test_close_from_inside_disconnect_callback(void **state)
{
	struct fixture *f = *state;

	qmp_client_on_disconnect(&f->client, on_disconnect_close, f);
	fakeqmp_negotiate(f->fake);
	fakeqmp_hangup(f->fake);
	assert_int_equal(connect_fake(f), 0);
	RUN_UNTIL(f, f->close_calls > 0);
	assert_int_equal(f->disconnect_calls, 1);
	assert_int_equal(f->disconnect_status, QMP_ECLOSED);
}

static void on_trace_close(qmp_client *client, char dir, const char *text,
			   size_t len, void *arg)
{
	struct fixture *f = arg;

	/* Close while the client is sending "stop": inside execute itself. */
	if (dir == '>' && memmem(text, len, "\"stop\"", 6) != NULL)
		qmp_client_close(client, on_closed);
	(void)f;
}

static void test_close_from_inside_trace_while_sending_completes_command_once(void **state)
{
	struct fixture *f = *state;
	struct reply *r;

	fakeqmp_negotiate(f->fake);
	fakeqmp_expect(f->fake, "stop", "{\"return\": {}, \"id\": %ID%}");
	assert_int_equal(connect_fake(f), 0);
	qmp_client_on_trace(&f->client, on_trace_close, f);
	r = execute(f, 0, "stop", NULL);
	assert_int_equal(r->calls, 1);
	assert_int_equal(r->status, QMP_ECLOSED);
	RUN_UNTIL(f, f->close_calls > 0);
	assert_int_equal(r->calls, 1);
}

static void test_bad_fd_is_rejected_without_callback(void **state)
{
	struct fixture *f = *state;

	fakeqmp_negotiate(f->fake);
	assert_int_equal(connect_fake(f), 0);
	f->replies[0].f = f;
	assert_int_equal(qmp_client_execute_fd(&f->client, "getfd", NULL, -1,
					       on_reply, &f->replies[0]),
			 UV_EBADF);
	assert_int_equal(qmp_client_execute_fd(&f->client, "getfd", NULL, 999,
					       on_reply, &f->replies[0]),
			 UV_EBADF);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(f->replies[0].calls, 0);
	assert_null(f->client.pending);
}

/* --- file descriptors and tracing --------------------------------------------- */

static void test_fd_is_passed_with_command_over_unix_socket(void **state)
{
	struct fixture *f = *state;
	char path[128], text[8] = "";
	struct stat ours, theirs;
	struct reply *r;
	int fd, received, flags;

	snprintf(path, sizeof(path), "%s/passed", f->dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	flags = fcntl(fd, F_GETFL);
	fakeqmp_negotiate(f->fake);
	fakeqmp_expect(f->fake, "getfd", "{\"return\": {}, \"id\": %ID%}");
	assert_int_equal(connect_fake(f), 0);
	r = &f->replies[0];
	r->f = f;
	assert_int_equal(qmp_client_execute_fd(&f->client, "getfd",
					       json_pack("{s:s}", "fdname", "x"),
					       fd, on_reply, r), 0);
	RUN_UNTIL(f, r->calls > 0);
	assert_int_equal(r->status, 0);
	received = fakeqmp_command_fd(f->fake, 1);
	assert_true(received >= 0);
	assert_int_equal(fakeqmp_command_fd(f->fake, 0), -1);
	assert_int_equal(fstat(fd, &ours), 0);
	assert_int_equal(fstat(received, &theirs), 0);
	assert_int_equal(ours.st_ino, theirs.st_ino);
	assert_int_equal(ours.st_dev, theirs.st_dev);
	assert_int_equal(pwrite(received, "hi", 2, 0), 2);
	assert_int_equal(pread(fd, text, 2, 0), 2);
	assert_string_equal(text, "hi");
	/* The caller keeps its fd, with its flags (libuv sets O_NONBLOCK). */
	assert_int_equal(fcntl(fd, F_GETFL), flags);
	close(fd);
	unlink(path);
}

static void test_trace_sees_every_message_both_ways(void **state)
{
	struct fixture *f = *state;
	struct reply *r;

	fakeqmp_negotiate(f->fake);
	fakeqmp_expect(f->fake, "stop", "{\"return\": {}, \"id\": %ID%}");
	assert_int_equal(connect_fake(f), 0);
	r = execute(f, 0, "stop", NULL);
	RUN_UNTIL(f, r->calls > 0);
	assert_int_equal(f->traced_out, 2); /* qmp_capabilities, stop */
	assert_int_equal(f->traced_in, 3);  /* greeting, two replies */
}

/* --- guest agent mode ------------------------------------------------------ */

static int connect_agent(struct fixture *f, unsigned timeout_ms)
{
	assert_int_equal(qmp_client_connect_agent(&f->client, f->address,
						  timeout_ms, on_connect), 0);
	RUN_UNTIL(f, f->connect_calls > 0);
	assert_int_equal(f->connect_calls, 1);
	return f->connect_status;
}

static void test_agent_connect_resyncs_and_discards_stale_output(void **state)
{
	struct fixture *f = *state;
	json_t *sync;

	/* An earlier client's leftovers: half an object, a whole stale reply,
	 * then the agent's error for our 0xFF; after the sentinel a stale
	 * sync answer with another id, then ours. */
	fakeqmp_send(f->fake, "{\"return\": {\"half");
	fakeqmp_expect(f->fake, "guest-sync-delimited",
		       "{\"return\": 4}\r\n{\"error\": {\"class\": \"GenericError\", "
		       "\"desc\": \"JSON parse error\"}}\r\n"
		       "\xff{\"return\": 12345}\r\n" FAKEQMP_AGENT_SYNC);
	assert_int_equal(connect_agent(f, 0), 0);
	assert_int_equal(f->client.state, QMP_STATE_READY);
	assert_null(f->client.greeting);
	/* No qmp_capabilities: the agent takes none. */
	assert_int_equal(fakeqmp_command_count(f->fake), 1);
	sync = fakeqmp_command(f->fake, 0);
	assert_true(json_is_integer(json_object_get(json_object_get(sync, "arguments"), "id")));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(sync, "arguments"), "id")),
			 f->client.sync_id);
	/* Random, and small enough for any JSON reader to keep exact. */
	assert_true(f->client.sync_id > 0 && f->client.sync_id < (INT64_C(1) << 53));
	/* The request was preceded by 0xFF, so the agent drops stale input. */
	assert_int_equal(fakeqmp_sentinels(f->fake), 1);
	assert_fake_kept_script(f);
}

static void test_agent_replies_without_id_complete_in_order(void **state)
{
	struct fixture *f = *state;
	struct reply *a, *b;

	fakeqmp_expect(f->fake, "guest-sync-delimited", FAKEQMP_AGENT_SYNC);
	fakeqmp_expect_hold(f->fake, "guest-ping", "{\"return\": {}}");
	fakeqmp_expect_hold(f->fake, "guest-fsfreeze-status", "{\"return\": \"thawed\"}");
	fakeqmp_release(f->fake); /* sends the last held first */
	assert_int_equal(connect_agent(f, 0), 0);
	a = execute(f, 1, "guest-ping", NULL);
	b = execute(f, 2, "guest-fsfreeze-status", NULL);
	RUN_UNTIL(f, a->calls > 0 && b->calls > 0);
	/* Without ids the first answer is taken for the first command. */
	assert_int_equal(a->status, 0);
	assert_string_equal(json_string_value(a->result), "thawed");
	assert_true(json_is_object(b->result));
	assert_true(a->seq < b->seq);
}

static void test_agent_replies_with_id_are_matched_by_id(void **state)
{
	struct fixture *f = *state;
	struct reply *a, *b;

	fakeqmp_expect(f->fake, "guest-sync-delimited", FAKEQMP_AGENT_SYNC);
	fakeqmp_expect_hold(f->fake, "guest-fsfreeze-freeze", "{\"return\": 2, \"id\": %ID%}");
	fakeqmp_expect_hold(f->fake, "guest-fsfreeze-thaw", "{\"return\": 2, \"id\": %ID%}");
	fakeqmp_release(f->fake);
	assert_int_equal(connect_agent(f, 0), 0);
	a = execute(f, 1, "guest-fsfreeze-freeze", NULL);
	b = execute(f, 2, "guest-fsfreeze-thaw", NULL);
	RUN_UNTIL(f, a->calls > 0 && b->calls > 0);
	assert_int_equal(a->status, 0);
	assert_int_equal(b->status, 0);
	assert_true(b->seq < a->seq); /* released in reverse, matched by id */
	assert_true(json_is_string(json_object_get(fakeqmp_command(f->fake, 1), "id")));
}

static void test_agent_sentinel_mid_message_restarts_framing(void **state)
{
	struct fixture *f = *state;
	struct reply *r;

	fakeqmp_expect(f->fake, "guest-sync-delimited", FAKEQMP_AGENT_SYNC);
	fakeqmp_expect(f->fake, "guest-fsfreeze-freeze",
		       "{\"return\": {\"cut off\xff{\"return\": 1, \"id\": %ID%}");
	assert_int_equal(connect_agent(f, 0), 0);
	r = execute(f, 1, "guest-fsfreeze-freeze", NULL);
	RUN_UNTIL(f, r->calls > 0);
	assert_int_equal(r->status, 0);
	assert_int_equal(json_integer_value(r->result), 1);
	assert_int_equal(f->client.state, QMP_STATE_READY);
}

static void test_agent_not_answering_sync_times_out(void **state)
{
	struct fixture *f = *state;

	/* QEMU accepts the chardev connection even when no agent runs. */
	fakeqmp_expect(f->fake, "guest-sync-delimited", NULL);
	assert_int_equal(connect_agent(f, 100), QMP_ETIMEDOUT);
	assert_int_equal(f->client.state, QMP_STATE_DISCONNECTED);
	assert_int_equal(qmp_client_execute(&f->client, "guest-ping", NULL,
					    on_reply, NULL), QMP_ENOTREADY);
}

static void test_agent_hangup_fails_pending_and_disconnects(void **state)
{
	struct fixture *f = *state;
	struct reply *r;

	fakeqmp_expect(f->fake, "guest-sync-delimited", FAKEQMP_AGENT_SYNC);
	fakeqmp_expect(f->fake, "guest-fsfreeze-freeze", NULL);
	fakeqmp_hangup(f->fake);
	assert_int_equal(connect_agent(f, 0), 0);
	r = execute(f, 1, "guest-fsfreeze-freeze", NULL);
	RUN_UNTIL(f, r->calls > 0 && f->disconnect_calls > 0);
	assert_int_equal(r->status, QMP_ECLOSED);
	assert_true(r->seq < f->disconnect_seq);
}

static void test_qmp_mode_still_rejects_0xff(void **state)
{
	struct fixture *f = *state;

	/* QMP proper has no sentinel: a 0xFF byte is a protocol error. */
	fakeqmp_send(f->fake, "\xff" FAKEQMP_GREETING);
	assert_int_equal(connect_fake(f), QMP_EPROTO);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
#define T_TCP(name) cmocka_unit_test_setup_teardown(name, setup_tcp, teardown)
	const struct CMUnitTest tests[] = {
		T(test_connect_negotiates_capabilities_and_reads_version),
		T(test_greeting_arriving_in_pieces_is_assembled),
		T(test_malformed_greeting_fails_connect_with_eproto),
		T(test_garbage_instead_of_greeting_fails_connect_with_eproto),
		T(test_capabilities_error_fails_connect_with_ecommand),
		T(test_connect_times_out_when_no_greeting_comes),
		T(test_connect_to_missing_socket_fails),
		T(test_bad_addresses_are_rejected_with_eaddr),
		T_TCP(test_tcp_address_connects_and_negotiates),
		T_TCP(test_fd_over_tcp_is_not_supported),
		T(test_execute_before_connect_is_enotready),
		T(test_command_success_passes_return_value),
		T(test_command_error_keeps_class_and_desc_verbatim),
		T(test_replies_matched_by_id_when_out_of_order),
		T(test_many_commands_in_flight_each_complete_once),
		T(test_reply_with_unknown_id_is_ignored),
		T(test_timeout_fails_command_and_late_reply_is_ignored),
		T(test_default_timeout_applies_to_execute),
		T(test_events_carry_name_data_and_timestamp),
		T(test_event_without_data_gets_empty_object),
		T(test_connection_dropped_mid_message_fails_all_pending_then_disconnects),
		T(test_protocol_error_fails_pending_with_eproto),
		T(test_close_from_inside_reply_callback_completes_the_rest),
		T(test_close_from_inside_connect_callback),
		T(test_close_from_inside_event_callback_stops_delivery),
		T(test_close_while_connecting_reports_eclosed),
		T(test_close_completes_pending_with_eclosed_before_close_cb),
		T(test_close_from_inside_disconnect_callback),
		T(test_close_from_inside_trace_while_sending_completes_command_once),
		T(test_bad_fd_is_rejected_without_callback),
		T(test_fd_is_passed_with_command_over_unix_socket),
		T(test_trace_sees_every_message_both_ways),
		T(test_agent_connect_resyncs_and_discards_stale_output),
		T(test_agent_replies_without_id_complete_in_order),
		T(test_agent_replies_with_id_are_matched_by_id),
		T(test_agent_sentinel_mid_message_restarts_framing),
		T(test_agent_not_answering_sync_times_out),
		T(test_agent_hangup_fails_pending_and_disconnects),
		T(test_qmp_mode_still_rejects_0xff),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
