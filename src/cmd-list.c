/*
 * cmd-list.c: "qckpt list [NAME...]", Hyper-V's Get-VMSnapshot: the
 * checkpoints recorded for each VM, oldest first, as a table, as JSON lines
 * (--json, the same objects `checkpoint --passthru` prints, with a Current
 * flag and a Pinned flag) or as a tree of parents and children (--tree) with "Now" under the
 * checkpoint the VM's current state grew from, as Hyper-V Manager draws it.
 * Restores make branches: a checkpoint can have several children.
 */
#include <dirent.h>
#include <langinfo.h>
#include <locale.h>
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
	.flags = CMD_F_REMOTE,
	.json_option = "--json",
	.columns = (const char *const[]){ "VMName", "Name", "Id", "CreationTime", "CheckpointType", "Mode", "PauseMs", NULL },
};

/* How a tree is drawn: box-drawing characters on a UTF-8 terminal,
 * ASCII elsewhere (a pipe, a file, another locale). */
struct tree_glyphs {
	const char *tee, *ell, *bar, *gap;
};

static const struct tree_glyphs glyphs_utf8 = { "\u251c\u2500 ", "\u2514\u2500 ", "\u2502  ", "   " };
static const struct tree_glyphs glyphs_ascii = { "|-- ", "`-- ", "|   ", "    " };

static const struct tree_glyphs *tree_glyphs(void)
{
	locale_t loc;
	int utf8 = 0;

	if (!isatty(STDOUT_FILENO))
		return &glyphs_ascii;
	loc = newlocale(LC_CTYPE_MASK, "", (locale_t)0);
	if (loc != (locale_t)0) {
		const char *cs = nl_langinfo_l(CODESET, loc);

		utf8 = strcmp(cs, "UTF-8") == 0 || strcmp(cs, "utf8") == 0;
		freelocale(loc);
	}
	return utf8 ? &glyphs_utf8 : &glyphs_ascii;
}

struct tree {
	struct output_table *t;
	json_t *list;
	json_t *current; /* the record "Now" hangs under, or NULL */
	const struct tree_glyphs *g;
};

/* One record's row; in a tree, its name after the tree's lines (LEAD). */
static void add_row(struct output_table *t, json_t *r, const char *lead)
{
	char when[32], id[9], pause[24];
	char *name = xasprintf("%s%s", lead, output_str(r, "Name", "-"));

	output_short_time(output_str(r, "CreationTime", "-"), when, sizeof when);
	snprintf(id, sizeof id, "%s", output_str(r, "Id", "-"));
	snprintf(pause, sizeof pause, "%lld",
		 (long long)json_integer_value(json_object_get(r, "PauseMs")));
	output_table_add(t, (const char *const[]){ output_str(r, "VMName", "-"), name, id, when,
			 output_str(r, "CheckpointType", "-"), output_str(r, "Mode", "-"), pause,
			 json_is_true(json_object_get(r, "Pinned")) ? "yes" : "-" });
	free(name);
}

static int is_child(json_t *r, const char *parent)
{
	const char *p = json_string_value(json_object_get(r, "ParentCheckpointId"));

	return parent == NULL ? p == NULL : p != NULL && strcmp(parent, p) == 0;
}

static void add_now(struct tree *tr, const char *lead)
{
	char *name = xasprintf("%sNow", lead);

	output_table_add(tr->t, (const char *const[]){ "", name, "", "", "", "", "", "" });
	free(name);
}

/*
 * The children of PARENT (NULL: the roots), oldest first.  PREFIX is the
 * lines drawn for the ancestors; roots are drawn flush, without lines.
 */
static void add_tree(struct tree *tr, json_t *parent, const char *prefix)
{
	const char *pid = parent ? output_str(parent, "Id", "") : NULL;
	int now = parent != NULL && parent == tr->current;
	size_t i, n = 0, k = 0;
	json_t *r;

	json_array_foreach(tr->list, i, r)
		n += is_child(r, pid);
	json_array_foreach(tr->list, i, r) {
		int last;
		char *lead, *below;

		if (!is_child(r, pid))
			continue;
		last = ++k == n && !now;
		lead = xasprintf("%s%s", prefix, parent ? (last ? tr->g->ell : tr->g->tee) : "");
		below = xasprintf("%s%s", prefix, parent ? (last ? tr->g->gap : tr->g->bar) : "");
		add_row(tr->t, r, lead);
		add_tree(tr, r, below);
		free(lead);
		free(below);
	}
	if (now) {
		char *lead = xasprintf("%s%s", prefix, tr->g->ell);

		add_now(tr, lead);
		free(lead);
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
			if (p && strcmp(p, output_str(q, "Id", "-")) == 0)
				found = 1;
		if (p && !found)
			json_object_set_new(r, "ParentCheckpointId", json_null());
	}
}

/* The VM's records as JSON lines (t NULL) or rows of t. */
static void list_vm(const char *vm, const char *root, struct output_table *t, int tree)
{
	json_t *list = catalog_list(root, vm);
	json_t *current = catalog_current(root, vm, list);
	size_t i;
	json_t *r;

	if (t == NULL) {
		json_array_foreach(list, i, r) {
			json_object_set_new(r, "Current", json_boolean(r == current));
			/* Always there in JSON, as Current: false when unpinned. */
			json_object_set_new(r, "Pinned", json_boolean(json_is_true(json_object_get(r, "Pinned"))));
			output_json_line(r);
		}
	} else if (tree) {
		struct tree tr = { .t = t, .list = list, .current = current, .g = tree_glyphs() };

		fix_orphans(list);
		add_tree(&tr, NULL, "");
	} else {
		json_array_foreach(list, i, r)
			add_row(t, r, "");
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
	static const char *const headers[] = { "VMName", "Name", "Id", "CreationTime",
					       "Type", "Mode", "PauseMs", "Pinned" };
	struct output_table *t = NULL;
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
		t = output_table_new("llllllrl", headers);
	if (optind == argc) {
		for (size_t i = 0; i < reg.count; i++) {
			char *root = catalog_root(&reg.entries[i]);

			list_vm(reg.entries[i].name, root, t, tree);
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
			list_vm(argv[i], root, t, tree);
		}
		free(dir);
		free(root);
	}
	if (t != NULL)
		output_table_print(t, stdout);
	registry_free(&reg);
	return rc;
}
