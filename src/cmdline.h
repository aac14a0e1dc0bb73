/*
 * cmdline.h: reading and changing a QEMU command line the way QEMU itself
 * reads it, for `qckpt run`.  QEMU's option values come in three syntaxes:
 * QemuOpts ("k=v,k2=v2", an implied first key, bare flags), keyval (what
 * -blockdev parses: the same but dotted keys and no flags) and JSON (a
 * -blockdev value starting with '{').  In the first two a comma inside a
 * value is written twice.  Nothing here touches the catalog or the
 * registry: the caller decides which image replaces which.
 */
#ifndef CMDLINE_H
#define CMDLINE_H

#include <stddef.h>
#include <jansson.h>

/* ---- option values ("k=v,..." with ",," for a comma) ---- */

struct qopt {
	char *key;   /* never NULL: the implied key when implied */
	char *value; /* NULL for a bare flag ("server", "nowait") */
	int implied; /* written without "key=" */
};

struct qopts {
	struct qopt *v;
	size_t n;
};

/*
 * Parse TEXT.  IMPLIED names the key of a first piece without '=' (e.g.
 * "guest" for -name, "backend" for -chardev, "driver" for -blockdev), or
 * NULL.  Never fails: a piece without '=' is a flag.
 */
void qopts_parse(const char *text, const char *implied, struct qopts *o);
/* The value of the last KEY (QEMU: the last one wins), or NULL. */
const char *qopts_get(const struct qopts *o, const char *key);
int qopts_has(const struct qopts *o, const char *key);
/* Set KEY (the last occurrence) or append "KEY=VALUE". */
void qopts_set(struct qopts *o, const char *key, const char *value);
/* Back to text, commas in values doubled (new string). */
char *qopts_format(const struct qopts *o);
void qopts_free(struct qopts *o);
/* QEMU's booleans: on/yes/true/y (and a bare flag). */
int qopts_true(const char *value);

/* VALUE with every comma doubled (new string). */
char *qopts_escape(const char *value);

/* ---- the command line ---- */

struct cmdline {
	char **argv; /* NULL-terminated, owned */
	size_t argc;
};

void cmdline_init(struct cmdline *c, char *const *argv, size_t argc);
void cmdline_free(struct cmdline *c);
/* Append arguments (copied), NULL-terminated list. */
void cmdline_append(struct cmdline *c, const char *first, ...)
	__attribute__((sentinel));
/* As a JSON array of strings (new reference). */
json_t *cmdline_to_json(const struct cmdline *c);

/*
 * The option at argv[i] ("-drive" or "--drive") without its dashes, or
 * NULL when argv[i] is not an option; *takes_value says whether QEMU reads
 * the next argument as its value.  Bare arguments are disk images (-hda).
 */
const char *cmdline_option(const struct cmdline *c, size_t i, int *takes_value);

/* The guest name of -name (the last one), new string, or NULL. */
char *cmdline_guest_name(const struct cmdline *c);

/*
 * Whether the command has a QMP monitor (-qmp, -qmp-pretty, -mon
 * mode=control on a chardev).  *address: the first one qckpt can reach as
 * a registry monitor ("unix:/path" for a unix server socket, "tcp:H:P"),
 * new string, NULL if none of them is a server socket.  Returns the number
 * of QMP monitors.
 */
int cmdline_find_qmp(const struct cmdline *c, char **address);

/*
 * Rewrite the disk images the command names: -drive file= (and
 * file.filename=), -blockdev filename= of file/host_device nodes (keyval
 * and JSON, nested "file" too), -hda..-hdd and bare image arguments.
 * Read-only disks and CD-ROMs (-cdrom, media=cdrom, readonly=on,
 * read-only=on) are left alone.  The local-file protocols "file:",
 * "host_device:", "host_cdrom:" and "zoned_host_device:" name the file
 * after them (QEMU strips them); other protocols are not files.  A relative image path is made
 * absolute against CWD.  For each image FN is called with its absolute
 * path and whether QEMU opens it writable (not with snapshot=on or
 * -snapshot, which open it read-only under a temporary overlay); it
 * sets *replacement (new string, a qcow2 image) or leaves it NULL to keep
 * the image, or returns -1 with a message in err to refuse.  A -drive
 * that gets a replacement gets format=qcow2; the format node on top of a
 * replaced -blockdev file node becomes driver=qcow2.  0, or -1 with a
 * message in err (the command is then half changed: throw it away).
 */
typedef int (*cmdline_image_fn)(void *arg, const char *image, int writable,
				char **replacement, char *err, size_t errlen);
int cmdline_rewrite_disks(struct cmdline *c, const char *cwd,
			  cmdline_image_fn fn, void *arg, char *err,
			  size_t errlen);

/*
 * Options that make QEMU open a disk writable where `qckpt run` cannot put
 * the disk's current image: -fda/-fdb, -pflash, -mtdblock, -sd (a bare
 * image, no format, no overlay), -readconfig (disks in a file), -set
 * (changes an option after qckpt read it), a writable -drive/-hdX image
 * named through "json:{...}".  From argv index *POS (0: the start): 1 with
 * one phrase in WHY and *POS past the option, or 0 when there is none.
 */
int cmdline_find_unplaceable(const struct cmdline *c, size_t *pos, char *why,
			     size_t len);

/*
 * For another VM started from this one's command (export, restore
 * --from): drop every QMP monitor (-qmp, -qmp-pretty, -mon mode=control
 * and the -chardev it names: their sockets belong to the old VM); the
 * number dropped.  Set the guest name of every -name (or add -name).
 */
int cmdline_drop_qmp(struct cmdline *c);
void cmdline_set_guest_name(struct cmdline *c, const char *name);

/*
 * What in the command cannot run in two QEMUs at once, for a restore that
 * starts the new QEMU before the old one has quit: a -pidfile, a server
 * socket or port (chardevs, -serial/-monitor/-qmp specs, -vnc, -spice,
 * -gdb, user networking's hostfwd), tap/bridge/vhost network backends,
 * vfio and vhost devices, a shared memory-backend-file, a file chardev
 * that truncates, -daemonize, -readconfig.  MONITOR_PATH is the VM's own
 * QMP unix socket, which `qckpt run` moves aside (cmdline_move_unix_server)
 * and so is allowed.  Disks are the caller's (which ones get new
 * overlays).  1 with one phrase in WHY, or 0.
 */
int cmdline_prestart_blocker(const struct cmdline *c, const char *monitor_path,
			     char *why, size_t len);
/* Every unix server socket of the command at FROM (-qmp/-monitor/-serial
 * "unix:FROM,server", -chardev socket,path=FROM,server) now at TO; the
 * number moved. */
int cmdline_move_unix_server(struct cmdline *c, const char *from, const char *to);

/* PATH made absolute against CWD, "." and ".." components folded
 * lexically (symlinks are kept: QEMU opens the name it is given). */
char *cmdline_absolute(const char *cwd, const char *path);

/* The command as one shell-quoted line (new string). */
char *cmdline_quote(const struct cmdline *c);

/*
 * Whether the launch that `qckpt run` recorded in vm.json ("CommandLine":
 * {"Pid", "StartTime", ...}) is still running: process Pid exists and
 * started at StartTime (so it is the process qckpt run exec'd into QEMU,
 * not a later one that got the same pid).
 */
int cmdline_launch_is_running(json_t *command_line);
/* The same for VM's vm.json under catalog ROOT. */
int cmdline_vm_launched_by_run(const char *root, const char *vm);

#endif
