/*
 * restore.c: one VM's restore as a task (see restore.h for the states).
 * restore_step() reads top to bottom like the restore itself:
 *
 *   find the checkpoint and check its files (the memory state's checksum
 *   read in the thread pool meanwhile unless the file has the stamp it
 *   was hashed with, memsum.h) -> its monitor: [probe the QEMU's
 *   migration abilities] -> new overlays on the frozen images (qcow2.c)
 *   -> vm.json: new active images + PendingRestore -> then, for a running
 *   VM whose command can run twice at once (cmdline_prestart_blocker),
 *   the pre-start: `qckpt run` the recorded command beside the old QEMU,
 *   its QMP socket aside, the old guest stopped -> the new QEMU connects
 *   -> [the checksum] -> quit the old QEMU, wait for its process, rename
 *   the new socket onto the VM's, while the new QEMU's load is set up, up
 *   to migrate-incoming -> the load, cont, vm.json; otherwise (or when the
 *   pre-start fails before its load): [the checksum] -> [quit the old QEMU
 *   and wait for its process] -> `qckpt run` the recorded command,
 *   detached, with the restore monitor -> the load (restore-load.c).
 *
 * The pre-start takes QEMU's own start (30-300 ms under TCG) mostly out of
 * the command's time; the rest of it and the load wait for the old QEMU's
 * exit, so that they fill RAM the kernel has just been given back (see
 * enter_handover).
 *
 * Non-destructive: the current branch's overlays are kept, the frozen
 * images are only ever backing files.  Until the old QEMU is quit, a
 * failure undoes everything (the undo list puts vm.json back and removes
 * the new overlays) and the VM runs on untouched.  After that the restore
 * is pending in vm.json, and running `qckpt restore` again completes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "catalog.h"
#include "chain.h"
#include "cmdline.h"
#include "log.h"
#include "memsum.h"
#include "migrate.h"
#include "qcow2.h"
#include "ramfile.h"
#include "registry.h"
#include "restore.h"
#include "util.h"

extern char **environ;

static void restore_enter(struct restore *r, enum restore_state state);

/* Each state: its name in --debug's timeline, and the phase the user
 * sees (progress.h) while the restore is in it. */
static const struct {
	const char *name;
	const char *phase;
} restore_states[] = {
	[RESTORE_FIND] = { "find", "checking" },
	[RESTORE_CONNECT] = { "connect", "checking" },
	[RESTORE_PROBE] = { "probe", "checking" },
	[RESTORE_OVERLAYS] = { "overlays", "preparing" },
	[RESTORE_COMMIT] = { "commit", "preparing" },
	[RESTORE_PRESTART] = { "prestart", "starting QEMU" },
	[RESTORE_PRELOAD] = { "preload", "starting QEMU" },
	[RESTORE_HANDOVER] = { "handover", "stopping" },
	[RESTORE_SWITCH] = { "switch", "loading memory" },
	[RESTORE_QUIT] = { "quit", "stopping" },
	[RESTORE_LAUNCH] = { "launch", "starting QEMU" },
	[RESTORE_LOAD] = { "load", "loading memory" },
	[RESTORE_DONE] = { "done", "done" },
};
_Static_assert(sizeof restore_states / sizeof *restore_states == RESTORE_DONE + 1,
	       "every state of restore.h has its name and phase here");

/* --debug: where the time goes, on one timeline from the command. */
#define trace(r, ...) debug_vm((r)->spec.vm, (r)->start_ns, __VA_ARGS__)

static void fail(struct restore *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(struct restore *r, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	task_vset_error(&r->task, status, fmt, ap);
	va_end(ap);
}

/* ---- finding the checkpoint, checking its files (touches nothing) ------ */

static char *file_safe(const char *name)
{
	char *s = xstrdup(name);

	for (char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			*p = '_';
	return s;
}

static json_t *vm_disk(json_t *state, const char *device)
{
	size_t i;
	json_t *d;

	json_array_foreach(json_object_get(state, "Disks"), i, d)
		if (strcmp(json_string_value(json_object_get(d, "Device")) ?: "", device) == 0)
			return d;
	return NULL;
}

/*
 * A restore killed during its pre-start (SIGKILL: no undo ran) leaves the
 * new QEMU paused beside the VM's, serving QMP under a name beside the
 * VM's socket, in vm.json's PrestartCommandLine.  This restore holds the
 * VM's lock (cmd-restore.c), so a pre-started QEMU still there is nobody's:
 * it ends now, before anything else starts.  (Killed after the switch, it
 * may run the restored guest while the old one is stopped: the restore
 * asked for now starts that guest afresh anyway.)
 */
static void end_orphan(struct restore *r)
{
	json_t *pre = json_object_get(r->vmstate, "PrestartCommandLine");
	long pid = (long)json_integer_value(json_object_get(pre, "Pid"));
	const char *bound = json_string_value(json_object_get(pre, "MonitorBoundAt"));

	if (pre == NULL || pid == r->pid || !cmdline_launch_is_running(pre))
		return;
	warn_vm(r->spec.vm, "ending the QEMU (pid %ld) that an interrupted restore left paused beside the VM's",
		pid);
	if (kill((pid_t)pid, SIGKILL) < 0)
		warn_vm(r->spec.vm, "cannot end pid %ld: %s", pid, strerror(errno));
	if (bound != NULL)
		unlink(bound);
}

/* A frozen image is what the record says: there, qcow2 with a readable
 * chain, or a raw file. */
static int check_disk(struct restore *r, struct restore_disk *d)
{
	char err[1024] = "";
	struct stat st;
	char *backing = NULL;
	int rc;

	if (d->frozen == NULL || d->device == NULL)
		return fail(r, -EINVAL, "the checkpoint's record lists a disk without Device or CheckpointImage"), -1;
	if (stat(d->frozen, &st) < 0 || !S_ISREG(st.st_mode))
		return fail(r, -ENOENT, "disk %s: the checkpoint's image %s is %s; nothing changed (restore another checkpoint, or put the file back)",
			    d->device, d->frozen, errno == ENOENT ? "missing" : "not a file"), -1;
	rc = qcow2_backing_file(d->frozen, &backing);
	free(backing);
	if (strcmp(d->format, "qcow2") == 0 && rc < 0)
		return fail(r, rc, "disk %s: the checkpoint's image %s is %s; nothing changed",
			    d->device, d->frozen, rc == -EINVAL ? "not a qcow2 image" : strerror(-rc)), -1;
	if (strcmp(d->format, "raw") == 0 && rc == 0)
		return fail(r, -EINVAL, "disk %s: the checkpoint's image %s is a qcow2 image, the record says raw; nothing changed",
			    d->device, d->frozen), -1;
	d->chain = chain_from_image(d->frozen, err, sizeof err);
	if (d->chain == NULL)
		return fail(r, -EINVAL, "disk %s: %s; nothing changed", d->device, err), -1;
	return 0;
}

/* A ram-file checkpoint's frozen RAM file is there, as long as recorded;
 * the new QEMU gets a reflink of it in the VM's RAM file directory. */
static int check_ram_file(struct restore *r)
{
	const char *kind = json_string_value(json_object_get(r->memory, "Kind"));
	const char *path = json_string_value(json_object_get(r->memory, "RamFile"));
	json_int_t bytes = json_integer_value(json_object_get(r->memory, "RamBytes"));
	json_t *ramfile = json_object_get(r->vmstate, "RamFile");
	const char *dir = json_string_value(json_object_get(ramfile, "Dir"));
	struct stat st;

	if (kind == NULL || strcmp(kind, RAMFILE_KIND) != 0)
		return 0;
	if (path == NULL || stat(path, &st) < 0)
		return fail(r, -ENOENT, "the checkpoint's RAM file %s is %s; nothing changed",
			    path ? path : "(not recorded)", path ? strerror(errno) : "missing"), -1;
	if (bytes > 0 && st.st_size != bytes)
		return fail(r, -EINVAL, "the checkpoint's RAM file %s has %lld bytes, the checkpoint recorded %lld: it was changed; nothing changed",
			    path, (long long)st.st_size, (long long)bytes), -1;
	r->ram_frozen = xstrdup(path);
	r->ram_dir = dir ? xstrdup(dir) : catalog_vm_dir(r->spec.catalog_root, r->spec.vm);
	r->ram_clone = ramfile_new_path(r->ram_dir, r->spec.vm);
	if (json_string_value(json_object_get(ramfile, "Path")) != NULL)
		r->ram_old = xstrdup(json_string_value(json_object_get(ramfile, "Path")));
	return 0;
}

static int check_memory(struct restore *r)
{
	const char *path = json_string_value(json_object_get(r->memory, "Path"));
	json_int_t bytes = json_integer_value(json_object_get(r->memory, "Bytes"));
	struct stat *st = &r->memory_st;

	if (path == NULL)
		return fail(r, -EINVAL, "the checkpoint's record has a MemoryState without Path"), -1;
	if (stat(path, st) < 0)
		return fail(r, -errno, "the memory state %s is %s; nothing changed",
			    path, errno == ENOENT ? "missing" : strerror(errno)), -1;
	if (bytes > 0 && st->st_size != bytes)
		return fail(r, -EINVAL, "the memory state %s has %lld bytes, the checkpoint recorded %lld: it was cut short or changed; nothing changed",
			    path, (long long)st->st_size, (long long)bytes), -1;
	return 0;
}

static void plan_overlays(struct restore *r)
{
	json_t *rd, *vd;
	size_t i;
	char id[37];
	char *safe = file_safe(json_string_value(json_object_get(r->record, "Name")) ?: "checkpoint");

	uuid_generate_str(id);
	json_array_foreach(json_object_get(r->record, "Disks"), i, rd) {
		struct restore_disk *d = &r->disks[i];
		char *dir, *stem;

		vd = vm_disk(r->vmstate, d->device);
		d->original = xstrdup(json_string_value(json_object_get(vd, "OriginalImage")) ?:
				      json_string_value(json_array_get(d->chain, 0)));
		dir = r->spec.overlay_dir ? xstrdup(r->spec.overlay_dir) : dir_name(d->frozen);
		stem = base_stem(d->original);
		d->overlay = xasprintf("%s/%s.restore-%s.%.8s.qcow2", dir, stem, safe, id);
		free(dir);
		free(stem);
	}
	free(safe);
}

/* The exact command for a VM qckpt cannot relaunch: its disks on the new
 * overlays, and how to load the memory. */
static void print_recipe(struct restore *r);

static void choose_path(struct restore *r);

static int restore_find(struct restore *r)
{
	json_t *list = catalog_list(r->spec.catalog_root, r->spec.vm), *rd;
	json_t *cl;
	char err[2048];
	size_t i;

	r->record = json_incref(catalog_find_checkpoint(list, r->spec.checkpoint, err, sizeof err));
	json_decref(list);
	if (r->record == NULL)
		return fail(r, -ENOENT, "%s", err), -1;
	snprintf(r->id8, sizeof r->id8, "%.8s", json_string_value(json_object_get(r->record, "Id")) ?: "?");
	if (catalog_record_qemu_host(r->record) != NULL)
		return fail(r, -ENOTSUP, "checkpoint '%s' was taken through a network monitor: its images and memory state are files on %s, which qckpt does not reach; nothing changed: restore it on that host (new qcow2 overlays on its CheckpointImages, QEMU started on them with -incoming from MemoryState.Path; see qckpt(1) NETWORK MONITORS)",
			    json_string_value(json_object_get(r->record, "Name")) ?: "?",
			    catalog_record_qemu_host(r->record)), -1;
	r->memory = json_object_get(r->record, "MemoryState");
	r->vmstate = catalog_load_vm(r->spec.catalog_root, r->spec.vm);
	cl = json_object_get(r->vmstate, "CommandLine");
	r->pid = (long)json_integer_value(json_object_get(cl, "Pid"));
	r->running = cmdline_launch_is_running(cl);
	end_orphan(r);
	r->ndisks = json_array_size(json_object_get(r->record, "Disks"));
	r->disks = xcalloc(r->ndisks + 1, sizeof *r->disks);
	json_array_foreach(json_object_get(r->record, "Disks"), i, rd) {
		struct restore_disk *d = &r->disks[i];

		d->device = xstrdup(json_string_value(json_object_get(rd, "Device")) ?: "");
		d->frozen = json_string_value(json_object_get(rd, "CheckpointImage")) ?
			    xstrdup(json_string_value(json_object_get(rd, "CheckpointImage"))) : NULL;
		d->format = xstrdup(json_string_value(json_object_get(rd, "Format")) ?: "qcow2");
		if (check_disk(r, d) < 0)
			return -1;
	}
	if (r->memory != NULL && (check_memory(r) < 0 || check_ram_file(r) < 0))
		return -1;
	plan_overlays(r);
	if (!json_is_array(json_object_get(cl, "Given"))) {
		print_recipe(r);
		return fail(r, -ENOTSUP, "it was not launched through 'qckpt run', so qckpt cannot relaunch it; nothing changed: run the command above, or launch it with 'qckpt run %s -- QEMU-COMMAND' and restore again",
			    r->spec.vm), -1;
	}
	choose_path(r);
	return 0;
}

static int recipe_image(void *arg, const char *image, int writable, char **replacement,
			char *err, size_t errlen)
{
	struct restore *r = arg;
	size_t i;
	json_t *vd;

	for (i = 0; i < r->ndisks; i++) {
		vd = vm_disk(r->vmstate, r->disks[i].device);
		if ((vd != NULL && chain_names(vd, image)) ||
		    (r->disks[i].original && chain_same_file(r->disks[i].original, image))) {
			*replacement = xstrdup(r->disks[i].overlay);
			return 0;
		}
	}
	return 0;
}

/* The running QEMU's arguments from /proc (NUL-separated). */
static int proc_cmdline(long pid, struct cmdline *c)
{
	char path[64], *buf = NULL, **argv = NULL;
	size_t n = 0, len = 0, cap = 0;
	ssize_t got;
	int fd;

	snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
	if (pid <= 0 || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	do {
		if (len + 4096 + 1 > cap)
			buf = xrealloc(buf, cap = 2 * cap + 8192);
		got = read(fd, buf + len, 4096);
		if (got > 0)
			len += (size_t)got;
	} while (got > 0);
	close(fd);
	if (buf != NULL)
		buf[len] = '\0';
	for (size_t k = 0; k < len; k += strlen(buf + k) + 1) {
		argv = xrealloc(argv, (n + 1) * sizeof *argv);
		argv[n++] = buf + k;
	}
	if (n > 0)
		cmdline_init(c, argv, n);
	free(argv);
	free(buf);
	return n > 0 ? 0 : -1;
}

/* The pid of the QEMU serving MONITOR, from /proc: for a VM qckpt did
 * not launch, only its command line names the socket. */
static long find_qemu_pid(const char *monitor)
{
	const char *sock = strncmp(monitor, "unix:", 5) == 0 ? monitor + 5 : monitor;
	DIR *dir = opendir("/proc");
	struct dirent *de;
	long found = -1;

	while (dir != NULL && found < 0 && (de = readdir(dir)) != NULL) {
		struct cmdline c = { 0 };
		long pid = strtol(de->d_name, NULL, 10);

		if (pid <= 0 || pid == (long)getpid() || proc_cmdline(pid, &c) < 0)
			continue;
		for (size_t i = 1; i < c.argc && found < 0; i++)
			if (strstr(c.argv[i], sock) != NULL && strstr(c.argv[0], "qemu") != NULL)
				found = pid;
		cmdline_free(&c);
	}
	if (dir != NULL)
		closedir(dir);
	return found;
}

/* The recipe's RAM: the command's shared file backend on the reflink
 * (or one added, of the checkpoint's size). */
static void recipe_ram(struct restore *r, struct cmdline *c)
{
	json_int_t bytes = json_integer_value(json_object_get(r->memory, "RamBytes"));

	if (ramfile_set_backend_path(c, r->ram_clone) == 0)
		ramfile_add_backend(c, ramfile_backend_id(c), r->ram_clone, (long long)bytes);
}

static void print_recipe(struct restore *r)
{
	const char *mem = json_string_value(json_object_get(r->memory, "Path"));
	const char *then = strcmp(json_string_value(json_object_get(r->record, "GuestState")) ?: "", "running") == 0 ?
			   "" : " only if you want the guest running (it was paused)";
	struct cmdline c = { 0 };
	char cwd[PATH_MAX], err[512];
	/* 7.2 can read the stream from a pipe; file: needs QEMU >= 8.2 and
	 * mapped-ram needs it and -incoming defer plus the capabilities.  A
	 * ram-file state needs x-ignore-shared on the loading side too,
	 * which QEMU 7.2 and 10.0 take only over a monitor: defer as well. */
	int mapped = 0, defer;
	size_t i;
	json_t *cap;

	json_array_foreach(json_object_get(r->memory, "Capabilities"), i, cap)
		mapped |= strcmp(json_string_value(cap) ?: "", "mapped-ram") == 0;
	defer = mapped || r->ram_frozen != NULL;
	for (i = 0; i < r->ndisks; i++)
		printf("qemu-img create -f qcow2 -b %s -F %s %s\n", r->disks[i].frozen,
		       r->disks[i].format, r->disks[i].overlay);
	/* A ram-file checkpoint: QEMU runs on a reflink of the frozen RAM
	 * file (it writes the file it maps), never on the file itself. */
	if (r->ram_frozen != NULL)
		printf("cp --reflink=always %s %s\n", r->ram_frozen, r->ram_clone);
	if (getcwd(cwd, sizeof cwd) == NULL)
		strcpy(cwd, "/");
	if (proc_cmdline(find_qemu_pid(r->spec.monitor), &c) == 0 &&
	    cmdline_rewrite_disks(&c, cwd, recipe_image, r, err, sizeof err) == 0) {
		char *inc = mem == NULL ? NULL : defer ? xstrdup("defer") : xasprintf("exec:cat %s", mem);
		char *line;

		if (r->ram_frozen != NULL)
			recipe_ram(r, &c);
		if (inc != NULL)
			cmdline_append(&c, "-incoming", inc, NULL);
		line = cmdline_quote(&c);
		printf("%s\n", line);
		free(line);
		free(inc);
	} else {
		printf("# QEMU's usual command line, each disk on its overlay above%s%s%s%s\n",
		       r->ram_frozen ? ", its shared memory-backend-file's mem-path=" : "",
		       r->ram_frozen ? r->ram_clone : "",
		       mem ? ", plus -incoming " : "", mem ? (defer ? "defer" : "'exec:cat FILE'") : "");
	}
	cmdline_free(&c);
	if (mem != NULL && mapped)
		printf("# then over QMP: migrate-set-capabilities events, multifd, mapped-ram on; migrate-incoming {\"uri\": \"file:%s\"}; when MIGRATION is completed, cont%s\n",
		       mem, then);
	else if (mem != NULL && r->ram_frozen != NULL)
		printf("# then over QMP: migrate-set-capabilities x-ignore-shared on; migrate-incoming {\"uri\": \"exec:cat %s\"}; when MIGRATION is completed, cont%s\n",
		       mem, then);
	else if (mem != NULL)
		printf("# then over QMP: cont%s\n", *then ? then : " once the load is done");
}

/* ---- the running QEMU -------------------------------------------------- */

static void on_conn_ready(struct vmconn *conn, int status)
{
	struct restore *r = conn->data;

	if (status < 0 && !r->running && (status == UV_ENOENT || status == UV_ECONNREFUSED)) {
		/* nobody serves the monitor: the VM is stopped, start it */
	} else if (status < 0) {
		fail(r, status, "the VM runs (pid %ld) but its monitor cannot be used: %s; nothing changed",
		     r->pid, conn->error);
	} else if (!r->running) {
		/* It answers, but not as the launch vm.json recorded: someone
		 * started it by hand, and qckpt cannot relaunch that. */
		print_recipe(r);
		fail(r, -ENOTSUP, "it runs, but not as launched by 'qckpt run' (that launch, pid %ld, has ended), so qckpt cannot relaunch it; nothing changed: run the commands above, or quit it and restore again",
		     r->pid);
	} else {
		task_attach(&r->task, conn);
	}
	task_arrived(&r->task);
}

static void start_overlays(struct restore *r);

static void enter_connect(struct restore *r)
{
	start_overlays(r);
	r->conn.data = r;
	r->conn_used = 1;
	r->task.awaiting++;
	/* Also when vm.json's launch has ended: a QEMU started by hand on the
	 * same monitor must not be left running beside the restored one. */
	if (vmconn_open(r->loop, &r->conn, r->spec.vm, r->spec.monitor,
			r->spec.expect_name, 10000, on_conn_ready) < 0) {
		if (!r->running)
			r->task.awaiting--; /* no socket at all: stopped */
		else {
			fail(r, -EINVAL, "%s; nothing changed", r->conn.error);
			r->task.awaiting--;
		}
	}
}

static void enter_probe(struct restore *r)
{
	task_send(&r->task, "query-migrate-capabilities", NULL, &r->caps);
	if (r->prestart) {
		/* whether the old guest is to be stopped at the switch; a
		 * block job (a remove's commit) holds back from others what
		 * the new QEMU must read, which its cont would find out */
		task_send(&r->task, "query-status", NULL, &r->old_status);
		task_send(&r->task, "query-block-jobs", NULL, &r->old_jobs);
	}
}

/* The memory state needs what it was saved with (mapped-ram must match). */
static int check_caps(struct restore *r)
{
	size_t i;
	json_t *c;

	json_array_foreach(json_object_get(r->memory, "Capabilities"), i, c) {
		const char *cap = json_string_value(c);

		if (cap != NULL && strcmp(cap, "background-snapshot") != 0 &&
		    !migrate_has_cap(r->caps, cap))
			return fail(r, -ENOTSUP,
				"the checkpoint's memory state was saved with the migration capability %s, which this QEMU (%s) does not offer; nothing changed: run the VM on QEMU 9.0 or later to restore it",
				cap, r->conn.qmp.version_string), -1;
	}
	return 0;
}

/* ---- new overlays ------------------------------------------------------ */

static void undo_overlay(struct task *task, void *arg)
{
	struct restore_disk *d = arg;

	/* -EEXIST: somebody else's file */
	if (d->created == 0)
		unlink(d->overlay);
}

/* In the thread pool: the overlay is written here (qcow2.c), not by a
 * qemu-img process, whose start alone took 35-40 ms. */
static void create_overlay(uv_work_t *work)
{
	struct restore_disk *d = work->data;
	uint64_t size = 0;

	d->created = qcow2_disk_size(d->frozen, d->format, &size);
	if (d->created == 0)
		d->created = qcow2_create_overlay(d->overlay, d->frozen, d->format, size);
}

static void on_overlay_created(uv_work_t *work, int status)
{
	struct restore_disk *d = work->data;
	struct restore *r = d->restore;

	trace(r, "created %s", d->overlay);
	if (status < 0)
		d->created = status;
	if (d->created < 0)
		fail(r, d->created, "disk %s: cannot create the overlay %s on %s: %s; nothing changed",
		     d->device, d->overlay, d->frozen, strerror(-d->created));
	r->overlays_running--;
	if (r->overlays_awaited > 0) {
		r->overlays_awaited--;
		task_arrived(&r->task);
	}
}

/* Count the creations still running in what the task waits for. */
static void await_overlays(struct restore *r)
{
	r->task.awaiting += r->overlays_running - r->overlays_awaited;
	r->overlays_awaited = r->overlays_running;
}

static void enter_ram_clone(struct restore *r);

/* The overlays are created while the monitor is connected and probed;
 * RESTORE_OVERLAYS waits for them. */
static void start_overlays(struct restore *r)
{
	for (size_t i = 0; i < r->ndisks; i++) {
		struct restore_disk *d = &r->disks[i];
		int rc;

		d->restore = r;
		d->created = -EINPROGRESS;
		d->work.data = d;
		rc = uv_queue_work(r->loop, &d->work, create_overlay, on_overlay_created);
		if (rc < 0) {
			fail(r, rc, "cannot create the overlay %s: %s; nothing changed", d->overlay,
			     uv_strerror(rc));
			return;
		}
		task_on_undo(&r->task, undo_overlay, d);
		r->overlays_running++;
	}
}

/* The new QEMU's RAM: a reflink of the frozen file, never the file
 * itself (a running guest writes its RAM file; the checkpoint must stay). */
static void undo_ram_clone(struct task *task, void *arg)
{
	struct restore *r = arg;

	if (r->ram_cloned)
		unlink(r->ram_clone);
}

static void on_ram_cloned(struct ramfile_work *w)
{
	struct restore *r = w->data;

	if (w->rc < 0)
		fail(r, w->rc, "cannot reflink the checkpoint's RAM file %s to %s: %s; nothing changed",
		     r->ram_frozen, r->ram_clone, strerror(-w->rc));
	else
		r->ram_cloned = 1;
	verbose_vm(r->spec.vm, "RAM file reflinked to %s in %lld ms", r->ram_clone, w->ms);
	ramfile_work_free(w);
	task_arrived(&r->task);
}

static void enter_ram_clone(struct restore *r)
{
	struct ramfile_work *w = xcalloc(1, sizeof *w);
	int rc;

	task_on_undo(&r->task, undo_ram_clone, r);
	rc = ramfile_queue(r->loop, w, RAMFILE_CLONE, r->ram_frozen, r->ram_clone, on_ram_cloned, r);
	if (rc < 0) {
		free(w);
		fail(r, rc, "cannot queue the reflink of %s: %s", r->ram_frozen, uv_strerror(rc));
		return;
	}
	r->task.awaiting++;
}

/* The old QEMU is gone: the RAM file it ran on goes too (the restore
 * replaces its state; a checkpoint of it would have its own copy). */
static void drop_old_ram(struct restore *r)
{
	if (r->ram_old != NULL && r->ram_clone != NULL && strcmp(r->ram_old, r->ram_clone) != 0)
		unlink(r->ram_old);
	free(r->ram_old);
	r->ram_old = NULL;
}

static void enter_overlays(struct restore *r)
{
	await_overlays(r);
	if (r->ram_frozen != NULL)
		enter_ram_clone(r);
}

/* ---- vm.json ------------------------------------------------------------ */

/* The disk's chain for vm.json: from its OriginalImage (the chain read
 * from the headers may go further down, into a base image) to OVERLAY. */
static json_t *vm_chain(struct restore_disk *d)
{
	json_t *chain = json_array();
	size_t i, from = 0;

	for (i = 0; i < json_array_size(d->chain); i++)
		if (chain_same_file(json_string_value(json_array_get(d->chain, i)), d->original))
			from = i;
	json_array_append_new(chain, json_string(d->original));
	for (i = from + 1; i < json_array_size(d->chain); i++)
		json_array_append(chain, json_array_get(d->chain, i));
	json_array_append_new(chain, json_string(d->overlay));
	return chain;
}

static json_t *new_vm_state(struct restore *r)
{
	json_t *state = json_deep_copy(r->vmstate), *vd;
	char when[40];

	for (size_t i = 0; i < r->ndisks; i++) {
		struct restore_disk *d = &r->disks[i];

		vd = vm_disk(state, d->device);
		if (vd == NULL) {
			vd = json_pack("{s:s, s:s}", "Device", d->device, "OriginalImage", d->original);
			json_array_append_new(json_object_get(state, "Disks"), vd);
		}
		json_object_set_new(vd, "ActiveImage", json_string(d->overlay));
		json_object_set_new(vd, "Format", json_string("qcow2"));
		json_object_set_new(vd, "Chain", vm_chain(d));
	}
	format_iso8601(wall_ms(), when, sizeof when);
	if (r->memory == NULL) {
		/* Nothing to load: the VM is on the checkpoint once it boots. */
		json_object_del(state, "PendingRestore");
		json_object_set(state, "CurrentCheckpointId", json_object_get(r->record, "Id"));
		json_object_set(state, "CurrentCheckpointName", json_object_get(r->record, "Name"));
		return state;
	}
	/* Between checkpoints until the load completes: nothing is
	 * recorded as restored (where the VM is comes from its chain). */
	json_object_del(state, "CurrentCheckpointId");
	json_object_del(state, "CurrentCheckpointName");
	json_object_set_new(state, "PendingRestore", json_pack(
		"{s:O, s:O, s:O, s:O, s:O?, s:O?, s:O?, s:s}",
		"CheckpointId", json_object_get(r->record, "Id"),
		"CheckpointName", json_object_get(r->record, "Name"),
		"MemoryPath", json_object_get(r->memory, "Path"),
		"Bytes", json_object_get(r->memory, "Bytes"),
		"GuestState", json_object_get(r->record, "GuestState"),
		"Capabilities", json_object_get(r->memory, "Capabilities"),
		"MultifdChannels", json_object_get(r->memory, "MultifdChannels"),
		"RequestedAt", when));
	if (r->ram_clone != NULL) {
		/* qckpt run starts QEMU on the reflink as it is */
		json_t *old = json_object_get(state, "RamFile");

		json_object_set_new(json_object_get(state, "PendingRestore"), "Kind",
				    json_string(RAMFILE_KIND));
		json_object_set_new(state, "RamFile", json_pack("{s:s, s:s, s:O, s:s}",
			"Dir", r->ram_dir, "Path", r->ram_clone,
			"Bytes", json_object_get(r->memory, "RamBytes"),
			"Backend", json_string_value(json_object_get(old, "Backend")) ?: "pc.ram"));
	}
	return state;
}

struct commit_work {
	uv_work_t req;
	struct restore *r;
	json_t *state;
	int rc;
};

static void work_commit(uv_work_t *req)
{
	struct commit_work *w = req->data;

	w->rc = catalog_write_vm(w->r->spec.catalog_root, w->r->spec.vm, w->state);
}

/* A pending restore's overlays that were never run on (its load did not
 * finish) are replaced by this restore's. */
static void remove_unused_overlays(struct restore *r)
{
	size_t i;
	json_t *vd;

	/* A QEMU that runs may be on them (a load that went through but
	 * whose vm.json write failed): then they stay. */
	if (json_object_get(r->vmstate, "PendingRestore") == NULL || r->running)
		return;
	json_array_foreach(json_object_get(r->vmstate, "Disks"), i, vd) {
		const char *active = json_string_value(json_object_get(vd, "ActiveImage"));

		if (active != NULL && strstr(active, ".restore-") != NULL)
			unlink(active);
	}
}

static void after_commit(uv_work_t *req, int status)
{
	struct commit_work *w = req->data;
	struct restore *r = w->r;

	if (status < 0)
		w->rc = status;
	if (w->rc < 0)
		fail(r, w->rc, "cannot write %s/%s/vm.json: %s; nothing changed",
		     r->spec.catalog_root, r->spec.vm, strerror(-w->rc));
	else
		r->vm_json_written = 1;
	trace(r, "vm.json written");
	if (w->rc == 0)
		remove_unused_overlays(r);
	json_decref(w->state);
	free(w);
	task_arrived(&r->task);
}

static void undo_vm_json(struct task *task, void *arg)
{
	struct restore *r = arg;

	if (r->vm_json_written && catalog_write_vm(r->spec.catalog_root, r->spec.vm, r->vmstate) < 0)
		warn_vm(r->spec.vm, "could not put %s/%s/vm.json back", r->spec.catalog_root, r->spec.vm);
}

static void enter_commit(struct restore *r)
{
	struct commit_work *w = xcalloc(1, sizeof *w);

	w->r = r;
	w->state = new_vm_state(r);
	w->req.data = w;
	task_on_undo(&r->task, undo_vm_json, r);
	r->task.awaiting++;
	if (uv_queue_work(r->loop, &w->req, work_commit, after_commit) < 0) {
		json_decref(w->state);
		free(w);
		fail(r, -EIO, "cannot queue the vm.json write; nothing changed");
		r->task.awaiting--;
	}
}

/* ---- quitting the old QEMU ------------------------------------------------ */

static void on_pid_exit(uv_poll_t *poll, int status, int events)
{
	struct restore *r = poll->data;

	uv_close((uv_handle_t *)poll, NULL);
	r->pidpoll_open = 0;
	close(r->pidfd);
	r->pidfd = -1;
	verbose_vm(r->spec.vm, "the old QEMU (pid %ld) exited (+%llu ms)", r->pid,
		   (unsigned long long)(mono_ms() - r->start_ms));
	trace(r, "old QEMU (pid %ld) exited", r->pid);
	task_arrived(&r->task);
}

/* The old QEMU's process, not its monitor (QEMU closes the monitor before
 * it has let go of its files, its socket and its RAM): CB once it has
 * exited, counted in the task's awaiting.  0, or -1 with errno (ESRCH:
 * gone already). */
static int watch_old_exit(struct restore *r, uv_poll_cb cb)
{
	r->pidfd = (int)syscall(SYS_pidfd_open, (pid_t)r->pid, 0);
	if (r->pidfd < 0)
		return -1;
	uv_poll_init(r->loop, &r->pidpoll, r->pidfd);
	r->pidpoll.data = r;
	r->pidpoll_open = 1;
	uv_poll_start(&r->pidpoll, UV_READABLE, cb);
	r->task.awaiting++;
	return 0;
}

static int relaunch(struct restore *r, int held);

static void enter_quit(struct restore *r)
{
	if (watch_old_exit(r, on_pid_exit) < 0 && errno != ESRCH) {
		/* No pidfd (Linux < 5.3): the monitor closing is the best sign. */
		r->quit_on_disconnect = 1;
		r->task.awaiting++;
	}
	verbose_vm(r->spec.vm, "quitting QEMU (pid %ld)", r->pid);
	task_send_ex(&r->task, "quit", NULL, -1, NULL, 1);
	r->past_quit = 1;
	/* The old QEMU's process takes a while to end (the kernel frees all
	 * its memory): meanwhile `qckpt run` gets everything ready, held
	 * just before it starts QEMU. */
	if (!r->spec.no_relaunch)
		relaunch(r, 1);
}

/* ---- relaunching ------------------------------------------------------------ */

static char *runtime_dir(void)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	/* sun_path holds 108 bytes: keep the socket's path short. */
	if (xdg != NULL && xdg[0] == '/' && strlen(xdg) < 60)
		return xasprintf("%s/qckpt-restore-XXXXXX", xdg);
	return xstrdup("/tmp/qckpt-restore-XXXXXX");
}

static void on_qemu_exit(uv_process_t *proc, int64_t status, int signum)
{
	struct restore *r = proc->data;

	r->proc_exited = 1;
	r->exit_status = signum ? 128 + signum : (int)status;
	uv_close((uv_handle_t *)proc, NULL);
	r->proc_open = 0;
	if (r->killing)
		task_arrived(&r->task);
	else if (r->state == RESTORE_LOAD && !r->load.task.finished)
		restore_load_qemu_exited(&r->load);
	else if (r->state < RESTORE_LOAD)
		fail(r, -ECHILD, "'qckpt run' ended (status %d) before it started QEMU; its output is in %s",
		     r->exit_status, r->log_path);
}

static void on_load_done(struct restore_load *load)
{
	struct restore *r = load->data;

	if (load->task.error_status != 0)
		fail(r, load->task.error_status, "%s", load->task.error);
	r->resume_ms = load->resume_ms;
	r->guest_running = load->guest_running;
	restore_load_close(load);
	task_arrived(&r->task);
}

static int env_is(const char *entry, const char *name)
{
	size_t len = strlen(name);

	return strncmp(entry, name, len) == 0 && entry[len] == '=';
}

/* The environment for run: ours, with the restore socket, (HELD) the
 * hold descriptor, fd 3, named, and (ASIDE) where a pre-started QEMU
 * serves the VM's QMP socket for now.  Ours are the last three. */
static char **spawn_env(const char *sock, int held, const char *aside)
{
	size_t n = 0, j = 0;
	char **env;

	while (environ[n] != NULL)
		n++;
	env = xcalloc(n + 4, sizeof *env);
	for (size_t i = 0; i < n; i++)
		if (!env_is(environ[i], RESTORE_SOCKET_ENV) && !env_is(environ[i], RESTORE_HOLD_ENV) &&
		    !env_is(environ[i], RESTORE_PRESTART_ENV))
			env[j++] = environ[i];
	if (sock != NULL)
		env[j++] = xasprintf("%s=%s", RESTORE_SOCKET_ENV, sock);
	if (held)
		env[j++] = xasprintf("%s=3", RESTORE_HOLD_ENV);
	if (aside != NULL)
		env[j++] = xasprintf("%s=%s", RESTORE_PRESTART_ENV, aside);
	return env;
}

static int open_log(struct restore *r)
{
	char *dir = catalog_vm_dir(r->spec.catalog_root, r->spec.vm);
	char when[40], *line;
	int fd;

	free(r->log_path);
	r->log_path = xasprintf("%s/qemu.log", dir);
	free(dir);
	fd = open(r->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	format_iso8601(wall_ms(), when, sizeof when);
	line = xasprintf("=== %s qckpt restore %s to '%s' (%s) ===\n", when, r->spec.vm,
			 json_string_value(json_object_get(r->record, "Name")) ?: "", r->id8);
	if (write(fd, line, strlen(line)) < 0)
		warn_vm(r->spec.vm, "cannot write to %s: %s", r->log_path, strerror(errno));
	free(line);
	return fd;
}

/* `qckpt run VM -- GIVEN...` as PROC, detached; SOCK: the restore monitor
 * (NULL: nothing to load), HOLD_FD: its hold pipe or -1, ASIDE: pre-started. */
static int spawn_run(struct restore *r, uv_process_t *proc, uv_exit_cb on_exit,
		     const char *sock, int hold_fd, const char *aside)
{
	json_t *cl = json_object_get(r->vmstate, "CommandLine");
	json_t *given = json_object_get(cl, "Given");
	const char *cwd = json_string_value(json_object_get(cl, "WorkingDirectory"));
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	size_t nargs = 0, i;
	char **args = xcalloc(json_array_size(given) + 8, sizeof *args), **env;
	uv_process_options_t po = { 0 };
	uv_stdio_container_t stdio[4];
	int nullfd, logfd, rc;

	if (n <= 0)
		return -errno;
	exe[n] = '\0';
	args[nargs++] = exe;
	if (r->spec.registry_path != NULL) {
		args[nargs++] = "--registry";
		args[nargs++] = r->spec.registry_path;
	}
	args[nargs++] = "run";
	args[nargs++] = r->spec.vm;
	args[nargs++] = "--";
	for (i = 0; i < json_array_size(given); i++)
		args[nargs++] = (char *)json_string_value(json_array_get(given, i));
	nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	logfd = open_log(r);
	if (nullfd < 0 || logfd < 0) {
		rc = logfd < 0 ? logfd : -errno;
		goto out;
	}
	stdio[0].flags = UV_INHERIT_FD;
	stdio[0].data.fd = nullfd;
	stdio[1].flags = stdio[2].flags = UV_INHERIT_FD;
	stdio[1].data.fd = stdio[2].data.fd = logfd;
	stdio[3].flags = UV_INHERIT_FD;
	stdio[3].data.fd = hold_fd;
	env = spawn_env(sock, hold_fd >= 0, aside);
	po.file = exe;
	po.args = args;
	po.env = env;
	po.cwd = cwd;
	po.stdio = stdio;
	po.stdio_count = hold_fd >= 0 ? 4 : 3;
	po.exit_cb = on_exit;
	/* Its own session: the restored VM outlives this command and the
	 * terminal it ran on. */
	po.flags = UV_PROCESS_DETACHED;
	proc->data = r;
	rc = uv_spawn(r->loop, proc, &po);
	for (i = 0; env[i] != NULL; i++)
		if (env_is(env[i], RESTORE_SOCKET_ENV) || env_is(env[i], RESTORE_HOLD_ENV) ||
		    env_is(env[i], RESTORE_PRESTART_ENV))
			free(env[i]);
	free(env);
	if (rc < 0) {
		uv_close((uv_handle_t *)proc, NULL);
	} else {
		r->qemu_pid = proc->pid;
		verbose_vm(r->spec.vm, "relaunched through 'qckpt run' (pid %ld, +%llu ms), output in %s",
			   r->qemu_pid, (unsigned long long)(mono_ms() - r->start_ms), r->log_path);
		trace(r, "spawned 'qckpt run' (pid %ld)", r->qemu_pid);
	}
out:
	if (nullfd >= 0)
		close(nullfd);
	if (logfd >= 0)
		close(logfd);
	free(args);
	return rc;
}

/* Listen for the restored QEMU's monitor and start `qckpt run`; HELD: it
 * waits on a pipe for release_hold().  0, or -1 with the error set. */
static int relaunch(struct restore *r, int held)
{
	char *tmpl = runtime_dir();
	int fds[2] = { -1, -1 };
	int rc;

	if (mkdtemp(tmpl) == NULL) {
		fail(r, -errno, "cannot make a directory for the restore monitor (%s): %s",
		     tmpl, strerror(errno));
		free(tmpl);
		return -1;
	}
	r->sockdir = tmpl;
	r->sock = xasprintf("%s/monitor", r->sockdir);
	if (r->memory != NULL) {
		r->load.data = r;
		r->load.progress = &r->progress;
		r->load.warmed = r->sum_started;
		r->load_used = 1;
		rc = restore_load_listen(&r->load, r->loop, r->sock);
		if (rc < 0)
			return fail(r, rc, "cannot listen on %s: %s", r->sock, uv_strerror(rc)), -1;
	}
	if (held && (pipe2(fds, O_CLOEXEC) < 0 || uv_pipe_init(r->loop, &r->hold, 0) < 0)) {
		rc = -errno;
		if (fds[0] >= 0) {
			close(fds[0]);
			close(fds[1]);
		}
		return fail(r, rc, "cannot make a pipe for 'qckpt run': %s", strerror(-rc)), -1;
	}
	if (held) {
		r->hold_open = 1;
		uv_pipe_open(&r->hold, fds[1]);
	}
	rc = spawn_run(r, &r->proc, on_qemu_exit, r->memory ? r->sock : NULL, fds[0], NULL);
	if (fds[0] >= 0)
		close(fds[0]);
	if (rc < 0)
		return fail(r, rc, "cannot start 'qckpt run' for the VM: %s", uv_strerror(rc)), -1;
	r->proc_open = 1;
	return 0;
}

/* The old QEMU is gone: let the held run start the new one.  Closing the
 * pipe without the byte (restore_done) tells it to give up instead. */
static void release_hold(struct restore *r)
{
	uv_buf_t go = uv_buf_init("g", 1);

	if (!r->hold_open)
		return;
	if (uv_try_write((uv_stream_t *)&r->hold, &go, 1) != 1)
		fail(r, -EIO, "cannot tell 'qckpt run' to start QEMU");
	uv_close((uv_handle_t *)&r->hold, NULL);
	r->hold_open = 0;
	trace(r, "released 'qckpt run'");
}

static void enter_launch(struct restore *r)
{
	r->past_quit = 1;
	if (!r->proc_open && !r->proc_exited && relaunch(r, 0) < 0)
		return;
	release_hold(r);
	if (r->memory != NULL) {
		json_t *state = new_vm_state(r);

		restore_load_start(&r->load, r->spec.vm, r->spec.catalog_root,
				   json_object_get(state, "PendingRestore"), r->start_ns, on_load_done);
		json_decref(state);
	}
}

static void enter_load(struct restore *r)
{
	r->task.awaiting++; /* on_load_done */
}

/* ---- the pre-start: the new QEMU beside the old one --------------------- */

static int prestart_image(void *arg, const char *image, int writable, char **replacement,
			  char *err, size_t errlen)
{
	struct restore *r = arg;

	if (!writable)
		return 0; /* read-only: both QEMUs share the lock */
	for (size_t i = 0; i < r->ndisks; i++) {
		json_t *vd = vm_disk(r->vmstate, r->disks[i].device);

		if ((vd != NULL && chain_names(vd, image)) ||
		    (r->disks[i].original && chain_same_file(r->disks[i].original, image)))
			return 0; /* it gets a new overlay: nobody else writes that */
	}
	snprintf(err, errlen, "the disk image %s gets no new overlay from the checkpoint, and both QEMUs would write it",
		 image);
	return -1;
}

/* Why this VM's command cannot run twice at once, or NULL (the pre-start
 * goes ahead); WHY holds the phrase. */
static const char *prestart_blocker(struct restore *r, char *why, size_t len)
{
	json_t *cl = json_object_get(r->vmstate, "CommandLine");
	json_t *given = json_object_get(cl, "Given");
	const char *cwd = json_string_value(json_object_get(cl, "WorkingDirectory")) ?: "/";
	const char *off = getenv("QCKPT_RESTORE_SEQUENTIAL");
	const char *path = registry_unix_path(r->spec.monitor);
	struct cmdline c = { 0 };
	char *argv[1] = { NULL };
	size_t pos = 0;
	int pidfd, blocked = 0;

	if (off != NULL && off[0] != '\0' && strcmp(off, "0") != 0)
		return snprintf(why, len, "QCKPT_RESTORE_SEQUENTIAL is set"), why;
	if (path == NULL)
		return snprintf(why, len, "its QMP monitor %s is not a unix socket", r->spec.monitor), why;
	if (strlen(path) + 16 > sizeof ((struct sockaddr_un *)0)->sun_path)
		return snprintf(why, len, "its QMP socket's path %s leaves no room for a name beside it", path), why;
	pidfd = (int)syscall(SYS_pidfd_open, (pid_t)r->pid, 0);
	if (pidfd < 0)
		return snprintf(why, len, "its QEMU (pid %ld) cannot be watched (pidfd_open: %s)", r->pid,
				strerror(errno)), why;
	close(pidfd);
	cmdline_init(&c, argv, 0);
	for (size_t i = 0; i < json_array_size(given); i++)
		cmdline_append(&c, json_string_value(json_array_get(given, i)) ?: "", NULL);
	if (cmdline_find_unplaceable(&c, &pos, why, len) ||
	    cmdline_prestart_blocker(&c, path, why, len) ||
	    cmdline_rewrite_disks(&c, cwd, prestart_image, r, why, len) < 0)
		blocked = 1;
	cmdline_free(&c);
	return blocked ? why : NULL;
}

/* A running VM restored from a memory state: the new QEMU starts beside
 * the old one when its command allows it (restore.h). */
static void choose_path(struct restore *r)
{
	char why[1024];
	const char *path;
	char id[37];
	struct stat st;

	if (!r->running || r->memory == NULL || r->spec.no_relaunch)
		return;
	if (prestart_blocker(r, why, sizeof why) != NULL) {
		verbose_vm(r->spec.vm, "the old QEMU quits before the new one starts: %s", why);
		return;
	}
	path = registry_unix_path(r->spec.monitor);
	uuid_generate_str(id);
	r->prestart = 1;
	r->mon_real = xstrdup(path);
	r->mon_aside = xasprintf("%s.new-%.8s", path, id);
	/* QEMU unlinks, at its exit, the name it bound (getsockname), not
	 * the one its socket has now: a QEMU pre-started by an earlier
	 * restore unlinks its own former name beside the real one */
	r->old_bound = xstrdup(json_string_value(json_object_get(
		json_object_get(r->vmstate, "CommandLine"), "MonitorBoundAt")) ?: path);
	if (lstat(path, &st) == 0) {
		r->mon_dev = st.st_dev;
		r->mon_ino = st.st_ino;
	}
}

static void on_prestarted_exit(uv_process_t *proc, int64_t status, int signum)
{
	struct restore *r = proc->data;

	uv_close((uv_handle_t *)proc, NULL);
	r->preproc_open = 0;
	trace(r, "pre-started QEMU exited (%d)", signum ? 128 + signum : (int)status);
	if (r->preload_used && !r->preload.task.finished)
		restore_load_qemu_exited(&r->preload);
	if (r->prekilling) {
		r->prekilling = 0;
		task_arrived(&r->task);
	}
}

/* The new QEMU runs: the old one can be let go (PRELOAD ends). */
static void on_preload_connected(struct restore_load *load)
{
	struct restore *r = load->data;

	if (r->preload_awaited) {
		r->preload_awaited = 0;
		task_arrived(&r->task);
	}
}

static void switch_go(struct restore *r)
{
	r->load_went = 1;
	restore_load_go(&r->preload);
}

/* Everything set for the load: it starts if the old QEMU is gone (the
 * switch has begun; otherwise enter_switch starts it). */
static void on_preload_ready(struct restore_load *load)
{
	struct restore *r = load->data;

	if (r->state == RESTORE_SWITCH && !r->load_went && !r->fallback)
		switch_go(r);
}

/* Until the load begins, a failure is the pre-start's: the restore goes
 * on one after the other (the old QEMU quit first, or already gone).
 * After that it is the restore's (pending: `qckpt restore` again
 * completes it). */
static void on_preload_done(struct restore_load *load)
{
	struct restore *r = load->data;

	if (load->task.error_status != 0 && r->load_went) {
		fail(r, load->task.error_status, "%s", load->task.error);
	} else if (load->task.error_status != 0) {
		if (!r->fallback)
			snprintf(r->fallback_why, sizeof r->fallback_why, "%s", load->task.error);
		r->fallback = 1;
	} else {
		r->switched = 1;
		r->resume_ms = load->resume_ms;
		r->guest_running = load->guest_running;
	}
	restore_load_close(load);
	if (r->preload_awaited) {
		r->preload_awaited = 0;
		task_arrived(&r->task);
	}
}

/* A restore that fails before the old QEMU is quit puts its guest back
 * as it was (a restore killed by SIGKILL leaves it paused). */
static void undo_stop(struct task *task, void *arg)
{
	struct restore *r = arg;

	if (!r->old_closed)
		task_send_ex(task, "cont", NULL, -1, NULL, 1);
}

/*
 * The old guest stops as soon as the pre-start is decided (the probe
 * done): its state is about to be replaced, and under TCG its vCPU keeps
 * one of the host's CPUs from everything the restore does before the
 * load, and holds QEMU's lock against the restore's QMP commands (a busy
 * 1 GiB guest, bench-restore: 240 ms on QEMU 10.0 and 453 on 7.2 with it
 * running on, 191 and 267 stopped at the spawn; stopped at the probe, a
 * further ~45 ms less on 10.0 by hand).
 */
static void stop_old_guest(struct restore *r)
{
	const char *st = json_string_value(json_object_get(r->old_status, "status"));

	if (st == NULL || strcmp(st, "running") != 0)
		return;
	task_on_undo(&r->task, undo_stop, r);
	task_send(&r->task, "stop", NULL, NULL);
}

/* `qckpt run` with the restore monitor, not held, the QMP socket aside.
 * A failure here is the pre-start's: r->fallback. */
static void enter_prestart(struct restore *r)
{
	char *tmpl = runtime_dir();
	json_t *state;
	int rc;

	if (mkdtemp(tmpl) == NULL) {
		snprintf(r->fallback_why, sizeof r->fallback_why, "cannot make %s: %s", tmpl, strerror(errno));
		r->fallback = 1;
		free(tmpl);
		return;
	}
	r->presockdir = tmpl;
	r->presock = xasprintf("%s/monitor", r->presockdir);
	r->preload.data = r;
	r->preload.progress = &r->progress;
	r->preload.on_ready = on_preload_ready;
	r->preload.on_connected = on_preload_connected;
	r->preload.warmed = r->sum_started;
	r->preload_used = 1;
	rc = restore_load_listen(&r->preload, r->loop, r->presock);
	if (rc == 0)
		rc = spawn_run(r, &r->preproc, on_prestarted_exit, r->presock, -1, r->mon_aside);
	if (rc < 0) {
		snprintf(r->fallback_why, sizeof r->fallback_why, "cannot start 'qckpt run': %s", uv_strerror(rc));
		r->fallback = 1;
		return;
	}
	r->preproc_open = 1;
	r->prestarted = 1;
	verbose_vm(r->spec.vm, "the new QEMU starts beside the old one (pid %ld), QMP on %s until the switch",
		   r->qemu_pid, r->mon_aside);
	state = new_vm_state(r);
	restore_load_start(&r->preload, r->spec.vm, r->spec.catalog_root,
			   json_object_get(state, "PendingRestore"), r->start_ns, on_preload_done);
	json_decref(state);
}

/* Until the new QEMU connects to its restore monitor: it has started
 * (its command line parsed, its chardevs made); the rest of its start
 * (the machine, its RAM, its disks) goes on while the old QEMU quits,
 * in the RAM that one gives back.  A failure from here until the load
 * begins is still the pre-start's (on_preload_done). */
static void enter_preload(struct restore *r)
{
	if (r->fallback || r->preload.task.finished || r->preload.connected)
		return;
	r->preload_awaited = 1;
	r->task.awaiting++;
}

/* The old QEMU has let go of the VM's QMP socket path: the new QEMU's
 * socket takes it (a bound socket keeps working under its new name). */
static void move_monitor(struct restore *r)
{
	if (r->mon_moved)
		return;
	r->mon_moved = 1;
	if (rename(r->mon_aside, r->mon_real) < 0)
		warn_vm(r->spec.vm, "the restored QEMU serves QMP on %s, not %s: %s; rename it by hand",
			r->mon_aside, r->mon_real, strerror(errno));
	else
		trace(r, "QMP socket %s moved to %s", r->mon_aside, r->mon_real);
	if (r->monwatch_open) {
		uv_close((uv_handle_t *)&r->monwatch, NULL);
		r->monwatch_open = 0;
	}
	task_arrived(&r->task);
}

/* Whether the VM's socket path no longer holds the old QEMU's socket. */
static int old_socket_gone(struct restore *r)
{
	struct stat st;

	return lstat(r->mon_real, &st) < 0 || st.st_dev != r->mon_dev || st.st_ino != r->mon_ino;
}

static void on_monitor_dir(uv_fs_event_t *handle, const char *filename, int events, int status)
{
	struct restore *r = handle->data;

	if (!r->mon_moved && old_socket_gone(r)) {
		trace(r, "old QEMU unlinked %s", r->mon_real);
		move_monitor(r);
	}
}

/* The handover's exit watch: the socket moves too, if it has not yet. */
static void on_old_gone(uv_poll_t *poll, int status, int events)
{
	struct restore *r = poll->data;

	move_monitor(r);
	on_pid_exit(poll, status, events);
}

/*
 * The handover, as soon as the new QEMU has connected: quit the old QEMU
 * and wait for its process to end, so that the kernel has its RAM back
 * before the new QEMU builds its machine and loads into fresh RAM.
 * Loading beside the running QEMU instead took 3-5x as long on this
 * project's machines (a VM whose host takes back free memory: a page not
 * touched for a while costs a fault in the host too), and quitting only
 * once the new QEMU was set up for the load cost an idle 1 GiB guest
 * 10-20 ms more (its machine's first touches in cold RAM, then the exit
 * waited for).  The socket moves once the old QEMU has
 * unlinked its own (its chardev cleanup, before the kernel frees its RAM)
 * or has exited, whichever comes first.  A QEMU that bound elsewhere
 * (itself pre-started) never unlinks the real path: it moves at once.
 * From the quit on there is no way back: the restore is pending.
 */
static void enter_handover(struct restore *r)
{
	char *dir = dir_name(r->mon_real);
	int bound_here = strcmp(r->old_bound, r->mon_real) == 0;
	int watch = bound_here && r->mon_ino != 0 && !old_socket_gone(r);

	task_forget_undo(&r->task);
	r->past_quit = 1;
	r->task.awaiting++; /* move_monitor */
	watch_old_exit(r, on_old_gone);
	if (watch && uv_fs_event_init(r->loop, &r->monwatch) == 0) {
		r->monwatch.data = r;
		r->monwatch_open = 1;
		if (uv_fs_event_start(&r->monwatch, on_monitor_dir, dir, 0) < 0)
			watch = 0;
	}
	free(dir);
	verbose_vm(r->spec.vm, "quitting the old QEMU (pid %ld)", r->pid);
	task_send_ex(&r->task, "quit", NULL, -1, NULL, 1);
	/* it unlinks nothing of the new one's, or is gone; otherwise (the
	 * path holds another file) only its exit makes the path safe */
	if (!bound_here || r->pidfd < 0)
		move_monitor(r);
}

/* The old QEMU is gone: the new one loads once ready, and the guest goes
 * on. */
static void enter_switch(struct restore *r)
{
	r->preload_awaited = 1;
	r->task.awaiting++;
	if (r->preload.state == LOAD_READY)
		switch_go(r);
}

/* The pre-start failed and its QEMU is gone: one after the other. */
static void prestart_fall_back(struct restore *r)
{
	const char *log = r->log_path ? r->log_path : "the VM's qemu.log";

	if (r->past_quit)
		warn_vm(r->spec.vm, "the new QEMU failed as it started (%s; its output is in %s); starting it again now that the old one is gone",
			r->fallback_why, log);
	else
		warn_vm(r->spec.vm, "the new QEMU could not start beside the old one (%s; its output is in %s); restoring one after the other",
			r->fallback_why, log);
	if (r->preload_used)
		restore_load_close(&r->preload);
	if (r->prestarted)
		unlink(r->mon_aside);
	r->prestart = 0;
}

/* ---- the memory state's checksum ----------------------------------------- */

static void work_sum(uv_work_t *req)
{
	struct restore *r = req->data;

	r->sum_rc = memsum_path(json_string_value(json_object_get(r->memory, "Path")), r->sum_got,
				NULL);
}

static void after_sum(uv_work_t *req, int status)
{
	struct restore *r = req->data;
	const char *path = json_string_value(json_object_get(r->memory, "Path"));
	const char *want = json_string_value(json_object_get(r->memory, "Checksum"));

	r->sum_running = 0;
	if (r->finished)
		return;
	trace(r, "memory state checksum %s", r->sum_rc == 0 ? r->sum_got : strerror(-r->sum_rc));
	if (status < 0 || r->sum_rc < 0)
		fail(r, status < 0 ? status : r->sum_rc, "cannot read the memory state %s to check it: %s; nothing changed",
		     path, status < 0 ? uv_strerror(status) : strerror(-r->sum_rc));
	else if (strcmp(r->sum_got, want) != 0)
		fail(r, -EINVAL, "the memory state %s does not match the checksum recorded when the checkpoint was taken (%s, now %s): it was changed or damaged since; nothing changed (restore another checkpoint)",
		     path, want, r->sum_got);
	else
		verbose_vm(r->spec.vm, "the memory state matches its checksum (read in %llu ms)",
			   (unsigned long long)(mono_ms() - r->sum_start_ms));
	if (r->sum_awaited) {
		r->sum_awaited = 0;
		task_arrived(&r->task);
	}
}

/* From the start, beside everything up to the point of no return: QEMU's
 * start takes 30-300 ms, a 1 GiB guest's state 30-200 ms to read.  Not
 * read at all when the file still has the stamp it was hashed with
 * (memsum.h), unless --verify. */
static void start_sum(struct restore *r)
{
	const char *want = json_string_value(json_object_get(r->memory, "Checksum"));

	if (r->memory == NULL || json_object_get(r->memory, "Path") == NULL)
		return;
	if (want == NULL) {
		verbose_vm(r->spec.vm, "the checkpoint recorded no checksum of its memory state (an older qckpt took it): a damaged file is found only by QEMU's load, after the old QEMU quit");
		return;
	}
	if (!memsum_known(want)) {
		warn_vm(r->spec.vm, "the memory state's checksum %s is of a kind this qckpt does not know: not checked", want);
		return;
	}
	if (!r->spec.verify &&
	    memsum_stamp_matches(json_object_get(r->memory, "ChecksumStamp"), &r->memory_st)) {
		verbose_vm(r->spec.vm, "the memory state is unchanged since its checksum was taken (same inode, modification and change times): not read again (--verify reads it)");
		return;
	}
	r->sum_work.data = r;
	r->sum_start_ms = mono_ms();
	if (uv_queue_work(r->loop, &r->sum_work, work_sum, after_sum) == 0)
		r->sum_running = r->sum_started = 1;
}

/* Whether the step must wait for the checksum before NEXT: the old QEMU
 * is quit there (or, for a VM not running, vm.json is committed). */
static int await_sum(struct restore *r, enum restore_state next)
{
	if (!r->sum_running)
		return 0;
	if (next != RESTORE_HANDOVER && next != RESTORE_QUIT && (next != RESTORE_COMMIT || r->running))
		return 0;
	trace(r, "waiting for the memory state's checksum");
	r->sum_awaited = 1;
	r->task.awaiting++;
	return 1;
}

/* ---- the machine ---------------------------------------------------------- */

static enum restore_state restore_next(const struct restore *r)
{
	switch (r->state) {
	case RESTORE_FIND:     return RESTORE_CONNECT;
	case RESTORE_CONNECT:  return r->running ? RESTORE_PROBE : RESTORE_OVERLAYS;
	case RESTORE_PROBE:    return RESTORE_OVERLAYS;
	case RESTORE_OVERLAYS: return RESTORE_COMMIT;
	case RESTORE_COMMIT:   return !r->running ? (r->spec.no_relaunch ? RESTORE_DONE : RESTORE_LAUNCH) :
				      r->prestart ? RESTORE_PRESTART : RESTORE_QUIT;
	case RESTORE_PRESTART: return r->fallback ? RESTORE_QUIT : RESTORE_PRELOAD;
	case RESTORE_PRELOAD:  return r->fallback ? RESTORE_QUIT : RESTORE_HANDOVER;
	case RESTORE_HANDOVER: return r->fallback ? RESTORE_LAUNCH : RESTORE_SWITCH;
	case RESTORE_SWITCH:   return r->fallback ? RESTORE_LAUNCH : RESTORE_DONE;
	case RESTORE_QUIT:     return r->spec.no_relaunch ? RESTORE_DONE : RESTORE_LAUNCH;
	case RESTORE_LAUNCH:   return r->memory ? RESTORE_LOAD : RESTORE_DONE;
	default:               return RESTORE_DONE;
	}
}

/* What the user sees of each state (progress.h). */
static void restore_enter(struct restore *r, enum restore_state state)
{
	char stop_name[32];

	r->state = state;
	task_phase(&r->task, restore_states[state].phase);
	trace(r, "restore: %s", restore_states[state].name);
	/* testing: QCKPT_TEST_STOP_AT=restore-STATE (log.h) */
	snprintf(stop_name, sizeof stop_name, "restore-%s", restore_states[state].name);
	log_test_stop_at("QCKPT_TEST_STOP_AT", r->spec.vm, stop_name);
	switch (state) {
	case RESTORE_CONNECT:  enter_connect(r); break;
	case RESTORE_PROBE:    enter_probe(r); break;
	case RESTORE_OVERLAYS: enter_overlays(r); break;
	case RESTORE_COMMIT:   enter_commit(r); break;
	case RESTORE_PRESTART: enter_prestart(r); break;
	case RESTORE_PRELOAD:  enter_preload(r); break;
	case RESTORE_HANDOVER: enter_handover(r); break;
	case RESTORE_SWITCH:   enter_switch(r); break;
	case RESTORE_QUIT:     enter_quit(r); break;
	case RESTORE_LAUNCH:   enter_launch(r); break;
	case RESTORE_LOAD:     enter_load(r); break;
	case RESTORE_DONE:     task_finish(&r->task); return;
	default:               return;
	}
	task_wait(&r->task);
}

static void restore_step(struct task *task)
{
	struct restore *r = task->data;

	if (r->state == RESTORE_PROBE && task->error_status == 0 && r->memory != NULL)
		check_caps(r);
	if (r->state == RESTORE_PROBE && r->prestart && json_array_size(r->old_jobs) > 0) {
		verbose_vm(r->spec.vm, "the old QEMU quits before the new one starts: a block job runs in it (%s)",
			   json_string_value(json_object_get(json_array_get(r->old_jobs, 0), "device")) ?: "?");
		r->prestart = 0;
	}
	/* the old guest stops as soon as the pre-start is decided */
	if (r->state == RESTORE_PROBE && task->error_status == 0 && r->prestart)
		stop_old_guest(r);
	if (r->state == RESTORE_QUIT || r->state == RESTORE_HANDOVER ||
	    (r->state == RESTORE_COMMIT && !r->running)) {
		/* the old QEMU is gone: no way back */
		task_forget_undo(task);
		if (task->error_status == 0)
			drop_old_ram(r);
	}
	if (task->error_status == 0 && r->interrupted && !r->past_quit && !r->switched)
		fail(r, -EINTR, "interrupted; nothing changed");
	if ((task->error_status != 0 || r->fallback) && r->preproc_open && !r->switched) {
		/* a pre-started QEMU that will not be the VM's: ended, and
		 * waited for, before anything goes on */
		if (!r->prekilling) {
			r->prekilling = 1;
			r->task.awaiting++;
			uv_process_kill(&r->preproc, SIGKILL);
		}
		return;
	}
	if (task->error_status != 0 && r->proc_open && !r->killing) {
		/* A QEMU whose load failed is of no use: end it, and be there
		 * when it exits, so nothing is left half started. */
		r->killing = 1;
		r->task.awaiting++;
		uv_process_kill(&r->proc, SIGKILL);
		return;
	}
	if (task->error_status != 0 && r->overlays_running > r->overlays_awaited) {
		/* the undo removes them: not before they are written */
		await_overlays(r);
		task_wait(task);
		return;
	}
	if (task->error_status != 0) {
		task_fail(task);
		return;
	}
	if (r->fallback && r->prestart)
		prestart_fall_back(r);
	if (await_sum(r, restore_next(r)))
		return;
	restore_enter(r, restore_next(r));
}

static void restore_event(struct task *task, const char *name, json_t *data)
{
}

static void restore_disconnect(struct task *task)
{
	struct restore *r = task->data;

	if (r->state == RESTORE_QUIT) {
		trace(r, "old QEMU closed its monitor");
		if (r->quit_on_disconnect) {
			r->quit_on_disconnect = 0;
			task_arrived(task);
		}
		return;
	}
	if (r->state == RESTORE_HANDOVER || r->state == RESTORE_SWITCH) {
		trace(r, "old QEMU closed its monitor");
		r->old_closed = 1;
		return;
	}
	if (r->state < RESTORE_QUIT)
		fail(r, QMP_ECLOSED, "QEMU closed its monitor (did it exit?); nothing changed");
}

static void restore_done(struct task *task)
{
	struct restore *r = task->data;

	r->finished = 1;
	if (r->conn_used)
		vmconn_close(&r->conn, NULL);
	r->conn_used = 0;
	if (r->load_used)
		restore_load_close(&r->load);
	if (r->pidpoll_open) {
		uv_close((uv_handle_t *)&r->pidpoll, NULL);
		close(r->pidfd);
		r->pidpoll_open = 0;
	}
	if (r->hold_open) { /* a held run that must not go on */
		uv_close((uv_handle_t *)&r->hold, NULL);
		r->hold_open = 0;
	}
	/* Closing the handle leaves the detached QEMU running. */
	if (r->proc_open) {
		uv_close((uv_handle_t *)&r->proc, NULL);
		r->proc_open = 0;
	}
	if (r->preload_used)
		restore_load_close(&r->preload);
	if (r->monwatch_open) {
		uv_close((uv_handle_t *)&r->monwatch, NULL);
		r->monwatch_open = 0;
	}
	if (r->preproc_open) {
		uv_close((uv_handle_t *)&r->preproc, NULL);
		r->preproc_open = 0;
	}
	if (r->prestarted && !r->switched)
		unlink(r->mon_aside); /* its QEMU was ended */
	if (r->sock != NULL)
		unlink(r->sock);
	if (r->sockdir != NULL)
		rmdir(r->sockdir);
	if (r->presock != NULL)
		unlink(r->presock);
	if (r->presockdir != NULL)
		rmdir(r->presockdir);
	if (task->error_status == 0 && r->memory == NULL)
		r->resume_ms = (long long)(mono_ms() - r->start_ms);
	r->on_done(r);
}

static const struct task_ops restore_ops = {
	.step = restore_step,
	.event = restore_event,
	.disconnect = restore_disconnect,
	.done = restore_done,
};

void restore_start(struct restore *r, uv_loop_t *loop,
		   void (*on_done)(struct restore *r))
{
	r->loop = loop;
	r->on_done = on_done;
	r->pidfd = -1;
	r->start_ns = r->start_ms ? r->start_ms * 1000000 : uv_hrtime();
	r->start_ms = r->start_ns / 1000000;
	task_init(&r->task, loop, r->spec.vm, &restore_ops, r);
	progress_start(&r->progress, loop, r->spec.vm);
	r->task.progress = &r->progress;
	r->state = RESTORE_FIND;
	task_phase(&r->task, restore_states[RESTORE_FIND].phase);
	if (restore_find(r) < 0) {
		task_finish(&r->task);
		return;
	}
	start_sum(r);
	restore_step(&r->task);
}

void restore_interrupt(struct restore *r)
{
	r->interrupted = 1;
}

void restore_free(struct restore *r)
{
	json_decref(r->record);
	json_decref(r->vmstate);
	json_decref(r->caps);
	for (size_t i = 0; i < r->ndisks; i++) {
		struct restore_disk *d = &r->disks[i];

		free(d->device);
		free(d->frozen);
		free(d->format);
		free(d->overlay);
		free(d->original);
		json_decref(d->chain);
	}
	free(r->disks);
	free(r->ram_frozen);
	free(r->ram_clone);
	free(r->ram_old);
	free(r->ram_dir);
	if (r->load_used)
		restore_load_free(&r->load);
	if (r->preload_used)
		restore_load_free(&r->preload);
	free(r->presockdir);
	free(r->presock);
	free(r->mon_real);
	free(r->mon_aside);
	free(r->old_bound);
	json_decref(r->old_status);
	json_decref(r->old_jobs);
	free(r->sockdir);
	free(r->sock);
	free(r->log_path);
	free(r->spec.vm);
	free(r->spec.monitor);
	free(r->spec.expect_name);
	free(r->spec.catalog_root);
	free(r->spec.overlay_dir);
	free(r->spec.checkpoint);
	free(r->spec.registry_path);
	progress_free(&r->progress);
	free(r);
}
