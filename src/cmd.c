/*
 * cmd.c: the table of subcommands and the dispatch from argv to one of them.
 * Adding a command means one file and one line in cmd_table.
 */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "log.h"

static const struct cmd_entry *cmd_table[] = {
	&cmd_checkpoint_entry,
	&cmd_disks_entry,
	&cmd_job_entry,
	&cmd_list_entry,
	&cmd_qmp_entry,
	&cmd_register_entry,
	&cmd_restore_entry,
	&cmd_run_entry,
	&cmd_unregister_entry,
	&cmd_vms_entry,
	NULL,
};

const char *cmd_registry_path;

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

/* Exact name or alias first, then a unique prefix (as tmux does). */
const struct cmd_entry *cmd_find(const char *name)
{
	const struct cmd_entry *found = NULL;
	size_t len = strlen(name);
	int ambiguous = 0;

	for (int i = 0; cmd_table[i] != NULL; i++) {
		const struct cmd_entry *e = cmd_table[i];

		if (strcmp(e->name, name) == 0 ||
		    (e->alias && strcmp(e->alias, name) == 0))
			return e;
		if (strncmp(e->name, name, len) == 0) {
			ambiguous = found != NULL;
			found = e;
		}
	}
	if (ambiguous) {
		error("ambiguous command '%s'; run 'qckpt help' for the list", name);
		return NULL;
	}
	if (found == NULL)
		error("unknown command '%s'; run 'qckpt help' for the list", name);
	return found;
}

static void cmd_print_help(void)
{
	printf("usage: qckpt COMMAND [ARGUMENTS]\n\ncommands:\n");
	for (int i = 0; cmd_table[i] != NULL; i++)
		printf("  %-12s %s\n", cmd_table[i]->name, cmd_table[i]->summary);
	printf("\nqckpt COMMAND --help shows a command's usage; qckpt(1) has everything.\n");
}

int cmd_dispatch(int argc, char **argv)
{
	const struct cmd_entry *entry;

	if (argc < 2) {
		cmd_print_help();
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0) {
		if (argc > 2 && (entry = cmd_find(argv[2])) != NULL) {
			printf("usage: qckpt %s %s\n%s\n", entry->name,
			       entry->usage, entry->summary);
			return EXIT_ALL_OK;
		}
		cmd_print_help();
		return EXIT_ALL_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("qckpt %s\n", PACKAGE_VERSION);
		return EXIT_ALL_OK;
	}
	entry = cmd_find(argv[1]);
	if (entry == NULL)
		return EXIT_USAGE;
	return entry->exec(argc - 1, argv + 1);
}
