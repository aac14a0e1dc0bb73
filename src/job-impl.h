/*
 * job-impl.h: what the files of the checkpoint job share, and nothing
 * else includes: job.c (the state machine), job-agent.c (guest agent
 * freeze and thaw), job-record.c (the record) and job-undo.c (the failure
 * path).  Everything here works on a struct job (job.h) on the job's loop.
 */
#ifndef QCKPT_JOB_IMPL_H
#define QCKPT_JOB_IMPL_H

#include <jansson.h>

#include "job.h"

/* ---- job.c ---- */

int job_connected(const struct job *job);
/* A network monitor: QEMU's files are on its host, never touched here. */
int job_remote(const struct job *job);
/* cont, retried while QEMU finalizes the migration, until RESUME. */
void job_send_resume(struct job *job, int optional);
/* Everything a state waited for has arrived: go to the next state (the
 * task's step; called directly where a state needs no wait). */
void job_step(struct job *job);
/* JOB_SETTLE: put the user's migration settings back, release the fd. */
void job_enter_settle(struct job *job);
int job_is_production_type(const struct job *job);
const char *job_run_status(const struct job *job);
int job_open_memory_file(struct job *job);
/* Background mode needs room for the guest's memory: 0, or -1 failed. */
int job_check_background_room(struct job *job);

/* ---- job-agent.c ---- */

void job_agent_connect(struct job *job);        /* JOB_AGENT */
void job_agent_freeze(struct job *job);         /* JOB_FREEZE */
int job_agent_thaw(struct job *job);            /* JOB_THAW; 0 if sent */
void job_agent_after_freeze(struct job *job);
void job_agent_after_thaw(struct job *job);

/* ---- job-record.c ---- */

json_t *job_build_record(struct job *job);
/* JOB_CATALOG: vm.json follows QEMU's chains and names the new overlays
 * (thread pool); job_step() follows. */
void job_catalog_write(struct job *job);
/* Undo: vm.json as it was before JOB_CATALOG.  0 or -errno. */
int job_catalog_rollback(struct job *job);
void job_record_write(struct job *job);          /* JOB_RECORD */

/* ---- job-ramfile.c ---- */

/* PROBE: the memory backend vm.json names (qckpt run --ram-file), or NULL. */
const char *job_ramfile_backend(struct job *job);
/* Mode choice: ram-file replaces the memory modes when QEMU runs on a
 * shared RAM file.  0, or -1 with the error set. */
int job_ramfile_choose(struct job *job, enum ckpt_mode *mode);
void job_ramfile_flush(struct job *job);   /* JOB_PREFLUSH */
void job_ramfile_clone(struct job *job);   /* JOB_SAVE, beside the migrate */
void job_ramfile_switchover(struct job *job); /* MIGRATION pre-switchover */
/* postmigrate: the shared save's frozen RAM file, hard-linked too. */
int job_ramfile_link_shared(struct job *job);
/* The MemoryState fields of a ram-file checkpoint, added to M. */
void job_ramfile_record(const struct job *job, json_t *m);

/* ---- job-undo.c ---- */

/* Register the undo of what a state is about to create (task_on_undo);
 * the task walks them back, newest first, on failure. */
void job_undo_on_files(struct job *job);    /* JOB_PREPARE: local files */
void job_undo_on_nodes(struct job *job, int overlay); /* blockdev-add */
void job_undo_on_formats(struct job *job);  /* JOB_FORMAT: create jobs */
void job_undo_on_file_jobs(struct job *job); /* JOB_PREPARE, network monitor */
void job_undo_on_catalog(struct job *job);  /* JOB_CATALOG: vm.json */
void job_undo_on_freeze(struct job *job);   /* JOB_FREEZE: thaw first */
void job_undo_on_settings(struct job *job); /* JOB_MIGRATE_SETUP */
void job_undo_on_migrate(struct job *job);  /* JOB_SAVE: end the save */

#endif
