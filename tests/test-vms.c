/*
 * test-vms.c: `qckpt vms` (Get-VM), `qckpt register` and `qckpt unregister`
 * end to end: real QEMU processes in the states a user meets (running,
 * paused, postmigrate, not yet started), dead monitors of the three kinds
 * (a socket file nobody listens on, a missing file, a listener that never
 * greets), a registry of 50 entries, the `vms --json | checkpoint -`
 * pipeline, and the registry's two writers through the command line.
 * Nothing sleeps: qckpt runs on the harness loop and every wait for QEMU is
 * for an event with a timeout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "testutil.h"

#define WAIT_MS 30000u

static int vm_serial; /* unique VM names */
static char *catalog_dir;

/* ---- small helpers ---------------------------------------------------- */

static json_t *by_name(json_t *list, const char *name)
{
	size_t i;
	json_t *o;

	json_array_foreach(list, i, o)
		if (jstr(o, "Name") && strcmp(jstr(o, "Name"), name) == 0)
			return o;
	fail_msg("no object named %s", name);
	return NULL;
}

static size_t count_lines(const char *text, const char *substr)
{
	size_t n = 0;

	for (const char *p = text; p && *p;) {
		size_t len = strcspn(p, "\n");
		char *line = strndup(p, len);

		n += strstr(line, substr) != NULL;
		free(line);
		p += len + (p[len] == '\n');
	}
	return n;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* A fresh registry file, used by every qckpt started from now on. */
static char *registry_new(const char *header)
{
	static int n;
	char *name = fmt("registry-%d", ++n);
	char *path = harness_path(name);

	free(name);
	write_file(path, header);
	setenv("QCKPT_REGISTRY", path, 1);
	return path;
}

static void registry_append(const char *path, const char *name, const char *socket)
{
	FILE *f = fopen(path, "a");

	assert_non_null(f);
	fprintf(f, "%s unix:%s dir=%s\n", name, socket, catalog_dir);
	fclose(f);
}

/* The QEMU of the running group: NULL for the default (harness_qemu()). */
static const char *qemu_bin;

static struct hvm *start_vm(struct hvm_opts o)
{
	struct hvm *vm;
	char *name = fmt("%s%d", o.name ? o.name : "vm", ++vm_serial);

	o.name = name;
	o.qemu = qemu_bin;
	if (o.mem_mib == 0)
		o.mem_mib = 128;
	vm = hvm_start(&o);
	free(name);
	assert_non_null(vm);
	return vm;
}

static void assert_status(struct hvm *vm, const char *want)
{
	char *st = hvm_status(vm);

	assert_non_null(st);
	assert_string_equal(st, want);
	free(st);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Stop the VM and migrate it away: QEMU then reports postmigrate. */
static void make_postmigrate(struct hvm *vm)
{
	const struct hvm_event *e;

	assert_int_equal(hvm_qmp(vm, "migrate-set-capabilities", json_pack("{s:[{s:s,s:b}]}",
			 "capabilities", "capability", "events", "state", 1), NULL), 0);
	assert_int_equal(hvm_qmp(vm, "stop", NULL, NULL), 0);
	assert_int_equal(hvm_qmp(vm, "migrate", json_pack("{s:s}", "uri", "exec:cat >/dev/null"), NULL), 0);
	while ((e = hvm_wait_event(vm, "MIGRATION", WAIT_MS)) != NULL &&
	       strcmp(jstr(e->data, "status"), "completed") != 0)
		assert_string_not_equal(jstr(e->data, "status"), "failed");
	assert_non_null(e);
	/* QEMU sends "completed" before it leaves finish-migrate, and no event
	 * marks the change: ask until it shows (each answer is a round trip). */
	for (double end = now_s() + WAIT_MS / 1000.0; now_s() < end;) {
		char *st = hvm_status(vm);

		assert_non_null(st);
		if (strcmp(st, "finish-migrate") != 0) {
			assert_string_equal(st, "postmigrate");
			free(st);
			return;
		}
		free(st);
	}
	fail_msg("%s stayed in finish-migrate", hvm_name(vm));
}

/* "major.minor.micro" as query-version on the observer monitor says. */
static char *qemu_version(struct hvm *vm)
{
	json_t *res = NULL, *q;
	char *v;

	assert_int_equal(hvm_qmp(vm, "query-version", NULL, &res), 0);
	q = json_object_get(res, "qemu");
	v = fmt("%lld.%lld.%lld", (long long)json_integer_value(json_object_get(q, "major")),
		(long long)json_integer_value(json_object_get(q, "minor")),
		(long long)json_integer_value(json_object_get(q, "micro")));
	json_decref(res);
	return v;
}

static int count_disks(json_t *vmobj, int readonly)
{
	size_t i;
	json_t *d;
	int n = 0;

	json_array_foreach(json_object_get(vmobj, "Disks"), i, d)
		n += json_is_true(json_object_get(d, "ReadOnly")) == readonly;
	return n;
}

/* ---- dead monitors -------------------------------------------------------- */

static struct sockaddr_un unix_addr(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	assert_true(strlen(path) < sizeof sa.sun_path);
	strcpy(sa.sun_path, path);
	return sa;
}

/* A socket file that nothing listens on (its process went away). */
static void make_stale_socket(const char *path)
{
	struct sockaddr_un sa = unix_addr(path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	close(fd);
}

/* A listener that accepts connections (the kernel does, into the backlog)
 * and never says anything: a monitor held by another client looks so. */
static int make_silent_listener(const char *path)
{
	struct sockaddr_un sa = unix_addr(path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(fd, 16), 0);
	return fd;
}

/* ---- vms ------------------------------------------------------------------ */

/* A VM stopped by a save (QEMU's postmigrate) is paused to the user: cont
 * resumes it and qckpt checkpoints it again. */
static void test_vms_shows_running_paused_and_postmigrate_vms(void **state)
{
	struct hvm *run = start_vm((struct hvm_opts){ .name = "run", .ndisks = 2,
						      .readonly_disk = true, .cdrom = true });
	struct hvm *pau = start_vm((struct hvm_opts){ .name = "pau", .ndisks = 1 });
	struct hvm *pm = start_vm((struct hvm_opts){ .name = "pm", .ndisks = 1 });
	char *reg = registry_new("# three VMs\n");
	char *version = qemu_version(run), *monitor, *want;
	struct run r;
	json_t *list, *o;

	assert_int_equal(hvm_qmp(pau, "stop", NULL, NULL), 0);
	make_postmigrate(pm);
	registry_append(reg, hvm_name(run), hvm_qmp_path(run));
	registry_append(reg, hvm_name(pau), hvm_qmp_path(pau));
	registry_append(reg, hvm_name(pm), hvm_qmp_path(pm));

	r = qckpt("vms", "--json", NULL);
	if (r.status != 0)
		fail_msg("qckpt vms failed (%d): %s", r.status, r.err);
	assert_string_equal(r.err, "");
	list = json_lines(r.out);
	assert_int_equal(json_array_size(list), 3);
	/* registry order */
	assert_string_equal(jstr(json_array_get(list, 0), "Name"), hvm_name(run));
	assert_string_equal(jstr(json_array_get(list, 2), "Name"), hvm_name(pm));

	o = by_name(list, hvm_name(run));
	assert_string_equal(jstr(o, "State"), "running");
	assert_int_equal(strncmp(jstr(o, "QemuVersion"), version, strlen(version)), 0);
	assert_int_equal(json_integer_value(json_object_get(o, "MemoryMiB")), 128);
	assert_int_equal(count_disks(o, 0), 2); /* the empty CD-ROM is not a disk */
	assert_int_equal(count_disks(o, 1), 1);
	assert_string_equal(jstr(json_array_get(json_object_get(o, "Disks"), 0), "ActiveImage"),
			    hvm_disk_path(run, 0));
	assert_int_equal(json_integer_value(json_object_get(o, "CheckpointCount")), 0);
	assert_true(json_is_null(json_object_get(o, "LatestCheckpoint")));
	assert_non_null(jstr(o, "ComputerName"));
	assert_string_equal(jstr(o, "CheckpointType"), "Standard");
	monitor = fmt("unix:%s", hvm_qmp_path(run));
	assert_string_equal(jstr(o, "Monitor"), monitor);
	free(monitor);
	assert_string_equal(jstr(by_name(list, hvm_name(pau)), "State"), "paused");
	assert_string_equal(jstr(by_name(list, hvm_name(pm)), "State"), "paused");
	json_decref(list);
	run_free(&r);

	/* Probing changed nothing, and the monitors are free again at once
	 * (one client at a time): a raw query right after answers. */
	assert_status(run, "running");
	assert_status(pau, "paused");
	assert_status(pm, "postmigrate");
	r = qckpt("qmp", hvm_name(pau), "query-status", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "\"paused\""));
	run_free(&r);

	/* The table: a header, one row per VM. */
	r = qckpt("vms", NULL);
	assert_int_equal(r.status, 0);
	assert_int_equal(count_lines(r.out, ""), 4);
	assert_non_null(strstr(r.out, "Checkpoints"));
	want = fmt("%-16s %-14s", hvm_name(run), "running");
	assert_non_null(strstr(r.out, want));
	free(want);
	assert_non_null(strstr(r.out, "128M"));
	assert_non_null(strstr(r.out, "2+1ro"));
	want = fmt("%-16s %-14s", hvm_name(pm), "paused");
	assert_non_null(strstr(r.out, want));
	free(want);
	run_free(&r);

	/* Named VMs only (commas too); an unknown name is its own line, status 1. */
	r = qckpt("vms", "--json", hvm_name(pau), "nosuchvm", NULL);
	assert_int_equal(r.status, 1);
	assert_int_equal(count_lines(r.err, "nosuchvm"), 1);
	assert_int_equal(count_lines(r.err, "qckpt"), 1);
	list = json_lines(r.out);
	assert_int_equal(json_array_size(list), 1);
	assert_string_equal(jstr(json_array_get(list, 0), "Name"), hvm_name(pau));
	json_decref(list);
	run_free(&r);
	want = fmt("%s,%s", hvm_name(pm), hvm_name(run));
	r = qckpt("vms", "--names", want, NULL);
	free(want);
	assert_int_equal(r.status, 0);
	want = fmt("%s\n%s\n", hvm_name(pm), hvm_name(run));
	assert_string_equal(r.out, want);
	free(want);
	run_free(&r);
	r = qckpt("vms", "--names", NULL);
	assert_int_equal(r.status, 0);
	want = fmt("%s\n%s\n%s\n", hvm_name(run), hvm_name(pau), hvm_name(pm));
	assert_string_equal(r.out, want);
	free(want);
	run_free(&r);

	/* usage errors are status 2 */
	r = qckpt("vms", "--timeout", "soon", NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--timeout"));
	run_free(&r);
	r = qckpt("vms", "--json", "--names", NULL);
	assert_int_equal(r.status, 2);
	run_free(&r);

	free(version);
	free(reg);
	hvm_free(run);
	hvm_free(pau);
	hvm_free(pm);
}

/*
 * 50 entries: two live VMs (not started: -S, so they cost no CPU) among 48
 * dead monitors of the three kinds.  Every dead one is reported with its
 * reason; the live ones answer as usual while listeners that never greet
 * are still holding their probes.  The elapsed time is printed, not judged
 * (benchmarks are scripts, not timed tests), except for one bound that only
 * concurrency can meet: probed one after the other, the 16 silent
 * listeners alone would take 16 timeouts.
 */
static void test_dead_monitors_do_not_delay_live_vms(void **state)
{
	struct hvm *a = start_vm((struct hvm_opts){ .name = "live", .paused = true });
	struct hvm *b = start_vm((struct hvm_opts){ .name = "live", .paused = true });
	char *reg = registry_new("# 50 entries\n");
	int listeners[16], nl = 0;
	const double timeout_s = 3;
	char timeout_arg[16];
	double t0, elapsed;
	struct run r;
	json_t *list;

	for (int i = 0; i < 48; i++) {
		char *name = fmt("dead%02d", i);
		char *sock = fmt("%s/dead%02d.qmp", harness_tmpdir(), i);

		if (i % 3 == 0)
			make_stale_socket(sock);
		else if (i % 3 == 1)
			listeners[nl++] = make_silent_listener(sock);
		/* i % 3 == 2: no file at all */
		registry_append(reg, name, sock);
		if (i == 10)
			registry_append(reg, hvm_name(a), hvm_qmp_path(a));
		if (i == 40)
			registry_append(reg, hvm_name(b), hvm_qmp_path(b));
		free(name);
		free(sock);
	}
	assert_int_equal(nl, 16);

	snprintf(timeout_arg, sizeof timeout_arg, "%g", timeout_s);
	t0 = now_s();
	r = qckpt("vms", "--json", "--timeout", timeout_arg, NULL);
	elapsed = now_s() - t0;
	print_message("qckpt vms: 50 entries (16 silent listeners, --timeout %s s) in %.3f s\n",
		      timeout_arg, elapsed);
	assert_int_equal(r.status, 1);
	list = json_lines(r.out);
	assert_int_equal(json_array_size(list), 50);
	for (int i = 0; i < 48; i++) {
		char *name = fmt("dead%02d", i);
		json_t *o = by_name(list, name);
		const char *why = jstr(o, "Error");

		assert_string_equal(jstr(o, "State"), "unreachable");
		assert_non_null(why);
		if (i % 3 == 0)
			assert_non_null(strstr(why, "nothing listens"));
		else if (i % 3 == 1)
			assert_non_null(strstr(why, "timed out"));
		else
			assert_non_null(strstr(why, "no QMP socket"));
		assert_string_equal(jstr(o, "Reason"), i % 3 == 0 ? "refused" :
				    i % 3 == 1 ? "no answer" : "no socket");
		assert_true(json_is_null(json_object_get(o, "QemuVersion")));
		free(name);
	}
	assert_string_equal(jstr(by_name(list, hvm_name(a)), "State"), "prelaunch");
	assert_string_equal(jstr(by_name(list, hvm_name(b)), "State"), "prelaunch");
	assert_null(json_object_get(by_name(list, hvm_name(a)), "Error"));
	assert_non_null(jstr(by_name(list, hvm_name(b)), "QemuVersion"));
	/* one line per unreachable VM on stderr, naming it */
	assert_int_equal(count_lines(r.err, "unreachable"), 48);
	assert_int_equal(count_lines(r.err, "dead17: unreachable"), 1);
	assert_true(elapsed < 16 * timeout_s);
	json_decref(list);
	run_free(&r);

	/* The same with a short timeout, for the record. */
	t0 = now_s();
	r = qckpt("vms", "--json", "--timeout", "0.3", NULL);
	elapsed = now_s() - t0;
	print_message("qckpt vms: 50 entries (16 silent listeners, --timeout 0.3 s) in %.3f s\n",
		      elapsed);
	assert_int_equal(r.status, 1);
	run_free(&r);

	/* Without the silent listeners the dead ones fail at once. */
	for (int i = 0; i < nl; i++)
		close(listeners[i]);
	t0 = now_s();
	r = qckpt("vms", "--json", NULL);
	elapsed = now_s() - t0;
	print_message("qckpt vms: 50 entries (32 refused or missing, 16 closed listeners) in %.3f s\n",
		      elapsed);
	assert_int_equal(r.status, 1);
	list = json_lines(r.out);
	assert_string_equal(jstr(by_name(list, hvm_name(a)), "State"), "prelaunch");
	json_decref(list);
	run_free(&r);
	free(reg);
	hvm_free(a);
	hvm_free(b);
}

/* The SPEC's -VM pipeline: `qckpt vms --json | qckpt checkpoint -`. */
static void test_vms_json_piped_into_checkpoint_checkpoints_them(void **state)
{
	struct hvm *a = start_vm((struct hvm_opts){ .name = "pipe", .ndisks = 1 });
	struct hvm *b = start_vm((struct hvm_opts){ .name = "pipe", .ndisks = 1 });
	char *reg = registry_new("");
	char *cmd;
	struct run r;
	json_t *list, *latest;

	registry_append(reg, hvm_name(a), hvm_qmp_path(a));
	registry_append(reg, hvm_name(b), hvm_qmp_path(b));
	cmd = fmt("%s vms --json %s %s | %s checkpoint --passthru - nightly",
		  getenv("QCKPT_BIN"), hvm_name(a), hvm_name(b), getenv("QCKPT_BIN"));
	r = shell(cmd);
	free(cmd);
	if (r.status != 0)
		fail_msg("pipeline failed (%d): %s", r.status, r.err);
	list = json_lines(r.out);
	assert_int_equal(json_array_size(list), 2);
	for (size_t i = 0; i < 2; i++) {
		json_t *rec = json_array_get(list, i);
		char *path = fmt("%s/checkpoint.json", jstr(rec, "Path"));

		assert_string_equal(jstr(rec, "Name"), "nightly");
		assert_int_equal(access(path, R_OK), 0);
		free(path);
	}
	json_decref(list);
	run_free(&r);
	assert_status(a, "running");
	assert_status(b, "running");

	/* vms now counts it and names it as the latest */
	r = qckpt("vms", "--json", hvm_name(a), NULL);
	assert_int_equal(r.status, 0);
	list = json_lines(r.out);
	assert_int_equal(json_array_size(list), 1);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0),
							    "CheckpointCount")), 1);
	latest = json_object_get(json_array_get(list, 0), "LatestCheckpoint");
	assert_string_equal(jstr(latest, "Name"), "nightly");
	assert_non_null(jstr(latest, "Id"));
	assert_non_null(jstr(latest, "CreationTime"));
	json_decref(list);
	run_free(&r);
	r = qckpt("vms", hvm_name(b), NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "nightly ("));
	run_free(&r);
	free(reg);
	hvm_free(a);
	hvm_free(b);
}

/* ---- register / unregister ------------------------------------------------ */

static void test_register_and_unregister_round_trip(void **state)
{
	const char *orig = "# my VMs\n\nold /run/old.qmp   # kept as written\n";
	char *reg = registry_new(orig), *text, *want;
	struct run r;

	r = qckpt("register", "web", "unix:/run/qemu/web.qmp", "dir=/srv/ck", "type=production", NULL);
	if (r.status != 0)
		fail_msg("register failed (%d): %s", r.status, r.err);
	assert_string_equal(r.out, "");
	run_free(&r);
	text = read_file(reg);
	want = fmt("%sweb unix:/run/qemu/web.qmp dir=/srv/ck type=production\n", orig);
	assert_string_equal(text, want);
	free(want);
	free(text);

	r = qckpt("vms", "--names", NULL);
	assert_string_equal(r.out, "old\nweb\n");
	run_free(&r);

	/* Refusals: one line, status 2, the file untouched. */
	{
		static const char *const bad[][5] = {
			{ "web", "/run/other.qmp", NULL },              /* duplicate */
			{ "db", "/run/db.qmp", "colour=blue", NULL },    /* unknown key */
			{ "db", "/run/db.qmp", "type=sideways", NULL },  /* bad value */
			{ "db", "/run/db.qmp", "dir=relative", NULL },   /* not absolute */
			{ "db", "/run/db.qmp", "dir=/a", "dir=/b", NULL }, /* twice */
			{ "db", "/run/db.qmp", "dir=/a\nevil /run/evil.qmp", NULL },
			{ "db", "nowhere/db.qmp", NULL },               /* bad monitor */
			{ "-db", "/run/db.qmp", NULL },                 /* bad name */
			{ "db x", "/run/db.qmp", NULL },
		};
		static const char *const says[] = {
			"already registered", "colour", "type", "absolute", "twice",
			"without blanks", "monitor", "name", "name",
		};

		text = read_file(reg);
		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			char *argv[8] = { getenv("QCKPT_BIN"), "register", "--no-check" };
			int n = 3;
			char *now;

			for (int j = 0; bad[i][j] != NULL; j++)
				argv[n++] = (char *)bad[i][j];
			argv[n] = NULL;
			if (strcmp(bad[i][0], "-db") == 0) {
				/* after "--", so it is an argument, not an option */
				memmove(argv + 4, argv + 3, (size_t)(n - 2) * sizeof *argv);
				argv[3] = "--";
			}
			assert_int_equal(harness_run(argv, &r.out, &r.err, &r.status), 0);
			if (r.status != 2 || count_lines(r.err, "") != 1 ||
			    strstr(r.err, says[i]) == NULL)
				fail_msg("register case %zu: status %d, stderr: %s", i, r.status, r.err);
			run_free(&r);
			now = read_file(reg);
			assert_string_equal(now, text);
			free(now);
		}
		free(text);
	}

	/* unregister keeps everything else as written */
	r = qckpt("unregister", "web", NULL);
	assert_int_equal(r.status, 0);
	run_free(&r);
	text = read_file(reg);
	assert_string_equal(text, orig);
	free(text);
	r = qckpt("unregister", "web", NULL);
	assert_int_equal(r.status, 2);
	assert_int_equal(count_lines(r.err, ""), 1);
	assert_non_null(strstr(r.err, "not registered"));
	run_free(&r);
	r = qckpt("unregister", "old", NULL);
	assert_int_equal(r.status, 0);
	run_free(&r);
	text = read_file(reg);
	assert_string_equal(text, "# my VMs\n\n");
	free(text);

	/* --registry names the file (created when missing) */
	{
		char *other = harness_path("registry-new/registry");

		r = qckpt("register", "--registry", other, "db", "/run/db.qmp", NULL);
		assert_int_equal(r.status, 0);
		run_free(&r);
		text = read_file(other);
		assert_string_equal(text, "db /run/db.qmp\n");
		free(text);
		r = qckpt("unregister", "--registry", other, "db", NULL);
		assert_int_equal(r.status, 0);
		run_free(&r);
		free(other);
	}

	/* Without --registry and $QCKPT_REGISTRY, the file that is read is the
	 * one written (root would otherwise write /etc/qckpt/registry, which a
	 * user's ~/.config file hides). */
	{
		char *xdg = harness_path("xdg"), *dir = fmt("%s/qckpt", xdg);
		char *file = fmt("%s/registry", dir);
		char *etc_before = access("/etc/qckpt/registry", F_OK) == 0 ?
				   read_file("/etc/qckpt/registry") : NULL;

		assert_int_equal(mkdir(xdg, 0700), 0);
		assert_int_equal(mkdir(dir, 0700), 0);
		write_file(file, "a /run/a.qmp\n");
		unsetenv("QCKPT_REGISTRY");
		setenv("XDG_CONFIG_HOME", xdg, 1);
		r = qckpt("register", "--no-check", "b", "/run/b.qmp", NULL);
		assert_int_equal(r.status, 0);
		run_free(&r);
		r = qckpt("vms", "--names", NULL);
		assert_string_equal(r.out, "a\nb\n");
		run_free(&r);
		text = read_file(file);
		assert_string_equal(text, "a /run/a.qmp\nb /run/b.qmp\n");
		free(text);
		if (etc_before == NULL) {
			assert_int_not_equal(access("/etc/qckpt/registry", F_OK), 0);
		} else {
			text = read_file("/etc/qckpt/registry");
			assert_string_equal(text, etc_before);
			free(text);
		}
		unsetenv("XDG_CONFIG_HOME");
		setenv("QCKPT_REGISTRY", reg, 1);
		free(etc_before);
		free(file);
		free(dir);
		free(xdg);
	}
	free(reg);
}

/* register asks the socket: another VM's socket gets a warning (and vms
 * then reports the mismatch); the VM's own socket is quiet. */
static void test_register_warns_when_the_socket_belongs_to_another_vm(void **state)
{
	struct hvm *vm = start_vm((struct hvm_opts){ .name = "named", .paused = true });
	char *reg = registry_new("");
	char *sock = fmt("unix:%s", hvm_qmp_path(vm));
	struct run r;

	r = qckpt("register", hvm_name(vm), sock, NULL);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, "");
	run_free(&r);

	r = qckpt("register", "impostor", sock, NULL);
	assert_int_equal(r.status, 0);
	assert_int_equal(count_lines(r.err, ""), 1);
	assert_non_null(strstr(r.err, "warning"));
	assert_non_null(strstr(r.err, hvm_name(vm)));
	assert_non_null(strstr(r.err, "query-name"));
	run_free(&r);

	r = qckpt("register", "--no-check", "impostor2", sock, NULL);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, "");
	run_free(&r);

	r = qckpt("vms", "--json", "impostor", hvm_name(vm), NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "impostor: unreachable"));
	assert_non_null(strstr(r.err, "query-name"));
	{
		json_t *list = json_lines(r.out);

		assert_string_equal(jstr(by_name(list, "impostor"), "State"), "unreachable");
		assert_string_equal(jstr(by_name(list, "impostor"), "Reason"), "wrong VM");
		assert_string_equal(jstr(by_name(list, hvm_name(vm)), "State"), "prelaunch");
		json_decref(list);
	}
	run_free(&r);
	/* the table says it in its State column */
	r = qckpt("vms", "impostor", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.out, "\nimpostor         unreachable: wrong VM "));
	run_free(&r);

	/* A socket that is not there yet is fine: the VM may start later. */
	r = qckpt("register", "later", "/nonexistent/later.qmp", NULL);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, "");
	run_free(&r);
	free(sock);
	free(reg);
	hvm_free(vm);
}

static int setup(void **state)
{
	return group_files_setup("test-vms", NULL, &catalog_dir);
}

static int setup_qemu10(void **state)
{
	qemu_bin = harness_require_qemu10();
	if (qemu_bin == NULL)
		return -1;
	return setup(state);
}

static int teardown(void **state)
{
	group_files_teardown(NULL, &catalog_dir);
	return 0;
}

int main(void)
{
	int rc = harness_init(), failed;
	/* What asks QEMU something, on QEMU 10 too. */
	const struct CMUnitTest tests_qemu10[] = {
		cmocka_unit_test(test_vms_shows_running_paused_and_postmigrate_vms),
		cmocka_unit_test(test_vms_json_piped_into_checkpoint_checkpoints_them),
	};
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vms_shows_running_paused_and_postmigrate_vms),
		cmocka_unit_test(test_dead_monitors_do_not_delay_live_vms),
		cmocka_unit_test(test_vms_json_piped_into_checkpoint_checkpoints_them),
		cmocka_unit_test(test_register_and_unregister_round_trip),
		cmocka_unit_test(test_register_warns_when_the_socket_belongs_to_another_vm),
	};

	if (rc != 0)
		return rc;
	/* QCKPT_TEST_FILTER=pattern runs only the matching tests. */
	if (getenv("QCKPT_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("QCKPT_TEST_FILTER"));
	failed = cmocka_run_group_tests_name("vms, register, unregister", tests,
					     setup, teardown);
	if (harness_want_qemu10())
		failed += cmocka_run_group_tests_name("vms on QEMU 10", tests_qemu10,
						      setup_qemu10, teardown);
	return failed ? 1 : 0;
}
