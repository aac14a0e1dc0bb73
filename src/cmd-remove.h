/*
 * cmd-remove.h: the removals that `qckpt remove`, `qckpt prune` and
 * `checkpoint --keep` run: one remove.c task per VM on cmd-jobs.c's loop,
 * so that the three take the same switches, lock the VMs, detach, stop on
 * Ctrl-C and report alike.  Each command parses its own options into a
 * remove_cmd (the checkpoint, or the retention limits) and hands it over.
 */
#ifndef CMD_REMOVE_H
#define CMD_REMOVE_H

#include <stdint.h>

#include "cmd-jobs.h"
#include "remove.h"

struct remove_cmd {
	struct cmd_jobs jobs_cmd;   /* first: cmd_jobs callbacks cast back */
	const char *checkpoint;     /* remove: as given; NULL: prune by the limits */
	int including_children;
	long keep;                  /* prune: keep the N newest (-1: any number) */
	int64_t older_than_ms;      /* prune: none older than this (0: any age) */

	/* running */
	const struct registry *reg;
	struct remove **rs;
	size_t n;
	int stopping;
	char *whatif_detail;
};

/* A remove_cmd of ENTRY's command (holder of the VMs' locks), no limits. */
void remove_cmd_init(struct remove_cmd *c, const struct cmd_entry *entry);

/*
 * After the command's option parsing, whose result is PARSE_RC (as
 * cmd_jobs_prepare takes it): the registry, then cmd_jobs_go with
 * OPERATION ("Remove", "Prune") over the names: each VM's removal made and
 * locked, all run at once.  Returns the exit status; C is freed.
 */
int remove_cmd_exec(struct remove_cmd *c, int parse_rc, const char *operation,
		    int argc, char **argv);

/* Retention (cmd-prune.c), for `checkpoint --keep` after its checkpoints:
 * each of NAMES keeps its KEEP newest checkpoints (-1: any number) and
 * none older than OLDER_THAN_MS (0: any age), the oldest removed first,
 * never the VM's current one nor a pinned one ("Pinned": true).  The
 * VMs' locks: this process holds them already.  An exit status. */
int remove_prune(const struct vm_names *names, long keep, int64_t older_than_ms,
		 int stop_on_error, enum progress_output progress);

/* "30d", "12h", "90m", "45s", "2w": 0 with *ms, or -EINVAL / -ERANGE. */
int remove_parse_duration(const char *text, int64_t *ms);

#endif
