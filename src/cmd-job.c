/*
 * cmd-job.c: "qckpt job list|show|wait|receive|stop|remove", PowerShell's
 * Get-Job, Wait-Job, Receive-Job, Stop-Job and Remove-Job for jobs started
 * with --as-job (asjob.c keeps their files).  Waiting reacts to the job's
 * process ending (a pidfd on the libuv loop), it does not poll; the jobs'
 * progress files are read on a 250 ms timer to draw their live lines.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

#include "asjob.h"
#include "cmd.h"
#include "log.h"
#include "output.h"
#include "progress.h"
#include "util.h"

/* job wait --timeout: at most a year, so seconds * 1000 fits a timer. */
#define JOB_WAIT_MAX_S 31536000

static int cmd_job_exec(int argc, char **argv);

const struct cmd_entry cmd_job_entry = {
	.name = "job",
	.alias = NULL,
	.usage = "list [--json] | show ID | wait [--timeout S] [--progress=auto|none|json] ID... | receive [--keep] ID | stop ID | remove [--force] ID",
	.summary = "manage background jobs started with --as-job",
	.exec = cmd_job_exec,
	.flags = CMD_F_REMOTE,
};

static void print_header(void)
{
	printf("%-4s %-8s %-10s %-11s %s\n", "Id", "Name", "State", "HasMoreData", "Command");
}

static void print_row(json_t *job)
{
	printf("%-4lld %-8s %-10s %-11s %s\n",
	       (long long)json_integer_value(json_object_get(job, "Id")),
	       output_str(job, "Name", ""), output_str(job, "State", ""),
	       json_is_true(json_object_get(job, "HasMoreData")) ? "True" : "False",
	       output_str(job, "Command", ""));
}

static int job_list(int json)
{
	json_t *list = asjob_list(), *job;
	size_t i;

	if (list == NULL)
		return EXIT_USAGE; /* the jobs directory is not private */
	if (!json)
		print_header();
	json_array_foreach(list, i, job) {
		if (json)
			output_json_line(job);
		else
			print_row(job);
	}
	json_decref(list);
	return EXIT_ALL_OK;
}

static int job_show(const char *id)
{
	json_t *job = asjob_load(id), *progress;
	char *text;

	if (job == NULL)
		return EXIT_SOME_FAILED;
	/* the latest progress of its VMs, while it runs and after */
	progress = asjob_load_progress(id);
	if (progress != NULL)
		json_object_set_new(job, "Progress", progress);
	text = json_dumps(job, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	printf("%s\n", text);
	free(text);
	json_decref(job);
	return EXIT_ALL_OK;
}

static int copy_file(const char *id, const char *name, FILE *to)
{
	char *path = asjob_file(id, name), *text = NULL;
	int rc = read_whole_file(path, &text);

	free(path);
	if (rc == 0)
		fputs(text, to);
	free(text);
	return rc == -ENOENT ? 0 : rc;
}

static int job_receive(const char *id, int keep)
{
	json_t *job = asjob_load(id);

	if (job == NULL)
		return EXIT_SOME_FAILED;
	json_decref(job);
	fflush(stdout);
	if (copy_file(id, "output", stdout) < 0 || copy_file(id, "errors", stderr) < 0)
		return error("job %s: cannot read its output", id), EXIT_SOME_FAILED;
	fflush(stdout);
	if (!keep && !asjob_running(id))
		asjob_set_received(id);
	return EXIT_ALL_OK;
}

/* ---- wait ------------------------------------------------------------ */

struct waiter {
	uv_poll_t poll;
	int fd; /* the pidfd: uv_poll does not own it */
};

struct wait_ctx {
	struct waiter *w;
	int n, left, timed_out;
	uv_timer_t timer;
	char **ids;
	uv_timer_t tick;      /* the jobs' progress, every 250 ms */
	json_t *shown;        /* what was drawn last */
};

static void on_closed(uv_handle_t *handle)
{
	struct waiter *w = handle->data;

	close(w->fd);
}

static void stop_all(struct wait_ctx *ctx)
{
	for (int i = 0; i < ctx->n; i++) {
		if (ctx->w[i].poll.data != NULL && !uv_is_closing((uv_handle_t *)&ctx->w[i].poll))
			uv_close((uv_handle_t *)&ctx->w[i].poll, on_closed);
	}
	if (!uv_is_closing((uv_handle_t *)&ctx->timer))
		uv_close((uv_handle_t *)&ctx->timer, NULL);
	if (!uv_is_closing((uv_handle_t *)&ctx->tick))
		uv_close((uv_handle_t *)&ctx->tick, NULL);
}

/* The rows of the jobs still running, drawn when they changed. */
static void on_progress_tick(uv_timer_t *timer)
{
	struct wait_ctx *ctx = timer->data;
	json_t *rows = json_array();

	for (int i = 0; i < ctx->n; i++) {
		json_t *mine;

		if (ctx->w[i].poll.data == NULL || uv_is_closing((uv_handle_t *)&ctx->w[i].poll))
			continue;
		mine = asjob_load_progress(ctx->ids[i]);
		if (mine != NULL)
			json_array_extend(rows, mine);
		json_decref(mine);
	}
	if (ctx->shown == NULL || !json_equal(rows, ctx->shown))
		progress_board_show_json(rows);
	json_decref(ctx->shown);
	ctx->shown = rows;
}

static void on_exit_readable(uv_poll_t *poll, int status, int events)
{
	struct wait_ctx *ctx = poll->loop->data;

	uv_close((uv_handle_t *)poll, on_closed);
	if (--ctx->left == 0)
		stop_all(ctx);
}

static void on_timeout(uv_timer_t *timer)
{
	struct wait_ctx *ctx = timer->data;

	ctx->timed_out = 1;
	stop_all(ctx);
}

/* The job's process, as a pidfd, if the job still runs; -1 if it ended. */
static int job_pidfd(const char *id)
{
	json_t *job = asjob_load(id);
	pid_t pid = job ? (pid_t)json_integer_value(json_object_get(job, "Pid")) : 0;
	int fd;

	json_decref(job);
	if (pid <= 0)
		return -1;
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	/* Checked after opening: while the lock is held, PID is the job. */
	if (fd >= 0 && !asjob_running(id)) {
		close(fd);
		return -1;
	}
	return fd;
}

static int job_wait(char **ids, int n, double timeout_s, enum progress_output output)
{
	struct wait_ctx ctx = { .n = n, .ids = ids };
	uv_loop_t loop;
	int rc = EXIT_ALL_OK;

	for (int i = 0; i < n; i++) {
		json_t *job = asjob_load(ids[i]);

		if (job == NULL)
			return EXIT_SOME_FAILED;
		json_decref(job);
	}
	uv_loop_init(&loop);
	loop.data = &ctx;
	ctx.w = xcalloc((size_t)n, sizeof *ctx.w);
	uv_timer_init(&loop, &ctx.timer);
	ctx.timer.data = &ctx;
	uv_timer_init(&loop, &ctx.tick);
	ctx.tick.data = &ctx;
	for (int i = 0; i < n; i++) {
		int fd = job_pidfd(ids[i]);

		if (fd < 0 && errno == ENOSYS && asjob_running(ids[i])) {
			error("job wait needs pidfd_open (Linux 5.3 or later)");
			rc = EXIT_SOME_FAILED;
			continue;
		}
		if (fd < 0)
			continue; /* already finished */
		ctx.w[i].fd = fd;
		uv_poll_init(&loop, &ctx.w[i].poll, fd);
		ctx.w[i].poll.data = &ctx.w[i];
		uv_poll_start(&ctx.w[i].poll, UV_READABLE, on_exit_readable);
		ctx.left++;
	}
	if (ctx.left == 0) {
		uv_close((uv_handle_t *)&ctx.timer, NULL);
		uv_close((uv_handle_t *)&ctx.tick, NULL);
	} else {
		if (timeout_s > 0)
			uv_timer_start(&ctx.timer, on_timeout, (uint64_t)(timeout_s * 1000), 0);
		progress_board_open(output);
		uv_timer_start(&ctx.tick, on_progress_tick, 0, 250);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	progress_board_close();
	json_decref(ctx.shown);
	free(ctx.w);
	print_header();
	for (int i = 0; i < n; i++) {
		json_t *job = asjob_load(ids[i]);

		if (job == NULL)
			continue;
		print_row(job);
		if (strcmp(output_str(job, "State", ""), "Completed") != 0)
			rc = EXIT_SOME_FAILED;
		json_decref(job);
	}
	if (ctx.timed_out)
		error("timed out after %g s waiting for the jobs; they go on ('qckpt job list')", timeout_s);
	return rc;
}

static int job_remove(const char *id, int force)
{
	json_t *job = asjob_load(id);

	if (job == NULL)
		return EXIT_SOME_FAILED;
	json_decref(job);
	if (asjob_running(id)) {
		if (!force)
			return error("job %s is still running; 'qckpt job stop %s' first, or remove --force", id, id),
			       EXIT_SOME_FAILED;
		if (asjob_stop(id) < 0)
			return EXIT_SOME_FAILED;
	}
	if (asjob_remove(id) < 0)
		return error("job %s: cannot remove its files: %s", id, strerror(errno)), EXIT_SOME_FAILED;
	return EXIT_ALL_OK;
}

static int cmd_job_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		{ "json", no_argument, NULL, 'j' },
		{ "keep", no_argument, NULL, 'k' },
		{ "force", no_argument, NULL, 'f' },
		{ "timeout", required_argument, NULL, 't' },
		{ "progress", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	enum progress_output output = PROGRESS_AUTO;
	int opt, json = 0, keep = 0, force = 0;
	double timeout = 0;
	const char *sub;

	/* The subcommand is the first word that is not an option, so that
	 * `qckpt job --help` and `qckpt job -v list` work as elsewhere. */
	optind = 1;
	while ((opt = cmd_getopt(&cmd_job_entry, argc, argv, CMD_COMMON_SHORT, longopts)) != -1) {
		if (opt == CMD_OPT_HELP)
			return EXIT_ALL_OK;
		switch (opt) {
		case 'j': json = 1; break;
		case 'k': keep = 1; break;
		case 'f': force = 1; break;
		case 'p':
			if (progress_parse(optarg, &output) < 0)
				return error("--progress: auto, none or json, not '%s'", optarg), EXIT_USAGE;
			break;
		case 't':
			if (parse_double(optarg, 0, JOB_WAIT_MAX_S, &timeout) < 0 || timeout <= 0)
				return error("--timeout %s: seconds, more than 0 and at most %d (e.g. 30 or 0.5)",
					     optarg, JOB_WAIT_MAX_S), EXIT_USAGE;
			break;
		default:
			return cmd_usage(&cmd_job_entry);
		}
	}
	if (optind >= argc)
		return cmd_usage(&cmd_job_entry);
	sub = argv[optind++];
	if (strcmp(sub, "list") == 0 && optind == argc)
		return job_list(json);
	if (strcmp(sub, "wait") == 0 && optind < argc)
		return job_wait(argv + optind, argc - optind, timeout, output);
	if (optind + 1 != argc)
		return cmd_usage(&cmd_job_entry);
	if (strcmp(sub, "show") == 0)
		return job_show(argv[optind]);
	if (strcmp(sub, "receive") == 0)
		return job_receive(argv[optind], keep);
	if (strcmp(sub, "stop") == 0)
		return asjob_stop(argv[optind]) < 0 ? EXIT_SOME_FAILED : EXIT_ALL_OK;
	if (strcmp(sub, "remove") == 0)
		return job_remove(argv[optind], force);
	return cmd_usage(&cmd_job_entry);
}
