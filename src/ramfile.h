/*
 * ramfile.h: guest RAM in a file on a file system with reflinks
 * (`qckpt run --ram-file`).  QEMU maps the file shared
 * (memory-backend-file, share=on) and, with the x-ignore-shared migration
 * capability, leaves that RAM out of a migration stream: a checkpoint is
 * a reflink of the file (FICLONE, a metadata copy on XFS and btrfs) plus
 * the device state, and a restore a reflink back plus a QEMU that loads
 * only the device state.  Kept apart from run, the checkpoint job and the
 * restore, which each call a few of these.
 *
 * vm.json's "RamFile" says a VM runs so: {"Dir", "Path" (the file QEMU
 * runs on), "Bytes", "Backend" (the memory backend's id)}.  A checkpoint's
 * MemoryState then has "Kind": "ram-file" and "RamFile" (its frozen copy,
 * in the checkpoint's directory, "RamBytes" long).
 */
#ifndef RAMFILE_H
#define RAMFILE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "cmdline.h"

#define RAMFILE_KIND "ram-file"
/* The frozen copy's name in a checkpoint directory. */
#define RAMFILE_CHECKPOINT_NAME "ram"

/*
 * Whether FROM_DIR can make reflinks, into TO_DIR too (a checkpoint's copy
 * goes to the catalog: reflinks cannot cross file systems): a scratch file
 * in FROM_DIR cloned with FICLONE into TO_DIR, both removed.  0, or -1
 * with the reason in WHY.
 */
int ramfile_probe(const char *from_dir, const char *to_dir, char *why, size_t len);

/* Clone SRC into DST, a new file (0600): FICLONE, never a byte copy, and
 * not fsynced (ramfile_sync, once the guest runs again).  0 or -errno
 * (DST removed again on failure). */
int ramfile_clone(const char *src, const char *dst);
int ramfile_sync(const char *path);

/* Start and wait for the writeback of PATH's dirty pages (QEMU's shared
 * mapping): what FICLONE would otherwise write inside the guest's pause.
 * 0 or -errno. */
int ramfile_flush(const char *path);

/* ---- the command line (qckpt run) ---- */

/*
 * The guest RAM size the command asks for (-m, QEMU's default 128 MiB),
 * in bytes: 0, or -1 with the reason in WHY.
 */
int ramfile_ram_size(const struct cmdline *c, long long *bytes, char *why, size_t len);

/* Whether the command gives guest RAM a backend itself (-machine
 * memory-backend=, -numa memdev=, -mem-path): 1 with the option in WHY. */
int ramfile_has_backend(const struct cmdline *c, char *why, size_t len);

/* The backend id: the machine's own default RAM id ("pc.ram" for pc and
 * q35, as libvirt does), so that migration streams saved without a RAM
 * file load into a VM with one and the other way round. */
const char *ramfile_backend_id(const struct cmdline *c);

/* Append -object memory-backend-file,...,share=on and -machine
 * memory-backend=ID. */
void ramfile_add_backend(struct cmdline *c, const char *id, const char *path,
			 long long bytes);

/* A new running file's name in DIR for VM (new string). */
char *ramfile_new_path(const char *dir, const char *vm);

/* ---- on a libuv loop: FICLONE and the flush in the thread pool ---- */

enum ramfile_op { RAMFILE_FLUSH, RAMFILE_CLONE };

struct ramfile_work {
	uv_work_t req;
	enum ramfile_op op;
	char *src, *dst;
	int rc;               /* 0 or -errno */
	long long ms;         /* how long it took */
	void (*cb)(struct ramfile_work *w);
	void *data;
};

/* Queue OP (dst only for a clone); cb runs on the loop, then the caller
 * frees W with ramfile_work_free.  0, or -errno and cb never runs. */
int ramfile_queue(uv_loop_t *loop, struct ramfile_work *w, enum ramfile_op op,
		  const char *src, const char *dst,
		  void (*cb)(struct ramfile_work *w), void *data);
void ramfile_work_free(struct ramfile_work *w);

/* ---- a full copy, across file systems (export, restore --from) ---- */

/*
 * A RAM file copied whole: a reflink where SRC and DST share a file system
 * that makes them, else the data of SRC (SEEK_DATA) written to DST in
 * RAMFILE_COPY_CHUNK pieces, each a piece of work in libuv's thread pool,
 * leaving holes where SRC has them or reads zeros: a guest's RAM file is
 * mostly never-touched pages.  After each piece on_progress (may be NULL)
 * runs on the loop with done/size; at the end DST is fsynced and on_done
 * runs once with rc 0 or -errno (DST removed again).  SRC is only read.
 */
#define RAMFILE_COPY_CHUNK (64ll << 20)

struct ramfile_copy {
	uv_work_t req;
	uv_loop_t *loop;
	char *src, *dst;
	int in, out;
	long long size, done;  /* bytes of SRC gone through (on the loop) */
	long long next;        /* the worker's: done once its piece is */
	int reflinked;         /* DST is a reflink of SRC */
	int rc;                /* 0 or -errno */
	_Atomic int cancel;    /* ramfile_copy_cancel: the worker stops */
	void (*on_progress)(struct ramfile_copy *c);
	void (*on_done)(struct ramfile_copy *c);
	void *data;
};

/* Open SRC, create DST (0600, new) and queue the first piece.  0, or
 * -errno with nothing created and on_done never called. */
int ramfile_copy_start(uv_loop_t *loop, struct ramfile_copy *c, const char *src,
		       const char *dst, void (*on_progress)(struct ramfile_copy *c),
		       void (*on_done)(struct ramfile_copy *c), void *data);
/* Stop early: on_done comes with -EINTR. */
void ramfile_copy_cancel(struct ramfile_copy *c);
void ramfile_copy_free(struct ramfile_copy *c);

/* ---- a command's memory backend (restore's recipe) ---- */

/*
 * Point the command's shared file backends (-object
 * memory-backend-file,...,share=on) at PATH: the number changed.
 */
int ramfile_set_backend_path(struct cmdline *c, const char *path);

#endif
