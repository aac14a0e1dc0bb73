/*
 * cmd-restore.c: "qckpt restore", Hyper-V's Restore-VMSnapshot for bare
 * QEMU.  This file is the command line only: which VMs (arguments, names
 * or `qckpt vms --json` objects on stdin), which checkpoint, WhatIf and
 * Confirm, then one restore per VM, all at once on one loop.  The restore
 * itself is restore.c (and restore-load.c for the memory).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asjob.h"
#include "catalog.h"
#include "cmd.h"
#include "job.h"
#include "log.h"
#include "output.h"
#include "restore.h"
#include "util.h"
#include "vmnames.h"

static int cmd_restore_exec(int argc, char **argv);

const struct cmd_entry cmd_restore_entry = {
	.name = "restore",
	.alias = NULL,
	.usage = "[options] NAME[,NAME...]|- CHECKPOINT",
	.summary = "put VMs back to a checkpoint: memory and disks, on new overlays",
	.exec = cmd_restore_exec,
	.flags = CMD_F_REMOTE | CMD_F_STDIN_VMS,
};

enum {
	OPT_PASSTHRU = OPT_COMMON_LAST,
	OPT_WHATIF,
	OPT_CONFIRM,
	OPT_AS_JOB,
	OPT_NO_RELAUNCH,
	OPT_SAVE_CURRENT,
};

struct restore_cmd {
	struct vm_names names;
	const char *checkpoint;
	int passthru, whatif, confirm, as_job, no_relaunch, save_current;
	int stop_on_error;

	uv_loop_t loop;
	uv_signal_t sigint, sigterm;
	struct restore **restores;
	struct job **saves;  /* --save-current: one checkpoint job per VM */
	size_t n, running;
	int failed, stopping;
	uint64_t start_ms;
};

/* ---- running ----------------------------------------------------------- */

static void start_restore(struct restore_cmd *c, size_t i);

static void maybe_close(struct restore_cmd *c)
{
	if (c->running == 0 && uv_is_active((uv_handle_t *)&c->sigint)) {
		uv_close((uv_handle_t *)&c->sigint, NULL);
		uv_close((uv_handle_t *)&c->sigterm, NULL);
	}
}

static void stop_others(struct restore_cmd *c)
{
	if (!c->stop_on_error || c->stopping)
		return;
	c->stopping = 1;
	for (size_t i = 0; i < c->n; i++) {
		if (c->restores[i] != NULL)
			restore_interrupt(c->restores[i]);
		if (c->saves[i] != NULL)
			job_interrupt(c->saves[i]);
	}
}

static void report(struct restore_cmd *c, struct restore *r)
{
	const char *name = json_string_value(json_object_get(r->record, "Name"));

	if (r->task.error_status != 0) {
		if (r->past_quit)
			error_vm(r->spec.vm, "restore failed: %s; the restore is pending in vm.json: run 'qckpt restore %s %s' again",
				 r->task.error, r->spec.vm, r->spec.checkpoint);
		else
			error_vm(r->spec.vm, "restore failed: %s", r->task.error);
		return;
	}
	if (r->spec.no_relaunch) {
		if (!log_quiet)
			printf("%s: restore to '%s' (%s) prepared; the next 'qckpt run %s ...' starts from it\n",
			       r->spec.vm, name, r->id8, r->spec.vm);
		return;
	}
	if (log_quiet)
		return;
	if (r->memory == NULL)
		fprintf(stderr, "qckpt: %s: checkpoint '%s' (%s) holds no memory: the VM boots fresh on its disks (pid %ld, output in %s)\n",
			r->spec.vm, name, r->id8, r->qemu_pid, r->log_path);
	else
		fprintf(stderr, "qckpt: %s: restored to '%s' (%s), guest %s %lld ms after the command (pid %ld, output in %s)\n",
			r->spec.vm, name, r->id8, r->load.guest_running ? "running" : "loaded and paused",
			r->resume_ms, r->qemu_pid, r->log_path);
}

static void on_restore_done(struct restore *r)
{
	struct restore_cmd *c = r->data;

	c->running--;
	report(c, r);
	if (r->task.error_status != 0) {
		c->failed = 1;
		stop_others(c);
	}
	maybe_close(c);
}

static void on_save_done(struct job *job)
{
	struct restore_cmd *c = job->data;
	size_t i;

	for (i = 0; i < c->n && c->saves[i] != job; i++)
		;
	if (job->state != JOB_DONE) {
		error_vm(job->spec.vm, "not restored: --save-current could not checkpoint the current state: %s",
			 job->error);
		c->failed = 1;
		c->running--;
		stop_others(c);
		maybe_close(c);
		return;
	}
	if (!log_quiet)
		fprintf(stderr, "qckpt: %s: the current state is saved as checkpoint '%s' (%.8s)\n",
			job->spec.vm, job->name, job->id);
	if (c->stopping) {
		c->running--;
		maybe_close(c);
		return;
	}
	start_restore(c, i);
}

static void start_restore(struct restore_cmd *c, size_t i)
{
	c->restores[i]->data = c;
	c->restores[i]->start_ms = c->start_ms;
	restore_start(c->restores[i], &c->loop, on_restore_done);
}

static void on_signal(uv_signal_t *handle, int signum)
{
	struct restore_cmd *c = handle->data;

	if (c->stopping)
		return;
	error("interrupted: restores not yet past the old QEMU's quit are undone (those VMs keep running)");
	c->stopping = 1;
	for (size_t i = 0; i < c->n; i++) {
		restore_interrupt(c->restores[i]);
		if (c->saves[i] != NULL)
			job_interrupt(c->saves[i]);
	}
}

static int run_all(struct restore_cmd *c)
{
	uv_loop_init(&c->loop);
	uv_signal_init(&c->loop, &c->sigint);
	uv_signal_init(&c->loop, &c->sigterm);
	c->sigint.data = c->sigterm.data = c;
	uv_signal_start(&c->sigint, on_signal, SIGINT);
	uv_signal_start(&c->sigterm, on_signal, SIGTERM);
	c->running = c->n;
	for (size_t i = 0; i < c->n; i++) {
		if (c->saves[i] != NULL) {
			c->saves[i]->data = c;
			job_start(c->saves[i], &c->loop, on_save_done);
		} else {
			start_restore(c, i);
		}
	}
	maybe_close(c);
	uv_run(&c->loop, UV_RUN_DEFAULT);
	uv_loop_close(&c->loop);
	return c->failed ? EXIT_SOME_FAILED : EXIT_ALL_OK;
}

/* ---- from names to restores ---------------------------------------------- */

static struct restore *make_restore(struct restore_cmd *c, const struct registry *reg,
				    const char *name)
{
	const struct registry_entry *e = registry_find(reg, name);
	struct restore *r;
	char err[512];
	char *monitor = NULL, *expect = NULL;

	if (vmconn_resolve(reg, name, &monitor, &expect, err, sizeof err) < 0) {
		error_vm(name, "%s", err);
		return NULL;
	}
	if (expect == NULL) {
		error_vm(name, "restore needs a registered VM name (its catalog is found by name): 'qckpt vms' lists them");
		free(monitor);
		return NULL;
	}
	r = xcalloc(1, sizeof *r);
	r->spec.vm = xstrdup(name);
	r->spec.monitor = monitor;
	r->spec.expect_name = expect;
	r->spec.catalog_root = catalog_root(e);
	r->spec.overlay_dir = e && e->overlay_dir ? xstrdup(e->overlay_dir) : NULL;
	r->spec.checkpoint = xstrdup(c->checkpoint);
	r->spec.registry_path = cmd_registry_path ? xstrdup(cmd_registry_path) : NULL;
	r->spec.no_relaunch = c->no_relaunch;
	return r;
}

static struct job *make_save(const struct registry *reg, const char *name)
{
	const struct registry_entry *e = registry_find(reg, name);
	struct job *job = xcalloc(1, sizeof *job);
	struct job_spec *s = &job->spec;
	char err[512], host[256] = "localhost";

	if (vmconn_resolve(reg, name, &s->monitor, &s->expect_name, err, sizeof err) < 0) {
		free(job);
		return NULL;
	}
	gethostname(host, sizeof host);
	host[sizeof host - 1] = '\0';
	s->vm = xstrdup(name);
	s->catalog_root = catalog_root(e);
	s->overlay_dir = e && e->overlay_dir ? xstrdup(e->overlay_dir) : NULL;
	s->computer_name = xstrdup(host);
	s->type = VM_TYPE_STANDARD;
	s->mode = MODE_AUTO;
	return job;
}

static int parse_options(struct restore_cmd *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		{ "name", required_argument, NULL, 'n' },
		{ "vm-name", required_argument, NULL, 'n' },
		{ "passthru", no_argument, NULL, OPT_PASSTHRU },
		{ "whatif", no_argument, NULL, OPT_WHATIF },
		{ "confirm", no_argument, NULL, OPT_CONFIRM },
		{ "error-action", required_argument, NULL, OPT_ERROR_ACTION },
		{ "as-job", no_argument, NULL, OPT_AS_JOB },
		{ "no-relaunch", no_argument, NULL, OPT_NO_RELAUNCH },
		{ "save-current", no_argument, NULL, OPT_SAVE_CURRENT },
		{ NULL, 0, NULL, 0 },
	};
	int opt, named = 0;

	optind = 1;
	while ((opt = cmd_getopt(&cmd_restore_entry, argc, argv, CMD_COMMON_SHORT "n:", longopts)) != -1) {
		if (opt == CMD_OPT_HELP)
			return 1;
		switch (opt) {
		case 'n':
			named = 1;
			if (strcmp(optarg, "-") == 0 ? vm_names_read_stdin(&c->names) < 0 : (vm_names_add_list(&c->names, optarg), 0))
				return -1;
			break;
		case OPT_PASSTHRU: c->passthru = 1; break;
		case OPT_WHATIF: c->whatif = 1; break;
		case OPT_CONFIRM: c->confirm = 1; break;
		case OPT_AS_JOB: c->as_job = 1; break;
		case OPT_NO_RELAUNCH: c->no_relaunch = 1; break;
		case OPT_SAVE_CURRENT: c->save_current = 1; break;
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
		return error("unexpected argument '%s'; see 'qckpt restore --help'", argv[optind]);
	if (c->names.n == 0)
		return error("no VM named; give NAME[,NAME...], -n NAME or - to read names from stdin");
	if (c->checkpoint == NULL || c->checkpoint[0] == '\0')
		return error("which checkpoint? give its name, its Id or the first 8 characters of its Id ('qckpt list' shows them)");
	return 0;
}

/* --passthru: each restored VM as `qckpt vms --json` shows it now. */
static void passthru(struct restore_cmd *c, const struct registry *reg)
{
	const struct registry_entry **sel = xcalloc(c->n + 1, sizeof *sel);
	size_t n = 0;

	for (size_t i = 0; i < c->n; i++) {
		struct restore *r = c->restores[i];

		if (r->finished && r->task.error_status == 0 && !r->spec.no_relaunch &&
		    registry_find(reg, r->spec.vm) != NULL)
			sel[n++] = registry_find(reg, r->spec.vm);
	}
	if (n > 0)
		cmd_vms_probe_and_print(sel, n, 5000, 1);
	free(sel);
}

static void free_all(struct restore_cmd *c)
{
	for (size_t i = 0; i < c->n; i++) {
		restore_free(c->restores[i]);
		if (c->saves[i] != NULL)
			job_free(c->saves[i]);
	}
	free(c->restores);
	free(c->saves);
	c->n = 0;
}

static int cmd_restore_exec(int argc, char **argv)
{
	struct restore_cmd c = { 0 };
	struct registry reg;
	char err[512];
	int rc, all = 0, some_unknown = 0;

	c.start_ms = mono_ms();
	rc = parse_options(&c, argc, argv);
	if (rc != 0)
		goto out_names;
	if (registry_load(cmd_registry_path, &reg, err, sizeof err) < 0) {
		error("%s", err);
		rc = -1;
		goto out_names;
	}
	for (size_t i = 0; i < c.names.n; i++) {
		struct restore *r;
		int yes = 1;

		if (c.whatif) {
			printf("What if: Performing operation \"Restore\" on target \"%s\".\n", c.names.v[i]);
			continue;
		}
		if (c.confirm && (yes = cmd_confirm("Restore", c.names.v[i], c.checkpoint, &all)) < 0) {
			rc = -1;
			break;
		}
		if (!yes)
			continue;
		if ((r = make_restore(&c, &reg, c.names.v[i])) == NULL) {
			some_unknown = 1;
			continue;
		}
		c.restores = xrealloc(c.restores, (c.n + 1) * sizeof *c.restores);
		c.saves = xrealloc(c.saves, (c.n + 1) * sizeof *c.saves);
		c.restores[c.n] = r;
		c.saves[c.n] = c.save_current ? make_save(&reg, c.names.v[i]) : NULL;
		c.n++;
	}
	if (rc < 0 || (some_unknown && c.stop_on_error)) {
		registry_free(&reg);
		free_all(&c);
		rc = rc < 0 ? EXIT_USAGE : EXIT_SOME_FAILED;
		goto out;
	}
	if (c.as_job && c.n > 0) {
		int detached = asjob_detach(argc, argv);

		if (detached != 0) {
			registry_free(&reg);
			free_all(&c);
			rc = detached > 0 ? EXIT_ALL_OK : EXIT_USAGE;
			goto out;
		}
	}
	rc = c.n > 0 ? run_all(&c) : EXIT_ALL_OK;
	if (c.passthru)
		passthru(&c, &reg);
	registry_free(&reg);
	free_all(&c);
	if (some_unknown)
		rc = EXIT_SOME_FAILED;
	if (c.as_job)
		rc = asjob_finish(rc);
	goto out;
out_names:
	rc = rc > 0 ? EXIT_ALL_OK : EXIT_USAGE;
out:
	vm_names_free(&c.names);
	return rc;
}
