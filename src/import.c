/*
 * import.c: see import.h.  Copies, not overlays on DIR's images: a VM
 * whose chain starts in DIR would break when DIR is moved, unmounted or
 * deleted, and a read-only DIR (a backup medium) could not even hold the
 * lock QEMU takes on a backing file's directory entry.  The copy is a
 * reflink where the file system can make one (no time, no space).
 *
 * An export of a ram-file checkpoint (ramfile.h) also holds the guest's
 * RAM file: the new VM runs as `qckpt run --ram-file[=DIR]` would run it,
 * so the catalog (where its checkpoints' frozen copies go) and DIR (where
 * QEMU's running file goes) must make reflinks into each other; that is
 * probed before anything is copied.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "catalog.h"
#include "chain.h"
#include "cmd.h"
#include "cmdline.h"
#include "export.h"
#include "import.h"
#include "log.h"
#include "ramfile.h"
#include "registry.h"
#include "util.h"

struct import_file {
	char *from, *to;
	uv_fs_t req;
	int started;
};

struct import {
	const char *vm;
	char *dir;            /* the export, absolute */
	char *root, *vmdir, *ckdir;
	json_t *record, *command;
	struct import_file *files; /* disks, then the memory state */
	size_t nfiles, ndisks;
	/* A ram-file export: its RAM file, copied beside the others into
	 * the checkpoint's directory; where QEMU's running file will go. */
	char *ram_from, *ram_to, *ram_dir;
	long long ram_bytes;
	struct ramfile_copy ram;
	int ram_started, ram_copied, ram_asked;
	int failed;
	char error[1024];
	int registered;
	char *registry_path;
};

static json_t *load_json(const char *dir, const char *name, char *err, size_t len)
{
	char *path = xasprintf("%s/%s", dir, name);
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);

	if (!json_is_object(j)) {
		snprintf(err, len, "%s: %s", path, j ? "not a JSON object" : je.text);
		json_decref(j);
		j = NULL;
	}
	free(path);
	return j;
}

/* ---- the checks: nothing is written before they pass ------------------ */

/* A ram-file export's RAM file: there, as long as its record says. */
static int check_ram_file(struct import *im, json_t *mem)
{
	const char *f = json_string_value(json_object_get(mem, "RamFile"));
	json_int_t bytes = json_integer_value(json_object_get(mem, "RamBytes"));
	struct stat st;

	if (strcmp(json_string_value(json_object_get(mem, "Kind")) ?: "", RAMFILE_KIND) != 0) {
		if (im->ram_asked)
			return error_vm(im->vm, "--ram-file: the checkpoint in %s keeps no RAM file (its memory, if any, is a migration stream); drop the option",
					im->dir);
		return 0;
	}
	if (f == NULL || strchr(f, '/') != NULL || f[0] == '.')
		return error_vm(im->vm, "%s: checkpoint.json names the RAM file '%s', not a file of the export; export it again",
				im->dir, f ? f : "(none)");
	im->ram_from = xasprintf("%s/%s", im->dir, f);
	im->ram_to = xasprintf("%s/" RAMFILE_CHECKPOINT_NAME, im->ckdir);
	if (stat(im->ram_from, &st) < 0 || !S_ISREG(st.st_mode))
		return error_vm(im->vm, "%s is missing from the export; nothing imported", im->ram_from);
	if (bytes > 0 && st.st_size != bytes)
		return error_vm(im->vm, "%s has %lld bytes, checkpoint.json says %lld: it was cut short or changed; nothing imported",
				im->ram_from, (long long)st.st_size, (long long)bytes);
	im->ram_bytes = st.st_size;
	if (im->ram_dir == NULL)
		im->ram_dir = xstrdup(im->vmdir);
	else if (im->ram_dir[0] != '/')
		return error_vm(im->vm, "--ram-file needs an absolute directory, not '%s'", im->ram_dir);
	return 0;
}

/* Once the catalog directory exists: can the RAM file live there? */
static int probe_ram_dir(struct import *im)
{
	char why[1024];
	int rc;

	if (im->ram_from == NULL)
		return 0;
	if ((rc = mkdir_p(im->ram_dir, 0700)) < 0)
		return error_vm(im->vm, "cannot create %s: %s; nothing imported", im->ram_dir, strerror(-rc));
	if (ramfile_probe(im->ram_dir, im->vmdir, why, sizeof why) < 0)
		return error_vm(im->vm, "the export's guest RAM is a file, which cannot be kept in %s: %s; nothing imported: give --ram-file=DIR a directory on XFS (mkfs.xfs -m reflink=1) or btrfs, on the file system of the catalog %s (QCKPT_CATALOG_DIR picks another)",
				im->ram_dir, why, im->root);
	return 0;
}

static int check(struct import *im, const struct registry *reg)
{
	char err[1024];
	json_t *d, *mem;
	size_t i;
	struct stat st;

	if (registry_find(reg, im->vm) != NULL)
		return error_vm(im->vm, "already registered; 'restore --from' makes a new VM: choose a name 'qckpt vms' does not list");
	im->root = catalog_root(NULL);
	im->vmdir = catalog_vm_dir(im->root, im->vm);
	if (access(im->vmdir, F_OK) == 0)
		return error_vm(im->vm, "%s exists already (an earlier VM of that name left its catalog); choose another name or remove it", im->vmdir);
	if ((im->record = load_json(im->dir, EXPORT_RECORD, err, sizeof err)) == NULL)
		return error_vm(im->vm, "%s is not a qckpt export: %s", im->dir, err);
	if ((im->command = load_json(im->dir, EXPORT_COMMAND, err, sizeof err)) == NULL)
		return error_vm(im->vm, "the export has no QEMU command (%s); start it by hand as %s/README says", err, im->dir);
	if (json_string_value(json_object_get(im->record, "Id")) == NULL ||
	    !json_is_array(json_object_get(im->command, "Given")))
		return error_vm(im->vm, "%s: the export's checkpoint.json has no Id or its qemu-command.json no Given command; export it again", im->dir);
	im->ndisks = json_array_size(json_object_get(im->record, "Disks"));
	mem = json_object_get(im->record, "MemoryState");
	im->files = xcalloc(im->ndisks + 2, sizeof *im->files);
	json_array_foreach(json_object_get(im->record, "Disks"), i, d) {
		const char *f = json_string_value(json_object_get(d, "CheckpointImage"));

		if (f == NULL || strchr(f, '/') != NULL || f[0] == '.')
			return error_vm(im->vm, "%s: a disk of checkpoint.json names '%s', not a file of the export; export it again",
					im->dir, f ? f : "(none)");
		im->files[i].from = xasprintf("%s/%s", im->dir, f);
		im->files[i].to = xasprintf("%s/%s", im->vmdir, f);
	}
	im->nfiles = im->ndisks;
	im->ckdir = catalog_record_dir(im->root, im->vm, im->record);
	if (im->ckdir == NULL)
		return error_vm(im->vm, "%s: checkpoint.json has a bad Id; export it again", im->dir);
	if (mem != NULL) {
		im->files[im->nfiles].from = xasprintf("%s/" EXPORT_MEMORY, im->dir);
		im->files[im->nfiles++].to = xasprintf("%s/" EXPORT_MEMORY, im->ckdir);
	}
	for (i = 0; i < im->nfiles; i++)
		if (stat(im->files[i].from, &st) < 0 || !S_ISREG(st.st_mode))
			return error_vm(im->vm, "%s is missing from the export; nothing imported", im->files[i].from);
	return check_ram_file(im, mem);
}

/* ---- the copies, all at once -------------------------------------------- */

static void on_copied(uv_fs_t *req)
{
	struct import *im = req->data;

	if (req->result < 0 && !im->failed) {
		im->failed = 1;
		snprintf(im->error, sizeof im->error, "cannot copy %s: %s", req->path,
			 uv_strerror((int)req->result));
	}
	uv_fs_req_cleanup(req);
}

static void on_ram_copied(struct ramfile_copy *c)
{
	struct import *im = c->data;

	if (c->rc < 0 && !im->failed) {
		im->failed = 1;
		snprintf(im->error, sizeof im->error, "cannot copy the RAM file %s: %s", c->src,
			 strerror(-c->rc));
	}
	im->ram_copied = c->rc == 0;
	if (c->rc == 0)
		verbose_vm(im->vm, "RAM file %s %s", c->dst,
			   c->reflinked ? "reflinked" : "copied (the data, not the holes)");
}

static int copy_all(struct import *im)
{
	uv_loop_t loop;
	int rc;

	uv_loop_init(&loop);
	if (im->ram_from != NULL) {
		rc = ramfile_copy_start(&loop, &im->ram, im->ram_from, im->ram_to, NULL, on_ram_copied, im);
		if (rc < 0) {
			im->failed = 1;
			snprintf(im->error, sizeof im->error, "cannot copy %s: %s", im->ram_from, uv_strerror(rc));
		} else {
			im->ram_started = 1;
		}
	}
	for (size_t i = 0; i < im->nfiles && !im->failed; i++) {
		im->files[i].req.data = im;
		rc = uv_fs_copyfile(&loop, &im->files[i].req, im->files[i].from, im->files[i].to,
				    UV_FS_COPYFILE_EXCL | UV_FS_COPYFILE_FICLONE, on_copied);
		if (rc < 0) {
			im->failed = 1;
			snprintf(im->error, sizeof im->error, "cannot copy %s: %s", im->files[i].from, uv_strerror(rc));
		} else {
			im->files[i].started = 1;
		}
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	if (im->failed)
		return error_vm(im->vm, "%s; nothing imported", im->error);
	return 0;
}

/* ---- the records ------------------------------------------------------------ */

static int on_image(void *arg, const char *image, int writable, char **replacement,
		    char *err, size_t errlen)
{
	struct import *im = arg;

	for (size_t i = 0; i < im->ndisks; i++)
		if (strcmp(image, im->files[i].from) == 0) {
			*replacement = xstrdup(im->files[i].to);
			return 0;
		}
	/* export writes only commands whose writable disks it exported:
	 * anything else would be another VM's image, never to be shared. */
	if (writable) {
		snprintf(err, errlen, "it opens %s writable, which is not one of the export's disks", image);
		return -1;
	}
	return 0;
}

/* The exported command for this VM: disks on the copies, its own name,
 * `qckpt run`'s QMP socket (the old VM's are dropped). */
static json_t *new_command(struct import *im, char *err, size_t len)
{
	json_t *given = json_object_get(im->command, "Given"), *out;
	const char *wd = json_string_value(json_object_get(im->command, "WorkingDirectory"));
	struct stat st;
	size_t n = json_array_size(given);
	char **argv = xcalloc(n + 1, sizeof *argv);
	struct cmdline c;

	for (size_t i = 0; i < n; i++)
		argv[i] = (char *)(json_string_value(json_array_get(given, i)) ?: "");
	cmdline_init(&c, argv, n);
	free(argv);
	/* The export names its disks relative to itself. */
	if (cmdline_rewrite_disks(&c, im->dir, on_image, im, err, len) < 0) {
		cmdline_free(&c);
		return NULL;
	}
	cmdline_drop_qmp(&c);
	cmdline_set_guest_name(&c, im->vm);
	/* Other relative paths (a kernel) meant the old working directory. */
	if (wd == NULL || stat(wd, &st) < 0 || !S_ISDIR(st.st_mode))
		wd = "/";
	out = json_pack("{s:o, s:s}", "Given", cmdline_to_json(&c), "WorkingDirectory", wd);
	cmdline_free(&c);
	return out;
}

/* The id `qckpt run` gives the backend of this command's RAM. */
static const char *ram_backend_id(json_t *command)
{
	json_t *given = json_object_get(command, "Given");
	size_t n = json_array_size(given);
	char **argv = xcalloc(n + 1, sizeof *argv);
	struct cmdline c;
	const char *id;

	for (size_t i = 0; i < n; i++)
		argv[i] = (char *)(json_string_value(json_array_get(given, i)) ?: "");
	cmdline_init(&c, argv, n);
	free(argv);
	id = ramfile_backend_id(&c); /* a static string */
	cmdline_free(&c);
	return id;
}

static int write_records(struct import *im)
{
	json_t *rec = json_deep_copy(im->record), *d, *state, *disks = json_array(), *cl;
	char err[1024];
	size_t i;
	int rc;

	json_object_set_new(rec, "VMName", json_string(im->vm));
	json_object_set_new(rec, "ParentCheckpointId", json_null());
	json_object_set_new(rec, "ParentCheckpointName", json_null());
	json_object_set_new(rec, "ImportedFrom", json_string(im->dir));
	json_array_foreach(json_object_get(rec, "Disks"), i, d) {
		const char *dev = json_string_value(json_object_get(d, "Device")) ?: "";
		const char *copy = im->files[i].to;

		json_object_set_new(d, "CheckpointImage", json_string(copy));
		json_array_append_new(disks, json_pack("{s:s, s:s, s:s, s:s, s:s, s:[s]}", "Device", dev,
			"OriginalImage", copy, "OriginalFormat", "qcow2", "ActiveImage", copy,
			"Format", "qcow2", "Chain", copy));
	}
	if (json_object_get(rec, "MemoryState") != NULL)
		json_object_set_new(json_object_get(rec, "MemoryState"), "Path",
				    json_string(im->files[im->nfiles - 1].to));
	if (im->ram_to != NULL)
		json_object_set_new(json_object_get(rec, "MemoryState"), "RamFile", json_string(im->ram_to));
	json_object_set_new(rec, "Path", json_string(im->ckdir));
	if ((cl = new_command(im, err, sizeof err)) == NULL) {
		json_decref(rec);
		json_decref(disks);
		return error_vm(im->vm, "the export's command: %s; nothing imported", err);
	}
	state = json_pack("{s:s, s:o, s:o}", "Name", im->vm, "Disks", disks, "CommandLine", cl);
	if (im->ram_from != NULL)
		/* as `qckpt run --ram-file` records it; the restore adds the
		 * running file (Path), run the backend's id */
		json_object_set_new(state, "RamFile", json_pack("{s:s, s:I, s:s}", "Dir", im->ram_dir,
				    "Bytes", (json_int_t)im->ram_bytes, "Backend", ram_backend_id(cl)));
	rc = catalog_write_record(im->ckdir, rec);
	if (rc == 0)
		rc = catalog_write_vm(im->root, im->vm, state);
	json_decref(rec);
	json_decref(state);
	if (rc < 0)
		return error_vm(im->vm, "cannot write its catalog in %s: %s; nothing imported", im->vmdir, strerror(-rc));
	return 0;
}

static int register_vm(struct import *im)
{
	char *monitor = cmd_run_default_monitor(im->vm), err[512];
	int rc;

	im->registry_path = registry_path_for_writing(cmd_registry_path);
	rc = registry_add(im->registry_path, im->vm, monitor, NULL, 0, err, sizeof err);
	free(monitor);
	if (rc < 0)
		return error_vm(im->vm, "cannot register: %s; nothing imported", err);
	im->registered = 1;
	return 0;
}

/* Everything written, after a failure. */
static void undo(struct import *im)
{
	char err[512];

	for (size_t i = 0; i < im->nfiles; i++)
		if (im->files[i].started)
			unlink(im->files[i].to);
	if (im->ram_copied)
		unlink(im->ram_to); /* a copy that failed removed itself */
	if (im->ckdir != NULL) {
		char *rec = xasprintf("%s/checkpoint.json", im->ckdir);

		unlink(rec);
		free(rec);
		rmdir(im->ckdir);
	}
	if (im->vmdir != NULL && im->root != NULL) {
		catalog_remove_vm(im->root, im->vm);
		rmdir(im->vmdir);
	}
	if (im->registered && registry_remove(im->registry_path, im->vm, err, sizeof err) < 0)
		warn_vm(im->vm, "could not unregister it again: %s", err);
}

static void import_free(struct import *im)
{
	for (size_t i = 0; i < im->nfiles; i++) {
		free(im->files[i].from);
		free(im->files[i].to);
	}
	free(im->files);
	if (im->ram_started)
		ramfile_copy_free(&im->ram);
	free(im->ram_from);
	free(im->ram_to);
	free(im->ram_dir);
	json_decref(im->record);
	json_decref(im->command);
	free(im->dir);
	free(im->root);
	free(im->vmdir);
	free(im->ckdir);
	free(im->registry_path);
}

int import_export_dir(const char *dir, const char *vm, const char *ram_dir,
		      int ram_asked, char **id)
{
	struct import im = { .vm = vm, .ram_dir = ram_dir ? xstrdup(ram_dir) : NULL,
			     .ram_asked = ram_asked };
	struct registry reg;
	const char *explicit = cmd_registry_path ? cmd_registry_path : getenv("QCKPT_REGISTRY");
	char err[512];
	int rc = EXIT_SOME_FAILED, made = 0;

	if (!registry_valid_name(vm))
		return error("'%s' is not a VM name (letters, digits, '.', '_' and '-', not starting with '-' or '.')", vm), EXIT_USAGE;
	if ((im.dir = absolute_path(dir)) == NULL)
		return error_vm(vm, "%s: %s; give the directory 'qckpt export' wrote", dir, strerror(errno)), EXIT_USAGE;
	/* A registry file named but not there yet is empty, as for run. */
	if (explicit && explicit[0] && access(explicit, F_OK) < 0 && errno == ENOENT)
		memset(&reg, 0, sizeof reg);
	else if (registry_load(cmd_registry_path, &reg, err, sizeof err) < 0) {
		free(im.dir);
		return error("%s", err), EXIT_USAGE;
	}
	if (check(&im, &reg) < 0)
		goto out;
	if (mkdir_p(im.ckdir, 0700) < 0) {
		error_vm(vm, "cannot create %s: %s; nothing imported", im.vmdir, strerror(errno));
		goto out;
	}
	made = 1;
	if (probe_ram_dir(&im) < 0 || copy_all(&im) < 0 || write_records(&im) < 0 || register_vm(&im) < 0)
		goto out;
	*id = xstrdup(json_string_value(json_object_get(im.record, "Id")));
	verbose_vm(vm, "imported %s: checkpoint %.8s", im.dir, *id);
	rc = 0;
out:
	if (rc != 0 && made)
		undo(&im);
	registry_free(&reg);
	import_free(&im);
	return rc;
}
