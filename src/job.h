/*
 * job.h: one VM's checkpoint as a state machine on a libuv loop.  Many jobs
 * share one loop (and one thread); each advances only when QEMU answers or
 * sends an event.  The states and their order are in job.c, in one switch.
 */
#ifndef JOB_H
#define JOB_H

#include <uv.h>
#include <jansson.h>

#include "agent.h"
#include "blockdev.h"
#include "migrate.h"
#include "registry.h"
#include "task.h"
#include "vmconn.h"

enum ckpt_mode {
	MODE_AUTO,
	MODE_LIVE,
	MODE_PAUSED,
	MODE_BACKGROUND,
	MODE_DISK_ONLY,
	MODE_RAM_FILE,    /* guest RAM in a reflinked file: job-ramfile.c */
};

const char *job_mode_name(enum ckpt_mode mode);
int job_parse_mode(const char *text, enum ckpt_mode *mode);

/* What the user asked for, for one VM. */
struct job_spec {
	char *vm;           /* name for messages and the catalog */
	char *monitor;
	char *expect_name;  /* query-name must match, or NULL */
	char *catalog_root;
	char *overlay_dir;
	char *agent;
	char *snapshot_name;
	char *computer_name;
	/* tcp:/tls: monitors: the HOST QEMU runs on, whose files qckpt never
	 * touches (overlays and memory made by QEMU); NULL: this host */
	char *qemu_host;
	char *remote_dir;   /* registry remote-dir=: memory states there */
	enum vm_type type;
	int type_given;     /* --type: the registry's type does not apply */
	int name_check_off; /* registry name-check=off: QEMU may lack -name */
	/* The registry (borrowed; outlives the job): a VM given by its socket
	 * takes the entry of the name QEMU reports. */
	const struct registry *registry;
	enum ckpt_mode mode;
};

void job_spec_free(struct job_spec *spec);

enum job_state {
	JOB_CONNECT,       /* connect, negotiate, query-name */
	JOB_PROBE,         /* status, disks, migration abilities, accelerator */
	JOB_TRY_BACKGROUND, /* auto: would QEMU take background-snapshot? */
	JOB_AGENT,         /* production types: connect to the guest agent */
	JOB_PREPARE,       /* plan; overlay files; blockdev-add protocol nodes
			    * (network monitor: blockdev-create the files) */
	JOB_FILES_DONE,    /* network monitor: the file jobs' errors, dismiss,
			    * blockdev-add protocol nodes */
	JOB_FORMAT,        /* blockdev-create qcow2 jobs, until concluded */
	JOB_FORMAT_DONE,   /* query-jobs for errors, job-dismiss */
	JOB_ATTACH,        /* blockdev-add the overlays (backing: null) */
	JOB_CATALOG,       /* vm.json names the overlays (thread pool), before
			    * the guest stops and the transaction is sent */
	JOB_QUEUED,        /* prepared; waiting for a save slot (job_throttle) */
	JOB_MIGRATE_SETUP, /* capabilities, parameters, hand over the file */
	JOB_PREFLUSH,      /* ram-file: write the RAM file back while the guest runs */
	JOB_STOP,          /* paused / background on a running guest: stop */
	JOB_SAVE,          /* migrate, until MIGRATION completed */
	JOB_FREEZE,        /* production: guest-fsfreeze-freeze */
	JOB_SNAPSHOT,      /* transaction (and cont, back to back) */
	JOB_THAW,          /* production: guest-fsfreeze-thaw right after it */
	JOB_SETTLE,        /* put the user's migration settings back */
	JOB_RECORD,        /* fsync memory, write the record (thread pool) */
	JOB_DONE,
	JOB_UNDO,          /* the one failure path: the task's undo list,
			    * entries from job-undo.c */
	JOB_FAILED,
};

struct job;
typedef void (*job_done_cb)(struct job *job);

/*
 * --throttle-limit: at most limit jobs of one command in their memory save
 * at once, from JOB_MIGRATE_SETUP until the save is over and the guest runs
 * again (JOB_SETTLE).  Every job prepares its overlays without waiting;
 * the others wait in JOB_QUEUED, first come first served.  The saves and
 * their final passes share the host's CPUs with every running guest:
 * fewer at once keeps each guest's pause short.
 */
struct job_throttle {
	int limit;                /* 0: no limit */
	int active;               /* jobs holding a slot */
	struct job *head, *tail;  /* waiting, linked through throttle_next */
};

struct job {
	void *data;
	/* the framework (task.h): replies and events counted, the first
	 * error (task.error), the undo list, done once */
	struct task task;
	struct progress progress; /* the user's view of it (progress.h) */
	struct job_spec spec;
	struct vmconn conn;
	enum job_state state;
	job_done_cb on_done;
	int locked;               /* took the VM's lock itself (job_lock_named) */

	/* probes */
	json_t *status, *block, *caps, *params, *migration, *jobs, *memsize, *kvm;
	json_t *schema;           /* network monitor: query-qmp-schema */
	int was_running;
	int background_works;     /* QEMU took background-snapshot=on (a trial) */
	char background_refused[256]; /* what QEMU said when it did not */
	json_t *warnings;         /* the record's Warnings (strings) */
	/* postmigrate: the record whose memory file is still the guest's
	 * memory, shared (hard link) instead of saved again; see
	 * job_find_current_memory() */
	int postmigrate;
	json_t *shared_memory;    /* that record's MemoryState */
	json_t *saved_migration;  /* query-migrate after a save that stays stopped */
	enum ckpt_mode mode;      /* the mode chosen */
	enum ckpt_mode fallback_mode; /* production: the standard mode instead */
	char checkpoint_type[16]; /* Standard, DiskOnly, Production */

	/* the checkpoint being made */
	char id[37];
	char *name;
	char *dir;
	char *memory_path;
	int memfd;
	struct disk *disks;
	size_t ndisks;
	struct migrate_plan plan;
	json_t *fd_reply;
	json_t *parent;
	json_t *record;
	json_t *vm_before;      /* vm.json as it was (after following QEMU) */
	json_t *vm_after;       /* vm.json being written (JOB_CATALOG) */
	int catalog_written;    /* vm.json names the overlays */

	/* production checkpoints: the guest agent (see enter_agent) */
	struct agent agent;
	int agent_ok;           /* connected and in sync */
	char agent_skip[512];   /* why the agent was not used, if it was not */
	int production;         /* disk-only with the file systems frozen */
	int fell_back;          /* production that turned standard mid-way */
	int frozen;             /* guest-fsfreeze-freeze returned a count */
	int freeze_unknown;     /* no answer: the guest may be frozen */
	int thaw_sent;
	int thawed;
	long long frozen_filesystems;
	uint64_t freeze_start_ms;
	long long freeze_ms;    /* freeze request to thaw answer */
	int transaction_unknown; /* transaction timed out: it may still happen */

	/* ram-file mode (job-ramfile.c): guest RAM in a file QEMU maps */
	char *ram_backend;        /* vm.json's RamFile.Backend, or NULL */
	json_t *ram_qom_path, *ram_qom_share; /* qom-get of that backend */
	char *ram_path;           /* the file QEMU runs on */
	char *ram_copy;           /* its reflink in the checkpoint directory */
	long long ram_bytes, preflush_ms, reflink_ms;
	int preflush_passes;

	/* the save slot (--throttle-limit), or NULL for no limit */
	struct job_throttle *throttle;
	struct job *throttle_next;
	int has_slot;
	int queued;
	uint64_t queued_ms;

	/* what has happened, for the undo entries (job-undo.c) */
	int settings_changed;   /* migrate-set-* sent */
	int fd_given;           /* the memory fd is in QEMU */
	int fd_consumed;        /* migrate took it (getfd's named fd) */
	int migrate_sent;       /* network monitor: QEMU may have made the file */
	int migrating;          /* migrate sent, no terminal event yet (the
				 * event is counted in task.awaiting) */
	int guest_stopped;      /* STOP seen, RESUME not yet */
	int resumed;            /* cont succeeded or RESUME seen */
	int transaction_sent;
	int transaction_done;
	int converge_stop_sent;
	int cancel_sent;
	int record_written;
	int interrupted;

	/* measurements */
	uint64_t start_ms;
	int64_t creation_ms;
	double stop_time, resume_time; /* QEMU's event timestamps, seconds */
	long long pause_ms;
	long long memory_bytes;

	char resume_error[1280]; /* a whole checkpoint, but the guest stayed stopped */
	uv_work_t work;
	int work_rc;
};

/* Start the job; on_done runs once when it is DONE or FAILED. */
void job_start(struct job *job, uv_loop_t *loop, job_done_cb on_done);

/* Ctrl-C: abandon the checkpoint, undoing what was done. */
void job_interrupt(struct job *job);

/* What the job still waits for, in a few words ("saving memory"). */
const char *job_state_doing(const struct job *job);
/* The state's name, as QCKPT_TEST_STOP_AT takes it ("snapshot"). */
const char *job_state_name(enum job_state state);

/* Release a finished job; only after the loop has run the connection's
 * close to its end (uv_run returned). */
void job_free(struct job *job);

#endif
