/*
 * chain.c: see chain.h.  Only the qcow2 header's first fields are read;
 * QEMU (and qemu-img info) stay the authority on everything else.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chain.h"
#include "qcow2.h"
#include "cmdline.h"
#include "util.h"

int chain_same_file(const char *a, const char *b)
{
	struct stat sa, sb;

	if (strcmp(a, b) == 0)
		return 1;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

int chain_names(json_t *disk, const char *image)
{
	const char *orig = json_string_value(json_object_get(disk, "OriginalImage"));
	size_t i;
	json_t *c;

	if (orig && chain_same_file(orig, image))
		return 1;
	json_array_foreach(json_object_get(disk, "Chain"), i, c)
		if (json_is_string(c) && chain_same_file(json_string_value(c), image))
			return 1;
	return 0;
}

/* The overlay's backing name as a path: relative to its directory. */
char *chain_backing_path(const char *overlay, const char *backing)
{
	char *dir, *abs;

	if (backing[0] == '/')
		return xstrdup(backing);
	dir = dir_name(overlay);
	abs = cmdline_absolute(dir, backing);
	free(dir);
	return abs;
}

int chain_check(json_t *disk, char *err, size_t errlen)
{
	const char *orig = json_string_value(json_object_get(disk, "OriginalImage"));
	const char *active = json_string_value(json_object_get(disk, "ActiveImage"));
	json_t *chain = json_object_get(disk, "Chain");
	size_t n = json_array_size(chain);
	struct stat st;

	if (orig == NULL || active == NULL || n == 0) {
		snprintf(err, errlen, "its vm.json entry has no OriginalImage, ActiveImage or Chain");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (!json_is_string(json_array_get(chain, i))) {
			snprintf(err, errlen, "its vm.json Chain holds a non-string");
			return -1;
		}
	}
	if (strcmp(json_string_value(json_array_get(chain, 0)), orig) != 0) {
		snprintf(err, errlen, "its chain starts at %s, not at its original image %s",
			 json_string_value(json_array_get(chain, 0)), orig);
		return -1;
	}
	if (strcmp(json_string_value(json_array_get(chain, n - 1)), active) != 0) {
		snprintf(err, errlen, "its chain ends at %s, not at its active image %s",
			 json_string_value(json_array_get(chain, n - 1)), active);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const char *img = json_string_value(json_array_get(chain, i));
		char *backing = NULL, *path;
		int rc;

		if (stat(img, &st) < 0) {
			snprintf(err, errlen, "image %s of its chain is %s", img,
				 errno == ENOENT ? "missing" : strerror(errno));
			return -1;
		}
		if (i == 0)
			continue;
		rc = qcow2_backing_file(img, &backing);
		if (rc < 0) {
			snprintf(err, errlen, "overlay %s of its chain is %s", img,
				 rc == -EINVAL ? "not a qcow2 image" : strerror(-rc));
			return -1;
		}
		if (backing == NULL) {
			snprintf(err, errlen, "overlay %s has no backing file, but its chain puts %s below it",
				 img, json_string_value(json_array_get(chain, i - 1)));
			return -1;
		}
		path = chain_backing_path(img, backing);
		if (!chain_same_file(path, json_string_value(json_array_get(chain, i - 1)))) {
			snprintf(err, errlen, "overlay %s names backing file %s, but its chain puts %s below it",
				 img, backing, json_string_value(json_array_get(chain, i - 1)));
			free(path);
			free(backing);
			return -1;
		}
		free(path);
		free(backing);
	}
	return 0;
}

json_t *chain_from_image(const char *image, char *err, size_t errlen)
{
	json_t *chain = json_array();
	char *cur = xstrdup(image);

	/* QEMU refuses chains deeper than this too (BDRV_MAX_CHAIN... is
	 * larger, but a checkpoint tree this deep is a mistake). */
	for (int depth = 0; depth < 1000; depth++) {
		char *backing = NULL;
		int rc;

		json_array_insert_new(chain, 0, json_string(cur));
		rc = qcow2_backing_file(cur, &backing);
		if (rc == -EINVAL || (rc == 0 && backing == NULL)) {
			free(cur);
			return chain; /* raw, or a qcow2 without backing: the bottom */
		}
		if (rc < 0) {
			snprintf(err, errlen, "cannot read %s: %s", cur, strerror(-rc));
			break;
		}
		char *next = chain_backing_path(cur, backing);

		free(backing);
		free(cur);
		cur = next;
	}
	if (err[0] == '\0')
		snprintf(err, errlen, "the backing chain of %s is too deep", image);
	free(cur);
	json_decref(chain);
	return NULL;
}
