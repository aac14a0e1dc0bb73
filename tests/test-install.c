/*
 * test-install.c: qckpt as a host tool: the bash and zsh completions
 * (called the way bash calls them, with COMP_WORDS and COMP_CWORD), what
 * `make install` puts where, and the systemd units passing
 * `systemd-analyze verify`.  Nothing here needs QEMU: the registry,
 * catalog records and job files the completion reads are written by the
 * test in the formats qckpt itself writes.
 *
 *   QCKPT_BIN, QCKPT_TOP_SRCDIR, QCKPT_TOP_BUILDDIR: from make check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/qckpt-install.XXXXXX";
static const char *srcdir, *builddir, *qckpt_bin;

static char *xfmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *xfmt(const char *f, ...)
{
	va_list ap;
	char *s;

	va_start(ap, f);
	assert_true(vasprintf(&s, f, ap) >= 0);
	va_end(ap);
	return s;
}

/* Run CMD with /bin/sh; its stdout (malloc'd) and exit status. */
static char *sh(const char *cmd, int *status)
{
	FILE *p = popen(cmd, "r");
	char *out = NULL;
	size_t cap = 0;
	ssize_t n;
	int st;

	assert_non_null(p);
	n = getdelim(&out, &cap, '\0', p);
	st = pclose(p);
	if (n < 0) {
		free(out);
		out = strdup("");
	}
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return out;
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/*
 * The words the bash completion offers for LINE (the word being completed
 * is the last one; a trailing space starts an empty word), one per line.
 * qckpt is found as the first word, which is $QCKPT_BIN.
 */
static char *complete(const char *line)
{
	char *script = xfmt(
		"cd %s && export QCKPT_JOBS_DIR=%s/jobs QCKPT_REGISTRY=%s/registry && "
		"bash -c 'source %s/scripts/completion/qckpt; "
		"read -ra COMP_WORDS <<<\"$1\"; COMP_WORDS[0]=%s; "
		"case $1 in *\" \") COMP_WORDS+=(\"\");; esac; "
		"COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _qckpt; "
		"printf \"%%s\\n\" \"${COMPREPLY[@]}\" | sort' qckpt '%s'",
		tmpdir, tmpdir, tmpdir, srcdir, qckpt_bin, line);
	int status;
	char *out = sh(script, &status);

	assert_int_equal(status, 0);
	free(script);
	return out;
}

static void assert_offers(const char *line, const char *words)
{
	char *out = complete(line);

	if (strcmp(out, words) != 0)
		fail_msg("completing '%s': got\n%s\nwant\n%s", line, out, words);
	free(out);
}

static void assert_offers_word(const char *line, const char *word)
{
	char *out = complete(line);
	char *needle = xfmt("\n%s\n", word), *hay = xfmt("\n%s", out);

	if (strstr(hay, needle) == NULL)
		fail_msg("completing '%s': '%s' not among\n%s", line, word, out);
	free(needle);
	free(hay);
	free(out);
}

static void test_completion_offers_commands_and_common_options(void **state)
{
	assert_offers("qckpt chec", "checkpoint\n");
	assert_offers_word("qckpt ", "restore");
	assert_offers_word("qckpt ", "stop");
	assert_offers_word("qckpt ", "vms");
	assert_offers("qckpt --verb", "--verbose\n");
	/* common options may stand before the command */
	assert_offers("qckpt -v li", "list\n");
	assert_offers("qckpt help chec", "checkpoint\n");
}

static void test_completion_offers_options_and_their_values(void **state)
{
	assert_offers("qckpt checkpoint --mo", "--mode\n");
	assert_offers("qckpt checkpoint --mode ",
		      "auto\nbackground\ndisk-only\nlive\npaused\nram-file\n");
	assert_offers("qckpt checkpoint --type production",
		      "production\nproduction-only\n");
	assert_offers("qckpt checkpoint --error-action ", "continue\nstop\n");
	assert_offers("qckpt list --t", "--tree\n");
	assert_offers("qckpt stop --tu", "--turn-off\n");
	assert_offers("qckpt export --co", "--compress\n--computer-name\n");
	assert_offers("qckpt restore --fr", "--from\n");
}

static void test_completion_offers_registered_vms(void **state)
{
	assert_offers("qckpt checkpoint ", "db\nweb\n");
	assert_offers("qckpt checkpoint w", "web\n");
	assert_offers("qckpt checkpoint --mode live d", "db\n");
	assert_offers("qckpt list ", "db\nweb\n");
	/* the registry the command line names */
	assert_offers("qckpt --registry other checkpoint ", "lab\n");
	assert_offers("qckpt checkpoint --registry other ", "lab\n");
}

static void test_completion_offers_checkpoints_of_the_vm_typed(void **state)
{
	assert_offers("qckpt restore web ",
		      "1a2b3c4d-0000-4000-8000-000000000001\n"
		      "9f8e7d6c-0000-4000-8000-000000000002\n"
		      "before-upgrade\nnightly\n");
	assert_offers("qckpt restore web ni", "nightly\n");
	assert_offers("qckpt restore web,db 1a", "1a2b3c4d-0000-4000-8000-000000000001\n");
	/* db has none */
	assert_offers("qckpt restore db ", "\n");
	/* rename, pin and export take the checkpoint the same way */
	assert_offers("qckpt rename web ni", "nightly\n");
	assert_offers("qckpt pin web be", "before-upgrade\n");
	assert_offers("qckpt export web 9f", "9f8e7d6c-0000-4000-8000-000000000002\n");
}

static void test_completion_offers_job_ids(void **state)
{
	assert_offers("qckpt job ", "list\nreceive\nremove\nshow\nstop\nwait\n");
	assert_offers("qckpt job show ", "12\n7\n");
}

/*
 * Every long option of every command's getopt table (src/cmd-*.c) is
 * offered by the completion: an option added without its completion fails
 * here.
 */
static void test_completion_knows_every_option_of_every_command(void **state)
{
	char *cmd = xfmt(
		"cd %s/src && for f in cmd-*.c; do c=${f#cmd-}; c=${c%%.c}; "
		"sed -n 's/.*{ \"\\([a-z][a-z-]*\\)\", \\(no\\|required\\)_argument.*/\\1/p' $f | "
		"while read -r o; do echo \"$c --$o\"; done; done", srcdir);
	int status;
	char *out = sh(cmd, &status), *line, *save = NULL;
	int n = 0;

	assert_int_equal(status, 0);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *sp = strchr(line, ' ');
		char *probe;

		*sp = '\0';
		/* `register` and `unregister` share cmd-register.c */
		probe = xfmt("qckpt %s %s", line, sp + 1);
		assert_offers_word(probe, sp + 1);
		free(probe);
		n++;
	}
	assert_true(n > 20);
	free(out);
	free(cmd);
}

static void test_zsh_completion_loads_the_bash_one(void **state)
{
	int status;
	char *out = sh("command -v zsh", &status), *cmd;

	free(out);
	if (status != 0)
		skip(); /* zsh is optional; CI installs it (scripts/install-deps) */
	cmd = xfmt("cd %s && QCKPT_BASH_COMPLETION=%s/scripts/completion/qckpt "
		   "zsh -fc 'autoload -U compinit && compinit -u; "
		   "source %s/scripts/completion/_qckpt 2>&1; "
		   "whence -w _qckpt; print -r -- ${_comps[qckpt]}'",
		   tmpdir, srcdir, builddir);
	out = sh(cmd, &status);
	assert_int_equal(status, 0);
	if (strstr(out, "_qckpt: function") == NULL ||
	    strstr(out, "_bash_complete -F _qckpt") == NULL)
		fail_msg("zsh did not take the completion:\n%s", out);
	free(out);
	free(cmd);
}

/* ---- make install ---------------------------------------------------- */

static char *installed; /* DESTDIR of the install below */

static void test_make_install_puts_everything_in_place(void **state)
{
	static const char *const files[] = {
		"bin/qckpt",
		"share/man/man1/qckpt.1",
		"share/man/man5/qckpt-registry.5",
		"share/bash-completion/completions/qckpt",
		"share/zsh/vendor-completions/_qckpt",
		"lib/systemd/system/qckpt-vm@.service",
		"lib/systemd/system/qckpt-checkpoint@.service",
		"lib/systemd/system/qckpt-checkpoint@.timer",
	};
	char *cmd, *out, *prefix;
	int status;

	installed = xfmt("%s/destdir", tmpdir);
	cmd = xfmt("make -s -C %s install DESTDIR=%s >/dev/null 2>&1 && "
		   "sed -n 's/^prefix = //p' %s/Makefile", builddir, installed, builddir);
	out = sh(cmd, &status);
	assert_int_equal(status, 0);
	out[strcspn(out, "\n")] = '\0';
	prefix = xfmt("%s%s", installed, out);
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		char *path = xfmt("%s/%s", prefix, files[i]);

		if (access(path, R_OK) != 0)
			fail_msg("make install did not install %s", path);
		free(path);
	}
	{
		/* The units run the installed binary. */
		char *unit = xfmt("grep -c '^ExecStart=%s/bin/qckpt run %%i -- ' %s/lib/systemd/system/qckpt-vm@.service",
				  out, prefix);
		free(sh(unit, &status));
		assert_int_equal(status, 0);
		free(unit);
	}
	free(prefix);
	free(out);
	free(cmd);
}

/* The units as installed, with the build's qckpt for the installed path
 * (systemd-analyze checks that ExecStart's binary exists). */
static void test_systemd_units_pass_systemd_analyze_verify(void **state)
{
	char *cmd, *out;
	int status;

	free(sh("command -v systemd-analyze", &status));
	if (status != 0)
		fail_msg("systemd-analyze is missing: install systemd (scripts/install-deps does)");
	cmd = xfmt("set -e; d=%s/units; mkdir -p $d; "
		   "for u in $(find %s -path '*/systemd/system/qckpt-*'); do "
		   "  b=${u##*/}; sed 's|^\\(Exec[A-Za-z]*=\\)[^ ]*/qckpt |\\1%s |' $u >$d/${b%%@*}@web.${b##*.}; "
		   "done; ls $d | wc -l; "
		   "systemd-analyze verify --man=no $d/*.service $d/*.timer 2>&1",
		   tmpdir, installed, qckpt_bin);
	out = sh(cmd, &status);
	if (status != 0 || strncmp(out, "3\n", 2) != 0)
		fail_msg("systemd-analyze verify failed (%d):\n%s", status, out);
	/* verify checks what it can: a unit whose binary is missing fails */
	free(out);
	free(cmd);
	cmd = xfmt("d=%s/units; sed -i 's|^ExecStart=[^ ]*|ExecStart=/nonexistent/qckpt|' $d/qckpt-vm@web.service; "
		   "systemd-analyze verify --man=no $d/qckpt-vm@web.service 2>&1", tmpdir);
	out = sh(cmd, &status);
	assert_int_not_equal(status, 0);
	free(out);
	free(cmd);
}

/* ---- fixtures -------------------------------------------------------- */

static void write_record(const char *vm, const char *id, const char *name,
			 long long epoch_ms)
{
	char *dir = xfmt("%s/catalog/%s/%s", tmpdir, vm, id);
	char *path = xfmt("%s/checkpoint.json", dir);
	char *mk = xfmt("mkdir -p %s", dir);
	char *text = xfmt("{\"Id\": \"%s\", \"Name\": \"%s\", \"VMName\": \"%s\", "
			  "\"CreationTime\": \"2026-12-01T10:00:00.000+00:00\", "
			  "\"CreationEpochMs\": %lld, \"CheckpointType\": \"Standard\", "
			  "\"Path\": \"%s\", \"Disks\": []}\n", id, name, vm, epoch_ms, dir);
	int status;

	free(sh(mk, &status));
	assert_int_equal(status, 0);
	write_text(path, text);
	free(text);
	free(mk);
	free(path);
	free(dir);
}

static void write_job(const char *id)
{
	/* qckpt trusts only a private jobs directory */
	char *mk = xfmt("mkdir -p -m 700 %s/jobs && mkdir -p -m 700 %s/jobs/%s", tmpdir, tmpdir, id);
	char *path = xfmt("%s/jobs/%s/job.json", tmpdir, id);
	char *text = xfmt("{\"Id\": %s, \"Name\": \"Job%s\", \"State\": \"Completed\", "
			  "\"HasMoreData\": false, \"Command\": \"qckpt checkpoint web\"}\n", id, id);
	int status;

	free(sh(mk, &status));
	assert_int_equal(status, 0);
	write_text(path, text);
	free(text);
	free(path);
	free(mk);
}

static int setup(void **state)
{
	char *path, *text;

	srcdir = getenv("QCKPT_TOP_SRCDIR");
	builddir = getenv("QCKPT_TOP_BUILDDIR");
	qckpt_bin = getenv("QCKPT_BIN");
	if (!srcdir || !builddir || !qckpt_bin || mkdtemp(tmpdir) == NULL)
		return -1;
	path = xfmt("%s/registry", tmpdir);
	text = xfmt("web unix:%s/web.qmp dir=%s/catalog\ndb unix:%s/db.qmp dir=%s/catalog\n",
		    tmpdir, tmpdir, tmpdir, tmpdir);
	write_text(path, text);
	free(text);
	free(path);
	path = xfmt("%s/other", tmpdir);
	text = xfmt("lab unix:%s/lab.qmp\n", tmpdir);
	write_text(path, text);
	free(text);
	free(path);
	write_record("web", "1a2b3c4d-0000-4000-8000-000000000001", "nightly", 1000);
	write_record("web", "9f8e7d6c-0000-4000-8000-000000000002", "before-upgrade", 2000);
	write_job("7");
	write_job("12");
	return 0;
}

static int teardown(void **state)
{
	char *cmd;
	int status;

	if (getenv("QCKPT_KEEP_TMP") == NULL) {
		cmd = xfmt("rm -rf %s", tmpdir);
		free(sh(cmd, &status));
		free(cmd);
	}
	free(installed);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_completion_offers_commands_and_common_options),
		cmocka_unit_test(test_completion_offers_options_and_their_values),
		cmocka_unit_test(test_completion_offers_registered_vms),
		cmocka_unit_test(test_completion_offers_checkpoints_of_the_vm_typed),
		cmocka_unit_test(test_completion_offers_job_ids),
		cmocka_unit_test(test_completion_knows_every_option_of_every_command),
		cmocka_unit_test(test_zsh_completion_loads_the_bash_one),
		cmocka_unit_test(test_make_install_puts_everything_in_place),
		cmocka_unit_test(test_systemd_units_pass_systemd_analyze_verify),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
