/*
 * blockdev.h: a VM's disks as a checkpoint sees them, read from query-block,
 * and the QMP arguments that prepare and switch in their new overlays.
 * Kept apart from the job so the rules (which disks count, which node is the
 * active top, how overlays are named) live in one place.
 */
#ifndef BLOCKDEV_H
#define BLOCKDEV_H

#include <jansson.h>
#include <stdint.h>

struct disk {
	char *device;    /* "drive0" (-drive) or the device id (-blockdev) */
	char *node;      /* the active top node, the snapshot target */
	char *image;     /* its image file: frozen by the checkpoint */
	char *format;    /* its format driver, "qcow2" or "raw" */
	char *base;      /* the bottom image of the chain (for naming) */
	char *base_format; /* its format, as QEMU reports it */
	json_t *chain;   /* the image files QEMU runs on, bottom .. top */
	int64_t size;    /* virtual size in bytes */

	/* the new overlay */
	char *overlay;         /* its path */
	char overlay_node[32]; /* qcow2 node */
	char file_node[32];    /* its protocol node */
	char create_job[32];   /* blockdev-create job id */
	char file_job[32];     /* network monitor: the protocol file's job */
	int file_job_sent, file_job_concluded, file_job_dismissed, file_job_unknown;
	int file_created, file_added, job_concluded, job_dismissed;
	int overlay_added;
	int switched; /* the transaction made it the active image */
};

/* A disk's device id from query-block's qdev path, as qckpt names disks:
 * "/machine/peripheral/vd1/virtio-backend" -> "vd1" (malloc'd); NULL for an
 * anonymous device or no path. */
char *blockdev_device_from_qdev(const char *qdev);

/*
 * The checkpointable disks from a query-block reply: every drive with a
 * medium that is writable.  Empty drives and read-only media are skipped.
 * Returns the count (>= 0) and the array in *disks, or -1 with a message
 * (an image QEMU names by a relative path or a json: filename).
 */
int blockdev_disks_from_query(json_t *reply, struct disk **disks,
			      char *err, size_t errlen);

void blockdev_disks_free(struct disk *disks, size_t n);

/*
 * Choose each overlay's path and node names: <overlay-dir or image dir>/
 * <base stem>.<checkpoint name>.<id8>.qcow2.  Node names are derived from
 * the checkpoint id so that concurrent checkpoints never collide.
 */
void blockdev_plan_overlays(struct disk *disks, size_t n,
			    const char *overlay_dir, const char *ckpt_name,
			    const char *ckpt_id);

/* Create the empty overlay file with the owner and mode of the image it
 * will sit on (QEMU may run as another user).  0 or -errno. */
int blockdev_create_overlay_file(struct disk *d);

/* Arguments of blockdev-add for the protocol node, of blockdev-create for
 * the qcow2 format, of blockdev-add for the overlay (backing attached later
 * by blockdev-snapshot), and the transaction's actions. */
json_t *blockdev_add_file_args(const struct disk *d);
/* blockdev-create of the empty protocol file itself, by QEMU on its own
 * host (a network monitor: qckpt cannot reach that file system). */
json_t *blockdev_create_file_args(const struct disk *d);
json_t *blockdev_create_args(const struct disk *d);
json_t *blockdev_add_overlay_args(const struct disk *d);
json_t *blockdev_transaction_args(const struct disk *disks, size_t n);

#endif
