/*
 * export.h: `qckpt export NAME CHECKPOINT DIR`, a self-contained copy of
 * one checkpoint, as a task (task.h) on a libuv loop:
 *
 *   DIR/<device>.qcow2     each disk flattened at the checkpoint (qemu-img
 *                          convert of the frozen chain, all disks at once)
 *   DIR/memory.state       the memory state, copied (absent: disk-only);
 *                          of a ram-file checkpoint (ramfile.h) the
 *                          device state alone, and
 *   DIR/memory.ram         its frozen RAM file, copied whole (a reflink
 *                          on the same XFS or btrfs, else the data
 *                          without the holes, in the thread pool)
 *   DIR/incoming.in, .out  then also the monitor commands the README's
 *                          QEMU reads to load the device state, and
 *                          where that monitor writes (empty)
 *   DIR/checkpoint.json    the record, naming the files above (relative)
 *   DIR/qemu-command.json  the VM's QEMU command from vm.json, its disks
 *                          on the files above, its QMP monitors dropped
 *   DIR/README             how to start it: with plain QEMU -incoming, or
 *                          `qckpt restore --from DIR NEWNAME`
 *
 * Only frozen images are read (a checkpoint's images never change), so the
 * VM keeps running.  A failure removes every file the export wrote (and
 * DIR when the export made it).
 */
#ifndef EXPORT_H
#define EXPORT_H

#include <jansson.h>
#include <uv.h>

#include "ramfile.h"
#include "task.h"

/* The file names inside an export directory. */
#define EXPORT_RECORD "checkpoint.json"
#define EXPORT_COMMAND "qemu-command.json"
#define EXPORT_MEMORY "memory.state"
#define EXPORT_RAM "memory.ram"
/* The copy of EXPORT_RAM the README's plain QEMU runs on (it writes it). */
#define EXPORT_RAM_RUNNING "running.ram"
/* The monitor commands that load a ram-file checkpoint's device state:
 * x-ignore-shared first, which QEMU 7.2 and 10.0 take only over a monitor
 * (no -global migration.x-ignore-shared).  A pipe chardev's path: QEMU
 * reads PATH.in and writes PATH.out (regular files will do; 7.2's file
 * chardev has no input-path). */
#define EXPORT_INCOMING "incoming"
#define EXPORT_INCOMING_IN EXPORT_INCOMING ".in"
#define EXPORT_INCOMING_OUT EXPORT_INCOMING ".out"
#define EXPORT_README "README"
/* The QMP socket the README's command serves, relative to DIR. */
#define EXPORT_QMP "qmp.sock"

enum export_state {
	EXPORT_COPY,    /* qemu-img convert per disk, the memory files */
	EXPORT_WRITE,   /* checkpoint.json, qemu-command.json, README */
	EXPORT_DONE,
};

struct export_disk {
	char *device, *image, *format; /* the frozen image */
	char *file;                    /* its name in DIR */
	char *path;                    /* DIR/file */
	uv_process_t proc;
	uv_pipe_t out;                 /* qemu-img -p, on a terminal */
	int out_open;
	char buf[256];
	size_t len;
	double percent;
	long long size;                /* virtual size, bytes; -1 unknown */
	int written, exited;
};

struct export {
	void *data;
	struct task task;
	enum export_state state;
	uv_loop_t *loop;
	const char *vm;
	char *dir;             /* absolute */
	int made_dir;
	int compress;
	int progress;          /* someone watches: qemu-img -p, read */
	struct progress prog;  /* what the user sees (progress.h) */
	json_t *record;        /* the checkpoint (new reference) */
	json_t *vmstate;       /* the VM's vm.json */
	struct export_disk *disks;
	size_t ndisks;
	uv_fs_t copy_req;
	char *memory_path;     /* DIR/memory.state, or NULL */
	int memory_written, memory_done;
	/* A ram-file checkpoint's frozen RAM file: RamFile in the record. */
	const char *ram_frozen;
	long long ram_size;
	struct ramfile_copy ram;
	char *ram_path;        /* DIR/memory.ram, or NULL */
	int ram_started, ram_done;
	uint64_t start_ms;
	void (*on_done)(struct export *e);
};

/* The process's progress board (progress.h) must be open: the export's
 * row goes on it ("checking", "copying disks", "copying memory"). */
/*
 * Check what the export needs (RECORD's files, DIR absent or empty) and
 * start it on LOOP; on_done once with e->task.error_status.  RECORD and
 * VMSTATE are borrowed for the call (references taken).  Returns 0, or -1
 * with the reason in e->task.error and on_done not called.
 */
int export_start(struct export *e, uv_loop_t *loop, const char *vm,
		 json_t *record, json_t *vmstate, const char *dir, int compress,
		 void (*on_done)(struct export *e));
/* Ctrl-C: end the copies; the export fails and removes what it wrote. */
void export_interrupt(struct export *e);
void export_free(struct export *e);

#endif
