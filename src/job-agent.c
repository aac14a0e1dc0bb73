/*
 * job-agent.c: the guest agent's part of a checkpoint job (Hyper-V's
 * Production and ProductionOnly types): connect to qemu-ga, freeze the
 * guest's file systems around the disk transaction, thaw them, and decide
 * what a failed freeze means (a standard checkpoint instead, or none).
 * The states that call these are in job.c's job_next() and job_step().
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "job.h"
#include "job-impl.h"
#include "log.h"
#include "util.h"

/* An agent call finished: the job goes on like after a QMP reply (the
 * call was held in the task, task_hold). */
static void job_agent_done(struct job *job)
{
	task_release(&job->task);
}

static void on_agent_ready(struct agent *agent, int status)
{
	struct job *job = agent->data;

	job->agent_ok = status == 0;
	if (status < 0)
		snprintf(job->agent_skip, sizeof job->agent_skip, "%s", agent->error);
	else
		verbose_vm(job->spec.vm, "guest agent at %s answered", job->spec.agent);
	job_agent_done(job);
}

/* The agent is asked only when it matters, and only when it can answer:
 * a guest that is not running cannot freeze anything. */
void job_agent_connect(struct job *job)
{
	if (!job_is_production_type(job) || job->spec.agent == NULL) {
		snprintf(job->agent_skip, sizeof job->agent_skip,
			 "no guest agent (agent= in the registry)");
		return;
	}
	if (!json_is_true(json_object_get(job->status, "running"))) {
		snprintf(job->agent_skip, sizeof job->agent_skip,
			 "the guest is %s, so its agent cannot freeze its file systems",
			 job_run_status(job));
		return;
	}
	job->agent.data = job;
	if (agent_open(job->task.loop, &job->agent, job->spec.vm, job->spec.agent,
		       on_agent_ready) == 0)
		task_hold(&job->task);
	else
		snprintf(job->agent_skip, sizeof job->agent_skip, "%s", job->agent.error);
}

static void on_agent_frozen(struct agent *agent, int status, long long count,
			    void *arg)
{
	struct job *job = arg;

	if (status == 0) {
		job->frozen = 1;
		job->frozen_filesystems = count;
		verbose_vm(job->spec.vm, "guest file systems frozen: %lld", count);
	} else {
		/* No answer: qemu-ga may still freeze, so thaw to be sure.  An
		 * error answer means it thawed whatever it had frozen. */
		job->freeze_unknown = status == QMP_ETIMEDOUT;
		snprintf(job->agent_skip, sizeof job->agent_skip, "%s", agent->error);
	}
	job_agent_done(job);
}

void job_agent_freeze(struct job *job)
{
	job->freeze_start_ms = mono_ms();
	if (agent_freeze(&job->agent, on_agent_frozen, job) == 0)
		task_hold(&job->task);
	else
		snprintf(job->agent_skip, sizeof job->agent_skip, "%s", job->agent.error);
}

static void on_agent_thawed(struct agent *agent, int status, long long count,
			    void *arg)
{
	struct job *job = arg;

	if (status == 0) {
		job->thawed = 1;
		job->freeze_ms = (long long)(mono_ms() - job->freeze_start_ms);
		verbose_vm(job->spec.vm, "guest file systems thawed: %lld, %lld ms after the freeze request",
			   count, job->freeze_ms);
	}
	job_agent_done(job);
}

/* Send the thaw; 0 if it went out (its answer steps the job). */
int job_agent_thaw(struct job *job)
{
	job->thaw_sent = 1;
	if (agent_thaw(&job->agent, on_agent_thawed, job) < 0)
		return -1;
	task_hold(&job->task);
	return 0;
}

/* The freeze failed and the type allows it: take a standard checkpoint,
 * in the mode a standard one would have used, as if asked for it. */
static int job_fall_back_to_standard(struct job *job)
{
	warn_vm(job->spec.vm, "%s: taking a standard checkpoint instead of a production one",
		job->agent_skip);
	job->production = 0;
	job->fell_back = 1;
	job->mode = job->fallback_mode;
	snprintf(job->checkpoint_type, sizeof job->checkpoint_type, "%s",
		 job->mode == MODE_DISK_ONLY ? "DiskOnly" : "Standard");
	if (job->mode == MODE_DISK_ONLY)
		return 0;
	if (!migrate_has_cap(job->caps, "events"))
		return task_set_error(&job->task, -ENOTSUP,
			"this QEMU does not offer migration events; use --mode disk-only"), -1;
	if (job_check_background_room(job) < 0 || job_open_memory_file(job) < 0)
		return -1;
	migrate_plan_init(&job->plan, job->caps, job->params,
			  job->mode == MODE_BACKGROUND, job->id);
	return 0;
}

/* JOB_FREEZE is over: frozen, or decide what a failed freeze means. */
void job_agent_after_freeze(struct job *job)
{
	if (job->frozen || job->task.error_status != 0)
		return;
	if (job->spec.type == VM_TYPE_PRODUCTION_ONLY) {
		task_set_error(&job->task, -EIO,
			"production-only checkpoint not taken, nothing changed: %s; check qemu-ga in the guest, or use --type production to accept a standard checkpoint",
			job->agent_skip);
		return;
	}
	job_fall_back_to_standard(job);
}

/* JOB_THAW is over.  After a frozen snapshot the checkpoint is whole even
 * if the thaw failed, but the guest may still be frozen: say so loudly. */
void job_agent_after_thaw(struct job *job)
{
	if (job->thawed)
		return;
	if (job->fell_back) {
		warn_vm(job->spec.vm, "guest-fsfreeze-thaw after a failed freeze: %s", job->agent.error);
		return;
	}
	snprintf(job->resume_error, sizeof job->resume_error,
		 "the checkpoint was taken but thawing the guest's file systems failed (%s): they may still be frozen; send {\"execute\":\"guest-fsfreeze-thaw\"} to the guest agent at %s",
		 job->agent.error, job->spec.agent);
}
