/*
 * progress.h: what each VM of a command is doing, for the user while it
 * runs.  The task framework (task.h) feeds it: every phase change
 * (preparing, saving memory, switching disks, recording; checking,
 * stopping, starting QEMU, loading memory) and, every 250 ms, a timer
 * tick that asks QEMU (query-migrate) for its RAM counters while memory
 * is saved or loaded.  Figures come from QEMU (or, for a stream loaded
 * from a file, the kernel's file offset of QEMU's read), never made up:
 * what is unknown is left out.
 *
 * Where it goes is the board's choice (--progress=auto|none|json):
 *  - auto on a terminal (stderr a tty, no -q): one live line per VM,
 *    redrawn in place, cleared when the VM is done;
 *  - json: one JSON object a line on stderr at every phase change and at
 *    every tick: {"Time","VMName","Phase","BytesDone","BytesTotal",
 *    "BytesPerSecond","SecondsLeft","ElapsedMs"};
 *    (a merge's block job is asked with query-jobs instead);
 *  - otherwise nothing;
 *  - and in a --as-job process, the latest of every VM in the job's
 *    progress file (asjob_write_progress), which `qckpt job show` prints
 *    and `qckpt job wait` draws.
 */
#ifndef PROGRESS_H
#define PROGRESS_H

#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "qmp.h"

enum progress_output {
	PROGRESS_AUTO,
	PROGRESS_NONE,
	PROGRESS_JSON,
};

/* "auto", "none" or "json": 0, or -1 for anything else. */
int progress_parse(const char *text, enum progress_output *out);

struct progress;

/* One command's progress: every VM's row. */
struct progress_board {
	enum progress_output output;
	int live;               /* auto on a terminal: lines redrawn */
	int record;             /* a --as-job process: the job's file */
	struct progress **rows;
	size_t nrows;
	int drawn;              /* lines on the terminal now */
	uint64_t recorded_ms;   /* last write of the job's file */
};

/* Set up the process's board (one per command) for OUTPUT. */
struct progress_board *progress_board_open(enum progress_output output);
/* Clear what is drawn and forget the rows (they are the tasks'). */
void progress_board_close(void);

/* How a figure is got while the phase runs. */
enum progress_source {
	PROGRESS_SRC_NONE,      /* no byte counts in this phase */
	PROGRESS_SRC_MIGRATE,   /* query-migrate's ram counters (a save) */
	PROGRESS_SRC_INCOMING,  /* query-migrate on the destination, and the
				 * offset QEMU reads the memory file at */
	PROGRESS_SRC_BLOCKJOB,  /* query-jobs' current-progress and
				 * total-progress of one block job (a merge) */
};

struct progress {
	struct progress_board *board; /* NULL: nothing to say */
	char *vm;
	const char *phase;
	long long done, total;  /* bytes, -1 unknown */
	double rate;            /* bytes per second, < 0 unknown */
	long long remaining;    /* bytes, -1 unknown */
	uint64_t start_ms;
	enum progress_source source;
	qmp_client *qmp;        /* where query-migrate goes */
	int fd;                 /* INCOMING: our end of QEMU's memory fd */
	const char *job_id;     /* BLOCKJOB: the job's id (the owner's) */
	uint64_t sampled_ms;    /* INCOMING, BLOCKJOB: when done was read;
				 * progress_count: when sampled_done was */
	long long sampled_done; /* progress_count: done at sampled_ms */
	int query_out;          /* a query-migrate not answered yet */
	int timer_open;
	uv_timer_t timer;
	int finished;
};

/* Start a VM's row on the process's board (if any) with a 250 ms tick
 * on LOOP.  A progress without a board does nothing. */
void progress_start(struct progress *p, uv_loop_t *loop, const char *vm);
/* The VM's name changed (a socket turned out to be VM NAME). */
void progress_rename(struct progress *p, const char *vm);
/* A new phase (a static string); the same phase again changes nothing. */
void progress_phase(struct progress *p, const char *phase);
/* Where the figures of this phase come from (see enum progress_source);
 * FD: for INCOMING, the memory file's fd shared with QEMU, or -1. */
void progress_watch(struct progress *p, enum progress_source source,
		    qmp_client *qmp, int fd, long long total);
/* During this phase the figures are block job JOB_ID's on QMP
 * (query-jobs; JOB_ID is the caller's and outlives the phase).  Its
 * units are QEMU's: bytes for commit and stream. */
void progress_watch_job(struct progress *p, qmp_client *qmp, const char *job_id);
/* Figures the owner got elsewhere (export: qemu-img -p's percent of a
 * disk's virtual size), shown at the next tick; the rate is their
 * change between two calls.  Until the next phase. */
void progress_count(struct progress *p, long long done, long long total);
/* Ask QEMU now rather than at the next tick (the save just went active:
 * a save shorter than a tick still gets its figures). */
void progress_poke(struct progress *p);
/* The VM is done: its row goes, the timer closes.  Safe twice. */
void progress_finish(struct progress *p, const char *final_phase);
void progress_free(struct progress *p);

/* A line of the log is about to be written: clear the live lines first. */
void progress_clear_for_output(void);

/* job wait: draw rows read from job files (arrays of the JSON objects
 * above), as this process's board shows its own. */
void progress_board_show_json(json_t *rows);

#endif
