/*
 * test-cli.c: the command-line contract of the qckpt program that needs no
 * QEMU: command names, common options, exit statuses, refused arguments,
 * numbers, private directories.  It runs the built program ($QCKPT_BIN)
 * with its stdout and stderr in files, so it runs without the test guest.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <jansson.h>

#include "registry.h"
#include "util.h"

/* A run of qckpt that does not end within this is a failure. */
#define CLI_TIMEOUT_S 30

static char tmpdir[] = "/tmp/qckpt-test-cli-XXXXXX";
static char *registry_file;

struct cli {
	int status; /* exit status, 128 + signal */
	char *out, *err;
};

static void cli_free(struct cli *r)
{
	free(r->out);
	free(r->err);
}

static char *slurp(const char *path)
{
	char *text = NULL;

	if (read_whole_file(path, &text) < 0)
		return xstrdup("");
	return text;
}

/* How a run differs: the user it runs as (0: this one) and more
 * environment ("K=V", NULL-terminated), set after the defaults. */
struct cli_as {
	uid_t uid;
	char *const *env;
};

/* qckpt ARGS with stdout to STDOUT_PATH (NULL: a file read back), in the
 * test's registry. */
static struct cli run_as(const struct cli_as *as, const char *stdout_path, char *const *args)
{
	char *out = xasprintf("%s/out", tmpdir), *err = xasprintf("%s/err", tmpdir);
	char *argv[64];
	struct cli r = { 0 };
	pid_t pid;
	int n = 0, st;

	argv[n++] = getenv("QCKPT_BIN");
	for (; args[n - 1] != NULL && n < 62; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int o = open(stdout_path ? stdout_path : out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(99);
		setenv("QCKPT_REGISTRY", registry_file, 1);
		for (char *const *kv = as ? as->env : NULL; kv && *kv; kv++)
			putenv(*kv);
		if (as && as->uid && (setgroups(0, NULL) < 0 || setgid(as->uid) < 0 || setuid(as->uid) < 0))
			_exit(97);
		execv(argv[0], argv);
		_exit(98);
	}
	/* The watchdog: a hung qckpt kills this test, never waits forever. */
	alarm(CLI_TIMEOUT_S);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	alarm(0);
	r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	r.out = stdout_path ? xstrdup("") : slurp(out);
	r.err = slurp(err);
	free(out);
	free(err);
	return r;
}

static struct cli run_to(const char *stdout_path, char *const *args)
{
	return run_as(NULL, stdout_path, args);
}

#define cli(...) run_to(NULL, (char *const[]){ __VA_ARGS__, NULL })

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* Exit status STATUS and exactly one line on stderr containing WHAT. */
static void assert_one_line(struct cli *r, int status, const char *what)
{
	if (r->status != status || strstr(r->err, what) == NULL || count_lines(r->err) != 1)
		fail_msg("expected status %d and one line with '%s', got %d: %s", status, what,
			 r->status, r->err);
}

static void write_registry(const char *text)
{
	assert_int_equal(write_file_atomic(registry_file, text, strlen(text), 0644), 0);
}

/* ---- command names and common options ------------------------------------ */

static void test_only_exact_command_names_and_aliases_are_commands(void **state)
{
	struct cli r;

	(void)state;
	write_registry("");
	r = cli("re");
	assert_one_line(&r, 2, "unknown command 're'");
	cli_free(&r);
	r = cli("li");
	assert_one_line(&r, 2, "unknown command 'li'");
	cli_free(&r);
	r = cli("snapshots"); /* list's documented alias */
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "VMName"));
	cli_free(&r);
}

static void test_common_options_are_taken_before_the_command(void **state)
{
	char *other = xasprintf("%s/other-registry", tmpdir);
	struct cli r;
	FILE *f;

	(void)state;
	write_registry("web unix:/nonexistent/web.qmp\n");
	r = cli("-v", "list");
	assert_int_equal(r.status, 0);
	cli_free(&r);
	r = cli("-q", "--debug", "list", "web");
	assert_int_equal(r.status, 0);
	cli_free(&r);
	/* --registry before the command is the file that is read */
	f = fopen(other, "w");
	assert_non_null(f);
	fputs("bad line here\n", f);
	fclose(f);
	r = cli("--registry", other, "list");
	assert_one_line(&r, 2, "other-registry:1:");
	cli_free(&r);
	{
		char *opt = xasprintf("--registry=%s", other);

		r = run_to(NULL, (char *const[]){ opt, "list", NULL });
		assert_one_line(&r, 2, "other-registry:1:");
		cli_free(&r);
		free(opt);
	}
	r = cli("-x", "list");
	assert_one_line(&r, 2, "unknown option '-x' before the command");
	cli_free(&r);
	r = cli("--version");
	assert_int_equal(r.status, 0);
	assert_int_equal(strncmp(r.out, "qckpt ", 6), 0);
	cli_free(&r);
	free(other);
}

static void test_every_command_help_exits_0_and_help_of_a_bogus_command_exits_2(void **state)
{
	const char *cmds[] = { "checkpoint", "disks", "job", "list", "qmp", "register", "run",
			       "unregister", "vms", "snapshots", "remove", "prune", NULL };
	struct cli r;

	(void)state;
	write_registry("");
	for (size_t i = 0; cmds[i]; i++) {
		char *want = xasprintf("usage: qckpt ");

		r = cli((char *)cmds[i], "--help");
		if (r.status != 0 || strncmp(r.out, want, strlen(want)) != 0)
			fail_msg("qckpt %s --help: status %d, printed '%s' '%s'", cmds[i], r.status, r.out, r.err);
		cli_free(&r);
		r = cli((char *)cmds[i], "-h");
		if (r.status != 0 || strncmp(r.out, want, strlen(want)) != 0)
			fail_msg("qckpt %s -h: status %d, printed '%s' '%s'", cmds[i], r.status, r.out, r.err);
		cli_free(&r);
		r = cli("help", (char *)cmds[i]);
		assert_int_equal(r.status, 0);
		cli_free(&r);
		free(want);
	}
	r = cli("help");
	assert_int_equal(r.status, 0);
	cli_free(&r);
	r = cli("-h", "job");
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "usage: qckpt job"));
	cli_free(&r);
	r = cli("help", "bogus");
	assert_one_line(&r, 2, "unknown command 'bogus'");
	cli_free(&r);
	r = cli("job");
	assert_int_equal(r.status, 2);
	cli_free(&r);
}

static void test_a_failed_write_to_stdout_exits_1_with_one_line(void **state)
{
	struct cli r;

	(void)state;
	if (access("/dev/full", W_OK) != 0)
		skip();
	write_registry("");
	r = run_to("/dev/full", (char *const[]){ "list", NULL });
	assert_one_line(&r, 1, "cannot write to standard output");
	cli_free(&r);
	r = run_to("/dev/full", (char *const[]){ "help", NULL });
	assert_one_line(&r, 1, "cannot write to standard output");
	cli_free(&r);
	/* --json flushes every object: the first failed flush is the cause */
	{
		char *dir = xasprintf("%s/cat/web/c1", tmpdir), *rec = xasprintf("%s/checkpoint.json", dir);
		char *reg = xasprintf("web unix:/nonexistent/web.qmp dir=%s/cat\n", tmpdir);
		const char *text = "{\"Id\":\"c1\",\"Name\":\"n1\",\"VMName\":\"web\",\"CreationEpochMs\":1}\n";

		assert_int_equal(mkdir_p(dir, 0700), 0);
		assert_int_equal(write_file_atomic(rec, text, strlen(text), 0600), 0);
		write_registry(reg);
		r = cli("list", "--json", "web");
		assert_int_equal(r.status, 0);
		assert_non_null(strstr(r.out, "\"Name\":\"n1\""));
		cli_free(&r);
		r = run_to("/dev/full", (char *const[]){ "list", "--json", "web", NULL });
		assert_one_line(&r, 1, "cannot write to standard output: No space left on device");
		cli_free(&r);
		free(reg);
		free(rec);
		free(dir);
	}
}

/* ---- arguments ------------------------------------------------------------- */

static void test_list_and_disks_refuse_names_that_are_not_vm_names(void **state)
{
	const char *bad[] = { "../../x", "a/b", ".hidden", "-", "x y", NULL };
	struct cli r;

	(void)state;
	write_registry("");
	for (size_t i = 0; bad[i]; i++) {
		r = cli("list", "--", (char *)bad[i]);
		assert_one_line(&r, 2, "is not a VM name");
		cli_free(&r);
		r = cli("disks", "--", (char *)bad[i]);
		assert_one_line(&r, 2, "is not a VM name");
		cli_free(&r);
	}
}

static void test_numbers_are_refused_when_huge_negative_or_not_numbers(void **state)
{
	const char *bad_seconds[] = { "1e30", "nan", "inf", "-inf", "-1", "0", "abc", "5s", " 5",
				      "99999999999999999999999999999999", "0x10", "", NULL };
	const char *bad_counts[] = { "99999999999999999999", "-1", "0", "1025", "1e3", "abc", "2.5",
				     "", " 4", "4 ", NULL };
	struct cli r;

	(void)state;
	write_registry("web unix:/nonexistent/web.qmp\n");
	for (size_t i = 0; bad_seconds[i]; i++) {
		r = cli("job", "wait", "--timeout", (char *)bad_seconds[i], "1");
		assert_one_line(&r, 2, "--timeout");
		cli_free(&r);
		r = cli("vms", "--timeout", (char *)bad_seconds[i]);
		assert_one_line(&r, 2, "--timeout");
		cli_free(&r);
	}
	for (size_t i = 0; bad_counts[i]; i++) {
		r = cli("checkpoint", "--throttle-limit", (char *)bad_counts[i], "web");
		assert_one_line(&r, 2, "--throttle-limit");
		cli_free(&r);
	}
}

static void test_parse_long_and_parse_double_check_before_converting(void **state)
{
	long l = 7;
	double d = 7;

	(void)state;
	assert_int_equal(parse_long("42", 1, 100, &l), 0);
	assert_int_equal(l, 42);
	assert_int_equal(parse_long("-5", -10, 10, &l), 0);
	assert_int_equal(l, -5);
	assert_int_equal(parse_long("+3", 0, 10, &l), 0);
	assert_int_equal(l, 3);
	assert_int_equal(parse_long("9223372036854775807", 0, LONG_MAX, &l), 0);
	assert_true(l == LONG_MAX);
	assert_int_equal(parse_long("-9223372036854775808", LONG_MIN, 0, &l), 0);
	assert_true(l == LONG_MIN);
	l = 7;
	assert_int_equal(parse_long("9223372036854775808", 0, LONG_MAX, &l), -ERANGE);
	assert_int_equal(parse_long("-9223372036854775809", LONG_MIN, 0, &l), -ERANGE);
	assert_int_equal(parse_long("99999999999999999999999", 1, 10, &l), -ERANGE);
	assert_int_equal(parse_long("11", 1, 10, &l), -ERANGE);
	assert_int_equal(parse_long("-1", 1, 10, &l), -ERANGE);
	assert_int_equal(parse_long("1e3", 1, 10000, &l), -EINVAL);
	assert_int_equal(parse_long("", 1, 10, &l), -EINVAL);
	assert_int_equal(parse_long("-", 1, 10, &l), -EINVAL);
	assert_int_equal(parse_long(" 5", 1, 10, &l), -EINVAL);
	assert_int_equal(parse_long("5 ", 1, 10, &l), -EINVAL);
	assert_int_equal(parse_long("0x5", 1, 10, &l), -EINVAL);
	assert_int_equal(parse_long("99999999999999999999x", 1, 10, &l), -EINVAL);
	assert_int_equal(l, 7); /* untouched on error */

	assert_int_equal(parse_double("0.5", 0, 10, &d), 0);
	assert_true(d == 0.5);
	assert_int_equal(parse_double("3600", 0, 3600, &d), 0);
	assert_true(d == 3600);
	d = 7;
	assert_int_equal(parse_double("3600.1", 0, 3600, &d), -ERANGE);
	assert_int_equal(parse_double("-1", 0, 10, &d), -ERANGE);
	assert_int_equal(parse_double("1e30", 0, 10, &d), -EINVAL);
	assert_int_equal(parse_double("nan", 0, 10, &d), -EINVAL);
	assert_int_equal(parse_double("inf", 0, 10, &d), -EINVAL);
	assert_int_equal(parse_double("infinity", 0, 10, &d), -EINVAL);
	assert_int_equal(parse_double("0x1p3", 0, 10, &d), -EINVAL);
	assert_int_equal(parse_double("1.2.3", 0, 10, &d), -EINVAL);
	assert_int_equal(parse_double("", 0, 10, &d), -EINVAL);
	assert_int_equal(parse_double(".", 0, 10, &d), -EINVAL);
	assert_int_equal(parse_double("1-", 0, 10, &d), -EINVAL);
	assert_int_equal(parse_double(" 1", 0, 10, &d), -EINVAL);
	{
		char huge[400];

		memset(huge, '9', sizeof huge - 1);
		huge[sizeof huge - 1] = '\0';
		assert_int_equal(parse_double(huge, 0, 1e9, &d), -ERANGE);
	}
	assert_true(d == 7);
}

static void test_run_has_no_dash_n_and_refuses_blanks_in_registry_values(void **state)
{
	const char *bad[] = { "/x\nevil unix:/tmp/evil.qmp", "/with space", "/tab\there", NULL };
	const char *opts[] = { "--dir", "--overlay-dir", "--monitor", NULL };
	char *before;
	struct cli r;

	(void)state;
	write_registry("# kept\n");
	/* -n is --name in checkpoint; run has only --dry-run */
	r = cli("run", "-n", "vm1", "--", "/bin/true");
	assert_int_equal(r.status, 2);
	cli_free(&r);
	before = slurp(registry_file);
	for (size_t o = 0; opts[o]; o++)
		for (size_t i = 0; bad[i]; i++) {
			r = cli("run", (char *)opts[o], (char *)bad[i], "vm1", "--", "/bin/true");
			assert_one_line(&r, 2, "blanks or control characters");
			cli_free(&r);
		}
	{
		char *after = slurp(registry_file);

		assert_string_equal(after, before);
		free(after);
	}
	free(before);
}

static void test_checkpoint_second_word_that_is_a_vm_warns_naming_both_readings(void **state)
{
	struct cli r;

	(void)state;
	write_registry("web unix:/nonexistent/web.qmp\ndb unix:/nonexistent/db.qmp\n");
	r = cli("checkpoint", "--whatif", "web", "db");
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.err, "db is also a registered VM: naming web's checkpoint 'db'; to checkpoint both use web,db"));
	assert_int_equal(count_lines(r.err), 1);
	assert_non_null(strstr(r.out, "target \"web\""));
	assert_null(strstr(r.out, "target \"db\""));
	cli_free(&r);
	/* -s names the checkpoint explicitly: nothing to warn about */
	r = cli("checkpoint", "--whatif", "web", "-s", "db");
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, "");
	cli_free(&r);
	r = cli("checkpoint", "--whatif", "web", "nightly");
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, "");
	cli_free(&r);
}

static void test_register_takes_agent_in_the_forms_of_the_monitor(void **state)
{
	struct cli r;
	char *text;

	(void)state;
	write_registry("");
	r = cli("register", "--no-check", "a1", "unix:/run/a1.qmp", "agent=unix:/run/a1-ga.sock");
	assert_int_equal(r.status, 0);
	cli_free(&r);
	r = cli("register", "--no-check", "a2", "/run/a2.qmp", "agent=/run/a2-ga.sock");
	assert_int_equal(r.status, 0);
	cli_free(&r);
	r = cli("register", "--no-check", "a3", "tcp:localhost:4444", "agent=tcp:localhost:4445");
	assert_int_equal(r.status, 0);
	cli_free(&r);
	r = cli("register", "--no-check", "a4", "/run/a4.qmp", "agent=unix:relative");
	assert_one_line(&r, 2, "agent must be unix:PATH");
	cli_free(&r);
	text = slurp(registry_file);
	assert_non_null(strstr(text, "a1 unix:/run/a1.qmp agent=unix:/run/a1-ga.sock\n"));
	assert_null(strstr(text, "a4"));
	free(text);
	r = cli("list", "a1");
	assert_int_equal(r.status, 0);
	cli_free(&r);
}

/* ---- private directories --------------------------------------------------- */

static void test_private_dir_is_created_0700_and_accepted_again(void **state)
{
	char *dir = xasprintf("%s/p1/sub", tmpdir), why[512];
	struct stat st;

	(void)state;
	umask(022);
	assert_int_equal(private_dir(dir, why, sizeof why), 0);
	assert_int_equal(lstat(dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(private_dir(dir, why, sizeof why), 0);
	free(dir);
}

static void test_private_dir_refuses_another_owner_a_symlink_and_mode_0777(void **state)
{
	char *mode = xasprintf("%s/open", tmpdir), *link = xasprintf("%s/link", tmpdir);
	char *target = xasprintf("%s/target", tmpdir), *other = xasprintf("%s/others", tmpdir);
	char *parent = xasprintf("%s/shared", tmpdir), *child = xasprintf("%s/shared/mine", tmpdir);
	char why[512];

	(void)state;
	assert_int_equal(mkdir(mode, 0700), 0);
	assert_int_equal(chmod(mode, 0777), 0);
	assert_int_equal(private_dir(mode, why, sizeof why), -1);
	assert_non_null(strstr(why, "mode 0777"));

	assert_int_equal(mkdir(target, 0700), 0);
	assert_int_equal(symlink(target, link), 0);
	assert_int_equal(private_dir(link, why, sizeof why), -1);
	assert_non_null(strstr(why, "symbolic link"));

	/* A parent others can write to (not sticky): they could swap ours. */
	assert_int_equal(mkdir(parent, 0700), 0);
	assert_int_equal(chmod(parent, 0777), 0);
	assert_int_equal(private_dir(child, why, sizeof why), -1);
	assert_non_null(strstr(why, "can be changed"));

	/* Tests run as root in CI: a directory given to nobody, and a
	 * parent that is nobody's symlink to a directory of ours. */
	if (geteuid() == 0) {
		char *via = xasprintf("%s/via", tmpdir), *below = xasprintf("%s/via/mine", tmpdir);

		assert_int_equal(mkdir(other, 0700), 0);
		assert_int_equal(chown(other, 65534, 65534), 0);
		assert_int_equal(private_dir(other, why, sizeof why), -1);
		assert_non_null(strstr(why, "owned by uid 65534"));
		assert_int_equal(symlink(target, via), 0);
		assert_int_equal(lchown(via, 65534, 65534), 0);
		assert_int_equal(private_dir(below, why, sizeof why), -1);
		assert_non_null(strstr(why, "symbolic link of uid 65534"));
		free(via);
		free(below);
	}
	free(mode);
	free(link);
	free(target);
	free(other);
	free(parent);
	free(child);
}

static void test_jobs_dir_of_another_user_is_refused(void **state)
{
	char *jobs = xasprintf("%s/jobs-open", tmpdir);
	struct cli r;

	(void)state;
	write_registry("");
	assert_int_equal(mkdir(jobs, 0700), 0);
	assert_int_equal(chmod(jobs, 0777), 0);
	setenv("QCKPT_JOBS_DIR", jobs, 1);
	r = cli("job", "list");
	assert_one_line(&r, 2, "jobs directory:");
	cli_free(&r);
	r = cli("job", "show", "1");
	assert_one_line(&r, 1, "jobs directory:");
	cli_free(&r);
	unsetenv("QCKPT_JOBS_DIR");
	free(jobs);
}

/*
 * qckpt run's default socket directory ($XDG_RUNTIME_DIR/qckpt for a user)
 * is checked as the jobs directory is.  Run as nobody, since root's is
 * /run/qckpt, which a test must not touch.
 */
static void test_run_refuses_a_default_socket_dir_that_is_not_private(void **state)
{
	char *home = xasprintf("%s/nobody", tmpdir);
	char *runtime, *sockdir, *env_runtime, *env_data, *env_config, *env_registry, *cmd;
	struct cli r;

	(void)state;
	if (geteuid() != 0)
		skip(); /* needs to become another user; CI runs as root */
	/* nobody must get through the test's directory to its own */
	assert_int_equal(chmod(tmpdir, 0711), 0);
	assert_int_equal(mkdir(home, 0700), 0);
	runtime = xasprintf("%s/runtime", home);
	sockdir = xasprintf("%s/qckpt", runtime);
	env_runtime = xasprintf("XDG_RUNTIME_DIR=%s", runtime);
	env_data = xasprintf("XDG_DATA_HOME=%s/data", home);
	env_config = xasprintf("XDG_CONFIG_HOME=%s/config", home);
	env_registry = xasprintf("QCKPT_REGISTRY=%s/registry", home);
	assert_int_equal(mkdir(runtime, 0700), 0);
	assert_int_equal(mkdir(sockdir, 0700), 0);
	assert_int_equal(chmod(sockdir, 0777), 0);
	assert_int_equal(chown(home, 65534, 65534), 0);
	assert_int_equal(chown(runtime, 65534, 65534), 0);
	assert_int_equal(chown(sockdir, 65534, 65534), 0);
	{
		char *const env[] = { env_runtime, env_data, env_config, env_registry, NULL };
		struct cli_as nobody = { 65534, env };
		char *const args[] = { "run", "vm1", "--", "/bin/true", NULL };
		struct stat st;

		r = run_as(&nobody, NULL, args);
		assert_one_line(&r, 2, "cannot put the QMP socket in");
		assert_non_null(strstr(r.err, "has mode 0777"));
		cli_free(&r);
		/* made private: qckpt goes on and execs the command (true) */
		assert_int_equal(rmdir(sockdir), 0);
		r = run_as(&nobody, NULL, args);
		if (r.status != 0)
			fail_msg("run as nobody failed (%d): %s", r.status, r.err);
		cli_free(&r);
		assert_int_equal(lstat(sockdir, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0700);
		assert_int_equal(st.st_uid, 65534);
	}
	cmd = xasprintf("rm -rf '%s'", home);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(chmod(tmpdir, 0700), 0);
	free(cmd);
	free(home);
	free(env_runtime);
	free(env_data);
	free(env_config);
	free(env_registry);
	free(sockdir);
	free(runtime);
}

static void test_atomic_writes_use_fresh_temp_files_and_leave_none(void **state)
{
	char *path = xasprintf("%s/atomic/file.json", tmpdir), *dir = xasprintf("%s/atomic", tmpdir);
	char *tmp = NULL, *text;
	struct stat st;
	int fd, fd2;
	char *tmp2 = NULL;

	(void)state;
	assert_int_equal(mkdir(dir, 0700), 0);
	umask(022);
	assert_int_equal(write_file_atomic(path, "{}\n", 3, 0640), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	text = slurp(path);
	assert_string_equal(text, "{}\n");
	free(text);
	/* Two temp files beside one path never share a name. */
	fd = open_temp_beside(path, 0600, &tmp);
	fd2 = open_temp_beside(path, 0600, &tmp2);
	assert_true(fd >= 0 && fd2 >= 0);
	assert_string_not_equal(tmp, tmp2);
	assert_int_equal(strncmp(tmp, path, strlen(path)), 0);
	close(fd);
	close(fd2);
	unlink(tmp);
	unlink(tmp2);
	free(tmp);
	free(tmp2);
	/* Nothing but the file is left in the directory. */
	assert_int_equal(rmdir(dir) < 0 ? errno : 0, ENOTEMPTY);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
	free(path);
	free(dir);
}

/* ---- list: the tree, Now and Current -------------------------------- */

/* A record as `qckpt checkpoint` writes it (the fields list reads). */
static void write_record(const char *root, const char *id, const char *name,
			 const char *parent, int n)
{
	char *dir = xasprintf("%s/tree/%s", root, id);
	char *text = xasprintf(
		"{\"Id\": \"%s\", \"Name\": \"%s\", \"VMName\": \"tree\", "
		"\"CreationTime\": \"2026-12-01T10:00:0%d.000+00:00\", \"CreationEpochMs\": %d, "
		"\"CheckpointType\": \"Standard\", \"ParentCheckpointId\": %s%s%s, "
		"\"Path\": \"%s\", \"Disks\": [], \"Mode\": \"paused\", \"PauseMs\": 0}\n",
		id, name, n, 1000 + n, parent ? "\"" : "", parent ? parent : "null",
		parent ? "\"" : "", dir);
	char *path = xasprintf("%s/checkpoint.json", dir);

	assert_int_equal(mkdir_p(dir, 0700), 0);
	assert_int_equal(write_file_atomic(path, text, strlen(text), 0600), 0);
	free(path);
	free(text);
	free(dir);
}

/* The VM tree: A, its children B and C (a branch after a restore of A),
 * D under C; the VM now runs on what grew from B. */
static char *tree_fixture(void)
{
	char *root = xasprintf("%s/tree-catalog", tmpdir);
	char *vmjson = xasprintf("%s/tree/vm.json", root);
	const char *state = "{\"Name\": \"tree\", \"Disks\": [], "
			    "\"CurrentCheckpointId\": \"bbbbbbbb-0000-4000-8000-000000000002\"}\n";
	static int registered;

	if (!registered++) {
		FILE *f = fopen(registry_file, "a");

		assert_non_null(f);
		fprintf(f, "tree unix:%s/tree.qmp dir=%s\n", tmpdir, root);
		fclose(f);
	}
	write_record(root, "aaaaaaaa-0000-4000-8000-000000000001", "A", NULL, 1);
	write_record(root, "bbbbbbbb-0000-4000-8000-000000000002", "B",
		     "aaaaaaaa-0000-4000-8000-000000000001", 2);
	write_record(root, "cccccccc-0000-4000-8000-000000000003", "C",
		     "aaaaaaaa-0000-4000-8000-000000000001", 3);
	write_record(root, "dddddddd-0000-4000-8000-000000000004", "D",
		     "cccccccc-0000-4000-8000-000000000003", 4);
	assert_int_equal(write_file_atomic(vmjson, state, strlen(state), 0600), 0);
	free(vmjson);
	return root;
}

/* The Name column of each line of a tree table (where the header's
 * "Name" starts), the header left out. */
static void assert_tree(const char *out, const char *const *names)
{
	const char *line = strchr(out, '\n');
	size_t at = (size_t)(strstr(out, " Name") + 1 - out);

	for (; *names; names++) {
		assert_non_null(line);
		line++;
		if (strcspn(line, "\n") < at + strlen(*names) ||
		    strncmp(line + at, *names, strlen(*names)) != 0)
			fail_msg("tree line '%.*s' does not show '%s'\nall:\n%s",
				 (int)strcspn(line, "\n"), line, *names, out);
		line = strchr(line, '\n');
	}
}

static void test_list_tree_draws_branches_and_now_and_json_says_current(void **state)
{
	static const char *const ascii[] = { "A ", "|-- B ", "|   `-- Now", "`-- C ",
					     "    `-- D ", NULL };
	char *root = tree_fixture();
	struct cli r = cli("list", "--tree", "tree");
	json_error_t jerr;
	int current = 0;

	if (r.status != 0)
		fail_msg("list --tree: %d: %s", r.status, r.err);
	/* not a terminal: ASCII */
	assert_tree(r.out, ascii);
	cli_free(&r);
	r = cli("list", "--json", "tree");
	assert_int_equal(r.status, 0);
	for (char *line = r.out; *line; line = strchr(line, '\n') + 1) {
		json_t *o = json_loadb(line, strcspn(line, "\n"), 0, &jerr);

		assert_non_null(o);
		assert_true(json_is_boolean(json_object_get(o, "Current")));
		assert_non_null(json_object_get(o, "ParentCheckpointId"));
		if (json_is_true(json_object_get(o, "Current"))) {
			current++;
			assert_string_equal(json_string_value(json_object_get(o, "Name")), "B");
		}
		json_decref(o);
	}
	assert_int_equal(current, 1);
	cli_free(&r);
	free(root);
}

/* On a UTF-8 terminal (a pty from script(1)) the tree has box-drawing lines. */
static void test_list_tree_on_a_utf8_terminal_draws_box_lines(void **state)
{
	char *root = tree_fixture();
	char *cmd = xasprintf("QCKPT_REGISTRY='%s' LANG=C.UTF-8 LC_ALL=C.UTF-8 "
			      "script -qec \"'%s' list --tree tree\" /dev/null",
			      registry_file, getenv("QCKPT_BIN"));
	FILE *p = popen(cmd, "r");
	char *out = NULL;
	size_t cap = 0;

	assert_non_null(p);
	assert_true(getdelim(&out, &cap, '\0', p) > 0);
	assert_int_equal(pclose(p), 0);
	if (strstr(out, "\u251c\u2500 B") == NULL || strstr(out, "\u2502  \u2514\u2500 Now") == NULL ||
	    strstr(out, "\u2514\u2500 C") == NULL)
		fail_msg("no box-drawing tree on a terminal:\n%s", out);
	free(out);
	free(cmd);
	free(root);
}

static int setup(void **state)
{
	(void)state;
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	registry_file = xasprintf("%s/registry", tmpdir);
	/* Nothing the program does may land outside the temporary directory. */
	setenv("XDG_CONFIG_HOME", tmpdir, 1);
	setenv("XDG_DATA_HOME", tmpdir, 1);
	unsetenv("QCKPT_JOBS_DIR");
	return 0;
}

static int teardown(void **state)
{
	char *cmd = xasprintf("rm -rf '%s'", tmpdir);
	int rc;

	(void)state;
	rc = system(cmd);
	free(cmd);
	free(registry_file);
	return rc == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_only_exact_command_names_and_aliases_are_commands),
		cmocka_unit_test(test_common_options_are_taken_before_the_command),
		cmocka_unit_test(test_every_command_help_exits_0_and_help_of_a_bogus_command_exits_2),
		cmocka_unit_test(test_a_failed_write_to_stdout_exits_1_with_one_line),
		cmocka_unit_test(test_list_and_disks_refuse_names_that_are_not_vm_names),
		cmocka_unit_test(test_numbers_are_refused_when_huge_negative_or_not_numbers),
		cmocka_unit_test(test_parse_long_and_parse_double_check_before_converting),
		cmocka_unit_test(test_run_has_no_dash_n_and_refuses_blanks_in_registry_values),
		cmocka_unit_test(test_checkpoint_second_word_that_is_a_vm_warns_naming_both_readings),
		cmocka_unit_test(test_register_takes_agent_in_the_forms_of_the_monitor),
		cmocka_unit_test(test_private_dir_is_created_0700_and_accepted_again),
		cmocka_unit_test(test_private_dir_refuses_another_owner_a_symlink_and_mode_0777),
		cmocka_unit_test(test_jobs_dir_of_another_user_is_refused),
		cmocka_unit_test(test_run_refuses_a_default_socket_dir_that_is_not_private),
		cmocka_unit_test(test_atomic_writes_use_fresh_temp_files_and_leave_none),
		cmocka_unit_test(test_list_tree_draws_branches_and_now_and_json_says_current),
		cmocka_unit_test(test_list_tree_on_a_utf8_terminal_draws_box_lines),
	};

	if (getenv("QCKPT_BIN") == NULL || access(getenv("QCKPT_BIN"), X_OK) != 0) {
		fprintf(stderr, "QCKPT_BIN not set: run through make check\n");
		return 77;
	}
	if (getenv("QCKPT_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("QCKPT_TEST_FILTER"));
	return cmocka_run_group_tests_name("qckpt's command line", tests, setup, teardown) ? 1 : 0;
}
