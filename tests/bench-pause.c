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
 *   QCKPT_BENCH_MULTI  8 (0..16): that many test guests (QCKPT_BENCH_MULTI_MIB,
 *                      256) checkpointed per round one after another (one
 *                      qckpt each), then in one command (default
 *                      --throttle-limit), then in one command without a limit;
 *                      worst and median pause of the VMs, total wall time
 *                      (QCKPT_BENCH_MULTI_MODE, auto); QCKPT_BENCH_MULTI_LIMIT N
 *                      makes the third row --throttle-limit N instead of no limit
 *   QCKPT_BENCH_DISTRO DIR of scripts/make-distro-guest's Debian guest: rows
 *                      for it too (1 GiB; QCKPT_BENCH_DISTRO_LOADS "idle write",
 *                      QCKPT_BENCH_DISTRO_MODES live on QEMU 9+, "auto
 *                      background" before), run with qckpt --debug to tell
 *                      where each pause goes (a second table)
 *   QCKPT_BENCH_BREAKDOWN 1: every row with qckpt --debug and the table of
 *                      where its pause goes (the Debian rows always)
 *   QCKPT_BENCH_RAMFILE DIR on a file system with reflinks (XFS): beside
 *                      each VM above, one launched through `qckpt run
 *                      --ram-file` with its catalog in DIR, checkpointed in
 *                      ram-file mode (its RAM file and the checkpoints'
 *                      reflinks in DIR); and for busy guests of up to 1 GiB,
 *                      how fast the guest rewrites its 256 MiB with and
 *                      without its RAM in the shared file (qckpt.dirty_report=1:
 *                      the time between its "dirty pass" lines), a third table
 *   QCKPT_BENCH_SIZES=0 leaves out the test guest's single-VM rows.
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
	/* where the pause went (from qckpt --debug; NAN without it), ms:
	 * STOP -> MIGRATION completed (QEMU's clock), that event's delivery to
	 * qckpt, qckpt's reaction (event read -> transaction sent), the
	 * transaction (sent -> answer), answer -> RESUME (cont and retries) */
	double to_completed, event_lat, react, transaction, to_resume;
	double conts;      /* cont commands sent (1 = no retry) */
};

struct cell {
	char *qemu;        /* version string */
	unsigned mib;
	const char *guest; /* "busybox" or "debian" */
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
/* QCKPT_BENCH_RAMFILE, and whether run_config boots its VM so now */
static const char *ramfile_dir;
static bool ramfile_vm;

/* The busy guest's own rate: 256 MiB rewritten per pass (third table). */
struct rate_row {
	char *qemu;
	unsigned mib;
	bool ramfile;
	double mib_s[4];
	int n;
};
static struct rate_row rate_rows[32];
static int nrates;

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
	if (isnan(x))
		printf("-");
	else if (x >= 100 || x == (double)(long long)x)
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

static void print_breakdown(void)
{
	bool any = false;

	for (int i = 0; i < ncells; i++) {
		const struct cell *c = &cells[i];
		double mn, med, mx;

		if (stats(c, offsetof(struct sample, to_completed), &mn, &med, &mx) == 0)
			continue;
		if (!any) {
			printf("\nWhere the pause goes (qckpt --debug against QEMU's event clock; "
			       "medians, ms): STOP -> MIGRATION completed (QEMU's final pass "
			       "and its completion), the event's way to qckpt, qckpt's "
			       "reaction (event read -> transaction sent), the transaction "
			       "(sent -> answer: the disk switch, with the flush of the old "
			       "layer), answer -> RESUME (cont, with retries); cont sent "
			       "(max: 1 = no retry).\n\n");
			printf("| QEMU | RAM | guest | mode | pause | STOP -> completed | event -> qckpt "
			       "| reaction | transaction | -> RESUME | QEMU downtime | cont sent max |\n");
			printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
			any = true;
		}
		printf("| %s | %u MiB | %s %s | %s |", c->qemu, c->mib, c->guest, c->load, c->mode);
		put_med(c, offsetof(struct sample, obs_pause), 1);
		put_med(c, offsetof(struct sample, to_completed), 1);
		put_med(c, offsetof(struct sample, event_lat), 1);
		put_med(c, offsetof(struct sample, react), 1);
		put_med(c, offsetof(struct sample, transaction), 1);
		put_med(c, offsetof(struct sample, to_resume), 1);
		put_med(c, offsetof(struct sample, downtime), 1);
		stats(c, offsetof(struct sample, conts), &mn, &med, &mx);
		printf(" %.0f |\n", mx);
	}
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

		printf("| %s | %u MiB | %s %s | %s |", c->qemu, c->mib, c->guest, c->load, c->mode);
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
	print_breakdown();
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
	const char *dir = ramfile_vm ? ramfile_dir : catalog_dir;
	size_t n = strlen(dir);

	if (path && strncmp(path, dir, n) == 0 && path[n] == '/' &&
	    !strstr(path, "/../") && unlink(path) != 0)
		fprintf(stderr, "bench: unlink %s: %s\n", path, strerror(errno));
}

/* ---- where the pause goes: qckpt --debug against QEMU's clock --------- */

/* Seconds since midnight, UTC (main() sets TZ=UTC for qckpt's stamps). */
static double tod_epoch(json_t *ts)
{
	return (double)(json_integer_value(json_object_get(ts, "seconds")) % 86400) +
	       (double)json_integer_value(json_object_get(ts, "microseconds")) / 1e6;
}

/* a - b in ms, both seconds since midnight (a run may cross midnight). */
static double tod_diff_ms(double a, double b)
{
	double d = a - b;

	if (d < -43200)
		d += 86400;
	if (d > 43200)
		d -= 86400;
	return d * 1000.0;
}

/* qckpt --debug prints "HH:MM:SS.uuuuuu VM > {json}" per QMP message;
 * only VM's lines count when VM is not NULL (one command, many VMs). */
static void parse_breakdown(const char *err, const char *vm, double stop_tod, struct sample *s)
{
	double done_ev = NAN, done_rx = NAN, tx = NAN, tx_ret = NAN, resume = NAN;
	int conts = 0;

	s->to_completed = s->event_lat = s->react = s->transaction = s->to_resume = NAN;
	s->conts = NAN;
	for (const char *l = err; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : "") {
		int hh, mm, ss, n = 0;
		long us;
		char dir, name[128];
		const char *js;
		json_t *m;
		double t;

		if (sscanf(l, "%d:%d:%d.%ld %127s %c %n", &hh, &mm, &ss, &us, name, &dir, &n) < 6 ||
		    n == 0 || (vm && strcmp(name, vm) != 0))
			continue;
		js = l + n;
		m = json_loadb(js, strcspn(js, "\n"), 0, NULL);
		if (!m)
			continue;
		t = hh * 3600.0 + mm * 60.0 + ss + (double)us / 1e6;
		const char *ev = json_string_value(json_object_get(m, "event"));
		const char *ex = json_string_value(json_object_get(m, "execute"));

		if (dir == '<' && ev && strcmp(ev, "MIGRATION") == 0 && isnan(done_rx) &&
		    strcmp(json_string_value(json_object_get(json_object_get(m, "data"), "status")) ?: "",
			   "completed") == 0) {
			done_rx = t;
			done_ev = tod_epoch(json_object_get(m, "timestamp"));
		} else if (dir == '>' && ex && strcmp(ex, "transaction") == 0) {
			tx = t;
		} else if (dir == '<' && json_object_get(m, "return") && !isnan(tx) && isnan(tx_ret)) {
			tx_ret = t;
		} else if (dir == '>' && ex && strcmp(ex, "cont") == 0) {
			conts++;
		} else if (dir == '<' && ev && strcmp(ev, "RESUME") == 0 && !isnan(tx_ret)) {
			resume = tod_epoch(json_object_get(m, "timestamp"));
		}
		json_decref(m);
	}
	/* only the live/paused order: save, then transaction and cont */
	if (isnan(done_rx) || isnan(tx) || tx < done_rx || isnan(resume))
		return;
	s->to_completed = tod_diff_ms(done_ev, stop_tod);
	s->event_lat = tod_diff_ms(done_rx, done_ev);
	s->react = tod_diff_ms(tx, done_rx);
	s->transaction = tod_diff_ms(tx_ret, tx);
	s->to_resume = tod_diff_ms(resume, tx_ret);
	s->conts = conts;
}

static double first_stop_tod(struct hvm *vm, size_t from)
{
	for (size_t i = from; i < hvm_event_count(vm); i++) {
		const struct hvm_event *e = hvm_event(vm, i);

		if (strcmp(e->name, "STOP") == 0)
			return (double)(e->ts_us % 86400000000LL) / 1e6;
	}
	return NAN;
}

static bool breakdown = false; /* qckpt --debug: the Debian guest's rows, or all
				 * with QCKPT_BENCH_BREAKDOWN=1 */

/* One qckpt checkpoint.  0 with *s filled; 1 when qckpt said no (msg). */
static int measure_qckpt(struct hvm *vm, const char *mode, struct sample *s, char **msg)
{
	char *mode_opt = xfmt("--mode=%s", mode);
	char *ckname = xfmt("bench%d", ++ckserial);
	char *argv[] = { qckpt_bin, "checkpoint", breakdown ? "--debug" : "-q", "--passthru",
			 mode_opt, (char *)hvm_name(vm), ckname, NULL };
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
		/* ram-file: the reflink shares its blocks with the running file */
		drop_memory_file(json_string_value(json_object_get(mem, "RamFile")));
	}
	parse_breakdown(breakdown ? err : NULL, NULL, first_stop_tod(vm, from), s);
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
	s->to_completed = s->event_lat = s->react = s->transaction = s->to_resume = NAN;
	s->conts = NAN;
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

static const char *cur_guest = "busybox";

static struct cell *cell_for(const char *qemu, unsigned mib, const char *load,
			     const char *mode)
{
	for (int i = 0; i < ncells; i++)
		if (strcmp(cells[i].qemu, qemu) == 0 && cells[i].mib == mib &&
		    strcmp(cells[i].guest, cur_guest) == 0 &&
		    strcmp(cells[i].load, load) == 0 && strcmp(cells[i].mode, mode) == 0)
			return &cells[i];
	if (ncells == MAX_CELLS)
		abort();
	cells[ncells] = (struct cell){ .qemu = strdup(qemu), .mib = mib, .load = load,
				       .guest = cur_guest, .mode = mode };
	return &cells[ncells++];
}

static char *versions_seen[8];
static int nversions;

/* The Debian guest of scripts/make-distro-guest (QCKPT_BENCH_DISTRO), and
 * the one run_config boots now (NULL: the test guest): its root file
 * system is a qcow2 overlay per VM on DIR/root.img. */
static const char *distro_cfg, *distro_dir;

/* The guest shows it runs: a tick, or one of the Debian guest's lines. */
static long wait_progress(struct hvm *vm, unsigned ms)
{
	if (distro_dir)
		return hvm_wait_serial(vm, "qckpt-distro: ", ms) >= 0 ? 1 : -1;
	return hvm_wait_tick(vm, ms);
}

/* A busy guest with qckpt.dirty_report=1: MiB/s of its 256 MiB rewrite
 * loop, from the time between its "dirty pass" lines (3 intervals). */
static void measure_rate(struct hvm *vm, const char *ver, unsigned mib, const char *busy)
{
	struct rate_row *row = NULL;
	const char *m = strstr(busy, "qckpt.dirty_mib=");
	double dirty = m ? atof(m + strlen("qckpt.dirty_mib=")) : 0;
	uint64_t t = 0;

	if (dirty <= 0 || !strstr(busy, "qckpt.dirty_report=1") || nrates == 32)
		return;
	for (int i = 0; i < nrates; i++)
		if (strcmp(rate_rows[i].qemu, ver) == 0 && rate_rows[i].mib == mib &&
		    rate_rows[i].ramfile == ramfile_vm)
			row = &rate_rows[i];
	if (row == NULL) {
		row = &rate_rows[nrates++];
		*row = (struct rate_row){ .qemu = strdup(ver), .mib = mib, .ramfile = ramfile_vm };
	}
	hvm_consume_serial(vm);
	for (int i = 0; i < 4; i++) {
		if (hvm_wait_serial(vm, "qckpt-guest: dirty pass", 120000) < 0)
			return;
		if (i > 0)
			row->mib_s[row->n++] = dirty / ((double)(uv_hrtime() - t) / 1e9);
		t = uv_hrtime();
	}
	fprintf(stderr, "bench: %s %u MiB%s: the guest rewrites %.0f MiB at %.1f / %.1f / %.1f MiB/s\n",
		ver, mib, ramfile_vm ? " (RAM file)" : "", dirty, row->mib_s[0], row->mib_s[1],
		row->mib_s[2]);
}

static void print_rates(void)
{
	if (nrates == 0)
		return;
	printf("\nThe busy guest's own rewrite rate (its 256 MiB loop, 3 passes), with its RAM\n"
	       "anonymous (plain) and in a shared file on XFS (`qckpt run --ram-file`):\n\n");
	printf("| QEMU | RAM | guest RAM | MiB/s per pass | median | vs plain |\n|---|---|---|---|---|---|\n");
	for (int i = 0; i < nrates; i++) {
		struct rate_row *r = &rate_rows[i];
		double v[4], med, plain = NAN;

		memcpy(v, r->mib_s, sizeof v);
		qsort(v, (size_t)r->n, sizeof *v, cmp_double);
		med = r->n ? v[r->n / 2] : NAN;
		for (int j = 0; j < nrates; j++)
			if (!rate_rows[j].ramfile && strcmp(rate_rows[j].qemu, r->qemu) == 0 &&
			    rate_rows[j].mib == r->mib && rate_rows[j].n > 0) {
				memcpy(v, rate_rows[j].mib_s, sizeof v);
				qsort(v, (size_t)rate_rows[j].n, sizeof *v, cmp_double);
				plain = v[rate_rows[j].n / 2];
			}
		printf("| %s | %u MiB | %s |", r->qemu, r->mib, r->ramfile ? "RAM file" : "plain");
		for (int k = 0; k < r->n; k++)
			printf("%s%.1f", k ? " / " : " ", r->mib_s[k]);
		printf(" | %.1f | %.2fx |\n", med, med / plain);
	}
}

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
	char *kernel = NULL, *initrd = NULL, *base = NULL, *root = NULL;
	const char *paths[2] = { NULL, NULL };
	const char *prefix[] = { qckpt_bin, "run", "--dir", ramfile_dir, "--ram-file", name, "--", NULL };

	if (ramfile_vm) {
		o.argv_prefix = prefix;
		o.exact_name = true;
	}
	if (distro_dir) {
		kernel = xfmt("%s/vmlinuz", distro_dir);
		initrd = xfmt("%s/initrd.img", distro_dir);
		base = xfmt("%s/root.img", distro_dir);
		root = harness_path(name);
		free(app);
		app = xfmt("root=/dev/vda rw%s", strcmp(load, "idle") == 0 ? " qckpt.idle=1" : "");
		if (disk_create_overlay(root, base, "raw") != 0) {
			fprintf(stderr, "bench: cannot make an overlay on %s\n", base);
			abort();
		}
		paths[0] = root;
		o.disk_paths = paths;
		o.kernel = kernel;
		o.initrd = initrd;
		o.append = app;
	}
	fprintf(stderr, "bench: QEMU %s, %u MiB, %s %s: booting\n", label, mib, cur_guest, load);
	vm = hvm_start(&o);
	if (distro_dir)
		tick = vm && hvm_wait_serial(vm, "qckpt-distro: ready", BOOT_MS) >= 0 ? 1 : -1;
	else
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
	/* let a busy guest fill its dirty set once (the Debian guest: let
	 * the end of its boot settle, 15 of its lines) */
	if (distro_dir)
		for (int i = 0; i < 15 && tick >= 0; i++)
			tick = wait_progress(vm, TICK_MS);
	while (!distro_dir && tick >= 0 && tick < 15)
		tick = hvm_wait_tick(vm, TICK_MS);
	fprintf(stderr, "bench: booted in %.1f s\n", (double)(uv_hrtime() - t0) / 1e9);

	f = fopen(registry_path, "w");
	if (!f)
		abort();
	fprintf(f, "%s unix:%s dir=%s\n", hvm_name(vm), hvm_qmp_path(vm),
		ramfile_vm ? ramfile_dir : catalog_dir);
	fclose(f);
	if (strcmp(load, "busy") == 0 && mib <= 1024 && ramfile_dir != NULL && !distro_dir)
		measure_rate(vm, ver, mib, busy);

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
			if (wait_progress(vm, TICK_MS) < 0)
				fprintf(stderr, "bench: no tick after %s\n", modes[m]);
		}
	}
out:
	hvm_free(vm);
	if (ramfile_vm) {
		/* its RAM file and the reflinks: up to the guest's RAM each */
		char *rm = xfmt("rm -rf '%s/%s'", ramfile_dir, name);

		if (system(rm) != 0)
			fprintf(stderr, "bench: %s failed\n", rm);
		free(rm);
	}
	free(ver);
	free(app);
	free(name);
	free(kernel);
	free(initrd);
	free(base);
	free(root);
}


/* ---- many VMs at once against one after another ----------------------- */

#define MAX_VMS 16

struct multi_row {
	char *qemu;
	unsigned nvms, mib;
	const char *mode;
	const char *how;      /* "one after another", "at once", ... */
	double worst[MAX_REPS], med[MAX_REPS], total[MAX_REPS];
	struct sample bd[MAX_REPS]; /* where the worst VM's pause went (--debug) */
	bool debug;                 /* this row runs qckpt --debug */
	int n;
	char *note;
};

static struct multi_row multi_rows[16];
static int nmulti;

static struct multi_row *multi_row(const char *qemu, unsigned nvms, unsigned mib,
				   const char *mode, const char *how)
{
	for (int i = 0; i < nmulti; i++)
		if (strcmp(multi_rows[i].qemu, qemu) == 0 && multi_rows[i].nvms == nvms &&
		    strcmp(multi_rows[i].how, how) == 0)
			return &multi_rows[i];
	if (nmulti == 16)
		abort();
	multi_rows[nmulti] = (struct multi_row){ .qemu = strdup(qemu), .nvms = nvms,
						 .mib = mib, .mode = mode, .how = how };
	return &multi_rows[nmulti++];
}

/* Run qckpt checkpoint with EXTRA options on NAMES (comma-separated);
 * drops the memory files of the records it prints.  Returns the wall
 * time in ms, or NAN (with *msg) on failure.  With DEBUGERR, qckpt runs
 * with --debug and *DEBUGERR gets its stderr. */
static double run_checkpoint(const char *names, const char *mode, const char *extra,
			     char **msg, char **debugerr)
{
	char *mode_opt = xfmt("--mode=%s", mode);
	char *ckname = xfmt("bench%d", ++ckserial);
	char *argv[9] = { qckpt_bin, "checkpoint", "--passthru", debugerr ? "--debug" : "-q",
			  mode_opt };
	int argc = 5, status = -1;
	char *out = NULL, *err = NULL;
	uint64_t t0 = uv_hrtime();
	double wall = NAN;

	if (extra)
		argv[argc++] = (char *)extra;
	argv[argc++] = (char *)names;
	argv[argc++] = ckname;
	argv[argc] = NULL;
	if (harness_run(argv, &out, &err, &status) != 0) {
		*msg = xfmt("could not run %s", qckpt_bin);
	} else if (status != 0) {
		*msg = first_line(err);
	} else {
		wall = (double)(uv_hrtime() - t0) / 1e6;
	}
	for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : "") {
		json_t *rec = json_loadb(l, strcspn(l, "\n"), 0, NULL);

		drop_memory_file(json_string_value(json_object_get(
			json_object_get(rec, "MemoryState"), "Path")));
		json_decref(rec);
	}
	free(out);
	if (debugerr)
		*debugerr = err;
	else
		free(err);
	free(mode_opt);
	free(ckname);
	return wall;
}

/* Returns the index of the VM with the worst pause. */
static unsigned multi_sample(struct multi_row *row, struct hvm **vms, const size_t *from,
			     double total)
{
	double p[MAX_VMS];
	unsigned n = row->nvms, worst = 0;

	for (unsigned i = 0; i < n; i++) {
		p[i] = observed_pause(vms[i], from[i]);
		if (isnan(p[i]))
			p[i] = 1e9; /* still stopped: shows as absurd, never as good */
		if (p[i] > p[worst])
			worst = i;
	}
	qsort(p, n, sizeof p[0], cmp_double);
	row->worst[row->n] = p[n - 1];
	row->med[row->n] = n % 2 ? p[n / 2] : (p[n / 2 - 1] + p[n / 2]) / 2;
	row->total[row->n] = total;
	row->n++;
	fprintf(stderr, "bench: %u VMs %s: worst pause %.1f ms, median %.1f ms, total %.0f ms\n",
		n, row->how, p[n - 1], row->med[row->n - 1], total);
	return worst;
}

/* NVMS test guests of MIB each: REPS rounds of (one qckpt per VM, one
 * after another; all in one command with the default --throttle-limit;
 * all in one command without a limit), in that order each round. */
static void run_multi(const char *qemu_bin, const char *label, unsigned nvms, unsigned mib,
		      const char *mode, int reps)
{
	struct hvm *vms[MAX_VMS] = { NULL };
	char names[MAX_VMS * 32] = "";
	const char *lim = getenv("QCKPT_BENCH_MULTI_LIMIT");
	char *ver = NULL, *nolimit = xfmt("--throttle-limit=%u", lim ? (unsigned)atoi(lim) : nvms);
	char *third = lim ? xfmt("at once, --throttle-limit %s", lim) : xfmt("at once, no limit");
	const char *hows[3] = { "one after another", NULL, third };
	char *at_once = xfmt("at once (--throttle-limit %ld, the default)",
			     sysconf(_SC_NPROCESSORS_ONLN));
	FILE *f = fopen(registry_path, "w");

	hows[1] = at_once;
	if (!f)
		abort();
	fprintf(stderr, "bench: QEMU %s, %u VMs of %u MiB: booting\n", label, nvms, mib);
	for (unsigned i = 0; i < nvms; i++) {
		char *name = xfmt("m%u-", i);
		/* no_timer_check: eight TCG guests booting on a loaded host
		 * made the kernel's early timer check panic ("</TASK>" at
		 * 0.088 s, then exit) */
		struct hvm_opts o = { .name = name, .qemu = qemu_bin, .mem_mib = mib, .ndisks = 1,
				      .disk_format = HVM_QCOW2, .disk_mib = 64,
				      .append = "no_timer_check" };

		vms[i] = hvm_start(&o);
		free(name);
		if (!vms[i])
			break;
		fprintf(f, "%s unix:%s dir=%s\n", hvm_name(vms[i]), hvm_qmp_path(vms[i]), catalog_dir);
		snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
			 i ? "," : "", hvm_name(vms[i]));
	}
	fclose(f);
	for (unsigned i = 0; i < nvms; i++)
		if (!vms[i] || hvm_wait_tick(vms[i], BOOT_MS) < 0) {
			size_t nl = vms[i] ? hvm_serial_count(vms[i]) : 0;
			char *note = xfmt("VM %u did not boot (QEMU exit status %d; last serial line: %s)",
					  i, vms[i] ? hvm_exited(vms[i]) : -1,
					  nl ? hvm_serial_line(vms[i], nl - 1) : "none");

			fprintf(stderr, "bench: %s\n", note);
			multi_row(label, nvms, mib, mode, hows[0])->note = note;
			goto out;
		}
	ver = qemu_version(vms[0]);
	for (int r = 0; r < reps; r++) {
		for (int h = 0; h < 3; h++) {
			struct multi_row *row = multi_row(ver, nvms, mib, mode, hows[h]);
			size_t from[MAX_VMS];
			double total = 0;
			char *msg = NULL, *err = NULL;

			for (unsigned i = 0; i < nvms; i++) {
				hvm_consume_events(vms[i]);
				from[i] = hvm_event_count(vms[i]);
			}
			/* The default row also says where its worst pause went
			 * (qckpt --debug: its QMP traffic on its clock). */
			row->debug = h == 1;
			if (h == 0) {
				for (unsigned i = 0; i < nvms && !isnan(total); i++)
					total += run_checkpoint(hvm_name(vms[i]), mode, NULL, &msg, NULL);
			} else {
				total = run_checkpoint(names, mode, h == 2 ? nolimit : NULL, &msg,
						       row->debug ? &err : NULL);
			}
			if (isnan(total)) {
				fprintf(stderr, "bench: %u VMs %s: %s\n", nvms, hows[h], msg);
				if (!row->note)
					row->note = msg;
				else
					free(msg);
			} else {
				unsigned w = multi_sample(row, vms, from, total);

				if (row->debug)
					parse_breakdown(err, hvm_name(vms[w]),
							first_stop_tod(vms[w], from[w]),
							&row->bd[row->n - 1]);
			}
			free(err);
			for (unsigned i = 0; i < nvms; i++)
				hvm_wait_tick(vms[i], TICK_MS);
		}
	}
out:
	for (unsigned i = 0; i < nvms; i++)
		hvm_free(vms[i]);
	free(ver);
	free(nolimit);
	/* at_once and third stay: the rows point at them */
}

/* Where the worst VM's pause of each "at once" round went: the same
 * columns as the single-VM breakdown, one line per round. */
static void print_multi_breakdown(void)
{
	bool any = false;

	for (int i = 0; i < nmulti; i++) {
		const struct multi_row *m = &multi_rows[i];

		for (int k = 0; m->debug && k < m->n; k++) {
			const struct sample *b = &m->bd[k];

			if (!any) {
				printf("\nWhere the worst pause of each \"at once\" round went (qckpt "
				       "--debug against QEMU's event clock, ms; columns as in the "
				       "single-VM breakdown).\n\n");
				printf("| QEMU | VMs | round | worst pause | STOP -> completed "
				       "| event -> qckpt | reaction | transaction | -> RESUME "
				       "| cont sent |\n");
				printf("|---|---|---|---|---|---|---|---|---|---|\n");
				any = true;
			}
			printf("| %s | %u x %u MiB | %d | ", m->qemu, m->nvms, m->mib, k + 1);
			put_num(m->worst[k]);
			printf(" | ");
			put_num(b->to_completed);
			printf(" | ");
			put_num(b->event_lat);
			printf(" | ");
			put_num(b->react);
			printf(" | ");
			put_num(b->transaction);
			printf(" | ");
			put_num(b->to_resume);
			printf(" | %.0f |\n", b->conts);
		}
	}
}

static void print_multi(void)
{
	if (nmulti == 0)
		return;
	printf("\nMany VMs in one command against one after another (test guest, idle, "
	       "1 qcow2 disk each): the guest pauses of all VMs by the observers "
	       "(STOP -> RESUME), worst of the VMs and their median, per round; "
	       "total: wall time of the qckpt command(s) of the round.  min / med / max "
	       "over the rounds.\n\n");
	printf("| QEMU | VMs | mode | how | worst pause ms | median pause ms | total ms "
	       "| total / one after another (medians) |\n");
	printf("|---|---|---|---|---|---|---|---|\n");
	for (int i = 0; i < nmulti; i++) {
		struct multi_row *m = &multi_rows[i];
		struct cell w = { .n = m->n }, d = { .n = m->n }, t = { .n = m->n };
		double mn, med, mx, seq = NAN;

		for (int k = 0; k < m->n; k++) {
			w.s[k].obs_pause = m->worst[k];
			d.s[k].obs_pause = m->med[k];
			t.s[k].obs_pause = m->total[k];
		}
		printf("| %s | %u x %u MiB | %s | %s |", m->qemu, m->nvms, m->mib, m->mode, m->how);
		if (m->n == 0) {
			printf(" failed: %s | | | |\n", m->note ? m->note : "?");
			continue;
		}
		for (struct cell *c = &w; c; c = c == &w ? &d : c == &d ? &t : NULL) {
			stats(c, offsetof(struct sample, obs_pause), &mn, &med, &mx);
			printf(" ");
			put_num(mn);
			printf(" / ");
			put_num(med);
			printf(" / ");
			put_num(mx);
			printf(" |");
		}
		for (int j = 0; j < nmulti; j++)
			if (strcmp(multi_rows[j].qemu, m->qemu) == 0 &&
			    multi_rows[j].nvms == m->nvms &&
			    strcmp(multi_rows[j].how, "one after another") == 0 && multi_rows[j].n) {
				struct cell s0 = { .n = multi_rows[j].n };

				for (int k = 0; k < s0.n; k++)
					s0.s[k].obs_pause = multi_rows[j].total[k];
				stats(&s0, offsetof(struct sample, obs_pause), &mn, &seq, &mx);
			}
		stats(&t, offsetof(struct sample, obs_pause), &mn, &med, &mx);
		printf(" %.2fx |\n", med / seq);
	}
	print_multi_breakdown();
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
	const char *busy = env_or("QCKPT_BENCH_BUSY",
				  "qckpt.dirty_mib=256 qckpt.disk_writes=1 qckpt.dirty_report=1");
	int reps = atoi(env_or("QCKPT_BENCH_REPS", "5"));
	unsigned multi_n = (unsigned)atoi(env_or("QCKPT_BENCH_MULTI", "8"));
	unsigned multi_mib = (unsigned)atoi(env_or("QCKPT_BENCH_MULTI_MIB", "256"));
	const char *multi_mode = env_or("QCKPT_BENCH_MULTI_MODE", "auto");
	char *qemus[8], *sizes[8], *loads[4], *modes[8];
	int nq, ns, nl, nm, rc;
	uint64_t t0 = uv_hrtime();
	time_t now = time(NULL);
	char date[64];
	double load[3];

	breakdown = getenv("QCKPT_BENCH_BREAKDOWN") != NULL;
	ramfile_dir = getenv("QCKPT_BENCH_RAMFILE");
	if (ramfile_dir && !ramfile_dir[0])
		ramfile_dir = NULL;
	distro_cfg = getenv("QCKPT_BENCH_DISTRO");
	if (distro_cfg && !distro_cfg[0])
		distro_cfg = NULL;
	/* qckpt --debug stamps its lines in local time: make that UTC, as
	 * QEMU's event timestamps are */
	setenv("TZ", "UTC", 1);
	tzset();
	if (multi_n > MAX_VMS) {
		fprintf(stderr, "bench: QCKPT_BENCH_MULTI must be 0..%d\n", MAX_VMS);
		return 2;
	}
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
			for (int l = 0; l < nl && strtoul(sizes[s], NULL, 10) > 0; l++) {
				char *rf_modes[] = { "ram-file" };

				run_config(bin, qemus[q], (unsigned)strtoul(sizes[s], NULL, 10),
					   loads[l], busy, modes, nm, reps);
				if (ramfile_dir == NULL)
					continue;
				ramfile_vm = true;
				run_config(bin, qemus[q], (unsigned)strtoul(sizes[s], NULL, 10),
					   loads[l], busy, rf_modes, 1, reps);
				ramfile_vm = false;
			}
		if (multi_n > 0)
			run_multi(bin, qemus[q], multi_n, multi_mib, multi_mode, reps);
		if (distro_cfg) {
			/* live pre-copy on QEMU < 9 under TCG can lose dirty
			 * pages (issue 7): auto and background there */
			bool old = qemus[q][0] == '7' || qemus[q][0] == '8';
			char *dm_s = strdup(env_or("QCKPT_BENCH_DISTRO_MODES",
						   old ? "auto background" : "live"));
			char *dl_s = strdup(env_or("QCKPT_BENCH_DISTRO_LOADS", "idle write"));
			char *dmodes[8], *dloads[4];
			int ndm = words(dm_s, dmodes, 8), ndl = words(dl_s, dloads, 4);

			cur_guest = "debian";
			distro_dir = distro_cfg;
			breakdown = true;
			for (int l = 0; l < ndl; l++)
				run_config(bin, qemus[q], 1024, dloads[l], busy, dmodes, ndm, reps);
			cur_guest = "busybox";
			distro_dir = NULL;
			breakdown = getenv("QCKPT_BENCH_BREAKDOWN") != NULL;
			/* the cells keep pointers to the words */
		}
	}

	for (int i = 0; i < nversions; i++)
		printf("- QEMU: %s\n", versions_seen[i]);
	getloadavg(load, 3);
	printf("- load average at end: %.2f %.2f %.2f; run took %.1f min\n\n", load[0],
	       load[1], load[2], (double)(uv_hrtime() - t0) / 6e10);
	print_table();
	print_rates();
	print_multi();
	return 0;
}
