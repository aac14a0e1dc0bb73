/*
 * asjob.h: background jobs, PowerShell's -AsJob for qckpt.  A command run
 * with --as-job detaches into its own process and session, records itself
 * under the jobs directory and returns at once with a job id; `qckpt job`
 * lists, shows, waits for, receives, stops and removes jobs.
 *
 * One directory per job, <jobs>/<id>/:
 *   job.json   {"Id", "Name", "Command", "State", "Pid", "StartTime",
 *               "EndTime", "ExitStatus", "HasMoreData"}, rewritten atomically
 *   output     what the command printed on stdout (e.g. --passthru objects)
 *   errors     what it printed on stderr
 *   lock       held (flock) by the job's process for as long as it lives, so
 *              a job whose process died is told from a running one, waiting
 *              needs no polling, and a reused pid is never signalled
 * States: Running, Completed (exit 0), Failed (exit 1 or 2, or the process
 * died), Stopped (by `qckpt job stop`).
 */
#ifndef ASJOB_H
#define ASJOB_H

#include <jansson.h>

/* <jobs>: $QCKPT_JOBS_DIR, else /run/qckpt/jobs for root, else
 * $XDG_RUNTIME_DIR/qckpt/jobs, else /tmp/qckpt-<uid>/jobs.  New string. */
char *asjob_dir(void);

/*
 * Detach the rest of this command into a background job.  In the caller
 * (the foreground process) prints the job id and returns 1: the command
 * must return 0 at once.  In the job's process returns 0 with stdout and
 * stderr going to the job's files; the command goes on and ends with
 * asjob_finish(), which cmd_dispatch calls for every command.  -1 on error
 * (message printed).
 */
int asjob_detach(int argc, char **argv);

/* Is this process a job's (after asjob_detach returned 0 in it)? */
int asjob_in_process(void);
/* That job's id, or NULL in any other process. */
const char *asjob_id(void);

/* In the job's process: the latest progress of its VMs (an array of
 * progress.h's JSON rows), in the job's file "progress" (replaced whole,
 * by rename: a reader never sees half of it).  Not fsynced: it is only
 * news, and gone with the job. */
void asjob_write_progress(json_t *rows);

/* The progress a job recorded (an array), or NULL. */
json_t *asjob_load_progress(const char *id);

/* In the job's process: record the exit status; returns it.  Elsewhere:
 * returns it and does nothing. */
int asjob_finish(int status);

/* Load job ID (a number); NULL with a message when there is none.  The
 * state is corrected for a process that died without finishing. */
json_t *asjob_load(const char *id);

/* Every job, oldest first; NULL (after one line) when the jobs directory
 * is not private to this user (owner, mode 0700, not a symlink). */
json_t *asjob_list(void);

/* Is the job's process alive (its lock held)? */
int asjob_running(const char *id);

/* Path of a file of job ID, new string. */
char *asjob_file(const char *id, const char *name);

/* Mark the job's output as received (HasMoreData false). */
int asjob_set_received(const char *id);

/* Stop a running job: SIGTERM to its process (which undoes its work),
 * recorded as Stopped.  0, or -1 with a message. */
int asjob_stop(const char *id);

/* Remove a finished job's directory. */
int asjob_remove(const char *id);

#endif
