/*
 * blockdev.c: see blockdev.h.  Overlays are made the way libvirt makes them:
 * created and attached while the guest runs (blockdev-add, blockdev-create),
 * so that the guest's pause only has to switch them in (blockdev-snapshot in
 * one transaction: all disks or none).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockdev.h"
#include "util.h"

char *blockdev_device_from_qdev(const char *qdev)
{
	const char *p = "/machine/peripheral/";

	if (qdev == NULL || strncmp(qdev, p, strlen(p)) != 0)
		return NULL;
	qdev += strlen(p);
	return xstrndup(qdev, strcspn(qdev, "/"));
}

/* Follow "backing-image" to the bottom of the chain. */
static json_t *chain_bottom(json_t *image)
{
	json_t *next;

	while ((next = json_object_get(image, "backing-image")) != NULL)
		image = next;
	return image;
}

/* The image files of the chain, bottom first: what the disk really is,
 * whatever the catalog believes (a VM restored by hand runs on a chain of
 * the user's making). */
static json_t *chain_files(json_t *image)
{
	json_t *files = json_array();

	for (; image != NULL; image = json_object_get(image, "backing-image")) {
		const char *f = json_string_value(json_object_get(image, "filename"));

		if (f != NULL)
			json_array_insert_new(files, 0, json_string(f));
	}
	return files;
}

static int disk_from_block(json_t *block, struct disk *d, char *err,
			   size_t errlen)
{
	json_t *ins = json_object_get(block, "inserted");
	const char *device = json_string_value(json_object_get(block, "device"));
	const char *file = json_string_value(json_object_get(ins, "file"));
	const char *node = json_string_value(json_object_get(ins, "node-name"));
	const char *drv = json_string_value(json_object_get(ins, "drv"));
	json_t *image = json_object_get(ins, "image");
	json_t *bottom = chain_bottom(image);
	const char *base = json_string_value(json_object_get(bottom, "filename"));
	const char *base_format = json_string_value(json_object_get(bottom, "format"));

	memset(d, 0, sizeof *d);
	if (device != NULL && device[0] != '\0')
		d->device = xstrdup(device);
	else if ((d->device = blockdev_device_from_qdev(json_string_value(
			  json_object_get(block, "qdev")))) == NULL)
		d->device = xstrdup(node ? node : "?");
	if (file == NULL || node == NULL || drv == NULL) {
		snprintf(err, errlen, "disk %s: QEMU did not report its node and image", d->device);
		return -1;
	}
	if (file[0] != '/') {
		snprintf(err, errlen,
			 "disk %s: image '%.200s' is not an absolute path; QEMU reopens images by name, so start it with absolute image paths (and plain file nodes)",
			 d->device, file);
		return -1;
	}
	d->node = xstrdup(node);
	d->image = xstrdup(file);
	d->format = xstrdup(drv);
	d->base = xstrdup(base && base[0] == '/' ? base : file);
	d->base_format = xstrdup(base_format ? base_format : drv);
	d->chain = chain_files(image);
	/* The top as QEMU opened it ("file"), whatever "filename" says. */
	if (json_array_size(d->chain) == 0)
		json_array_append_new(d->chain, json_string(file));
	else
		json_array_set_new(d->chain, json_array_size(d->chain) - 1, json_string(file));
	d->size = json_integer_value(json_object_get(image, "virtual-size"));
	return 0;
}

int blockdev_disks_from_query(json_t *reply, struct disk **disks,
			      char *err, size_t errlen)
{
	size_t i, n = 0;
	json_t *block;
	struct disk *out = NULL;

	json_array_foreach(reply, i, block) {
		json_t *ins = json_object_get(block, "inserted");

		if (ins == NULL || json_is_true(json_object_get(ins, "ro")))
			continue;
		out = xrealloc(out, (n + 1) * sizeof *out);
		if (disk_from_block(block, &out[n], err, errlen) < 0) {
			blockdev_disks_free(out, n + 1);
			return -1;
		}
		n++;
	}
	*disks = out;
	return (int)n;
}

void blockdev_disks_free(struct disk *disks, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(disks[i].device);
		free(disks[i].node);
		free(disks[i].image);
		free(disks[i].format);
		free(disks[i].base);
		free(disks[i].base_format);
		json_decref(disks[i].chain);
		free(disks[i].overlay);
	}
	free(disks);
}

/* A checkpoint name made safe for a file name. */
static char *file_safe(const char *name)
{
	char *s = xstrndup(name, 48);

	for (char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
			*p = '_';
	return s;
}

/* Whether an earlier disk already took PATH. */
static int overlay_taken(const struct disk *disks, size_t i, const char *path)
{
	while (i-- > 0)
		if (strcmp(disks[i].overlay, path) == 0)
			return 1;
	return 0;
}

void blockdev_plan_overlays(struct disk *disks, size_t n,
			    const char *overlay_dir, const char *ckpt_name,
			    const char *ckpt_id)
{
	char *safe = file_safe(ckpt_name);

	for (size_t i = 0; i < n; i++) {
		struct disk *d = &disks[i];
		char *dir = overlay_dir ? xstrdup(overlay_dir) : dir_name(d->image);
		char *stem = base_stem(d->base);

		d->overlay = xasprintf("%s/%s.%s.%.8s.qcow2", dir, stem, safe,
				       ckpt_id);
		/* Two images with one stem (os/disk.qcow2, data/disk.qcow2)
		 * in one overlay directory: the disk's device tells them apart. */
		if (overlay_taken(disks, i, d->overlay)) {
			char *dev = file_safe(d->device);

			free(d->overlay);
			d->overlay = xasprintf("%s/%s.%s.%s.%.8s.qcow2", dir, stem, dev,
					       safe, ckpt_id);
			free(dev);
		}
		/* Node names: at most 31 characters, starting with a letter. */
		snprintf(d->overlay_node, sizeof d->overlay_node, "qckpt-%.8s-%u",
			 ckpt_id, (unsigned)(i % 1000));
		snprintf(d->file_node, sizeof d->file_node, "qckpt-%.8s-%uf",
			 ckpt_id, (unsigned)(i % 1000));
		snprintf(d->create_job, sizeof d->create_job, "qckpt-%.8s-%uj",
			 ckpt_id, (unsigned)(i % 1000));
		snprintf(d->file_job, sizeof d->file_job, "qckpt-%.8s-%uc",
			 ckpt_id, (unsigned)(i % 1000));
		free(dir);
		free(stem);
	}
	free(safe);
}

int blockdev_create_overlay_file(struct disk *d)
{
	struct stat st;
	int fd, rc = 0;

	if (stat(d->image, &st) < 0)
		return -errno;
	fd = open(d->overlay, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		  st.st_mode & 0666);
	if (fd < 0)
		return -errno;
	d->file_created = 1;
	/* Best effort: only root may give the file away. */
	if (geteuid() == 0 && fchown(fd, st.st_uid, st.st_gid) < 0)
		rc = -errno;
	if (fchmod(fd, st.st_mode & 0666) < 0 && rc == 0)
		rc = -errno;
	close(fd);
	return rc;
}

json_t *blockdev_add_file_args(const struct disk *d)
{
	return json_pack("{s:s, s:s, s:s}", "driver", "file", "filename",
			 d->overlay, "node-name", d->file_node);
}

json_t *blockdev_create_file_args(const struct disk *d)
{
	return json_pack("{s:s, s:{s:s, s:s, s:i}}", "job-id", d->file_job,
			 "options", "driver", "file", "filename", d->overlay,
			 "size", 0);
}

json_t *blockdev_create_args(const struct disk *d)
{
	return json_pack("{s:s, s:{s:s, s:s, s:I, s:s, s:s}}", "job-id",
			 d->create_job, "options", "driver", "qcow2", "file",
			 d->file_node, "size", (json_int_t)d->size,
			 "backing-file", d->image, "backing-fmt", d->format);
}

json_t *blockdev_add_overlay_args(const struct disk *d)
{
	return json_pack("{s:s, s:s, s:s, s:n}", "driver", "qcow2",
			 "node-name", d->overlay_node, "file", d->file_node,
			 "backing");
}

json_t *blockdev_transaction_args(const struct disk *disks, size_t n)
{
	json_t *actions = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(actions, json_pack(
			"{s:s, s:{s:s, s:s}}", "type", "blockdev-snapshot",
			"data", "node", disks[i].node, "overlay",
			disks[i].overlay_node));
	return json_pack("{s:o}", "actions", actions);
}
