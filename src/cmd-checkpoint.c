/*
 * cmd-checkpoint.c: "qckpt checkpoint", Hyper-V's Checkpoint-VM for bare
 * QEMU.  This file is the command line only: which VMs (arguments, -n,
 * names or `qckpt vms --json` objects on stdin), which name, which mode,
 * WhatIf/Confirm, then one job per VM on one loop, all started at once, at
 * most --throttle-limit of them saving memory at a time (the job_throttle
 * in job.h).  The checkpoint itself is job.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asjob.h"
#include "catalog.h"
#include "cmd.h"
#include "cmdline.h"
#include "job.h"
#include "log.h"
#include "output.h"
#include "util.h"
#include "vmconn.h"
#include "vmnames.h"

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
	OPT_PASSTHRU = OPT_COMMON_LAST,
	OPT_WHATIF,
	OPT_CONFIRM,
	OPT_THROTTLE,
	OPT_MODE,
	OPT_TYPE,
	OPT_AS_JOB,
};

struct checkpoint_cmd {
	struct vm_names names;
	const char *snapshot_name;
	const char *names_word;   /* NAME[,NAME...] as given, NULL for stdin */
	int snapshot_positional;  /* the checkpoint name was the second word */
	int passthru, whatif, confirm, as_job;
	int stop_on_error;
	struct job_throttle throttle;
	int type_given;
	enum vm_type type;
	enum ckpt_mode mode;

	/* running */
	uv_loop_t loop;
	uv_signal_t sigint, sigterm;
	struct job **jobs;
	size_t njobs, next, running;
	int failed, stopping, interrupted, rest_reported;
};

/* ---- running the jobs ------------------------------------------------ */

static void start_next(struct checkpoint_cmd *c);

static void report_job(struct checkpoint_cmd *c, struct job *job)
{
	if (job->state != JOB_DONE) {
		error_vm(job->spec.vm, "checkpoint failed: %s", job->error);
		return;
	}
	verbose_vm(job->spec.vm, "checkpoint '%s' done: guest paused %lld ms, %llu ms in all",
		   job->name, job->pause_ms,
		   (unsigned long long)json_integer_value(json_object_get(job->record, "DurationMs")));
	if (c->passthru)
		output_json_line(job->record);
	if (job->resume_error[0] != '\0')
		error_vm(job->spec.vm, "%s", job->resume_error);
	/* The user's own launch command still names the frozen images;
	 * a QEMU that `qckpt run` launched is relaunched on the new ones. */
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
		c->failed = 1;
	}
}

static void on_job_done(struct job *job)
{
	struct checkpoint_cmd *c = job->data;

	c->running--;
	report_job(c, job);
	if (job->state != JOB_DONE || job->resume_error[0] != '\0') {
		c->failed = 1;
		if (c->stop_on_error && !c->stopping) {
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

		c->running++;
		job->data = c;
		job->throttle = &c->throttle;
		job_start(job, &c->loop, on_job_done);
	}
	if (c->running == 0 && (c->stopping || c->next == c->njobs)) {
		if (uv_is_active((uv_handle_t *)&c->sigint)) {
			uv_close((uv_handle_t *)&c->sigint, NULL);
			uv_close((uv_handle_t *)&c->sigterm, NULL);
		}
	}
}

/* A further Ctrl-C: what each VM still waits for.  qckpt does not walk
 * away from QEMU mid-step: that could leave a guest stopped. */
static void report_in_progress(struct checkpoint_cmd *c)
{
	for (size_t i = 0; i < c->next; i++) {
		struct job *job = c->jobs[i];

		if (!job->finished)
			error_vm(job->spec.vm, "still %s: waiting for QEMU to answer so the VM is left as it was (kill -9 leaves it in that step; see qckpt(1) FAILURES)",
				 job_state_doing(job));
	}
}

static void on_signal(uv_signal_t *handle, int signum)
{
	struct checkpoint_cmd *c = handle->data;

	if (c->interrupted) {
		report_in_progress(c);
		return;
	}
	error("interrupted: undoing the checkpoints in progress (VMs that were running keep running)");
	c->interrupted = 1;
	c->stopping = 1;
	/* A checkpoint past its disk snapshot finishes, and counts as made;
	 * one undone fails; one never started fails here. */
	report_not_started(c, "interrupted before its turn");
	for (size_t i = 0; i < c->next; i++)
		job_interrupt(c->jobs[i]);
	start_next(c);
}

static int run_jobs(struct checkpoint_cmd *c)
{
	uv_loop_init(&c->loop);
	uv_signal_init(&c->loop, &c->sigint);
	uv_signal_init(&c->loop, &c->sigterm);
	c->sigint.data = c->sigterm.data = c;
	uv_signal_start(&c->sigint, on_signal, SIGINT);
	uv_signal_start(&c->sigterm, on_signal, SIGTERM);
	start_next(c);
	uv_run(&c->loop, UV_RUN_DEFAULT);
	uv_loop_close(&c->loop);
	for (size_t i = 0; i < c->njobs; i++)
		job_free(c->jobs[i]);
	free(c->jobs);
	return c->failed ? EXIT_SOME_FAILED : EXIT_ALL_OK;
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
	if (vmconn_is_network(s->monitor)) {
		/* Overlays and the memory file would be made on this machine's
		 * file system, not on the QEMU host's. */
		error_vm(name, "checkpoints through a network monitor (%s) are not supported yet: run them on the QEMU host, e.g. 'qckpt checkpoint -C HOST %s'",
			 s->monitor, name);
		free(s->monitor);
		free(s->expect_name);
		free(job);
		return NULL;
	}
	gethostname(host, sizeof host);
	host[sizeof host - 1] = '\0';
	s->vm = xstrdup(name);
	s->catalog_root = catalog_root(e);
	s->overlay_dir = e && e->overlay_dir ? xstrdup(e->overlay_dir) : NULL;
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

static int valid_snapshot_name(const char *name)
{
	if (name[0] == '\0' || strlen(name) > 200)
		return 0;
	for (const char *p = name; *p; p++)
		if ((unsigned char)*p < 0x20)
			return 0;
	return 1;
}

static int parse_options(struct checkpoint_cmd *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		{ "name", required_argument, NULL, 'n' },
		{ "vm-name", required_argument, NULL, 'n' },
		{ "snapshot-name", required_argument, NULL, 's' },
		{ "checkpoint-name", required_argument, NULL, 's' },
		{ "passthru", no_argument, NULL, OPT_PASSTHRU },
		{ "whatif", no_argument, NULL, OPT_WHATIF },
		{ "confirm", no_argument, NULL, OPT_CONFIRM },
		{ "error-action", required_argument, NULL, OPT_ERROR_ACTION },
		{ "throttle-limit", required_argument, NULL, OPT_THROTTLE },
		{ "mode", required_argument, NULL, OPT_MODE },
		{ "type", required_argument, NULL, OPT_TYPE },
		{ "as-job", no_argument, NULL, OPT_AS_JOB },
		{ NULL, 0, NULL, 0 },
	};
	int opt, named = 0;
	long n;

	optind = 1;
	while ((opt = cmd_getopt(&cmd_checkpoint_entry, argc, argv, CMD_COMMON_SHORT "n:s:", longopts)) != -1) {
		if (opt == CMD_OPT_HELP)
			return 1;
		switch (opt) {
		case 'n':
			named = 1;
			c->names_word = strcmp(optarg, "-") == 0 ? NULL : optarg;
			if (strcmp(optarg, "-") == 0 ? vm_names_read_stdin(&c->names) < 0 : (vm_names_add_list(&c->names, optarg), 0))
				return -1;
			break;
		case 's':
			c->snapshot_name = optarg;
			break;
		case OPT_PASSTHRU: c->passthru = 1; break;
		case OPT_WHATIF: c->whatif = 1; break;
		case OPT_CONFIRM: c->confirm = 1; break;
		case OPT_ERROR_ACTION:
			if (strcmp(optarg, "stop") != 0 && strcmp(optarg, "continue") != 0)
				return error("--error-action: continue or stop, not '%s'", optarg);
			c->stop_on_error = strcmp(optarg, "stop") == 0;
			break;
		case OPT_THROTTLE:
			if (parse_long(optarg, 1, 1024, &n) < 0)
				return error("--throttle-limit: a number from 1 to 1024, not '%s'", optarg);
			c->throttle.limit = (int)n;
			break;
		case OPT_MODE:
			if (job_parse_mode(optarg, &c->mode) < 0)
				return error("--mode: auto, live, paused, background or disk-only, not '%s'", optarg);
			break;
		case OPT_TYPE:
			if (registry_parse_type(optarg, &c->type) < 0 || c->type == VM_TYPE_DISABLED)
				return error("--type: standard, production or production-only, not '%s'", optarg);
			c->type_given = 1;
			break;
		case OPT_AS_JOB:
			c->as_job = 1;
			break;
		default:
			return -1;
		}
	}
	/* Positions as in Checkpoint-VM: -Name (0) then -SnapshotName (1). */
	if (!named && optind < argc) {
		if (strcmp(argv[optind], "-") == 0) {
			if (vm_names_read_stdin(&c->names) < 0)
				return -1;
		} else {
			vm_names_add_list(&c->names, argv[optind]);
			c->names_word = argv[optind];
		}
		optind++;
	}
	if (optind < argc && c->snapshot_name == NULL) {
		c->snapshot_name = argv[optind++];
		c->snapshot_positional = 1;
	}
	if (optind < argc)
		return error("unexpected argument '%s'; see 'qckpt checkpoint --help'", argv[optind]);
	if (c->snapshot_name != NULL && !valid_snapshot_name(c->snapshot_name))
		return error("bad checkpoint name: 1 to 200 characters, no control characters");
	if (c->names.n == 0)
		return error("no VM named; give NAME[,NAME...], -n NAME or - to read names from stdin");
	return 0;
}

/* `qckpt checkpoint web db` names web's checkpoint "db", as Checkpoint-VM
 * does; when db is a VM too, the user may have meant both. */
static void warn_second_vm(const struct checkpoint_cmd *c, const struct registry *reg)
{
	const char *word = c->names_word ? c->names_word : "the VMs from stdin";

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

static int cmd_checkpoint_exec(int argc, char **argv)
{
	struct checkpoint_cmd c = { .throttle.limit = default_throttle(), .mode = MODE_AUTO };
	struct registry reg;
	char err[512];
	int rc, all = 0, some_unknown = 0;

	rc = parse_options(&c, argc, argv);
	if (rc != 0) {
		vm_names_free(&c.names);
		return rc > 0 ? EXIT_ALL_OK : EXIT_USAGE;
	}
	if (registry_load(cmd_registry_path, &reg, err, sizeof err) < 0) {
		error("%s", err);
		rc = EXIT_USAGE;
		goto out;
	}
	warn_second_vm(&c, &reg);
	for (size_t i = 0; i < c.names.n; i++) {
		struct job *job;
		int yes = 1;

		if (c.whatif) {
			printf("What if: Performing operation \"Checkpoint\" on target \"%s\".\n", c.names.v[i]);
			continue;
		}
		if (c.confirm && (yes = cmd_confirm("Checkpoint", c.names.v[i], NULL, &all)) < 0) {
			rc = EXIT_USAGE;
			break;
		}
		if (!yes)
			continue;
		if ((job = make_job(&c, &reg, c.names.v[i])) == NULL) {
			some_unknown = 1;
			continue;
		}
		c.jobs = xrealloc(c.jobs, (c.njobs + 1) * sizeof *c.jobs);
		c.jobs[c.njobs++] = job;
	}
	if (rc == EXIT_USAGE || (some_unknown && c.stop_on_error)) {
		if (rc != EXIT_USAGE)
			for (size_t i = 0; i < c.njobs; i++)
				error_vm(c.jobs[i]->spec.vm, "not checkpointed: stopped after an earlier failure (--error-action stop)");
		registry_free(&reg);
		for (size_t i = 0; i < c.njobs; i++)
			job_free(c.jobs[i]);
		free(c.jobs);
		rc = rc ? rc : EXIT_SOME_FAILED;
		goto out;
	}
	if (c.as_job && c.njobs > 0) {
		/* Prompts and name checks are done: the rest goes on alone. */
		int detached = asjob_detach(argc, argv);

		if (detached != 0) {
			for (size_t i = 0; i < c.njobs; i++)
				job_free(c.jobs[i]);
			free(c.jobs);
			registry_free(&reg);
			rc = detached > 0 ? EXIT_ALL_OK : EXIT_USAGE;
			goto out;
		}
	}
	rc = run_jobs(&c);
	registry_free(&reg); /* the jobs borrowed it */
	if (some_unknown)
		rc = EXIT_SOME_FAILED;
	if (c.as_job)
		rc = asjob_finish(rc);
out:
	vm_names_free(&c.names);
	return rc;
}
