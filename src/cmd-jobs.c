/*
 * cmd-jobs.c: see cmd-jobs.h.  One copy of what checkpoint, restore,
 * remove and prune do alike: the switches every per-VM command takes,
 * WhatIf and Confirm, the VMs' locks, --as-job, the loop and its signals,
 * and the exit status, so that the commands agree on them by construction.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asjob.h"
#include "cmd-jobs.h"
#include "log.h"
#include "registry.h"
#include "util.h"
#include "vmlock.h"

/* One of the shared options: 1 when OPT was one (handled), 0 when not,
 * -1 after printing what is wrong with its argument. */
static int shared_option(struct cmd_jobs *j, int opt, const char *arg)
{
	switch (opt) {
	case 'n':
		j->named = 1;
		if (strcmp(arg, "-") == 0) {
			j->names_word = NULL;
			return vm_names_read_stdin(&j->names) < 0 ? -1 : 1;
		}
		j->names_word = arg;
		vm_names_add_list(&j->names, arg);
		return 1;
	case OPT_JOBS_PASSTHRU: j->passthru = 1; return 1;
	case OPT_JOBS_WHATIF: j->whatif = 1; return 1;
	case OPT_JOBS_CONFIRM: j->confirm = 1; return 1;
	case OPT_JOBS_AS_JOB: j->as_job = 1; return 1;
	case OPT_JOBS_PROGRESS:
		if (progress_parse(arg, &j->progress) < 0)
			return error("--progress: auto, none or json, not '%s'", arg), -1;
		return 1;
	case OPT_ERROR_ACTION:
		if (strcmp(arg, "stop") != 0 && strcmp(arg, "continue") != 0)
			return error("--error-action: continue or stop, not '%s'", arg), -1;
		j->stop_on_error = strcmp(arg, "stop") == 0;
		return 1;
	default:
		return 0;
	}
}

int cmd_jobs_getopt(struct cmd_jobs *j, int argc, char **argv, const char *shortopts,
		    const struct option *longopts)
{
	int opt, rc;

	while ((opt = cmd_getopt(j->entry, argc, argv, shortopts, longopts)) != -1 &&
	       opt != CMD_OPT_HELP) {
		if ((rc = shared_option(j, opt, optarg)) == 0)
			return opt;
		if (rc < 0)
			return CMD_JOBS_OPT_BAD;
	}
	return opt;
}

int cmd_jobs_prepare(struct cmd_jobs *j, int parse_rc, struct registry *reg)
{
	char err[512];

	if (parse_rc == 0 && registry_load(cmd_registry_path, reg, err, sizeof err) == 0)
		return -1;
	if (parse_rc == 0)
		error("%s", err);
	cmd_jobs_free(j);
	return parse_rc > 0 ? EXIT_ALL_OK : EXIT_USAGE;
}

int cmd_jobs_names(struct cmd_jobs *j, int argc, char **argv)
{
	if (j->named || optind >= argc)
		return 0;
	if (strcmp(argv[optind], "-") == 0) {
		if (vm_names_read_stdin(&j->names) < 0)
			return -1;
	} else {
		vm_names_add_list(&j->names, argv[optind]);
		j->names_word = argv[optind];
	}
	optind++;
	return 0;
}

int cmd_jobs_check_names(const struct cmd_jobs *j)
{
	if (j->names.n == 0)
		return error("no VM named; give NAME[,NAME...], -n NAME or - to read names from stdin");
	return 0;
}

/* WhatIf and Confirm over the names, ADD for each one confirmed: 0, or -1
 * when the prompt could not be asked (usage error). */
static int select_names(struct cmd_jobs *j, const char *operation, const char *detail,
			int (*add)(struct cmd_jobs *j, const char *name))
{
	int all = 0;

	for (size_t i = 0; i < j->names.n; i++) {
		const char *name = j->names.v[i];
		int yes = 1;

		if (j->whatif) {
			printf("What if: Performing operation \"%s\" on target \"%s\"%s%s%s.\n",
			       operation, name, j->whatif_detail ? " (" : "",
			       j->whatif_detail ?: "", j->whatif_detail ? ")" : "");
			continue;
		}
		if (j->confirm && (yes = cmd_confirm(operation, name, detail, &all)) < 0)
			return -1;
		if (!yes)
			continue;
		if (add(j, name) < 0)
			j->some_unknown = 1;
		else
			j->made++;
	}
	return 0;
}

int cmd_jobs_lock(struct cmd_jobs *j, const char *root, const char *vm)
{
	char err[1024];

	if (vmlock_take(root, vm, j->entry ? j->entry->name : "?", err, sizeof err) < 0)
		return error_vm(vm, "%s", err);
	j->locks = xrealloc(j->locks, (j->nlocks + 1) * sizeof *j->locks);
	j->locks[j->nlocks++] = (struct cmd_jobs_lock){ xstrdup(root), xstrdup(vm) };
	return 0;
}

/* --as-job once the jobs are made: 0 to go on here (no --as-job, or the
 * job's process), 1 in the parent (its work is done), -1 on error
 * (message printed). */
static int detach(struct cmd_jobs *j, int argc, char **argv)
{
	int detached;

	if (!j->as_job)
		return 0;
	/* Prompts, name checks and locks are done: the rest goes on alone,
	 * holding the locks it inherited. */
	detached = asjob_detach(argc, argv);
	if (detached == 0 && asjob_in_process()) {
		vmlock_moved_to_job(asjob_id());
		/* the parent said which VMs made no job, and exits 1 for them:
		 * the job's status is that of the VMs it runs */
		j->some_unknown = 0;
	}
	return detached > 0 ? 1 : detached < 0 ? -1 : 0;
}

static void on_signal(uv_signal_t *handle, int signum)
{
	struct cmd_jobs *j = handle->data;

	j->on_signal(j, ++j->signals);
}

void cmd_jobs_maybe_close(struct cmd_jobs *j)
{
	if (j->running == 0 && uv_is_active((uv_handle_t *)&j->sigint)) {
		uv_close((uv_handle_t *)&j->sigint, NULL);
		uv_close((uv_handle_t *)&j->sigterm, NULL);
	}
}

void cmd_jobs_started(struct cmd_jobs *j)
{
	j->running++;
}

void cmd_jobs_done(struct cmd_jobs *j, int failed)
{
	j->running--;
	if (failed)
		j->failed = 1;
}

/* The exit status over the names: 1 when one made no job or failed. */
static int status(const struct cmd_jobs *j)
{
	return j->failed || j->some_unknown ? EXIT_SOME_FAILED : EXIT_ALL_OK;
}

/* The loop: signal handlers and the progress board (progress.h) on,
 * START(j) starts the jobs, back when every handle is closed. */
static int run(struct cmd_jobs *j, void (*start)(struct cmd_jobs *j))
{
	uv_loop_init(&j->loop);
	uv_signal_init(&j->loop, &j->sigint);
	uv_signal_init(&j->loop, &j->sigterm);
	j->sigint.data = j->sigterm.data = j;
	uv_signal_start(&j->sigint, on_signal, SIGINT);
	uv_signal_start(&j->sigterm, on_signal, SIGTERM);
	progress_board_open(j->progress);
	start(j);
	cmd_jobs_maybe_close(j);
	uv_run(&j->loop, UV_RUN_DEFAULT);
	uv_loop_close(&j->loop);
	progress_board_close();
	return status(j);
}

int cmd_jobs_go(struct cmd_jobs *j, int argc, char **argv, const char *operation,
		const char *detail, int (*add)(struct cmd_jobs *j, const char *name),
		void (*start)(struct cmd_jobs *j))
{
	if (select_names(j, operation, detail, add) < 0)
		return EXIT_USAGE;
	if (j->some_unknown && j->stop_on_error) {
		if (j->on_not_started != NULL)
			j->on_not_started(j);
		return EXIT_SOME_FAILED;
	}
	if (j->made == 0)
		return status(j);
	switch (detach(j, argc, argv)) {
	case 1:
		return status(j);
	case -1:
		return EXIT_USAGE;
	}
	return run(j, start);
}

void cmd_jobs_free(struct cmd_jobs *j)
{
	for (size_t i = 0; i < j->nlocks; i++) {
		vmlock_release(j->locks[i].root, j->locks[i].vm);
		free(j->locks[i].root);
		free(j->locks[i].vm);
	}
	free(j->locks);
	j->locks = NULL;
	j->nlocks = 0;
	vm_names_free(&j->names);
}
