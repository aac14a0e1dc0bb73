/*
 * remove-plan.c: which layers a checkpoint's removal merges, and the
 * catalog and journal around the merges (see remove.h).  Kept apart from
 * remove.c so that the rules can be read (and reasoned about) without the
 * QMP traffic.
 *
 * The images of a disk form a tree by backing file.  A record C names F,
 * its CheckpointImage (frozen at C: what a restore of C puts a new overlay
 * on), and A, its ActiveImage (the overlay the guest wrote to after C).
 * F's backing is the parent checkpoint's frozen image P (or nothing: F is
 * the disk's original image).  F's children are A (or, once a later
 * checkpoint D froze it, F_D = A) and one overlay per restore of C (a
 * branch).  The rule: a view that anyone can still reach (a remaining
 * record's CheckpointImage, an image of the running chain, any image a
 * header names as backing) reads byte for byte the same at every instant,
 * and an image a remaining record names as CheckpointImage is never the
 * target of a merge that changes what it reads.  Once C is gone nobody
 * names F, so F is the one image that may change.  Per disk:
 *
 *  1. A is garbage when nothing names it (no record, not in vm.json or
 *     the running chain) and nothing is backed by it: the tip of a branch
 *     that a restore left, holding writes no checkpoint can reach (libvirt
 *     unlinks a non-current leaf's files alike).  Drop it.
 *  2. F still named by another record's CheckpointImage: nothing to merge.
 *  3. F has no children left: nobody reads it; drop it (never the original
 *     image, never an image of a chain vm.json or QEMU runs on).
 *  4. F has one child X: commit X into F.  Only F changes, and the only
 *     reader of F is X, whose view (X over F) stays the same while X's
 *     clusters are copied down.  Then every name of X (a later record's
 *     CheckpointImage, vm.json's ActiveImage) becomes F, X's other
 *     children are rebased (-u, nothing to copy: F now reads as X did)
 *     and X is dropped.  X the running active layer: an active commit and
 *     its pivot, the guest then writes to F.  X in the running chain: an
 *     intermediate block-commit.  X elsewhere, or the VM stopped:
 *     qemu-img commit.  Committing down into P instead would change P,
 *     the parent's frozen view (and every sibling branch of C): never.
 *  5. F has several children (restore branches): committing any of them
 *     into F would change what the others read, so F's data is streamed
 *     into each child instead (block-stream on the running chain, qemu-img
 *     rebase offline), their backing becomes P, and F is dropped.  A
 *     child that a record names is written here, but only with the data it
 *     already reads through F: its view never changes (copy-on-read), the
 *     one way to merge F without writing P (libvirt refuses this case).
 *     F the disk's original image (vm.json's OriginalImage: the bottom
 *     of every chain qckpt records) stays when several branches read it:
 *     streaming would copy the whole disk into every branch.
 *
 * Crash safety: the journal holds the victim's record and its merges
 * before anything changes; each merge keeps every view intact at every
 * instant (QEMU's jobs switch backing pointers only at their end, and the
 * catalog follows each one before the next starts), and doing a merge
 * twice is harmless, so a removal killed anywhere is finished by running
 * it again.  Files are unlinked last, only when no header names them.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "chain.h"
#include "remove.h"
#include "util.h"

char *remove_journal_path(const char *root, const char *vm)
{
	return xasprintf("%s/%s/remove-journal.json", root, vm);
}

const char *remove_image_format(const char *path)
{
	char *backing = NULL;
	int rc = qcow2_backing_file(path, &backing);

	free(backing);
	return rc == -EINVAL ? "raw" : "qcow2";
}

static void add_path(json_t *set, const char *path)
{
	if (path != NULL && path[0] == '/')
		json_object_set_new(set, path, json_true());
}

/* Every image the catalog of VM names: records (but SKIP_ID), vm.json. */
static void catalog_images(json_t *list, const char *skip_id, json_t *vmstate,
			   json_t *set)
{
	size_t i, j, k;
	json_t *r, *d, *c;

	json_array_foreach(list, i, r) {
		const char *id = json_string_value(json_object_get(r, "Id"));

		if (skip_id != NULL && id != NULL && strcmp(id, skip_id) == 0)
			continue;
		json_array_foreach(json_object_get(r, "Disks"), j, d) {
			add_path(set, json_string_value(json_object_get(d, "CheckpointImage")));
			add_path(set, json_string_value(json_object_get(d, "ActiveImage")));
		}
	}
	json_array_foreach(json_object_get(vmstate, "Disks"), j, d) {
		add_path(set, json_string_value(json_object_get(d, "OriginalImage")));
		add_path(set, json_string_value(json_object_get(d, "ActiveImage")));
		json_array_foreach(json_object_get(d, "Chain"), k, c)
			add_path(set, json_string_value(c));
	}
}

/* path -> absolute backing path, for every qcow2 file with a backing
 * file in the directories of the images of KNOWN. */
static json_t *scan_headers(json_t *known)
{
	json_t *dirs = json_object(), *index = json_object(), *v;
	const char *path;

	json_object_foreach(known, path, v) {
		char *dir = dir_name(path);

		json_object_set_new(dirs, dir, json_true());
		free(dir);
	}
	json_object_foreach(dirs, path, v) {
		DIR *dh = opendir(path);
		struct dirent *de;

		while (dh != NULL && (de = readdir(dh)) != NULL) {
			char *file, *backing = NULL;
			struct stat st;

			if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp.") != NULL)
				continue;
			file = xasprintf("%s/%s", path, de->d_name);
			if (stat(file, &st) == 0 && S_ISREG(st.st_mode) &&
			    qcow2_backing_file(file, &backing) == 0 && backing != NULL) {
				char *abs = chain_backing_path(file, backing);

				json_object_set_new(index, file, json_string(abs));
				free(abs);
			}
			free(backing);
			free(file);
		}
		if (dh != NULL)
			closedir(dh);
	}
	json_decref(dirs);
	return index;
}

static json_t *children_in(json_t *index, const char *image)
{
	json_t *kids = json_array(), *b;
	const char *file;

	json_object_foreach(index, file, b)
		if (chain_same_file(json_string_value(b), image))
			json_array_append_new(kids, json_string(file));
	return kids;
}

json_t *remove_children(const char *image, json_t *known)
{
	json_t *set = json_deep_copy(known), *index, *kids;

	add_path(set, image);
	index = scan_headers(set);
	kids = children_in(index, image);
	json_decref(index);
	json_decref(set);
	return kids;
}

static int in_set(json_t *set, const char *image)
{
	const char *p;
	json_t *v;

	if (image == NULL)
		return 0;
	json_object_foreach(set, p, v)
		if (chain_same_file(p, image))
			return 1;
	return 0;
}

/* Images some remaining record names as its CheckpointImage. */
static json_t *frozen_images(json_t *list, const char *skip_id)
{
	json_t *set = json_object(), *r, *d;
	size_t i, j;

	json_array_foreach(list, i, r) {
		const char *id = json_string_value(json_object_get(r, "Id"));

		if (id != NULL && skip_id != NULL && strcmp(id, skip_id) == 0)
			continue;
		json_array_foreach(json_object_get(r, "Disks"), j, d)
			add_path(set, json_string_value(json_object_get(d, "CheckpointImage")));
	}
	return set;
}

/* Images of the chains vm.json and QEMU run on, and the originals. */
static json_t *chain_images(json_t *vmstate, json_t *running)
{
	json_t *set = json_object(), *d, *c, *chain;
	size_t i, j;

	json_array_foreach(json_object_get(vmstate, "Disks"), i, d) {
		add_path(set, json_string_value(json_object_get(d, "OriginalImage")));
		add_path(set, json_string_value(json_object_get(d, "ActiveImage")));
		json_array_foreach(json_object_get(d, "Chain"), j, c)
			add_path(set, json_string_value(c));
	}
	json_array_foreach(running, i, chain)
		json_array_foreach(chain, j, c)
			add_path(set, json_string_value(c));
	return set;
}

static json_t *op(const char *kind, const char *device, const char *top,
		  const char *base)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:b}", "Op", kind, "Device", device,
			      "Top", top, "Done", 0);

	if (base != NULL) {
		json_object_set_new(o, "Base", json_string(base));
		json_object_set_new(o, "BaseFormat", json_string(remove_image_format(base)));
	}
	return o;
}

static void note(json_t *notes, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(json_t *notes, const char *fmt, ...)
{
	va_list ap;
	char buf[1024];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (notes != NULL)
		json_array_append_new(notes, json_string(buf));
}

static void plan_disk(json_t *ops, json_t *drops, json_t *d, json_t *index,
		      json_t *named, json_t *frozen, json_t *chains, json_t *originals,
		      json_t *notes)
{
	const char *dev = json_string_value(json_object_get(d, "Device")) ?: "?";
	const char *f = json_string_value(json_object_get(d, "CheckpointImage"));
	const char *a = json_string_value(json_object_get(d, "ActiveImage"));
	json_t *kids, *k;
	int a_dropped = 0;
	size_t i;
	struct stat st;

	if (f == NULL)
		return;
	/* 1. a branch tip nothing can reach */
	if (a != NULL && stat(a, &st) == 0 && !in_set(named, a) && !in_set(chains, a)) {
		json_t *ak = children_in(index, a);

		if (json_array_size(ak) == 0) {
			json_array_append_new(drops, op("drop", dev, a, NULL));
			a_dropped = 1;
		}
		json_decref(ak);
	}
	/* 2. another checkpoint froze the same image */
	if (in_set(frozen, f)) {
		note(notes, "disk %s: %s stays, another checkpoint names it", dev, f);
		return;
	}
	kids = children_in(index, f);
	for (i = json_array_size(kids); a_dropped && i-- > 0;)
		if (chain_same_file(json_string_value(json_array_get(kids, i)), a))
			json_array_remove(kids, i);
	if (json_array_size(kids) == 0) {
		/* 3. nobody reads it */
		if (!in_set(chains, f))
			json_array_append_new(drops, op("drop", dev, f, NULL));
	} else if (json_array_size(kids) == 1) {
		/* 4. one reader: its data comes down into F */
		const char *x = json_string_value(json_array_get(kids, 0));

		json_array_append_new(ops, op("commit", dev, x, f));
		json_array_append_new(drops, op("drop", dev, x, NULL));
	} else {
		/* 5. branches: F's data goes up into each of them */
		const char *b = json_string_value(json_object_get(index, f));

		if (b == NULL || in_set(originals, f)) {
			note(notes, "disk %s: %s stays: it is the disk's original image and %zu branches read it",
			     dev, f, json_array_size(kids));
		} else {
			json_array_foreach(kids, i, k) {
				json_t *o = op("stream", dev, json_string_value(k), b);

				/* the parent record's ActiveImage follows F's data */
				json_object_set_new(o, "Replaces", json_string(f));
				json_array_append_new(ops, o);
			}
			json_array_append_new(drops, op("drop", dev, f, NULL));
		}
	}
	json_decref(kids);
}

json_t *remove_plan(json_t *list, json_t *victim, json_t *vmstate,
		    json_t *running, json_t *notes)
{
	const char *id = json_string_value(json_object_get(victim, "Id"));
	json_t *known = json_object(), *named = json_object();
	json_t *frozen = frozen_images(list, id), *chains = chain_images(vmstate, running);
	json_t *ops = json_array(), *drops = json_array(), *originals = json_object(), *index, *d;
	size_t i;

	json_array_foreach(json_object_get(vmstate, "Disks"), i, d)
		add_path(originals, json_string_value(json_object_get(d, "OriginalImage")));
	catalog_images(list, id, vmstate, named);
	json_object_update(known, named);
	json_object_update(known, chains);
	json_array_foreach(json_object_get(victim, "Disks"), i, d) {
		add_path(known, json_string_value(json_object_get(d, "CheckpointImage")));
		add_path(known, json_string_value(json_object_get(d, "ActiveImage")));
	}
	index = scan_headers(known);
	json_array_foreach(json_object_get(victim, "Disks"), i, d)
		plan_disk(ops, drops, d, index, named, frozen, chains, originals, notes);
	json_array_extend(ops, drops);
	json_decref(drops);
	json_decref(index);
	json_decref(known);
	json_decref(named);
	json_decref(frozen);
	json_decref(chains);
	json_decref(originals);
	return ops;
}

/* ---- the catalog after a merge -------------------------------------------- */

static int replace_in_disks(json_t *disks, const char *top, const char *base,
			    const char *base_format, int records)
{
	size_t i;
	json_t *d;
	int changed = 0;

	json_array_foreach(disks, i, d) {
		const char *ck = json_string_value(json_object_get(d, "CheckpointImage"));
		const char *act = json_string_value(json_object_get(d, "ActiveImage"));

		if (records && ck != NULL && chain_same_file(ck, top)) {
			json_object_set_new(d, "CheckpointImage", json_string(base));
			json_object_set_new(d, "Format", json_string(base_format));
			changed = 1;
		}
		if (act != NULL && chain_same_file(act, top)) {
			json_object_set_new(d, "ActiveImage", json_string(base));
			if (!records)
				json_object_set_new(d, "Format", json_string(base_format));
			changed = 1;
		}
	}
	return changed;
}

/* vm.json's chains from the headers, from OriginalImage up. */
static void reread_chains(json_t *vmstate)
{
	size_t i, j;
	json_t *d;

	json_array_foreach(json_object_get(vmstate, "Disks"), i, d) {
		const char *act = json_string_value(json_object_get(d, "ActiveImage"));
		const char *orig = json_string_value(json_object_get(d, "OriginalImage"));
		char err[512] = "";
		json_t *chain = act ? chain_from_image(act, err, sizeof err) : NULL;

		if (chain == NULL)
			continue;
		for (j = 0; orig != NULL && j < json_array_size(chain); j++)
			if (chain_same_file(json_string_value(json_array_get(chain, j)), orig))
				break;
		if (orig != NULL && j < json_array_size(chain))
			while (j-- > 0)
				json_array_remove(chain, 0);
		json_object_set_new(d, "Chain", chain);
	}
}

int remove_fixup_catalog(const char *root, const char *vm, const char *top,
			 const char *base, const char *base_format,
			 char *err, size_t errlen)
{
	json_t *list = catalog_list(root, vm), *r, *state;
	size_t i;
	int rc = 0;

	json_array_foreach(list, i, r) {
		const char *path = json_string_value(json_object_get(r, "Path"));

		if (top == NULL || path == NULL ||
		    !replace_in_disks(json_object_get(r, "Disks"), top, base, base_format, 1))
			continue;
		if ((rc = catalog_write_record(path, r)) < 0) {
			snprintf(err, errlen, "cannot write %s/checkpoint.json: %s", path, strerror(-rc));
			goto out;
		}
	}
	state = catalog_load_vm(root, vm);
	if (top != NULL)
		replace_in_disks(json_object_get(state, "Disks"), top, base, base_format, 0);
	reread_chains(state);
	if (json_array_size(json_object_get(state, "Disks")) > 0 &&
	    (rc = catalog_write_vm(root, vm, state)) < 0)
		snprintf(err, errlen, "cannot write %s/%s/vm.json: %s", root, vm, strerror(-rc));
	json_decref(state);
out:
	json_decref(list);
	return rc;
}

int remove_forget_record(const char *root, const char *vm, json_t *victim,
			 char *err, size_t errlen)
{
	const char *id = json_string_value(json_object_get(victim, "Id"));
	json_t *parent_id = json_object_get(victim, "ParentCheckpointId");
	json_t *parent_name = json_object_get(victim, "ParentCheckpointName");
	json_t *list = catalog_list(root, vm), *r, *state;
	char *vmdir = catalog_vm_dir(root, vm), *path;
	size_t i;
	int rc = 0;

	path = xasprintf("%s/%s/checkpoint.json", vmdir, id);
	if (unlink(path) < 0 && errno != ENOENT) {
		rc = -errno;
		snprintf(err, errlen, "cannot unlink %s: %s", path, strerror(errno));
		goto out;
	}
	fsync_dir(vmdir);
	json_array_foreach(list, i, r) {
		const char *p = json_string_value(json_object_get(r, "ParentCheckpointId"));
		const char *dir = json_string_value(json_object_get(r, "Path"));

		if (p == NULL || strcmp(p, id) != 0 || dir == NULL)
			continue;
		json_object_set(r, "ParentCheckpointId", parent_id ? parent_id : json_null());
		json_object_set(r, "ParentCheckpointName", parent_name ? parent_name : json_null());
		if ((rc = catalog_write_record(dir, r)) < 0) {
			snprintf(err, errlen, "cannot write %s/checkpoint.json: %s", dir, strerror(-rc));
			goto out;
		}
	}
	state = catalog_load_vm(root, vm);
	if (strcmp(json_string_value(json_object_get(state, "CurrentCheckpointId")) ?: "", id) == 0) {
		if (json_is_string(parent_id)) {
			json_object_set(state, "CurrentCheckpointId", parent_id);
			json_object_set(state, "CurrentCheckpointName", parent_name);
		} else {
			json_object_del(state, "CurrentCheckpointId");
			json_object_del(state, "CurrentCheckpointName");
		}
		if ((rc = catalog_write_vm(root, vm, state)) < 0)
			snprintf(err, errlen, "cannot write %s/vm.json: %s", vmdir, strerror(-rc));
	}
	json_decref(state);
out:
	free(path);
	free(vmdir);
	json_decref(list);
	return rc;
}

int remove_drop_image(const char *root, const char *vm, const char *image)
{
	json_t *list = catalog_list(root, vm), *state = catalog_load_vm(root, vm);
	json_t *known = json_object(), *index, *kids;
	int rc = 0;
	struct stat st;

	if (lstat(image, &st) < 0) {
		rc = errno == ENOENT ? 1 : -errno;
		goto out;
	}
	catalog_images(list, NULL, state, known);
	if (in_set(known, image))
		goto out;
	add_path(known, image);
	index = scan_headers(known);
	kids = children_in(index, image);
	if (json_array_size(kids) == 0)
		rc = unlink(image) < 0 ? -errno : 1;
	json_decref(kids);
	json_decref(index);
out:
	json_decref(known);
	json_decref(list);
	json_decref(state);
	return rc;
}
