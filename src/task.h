/*
 * task.h: the generic part of a per-VM job on a libuv loop, shared by the
 * commands that drive QEMU through steps (restore now; checkpoint, remove
 * and export later): a connection to a monitor, commands sent with their
 * replies counted, the first error kept, a step function called when
 * everything a state waited for has arrived, an undo list walked back on
 * failure, and one completion callback.
 *
 * The owner's state machine lives in its own step function; the task only
 * says when to call it.  The semantics are job.c's: task_send_ex is
 * job_send_ex, task_wait is job_wait (plus a count of awaited events, where
 * job.c has its "migrating" flag), task_set_error is job_set_error,
 * task_finish is job_finish; job_undo_next becomes the undo list.
 */
#ifndef TASK_H
#define TASK_H

#include <stdarg.h>
#include <jansson.h>
#include <uv.h>

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
};

void task_init(struct task *task, uv_loop_t *loop, const char *vm,
	       const struct task_ops *ops, void *data);

/* Commands on task->conn.  optional: a failure is a warning.  slot: keeps
 * the result (a new reference).  fd: attached with SCM_RIGHTS, or -1. */
void task_send_ex(struct task *task, const char *command, json_t *args,
		  int fd, json_t **slot, int optional);
void task_send(struct task *task, const char *command, json_t *args,
	       json_t **slot);

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
 * them all once the work is past the point of no return. */
void task_on_undo(struct task *task, task_undo_fn fn, void *arg);
void task_forget_undo(struct task *task);

/* The step function calls this when task->error_status is set: walk the
 * undo list back, then finish. */
void task_fail(struct task *task);
/* Finish now (success or not): done() runs once. */
void task_finish(struct task *task);

/* Wire the task to a connection that is ready (events, disconnect). */
void task_attach(struct task *task, struct vmconn *conn);

#endif
