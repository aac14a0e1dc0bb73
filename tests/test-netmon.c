/*
 * test-netmon.c: checkpoints through network monitors (tcp:HOST:PORT and
 * tls:HOST:PORT, issue 11), where QEMU may run on another host and makes
 * every file itself.  Each QEMU here runs in a mount namespace of its own
 * with a tmpfs over its image directory, so that the files it writes there
 * (its overlays, its memory state) are not visible to qckpt at all: a
 * checkpoint that works proves that qckpt never created, opened or looked
 * at them.  The checkpoint is then restored by hand inside that namespace
 * (nsenter), as the man page says to do it on the QEMU host, and the guest
 * must carry on from the instant its disk holds.  On QEMU 7.2 the memory
 * goes through exec:cat, on 10.0 through file: with mapped-ram; the image
 * directory's name has a space and a quote to prove the quoting.
 * Needs root (mount namespaces); certtool for the TLS group.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "testutil.h"

#define WAIT_MS 60000
/* Small: each memory state sits in a tmpfs, in RAM */
#define NS_MEM_MIB 128

static const char *qemu_bin;   /* the group's QEMU */
static char *registry, *catalog;
static char *tls_dir;          /* certificates made by certtool */

/* A QEMU "on another host": its own mount namespace, a tmpfs over dir. */
struct nsvm {
	struct hvm *vm;
	char *dir;      /* the tmpfs mount point: empty, seen from here */
	char *image;    /* its disk, inside that tmpfs */
	char *monitor;  /* tcp:127.0.0.1:PORT or tls:127.0.0.1:PORT */
	int port;
	char pid[16];
};

static struct nsvm host;       /* the group's VM */

/* 'it'\''s' for /bin/sh */
static char *sh_quote(const char *s)
{
	size_t len = 3;
	char *out, *p;

	for (const char *c = s; *c; c++)
		len += *c == '\'' ? 4 : 1;
	out = p = malloc(len);
	assert_non_null(out);
	*p++ = '\'';
	for (; *s; s++) {
		if (*s == '\'') {
			memcpy(p, "'\\''", 4);
			p += 4;
		} else {
			*p++ = *s;
		}
	}
	*p++ = '\'';
	*p = '\0';
	return out;
}

/* The port QEMU's chardev "netmon" listens on (port=0: the kernel chose). */
static int netmon_port(struct hvm *vm)
{
	json_t *chardevs = NULL, *c;
	size_t i;
	int port = -1;

	if (hvm_qmp(vm, "query-chardev", NULL, &chardevs) != 0)
		return -1;
	json_array_foreach(chardevs, i, c) {
		const char *f = jstr(c, "filename");
		const char *tcp = f ? strstr(f, "tcp:127.0.0.1:") : NULL;

		if (strcmp(jstr(c, "label"), "netmon") == 0 && tcp)
			port = atoi(tcp + 14);
	}
	json_decref(chardevs);
	return port;
}

/*
 * Start the group's QEMU in its own mount namespace: a tmpfs over
 * DIR, its image created in there ("DIR/it's a dir/disk0.qcow2"), QMP on
 * a tcp (or tls) chardev on 127.0.0.1.
 */
static int ns_start(struct nsvm *n, const char *name, bool tls)
{
	static const char script[] =
		"set -e; mount -t tmpfs qckpt-test \"$1\"; mkdir \"$1/it's a dir\"; "
		"\"$2\" create -q -f qcow2 \"$1/it's a dir/disk0.qcow2\" 16M; shift 2; exec \"$@\"";
	char *chr = fmt("socket,id=netmon,host=127.0.0.1,port=0,server=on,wait=off%s",
			tls ? ",tls-creds=tls0" : "");
	char *obj = tls ? fmt("tls-creds-x509,id=tls0,dir=%s/server,endpoint=server,verify-peer=on",
			      tls_dir) : NULL;
	const char *extra[8], *disks[2];
	const char *prefix[] = { "unshare", "-m", "--propagation", "private", "sh", "-c",
				 script, "sh", NULL, harness_qemu_img(), NULL };
	size_t k = 0;

	memset(n, 0, sizeof *n);
	n->dir = fmt("%s/host-%s", harness_tmpdir(), name);
	n->image = fmt("%s/it's a dir/disk0.qcow2", n->dir);
	mkdir(n->dir, 0755);
	prefix[8] = n->dir;
	if (tls) {
		extra[k++] = "-object";
		extra[k++] = obj;
	}
	extra[k++] = "-chardev";
	extra[k++] = chr;
	extra[k++] = "-mon";
	extra[k++] = "chardev=netmon,mode=control";
	extra[k] = NULL;
	disks[0] = n->image;
	disks[1] = NULL;
	{
		struct hvm_opts o = { .name = name, .qemu = qemu_bin, .disk_paths = disks,
				      .disk_format = HVM_QCOW2, .argv_prefix = prefix,
				      .extra_args = extra, .mem_mib = NS_MEM_MIB };

		n->vm = hvm_start(&o);
	}
	free(chr);
	free(obj);
	if (n->vm == NULL || (n->port = netmon_port(n->vm)) < 0)
		return -1;
	n->monitor = fmt("%s:127.0.0.1:%d", tls ? "tls" : "tcp", n->port);
	snprintf(n->pid, sizeof n->pid, "%d", (int)hvm_pid(n->vm));
	if (hvm_wait_tick(n->vm, WAIT_MS) < 0)
		return -1;
	return 0;
}

static void ns_free(struct nsvm *n)
{
	hvm_free(n->vm);
	free(n->dir);
	free(n->image);
	free(n->monitor);
	memset(n, 0, sizeof *n);
}

/* Run ARGV... inside N's mount namespace; its exit status. */
static int ns_run(struct nsvm *n, char **out, const char *first, ...)
{
	char *argv[32] = { "nsenter", "-t", n->pid, "-m", "--" };
	int i = 5, status = -1;
	char *err = NULL;
	va_list ap;

	va_start(ap, first);
	for (const char *a = first; a != NULL && i < 31; a = va_arg(ap, const char *))
		argv[i++] = (char *)a;
	va_end(ap);
	argv[i] = NULL;
	assert_int_equal(harness_run(argv, out, &err, &status), 0);
	if (status != 0)
		print_message("nsenter %s: %s", first, err ? err : "");
	free(err);
	return status;
}

static bool ns_exists(struct nsvm *n, const char *path)
{
	return ns_run(n, NULL, "test", "-e", path, NULL) == 0;
}

/* The guest's counter on IMAGE, read inside the namespace (a raw copy
 * made there, in the shared temp dir). */
static long ns_counter(struct nsvm *n, const char *image)
{
	static int copies;
	char *raw = fmt("%s/counter-%d.raw", harness_tmpdir(), ++copies);
	long v;

	assert_int_equal(ns_run(n, NULL, harness_qemu_img(), "convert", "-U", "-O", "raw",
				image, raw, NULL), 0);
	v = disk_read_counter(raw);
	unlink(raw);
	free(raw);
	return v;
}

/* How many entries DIR has, as this process sees it. */
static int visible_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

static bool starts_with(const char *s, const char *prefix)
{
	return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The image QEMU's first disk runs on now (query-block). */
static char *running_image(struct hvm *vm)
{
	json_t *blocks = NULL;
	char *file;

	assert_int_equal(hvm_qmp(vm, "query-block", NULL, &blocks), 0);
	file = strdup(jstr(json_object_get(json_array_get(blocks, 0), "inserted"), "file"));
	json_decref(blocks);
	return file;
}

/*
 * The restore, by hand on the QEMU host as qckpt(1) NETWORK MONITORS
 * says: a new overlay on the checkpoint's image, a QEMU on it in the same
 * namespace waiting for its memory, the memory loaded from the file QEMU
 * wrote.  The guest must carry on from the counter its disk holds.
 */
static void restore_in_ns(struct nsvm *n, json_t *rec)
{
	json_t *d = json_array_get(json_object_get(rec, "Disks"), 0);
	json_t *mem = json_object_get(rec, "MemoryState"), *caps = json_array(), *c;
	const char *img = jstr(d, "CheckpointImage"), *path = jstr(mem, "Path");
	const char *prefix[] = { "nsenter", "-t", n->pid, "-m", "--", NULL };
	char *ov = fmt("%s/it's a dir/restored.%s.qcow2", n->dir, jstr(rec, "Id"));
	const char *disks[] = { ov, NULL };
	long counter = ns_counter(n, img), tick;
	struct hvm *vm;
	char *uri, *st, *q;
	size_t i;

	assert_true(counter > 0);
	assert_int_equal(ns_run(n, NULL, harness_qemu_img(), "create", "-q", "-f", "qcow2",
				"-b", img, "-F", jstr(d, "Format"), ov, NULL), 0);
	{
		struct hvm_opts o = { .name = "restored", .qemu = qemu_bin, .disk_paths = disks,
				      .disk_format = HVM_QCOW2, .argv_prefix = prefix,
				      .incoming = "defer", .mem_mib = NS_MEM_MIB };

		vm = hvm_start(&o);
	}
	assert_non_null(vm);
	json_array_append_new(caps, json_pack("{s:s,s:b}", "capability", "events", "state", 1));
	json_array_foreach(json_object_get(mem, "Capabilities"), i, c)
		json_array_append_new(caps, json_pack("{s:O,s:b}", "capability", c, "state", 1));
	assert_int_equal(hvm_qmp(vm, "migrate-set-capabilities",
				 json_pack("{s:o}", "capabilities", caps), NULL), 0);
	q = sh_quote(path);
	uri = starts_with(jstr(mem, "Uri"), "file:") ? fmt("file:%s", path) : fmt("exec:cat %s", q);
	free(q);
	assert_int_equal(hvm_qmp(vm, "migrate-incoming", json_pack("{s:s}", "uri", uri), NULL), 0);
	free(uri);
	for (;;) {
		const struct hvm_event *e = hvm_wait_event(vm, "MIGRATION", WAIT_MS);

		if (e == NULL)
			fail_msg("restoring %s: no MIGRATION completed", jstr(rec, "VMName"));
		if (strcmp(jstr(e->data, "status"), "completed") == 0)
			break;
		if (strcmp(jstr(e->data, "status"), "failed") == 0)
			fail_msg("restoring %s: the incoming migration failed", jstr(rec, "VMName"));
	}
	st = hvm_status(vm);
	assert_non_null(st);
	if (strcmp(st, "running") != 0)
		assert_int_equal(hvm_qmp(vm, "cont", NULL, NULL), 0);
	free(st);
	tick = hvm_wait_tick(vm, WAIT_MS);
	/* carried on, not rebooted, from the instant its disk holds */
	for (i = 0; i < hvm_serial_count(vm); i++)
		assert_null(strstr(hvm_serial_line(vm, i), "qckpt-guest: boot"));
	if (tick < 0 || counter < tick - 1 || counter > tick)
		fail_msg("%s: the disk holds counter %ld but memory resumed at tick %ld",
			 jstr(rec, "VMName"), counter, tick);
	hvm_free(vm);
	free(ov);
}

/* A checkpoint through N's monitor: made by QEMU, where QEMU runs only. */
static json_t *checkpoint_on_its_host(struct nsvm *n, const char *mode, const char *name)
{
	char *before = running_image(n->vm);
	json_t *rec = checkpoint_ok(hvm_name(n->vm), mode, name, NULL);
	json_t *d = json_array_get(json_object_get(rec, "Disks"), 0);
	json_t *mem = json_object_get(rec, "MemoryState");
	char *where = fmt("%s/it's a dir/", n->dir);
	char *now;

	print_message("%s on QEMU %s: mode %s, guest paused %lld ms, %lld ms in all, memory %s\n",
		      name, jstr(rec, "QemuVersion"), jstr(rec, "Mode"),
		      (long long)json_integer_value(json_object_get(rec, "PauseMs")),
		      (long long)json_integer_value(json_object_get(rec, "DurationMs")),
		      mem ? jstr(mem, "Uri") : "none");
	assert_string_equal(jstr(rec, "QemuHost"), "127.0.0.1");
	assert_string_equal(jstr(rec, "Monitor"), n->monitor);
	assert_string_equal(jstr(d, "CheckpointImage"), before);
	free(before);
	assert_true(starts_with(jstr(d, "ActiveImage"), where));
	/* nothing of it is visible from here: QEMU made it all over there */
	assert_int_equal(visible_entries(n->dir), 0);
	assert_true(ns_exists(n, jstr(d, "ActiveImage")));
	now = running_image(n->vm);
	assert_string_equal(now, jstr(d, "ActiveImage"));
	free(now);
	if (strcmp(mode, "disk-only") != 0) {
		assert_non_null(mem);
		assert_string_equal(jstr(mem, "Host"), "127.0.0.1");
		assert_true(starts_with(jstr(mem, "Path"), n->dir));
		assert_null(json_object_get(mem, "Bytes"));
		assert_true(ns_exists(n, jstr(mem, "Path")));
		/* 8.2 and later take file:; 7.2 gets exec:cat, quoted */
		if (atoi(jstr(rec, "QemuVersion")) >= 9)
			assert_true(starts_with(jstr(mem, "Uri"), "file:"));
		else
			assert_true(starts_with(jstr(mem, "Uri"), "exec:cat >'"));
	}
	free(where);
	return rec;
}

/* ---- groups ----------------------------------------------------------- */

static int register_host(void)
{
	FILE *f = fopen(registry, "a");

	if (f == NULL)
		return -1;
	fprintf(f, "%s %s\n", hvm_name(host.vm), host.monitor);
	return fclose(f);
}

static int tcp_setup(const char *qemu)
{
	qemu_bin = qemu;
	if (qemu == NULL || group_files_setup("test-netmon", &registry, &catalog) < 0)
		return -1;
	if (ns_start(&host, "tcpvm", false) < 0)
		return -1;
	return register_host();
}

static int qemu72_setup(void **state)
{
	return tcp_setup(harness_qemu());
}

static int qemu10_setup(void **state)
{
	return tcp_setup(harness_require_qemu10());
}

static int group_teardown(void **state)
{
	ns_free(&host);
	group_files_teardown(&registry, &catalog);
	return 0;
}

/* ---- tests ------------------------------------------------------------ */

/* auto: live on 10.0; paused on 7.2 under TCG (it loses dirty pages in a
 * live save, and background mode is not offered through the network). */
static void test_checkpoint_through_a_tcp_monitor_is_made_by_qemu_on_its_host_and_restores(void **state)
{
	json_t *rec = checkpoint_on_its_host(&host, "auto", "over tcp");
	char *where = fmt("%s/it's a dir/", host.dir);

	/* by default beside the image, where QEMU writes already */
	assert_true(starts_with(jstr(json_object_get(rec, "MemoryState"), "Path"), where));
	free(where);

	assert_string_equal(jstr(rec, "Mode"),
			    atoi(jstr(rec, "QemuVersion")) >= 9 ? "live" : "paused");
	restore_in_ns(&host, rec);
	json_decref(rec);
}

static void test_paused_and_disk_only_checkpoints_through_a_tcp_monitor(void **state)
{
	json_t *rec = checkpoint_on_its_host(&host, "paused", "paused over tcp");
	char *st;

	restore_in_ns(&host, rec);
	json_decref(rec);
	rec = checkpoint_on_its_host(&host, "disk-only", "disk-only over tcp");
	assert_null(json_object_get(rec, "MemoryState"));
	json_decref(rec);
	st = hvm_status(host.vm);
	assert_string_equal(st, "running");
	free(st);
}

static void assert_one_line(const char *err, const char *vm, const char *text)
{
	const char *nl = strchr(err, '\n');

	if (nl == NULL || nl[1] != '\0' || strstr(err, vm) == NULL || strstr(err, text) == NULL)
		fail_msg("expected one line naming %s and saying '%s', got: %s", vm, text, err);
}

static void test_modes_that_need_the_qemu_hosts_files_are_refused_with_one_line(void **state)
{
	const char *vm = hvm_name(host.vm);
	char *before = running_image(host.vm), *after;
	struct run r;

	r = qckpt("checkpoint", "--mode", "background", vm, NULL);
	assert_int_equal(r.status, 1);
	assert_one_line(r.err, vm, "--mode background is not offered through a network monitor");
	run_free(&r);
	r = qckpt("checkpoint", "--mode", "ram-file", vm, NULL);
	assert_int_equal(r.status, 1);
	assert_one_line(r.err, vm, "--mode ram-file is not offered through a network monitor");
	run_free(&r);
	after = running_image(host.vm);
	assert_string_equal(before, after);
	free(before);
	free(after);
}

/* Their files are on the QEMU host: refused, nothing changed, said how. */
static void test_restore_remove_and_export_of_its_checkpoints_are_refused(void **state)
{
	const char *vm = hvm_name(host.vm);
	json_t *rec = checkpoint_on_its_host(&host, "disk-only", "to refuse");
	char *out = harness_path("export-netmon"), *img = running_image(host.vm), *now;
	struct run r;

	r = qckpt("restore", vm, "to refuse", NULL);
	assert_int_equal(r.status, 1);
	assert_one_line(r.err, vm, "taken through a network monitor");
	run_free(&r);
	r = qckpt("remove", vm, "to refuse", NULL);
	assert_int_equal(r.status, 1);
	assert_one_line(r.err, vm, "taken through a network monitor");
	run_free(&r);
	r = qckpt("export", vm, "to refuse", out, NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "network monitor"));
	run_free(&r);
	r = qckpt("list", "--json", vm, NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, jstr(rec, "Id")));
	run_free(&r);
	now = running_image(host.vm);
	assert_string_equal(now, img);
	free(now);
	free(img);
	free(out);
	json_decref(rec);
}

/*
 * `qckpt disks` names the images as the QEMU host's and never looks for
 * them here: they are not visible from here at all (the QEMU's tmpfs), so
 * a check of the chain against this machine's files would fail.
 */
static void test_disks_names_the_qemu_hosts_files_without_looking_for_them_here(void **state)
{
	const char *vm = hvm_name(host.vm);
	json_t *rec = checkpoint_on_its_host(&host, "disk-only", "for disks");
	json_t *d = json_array_get(json_object_get(rec, "Disks"), 0), *lines, *o;
	char *row;
	struct run r;

	r = qckpt("disks", "--json", vm, NULL);
	if (r.status != 0)
		fail_msg("disks --json %s: %d: %s", vm, r.status, r.err);
	assert_string_equal(r.err, "");
	lines = json_lines(r.out);
	assert_int_equal(json_array_size(lines), 1);
	o = json_array_get(lines, 0);
	assert_string_equal(jstr(o, "QemuHost"), "127.0.0.1");
	assert_string_equal(jstr(o, "ActiveImage"), jstr(d, "ActiveImage"));
	assert_string_equal(jstr(o, "OriginalImage"), host.image);
	json_decref(lines);
	run_free(&r);
	/* the table: HOST:PATH, as scp names another host's file; -v says why */
	r = qckpt("disks", "-v", vm, NULL);
	assert_int_equal(r.status, 0);
	row = fmt("127.0.0.1:%s", jstr(d, "ActiveImage"));
	assert_non_null(strstr(r.out, row));
	assert_non_null(strstr(r.err, "files of 127.0.0.1"));
	assert_null(strstr(r.err, "put the file back"));
	free(row);
	run_free(&r);
	json_decref(rec);
}

/* The names of QEMU's block nodes, in its order. */
static json_t *node_names(struct hvm *vm)
{
	json_t *nodes = NULL, *x, *names = json_array();
	size_t i;

	assert_int_equal(hvm_qmp(vm, "query-named-block-nodes", NULL, &nodes), 0);
	json_array_foreach(nodes, i, x)
		json_array_append_new(names, json_string(jstr(x, "node-name")));
	json_decref(nodes);
	return names;
}

/* The group's registry line, with KEYS (e.g. "remote-dir=/x") or none. */
static void register_with(const char *keys)
{
	FILE *f = fopen(registry, "w");

	assert_non_null(f);
	fprintf(f, "%s %s %s\n", hvm_name(host.vm), host.monitor, keys ? keys : "");
	assert_int_equal(fclose(f), 0);
}

/* remote-dir=: the memory state goes there, on the QEMU host. */
static void test_remote_dir_in_the_registry_holds_the_memory_state(void **state)
{
	char *dir = fmt("%s/memory", host.dir), *key = fmt("remote-dir=%s", dir);
	json_t *rec;

	assert_int_equal(ns_run(&host, NULL, "mkdir", dir, NULL), 0);
	register_with(key);
	rec = checkpoint_on_its_host(&host, "paused", "in remote-dir");
	register_with(NULL);
	assert_true(starts_with(jstr(json_object_get(rec, "MemoryState"), "Path"), dir));
	restore_in_ns(&host, rec);
	json_decref(rec);
	free(key);
	free(dir);
}

/* An overlay-dir that does not exist on the QEMU host: QEMU cannot
 * create the file; one line saying so, and the VM as it was. */
static void test_overlay_qemu_cannot_create_fails_with_one_line_and_vm_untouched(void **state)
{
	const char *vm = hvm_name(host.vm);
	char *before = running_image(host.vm), *after, *st;
	json_t *nodes = node_names(host.vm), *nodes_after;
	struct run r;

	register_with("overlay-dir=/nonexistent-qckpt-test-dir");
	r = qckpt("checkpoint", vm, "nowhere", NULL);
	register_with(NULL);
	assert_int_equal(r.status, 1);
	assert_one_line(r.err, vm, "QEMU could not create the overlay /nonexistent-qckpt-test-dir/");
	run_free(&r);
	after = running_image(host.vm);
	assert_string_equal(before, after);
	nodes_after = node_names(host.vm);
	assert_true(json_equal(nodes, nodes_after));
	st = hvm_status(host.vm);
	assert_string_equal(st, "running");
	free(st);
	json_decref(nodes);
	json_decref(nodes_after);
	free(before);
	free(after);
}

/* ---- a monitor lost midway: a TCP proxy the test cuts --------------------- */

static struct {
	uv_tcp_t *server, *down, *up; /* listener; qckpt's side; QEMU's side */
	uv_connect_t connect;
	int qemu_port, port;
} px;

static void px_free_handle(uv_handle_t *h)
{
	free(h);
}

static void px_close(uv_tcp_t **h)
{
	if (*h != NULL)
		uv_close((uv_handle_t *)*h, px_free_handle);
	*h = NULL;
}

/* Everything goes, the listener too: the monitor is unreachable. */
static void px_cut(void)
{
	px_close(&px.down);
	px_close(&px.up);
	px_close(&px.server);
}

static void px_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	buf->base = malloc(size);
	buf->len = size;
}

static void px_written(uv_write_t *w, int status)
{
	free(w->data);
	free(w);
}

static void px_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	uv_tcp_t *other = s == (uv_stream_t *)px.down ? px.up : px.down;

	if (n > 0 && other != NULL) {
		uv_write_t *w = malloc(sizeof *w);
		uv_buf_t b = uv_buf_init(buf->base, (unsigned)n);

		w->data = buf->base;
		if (uv_write(w, (uv_stream_t *)other, &b, 1, px_written) == 0)
			return;
		free(w);
	}
	free(buf->base);
	if (n < 0)
		px_cut();
}

static void px_connected(uv_connect_t *req, int status)
{
	if (status < 0 || px.down == NULL || px.up == NULL) {
		px_cut();
		return;
	}
	uv_read_start((uv_stream_t *)px.down, px_alloc, px_read);
	uv_read_start((uv_stream_t *)px.up, px_alloc, px_read);
}

/* One connection at a time, as QMP serves them: forwarded to QEMU. */
static void px_accept(uv_stream_t *server, int status)
{
	struct sockaddr_in addr;

	if (status < 0 || px.down != NULL)
		return;
	px.down = malloc(sizeof *px.down);
	px.up = malloc(sizeof *px.up);
	uv_tcp_init(harness_loop(), px.down);
	uv_tcp_init(harness_loop(), px.up);
	if (uv_accept(server, (uv_stream_t *)px.down) < 0) {
		px_cut();
		return;
	}
	uv_ip4_addr("127.0.0.1", px.qemu_port, &addr);
	if (uv_tcp_connect(&px.connect, px.up, (const struct sockaddr *)&addr, px_connected) < 0)
		px_cut();
}

static void px_start(int qemu_port)
{
	struct sockaddr_in addr;
	struct sockaddr_storage bound;
	int len = sizeof bound;

	memset(&px, 0, sizeof px);
	px.qemu_port = qemu_port;
	px.server = malloc(sizeof *px.server);
	uv_tcp_init(harness_loop(), px.server);
	uv_ip4_addr("127.0.0.1", 0, &addr);
	assert_int_equal(uv_tcp_bind(px.server, (const struct sockaddr *)&addr, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)px.server, 4, px_accept), 0);
	assert_int_equal(uv_tcp_getsockname(px.server, (struct sockaddr *)&bound, &len), 0);
	px.port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

/*
 * The connection to QEMU is cut after qckpt probed the VM and before it
 * creates anything (the network goes down mid-way): one line naming the
 * VM and the lost monitor, exit 1, and QEMU as it was (running on its
 * image, no node of ours, the guest ticking on).
 */
static void test_a_monitor_lost_midway_gives_one_line_and_leaves_the_vm_untouched(void **state)
{
	const char *vm = hvm_name(host.vm);
	char *reg = harness_path("proxy-registry"), *img = running_image(host.vm), *now;
	json_t *nodes = node_names(host.vm), *nodes_after;
	char *argv[] = { (char *)harness_qckpt(), "--registry", reg, "checkpoint", (char *)vm,
			 "lost", NULL };
	FILE *f = fopen(reg, "w");
	struct child c;
	struct child_said stopped = { &c, "stopped at prepare" };
	siginfo_t info;
	const char *err;
	long tick;
	char *st;

	px_start(host.port);
	assert_non_null(f);
	fprintf(f, "%s tcp:127.0.0.1:%d\n", vm, px.port);
	fclose(f);
	setenv("QCKPT_TEST_STOP_AT", "prepare", 1);
	child_start(&c, argv);
	unsetenv("QCKPT_TEST_STOP_AT");
	assert_int_equal(harness_run_until(child_said, &stopped, WAIT_MS), 0);
	assert_false(c.exited);
	/* it says so, then raises SIGSTOP: a SIGCONT in between would be
	 * lost, so wait for the stop itself (WNOWAIT: libuv still reaps it) */
	memset(&info, 0, sizeof info);
	if (waitid(P_PID, (id_t)c.proc.pid, &info, WSTOPPED | WNOWAIT) != 0)
		fail_msg("waiting for qckpt to stop: %s", strerror(errno));
	px_cut();
	kill(c.proc.pid, SIGCONT);
	assert_int_equal(harness_run_until(child_done, &c, WAIT_MS), 0);
	assert_int_equal(c.status, 1);
	/* after the test's own "stopped at" line: one line */
	err = strstr(c.errbuf, "(QCKPT_TEST_STOP_AT)\n");
	assert_non_null(err);
	err += strlen("(QCKPT_TEST_STOP_AT)\n");
	print_message("qckpt said: %s", err);
	assert_one_line(err, vm, "was lost");
	st = hvm_status(host.vm);
	assert_string_equal(st, "running");
	free(st);
	now = running_image(host.vm);
	assert_string_equal(now, img);
	nodes_after = node_names(host.vm);
	assert_true(json_equal(nodes, nodes_after));
	json_decref(nodes);
	json_decref(nodes_after);
	hvm_consume_serial(host.vm);
	tick = hvm_wait_tick(host.vm, WAIT_MS);
	assert_true(tick > 0);
	free(now);
	free(img);
	free(reg);
}

/* ---- TLS ------------------------------------------------------------------ */

static int tls_setup(void **state)
{
	qemu_bin = harness_qemu10() ? harness_qemu10() : harness_qemu();
	if (group_files_setup("test-netmon", &registry, &catalog) < 0)
		return -1;
	tls_dir = tls_make_certs("test-netmon");
	if (tls_dir == NULL)
		return -1;
	if (ns_start(&host, "tlsvm", true) < 0)
		return -1;
	return register_host();
}

static int tls_teardown(void **state)
{
	unsetenv("QCKPT_TLS_DIR");
	group_teardown(state);
	free(tls_dir);
	tls_dir = NULL;
	return 0;
}

static void test_checkpoint_through_a_tls_monitor_with_the_right_certificate_restores(void **state)
{
	char *dir = fmt("%s/client", tls_dir);
	json_t *rec;

	setenv("QCKPT_TLS_DIR", dir, 1);
	rec = checkpoint_on_its_host(&host, "auto", "over tls");
	unsetenv("QCKPT_TLS_DIR");
	assert_true(starts_with(jstr(rec, "Monitor"), "tls:"));
	restore_in_ns(&host, rec);
	json_decref(rec);
	free(dir);
}

static void test_a_client_without_the_right_certificate_is_refused_with_one_line(void **state)
{
	const char *vm = hvm_name(host.vm);
	char *cred = fmt("x509=%s/stranger", tls_dir), *img = running_image(host.vm), *now;
	struct run r;

	r = qckpt("checkpoint", "--credential", cred, vm, NULL);
	assert_int_equal(r.status, 1);
	assert_one_line(r.err, vm, "refused the client certificate");
	run_free(&r);
	now = running_image(host.vm);
	assert_string_equal(now, img);
	assert_int_equal(visible_entries(host.dir), 0);
	free(now);
	free(img);
	free(cred);
}

int main(void)
{
	const struct CMUnitTest tcp[] = {
		cmocka_unit_test(test_checkpoint_through_a_tcp_monitor_is_made_by_qemu_on_its_host_and_restores),
		cmocka_unit_test(test_paused_and_disk_only_checkpoints_through_a_tcp_monitor),
		cmocka_unit_test(test_modes_that_need_the_qemu_hosts_files_are_refused_with_one_line),
		cmocka_unit_test(test_restore_remove_and_export_of_its_checkpoints_are_refused),
		cmocka_unit_test(test_disks_names_the_qemu_hosts_files_without_looking_for_them_here),
		cmocka_unit_test(test_remote_dir_in_the_registry_holds_the_memory_state),
		cmocka_unit_test(test_overlay_qemu_cannot_create_fails_with_one_line_and_vm_untouched),
		cmocka_unit_test(test_a_monitor_lost_midway_gives_one_line_and_leaves_the_vm_untouched),
	};
	const struct CMUnitTest tcp10[] = {
		cmocka_unit_test(test_checkpoint_through_a_tcp_monitor_is_made_by_qemu_on_its_host_and_restores),
		cmocka_unit_test(test_paused_and_disk_only_checkpoints_through_a_tcp_monitor),
	};
	const struct CMUnitTest tls[] = {
		cmocka_unit_test(test_checkpoint_through_a_tls_monitor_with_the_right_certificate_restores),
		cmocka_unit_test(test_a_client_without_the_right_certificate_is_refused_with_one_line),
	};
	int rc = harness_init(), failed = 0;
	bool ci = getenv("CI") && strcmp(getenv("CI"), "true") == 0;

	if (rc != 0)
		return rc;
	if (getenv("QCKPT_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("QCKPT_TEST_FILTER"));
	if (geteuid() != 0 || system("command -v unshare nsenter >/dev/null") != 0) {
		fprintf(stderr, "test-netmon: needs root, unshare and nsenter (a mount namespace per QEMU)%s\n",
			ci ? "" : "; skipped");
		return ci ? 1 : HARNESS_SKIP;
	}
	failed += cmocka_run_group_tests_name("tcp monitor, QEMU 7.2", tcp, qemu72_setup,
					      group_teardown);
	if (harness_want_qemu10())
		failed += cmocka_run_group_tests_name("tcp monitor, QEMU 10", tcp10, qemu10_setup,
						      group_teardown);
	failed += cmocka_run_group_tests_name("tls monitor", tls, tls_setup, tls_teardown);
	return failed ? 1 : 0;
}
