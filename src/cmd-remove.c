/*
 * cmd-remove.c: "qckpt remove", Hyper-V's Remove-VMSnapshot for bare QEMU.
 * The command line (which VMs, which checkpoint), and the running of
 * removals that `qckpt prune` and `checkpoint --keep` share (cmd-remove.h):
 * one removal per VM, made and locked by name, all at once on cmd-jobs.c's
 * loop.  The removal itself is remove.c, its rules remove-plan.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "cmd.h"
#include "cmd-remove.h"
#include "log.h"
#include "output.h"
#include "util.h"

static int cmd_remove_exec(int argc, char **argv);

const struct cmd_entry cmd_remove_entry = {
	.name = "remove",
	.alias = NULL,
	.usage = "[options] NAME[,NAME...]|- CHECKPOINT",
	.summary = "delete a checkpoint, merging away the disk layers only it needed",
	.exec = cmd_remove_exec,
	.flags = CMD_F_REMOTE | CMD_F_STDIN_VMS,
};

enum {
	OPT_CHILDREN = OPT_JOBS_LAST,
};

/* ---- running (shared with prune and checkpoint --keep) ------------------- */

static void report(struct remove_cmd *c, struct remove *r)
{
	size_t n = json_array_size(r->removed);

	if (r->task.error_status != 0) {
		error_vm(r->spec.vm, "remove failed: %s", r->task.error);
		return;
	}
	/* Remove-VMSnapshot -Passthru: what was removed, as `list --json` showed it */
	for (size_t i = 0; c->jobs_cmd.passthru && i < n; i++)
		output_json_line(json_array_get(r->removed, i));
	if (log_quiet)
		return;
	if (n == 0) {
		verbose_vm(r->spec.vm, "nothing to remove");
		return;
	}
	fprintf(stderr, "qckpt: %s: removed ", r->spec.vm);
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "%s'%s'", i ? ", " : "",
			json_string_value(json_object_get(json_array_get(r->removed, i), "Name")) ?: "?");
	fprintf(stderr, "\n");
}

static void stop_all(struct remove_cmd *c)
{
	c->stopping = 1;
	for (size_t i = 0; i < c->n; i++)
		remove_interrupt(c->rs[i]);
}

static void on_remove_done(struct remove *r)
{
	struct remove_cmd *c = r->data;
	int failed = r->task.error_status != 0;

	cmd_jobs_done(&c->jobs_cmd, failed);
	report(c, r);
	if (failed && c->jobs_cmd.stop_on_error && !c->stopping)
		stop_all(c);
	cmd_jobs_maybe_close(&c->jobs_cmd);
}

static void on_signal(struct cmd_jobs *j, int count)
{
	struct remove_cmd *c = (struct remove_cmd *)j;

	if (c->stopping)
		return;
	error("interrupted: removals stop after the merge under way (each merge leaves every checkpoint restorable)");
	stop_all(c);
}

static void start_all(struct cmd_jobs *j)
{
	struct remove_cmd *c = (struct remove_cmd *)j;

	/* All counted first: one that ends at once must not close the loop's
	 * signals while the others are still to start. */
	for (size_t i = 0; i < c->n; i++)
		cmd_jobs_started(j);
	for (size_t i = 0; i < c->n; i++) {
		c->rs[i]->data = c;
		remove_start(c->rs[i], &j->loop, on_remove_done);
	}
}

/* The removal for registered VM NAME, its lock taken; -1 after a line. */
static int add_remove(struct cmd_jobs *j, const char *name)
{
	struct remove_cmd *c = (struct remove_cmd *)j;
	const struct registry_entry *e = registry_find(c->reg, name);
	char *monitor = NULL, *expect = NULL, *root;
	struct remove *r;

	if (vmconn_resolve_registered(c->reg, name, "remove", &monitor, &expect) < 0)
		return -1;
	root = catalog_root(e);
	if (cmd_jobs_lock(j, root, name) < 0) {
		free(root);
		free(monitor);
		free(expect);
		return -1;
	}
	r = xcalloc(1, sizeof *r);
	r->spec.vm = xstrdup(name);
	r->spec.monitor = monitor;
	r->spec.expect_name = expect;
	r->spec.catalog_root = root;
	r->spec.checkpoint = c->checkpoint ? xstrdup(c->checkpoint) : NULL;
	r->spec.including_children = c->including_children;
	r->spec.keep = c->keep;
	r->spec.older_than_ms = c->older_than_ms;
	c->rs = xrealloc(c->rs, (c->n + 1) * sizeof *c->rs);
	c->rs[c->n++] = r;
	return 0;
}

void remove_cmd_init(struct remove_cmd *c, const struct cmd_entry *entry)
{
	memset(c, 0, sizeof *c);
	c->jobs_cmd.entry = entry;
	c->jobs_cmd.on_signal = on_signal;
	c->keep = -1;
}

int remove_cmd_exec(struct remove_cmd *c, int parse_rc, const char *operation,
		    int argc, char **argv)
{
	struct registry reg;
	int rc = cmd_jobs_prepare(&c->jobs_cmd, parse_rc, &reg);

	if (rc >= 0)
		return rc;
	c->reg = &reg;
	if (c->checkpoint != NULL)
		c->whatif_detail = xasprintf("checkpoint \"%s\"%s", c->checkpoint,
					     c->including_children ? " and its children" : "");
	c->jobs_cmd.whatif_detail = c->whatif_detail;
	rc = cmd_jobs_go(&c->jobs_cmd, argc, argv, operation, c->checkpoint, add_remove, start_all);
	registry_free(&reg);
	for (size_t i = 0; i < c->n; i++)
		remove_free(c->rs[i]);
	free(c->rs);
	free(c->whatif_detail);
	cmd_jobs_free(&c->jobs_cmd);
	return rc;
}

/* ---- the command ----------------------------------------------------------- */

static int parse_options(struct remove_cmd *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		CMD_JOBS_LONG,
		{ "including-children", no_argument, NULL, OPT_CHILDREN },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	optind = 1;
	while ((opt = cmd_jobs_getopt(&c->jobs_cmd, argc, argv,
				      CMD_COMMON_SHORT CMD_JOBS_SHORT, longopts)) != -1) {
		if (opt == CMD_OPT_HELP)
			return 1;
		if (opt != OPT_CHILDREN)
			return -1;
		c->including_children = 1;
	}
	if (cmd_jobs_names(&c->jobs_cmd, argc, argv) < 0)
		return -1;
	if (optind < argc)
		c->checkpoint = argv[optind++];
	if (optind < argc)
		return error("unexpected argument '%s'; see 'qckpt remove --help'", argv[optind]);
	if (cmd_jobs_check_names(&c->jobs_cmd) < 0)
		return -1;
	if (c->checkpoint == NULL || c->checkpoint[0] == '\0')
		return error("which checkpoint? give its name, its Id or the first 8 characters of its Id ('qckpt list' shows them)");
	return 0;
}

static int cmd_remove_exec(int argc, char **argv)
{
	struct remove_cmd c;

	remove_cmd_init(&c, &cmd_remove_entry);
	return remove_cmd_exec(&c, parse_options(&c, argc, argv), "Remove", argc, argv);
}
