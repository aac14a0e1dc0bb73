/*
 * vmlock.h: one command at a time changes a VM.  <root>/<vm>/.lock (root:
 * the VM's catalog) is held with flock(LOCK_EX | LOCK_NB) by every command
 * that changes the VM's records, vm.json or disks (checkpoint, restore,
 * remove, prune, rename, pin, unpin) for the whole of its work, so that
 * two of them never rewrite the same records or interleave block jobs on
 * the same chain.  A second one is refused at once, never made to wait: a
 * nightly checkpoint that queued behind an hour-long merge would surprise
 * its user more than a line saying why it did not run.
 *
 * The flock is the lock; what the file holds only names its holder for
 * that line: {"Command", "Pid", "StartTime", "JobId"} (JobId for an
 * --as-job process).  So any program may hold it, with flock(1) or
 * flock(2) and any content, to keep qckpt off a VM.  The file is never
 * unlinked (unlinking a flock file lets two holders lock two files), and
 * hidden: the directory lists the VM's checkpoints.
 * Read-only commands (list, vms, disks, job, export) never take it.
 */
#ifndef VMLOCK_H
#define VMLOCK_H

#include <stddef.h>

/* <root>/<vm>/.lock, new string. */
char *vmlock_path(const char *root, const char *vm);

/*
 * Take VM's lock for COMMAND ("remove").  A process holds a VM's lock once:
 * taking it again (checkpoint --keep's prune after its checkpoint) counts
 * up.  0, or -1 with the reason and what to do in ERR (a line's end, for
 * "VM: ..."): another holder, or the file cannot be made.
 * The descriptor is O_CLOEXEC, so QEMU and qemu-img never inherit it; a
 * fork without exec does, which is how an --as-job process keeps the lock
 * after the command that detached it exits.
 */
int vmlock_take(const char *root, const char *vm, const char *command,
		char *err, size_t errlen);

/* Count VM's lock down; the last release closes it.  Only closes: a
 * LOCK_UN would unlock the --as-job process's copy too. */
void vmlock_release(const char *root, const char *vm);

/* In an --as-job process (asjob.h): the locks it inherited name it and
 * job JOB_ID as their holder now, not the parent that exits. */
void vmlock_moved_to_job(const char *job_id);

#endif
