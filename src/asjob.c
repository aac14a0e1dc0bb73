/*
 * asjob.c: background jobs (see asjob.h).  Kept apart from the commands so
 * that any command can offer --as-job and `qckpt job` reads the same files.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "asjob.h"
#include "jsondir.h"
#include "log.h"
#include "util.h"

static char *job_id_in_process; /* set in the job's own process */

char *asjob_dir(void)
{
	const char *env = getenv("QCKPT_JOBS_DIR");
	const char *run = getenv("XDG_RUNTIME_DIR");

	if (env != NULL && env[0] == '/')
		return xstrdup(env);
	if (geteuid() == 0)
		return xstrdup("/run/qckpt/jobs");
	if (run != NULL && run[0] == '/')
		return xasprintf("%s/qckpt/jobs", run);
	return xasprintf("/tmp/qckpt-%u/jobs", (unsigned)geteuid());
}

/*
 * The jobs directory must be this user's alone: a job's files name the
 * process `qckpt job stop` signals, and in /tmp anyone could have made the
 * directory first.  Created private when missing; 0, or -1 after one line.
 */
static int jobs_dir_private(const char *dir)
{
	char why[512];

	if (private_dir(dir, why, sizeof why) == 0)
		return 0;
	return error("jobs directory: %s; remove it or set QCKPT_JOBS_DIR to a directory of yours",
		     why);
}

char *asjob_file(const char *id, const char *name)
{
	char *dir = asjob_dir();
	char *path = xasprintf("%s/%s/%s", dir, id, name);

	free(dir);
	return path;
}

static int valid_id(const char *id)
{
	if (*id == '\0' || strlen(id) > 9)
		return 0;
	for (const char *p = id; *p; p++)
		if (*p < '0' || *p > '9')
			return 0;
	return 1;
}

static int write_state(const char *id, json_t *state)
{
	char *path = asjob_file(id, "job.json");
	char *text = json_dumps(state, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	int rc = text ? write_file_atomic(path, text, strlen(text), 0600) : -ENOMEM;

	free(text);
	free(path);
	return rc;
}

/* A job's JSON file NAME, if it holds a value of TYPE; else NULL. */
static json_t *read_json(const char *id, const char *name, json_type type)
{
	char *path = asjob_file(id, name);
	json_t *value = json_load_file(path, 0, NULL);

	free(path);
	if (value != NULL && json_typeof(value) != type) {
		json_decref(value);
		value = NULL;
	}
	return value;
}

static json_t *read_state(const char *id)
{
	return read_json(id, "job.json", JSON_OBJECT);
}

int asjob_running(const char *id)
{
	char *path = asjob_file(id, "lock");
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	int running = 0;

	free(path);
	if (fd < 0)
		return 0;
	if (flock(fd, LOCK_SH | LOCK_NB) < 0)
		running = errno == EWOULDBLOCK;
	close(fd);
	return running;
}

/* The next free number: mkdir is the atomic claim. */
static char *claim_id(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	long next = 1;

	while (d != NULL && (de = readdir(d)) != NULL) {
		long n = strtol(de->d_name, NULL, 10);

		if (valid_id(de->d_name) && n >= next)
			next = n + 1;
	}
	if (d != NULL)
		closedir(d);
	for (;; next++) {
		char *path = xasprintf("%s/%ld", dir, next);
		int rc = mkdir(path, 0700);

		free(path);
		if (rc == 0)
			return xasprintf("%ld", next);
		if (errno != EEXIST)
			return NULL;
	}
}

static char *join_args(int argc, char **argv)
{
	char *s = xstrdup("qckpt");

	for (int i = 0; i < argc; i++) {
		char *longer = xasprintf("%s %s", s, argv[i]);

		free(s);
		s = longer;
	}
	return s;
}

static int redirect(int fd, const char *id, const char *name, int flags)
{
	char *path = name ? asjob_file(id, name) : xstrdup("/dev/null");
	int f = open(path, flags | O_CLOEXEC | O_NOFOLLOW, 0600);

	free(path);
	if (f < 0 || dup2(f, fd) < 0)
		return -1;
	close(f);
	return 0;
}

/* In the job's process: new session, files for stdin/out/err, the state. */
static void become_job(const char *id, int argc, char **argv, int ready)
{
	char when[64];
	json_t *state;
	char *command = join_args(argc, argv);

	format_iso8601(wall_ms(), when, sizeof when);
	state = json_pack("{s:i, s:s+, s:s, s:s, s:i, s:s, s:n, s:n, s:b}",
			  "Id", atoi(id), "Name", "Job", id, "Command", command,
			  "State", "Running", "Pid", (int)getpid(),
			  "StartTime", when, "EndTime", "ExitStatus",
			  "HasMoreData", 0);
	free(command);
	if (write_state(id, state) < 0 ||
	    redirect(STDIN_FILENO, id, NULL, O_RDONLY) < 0 ||
	    redirect(STDOUT_FILENO, id, "output", O_WRONLY | O_CREAT | O_TRUNC) < 0 ||
	    redirect(STDERR_FILENO, id, "errors", O_WRONLY | O_CREAT | O_TRUNC) < 0)
		_exit(EXIT_FAILURE);
	json_decref(state);
	signal(SIGHUP, SIG_IGN);
	job_id_in_process = xstrdup(id);
	if (write(ready, "r", 1) != 1)
		_exit(EXIT_FAILURE);
	close(ready);
}

int asjob_detach(int argc, char **argv)
{
	char *dir = asjob_dir(), *id = NULL, *lock = NULL;
	int lockfd = -1, pipefd[2] = { -1, -1 }, rc = -1;
	pid_t child;
	char byte;

	if (jobs_dir_private(dir) < 0)
		goto out;
	if ((id = claim_id(dir)) == NULL) {
		error("--as-job: cannot create a job under %s: %s", dir, strerror(errno));
		goto out;
	}
	/* The lock is taken here and inherited: the job never looks dead. */
	lock = asjob_file(id, "lock");
	lockfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX) < 0 || pipe(pipefd) < 0) {
		error("--as-job: cannot set up job %s: %s", id, strerror(errno));
		goto out;
	}
	fflush(NULL);
	child = fork();
	if (child < 0) {
		error("--as-job: fork: %s", strerror(errno));
		goto out;
	}
	if (child == 0) {
		/* Double fork: the job is not a session leader, and nobody has
		 * to reap it. */
		close(pipefd[0]);
		if (setsid() < 0 || (child = fork()) < 0)
			_exit(EXIT_FAILURE);
		if (child > 0)
			_exit(EXIT_SUCCESS);
		become_job(id, argc, argv, pipefd[1]);
		free(dir);
		free(lock);
		free(id);
		return 0; /* the job's process goes on with the command */
	}
	close(pipefd[1]);
	pipefd[1] = -1;
	waitpid(child, NULL, 0);
	/* Wait until the job has recorded itself, so `qckpt job` sees it. */
	if (read(pipefd[0], &byte, 1) != 1) {
		error("--as-job: job %s did not start; see %s/%s", id, dir, id);
		goto out;
	}
	printf("%s\n", id);
	rc = 1;
out:
	if (lockfd >= 0)
		close(lockfd);
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	free(lock);
	free(id);
	free(dir);
	return rc;
}

int asjob_in_process(void)
{
	return job_id_in_process != NULL;
}

const char *asjob_id(void)
{
	return job_id_in_process;
}

void asjob_write_progress(json_t *rows)
{
	char *path, *tmp;
	FILE *f;

	if (job_id_in_process == NULL)
		return;
	path = asjob_file(job_id_in_process, "progress");
	tmp = xasprintf("%s.tmp", path);
	f = fopen(tmp, "w");
	if (f != NULL && json_dumpf(rows, f, JSON_COMPACT | JSON_PRESERVE_ORDER) == 0 &&
	    fclose(f) == 0) {
		f = NULL;
		if (rename(tmp, path) < 0)
			unlink(tmp);
	} else {
		if (f != NULL)
			fclose(f);
		unlink(tmp);
	}
	free(tmp);
	free(path);
}

json_t *asjob_load_progress(const char *id)
{
	return valid_id(id) ? read_json(id, "progress", JSON_ARRAY) : NULL;
}

static long long file_size(const char *id, const char *name)
{
	char *path = asjob_file(id, name);
	struct stat st;
	long long size = stat(path, &st) == 0 ? (long long)st.st_size : 0;

	free(path);
	return size;
}

int asjob_finish(int status)
{
	const char *id = job_id_in_process;
	json_t *state;
	char when[64];
	char *marker;

	if (id == NULL)
		return status;
	fflush(NULL);
	state = read_state(id);
	if (state == NULL)
		return status;
	marker = asjob_file(id, "stopped");
	format_iso8601(wall_ms(), when, sizeof when);
	json_object_set_new(state, "State", json_string(
		access(marker, F_OK) == 0 ? "Stopped" : status == 0 ? "Completed" : "Failed"));
	json_object_set_new(state, "EndTime", json_string(when));
	json_object_set_new(state, "ExitStatus", json_integer(status));
	json_object_set_new(state, "HasMoreData", json_boolean(
		file_size(id, "output") > 0 || file_size(id, "errors") > 0));
	write_state(id, state);
	json_decref(state);
	free(marker);
	return status;
}

json_t *asjob_load(const char *id)
{
	json_t *state;
	char *dir;
	int ok;

	if (!valid_id(id)) {
		error("'%s' is not a job id; see 'qckpt job list'", id);
		return NULL;
	}
	dir = asjob_dir();
	ok = jobs_dir_private(dir) == 0;
	free(dir);
	if (!ok)
		return NULL;
	if ((state = read_state(id)) == NULL) {
		error("no job %s; see 'qckpt job list'", id);
		return NULL;
	}
	if (strcmp(json_string_value(json_object_get(state, "State")), "Running") == 0 &&
	    !asjob_running(id)) {
		json_object_set_new(state, "State", json_string("Failed"));
		json_object_set_new(state, "Reason", json_string(
			"the job's process ended without recording its result"));
	}
	return state;
}

static int by_id(const void *a, const void *b)
{
	json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "Id"));
	json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "Id"));

	return (x > y) - (x < y);
}

/* A job directory's state, if it is one. */
static json_t *load_job(const char *dir, const char *entry)
{
	json_t *state;

	if (!valid_id(entry) || (state = read_state(entry)) == NULL)
		return NULL;
	json_decref(state);
	return asjob_load(entry);
}

json_t *asjob_list(void)
{
	char *dir = asjob_dir();
	json_t *list = jobs_dir_private(dir) == 0 ? json_dir_load(dir, load_job, by_id) : NULL;

	free(dir);
	return list;
}

int asjob_set_received(const char *id)
{
	json_t *state = read_state(id);
	int rc;

	if (state == NULL)
		return -1;
	json_object_set_new(state, "HasMoreData", json_false());
	rc = write_state(id, state);
	json_decref(state);
	return rc;
}

int asjob_stop(const char *id)
{
	json_t *state = asjob_load(id);
	char *marker;
	int fd;
	pid_t pid;

	if (state == NULL)
		return -1;
	pid = (pid_t)json_integer_value(json_object_get(state, "Pid"));
	json_decref(state);
	if (!asjob_running(id))
		return error("job %s is not running", id);
	marker = asjob_file(id, "stopped");
	fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	free(marker);
	if (fd >= 0)
		close(fd);
	/* The lock is held, so PID is still the job's own process. */
	if (pid <= 0 || kill(pid, SIGTERM) < 0)
		return error("job %s: cannot signal process %d: %s", id, (int)pid,
			     strerror(errno));
	return 0;
}

int asjob_remove(const char *id)
{
	char *dir = asjob_dir();
	char *path = xasprintf("%s/%s", dir, id);
	int rc = remove_dir_files(path);

	free(path);
	free(dir);
	return rc;
}
