/*
 * job.c: one VM's checkpoint, as a state machine (see job.h for the
 * states).  Every reply and event ends in job_step(), which reads top to
 * bottom like the checkpoint itself:
 *
 *   connect -> probe -> prepare overlays while the guest runs -> set up the
 *   migration -> [stop] -> save memory -> on MIGRATION completed send the
 *   disk transaction and cont back to back -> put settings back -> record.
 *
 * A VM whose guest RAM is a shared file (qckpt run --ram-file; the
 * ram-file mode's own steps are in job-ramfile.c):
 *
 *   ... -> set up the migration (x-ignore-shared) -> flush the RAM file ->
 *   migrate while the guest runs; QEMU stops it and waits (pre-switchover)
 *   -> reflink the RAM file beside the save of the device state ->
 *   transaction and cont -> put settings back -> record.
 *   (A QEMU without pause-before-switchover: stop first, then migrate.)
 *
 * Production types (Hyper-V's Production/ProductionOnly) with a guest agent:
 *
 *   connect -> probe -> connect the agent -> prepare overlays -> freeze the
 *   guest's file systems -> disk transaction -> thaw -> record.
 *
 * An agent that cannot be reached or cannot freeze turns production into a
 * standard checkpoint (with a warning) and fails production-only.
 *
 * The job runs on the generic task (task.h), as restore does: commands go
 * out through task_send_*, replies and awaited events (the migration's
 * end, the format jobs' conclusion: task.awaiting) are counted there, the
 * first error wins there, and failure from any state walks the task's undo
 * list back: each state registers the undo of what it creates (cancel the
 * migration, resume a guest that was running, detach and delete overlays
 * that were never switched in, remove the memory file).  A record is
 * written only when everything is whole.
 *
 * This file holds the states and their transitions (job_next, job_enter,
 * job_step, read top to bottom) and the QMP side; the agent's steps are in
 * job-agent.c, the record in job-record.c, the undo entries in job-undo.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "catalog.h"
#include "job.h"
#include "job-impl.h"
#include "log.h"
#include "util.h"
#include "vmlock.h"

/* The longest the disk transaction may keep the guest's file systems
 * frozen before qckpt gives up on it and thaws them. */
#define JOB_FREEZE_MAX_MS 10000u

static void job_enter(struct job *job, enum job_state state);

static const char *const mode_names[] = {
	[MODE_AUTO] = "auto",
	[MODE_LIVE] = "live",
	[MODE_PAUSED] = "paused",
	[MODE_BACKGROUND] = "background",
	[MODE_DISK_ONLY] = "disk-only",
	[MODE_RAM_FILE] = "ram-file",
};

const char *job_mode_name(enum ckpt_mode mode)
{
	return mode_names[mode];
}

static const struct {
	const char *name;  /* for QCKPT_TEST_STOP_AT */
	const char *doing; /* for a second Ctrl-C */
	const char *phase; /* for the progress line (progress.h) */
} job_states[] = {
	[JOB_CONNECT] = { "connect", "connecting to the monitor", "preparing" },
	[JOB_PROBE] = { "probe", "asking QEMU about the VM", "preparing" },
	[JOB_TRY_BACKGROUND] = { "try-background", "asking QEMU whether it can save in the background", "preparing" },
	[JOB_AGENT] = { "agent", "connecting to the guest agent", "preparing" },
	[JOB_PREPARE] = { "prepare", "attaching the new overlay files", "preparing" },
	[JOB_FILES_DONE] = { "files-done", "creating the new overlay files on the QEMU host", "preparing" },
	[JOB_FORMAT] = { "format", "formatting the new overlays", "preparing" },
	[JOB_FORMAT_DONE] = { "format-done", "formatting the new overlays", "preparing" },
	[JOB_ATTACH] = { "attach", "attaching the new overlays", "preparing" },
	[JOB_CATALOG] = { "catalog", "writing vm.json", "preparing" },
	[JOB_QUEUED] = { "queued", "waiting for a save slot (--throttle-limit)", "preparing" },
	[JOB_MIGRATE_SETUP] = { "migrate-setup", "setting up the memory save", "saving memory" },
	[JOB_PREFLUSH] = { "preflush", "writing the RAM file back before the pause", "saving memory" },
	[JOB_STOP] = { "stop", "stopping the guest", "saving memory" },
	[JOB_SAVE] = { "save", "saving memory", "saving memory" },
	[JOB_FREEZE] = { "freeze", "freezing the guest's file systems", "freezing file systems" },
	[JOB_SNAPSHOT] = { "snapshot", "switching the disks and resuming the guest", "switching disks" },
	[JOB_THAW] = { "thaw", "thawing the guest's file systems", "thawing file systems" },
	[JOB_SETTLE] = { "settle", "putting the migration settings back", "recording" },
	[JOB_RECORD] = { "record", "writing the record", "recording" },
	[JOB_DONE] = { "done", "done", "done" },
	[JOB_UNDO] = { "undo", "undoing the checkpoint", "undoing" },
	[JOB_FAILED] = { "failed", "failed", "failed" },
};
_Static_assert(sizeof job_states / sizeof job_states[0] == JOB_FAILED + 1,
	       "every state of job.h has its name here");

const char *job_state_name(enum job_state state)
{
	return job_states[state].name;
}

const char *job_state_doing(const struct job *job)
{
	if (job->state == JOB_UNDO && job->migrating)
		return "waiting for QEMU to end the memory save (migrate_cancel sent)";
	return job_states[job->state].doing;
}

int job_parse_mode(const char *text, enum ckpt_mode *mode)
{
	for (size_t i = 0; i < sizeof mode_names / sizeof mode_names[0]; i++) {
		if (strcmp(text, mode_names[i]) == 0) {
			*mode = (enum ckpt_mode)i;
			return 0;
		}
	}
	return -1;
}

void job_spec_free(struct job_spec *spec)
{
	free(spec->vm);
	free(spec->monitor);
	free(spec->expect_name);
	free(spec->catalog_root);
	free(spec->overlay_dir);
	free(spec->agent);
	free(spec->snapshot_name);
	free(spec->computer_name);
	free(spec->qemu_host);
	free(spec->remote_dir);
	memset(spec, 0, sizeof *spec);
}

/* ---- failing --------------------------------------------------------- */

/* Something about the checkpoint deserves the user's attention: one line
 * on stderr now, and the record's Warnings. */
static void job_warn(struct job *job, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void job_warn(struct job *job, const char *fmt, ...)
{
	char text[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	warn_vm(job->spec.vm, "%s", text);
	if (job->warnings == NULL)
		job->warnings = json_array();
	json_array_append_new(job->warnings, json_string(text));
}

int job_connected(const struct job *job)
{
	return job->conn.qmp.state == QMP_STATE_READY;
}

/* ---- sending commands ------------------------------------------------ */

/* cont, marking the guest resumed when it succeeds. */
void job_send_resume(struct job *job, int optional)
{
	task_send_resume(&job->task, optional, &job->resumed, &job->guest_stopped);
}

/* A migrate QEMU refused started nothing: no event will come. */
static void on_migrate_reply(struct task *task, struct task_call *call, int status,
			     const struct qmp_error *qerr)
{
	struct job *job = task->data;

	if (status == QMP_ECOMMAND && job->migrating) {
		job->migrating = 0;
		if (task->awaiting > 0)
			task->awaiting--;
	}
}

/* A transaction without an answer may still be carried out. */
static void on_transaction_reply(struct task *task, struct task_call *call, int status,
			     const struct qmp_error *qerr)
{
	struct job *job = task->data;

	if (status == QMP_ETIMEDOUT)
		job->transaction_unknown = 1;
}

/* A blockdev-create that failed created no job: it will never conclude. */
static void on_create_reply(struct task *task, struct task_call *call, int status,
			     const struct qmp_error *qerr)
{
	struct disk *d = call->arg;

	if (status != 0 && !d->job_dismissed) {
		d->job_dismissed = 1;
		if (task->awaiting > 0)
			task->awaiting--;
	}
}

/* The same for the protocol file's blockdev-create (network monitors). */
static void on_file_create_reply(struct task *task, struct task_call *call, int status,
				 const struct qmp_error *qerr)
{
	struct disk *d = call->arg;

	/* no answer: QEMU may have got it, and made the file */
	if (status == QMP_ECLOSED || status == QMP_ETIMEDOUT)
		d->file_job_unknown = 1;
	if (status != 0 && !d->file_job_dismissed) {
		d->file_job_dismissed = 1;
		if (task->awaiting > 0)
			task->awaiting--;
	}
}

/* A blockdev-add QEMU refused added no node: none to delete.  (No answer:
 * it may have, and the undo deletes it.) */
static void on_add_reply(struct task *task, struct task_call *call, int status,
			 const struct qmp_error *qerr)
{
	struct disk *d = call->arg;

	if (status == QMP_ECOMMAND)
		d->file_added = 0;
}

static void on_add_overlay_reply(struct task *task, struct task_call *call, int status,
				 const struct qmp_error *qerr)
{
	struct disk *d = call->arg;

	if (status == QMP_ECOMMAND)
		d->overlay_added = 0;
}

/* blockdev-add of a disk's protocol node, or of its overlay. */
static void send_add(struct job *job, struct disk *d, int overlay)
{
	struct task_call *call = task_send_call(&job->task, "blockdev-add",
		overlay ? blockdev_add_overlay_args(d) : blockdev_add_file_args(d), -1, NULL, 0,
		QMP_DEFAULT_TIMEOUT_MS);

	if (overlay)
		d->overlay_added = 1;
	else
		d->file_added = 1;
	if (call != NULL) {
		call->after = overlay ? on_add_overlay_reply : on_add_reply;
		call->arg = d;
	}
}

/* ---- events ---------------------------------------------------------- */

static double event_time(const struct qmp_timestamp *ts)
{
	return (double)ts->seconds + (double)ts->microseconds / 1e6;
}

/* The migration's end is what JOB_SAVE (or the undo) awaits. */
static void on_migration_event(struct job *job, const char *status)
{
	if (!job->migrating)
		return;
	if (strcmp(status, "active") == 0)
		progress_poke(&job->progress);
	if (strcmp(status, "pre-switchover") == 0) {
		job_ramfile_switchover(job);
	} else if (strcmp(status, "completed") == 0) {
		job->migrating = 0;
		verbose_vm(job->spec.vm, "memory saved");
		task_arrived(&job->task);
	} else if (strcmp(status, "failed") == 0 ||
		   strcmp(status, "cancelled") == 0) {
		job->migrating = 0;
		/* query-migrate carries the reason (error-desc). */
		if (job->state == JOB_SAVE && job_connected(job)) {
			task_set_error(&job->task, -EIO, "saving memory %s", status);
			task_send(&job->task, "query-migrate", NULL, &job->migration);
		}
		task_arrived(&job->task);
	}
}

static void on_pass_event(struct job *job, json_t *data)
{
	json_int_t pass = json_integer_value(json_object_get(data, "pass"));

	if (job->mode != MODE_LIVE || job->converge_stop_sent ||
	    pass < migrate_max_live_passes() || job->state != JOB_SAVE)
		return;
	/* The guest dirties memory faster than it can be written: stop it so
	 * the save finishes; it resumes right after the disk snapshot. */
	job->converge_stop_sent = 1;
	job_warn(job, "memory did not converge after %d passes; pausing the guest to finish the save",
		 (int)pass);
	task_send_ex(&job->task, "stop", NULL, -1, NULL, 1);
}

static void on_block_job_event(struct job *job, json_t *data)
{
	const char *id = json_string_value(json_object_get(data, "id"));
	const char *status = json_string_value(json_object_get(data, "status"));

	if (id == NULL || status == NULL || strcmp(status, "concluded") != 0)
		return;
	for (size_t i = 0; i < job->ndisks; i++) {
		struct disk *d = &job->disks[i];

		/* awaited in JOB_FORMAT, or by the undo (undo_wait_formats) */
		if (strcmp(d->create_job, id) == 0 && !d->job_concluded) {
			d->job_concluded = 1;
			task_arrived(&job->task);
			return;
		}
		/* awaited in JOB_PREPARE (network monitors), or by the undo */
		if (strcmp(d->file_job, id) == 0 && !d->file_job_concluded) {
			d->file_job_concluded = 1;
			task_arrived(&job->task);
			return;
		}
	}
}

static void job_event(struct task *task, const char *name, json_t *data)
{
	struct job *job = task->data;
	const struct qmp_timestamp *ts = task->event_ts;

	if (strcmp(name, "STOP") == 0) {
		job->guest_stopped = 1;
		job->stop_time = event_time(ts);
	} else if (strcmp(name, "RESUME") == 0) {
		job->guest_stopped = 0;
		job->resume_time = event_time(ts);
	} else if (strcmp(name, "MIGRATION") == 0) {
		const char *status = json_string_value(json_object_get(data, "status"));

		if (status != NULL)
			on_migration_event(job, status);
	} else if (strcmp(name, "MIGRATION_PASS") == 0) {
		on_pass_event(job, data);
	} else if (strcmp(name, "JOB_STATUS_CHANGE") == 0) {
		on_block_job_event(job, data);
	}
}

static void job_disconnect(struct task *task)
{
	struct job *job = task->data;

	/* Once the transaction and cont are through the checkpoint is whole:
	 * a VM that exits afterwards does not undo it. */
	if (job->state == JOB_SETTLE || job->state == JOB_RECORD ||
	    (job->state == JOB_THAW && job->transaction_done))
		return;
	if (job_remote(job))
		task_set_error(task, QMP_ECLOSED,
			       "the connection to the monitor %s was lost (the network, or QEMU gone)",
			       job->spec.monitor);
	else
		task_set_error(task, QMP_ECLOSED,
			       "QEMU closed the monitor (did the VM exit or get killed?)");
	/* Pending replies have already failed; a job that only waited for an
	 * event (the migration, the format jobs) must move on by itself.  A
	 * vm.json write in the thread pool is held (task_hold): its end steps
	 * the job, not undoing before it could delete overlays it names. */
	job->migrating = 0;
	task->awaiting = 0;
	task_wait(task);
}

/* ---- the probes and the plan ----------------------------------------- */

const char *job_run_status(const struct job *job)
{
	const char *s = json_string_value(json_object_get(job->status, "status"));

	return s ? s : "unknown";
}

int job_remote(const struct job *job)
{
	return job->spec.qemu_host != NULL;
}

int job_is_production_type(const struct job *job)
{
	return job->spec.type == VM_TYPE_PRODUCTION ||
	       job->spec.type == VM_TYPE_PRODUCTION_ONLY;
}

/* Free bytes where PATH is or would be created (its nearest existing
 * ancestor), or -1. */
static long long free_bytes_at(const char *path)
{
	char *p = xstrdup(path);
	struct statvfs sv;
	long long bytes = -1;

	while (statvfs(p, &sv) < 0) {
		char *up = dir_name(p);

		if (strcmp(up, p) == 0) {
			free(up);
			free(p);
			return -1;
		}
		free(p);
		p = up;
	}
	bytes = (long long)sv.f_bavail * (long long)sv.f_frsize;
	free(p);
	return bytes;
}

/*
 * A background save that fails midway (a full disk) leaves QEMU 7.2's
 * guest hung: its userfaultfd write protection stays armed and a vCPU
 * waits in handle_userfault for good (seen here; QEMU 10.0 recovers).  So
 * background mode starts only with room for all of the guest's memory.
 * 1 when there is (or qckpt cannot tell), 0 with the numbers when not.
 */
static int job_background_room(const struct job *job, long long *ram_mib,
			       long long *room_mib)
{
	json_int_t ram = json_integer_value(json_object_get(job->memsize, "base-memory")) +
			 json_integer_value(json_object_get(job->memsize, "plugged-memory"));
	long long room = free_bytes_at(job->spec.catalog_root);
	const long long margin = 64ll << 20;

	if (ram <= 0 || room < 0 || room >= ram + margin)
		return 1;
	*ram_mib = (long long)(ram >> 20);
	*room_mib = room >> 20;
	return 0;
}

int job_check_background_room(struct job *job)
{
	long long ram, room;

	if (job->mode != MODE_BACKGROUND || job_background_room(job, &ram, &room))
		return 0;
	return task_set_error(&job->task, -ENOSPC,
		"background mode needs room for all of the guest's memory (%lld MiB) under %s, which has %lld MiB free: a background save that fails leaves QEMU 7.2's guest hung; free some space or use --mode live",
		ram, job->spec.catalog_root, room), -1;
}

/* ---- choosing the mode ------------------------------------------------ */

/*
 * QEMU before 9.0 under TCG loses dirty pages in pre-copy: its bitmap sync
 * clears migration dirty bits on a fast path that never resets the TCG
 * TLB's dirty tracking, so stores after a sync can go unrecorded and a
 * live save restores into a crashing guest (about 1 in 32 here).  Fixed by
 * QEMU commit 03bfc2188f, first in 9.0.0.  KVM tracks dirty pages in the
 * kernel.  The bug is bound to versions, so the version number decides;
 * no query-kvm answer counts as TCG.
 */
static int job_precopy_loses_pages(const struct job *job)
{
	return qmp_client_version(&job->conn.qmp) < 90000 &&
	       !json_is_true(json_object_get(job->kvm, "enabled"));
}

/* Since 9.0 ("migration: preserve suspended for bg_migration") a
 * background save of a stopped guest leaves it stopped, its disks active
 * and its state "paused", not "postmigrate"; 7.2's starts the guest. */
static int job_background_keeps_it_paused(const struct job *job)
{
	return qmp_client_version(&job->conn.qmp) >= 90000;
}

/* Would the mode choice take background mode if QEMU accepts it here?
 * Then JOB_TRY_BACKGROUND asks QEMU first. */
static int job_background_wanted(const struct job *job)
{
	const char *status = job_run_status(job);
	enum ckpt_mode m = job->spec.mode;
	long long ram, room;

	/* RAM in a shared file: ram-file mode (QEMU refuses background).
	 * A network monitor: qckpt cannot see the room on the QEMU host. */
	if (job_remote(job) || !migrate_has_cap(job->caps, "background-snapshot") ||
	    !job_background_room(job, &ram, &room) || json_is_string(job->ram_qom_path))
		return 0;
	if (strcmp(status, "running") == 0)
		return m == MODE_AUTO && job_precopy_loses_pages(job);
	return strcmp(status, "paused") == 0 && job_background_keeps_it_paused(job) &&
	       (m == MODE_AUTO || m == MODE_LIVE || m == MODE_BACKGROUND);
}

/* Why background mode does not run here, for -v. */
static const char *job_background_why_not(const struct job *job, char *buf, size_t len)
{
	long long ram, room;

	if (!migrate_has_cap(job->caps, "background-snapshot"))
		return "this QEMU does not offer background-snapshot";
	if (!job_background_room(job, &ram, &room))
		snprintf(buf, len, "it needs %lld MiB free under %s, which has %lld MiB",
			 ram, job->spec.catalog_root, room);
	else
		snprintf(buf, len, "QEMU refused background-snapshot: %s",
			 job->background_refused[0] ? job->background_refused : "no answer");
	return buf;
}

/* auto, on a running guest. */
static enum ckpt_mode job_auto_mode_running(struct job *job)
{
	char why[512];

	if (!job_precopy_loses_pages(job))
		return MODE_LIVE;
	if (job->background_works) {
		verbose_vm(job->spec.vm, "QEMU %s under TCG loses dirty pages in a live save (fixed in 9.0): saving in background mode",
			   job->conn.qmp.version_string);
		return MODE_BACKGROUND;
	}
	verbose_vm(job->spec.vm, "QEMU %s under TCG loses dirty pages in a live save (fixed in 9.0) and background mode cannot run here (%s): saving paused",
		   job->conn.qmp.version_string, job_background_why_not(job, why, sizeof why));
	return MODE_PAUSED;
}

/* Any memory mode, on a guest that is not running: it must stay so. */
static enum ckpt_mode job_mode_stopped(struct job *job, enum ckpt_mode mode)
{
	const char *status = job_run_status(job);

	if (mode == MODE_PAUSED)
		return mode;
	if (job->background_works) {
		verbose_vm(job->spec.vm, "the guest is %s: saving it in background mode, which leaves it %s",
			   status, status);
		return MODE_BACKGROUND;
	}
	verbose_vm(job->spec.vm, "the guest is %s: saving it paused", status);
	return MODE_PAUSED;
}

/* The explicit --mode live where the QEMU bug above applies: it runs, but
 * the user hears why not to. */
static void job_warn_live(struct job *job)
{
	if (job->mode == MODE_LIVE && job_precopy_loses_pages(job))
		job_warn(job, "live mode on QEMU %s under TCG can save a memory state that restores into a crashing guest (dirty pages are lost; fixed in QEMU 9.0 by commit 03bfc2188f \"physmem: Fix migration dirty bitmap coherency with TCG memory access\"): use --mode auto, background or paused, or QEMU 9.0 or later",
			 job->conn.qmp.version_string);
}

/* The modes a network monitor cannot have: 0, or -1 with the error. */
static int job_remote_refuses(struct job *job, enum ckpt_mode mode)
{
	const char *why = NULL;

	if (!job_remote(job))
		return 0;
	if (mode == MODE_RAM_FILE)
		why = "it reflinks QEMU's RAM file, which is on the QEMU host";
	else if (mode == MODE_BACKGROUND)
		why = "qckpt cannot check the room on the QEMU host, and a background save that fails for room leaves QEMU 7.2's guest hung";
	if (why == NULL)
		return 0;
	return task_set_error(&job->task, -ENOTSUP,
		"--mode %s is not offered through a network monitor (%s): %s; use --mode live, paused or disk-only, or run qckpt on that host ('qckpt checkpoint -C %s %s')",
		job_mode_name(mode), job->spec.monitor, why, job->spec.qemu_host, job->spec.vm), -1;
}

/* Check what QEMU reported; choose the mode.  0, or -1 with the error. */
static int job_choose_mode(struct job *job)
{
	const char *status = job_run_status(job);
	const char *mig = json_string_value(json_object_get(job->migration, "status"));
	enum ckpt_mode mode = job->spec.mode;

	job->was_running = json_is_true(json_object_get(job->status, "running"));
	if (mig != NULL && (strcmp(mig, "active") == 0 || strcmp(mig, "setup") == 0 ||
			    strcmp(mig, "pre-switchover") == 0 || strcmp(mig, "device") == 0 ||
			    strcmp(mig, "cancelling") == 0))
		return task_set_error(&job->task, -EBUSY,
			"a migration is already running on this VM (status %s); wait for it to end", mig), -1;
	if (strcmp(status, "inmigrate") == 0 || strcmp(status, "finish-migrate") == 0 ||
	    strcmp(status, "save-vm") == 0 || strcmp(status, "restore-vm") == 0)
		return task_set_error(&job->task, -EBUSY,
			"the VM is busy (state %s); retry when it is running or paused", status), -1;

	if (job_is_production_type(job) && !job->agent_ok) {
		if (job->spec.agent == NULL && job->spec.type == VM_TYPE_PRODUCTION_ONLY)
			return task_set_error(&job->task, -ENOTSUP,
				"type production-only needs the guest agent: add agent=SOCKET to its registry line"), -1;
		if (job->spec.type == VM_TYPE_PRODUCTION_ONLY)
			return task_set_error(&job->task, -ENOTSUP,
				"production-only checkpoint not taken, nothing changed: %s; start qemu-ga in the guest, or use --type production to accept a standard checkpoint",
				job->agent_skip), -1;
		warn_vm(job->spec.vm, "%s: taking a standard checkpoint instead of a production one",
			job->agent_skip);
	}
	if (job_remote_refuses(job, mode) < 0)
		return -1;
	if (job_ramfile_choose(job, &mode) < 0)
		return -1;
	if (mode == MODE_AUTO && job->was_running)
		mode = job_auto_mode_running(job);
	if (mode != MODE_DISK_ONLY && strcmp(status, "postmigrate") == 0) {
		/* QEMU cannot save it again: job_find_current_memory() */
		job->postmigrate = 1;
		mode = MODE_PAUSED;
	} else if (mode != MODE_DISK_ONLY && mode != MODE_RAM_FILE && !job->was_running) {
		mode = job_mode_stopped(job, mode);
	}
	if (mode != MODE_DISK_ONLY && !migrate_has_cap(job->caps, "events"))
		return task_set_error(&job->task, -ENOTSUP,
			"this QEMU does not offer migration events; use --mode disk-only"), -1;
	if (mode == MODE_BACKGROUND && !migrate_has_cap(job->caps, "background-snapshot"))
		return task_set_error(&job->task, -ENOTSUP,
			"this QEMU does not offer background-snapshot; use --mode live"), -1;
	job->mode = mode;
	snprintf(job->checkpoint_type, sizeof job->checkpoint_type, "%s",
		 mode == MODE_DISK_ONLY ? "DiskOnly" : "Standard");
	if (job_is_production_type(job) && job->agent_ok) {
		/* Disk-only with frozen file systems; the mode just chosen is
		 * what a failed freeze falls back to (production only). */
		if (job->spec.mode != MODE_AUTO && job->spec.mode != MODE_DISK_ONLY)
			verbose_vm(job->spec.vm, "a production checkpoint is disk-only: --mode %s applies only if it falls back to standard",
				   job_mode_name(job->spec.mode));
		job->fallback_mode = mode;
		job->production = 1;
		job->mode = MODE_DISK_ONLY;
		snprintf(job->checkpoint_type, sizeof job->checkpoint_type, "Production");
	}
	return 0;
}

static void default_name(struct job *job)
{
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
	job->name = xasprintf("%s-%s", job->spec.vm, stamp);
}

int job_open_memory_file(struct job *job)
{
	job->memory_path = xasprintf("%s/memory.state", job->dir);
	job->memfd = open(job->memory_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (job->memfd < 0)
		return task_set_error(&job->task, -errno, "cannot create %s: %s",
				     job->memory_path, strerror(errno)), -1;
	return 0;
}

/* The memory file of a guest that has not run since it was saved is that
 * save's file, shared: a hard link, never a copy of all its memory. */
static int job_link_memory(struct job *job)
{
	const char *from = json_string_value(json_object_get(job->shared_memory, "Path"));

	job->memory_path = xasprintf("%s/memory.state", job->dir);
	if (link(from, job->memory_path) < 0)
		return task_set_error(&job->task, -errno, "cannot link %s to %s: %s",
				     from, job->memory_path, strerror(errno)), -1;
	return job_ramfile_link_shared(job);
}

/* Files first (catalog directory, memory file, empty overlays): a failure
 * here has touched nothing in QEMU yet. */
static int job_make_files(struct job *job)
{
	int rc;

	rc = catalog_create_checkpoint_dir(job->spec.catalog_root, job->spec.vm,
					   job->id, &job->dir);
	if (rc < 0)
		return task_set_error(&job->task, rc, "cannot create the checkpoint directory under %s/%s: %s",
				     job->spec.catalog_root, job->spec.vm, strerror(-rc)), -1;
	/* The QEMU host's files are QEMU's to make (enter_prepare, the save) */
	if (job_remote(job))
		return 0;
	if (job->shared_memory != NULL ? job_link_memory(job) < 0 :
	    job->mode != MODE_DISK_ONLY && job_open_memory_file(job) < 0)
		return -1;
	for (size_t i = 0; i < job->ndisks; i++) {
		rc = blockdev_create_overlay_file(&job->disks[i]);
		if (rc < 0)
			return task_set_error(&job->task, rc, "disk %s: cannot create the overlay %s: %s",
					     job->disks[i].device, job->disks[i].overlay,
					     strerror(-rc)), -1;
	}
	return 0;
}

/* Whether two monitor addresses are the same socket ("unix:" or not,
 * or another path to the same file). */
static int same_monitor(const char *a, const char *b)
{
	struct stat sa, sb;

	if (strncmp(a, "unix:", 5) == 0)
		a += 5;
	if (strncmp(b, "unix:", 5) == 0)
		b += 5;
	if (strcmp(a, b) == 0)
		return 1;
	return a[0] == '/' && b[0] == '/' && stat(a, &sa) == 0 && stat(b, &sb) == 0 &&
	       sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* A registered VM reached by its socket gets its entry's settings, as if
 * named: its catalog, overlays, agent and type (--type aside). */
static void job_adopt_entry(struct job *job, const struct registry_entry *e)
{
	struct job_spec *s = &job->spec;

	free(s->catalog_root);
	s->catalog_root = catalog_root(e);
	free(s->overlay_dir);
	s->overlay_dir = e->overlay_dir ? xstrdup(e->overlay_dir) : NULL;
	free(s->remote_dir);
	s->remote_dir = e->remote_dir ? xstrdup(e->remote_dir) : NULL;
	free(s->agent);
	s->agent = e->agent ? xstrdup(e->agent) : NULL;
	if (!s->type_given || e->type == VM_TYPE_DISABLED)
		s->type = e->type;
}

/*
 * A VM given by its socket, not a registered name, is the VM QEMU names
 * (query-name): its checkpoints go where `qckpt list NAME` looks, under
 * the registry entry of that name if there is one.  A path is no name.
 */
static int job_name_direct_socket(struct job *job)
{
	const char *name = job->conn.qemu_name;
	const struct registry_entry *e;

	if (job->spec.expect_name != NULL)
		return 0;
	if (name == NULL || !registry_valid_name(name))
		return task_set_error(&job->task, -EINVAL,
			"QEMU at this socket has no usable -name, so its checkpoints would have no name: start it with -name NAME, or register it ('qckpt register NAME %s')",
			job->spec.monitor), -1;
	free(job->spec.vm);
	job->spec.vm = xstrdup(name);
	job->task.vm = job->spec.vm;
	progress_rename(&job->progress, name);
	e = job->spec.registry ? registry_find(job->spec.registry, name) : NULL;
	if (e == NULL)
		return 0;
	if (!same_monitor(e->monitor, job->spec.monitor))
		return task_set_error(&job->task, -EINVAL,
			"this QEMU says it is '%s', but the registry gives '%s' the monitor %s, not %s: fix the registry line or QEMU's -name",
			name, name, e->monitor, job->spec.monitor), -1;
	job_adopt_entry(job, e);
	return 0;
}

/* Does QEMU run on the disks RECORD left it on (its ActiveImages)? */
static int job_runs_on(const struct job *job, json_t *record)
{
	json_t *disks = json_object_get(record, "Disks"), *d;
	size_t i, j;

	if (json_array_size(disks) != job->ndisks)
		return 0;
	for (i = 0; i < job->ndisks; i++) {
		int found = 0;

		json_array_foreach(disks, j, d)
			found |= json_is_string(json_object_get(d, "ActiveImage")) &&
				 strcmp(json_string_value(json_object_get(d, "ActiveImage")),
					job->disks[i].image) == 0;
		if (!found)
			return 0;
	}
	return 1;
}

/*
 * postmigrate: the guest has not run since QEMU's last completed save (only
 * cont leaves that state), and QEMU refuses to save it again.  When that
 * save is the one in this VM's latest record (query-migrate still reports
 * it: same time and bytes), QEMU runs on that record's overlays and the
 * file is as qckpt wrote it, that file is still the guest's memory: the
 * new checkpoint shares it and takes only the disks.  Anything else (a
 * save by another tool, a checkpoint since, a file gone) cannot be proven.
 */
static int job_find_current_memory(struct job *job)
{
	json_t *list = catalog_list(job->spec.catalog_root, job->spec.vm);
	json_t *latest = json_array_get(list, json_array_size(list) - 1);
	json_t *mem = json_object_get(latest, "MemoryState");
	json_t *now = migrate_fingerprint(job->migration);
	const char *path = json_string_value(json_object_get(mem, "Path"));
	const char *why = NULL;
	struct stat st;

	if (job_remote(job))
		why = "its memory files are on the QEMU host, where qckpt cannot share them";
	else if (path == NULL)
		why = "qckpt made no checkpoint with memory of it";
	else if (now == NULL || !json_equal(now, json_object_get(mem, "Migration")))
		why = "its last save is not the one in its latest checkpoint";
	else if (!job_runs_on(job, latest))
		why = "its disks are not the ones its latest checkpoint left it on";
	else if (stat(path, &st) < 0 ||
		 st.st_size != json_integer_value(json_object_get(mem, "Bytes")))
		why = "its latest checkpoint's memory file is gone or changed";
	json_decref(now);
	if (why == NULL) {
		verbose_vm(job->spec.vm, "the guest has not run since checkpoint '%s' saved its memory: sharing that memory file",
			   json_string_value(json_object_get(latest, "Name")));
		job->shared_memory = json_deep_copy(mem);
	} else {
		task_set_error(&job->task, -EBUSY,
			"the VM is in state postmigrate (stopped by a save) and qckpt cannot prove what its memory is (%s), nor can QEMU save it again until it runs; resume it ('qckpt qmp %s cont') or use --mode disk-only",
			why, job->spec.vm);
	}
	json_decref(list);
	return why == NULL ? 0 : -1;
}

/*
 * A network monitor: QEMU writes the memory state on its own host, in the
 * registry's remote-dir or beside the first disk's active image (QEMU
 * cannot make a directory, and that one exists and is QEMU's to write).
 */
static int job_plan_remote_memory(struct job *job)
{
	char *dir;

	if (job->spec.remote_dir == NULL && job->ndisks == 0)
		return task_set_error(&job->task, -EINVAL,
			"the VM has no writable disk beside which QEMU could write the memory state on %s: add remote-dir=DIR (a directory on that host) to its registry line, or use --mode disk-only",
			job->spec.qemu_host), -1;
	dir = job->spec.remote_dir ? xstrdup(job->spec.remote_dir) : dir_name(job->disks[0].image);
	job->memory_path = xasprintf("%s/%s.%.8s.memory", dir, job->spec.vm, job->id);
	free(dir);
	migrate_plan_remote(&job->plan, job->memory_path,
			    migrate_has_file_transport(job->caps, job->schema));
	verbose_vm(job->spec.vm, "memory state to %s on %s", job->plan.uri, job->spec.qemu_host);
	return 0;
}

static int job_plan(struct job *job)
{
	char err[512];
	int n;
	json_t *list;

	if (job_choose_mode(job) < 0 || job_check_background_room(job) < 0)
		return -1;
	n = blockdev_disks_from_query(job->block, &job->disks, err, sizeof err);
	if (n < 0)
		return task_set_error(&job->task, -EINVAL, "%s", err), -1;
	job->ndisks = (size_t)n;
	if (job->postmigrate && job_find_current_memory(job) < 0)
		return -1;
	if (job->ndisks == 0 && job->mode == MODE_DISK_ONLY)
		return task_set_error(&job->task, -EINVAL, "the VM has no writable disk to checkpoint"), -1;
	uuid_generate_str(job->id);
	if (job->spec.snapshot_name != NULL)
		job->name = xstrdup(job->spec.snapshot_name);
	else
		default_name(job);
	blockdev_plan_overlays(job->disks, job->ndisks, job->spec.overlay_dir,
			       job->name, job->id);
	list = catalog_list(job->spec.catalog_root, job->spec.vm);
	if (job->ndisks > 0) {
		json_t *vm = catalog_load_vm(job->spec.catalog_root, job->spec.vm);

		job->parent = json_incref(catalog_find_parent(list, job->disks[0].chain,
			json_string_value(json_object_get(vm, "CurrentCheckpointId"))));
		json_decref(vm);
	}
	json_decref(list);
	if (job->mode == MODE_RAM_FILE)
		migrate_plan_init_ignore_shared(&job->plan, job->caps, job->params, job->id);
	else if (job->mode != MODE_DISK_ONLY)
		migrate_plan_init(&job->plan, job->caps, job->params,
				  job->mode == MODE_BACKGROUND, job->id);
	if (job_remote(job) && job->mode != MODE_DISK_ONLY && job_plan_remote_memory(job) < 0)
		return -1;
	verbose_vm(job->spec.vm, "checkpoint '%s' (%s), mode %s, %zu disk(s), QEMU %s",
		   job->name, job->id, job_mode_name(job->mode), job->ndisks,
		   job->conn.qmp.version_string);
	return job_make_files(job);
}

/* ---- entering states ------------------------------------------------- */

static void enter_probe(struct job *job)
{
	task_send(&job->task, "query-status", NULL, &job->status);
	task_send(&job->task, "query-block", NULL, &job->block);
	task_send(&job->task, "query-migrate-capabilities", NULL, &job->caps);
	task_send(&job->task, "query-migrate-parameters", NULL, &job->params);
	task_send(&job->task, "query-migrate", NULL, &job->migration);
	/* Only for background mode's room check: not worth failing over. */
	task_send_ex(&job->task, "query-memory-size-summary", NULL, -1, &job->memsize, 1);
	/* TCG or KVM: for QEMU < 9.0's pre-copy bug (no answer: TCG) */
	task_send_ex(&job->task, "query-kvm", NULL, -1, &job->kvm, 1);
	/* A network monitor: does QEMU take a file: URI (8.2)? */
	if (job_remote(job))
		task_send_ex(&job->task, "query-qmp-schema", NULL, -1, &job->schema, 1);
	/* qckpt run --ram-file: does QEMU run on that file, shared?  (No
	 * answer: it was started otherwise, and saves as usual.) */
	if (job_ramfile_backend(job) != NULL) {
		char *path = xasprintf("/objects/%s", job->ram_backend);
		struct task_call *call;

		call = task_send_call(&job->task, "qom-get", json_pack("{s:s, s:s}", "path", path,
				      "property", "mem-path"), -1, &job->ram_qom_path, 1, 0);
		if (call != NULL)
			call->quiet = 1;
		call = task_send_call(&job->task, "qom-get", json_pack("{s:s, s:s}", "path", path,
				      "property", "share"), -1, &job->ram_qom_share, 1, 0);
		if (call != NULL)
			call->quiet = 1;
		free(path);
	}
}

/* Whether QEMU accepts background-snapshot here (the host's userfaultfd
 * must support write protection for the guest's memory) is known only by
 * asking: switch it on, then straight back to how it was. */
static void enter_try_background(struct job *job)
{
	struct task_call *call = task_send_call(&job->task, "migrate-set-capabilities",
		migrate_one_cap_args("background-snapshot", 1), -1, NULL, 0,
		QMP_DEFAULT_TIMEOUT_MS);

	if (call != NULL) {
		call->done = &job->background_works;
		call->refusal = job->background_refused;
		call->refusal_size = sizeof job->background_refused;
	}
	task_send_ex(&job->task, "migrate-set-capabilities",
		    migrate_one_cap_args("background-snapshot",
					 migrate_cap_state(job->caps, "background-snapshot")),
		    -1, NULL, 1);
}

static void send_add_files(struct job *job)
{
	job_undo_on_nodes(job, 0);
	for (size_t i = 0; i < job->ndisks; i++)
		send_add(job, &job->disks[i], 0);
}

/* A network monitor: QEMU creates the empty files on its host (each
 * job's JOB_STATUS_CHANGE concluded is awaited); qckpt never sees them. */
static void send_create_files(struct job *job)
{
	job_undo_on_file_jobs(job);
	for (size_t i = 0; i < job->ndisks; i++) {
		struct disk *d = &job->disks[i];
		struct task_call *call = task_send_call(&job->task, "blockdev-create",
			blockdev_create_file_args(d), -1, NULL, 0, QMP_DEFAULT_TIMEOUT_MS);

		if (call == NULL) {
			d->file_job_dismissed = 1;
			continue;
		}
		d->file_job_sent = 1;
		call->after = on_file_create_reply;
		call->arg = d;
		job->task.awaiting++;
	}
}

static void enter_prepare(struct job *job)
{
	job_undo_on_files(job);
	if (job_plan(job) < 0)
		return;
	if (job_remote(job))
		send_create_files(job);
	else
		send_add_files(job);
}

/* Network monitors: the file jobs are over; their errors (query-jobs,
 * read in job_step), then the protocol nodes on the new files. */
static void enter_files_done(struct job *job)
{
	task_send(&job->task, "query-jobs", NULL, &job->jobs);
	for (size_t i = 0; i < job->ndisks; i++) {
		job->disks[i].file_job_dismissed = 1;
		task_send(&job->task, "job-dismiss", json_pack("{s:s}", "id", job->disks[i].file_job), NULL);
	}
	send_add_files(job);
}

/* Each create job's JOB_STATUS_CHANGE concluded is awaited. */
static void enter_format(struct job *job)
{
	job_undo_on_formats(job);
	for (size_t i = 0; i < job->ndisks; i++) {
		struct disk *d = &job->disks[i];
		struct task_call *call = task_send_call(&job->task, "blockdev-create",
			blockdev_create_args(d), -1, NULL, 0, QMP_DEFAULT_TIMEOUT_MS);

		if (call == NULL) {
			d->job_dismissed = 1;
			continue;
		}
		call->after = on_create_reply;
		call->arg = d;
		job->task.awaiting++;
	}
}

/* The first create job of query-jobs (job->jobs) that failed: its error
 * as the job's, or NULL.  FILES: the protocol files' jobs. */
static const char *job_create_error(struct job *job, int files, const struct disk **disk)
{
	size_t i, j;
	json_t *info;

	json_array_foreach(job->jobs, i, info) {
		const char *id = json_string_value(json_object_get(info, "id"));
		const char *err = json_string_value(json_object_get(info, "error"));

		for (j = 0; id && err && j < job->ndisks; j++)
			if (strcmp(id, files ? job->disks[j].file_job : job->disks[j].create_job) == 0) {
				*disk = &job->disks[j];
				return err;
			}
	}
	return NULL;
}

static int job_check_create_errors(struct job *job)
{
	const struct disk *d;
	const char *err = job_create_error(job, 0, &d);

	if (err != NULL)
		return task_set_error(&job->task, -EIO, "disk %s: creating the overlay %s failed: %s",
				     d->device, d->overlay, err), -1;
	return 0;
}

/* A file QEMU could not create: that, not the blockdev-add that then
 * could not open it, is the error to tell. */
static void job_check_file_errors(struct job *job)
{
	const struct disk *d;
	const char *err = job_create_error(job, 1, &d);
	char text[sizeof job->task.error];

	if (err == NULL)
		return;
	snprintf(text, sizeof text,
		 "disk %s: QEMU could not create the overlay %s on %s: %s (set overlay-dir= in the registry to a directory QEMU may write there)",
		 d->device, d->overlay, job->spec.qemu_host, err);
	if (job->task.error_status == 0)
		task_set_error(&job->task, -EIO, "%s", text);
	else
		memcpy(job->task.error, text, sizeof text);
}

static void enter_format_done(struct job *job)
{
	json_decref(job->jobs);
	job->jobs = NULL;
	task_send(&job->task, "query-jobs", NULL, &job->jobs);
	for (size_t i = 0; i < job->ndisks; i++) {
		job->disks[i].job_dismissed = 1;
		task_send(&job->task, "job-dismiss", json_pack("{s:s}", "id", job->disks[i].create_job), NULL);
	}
}

static void enter_attach(struct job *job)
{
	if (job_check_create_errors(job) < 0)
		return;
	job_undo_on_nodes(job, 1);
	for (size_t i = 0; i < job->ndisks; i++)
		send_add(job, &job->disks[i], 1);
}

/* ---- the save slot (--throttle-limit) ------------------------------- */

/* JOB_QUEUED: take a slot and go on, or wait in line for one. */
static void enter_queued(struct job *job)
{
	struct job_throttle *t = job->throttle;

	if (t == NULL || t->limit <= 0 || t->active < t->limit) {
		if (t != NULL) {
			t->active++;
			job->has_slot = 1;
		}
		job_step(job);
		return;
	}
	job->queued = 1;
	job->queued_ms = mono_ms();
	task_phase(&job->task, "waiting for a save slot");
	job->throttle_next = NULL;
	if (t->tail != NULL)
		t->tail->throttle_next = job;
	else
		t->head = job;
	t->tail = job;
	verbose_vm(job->spec.vm, "prepared; waiting for one of the %d save slots (--throttle-limit)",
		   t->limit);
}

static void throttle_unlink(struct job *job)
{
	struct job_throttle *t = job->throttle;
	struct job **p = &t->head, *prev = NULL;

	while (*p != NULL && *p != job) {
		prev = *p;
		p = &(*p)->throttle_next;
	}
	if (*p == NULL)
		return;
	*p = job->throttle_next;
	if (t->tail == job)
		t->tail = prev;
	job->throttle_next = NULL;
	job->queued = 0;
}

/* The job's save is over (or abandoned): hand its slot to the next in
 * line, or leave the line.  Safe to call more than once. */
static void job_throttle_leave(struct job *job)
{
	struct job_throttle *t = job->throttle;

	if (t == NULL)
		return;
	if (job->queued)
		throttle_unlink(job);
	if (!job->has_slot)
		return;
	job->has_slot = 0;
	t->active--;
	while (t->active < t->limit && t->head != NULL) {
		struct job *next = t->head;

		throttle_unlink(next);
		t->active++;
		next->has_slot = 1;
		verbose_vm(next->spec.vm, "save slot after %llu ms in line",
			   (unsigned long long)(mono_ms() - next->queued_ms));
		job_step(next);
	}
}

static void enter_migrate_setup(struct job *job)
{
	job_warn_live(job);
	job_undo_on_settings(job);
	job->settings_changed = 1;
	task_send(&job->task, "migrate-set-capabilities", migrate_set_caps_args(&job->plan), NULL);
	task_send(&job->task, "migrate-set-parameters", migrate_set_params_args(&job->plan), NULL);
	/* a network monitor: QEMU opens the file itself (plan.uri) */
	if (job->plan.uri != NULL)
		return;
	job->fd_given = 1;
	task_send_ex(&job->task, migrate_fd_command(&job->plan), migrate_fd_args(&job->plan),
		    job->memfd, &job->fd_reply, 0);
}

static void enter_stop(struct job *job)
{
	task_send(&job->task, "stop", NULL, NULL);
}

/* The MIGRATION event that ends the save is awaited. */
static void enter_save(struct job *job)
{
	struct task_call *call;

	migrate_fd_reply(&job->plan, job->fd_reply);
	job_undo_on_migrate(job);
	call = task_send_call(&job->task, "migrate", migrate_args(&job->plan), -1,
			      NULL, 0, QMP_DEFAULT_TIMEOUT_MS);
	if (call == NULL)
		return;
	job->migrating = 1;
	job->migrate_sent = 1;
	job->task.awaiting++;
	task_watch_migration(&job->task);
	call->after = on_migrate_reply;
	/* getfd's named fd belongs to the migration once QEMU accepted it;
	 * a refused migrate leaves it in QEMU for settle to close. */
	if (!job->plan.use_fdset)
		call->done = &job->fd_consumed;
	/* the device state goes through QEMU, the RAM beside it (once QEMU
	 * has stopped the guest itself, at pre-switchover, if it can) */
	if (job->mode == MODE_RAM_FILE && !job->plan.switchover)
		job_ramfile_clone(job);
}

/* The pause window: transaction and cont go out back to back. */
static void enter_snapshot(struct job *job)
{
	job->creation_ms = wall_ms();
	if (job->ndisks > 0) {
		/* Frozen file systems: the transaction bounds the freeze. */
		struct task_call *call = task_send_call(&job->task, "transaction",
			blockdev_transaction_args(job->disks, job->ndisks), -1, NULL, 0,
			job->production ? JOB_FREEZE_MAX_MS : QMP_DEFAULT_TIMEOUT_MS);

		job->transaction_sent = 1;
		if (call != NULL) {
			call->done = &job->transaction_done;
			call->after = on_transaction_reply;
		}
	}
	if (job->was_running && (job->mode == MODE_LIVE || job->mode == MODE_PAUSED ||
				 job->mode == MODE_RAM_FILE))
		job_send_resume(job, 0);
}

/* A guest that stays stopped by this save (postmigrate): what tells this
 * save apart (job_find_current_memory), so that the next checkpoint can
 * share its memory.  Asked in SETTLE, not at once: QEMU 7.2 fills in the
 * save's total time only after its completed event. */
static void job_remember_save(struct job *job)
{
	if (!job->was_running && (job->mode == MODE_PAUSED || job->mode == MODE_RAM_FILE) &&
	    job->shared_memory == NULL)
		task_send_ex(&job->task, "query-migrate", NULL, -1, &job->saved_migration, 1);
}

void job_enter_settle(struct job *job)
{
	/* A monitor that closed after the checkpoint was taken has nothing
	 * left to put back: QEMU is gone, the checkpoint stays whole. */
	if (!job_connected(job)) {
		job->settings_changed = 0;
		job->fd_given = 0;
		return;
	}
	/* background: QEMU 7.2 resumes the guest itself after its setup;
	 * QEMU 9+ restores the state it found (stopped by us) and sends no
	 * event when its own stop is over.  Resuming on MIGRATION "active"
	 * was tried: under load the cont overtook QEMU's stop (STOP after our
	 * RESUME), which gives memory from a later instant than the disks.
	 * So on those versions the guest stays stopped until the save ends. */
	if (job->mode == MODE_BACKGROUND && job->was_running && job->guest_stopped &&
	    !job->resumed)
		job_send_resume(job, 0);
	if (job->settings_changed) {
		task_send_ex(&job->task, "migrate-set-capabilities",
			    migrate_restore_caps_args(&job->plan), -1, NULL, 1);
		task_send_ex(&job->task, "migrate-set-parameters",
			    migrate_restore_params_args(&job->plan), -1, NULL, 1);
		job->settings_changed = 0;
	}
	if (job->fd_given && !job->fd_consumed) {
		struct task_call *call = task_send_call(&job->task,
			migrate_release_command(&job->plan), migrate_release_args(&job->plan),
			-1, NULL, 1, QMP_DEFAULT_TIMEOUT_MS);

		/* A migrate that QEMU refused may have taken getfd's fd
		 * already (then closefd finds none) or not: release it
		 * either way, without a warning when it is gone. */
		if (call != NULL)
			call->quiet = 1;
	}
	job->fd_given = 0;
}

/* ---- the machine ----------------------------------------------------- */

/* Which state follows STATE on success. */
static enum job_state job_next(const struct job *job, enum job_state state)
{
	switch (state) {
	case JOB_CONNECT:
		return JOB_PROBE;
	case JOB_PROBE:
		return job_background_wanted(job) ? JOB_TRY_BACKGROUND : JOB_AGENT;
	case JOB_TRY_BACKGROUND:
		return JOB_AGENT;
	case JOB_AGENT:
		return JOB_PREPARE;
	case JOB_PREPARE:
		if (job->ndisks > 0)
			return job_remote(job) ? JOB_FILES_DONE : JOB_FORMAT;
		return job->shared_memory != NULL ? JOB_SNAPSHOT : JOB_QUEUED;
	case JOB_FILES_DONE:
		return JOB_FORMAT;
	case JOB_FORMAT:
		return JOB_FORMAT_DONE;
	case JOB_FORMAT_DONE:
		return JOB_ATTACH;
	case JOB_ATTACH:
		return JOB_CATALOG;
	case JOB_CATALOG:
		if (job->production)
			return JOB_FREEZE;
		/* shared memory (postmigrate): only the disks are taken */
		return job->mode == MODE_DISK_ONLY || job->shared_memory != NULL ?
		       JOB_SNAPSHOT : JOB_QUEUED;
	case JOB_FREEZE:
		/* Not frozen (production falls back): a freeze that got no
		 * answer may still happen, so thaw before going on. */
		if (job->frozen)
			return JOB_SNAPSHOT;
		if (job->freeze_unknown)
			return JOB_THAW;
		return job->mode == MODE_DISK_ONLY ? JOB_SNAPSHOT : JOB_QUEUED;
	case JOB_THAW:
		if (job->fell_back)
			return job->mode == MODE_DISK_ONLY ? JOB_SNAPSHOT : JOB_QUEUED;
		return JOB_SETTLE;
	case JOB_QUEUED:
		return JOB_MIGRATE_SETUP;
	case JOB_MIGRATE_SETUP:
		if (job->was_running && job->mode == MODE_RAM_FILE)
			return JOB_PREFLUSH;
		if (job->was_running && job->mode != MODE_LIVE)
			return JOB_STOP;
		/* background on a guest stopped already: disks first, as
		 * after our own stop */
		return job->mode == MODE_BACKGROUND ? JOB_SNAPSHOT : JOB_SAVE;
	case JOB_PREFLUSH:
		/* QEMU stops the guest itself at pre-switchover */
		return job->plan.switchover ? JOB_SAVE : JOB_STOP;
	case JOB_STOP:
		/* background: disks first, while the guest is stopped; the
		 * memory is then saved as of QEMU's own stop, the same instant. */
		return job->mode == MODE_BACKGROUND ? JOB_SNAPSHOT : JOB_SAVE;
	case JOB_SAVE:
		return job->mode == MODE_BACKGROUND ? JOB_SETTLE : JOB_SNAPSHOT;
	case JOB_SNAPSHOT:
		if (job->production)
			return JOB_THAW;
		return job->mode == MODE_BACKGROUND ? JOB_SAVE : JOB_SETTLE;
	case JOB_SETTLE:
		return JOB_RECORD;
	case JOB_RECORD:
		return JOB_DONE;
	default:
		return JOB_FAILED;
	}
}

static void job_enter(struct job *job, enum job_state state)
{
	job->state = state;
	task_phase(&job->task, job_states[state].phase);
	/* testing: QCKPT_TEST_STOP_AT=STATE[,STATE...] (log.h) */
	log_test_stop_at("QCKPT_TEST_STOP_AT", job->spec.vm, job_states[state].name);
	switch (state) {
	case JOB_PROBE:         enter_probe(job); break;
	case JOB_TRY_BACKGROUND: enter_try_background(job); break;
	case JOB_AGENT:         job_agent_connect(job); break;
	case JOB_PREPARE:       enter_prepare(job); break;
	case JOB_FILES_DONE:    enter_files_done(job); break;
	case JOB_FORMAT:        enter_format(job); break;
	case JOB_FORMAT_DONE:   enter_format_done(job); break;
	case JOB_ATTACH:        enter_attach(job); break;
	case JOB_CATALOG:       job_catalog_write(job); break;
	case JOB_QUEUED:        enter_queued(job); return;
	case JOB_MIGRATE_SETUP: enter_migrate_setup(job); break;
	case JOB_PREFLUSH:      job_ramfile_flush(job); break;
	case JOB_STOP:          enter_stop(job); break;
	case JOB_SAVE:          enter_save(job); break;
	case JOB_FREEZE:        job_undo_on_freeze(job); job_agent_freeze(job); break;
	case JOB_SNAPSHOT:      enter_snapshot(job); break;
	case JOB_THAW:          job_agent_thaw(job); break;
	case JOB_SETTLE:
		job_throttle_leave(job);
		job_enter_settle(job);
		job_remember_save(job);
		break;
	case JOB_RECORD:        job_record_write(job); break;
	case JOB_DONE:          task_finish(&job->task); return;
	case JOB_UNDO:          job_throttle_leave(job); task_fail(&job->task); return;
	default:                return;
	}
	task_wait(&job->task);
}

/* Called when everything a state waited for has arrived. */
void job_step(struct job *job)
{
	if (job->task.finished || job->state == JOB_UNDO)
		return;
	switch (job->state) {
	case JOB_SNAPSHOT:
		for (size_t i = 0; job->transaction_done && i < job->ndisks; i++)
			job->disks[i].switched = 1;
		/* Memory and disks are both taken: the checkpoint is whole even
		 * if the guest would not resume; record it and say so. */
		if (job->task.error_status != 0 && !job->resumed && job->mode != MODE_BACKGROUND &&
		    (job->transaction_done || job->ndisks == 0)) {
			snprintf(job->resume_error, sizeof job->resume_error,
				 "the checkpoint was taken but the guest could not be resumed (%s); resume it with 'qckpt qmp %s cont'",
				 job->task.error, job->spec.vm);
			job->task.error_status = 0;
			job->task.error[0] = '\0';
		}
		break;
	case JOB_SAVE:
		if (job->task.error_status == -EIO &&
		    json_string_value(json_object_get(job->migration, "error-desc")))
			snprintf(job->task.error, sizeof job->task.error, "saving memory failed: %s",
				 json_string_value(json_object_get(job->migration, "error-desc")));
		break;
	case JOB_SETTLE:
		/* Settings that could not be put back are warnings, not a
		 * reason to throw a whole checkpoint away. */
		break;
	case JOB_FILES_DONE:
		job_check_file_errors(job);
		break;
	case JOB_FREEZE:
		job_agent_after_freeze(job);
		break;
	case JOB_THAW:
		job_agent_after_thaw(job);
		break;
	default:
		break;
	}
	/* Interrupted: stop here, unless the disks are already switched. */
	if (job->task.error_status == 0 && job->interrupted && !job->transaction_sent)
		task_set_error(&job->task, -EINTR, "interrupted");
	if (job->task.error_status != 0) {
		job_enter(job, JOB_UNDO);
		return;
	}
	job_enter(job, job_next(job, job->state));
}

static void job_task_step(struct task *task)
{
	job_step(task->data);
}

/* The task is over: the job is DONE or FAILED by its error. */
static void job_done(struct task *task)
{
	struct job *job = task->data;

	job->state = task->error_status != 0 ? JOB_FAILED : JOB_DONE;
	job_throttle_leave(job);
	agent_close(&job->agent);
	if (job->memfd >= 0) {
		close(job->memfd);
		job->memfd = -1;
	}
	/* Close now: QMP serves one client at a time, so a monitor must not
	 * stay busy while other VMs are still being checkpointed. */
	vmconn_close(&job->conn, NULL);
	job->on_done(job);
}

static const struct task_ops job_ops = {
	.step = job_task_step,
	.event = job_event,
	.disconnect = job_disconnect,
	.done = job_done,
};

/* ---- starting, stopping ---------------------------------------------- */

static int job_check_disabled(struct job *job)
{
	if (job->spec.type != VM_TYPE_DISABLED)
		return 0;
	return task_set_error(&job->task, -EPERM,
		"checkpoints are disabled for this VM (type=disabled in the registry)"), -1;
}

/* A VM given by its socket has its name from QEMU only now: its lock
 * (vmlock.h) too.  A registered name's the command took (cmd-jobs.h). */
static int job_lock_named(struct job *job)
{
	char err[1024];

	if (job->spec.expect_name != NULL)
		return 0;
	if (vmlock_take(job->spec.catalog_root, job->spec.vm, "checkpoint", err, sizeof err) < 0)
		return task_set_error(&job->task, -EBUSY, "%s", err), -1;
	job->locked = 1;
	return 0;
}

static void on_ready(struct vmconn *conn, int status)
{
	struct job *job = conn->data;

	if (status < 0) {
		task_set_error(&job->task, status, "%s", conn->error);
		task_finish(&job->task);
		return;
	}
	task_attach(&job->task, conn);
	if (job_name_direct_socket(job) < 0 || job_lock_named(job) < 0 ||
	    job_check_disabled(job) < 0) {
		task_finish(&job->task);
		return;
	}
	job_enter(job, JOB_PROBE);
}

void job_start(struct job *job, uv_loop_t *loop, job_done_cb on_done)
{
	task_init(&job->task, loop, job->spec.vm, &job_ops, job);
	progress_start(&job->progress, loop, job->spec.vm);
	job->task.progress = &job->progress;
	task_phase(&job->task, job_states[JOB_CONNECT].phase);
	job->on_done = on_done;
	job->memfd = -1;
	job->state = JOB_CONNECT;
	job->start_ms = mono_ms();
	job->conn.data = job;
	job->conn.require_name = !job->spec.name_check_off;
	if (job_check_disabled(job) < 0) {
		task_finish(&job->task);
		return;
	}
	if (vmconn_open(loop, &job->conn, job->spec.vm, job->spec.monitor,
			job->spec.expect_name, 10000, on_ready) < 0) {
		task_set_error(&job->task, -EINVAL, "%s", job->conn.error);
		task_finish(&job->task);
	}
}

void job_interrupt(struct job *job)
{
	int replies_due;

	if (job->task.finished || job->interrupted)
		return;
	job->interrupted = 1;
	/* Past the transaction the checkpoint is as good as made: finish it.
	 * That includes a background save, which runs after the transaction;
	 * cancelling one would also leave QEMU 7.2's guest hung (its write
	 * protection stays armed, as after a failed save).  A save before the
	 * transaction is cancelled at once; otherwise the next step notices. */
	if (job->transaction_sent) {
		warn_vm(job->spec.vm, "interrupted after the disk snapshot: finishing the checkpoint");
		return;
	}
	if (job->queued) {
		/* waiting for a save slot: nothing in flight */
		task_set_error(&job->task, -EINTR, "interrupted");
		job_enter(job, JOB_UNDO);
		return;
	}
	if (job->state != JOB_SAVE || !job->migrating)
		return;
	task_set_error(&job->task, -EINTR, "interrupted");
	replies_due = job->task.outstanding > 0;
	/* Cancel the save now rather than after it, here and not in the undo
	 * (undo_migrate), so that it goes out first whatever the undo waits
	 * for (under test, QCKPT_TEST_STOP_AT=undo stopped qckpt before the
	 * undo's cancel, and the save ran to its end).  With a reply still due
	 * (the migrate itself, a stop) the undo follows when the replies and
	 * QEMU's MIGRATION cancelled event are in. */
	if (!job->cancel_sent && job->mode != MODE_BACKGROUND && job_connected(job)) {
		job->cancel_sent = 1;
		task_send_ex(&job->task, "migrate_cancel", NULL, -1, NULL, 1);
	}
	if (!replies_due)
		job_enter(job, JOB_UNDO);
}

void job_free(struct job *job)
{
	json_decref(job->status);
	json_decref(job->block);
	json_decref(job->caps);
	json_decref(job->params);
	json_decref(job->migration);
	json_decref(job->jobs);
	json_decref(job->memsize);
	json_decref(job->kvm);
	json_decref(job->schema);
	json_decref(job->warnings);
	json_decref(job->shared_memory);
	json_decref(job->saved_migration);
	json_decref(job->fd_reply);
	json_decref(job->parent);
	json_decref(job->record);
	json_decref(job->vm_before);
	json_decref(job->vm_after);
	json_decref(job->ram_qom_path);
	json_decref(job->ram_qom_share);
	free(job->ram_backend);
	free(job->ram_path);
	free(job->ram_copy);
	migrate_plan_free(&job->plan);
	blockdev_disks_free(job->disks, job->ndisks);
	free(job->name);
	free(job->dir);
	free(job->memory_path);
	if (job->locked)
		vmlock_release(job->spec.catalog_root, job->spec.vm);
	job_spec_free(&job->spec);
	progress_free(&job->progress);
	free(job);
}
