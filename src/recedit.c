/*
 * recedit.c: see recedit.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "cmd.h"
#include "log.h"
#include "recedit.h"
#include "util.h"
#include "vmlock.h"

int rec_target_open(struct rec_target *t, const char *vm, const char *what,
		    const char *lock_for)
{
	char err[2048];
	char *dir;

	memset(t, 0, sizeof *t);
	t->vm = vm;
	/* Names become paths in the catalog: "../x" must not leave it. */
	if (!registry_valid_name(vm))
		return error("'%s' is not a VM name (letters, digits, '.', '_' and '-', not starting with '-' or '.'); see 'qckpt vms'",
			     vm), EXIT_USAGE;
	if (registry_load(cmd_registry_path, &t->reg, err, sizeof err) < 0)
		return error("%s", err), EXIT_USAGE;
	t->reg_loaded = 1;
	t->entry = registry_find(&t->reg, vm);
	t->root = catalog_root(t->entry);
	dir = catalog_vm_dir(t->root, vm);
	if (t->entry == NULL && access(dir, F_OK) != 0) {
		error_vm(vm, "not in the registry and no checkpoints in %s; check the name with 'qckpt list'", t->root);
		free(dir);
		return EXIT_SOME_FAILED;
	}
	free(dir);
	/* before reading: what it reads is what it rewrites */
	if (lock_for != NULL) {
		if (vmlock_take(t->root, vm, lock_for, err, sizeof err) < 0)
			return error_vm(vm, "%s", err), EXIT_SOME_FAILED;
		t->locked = 1;
	}
	t->list = catalog_list(t->root, vm);
	t->record = catalog_find_checkpoint(t->list, what, err, sizeof err);
	if (t->record == NULL)
		return error_vm(vm, "%s", err), EXIT_SOME_FAILED;
	return 0;
}

void rec_target_close(struct rec_target *t)
{
	if (t->locked)
		vmlock_release(t->root, t->vm);
	json_decref(t->list);
	free(t->root);
	if (t->reg_loaded)
		registry_free(&t->reg);
	memset(t, 0, sizeof *t);
}

int rec_target_write(struct rec_target *t, json_t *record)
{
	char *dir = catalog_record_dir(t->root, t->vm, record);
	int rc = dir ? catalog_write_record(dir, record) : -EINVAL;

	if (rc < 0)
		error_vm(t->vm, "cannot write the record %s/checkpoint.json: %s; it is unchanged",
			 dir ? dir : "(no Id)", strerror(-rc));
	free(dir);
	return rc < 0 ? -1 : 0;
}
