/*
 * cmd-register.c: "qckpt register NAME MONITOR [key=value...]" and
 * "qckpt unregister NAME": the registry's two writers.  The file is changed
 * by registry_add/registry_remove (under a lock, checked by the parser,
 * written crash-safely, comments and order kept); this file only checks the
 * arguments so that a mistake is refused with one line naming it, and, for
 * register, asks the socket (when it answers) whether it belongs to NAME.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "log.h"
#include "registry.h"
#include "util.h"
#include "vmconn.h"

#define REGISTER_CHECK_TIMEOUT_MS 2000u

static int cmd_register_exec(int argc, char **argv);
static int cmd_unregister_exec(int argc, char **argv);

const struct cmd_entry cmd_register_entry = {
	.name = "register",
	.alias = NULL,
	.usage = "[--no-check] [--registry FILE] NAME MONITOR [key=value...]",
	.summary = "add a VM to the registry (name, QMP monitor, settings)",
	.exec = cmd_register_exec,
};

const struct cmd_entry cmd_unregister_entry = {
	.name = "unregister",
	.alias = NULL,
	.usage = "[--registry FILE] NAME",
	.summary = "remove a VM from the registry (its checkpoints are kept)",
	.exec = cmd_unregister_exec,
};

/* S for a message on one line: control characters shown as \n, \t, \xNN. */
static const char *printable(const char *s, char *buf, size_t len)
{
	size_t n = 0;

	for (const char *p = s; *p && n + 5 < len; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '\n' || c == '\t')
			n += (size_t)snprintf(buf + n, len - n, "\\%c", c == '\n' ? 'n' : 't');
		else if (iscntrl(c))
			n += (size_t)snprintf(buf + n, len - n, "\\x%02x", c);
		else
			buf[n++] = (char)c;
	}
	buf[n] = '\0';
	return buf;
}

/*
 * Check the arguments as the parser will, one key at a time so the message
 * names the key at fault.  0, or -1 after printing one line.
 */
static int check_arguments(const char *name, const char *monitor,
			   char *const *keys, size_t nkeys)
{
	struct registry reg;
	char err[512], *line, shown[256];
	int rc;

	if (!registry_one_word(name) || !registry_valid_name(name))
		return error("bad VM name '%s': letters, digits, '.', '_' and '-', at most 64, not starting with '-' or '.'",
			     printable(name, shown, sizeof shown));
	if (!registry_one_word(monitor) || !registry_valid_monitor(monitor))
		return error_vm(name, "bad monitor '%s': give unix:/ABSOLUTE/PATH, an absolute socket path, tcp:HOST:PORT or tls:HOST:PORT",
				printable(monitor, shown, sizeof shown));
	for (size_t i = 0; i < nkeys; i++) {
		if (!registry_one_word(keys[i]))
			return error_vm(name, "bad setting '%s': key=value without blanks (known keys: dir, overlay-dir, remote-dir, agent, type)",
					printable(keys[i], shown, sizeof shown));
		line = xasprintf("%s %s %s\n", name, monitor, keys[i]);
		rc = registry_parse("-", line, &reg, err, sizeof err);
		free(line);
		if (rc < 0)
			/* err is "-:1: why" */
			return error_vm(name, "bad setting '%s': %s", keys[i],
					strchr(err + 2, ':') ? strchr(err + 2, ':') + 2 : err);
		registry_free(&reg);
	}
	for (size_t i = 0; i < nkeys; i++)
		for (size_t j = 0; j < i; j++)
			if (strncmp(keys[i], keys[j], strcspn(keys[j], "=") + 1) == 0)
				return error_vm(name, "setting '%.*s' given twice",
						(int)strcspn(keys[i], "="), keys[i]);
	return 0;
}

/* A relative socket path that exists is made absolute (QEMU and later
 * qckpt runs need not share this working directory). */
static char *absolute_monitor(const char *monitor)
{
	if (monitor[0] != '/' && strchr(monitor, ':') == NULL &&
	    access(monitor, F_OK) == 0) {
		char *abs = absolute_path(monitor);

		if (abs != NULL)
			return abs;
	}
	return xstrdup(monitor);
}

/* ---- the socket check ------------------------------------------------- */

struct register_check {
	struct vmconn conn;
	const char *name;
};

static void on_check_ready(struct vmconn *conn, int status)
{
	struct register_check *c = conn->data;

	if (status < 0)
		verbose_vm(c->name, "registered; the monitor does not answer now (%s)",
			   conn->error);
	else if (conn->qemu_name == NULL)
		warn_vm(c->name, "QEMU at %s has no -name, so qckpt cannot check that the socket belongs to '%s'; start QEMU with -name %s",
			conn->monitor, c->name, c->name);
	else if (strcmp(conn->qemu_name, c->name) != 0)
		warn_vm(c->name, "registered, but the socket %s belongs to the VM named '%s' (query-name): qckpt will refuse it until the names agree; start QEMU with -name %s or register it as '%s'",
			conn->monitor, conn->qemu_name, c->name, conn->qemu_name);
	else
		verbose_vm(c->name, "the monitor answers with the same name");
	vmconn_close(conn, NULL);
}

/* Connect with a short timeout and compare query-name with NAME.  Only
 * warns: a VM may well be registered before it is started. */
static void check_socket(const char *name, const char *monitor)
{
	struct register_check c = { .name = name };
	uv_loop_t loop;

	uv_loop_init(&loop);
	c.conn.data = &c;
	/* No expected name: the comparison is done here, as a warning. */
	if (vmconn_open(&loop, &c.conn, name, monitor, NULL,
			REGISTER_CHECK_TIMEOUT_MS, on_check_ready) < 0) {
		verbose_vm(name, "registered; the monitor does not answer now (%s)",
			   c.conn.error);
		vmconn_close(&c.conn, NULL);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
}

/* ---- the commands ------------------------------------------------------- */

enum { OPT_NO_CHECK = OPT_COMMON_LAST };

static int parse_options(const struct cmd_entry *entry, int argc, char **argv,
			 int *no_check)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		{ "no-check", no_argument, NULL, OPT_NO_CHECK },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	optind = 1;
	while ((opt = cmd_getopt(entry, argc, argv, CMD_COMMON_SHORT, longopts)) != -1) {
		if (opt == CMD_OPT_HELP)
			return 1;
		if (opt == OPT_NO_CHECK && no_check != NULL)
			*no_check = 1;
		else
			return -1;
	}
	return 0;
}

static int cmd_register_exec(int argc, char **argv)
{
	char err[512], *path, *monitor;
	int no_check = 0, rc;
	const char *name;

	rc = parse_options(&cmd_register_entry, argc, argv, &no_check);
	if (rc != 0)
		return rc > 0 ? EXIT_ALL_OK : cmd_usage(&cmd_register_entry);
	if (argc - optind < 2)
		return cmd_usage(&cmd_register_entry);
	name = argv[optind];
	monitor = absolute_monitor(argv[optind + 1]);
	if (check_arguments(name, monitor, argv + optind + 2,
			    (size_t)(argc - optind - 2)) < 0) {
		free(monitor);
		return EXIT_USAGE;
	}
	path = registry_path_for_writing(cmd_registry_path);
	rc = registry_add(path, name, monitor, argv + optind + 2,
			  (size_t)(argc - optind - 2), err, sizeof err);
	if (rc < 0) {
		error("%s", err);
	} else {
		verbose_vm(name, "registered in %s", path);
		if (!no_check)
			check_socket(name, monitor);
	}
	free(path);
	free(monitor);
	return rc < 0 ? EXIT_USAGE : EXIT_ALL_OK;
}

static int cmd_unregister_exec(int argc, char **argv)
{
	char err[512], *path;
	int rc;

	rc = parse_options(&cmd_unregister_entry, argc, argv, NULL);
	if (rc != 0)
		return rc > 0 ? EXIT_ALL_OK : cmd_usage(&cmd_unregister_entry);
	if (argc - optind != 1)
		return cmd_usage(&cmd_unregister_entry);
	if (!registry_valid_name(argv[optind]))
		return error("bad VM name '%s': letters, digits, '.', '_' and '-', at most 64, not starting with '-' or '.'",
			     argv[optind]), EXIT_USAGE;
	path = registry_path_for_writing(cmd_registry_path);
	rc = registry_remove(path, argv[optind], err, sizeof err);
	if (rc < 0)
		error("%s", err);
	else
		verbose_vm(argv[optind], "removed from %s; its checkpoints are kept", path);
	free(path);
	return rc < 0 ? EXIT_USAGE : EXIT_ALL_OK;
}
