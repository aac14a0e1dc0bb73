/*
 * cmd-rename.c: "qckpt rename NAME CHECKPOINT NEWNAME", Hyper-V's
 * Rename-VMSnapshot.  The record is rewritten crash-safely (a reader sees
 * the old name or the new, never half a file).  Names may repeat among
 * checkpoints that were made with them, but a rename that would make two
 * checkpoints of the VM share a name is refused: the user is choosing the
 * name now, and a name that matches two records no longer picks one.
 * The children's ParentCheckpointName and vm.json's CurrentCheckpointName
 * follow, so that `list --json` never shows the old name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "cmd.h"
#include "log.h"
#include "recedit.h"
#include "util.h"

static int cmd_rename_exec(int argc, char **argv);

const struct cmd_entry cmd_rename_entry = {
	.name = "rename",
	.alias = NULL,
	.usage = "NAME CHECKPOINT NEWNAME",
	.summary = "give a checkpoint a new name",
	.exec = cmd_rename_exec,
	.flags = CMD_F_REMOTE,
};

/* Another record of the VM already called NEWNAME, or NULL. */
static json_t *name_taken(json_t *list, json_t *self, const char *newname)
{
	size_t i;
	json_t *r;

	json_array_foreach(list, i, r)
		if (r != self && strcmp(json_string_value(json_object_get(r, "Name")) ?: "", newname) == 0)
			return r;
	return NULL;
}

/* What names the checkpoint elsewhere: its children's parent name, and
 * vm.json when the VM runs on it.  Best effort: the record is renamed. */
static void follow_name(struct rec_target *t, const char *id, const char *newname)
{
	json_t *r, *state;
	size_t i;

	json_array_foreach(t->list, i, r) {
		if (strcmp(json_string_value(json_object_get(r, "ParentCheckpointId")) ?: "", id) != 0)
			continue;
		json_object_set_new(r, "ParentCheckpointName", json_string(newname));
		if (rec_target_write(t, r) < 0)
			warn_vm(t->vm, "checkpoint %.8s still names its parent by the old name", json_string_value(json_object_get(r, "Id")) ?: "?");
	}
	if (!catalog_vm_exists(t->root, t->vm))
		return;
	state = catalog_load_vm(t->root, t->vm);
	if (strcmp(json_string_value(json_object_get(state, "CurrentCheckpointId")) ?: "", id) == 0) {
		json_object_set_new(state, "CurrentCheckpointName", json_string(newname));
		if (catalog_write_vm(t->root, t->vm, state) < 0)
			warn_vm(t->vm, "vm.json still names the current checkpoint by the old name");
	}
	json_decref(state);
}

static int cmd_rename_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		{ NULL, 0, NULL, 0 },
	};
	struct rec_target t;
	const char *newname;
	char *old = NULL, *id = NULL;
	json_t *other;
	int opt, rc;

	optind = 1;
	while ((opt = cmd_getopt(&cmd_rename_entry, argc, argv, CMD_COMMON_SHORT, longopts)) != -1) {
		if (opt == CMD_OPT_HELP)
			return EXIT_ALL_OK;
		return cmd_usage(&cmd_rename_entry);
	}
	if (argc - optind != 3)
		return cmd_usage(&cmd_rename_entry);
	newname = argv[optind + 2];
	if (!catalog_valid_name(newname))
		return error("bad checkpoint name: 1 to 200 characters, no control characters"), EXIT_USAGE;
	rc = rec_target_open(&t, argv[optind], argv[optind + 1], cmd_rename_entry.name);
	if (rc != 0)
		goto out;
	old = xstrdup(json_string_value(json_object_get(t.record, "Name")) ?: "");
	id = xstrdup(json_string_value(json_object_get(t.record, "Id")) ?: "");
	if ((other = name_taken(t.list, t.record, newname)) != NULL) {
		error_vm(t.vm, "checkpoint %.8s is already called '%s'; choose another name (or rename that one first)",
			 json_string_value(json_object_get(other, "Id")) ?: "?", newname);
		rc = EXIT_SOME_FAILED;
		goto out;
	}
	json_object_set_new(t.record, "Name", json_string(newname));
	if (rec_target_write(&t, t.record) < 0) {
		rc = EXIT_SOME_FAILED;
		goto out;
	}
	follow_name(&t, id, newname);
	verbose_vm(t.vm, "checkpoint %.8s renamed from '%s' to '%s'", id, old, newname);
out:
	free(old);
	free(id);
	rec_target_close(&t);
	return rc;
}
