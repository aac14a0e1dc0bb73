/*
 * cmd.h: the command table (tmux's shape).  Each subcommand lives in its own
 * src/cmd-<name>.c and exports one struct cmd_entry; cmd.c lists them and
 * dispatches.  Commands parse their own options and hand the work to modules
 * that know nothing of the command line.
 */
#ifndef CMD_H
#define CMD_H

#include <getopt.h>

/* Exit statuses: only main() and the commands' exec functions choose them. */
enum {
	EXIT_ALL_OK = 0,       /* every target succeeded */
	EXIT_SOME_FAILED = 1,  /* at least one target failed */
	EXIT_USAGE = 2,        /* usage or configuration error */
};

/* cmd_entry.flags */
enum {
	/* Runs on other hosts too: -C/--computer-name, --credential and
	 * --session are taken by the dispatcher (remote.c), never seen by the
	 * command.  A new command opts in with this flag. */
	CMD_F_REMOTE = 1 << 0,
	/* Its "-" reads VM objects on stdin: they go to the host their
	 * ComputerName names (`qckpt vms -C h --json | qckpt checkpoint -`). */
	CMD_F_STDIN_VMS = 1 << 1,
	/* Left out of `qckpt help` (the remote handshake, `hello`). */
	CMD_F_HIDDEN = 1 << 2,
};

struct cmd_entry {
	const char *name;
	const char *alias;
	const char *usage;   /* arguments after the name */
	const char *summary; /* one line for `qckpt help` */
	int (*exec)(int argc, char **argv);
	unsigned flags;      /* CMD_F_* */
	/* With -C: the option that makes the command print JSON objects
	 * instead of a table ("--json"), and the object fields the table
	 * drawn here from the hosts' objects shows (NULL-terminated).  A
	 * command without them streams whatever the hosts print. */
	const char *json_option;
	const char *const *columns;
};

extern const struct cmd_entry cmd_checkpoint_entry;
extern const struct cmd_entry cmd_disks_entry;
extern const struct cmd_entry cmd_export_entry;
extern const struct cmd_entry cmd_hello_entry;
extern const struct cmd_entry cmd_job_entry;
extern const struct cmd_entry cmd_list_entry;
extern const struct cmd_entry cmd_pin_entry;
extern const struct cmd_entry cmd_prune_entry;
extern const struct cmd_entry cmd_qmp_entry;
extern const struct cmd_entry cmd_register_entry;
extern const struct cmd_entry cmd_remove_entry;
extern const struct cmd_entry cmd_rename_entry;
extern const struct cmd_entry cmd_restore_entry;
extern const struct cmd_entry cmd_run_entry;
extern const struct cmd_entry cmd_session_entry;
extern const struct cmd_entry cmd_stop_entry;
extern const struct cmd_entry cmd_unpin_entry;
extern const struct cmd_entry cmd_unregister_entry;
extern const struct cmd_entry cmd_vms_entry;

/* Options every command takes (PowerShell's CommonParameters). */
enum {
	OPT_DEBUG = 0x100,
	OPT_REGISTRY,
	OPT_ERROR_ACTION,
	OPT_COMMON_LAST,
};
#define CMD_COMMON_SHORT "vqh"
#define CMD_COMMON_LONG                                                \
	{ "verbose", no_argument, NULL, 'v' },                         \
	{ "quiet", no_argument, NULL, 'q' },                           \
	{ "help", no_argument, NULL, 'h' },                            \
	{ "debug", no_argument, NULL, OPT_DEBUG },                     \
	{ "registry", required_argument, NULL, OPT_REGISTRY }

/* The registry file named by --registry, or NULL for the default search. */
extern const char *cmd_registry_path;

/*
 * Handle one of the common options.  Returns 1 when it was one, 0 when
 * not, and -1 after printing the usage for -h (the caller exits 0).
 */
int cmd_common_option(const struct cmd_entry *entry, int opt,
		      const char *arg);

/*
 * getopt_long for a command, with the common options handled here: returns
 * the next option of the command's own, -1 at the end, or CMD_OPT_HELP
 * after printing the usage for -h (the command then exits 0).
 */
#define CMD_OPT_HELP (-2)
int cmd_getopt(const struct cmd_entry *entry, int argc, char **argv,
	       const char *shortopts, const struct option *longopts);

/*
 * Hyper-V's -Confirm prompt for OPERATION ("Checkpoint", "Restore") on VM,
 * DETAIL (e.g. the checkpoint's name) or NULL, answered on the terminal,
 * never guessed: 1 yes, 0 no, -1 (after an error line) when there is no
 * terminal.  *all keeps "Yes to All" (1) and "No to All" (-1) across VMs.
 */
int cmd_confirm(const char *operation, const char *vm, const char *detail, int *all);

/* Print "usage: qckpt NAME USAGE" and return EXIT_USAGE. */
int cmd_usage(const struct cmd_entry *entry);

const struct cmd_entry *cmd_find(const char *name);

/* `qckpt vms` for these entries, all probed at once: the table, or one
 * JSON object per VM (--json; what `restore --passthru` prints).  Returns
 * how many were unreachable. */
struct registry_entry;
int cmd_vms_probe_and_print(const struct registry_entry **sel, size_t count,
			    unsigned timeout_ms, int json);
int cmd_dispatch(int argc, char **argv);

/* The QMP socket `qckpt run` gives VM when nobody chose one (new string):
 * also what `restore --from` registers a new VM with. */
char *cmd_run_default_monitor(const char *vm);

#endif
