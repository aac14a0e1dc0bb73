/*
 * job-undo.c: the one failure path of a checkpoint job.  Whatever failed
 * and wherever, job_undo_next() undoes what happened, in the order that
 * keeps the guest safe: thaw its file systems, end a running migration,
 * resume a guest that was running, detach and delete overlays that were
 * never switched in, put the migration settings back, remove the memory
 * file.  Disks that were switched in stay (they hold guest data); when they
 * make a whole disk-only checkpoint, it is recorded as exactly that.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "job.h"
#include "job-impl.h"
#include "util.h"

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
		snprintf(job->error + strlen(job->error), sizeof job->error - strlen(job->error),
			 "; and vm.json could not be put back (%s): it names the unused overlay %s, which is backed by %s and so still right to run on",
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
		job_send_ex(job, "blockdev-del", json_pack("{s:s}", "node-name",
			    overlay ? d->overlay_node : d->file_node), -1, NULL, 1);
		if (overlay)
			d->overlay_added = 0;
		else
			d->file_added = 0;
	}
}

static void undo_dismiss(struct job *job)
{
	for (size_t i = 0; i < job->ndisks; i++) {
		struct disk *d = &job->disks[i];

		if (d->job_concluded && !d->job_dismissed) {
			d->job_dismissed = 1;
			job_send_ex(job, "job-dismiss", json_pack("{s:s}", "id",
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
	if (job->memory_path != NULL)
		unlink(job->memory_path);
}

/* Local files: what was never switched in is ours to delete.  Overlays a
 * transaction may have switched in (no reply: the connection dropped) hold
 * guest data and are kept. */
static void undo_files(struct job *job)
{
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
	/* An overlay is backed by the image it would replace, so running the
	 * VM on it is right whether or not the switch happened. */
	if (unknown && job->ndisks > 0)
		snprintf(job->error + strlen(job->error), sizeof job->error - strlen(job->error),
			 "; the disk transaction may have happened, so its overlays were kept: run the VM on them, which is right either way (disk %s: %s, backed by %s%s)",
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
	char *cause = xstrdup(job->error);
	int rc;

	job->mode = MODE_DISK_ONLY;
	job->production = 0; /* not known to be application-consistent */
	snprintf(job->checkpoint_type, sizeof job->checkpoint_type, "DiskOnly");
	json_decref(job->record);
	job->record = job_build_record(job);
	rc = catalog_write_record(job->dir, job->record);
	job->record_written = rc == 0;
	if (rc == 0)
		snprintf(job->error, sizeof job->error,
			 "%s; recorded a disk-only checkpoint %s instead (memory not saved)",
			 cause, job->id);
	else
		snprintf(job->error, sizeof job->error,
			 "%s; no checkpoint recorded (%s), but the disks now write to new overlays (%s...): the images before them are unchanged",
			 cause, strerror(-rc), job->ndisks ? job->disks[0].overlay : "");
	free(cause);
}

/*
 * Each call does the next undo phase that applies, sends its commands and
 * returns; replies (or the migration's end) call it again.
 */
void job_undo_next(struct job *job)
{
	if (job->outstanding > 0 || job->finished)
		return;
	/* Frozen file systems first: nothing else is as urgent for the guest. */
	if ((job->frozen || job->freeze_unknown) && !job->thaw_sent) {
		if (job_agent_thaw(job) == 0)
			return; /* called again by the answer */
	}
	while (job_connected(job) && job->undo_phase < 6) {
		int phase = job->undo_phase++;

		switch (phase) {
		case 0: /* a running migration must end before anything else */
			if (job->migrating) {
				job->undo_phase = 0;
				/* Never a background save: cancelling one leaves
				 * QEMU 7.2's guest hung.  It ends by itself. */
				if (!job->cancel_sent && job->mode != MODE_BACKGROUND) {
					job->cancel_sent = 1;
					job_send_ex(job, "migrate_cancel", NULL, -1, NULL, 1);
				}
				return; /* called again by the MIGRATION event */
			}
			break;
		case 1: /* a guest that was running runs again */
			if (job->was_running && !job->resumed && job->guest_stopped)
				job_send_resume(job, 1);
			break;
		case 2: /* overlay files still being formatted cannot go yet */
			if (job->formats_pending > 0) {
				job->undo_phase = 2;
				return; /* called again by JOB_STATUS_CHANGE */
			}
			undo_dismiss(job);
			undo_detach(job, 1);
			break;
		case 3:
			undo_detach(job, 0);
			break;
		case 4:
			job_enter_settle(job);
			break;
		default:
			break;
		}
		if (job->outstanding > 0)
			return;
	}
	if (job->thaw_sent && !job->thawed && (job->frozen || job->freeze_unknown))
		snprintf(job->error + strlen(job->error), sizeof job->error - strlen(job->error),
			 "; thawing failed too (%s): the guest's file systems may still be frozen, send guest-fsfreeze-thaw to %s",
			 job->agent.error, job->spec.agent);
	if (job->transaction_done)
		job_drop_memory(job);
	else if (!job_transaction_maybe_done(job))
		job_undo_catalog(job);
	if (job->transaction_done && (job->mode != MODE_DISK_ONLY || job->production))
		job_record_disk_only(job);
	undo_files(job);
	job_finish(job, JOB_FAILED);
}
