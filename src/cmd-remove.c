/*
 * cmd-remove.c: "qckpt remove", Hyper-V's Remove-VMSnapshot for bare QEMU.
 * The command line only: which VMs, which checkpoint, WhatIf and Confirm,
 * then one removal per VM, all at once on one loop (remove_run_all, which
 * `qckpt prune` and `checkpoint --keep` share).  The removal itself is
 * remove.c, its rules remove-plan.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asjob.h"
#include "catalog.h"
#include "cmd.h"
#include "log.h"
#include "remove.h"
#include "util.h"
#include "vmnames.h"

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
	OPT_WHATIF = OPT_COMMON_LAST,
	OPT_CONFIRM,
	OPT_AS_JOB,
	OPT_CHILDREN,
	OPT_PROGRESS,
};

/* ---- running (shared with prune and checkpoint --keep) ------------------- */

struct remove_run {
	uv_loop_t loop;
	uv_signal_t sigint, sigterm;
	struct remove **rs;
	size_t n, running;
	int failed, stopping, stop_on_error;
};

static void maybe_close(struct remove_run *c)
{
	if (c->running == 0 && uv_is_active((uv_handle_t *)&c->sigint)) {
		uv_close((uv_handle_t *)&c->sigint, NULL);
		uv_close((uv_handle_t *)&c->sigterm, NULL);
	}
}

static void report(struct remove *r)
{
	size_t n = json_array_size(r->removed);

	if (r->task.error_status != 0) {
		error_vm(r->spec.vm, "remove failed: %s", r->task.error);
		return;
	}
	if (log_quiet)
		return;
	if (n == 0) {
		verbose_vm(r->spec.vm, "nothing to remove");
		return;
	}
	fprintf(stderr, "qckpt: %s: removed ", r->spec.vm);
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "%s'%s'", i ? ", " : "", json_string_value(json_array_get(r->removed, i)) ?: "?");
	fprintf(stderr, "\n");
}

static void on_remove_done(struct remove *r)
{
	struct remove_run *c = r->data;

	c->running--;
	report(r);
	if (r->task.error_status != 0) {
		c->failed = 1;
		if (c->stop_on_error && !c->stopping) {
			c->stopping = 1;
			for (size_t i = 0; i < c->n; i++)
				remove_interrupt(c->rs[i]);
		}
	}
	maybe_close(c);
}

static void on_signal(uv_signal_t *handle, int signum)
{
	struct remove_run *c = handle->data;

	if (c->stopping)
		return;
	error("interrupted: removals stop after the merge under way (each merge leaves every checkpoint restorable)");
	c->stopping = 1;
	for (size_t i = 0; i < c->n; i++)
		remove_interrupt(c->rs[i]);
}

int remove_run_all(struct remove **rs, size_t n, int stop_on_error,
		   enum progress_output progress)
{
	struct remove_run c = { .rs = rs, .n = n, .stop_on_error = stop_on_error };

	uv_loop_init(&c.loop);
	uv_signal_init(&c.loop, &c.sigint);
	uv_signal_init(&c.loop, &c.sigterm);
	c.sigint.data = c.sigterm.data = &c;
	uv_signal_start(&c.sigint, on_signal, SIGINT);
	uv_signal_start(&c.sigterm, on_signal, SIGTERM);
	c.running = n;
	progress_board_open(progress);
	for (size_t i = 0; i < n; i++) {
		rs[i]->data = &c;
		remove_start(rs[i], &c.loop, on_remove_done);
	}
	maybe_close(&c);
	uv_run(&c.loop, UV_RUN_DEFAULT);
	uv_loop_close(&c.loop);
	progress_board_close();
	return c.failed ? EXIT_SOME_FAILED : EXIT_ALL_OK;
}

struct remove *remove_new(const struct registry *reg, const char *name)
{
	const struct registry_entry *e = registry_find(reg, name);
	struct remove *r;
	char *monitor = NULL, *expect = NULL;

	if (vmconn_resolve_registered(reg, name, "remove", &monitor, &expect) < 0)
		return NULL;
	r = xcalloc(1, sizeof *r);
	r->spec.vm = xstrdup(name);
	r->spec.monitor = monitor;
	r->spec.expect_name = expect;
	r->spec.catalog_root = catalog_root(e);
	r->spec.keep = -1;
	return r;
}

/* ---- the command ----------------------------------------------------------- */

struct remove_cmd {
	struct vm_names names;
	const char *checkpoint;
	int whatif, confirm, as_job, children, stop_on_error;
	enum progress_output progress;
};

static int parse_options(struct remove_cmd *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		{ "name", required_argument, NULL, 'n' },
		{ "vm-name", required_argument, NULL, 'n' },
		{ "whatif", no_argument, NULL, OPT_WHATIF },
		{ "confirm", no_argument, NULL, OPT_CONFIRM },
		{ "error-action", required_argument, NULL, OPT_ERROR_ACTION },
		{ "as-job", no_argument, NULL, OPT_AS_JOB },
		{ "including-children", no_argument, NULL, OPT_CHILDREN },
		{ "progress", required_argument, NULL, OPT_PROGRESS },
		{ NULL, 0, NULL, 0 },
	};
	int opt, named = 0;

	optind = 1;
	while ((opt = cmd_getopt(&cmd_remove_entry, argc, argv, CMD_COMMON_SHORT "n:", longopts)) != -1) {
		if (opt == CMD_OPT_HELP)
			return 1;
		switch (opt) {
		case 'n':
			named = 1;
			if (strcmp(optarg, "-") == 0 ? vm_names_read_stdin(&c->names) < 0 : (vm_names_add_list(&c->names, optarg), 0))
				return -1;
			break;
		case OPT_WHATIF: c->whatif = 1; break;
		case OPT_CONFIRM: c->confirm = 1; break;
		case OPT_AS_JOB: c->as_job = 1; break;
		case OPT_CHILDREN: c->children = 1; break;
		case OPT_PROGRESS:
			if (progress_parse(optarg, &c->progress) < 0)
				return error("--progress: auto, none or json, not '%s'", optarg);
			break;
		case OPT_ERROR_ACTION:
			if (strcmp(optarg, "stop") != 0 && strcmp(optarg, "continue") != 0)
				return error("--error-action: continue or stop, not '%s'", optarg);
			c->stop_on_error = strcmp(optarg, "stop") == 0;
			break;
		default:
			return -1;
		}
	}
	if (!named && optind < argc) {
		if (strcmp(argv[optind], "-") == 0) {
			if (vm_names_read_stdin(&c->names) < 0)
				return -1;
		} else {
			vm_names_add_list(&c->names, argv[optind]);
		}
		optind++;
	}
	if (optind < argc)
		c->checkpoint = argv[optind++];
	if (optind < argc)
		return error("unexpected argument '%s'; see 'qckpt remove --help'", argv[optind]);
	if (c->names.n == 0)
		return error("no VM named; give NAME[,NAME...], -n NAME or - to read names from stdin");
	if (c->checkpoint == NULL || c->checkpoint[0] == '\0')
		return error("which checkpoint? give its name, its Id or the first 8 characters of its Id ('qckpt list' shows them)");
	return 0;
}

static int cmd_remove_exec(int argc, char **argv)
{
	struct remove_cmd c = { 0 };
	struct remove **rs = NULL;
	struct registry reg;
	size_t n = 0;
	char err[512];
	int rc, all = 0, some_unknown = 0;

	rc = parse_options(&c, argc, argv);
	if (rc != 0) {
		vm_names_free(&c.names);
		return rc > 0 ? EXIT_ALL_OK : EXIT_USAGE;
	}
	if (registry_load(cmd_registry_path, &reg, err, sizeof err) < 0) {
		error("%s", err);
		vm_names_free(&c.names);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < c.names.n; i++) {
		struct remove *r;
		int yes = 1;

		if (c.whatif) {
			printf("What if: Performing operation \"Remove\" on target \"%s\" (checkpoint \"%s\"%s).\n",
			       c.names.v[i], c.checkpoint, c.children ? " and its children" : "");
			continue;
		}
		if (c.confirm && (yes = cmd_confirm("Remove", c.names.v[i], c.checkpoint, &all)) < 0) {
			rc = -1;
			break;
		}
		if (!yes)
			continue;
		if ((r = remove_new(&reg, c.names.v[i])) == NULL) {
			some_unknown = 1;
			continue;
		}
		r->spec.checkpoint = xstrdup(c.checkpoint);
		r->spec.including_children = c.children;
		rs = xrealloc(rs, (n + 1) * sizeof *rs);
		rs[n++] = r;
	}
	registry_free(&reg);
	if (rc < 0 || (some_unknown && c.stop_on_error)) {
		rc = rc < 0 ? EXIT_USAGE : EXIT_SOME_FAILED;
		goto out;
	}
	if (c.as_job && n > 0) {
		int detached = asjob_detach(argc, argv);

		if (detached != 0) {
			rc = detached > 0 ? EXIT_ALL_OK : EXIT_USAGE;
			goto out;
		}
	}
	rc = n > 0 ? remove_run_all(rs, n, c.stop_on_error, c.progress) : EXIT_ALL_OK;
	if (some_unknown)
		rc = EXIT_SOME_FAILED;
	if (c.as_job)
		rc = asjob_finish(rc);
out:
	for (size_t i = 0; i < n; i++)
		remove_free(rs[i]);
	free(rs);
	vm_names_free(&c.names);
	return rc;
}
