/*
 * catalog.c: reading and writing checkpoint records (see catalog.h).  The
 * catalog is plain files so that scripts, backups and a human with `cat` can
 * read it; its only rule is that checkpoint.json appears last.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "jsondir.h"
#include "util.h"

char *catalog_root(const struct registry_entry *entry)
{
	const char *env = getenv("QCKPT_CATALOG_DIR");
	const char *xdg = getenv("XDG_DATA_HOME");
	const char *home = getenv("HOME");

	if (entry != NULL && entry->dir != NULL)
		return xstrdup(entry->dir);
	/* Before the root default: root ignores $XDG_DATA_HOME (sudo and
	 * login sessions set it), so this is how a test suite run as root
	 * keeps out of /var/lib/qckpt. */
	if (env != NULL && env[0] == '/')
		return xstrdup(env);
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
	json_t *list = json_dir_load(vmdir, load_record, by_creation_time);

	free(vmdir);
	return list;
}

static int chain_has(json_t *chain, const char *image)
{
	size_t i;
	json_t *f;

	json_array_foreach(chain, i, f)
		if (image != NULL && json_string_value(f) != NULL &&
		    strcmp(json_string_value(f), image) == 0)
			return 1;
	return 0;
}

const char *catalog_record_qemu_host(json_t *record)
{
	return json_string_value(json_object_get(record, "QemuHost"));
}

int catalog_record_on_chain(json_t *record, json_t *chain)
{
	size_t j;
	json_t *disk;

	json_array_foreach(json_object_get(record, "Disks"), j, disk)
		if (chain_has(chain, json_string_value(json_object_get(disk, "ActiveImage"))) ||
		    chain_has(chain, json_string_value(json_object_get(disk, "CheckpointImage"))))
			return 1;
	return 0;
}

json_t *catalog_find_parent(json_t *list, json_t *chain, const char *current_id)
{
	size_t i;
	json_t *record;

	json_array_foreach(list, i, record) {
		const char *id = json_string_value(json_object_get(record, "Id"));

		if (current_id != NULL && id != NULL && strcmp(id, current_id) == 0 &&
		    catalog_record_on_chain(record, chain))
			return record;
	}
	/* Newest first: a restored VM runs on an overlay of an older
	 * record's image, below the images of the records made since. */
	for (i = json_array_size(list); i-- > 0;) {
		record = json_array_get(list, i);
		if (catalog_record_on_chain(record, chain))
			return record;
	}
	return NULL;
}

json_t *catalog_current(const char *root, const char *vm, json_t *list)
{
	json_t *state = catalog_load_vm(root, vm), *record;
	const char *id = json_string_value(json_object_get(state, "CurrentCheckpointId"));
	size_t i;

	json_array_foreach(list, i, record)
		if (id != NULL && strcmp(id, json_string_value(json_object_get(record, "Id")) ?: "") == 0)
			goto out;
	record = catalog_find_parent(list, json_object_get(json_array_get(
		json_object_get(state, "Disks"), 0), "Chain"), NULL);
out:
	json_decref(state);
	return record;
}

json_t *catalog_load_vm(const char *root, const char *vm)
{
	char *path = xasprintf("%s/%s/vm.json", root, vm);
	json_t *state = json_load_file(path, 0, NULL);

	free(path);
	if (!json_is_object(state)) {
		json_decref(state);
		state = json_pack("{s:s, s:[]}", "Name", vm, "Disks");
	}
	if (!json_is_array(json_object_get(state, "Disks")))
		json_object_set_new(state, "Disks", json_array());
	return state;
}

int catalog_vm_exists(const char *root, const char *vm)
{
	char *path = xasprintf("%s/%s/vm.json", root, vm);
	int rc = access(path, F_OK) == 0;

	free(path);
	return rc;
}

int catalog_remove_vm(const char *root, const char *vm)
{
	char *dir = catalog_vm_dir(root, vm);
	char *path = xasprintf("%s/vm.json", dir);
	int rc = unlink(path) < 0 && errno != ENOENT ? -errno : 0;

	if (rc == 0)
		rc = fsync_dir(dir);
	free(path);
	free(dir);
	return rc;
}

int catalog_write_vm(const char *root, const char *vm, json_t *state)
{
	char *dir = catalog_vm_dir(root, vm);
	char *path = xasprintf("%s/vm.json", dir);
	char *text;
	int rc = mkdir_p(dir, 0700);

	text = json_dumps(state, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (rc == 0 && text != NULL)
		rc = write_file_atomic(path, text, strlen(text), 0600);
	free(text);
	free(path);
	free(dir);
	return rc;
}

static json_t *find_disk(json_t *disks, const char *device, const char *frozen)
{
	size_t i;
	json_t *d;

	/* The same device, or the disk whose active image just froze. */
	json_array_foreach(disks, i, d) {
		const char *dev = json_string_value(json_object_get(d, "Device"));
		const char *act = json_string_value(json_object_get(d, "ActiveImage"));

		if ((dev && strcmp(dev, device) == 0) || (act && strcmp(act, frozen) == 0))
			return d;
	}
	return NULL;
}

const char *catalog_vm_active_image(json_t *state, const char *device)
{
	size_t i;
	json_t *d;

	json_array_foreach(json_object_get(state, "Disks"), i, d) {
		const char *dev = json_string_value(json_object_get(d, "Device"));

		if (dev != NULL && strcmp(dev, device) == 0)
			return json_string_value(json_object_get(d, "ActiveImage"));
	}
	return NULL;
}

int catalog_vm_follow_chain(json_t *state, const char *device, json_t *chain,
			    const char *base_format)
{
	size_t n = json_array_size(chain);
	const char *top = json_string_value(json_array_get(chain, n - 1));
	const char *bottom = json_string_value(json_array_get(chain, 0));
	json_t *d, *act;
	int existed;

	if (n == 0 || top == NULL || bottom == NULL)
		return 0;
	d = find_disk(json_object_get(state, "Disks"), device, top);
	act = json_object_get(d, "ActiveImage");
	if (json_is_string(act) && strcmp(json_string_value(act), top) == 0)
		return 0;
	existed = d != NULL;
	if (d == NULL) {
		d = json_object();
		json_array_append_new(json_object_get(state, "Disks"), d);
	}
	json_object_set_new(d, "Device", json_string(device));
	json_object_set_new(d, "OriginalImage", json_string(bottom));
	json_object_set_new(d, "OriginalFormat", json_string(base_format));
	json_object_set_new(d, "ActiveImage", json_string(top));
	json_object_set_new(d, "Chain", json_deep_copy(chain));
	return existed;
}

void catalog_vm_switch_disk(json_t *state, const char *device,
			    const char *original, const char *frozen,
			    const char *active, const char *format)
{
	json_t *disks = json_object_get(state, "Disks");
	json_t *d = find_disk(disks, device, frozen);
	json_t *chain;

	if (d == NULL) {
		d = json_pack("{s:s, s:s, s:s, s:[]}", "Device", device,
			      "OriginalImage", original, "ActiveImage", frozen,
			      "Chain");
		/* The format is known for the image that is freezing now. */
		if (strcmp(original, frozen) == 0)
			json_object_set_new(d, "OriginalFormat", json_string(format));
		else
			json_array_append_new(json_object_get(d, "Chain"), json_string(original));
		json_array_append_new(json_object_get(d, "Chain"), json_string(frozen));
		json_array_append_new(disks, d);
	}
	chain = json_object_get(d, "Chain");
	if (!json_is_array(chain)) {
		chain = json_pack("[s]", frozen);
		json_object_set_new(d, "Chain", chain);
	}
	json_object_set_new(d, "Device", json_string(device));
	json_object_set_new(d, "ActiveImage", json_string(active));
	json_object_set_new(d, "Format", json_string("qcow2"));
	json_array_append_new(chain, json_string(active));
}

/* "a1b2c3d4 (nightly, 2026-12-01T22:40:56...)" for each record, joined. */
static void describe(json_t **records, size_t n, char *out, size_t len)
{
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n && used < len; i++) {
		const char *id = json_string_value(json_object_get(records[i], "Id"));
		const char *name = json_string_value(json_object_get(records[i], "Name"));
		const char *when = json_string_value(json_object_get(records[i], "CreationTime"));
		int k = snprintf(out + used, len - used, "%s%.8s (%s, %.19s)", i ? ", " : "",
				 id ? id : "?", name ? name : "?", when ? when : "?");

		if (k < 0)
			break;
		used += (size_t)k;
	}
}

json_t *catalog_find_checkpoint(json_t *list, const char *what, char *err,
				size_t errlen)
{
	size_t n = json_array_size(list), i, nname = 0, nprefix = 0;
	json_t **byname = xcalloc(n + 1, sizeof *byname);
	json_t **byprefix = xcalloc(n + 1, sizeof *byprefix);
	json_t *record, *found = NULL;
	char which[1536];

	json_array_foreach(list, i, record) {
		const char *id = json_string_value(json_object_get(record, "Id"));
		const char *name = json_string_value(json_object_get(record, "Name"));

		if (id != NULL && strcmp(id, what) == 0) {
			found = record; /* an Id is unique */
			goto out;
		}
		if (name != NULL && strcmp(name, what) == 0)
			byname[nname++] = record;
		else if (id != NULL && strlen(what) >= 4 && strncmp(id, what, strlen(what)) == 0)
			byprefix[nprefix++] = record;
	}
	if (nname == 1 || (nname == 0 && nprefix == 1)) {
		found = nname ? byname[0] : byprefix[0];
		goto out;
	}
	if (nname > 1 || nprefix > 1) {
		describe(nname > 1 ? byname : byprefix, nname > 1 ? nname : nprefix,
			 which, sizeof which);
		snprintf(err, errlen, "'%s' matches %zu checkpoints: %s; give its Id (or the first 8 characters that 'qckpt list' shows)",
			 what, nname > 1 ? nname : nprefix, which);
	} else if (n == 0) {
		snprintf(err, errlen, "no checkpoint '%s': the VM has no checkpoints ('qckpt list' shows them)", what);
	} else {
		json_t **all = xcalloc(n, sizeof *all);

		for (i = 0; i < n; i++)
			all[i] = json_array_get(list, i);
		describe(all, n, which, sizeof which);
		free(all);
		snprintf(err, errlen, "no checkpoint '%s'; it has %zu: %s", what, n, which);
	}
out:
	free(byname);
	free(byprefix);
	return found;
}

int catalog_valid_name(const char *name)
{
	if (name == NULL || name[0] == '\0' || strlen(name) > 200)
		return 0;
	for (const char *p = name; *p; p++)
		if ((unsigned char)*p < 0x20)
			return 0;
	return 1;
}

char *catalog_record_dir(const char *root, const char *vm, json_t *record)
{
	const char *id = json_string_value(json_object_get(record, "Id"));

	/* The Id names the directory; never trust it to leave the VM's. */
	if (id == NULL || id[0] == '\0' || id[0] == '.' || strchr(id, '/') != NULL)
		return NULL;
	return xasprintf("%s/%s/%s", root, vm, id);
}
