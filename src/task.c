/*
 * task.c: see task.h.  Kept free of any one command's states so that the
 * checkpoint job, restore, and later remove and export, share how replies
 * are counted, how the first error wins and how undo runs back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "task.h"
#include "util.h"

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

static void task_retry_resume(struct task_call *call);

/* QEMU announces MIGRATION completed before it leaves finish-migrate for
 * postmigrate, and sends no event for that step: a cont in between is
 * refused ("not finalized"), or even accepted without resuming the guest
 * (seen on 7.2 and 10.0: no RESUME event before the reply, which QEMU
 * otherwise always sends first).  Such a cont is retried shortly (1, 2,
 * 4 ... ms, bounded). */
static int task_resume_again(struct task_call *call, int status,
			     const struct qmp_error *qerr)
{
	struct task *task = call->task;

	return call->resume && task->conn->qmp.state == QMP_STATE_READY &&
	       task->resume_retries < 12 &&
	       ((status == QMP_ECOMMAND && strstr(qerr->desc, "not finalized") != NULL) ||
		(status == 0 && call->stopped != NULL && *call->stopped));
}

static void on_reply(qmp_client *client, int status, json_t *result,
		     const struct qmp_error *qerr, void *arg)
{
	struct task_call *call = arg;
	struct task *task = call->task;

	if (task_resume_again(call, status, qerr)) {
		task_retry_resume(call);
		return;
	}
	if (call->resume && status == 0 && call->stopped != NULL && *call->stopped) {
		task_set_error(task, -EAGAIN, "cont: QEMU accepted it %d times but the guest stayed stopped",
			       task->resume_retries + 1);
		status = -EAGAIN;
	}
	if (status == 0 && call->done != NULL)
		*call->done = 1;
	if (status == 0 && call->slot != NULL) {
		json_decref(*call->slot);
		*call->slot = json_incref(result);
	} else if (status == QMP_ECOMMAND && call->refusal != NULL) {
		snprintf(call->refusal, call->refusal_size, "%s", qerr->desc);
	} else if (status != 0 && call->optional) {
		if (status == QMP_ECOMMAND && !call->quiet)
			warn_vm(task->vm, "%s: %s", call->command, qerr->desc);
	} else if (status == QMP_ECOMMAND) {
		task_set_error(task, status, "%s: %s", call->command, qerr->desc);
	} else if (status != 0) {
		vmconn_explain(task->conn, status, qerr, call->command);
		task_set_error(task, status, "%s", task->conn->error);
	}
	if (call->after != NULL)
		call->after(task, call, status, qerr);
	free(call);
	task->outstanding--;
	task_settled(task);
}

struct task_call *task_send_call(struct task *task, const char *command,
				 json_t *args, int fd, json_t **slot,
				 int optional, unsigned timeout_ms)
{
	struct task_call *call;
	int rc;

	if (task->conn == NULL || task->conn->qmp.state != QMP_STATE_READY) {
		json_decref(args);
		if (!optional)
			task_set_error(task, QMP_ECLOSED, "%s: the monitor is closed", command);
		return NULL;
	}
	call = xcalloc(1, sizeof *call);
	call->task = task;
	call->command = command;
	call->slot = slot;
	call->optional = optional;
	task->outstanding++;
	rc = qmp_client_execute_ex(&task->conn->qmp, command, args, fd,
				   timeout_ms, on_reply, call);
	if (rc < 0) {
		task->outstanding--;
		free(call);
		/* An optional command that cannot even be sent is no more a
		 * failure than one QEMU refused. */
		if (optional)
			verbose_vm(task->vm, "%s not sent: %s", command, qmp_strerror(rc));
		else
			task_set_error(task, rc, "%s: %s", command, qmp_strerror(rc));
		return NULL;
	}
	return call;
}

void task_send_ex(struct task *task, const char *command, json_t *args,
		  int fd, json_t **slot, int optional)
{
	task_send_call(task, command, args, fd, slot, optional, QMP_DEFAULT_TIMEOUT_MS);
}

static void on_resume_retry(uv_timer_t *timer)
{
	struct task_call *call = timer->data;
	struct task *task = call->task;
	int rc;

	timer->data = NULL;
	rc = qmp_client_execute_ex(&task->conn->qmp, "cont", NULL, -1,
				   QMP_DEFAULT_TIMEOUT_MS, on_reply, call);
	if (rc < 0)
		on_reply(&task->conn->qmp, rc, NULL, NULL, call);
}

static void task_retry_resume(struct task_call *call)
{
	struct task *task = call->task;

	if (!task->retry_timer_init) {
		uv_timer_init(task->loop, &task->retry_timer);
		task->retry_timer_init = 1;
	}
	task->retry_timer.data = call;
	uv_timer_start(&task->retry_timer, on_resume_retry, 1u << task->resume_retries++, 0);
}

struct task_call *task_send_resume(struct task *task, int optional,
				   int *resumed, const int *stopped)
{
	struct task_call *call = task_send_call(task, "cont", NULL, -1, NULL,
						optional, QMP_DEFAULT_TIMEOUT_MS);

	if (call != NULL) {
		call->resume = 1;
		call->done = resumed;
		call->stopped = stopped;
	}
	return call;
}

void task_hold(struct task *task)
{
	task->outstanding++;
}

void task_release(struct task *task)
{
	task->outstanding--;
	task_settled(task);
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
	while (!task->finished && task->outstanding == 0 && task->awaiting == 0) {
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
	if (task->progress != NULL)
		progress_finish(task->progress, task->error_status ? "failed" : "done");
	if (task->retry_timer_init) {
		/* a retry still waiting holds its call */
		free(task->retry_timer.data);
		uv_close((uv_handle_t *)&task->retry_timer, NULL);
	}
	task->ops->done(task);
}

static void on_event(qmp_client *client, const char *name, json_t *data,
		     const struct qmp_timestamp *ts, void *arg)
{
	struct task *task = arg;

	if (!task->finished && task->ops->event != NULL) {
		task->event_ts = ts;
		task->ops->event(task, name, data);
		task->event_ts = NULL;
	}
}

static void on_disconnect(qmp_client *client, int status, void *arg)
{
	struct task *task = arg;

	if (!task->finished && task->ops->disconnect != NULL)
		task->ops->disconnect(task);
}

void task_phase(struct task *task, const char *phase)
{
	if (task->progress != NULL)
		progress_phase(task->progress, phase);
}

void task_watch_migration(struct task *task)
{
	if (task->progress != NULL && task->conn != NULL)
		progress_watch(task->progress, PROGRESS_SRC_MIGRATE, &task->conn->qmp, -1, -1);
}

void task_attach(struct task *task, struct vmconn *conn)
{
	task->conn = conn;
	qmp_client_on_event(&conn->qmp, on_event, task);
	qmp_client_on_disconnect(&conn->qmp, on_disconnect, task);
}
