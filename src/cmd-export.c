/*
 * cmd-export.c: "qckpt export NAME CHECKPOINT DIR [--compress]", Hyper-V's
 * Export-VMSnapshot: the command line only.  The export itself, a task on
 * one libuv loop with qemu-img as child processes, is export.c.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "catalog.h"
#include "cmd.h"
#include "export.h"
#include "log.h"
#include "recedit.h"
#include "util.h"

static int cmd_export_exec(int argc, char **argv);

const struct cmd_entry cmd_export_entry = {
	.name = "export",
	.alias = NULL,
	.usage = "[--compress] [--progress=auto|none|json] NAME CHECKPOINT DIR",
	.summary = "copy a checkpoint to a directory: flattened disks, memory, command line",
	.exec = cmd_export_exec,
	.flags = CMD_F_REMOTE,
};

enum {
	OPT_COMPRESS = OPT_COMMON_LAST,
	OPT_PROGRESS,
};

struct export_cmd {
	struct export e;
	uv_loop_t loop;
	uv_signal_t sigint, sigterm;
};

static void on_export_done(struct export *e)
{
	struct export_cmd *c = e->data;

	uv_close((uv_handle_t *)&c->sigint, NULL);
	uv_close((uv_handle_t *)&c->sigterm, NULL);
}

static void on_signal(uv_signal_t *handle, int signum)
{
	struct export_cmd *c = handle->data;

	export_interrupt(&c->e);
}

static int cmd_export_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		{ "compress", no_argument, NULL, OPT_COMPRESS },
		{ "progress", required_argument, NULL, OPT_PROGRESS },
		{ NULL, 0, NULL, 0 },
	};
	struct export_cmd c = { 0 };
	struct rec_target t;
	json_t *state;
	int opt, compress = 0, rc;
	enum progress_output progress = PROGRESS_AUTO;

	optind = 1;
	while ((opt = cmd_getopt(&cmd_export_entry, argc, argv, CMD_COMMON_SHORT, longopts)) != -1) {
		if (opt == CMD_OPT_HELP)
			return EXIT_ALL_OK;
		if (opt == OPT_PROGRESS && progress_parse(optarg, &progress) < 0)
			return error("--progress: auto, none or json, not '%s'", optarg), EXIT_USAGE;
		else if (opt == OPT_COMPRESS)
			compress = 1;
		else if (opt != OPT_PROGRESS)
			return cmd_usage(&cmd_export_entry);
	}
	if (argc - optind != 3)
		return cmd_usage(&cmd_export_entry);
	rc = rec_target_open(&t, argv[optind], argv[optind + 1], NULL);
	if (rc != 0) {
		rec_target_close(&t);
		return rc;
	}
	state = catalog_load_vm(t.root, t.vm);
	uv_loop_init(&c.loop);
	uv_signal_init(&c.loop, &c.sigint);
	uv_signal_init(&c.loop, &c.sigterm);
	c.sigint.data = c.sigterm.data = &c;
	uv_signal_start(&c.sigint, on_signal, SIGINT);
	uv_signal_start(&c.sigterm, on_signal, SIGTERM);
	c.e.data = &c;
	progress_board_open(progress);
	if (export_start(&c.e, &c.loop, t.vm, t.record, state, argv[optind + 2], compress,
			 on_export_done) < 0) {
		on_export_done(&c.e);
		error_vm(t.vm, "export failed: %s", c.e.task.error);
		rc = EXIT_SOME_FAILED;
	} else {
		uv_run(&c.loop, UV_RUN_DEFAULT);
		if (c.e.task.error_status != 0) {
			error_vm(t.vm, "export failed: %s", c.e.task.error);
			rc = EXIT_SOME_FAILED;
		} else {
			verbose_vm(t.vm, "checkpoint %.8s exported to %s in %llu ms",
				   json_string_value(json_object_get(t.record, "Id")) ?: "?", c.e.dir,
				   (unsigned long long)(mono_ms() - c.e.start_ms));
		}
	}
	uv_run(&c.loop, UV_RUN_DEFAULT);
	uv_loop_close(&c.loop);
	progress_board_close();
	export_free(&c.e);
	json_decref(state);
	rec_target_close(&t);
	return rc;
}
