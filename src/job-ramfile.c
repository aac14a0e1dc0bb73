/*
 * job-ramfile.c: the checkpoint job's ram-file mode, for a VM whose guest
 * RAM is a file QEMU maps shared (`qckpt run --ram-file`, ramfile.h):
 *
 *   probe (qom-get: which file, shared?) -> ... the usual overlays ... ->
 *   migration setup with x-ignore-shared and pause-before-switchover ->
 *   flush the RAM file while the guest runs -> migrate: QEMU sets the
 *   migration up while the guest runs, stops it and waits (MIGRATION
 *   pre-switchover) -> FICLONE the file into the checkpoint directory
 *   beside the rest of the migrate (the device state, after
 *   migrate-continue) -> disk transaction and cont.
 *
 * Letting QEMU stop the guest keeps its migration setup out of the pause
 * (stop, then migrate, paid it inside: 6.5-8.3 ms from STOP to completed
 * at 4 GiB on an idle host, against 3-3.5 ms for a live save's end).  A
 * QEMU without pause-before-switchover gets stop, then migrate.
 *
 * The states themselves are job.c's; here are the steps that only this
 * mode takes, all of their file work in libuv's thread pool so that one
 * VM's reflink never stalls another VM's pause on the same loop.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "job.h"
#include "job-impl.h"
#include "log.h"
#include "ramfile.h"
#include "util.h"

/* Flush again while a flush took longer than this, up to that many. */
#define JOB_RAMFILE_FLUSH_SHORT_MS 20
#define JOB_RAMFILE_FLUSH_PASSES 4

const char *job_ramfile_backend(struct job *job)
{
	json_t *vm = catalog_load_vm(job->spec.catalog_root, job->spec.vm);
	const char *id = json_string_value(json_object_get(json_object_get(vm, "RamFile"), "Backend"));

	free(job->ram_backend);
	job->ram_backend = id ? xstrdup(id) : NULL;
	json_decref(vm);
	return job->ram_backend;
}

int job_ramfile_choose(struct job *job, enum ckpt_mode *mode)
{
	const char *path = json_string_value(job->ram_qom_path);

	if (path == NULL || !json_is_true(job->ram_qom_share)) {
		if (job->spec.mode == MODE_RAM_FILE)
			return task_set_error(&job->task, -ENOTSUP,
				"--mode ram-file: QEMU does not run on a shared RAM file; launch the VM with 'qckpt run --ram-file'"), -1;
		if (job->ram_backend != NULL)
			verbose_vm(job->spec.vm, "vm.json names a RAM file but QEMU does not run on one (started without 'qckpt run'?): saving its memory as usual");
		return 0;
	}
	if (*mode == MODE_DISK_ONLY)
		return 0;
	if (!migrate_has_cap(job->caps, "x-ignore-shared"))
		return task_set_error(&job->task, -ENOTSUP,
			"the guest's RAM is in %s, but this QEMU (%s) cannot leave it out of a migration (no x-ignore-shared); use --mode disk-only",
			path, job->conn.qmp.version_string), -1;
	free(job->ram_path);
	job->ram_path = xstrdup(path);
	/* postmigrate: the last save's files are still the guest's memory
	 * (job_find_current_memory), shared as in paused mode */
	if (strcmp(job_run_status(job), "postmigrate") == 0)
		return 0;
	if (*mode != MODE_AUTO && *mode != MODE_RAM_FILE && job->spec.mode != MODE_AUTO)
		verbose_vm(job->spec.vm, "guest RAM in %s: --mode %s becomes ram-file (a reflink of that file)",
			   path, job_mode_name(*mode));
	else
		verbose_vm(job->spec.vm, "guest RAM in %s: ram-file mode (a reflink of that file)", path);
	*mode = MODE_RAM_FILE;
	return 0;
}

static int job_ramfile_queue_flush(struct job *job);

static void on_flushed(struct ramfile_work *w)
{
	struct job *job = w->data;
	long long ms = w->ms;

	/* Only an optimisation: the reflink writes back what is left. */
	if (w->rc < 0)
		verbose_vm(job->spec.vm, "flushing %s: %s", job->ram_path, strerror(-w->rc));
	job->preflush_ms += ms;
	job->preflush_passes++;
	ramfile_work_free(w);
	/* What the guest dirtied during a long flush would be written inside
	 * the pause: flush again, as pre-copy does, a few times at most. */
	if (ms > JOB_RAMFILE_FLUSH_SHORT_MS && job->preflush_passes < JOB_RAMFILE_FLUSH_PASSES &&
	    job->task.error_status == 0 && !job->interrupted && job_ramfile_queue_flush(job) == 0)
		return;
	task_release(&job->task);
}

/* Queue one flush, held (task_hold) by the caller. */
static int job_ramfile_queue_flush(struct job *job)
{
	struct ramfile_work *w = xcalloc(1, sizeof *w);
	int rc = ramfile_queue(job->task.loop, w, RAMFILE_FLUSH, job->ram_path, NULL, on_flushed, job);

	if (rc < 0)
		free(w);
	return rc;
}

void job_ramfile_flush(struct job *job)
{
	task_hold(&job->task);
	if (job_ramfile_queue_flush(job) < 0)
		task_release(&job->task);
}

static void on_cloned(struct ramfile_work *w)
{
	struct job *job = w->data;
	struct stat st;

	if (w->rc < 0)
		task_set_error(&job->task, w->rc, "cannot reflink the RAM file %s to %s: %s",
			      job->ram_path, job->ram_copy, strerror(-w->rc));
	else if (stat(job->ram_copy, &st) == 0)
		job->ram_bytes = st.st_size;
	job->reflink_ms = w->ms;
	verbose_vm(job->spec.vm, "RAM file reflinked in %lld ms", w->ms);
	ramfile_work_free(w);
	task_release(&job->task);
}

/* The guest is stopped (by us, or by the user): the file holds its RAM
 * at this instant.  The copy is never mapped by anyone. */
void job_ramfile_clone(struct job *job)
{
	struct ramfile_work *w = xcalloc(1, sizeof *w);
	int rc;

	free(job->ram_copy);
	job->ram_copy = xasprintf("%s/%s", job->dir, RAMFILE_CHECKPOINT_NAME);
	task_hold(&job->task);
	rc = ramfile_queue(job->task.loop, w, RAMFILE_CLONE, job->ram_path, job->ram_copy, on_cloned, job);
	if (rc < 0) {
		free(w);
		task_set_error(&job->task, rc, "cannot queue the reflink of %s", job->ram_path);
		task_release(&job->task);
	}
}

/* MIGRATION pre-switchover: QEMU has stopped the guest and waits before
 * the device state.  The RAM file holds the guest's RAM of this instant:
 * reflink it, and let QEMU go on with the device state beside it. */
void job_ramfile_switchover(struct job *job)
{
	if (job->mode != MODE_RAM_FILE || !job->plan.switchover || job->state != JOB_SAVE)
		return;
	job_ramfile_clone(job);
	task_send(&job->task, "migrate-continue", json_pack("{s:s}", "state", "pre-switchover"),
		  NULL);
}

int job_ramfile_link_shared(struct job *job)
{
	const char *from = json_string_value(json_object_get(job->shared_memory, "RamFile"));

	if (from == NULL)
		return 0;
	free(job->ram_copy);
	job->ram_copy = xasprintf("%s/%s", job->dir, RAMFILE_CHECKPOINT_NAME);
	if (link(from, job->ram_copy) < 0)
		return task_set_error(&job->task, -errno, "cannot link %s to %s: %s",
				     from, job->ram_copy, strerror(errno)), -1;
	return 0;
}

void job_ramfile_record(const struct job *job, json_t *m)
{
	if (job->shared_memory != NULL) {
		if (job->ram_copy != NULL)
			json_object_set_new(m, "RamFile", json_string(job->ram_copy));
		return;
	}
	json_object_set_new(m, "Kind", json_string(RAMFILE_KIND));
	json_object_set_new(m, "RamFile", json_string(job->ram_copy));
	json_object_set_new(m, "RamBytes", json_integer(job->ram_bytes));
	json_object_set_new(m, "PreflushMs", json_integer(job->preflush_ms));
	json_object_set_new(m, "PreflushPasses", json_integer(job->preflush_passes));
	json_object_set_new(m, "ReflinkMs", json_integer(job->reflink_ms));
}
