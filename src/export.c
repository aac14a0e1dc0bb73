/*
 * export.c: one checkpoint exported to a directory, as a task (see
 * export.h for what DIR holds).  export_step() reads top to bottom:
 *
 *   check (record's files there, DIR absent or empty) -> copy: one
 *   `qemu-img convert` per disk, the memory file and a ram-file
 *   checkpoint's RAM file, all at once -> write checkpoint.json,
 *   qemu-command.json, README -> done.
 *
 * qemu-img runs as libuv child processes with -U (force-share): the frozen
 * images sit under the running VM's overlays, which QEMU holds open, and
 * never change, so reading them while the VM runs is safe and the VM is
 * not paused.  The progress board (progress.h) gets qemu-img -p's percent
 * of each disk's virtual size, summed, and the RAM file's bytes copied
 * (ramfile.h: a reflink, or its data in pieces in the thread pool).
 * Every file written is removed again when anything fails.
 */
#include <errno.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "chain.h"
#include "cmdline.h"
#include "export.h"
#include "ramfile.h"
#include "log.h"
#include "util.h"

static void fail(struct export *e, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(struct export *e, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	task_vset_error(&e->task, status, fmt, ap);
	va_end(ap);
	/* Nothing is kept: a RAM file's copy (GiBs) need not go on. */
	if (e->ram_started && !e->ram_done)
		ramfile_copy_cancel(&e->ram);
}

/* A device name as a file name: "drive-virtio0" stays, "a/b" does not. */
static char *file_for(const char *device, size_t i)
{
	char *s = xasprintf("%s.qcow2", device[0] ? device : "disk");

	for (char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
			*p = '_';
	if (s[0] == '.') {
		char *t = xasprintf("disk%zu%s", i, s);

		free(s);
		s = t;
	}
	return s;
}

/* ---- checking (touches nothing but DIR) ------------------------------- */

static int dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int empty = 1;

	if (d == NULL)
		return 0;
	while (empty && (de = readdir(d)) != NULL)
		empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
	closedir(d);
	return empty;
}

static int check_dir(struct export *e)
{
	struct stat st;
	int rc;

	if (stat(e->dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return fail(e, -ENOTDIR, "%s is not a directory; give a new or empty directory", e->dir), -1;
		if (!dir_is_empty(e->dir))
			return fail(e, -EEXIST, "%s is not empty; give a new or empty directory (an export never mixes with other files)", e->dir), -1;
		return 0;
	}
	if (errno != ENOENT)
		return fail(e, -errno, "%s: %s", e->dir, strerror(errno)), -1;
	/* 0700: the memory state holds everything the guest had in RAM. */
	if ((rc = mkdir_p(e->dir, 0700)) < 0)
		return fail(e, rc, "cannot create %s: %s", e->dir, strerror(-rc)), -1;
	e->made_dir = 1;
	return 0;
}

/* The disk's size as the guest sees it: a qcow2 header's size field
 * (big-endian at byte 24), else the file's size; -1 unknown. */
static long long virtual_size(const char *image, const char *format)
{
	unsigned char h[32];
	struct stat st;
	long long size = 0;
	FILE *f;

	if (strcmp(format, "qcow2") != 0)
		return stat(image, &st) == 0 ? (long long)st.st_size : -1;
	f = fopen(image, "rb");
	if (f == NULL)
		return -1;
	if (fread(h, 1, sizeof h, f) != sizeof h || memcmp(h, "QFI\xfb", 4) != 0)
		size = -1;
	fclose(f);
	for (int i = 24; size >= 0 && i < 32; i++)
		size = (long long)((unsigned long long)size << 8 | h[i]);
	return size;
}

/* A ram-file checkpoint: the guest's RAM is a second file, frozen (only
 * ever read), as long as the record says. */
static int check_ram_file(struct export *e, json_t *mem)
{
	const char *path = json_string_value(json_object_get(mem, "RamFile"));
	json_int_t bytes = json_integer_value(json_object_get(mem, "RamBytes"));
	struct stat st;

	if (strcmp(json_string_value(json_object_get(mem, "Kind")) ?: "", RAMFILE_KIND) != 0)
		return 0;
	if (path == NULL || stat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return fail(e, -ENOENT, "the checkpoint's RAM file %s is missing; nothing exported",
			    path ? path : "(none recorded)"), -1;
	if (bytes > 0 && st.st_size != bytes)
		return fail(e, -EINVAL, "the checkpoint's RAM file %s has %lld bytes, the checkpoint recorded %lld: it was changed; nothing exported",
			    path, (long long)st.st_size, (long long)bytes), -1;
	e->ram_frozen = path;
	e->ram_size = st.st_size;
	return 0;
}

static int check_files(struct export *e)
{
	json_t *rd, *mem = json_object_get(e->record, "MemoryState");
	const char *mpath = json_string_value(json_object_get(mem, "Path"));
	json_int_t bytes = json_integer_value(json_object_get(mem, "Bytes"));
	struct stat st;
	size_t i;

	if (catalog_record_qemu_host(e->record) != NULL)
		return fail(e, -ENOTSUP, "the checkpoint was taken through a network monitor: its files are on %s, not here; nothing exported: export it on that host, or copy its CheckpointImages and MemoryState there by hand",
			    catalog_record_qemu_host(e->record)), -1;
	e->ndisks = json_array_size(json_object_get(e->record, "Disks"));
	e->disks = xcalloc(e->ndisks + 1, sizeof *e->disks);
	json_array_foreach(json_object_get(e->record, "Disks"), i, rd) {
		struct export_disk *d = &e->disks[i];
		const char *img = json_string_value(json_object_get(rd, "CheckpointImage"));

		d->device = xstrdup(json_string_value(json_object_get(rd, "Device")) ?: "");
		d->format = xstrdup(json_string_value(json_object_get(rd, "Format")) ?: "qcow2");
		d->image = img ? xstrdup(img) : NULL;
		d->file = file_for(d->device, i);
		for (size_t k = 0; k < i; k++)
			if (strcmp(e->disks[k].file, d->file) == 0) {
				free(d->file);
				d->file = xasprintf("disk%zu.qcow2", i);
			}
		if (img == NULL || stat(img, &st) < 0 || !S_ISREG(st.st_mode))
			return fail(e, -ENOENT, "disk %s: the checkpoint's image %s is missing; nothing exported",
				    d->device, img ? img : "(none recorded)"), -1;
		d->size = virtual_size(img, d->format);
	}
	if (mem == NULL)
		return 0;
	if (check_ram_file(e, mem) < 0)
		return -1;
	if (mpath == NULL || stat(mpath, &st) < 0)
		return fail(e, -ENOENT, "the memory state %s is missing; nothing exported",
			    mpath ? mpath : "(none recorded)"), -1;
	if (bytes > 0 && st.st_size != bytes)
		return fail(e, -EINVAL, "the memory state %s has %lld bytes, the checkpoint recorded %lld; nothing exported",
			    mpath, (long long)st.st_size, (long long)bytes), -1;
	return 0;
}

/* ---- copying ------------------------------------------------------------ */

/* The board's figures: each disk's percent of its virtual size and the
 * bytes of the RAM file gone through, summed (none while a size is
 * unknown); "copying memory" once the disks are done and the memory
 * files are not. */
static void show_progress(struct export *e)
{
	long long done = e->ram_frozen ? e->ram.done : 0, total = e->ram_size;
	int copying = 0;

	for (size_t i = 0; i < e->ndisks; i++) {
		struct export_disk *d = &e->disks[i];

		copying |= !d->exited;
		if (d->size < 0 || total < 0) {
			total = -1;
			continue;
		}
		total += d->size;
		done += (long long)((double)d->size * d->percent / 100.0);
	}
	if (copying) {
		if (total > 0)
			progress_count(&e->prog, done, total);
	} else if ((e->memory_path != NULL && !e->memory_done) || (e->ram_started && !e->ram_done)) {
		task_phase(&e->task, "copying memory");
		if (e->ram_started && total > 0)
			progress_count(&e->prog, done, total);
	}
}

static void on_out_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	struct export_disk *d = h->data;

	if (d->len >= sizeof d->buf - 1)
		d->len = 0;
	buf->base = d->buf + d->len;
	buf->len = sizeof d->buf - 1 - d->len;
}

/* qemu-img -p writes "    (12.34/100%)\r"; keep the last figure. */
static void on_out_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct export_disk *d = s->data;
	struct export *e = d->proc.data;
	char *p;

	if (n < 0) {
		uv_close((uv_handle_t *)s, NULL);
		d->out_open = 0;
		return;
	}
	d->len += (size_t)n;
	d->buf[d->len] = '\0';
	p = strrchr(d->buf, '(');
	if (p != NULL && strstr(p, "/100%)") != NULL) {
		d->percent = strtod(p + 1, NULL);
		d->len = 0;
	}
	show_progress(e);
}

static void on_convert_exit(uv_process_t *proc, int64_t status, int signum)
{
	struct export *e = proc->data;
	struct export_disk *d = NULL;

	for (size_t i = 0; i < e->ndisks; i++)
		if (&e->disks[i].proc == proc)
			d = &e->disks[i];
	if (status != 0 || signum != 0)
		fail(e, -EIO, "disk %s: 'qemu-img convert' of %s to %s failed (%s %d; its message is above); nothing exported",
		     d->device, d->image, d->path, signum ? "signal" : "exit", signum ? signum : (int)status);
	else
		d->percent = 100;
	d->exited = 1;
	show_progress(e);
	uv_close((uv_handle_t *)proc, NULL);
	task_arrived(&e->task);
}

static int spawn_convert(struct export *e, struct export_disk *d)
{
	char *args[16];
	size_t n = 0;
	uv_process_options_t po = { 0 };
	uv_stdio_container_t stdio[3] = {
		{ .flags = UV_IGNORE }, { .flags = UV_IGNORE },
		{ .flags = UV_INHERIT_FD, .data.fd = 2 },
	};
	int rc;

	args[n++] = (char *)qemu_img_program();
	args[n++] = "convert";
	/* The frozen image is a backing file of the running VM: share it. */
	args[n++] = "-U";
	if (e->progress)
		args[n++] = "-p";
	if (e->compress)
		args[n++] = "-c";
	args[n++] = "-f";
	args[n++] = d->format;
	args[n++] = "-O";
	args[n++] = "qcow2";
	args[n++] = d->image;
	args[n++] = d->path;
	args[n] = NULL;
	if (e->progress) {
		uv_pipe_init(e->loop, &d->out, 0);
		d->out.data = d;
		d->out_open = 1;
		stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
		stdio[1].data.stream = (uv_stream_t *)&d->out;
	}
	po.file = args[0];
	po.args = args;
	po.stdio = stdio;
	po.stdio_count = 3;
	po.exit_cb = on_convert_exit;
	d->proc.data = e;
	rc = uv_spawn(e->loop, &d->proc, &po);
	if (rc < 0) {
		uv_close((uv_handle_t *)&d->proc, NULL);
		if (d->out_open) {
			uv_close((uv_handle_t *)&d->out, NULL);
			d->out_open = 0;
		}
		return fail(e, rc, "cannot run %s: %s; nothing exported (install qemu-utils, or set QEMU_IMG)",
			    args[0], uv_strerror(rc)), -1;
	}
	d->written = 1;
	if (d->out_open)
		uv_read_start((uv_stream_t *)&d->out, on_out_alloc, on_out_read);
	e->task.awaiting++;
	return 0;
}

static void on_memory_copied(uv_fs_t *req)
{
	struct export *e = req->data;

	if (req->result < 0)
		fail(e, (int)req->result, "cannot copy the memory state %s to %s: %s; nothing exported",
		     req->path, e->memory_path, uv_strerror((int)req->result));
	else
		e->memory_done = 1;
	uv_fs_req_cleanup(req);
	task_arrived(&e->task);
}

static void on_ram_progress(struct ramfile_copy *c)
{
	show_progress(c->data);
}

static void on_ram_copied(struct ramfile_copy *c)
{
	struct export *e = c->data;

	if (c->rc < 0)
		fail(e, c->rc, "cannot copy the RAM file %s to %s: %s; nothing exported",
		     c->src, c->dst, strerror(-c->rc));
	else
		e->ram_done = 1;
	if (c->rc == 0)
		verbose_vm(e->vm, "RAM file %s %s", c->dst,
			   c->reflinked ? "reflinked" : "copied (the data, not the holes)");
	show_progress(e);
	task_arrived(&e->task);
}

/* The frozen RAM file, read only, beside the disks' copies. */
static void start_ram_copy(struct export *e)
{
	int rc;

	e->ram_path = xasprintf("%s/" EXPORT_RAM, e->dir);
	rc = ramfile_copy_start(e->loop, &e->ram, e->ram_frozen, e->ram_path, on_ram_progress,
				on_ram_copied, e);
	if (rc < 0) {
		fail(e, rc, "cannot copy the RAM file %s: %s; nothing exported", e->ram_frozen, uv_strerror(rc));
		return;
	}
	e->ram_started = 1;
	e->task.awaiting++;
}

static void enter_copy(struct export *e)
{
	const char *mpath = json_string_value(json_object_get(json_object_get(e->record, "MemoryState"), "Path"));
	int rc;

	task_phase(&e->task, "copying disks");
	for (size_t i = 0; i < e->ndisks; i++) {
		e->disks[i].path = xasprintf("%s/%s", e->dir, e->disks[i].file);
		if (spawn_convert(e, &e->disks[i]) < 0)
			return;
	}
	if (mpath == NULL)
		return;
	if (e->ram_frozen != NULL)
		start_ram_copy(e);
	e->memory_path = xasprintf("%s/" EXPORT_MEMORY, e->dir);
	e->copy_req.data = e;
	/* A reflink where the file system can (instant, no space), else a
	 * copy in libuv's thread pool. */
	rc = uv_fs_copyfile(e->loop, &e->copy_req, mpath, e->memory_path,
			    UV_FS_COPYFILE_EXCL | UV_FS_COPYFILE_FICLONE, on_memory_copied);
	if (rc < 0)
		fail(e, rc, "cannot copy the memory state %s: %s; nothing exported", mpath, uv_strerror(rc));
	else
		e->task.awaiting++;
	e->memory_written = 1;
}

/* ---- what DIR says about itself ----------------------------------------- */

static json_t *vm_disk(json_t *state, const char *device)
{
	size_t i;
	json_t *d;

	json_array_foreach(json_object_get(state, "Disks"), i, d)
		if (strcmp(json_string_value(json_object_get(d, "Device")) ?: "", device) == 0)
			return d;
	return NULL;
}

/* An image of the recorded command: one of the checkpoint's disks (any
 * image of its chain, as `qckpt run` reads it) becomes its exported file;
 * another writable image cannot come along. */
static int on_command_image(void *arg, const char *image, int writable, char **replacement,
			    char *err, size_t errlen)
{
	struct export *e = arg;

	for (size_t i = 0; i < e->ndisks; i++) {
		json_t *vd = vm_disk(e->vmstate, e->disks[i].device);

		if ((vd != NULL && chain_names(vd, image)) || chain_same_file(image, e->disks[i].image)) {
			*replacement = xstrdup(e->disks[i].file);
			return 0;
		}
	}
	if (writable) {
		snprintf(err, errlen, "the VM's command opens %s writable, which is not one of the checkpoint's disks", image);
		return -1;
	}
	return 0;
}

/* The recorded command, on the exported disks and without the old VM's
 * QMP sockets; NULL when the VM was not launched through `qckpt run`. */
static json_t *export_command(struct export *e)
{
	json_t *cl = json_object_get(e->vmstate, "CommandLine");
	json_t *given = json_object_get(cl, "Given"), *out;
	const char *cwd = json_string_value(json_object_get(cl, "WorkingDirectory")) ?: "/";
	char **argv, err[1024];
	struct cmdline c;
	size_t n = json_array_size(given);

	if (!json_is_array(given) || n == 0)
		return NULL;
	argv = xcalloc(n + 1, sizeof *argv);
	for (size_t i = 0; i < n; i++)
		argv[i] = (char *)(json_string_value(json_array_get(given, i)) ?: "");
	cmdline_init(&c, argv, n);
	free(argv);
	if (cmdline_rewrite_disks(&c, cwd, on_command_image, e, err, sizeof err) < 0) {
		warn_vm(e->vm, "%s: the export has no QEMU command (qemu-command.json)", err);
		cmdline_free(&c);
		return NULL;
	}
	cmdline_drop_qmp(&c);
	out = json_pack("{s:o, s:s, s:O?}", "Given", cmdline_to_json(&c), "WorkingDirectory", cwd,
			"QemuVersion", json_object_get(e->record, "QemuVersion"));
	cmdline_free(&c);
	return out;
}

static json_t *export_record(struct export *e)
{
	json_t *r = json_deep_copy(e->record), *disks = json_array(), *mem;
	char host[256] = "localhost", when[40];

	gethostname(host, sizeof host);
	host[sizeof host - 1] = '\0';
	format_iso8601(wall_ms(), when, sizeof when);
	for (size_t i = 0; i < e->ndisks; i++)
		json_array_append_new(disks, json_pack("{s:s, s:s, s:s}", "Device", e->disks[i].device,
						       "CheckpointImage", e->disks[i].file, "Format", "qcow2"));
	json_object_set_new(r, "Disks", disks);
	if ((mem = json_object_get(r, "MemoryState")) != NULL)
		json_object_set_new(mem, "Path", json_string(EXPORT_MEMORY));
	if (e->ram_frozen != NULL)
		json_object_set_new(mem, "RamFile", json_string(EXPORT_RAM));
	json_object_set_new(r, "ExportedFrom", json_pack("{s:O?, s:O?, s:s, s:s}",
		"Path", json_object_get(e->record, "Path"),
		"ComputerName", json_object_get(e->record, "ComputerName"),
		"ExportComputerName", host, "ExportTime", when));
	json_object_del(r, "Path");
	json_object_del(r, "Monitor");
	json_object_del(r, "Pinned");
	json_object_del(r, "Current");
	return r;
}

/* The guest's RAM size and backend id for the README's command: what
 * the VM ran with (vm.json), else what `qckpt run` would give it. */
static void ram_backend(struct export *e, const struct cmdline *c, const char **id,
			long long *bytes)
{
	json_t *rf = json_object_get(e->vmstate, "RamFile");
	json_int_t recorded = json_integer_value(json_object_get(json_object_get(e->record, "MemoryState"), "RamBytes"));

	*id = json_string_value(json_object_get(rf, "Backend")) ?: ramfile_backend_id(c);
	*bytes = recorded > 0 ? (long long)recorded : e->ram_size;
}

/* How plain QEMU loads the memory state, as arguments after the command. */
static void add_incoming(struct export *e, struct cmdline *c, json_t *mem)
{
	size_t i;
	json_t *cap;
	int mapped = 0;

	if (e->ram_frozen != NULL) {
		const char *id;
		long long bytes;

		/* The RAM on a copy of the frozen file, shared, and left out
		 * of the stream as when it was saved: x-ignore-shared on
		 * before the load, which QEMU 7.2 and 10.0 take only over a
		 * monitor (no -global migration.x-ignore-shared).  An HMP
		 * monitor of its own reads them from EXPORT_INCOMING_IN (a
		 * pipe chardev on regular files), so no QMP client is needed. */
		ram_backend(e, c, &id, &bytes);
		ramfile_add_backend(c, id, EXPORT_RAM_RUNNING, bytes);
		cmdline_append(c, "-chardev", "pipe,id=qckpt-incoming,path=" EXPORT_INCOMING,
			       "-mon", "chardev=qckpt-incoming,mode=readline", "-incoming", "defer", NULL);
		return;
	}
	json_array_foreach(json_object_get(mem, "Capabilities"), i, cap)
		mapped |= strcmp(json_string_value(cap) ?: "", "mapped-ram") == 0;
	if (mapped)
		/* A mapped-ram stream needs the capabilities it was saved
		 * with on the destination too; as migration properties they
		 * need no QMP (QEMU >= 9.0, where mapped-ram exists). */
		cmdline_append(c, "-global", "migration.x-multifd=on", "-global",
			       "migration.mapped-ram=on", "-incoming", "file:" EXPORT_MEMORY, NULL);
	else
		/* A plain stream: exec: works from QEMU 7.2 on (file: only from 8.2). */
		cmdline_append(c, "-incoming", "exec:cat " EXPORT_MEMORY, NULL);
}

static char *readme_text(struct export *e, json_t *command)
{
	json_t *mem = json_object_get(e->record, "MemoryState");
	const char *guest = json_string_value(json_object_get(e->record, "GuestState")) ?: "running";
	char *qdir = NULL, *line = NULL, *files = xstrdup(""), *text, *t, *memline;
	char *ramnote, *cpline;
	struct cmdline c = { 0 };
	json_t *given = json_object_get(command, "Given");

	for (size_t i = 0; i < e->ndisks; i++) {
		t = xasprintf("%s    %-20s disk %s, flattened (qcow2, no backing file)\n", files,
			      e->disks[i].file, e->disks[i].device);
		free(files);
		files = t;
	}
	{
		struct cmdline d = { .argv = NULL };
		char *argv[] = { e->dir, NULL };

		cmdline_init(&d, argv, 1);
		qdir = cmdline_quote(&d);
		cmdline_free(&d);
	}
	if (json_is_array(given)) {
		char **argv = xcalloc(json_array_size(given) + 1, sizeof *argv);

		for (size_t i = 0; i < json_array_size(given); i++)
			argv[i] = (char *)json_string_value(json_array_get(given, i));
		cmdline_init(&c, argv, json_array_size(given));
		free(argv);
		cmdline_append(&c, "-qmp", "unix:" EXPORT_QMP ",server=on,wait=off", NULL);
		if (mem != NULL)
			add_incoming(e, &c, mem);
		line = cmdline_quote(&c);
		cmdline_free(&c);
	} else {
		line = xasprintf("# the VM was not launched through 'qckpt run': its usual QEMU command, each disk on its file above,%s",
				 e->ram_frozen ? " its shared memory-backend-file's mem-path=" EXPORT_RAM_RUNNING
						 ", plus -chardev pipe,id=qckpt-incoming,path=" EXPORT_INCOMING
						 " -mon chardev=qckpt-incoming,mode=readline -incoming defer" :
				 mem ? " plus -incoming 'exec:cat " EXPORT_MEMORY "' (or, for a mapped-ram state, -global migration.x-multifd=on -global migration.mapped-ram=on -incoming file:" EXPORT_MEMORY ")" : "");
	}
	if (e->ram_frozen != NULL) {
		memline = xasprintf("    %-20s the device state (QEMU's migration stream, without the RAM)\n"
				    "    %-20s the guest's RAM at the checkpoint, a file QEMU maps\n"
				    "    %-20s the monitor commands that load the device state\n"
				    "    %-20s where that monitor writes (empty)\n",
				    EXPORT_MEMORY, EXPORT_RAM, EXPORT_INCOMING_IN, EXPORT_INCOMING_OUT);
		/* QEMU writes the guest's RAM into the file it maps: never the
		 * export's own. */
		ramnote = xstrdup("The guest's RAM is " EXPORT_RAM ": QEMU maps it shared and writes into it,\n"
				  "so the command runs on a copy, " EXPORT_RAM_RUNNING " (the cp below: a reflink\n"
				  "where the file system can make one, else a copy without the holes;\n"
				  "never give QEMU " EXPORT_RAM " itself).  The RAM is not in the device\n"
				  "state (x-ignore-shared), so QEMU waits (-incoming defer) for the commands\n"
				  "of " EXPORT_INCOMING_IN ", read by a monitor of its own, to set x-ignore-shared\n"
				  "and load " EXPORT_MEMORY ".  'qckpt restore --from'\n"
				  "runs the new VM as 'qckpt run --ram-file' does: its catalog must be on a\n"
				  "file system with reflinks (XFS with reflink=1, btrfs).\n");
		cpline = xstrdup("    cp --reflink=auto --sparse=always " EXPORT_RAM " " EXPORT_RAM_RUNNING "\n");
	} else {
		memline = mem ? xasprintf("    %-20s the memory state (QEMU's migration stream)\n", EXPORT_MEMORY) : xstrdup("");
		ramnote = xstrdup("");
		cpline = xstrdup("");
	}
	text = xasprintf(
		"Checkpoint '%s' (%s) of VM '%s', taken %s on %s with QEMU %s,\n"
		"exported by qckpt.  The guest was %s at the checkpoint.\n"
		"\n"
		"Files:\n"
		"%s"
		"%s"
		"    %-20s the checkpoint's record, naming these files\n"
		"    %-20s the VM's QEMU command, on these files\n"
		"\n"
		"Start it with qckpt, on this host or another (registers NEWNAME and copies\n"
		"the images and the memory state: this directory is never written):\n"
		"\n"
		"    qckpt restore --from %s NEWNAME\n"
		"\n"
		"Start it with plain QEMU, from this directory.  QEMU then writes into the\n"
		"images here: copy the directory first to keep the export as it is.  The\n"
		"command is the VM's own: other host paths in it (kernel, serial sockets,\n"
		"network) must exist where it runs.  It serves QMP on %s here.\n"
		"%s"
		"\n"
		"    cd %s\n"
		"%s"
		"    %s\n"
		"\n"
		"%s",
		json_string_value(json_object_get(e->record, "Name")) ?: "?",
		json_string_value(json_object_get(e->record, "Id")) ?: "?", e->vm,
		json_string_value(json_object_get(e->record, "CreationTime")) ?: "?",
		json_string_value(json_object_get(e->record, "ComputerName")) ?: "?",
		json_string_value(json_object_get(e->record, "QemuVersion")) ?: "?",
		guest, files,
		memline,
		EXPORT_RECORD, EXPORT_COMMAND, qdir, EXPORT_QMP, ramnote, qdir, cpline, line,
		mem == NULL ? "The checkpoint holds no memory state: the guest boots afresh on its disks.\n" :
		strcmp(guest, "running") != 0 ? "The guest stays paused after the load, as it was; 'cont' over QMP runs it.\n" :
		"The guest was running.  A state saved while the guest was stopped (Mode\n"
		"'paused', 'background' or 'ram-file' in checkpoint.json) leaves it paused\n"
		"after the load:\n"
		"once query-status says \"paused\" (no longer \"inmigrate\"), resume it with\n"
		"any QMP client ({\"execute\": \"qmp_capabilities\"}, then {\"execute\": \"cont\"}):\n"
		"\n"
		"    qckpt qmp \"$PWD/" EXPORT_QMP "\" cont\n");
	free(memline);
	free(ramnote);
	free(cpline);
	free(qdir);
	free(line);
	free(files);
	return text;
}

/* One file of DIR, crash-safely; TEXT is freed. */
static int write_text(struct export *e, const char *name, char *text)
{
	char *path = xasprintf("%s/%s", e->dir, name);
	int rc = write_file_atomic(path, text, strlen(text), 0600);

	if (rc < 0)
		fail(e, rc, "cannot write %s: %s; nothing exported", path, strerror(-rc));
	free(path);
	free(text);
	return rc;
}

static char *json_text(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	char *t = xasprintf("%s\n", s ? s : "null");

	free(s);
	return t;
}

static void enter_write(struct export *e)
{
	json_t *record = export_record(e), *command = export_command(e);

	task_phase(&e->task, "recording");
	if (write_text(e, EXPORT_RECORD, json_text(record)) == 0 &&
	    (command == NULL || write_text(e, EXPORT_COMMAND, json_text(command)) == 0) &&
	    (e->ram_frozen == NULL || (write_text(e, EXPORT_INCOMING_IN, xstrdup(
		"migrate_set_capability x-ignore-shared on\n"
		"migrate_incoming \"exec:cat " EXPORT_MEMORY "\"\n")) == 0 &&
				       write_text(e, EXPORT_INCOMING_OUT, xstrdup("")) == 0)))
		write_text(e, EXPORT_README, readme_text(e, command));
	json_decref(record);
	json_decref(command);
}

/* ---- the machine ----------------------------------------------------------- */

/* Everything this export wrote, and DIR if it made it. */
static void remove_written(struct export *e)
{
	static const char *const names[] = { EXPORT_RECORD, EXPORT_COMMAND, EXPORT_INCOMING_IN,
					     EXPORT_INCOMING_OUT, EXPORT_README, NULL };

	for (size_t i = 0; i < e->ndisks; i++)
		if (e->disks[i].written)
			unlink(e->disks[i].path);
	if (e->memory_written)
		unlink(e->memory_path);
	if (e->ram_done)
		unlink(e->ram_path); /* a copy that failed removed itself */
	for (const char *const *n = names; *n; n++) {
		char *p = xasprintf("%s/%s", e->dir, *n);

		unlink(p);
		free(p);
	}
	if (e->made_dir)
		rmdir(e->dir);
}

static void export_step(struct task *task)
{
	struct export *e = task->data;

	if (task->error_status != 0) {
		remove_written(e);
		task_finish(task);
		return;
	}
	switch (e->state) {
	case EXPORT_COPY:
		e->state = EXPORT_WRITE;
		enter_write(e);
		break;
	case EXPORT_WRITE:
		e->state = EXPORT_DONE;
		task_finish(task);
		return;
	default:
		return;
	}
	task_wait(task);
}

static void export_done(struct task *task)
{
	struct export *e = task->data;

	for (size_t i = 0; i < e->ndisks; i++)
		if (e->disks[i].out_open) {
			uv_close((uv_handle_t *)&e->disks[i].out, NULL);
			e->disks[i].out_open = 0;
		}
	e->on_done(e);
}

static const struct task_ops export_ops = {
	.step = export_step,
	.done = export_done,
};

int export_start(struct export *e, uv_loop_t *loop, const char *vm,
		 json_t *record, json_t *vmstate, const char *dir, int compress,
		 void (*on_done)(struct export *e))
{
	e->loop = loop;
	e->vm = vm;
	e->record = json_incref(record);
	e->vmstate = json_incref(vmstate);
	{
		char cwd[4096];

		/* DIR need not exist yet: lexically absolute, not realpath. */
		if (getcwd(cwd, sizeof cwd) == NULL)
			strcpy(cwd, "/");
		e->dir = cmdline_absolute(cwd, dir);
	}
	e->compress = compress;
	e->on_done = on_done;
	e->start_ms = mono_ms();
	task_init(&e->task, loop, vm, &export_ops, e);
	progress_start(&e->prog, loop, vm);
	e->task.progress = &e->prog;
	e->progress = e->prog.board != NULL;
	task_phase(&e->task, "checking");
	if (check_files(e) < 0 || check_dir(e) < 0) {
		progress_finish(&e->prog, "failed");
		return -1;
	}
	e->state = EXPORT_COPY;
	enter_copy(e);
	task_wait(&e->task);
	return 0;
}

void export_interrupt(struct export *e)
{
	fail(e, -EINTR, "interrupted; nothing exported");
	for (size_t i = 0; i < e->ndisks; i++)
		if (e->disks[i].written && uv_is_active((uv_handle_t *)&e->disks[i].proc))
			uv_process_kill(&e->disks[i].proc, SIGTERM);
}

void export_free(struct export *e)
{
	json_decref(e->record);
	json_decref(e->vmstate);
	for (size_t i = 0; i < e->ndisks; i++) {
		free(e->disks[i].device);
		free(e->disks[i].image);
		free(e->disks[i].format);
		free(e->disks[i].file);
		free(e->disks[i].path);
	}
	free(e->disks);
	free(e->memory_path);
	free(e->ram_path);
	if (e->ram_started)
		ramfile_copy_free(&e->ram);
	progress_free(&e->prog);
	free(e->dir);
}
