/*
 * cmd-pin.c: "qckpt pin NAME CHECKPOINT" and "qckpt unpin NAME
 * CHECKPOINT": a "Pinned": true key in the record, which retention
 * (checkpoint --keep, prune) honours by never removing the checkpoint.
 * Unpinning removes the key.  Both write the record crash-safely and do
 * nothing (successfully) when it already says so.
 */
#include <string.h>

#include "catalog.h"
#include "cmd.h"
#include "log.h"
#include "recedit.h"

static int cmd_pin_exec(int argc, char **argv);
static int cmd_unpin_exec(int argc, char **argv);

const struct cmd_entry cmd_pin_entry = {
	.name = "pin",
	.alias = NULL,
	.usage = "NAME CHECKPOINT",
	.summary = "keep a checkpoint from retention (--keep, prune)",
	.exec = cmd_pin_exec,
	.flags = CMD_F_REMOTE,
};

const struct cmd_entry cmd_unpin_entry = {
	.name = "unpin",
	.alias = NULL,
	.usage = "NAME CHECKPOINT",
	.summary = "let retention remove a pinned checkpoint again",
	.exec = cmd_unpin_exec,
	.flags = CMD_F_REMOTE,
};

static int set_pinned(const struct cmd_entry *entry, int argc, char **argv, int pinned)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		{ NULL, 0, NULL, 0 },
	};
	struct rec_target t;
	int opt, rc;

	optind = 1;
	while ((opt = cmd_getopt(entry, argc, argv, CMD_COMMON_SHORT, longopts)) != -1) {
		if (opt == CMD_OPT_HELP)
			return EXIT_ALL_OK;
		return cmd_usage(entry);
	}
	if (argc - optind != 2)
		return cmd_usage(entry);
	rc = rec_target_open(&t, argv[optind], argv[optind + 1], entry->name);
	if (rc == 0 && json_is_true(json_object_get(t.record, "Pinned")) != pinned) {
		if (pinned)
			json_object_set_new(t.record, "Pinned", json_true());
		else
			json_object_del(t.record, "Pinned");
		if (rec_target_write(&t, t.record) < 0)
			rc = EXIT_SOME_FAILED;
	}
	if (rc == 0)
		verbose_vm(t.vm, "checkpoint %.8s %s", json_string_value(json_object_get(t.record, "Id")) ?: "?",
			   pinned ? "pinned" : "unpinned");
	rec_target_close(&t);
	return rc;
}

static int cmd_pin_exec(int argc, char **argv)
{
	return set_pinned(&cmd_pin_entry, argc, argv, 1);
}

static int cmd_unpin_exec(int argc, char **argv)
{
	return set_pinned(&cmd_unpin_entry, argc, argv, 0);
}
