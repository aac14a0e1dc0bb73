/*
 * cmd.c: the table of subcommands and the dispatch from argv to one of them.
 * Adding a command means one file and one line in cmd_table.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asjob.h"
#include "cmd.h"
#include "log.h"
#include "output.h"
#include "remote.h"

static const struct cmd_entry *cmd_table[] = {
	&cmd_checkpoint_entry,
	&cmd_disks_entry,
	&cmd_export_entry,
	&cmd_hello_entry,
	&cmd_job_entry,
	&cmd_list_entry,
	&cmd_pin_entry,
	&cmd_prune_entry,
	&cmd_qmp_entry,
	&cmd_register_entry,
	&cmd_remove_entry,
	&cmd_rename_entry,
	&cmd_restore_entry,
	&cmd_run_entry,
	&cmd_session_entry,
	&cmd_stop_entry,
	&cmd_unpin_entry,
	&cmd_unregister_entry,
	&cmd_vms_entry,
	NULL,
};

const char *cmd_registry_path;

int cmd_confirm(const char *operation, const char *vm, const char *detail, int *all)
{
	FILE *tty;
	char answer[32];

	if (*all)
		return *all > 0;
	if ((tty = fopen("/dev/tty", "r+")) == NULL) {
		error_vm(vm, "--confirm needs a terminal to ask on; run without --confirm (or with --whatif) in scripts");
		return -1;
	}
	fprintf(tty, "Confirm\nAre you sure you want to perform this action?\n"
		"Performing the operation \"%s\" on target \"%s\"", operation, vm);
	if (detail != NULL)
		fprintf(tty, " (checkpoint \"%s\")", detail);
	fprintf(tty, ".\n[Y] Yes  [A] Yes to All  [N] No  [L] No to All  (default is \"Y\"): ");
	fflush(tty);
	if (fgets(answer, sizeof answer, tty) == NULL)
		answer[0] = 'n';
	fclose(tty);
	switch (answer[0]) {
	case 'a': case 'A':
		*all = 1;
		return 1;
	case 'l': case 'L':
		*all = -1;
		return 0;
	case 'n': case 'N':
		return 0;
	default:
		return 1;
	}
}

int cmd_usage(const struct cmd_entry *entry)
{
	fprintf(stderr, "usage: qckpt %s %s\n", entry->name, entry->usage);
	return EXIT_USAGE;
}

int cmd_common_option(const struct cmd_entry *entry, int opt,
		      const char *arg)
{
	switch (opt) {
	case 'v':
		log_verbose = 1;
		return 1;
	case 'q':
		log_quiet = 1;
		return 1;
	case OPT_DEBUG:
		log_debug = 1;
		return 1;
	case OPT_REGISTRY:
		cmd_registry_path = arg;
		return 1;
	case 'h':
		printf("usage: qckpt %s %s\n%s\nSee qckpt(1) for every option.\n",
		       entry->name, entry->usage, entry->summary);
		return -1;
	}
	return 0;
}

int cmd_getopt(const struct cmd_entry *entry, int argc, char **argv,
	       const char *shortopts, const struct option *longopts)
{
	int opt;

	while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		int common = cmd_common_option(entry, opt, optarg);

		if (common < 0)
			return CMD_OPT_HELP;
		if (common == 0)
			return opt;
	}
	return -1;
}

/*
 * The exact name or a documented alias only: a unique prefix would change
 * meaning when a command is added ("re" was register until restore came),
 * and scripts must not break then.
 */
const struct cmd_entry *cmd_find(const char *name)
{
	for (int i = 0; cmd_table[i] != NULL; i++) {
		const struct cmd_entry *e = cmd_table[i];

		if (strcmp(e->name, name) == 0 ||
		    (e->alias && strcmp(e->alias, name) == 0))
			return e;
	}
	error("unknown command '%s'; run 'qckpt help' for the list", name);
	return NULL;
}

static void cmd_print_help(void)
{
	printf("usage: qckpt COMMAND [ARGUMENTS]\n\ncommands:\n");
	for (int i = 0; cmd_table[i] != NULL; i++) {
		const struct cmd_entry *e = cmd_table[i];

		if (e->flags & CMD_F_HIDDEN)
			continue;
		printf("  %-12s %s%s%s%s\n", e->name, e->summary, e->alias ? " (alias: " : "",
		       e->alias ? e->alias : "", e->alias ? ")" : "");
	}
	printf("\nqckpt COMMAND --help shows a command's usage; qckpt(1) has everything.\n");
}

/*
 * The common options given before the command (qckpt -v checkpoint web), as
 * git and tmux take them.  Index of the command word, or -1 after printing
 * why not.  *help is set by -h/--help, *version by --version.
 */
static const char *remote_input; /* --remote-input=BYTES (hidden: remote.c's) */

static int leading_options(int argc, char **argv, int *help, int *version)
{
	int i;

	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--") == 0)
			return i + 1;
		if (strcmp(a, "--verbose") == 0)
			log_verbose = 1;
		else if (strcmp(a, "--quiet") == 0)
			log_quiet = 1;
		else if (strcmp(a, "--debug") == 0)
			log_debug = 1;
		else if (strcmp(a, "--help") == 0)
			*help = 1;
		else if (strcmp(a, "--version") == 0)
			*version = 1;
		else if (strncmp(a, "--registry=", 11) == 0 && a[11] != '\0')
			cmd_registry_path = a + 11;
		else if (strcmp(a, "--registry") == 0 && i + 1 < argc)
			cmd_registry_path = argv[++i];
		else if (strncmp(a, "--registry", 10) == 0)
			return error("--registry needs a FILE; see 'qckpt help'");
		else if (strncmp(a, "--remote-input=", 15) == 0)
			remote_input = a + 15;
		else if (a[1] != '-' && a[strspn(a + 1, "vqh") + 1] == '\0')
			for (const char *p = a + 1; *p; p++) {
				log_verbose |= *p == 'v';
				log_quiet |= *p == 'q';
				*help |= *p == 'h';
			}
		else
			return error("unknown option '%s' before the command (common options: -v, -q, -h, --debug, --registry FILE, --version); see 'qckpt help'",
				     a);
	}
	return i;
}

/* What the command printed must have reached stdout: a full disk or a
 * closed pipe is a failure, not a silent success. */
static int check_stdout(int rc)
{
	int failed, err;

	errno = 0;
	failed = fflush(stdout) == EOF;
	err = output_write_errno ? output_write_errno : failed ? errno : 0;
	if (!failed && !ferror(stdout))
		return rc;
	/* A reader that went away (| head) knows it did. */
	if (err != EPIPE)
		error("cannot write to standard output: %s",
		      err ? strerror(err) : "write error");
	return rc == EXIT_ALL_OK ? EXIT_SOME_FAILED : rc;
}

/* A command that can run on other hosts: remote.c takes -C, --credential
 * and --session out and either runs it there or gives it back for here. */
static int dispatch_remote(const struct cmd_entry *entry, int argc, char **argv)
{
	int rc = remote_dispatch(entry, &argc, &argv);

	if (rc != REMOTE_RUN_HERE)
		return rc;
	rc = entry->exec(argc, argv);
	for (int i = 0; i < argc; i++)
		free(argv[i]);
	free(argv);
	return rc;
}

static int dispatch(int argc, char **argv)
{
	const struct cmd_entry *entry;
	int help = 0, version = 0, first = leading_options(argc, argv, &help, &version);

	if (first < 0)
		return EXIT_USAGE;
	/* Run by another qckpt (-C): its input first, then its interrupt. */
	if (remote_input != NULL && remote_serve_input(remote_input) < 0)
		return EXIT_USAGE;
	if (version) {
		printf("qckpt %s\n", PACKAGE_VERSION);
		return EXIT_ALL_OK;
	}
	if (first < argc && strcmp(argv[first], "help") == 0) {
		help = 1;
		first++;
	}
	if (help) {
		if (first >= argc) {
			cmd_print_help();
			return EXIT_ALL_OK;
		}
		if ((entry = cmd_find(argv[first])) == NULL)
			return EXIT_USAGE;
		printf("usage: qckpt %s %s\n%s\nSee qckpt(1) for every option.\n", entry->name,
		       entry->usage, entry->summary);
		return EXIT_ALL_OK;
	}
	if (first >= argc) {
		cmd_print_help();
		return EXIT_USAGE;
	}
	entry = cmd_find(argv[first]);
	if (entry == NULL)
		return EXIT_USAGE;
	if (entry->flags & CMD_F_REMOTE)
		return dispatch_remote(entry, argc - first, argv + first);
	return entry->exec(argc - first, argv + first);
}

int cmd_dispatch(int argc, char **argv)
{
	/* In an --as-job process the job's record is written last, so that its
	 * exit status counts a failed write of the job's output too. */
	return asjob_finish(check_stdout(dispatch(argc, argv)));
}
