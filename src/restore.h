/*
 * restore.h: putting a VM back to a checkpoint (`qckpt restore`), as two
 * tasks on one libuv loop (task.h):
 *
 *  - struct restore: one VM's restore: find the checkpoint, check its files
 *    (touching nothing), new overlays on its frozen images, vm.json with a
 *    PendingRestore, then either start the new QEMU through `qckpt run`
 *    beside the old one, load it, stop the old guest, start the new one and
 *    quit the old QEMU (the pre-start), or, when the command cannot run
 *    twice at once, quit the running QEMU and wait for its process, then
 *    relaunch the recorded command (restore.c);
 *  - struct restore_load: the memory load on the monitor QEMU opens to us
 *    (-incoming defer plus a client-mode QMP chardev): capabilities and
 *    parameters as recorded, the memory file handed over, migrate-incoming,
 *    cont when the guest was running, then vm.json says the restore is
 *    complete (restore-load.c).  `qckpt run` uses it alone when it finds a
 *    PendingRestore nobody is waiting for (--no-relaunch).
 */
#ifndef RESTORE_H
#define RESTORE_H

#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "memsum.h"
#include "task.h"
#include "vmconn.h"

/* The environment variable through which `qckpt restore` tells the
 * `qckpt run` it spawns where it listens for QEMU's restore monitor. */
#define RESTORE_SOCKET_ENV "QCKPT_RESTORE_SOCKET"
/* And the descriptor on which it holds that run, everything prepared,
 * until the old QEMU has exited: a byte means go, the end without one
 * means the restore gave up. */
#define RESTORE_HOLD_ENV "QCKPT_RESTORE_HOLD_FD"
/* And, for a pre-started run, where the new QEMU serves the VM's QMP
 * socket until the restore renames it onto the real path. */
#define RESTORE_PRESTART_ENV "QCKPT_RESTORE_PRESTART"
/* The chardev id of that monitor in QEMU's command line. */
#define RESTORE_CHARDEV_ID "qckpt-restore"

/* ---- the load ---- */

enum load_state {
	LOAD_ACCEPT,   /* wait for QEMU to connect, negotiate */
	LOAD_PROBE,    /* capabilities, parameters, run state */
	LOAD_SETUP,    /* migrate-set-capabilities/-parameters, the fd */
	LOAD_FD_DIRECT, /* the O_DIRECT twin in the same fdset (direct-io) */
	LOAD_READY,    /* pre-started: all set, until restore_load_go */
	LOAD_INCOMING, /* migrate-incoming, until MIGRATION completed */
	LOAD_RESUME,   /* cont (running checkpoints), until RESUME */
	LOAD_SETTLE,   /* capabilities and direct-io off again */
	LOAD_RECORD,   /* vm.json: PendingRestore removed, CurrentCheckpointId */
	LOAD_DONE,
};

struct restore_load {
	void *data;
	struct task task;
	enum load_state state;
	char *vm, *catalog_root, *sock_path;
	json_t *pending;      /* vm.json's PendingRestore */
	struct progress *progress; /* the restore's, or NULL (qckpt run) */
	uv_pipe_t server;
	int server_open;
	struct vmconn conn;
	int conn_used;
	uv_timer_t timer;     /* accept and load deadlines */
	int timer_open;

	json_t *caps, *params, *status, *fd_reply, *migration;
	int use_fdset, mapped_ram, direct_io, fdset_id;
	int cached;         /* the memory state was mostly in the page cache */
	int warmed;         /* set before restore_load_start: it is being read
			     * into the page cache (its checksum): no direct-io */
	int memfd, memfd_direct;
	int memfd_errno;    /* why memfd could not be opened */
	long long membytes; /* its size */
	int migrating, resumed, completed;
	int guest_running;    /* the checkpoint's GuestState */
	uint64_t start_ms;    /* when the user's command started */
	uint64_t start_ns;    /* the same, for --debug's timeline */
	uint64_t incoming_ms; /* migrate-incoming sent */
	long long resume_ms;  /* start to RESUME (or to loaded, paused) */
	int work_rc;
	uv_work_t work;
	void (*on_done)(struct restore_load *load);
	/* Set before restore_load_start to stop before migrate-incoming,
	 * everything else set: on_ready, then nothing until restore_load_go. */
	void (*on_ready)(struct restore_load *load);
	/* Set before it: called once QEMU connects to the restore monitor
	 * (it runs, its command line parsed, its chardevs made). */
	void (*on_connected)(struct restore_load *load);
	int connected;
};

/* Listen on SOCK_PATH (a unix socket QEMU will connect to) before QEMU
 * starts; or adopt FD, a socket already listening (run's forked child).
 * 0, or -errno with nothing to clean up but restore_load_close. */
int restore_load_listen(struct restore_load *load, uv_loop_t *loop,
			const char *sock_path);
int restore_load_adopt(struct restore_load *load, uv_loop_t *loop, int fd,
		       const char *sock_path);
/* Wait for QEMU and load; on_done once (load->task.error_status). */
void restore_load_start(struct restore_load *load, const char *vm,
			const char *catalog_root, json_t *pending,
			uint64_t start_ns, void (*on_done)(struct restore_load *));
/* The multifd channels a mapped-ram load uses (restore-load.c says why). */
long restore_load_channels(void);
/* Go on from LOAD_READY: the load, cont (a running checkpoint), settle,
 * record. */
void restore_load_go(struct restore_load *load);
/* QEMU is gone (its process exited): fail unless already loaded. */
void restore_load_qemu_exited(struct restore_load *load);
/* Close the handles (after on_done); free after the loop has run them. */
void restore_load_close(struct restore_load *load);
void restore_load_free(struct restore_load *load);

/* ---- one VM's restore ---- */

struct restore_spec {
	char *vm;
	char *monitor, *expect_name;
	char *catalog_root, *overlay_dir;
	char *checkpoint;     /* as given: name, Id or Id prefix */
	char *registry_path;  /* --registry, passed on to run */
	int no_relaunch;
	int verify;           /* --verify: read the memory state even if its
			       * stamp says it is unchanged (memsum.h) */
};

enum restore_state {
	RESTORE_FIND,     /* the checkpoint and its files (touches nothing) */
	RESTORE_CONNECT,  /* its monitor: running? launched by qckpt run?
			   * meanwhile the thread pool creates the new overlays */
	RESTORE_PROBE,    /* its migration capabilities */
	RESTORE_OVERLAYS, /* until the overlays (begun at connect) are written */
	RESTORE_COMMIT,   /* vm.json: new overlays, PendingRestore */
	/* the pre-start: the new QEMU beside the old one */
	RESTORE_PRESTART, /* qckpt run, detached, its QMP socket aside */
	RESTORE_PRELOAD,  /* its load (r->preload), until QEMU connects */
	RESTORE_HANDOVER, /* quit the old QEMU, until its process exits;
			   * its QMP socket to the new one */
	RESTORE_SWITCH,   /* the new one, once ready, loads and goes on:
			   * cont, vm.json */
	/* one after the other (or the pre-start failed) */
	RESTORE_QUIT,     /* quit the old QEMU, until its process exits */
	RESTORE_LAUNCH,   /* qckpt run, detached, QEMU connects back */
	RESTORE_LOAD,     /* struct restore_load */
	RESTORE_DONE,
};

struct restore_disk {
	char *device, *frozen, *format, *overlay, *original;
	json_t *chain;
	struct restore *restore;
	uv_work_t work;       /* the overlay's creation, in the thread pool */
	int created;          /* 0, or -errno of the creation */
};

struct restore {
	void *data;
	struct restore_spec spec;
	struct task task;
	struct progress progress; /* the user's view of it (progress.h) */
	enum restore_state state;
	uv_loop_t *loop;
	uint64_t start_ms;
	uint64_t start_ns;   /* --debug's timeline starts here */

	json_t *record;      /* the checkpoint (new reference) */
	json_t *vmstate;     /* vm.json before */
	json_t *memory;      /* record's MemoryState (borrowed) */
	int running;         /* its QEMU runs, launched by qckpt run */
	long pid;
	char id8[9];
	struct vmconn conn;
	int conn_used;
	json_t *caps;
	struct restore_disk *disks;
	size_t ndisks;
	int overlays_running; /* overlay creations not done yet */
	int overlays_awaited; /* of those, counted in task.awaiting */
	int vm_json_written;

	/* a ram-file checkpoint (ramfile.h): its frozen RAM file, the
	 * reflink the new QEMU runs on, the file the old one ran on */
	char *ram_frozen, *ram_clone, *ram_old, *ram_dir;
	int ram_cloned;

	/* The memory state's checksum (memsum.h), read in the thread pool
	 * from the start, awaited before the old QEMU is let go. */
	uv_work_t sum_work;
	int sum_started, sum_running, sum_awaited, sum_rc;
	char sum_got[MEMSUM_LEN];
	uint64_t sum_start_ms;
	struct stat memory_st; /* check_memory's */

	int pidfd;
	uv_poll_t pidpoll;
	int pidpoll_open;
	uv_process_t proc;
	int proc_open, proc_exited;
	long qemu_pid;
	char *sockdir, *sock, *log_path;
	struct restore_load load;
	int load_used;

	/* The pre-start (restore.c): its own run, load and monitor
	 * directory, so that a fallback to the sequential path starts
	 * afresh while their handles close. */
	int prestart;         /* the command can run twice at once */
	char *mon_real, *mon_aside; /* the VM's QMP socket, and the new QEMU's for now */
	char *old_bound;      /* where the old QEMU bound its socket (it unlinks that) */
	dev_t mon_dev;
	ino_t mon_ino;        /* the old QEMU's socket file */
	json_t *old_status;   /* its query-status */
	json_t *old_jobs;     /* its query-block-jobs */
	uv_process_t preproc;
	int preproc_open, prekilling, prestarted;
	struct restore_load preload;
	int preload_used, preload_awaited, switched;
	int load_went;        /* the pre-started QEMU's load begun */
	char *presockdir, *presock;
	int fallback;         /* the pre-start failed: one after the other */
	char fallback_why[1024];
	uv_fs_event_t monwatch;
	int monwatch_open, mon_moved, old_closed;
	int work_rc;
	uv_work_t work;
	int killing;          /* the relaunched QEMU is being ended */
	int quit_on_disconnect; /* no pidfd: the monitor's end stands in */
	int exit_status;      /* the relaunched QEMU's, once it exited */
	int past_quit;        /* the old QEMU is told to quit: the restore is pending */
	uv_pipe_t hold;       /* holds the relaunch until the old QEMU is gone */
	int hold_open;
	long long resume_ms;  /* command to RESUME (or to loaded, paused) */
	int guest_running;    /* the restored guest runs (not a paused checkpoint) */
	int interrupted;
	int finished;
	void (*on_done)(struct restore *r);
};

void restore_start(struct restore *r, uv_loop_t *loop,
		   void (*on_done)(struct restore *r));
void restore_interrupt(struct restore *r);
/* After the loop has run to its end. */
void restore_free(struct restore *r);

#endif
