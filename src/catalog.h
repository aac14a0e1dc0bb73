/*
 * catalog.h: where checkpoints are recorded.  Layout:
 *     <dir>/<vm>/<checkpoint-id>/checkpoint.json   the checkpoint object
 *     <dir>/<vm>/<checkpoint-id>/memory.state      QEMU's migration stream
 * A directory without checkpoint.json is an unfinished checkpoint: the
 * record is written (atomically) only when everything it names is whole.
 */
#ifndef CATALOG_H
#define CATALOG_H

#include <jansson.h>

#include "registry.h"

/* The catalog root for a VM: the registry's dir=, else /var/lib/qckpt for
 * root, else $XDG_DATA_HOME/qckpt (~/.local/share/qckpt).  New string. */
char *catalog_root(const struct registry_entry *entry);

/* <root>/<vm>, new string. */
char *catalog_vm_dir(const char *root, const char *vm);

/* Create <root>/<vm>/<id>/ (0700); the path in *dir. 0 or -errno. */
int catalog_create_checkpoint_dir(const char *root, const char *vm,
				  const char *id, char **dir);

/* Write <dir>/checkpoint.json crash-safely. 0 or -errno. */
int catalog_write_record(const char *dir, json_t *record);

/*
 * <root>/<vm>/vm.json: what the VM looks like now, for `qckpt run` and
 * `qckpt disks`: {"Name", "Disks": [{"Device", "OriginalImage",
 * "ActiveImage", "Format", "Chain": [oldest .. active]}], "CommandLine"}.
 * The checkpoint updates it as soon as its transaction switched the disks,
 * whether or not its record can be written.
 */
json_t *catalog_load_vm(const char *root, const char *vm);
int catalog_write_vm(const char *root, const char *vm, json_t *state);

/* A disk now writes to ACTIVE (on top of FROZEN, its image until now). */
void catalog_vm_switch_disk(json_t *state, const char *device,
			    const char *original, const char *frozen,
			    const char *active, const char *format);

/* Every complete record of a VM, oldest first (a JSON array, new ref). */
json_t *catalog_list(const char *root, const char *vm);

/* The record whose disks' ActiveImage include IMAGE: the checkpoint the
 * VM's current state grew from.  Borrowed from LIST, or NULL. */
json_t *catalog_find_parent(json_t *list, const char *image);

/*
 * The checkpoint WHAT names among LIST: its Id, a name unique in LIST, or a
 * unique Id prefix (4 characters or more).  Borrowed from LIST; NULL with
 * a message listing the candidates in err (for "VM: ..." by the caller).
 */
json_t *catalog_find_checkpoint(json_t *list, const char *what, char *err,
				size_t errlen);

/* The parent for a checkpoint of a disk now on IMAGE: catalog_find_parent,
 * else vm.json's CurrentCheckpointId when IMAGE is the ActiveImage vm.json
 * names (a restore's fresh overlay).  Borrowed from LIST, or NULL. */
json_t *catalog_find_parent_of(const char *root, const char *vm, json_t *list,
			       const char *image);

#endif
