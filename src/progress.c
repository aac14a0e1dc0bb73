/*
 * progress.c: see progress.h.  One board per process (a command shows
 * all its VMs together, and the log must clear the live lines before it
 * writes); one row per VM, fed by the task framework and ticking on the
 * task's loop.  The terminal is drawn with two escape sequences only
 * (cursor up, erase down), which every terminal qckpt meets knows.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "asjob.h"
#include "log.h"
#include "progress.h"
#include "util.h"

#define PROGRESS_TICK_MS 250u
/* The job's file is rewritten at most this often (and at phase changes). */
#define PROGRESS_RECORD_MS 1000u

static struct progress_board board_store;
static struct progress_board *board;

int progress_parse(const char *text, enum progress_output *out)
{
	static const char *const names[] = { "auto", "none", "json" };

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (strcmp(text, names[i]) == 0) {
			*out = (enum progress_output)i;
			return 0;
		}
	}
	return -1;
}

struct progress_board *progress_board_open(enum progress_output output)
{
	board = &board_store;
	memset(board, 0, sizeof *board);
	board->output = output;
	board->live = output == PROGRESS_AUTO && !log_quiet && isatty(STDERR_FILENO);
	board->record = asjob_in_process();
	log_before_output = progress_clear_for_output;
	return board;
}

/* ---- the terminal ------------------------------------------------------ */

static void format_mib(char *out, size_t len, long long bytes)
{
	snprintf(out, len, "%.1f", (double)bytes / (1024.0 * 1024.0));
}

/* "VM: saving memory 312.0 of 512.0 MiB, 85.3 MiB/s, 2 s left (4 s)" */
static void row_text(const struct progress *p, char *out, size_t len)
{
	char done[32], total[32];
	size_t n;
	uint64_t elapsed = (mono_ms() - p->start_ms) / 1000;

	n = (size_t)snprintf(out, len, "qckpt: %s: %s", p->vm, p->phase);
	if (n < len && p->done >= 0 && p->total > 0) {
		format_mib(done, sizeof done, p->done);
		format_mib(total, sizeof total, p->total);
		n += (size_t)snprintf(out + n, len - n, " %s of %s MiB", done, total);
	} else if (n < len && p->total > 0) {
		format_mib(total, sizeof total, p->total);
		n += (size_t)snprintf(out + n, len - n, " (%s MiB)", total);
	}
	if (n < len && p->rate > 0)
		n += (size_t)snprintf(out + n, len - n, ", %.1f MiB/s",
				      p->rate / (1024.0 * 1024.0));
	if (n < len && p->rate > 0 && p->remaining >= 0)
		n += (size_t)snprintf(out + n, len - n, ", %lld s left",
				      (long long)((double)p->remaining / p->rate + 0.5));
	if (n < len)
		snprintf(out + n, len - n, " (%llu s)", (unsigned long long)elapsed);
}

static int terminal_columns(void)
{
	const char *env = getenv("COLUMNS");
	int cols = env ? atoi(env) : 0;

	return cols > 20 ? cols : 80;
}

static void board_erase(void)
{
	if (board->drawn > 0)
		fprintf(stderr, "\033[%dA\r\033[J", board->drawn);
	board->drawn = 0;
}

/* Every row again, in place of the last drawing; one write, cut to the
 * terminal's width so that a line never wraps (the cursor arithmetic
 * counts lines). */
static void board_draw(void)
{
	char text[512];
	int cols = terminal_columns();

	board_erase();
	for (size_t i = 0; i < board->nrows; i++) {
		row_text(board->rows[i], text, sizeof text);
		if ((int)strlen(text) >= cols)
			text[cols - 1] = '\0';
		fprintf(stderr, "%s\n", text);
		board->drawn++;
	}
	fflush(stderr);
}

void progress_clear_for_output(void)
{
	if (board != NULL && board->live) {
		board_erase();
		fflush(stderr);
	}
}

/* ---- JSON, for stderr and the job's file -------------------------------- */

static json_t *bytes_or_null(long long v)
{
	return v >= 0 ? json_integer(v) : json_null();
}

static json_t *row_json(const struct progress *p)
{
	char when[64];

	format_iso8601(wall_ms(), when, sizeof when);
	return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:I}",
			 "Time", when, "VMName", p->vm, "Phase", p->phase,
			 "BytesDone", bytes_or_null(p->done),
			 "BytesTotal", bytes_or_null(p->total),
			 "BytesPerSecond", p->rate >= 0 ? json_integer((json_int_t)p->rate) : json_null(),
			 "SecondsLeft", p->rate > 0 && p->remaining >= 0 ?
				json_integer((json_int_t)((double)p->remaining / p->rate + 0.5)) : json_null(),
			 "ElapsedMs", (json_int_t)(mono_ms() - p->start_ms));
}

static void emit_json_line(const struct progress *p)
{
	json_t *o = row_json(p);
	char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);

	if (text != NULL) {
		fprintf(stderr, "%s\n", text);
		fflush(stderr);
	}
	free(text);
	json_decref(o);
}

/* The job's file holds the latest row of every VM of the job. */
static void record_rows(int force)
{
	json_t *rows;

	if (!force && mono_ms() - board->recorded_ms < PROGRESS_RECORD_MS)
		return;
	board->recorded_ms = mono_ms();
	rows = json_array();
	for (size_t i = 0; i < board->nrows; i++)
		json_array_append_new(rows, row_json(board->rows[i]));
	asjob_write_progress(rows);
	json_decref(rows);
}

/* Say where P is now: IMPORTANT at phase changes. */
static void emit(struct progress *p, int important)
{
	if (p->board == NULL)
		return;
	if (board->output == PROGRESS_JSON)
		emit_json_line(p);
	else if (board->live)
		board_draw();
	if (board->record)
		record_rows(important);
}

/* ---- asking QEMU --------------------------------------------------------- */

static long long ram_field(json_t *ram, const char *key)
{
	json_t *v = json_object_get(ram, key);

	return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

static void on_query_migrate(qmp_client *client, int status, json_t *result,
			     const struct qmp_error *qerr, void *arg)
{
	struct progress *p = arg;
	json_t *ram = json_object_get(result, "ram");

	p->query_out = 0;
	/* a reply from a phase that is over says nothing of this one */
	if (p->finished || status != 0 || p->source != PROGRESS_SRC_MIGRATE)
		return;
	if (json_is_object(ram)) {
		double mbps = json_number_value(json_object_get(ram, "mbps"));

		/* QEMU's mbps is megabits (10^6) per second. */
		p->done = ram_field(ram, "transferred");
		p->total = ram_field(ram, "total");
		p->remaining = ram_field(ram, "remaining");
		p->rate = mbps > 0 ? mbps * 1e6 / 8 : -1;
	}
	emit(p, 0);
}

/* query-jobs: the figures of the job P waits for.  The rate is the
 * change of current-progress over the time between two replies. */
static void on_query_jobs(qmp_client *client, int status, json_t *result,
			  const struct qmp_error *qerr, void *arg)
{
	struct progress *p = arg;
	json_t *job;
	size_t i;

	p->query_out = 0;
	if (p->finished || status != 0 || p->source != PROGRESS_SRC_BLOCKJOB ||
	    p->job_id == NULL)
		return;
	json_array_foreach(result, i, job) {
		const char *id = json_string_value(json_object_get(job, "id"));
		long long cur = ram_field(job, "current-progress");
		long long tot = ram_field(job, "total-progress");
		uint64_t now = mono_ms();

		if (id == NULL || strcmp(id, p->job_id) != 0 || cur < 0 || tot < 0)
			continue;
		if (p->done >= 0 && now > p->sampled_ms && cur >= p->done)
			p->rate = (double)(cur - p->done) * 1000.0 / (double)(now - p->sampled_ms);
		p->sampled_ms = now;
		p->done = cur;
		p->total = tot;
		p->remaining = tot >= cur ? tot - cur : -1;
		emit(p, 0);
		return;
	}
}

/* An incoming stream read from a file through the fd QEMU shares with
 * us: the file offset is how far QEMU has read (mapped-ram reads with
 * pread and leaves it at 0: unknown then).  The rate is that offset's
 * change over the tick. */
static void read_incoming_offset(struct progress *p)
{
	off_t off = p->fd >= 0 ? lseek(p->fd, 0, SEEK_CUR) : -1;
	uint64_t now = mono_ms();

	if (off <= 0)
		return;
	if (p->done >= 0 && now > p->sampled_ms && off >= p->done)
		p->rate = (double)(off - p->done) * 1000.0 / (double)(now - p->sampled_ms);
	if (p->total > 0)
		p->remaining = p->total - off;
	p->sampled_ms = now;
	p->done = off;
}

/* query-migrate, not counted in the task: it must never hold a step
 * back.  0 when sent. */
static int ask_qemu(struct progress *p)
{
	int jobs = p->source == PROGRESS_SRC_BLOCKJOB;

	if ((p->source != PROGRESS_SRC_MIGRATE && !jobs) || p->qmp == NULL ||
	    p->qmp->state != QMP_STATE_READY)
		return -1;
	if (!p->query_out)
		p->query_out = qmp_client_execute_ex(p->qmp, jobs ? "query-jobs" : "query-migrate",
						     NULL, -1, 2000,
						     jobs ? on_query_jobs : on_query_migrate, p) == 0;
	return 0;
}

void progress_poke(struct progress *p)
{
	if (p->board != NULL && !p->finished)
		ask_qemu(p);
}

static void on_tick(uv_timer_t *timer)
{
	struct progress *p = timer->data;

	if (p->finished)
		return;
	if (p->source == PROGRESS_SRC_INCOMING)
		read_incoming_offset(p);
	if (ask_qemu(p) == 0)
		return; /* the reply says it */
	emit(p, 0);
}

/* ---- a VM's row ------------------------------------------------------------- */

void progress_start(struct progress *p, uv_loop_t *loop, const char *vm)
{
	memset(p, 0, sizeof *p);
	p->done = p->total = p->remaining = p->sampled_done = -1;
	p->rate = -1;
	p->fd = -1;
	p->phase = "starting";
	p->start_ms = mono_ms();
	p->vm = xstrdup(vm);
	if (board == NULL || (board->output == PROGRESS_NONE && !board->record) ||
	    (board->output == PROGRESS_AUTO && !board->live && !board->record))
		return;
	p->board = board;
	board->rows = xrealloc(board->rows, (board->nrows + 1) * sizeof *board->rows);
	board->rows[board->nrows++] = p;
	uv_timer_init(loop, &p->timer);
	p->timer.data = p;
	p->timer_open = 1;
	uv_timer_start(&p->timer, on_tick, PROGRESS_TICK_MS, PROGRESS_TICK_MS);
}

void progress_rename(struct progress *p, const char *vm)
{
	free(p->vm);
	p->vm = xstrdup(vm);
}

void progress_phase(struct progress *p, const char *phase)
{
	if (p->finished || (p->phase != NULL && strcmp(p->phase, phase) == 0))
		return;
	p->phase = phase;
	p->source = PROGRESS_SRC_NONE;
	p->done = p->total = p->remaining = p->sampled_done = -1;
	p->rate = -1;
	emit(p, 1);
}

void progress_watch(struct progress *p, enum progress_source source,
		    qmp_client *qmp, int fd, long long total)
{
	p->source = source;
	p->qmp = qmp;
	p->fd = fd;
	p->total = total;
}

void progress_watch_job(struct progress *p, qmp_client *qmp, const char *job_id)
{
	p->source = PROGRESS_SRC_BLOCKJOB;
	p->qmp = qmp;
	p->job_id = job_id;
	p->done = p->total = p->remaining = -1;
	p->rate = -1;
}

void progress_count(struct progress *p, long long done, long long total)
{
	uint64_t now = mono_ms();

	/* the rate over at least a tick: qemu-img's percent moves in steps */
	if (p->sampled_done < 0 || done < p->sampled_done) {
		p->sampled_done = done;
		p->sampled_ms = now;
	} else if (now >= p->sampled_ms + PROGRESS_TICK_MS) {
		p->rate = (double)(done - p->sampled_done) * 1000.0 / (double)(now - p->sampled_ms);
		p->sampled_done = done;
		p->sampled_ms = now;
	}
	p->done = done;
	p->total = total;
	p->remaining = total >= done ? total - done : -1;
}

static void board_remove(struct progress *p)
{
	size_t i;

	for (i = 0; i < board->nrows && board->rows[i] != p; i++)
		;
	if (i == board->nrows)
		return;
	memmove(&board->rows[i], &board->rows[i + 1],
		(board->nrows - i - 1) * sizeof *board->rows);
	board->nrows--;
}

void progress_finish(struct progress *p, const char *final_phase)
{
	if (p->finished)
		return;
	if (p->board != NULL) {
		p->phase = final_phase;
		p->source = PROGRESS_SRC_NONE;
		if (board->output == PROGRESS_JSON)
			emit_json_line(p);
		if (board->record)
			record_rows(1);
		board_remove(p);
		/* Cleared, not redrawn: what the command prints about this VM
		 * comes next, and the others' rows follow at the next tick. */
		progress_clear_for_output();
	}
	p->finished = 1;
	if (p->timer_open) {
		p->timer_open = 0;
		uv_close((uv_handle_t *)&p->timer, NULL);
	}
}

void progress_free(struct progress *p)
{
	free(p->vm);
	p->vm = NULL;
}

void progress_board_close(void)
{
	if (board == NULL)
		return;
	progress_clear_for_output();
	free(board->rows);
	board->rows = NULL;
	board->nrows = 0;
	log_before_output = NULL;
	board = NULL;
}

/* ---- job wait ---------------------------------------------------------------- */

static long long json_ll(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

void progress_board_show_json(json_t *rows)
{
	size_t i;
	json_t *row;

	if (board == NULL)
		return;
	if (board->output == PROGRESS_JSON) {
		json_array_foreach(rows, i, row) {
			char *text = json_dumps(row, JSON_COMPACT | JSON_PRESERVE_ORDER);

			if (text != NULL)
				fprintf(stderr, "%s\n", text);
			free(text);
		}
		fflush(stderr);
		return;
	}
	if (!board->live)
		return;
	board_erase();
	json_array_foreach(rows, i, row) {
		struct progress p = {
			.vm = (char *)json_string_value(json_object_get(row, "VMName")),
			.phase = json_string_value(json_object_get(row, "Phase")),
			.done = json_ll(row, "BytesDone"),
			.total = json_ll(row, "BytesTotal"),
			.rate = (double)json_ll(row, "BytesPerSecond"),
			.start_ms = mono_ms() - (uint64_t)(json_ll(row, "ElapsedMs") > 0 ?
							   json_ll(row, "ElapsedMs") : 0),
		};
		long long left = json_ll(row, "SecondsLeft");
		char text[512];

		p.remaining = left >= 0 && p.rate > 0 ? (long long)((double)left * p.rate) : -1;
		if (p.vm == NULL || p.phase == NULL)
			continue;
		row_text(&p, text, sizeof text);
		if ((int)strlen(text) >= terminal_columns())
			text[terminal_columns() - 1] = '\0';
		fprintf(stderr, "%s\n", text);
		board->drawn++;
	}
	fflush(stderr);
}
