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
 * "ActiveImage", "Format", "Chain": [oldest .. active]}], "CommandLine",
 * "CurrentCheckpointId"}.  A checkpoint writes the new overlays into it
 * before its disk transaction (an overlay backed by the image it replaces is
 * right to run on whether or not the switch happened) and puts it back only
 * when QEMU refused the transaction.
 */
json_t *catalog_load_vm(const char *root, const char *vm);
int catalog_write_vm(const char *root, const char *vm, json_t *state);
/* Whether <root>/<vm>/vm.json exists; remove it (0 or -errno). */
int catalog_vm_exists(const char *root, const char *vm);
int catalog_remove_vm(const char *root, const char *vm);

/*
 * Make DEVICE's entry say what QEMU really runs on: CHAIN (image files,
 * bottom .. top, from query-block), the bottom's format BASE_FORMAT.
 * Returns 1 when vm.json said otherwise and now follows QEMU (a VM
 * restored or relaunched by hand), 0 when it agreed or had no entry.
 */
int catalog_vm_follow_chain(json_t *state, const char *device, json_t *chain,
			    const char *base_format);

/* DEVICE's ActiveImage in STATE (borrowed), or NULL. */
const char *catalog_vm_active_image(json_t *state, const char *device);

/* A disk now writes to ACTIVE (on top of FROZEN, its image until now). */
void catalog_vm_switch_disk(json_t *state, const char *device,
			    const char *original, const char *frozen,
			    const char *active, const char *format);

/* Every complete record of a VM, oldest first (a JSON array, new ref). */
json_t *catalog_list(const char *root, const char *vm);

/* Whether one of RECORD's disks has its ActiveImage or CheckpointImage
 * in CHAIN (image files, as from query-block). */
int catalog_record_on_chain(json_t *record, json_t *chain);

/*
 * The checkpoint the VM's current state grew from: the record CURRENT_ID
 * (vm.json's CurrentCheckpointId, may be NULL) if it is on CHAIN, else the
 * newest record on CHAIN (a VM restored onto a new overlay of a record's
 * CheckpointImage grew from that record).  Borrowed from LIST, or NULL.
 */
json_t *catalog_find_parent(json_t *list, json_t *chain, const char *current_id);

/*
 * Where the VM is now: the checkpoint its current state grew from (the
 * parent of its next checkpoint; Hyper-V draws "Now" under it).  vm.json's
 * CurrentCheckpointId when it names a record of LIST, else the newest record
 * on the chain vm.json gives its first disk.  Borrowed from LIST, or NULL.
 */
json_t *catalog_current(const char *root, const char *vm, json_t *list);

/* The host whose files a record names (QemuHost: taken through a tcp: or
 * tls: monitor; restore, remove and export cannot reach them), or NULL. */
const char *catalog_record_qemu_host(json_t *record);

/*
 * The checkpoint WHAT names among LIST: its Id, a name unique in LIST, or a
 * unique Id prefix (4 characters or more).  Borrowed from LIST; NULL with
 * a message listing the candidates in err (for "VM: ..." by the caller).
 */
json_t *catalog_find_checkpoint(json_t *list, const char *what, char *err,
				size_t errlen);

/* A checkpoint name as `checkpoint` takes it: 1 to 200 characters, no
 * control characters (names may repeat, so nothing else is reserved). */
int catalog_valid_name(const char *name);

/* <root>/<vm>/<Id of RECORD>, where its checkpoint.json lives (new string,
 * NULL when the record has no Id). */
char *catalog_record_dir(const char *root, const char *vm, json_t *record);

#endif
