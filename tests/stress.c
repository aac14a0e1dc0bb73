/*
 * stress.c: many checkpoints, every one restored and checked (run by
 * scripts/stress; make check runs a round per QEMU).
 *
 * A round, on each QEMU: 4 VMs of 512 MiB running the test guest are
 * checkpointed in one qckpt command in the default mode (or
 * $QCKPT_STRESS_MODE), the sources quit, and every checkpoint is restored
 * in a new QEMU (a fresh overlay on its frozen image, -incoming defer,
 * migrate-incoming) and checked: the guest carries on from the counter its
 * disk holds (no boot line, first tick T with the disk at T-1 or T) and
 * prints no oops or panic over the next ticks.  This is how QEMU < 9's
 * dirty-page loss under TCG was measured (1 restore in 32 crashed after a
 * live save); a failure is counted and the run goes on.
 *
 * Prints per QEMU the rounds, restores and failures, and last the line
 * "stress: N passed, M failed".  Exit status 1 on any failure, 77 (skip)
 * when QEMU or the guest is missing outside CI.
 *
 *   argv[1] or $QCKPT_STRESS_ROUNDS   rounds per QEMU (default 1)
 *   $QCKPT_STRESS_MODE                a --mode for qckpt (default: none)
 *   $QCKPT_STRESS_QEMUS               "default 10" (default), or one of them
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define NVMS 4
#define MEM_MIB 512
/* 4 TCG guests booting at once on a loaded 2-core host took over 2 min */
#define BOOT_MS 300000u
#define WAIT_MS 60000u
/* ticks watched after the first one for an oops (200 ms apart) */
#define WATCH_TICKS 5

static char *xfmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *xfmt(const char *f, ...)
{
	va_list ap;
	char *s;

	va_start(ap, f);
	if (vasprintf(&s, f, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static int serial;                   /* unique VM names */
static char *registry_path, *catalog_dir;

/* A line a crashing Linux guest prints. */
static int is_oops(const char *line)
{
	static const char *const marks[] = {
		"Oops", "Kernel panic", "BUG:", "general protection fault",
		"Call Trace", "stack-protector", "invalid opcode", "segfault",
		"Unable to handle", NULL,
	};

	for (const char *const *m = marks; *m; m++)
		if (strstr(line, *m) != NULL)
			return 1;
	return 0;
}

static void print_tail(struct hvm *vm, const char *who)
{
	size_t n = hvm_serial_count(vm);

	for (size_t i = n > 25 ? n - 25 : 0; i < n; i++)
		fprintf(stderr, "  %s serial: %s\n", who, hvm_serial_line(vm, i));
}

/* Boot NVMS VMs, checkpoint them in one command; the records (or NULL). */
static json_t *checkpoint_round(const char *qemu, const char *mode)
{
	struct hvm *vms[NVMS] = { NULL };
	char names[512] = "";
	char *out = NULL, *err = NULL, *modearg = NULL;
	char *argv[8];
	int status = -1, n = 0;
	json_t *recs = NULL;
	FILE *reg = fopen(registry_path, "w");

	if (reg == NULL)
		return NULL;
	for (int i = 0; i < NVMS; i++) {
		char *name = xfmt("stress%d", ++serial);
		struct hvm_opts o = { .name = name, .qemu = qemu, .mem_mib = MEM_MIB,
				      .ndisks = 1, .exact_name = true };

		vms[i] = hvm_start(&o);
		free(name);
		if (vms[i] == NULL)
			goto out;
		fprintf(reg, "%s unix:%s dir=%s\n", hvm_name(vms[i]), hvm_qmp_path(vms[i]),
			catalog_dir);
		strcat(names, i ? "," : "");
		strcat(names, hvm_name(vms[i]));
	}
	fclose(reg);
	reg = NULL;
	for (int i = 0; i < NVMS; i++)
		if (hvm_wait_tick(vms[i], BOOT_MS) <= 0) {
			fprintf(stderr, "stress: %s did not boot\n", hvm_name(vms[i]));
			goto out;
		}
	/* let each guest count a little after the boot */
	for (int i = 0; i < NVMS; i++)
		hvm_wait_tick(vms[i], WAIT_MS);
	argv[n++] = (char *)harness_qckpt();
	argv[n++] = "checkpoint";
	argv[n++] = "--passthru";
	if (mode != NULL)
		argv[n++] = modearg = xfmt("--mode=%s", mode);
	argv[n++] = names;
	argv[n] = NULL;
	if (harness_run(argv, &out, &err, &status) < 0 || status != 0) {
		fprintf(stderr, "stress: qckpt checkpoint exited %d: %s", status, err ? err : "");
		goto out;
	}
	recs = json_array();
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		json_t *r = json_loads(line, 0, NULL);

		if (r != NULL)
			json_array_append_new(recs, r);
	}
	if (json_array_size(recs) != NVMS) {
		fprintf(stderr, "stress: qckpt printed %zu records, not %d\n",
			json_array_size(recs), NVMS);
		json_decref(recs);
		recs = NULL;
	}
out:
	if (reg != NULL)
		fclose(reg);
	/* The sources are done with: the restores get the cores. */
	for (int i = 0; i < NVMS; i++)
		hvm_free(vms[i]);
	free(out);
	free(err);
	free(modearg);
	return recs;
}

static int record_has_cap(json_t *rec, const char *cap)
{
	json_t *caps = json_object_get(json_object_get(rec, "MemoryState"), "Capabilities"), *c;
	size_t i;

	json_array_foreach(caps, i, c)
		if (strcmp(json_string_value(c), cap) == 0)
			return 1;
	return 0;
}

struct restore {
	json_t *rec;
	struct hvm *vm;
	long counter;
	char *overlay;
	const char *failed; /* why, or NULL */
};

/* A new QEMU on a fresh overlay of the record's image, loading its memory. */
static void restore_start(struct restore *r, const char *qemu)
{
	json_t *disk = json_array_get(json_object_get(r->rec, "Disks"), 0);
	const char *mem = jstr(json_object_get(r->rec, "MemoryState"), "Path");
	const char *paths[2] = { NULL, NULL };
	json_t *caps = json_array();
	char *uri;

	r->overlay = xfmt("%s/restore-%d.qcow2", harness_tmpdir(), ++serial);
	r->counter = disk_read_counter(jstr(disk, "CheckpointImage"));
	if (mem == NULL || r->counter <= 0 ||
	    disk_create_overlay(r->overlay, jstr(disk, "CheckpointImage"), jstr(disk, "Format")) < 0) {
		r->failed = "no memory state, or its frozen image holds no counter";
		json_decref(caps);
		return;
	}
	paths[0] = r->overlay;
	{
		char *name = xfmt("restored%d", serial);
		struct hvm_opts o = { .name = name, .qemu = qemu, .mem_mib = MEM_MIB,
				      .ndisks = 1, .disk_paths = paths, .disk_format = HVM_QCOW2,
				      .incoming = "defer", .exact_name = true };

		r->vm = hvm_start(&o);
		free(name);
	}
	if (r->vm == NULL) {
		r->failed = "QEMU did not start";
		json_decref(caps);
		return;
	}
	json_array_append_new(caps, json_pack("{s:s,s:b}", "capability", "events", "state", 1));
	if (record_has_cap(r->rec, "mapped-ram")) {
		json_array_append_new(caps, json_pack("{s:s,s:b}", "capability", "multifd", "state", 1));
		json_array_append_new(caps, json_pack("{s:s,s:b}", "capability", "mapped-ram", "state", 1));
		uri = xfmt("file:%s", mem);
	} else {
		uri = xfmt("exec:cat %s", mem);
	}
	if (hvm_qmp(r->vm, "migrate-set-capabilities", json_pack("{s:o}", "capabilities", caps), NULL) != 0 ||
	    hvm_qmp(r->vm, "migrate-incoming", json_pack("{s:s}", "uri", uri), NULL) != 0)
		r->failed = "QEMU refused the incoming migration";
	free(uri);
}

/* Loaded, resumed, carrying on from its disk, and not crashing. */
static void restore_check(struct restore *r)
{
	const struct hvm_event *e;
	json_t *res = NULL;
	char *st;
	long tick;

	if (r->failed != NULL)
		return;
	while ((e = hvm_wait_event(r->vm, "MIGRATION", WAIT_MS)) != NULL &&
	       strcmp(jstr(e->data, "status"), "completed") != 0)
		if (strcmp(jstr(e->data, "status"), "failed") == 0)
			break;
	if (e == NULL || strcmp(jstr(e->data, "status"), "completed") != 0) {
		r->failed = "loading the memory state failed";
		return;
	}
	st = hvm_status(r->vm);
	if (st != NULL && strcmp(st, "running") != 0)
		hvm_qmp(r->vm, "cont", NULL, &res);
	json_decref(res);
	free(st);
	tick = hvm_wait_tick(r->vm, WAIT_MS);
	if (tick <= 1) {
		r->failed = "the guest printed no tick";
		for (size_t i = 0; i < hvm_serial_count(r->vm); i++)
			if (is_oops(hvm_serial_line(r->vm, i)))
				r->failed = "the guest oopsed or panicked (no tick)";
		return;
	}
	if (r->counter < tick - 1 || r->counter > tick) {
		r->failed = "the guest did not carry on from its disk's counter";
		return;
	}
	for (int i = 0; i < WATCH_TICKS; i++)
		if (hvm_wait_tick(r->vm, WAIT_MS) <= 0) {
			r->failed = "the guest stopped ticking";
			return;
		}
	for (size_t i = 0; i < hvm_serial_count(r->vm); i++) {
		const char *line = hvm_serial_line(r->vm, i);

		if (strstr(line, "qckpt-guest: boot") != NULL) {
			r->failed = "the guest rebooted";
			return;
		}
		if (is_oops(line)) {
			r->failed = "the guest oopsed or panicked";
			return;
		}
	}
}

struct tally {
	int rounds, restores, failures;
	char version[64];
	char modes[64]; /* the modes qckpt chose, each once */
};

static void stress_one_round(const char *qemu, const char *mode, struct tally *t)
{
	json_t *recs = checkpoint_round(qemu, mode);
	struct restore r[NVMS];

	t->rounds++;
	if (recs == NULL) {
		t->failures++;
		return;
	}
	memset(r, 0, sizeof r);
	snprintf(t->version, sizeof t->version, "%s",
		 jstr(json_array_get(recs, 0), "QemuVersion"));
	for (int i = 0; i < NVMS; i++) {
		const char *m = jstr(json_array_get(recs, (size_t)i), "Mode");

		r[i].rec = json_array_get(recs, (size_t)i);
		if (m != NULL && strstr(t->modes, m) == NULL &&
		    strlen(t->modes) + strlen(m) + 2 < sizeof t->modes)
			strcat(strcat(t->modes, t->modes[0] ? " " : ""), m);
		restore_start(&r[i], qemu);
	}
	for (int i = 0; i < NVMS; i++) {
		restore_check(&r[i]);
		t->restores++;
		if (r[i].failed != NULL) {
			t->failures++;
			fprintf(stderr, "stress: FAILED: %s (mode %s, QEMU %s): %s\n",
				jstr(r[i].rec, "VMName"), jstr(r[i].rec, "Mode"),
				jstr(r[i].rec, "QemuVersion"), r[i].failed);
			if (r[i].vm != NULL)
				print_tail(r[i].vm, jstr(r[i].rec, "VMName"));
		}
		hvm_free(r[i].vm);
		if (r[i].overlay != NULL)
			unlink(r[i].overlay);
		free(r[i].overlay);
	}
	/* The memory files go: rounds would fill the disk otherwise. */
	for (int i = 0; i < NVMS; i++) {
		char *cmd = xfmt("rm -rf '%s'", jstr(r[i].rec, "Path"));
		char *argv[] = { "/bin/sh", "-c", cmd, NULL };
		int st;

		harness_run(argv, NULL, NULL, &st);
		free(cmd);
	}
	json_decref(recs);
	fprintf(stderr, "stress: QEMU %s: round %d done, %d restores, %d failures so far\n",
		t->version, t->rounds, t->restores, t->failures);
}

int main(int argc, char **argv)
{
	int rc = harness_init();
	const char *rounds_text = argc > 1 ? argv[1] : getenv("QCKPT_STRESS_ROUNDS");
	int rounds = rounds_text ? atoi(rounds_text) : 1;
	const char *mode = getenv("QCKPT_STRESS_MODE");
	const char *which = getenv("QCKPT_STRESS_QEMUS");
	const char *qemus[2] = { NULL, NULL };
	int passed = 0, failed = 0;

	if (rc != 0)
		return rc;
	if (rounds < 1 || rounds > 10000) {
		fprintf(stderr, "usage: stress [ROUNDS] (1 to 10000)\n");
		return 2;
	}
	if (harness_qckpt() == NULL) {
		fprintf(stderr, "stress: set QCKPT_BIN to the qckpt program\n");
		return 2;
	}
	if (which == NULL || strstr(which, "default") || strstr(which, "7"))
		qemus[0] = harness_qemu();
	if ((which == NULL || strstr(which, "10")) && harness_want_qemu10()) {
		qemus[1] = harness_require_qemu10();
		if (qemus[1] == NULL)
			failed++;
	}
	registry_path = harness_path("registry");
	catalog_dir = harness_path("catalog");
	mkdir(catalog_dir, 0700);
	setenv("QCKPT_REGISTRY", registry_path, 1);
	for (int q = 0; q < 2; q++) {
		struct tally t = { 0 };

		if (qemus[q] == NULL)
			continue;
		for (int i = 0; i < rounds; i++)
			stress_one_round(qemus[q], mode, &t);
		printf("stress: QEMU %s (%s), --mode %s (chosen: %s): %d rounds, %d restores, %d failures\n",
		       t.version[0] ? t.version : "?", qemus[q], mode ? mode : "default",
		       t.modes[0] ? t.modes : "-", t.rounds, t.restores, t.failures);
		fflush(stdout);
		passed += t.restores - t.failures > 0 ? t.restores - t.failures : 0;
		failed += t.failures;
	}
	printf("stress: %d passed, %d failed\n", passed, failed);
	free(registry_path);
	free(catalog_dir);
	return failed ? 1 : 0;
}
