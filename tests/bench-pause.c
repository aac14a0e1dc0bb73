/*
 * bench-pause.c: how long `qckpt checkpoint` pauses a guest, per mode, next
 * to QEMU's own internal snapshot (savevm).  A benchmark, not a test: it is
 * built by `make tests/bench-pause` and run by scripts/bench-pause, never by
 * make check.
 *
 * For every QEMU x RAM size x guest load it boots one VM (the test guest,
 * one qcow2 disk) and takes all measurements on it: REPS rounds of qckpt's
 * modes (the checkpoints chain on each other), then REPS savevm.
 * Per measurement:
 *   - the guest pause seen by the harness's observer monitor (sum of the
 *     STOP -> RESUME intervals, by QEMU's event timestamps): the
 *     independent measure;
 *   - PauseMs and DurationMs from qckpt's record, and the qckpt process's
 *     wall time (up to 4c35118 DurationMs left out the memory file's fsync);
 *   - QEMU's "downtime" from query-migrate on the observer afterwards;
 *   - the memory file: its size (MemoryState.Bytes) and the bytes really
 *     allocated on disk (mapped-ram files are sparse), which over
 *     DurationMs gives the save rate.
 * savevm runs as `human-monitor-command "savevm NAME"` on the observer
 * (its total is the command's wall time), followed by delvm.
 * Each round's memory file is deleted once measured; the harness's temp dir
 * (disks, overlays, catalog) is removed at exit.
 *
 * Environment (all optional):
 *   QCKPT_BENCH_QEMUS  "7.2 10" : which QEMUs (7.2 = QEMU_SYSTEM or PATH,
 *                      10 = QCKPT_QEMU10 / harness_qemu10())
 *   QCKPT_BENCH_SIZES  "1024 4096" : guest RAM in MiB
 *   QCKPT_BENCH_LOADS  "idle busy"
 *   QCKPT_BENCH_BUSY   "qckpt.dirty_mib=256 qckpt.disk_writes=1" : kernel
 *                      command line of the busy guest
 *   QCKPT_BENCH_MODES  "live paused background disk-only savevm"
 *   QCKPT_BENCH_REPS   5 (1..20)
 * Progress goes to stderr, the report (markdown) to stdout.
 */
#include <errno.h>
#include <math.h> /* isnan, NAN */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define BOOT_MS 300000u
#define TICK_MS 60000u
#define MAX_REPS 20
#define MAX_CELLS 256

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

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);

	return v && v[0] ? v : def;
}

/* Split a space-separated list (modifies s); returns the count. */
static int words(char *s, char **out, int max)
{
	int n = 0;

	for (char *t = strtok(s, " \t,"); t && n < max; t = strtok(NULL, " \t,"))
		out[n++] = t;
	return n;
}

/* ---- one measurement, one table row ----------------------------------- */

struct sample {
	double obs_pause;  /* ms, observer */
	double tool_pause; /* ms, PauseMs (NAN for savevm) */
	double downtime;   /* ms, query-migrate (NAN if none) */
	double total;      /* ms, DurationMs or savevm's wall time */
	double wall;       /* ms, the qckpt process from start to exit */
	double bytes;      /* memory file size (NAN if none) */
	double alloc;      /* bytes allocated on disk (NAN if none) */
};

struct cell {
	char *qemu;        /* version string */
	unsigned mib;
	const char *load;
	const char *mode;
	struct sample s[MAX_REPS];
	int n;
	char *note;        /* why it failed or is n/a */
	bool na;
};

static struct cell cells[MAX_CELLS];
static int ncells;
static char *registry_path, *catalog_dir, *qckpt_bin;
static int ckserial;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* min/median/max of field OFF of the cell's samples, NaNs left out;
 * returns how many values there were. */
static int stats(const struct cell *c, size_t off, double *mn, double *med, double *mx)
{
	double v[MAX_REPS];
	int n = 0;

	for (int i = 0; i < c->n; i++) {
		double x = *(const double *)((const char *)&c->s[i] + off);

		if (!isnan(x))
			v[n++] = x;
	}
	if (n == 0)
		return 0;
	qsort(v, (size_t)n, sizeof v[0], cmp_double);
	*mn = v[0];
	*mx = v[n - 1];
	*med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	return n;
}

static void put_num(double x)
{
	if (x >= 100 || x == (double)(long long)x)
		printf("%.0f", x);
	else if (x >= 10)
		printf("%.1f", x);
	else
		printf("%.2f", x);
}

static void put_med(const struct cell *c, size_t off, double scale)
{
	double mn, med, mx;

	if (stats(c, off, &mn, &med, &mx) == 0) {
		printf(" - |");
		return;
	}
	printf(" ");
	put_num(med * scale);
	printf(" |");
}

static void print_table(void)
{
	int notes = 0;

	printf("| QEMU | RAM | guest | mode | pause (observer) min / med / max ms "
	       "| PauseMs med | QEMU downtime med ms | live pause <= downtime + 10 ms "
	       "| total med ms | qckpt wall med ms "
	       "| memory file MiB (allocated) | save rate MiB/s (total / wall) |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (int i = 0; i < ncells; i++) {
		const struct cell *c = &cells[i];
		double mn, med, mx, a, b, t;

		printf("| %s | %u MiB | %s | %s |", c->qemu, c->mib, c->load, c->mode);
		if (c->n == 0) {
			printf(" %s", c->na ? "n/a" : "failed");
			if (c->note)
				printf(" [%d]", ++notes);
			printf(" | | | | | | | |\n");
			continue;
		}
		stats(c, offsetof(struct sample, obs_pause), &mn, &med, &mx);
		printf(" ");
		put_num(mn);
		printf(" / ");
		put_num(med);
		printf(" / ");
		put_num(mx);
		if (c->note)
			printf(" [%d]", ++notes);
		printf(" |");
		put_med(c, offsetof(struct sample, tool_pause), 1);
		put_med(c, offsetof(struct sample, downtime), 1);
		{
			int within = 0, n = 0;

			for (int k = 0; k < c->n; k++)
				if (!isnan(c->s[k].downtime)) {
					n++;
					within += c->s[k].obs_pause <= c->s[k].downtime + 10;
				}
			if (n)
				printf(" %d of %d |", within, n);
			else
				printf(" - |");
		}
		put_med(c, offsetof(struct sample, total), 1);
		put_med(c, offsetof(struct sample, wall), 1);
		if (stats(c, offsetof(struct sample, bytes), &a, &b, &t) > 0) {
			double am, al, ax;

			printf(" ");
			put_num(b / 1048576.0);
			if (stats(c, offsetof(struct sample, alloc), &am, &al, &ax) > 0) {
				printf(" (");
				put_num(al / 1048576.0);
				printf(")");
			}
			printf(" |");
		} else {
			printf(" - |");
		}
		/* rates: medians of allocated bytes / total and / wall */
		{
			struct cell r = { .n = 0 };

			for (int k = 0; k < c->n; k++)
				if (!isnan(c->s[k].alloc) && c->s[k].total > 0) {
					r.s[r.n].total = c->s[k].alloc / 1048576.0 /
							 (c->s[k].total / 1000.0);
					r.s[r.n].wall = c->s[k].alloc / 1048576.0 /
							(c->s[k].wall / 1000.0);
					r.n++;
				}
			if (r.n) {
				stats(&r, offsetof(struct sample, total), &mn, &med, &mx);
				printf(" ");
				put_num(med);
				stats(&r, offsetof(struct sample, wall), &mn, &med, &mx);
				printf(" / ");
				put_num(med);
				printf(" |");
			} else {
				printf(" - |");
			}
		}
		printf("\n");
	}
	printf("\npause (observer): sum of the STOP -> RESUME intervals by QEMU's event "
	       "timestamps, seen on a second QMP monitor; PauseMs, total (DurationMs): "
	       "qckpt's record; qckpt wall: the qckpt process from start to exit "
	       "(with the memory file's fsync, which DurationMs left out before "
	       "commit 4c35118); "
	       "QEMU downtime: query-migrate after a live checkpoint; "
	       "savevm's total is the wall time of the HMP command; memory file: "
	       "MemoryState.Bytes (blocks allocated: mapped-ram files are sparse); "
	       "save rate: allocated MiB / total and / qckpt wall.  All values but "
	       "the pause range and the count are medians.\n");
	if (notes) {
		printf("\n");
		notes = 0;
		for (int i = 0; i < ncells; i++)
			if (cells[i].note)
				printf("[%d] %s %u MiB %s %s: %s\n", ++notes, cells[i].qemu,
				       cells[i].mib, cells[i].load, cells[i].mode,
				       cells[i].note);
	}
}

/* ---- measuring -------------------------------------------------------- */

/* Total stopped time (ms) over the STOP -> RESUME pairs from event FROM on;
 * *open is set when a STOP has no RESUME yet. */
static double stopped_ms(struct hvm *vm, size_t from, bool *open, int *nstops)
{
	double sum = 0;
	int64_t stop = -1;

	*nstops = 0;
	for (size_t i = from; i < hvm_event_count(vm); i++) {
		const struct hvm_event *e = hvm_event(vm, i);

		if (strcmp(e->name, "STOP") == 0 && stop < 0) {
			stop = e->ts_us;
			(*nstops)++;
		} else if (strcmp(e->name, "RESUME") == 0 && stop >= 0) {
			sum += (double)(e->ts_us - stop) / 1000.0;
			stop = -1;
		}
	}
	*open = stop >= 0;
	return sum;
}

struct resumed_arg {
	struct hvm *vm;
	size_t from;
};

static bool resumed(void *p)
{
	struct resumed_arg *a = p;
	bool open;
	int n;

	stopped_ms(a->vm, a->from, &open, &n);
	return !open;
}

/* Let the observer collect the RESUME (events arrive asynchronously). */
static double observed_pause(struct hvm *vm, size_t from)
{
	struct resumed_arg a = { vm, from };
	bool open;
	int n;

	harness_run_until(resumed, &a, 10000);
	double ms = stopped_ms(vm, from, &open, &n);
	return open ? NAN : ms;
}

static double downtime_now(struct hvm *vm)
{
	json_t *r = NULL;
	double d = NAN;

	if (hvm_qmp(vm, "query-migrate", NULL, &r) == 0) {
		json_t *dt = json_object_get(r, "downtime");

		if (json_is_number(dt))
			d = json_number_value(dt);
	}
	json_decref(r);
	return d;
}

static double jnum(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_number(v) ? json_number_value(v) : NAN;
}

static char *first_line(const char *s)
{
	size_t n;

	if (!s || !s[0])
		return xfmt("(no message)");
	n = strcspn(s, "\n");
	return xfmt("%.*s", (int)(n > 300 ? 300 : n), s);
}

/* Remove the round's memory file, if it is inside our catalog. */
static void drop_memory_file(const char *path)
{
	size_t n = strlen(catalog_dir);

	if (path && strncmp(path, catalog_dir, n) == 0 && path[n] == '/' &&
	    !strstr(path, "/../") && unlink(path) != 0)
		fprintf(stderr, "bench: unlink %s: %s\n", path, strerror(errno));
}

/* One qckpt checkpoint.  0 with *s filled; 1 when qckpt said no (msg). */
static int measure_qckpt(struct hvm *vm, const char *mode, struct sample *s, char **msg)
{
	char *mode_opt = xfmt("--mode=%s", mode);
	char *ckname = xfmt("bench%d", ++ckserial);
	char *argv[] = { qckpt_bin, "checkpoint", "--passthru", "-q", mode_opt,
			 (char *)hvm_name(vm), ckname, NULL };
	char *out = NULL, *err = NULL;
	int status = -1, rc = 1;
	size_t from;
	uint64_t t0;
	json_t *rec = NULL, *mem;

	hvm_consume_events(vm);
	from = hvm_event_count(vm);
	t0 = uv_hrtime();
	if (harness_run(argv, &out, &err, &status) != 0) {
		*msg = xfmt("could not run %s", qckpt_bin);
		goto out;
	}
	if (status != 0) {
		*msg = first_line(err);
		observed_pause(vm, from); /* let any RESUME arrive */
		goto out;
	}
	rec = json_loads(out ? out : "", JSON_DISABLE_EOF_CHECK, NULL);
	if (!rec) {
		*msg = xfmt("qckpt printed no record: %.200s", out ? out : "");
		goto out;
	}
	s->obs_pause = observed_pause(vm, from);
	if (isnan(s->obs_pause))
		s->obs_pause = 0; /* (checked below) */
	s->wall = (double)(uv_hrtime() - t0) / 1e6;
	s->tool_pause = jnum(rec, "PauseMs");
	s->total = jnum(rec, "DurationMs");
	/* QEMU's downtime means the guest pause only when QEMU stops the
	 * guest itself (live); qckpt stops it first in the other modes. */
	s->downtime = strcmp(mode, "live") == 0 ? downtime_now(vm) : NAN;
	s->bytes = s->alloc = NAN;
	mem = json_object_get(rec, "MemoryState");
	if (json_is_object(mem)) {
		const char *path = json_string_value(json_object_get(mem, "Path"));
		struct stat st;

		s->bytes = jnum(mem, "Bytes");
		if (path && stat(path, &st) == 0)
			s->alloc = (double)st.st_blocks * 512.0;
		drop_memory_file(path);
	}
	{
		bool open;
		int nstops;

		stopped_ms(vm, from, &open, &nstops);
		if (open)
			fprintf(stderr, "bench: %s: guest still stopped after qckpt?\n", mode);
		if (nstops > 1)
			fprintf(stderr, "bench: %s: %d STOP/RESUME pairs (pauses summed)\n",
				mode, nstops);
	}
	rc = 0;
out:
	json_decref(rec);
	free(out);
	free(err);
	free(mode_opt);
	free(ckname);
	return rc;
}

static int hmp(struct hvm *vm, const char *line, char **msg)
{
	json_t *r = NULL;
	int rc = hvm_qmp(vm, "human-monitor-command",
			 json_pack("{s:s}", "command-line", line), &r);

	if (rc != 0) {
		*msg = xfmt("%s: %s", line, rc == -1 ? json_string_value(json_object_get(r, "desc"))
						      : "no reply");
		json_decref(r);
		return 1;
	}
	/* HMP reports its errors as output text */
	if (json_is_string(r) && json_string_length(r) > 0 &&
	    (strstr(json_string_value(r), "rror") || strstr(json_string_value(r), "annot"))) {
		*msg = xfmt("%s: %s", line, json_string_value(r));
		json_decref(r);
		return 1;
	}
	json_decref(r);
	return 0;
}

static int measure_savevm(struct hvm *vm, struct sample *s, char **msg)
{
	char *name = xfmt("benchsv%d", ++ckserial);
	char *save = xfmt("savevm %s", name), *del = xfmt("delvm %s", name);
	size_t from;
	uint64_t t0;
	int rc = 1;

	hvm_consume_events(vm);
	from = hvm_event_count(vm);
	t0 = uv_hrtime();
	if (hmp(vm, save, msg) != 0) {
		observed_pause(vm, from);
		goto out;
	}
	s->total = (double)(uv_hrtime() - t0) / 1e6;
	s->obs_pause = observed_pause(vm, from);
	if (isnan(s->obs_pause))
		s->obs_pause = 0;
	s->tool_pause = s->downtime = s->bytes = s->alloc = s->wall = NAN;
	if (hmp(vm, del, msg) != 0) {
		fprintf(stderr, "bench: %s\n", *msg);
		free(*msg);
		*msg = NULL;
	}
	rc = 0;
out:
	free(name);
	free(save);
	free(del);
	return rc;
}

/* ---- one VM configuration --------------------------------------------- */

static char *qemu_version(struct hvm *vm)
{
	json_t *r = NULL;
	char *v;

	if (hvm_qmp(vm, "query-version", NULL, &r) != 0) {
		json_decref(r);
		return xfmt("?");
	}
	json_t *q = json_object_get(r, "qemu");
	v = xfmt("%lld.%lld.%lld", (long long)json_integer_value(json_object_get(q, "major")),
		 (long long)json_integer_value(json_object_get(q, "minor")),
		 (long long)json_integer_value(json_object_get(q, "micro")));
	json_decref(r);
	return v;
}

static struct cell *cell_for(const char *qemu, unsigned mib, const char *load,
			     const char *mode)
{
	for (int i = 0; i < ncells; i++)
		if (strcmp(cells[i].qemu, qemu) == 0 && cells[i].mib == mib &&
		    strcmp(cells[i].load, load) == 0 && strcmp(cells[i].mode, mode) == 0)
			return &cells[i];
	if (ncells == MAX_CELLS)
		abort();
	cells[ncells] = (struct cell){ .qemu = strdup(qemu), .mib = mib, .load = load,
				       .mode = mode };
	return &cells[ncells++];
}

static char *versions_seen[8];
static int nversions;

static void run_config(const char *qemu_bin, const char *label, unsigned mib,
		       const char *load, const char *busy, char **modes, int nmodes, int reps)
{
	static int vmserial;
	char *name = xfmt("b%d", ++vmserial);
	char *app = strcmp(load, "busy") == 0 ? xfmt("%s", busy) : NULL;
	struct hvm_opts o = { .name = name, .qemu = qemu_bin, .mem_mib = mib, .ndisks = 1,
			      .disk_format = HVM_QCOW2, .disk_mib = 64, .append = app };
	struct hvm *vm;
	char *ver = NULL;
	FILE *f;
	uint64_t t0 = uv_hrtime();
	long tick;

	fprintf(stderr, "bench: QEMU %s, %u MiB, %s: booting\n", label, mib, load);
	vm = hvm_start(&o);
	tick = vm ? hvm_wait_tick(vm, BOOT_MS) : -1;
	ver = vm ? qemu_version(vm) : xfmt("%s", label);
	if (tick < 0) {
		for (int m = 0; m < nmodes; m++) {
			struct cell *c = cell_for(ver, mib, load, modes[m]);

			c->note = xfmt("the VM did not boot (%s)", qemu_bin);
		}
		goto out;
	}
	if (nversions < 8) {
		bool seen = false;

		for (int i = 0; i < nversions; i++)
			seen |= strncmp(versions_seen[i], ver, strlen(ver)) == 0 &&
				versions_seen[i][strlen(ver)] == ' ';
		if (!seen)
			versions_seen[nversions++] = xfmt("%s (%s)", ver, qemu_bin);
	}
	/* let a busy guest fill its dirty set once */
	while (tick >= 0 && tick < 15)
		tick = hvm_wait_tick(vm, TICK_MS);
	fprintf(stderr, "bench: booted in %.1f s\n", (double)(uv_hrtime() - t0) / 1e9);

	f = fopen(registry_path, "w");
	if (!f)
		abort();
	fprintf(f, "%s unix:%s dir=%s\n", hvm_name(vm), hvm_qmp_path(vm), catalog_dir);
	fclose(f);

	/* qckpt's modes interleaved round by round, then savevm: a savevm
	 * (internal snapshot written into the active image, then deleted)
	 * measurably slows the `cont` of later live checkpoints on QEMU 7.2
	 * (2 -> 16-22 ms), which is not what a qckpt user sees. */
	for (int phase = 0; phase < 2; phase++)
	for (int r = 0; r < reps; r++) {
		for (int m = 0; m < nmodes; m++) {
			struct cell *c = cell_for(ver, mib, load, modes[m]);
			struct sample s = { 0 };
			char *msg = NULL;
			int rc;

			if ((strcmp(modes[m], "savevm") == 0) != (phase == 1))
				continue;
			if (c->na || (c->note && c->n == 0 && r > 0))
				continue; /* refused once: do not insist */
			if (hvm_exited(vm) >= 0) {
				if (!c->note)
					c->note = xfmt("QEMU exited");
				continue;
			}
			if (strcmp(modes[m], "savevm") == 0)
				rc = measure_savevm(vm, &s, &msg);
			else
				rc = measure_qckpt(vm, modes[m], &s, &msg);
			if (rc == 0) {
				c->s[c->n++] = s;
				fprintf(stderr, "bench: %s %u %s %s #%d: pause %.1f ms "
					"(PauseMs %.0f, downtime %.0f), total %.0f ms\n",
					ver, mib, load, modes[m], r + 1, s.obs_pause,
					s.tool_pause, s.downtime, s.total);
			} else {
				fprintf(stderr, "bench: %s %u %s %s #%d: %s\n", ver, mib, load,
					modes[m], r + 1, msg);
				if (!c->note)
					c->note = msg;
				else
					free(msg);
				/* a mode this QEMU or host does not offer */
				if (c->n == 0 && strcmp(modes[m], "background") == 0 &&
				    (strstr(c->note, "background") || strstr(c->note, "userfault")))
					c->na = true;
			}
			/* the guest runs again before the next measurement */
			if (hvm_wait_tick(vm, TICK_MS) < 0)
				fprintf(stderr, "bench: no tick after %s\n", modes[m]);
		}
	}
out:
	hvm_free(vm);
	free(ver);
	free(app);
	free(name);
}

/* ---- the machine ------------------------------------------------------ */

static void print_machine(const char *qemus_list)
{
	char line[512], model[256] = "?";
	double load[3] = { -1, -1, -1 };
	long memkib = 0;
	FILE *f = fopen("/proc/cpuinfo", "r");
	struct utsname u;

	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "model name", 10) == 0) {
			char *p = strchr(line, ':');

			if (p) {
				snprintf(model, sizeof model, "%s", p + 2);
				model[strcspn(model, "\n")] = 0;
			}
			break;
		}
	if (f)
		fclose(f);
	f = fopen("/proc/meminfo", "r");
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "MemTotal: %ld", &memkib) == 1)
			break;
	if (f)
		fclose(f);
	getloadavg(load, 3);
	uname(&u);
	printf("- machine: %ld CPUs online (nproc), %s, %ld MiB RAM, %s %s, no KVM (-accel tcg)\n",
	       sysconf(_SC_NPROCESSORS_ONLN), model, memkib / 1024, u.sysname, u.release);
	printf("- load average at start: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
	printf("- QEMUs asked for: %s\n", qemus_list);
}

/* Sequential write rate of the temp dir's file system (dd, fdatasync). */
static void print_disk_rate(void)
{
	char *path = harness_path("ddtest");
	char *of = xfmt("of=%s", path);
	char *argv[] = { "dd", "if=/dev/zero", (char *)of, "bs=1M", "count=1024",
			 "conv=fdatasync", NULL };
	char *err = NULL;
	int st;

	if (harness_run(argv, NULL, &err, &st) == 0 && st == 0 && err) {
		char *l = strrchr(err, ',');

		/* dd's last line: "... copied, 0.9 s, 1.2 GB/s" */
		if (l)
			printf("- disk (temp dir, dd 1 GiB of zeros, conv=fdatasync):%.*s\n",
			       (int)strcspn(l + 1, "\n"), l + 1);
	}
	unlink(path);
	free(err);
	free(of);
	free(path);
}

int main(void)
{
	char *qemus_s = strdup(env_or("QCKPT_BENCH_QEMUS", "7.2 10"));
	char *sizes_s = strdup(env_or("QCKPT_BENCH_SIZES", "1024 4096"));
	char *loads_s = strdup(env_or("QCKPT_BENCH_LOADS", "idle busy"));
	char *modes_s = strdup(env_or("QCKPT_BENCH_MODES",
				      "live paused background disk-only savevm"));
	const char *busy = env_or("QCKPT_BENCH_BUSY", "qckpt.dirty_mib=256 qckpt.disk_writes=1");
	int reps = atoi(env_or("QCKPT_BENCH_REPS", "5"));
	char *qemus[8], *sizes[8], *loads[4], *modes[8];
	int nq, ns, nl, nm, rc;
	uint64_t t0 = uv_hrtime();
	time_t now = time(NULL);
	char date[64];
	double load[3];

	if (reps < 1 || reps > MAX_REPS) {
		fprintf(stderr, "bench: QCKPT_BENCH_REPS must be 1..%d\n", MAX_REPS);
		return 2;
	}
	printf("# qckpt pause benchmark\n\n");
	print_machine(qemus_s);
	nq = words(qemus_s, qemus, 8);
	ns = words(sizes_s, sizes, 8);
	nl = words(loads_s, loads, 4);
	nm = words(modes_s, modes, 8);
	rc = harness_init();
	if (rc != 0)
		return rc;
	qckpt_bin = (char *)harness_qckpt();
	if (!qckpt_bin) {
		fprintf(stderr, "bench: set QCKPT_BIN to the qckpt program\n");
		return 2;
	}
	registry_path = harness_path("registry");
	catalog_dir = harness_path("catalog");
	mkdir(catalog_dir, 0700);
	setenv("QCKPT_REGISTRY", registry_path, 1);
	print_disk_rate();
	strftime(date, sizeof date, "%Y-%m-%d %H:%M %Z", localtime(&now));
	printf("- date: %s; %d rounds per cell; busy guest: `%s`; 1 qcow2 disk (64 MiB)\n",
	       date, reps, busy);

	for (int q = 0; q < nq; q++) {
		const char *bin = NULL;

		if (strcmp(qemus[q], "7.2") == 0 || strcmp(qemus[q], "7") == 0)
			bin = harness_qemu();
		else if (strncmp(qemus[q], "10", 2) == 0)
			bin = harness_qemu10();
		else
			bin = qemus[q]; /* a path */
		if (!bin) {
			fprintf(stderr, "bench: QEMU %s not found (QCKPT_QEMU10), skipped\n",
				qemus[q]);
			struct cell *c = cell_for(qemus[q], 0, "-", "-");

			c->note = xfmt("QEMU %s not found", qemus[q]);
			continue;
		}
		for (int s = 0; s < ns; s++)
			for (int l = 0; l < nl; l++)
				run_config(bin, qemus[q], (unsigned)strtoul(sizes[s], NULL, 10),
					   loads[l], busy, modes, nm, reps);
	}

	for (int i = 0; i < nversions; i++)
		printf("- QEMU: %s\n", versions_seen[i]);
	getloadavg(load, 3);
	printf("- load average at end: %.2f %.2f %.2f; run took %.1f min\n\n", load[0],
	       load[1], load[2], (double)(uv_hrtime() - t0) / 6e10);
	print_table();
	return 0;
}
