/*
 * test-qmp-framer.c: unit tests of the QMP message splitter (qmp/framer.c),
 * without sockets: bytes are fed exactly as a test wants them to arrive.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "qmp.h"
#include "framer.h"

/* Take every complete message, appending them to a JSON array. */
static int drain(struct qmp_framer *framer, json_t *out)
{
	json_t *msg;
	int r;

	while ((r = qmp_framer_next(framer, &msg, NULL, NULL)) == 1)
		json_array_append_new(out, msg);
	return r;
}

static const char two_messages[] =
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, "
	"\"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n"
	"{\"return\": {\"text\": \"a } \\\" { [ ] \\\\\"}, \"id\": \"qckpt-1\"}\r\n";

static void check_two_messages(json_t *got)
{
	json_t *reply;

	assert_int_equal(json_array_size(got), 2);
	assert_non_null(json_object_get(json_array_get(got, 0), "QMP"));
	reply = json_array_get(got, 1);
	assert_string_equal(json_string_value(json_object_get(
				    json_object_get(reply, "return"), "text")),
			    "a } \" { [ ] \\");
	assert_string_equal(json_string_value(json_object_get(reply, "id")),
			    "qckpt-1");
}

static void test_message_split_at_every_byte_position_is_reassembled(void **state)
{
	size_t len = strlen(two_messages), cut;

	for (cut = 0; cut <= len; cut++) {
		struct qmp_framer *framer = qmp_framer_new(0);
		json_t *got = json_array();

		assert_int_equal(qmp_framer_feed(framer, two_messages, cut), 0);
		assert_true(drain(framer, got) == 0);
		assert_int_equal(qmp_framer_feed(framer, two_messages + cut,
						 len - cut), 0);
		assert_true(drain(framer, got) == 0);
		check_two_messages(got);
		json_decref(got);
		qmp_framer_free(framer);
	}
}

static void test_message_fed_one_byte_at_a_time_is_reassembled(void **state)
{
	struct qmp_framer *framer = qmp_framer_new(0);
	json_t *got = json_array();
	size_t i;

	for (i = 0; two_messages[i] != '\0'; i++) {
		assert_int_equal(qmp_framer_feed(framer, two_messages + i, 1), 0);
		assert_int_equal(drain(framer, got), 0);
	}
	check_two_messages(got);
	json_decref(got);
	qmp_framer_free(framer);
}

static void test_many_messages_in_one_buffer_come_out_in_order(void **state)
{
	struct qmp_framer *framer = qmp_framer_new(0);
	json_t *got = json_array();
	char *buf = malloc(1000 * 64), *p = buf;
	int i;

	for (i = 0; i < 1000; i++)
		p += sprintf(p, "{\"return\": %d, \"id\": \"qckpt-%d\"}\r\n", i, i);
	assert_int_equal(qmp_framer_feed(framer, buf, (size_t)(p - buf)), 0);
	assert_int_equal(drain(framer, got), 0);
	assert_int_equal(json_array_size(got), 1000);
	for (i = 0; i < 1000; i++)
		assert_int_equal(json_integer_value(json_object_get(
					 json_array_get(got, i), "return")), i);
	assert_int_equal(qmp_framer_buffered(framer), 0);
	free(buf);
	json_decref(got);
	qmp_framer_free(framer);
}

/* query-qmp-schema is several MiB; it must not be rescanned per read. */
static void test_five_mib_message_fed_in_64k_chunks_arrives_whole(void **state)
{
	struct qmp_framer *framer = qmp_framer_new(0);
	size_t size = 5u << 20, len = 0, off, n;
	char *buf = malloc(size + 256);
	const char *raw = NULL;
	size_t raw_len = 0;
	json_t *msg = NULL;
	int r = 0;

	len += (size_t)sprintf(buf, "{\"return\": [");
	while (len < size)
		len += (size_t)sprintf(buf + len,
			"{\"name\": \"x{\\\"}\", \"n\": [1, 2, {}]}, ");
	len += (size_t)sprintf(buf + len, "{}], \"id\": \"qckpt-9\"}\r\n");
	for (off = 0; off < len; off += n) {
		n = len - off < 65536 ? len - off : 65536;
		assert_int_equal(qmp_framer_feed(framer, buf + off, n), 0);
		r = qmp_framer_next(framer, &msg, &raw, &raw_len);
		assert_true(r >= 0);
		if (r == 1)
			break;
	}
	assert_int_equal(r, 1);
	assert_int_equal(raw_len, len - 2); /* without the \r\n */
	assert_string_equal(json_string_value(json_object_get(msg, "id")),
			    "qckpt-9");
	/* Each byte was examined once, not once per read. */
	assert_int_equal(qmp_framer_scanned(framer), len - 2);
	json_decref(msg);
	free(buf);
	qmp_framer_free(framer);
}

static void test_reserve_and_commit_work_like_feed(void **state)
{
	struct qmp_framer *framer = qmp_framer_new(0);
	json_t *got = json_array();
	size_t room = 0, len = strlen(two_messages);
	char *space = qmp_framer_reserve(framer, &room);

	assert_non_null(space);
	assert_true(room >= len);
	memcpy(space, two_messages, len);
	qmp_framer_commit(framer, len);
	assert_int_equal(drain(framer, got), 0);
	check_two_messages(got);
	json_decref(got);
	qmp_framer_free(framer);
}

static void test_whitespace_and_crlf_between_messages_are_skipped(void **state)
{
	static const char text[] = " \r\n\t{\"a\": 1}\r\n\r\n  {\"b\": 2}\n";
	struct qmp_framer *framer = qmp_framer_new(0);
	json_t *got = json_array();

	assert_int_equal(qmp_framer_feed(framer, text, strlen(text)), 0);
	assert_int_equal(drain(framer, got), 0);
	assert_int_equal(json_array_size(got), 2);
	assert_int_equal(qmp_framer_buffered(framer), 0);
	json_decref(got);
	qmp_framer_free(framer);
}

static void expect_error(const char *text, size_t max, int error)
{
	struct qmp_framer *framer = qmp_framer_new(max);
	json_t *got = json_array();

	assert_int_equal(qmp_framer_feed(framer, text, strlen(text)), 0);
	assert_int_equal(drain(framer, got), error);
	json_decref(got);
	qmp_framer_free(framer);
}

static void test_garbage_outside_an_object_is_eproto(void **state)
{
	expect_error("hello\r\n", 0, QMP_EPROTO);
	expect_error("{\"a\": 1}\r\nx{\"b\": 2}", 0, QMP_EPROTO);
	expect_error("[1, 2]\r\n", 0, QMP_EPROTO);
	expect_error("\"string\"", 0, QMP_EPROTO);
	expect_error("}", 0, QMP_EPROTO);
}

static void test_invalid_json_inside_braces_is_eproto(void **state)
{
	expect_error("{\"a\": nope}", 0, QMP_EPROTO);
	expect_error("{\"a\" 1}", 0, QMP_EPROTO);
	expect_error("{\"a\": [1}]", 0, QMP_EPROTO);
}

static void test_braces_and_escaped_quotes_inside_strings_do_not_end_message(void **state)
{
	static const char text[] =
		"{\"desc\": \"}}} \\\\\\\" {{{ \\\"}\\\\\", \"k\": {\"x\": \"]\"}}";
	struct qmp_framer *framer = qmp_framer_new(0);
	json_t *msg;

	assert_int_equal(qmp_framer_feed(framer, text, strlen(text) - 1), 0);
	assert_int_equal(qmp_framer_next(framer, &msg, NULL, NULL), 0);
	assert_int_equal(qmp_framer_feed(framer, "}", 1), 0);
	assert_int_equal(qmp_framer_next(framer, &msg, NULL, NULL), 1);
	assert_string_equal(json_string_value(json_object_get(msg, "desc")),
			    "}}} \\\" {{{ \"}\\");
	json_decref(msg);
	qmp_framer_free(framer);
}

static void test_message_over_the_limit_is_etoobig_even_before_it_ends(void **state)
{
	struct qmp_framer *framer = qmp_framer_new(100);
	char big[300];
	json_t *msg;

	memset(big, ' ', sizeof(big));
	big[0] = '{';
	assert_int_equal(qmp_framer_feed(framer, big, sizeof(big)), 0);
	assert_int_equal(qmp_framer_next(framer, &msg, NULL, NULL), QMP_ETOOBIG);
	assert_null(msg);
	qmp_framer_free(framer);

	/* Exactly at the limit is fine. */
	framer = qmp_framer_new(9);
	assert_int_equal(qmp_framer_feed(framer, "{\"a\": 12}{\"a\": 123}", 19), 0);
	assert_int_equal(qmp_framer_next(framer, &msg, NULL, NULL), 1);
	json_decref(msg);
	assert_int_equal(qmp_framer_next(framer, &msg, NULL, NULL), QMP_ETOOBIG);
	qmp_framer_free(framer);
}

static void test_errors_are_sticky(void **state)
{
	struct qmp_framer *framer = qmp_framer_new(0);
	json_t *msg;

	assert_int_equal(qmp_framer_feed(framer, "x", 1), 0);
	assert_int_equal(qmp_framer_next(framer, &msg, NULL, NULL), QMP_EPROTO);
	assert_int_equal(qmp_framer_feed(framer, "{}", 2), 0);
	assert_int_equal(qmp_framer_next(framer, &msg, NULL, NULL), QMP_EPROTO);
	qmp_framer_free(framer);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_message_split_at_every_byte_position_is_reassembled),
		cmocka_unit_test(test_message_fed_one_byte_at_a_time_is_reassembled),
		cmocka_unit_test(test_many_messages_in_one_buffer_come_out_in_order),
		cmocka_unit_test(test_five_mib_message_fed_in_64k_chunks_arrives_whole),
		cmocka_unit_test(test_reserve_and_commit_work_like_feed),
		cmocka_unit_test(test_whitespace_and_crlf_between_messages_are_skipped),
		cmocka_unit_test(test_garbage_outside_an_object_is_eproto),
		cmocka_unit_test(test_invalid_json_inside_braces_is_eproto),
		cmocka_unit_test(test_braces_and_escaped_quotes_inside_strings_do_not_end_message),
		cmocka_unit_test(test_message_over_the_limit_is_etoobig_even_before_it_ends),
		cmocka_unit_test(test_errors_are_sticky),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
