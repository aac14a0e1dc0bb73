/*
 * testutil.h: what every test of the qckpt program needs besides the QEMU
 * harness: run qckpt or a shell command on the harness loop (so QEMU's
 * output and events keep being read meanwhile), read the JSON objects it
 * printed, format strings.  Failures are cmocka assertions.
 */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <stdbool.h>
#include <jansson.h>
#include <uv.h>

struct run {
	char *out, *err; /* what it printed (malloc'd) */
	int status;      /* exit status, 128 + signal if killed */
};

void run_free(struct run *r);

/* qckpt ($QCKPT_BIN) with the arguments, NULL-terminated. */
struct run qckpt(const char *first, ...) __attribute__((sentinel));
struct run qckpt_argv(char *const *args);

/* /bin/sh -c CMD. */
struct run shell(const char *cmd);

/* `qckpt checkpoint --passthru --mode=MODE VM NAME`, which must succeed
 * with one record, named NAME, of VM; the record (a new reference).  *err
 * gets what qckpt printed on stderr when err is not NULL. */
json_t *checkpoint_ok(const char *vm, const char *mode, const char *name,
		      char **err);

/* The JSON objects printed one per line; any other line fails the test. */
json_t *json_lines(const char *text);

/* A string member, NULL if absent. */
const char *jstr(json_t *o, const char *key);

/* A program (qckpt) running in the background on the harness loop, so the
 * test can act on what QEMU does meanwhile (kill it, interrupt qckpt, make
 * the guest power off): child_start, then harness_run_until(child_done).
 * Its stdout is dropped; its stderr is kept in errbuf. */
struct child {
	uv_process_t proc;
	uv_pipe_t err;
	char errbuf[8192];
	size_t errlen;
	int status; /* exit status, 128 + signal if killed */
	bool exited, err_closed;
};

void child_start(struct child *c, char **argv);
/* The same in a process group of its own, as a shell starts a foreground
 * command: kill(-pid, SIGINT) is then a terminal's Ctrl-C. */
void child_start_own_group(struct child *c, char **argv);
bool child_done(void *arg);

/* For harness_run_until: the child C printed TEXT on stderr, or exited
 * (a test that waits for a line checks c->exited after). */
struct child_said {
	struct child *c;
	const char *text;
};
bool child_said(void *arg);

/* --as-job: the command R (which must have exited 0) printed its job's id:
 * copied into ID (LEN bytes). */
void job_started(const struct run *r, char *id, size_t len);
/* `qckpt job wait --timeout SECONDS ID` says the job Completed. */
void job_wait_completed(const char *id, unsigned seconds);
/* `qckpt job receive ID` gives back exactly one JSON object (the job's
 * --passthru output): it, a new reference. */
json_t *job_received_one(const char *id);

/* A text file's whole content (malloc'd); a missing file fails the test. */
char *read_file(const char *path);

/*
 * A test group's files, for its setup: *registry a new registry file (in
 * the harness's temp dir) holding only "# written by PROGRAM", named by
 * QCKPT_REGISTRY (registry NULL: no file), and *catalog the directory
 * "catalog" there.  What they pointed to is freed first, so a setup may
 * follow a failed one.  0, or -1 after saying why.
 */
int group_files_setup(const char *program, char **registry, char **catalog);
/* For the group's teardown, which cmocka runs after a failed setup too:
 * frees both (either may be NULL) and sets them NULL. */
void group_files_teardown(char **registry, char **catalog);

/* TLS credentials in QEMU's layout under harness_path("tls"): server/,
 * client/, stranger/ (a client of another CA), other/ (trusting only that
 * CA).  The directory (free it), or NULL with the reason on stderr. */
char *tls_make_certs(const char *test);

/* asprintf that fails the test instead of returning NULL. */
char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

#endif
