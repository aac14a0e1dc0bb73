/*
 * import.h: the first half of `qckpt restore --from DIR NAME`: an export
 * directory (export.h) becomes the new VM NAME, as if `qckpt run` had
 * launched it and taken the checkpoint: its disk images and memory state
 * copied into NAME's catalog (DIR is only read: it may be read-only, on
 * removable media, or removed afterwards), the checkpoint recorded there,
 * vm.json with the exported command (disks on the copies, -name NAME, no
 * QMP socket of the old VM), and NAME registered with `qckpt run`'s
 * default monitor.  The second half is an ordinary restore (restore.c).
 */
#ifndef IMPORT_H
#define IMPORT_H

/*
 * Import DIR as VM; the copies run concurrently on a libuv loop of their
 * own.  RAM_DIR: for an export of a ram-file checkpoint, where QEMU's
 * running RAM file goes (`restore --from --ram-file=DIR`; NULL: the VM's
 * catalog directory); RAM_ASKED: --ram-file was given (an export without
 * a RAM file is then refused).  0 with *id the checkpoint's Id (new string), or an
 * exit status after one error line, with everything it wrote removed again.
 */
int import_export_dir(const char *dir, const char *vm, const char *ram_dir,
		      int ram_asked, char **id);

#endif
