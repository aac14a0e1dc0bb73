/*
 * test-registry.c: the registry file format (qckpt-registry(5)) without
 * QEMU: what parses, and that every mistake is refused with FILE:LINE; and
 * what a tcp:/tls: monitor implies (its host, the memory state's URI there).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate.h"
#include "registry.h"
#include "vmconn.h"

static void test_entries_with_every_key_parse(void **state)
{
	struct registry reg;
	char err[256];
	const struct registry_entry *e;

	assert_int_equal(registry_parse("reg",
		"# comment\n\n  web  unix:/run/web.sock dir=/var/ck overlay-dir=/fast type=production agent=/run/web-ga.sock # trailing\n"
		"db /run/db.sock type=disabled\r\n"
		"ci tcp:127.0.0.1:4444 remote-dir=/srv/vm/memory\n", &reg, err, sizeof err), 0);
	assert_int_equal(reg.count, 3);
	assert_string_equal(registry_find(&reg, "ci")->remote_dir, "/srv/vm/memory");
	assert_null(registry_find(&reg, "web")->remote_dir);
	e = registry_find(&reg, "web");
	assert_non_null(e);
	assert_string_equal(e->monitor, "unix:/run/web.sock");
	assert_string_equal(e->dir, "/var/ck");
	assert_string_equal(e->overlay_dir, "/fast");
	assert_string_equal(e->agent, "/run/web-ga.sock");
	assert_int_equal(e->type, VM_TYPE_PRODUCTION);
	assert_int_equal(e->line, 3);
	assert_int_equal(registry_find(&reg, "db")->type, VM_TYPE_DISABLED);
	assert_null(registry_find(&reg, "nosuch"));
	registry_free(&reg);
}

static void refused(const char *text, const char *want)
{
	struct registry reg;
	char err[256];

	assert_int_equal(registry_parse("/etc/qckpt/registry", text, &reg, err, sizeof err), -1);
	if (strstr(err, want) == NULL)
		fail_msg("'%s' not in '%s'", want, err);
}

static void test_mistakes_are_refused_with_file_and_line(void **state)
{
	refused("vm1 /a.sock\nvm2 /b.sock colour=blue\n", "/etc/qckpt/registry:2: unknown key");
	refused("vm1\n", ":1: missing monitor");
	refused("vm1 relative.sock\n", ":1: bad monitor");
	refused("-vm /a.sock\n", ":1: bad VM name");
	refused("vm1 /a.sock\nvm1 /b.sock\n", ":2: VM name registered twice");
	refused("vm1 /a.sock type=sometimes\n", "type must be");
	refused("vm1 /a.sock dir=relative\n", "absolute");
	refused("vm1 /a.sock dir=/x dir=/y\n", "twice");
	refused("vm1 tcp:h:1 remote-dir=relative\n", "absolute");
	refused("vm1 /a.sock dir=\n", "empty value");
	refused("vm1 /a.sock novalue\n", "key=value");
	refused("vm1 /a.sock name-check=maybe\n", "name-check must be on or off");
}

/* name-check: on unless the line says off. */
static void test_name_check_is_on_unless_turned_off(void **state)
{
	struct registry reg;
	char err[256];

	assert_int_equal(registry_parse("/r", "a /a.sock\nb /b.sock name-check=off\nc /c.sock name-check=on\n",
					&reg, err, sizeof err), 0);
	assert_int_equal(registry_find(&reg, "a")->name_check_off, 0);
	assert_int_equal(registry_find(&reg, "b")->name_check_off, 1);
	assert_int_equal(registry_find(&reg, "c")->name_check_off, 0);
	registry_free(&reg);
}

static void test_missing_default_registry_is_empty_but_named_one_is_an_error(void **state)
{
	struct registry reg;
	char err[256];

	setenv("XDG_CONFIG_HOME", "/nonexistent-qckpt-test", 1);
	unsetenv("QCKPT_REGISTRY");
	/* /etc/qckpt/registry may exist on a developer machine: only check
	 * that an explicit missing file is refused. */
	assert_int_equal(registry_load("/nonexistent-qckpt-test/reg", &reg, err, sizeof err), -1);
	assert_non_null(strstr(err, "/nonexistent-qckpt-test/reg"));
	setenv("QCKPT_REGISTRY", "/nonexistent-qckpt-test/env-reg", 1);
	assert_int_equal(registry_load(NULL, &reg, err, sizeof err), -1);
	assert_non_null(strstr(err, "env-reg"));
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	static char buf[4096];
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void test_add_and_remove_keep_comments_and_order(void **state)
{
	char dir[] = "/tmp/qckpt-registry-test.XXXXXX";
	char path[256], err[512];
	char *keys[] = { "dir=/srv/ck", "type=production" };
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/sub/registry", dir);
	/* created with its directory when missing */
	assert_int_equal(registry_add(path, "a", "/run/a.sock", NULL, 0, err, sizeof err), 0);
	assert_string_equal(slurp(path), "a /run/a.sock\n");
	f = fopen(path, "a");
	fputs("# keep me\n\nb unix:/run/b.sock   # and me\n", f);
	fclose(f);
	assert_int_equal(registry_add(path, "c", "/run/c.sock", keys, 2, err, sizeof err), 0);
	assert_string_equal(slurp(path),
		"a /run/a.sock\n# keep me\n\nb unix:/run/b.sock   # and me\nc /run/c.sock dir=/srv/ck type=production\n");
	/* duplicates and bad keys are refused, the file unchanged */
	assert_int_equal(registry_add(path, "b", "/run/x.sock", NULL, 0, err, sizeof err), -1);
	assert_non_null(strstr(err, "already registered"));
	{
		char *bad[] = { "colour=blue" };

		assert_int_equal(registry_add(path, "d", "/run/d.sock", bad, 1, err, sizeof err), -1);
		assert_non_null(strstr(err, "unknown key"));
	}
	assert_int_equal(registry_remove(path, "b", err, sizeof err), 0);
	assert_string_equal(slurp(path),
		"a /run/a.sock\n# keep me\n\nc /run/c.sock dir=/srv/ck type=production\n");
	assert_int_equal(registry_remove(path, "b", err, sizeof err), -1);
	assert_non_null(strstr(err, "not registered"));
	/* a name that is a prefix of another removes only its own line */
	assert_int_equal(registry_add(path, "cc", "/run/cc.sock", NULL, 0, err, sizeof err), 0);
	assert_int_equal(registry_remove(path, "c", err, sizeof err), 0);
	assert_string_equal(slurp(path), "a /run/a.sock\n# keep me\n\ncc /run/cc.sock\n");
	{
		char cmd[300];

		snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
		assert_int_equal(system(cmd), 0);
	}
}

static void test_agent_takes_the_forms_of_the_monitor(void **state)
{
	struct registry reg;
	char err[256];

	assert_int_equal(registry_parse("reg",
		"a /run/a.sock agent=unix:/run/a-ga.sock\n"
		"b /run/b.sock agent=/run/b-ga.sock\n"
		"c unix:/run/c.sock agent=tcp:localhost:4445\n", &reg, err, sizeof err), 0);
	assert_string_equal(registry_find(&reg, "a")->agent, "unix:/run/a-ga.sock");
	assert_string_equal(registry_find(&reg, "c")->agent, "tcp:localhost:4445");
	registry_free(&reg);
	refused("a /run/a.sock agent=unix:relative\n", ":1: agent must be unix:PATH");
	refused("a /run/a.sock agent=relative\n", ":1: agent must be unix:PATH");
	refused("a /run/a.sock dir=unix:/x\n", ":1: path must be absolute");
}

static void test_unix_path_is_one_helper_for_every_spelling(void **state)
{
	assert_string_equal(registry_unix_path("unix:/run/x.qmp"), "/run/x.qmp");
	assert_string_equal(registry_unix_path("/run/x.qmp"), "/run/x.qmp");
	assert_null(registry_unix_path("unix:x.qmp"));
	assert_null(registry_unix_path("x.qmp"));
	assert_null(registry_unix_path("tcp:localhost:4444"));
	assert_true(registry_valid_monitor("unix:/a"));
	assert_true(registry_valid_monitor("/a"));
	assert_true(registry_valid_monitor("tcp:h:1"));
	assert_false(registry_valid_monitor("unix:a"));
	assert_false(registry_valid_monitor("tcp:nohostport"));
}

static void test_add_refuses_values_that_would_make_another_word_or_line(void **state)
{
	char dir[] = "/tmp/qckpt-registry-test.XXXXXX";
	char path[256], err[512], before[4096];
	char *newline[] = { "dir=/x\nevil unix:/tmp/evil.qmp" };
	char *blank[] = { "overlay-dir=/a b" };
	char *hash[] = { "#dir=/x" };

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/registry", dir);
	assert_int_equal(registry_add(path, "a", "/run/a.sock", NULL, 0, err, sizeof err), 0);
	snprintf(before, sizeof before, "%s", slurp(path));
	assert_int_equal(registry_add(path, "b", "/run/b.sock", newline, 1, err, sizeof err), -1);
	assert_non_null(strstr(err, "setting 'dir'"));
	assert_int_equal(registry_add(path, "b", "/run/b.sock", blank, 1, err, sizeof err), -1);
	assert_int_equal(registry_add(path, "b", "/run/b.sock", hash, 1, err, sizeof err), -1);
	assert_int_equal(registry_add(path, "b", "/run/b\nc /run/c.sock", NULL, 0, err, sizeof err), -1);
	assert_non_null(strstr(err, "without blanks or control characters"));
	assert_int_equal(registry_add(path, "b", "/run/b\t.sock", NULL, 0, err, sizeof err), -1);
	assert_int_equal(registry_add(path, "b\nc", "/run/b.sock", NULL, 0, err, sizeof err), -1);
	assert_string_equal(slurp(path), before);
	{
		char cmd[300];

		snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
		assert_int_equal(system(cmd), 0);
	}
}

/* tcp:/tls: monitors: the host their files are on, for the record. */
static void test_network_monitors_name_their_host(void **state)
{
	const char *cases[][2] = {
		{ "tcp:127.0.0.1:4444", "127.0.0.1" },
		{ "tls:qemu1.example:5900", "qemu1.example" },
		{ "tcp:[::1]:4444", "::1" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *host = vmconn_network_host(cases[i][0]);

		assert_string_equal(host, cases[i][1]);
		free(host);
	}
	assert_null(vmconn_network_host("unix:/run/a.sock"));
	assert_null(vmconn_network_host("/run/a.sock"));
}

/* The memory state QEMU writes on its own host: file: where QEMU takes it,
 * else exec:cat with the path quoted so that any byte arrives unchanged. */
static void test_memory_uri_on_the_qemu_host_is_quoted_for_its_shell(void **state)
{
	struct migrate_plan plan;
	json_t *caps = json_pack("[{s:s, s:b}]", "capability", "events", "state", 0);
	json_t *params = json_object(), *args;
	json_t *schema = json_pack("[{s:s, s:s, s:[s,s,s,s]}]", "name", "123", "meta-type",
				   "enum", "values", "socket", "exec", "rdma", "file");

	migrate_plan_init(&plan, caps, params, 0, "0123456789abcdef");
	assert_false(migrate_has_file_transport(caps, NULL));
	migrate_plan_remote(&plan, "/vm/it's a $(dir);\n/web.memory", 0);
	args = migrate_args(&plan);
	assert_string_equal(json_string_value(json_object_get(args, "uri")),
			    "exec:cat >'/vm/it'\\''s a $(dir);\n/web.memory'");
	json_decref(args);
	assert_true(migrate_has_file_transport(caps, schema));
	migrate_plan_remote(&plan, "/vm/it's/web.memory", 1);
	args = migrate_args(&plan);
	assert_string_equal(json_string_value(json_object_get(args, "uri")), "file:/vm/it's/web.memory");
	json_decref(args);
	migrate_plan_free(&plan);
	json_decref(caps);
	json_decref(params);
	json_decref(schema);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entries_with_every_key_parse),
		cmocka_unit_test(test_network_monitors_name_their_host),
		cmocka_unit_test(test_memory_uri_on_the_qemu_host_is_quoted_for_its_shell),
		cmocka_unit_test(test_mistakes_are_refused_with_file_and_line),
		cmocka_unit_test(test_name_check_is_on_unless_turned_off),
		cmocka_unit_test(test_missing_default_registry_is_empty_but_named_one_is_an_error),
		cmocka_unit_test(test_add_and_remove_keep_comments_and_order),
		cmocka_unit_test(test_agent_takes_the_forms_of_the_monitor),
		cmocka_unit_test(test_unix_path_is_one_helper_for_every_spelling),
		cmocka_unit_test(test_add_refuses_values_that_would_make_another_word_or_line),
	};

	return cmocka_run_group_tests_name("registry", tests, NULL, NULL);
}
