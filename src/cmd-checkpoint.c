/*
 * cmd-checkpoint.c: "qckpt checkpoint", Hyper-V's Checkpoint-VM for bare
 * QEMU.  This file is the command line only: which VMs (arguments, -n,
 * names or `qckpt vms --json` objects on stdin), which name, which mode,
 * then one job per VM on one loop, all started at once, at most
 * --throttle-limit of them saving memory at a time (the job_throttle in
 * job.h).  What every per-VM command does alike (WhatIf/Confirm, --as-job,
 * the loop and its signals) is cmd-jobs.c; the checkpoint itself is job.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "cmd.h"
#include "cmd-jobs.h"
#include "cmdline.h"
#include "job.h"
#include "log.h"
#include "output.h"
#include "cmd-remove.h"
#include "util.h"
#include "vmconn.h"

static int cmd_checkpoint_exec(int argc, char **argv);

const struct cmd_entry cmd_checkpoint_entry = {
	.name = "checkpoint",
	.alias = "create",
	.usage = "[options] NAME[,NAME...]|- [SNAPSHOT-NAME]",
	.summary = "checkpoint VMs: memory and disks, consistent, many at once",
	.exec = cmd_checkpoint_exec,
	.flags = CMD_F_REMOTE | CMD_F_STDIN_VMS,
};

enum {
	OPT_THROTTLE = OPT_JOBS_LAST,
	OPT_MODE,
	OPT_TYPE,
	OPT_KEEP,
};

struct checkpoint_cmd {
	struct cmd_jobs jobs_cmd;   /* first: cmd_jobs callbacks cast back */
	const struct registry *reg;
	const char *snapshot_name;
	int snapshot_positional;  /* the checkpoint name was the second word */
	long keep;                /* --keep N: prune to N after (0: no) */
	struct vm_names done;     /* VMs whose checkpoint was made */
	struct job_throttle throttle;
	int type_given;
	enum vm_type type;
	enum ckpt_mode mode;

	/* running */
	struct job **jobs;
	size_t njobs, next;
	int stopping, rest_reported;
};

/* ---- running the jobs ------------------------------------------------ */

static void start_next(struct checkpoint_cmd *c);

/* A VM behind a network monitor: its files are on its own host. */
static void report_remote_job(struct job *job)
{
	if (job->memory_path != NULL)
		verbose_vm(job->spec.vm, "memory state written by QEMU on %s: %s",
			   job->spec.qemu_host, job->memory_path);
	for (size_t i = 0; i < job->ndisks && !log_quiet; i++)
		fprintf(stderr, "qckpt: %s: disk %s now writes to %s on %s; %s is frozen, so start QEMU there on the new path\n",
			job->spec.vm, job->disks[i].device, job->disks[i].overlay,
			job->spec.qemu_host, job->disks[i].image);
}

static void report_job(struct checkpoint_cmd *c, struct job *job)
{
	if (job->state != JOB_DONE) {
		error_vm(job->spec.vm, "checkpoint failed: %s", job->task.error);
		return;
	}
	verbose_vm(job->spec.vm, "checkpoint '%s' done: guest paused %lld ms, %llu ms in all",
		   job->name, job->pause_ms,
		   (unsigned long long)json_integer_value(json_object_get(job->record, "DurationMs")));
	if (c->jobs_cmd.passthru)
		output_json_line(job->record);
	if (job->resume_error[0] != '\0')
		error_vm(job->spec.vm, "%s", job->resume_error);
	/* The user's own launch command still names the frozen images;
	 * a QEMU that `qckpt run` launched is relaunched on the new ones. */
	if (job->spec.qemu_host != NULL) {
		report_remote_job(job);
		return;
	}
	for (size_t i = 0; i < job->ndisks; i++)
		if (!log_quiet && !cmdline_vm_launched_by_run(job->spec.catalog_root, job->spec.vm))
			fprintf(stderr, "qckpt: %s: disk %s now writes to %s; %s is frozen, so launch the VM through 'qckpt run' or use that path\n",
				job->spec.vm, job->disks[i].device, job->disks[i].overlay,
				job->disks[i].image);
}

/* The VMs whose turn never came: one line each, never silence. */
static void report_not_started(struct checkpoint_cmd *c, const char *why)
{
	if (c->rest_reported)
		return;
	c->rest_reported = 1;
	for (size_t i = c->next; i < c->njobs; i++) {
		error_vm(c->jobs[i]->spec.vm, "not checkpointed: %s", why);
		c->jobs_cmd.failed = 1;
	}
}

static void on_job_done(struct job *job)
{
	struct checkpoint_cmd *c = job->data;
	int failed = job->state != JOB_DONE || job->resume_error[0] != '\0';

	cmd_jobs_done(&c->jobs_cmd, failed);
	report_job(c, job);
	if (failed) {
		if (c->jobs_cmd.stop_on_error && !c->stopping) {
			c->stopping = 1;
			report_not_started(c, "stopped after an earlier failure (--error-action stop)");
			for (size_t i = 0; i < c->njobs; i++)
				if (c->jobs[i] != NULL && c->jobs[i] != job)
					job_interrupt(c->jobs[i]);
		}
	}
	start_next(c);
}

static void start_next(struct checkpoint_cmd *c)
{
	/* All at once: preparing overlays costs the guests nothing; the
	 * throttle holds back only the saves. */
	while (!c->stopping && c->next < c->njobs) {
		struct job *job = c->jobs[c->next++];

		cmd_jobs_started(&c->jobs_cmd);
		job->data = c;
		job->throttle = &c->throttle;
		job_start(job, &c->jobs_cmd.loop, on_job_done);
	}
	cmd_jobs_maybe_close(&c->jobs_cmd);
}

/* A further Ctrl-C: what each VM still waits for.  qckpt does not walk
 * away from QEMU mid-step: that could leave a guest stopped. */
static void report_in_progress(struct checkpoint_cmd *c)
{
	for (size_t i = 0; i < c->next; i++) {
		struct job *job = c->jobs[i];

		if (!job->task.finished)
			error_vm(job->spec.vm, "still %s: waiting for QEMU to answer so the VM is left as it was (kill -9 leaves it in that step; see qckpt(1) FAILURES)",
				 job_state_doing(job));
	}
}

static void on_signal(struct cmd_jobs *j, int count)
{
	struct checkpoint_cmd *c = (struct checkpoint_cmd *)j;

	if (count > 1) {
		report_in_progress(c);
		return;
	}
	error("interrupted: undoing the checkpoints in progress (VMs that were running keep running)");
	c->stopping = 1;
	/* A checkpoint past its disk snapshot finishes, and counts as made;
	 * one undone fails; one never started fails here. */
	report_not_started(c, "interrupted before its turn");
	for (size_t i = 0; i < c->next; i++)
		job_interrupt(c->jobs[i]);
	start_next(c);
}

static void start_all(struct cmd_jobs *j)
{
	start_next((struct checkpoint_cmd *)j);
}

static void free_jobs(struct checkpoint_cmd *c)
{
	for (size_t i = 0; i < c->njobs; i++) {
		if (c->jobs[i]->state == JOB_DONE)
			vm_names_add(&c->done, c->jobs[i]->spec.vm);
		job_free(c->jobs[i]);
	}
	free(c->jobs);
	c->jobs = NULL;
	c->njobs = 0;
}

/* ---- from names to jobs ---------------------------------------------- */

static struct job *make_job(struct checkpoint_cmd *c, const struct registry *reg,
			    const char *name)
{
	const struct registry_entry *e = registry_find(reg, name);
	struct job *job = xcalloc(1, sizeof *job);
	struct job_spec *s = &job->spec;
	char err[512];
	char host[256] = "localhost";

	if (vmconn_resolve(reg, name, &s->monitor, &s->expect_name, err, sizeof err) < 0) {
		error_vm(name, "%s", err);
		free(job);
		return NULL;
	}
	gethostname(host, sizeof host);
	host[sizeof host - 1] = '\0';
	s->vm = xstrdup(name);
	s->catalog_root = catalog_root(e);
	s->overlay_dir = e && e->overlay_dir ? xstrdup(e->overlay_dir) : NULL;
	/* tcp:/tls: QEMU may run elsewhere: it makes the files, on its host */
	s->qemu_host = vmconn_network_host(s->monitor);
	s->remote_dir = e && e->remote_dir ? xstrdup(e->remote_dir) : NULL;
	s->agent = e && e->agent ? xstrdup(e->agent) : NULL;
	s->snapshot_name = c->snapshot_name ? xstrdup(c->snapshot_name) : NULL;
	s->computer_name = xstrdup(host);
	s->type = c->type_given ? c->type : (e ? e->type : VM_TYPE_STANDARD);
	s->type_given = c->type_given;
	s->name_check_off = e && e->name_check_off;
	s->registry = reg;
	/* --type never overrides a VM whose checkpoints are disabled. */
	if (e && e->type == VM_TYPE_DISABLED)
		s->type = VM_TYPE_DISABLED;
	s->mode = c->mode;
	return job;
}

static int parse_options(struct checkpoint_cmd *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		CMD_JOBS_LONG,
		{ "snapshot-name", required_argument, NULL, 's' },
		{ "checkpoint-name", required_argument, NULL, 's' },
		{ "throttle-limit", required_argument, NULL, OPT_THROTTLE },
		{ "mode", required_argument, NULL, OPT_MODE },
		{ "type", required_argument, NULL, OPT_TYPE },
		{ "keep", required_argument, NULL, OPT_KEEP },
		{ NULL, 0, NULL, 0 },
	};
	int opt;
	long n;

	optind = 1;
	while ((opt = cmd_jobs_getopt(&c->jobs_cmd, argc, argv,
				      CMD_COMMON_SHORT CMD_JOBS_SHORT "s:", longopts)) != -1) {
		switch (opt) {
		case CMD_OPT_HELP:
			return 1;
		case 's':
			c->snapshot_name = optarg;
			break;
		case OPT_THROTTLE:
			if (parse_long(optarg, 1, 1024, &n) < 0)
				return error("--throttle-limit: a number from 1 to 1024, not '%s'", optarg);
			c->throttle.limit = (int)n;
			break;
		case OPT_MODE:
			if (job_parse_mode(optarg, &c->mode) < 0)
				return error("--mode: auto, live, paused, background, disk-only or ram-file, not '%s'", optarg);
			break;
		case OPT_TYPE:
			if (registry_parse_type(optarg, &c->type) < 0 || c->type == VM_TYPE_DISABLED)
				return error("--type: standard, production or production-only, not '%s'", optarg);
			c->type_given = 1;
			break;
		case OPT_KEEP:
			if (parse_long(optarg, 1, 1000000, &c->keep) < 0)
				return error("--keep: how many checkpoints each VM keeps (1 or more), not '%s'", optarg);
			break;
		default:
			return -1;
		}
	}
	/* Positions as in Checkpoint-VM: -Name (0) then -SnapshotName (1). */
	if (cmd_jobs_names(&c->jobs_cmd, argc, argv) < 0)
		return -1;
	if (optind < argc && c->snapshot_name == NULL) {
		c->snapshot_name = argv[optind++];
		c->snapshot_positional = 1;
	}
	if (optind < argc)
		return error("unexpected argument '%s'; see 'qckpt checkpoint --help'", argv[optind]);
	if (c->snapshot_name != NULL && !catalog_valid_name(c->snapshot_name))
		return error("bad checkpoint name: 1 to 200 characters, no control characters");
	return cmd_jobs_check_names(&c->jobs_cmd);
}

/* `qckpt checkpoint web db` names web's checkpoint "db", as Checkpoint-VM
 * does; when db is a VM too, the user may have meant both. */
static void warn_second_vm(const struct checkpoint_cmd *c, const struct registry *reg)
{
	const char *word = c->jobs_cmd.names_word ? c->jobs_cmd.names_word : "the VMs from stdin";

	if (c->snapshot_positional && registry_find(reg, c->snapshot_name) != NULL)
		warn_vm(NULL, "%s is also a registered VM: naming %s's checkpoint '%s'; to checkpoint both use %s,%s",
			c->snapshot_name, word, c->snapshot_name, word, c->snapshot_name);
}

/* --throttle-limit's default: one save per online CPU, as each save's
 * final pass wants a CPU of its own to keep its guest's pause short. */
static int default_throttle(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

static int add_job(struct cmd_jobs *j, const char *name)
{
	struct checkpoint_cmd *c = (struct checkpoint_cmd *)j;
	struct job *job = make_job(c, c->reg, name);

	if (job == NULL)
		return -1;
	/* A VM given by its socket is named by QEMU only later: job.c locks
	 * it then. */
	if (job->spec.expect_name != NULL &&
	    cmd_jobs_lock(j, job->spec.catalog_root, job->spec.vm) < 0) {
		job_free(job);
		return -1;
	}
	c->jobs = xrealloc(c->jobs, (c->njobs + 1) * sizeof *c->jobs);
	c->jobs[c->njobs++] = job;
	return 0;
}

/* --error-action stop after a name that made no job. */
static void not_started(struct cmd_jobs *j)
{
	struct checkpoint_cmd *c = (struct checkpoint_cmd *)j;

	for (size_t i = 0; i < c->njobs; i++)
		error_vm(c->jobs[i]->spec.vm, "not checkpointed: stopped after an earlier failure (--error-action stop)");
}

static int cmd_checkpoint_exec(int argc, char **argv)
{
	struct checkpoint_cmd c = { .throttle.limit = default_throttle(), .mode = MODE_AUTO };
	struct registry reg;
	int rc;

	c.jobs_cmd.entry = &cmd_checkpoint_entry;
	c.jobs_cmd.on_signal = on_signal;
	c.jobs_cmd.on_not_started = not_started;
	rc = cmd_jobs_prepare(&c.jobs_cmd, parse_options(&c, argc, argv), &reg);
	if (rc >= 0)
		return rc;
	c.reg = &reg;
	warn_second_vm(&c, &reg);
	rc = cmd_jobs_go(&c.jobs_cmd, argc, argv, "Checkpoint", NULL, add_job, start_all);
	free_jobs(&c);
	registry_free(&reg); /* the jobs borrowed it */
	/* Retention after the checkpoints that were made (not after Ctrl-C). */
	if (c.keep > 0 && c.done.n > 0 && !c.stopping &&
	    remove_prune(&c.done, c.keep, 0, c.jobs_cmd.stop_on_error,
			 c.jobs_cmd.progress) != EXIT_ALL_OK)
		rc = EXIT_SOME_FAILED;
	vm_names_free(&c.done);
	cmd_jobs_free(&c.jobs_cmd);
	return rc;
}
