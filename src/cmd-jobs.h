/*
 * cmd-jobs.h: what the commands that run one task per VM share (checkpoint,
 * restore, remove and prune): Hyper-V's common switches (-Name, -Passthru,
 * -WhatIf, -Confirm, -ErrorAction, -AsJob) and --progress, the names as the
 * first word, the WhatIf/Confirm pass over the names, each VM's lock
 * (vmlock.h), the loop with its Ctrl-C handling, and the exit status summed
 * over the VMs.  Each command keeps only what is its own: its options, how
 * a name becomes a job, how a job is started, interrupted and reported.
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
	const struct cmd_entry *entry; /* its name is the VM locks' holder */
	struct vm_names names;
	const char *names_word;   /* NAME[,NAME...] as given, NULL for stdin */
	int named;                /* -n given */
	int passthru, whatif, confirm, as_job;
	int stop_on_error;        /* --error-action stop */
	int some_unknown;         /* a name that made no job */
	enum progress_output progress; /* --progress */
	const char *whatif_detail; /* after "What if: ... on target "VM"", or NULL */
	size_t made;              /* jobs the command's ADD made */
	/* --error-action stop after a name made no job: say what will not
	 * run (or NULL: the names' own lines said it). */
	void (*on_not_started)(struct cmd_jobs *j);
	struct cmd_jobs_lock { char *root, *vm; } *locks; /* taken (vmlock.h) */
	size_t nlocks;

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
 * getopt_long for a per-VM command (j->entry), whose LONGOPTS hold
 * CMD_COMMON_LONG and CMD_JOBS_LONG and SHORTOPTS CMD_COMMON_SHORT
 * CMD_JOBS_SHORT: the shared options are handled here.  Returns the next
 * option of the command's own, -1 at the end, CMD_OPT_HELP after --help,
 * or CMD_JOBS_OPT_BAD after the message (a shared option's bad argument).
 */
#define CMD_JOBS_OPT_BAD (-3)
int cmd_jobs_getopt(struct cmd_jobs *j, int argc, char **argv, const char *shortopts,
		    const struct option *longopts);

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

/* From the command's ADD (cmd_jobs_go): VM's lock (vmlock.h) for the rest
 * of the command, released by cmd_jobs_free.  0, or -1 after the line
 * that says who holds it (the VM then fails, the others go on). */
int cmd_jobs_lock(struct cmd_jobs *j, const char *root, const char *vm);

/*
 * The rest of the command once its options are parsed and the registry is
 * loaded.  Each name in turn: a "What if:" line under --whatif (with
 * " (WHATIF_DETAIL)" when set), the prompt under --confirm (OPERATION and
 * DETAIL as cmd_confirm takes them), then ADD(j, name), which returns 0
 * when it made a job and -1 when it printed why not.  Then: nothing more
 * after such a name under --error-action stop; --as-job detaches (the
 * parent returns, 1 if a VM was refused, the job's process goes on holding
 * the locks); cmd_jobs_run(START).  Returns the exit status.
 */
int cmd_jobs_go(struct cmd_jobs *j, int argc, char **argv, const char *operation,
		const char *detail, int (*add)(struct cmd_jobs *j, const char *name),
		void (*start)(struct cmd_jobs *j));

/* A job started (counted until cmd_jobs_done). */
void cmd_jobs_started(struct cmd_jobs *j);
/* A job is over; failed: it counts as a failed VM.  With nothing left
 * running, the signal handlers close so that the loop can end. */
void cmd_jobs_done(struct cmd_jobs *j, int failed);
/* No job will run any more (none was started, or all were stopped): let
 * the loop end once the running ones are done. */
void cmd_jobs_maybe_close(struct cmd_jobs *j);

void cmd_jobs_free(struct cmd_jobs *j);

#endif
