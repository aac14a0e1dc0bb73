/*
 * catalog.c: reading and writing checkpoint records (see catalog.h).  The
 * catalog is plain files so that scripts, backups and a human with `cat` can
 * read it; its only rule is that checkpoint.json appears last.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "util.h"

char *catalog_root(const struct registry_entry *entry)
{
	const char *xdg = getenv("XDG_DATA_HOME");
	const char *home = getenv("HOME");

	if (entry != NULL && entry->dir != NULL)
		return xstrdup(entry->dir);
	if (geteuid() == 0)
		return xstrdup("/var/lib/qckpt");
	if (xdg != NULL && xdg[0] == '/')
		return xasprintf("%s/qckpt", xdg);
	return xasprintf("%s/.local/share/qckpt", home ? home : "/tmp");
}

char *catalog_vm_dir(const char *root, const char *vm)
{
	return xasprintf("%s/%s", root, vm);
}

int catalog_create_checkpoint_dir(const char *root, const char *vm,
				  const char *id, char **dir)
{
	char *vmdir = catalog_vm_dir(root, vm);
	int rc = mkdir_p(vmdir, 0700);

	*dir = xasprintf("%s/%s", vmdir, id);
	if (rc == 0 && mkdir(*dir, 0700) < 0)
		rc = -errno;
	if (rc == 0)
		rc = fsync_dir(vmdir);
	free(vmdir);
	if (rc < 0) {
		free(*dir);
		*dir = NULL;
	}
	return rc;
}

int catalog_write_record(const char *dir, json_t *record)
{
	char *path = xasprintf("%s/checkpoint.json", dir);
	char *text = json_dumps(record, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	int rc;

	if (text == NULL) {
		free(path);
		return -ENOMEM;
	}
	size_t len = strlen(text);

	text = xrealloc(text, len + 2);
	text[len] = '\n';
	text[len + 1] = '\0';
	rc = write_file_atomic(path, text, len + 1, 0600);
	free(text);
	free(path);
	return rc;
}

static json_t *load_record(const char *vmdir, const char *id)
{
	char *path = xasprintf("%s/%s/checkpoint.json", vmdir, id);
	json_t *record = json_load_file(path, 0, NULL);

	free(path);
	if (record != NULL && !json_is_object(record)) {
		json_decref(record);
		return NULL;
	}
	return record;
}

static int by_creation_time(const void *a, const void *b)
{
	json_t *ra = *(json_t *const *)a, *rb = *(json_t *const *)b;
	const char *ta = json_string_value(json_object_get(ra, "CreationTime"));
	const char *tb = json_string_value(json_object_get(rb, "CreationTime"));
	json_int_t ma = json_integer_value(json_object_get(ra, "CreationEpochMs"));
	json_int_t mb = json_integer_value(json_object_get(rb, "CreationEpochMs"));

	if (ma != mb)
		return ma < mb ? -1 : 1;
	return strcmp(ta ? ta : "", tb ? tb : "");
}

json_t *catalog_list(const char *root, const char *vm)
{
	char *vmdir = catalog_vm_dir(root, vm);
	DIR *d = opendir(vmdir);
	json_t **records = NULL;
	size_t n = 0;
	struct dirent *de;
	json_t *list = json_array();

	while (d != NULL && (de = readdir(d)) != NULL) {
		json_t *record;

		if (de->d_name[0] == '.')
			continue;
		if ((record = load_record(vmdir, de->d_name)) == NULL)
			continue;
		records = xrealloc(records, (n + 1) * sizeof *records);
		records[n++] = record;
	}
	if (d != NULL)
		closedir(d);
	if (n > 1)
		qsort(records, n, sizeof *records, by_creation_time);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, records[i]);
	free(records);
	free(vmdir);
	return list;
}

json_t *catalog_find_parent(json_t *list, const char *image)
{
	size_t i, j;
	json_t *record, *disk;

	/* Newest first: after a restore two records may share an image. */
	for (i = json_array_size(list); i-- > 0;) {
		record = json_array_get(list, i);
		json_array_foreach(json_object_get(record, "Disks"), j, disk) {
			const char *active = json_string_value(
				json_object_get(disk, "ActiveImage"));

			if (active != NULL && strcmp(active, image) == 0)
				return record;
		}
	}
	return NULL;
}
