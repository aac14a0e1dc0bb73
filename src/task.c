/*
 * task.c: see task.h.  Kept free of any one command's states so that
 * restore, and later the checkpoint job, remove and export, share how
 * replies are counted, how the first error wins and how undo runs back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "task.h"
#include "util.h"

struct task_call {
	struct task *task;
	const char *command;
	json_t **slot;
	int optional;
};

void task_init(struct task *task, uv_loop_t *loop, const char *vm,
	       const struct task_ops *ops, void *data)
{
	memset(task, 0, sizeof *task);
	task->loop = loop;
	task->vm = vm;
	task->ops = ops;
	task->data = data;
}

void task_vset_error(struct task *task, int status, const char *fmt, va_list ap)
{
	if (task->error_status != 0)
		return;
	task->error_status = status ? status : -1;
	vsnprintf(task->error, sizeof task->error, fmt, ap);
}

void task_set_error(struct task *task, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	task_vset_error(task, status, fmt, ap);
	va_end(ap);
}

static void task_undo_next(struct task *task);

/* All replies in: the step function (or the undo) goes on. */
static void task_settled(struct task *task)
{
	if (task->finished || task->outstanding > 0)
		return;
	if (task->undoing)
		task_undo_next(task);
	else if (task->awaiting == 0)
		task->ops->step(task);
}

static void on_reply(qmp_client *client, int status, json_t *result,
		     const struct qmp_error *qerr, void *arg)
{
	struct task_call *call = arg;
	struct task *task = call->task;

	if (status == 0 && call->slot != NULL) {
		json_decref(*call->slot);
		*call->slot = json_incref(result);
	} else if (status != 0 && call->optional) {
		if (status == QMP_ECOMMAND)
			warn_vm(task->vm, "%s: %s", call->command, qerr->desc);
	} else if (status == QMP_ECOMMAND) {
		task_set_error(task, status, "%s: %s", call->command, qerr->desc);
	} else if (status != 0) {
		vmconn_explain(task->conn, status, qerr, call->command);
		task_set_error(task, status, "%s", task->conn->error);
	}
	free(call);
	task->outstanding--;
	task_settled(task);
}

void task_send_ex(struct task *task, const char *command, json_t *args,
		  int fd, json_t **slot, int optional)
{
	struct task_call *call;
	int rc;

	if (task->conn == NULL || task->conn->qmp.state != QMP_STATE_READY) {
		json_decref(args);
		if (!optional)
			task_set_error(task, QMP_ECLOSED, "%s: the monitor is closed", command);
		return;
	}
	call = xcalloc(1, sizeof *call);
	call->task = task;
	call->command = command;
	call->slot = slot;
	call->optional = optional;
	task->outstanding++;
	rc = qmp_client_execute_ex(&task->conn->qmp, command, args, fd,
				   QMP_DEFAULT_TIMEOUT_MS, on_reply, call);
	if (rc < 0) {
		task->outstanding--;
		free(call);
		if (!optional)
			task_set_error(task, rc, "%s: %s", command, qmp_strerror(rc));
	}
}

void task_send(struct task *task, const char *command, json_t *args,
	       json_t **slot)
{
	task_send_ex(task, command, args, -1, slot, 0);
}

void task_wait(struct task *task)
{
	task_settled(task);
}

void task_arrived(struct task *task)
{
	if (task->awaiting > 0)
		task->awaiting--;
	task_settled(task);
}

void task_on_undo(struct task *task, task_undo_fn fn, void *arg)
{
	struct task_undo *u = xcalloc(1, sizeof *u);

	u->fn = fn;
	u->arg = arg;
	u->next = task->undo;
	task->undo = u;
}

void task_forget_undo(struct task *task)
{
	while (task->undo != NULL) {
		struct task_undo *u = task->undo;

		task->undo = u->next;
		free(u);
	}
}

/* One action at a time, newest first; its commands' replies call us. */
static void task_undo_next(struct task *task)
{
	while (!task->finished && task->outstanding == 0) {
		struct task_undo *u = task->undo;

		if (u == NULL) {
			task_finish(task);
			return;
		}
		task->undo = u->next;
		u->fn(task, u->arg);
		free(u);
	}
}

void task_fail(struct task *task)
{
	if (task->finished)
		return;
	if (task->error_status == 0)
		task->error_status = -1;
	task->undoing = 1;
	task->awaiting = 0;
	task_undo_next(task);
}

void task_finish(struct task *task)
{
	if (task->finished)
		return;
	task->finished = 1;
	task_forget_undo(task);
	task->ops->done(task);
}

static void on_event(qmp_client *client, const char *name, json_t *data,
		     const struct qmp_timestamp *ts, void *arg)
{
	struct task *task = arg;

	if (!task->finished && task->ops->event != NULL)
		task->ops->event(task, name, data);
}

static void on_disconnect(qmp_client *client, int status, void *arg)
{
	struct task *task = arg;

	if (!task->finished && task->ops->disconnect != NULL)
		task->ops->disconnect(task);
}

void task_attach(struct task *task, struct vmconn *conn)
{
	task->conn = conn;
	qmp_client_on_event(&conn->qmp, on_event, task);
	qmp_client_on_disconnect(&conn->qmp, on_disconnect, task);
}
