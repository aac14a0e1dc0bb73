/*
 * cmd-jobs.h: what the commands that run one task per VM share (checkpoint
 * and restore; remove and export next): Hyper-V's common switches (-Name,
 * -Passthru, -WhatIf, -Confirm, -ErrorAction, -AsJob) and --progress, the names as the
 * first word, the WhatIf/Confirm pass over the names, the loop with its
 * Ctrl-C handling, and the exit status summed over the VMs.  Each command
 * keeps only what is its own: its options, how a name becomes a job, how
 * a job is started, interrupted and reported.
 */
#ifndef CMD_JOBS_H
#define CMD_JOBS_H

#include <stddef.h>
#include <uv.h>

#include "cmd.h"
#include "progress.h"
#include "vmnames.h"

/* getopt values of the shared options; a command's own follow
 * OPT_JOBS_LAST. */
enum {
	OPT_JOBS_PASSTHRU = OPT_COMMON_LAST,
	OPT_JOBS_WHATIF,
	OPT_JOBS_CONFIRM,
	OPT_JOBS_AS_JOB,
	OPT_JOBS_PROGRESS,
	OPT_JOBS_LAST,
};
#define CMD_JOBS_SHORT "n:"
#define CMD_JOBS_LONG                                                      \
	{ "name", required_argument, NULL, 'n' },                          \
	{ "vm-name", required_argument, NULL, 'n' },                       \
	{ "passthru", no_argument, NULL, OPT_JOBS_PASSTHRU },              \
	{ "whatif", no_argument, NULL, OPT_JOBS_WHATIF },                  \
	{ "confirm", no_argument, NULL, OPT_JOBS_CONFIRM },                \
	{ "error-action", required_argument, NULL, OPT_ERROR_ACTION },     \
	{ "as-job", no_argument, NULL, OPT_JOBS_AS_JOB },                  \
	{ "progress", required_argument, NULL, OPT_JOBS_PROGRESS }

struct cmd_jobs {
	const struct cmd_entry *entry;
	struct vm_names names;
	const char *names_word;   /* NAME[,NAME...] as given, NULL for stdin */
	int named;                /* -n given */
	int passthru, whatif, confirm, as_job;
	int stop_on_error;        /* --error-action stop */
	int some_unknown;         /* a name that made no job */
	enum progress_output progress; /* --progress */

	/* running */
	void *data;               /* the command's */
	uv_loop_t loop;
	uv_signal_t sigint, sigterm;
	/* Ctrl-C or SIGTERM; count is 1 the first time. */
	void (*on_signal)(struct cmd_jobs *j, int count);
	int signals;
	size_t running;           /* jobs started and not done */
	int failed;
};

/*
 * One of the shared options: 1 when OPT was one (handled), 0 when not,
 * -1 after printing what is wrong with its argument.
 */
int cmd_jobs_option(struct cmd_jobs *j, int opt, const char *arg);

/*
 * After the command's option parsing, whose result is PARSE_RC (0 go on,
 * >0 --help was shown, <0 usage error, message printed): the registry.
 * Returns -1 to go on with REG loaded, or the exit status to return now
 * (the names freed).
 */
struct registry;
int cmd_jobs_prepare(struct cmd_jobs *j, int parse_rc, struct registry *reg);

/* After the options: the first word names the VMs unless -n did.  0, or
 * -1 after a message. */
int cmd_jobs_names(struct cmd_jobs *j, int argc, char **argv);

/* The names are complete: -1 (message printed) when there are none. */
int cmd_jobs_check_names(const struct cmd_jobs *j);

/*
 * Each name in turn: a "What if:" line under --whatif, the prompt under
 * --confirm (DETAIL as cmd_confirm takes it), then ADD(j, name), which
 * returns 0 when it made a job and -1 when it printed why not.  Returns 0,
 * or -1 when the prompt could not be asked (usage error).
 */
int cmd_jobs_select(struct cmd_jobs *j, const char *operation, const char *detail,
		    int (*add)(struct cmd_jobs *j, const char *name));

/* --as-job once the jobs are made: 0 to go on here (no --as-job, or the
 * detached child), 1 in the parent (its work is done: exit 0), -1 on
 * error (message printed: exit 2). */
int cmd_jobs_detach(struct cmd_jobs *j, int argc, char **argv);

/* Run the loop: signal handlers and the progress board (progress.h) on,
 * START(j) starts the jobs, back when every handle is closed.  Returns the exit status over all VMs (with
 * --as-job, after the job's file is written). */
int cmd_jobs_run(struct cmd_jobs *j, void (*start)(struct cmd_jobs *j));

/* A job started (counted until cmd_jobs_done). */
void cmd_jobs_started(struct cmd_jobs *j);
/* A job is over; failed: it counts as a failed VM.  With nothing left
 * running, the signal handlers close so that the loop can end. */
void cmd_jobs_done(struct cmd_jobs *j, int failed);
/* No job will run any more (none was started, or all were stopped): let
 * the loop end once the running ones are done. */
void cmd_jobs_maybe_close(struct cmd_jobs *j);

/* The exit status when no loop ran (2 after a usage error, else 0 or 1
 * over the names). */
int cmd_jobs_status(const struct cmd_jobs *j, int usage_error);

void cmd_jobs_free(struct cmd_jobs *j);

#endif
