/*
 * cmd-prune.c: "qckpt prune", retention: remove each VM's oldest
 * checkpoints beyond --keep N, or those older than --older-than, never the
 * one the VM runs on nor a pinned one.  Each removal is remove.c's (the
 * same merges, journal and checks as `qckpt remove`); `checkpoint --keep`
 * calls remove_prune() after its checkpoints.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asjob.h"
#include "cmd.h"
#include "log.h"
#include "remove.h"
#include "util.h"
#include "vmnames.h"

static int cmd_prune_exec(int argc, char **argv);

const struct cmd_entry cmd_prune_entry = {
	.name = "prune",
	.alias = NULL,
	.usage = "[options] NAME[,NAME...]|- --keep N | --older-than DURATION",
	.summary = "remove the oldest checkpoints beyond a count or an age",
	.exec = cmd_prune_exec,
	.flags = CMD_F_REMOTE | CMD_F_STDIN_VMS,
};

enum {
	OPT_WHATIF = OPT_COMMON_LAST,
	OPT_AS_JOB,
	OPT_KEEP,
	OPT_OLDER,
	OPT_PROGRESS,
};

int remove_parse_duration(const char *text, int64_t *ms)
{
	static const struct { char unit; int64_t ms; } units[] = {
		{ 's', 1000 }, { 'm', 60000 }, { 'h', 3600000 }, { 'd', 86400000 }, { 'w', 604800000 },
	};
	size_t len = strlen(text);
	char *num;
	long n;
	int rc;

	if (len < 2)
		return -EINVAL;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (text[len - 1] != units[i].unit)
			continue;
		num = xstrndup(text, len - 1);
		rc = parse_long(num, 1, 100L * 365 * 86400, &n);
		free(num);
		if (rc < 0)
			return rc;
		*ms = (int64_t)n * units[i].ms;
		return 0;
	}
	return -EINVAL;
}

int remove_prune(const struct vm_names *names, long keep, int64_t older_than_ms,
		 int stop_on_error, enum progress_output progress)
{
	struct remove **rs = xcalloc(names->n + 1, sizeof *rs);
	struct registry reg;
	size_t n = 0;
	char err[512];
	int rc, some_unknown = 0;

	if (registry_load(cmd_registry_path, &reg, err, sizeof err) < 0) {
		free(rs);
		return error("%s", err), EXIT_USAGE;
	}
	for (size_t i = 0; i < names->n; i++) {
		struct remove *r = remove_new(&reg, names->v[i]);

		if (r == NULL) {
			some_unknown = 1;
			continue;
		}
		r->spec.keep = keep;
		r->spec.older_than_ms = older_than_ms;
		rs[n++] = r;
	}
	registry_free(&reg);
	rc = n > 0 ? remove_run_all(rs, n, stop_on_error, progress) : EXIT_ALL_OK;
	for (size_t i = 0; i < n; i++)
		remove_free(rs[i]);
	free(rs);
	return some_unknown ? EXIT_SOME_FAILED : rc;
}

static int cmd_prune_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		{ "name", required_argument, NULL, 'n' },
		{ "whatif", no_argument, NULL, OPT_WHATIF },
		{ "error-action", required_argument, NULL, OPT_ERROR_ACTION },
		{ "as-job", no_argument, NULL, OPT_AS_JOB },
		{ "keep", required_argument, NULL, OPT_KEEP },
		{ "older-than", required_argument, NULL, OPT_OLDER },
		{ "progress", required_argument, NULL, OPT_PROGRESS },
		{ NULL, 0, NULL, 0 },
	};
	struct vm_names names = { 0 };
	long keep = -1;
	int64_t older = 0;
	int opt, whatif = 0, as_job = 0, stop = 0, rc = 0;
	enum progress_output progress = PROGRESS_AUTO;

	optind = 1;
	while (rc == 0 && (opt = cmd_getopt(&cmd_prune_entry, argc, argv, CMD_COMMON_SHORT "n:", longopts)) != -1) {
		switch (opt) {
		case CMD_OPT_HELP:
			vm_names_free(&names);
			return EXIT_ALL_OK;
		case 'n':
			if (strcmp(optarg, "-") == 0)
				rc = vm_names_read_stdin(&names);
			else
				vm_names_add_list(&names, optarg);
			break;
		case OPT_WHATIF: whatif = 1; break;
		case OPT_AS_JOB: as_job = 1; break;
		case OPT_PROGRESS:
			if (progress_parse(optarg, &progress) < 0)
				rc = error("--progress: auto, none or json, not '%s'", optarg);
			break;
		case OPT_KEEP:
			if (parse_long(optarg, 0, 1000000, &keep) < 0)
				rc = error("--keep: a count of checkpoints (0 or more), not '%s'", optarg);
			break;
		case OPT_OLDER:
			if (remove_parse_duration(optarg, &older) < 0)
				rc = error("--older-than: a number and a unit s, m, h, d or w (e.g. 30d), not '%s'", optarg);
			break;
		case OPT_ERROR_ACTION:
			if (strcmp(optarg, "stop") != 0 && strcmp(optarg, "continue") != 0)
				rc = error("--error-action: continue or stop, not '%s'", optarg);
			stop = strcmp(optarg, "stop") == 0;
			break;
		default:
			rc = -1;
		}
	}
	for (; rc == 0 && optind < argc; optind++) {
		if (strcmp(argv[optind], "-") == 0)
			rc = vm_names_read_stdin(&names);
		else
			vm_names_add_list(&names, argv[optind]);
	}
	if (rc == 0 && names.n == 0)
		rc = error("no VM named; give NAME[,NAME...], -n NAME or - to read names from stdin");
	if (rc == 0 && keep < 0 && older == 0)
		rc = error("how many to keep? give --keep N or --older-than DURATION (or both)");
	if (rc < 0) {
		vm_names_free(&names);
		return EXIT_USAGE;
	}
	if (whatif) {
		for (size_t i = 0; i < names.n; i++)
			printf("What if: Performing operation \"Prune\" on target \"%s\".\n", names.v[i]);
		vm_names_free(&names);
		return EXIT_ALL_OK;
	}
	if (as_job) {
		int detached = asjob_detach(argc, argv);

		if (detached != 0) {
			vm_names_free(&names);
			return detached > 0 ? EXIT_ALL_OK : EXIT_USAGE;
		}
	}
	rc = remove_prune(&names, keep, older, stop, progress);
	if (as_job)
		rc = asjob_finish(rc);
	vm_names_free(&names);
	return rc;
}
