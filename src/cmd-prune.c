/*
 * cmd-prune.c: "qckpt prune", retention: remove each VM's oldest
 * checkpoints beyond --keep N, or those older than --older-than, never the
 * one the VM runs on nor a pinned one.  Each removal is remove.c's (the
 * same merges, journal and checks as `qckpt remove`), run as remove's are
 * (cmd-remove.h); `checkpoint --keep` calls remove_prune() after its
 * checkpoints.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "cmd-remove.h"
#include "log.h"
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
	OPT_KEEP = OPT_JOBS_LAST,
	OPT_OLDER,
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
	struct remove_cmd c;

	remove_cmd_init(&c, &cmd_prune_entry);
	c.keep = keep;
	c.older_than_ms = older_than_ms;
	c.jobs_cmd.stop_on_error = stop_on_error;
	c.jobs_cmd.progress = progress;
	for (size_t i = 0; i < names->n; i++)
		vm_names_add(&c.jobs_cmd.names, names->v[i]);
	/* no --as-job here: the checkpoint's own process runs it */
	return remove_cmd_exec(&c, 0, "Prune", 0, NULL);
}

static int parse_options(struct remove_cmd *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		CMD_JOBS_LONG,
		{ "keep", required_argument, NULL, OPT_KEEP },
		{ "older-than", required_argument, NULL, OPT_OLDER },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	optind = 1;
	while ((opt = cmd_jobs_getopt(&c->jobs_cmd, argc, argv,
				      CMD_COMMON_SHORT CMD_JOBS_SHORT, longopts)) != -1) {
		switch (opt) {
		case CMD_OPT_HELP:
			return 1;
		case OPT_KEEP:
			if (parse_long(optarg, 0, 1000000, &c->keep) < 0)
				return error("--keep: a count of checkpoints (0 or more), not '%s'", optarg);
			break;
		case OPT_OLDER:
			if (remove_parse_duration(optarg, &c->older_than_ms) < 0)
				return error("--older-than: a number and a unit s, m, h, d or w (e.g. 30d), not '%s'", optarg);
			break;
		default:
			return -1;
		}
	}
	/* prune takes every word as names (no checkpoint follows them) */
	if (cmd_jobs_names(&c->jobs_cmd, argc, argv) < 0)
		return -1;
	for (; optind < argc; optind++) {
		if (strcmp(argv[optind], "-") == 0) {
			if (vm_names_read_stdin(&c->jobs_cmd.names) < 0)
				return -1;
		} else {
			vm_names_add_list(&c->jobs_cmd.names, argv[optind]);
		}
	}
	if (cmd_jobs_check_names(&c->jobs_cmd) < 0)
		return -1;
	if (c->keep < 0 && c->older_than_ms == 0)
		return error("how many to keep? give --keep N or --older-than DURATION (or both)");
	return 0;
}

static int cmd_prune_exec(int argc, char **argv)
{
	struct remove_cmd c;

	remove_cmd_init(&c, &cmd_prune_entry);
	return remove_cmd_exec(&c, parse_options(&c, argc, argv), "Prune", argc, argv);
}
