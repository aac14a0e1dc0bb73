/*
 * job-undo.c: the failure path of a checkpoint job, as entries of the
 * task's undo list (task.h).  Each state registers the undo of what it is
 * about to create (job_undo_on_*), so that whatever failed and wherever,
 * the task walks back exactly what happened, newest first, which is also
 * the order that keeps the guest safe: thaw its file systems (the freeze
 * is the newest thing), end a running migration, resume a guest that was
 * running, put the migration settings back, put vm.json back, detach and
 * delete overlays that were never switched in, remove the memory file.
 * Disks that were switched in stay (they hold guest data); when they make
 * a whole disk-only checkpoint, it is recorded as exactly that.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "job.h"
#include "job-impl.h"
#include "util.h"

/* The task's error grows by a consequence the user must hear of. */
static void job_append_error(struct job *job, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void job_append_error(struct job *job, const char *fmt, ...)
{
	size_t len = strlen(job->task.error);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(job->task.error + len, sizeof job->task.error - len, fmt, ap);
	va_end(ap);
}

/* Sent, but no answer (timeout, monitor lost): the disks may be switched. */
static int job_transaction_maybe_done(const struct job *job)
{
	return job->transaction_sent && !job->transaction_done &&
	       (!job_connected(job) || job->transaction_unknown);
}

/* QEMU refused the switch or never got it: vm.json names the images QEMU
 * runs on again. */
static void job_undo_catalog(struct job *job)
{
	int rc = job_catalog_rollback(job);

	if (rc < 0)
		job_append_error(job, "; and vm.json could not be put back (%s): it names the unused overlay %s, which is backed by %s and so still right to run on",
			 strerror(-rc), job->disks[0].overlay, job->disks[0].image);
}

static int disk_needs_detach(const struct disk *d, int overlay)
{
	return !d->switched && (overlay ? d->overlay_added : d->file_added);
}

static void undo_detach(struct job *job, int overlay)
{
	for (size_t i = 0; i < job->ndisks; i++) {
		struct disk *d = &job->disks[i];

		if (!disk_needs_detach(d, overlay))
			continue;
		task_send_ex(&job->task, "blockdev-del", json_pack("{s:s}", "node-name",
			    overlay ? d->overlay_node : d->file_node), -1, NULL, 1);
		if (overlay)
			d->overlay_added = 0;
		else
			d->file_added = 0;
	}
}

static void undo_dismiss(struct task *task, void *arg)
{
	struct job *job = arg;

	for (size_t i = 0; i < job->ndisks; i++) {
		struct disk *d = &job->disks[i];

		if (d->job_concluded && !d->job_dismissed) {
			d->job_dismissed = 1;
			task_send_ex(&job->task, "job-dismiss", json_pack("{s:s}", "id",
				    d->create_job), -1, NULL, 1);
		}
	}
}

/* The memory file goes: close our fd first, or an unlinked file keeps its
 * space (a full disk is a reason we get here, and the records that follow
 * need room). */
static void job_drop_memory(struct job *job)
{
	if (job->memfd >= 0) {
		close(job->memfd);
		job->memfd = -1;
	}
	/* a network monitor's path is on the QEMU host: never ours */
	if (job->memory_path != NULL && !job_remote(job))
		unlink(job->memory_path);
}

/* QEMU made it, or may have (its job started, no end seen). */
static int job_remote_file_made(const struct disk *d)
{
	return d->file_job_sent && (d->file_job_concluded || !d->file_job_dismissed ||
				    d->file_job_unknown);
}

/* A network monitor: what QEMU made on its host stays there (QMP cannot
 * delete a file); the user hears which files, to delete them there. */
static void job_tell_remote_files(struct job *job)
{
	char list[512] = "";
	size_t len = 0, n = 0;

	for (size_t i = 0; i < job->ndisks; i++)
		if (job_remote_file_made(&job->disks[i]) && !job->disks[i].switched &&
		    len < sizeof list)
			len += (size_t)snprintf(list + len, sizeof list - len, "%s%s",
						n++ ? " " : "", job->disks[i].overlay);
	if (job->migrate_sent && len < sizeof list)
		len += (size_t)snprintf(list + len, sizeof list - len, "%s%s",
					n++ ? " " : "", job->memory_path);
	if (n > 0)
		job_append_error(job, "; what QEMU made%s on %s stays there (QMP cannot delete files): delete %s on that host%s",
				 job_connected(job) ? "" : " or may have made", job->spec.qemu_host,
				 list, job_connected(job) ? "" : " if there");
}

/* Local files: what was never switched in is ours to delete.  Overlays a
 * transaction may have switched in (no reply: the connection dropped) hold
 * guest data and are kept. */
static void undo_files(struct task *task, void *arg)
{
	struct job *job = arg;
	int unknown = job_transaction_maybe_done(job);

	for (size_t i = 0; i < job->ndisks; i++) {
		struct disk *d = &job->disks[i];

		/* vm.json that could not be put back still names it */
		if (d->file_created && !d->switched && !unknown && !job->catalog_written)
			unlink(d->overlay);
	}
	job_drop_memory(job);
	if (job->dir != NULL && !job->record_written)
		remove_dir_files(job->dir);
	if (job_remote(job) && !unknown)
		job_tell_remote_files(job);
	/* An overlay is backed by the image it would replace, so running the
	 * VM on it is right whether or not the switch happened. */
	if (unknown && job->ndisks > 0)
		job_append_error(job, "; the disk transaction may have happened, so its overlays were kept: run the VM on them, which is right either way (disk %s: %s, backed by %s%s)",
			 job->disks[0].device, job->disks[0].overlay, job->disks[0].image,
			 job->ndisks > 1 ? "; the other disks alike" : "");
}

/*
 * The disks were switched but the memory could not be had (background
 * mode saves memory after the disk snapshot): what exists is a consistent
 * disk-only checkpoint, so record exactly that and say so.
 */
static void job_record_disk_only(struct job *job)
{
	char *cause = xstrdup(job->task.error);
	int rc;

	job->mode = MODE_DISK_ONLY;
	job->production = 0; /* not known to be application-consistent */
	snprintf(job->checkpoint_type, sizeof job->checkpoint_type, "DiskOnly");
	json_decref(job->record);
	job->record = job_build_record(job);
	rc = catalog_write_record(job->dir, job->record);
	job->record_written = rc == 0;
	if (rc == 0)
		snprintf(job->task.error, sizeof job->task.error,
			 "%s; recorded a disk-only checkpoint %s instead (memory not saved)",
			 cause, job->id);
	else
		snprintf(job->task.error, sizeof job->task.error,
			 "%s; no checkpoint recorded (%s), but the disks now write to new overlays (%s...): the images before them are unchanged",
			 cause, strerror(-rc), job->ndisks ? job->disks[0].overlay : "");
	free(cause);
}

static void undo_file_nodes(struct task *task, void *arg)
{
	undo_detach(arg, 0);
}

static void undo_overlay_nodes(struct task *task, void *arg)
{
	undo_detach(arg, 1);
}

/* Overlays still being formatted cannot go yet: their JOB_STATUS_CHANGE
 * concluded events are awaited (the job's on_block_job_event counts them). */
static void undo_wait_formats(struct task *task, void *arg)
{
	struct job *job = arg;

	/* a closed monitor sends no more events: nothing to wait for */
	for (size_t i = 0; job_connected(job) && i < job->ndisks; i++)
		if (!job->disks[i].job_concluded && !job->disks[i].job_dismissed)
			task->awaiting++;
}

/* What was created in QEMU is undone while QEMU is there; the overlays
 * are taken out after vm.json no longer names them. */
void job_undo_on_files(struct job *job)
{
	task_on_undo(&job->task, undo_files, job);
}

void job_undo_on_nodes(struct job *job, int overlay)
{
	task_on_undo(&job->task, overlay ? undo_overlay_nodes : undo_file_nodes, job);
}

/* The protocol files' create jobs (network monitors), as the formats'. */
static void undo_file_dismiss(struct task *task, void *arg)
{
	struct job *job = arg;

	for (size_t i = 0; i < job->ndisks; i++) {
		struct disk *d = &job->disks[i];

		if (d->file_job_concluded && !d->file_job_dismissed) {
			d->file_job_dismissed = 1;
			task_send_ex(&job->task, "job-dismiss", json_pack("{s:s}", "id",
				    d->file_job), -1, NULL, 1);
		}
	}
}

static void undo_wait_file_jobs(struct task *task, void *arg)
{
	struct job *job = arg;

	for (size_t i = 0; job_connected(job) && i < job->ndisks; i++)
		if (!job->disks[i].file_job_concluded && !job->disks[i].file_job_dismissed)
			task->awaiting++;
}

void job_undo_on_file_jobs(struct job *job)
{
	task_on_undo(&job->task, undo_file_dismiss, job);
	task_on_undo(&job->task, undo_wait_file_jobs, job); /* runs first */
}

void job_undo_on_formats(struct job *job)
{
	task_on_undo(&job->task, undo_dismiss, job);
	task_on_undo(&job->task, undo_wait_formats, job); /* runs first */
}

/* QEMU refused the switch or never got it: vm.json names the images QEMU
 * runs on again.  Switched: the memory cannot be had any more, and the
 * disks make a disk-only checkpoint. */
static void undo_catalog(struct task *task, void *arg)
{
	struct job *job = arg;

	if (job->transaction_done)
		job_drop_memory(job);
	else if (!job_transaction_maybe_done(job))
		job_undo_catalog(job);
	if (job->transaction_done && (job->mode != MODE_DISK_ONLY || job->production))
		job_record_disk_only(job);
}

void job_undo_on_catalog(struct job *job)
{
	task_on_undo(&job->task, undo_catalog, job);
}

static int job_thaw_pending(const struct job *job)
{
	return (job->frozen || job->freeze_unknown) && !job->thaw_sent;
}

/* Frozen file systems first: nothing else is as urgent for the guest. */
static void undo_thaw(struct task *task, void *arg)
{
	struct job *job = arg;

	if (job_thaw_pending(job))
		job_agent_thaw(job); /* its answer walks on */
}

static void undo_thaw_failed(struct task *task, void *arg)
{
	struct job *job = arg;

	if (job->thaw_sent && !job->thawed && (job->frozen || job->freeze_unknown))
		job_append_error(job, "; thawing failed too (%s): the guest's file systems may still be frozen, send guest-fsfreeze-thaw to %s",
				 job->agent.error, job->spec.agent);
}

void job_undo_on_freeze(struct job *job)
{
	task_on_undo(&job->task, undo_thaw_failed, job);
	task_on_undo(&job->task, undo_thaw, job); /* runs first */
}

static void undo_settings(struct task *task, void *arg)
{
	job_enter_settle(arg);
}

/* A guest that was running runs again (stopped by us, by a save that did
 * not converge, or by QEMU's own background setup). */
static void undo_resume(struct task *task, void *arg)
{
	struct job *job = arg;

	if (job->was_running && !job->resumed && job->guest_stopped)
		job_send_resume(job, 1);
}

void job_undo_on_settings(struct job *job)
{
	task_on_undo(&job->task, undo_settings, job);
	task_on_undo(&job->task, undo_resume, job); /* runs first */
}

/* A running migration must end before anything else: cancelled, and its
 * MIGRATION event awaited.  Never a background save: cancelling one
 * leaves QEMU 7.2's guest hung.  It ends by itself. */
static void undo_migrate(struct task *task, void *arg)
{
	struct job *job = arg;

	if (!job->migrating || job->conn.qmp.state != QMP_STATE_READY)
		return;
	task->awaiting++;
	if (!job->cancel_sent && job->mode != MODE_BACKGROUND) {
		job->cancel_sent = 1;
		task_send_ex(task, "migrate_cancel", NULL, -1, NULL, 1);
	}
}

void job_undo_on_migrate(struct job *job)
{
	task_on_undo(&job->task, undo_migrate, job);
}
