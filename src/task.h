/*
 * task.h: the generic part of a per-VM job on a libuv loop, shared by the
 * commands that drive QEMU through steps (checkpoint and restore; remove
 * and export later): a connection to a monitor, commands sent with their
 * replies counted, the first error kept, a step function called when
 * everything a state waited for has arrived, an undo list walked back on
 * failure, and one completion callback.
 *
 * The owner's state machine lives in its own step function; the task only
 * says when to call it.  The semantics are job.c's: task_send_ex is
 * job_send_ex, task_wait is job_wait (plus a count of awaited events, where
 * job.c had its "migrating" flag), task_set_error is job_set_error,
 * task_finish is job_finish; the undo is the list.  The checkpoint job
 * (job.c) is built on it too.
 */
#ifndef TASK_H
#define TASK_H

#include <stdarg.h>
#include <jansson.h>
#include <uv.h>

#include "progress.h"
#include "vmconn.h"

struct task;

struct task_ops {
	/* Everything the current state waited for has arrived. */
	void (*step)(struct task *task);
	/* A QMP event on the connection (may be NULL). */
	void (*event)(struct task *task, const char *name, json_t *data);
	/* The connection was lost; replies pending have failed already. */
	void (*disconnect)(struct task *task);
	/* Once, when finished (task->error_status says how). */
	void (*done)(struct task *task);
};

/* One undo action: undone(task, arg) may send commands; the next action
 * runs when their replies are in. */
typedef void (*task_undo_fn)(struct task *task, void *arg);

struct task_undo {
	task_undo_fn fn;
	void *arg;
	struct task_undo *next;
};

struct task_call;

/* A reply's meaning for the owner beyond what task_call records (a refused
 * migrate starts nothing, a create job never concludes): called with the
 * reply's status before the task counts it in. */
typedef void (*task_reply_fn)(struct task *task, struct task_call *call,
			      int status, const struct qmp_error *qerr);

/* One command in flight: task_send_call returns it so that the caller can
 * ask for more than task_send_ex offers, before the reply comes. */
struct task_call {
	struct task *task;
	const char *command;
	json_t **slot;          /* keeps the result (a new reference) */
	int optional;           /* a failure is a warning */
	int quiet;              /* optional and expected to fail: not even that */
	int *done;              /* set to 1 on success */
	char *refusal;          /* a trial: QEMU's refusal goes here, no error */
	size_t refusal_size;
	int resume;             /* a cont: see task_send_resume */
	const int *stopped;     /* resume: the guest is still stopped, or NULL */
	task_reply_fn after;
	void *arg;              /* for after */
};

struct task {
	void *data;
	const char *vm;         /* for messages; owned by the caller */
	uv_loop_t *loop;
	const struct task_ops *ops;
	struct vmconn *conn;    /* where commands go, or NULL */
	int outstanding;        /* replies not in yet */
	int awaiting;           /* events (or spawned work) not in yet */
	int error_status;
	char error[1024];
	struct task_undo *undo; /* newest first */
	int undoing;
	int finished;
	/* During ops->event: QEMU's timestamp of the event. */
	const struct qmp_timestamp *event_ts;
	/* what the user sees of it (progress.h), or NULL; its row ends
	 * when the task does */
	struct progress *progress;
	/* task_send_resume's retries */
	int resume_retries;
	int retry_timer_init;
	uv_timer_t retry_timer;
};

void task_init(struct task *task, uv_loop_t *loop, const char *vm,
	       const struct task_ops *ops, void *data);

/* Commands on task->conn.  optional: a failure is a warning.  slot: keeps
 * the result (a new reference).  fd: attached with SCM_RIGHTS, or -1. */
void task_send_ex(struct task *task, const char *command, json_t *args,
		  int fd, json_t **slot, int optional);
void task_send(struct task *task, const char *command, json_t *args,
	       json_t **slot);
/* task_send_ex with its own reply timeout (QMP_DEFAULT_TIMEOUT_MS is the
 * default), returning the call to add to (NULL: not sent, error set
 * unless optional). */
struct task_call *task_send_call(struct task *task, const char *command,
				 json_t *args, int fd, json_t **slot,
				 int optional, unsigned timeout_ms);
/* cont after a save.  QEMU announces MIGRATION completed before it leaves
 * finish-migrate and sends no event for that step: a cont in between is
 * refused ("not finalized") or accepted without resuming the guest.  So
 * it is retried (1, 2, 4 ... ms, bounded) while refused so, or while
 * *stopped (the owner's STOP-without-RESUME flag) stays set after a
 * success.  *resumed (if not NULL) is set to 1 when it worked. */
struct task_call *task_send_resume(struct task *task, int optional,
				   int *resumed, const int *stopped);

/* Work outside QMP (the guest agent, the thread pool) counted like a
 * reply: task_hold before it starts, task_release when it is back. */
void task_hold(struct task *task);
void task_release(struct task *task);

/* Remember the first cause only: later errors are consequences. */
void task_set_error(struct task *task, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void task_vset_error(struct task *task, int status, const char *fmt,
		     va_list ap);

/* A state's commands are sent: step now if nothing is pending. */
void task_wait(struct task *task);
/* Something counted in task->awaiting arrived. */
void task_arrived(struct task *task);

/* Register an undo action (run in reverse order on failure), and forget
 * them all once the work is past the point of no return.  An action may
 * wait for events too: what it adds to task->awaiting (task_fail zeroed
 * it) holds the next action back until task_arrived counts it down. */
void task_on_undo(struct task *task, task_undo_fn fn, void *arg);
void task_forget_undo(struct task *task);

/* The step function calls this when task->error_status is set: walk the
 * undo list back, then finish. */
void task_fail(struct task *task);
/* Finish now (success or not): done() runs once. */
void task_finish(struct task *task);

/* The phase the user sees (progress.h: "saving memory"); a static
 * string.  Nothing without task->progress. */
void task_phase(struct task *task, const char *phase);
/* During this phase the figures come from QEMU on the task's connection
 * (PROGRESS_SRC_MIGRATE: query-migrate's ram counters). */
void task_watch_migration(struct task *task);

/* Wire the task to a connection that is ready (events, disconnect). */
void task_attach(struct task *task, struct vmconn *conn);

#endif
