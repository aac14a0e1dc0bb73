/*
 * recedit.h: the checkpoint a command names ("NAME CHECKPOINT": the VM,
 * then the checkpoint's name, Id or unique Id prefix), found in the VM's
 * catalog, and a record written back crash-safely.  Shared by the
 * commands that act on one recorded checkpoint (rename, pin, unpin,
 * export), so that each finds it, locks the VM, and fails, the same way.
 */
#ifndef RECEDIT_H
#define RECEDIT_H

#include <jansson.h>

#include "registry.h"

struct rec_target {
	const char *vm;
	struct registry reg;
	int reg_loaded;
	const struct registry_entry *entry; /* NULL: not registered */
	char *root;        /* the VM's catalog root */
	json_t *list;      /* every record of the VM, oldest first */
	json_t *record;    /* the one named (borrowed from list) */
	int locked;        /* holds the VM's lock */
};

/*
 * Load the registry, the VM's catalog and the record WHAT names, first
 * taking the VM's lock (vmlock.h) for command LOCK_FOR when the command
 * changes the catalog (NULL: it only reads).  Returns 0, or an exit status
 * (EXIT_USAGE, EXIT_SOME_FAILED) after one error line; rec_target_close in
 * both cases (it releases the lock).
 */
int rec_target_open(struct rec_target *t, const char *vm, const char *what,
		    const char *lock_for);
void rec_target_close(struct rec_target *t);

/* Write RECORD (one of t->list) back to its checkpoint.json: 0, or -1
 * after an error line naming the VM. */
int rec_target_write(struct rec_target *t, json_t *record);

#endif
