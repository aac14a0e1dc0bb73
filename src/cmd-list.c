/*
 * cmd-list.c: "qckpt list [NAME...]", Hyper-V's Get-VMSnapshot: the
 * checkpoints recorded for each VM, oldest first, as a table, as JSON lines
 * (--json, the same objects `checkpoint --passthru` prints) or as a tree of
 * parents and children (--tree).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "cmd.h"
#include "log.h"
#include "output.h"
#include "registry.h"
#include "util.h"

static int cmd_list_exec(int argc, char **argv);

const struct cmd_entry cmd_list_entry = {
	.name = "list",
	.alias = "snapshots",
	.usage = "[--json|--tree] [NAME...]",
	.summary = "list the checkpoints of VMs (all registered VMs by default)",
	.exec = cmd_list_exec,
};

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "-";
}

static void print_row(json_t *r, int depth)
{
	char when[20];

	/* "2026-11-25T07:55:45.594+00:00" -> "2026-11-25 07:55:45" */
	snprintf(when, sizeof when, "%.10s %.8s", jstr(r, "CreationTime"),
		 jstr(r, "CreationTime") + (strlen(jstr(r, "CreationTime")) > 11 ? 11 : 0));
	printf("%-16s %*s%-*s %-8.8s %-19s %-9s %-10s %7lld\n", jstr(r, "VMName"),
	       depth * 2, "", 24 - depth * 2 > 0 ? 24 - depth * 2 : 1, jstr(r, "Name"),
	       jstr(r, "Id"), when, jstr(r, "CheckpointType"), jstr(r, "Mode"),
	       (long long)json_integer_value(json_object_get(r, "PauseMs")));
}

static void print_tree(json_t *list, const char *parent, int depth)
{
	size_t i;
	json_t *r;

	json_array_foreach(list, i, r) {
		const char *p = json_string_value(json_object_get(r, "ParentCheckpointId"));

		if ((parent == NULL && p == NULL) || (parent && p && strcmp(parent, p) == 0)) {
			print_row(r, depth);
			print_tree(list, jstr(r, "Id"), depth + 1);
		}
	}
}

/* Records whose parent is not in the list are roots too. */
static void fix_orphans(json_t *list)
{
	size_t i, j;
	json_t *r, *q;

	json_array_foreach(list, i, r) {
		const char *p = json_string_value(json_object_get(r, "ParentCheckpointId"));
		int found = 0;

		json_array_foreach(list, j, q)
			if (p && strcmp(p, jstr(q, "Id")) == 0)
				found = 1;
		if (p && !found)
			json_object_set_new(r, "ParentCheckpointId", json_null());
	}
}

static void list_vm(const char *vm, const char *root, int json, int tree)
{
	json_t *list = catalog_list(root, vm);
	size_t i;
	json_t *r;

	if (json) {
		json_array_foreach(list, i, r)
			output_json_line(r);
	} else if (tree) {
		json_t *copy = json_deep_copy(list);

		fix_orphans(copy);
		print_tree(copy, NULL, 0);
		json_decref(copy);
	} else {
		json_array_foreach(list, i, r)
			print_row(r, 0);
	}
	json_decref(list);
}

static int cmd_list_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		{ "json", no_argument, NULL, 'j' },
		{ "tree", no_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	struct registry reg;
	char err[512];
	int opt, json = 0, tree = 0, rc = EXIT_ALL_OK;

	optind = 1;
	while ((opt = cmd_getopt(&cmd_list_entry, argc, argv, CMD_COMMON_SHORT, longopts)) != -1) {
		if (opt == CMD_OPT_HELP)
			return EXIT_ALL_OK;
		if (opt == 'j')
			json = 1;
		else if (opt == 't')
			tree = 1;
		else
			return cmd_usage(&cmd_list_entry);
	}
	/* Names become paths in the catalog: "../x" must not leave it. */
	for (int i = optind; i < argc; i++)
		if (!registry_valid_name(argv[i]))
			return error("'%s' is not a VM name (letters, digits, '.', '_' and '-', not starting with '-' or '.'); see 'qckpt vms'",
				     argv[i]), EXIT_USAGE;
	if (registry_load(cmd_registry_path, &reg, err, sizeof err) < 0)
		return error("%s", err), EXIT_USAGE;
	if (!json)
		printf("%-16s %-24s %-8s %-19s %-9s %-10s %7s\n", "VMName", "Name", "Id",
		       "CreationTime", "Type", "Mode", "PauseMs");
	if (optind == argc) {
		for (size_t i = 0; i < reg.count; i++) {
			char *root = catalog_root(&reg.entries[i]);

			list_vm(reg.entries[i].name, root, json, tree);
			free(root);
		}
	}
	for (int i = optind; i < argc; i++) {
		const struct registry_entry *e = registry_find(&reg, argv[i]);
		char *root = catalog_root(e);
		char *dir = catalog_vm_dir(root, argv[i]);

		if (e == NULL && access(dir, F_OK) != 0) {
			error_vm(argv[i], "not in the registry and no checkpoints in %s; check the name with 'qckpt list'", root);
			rc = EXIT_SOME_FAILED;
		} else {
			list_vm(argv[i], root, json, tree);
		}
		free(dir);
		free(root);
	}
	registry_free(&reg);
	return rc;
}
