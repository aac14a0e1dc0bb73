/*
 * cmd-run.c: "qckpt run NAME [--] QEMU-COMMAND...", the launch shim.  It
 * reads the user's QEMU command as QEMU will (cmdline.c), points each disk
 * at its current active image from vm.json after checking the chain
 * against the files (chain.c), adds a QMP socket and -name when missing,
 * registers NAME, records the command in vm.json and then execs QEMU in
 * place: same PID, QEMU's signals and exit status, so it can be a systemd
 * ExecStart= or the last line of a script.  Nothing is printed on stdout
 * (QEMU's serial console may be there) unless --dry-run.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <unistd.h>

#include "catalog.h"
#include "chain.h"
#include "cmd.h"
#include "cmdline.h"
#include "log.h"
#include "ramfile.h"
#include "registry.h"
#include "restore.h"
#include "util.h"

static int cmd_run_exec(int argc, char **argv);

const struct cmd_entry cmd_run_entry = {
	.name = "run",
	.alias = NULL,
	.usage = "[--dir DIR] [--overlay-dir DIR] [--monitor SOCKET] [--ram-file[=DIR]] [--dry-run] [--force] NAME [--] QEMU-COMMAND...",
	.summary = "launch QEMU in place on each disk's current image, registered and with a QMP socket",
	.exec = cmd_run_exec,
};

enum {
	OPT_DIR = OPT_COMMON_LAST,
	OPT_OVERLAY_DIR,
	OPT_MONITOR,
	OPT_DRY_RUN,
	OPT_FORCE,
	OPT_RAM_FILE,
};

struct run_opts {
	const char *vm;
	const char *dir, *overlay_dir, *monitor;
	const char *ram_file_dir; /* --ram-file=DIR */
	int dry_run, force, ram_file;
};

/* "unix:/p" and "/p" are one monitor. */
static int same_monitor(const char *a, const char *b)
{
	const char *pa = registry_unix_path(a), *pb = registry_unix_path(b);

	if (pa && pb)
		return strcmp(pa, pb) == 0;
	return strcmp(a, b) == 0;
}

/* Where a VM's QMP socket goes when nobody said: a per-user runtime dir. */
char *cmd_run_default_monitor(const char *vm)
{
	const char *env = getenv("QCKPT_RUNTIME_DIR");
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	if (env != NULL && env[0] == '/')
		return xasprintf("unix:%s/%s.qmp", env, vm);
	if (geteuid() == 0)
		return xasprintf("unix:/run/qckpt/%s.qmp", vm);
	if (xdg != NULL && xdg[0] == '/')
		return xasprintf("unix:%s/qckpt/%s.qmp", xdg, vm);
	return xasprintf("unix:/tmp/qckpt-%u/%s.qmp", (unsigned)geteuid(), vm);
}

/* A unix socket someone answers on: the VM is running already. */
static int socket_answers(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, ok;

	if (strlen(path) >= sizeof sa.sun_path)
		return 0;
	strcpy(sa.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return 0;
	ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	close(fd);
	return ok;
}

/*
 * The socket's directory.  qckpt's own (the default monitor's) must be
 * private: in /tmp anyone could have made it first.  One the user chose
 * is created private and otherwise only checked to be a directory owned by
 * the user or root.
 */
static int make_socket_dir(const char *vm, const char *path)
{
	char *dir = dir_name(path), *def = cmd_run_default_monitor(vm);
	char *def_dir = dir_name(registry_unix_path(def)), why[512];
	struct stat st;
	int rc = 0;

	if (strcmp(dir, def_dir) == 0) {
		rc = private_dir(dir, why, sizeof why);
	} else if ((rc = mkdir_p(dir, 0700)) < 0 || lstat(dir, &st) < 0 ||
		   !S_ISDIR(st.st_mode) || (st.st_uid != geteuid() && st.st_uid != 0)) {
		snprintf(why, sizeof why, "%s: %s", dir, strerror(rc < 0 ? -rc : EPERM));
		rc = -1;
	}
	if (rc < 0)
		error_vm(vm, "cannot put the QMP socket in %s: %s; give another with --monitor SOCKET",
			 dir, why);
	free(def_dir);
	free(def);
	free(dir);
	return rc;
}

static void add_qmp(struct cmdline *cl, const char *monitor)
{
	const char *path = registry_unix_path(monitor);

	if (path != NULL) {
		char *esc = qopts_escape(path);
		char *spec = xasprintf("socket,id=qckpt-qmp,path=%s,server=on,wait=off", esc);

		cmdline_append(cl, "-chardev", spec, "-mon", "chardev=qckpt-qmp,mode=control", NULL);
		free(spec);
		free(esc);
	} else {
		char *spec = xasprintf("%s,server=on,wait=off", monitor);

		cmdline_append(cl, "-qmp", spec, NULL);
		free(spec);
	}
}

/*
 * Which monitor the VM gets: the registered one, the command's own, the
 * one named by --monitor, or the default; *add says the command needs it
 * added.  New string, or NULL after printing why not.
 */
static char *choose_monitor(const struct run_opts *o, const struct registry_entry *e,
			    const struct cmdline *cl, int *add)
{
	char *mine = NULL, *want;

	cmdline_find_qmp(cl, &mine);
	*add = mine == NULL;
	if (mine != NULL && registry_unix_path(mine) == NULL && strncmp(mine, "tcp:", 4) != 0) {
		error_vm(o->vm, "the command's QMP socket '%s' is not an absolute path; give it one", mine + 5);
		free(mine);
		return NULL;
	}
	if (e != NULL)
		want = xstrdup(e->monitor);
	else if (o->monitor != NULL)
		want = o->monitor[0] == '/' ? xasprintf("unix:%s", o->monitor) : xstrdup(o->monitor);
	else if (mine != NULL)
		want = xstrdup(mine);
	else
		want = cmd_run_default_monitor(o->vm);
	if (mine != NULL && !same_monitor(mine, want)) {
		error_vm(o->vm, "the command serves QMP on %s but the VM is %s %s; use that socket in the command or drop its QMP socket",
			 mine, e ? "registered with monitor" : "to use --monitor", want);
		free(mine);
		free(want);
		return NULL;
	}
	if (e != NULL && o->monitor != NULL && !same_monitor(o->monitor, e->monitor)) {
		error_vm(o->vm, "registered with monitor %s, not %s; change it with 'qckpt unregister' and 'qckpt register'",
			 e->monitor, o->monitor);
		free(mine);
		free(want);
		return NULL;
	}
	free(mine);
	if (!registry_valid_monitor(want)) {
		error_vm(o->vm, "'%s' is not a monitor qckpt can reach (unix:PATH, /abs/path or tcp:HOST:PORT)", want);
		free(want);
		return NULL;
	}
	return want;
}

/* ---- disks --------------------------------------------------------------- */

struct run_disks {
	const char *vm;
	char *vmdir;
	json_t *disks;   /* vm.json's Disks */
	json_t *records; /* the VM's checkpoints */
	int *matched;
};

/* The record and disk whose CheckpointImage is IMAGE: frozen, checkpoints
 * depend on it.  The record, borrowed, and the disk's device, or NULL. */
static json_t *frozen_by(const struct run_disks *r, const char *image, const char **dev)
{
	size_t i, j;
	json_t *rec, *d;

	json_array_foreach(r->records, i, rec)
		json_array_foreach(json_object_get(rec, "Disks"), j, d) {
			const char *ci = json_string_value(json_object_get(d, "CheckpointImage"));

			if (ci && chain_same_file(ci, image)) {
				*dev = json_string_value(json_object_get(d, "Device"));
				return rec;
			}
		}
	return NULL;
}

/* Where the disk DEV writes now, by vm.json, or NULL. */
static const char *active_image_of(const struct run_disks *r, const char *dev)
{
	size_t i;
	json_t *d;

	json_array_foreach(r->disks, i, d) {
		const char *name = json_string_value(json_object_get(d, "Device"));

		if (dev && name && strcmp(dev, name) == 0)
			return json_string_value(json_object_get(d, "ActiveImage"));
	}
	return NULL;
}

/*
 * An image the command opens: a disk's original image or any image of its
 * chain moves to the disk's active image; an image a checkpoint froze that
 * vm.json's chains do not name is refused when QEMU would write it (the
 * checkpoints that depend on it would change under them).
 */
static int on_image(void *arg, const char *image, int writable, char **replacement,
		    char *err, size_t errlen)
{
	struct run_disks *r = arg;
	const char *dev = NULL, *active;
	size_t i;
	json_t *d, *rec;

	json_array_foreach(r->disks, i, d) {
		char why[1024];

		dev = json_string_value(json_object_get(d, "Device"));
		if (!chain_names(d, image))
			continue;
		if (chain_check(d, why, sizeof why) < 0) {
			snprintf(err, errlen,
				 "disk %s: %s; nothing was started: put the file back (qckpt disks %s shows the chain), or move %s/vm.json aside to launch on the images the command names",
				 dev ? dev : "?", why, r->vm, r->vmdir);
			return -1;
		}
		if (r->matched[i] && writable) {
			snprintf(err, errlen,
				 "disk %s: the command opens %s and another image of its chain; both would be its current image %s; nothing was started: name the disk once",
				 dev ? dev : "?", image, json_string_value(json_object_get(d, "ActiveImage")));
			return -1;
		}
		r->matched[i] = 1;
		*replacement = xstrdup(json_string_value(json_object_get(d, "ActiveImage")));
		return 0;
	}
	if (!writable || (rec = frozen_by(r, image, &dev)) == NULL)
		return 0;
	active = active_image_of(r, dev);
	if (active != NULL)
		snprintf(err, errlen,
			 "disk %s: %s is frozen (checkpoint '%s' depends on it) and QEMU would write to it; nothing was started: name the disk's current image %s, or its image from 'qckpt disks %s'",
			 dev ? dev : "?", image, json_string_value(json_object_get(rec, "Name")),
			 active, r->vm);
	else
		snprintf(err, errlen,
			 "disk %s: %s is frozen (checkpoint '%s' depends on it) and QEMU would write to it; nothing was started: put a new overlay on it (qemu-img create -f qcow2 -b %s -F qcow2 NEW) and name that, or see 'qckpt disks %s'",
			 dev ? dev : "?", image, json_string_value(json_object_get(rec, "Name")),
			 image, r->vm);
	return -1;
}

static void warn_unmatched(struct run_disks *r)
{
	size_t i;
	json_t *d;

	json_array_foreach(r->disks, i, d)
		if (!r->matched[i])
			warn_vm(r->vm, "disk %s (originally %s) is not in the command; its current image is %s",
				json_string_value(json_object_get(d, "Device")),
				json_string_value(json_object_get(d, "OriginalImage")),
				json_string_value(json_object_get(d, "ActiveImage")));
}

/* ---- a pending restore ------------------------------------------------------ */

/*
 * vm.json holds a PendingRestore (`qckpt restore`): QEMU starts paused
 * with -incoming defer and a second QMP monitor that it opens itself, in
 * client mode, to SOCK, where the loader already listens; the user's own
 * monitor stays free.  `qckpt restore` listens itself and names SOCK in
 * the environment; otherwise (--no-relaunch: this run comes from systemd
 * or a script) a detached child of this process listens and loads, and
 * this process still becomes QEMU (same PID).
 */
static void add_restore_args(struct cmdline *cl, const char *sock)
{
	char *esc = qopts_escape(sock);
	char *spec = xasprintf("socket,id=%s,path=%s", RESTORE_CHARDEV_ID, esc);

	cmdline_append(cl, "-incoming", "defer", "-S", "-chardev", spec, "-mon",
		       "chardev=" RESTORE_CHARDEV_ID ",mode=control", NULL);
	free(spec);
	free(esc);
}

static struct restore_load *child_load;
static uv_poll_t child_poll;
static int child_poll_open;

/* QEMU (this process after its exec) ended. */
static void on_child_pid(uv_poll_t *poll, int status, int events)
{
	uv_close((uv_handle_t *)poll, NULL);
	child_poll_open = 0;
	restore_load_qemu_exited(child_load);
}

static void on_child_load_done(struct restore_load *load)
{
	if (load->task.error_status != 0)
		error_vm(load->vm, "restore of checkpoint %s failed: %s; it stays pending: run 'qckpt restore %s %s' to restore it again",
			 json_string_value(json_object_get(load->pending, "CheckpointName")) ?: "?",
			 load->task.error, load->vm,
			 json_string_value(json_object_get(load->pending, "CheckpointId")) ?: "?");
	else
		verbose_vm(load->vm, "restored to checkpoint %s in %lld ms",
			   json_string_value(json_object_get(load->pending, "CheckpointName")) ?: "?",
			   load->resume_ms);
	if (child_poll_open) {
		uv_close((uv_handle_t *)&child_poll, NULL);
		child_poll_open = 0;
	}
	restore_load_close(load);
}

/* The forked loader: load, record, exit; never returns. */
static void run_child_loader(const char *vm, const char *root, json_t *pending,
			     int listen_fd, const char *sock, pid_t qemu_pid)
{
	uv_loop_t loop;
	struct restore_load load = { 0 };
	int pidfd, rc;

	setsid();
	uv_loop_init(&loop);
	child_load = &load;
	rc = restore_load_adopt(&load, &loop, listen_fd, sock);
	if (rc < 0) {
		error_vm(vm, "cannot listen for the restore monitor: %s", uv_strerror(rc));
		_exit(1);
	}
	/* Without a pidfd the monitor's end tells that QEMU is gone. */
	pidfd = (int)syscall(SYS_pidfd_open, qemu_pid, 0);
	if (pidfd >= 0 && uv_poll_init(&loop, &child_poll, pidfd) == 0) {
		child_poll_open = 1;
		uv_poll_start(&child_poll, UV_READABLE, on_child_pid);
	}
	restore_load_start(&load, vm, root, pending, uv_hrtime(), on_child_load_done);
	uv_run(&loop, UV_RUN_DEFAULT);
	rc = load.task.error_status != 0;
	uv_loop_close(&loop);
	restore_load_free(&load);
	_exit(rc);
}

/* Listen on a fresh private socket and fork the loader.  0 with *sock
 * set, or -1 after saying why. */
static int start_own_loader(const char *vm, const char *root, json_t *pending,
			    char **sock)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char *dir = xdg && xdg[0] == '/' && strlen(xdg) < 60 ? xasprintf("%s/qckpt-restore-XXXXXX", xdg)
							   : xstrdup("/tmp/qckpt-restore-XXXXXX");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = -1;
	pid_t pid;

	if (mkdtemp(dir) == NULL) {
		error_vm(vm, "cannot make a directory for the restore monitor (%s): %s", dir, strerror(errno));
		free(dir);
		return -1;
	}
	*sock = xasprintf("%s/monitor", dir);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", *sock);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1) < 0) {
		error_vm(vm, "cannot listen on %s for the restore monitor: %s", *sock, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(dir);
		return -1;
	}
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		error_vm(vm, "cannot fork the restore loader: %s", strerror(errno));
		close(fd);
		free(dir);
		return -1;
	}
	if (pid == 0)
		run_child_loader(vm, root, pending, fd, *sock, getppid());
	close(fd);
	free(dir);
	return 0;
}

/* ---- guest RAM in a file (--ram-file) ---------------------------------------- */

/* Whether a pending restore brings its own RAM file (a reflink of the
 * checkpoint's): then QEMU runs on it as it is. */
static int restore_has_ram(json_t *pending)
{
	const char *kind = json_string_value(json_object_get(pending, "Kind"));

	return kind != NULL && strcmp(kind, RAMFILE_KIND) == 0;
}

/* The running file for this launch: a pending restore's reflink, or a
 * new empty file (a fresh boot: the last launch's RAM is gone with it). */
static char *ram_file_path(const struct run_opts *o, json_t *ramfile, json_t *pending,
			   const char *dir, long long bytes)
{
	const char *old = json_string_value(json_object_get(ramfile, "Path"));
	struct stat st;
	char *path;
	int fd;

	if (restore_has_ram(pending)) {
		if (old == NULL || stat(old, &st) < 0) {
			error_vm(o->vm, "the pending restore's RAM file %s is %s; nothing was started: run 'qckpt restore %s %s' again",
				 old ? old : "(none)", old ? strerror(errno) : "not in vm.json", o->vm,
				 json_string_value(json_object_get(pending, "CheckpointId")) ?: "CHECKPOINT");
			return NULL;
		}
		if (st.st_size != bytes) {
			error_vm(o->vm, "the checkpoint's RAM file %s holds %lld MiB but the command gives the guest %lld MiB (-m); nothing was started: launch it with the checkpoint's -m",
				 old, (long long)(st.st_size >> 20), bytes >> 20);
			return NULL;
		}
		return xstrdup(old);
	}
	path = ramfile_new_path(dir, o->vm);
	if (o->dry_run)
		return path;
	if (old != NULL)
		unlink(old);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		error_vm(o->vm, "cannot create the RAM file %s: %s; nothing was started", path, strerror(errno));
		free(path);
		return NULL;
	}
	close(fd);
	return path;
}

/* What --ram-file (or vm.json's RamFile) asks for, checked before
 * anything is started or registered. */
struct ram_plan {
	int wanted;
	const char *dir;
	long long bytes;
};

/*
 * --ram-file, or a VM that vm.json says runs so: guest RAM in a file that
 * QEMU maps shared, on a file system that can reflink it into the
 * catalog (checkpoints clone it there).  0 (P->wanted says whether), or
 * -1 after saying why not.
 */
static int check_ram_file(const struct run_opts *o, const char *vmdir, json_t *state,
			  const struct cmdline *cl, struct ram_plan *p)
{
	json_t *ramfile = json_object_get(state, "RamFile");
	const char *asked = o->ram_file ? "--ram-file" : "the VM's RAM file (vm.json's RamFile)";
	char why[1024];
	int rc;

	p->wanted = o->ram_file || ramfile != NULL;
	if (!p->wanted)
		return 0;
	p->dir = o->ram_file_dir;
	if (p->dir == NULL && !o->ram_file)
		p->dir = json_string_value(json_object_get(ramfile, "Dir"));
	if (p->dir == NULL)
		p->dir = vmdir;
	if (p->dir[0] != '/')
		return error_vm(o->vm, "--ram-file needs an absolute directory, not '%s'", p->dir);
	if (ramfile_has_backend(cl, why, sizeof why))
		return error_vm(o->vm, "%s: the command gives the guest's RAM a backend of its own (%s); nothing was started: drop it from the command",
				asked, why);
	if (ramfile_ram_size(cl, &p->bytes, why, sizeof why) < 0)
		return error_vm(o->vm, "%s: %s; nothing was started", asked, why);
	if (!o->dry_run && ((rc = mkdir_p(p->dir, 0700)) < 0 || (rc = mkdir_p(vmdir, 0700)) < 0))
		return error_vm(o->vm, "cannot create %s or %s: %s; nothing was started", p->dir, vmdir,
				strerror(-rc));
	if ((!o->dry_run || access(vmdir, F_OK) == 0) &&
	    ramfile_probe(p->dir, vmdir, why, sizeof why) < 0)
		return error_vm(o->vm, "cannot keep the guest's RAM in %s: %s; nothing was started: give --ram-file a directory on XFS (mkfs.xfs -m reflink=1) or btrfs, on the file system of the catalog (%s)",
				p->dir, why, vmdir);
	return 0;
}

/* The file, the backend in CL and vm.json's RamFile in STATE. */
static int add_ram_file(const struct run_opts *o, const struct ram_plan *p, const char *vmdir,
			json_t *state, json_t *pending, struct cmdline *cl)
{
	const char *id = ramfile_backend_id(cl);
	char *path;

	if (!p->wanted)
		return 0;
	path = ram_file_path(o, json_object_get(state, "RamFile"), pending, p->dir, p->bytes);
	if (path == NULL)
		return -1;
	ramfile_add_backend(cl, id, path, p->bytes);
	json_object_set_new(state, "RamFile", json_pack("{s:s, s:s, s:I, s:s}", "Dir", p->dir,
			    "Path", path, "Bytes", (json_int_t)p->bytes, "Backend", id));
	verbose_vm(o->vm, "guest RAM in %s (%lld MiB, reflinks into %s)", path, p->bytes >> 20, vmdir);
	free(path);
	return 0;
}

/* ---- held by `qckpt restore` ---------------------------------------------- */

/*
 * `qckpt restore` starts this run while the old QEMU is still quitting (its
 * process exit takes the kernel a while: all its memory is freed) so that
 * everything before the exec happens meanwhile; QEMU itself must not start
 * before the old one has let go of the images, sockets and ports.
 */
struct hold {
	uv_pipe_t pipe;
	int go;
};

static void on_hold_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	static char byte[16];

	buf->base = byte;
	buf->len = sizeof byte;
}

static void on_hold_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct hold *h = stream->data;

	if (nread > 0)
		h->go = 1;
	if (nread != 0)
		uv_close((uv_handle_t *)stream, NULL);
}

/* 0 once told to go (the descriptor closed), -1 after saying why not. */
static int wait_for_go(const char *vm, const char *fd_text)
{
	struct hold h = { .go = 0 };
	uv_loop_t loop;
	long fd;
	int rc;

	if (parse_long(fd_text, 3, 1 << 20, &fd) < 0)
		return error_vm(vm, "%s=%s is not a descriptor", RESTORE_HOLD_ENV, fd_text);
	uv_loop_init(&loop);
	uv_pipe_init(&loop, &h.pipe, 0);
	h.pipe.data = &h;
	rc = uv_pipe_open(&h.pipe, (uv_file)fd);
	if (rc == 0)
		rc = uv_read_start((uv_stream_t *)&h.pipe, on_hold_alloc, on_hold_read);
	if (rc < 0)
		uv_close((uv_handle_t *)&h.pipe, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	if (rc < 0)
		return error_vm(vm, "cannot read %s=%ld: %s", RESTORE_HOLD_ENV, fd, uv_strerror(rc));
	if (!h.go)
		return error_vm(vm, "the 'qckpt restore' that started this run ended before the old QEMU had exited; QEMU was not started: run the restore again");
	return 0;
}

/* ---- pre-started by `qckpt restore` ----------------------------------------- */

/*
 * The restore starts this QEMU while the old one still serves the VM's QMP
 * socket (QEMU would unlink the old one's socket to bind its own, and the
 * old one's exit would then unlink the new): it serves at ASIDE, in the
 * same directory, and the restore renames it onto the real path once the
 * old QEMU has let go of it.  0, or -1 after saying why not.
 */
static int serve_aside(const struct run_opts *o, struct cmdline *cl, const char *monitor,
		       int add_monitor, const char *aside)
{
	const char *path = registry_unix_path(monitor);
	char *spec;

	if (path == NULL)
		return error_vm(o->vm, "%s=%s: the VM's monitor %s is not a unix socket",
				RESTORE_PRESTART_ENV, aside, monitor);
	if (!add_monitor) {
		if (cmdline_move_unix_server(cl, path, aside) == 0)
			return error_vm(o->vm, "%s=%s: the command's QMP socket is not %s",
					RESTORE_PRESTART_ENV, aside, path);
		return 0;
	}
	spec = xasprintf("unix:%s", aside);
	add_qmp(cl, spec);
	free(spec);
	return 0;
}

/* ---- the command ---------------------------------------------------------- */

/*
 * The launch, in vm.json's CommandLine; a pre-started one (PRESTART: where
 * its QMP socket is bound for now) in PrestartCommandLine instead: the old
 * QEMU is still the VM's until the restore switches over, and its load
 * moves this one to CommandLine (restore-load.c).
 */
static int record_launch(const struct run_opts *o, const char *root, json_t *state,
			 const struct cmdline *given, const struct cmdline *executed,
			 const char *cwd, const char *prestart)
{
	char when[40];
	json_t *launch;
	int rc;

	format_iso8601(wall_ms(), when, sizeof when);
	launch = json_pack(
		"{s:o, s:o, s:s, s:I, s:I, s:s}", "Given", cmdline_to_json(given),
		"Executed", cmdline_to_json(executed), "WorkingDirectory", cwd,
		"Pid", (json_int_t)getpid(),
		"StartTime", (json_int_t)proc_start_time((long)getpid()),
		"LaunchTime", when);
	if (prestart != NULL) {
		/* QEMU unlinks the name it bound at its exit, not the one
		 * its socket was renamed to: the next restore needs to know */
		json_object_set_new(launch, "MonitorBoundAt", json_string(prestart));
		json_object_set_new(state, "PrestartCommandLine", launch);
	} else {
		json_object_set_new(state, "CommandLine", launch);
		json_object_del(state, "PrestartCommandLine");
	}
	/* QEMU runs here: its images are this host's files (a network
	 * monitor's checkpoints had named another's) */
	json_object_del(state, "QemuHost");
	rc = catalog_write_vm(root, o->vm, state);
	if (rc < 0)
		error_vm(o->vm, "cannot record the command line in %s/%s/vm.json: %s",
			 root, o->vm, strerror(-rc));
	return rc;
}

static int register_vm(const struct run_opts *o, const char *monitor)
{
	char *path = registry_path_for_writing(cmd_registry_path);
	char *keys[2], err[512];
	size_t nkeys = 0;
	int rc;

	if (o->dir)
		keys[nkeys++] = xasprintf("dir=%s", o->dir);
	if (o->overlay_dir)
		keys[nkeys++] = xasprintf("overlay-dir=%s", o->overlay_dir);
	rc = registry_add(path, o->vm, monitor, keys, nkeys, err, sizeof err);
	if (rc < 0)
		error_vm(o->vm, "cannot register: %s", err);
	else
		verbose_vm(o->vm, "registered in %s with monitor %s", path, monitor);
	while (nkeys > 0)
		free(keys[--nkeys]);
	free(path);
	return rc;
}

static int parse_args(int argc, char **argv, struct run_opts *o, int *first)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		{ "dir", required_argument, NULL, OPT_DIR },
		{ "overlay-dir", required_argument, NULL, OPT_OVERLAY_DIR },
		{ "monitor", required_argument, NULL, OPT_MONITOR },
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "ram-file", optional_argument, NULL, OPT_RAM_FILE },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	optind = 1;
	/* "+": stop at NAME, QEMU's options are not ours. */
	while ((opt = cmd_getopt(&cmd_run_entry, argc, argv, "+" CMD_COMMON_SHORT, longopts)) != -1) {
		if (opt == CMD_OPT_HELP)
			return 1;
		switch (opt) {
		case OPT_DIR:
			o->dir = optarg;
			break;
		case OPT_OVERLAY_DIR:
			o->overlay_dir = optarg;
			break;
		case OPT_MONITOR:
			o->monitor = optarg;
			break;
		case OPT_DRY_RUN:
			o->dry_run = 1;
			break;
		case OPT_FORCE:
			o->force = 1;
			break;
		case OPT_RAM_FILE:
			o->ram_file = 1;
			o->ram_file_dir = optarg;
			break;
		default:
			return -1;
		}
	}
	if (optind >= argc)
		return -1;
	o->vm = argv[optind++];
	if (optind < argc && strcmp(argv[optind], "--") == 0)
		optind++;
	if (optind >= argc)
		return -1;
	*first = optind;
	return 0;
}

static int check_options(const struct run_opts *o, const struct registry_entry *e)
{
	if (!registry_valid_name(o->vm))
		return error("'%s' is not a VM name (letters, digits, '.', '_', '-')", o->vm);
	/* Each is a word of the VM's registry line: a blank or a newline
	 * would make another word, or another VM. */
	if ((o->dir && !registry_one_word(o->dir)) || (o->overlay_dir && !registry_one_word(o->overlay_dir)) ||
	    (o->monitor && !registry_one_word(o->monitor)))
		return error_vm(o->vm, "--dir, --overlay-dir and --monitor cannot hold blanks or control characters (the registry keeps each as one word); rename the path");
	if ((o->dir && o->dir[0] != '/') || (o->overlay_dir && o->overlay_dir[0] != '/'))
		return error_vm(o->vm, "--dir and --overlay-dir need absolute paths");
	if (e != NULL && o->dir && (e->dir == NULL || strcmp(e->dir, o->dir) != 0))
		return error_vm(o->vm, "registered with %s%s, not dir=%s; drop --dir or re-register",
				e->dir ? "dir=" : "the default catalog directory", e->dir ? e->dir : "", o->dir);
	if (e != NULL && o->overlay_dir && (e->overlay_dir == NULL || strcmp(e->overlay_dir, o->overlay_dir) != 0))
		return error_vm(o->vm, "registered without overlay-dir=%s; drop --overlay-dir or re-register",
				o->overlay_dir);
	return 0;
}

/* Disks the command opens where run cannot put their current images:
 * refused, or with --force only warned about. */
static int check_placeable(const struct run_opts *o, const struct cmdline *cl)
{
	char why[512];
	size_t pos = 0;

	while (cmdline_find_unplaceable(cl, &pos, why, sizeof why)) {
		if (!o->force)
			return error_vm(o->vm, "%s; nothing was started (--force launches anyway, and checkpoints may then miss or break that disk)",
					why);
		warn_vm(o->vm, "%s; launching anyway (--force)", why);
	}
	return 0;
}

static int check_guest_name(const struct run_opts *o, struct cmdline *cl)
{
	char *name = cmdline_guest_name(cl);

	if (name == NULL) {
		cmdline_append(cl, "-name", o->vm, NULL);
		return 0;
	}
	if (strcmp(name, o->vm) != 0) {
		error_vm(o->vm, "the command names the guest '%s' (-name); qckpt checks that name on the socket, so use 'qckpt run %s' or -name %s",
			 name, name, o->vm);
		free(name);
		return -1;
	}
	free(name);
	return 0;
}

static int launch(struct run_opts *o, struct registry *reg, struct cmdline *given)
{
	const struct registry_entry *e = registry_find(reg, o->vm);
	struct registry_entry unreg = { .dir = (char *)o->dir };
	struct cmdline cl;
	struct run_disks rd = { .vm = o->vm };
	struct ram_plan ram = { 0 };
	char *root = NULL, *monitor = NULL, cwd[4096], err[2048];
	json_t *state = NULL, *pending = NULL;
	char *restore_sock = NULL;
	const char *hold = getenv(RESTORE_HOLD_ENV);
	const char *prestart = getenv(RESTORE_PRESTART_ENV);
	int add_monitor, saved, rc = EXIT_USAGE;

	if (getcwd(cwd, sizeof cwd) == NULL)
		return error_vm(o->vm, "cannot read the working directory: %s", strerror(errno)), EXIT_USAGE;
	cmdline_init(&cl, given->argv, given->argc);
	if (check_options(o, e) < 0 || check_placeable(o, &cl) < 0 || check_guest_name(o, &cl) < 0)
		goto out;
	if ((monitor = choose_monitor(o, e, &cl, &add_monitor)) == NULL)
		goto out;
	if (prestart != NULL && prestart[0] == '\0')
		prestart = NULL;
	/* Held by a restore, the old QEMU answers until it is gone: asked
	 * below, once it is; pre-started by one, it answers on, and this
	 * QEMU serves on a name of its own until the restore renames it. */
	if (hold == NULL && prestart == NULL && registry_unix_path(monitor) &&
	    socket_answers(registry_unix_path(monitor))) {
		error_vm(o->vm, "already running: its QMP socket %s answers; stop that QEMU first",
			 registry_unix_path(monitor));
		goto out;
	}
	root = catalog_root(e ? e : &unreg);
	rd.vmdir = catalog_vm_dir(root, o->vm);
	state = catalog_load_vm(root, o->vm);
	rd.disks = json_object_get(state, "Disks");
	rd.records = catalog_list(root, o->vm);
	rd.matched = xcalloc(json_array_size(rd.disks) + 1, sizeof *rd.matched);
	if (cmdline_rewrite_disks(&cl, cwd, on_image, &rd, err, sizeof err) < 0) {
		error_vm(o->vm, "%s", err);
		rc = EXIT_SOME_FAILED;
		goto out;
	}
	warn_unmatched(&rd);
	if (prestart != NULL && serve_aside(o, &cl, monitor, add_monitor, prestart) < 0)
		goto out;
	if (add_monitor && prestart == NULL)
		add_qmp(&cl, monitor);
	pending = json_object_get(state, "PendingRestore");
	if (json_object_get(pending, "MemoryPath") == NULL)
		pending = NULL;
	if (pending != NULL && o->dry_run)
		add_restore_args(&cl, "RESTORE-SOCKET");
	if (check_ram_file(o, rd.vmdir, state, &cl, &ram) < 0)
		goto out;
	if (o->dry_run) {
		if (add_ram_file(o, &ram, rd.vmdir, state, pending, &cl) < 0)
			goto out;
		char *line = cmdline_quote(&cl);

		printf("%s\n", line);
		free(line);
		rc = EXIT_ALL_OK;
		goto out;
	}
	if (add_monitor && registry_unix_path(monitor) && make_socket_dir(o->vm, registry_unix_path(monitor)) < 0)
		goto out;
	if (e == NULL && register_vm(o, monitor) < 0)
		goto out;
	if (pending != NULL) {
		const char *env = getenv(RESTORE_SOCKET_ENV);

		if (env != NULL && env[0] != '\0')
			restore_sock = xstrdup(env);
		else if (start_own_loader(o->vm, root, pending, &restore_sock) < 0)
			goto out;
		add_restore_args(&cl, restore_sock);
		unsetenv(RESTORE_SOCKET_ENV);
	}
	/* Last before the record: a launch refused earlier leaves no file. */
	if (add_ram_file(o, &ram, rd.vmdir, state, pending, &cl) < 0)
		goto out;
	/* Recorded while still held: the old QEMU was told to quit and
	 * ends either way; this launch is the VM's from now on. */
	if (record_launch(o, root, state, given, &cl, cwd, prestart) < 0) {
		rc = EXIT_SOME_FAILED;
		goto out;
	}
	if (hold != NULL) {
		unsetenv(RESTORE_HOLD_ENV);
		if (wait_for_go(o->vm, hold) < 0) {
			rc = EXIT_SOME_FAILED;
			goto out;
		}
		if (registry_unix_path(monitor) && socket_answers(registry_unix_path(monitor))) {
			error_vm(o->vm, "already running: its QMP socket %s answers; stop that QEMU first",
				 registry_unix_path(monitor));
			rc = EXIT_SOME_FAILED;
			goto out;
		}
	}
	unsetenv(RESTORE_PRESTART_ENV);
	verbose_vm(o->vm, "exec %s", cl.argv[0]);
	fflush(stdout);
	fflush(stderr);
	/* main() ignores SIGPIPE; QEMU gets the default back. */
	signal(SIGPIPE, SIG_DFL);
	execvp(cl.argv[0], cl.argv);
	saved = errno;
	signal(SIGPIPE, SIG_IGN);
	rc = saved == ENOENT ? 127 : 126; /* as shells do */
	error_vm(o->vm, "cannot run %s: %s", cl.argv[0], strerror(saved));
out:
	free(restore_sock);
	free(rd.matched);
	free(rd.vmdir);
	json_decref(rd.records);
	json_decref(state);
	free(root);
	free(monitor);
	cmdline_free(&cl);
	return rc;
}

static int cmd_run_exec(int argc, char **argv)
{
	struct run_opts o = { 0 };
	struct registry reg;
	struct cmdline given;
	const char *explicit;
	char err[512];
	int first, rc = parse_args(argc, argv, &o, &first);

	if (rc > 0)
		return EXIT_ALL_OK;
	if (rc < 0)
		return cmd_usage(&cmd_run_entry);
	/* A registry file named but not there yet is empty: run creates it. */
	explicit = cmd_registry_path ? cmd_registry_path : getenv("QCKPT_REGISTRY");
	if (explicit && explicit[0] && access(explicit, F_OK) < 0 && errno == ENOENT)
		memset(&reg, 0, sizeof reg);
	else if (registry_load(cmd_registry_path, &reg, err, sizeof err) < 0)
		return error("%s", err), EXIT_USAGE;
	cmdline_init(&given, argv + first, (size_t)(argc - first));
	rc = launch(&o, &reg, &given);
	cmdline_free(&given);
	registry_free(&reg);
	return rc;
}
