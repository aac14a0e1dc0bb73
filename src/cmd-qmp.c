/*
 * cmd-qmp.c: "qckpt qmp TARGET COMMAND [JSON-ARGUMENTS]", one raw QMP
 * command, like virsh qemu-monitor-command: a debugging aid and the first
 * user of the qmp/ library.  Prints QEMU's "return" value as JSON; on a QMP
 * error prints QEMU's class and text and exits 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "log.h"
#include "registry.h"
#include "util.h"
#include "vmconn.h"

static int cmd_qmp_exec(int argc, char **argv);

const struct cmd_entry cmd_qmp_entry = {
	.name = "qmp",
	.alias = "monitor",
	.usage = "[-v] [--debug] [--pretty] TARGET COMMAND [JSON-ARGUMENTS]",
	.summary = "send one raw QMP command to a VM and print the reply",
	.exec = cmd_qmp_exec,
	.flags = CMD_F_REMOTE,
};

struct qmp_call {
	struct vmconn conn;
	const char *command;
	json_t *args;
	int pretty;
	int exit_status;
};

static void on_reply(qmp_client *client, int status, json_t *result,
		     const struct qmp_error *qerr, void *arg)
{
	struct qmp_call *call = arg;

	if (status == 0) {
		char *text = json_dumps(result, JSON_ENCODE_ANY |
				(call->pretty ? JSON_INDENT(2) : JSON_COMPACT));

		printf("%s\n", text ? text : "null");
		free(text);
		call->exit_status = EXIT_ALL_OK;
	} else if (status == QMP_ECOMMAND) {
		error_vm(call->conn.vm, "%s: %s: %s", call->command,
			 qerr->klass, qerr->desc);
	} else {
		vmconn_explain(&call->conn, status, qerr, call->command);
		error_vm(call->conn.vm, "%s", call->conn.error);
	}
	vmconn_close(&call->conn, NULL);
}

static void on_ready(struct vmconn *conn, int status)
{
	struct qmp_call *call = conn->data;
	json_t *args = call->args;

	call->args = NULL;
	if (status == 0)
		status = qmp_client_execute(&conn->qmp, call->command, args,
					    on_reply, call);
	else
		json_decref(args);
	if (status < 0) {
		if (conn->error[0] == '\0')
			vmconn_explain(conn, status, NULL, call->command);
		error_vm(conn->vm, "%s", conn->error);
		vmconn_close(conn, NULL);
	}
}

static json_t *parse_arguments(const char *text)
{
	json_error_t jerr;
	json_t *args = json_loads(text, 0, &jerr);

	if (args == NULL) {
		error("JSON-ARGUMENTS: %s at column %d; give one JSON object, e.g. '{\"device\":\"drive0\"}'",
		      jerr.text, jerr.column);
		return NULL;
	}
	if (!json_is_object(args)) {
		json_decref(args);
		error("JSON-ARGUMENTS must be a JSON object, e.g. '{\"device\":\"drive0\"}'");
		return NULL;
	}
	return args;
}

static int cmd_qmp_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		{ "pretty", no_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	struct qmp_call call = { .exit_status = EXIT_SOME_FAILED };
	struct registry reg;
	char err[512], *monitor = NULL, *expect = NULL;
	uv_loop_t loop;
	int opt;

	optind = 1;
	while ((opt = cmd_getopt(&cmd_qmp_entry, argc, argv, "+" CMD_COMMON_SHORT "p", longopts)) != -1) {
		if (opt == CMD_OPT_HELP)
			return EXIT_ALL_OK;
		if (opt == 'p')
			call.pretty = 1;
		else
			return cmd_usage(&cmd_qmp_entry);
	}
	if (argc - optind < 2 || argc - optind > 3)
		return cmd_usage(&cmd_qmp_entry);
	call.command = argv[optind + 1];
	if (argc - optind == 3 &&
	    (call.args = parse_arguments(argv[optind + 2])) == NULL)
		return EXIT_USAGE;
	if (registry_load(cmd_registry_path, &reg, err, sizeof err) < 0) {
		json_decref(call.args);
		return error("%s", err), EXIT_USAGE;
	}
	if (vmconn_resolve(&reg, argv[optind], &monitor, &expect, err,
			   sizeof err) < 0) {
		registry_free(&reg);
		json_decref(call.args);
		return error_vm(argv[optind], "%s", err), EXIT_USAGE;
	}
	registry_free(&reg);
	uv_loop_init(&loop);
	call.conn.data = &call;
	if (vmconn_open(&loop, &call.conn, argv[optind], monitor, expect, 0,
			on_ready) < 0) {
		error_vm(argv[optind], "%s", call.conn.error);
		json_decref(call.args);
		vmconn_close(&call.conn, NULL);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	free(monitor);
	free(expect);
	return call.exit_status;
}
