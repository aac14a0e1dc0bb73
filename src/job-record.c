/*
 * job-record.c: what a finished checkpoint job writes: the record
 * (checkpoint.json, the SPEC's checkpoint object) and vm.json's disks,
 * which it writes before the disk transaction (JOB_CATALOG).
 * The fsyncs run in libuv's thread pool so that one VM's record never
 * stalls another VM's pause window on the same loop.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "job.h"
#include "job-impl.h"
#include "log.h"
#include "memsum.h"
#include "ramfile.h"
#include "util.h"

static json_t *job_disks_json(const struct job *job)
{
	json_t *list = json_array();

	for (size_t i = 0; i < job->ndisks; i++) {
		const struct disk *d = &job->disks[i];

		json_array_append_new(list, json_pack(
			"{s:s, s:s, s:s, s:s, s:s}", "Device", d->device,
			"NodeName", d->overlay_node, "CheckpointImage", d->image,
			"ActiveImage", d->overlay, "Format", d->format));
	}
	return list;
}

/* MemoryState: the save's file and what a restore must set; or, for a
 * guest that has not run since its last save, that save's, shared. */
static json_t *job_memory_json(const struct job *job)
{
	json_t *m;

	if (job->shared_memory != NULL) {
		m = json_deep_copy(job->shared_memory);
		json_object_set_new(m, "Path", json_string(job->memory_path));
		job_ramfile_record(job, m);
		return m;
	}
	m = json_pack("{s:s, s:I, s:o, s:i}", "Path", job->memory_path,
		      "Bytes", (json_int_t)job->memory_bytes,
		      "Capabilities", migrate_record_caps(&job->plan),
		      "MultifdChannels", job->plan.mapped_ram ? MIGRATE_MULTIFD_CHANNELS : 0);
	if (job->mode == MODE_RAM_FILE)
		job_ramfile_record(job, m);
	/* A network monitor: the file is on the QEMU host, written by QEMU
	 * (its size unknown here), how QEMU was told to write it. */
	if (job_remote(job)) {
		json_object_del(m, "Bytes");
		json_object_set_new(m, "Host", json_string(job->spec.qemu_host));
		json_object_set_new(m, "Uri", json_string(job->plan.uri));
	}
	/* The guest stays stopped by this save: how the next checkpoint
	 * knows the save is still its memory. */
	if (job->saved_migration != NULL) {
		json_t *fp = migrate_fingerprint(job->saved_migration);

		if (fp != NULL)
			json_object_set_new(m, "Migration", fp);
	}
	return m;
}

json_t *job_build_record(struct job *job)
{
	char when[64];
	json_t *r;

	format_iso8601(job->creation_ms, when, sizeof when);
	r = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:O?, s:O?, s:s, s:o}",
		      "Id", job->id, "Name", job->name, "VMName", job->spec.vm,
		      "ComputerName", job->spec.computer_name,
		      "CreationTime", when, "CreationEpochMs", (json_int_t)job->creation_ms,
		      "CheckpointType", job->checkpoint_type,
		      "ParentCheckpointId", json_object_get(job->parent, "Id"),
		      "ParentCheckpointName", json_object_get(job->parent, "Name"),
		      "Path", job->dir, "Disks", job_disks_json(job));
	if (job->mode != MODE_DISK_ONLY)
		json_object_set_new(r, "MemoryState", job_memory_json(job));
	if (job->production) {
		json_object_set_new(r, "FrozenFilesystems", json_integer(job->frozen_filesystems));
		json_object_set_new(r, "FreezeMs", json_integer(job->freeze_ms));
	}
	json_object_set_new(r, "GuestState", json_string(job->was_running ? "running" : "paused"));
	json_object_set_new(r, "Mode", json_string(job_mode_name(job->mode)));
	json_object_set_new(r, "QemuVersion", json_string(job->conn.qmp.version_string));
	json_object_set_new(r, "Monitor", json_string(job->spec.monitor));
	/* Its overlays and memory state are files of that host, not this one */
	if (job_remote(job))
		json_object_set_new(r, "QemuHost", json_string(job->spec.qemu_host));
	json_object_set_new(r, "PauseMs", json_integer(job->pause_ms));
	json_object_set_new(r, "DurationMs", json_integer((json_int_t)(mono_ms() - job->start_ms)));
	if (json_array_size(job->warnings) > 0)
		json_object_set(r, "Warnings", job->warnings);
	return r;
}

/* ---- vm.json, before the transaction --------------------------------- */

/* vm.json must follow what QEMU runs on (query-block), not what it last
 * wrote: a VM restored or relaunched by hand runs on a chain of the
 * user's.  Says so, one line per disk that moved. */
static void job_follow_qemu(struct job *job, json_t *state)
{
	for (size_t i = 0; i < job->ndisks; i++) {
		const struct disk *d = &job->disks[i];
		const char *was = catalog_vm_active_image(state, d->device);
		char *copy = was ? xstrdup(was) : NULL;

		if (catalog_vm_follow_chain(state, d->device, d->chain, d->base_format) > 0)
			warn_vm(job->spec.vm, "disk %s runs on %s, not on %s as the catalog said: the catalog now follows QEMU's chain",
				d->device, d->image, copy ? copy : "?");
		free(copy);
	}
}

static void work_catalog(uv_work_t *req)
{
	struct job *job = req->data;

	job->work_rc = catalog_write_vm(job->spec.catalog_root, job->spec.vm,
					job->vm_after);
}

static void after_catalog(uv_work_t *req, int status)
{
	struct job *job = req->data;

	if (status < 0)
		job->work_rc = status;
	if (job->work_rc < 0)
		task_set_error(&job->task, job->work_rc, "cannot write %s/%s/vm.json: %s",
			      job->spec.catalog_root, job->spec.vm, strerror(-job->work_rc));
	else
		job->catalog_written = 1;
	json_decref(job->vm_after);
	job->vm_after = NULL;
	task_release(&job->task);
}

/*
 * JOB_CATALOG (held in the task until written): vm.json names the new overlays before QEMU switches to
 * them, so that a qckpt killed at any later step never leaves `qckpt run`
 * booting an image that is frozen by then.  The overlays are backed by the
 * images they replace, so running on them is right whether or not the
 * switch happens.  The fsync runs in the thread pool, before the guest is
 * stopped; the undo puts vm.json back only if QEMU refused the switch.
 */
void job_catalog_write(struct job *job)
{
	json_t *state = catalog_load_vm(job->spec.catalog_root, job->spec.vm);

	job_follow_qemu(job, state);
	json_decref(job->vm_before);
	/* No vm.json before: the undo removes it again. */
	job->vm_before = catalog_vm_exists(job->spec.catalog_root, job->spec.vm) ?
			 json_deep_copy(state) : NULL;
	for (size_t i = 0; i < job->ndisks; i++) {
		const struct disk *d = &job->disks[i];

		catalog_vm_switch_disk(state, d->device, d->base, d->image,
				       d->overlay, d->format);
	}
	/* Where the VM's state grows from now; a record that never gets
	 * written is simply not found (the parent lookup falls back). */
	json_object_set_new(state, "CurrentCheckpointId", json_string(job->id));
	/* Whose files the disks are: `qckpt disks` must not look for those of
	 * a network monitor's QEMU here. */
	if (job_remote(job))
		json_object_set_new(state, "QemuHost", json_string(job->spec.qemu_host));
	else
		json_object_del(state, "QemuHost");
	job_undo_on_catalog(job);
	job->vm_after = state;
	job->work.data = job;
	if (uv_queue_work(job->task.loop, &job->work, work_catalog, after_catalog) < 0) {
		job->vm_after = NULL;
		json_decref(state);
		task_set_error(&job->task, -EIO, "cannot queue the vm.json write");
		return;
	}
	task_hold(&job->task);
}

/* The undo, when QEMU refused the transaction or it was never sent: vm.json
 * names the images QEMU runs on again.  0 or -errno. */
int job_catalog_rollback(struct job *job)
{
	int rc;

	if (!job->catalog_written)
		return 0;
	if (job->vm_before == NULL)
		rc = catalog_remove_vm(job->spec.catalog_root, job->spec.vm);
	else
		rc = catalog_write_vm(job->spec.catalog_root, job->spec.vm, job->vm_before);
	if (rc == 0)
		job->catalog_written = 0;
	return rc;
}

/* ---- the record ------------------------------------------------------ */

/* Thread pool: the fsyncs must not stall the other VMs' pause windows. */
static void work_record(uv_work_t *req)
{
	struct job *job = req->data;
	char sum[MEMSUM_LEN];
	struct stat st;

	job->work_rc = 0;
	if (job->memfd >= 0) {
		if (fsync(job->memfd) < 0 || fstat(job->memfd, &st) < 0) {
			job->work_rc = -errno;
			return;
		}
		job->memory_bytes = st.st_size;
		json_object_set_new(json_object_get(job->record, "MemoryState"),
				    "Bytes", json_integer(st.st_size));
		/* read back from the page cache QEMU just wrote it to (by
		 * path: QEMU's fdsets want memfd write-only) */
		if ((job->work_rc = memsum_path(job->memory_path, sum, &st)) < 0)
			return;
		json_object_set_new(json_object_get(job->record, "MemoryState"),
				    "Checksum", json_string(sum));
		json_object_set_new(json_object_get(job->record, "MemoryState"),
				    "ChecksumStamp", memsum_stamp(&st));
	}
	/* ram-file: the reflink's metadata, kept out of the pause */
	if (job->mode == MODE_RAM_FILE && job->ram_copy != NULL &&
	    (job->work_rc = ramfile_sync(job->ram_copy)) < 0)
		return;
	/* The whole checkpoint, up to the memory being on disk. */
	json_object_set_new(job->record, "DurationMs",
			    json_integer((json_int_t)(mono_ms() - job->start_ms)));
	job->work_rc = catalog_write_record(job->dir, job->record);
}

static void after_record(uv_work_t *req, int status)
{
	struct job *job = req->data;

	if (status < 0)
		job->work_rc = status;
	if (job->work_rc < 0)
		task_set_error(&job->task, job->work_rc, "cannot write the checkpoint to %s: %s",
			      job->dir, strerror(-job->work_rc));
	task_release(&job->task);
}

/* JOB_RECORD: the record, then the memory file's fsync and
 * checkpoint.json in the thread pool, held in the task until done. */
void job_record_write(struct job *job)
{
	if (job->was_running && job->stop_time > 0 && job->resume_time >= job->stop_time)
		job->pause_ms = (long long)((job->resume_time - job->stop_time) * 1000 + 0.5);
	job->record = job_build_record(job);
	job->work.data = job;
	if (uv_queue_work(job->task.loop, &job->work, work_record, after_record) < 0) {
		task_set_error(&job->task, -EIO, "cannot queue the record write");
		return;
	}
	task_hold(&job->task);
}
