/*
 * cmd-stop.c: "qckpt stop NAME[,NAME...]", Hyper-V's Stop-VM for QEMU: ask
 * the guest to power down (system_powerdown, the ACPI power button), wait
 * for QEMU to go away, and quit QEMU when the guest has not powered down
 * within --timeout seconds (or at once with --turn-off).  It is what the
 * qckpt-vm@.service unit runs as ExecStop=, so that a VM under systemd
 * stops cleanly instead of being killed.
 *
 * Every wait is an event: the SHUTDOWN event (a guest that powered off
 * while QEMU runs with -no-shutdown), the monitor closing (QEMU exiting),
 * or the timer.  Many VMs stop at once on one loop.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "log.h"
#include "util.h"
#include "vmconn.h"

static int cmd_stop_exec(int argc, char **argv);

const struct cmd_entry cmd_stop_entry = {
	.name = "stop",
	.alias = NULL,
	.usage = "[--timeout SECONDS] [--turn-off] NAME[,NAME...]",
	.summary = "power VMs down (ACPI), quitting QEMU after a timeout",
	.exec = cmd_stop_exec,
};

enum {
	OPT_TIMEOUT = OPT_COMMON_LAST,
	OPT_TURN_OFF,
};

#define STOP_DEFAULT_TIMEOUT_S 60

struct stop_vm {
	struct vmconn conn;
	uv_timer_t timer;
	unsigned timeout_s;
	int turn_off;
	int quit_sent;
	int done;
	int failed;
};

static void stop_finish(struct stop_vm *s, int failed);

static void stop_finish(struct stop_vm *s, int failed)
{
	if (s->done)
		return;
	s->done = 1;
	s->failed = failed;
	uv_timer_stop(&s->timer);
	vmconn_close(&s->conn, NULL);
}

static void on_quit_reply(qmp_client *client, int status, json_t *result,
			  const struct qmp_error *qerr, void *arg)
{
	struct stop_vm *s = arg;

	/* QEMU answers and closes; a close that overtakes the answer is
	 * the same success.  The disconnect ends the wait. */
	if (status == QMP_ECOMMAND) {
		error_vm(s->conn.vm, "quit: %s; stop QEMU by its pid", qerr->desc);
		stop_finish(s, 1);
	}
}

static void stop_send_quit(struct stop_vm *s)
{
	if (s->quit_sent || s->done)
		return;
	s->quit_sent = 1;
	if (qmp_client_execute(&s->conn.qmp, "quit", NULL, on_quit_reply, s) < 0)
		stop_finish(s, 0); /* the connection is gone: so is QEMU */
}

static void on_timeout(uv_timer_t *timer)
{
	struct stop_vm *s = timer->data;

	warn_vm(s->conn.vm, "the guest did not power down within %u s: quitting QEMU",
		s->timeout_s);
	stop_send_quit(s);
}

static void on_powerdown_reply(qmp_client *client, int status, json_t *result,
			       const struct qmp_error *qerr, void *arg)
{
	struct stop_vm *s = arg;

	if (status == QMP_ECOMMAND) {
		warn_vm(s->conn.vm, "system_powerdown: %s: quitting QEMU", qerr->desc);
		stop_send_quit(s);
	}
}

static void on_event(qmp_client *client, const char *name, json_t *data,
		     const struct qmp_timestamp *ts, void *arg)
{
	struct stop_vm *s = arg;

	/* The guest is off; QEMU stays only with -no-shutdown. */
	if (strcmp(name, "SHUTDOWN") == 0)
		stop_send_quit(s);
}

static void on_disconnect(qmp_client *client, int status, void *arg)
{
	struct stop_vm *s = arg;

	verbose_vm(s->conn.vm, "QEMU has exited");
	stop_finish(s, 0);
}

static void on_ready(struct vmconn *conn, int status)
{
	struct stop_vm *s = conn->data;

	if (status == UV_ENOENT || status == UV_ECONNREFUSED) {
		/* Nobody serves the socket: the VM is not running. */
		verbose_vm(conn->vm, "not running (%s)", conn->reason);
		stop_finish(s, 0);
		return;
	}
	if (status < 0) {
		error_vm(conn->vm, "%s", conn->error);
		stop_finish(s, 1);
		return;
	}
	qmp_client_on_event(&conn->qmp, on_event, s);
	qmp_client_on_disconnect(&conn->qmp, on_disconnect, s);
	if (s->turn_off) {
		stop_send_quit(s);
		return;
	}
	if (qmp_client_execute(&conn->qmp, "system_powerdown", NULL,
			       on_powerdown_reply, s) < 0) {
		stop_finish(s, 0);
		return;
	}
	uv_timer_start(&s->timer, on_timeout, (uint64_t)s->timeout_s * 1000, 0);
}

static int parse_timeout(const char *text, unsigned *out)
{
	long v;

	if (parse_long(text, 0, 86400, &v) < 0)
		return error("--timeout: whole seconds from 0 to 86400, not '%s'", text);
	*out = (unsigned)v;
	return 0;
}

/* Connect to every VM; the loop then runs them all at once. */
static int stop_start(uv_loop_t *loop, const struct registry *reg, char *list,
		      struct stop_vm ***vms, size_t *n, unsigned timeout_s,
		      int turn_off)
{
	char *save = NULL, err[512];
	int rc = 0;

	for (char *name = strtok_r(list, ",", &save); name;
	     name = strtok_r(NULL, ",", &save)) {
		struct stop_vm *s;
		char *monitor = NULL, *expect = NULL;

		if (vmconn_resolve(reg, name, &monitor, &expect, err, sizeof err) < 0) {
			error_vm(name, "%s", err);
			rc = -1;
			continue;
		}
		*vms = xrealloc(*vms, (*n + 1) * sizeof **vms);
		s = xcalloc(1, sizeof *s);
		(*vms)[(*n)++] = s;
		s->timeout_s = timeout_s;
		s->turn_off = turn_off;
		s->conn.data = s;
		s->timer.data = s;
		uv_timer_init(loop, &s->timer);
		if (vmconn_open(loop, &s->conn, name, monitor, expect, 10000, on_ready) < 0)
			on_ready(&s->conn, -EINVAL);
		free(monitor);
		free(expect);
	}
	return rc;
}

static int cmd_stop_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "turn-off", no_argument, NULL, OPT_TURN_OFF },
		{ NULL, 0, NULL, 0 },
	};
	unsigned timeout_s = STOP_DEFAULT_TIMEOUT_S;
	struct stop_vm **vms = NULL;
	struct registry reg;
	size_t n = 0;
	uv_loop_t loop;
	char err[512];
	int opt, turn_off = 0, rc = EXIT_ALL_OK;

	optind = 1;
	while ((opt = cmd_getopt(&cmd_stop_entry, argc, argv, CMD_COMMON_SHORT, longopts)) != -1) {
		if (opt == CMD_OPT_HELP)
			return EXIT_ALL_OK;
		if (opt == OPT_TIMEOUT) {
			if (parse_timeout(optarg, &timeout_s) < 0)
				return EXIT_USAGE;
		} else if (opt == OPT_TURN_OFF) {
			turn_off = 1;
		} else {
			return cmd_usage(&cmd_stop_entry);
		}
	}
	if (argc - optind < 1)
		return cmd_usage(&cmd_stop_entry);
	if (registry_load(cmd_registry_path, &reg, err, sizeof err) < 0)
		return error("%s", err), EXIT_USAGE;
	uv_loop_init(&loop);
	for (int i = optind; i < argc; i++) {
		char *list = xstrdup(argv[i]);

		if (stop_start(&loop, &reg, list, &vms, &n, timeout_s, turn_off) < 0)
			rc = EXIT_SOME_FAILED;
		free(list);
	}
	registry_free(&reg);
	uv_run(&loop, UV_RUN_DEFAULT);
	/* Every connection is closed; the timers go too. */
	for (size_t i = 0; i < n; i++)
		uv_close((uv_handle_t *)&vms[i]->timer, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	for (size_t i = 0; i < n; i++) {
		if (vms[i]->failed)
			rc = EXIT_SOME_FAILED;
		free(vms[i]);
	}
	free(vms);
	return rc;
}
