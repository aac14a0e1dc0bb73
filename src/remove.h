/*
 * remove.h: taking checkpoints away (`qckpt remove`, `qckpt prune`,
 * `checkpoint --keep`), as one task per VM on a libuv loop (task.h).
 *
 *  - remove-plan.c: which disk layers a removal merges and how (pure: the
 *    catalog and the qcow2 headers in, a list of merges out; the cases are
 *    worked out at the top of that file), the journal, and the catalog
 *    rewrites after each merge;
 *  - remove.c: one VM's removal: find the checkpoints, the VM's QEMU (or
 *    none: stopped), the journal written, then each merge as a QEMU block
 *    job on the running VM's own nodes or as qemu-img offline, the
 *    catalog following each one, the freed files unlinked last.
 *
 * The commands that run removals (remove, prune, checkpoint --keep) share
 * cmd-remove.h.
 */
#ifndef REMOVE_H
#define REMOVE_H

#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "task.h"
#include "vmconn.h"

/* ---- the plan (remove-plan.c) ---- */

/* <root>/<vm>/remove-journal.json */
char *remove_journal_path(const char *root, const char *vm);

/*
 * The merges that take VICTIM (a record of LIST) away, as a JSON array of
 * {"Op": "commit"|"stream"|"drop", "Device", "Top", "Base", "BaseFormat",
 * "Done": false}:
 *   commit: Top's data into Base (its backing), Top then replaced by Base
 *           everywhere and dropped;
 *   stream: the data between Top and Base (one layer) copied into Top,
 *           whose backing becomes Base;
 *   drop:   Top unlinked once no image's header names it.
 * VMSTATE is vm.json, RUNNING the image chains QEMU runs on (arrays of
 * files, bottom .. top; NULL when stopped).  Notes for -v in *notes.
 */
json_t *remove_plan(json_t *list, json_t *victim, json_t *vmstate,
		    json_t *running, json_t *notes);

/* The images (absolute) whose qcow2 header names IMAGE as backing file,
 * among the files in the directories of KNOWN (paths) and IMAGE's. */
json_t *remove_children(const char *image, json_t *known);

/* "qcow2" when PATH holds a qcow2 header, else "raw". */
const char *remove_image_format(const char *path);

/*
 * After a commit of TOP into BASE: every record of VM and vm.json name
 * BASE where they named TOP; vm.json's chains are read again from the
 * headers.  0 or -errno (err says which file).
 */
int remove_fixup_catalog(const char *root, const char *vm, const char *top,
			 const char *base, const char *base_format,
			 char *err, size_t errlen);

/* The victim's record goes: checkpoint.json unlinked, its children
 * re-parented to its parent, vm.json's CurrentCheckpointId moved up. */
int remove_forget_record(const char *root, const char *vm, json_t *victim,
			 char *err, size_t errlen);

/* Unlink IMAGE unless a header among KNOWN's directories still names it
 * or vm.json / a record names it: 1 unlinked, 0 kept, -errno. */
int remove_drop_image(const char *root, const char *vm, const char *image);

/* ---- one VM's removal (remove.c) ---- */

struct remove_spec {
	char *vm;
	char *monitor, *expect_name;
	char *catalog_root;
	char *checkpoint;     /* as given: name, Id or Id prefix; NULL: prune */
	int including_children;
	long keep;            /* prune: keep the N newest (-1: no limit) */
	int64_t older_than_ms; /* prune: remove older than this (0: none) */
};

enum remove_state {
	RM_FIND,       /* the checkpoints; a journal left by a killed remove */
	RM_CONNECT,    /* the VM's monitor, or none: stopped */
	RM_PROBE,      /* run state, disks, nodes, leftover jobs */
	RM_ACTIVATE,   /* inactive nodes after a save: blockdev-set-active */
	RM_CANCEL,     /* leftover jobs of a killed remove: cancel, dismiss */
	RM_PLAN,       /* one checkpoint: its merges into the journal, record gone */
	RM_MERGE,      /* one merge: a QEMU job, or qemu-img */
	RM_FIXUP,      /* the catalog follows the merge; the journal says so */
	RM_DROP,       /* freed images, memory file and record directory */
	RM_REPROBE,    /* the chains again, for the next checkpoint */
	RM_DEACTIVATE, /* nodes inactive again, as found */
	RM_DONE,
};

struct remove {
	void *data;
	struct remove_spec spec;
	struct task task;
	struct progress progress; /* what the user sees (progress.h) */
	enum remove_state state;
	uv_loop_t *loop;

	json_t *victims;      /* records still to remove, in order */
	json_t *removed;      /* the records removed, as they were (report, --passthru) */
	json_t *journal;      /* what remove-journal.json holds */
	size_t op;            /* the merge under way */
	struct vmconn conn;
	int conn_used, online;
	json_t *status, *blocks, *nodes, *jobs, *schema, *job_info;
	json_t *running;      /* chains QEMU runs on, per disk */
	int activated;        /* we made inactive nodes active */
	char job_id[48];
	int job_seq, job_active, job_pivot_sent, job_concluded;
	json_t *cancel_ids;
	uv_process_t proc;
	uv_pipe_t proc_err;
	char proc_errbuf[1024];
	size_t proc_errlen;
	int proc_open, proc_err_open;
	json_t *argvs;        /* qemu-img commands still to run for this merge */
	int interrupted;
	int finished;
	void (*on_done)(struct remove *r);
};

void remove_start(struct remove *r, uv_loop_t *loop,
		  void (*on_done)(struct remove *r));
void remove_interrupt(struct remove *r);
void remove_free(struct remove *r);

#endif
