/*
 * test-output.c: the tables qckpt prints for people (src/output.c): columns
 * measured in display width, so that long type names and non-ASCII
 * checkpoint names keep them in line.  No QEMU needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "output.h"

/* The table printed, as one string (malloc'd). */
static char *printed(struct output_table *t)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	output_table_print(t, f);
	fclose(f);
	return text;
}

static void test_display_width_counts_columns_not_bytes(void **state)
{
	(void)state;
	assert_int_equal(output_display_width(""), 0);
	assert_int_equal(output_display_width("Production"), 10);
	assert_int_equal(output_display_width("caf\xc3\xa9"), 4);            /* café */
	assert_int_equal(output_display_width("cafe\xcc\x81"), 4);           /* e + combining acute */
	assert_int_equal(output_display_width("\xe6\x95\xb0\xe6\x8d\xae"), 4); /* 数据: wide */
	assert_int_equal(output_display_width("\xef\xbc\xa1"), 2);            /* fullwidth A */
	/* bytes that are not UTF-8 count one column each */
	assert_int_equal(output_display_width("a\xff" "b"), 3);
}

static void test_table_columns_fit_the_widest_cell(void **state)
{
	static const char *const headers[] = { "Name", "Type", "PauseMs" };
	struct output_table *t = output_table_new("llr", headers);
	char *text;

	(void)state;
	output_table_add(t, (const char *const[]){ "a", "Production", "12" });
	output_table_add(t, (const char *const[]){ "before-update", "Standard", "1234" });
	text = printed(t);
	assert_string_equal(text,
			    "Name          Type       PauseMs\n"
			    "a             Production      12\n"
			    "before-update Standard      1234\n");
	free(text);
}

static void test_table_lines_up_non_ascii_names(void **state)
{
	static const char *const headers[] = { "Name", "Type", "Mode" };
	struct output_table *t = output_table_new("lll", headers);
	char *text;

	(void)state;
	output_table_add(t, (const char *const[]){ "caf\xc3\xa9", "Standard", "live" });
	output_table_add(t, (const char *const[]){ "\xe6\x95\xb0\xe6\x8d\xae\xe5\xba\x93", "DiskOnly", "disk-only" });
	text = printed(t);
	/* 数据库 is 6 columns wide, café 4: the next column starts at 7 */
	assert_string_equal(text,
			    "Name   Type     Mode\n"
			    "caf\xc3\xa9   Standard live\n"
			    "\xe6\x95\xb0\xe6\x8d\xae\xe5\xba\x93 DiskOnly disk-only\n");
	free(text);
}

static void test_padding_counts_display_columns(void **state)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	(void)state;
	assert_non_null(f);
	output_padded(f, "/vm/\xe6\x95\xb0.qcow2", 14); /* 数 is 2 columns: 12 in all */
	output_padded(f, "|", 0);
	output_padded(f, "too-wide", 3);
	fclose(f);
	assert_string_equal(text, "/vm/\xe6\x95\xb0.qcow2  |too-wide");
	free(text);
}

static void test_short_time_keeps_date_and_seconds(void **state)
{
	char out[32];

	(void)state;
	output_short_time("2026-11-25T07:55:45.594+01:00", out, sizeof out);
	assert_string_equal(out, "2026-11-25 07:55:45");
	output_short_time("-", out, sizeof out);
	assert_string_equal(out, "-");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_display_width_counts_columns_not_bytes),
		cmocka_unit_test(test_table_columns_fit_the_widest_cell),
		cmocka_unit_test(test_table_lines_up_non_ascii_names),
		cmocka_unit_test(test_padding_counts_display_columns),
		cmocka_unit_test(test_short_time_keeps_date_and_seconds),
	};

	return cmocka_run_group_tests_name("output tables", tests, NULL, NULL);
}
