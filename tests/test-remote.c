/*
 * test-remote.c: qckpt on other hosts (-C, --credential, sessions, VM
 * objects routed by ComputerName) against real hosts: network namespaces
 * made by tests/remote-hosts, each with its own sshd on its own address, its
 * own registry and catalog (the sshd's SetEnv) and the qckpt under test in
 * its PATH, and a test-guest VM registered there as "web".  The VMs' QEMUs
 * run here (unix sockets are shared by the namespaces); everything else a
 * host does, it does through its own sshd.
 *
 * The sshds are this test's children, so stopping one ("host down") waits
 * for its exit, and readiness is its "Server listening" line: nothing
 * sleeps.  The namespaces, links and sshds are torn down by the group's
 * teardown, which cmocka runs after failures too, and at exit.
 *
 * Needs root (ip netns, sshd): skipped without it, failed under CI=true.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "remote.h"
#include "rvm.h"
#include "testutil.h"

#define BOOT_MS 300000u /* only a failure waits this long */
#define WAIT_MS 60000u
#define NHOSTS 2

static char *hosts_dir;      /* tests/remote-hosts's DIR */
static char *registry_path, *catalog_dir; /* this machine's */
static char *key_cred;       /* "identity=DIR/key" */
static struct child sshd[NHOSTS];
static bool sshd_running[NHOSTS];
static struct hvm *vms[NHOSTS];
static struct rvm *h1vm;    /* launched by h1_rvm() when a test needs it */
static struct rvm *h1vm10;  /* the same on QEMU 10, by h1_rvm10() */
static long stopped_qckpt;  /* h1's qckpt held by a test, killed by the teardown */

/* ---- the hosts ---------------------------------------------------------- */

static void sshd_start(int i)
{
	char *prog = fmt("%s/h%d/sshd", hosts_dir, i + 1);
	char *argv[] = { prog, "-D", "-e", NULL };
	struct child_said ready = { &sshd[i], "Server listening" };

	child_start(&sshd[i], argv);
	free(prog);
	assert_int_equal(harness_run_until(child_said, &ready, WAIT_MS), 0);
	if (sshd[i].exited)
		fail_msg("sshd of h%d exited: %s", i + 1, sshd[i].errbuf);
	sshd_running[i] = true;
}

static void sshd_stop(int i)
{
	if (!sshd_running[i])
		return;
	uv_process_kill(&sshd[i].proc, SIGTERM);
	harness_run_until(child_done, &sshd[i], WAIT_MS);
	sshd_running[i] = false;
}

static void hosts_down(void)
{
	char *cmd;

	for (int i = 0; i < NHOSTS; i++)
		sshd_stop(i);
	if (hosts_dir == NULL)
		return;
	cmd = fmt("'%s/tests/remote-hosts' down '%s'", getenv("QCKPT_TOP_SRCDIR"), hosts_dir);
	run_free((struct run[]){ shell(cmd) });
	free(cmd);
}

static void host_register(int i, const char *name, struct hvm *vm)
{
	char *path = fmt("%s/h%d/registry", hosts_dir, i + 1);
	FILE *f = fopen(path, "a");

	assert_non_null(f);
	fprintf(f, "%s unix:%s\n", name, hvm_qmp_path(vm));
	fclose(f);
	free(path);
}

static int group_setup(void **state)
{
	struct run r;
	char *cmd;

	if (group_files_setup("test-remote", &registry_path, &catalog_dir) < 0)
		return -1;
	hosts_dir = harness_path("hosts");
	mkdir(hosts_dir, 0700);
	cmd = fmt("'%s/tests/remote-hosts' up '%s' %d '%s'", getenv("QCKPT_TOP_SRCDIR"),
		  hosts_dir, NHOSTS, harness_qckpt());
	r = shell(cmd);
	free(cmd);
	if (r.status != 0) {
		fprintf(stderr, "remote-hosts up failed: %s\n", r.err);
		run_free(&r);
		return -1;
	}
	run_free(&r);
	cmd = fmt("%s/ssh", hosts_dir);
	setenv("QCKPT_SSH", cmd, 1);
	free(cmd);
	key_cred = fmt("identity=%s/key", hosts_dir);
	for (int i = 0; i < NHOSTS; i++)
		sshd_start(i);
	for (int i = 0; i < NHOSTS; i++) {
		struct hvm_opts o = { .name = i ? "webtwo" : "webone", .qemu_name = "web",
				      .ndisks = 1 };

		vms[i] = hvm_start(&o);
		if (vms[i] == NULL)
			return -1;
		host_register(i, "web", vms[i]);
	}
	for (int i = 0; i < NHOSTS; i++)
		if (hvm_wait_tick(vms[i], BOOT_MS) <= 0)
			return -1;
	return 0;
}

static int group_teardown(void **state)
{
	if (stopped_qckpt > 0)
		kill((pid_t)stopped_qckpt, SIGKILL);
	stopped_qckpt = 0;
	rvm_kill_all();
	h1vm = NULL;
	h1vm10 = NULL;
	free(rvm_catalog_dir);
	rvm_catalog_dir = NULL;
	for (int i = 0; i < NHOSTS; i++) {
		hvm_free(vms[i]);
		vms[i] = NULL;
	}
	hosts_down();
	free(hosts_dir);
	hosts_dir = NULL;
	free(key_cred);
	key_cred = NULL;
	group_files_teardown(&registry_path, &catalog_dir);
	return 0;
}

static void at_exit_down(void)
{
	hosts_down();
}

/* The one object of LINES whose ComputerName is HOST (fails otherwise). */
static json_t *from_host(json_t *lines, const char *host)
{
	json_t *o, *found = NULL;
	size_t i;

	json_array_foreach(lines, i, o)
		if (jstr(o, "ComputerName") && strcmp(jstr(o, "ComputerName"), host) == 0) {
			if (found)
				fail_msg("two objects from %s", host);
			found = o;
		}
	if (!found)
		fail_msg("no object from %s", host);
	return found;
}

/* Whether a line of TEXT starts with FIRST and holds A and then B. */
static bool has_row(const char *text, const char *first, const char *a, const char *b)
{
	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		size_t len = strcspn(l, "\n");
		char *line = strndup(l, len);
		const char *pa = strstr(line, a);
		bool ok = strncmp(line, first, strlen(first)) == 0 && pa && strstr(pa + strlen(a) - 1, b);

		free(line);
		if (ok)
			return true;
	}
	return false;
}

/* ---- restoring a checkpoint by hand, as the README shows ---------------- */

/*
 * A new QEMU on fresh overlays over the record's frozen images, loading its
 * memory state (a plain stream: paused mode on QEMU 7.2): the guest must
 * carry on from the counter its disks hold, never boot again.
 */
static void restore_and_check(json_t *record)
{
	json_t *d = json_array_get(json_object_get(record, "Disks"), 0);
	const char *mem = jstr(json_object_get(record, "MemoryState"), "Path");
	char *ov = fmt("%s/restored-%s.qcow2", harness_tmpdir(), jstr(record, "Id"));
	char *uri = fmt("exec:cat '%s'", mem);
	const char *paths[] = { ov, NULL };
	struct hvm_opts o = { .name = "restored", .disk_paths = paths, .ndisks = 1,
			      .disk_format = HVM_QCOW2, .incoming = "defer" };
	long counter, tick;
	struct hvm *vm;
	const struct hvm_event *e;

	assert_non_null(d);
	assert_non_null(mem);
	counter = disk_read_counter(jstr(d, "CheckpointImage"));
	assert_true(counter > 0);
	assert_int_equal(disk_create_overlay(ov, jstr(d, "CheckpointImage"), "qcow2"), 0);
	vm = hvm_start(&o);
	assert_non_null(vm);
	assert_int_equal(hvm_qmp(vm, "migrate-set-capabilities",
				 json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability", "events",
					   "state", 1), NULL), 0);
	assert_int_equal(hvm_qmp(vm, "migrate-incoming", json_pack("{s:s}", "uri", uri), NULL), 0);
	while ((e = hvm_wait_event(vm, "MIGRATION", WAIT_MS)) != NULL &&
	       strcmp(jstr(e->data, "status"), "completed") != 0)
		assert_string_not_equal(jstr(e->data, "status"), "failed");
	assert_non_null(e);
	assert_int_equal(hvm_qmp(vm, "cont", NULL, NULL), 0);
	tick = hvm_wait_tick(vm, WAIT_MS);
	assert_true(tick > 1);
	for (size_t i = 0; i < hvm_serial_count(vm); i++)
		assert_null(strstr(hvm_serial_line(vm, i), "qckpt-guest: boot"));
	if (counter < tick - 1 || counter > tick)
		fail_msg("%s on %s: disk holds %ld, memory resumed at tick %ld",
			 jstr(record, "VMName"), jstr(record, "ComputerName"), counter, tick);
	hvm_free(vm);
	free(uri);
	free(ov);
}

/* ---- tests ------------------------------------------------------------------ */

/* Whatever an argument holds, the remote shell gives it back unchanged. */
static void test_shell_quoting_keeps_every_argument_unchanged(void **state)
{
	const char *hostile[] = { "plain", "with space", "it's", "\"double\"", "a;b", "$(touch x)",
				  "`id`", "new\nline", "back\\slash", "*", "", "'", "-n", "~root" };

	for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
		char *q = remote_shell_quote(hostile[i]);
		char *cmd = fmt("printf '%%s|' %s", q);
		struct run r = shell(cmd);
		char *want = fmt("%s|", hostile[i]);

		assert_int_equal(r.status, 0);
		assert_string_equal(r.out, want);
		run_free(&r);
		free(want);
		free(cmd);
		free(q);
	}
}

static void test_checkpoint_and_list_on_two_hosts_in_one_command(void **state)
{
	struct run r;
	json_t *lines;

	r = qckpt("checkpoint", "-C", "h1,h2", "--credential", key_cred, "--mode", "paused",
		  "--passthru", "web", "nightly", NULL);
	if (r.status != 0)
		fail_msg("checkpoint -C h1,h2: %d: %s", r.status, r.err);
	lines = json_lines(r.out);
	assert_int_equal(json_array_size(lines), NHOSTS);
	for (int i = 0; i < NHOSTS; i++) {
		char host[8];
		json_t *rec;

		snprintf(host, sizeof host, "h%d", i + 1);
		rec = from_host(lines, host);
		assert_string_equal(jstr(rec, "Name"), "nightly");
		assert_string_equal(jstr(rec, "VMName"), "web");
		/* the record is on that host's catalog */
		snprintf(host, sizeof host, "/h%d/", i + 1);
		assert_non_null(strstr(jstr(rec, "Path"), host));
		restore_and_check(rec);
	}
	json_decref(lines);
	run_free(&r);

	/* list: JSON objects tagged, and a table drawn here */
	r = qckpt("list", "-C", "h1,h2", "--credential", key_cred, "--json", NULL);
	assert_int_equal(r.status, 0);
	lines = json_lines(r.out);
	assert_string_equal(jstr(from_host(lines, "h1"), "Name"), "nightly");
	assert_string_equal(jstr(from_host(lines, "h2"), "Name"), "nightly");
	json_decref(lines);
	run_free(&r);
	r = qckpt("vms", "-C", "h2,h1", "--credential", key_cred, NULL);
	assert_int_equal(r.status, 0);
	assert_true(has_row(r.out, "ComputerName ", "Name", "State"));
	assert_true(has_row(r.out, "h1 ", " web ", " running "));
	assert_true(has_row(r.out, "h2 ", " web ", " running "));
	run_free(&r);
	/* an output that is text (--names) is passed on, host by host */
	r = qckpt("vms", "-C", "h1,h2", "--credential", key_cred, "--names", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "h1: web\n"));
	assert_non_null(strstr(r.out, "h2: web\n"));
	run_free(&r);
}

/* This host runs in-process beside the others: its objects say so. */
static void test_this_host_and_a_remote_one_together(void **state)
{
	char host[256];
	struct run r;
	json_t *lines;
	FILE *f = fopen(registry_path, "a");

	assert_non_null(f);
	fprintf(f, "web unix:%s\n", hvm_qmp_path(vms[0]));
	fclose(f);
	gethostname(host, sizeof host);
	r = qckpt("vms", "-C", "localhost,h2", "--credential", key_cred, "--json", NULL);
	assert_int_equal(r.status, 0);
	lines = json_lines(r.out);
	assert_int_equal(json_array_size(lines), 2);
	assert_string_equal(jstr(from_host(lines, host), "Name"), "web");
	assert_string_equal(jstr(from_host(lines, "h2"), "Name"), "web");
	json_decref(lines);
	run_free(&r);
	/* alone, this host runs as ever */
	r = qckpt("vms", "-C", ".", "--names", NULL);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "web\n");
	run_free(&r);
}

/* Names with quotes, ';', $(...) and backquotes reach the host unchanged. */
static void test_hostile_names_arrive_unchanged(void **state)
{
	char *pwned = fmt("%s/pwned", hosts_dir);
	char *name = fmt("it's \"x\"; $(touch %s) `touch %s` \\ * end", pwned, pwned);
	struct run r;
	json_t *lines;

	r = qckpt("checkpoint", "-C", "h1", "--credential", key_cred, "--mode", "disk-only",
		  "--passthru", "web", name, NULL);
	if (r.status != 0)
		fail_msg("checkpoint: %s", r.err);
	lines = json_lines(r.out);
	assert_string_equal(jstr(from_host(lines, "h1"), "Name"), name);
	json_decref(lines);
	run_free(&r);
	assert_int_not_equal(access(pwned, F_OK), 0);
	/* a newline too: the remote's error names the VM exactly */
	r = qckpt("vms", "-C", "h1", "--credential", key_cred, "no\nsuch;$(touch x)", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "qckpt: h1: no\n"));
	assert_non_null(strstr(r.err, "such;$(touch x): not in the registry"));
	run_free(&r);
	free(name);
	free(pwned);
}

static void test_wrong_credential_fails_that_host_with_one_line(void **state)
{
	char *wrong = fmt("identity=%s/wrongkey", hosts_dir);
	struct run r = qckpt("vms", "-C", "h1", "--credential", wrong, NULL);

	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "qckpt: h1: cannot reach it over ssh: "));
	assert_non_null(strstr(r.err, "Permission denied"));
	assert_null(strchr(strchr(r.err, '\n') + 1, '\n')); /* one line */
	run_free(&r);
	/* no password, ever */
	r = qckpt("vms", "-C", "h1", "--credential", "password=secret", NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "never takes a password"));
	run_free(&r);
	free(wrong);
}

/* A host without qckpt and one with an incompatible qckpt: each one line. */
static void test_missing_or_incompatible_qckpt_is_named(void **state)
{
	char *old = fmt("%s/bin/qckpt-old", hosts_dir);
	FILE *f = fopen(old, "w");
	struct run r;

	assert_non_null(f);
	fputs("#!/bin/sh\necho '{\"Program\":\"qckpt\",\"Version\":\"9.9\",\"Protocol\":99}'\nexit 3\n", f);
	fclose(f);
	chmod(old, 0755);
	setenv("QCKPT_REMOTE_QCKPT", "qckpt-old", 1);
	r = qckpt("vms", "-C", "h1", "--credential", key_cred, NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "qckpt: h1: runs qckpt 9.9, which speaks remote protocol 99"));
	run_free(&r);
	setenv("QCKPT_REMOTE_QCKPT", "qckpt-not-there", 1);
	r = qckpt("vms", "-C", "h1", "--credential", key_cred, NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "qckpt: h1: qckpt is not installed there"));
	run_free(&r);
	unsetenv("QCKPT_REMOTE_QCKPT");
	free(old);
}

/* `qckpt vms -C h1,h2 --json web | qckpt checkpoint -`: each object goes to its host. */
static void test_vm_objects_on_stdin_go_to_their_host(void **state)
{
	char *cmd = fmt("'%s' vms -C h1,h2 --credential '%s' --json web | '%s' checkpoint - piped --credential '%s' --mode disk-only --passthru",
			harness_qckpt(), key_cred, harness_qckpt(), key_cred);
	struct run r = shell(cmd);
	json_t *lines;

	if (r.status != 0)
		fail_msg("%s: %s", cmd, r.err);
	lines = json_lines(r.out);
	assert_int_equal(json_array_size(lines), 2);
	assert_string_equal(jstr(from_host(lines, "h1"), "Name"), "piped");
	assert_string_equal(jstr(from_host(lines, "h2"), "Name"), "piped");
	assert_non_null(strstr(jstr(from_host(lines, "h2"), "Path"), "/h2/catalog/"));
	json_decref(lines);
	run_free(&r);
	free(cmd);
}

static void test_session_is_reused_and_a_dead_one_is_reported(void **state)
{
	struct run r;
	json_t *lines;
	char *cmd;

	r = qckpt("session", "open", "h1", "--credential", key_cred, "--name", "s1", NULL);
	if (r.status != 0)
		fail_msg("session open: %s", r.err);
	run_free(&r);
	r = qckpt("session", "list", "--json", NULL);
	lines = json_lines(r.out);
	assert_int_equal(json_array_size(lines), 1);
	assert_string_equal(jstr(json_array_get(lines, 0), "State"), "open");
	assert_string_equal(jstr(json_array_get(lines, 0), "ComputerName"), "h1");
	json_decref(lines);
	run_free(&r);
	/* no credential given: the session's connection is authenticated */
	r = qckpt("list", "--session", "s1", "--json", "web", NULL);
	assert_int_equal(r.status, 0);
	lines = json_lines(r.out);
	assert_true(json_array_size(lines) >= 1);
	assert_string_equal(jstr(json_array_get(lines, 0), "ComputerName"), "h1");
	json_decref(lines);
	run_free(&r);
	/* its ssh master goes away: the session is dead, and says so */
	cmd = fmt("'%s/ssh' -oControlPath='%s/sessions/s1.sock' -O exit h1", hosts_dir,
		  getenv("QCKPT_RUNTIME_DIR"));
	r = shell(cmd);
	assert_int_equal(r.status, 0);
	run_free(&r);
	free(cmd);
	r = qckpt("vms", "--session", "s1", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "qckpt: h1: session 's1' is dead"));
	run_free(&r);
	r = qckpt("session", "list", NULL);
	assert_non_null(strstr(r.out, "dead"));
	run_free(&r);
	r = qckpt("session", "close", "s1", NULL);
	assert_int_equal(r.status, 0);
	run_free(&r);
	r = qckpt("session", "list", "--json", NULL);
	assert_string_equal(r.out, "");
	run_free(&r);
	/* a wrong credential opens nothing */
	cmd = fmt("identity=%s/wrongkey", hosts_dir);
	r = qckpt("session", "open", "h2", "--credential", cmd, NULL);
	free(cmd);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "qckpt: h2: cannot open a session: "));
	run_free(&r);
	r = qckpt("session", "list", "--json", NULL);
	assert_string_equal(r.out, "");
	run_free(&r);
}

/* h2's sshd stopped: h1 is checkpointed all the same, h2 gets its line. */
static void test_one_host_down_the_other_done(void **state)
{
	struct run r;
	json_t *lines;

	sshd_stop(1);
	r = qckpt("checkpoint", "-C", "h1,h2", "--credential", key_cred, "--mode", "disk-only",
		  "--passthru", "web", "while-h2-down", NULL);
	assert_int_equal(r.status, 1);
	lines = json_lines(r.out);
	assert_int_equal(json_array_size(lines), 1);
	assert_string_equal(jstr(from_host(lines, "h1"), "Name"), "while-h2-down");
	json_decref(lines);
	assert_non_null(strstr(r.err, "qckpt: h2: cannot reach it over ssh: "));
	assert_null(strstr(r.err, "h1: cannot reach"));
	assert_null(strstr(r.err, "failed"));
	run_free(&r);
	sshd_start(1);
}


/* ---- restore, remove, rename, export and job on h1 -------------------------- */

/*
 * A VM on h1 launched through `qckpt run` (rvm.h), so that a restore there
 * can relaunch it: its registry, catalog, runtime and jobs directories are
 * h1's, as if h1's own qckpt had launched it.
 */
static void setenv_h1(const char *var, const char *sub)
{
	char *v = fmt("%s/h1/%s", hosts_dir, sub);

	setenv(var, v, 1);
	free(v);
}

/* A VM launched on h1 with QEMU (NULL: the harness's 7.2). */
static struct rvm *h1_launch(const char *base, const char *qemu)
{
	char *saved[4];
	static const char *const vars[] = { "QCKPT_REGISTRY", "QCKPT_CATALOG_DIR",
					    "QCKPT_RUNTIME_DIR", "QCKPT_JOBS_DIR" };
	static const char *const subs[] = { "registry", "catalog", "run", "jobs" };
	struct rvm *vm;

	free(rvm_catalog_dir);
	rvm_catalog_dir = fmt("%s/h1/catalog", hosts_dir);
	for (int i = 0; i < 4; i++) {
		saved[i] = getenv(vars[i]) ? strdup(getenv(vars[i])) : NULL;
		setenv_h1(vars[i], subs[i]);
	}
	rvm_qemu_bin = &qemu;
	vm = rvm_launch(base, 1, 128);
	rvm_qemu_bin = NULL;
	for (int i = 0; i < 4; i++) {
		if (saved[i])
			setenv(vars[i], saved[i], 1);
		else
			unsetenv(vars[i]);
		free(saved[i]);
	}
	rvm_wait_boot(vm);
	return vm;
}

/* The VM on h1 most cases share (QEMU 7.2): one boot for all of them. */
static struct rvm *h1_rvm(void)
{
	if (h1vm == NULL)
		h1vm = h1_launch("onh", NULL);
	return h1vm;
}

/* One on QEMU 10 (QCKPT_QEMU10) for a case of its own; 7.2's when there
 * is no QEMU 10 and none is required. */
static struct rvm *h1_rvm10(void)
{
	const char *q10;

	if (h1vm10 != NULL)
		return h1vm10;
	if (!harness_want_qemu10())
		return h1_rvm();
	q10 = harness_require_qemu10();
	assert_non_null(q10);
	h1vm10 = h1_launch("onhten", q10);
	return h1vm10;
}

/* The mode whose saves restore safely on VM's QEMU: live on 10, paused on
 * 7.2, whose live pre-copy under TCG can lose dirty pages (issue 7). */
static const char *mode_for(struct rvm *vm)
{
	return vm == h1vm10 ? "live" : "paused";
}

/* `restore -C h1 VM CHECKPOINT`: the VM's next life carries on from COUNTER. */
static void restore_on_h1(struct rvm *vm, const char *checkpoint, long counter)
{
	int life = vm->lives + 1;
	char *what = fmt("restore -C h1 %s %s", vm->name, checkpoint);
	struct run r = qckpt("restore", "-C", "h1", "--credential", key_cred, vm->name, checkpoint,
			     NULL);

	if (r.status != 0)
		fail_msg("%s: %d: %s", what, r.status, r.err);
	run_free(&r);
	carries_on(vm, life, counter, what);
	free(what);
}

/* A checkpoint of VM on h1 (its --passthru record, tagged h1). */
static json_t *checkpoint_on_h1(const char *vm, const char *mode, const char *name)
{
	struct run r = qckpt("checkpoint", "-C", "h1", "--credential", key_cred, "--mode", mode,
			     "--passthru", vm, name, NULL);
	json_t *lines, *rec;

	if (r.status != 0)
		fail_msg("checkpoint -C h1 %s %s: %d: %s", vm, name, r.status, r.err);
	lines = json_lines(r.out);
	rec = json_incref(from_host(lines, "h1"));
	json_decref(lines);
	run_free(&r);
	return rec;
}

/* Names of VM's checkpoints on HOST, as `list -C HOST --json` gives them,
 * joined by '|' (with one at each end). */
static char *names_on(const char *host, const char *vm)
{
	struct run r = qckpt("list", "-C", host, "--credential", key_cred, "--json", vm, NULL);
	json_t *lines, *o;
	size_t i;
	char *names = strdup("|");

	assert_int_equal(r.status, 0);
	lines = json_lines(r.out);
	json_array_foreach(lines, i, o) {
		char *more = fmt("%s%s|", names, jstr(o, "Name"));

		assert_string_equal(jstr(o, "ComputerName"), host);
		free(names);
		names = more;
	}
	json_decref(lines);
	run_free(&r);
	return names;
}

/* The restored QEMU is started by h1's qckpt in a session of its own: it
 * runs on once the command has returned and its ssh connection is gone. */
static void test_restore_on_h1_brings_the_vm_back_and_outlives_the_ssh_session(void **state)
{
	struct rvm *vm = h1_rvm();
	json_t *rec = checkpoint_on_h1(vm->name, mode_for(vm), "before-restore");
	long counter = frozen_counter(rec), pid, tick;
	int life = vm->lives + 1;
	struct run r;

	r = qckpt("restore", "-C", "h1", "--credential", key_cred, vm->name, "before-restore", NULL);
	if (r.status != 0)
		fail_msg("restore -C h1: %d: %s", r.status, r.err);
	run_free(&r);
	/* the ssh child has exited: qckpt() waited for it */
	carries_on(vm, life, counter, "restore -C h1");
	pid = vm_pid(vm);
	assert_true(pid > 0);
	/* nor does it go with h1's sshd */
	sshd_stop(0);
	tick = wait_tick(vm, life, WAIT_MS);
	sshd_start(0);
	assert_true(tick > counter);
	assert_int_equal(vm_pid(vm), pid);
	json_decref(rec);
}

static void test_export_on_h1_writes_the_directory_on_h1(void **state)
{
	struct rvm *vm = h1_rvm();
	json_t *rec = checkpoint_on_h1(vm->name, mode_for(vm), "to-export");
	char *dir = fmt("%s/h1/exported", hosts_dir);
	char *path = fmt("%s/checkpoint.json", dir);
	struct run r;
	json_t *copy;

	r = qckpt("export", "-C", "h1", "--credential", key_cred, vm->name, "to-export", dir, NULL);
	if (r.status != 0)
		fail_msg("export -C h1: %d: %s", r.status, r.err);
	run_free(&r);
	/* the export of h1's record: its Id, not one of this machine's */
	copy = json_load_file(path, 0, NULL);
	if (copy == NULL)
		fail_msg("no %s after export -C h1", path);
	assert_string_equal(jstr(copy, "Id"), jstr(rec, "Id"));
	json_decref(copy);
	/* and the checkpoint it copied (memory too) restores there */
	restore_on_h1(vm, "to-export", frozen_counter(rec));
	json_decref(rec);
	free(path);
	free(dir);
}

/*
 * rename and remove on h1 change h1's catalog only (h2's checkpoint of the
 * same name stays), and leave what they keep restorable: the renamed
 * checkpoint restores under its new name, and after it is removed the
 * checkpoint taken on top of it still restores, from the counter its disk
 * holds.  On QEMU 10 (live saves): the one case of this program on it.
 */
static void test_rename_and_remove_on_h1_leave_h2_alone_and_keep_restores_whole(void **state)
{
	struct rvm *vm = h1_rvm10();
	json_t *rec, *kept, *lines;
	struct run r;
	char *names;
	long kept_counter;

	rec = checkpoint_on_h1(vm->name, mode_for(vm), "both");
	r = qckpt("checkpoint", "-C", "h2", "--credential", key_cred, "--mode", "disk-only",
		  "web", "both", NULL);
	if (r.status != 0)
		fail_msg("checkpoint -C h2: %s", r.err);
	run_free(&r);
	r = qckpt("rename", "-C", "h1", "--credential", key_cred, vm->name, "both", "renamed", NULL);
	if (r.status != 0)
		fail_msg("rename -C h1: %d: %s", r.status, r.err);
	run_free(&r);
	names = names_on("h1", vm->name);
	assert_non_null(strstr(names, "|renamed|"));
	assert_null(strstr(names, "|both|"));
	free(names);
	names = names_on("h2", "web");
	assert_non_null(strstr(names, "|both|"));
	assert_null(strstr(names, "|renamed|"));
	free(names);
	restore_on_h1(vm, "renamed", frozen_counter(rec));

	/* a checkpoint on top of it, then it goes: its layer merges */
	kept = checkpoint_on_h1(vm->name, mode_for(vm), "kept");
	kept_counter = frozen_counter(kept); /* the remove may merge its image */
	r = qckpt("remove", "-C", "h1", "--credential", key_cred, "--passthru", vm->name, "renamed",
		  NULL);
	if (r.status != 0)
		fail_msg("remove -C h1: %d: %s", r.status, r.err);
	lines = json_lines(r.out);
	assert_string_equal(jstr(from_host(lines, "h1"), "Name"), "renamed");
	json_decref(lines);
	run_free(&r);
	names = names_on("h1", vm->name);
	assert_null(strstr(names, "|renamed|"));
	assert_non_null(strstr(names, "|kept|"));
	free(names);
	names = names_on("h2", "web");
	assert_non_null(strstr(names, "|both|"));
	free(names);
	restore_on_h1(vm, "kept", kept_counter);
	json_decref(kept);
	json_decref(rec);
}

/* `checkpoint --as-job -C h1` prints h1's job id; `job -C h1` waits for it
 * and shows it there; its checkpoint restores on h1. */
static void test_job_on_h1_waits_for_and_shows_a_checkpoint_started_as_a_job(void **state)
{
	struct rvm *vm = h1_rvm();
	struct run r;
	json_t *job, *lines, *o, *rec = NULL;
	size_t i;
	char *id;

	r = qckpt("checkpoint", "-C", "h1", "--credential", key_cred, "--as-job", "--mode",
		  mode_for(vm), vm->name, "as-job", NULL);
	if (r.status != 0)
		fail_msg("checkpoint --as-job -C h1: %d: %s", r.status, r.err);
	id = strndup(r.out, strcspn(r.out, "\n"));
	assert_true(id[0] != '\0' && id[strspn(id, "0123456789")] == '\0');
	run_free(&r);
	r = qckpt("job", "-C", "h1", "--credential", key_cred, "wait", "--timeout", "120", id, NULL);
	if (r.status != 0)
		fail_msg("job -C h1 wait %s: %d: %s", id, r.status, r.err);
	run_free(&r);
	r = qckpt("job", "-C", "h1", "--credential", key_cred, "show", id, NULL);
	if (r.status != 0)
		fail_msg("job -C h1 show %s: %d: %s", id, r.status, r.err);
	/* one object, indented as `job show` prints it, tagged with its host */
	job = json_loads(r.out, 0, NULL);
	if (job == NULL)
		fail_msg("job -C h1 show %s: not one JSON object: %s", id, r.out);
	assert_string_equal(jstr(job, "ComputerName"), "h1");
	assert_string_equal(jstr(job, "State"), "Completed");
	assert_non_null(strstr(r.out, "{\n  \"")); /* indented, as here */
	json_decref(job);
	run_free(&r);
	/* the job's checkpoint is h1's, and restores there */
	r = qckpt("list", "-C", "h1", "--credential", key_cred, "--json", vm->name, NULL);
	assert_int_equal(r.status, 0);
	lines = json_lines(r.out);
	json_array_foreach(lines, i, o)
		if (strcmp(jstr(o, "Name"), "as-job") == 0)
			rec = json_incref(o);
	json_decref(lines);
	run_free(&r);
	if (rec == NULL)
		fail_msg("no checkpoint 'as-job' on h1 after job %s", id);
	assert_string_equal(jstr(rec, "ComputerName"), "h1");
	restore_on_h1(vm, "as-job", frozen_counter(rec));
	json_decref(rec);
	free(id);
}

/* ---- Ctrl-C reaches h1's qckpt --------------------------------------------- */

static bool never(void *arg)
{
	return false;
}

/* PID's state in /proc ('R', 'S', 'T', 'Z'...), or 0 when it is gone. */
static char proc_state(long pid)
{
	char *path = fmt("/proc/%ld/stat", pid), buf[512];
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
	const char *paren;

	free(path);
	if (f)
		fclose(f);
	buf[n] = '\0';
	paren = strrchr(buf, ')'); /* after the command's name, whatever it holds */
	return paren && paren[1] == ' ' ? paren[2] : 0;
}

/* The first tick VM's guest prints from now on (older lines skipped). */
static long fresh_tick(struct rvm *vm)
{
	life_printed(vm, vm->lives, ""); /* takes in what has come */
	vm->cursor = vm->nlines;
	return wait_tick(vm, vm->lives, WAIT_MS);
}

/*
 * A wrapper h1 runs as its qckpt (QCKPT_REMOTE_QCKPT): the command (not the
 * hello) writes its pid where the test reads it and stops itself on
 * entering the memory save (QCKPT_TEST_STOP_AT), so that the test can
 * interrupt it there.  Returns the pid file's path.
 */
static char *stopping_qckpt_on_h1(void)
{
	char *wrapper = fmt("%s/bin/qckpt-stops-at-save", hosts_dir);
	char *pidfile = fmt("%s/h1/remote-qckpt.pid", hosts_dir);
	FILE *f = fopen(wrapper, "w");

	assert_non_null(f);
	fprintf(f, "#!/bin/sh\n[ \"$1\" = hello ] || echo $$ >'%s'\n"
		"export QCKPT_TEST_STOP_AT=save\nexec qckpt \"$@\"\n", pidfile);
	fclose(f);
	chmod(wrapper, 0755);
	unlink(pidfile);
	free(wrapper);
	return pidfile;
}

/* vm.json's Disks AFTER an undone checkpoint say what BEFORE said; a VM
 * never checkpointed has none before, and the undone checkpoint may leave
 * each disk recorded on its original image, with nothing above it. */
static void disks_as_before(json_t *before, json_t *after)
{
	size_t i;
	json_t *d;

	if (json_array_size(before) > 0) {
		assert_true(json_equal(before, after));
		return;
	}
	json_array_foreach(after, i, d) {
		assert_string_equal(jstr(d, "ActiveImage"), jstr(d, "OriginalImage"));
		assert_int_equal(json_array_size(json_object_get(d, "Chain")), 1);
	}
}

/*
 * A terminal's Ctrl-C (SIGINT to the local qckpt's process group) while
 * h1's qckpt saves the guest's memory (paused mode: the guest stopped by
 * it): h1's qckpt is interrupted as if there, undoes the checkpoint (its
 * line comes back through ssh) and ends; both exit 1; the guest runs on in
 * the same QEMU from where it was, and nothing is recorded.  h1's qckpt is
 * held at the save (QCKPT_TEST_STOP_AT) and its QEMU is stopped (SIGSTOP)
 * until the interrupt has arrived, so the save cannot finish first.
 */
static void test_ctrl_c_reaches_h1s_qckpt_which_undoes_its_checkpoint(void **state)
{
	struct rvm *vm = h1_rvm();
	char *pidfile = stopping_qckpt_on_h1(), *text;
	char *argv[] = { (char *)harness_qckpt(), "checkpoint", "-C", "h1", "--credential", key_cred,
			 "--mode", "paused", vm->name, "interrupted", NULL };
	struct child c;
	struct child_said stopped = { &c, "test: stopped at save" };
	struct child_said undoing = { &c, "qckpt: h1: interrupted: undoing" };
	long qemu = vm_pid(vm), remote, before, after;
	json_t *st = vm_json(vm), *st_after;
	char *names;
	size_t from;
	int tries;

	before = fresh_tick(vm);
	assert_true(before > 0);
	/* the guest's lines from here on: this test may be the one that
	 * booted it (h1_rvm), so only a boot after this would be wrong */
	from = vm->nlines;
	setenv("QCKPT_REMOTE_QCKPT", "qckpt-stops-at-save", 1);
	child_start_own_group(&c, argv);
	unsetenv("QCKPT_REMOTE_QCKPT");
	if (harness_run_until(child_said, &stopped, WAIT_MS) != 0 || c.exited)
		fail_msg("h1's qckpt did not stop at the save: %s", c.errbuf);
	text = read_file(pidfile);
	remote = stopped_qckpt = atol(text);
	free(text);
	assert_true(remote > 0);
	/* It says so, then raises SIGSTOP, and it is no child of ours to
	 * wait for: look (a SIGCONT before its stop would be lost). */
	for (tries = 0; proc_state(remote) != 'T' && tries < 500; tries++)
		harness_run_until(never, NULL, 10);
	assert_int_equal(proc_state(remote), 'T');
	assert_true(qemu > 0);
	kill((pid_t)qemu, SIGSTOP);
	kill((pid_t)remote, SIGCONT);
	kill(-(pid_t)c.proc.pid, SIGINT);
	if (harness_run_until(child_said, &undoing, WAIT_MS) != 0 || c.exited) {
		kill((pid_t)qemu, SIGCONT);
		fail_msg("h1's qckpt did not say it undoes: %s", c.errbuf);
	}
	kill((pid_t)qemu, SIGCONT);
	assert_int_equal(harness_run_until(child_done, &c, WAIT_MS), 0);
	print_message("qckpt said:\n%s", c.errbuf);
	assert_int_equal(c.status, 1);
	assert_non_null(strstr(c.errbuf, "qckpt: interrupted: passing the interrupt on"));
	/* h1's qckpt ended (sshd reaps it) */
	assert_true(proc_state(remote) == 0 || proc_state(remote) == 'Z');
	stopped_qckpt = 0;
	/* the same QEMU, its guest on from where it was, never booted again */
	assert_int_equal(vm_pid(vm), qemu);
	after = fresh_tick(vm);
	assert_true(after > before);
	assert_false(life_printed_since(vm, vm->lives, from, "qckpt-guest: boot"));
	/* nothing recorded: no checkpoint, vm.json as it was */
	names = names_on("h1", vm->name);
	assert_null(strstr(names, "|interrupted|"));
	free(names);
	st_after = vm_json(vm);
	disks_as_before(json_object_get(st, "Disks"), json_object_get(st_after, "Disks"));
	json_decref(st_after);
	json_decref(st);
	unlink(pidfile);
	free(pidfile);
}

/* ansible-playbook with the example playbook: RECAP's changed= for HOST. */
static int playbook(const char *extra, const char *flags, int *changed_h1, int *changed_h2)
{
	char *inv = fmt("%s/inventory", hosts_dir), *cmd;
	FILE *f = fopen(inv, "w");
	struct run r;
	int status;

	assert_non_null(f);
	fprintf(f, "[qemu]\n");
	for (int i = 0; i < NHOSTS; i++) {
		char *addr_path = fmt("%s/h%d/addr", hosts_dir, i + 1);
		char *addr = read_file(addr_path);

		addr[strcspn(addr, "\n")] = '\0';
		fprintf(f, "h%d ansible_host=%s\n", i + 1, addr);
		free(addr);
		free(addr_path);
	}
	fprintf(f, "[qemu:vars]\nansible_user=root\nansible_ssh_private_key_file=%s/key\n"
		"ansible_ssh_common_args='-F %s/ssh_config'\nansible_python_interpreter=/usr/bin/python3\n",
		hosts_dir, hosts_dir);
	fclose(f);
	cmd = fmt("ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_NOCOLOR=1 ANSIBLE_PIPELINING=True "
		  "ANSIBLE_REMOTE_TEMP='%s/ansible-remote' ANSIBLE_LOCAL_TEMP='%s/ansible-local' "
		  "ansible-playbook %s -i '%s' -M '%s/scripts/ansible/library' -e '%s' '%s/scripts/ansible/checkpoint.yml'",
		  hosts_dir, hosts_dir, flags, inv, getenv("QCKPT_TOP_SRCDIR"), extra,
		  getenv("QCKPT_TOP_SRCDIR"));
	r = shell(cmd);
	status = r.status;
	if (status != 0)
		print_message("%s\n%s\n%s\n", cmd, r.out, r.err);
	for (int i = 0; i < NHOSTS; i++) {
		char *tag = fmt("\nh%d ", i + 1);
		const char *recap = strstr(r.out, "PLAY RECAP");
		const char *line = recap ? strstr(recap, tag) : NULL;
		const char *ch = line ? strstr(line, "changed=") : NULL;

		*(i ? changed_h2 : changed_h1) = ch ? atoi(ch + 8) : -1;
		free(tag);
	}
	run_free(&r);
	free(cmd);
	free(inv);
	return status;
}

/* The module: a named checkpoint made once per host, check mode changes nothing. */
static void test_ansible_module_is_idempotent_and_check_mode_is_whatif(void **state)
{
	const char *extra = "{\"vms\": [\"web\"], \"checkpoint\": \"by-ansible\", \"mode\": \"disk-only\"}";
	const char *other = "{\"vms\": [\"web\"], \"checkpoint\": \"only-planned\", \"mode\": \"disk-only\"}";
	int c1, c2;
	struct run r;
	json_t *lines, *o;
	size_t i;
	int made = 0;

	if (system("command -v ansible-playbook >/dev/null") != 0) {
		if (getenv("CI") && strcmp(getenv("CI"), "true") == 0)
			fail_msg("ansible-playbook is missing (scripts/install-deps installs it)");
		skip();
	}
	assert_int_equal(playbook(extra, "", &c1, &c2), 0);
	assert_int_equal(c1, 1);
	assert_int_equal(c2, 1);
	/* again: both hosts have it, nothing changes */
	assert_int_equal(playbook(extra, "", &c1, &c2), 0);
	assert_int_equal(c1, 0);
	assert_int_equal(c2, 0);
	/* --check: qckpt's --whatif, nothing made */
	assert_int_equal(playbook(other, "--check", &c1, &c2), 0);
	assert_int_equal(c1, 1);
	r = qckpt("list", "-C", "h1,h2", "--credential", key_cred, "--json", "web", NULL);
	assert_int_equal(r.status, 0);
	lines = json_lines(r.out);
	json_array_foreach(lines, i, o) {
		made += strcmp(jstr(o, "Name"), "by-ansible") == 0;
		assert_string_not_equal(jstr(o, "Name"), "only-planned");
	}
	assert_int_equal(made, 2);
	json_decref(lines);
	run_free(&r);
}

/* ---- QMP over TLS, driven directly ------------------------------------------ */

static char *tls_dir;   /* certificates made by certtool */
static struct hvm *tls_vm;
static char *tls_monitor; /* "tls:127.0.0.1:PORT" */

static int tls_setup(void **state)
{
	char *args_obj, *args_chr;
	const char *extra[7];
	json_t *chardevs = NULL, *c;
	size_t i;

	tls_dir = tls_make_certs("test-remote");
	if (tls_dir == NULL)
		return -1;
	args_obj = fmt("tls-creds-x509,id=tls0,dir=%s/server,endpoint=server,verify-peer=on", tls_dir);
	/* port=0: the kernel picks a free port; query-chardev says which. */
	args_chr = fmt("socket,id=tlsmon,host=127.0.0.1,port=0,server=on,wait=off,tls-creds=tls0");
	extra[0] = "-object"; extra[1] = args_obj;
	extra[2] = "-chardev"; extra[3] = args_chr;
	extra[4] = "-mon"; extra[5] = "chardev=tlsmon,mode=control";
	extra[6] = NULL;
	{
		struct hvm_opts o = { .name = "tlsvm", .extra_args = extra };

		tls_vm = hvm_start(&o);
	}
	free(args_obj);
	free(args_chr);
	if (tls_vm == NULL || hvm_qmp(tls_vm, "query-chardev", NULL, &chardevs) != 0)
		return -1;
	json_array_foreach(chardevs, i, c) {
		const char *f = jstr(c, "filename");
		const char *tcp = f ? strstr(f, "tcp:127.0.0.1:") : NULL;

		if (strcmp(jstr(c, "label"), "tlsmon") == 0 && tcp)
			tls_monitor = fmt("tls:127.0.0.1:%d", atoi(tcp + 14));
	}
	json_decref(chardevs);
	return tls_monitor ? 0 : -1;
}

static int tls_teardown(void **state)
{
	hvm_free(tls_vm);
	tls_vm = NULL;
	free(tls_monitor);
	tls_monitor = NULL;
	free(tls_dir);
	tls_dir = NULL;
	return 0;
}

static void test_tls_monitor_is_driven_directly_with_the_right_certificate(void **state)
{
	char *cred = fmt("x509=%s/client", tls_dir), *dir = fmt("%s/client", tls_dir);
	char *reg = fmt("%s/tls-registry", tls_dir);
	FILE *f = fopen(reg, "w");
	struct run r;
	json_t *lines;

	assert_non_null(f);
	fprintf(f, "%s %s\n", hvm_name(tls_vm), tls_monitor);
	fclose(f);
	r = qckpt("vms", "--registry", reg, "--credential", cred, "--json", NULL);
	if (r.status != 0)
		fail_msg("vms over %s: %s", tls_monitor, r.err);
	lines = json_lines(r.out);
	assert_string_equal(jstr(json_array_get(lines, 0), "Monitor"), tls_monitor);
	assert_string_not_equal(jstr(json_array_get(lines, 0), "State"), "unreachable");
	assert_non_null(jstr(json_array_get(lines, 0), "QemuVersion"));
	json_decref(lines);
	run_free(&r);
	/* several commands on one connection, QCKPT_TLS_DIR as the directory */
	setenv("QCKPT_TLS_DIR", dir, 1);
	r = qckpt("qmp", tls_monitor, "query-name", NULL);
	unsetenv("QCKPT_TLS_DIR");
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, hvm_name(tls_vm)));
	run_free(&r);
	/* checkpoints through it: tests/test-netmon.c */
	free(reg);
	free(dir);
	free(cred);
}

static void test_tls_client_without_the_right_certificate_is_refused(void **state)
{
	char *stranger = fmt("x509=%s/stranger", tls_dir), *other = fmt("x509=%s/other", tls_dir);
	char *missing = fmt("x509=%s/nothing-here", tls_dir);
	struct run r;

	/* QEMU refuses a client certificate its CA did not sign */
	r = qckpt("qmp", "--credential", stranger, tls_monitor, "query-status", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "refused the client certificate"));
	assert_null(strstr(r.out, "running"));
	run_free(&r);
	/* and we refuse a QEMU whose certificate our CA did not sign */
	r = qckpt("qmp", "--credential", other, tls_monitor, "query-status", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "certificate does not verify"));
	run_free(&r);
	r = qckpt("qmp", "--credential", missing, tls_monitor, "query-status", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "no CA certificate"));
	run_free(&r);
	/* the right one still works afterwards: nothing was left half-open */
	free(stranger);
	stranger = fmt("x509=%s/client", tls_dir);
	r = qckpt("qmp", "--credential", stranger, tls_monitor, "query-status", NULL);
	assert_int_equal(r.status, 0);
	run_free(&r);
	free(missing);
	free(other);
	free(stranger);
}

int main(void)
{
	const struct CMUnitTest unit[] = {
		cmocka_unit_test(test_shell_quoting_keeps_every_argument_unchanged),
	};
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_checkpoint_and_list_on_two_hosts_in_one_command),
		cmocka_unit_test(test_this_host_and_a_remote_one_together),
		cmocka_unit_test(test_hostile_names_arrive_unchanged),
		cmocka_unit_test(test_wrong_credential_fails_that_host_with_one_line),
		cmocka_unit_test(test_missing_or_incompatible_qckpt_is_named),
		cmocka_unit_test(test_vm_objects_on_stdin_go_to_their_host),
		cmocka_unit_test(test_session_is_reused_and_a_dead_one_is_reported),
		cmocka_unit_test(test_restore_on_h1_brings_the_vm_back_and_outlives_the_ssh_session),
		cmocka_unit_test(test_export_on_h1_writes_the_directory_on_h1),
		cmocka_unit_test(test_rename_and_remove_on_h1_leave_h2_alone_and_keep_restores_whole),
		cmocka_unit_test(test_job_on_h1_waits_for_and_shows_a_checkpoint_started_as_a_job),
		cmocka_unit_test(test_ctrl_c_reaches_h1s_qckpt_which_undoes_its_checkpoint),
		cmocka_unit_test(test_ansible_module_is_idempotent_and_check_mode_is_whatif),
		cmocka_unit_test(test_one_host_down_the_other_done),
	};
	int rc = harness_init(), failed;
	bool ci = getenv("CI") && strcmp(getenv("CI"), "true") == 0;

	if (rc != 0)
		return rc;
	if (getenv("QCKPT_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("QCKPT_TEST_FILTER"));
	const struct CMUnitTest tls[] = {
		cmocka_unit_test(test_tls_monitor_is_driven_directly_with_the_right_certificate),
		cmocka_unit_test(test_tls_client_without_the_right_certificate_is_refused),
	};

	failed = cmocka_run_group_tests_name("remote: quoting", unit, NULL, NULL);
	failed += cmocka_run_group_tests_name("QMP over TLS", tls, tls_setup, tls_teardown);
	if (geteuid() != 0 || system("command -v sshd >/dev/null || test -x /usr/sbin/sshd") != 0) {
		fprintf(stderr, "test-remote: needs root and sshd for network namespaces with their own sshd%s\n",
			ci ? "" : "; skipped");
		return ci ? 1 : failed ? 1 : HARNESS_SKIP;
	}
	atexit(at_exit_down);
	failed += cmocka_run_group_tests_name("remote hosts over ssh", tests, group_setup,
					      group_teardown);
	return failed ? 1 : 0;
}
