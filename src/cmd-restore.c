/*
 * cmd-restore.c: "qckpt restore", Hyper-V's Restore-VMSnapshot for bare
 * QEMU.  This file is the command line only: which VMs (arguments, names
 * or `qckpt vms --json` objects on stdin), which checkpoint, then one
 * restore per VM, all at once on one loop.  What every per-VM command does
 * alike (WhatIf/Confirm, --as-job, the loop and its signals) is
 * cmd-jobs.c; the restore itself is restore.c (and restore-load.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "import.h"
#include "catalog.h"
#include "cmd.h"
#include "cmd-jobs.h"
#include "job.h"
#include "log.h"
#include "output.h"
#include "restore.h"
#include "util.h"

static int cmd_restore_exec(int argc, char **argv);

const struct cmd_entry cmd_restore_entry = {
	.name = "restore",
	.alias = NULL,
	.usage = "[options] NAME[,NAME...]|- CHECKPOINT | --from DIR [--ram-file=DIR] NAME",
	.summary = "put VMs back to a checkpoint: memory and disks, on new overlays",
	.exec = cmd_restore_exec,
	.flags = CMD_F_REMOTE | CMD_F_STDIN_VMS,
};

enum {
	OPT_NO_RELAUNCH = OPT_JOBS_LAST,
	OPT_SAVE_CURRENT,
	OPT_FROM,
	OPT_RAM_FILE,
	OPT_VERIFY,
};

struct restore_cmd {
	struct cmd_jobs jobs_cmd;   /* first: cmd_jobs callbacks cast back */
	const struct registry *reg;
	const char *checkpoint;
	const char *from;     /* --from DIR: an export, for a new VM */
	const char *ram_dir;  /* --ram-file=DIR: its running RAM file there */
	int ram_file;
	char *imported_id;
	int no_relaunch, save_current, verify;

	struct restore **restores;
	struct job **saves;  /* --save-current: one checkpoint job per VM */
	size_t n;
	int stopping;
	uint64_t start_ms;
};

/* ---- running ----------------------------------------------------------- */

static void start_restore(struct restore_cmd *c, size_t i);

static void stop_others(struct restore_cmd *c)
{
	if (!c->jobs_cmd.stop_on_error || c->stopping)
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
			r->spec.vm, name, r->id8, r->guest_running ? "running" : "loaded and paused",
			r->resume_ms, r->qemu_pid, r->log_path);
}

static void on_restore_done(struct restore *r)
{
	struct restore_cmd *c = r->data;

	cmd_jobs_done(&c->jobs_cmd, r->task.error_status != 0);
	report(c, r);
	if (r->task.error_status != 0)
		stop_others(c);
	cmd_jobs_maybe_close(&c->jobs_cmd);
}

static void on_save_done(struct job *job)
{
	struct restore_cmd *c = job->data;
	size_t i;

	for (i = 0; i < c->n && c->saves[i] != job; i++)
		;
	if (job->state != JOB_DONE) {
		error_vm(job->spec.vm, "not restored: --save-current could not checkpoint the current state: %s",
			 job->task.error);
		cmd_jobs_done(&c->jobs_cmd, 1);
		stop_others(c);
		cmd_jobs_maybe_close(&c->jobs_cmd);
		return;
	}
	if (!log_quiet)
		fprintf(stderr, "qckpt: %s: the current state is saved as checkpoint '%s' (%.8s)\n",
			job->spec.vm, job->name, job->id);
	if (c->stopping) {
		cmd_jobs_done(&c->jobs_cmd, 0);
		cmd_jobs_maybe_close(&c->jobs_cmd);
		return;
	}
	start_restore(c, i);
}

static void start_restore(struct restore_cmd *c, size_t i)
{
	c->restores[i]->data = c;
	c->restores[i]->start_ms = c->start_ms;
	restore_start(c->restores[i], &c->jobs_cmd.loop, on_restore_done);
}

static void on_signal(struct cmd_jobs *j, int count)
{
	struct restore_cmd *c = (struct restore_cmd *)j;

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

/* --save-current checkpoints first; its end starts the restore. */
static void start_all(struct cmd_jobs *j)
{
	struct restore_cmd *c = (struct restore_cmd *)j;

	/* All counted first: one that ends at once must not close the loop's
	 * signals while the others are still to start. */
	for (size_t i = 0; i < c->n; i++)
		cmd_jobs_started(j);
	for (size_t i = 0; i < c->n; i++) {
		if (c->saves[i] != NULL) {
			c->saves[i]->data = c;
			job_start(c->saves[i], &j->loop, on_save_done);
		} else {
			start_restore(c, i);
		}
	}
}

/* ---- from names to restores ---------------------------------------------- */

static struct restore *make_restore(struct restore_cmd *c, const struct registry *reg,
				    const char *name)
{
	const struct registry_entry *e = registry_find(reg, name);
	struct restore *r;
	char *monitor = NULL, *expect = NULL;

	if (vmconn_resolve_registered(reg, name, "restore", &monitor, &expect) < 0)
		return NULL;
	r = xcalloc(1, sizeof *r);
	r->spec.vm = xstrdup(name);
	r->spec.monitor = monitor;
	r->spec.expect_name = expect;
	r->spec.catalog_root = catalog_root(e);
	r->spec.overlay_dir = e && e->overlay_dir ? xstrdup(e->overlay_dir) : NULL;
	r->spec.checkpoint = xstrdup(c->checkpoint);
	r->spec.registry_path = cmd_registry_path ? xstrdup(cmd_registry_path) : NULL;
	r->spec.no_relaunch = c->no_relaunch;
	r->spec.verify = c->verify;
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
		CMD_JOBS_LONG,
		{ "no-relaunch", no_argument, NULL, OPT_NO_RELAUNCH },
		{ "save-current", no_argument, NULL, OPT_SAVE_CURRENT },
		{ "from", required_argument, NULL, OPT_FROM },
		{ "ram-file", optional_argument, NULL, OPT_RAM_FILE },
		{ "verify", no_argument, NULL, OPT_VERIFY },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	optind = 1;
	while ((opt = cmd_jobs_getopt(&c->jobs_cmd, argc, argv,
				      CMD_COMMON_SHORT CMD_JOBS_SHORT, longopts)) != -1) {
		switch (opt) {
		case CMD_OPT_HELP: return 1;
		case OPT_NO_RELAUNCH: c->no_relaunch = 1; break;
		case OPT_SAVE_CURRENT: c->save_current = 1; break;
		case OPT_FROM: c->from = optarg; break;
		case OPT_RAM_FILE: c->ram_file = 1; c->ram_dir = optarg; break;
		case OPT_VERIFY: c->verify = 1; break;
		default:
			return -1;
		}
	}
	if (cmd_jobs_names(&c->jobs_cmd, argc, argv) < 0)
		return -1;
	if (optind < argc)
		c->checkpoint = argv[optind++];
	if (optind < argc)
		return error("unexpected argument '%s'; see 'qckpt restore --help'", argv[optind]);
	if (cmd_jobs_check_names(&c->jobs_cmd) < 0)
		return -1;
	if (c->ram_file && c->from == NULL)
		return error("--ram-file goes with --from: a restore of a VM keeps its RAM file where 'qckpt run' put it");
	if (c->from != NULL) {
		if (c->jobs_cmd.names.n != 1 || c->checkpoint != NULL)
			return error("--from DIR makes one new VM: give one NAME and no checkpoint (the export holds one)");
		if (c->save_current || c->no_relaunch)
			return error("--from DIR makes a new VM: it has no current state to save and must be launched");
		return 0;
	}
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

static int add_restore(struct cmd_jobs *j, const char *name)
{
	struct restore_cmd *c = (struct restore_cmd *)j;
	struct restore *r = make_restore(c, c->reg, name);

	if (r == NULL)
		return -1;
	if (cmd_jobs_lock(j, r->spec.catalog_root, name) < 0) {
		restore_free(r);
		return -1;
	}
	c->restores = xrealloc(c->restores, (c->n + 1) * sizeof *c->restores);
	c->saves = xrealloc(c->saves, (c->n + 1) * sizeof *c->saves);
	c->restores[c->n] = r;
	c->saves[c->n] = c->save_current ? make_save(c->reg, name) : NULL;
	c->n++;
	return 0;
}

static int cmd_restore_exec(int argc, char **argv)
{
	struct restore_cmd c = { 0 };
	struct registry reg;
	int rc;

	c.start_ms = mono_ms();
	c.jobs_cmd.entry = &cmd_restore_entry;
	c.jobs_cmd.on_signal = on_signal;
	rc = parse_options(&c, argc, argv);
	if (rc == 0 && c.from != NULL && !c.jobs_cmd.whatif) {
		/* The export becomes a registered VM with one checkpoint; the
		 * rest is an ordinary restore of it. */
		if ((rc = import_export_dir(c.from, c.jobs_cmd.names.v[0], c.ram_dir, c.ram_file,
					    &c.imported_id)) != 0) {
			cmd_jobs_free(&c.jobs_cmd);
			return rc;
		}
		c.checkpoint = c.imported_id;
	}
	rc = cmd_jobs_prepare(&c.jobs_cmd, rc, &reg);
	if (rc >= 0) {
		free(c.imported_id);
		return rc;
	}
	c.reg = &reg;
	rc = cmd_jobs_go(&c.jobs_cmd, argc, argv, "Restore", c.checkpoint, add_restore, start_all);
	/* only restores that finished here: none in an --as-job parent */
	if (c.jobs_cmd.passthru)
		passthru(&c, &reg);
	registry_free(&reg);
	free_all(&c);
	free(c.imported_id);
	cmd_jobs_free(&c.jobs_cmd);
	return rc;
}
