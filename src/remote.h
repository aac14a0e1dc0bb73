/*
 * remote.h: running a command on other hosts (Hyper-V's -ComputerName,
 * -Credential and -CimSession).  qckpt has no daemon of its own: for each
 * remote host it runs itself there over OpenSSH (`ssh HOST qckpt ...`), all
 * hosts at once as libuv child processes, and streams what they print back,
 * each object tagged with the ComputerName it came from.  The dispatcher
 * (cmd.c) calls remote_dispatch() for every command whose entry says it can
 * run remotely, so a new command opts in with one flag.
 */
#ifndef REMOTE_H
#define REMOTE_H

struct cmd_entry;

/* What the remote side of `qckpt hello` must answer: bumped when what
 * qckpt sends to or reads from another qckpt changes incompatibly (2: the
 * command's input framed by --remote-input, the end of stdin an interrupt). */
#define REMOTE_PROTOCOL 2

/* The value remote_dispatch returns when the command runs here, in this
 * process, as usual. */
#define REMOTE_RUN_HERE (-1)

/*
 * Take the remote options (-C HOST, --credential, --session) out
 * of the command's arguments and, for `-` commands, route the VM objects on
 * stdin by their ComputerName.  When everything is for this host, returns
 * REMOTE_RUN_HERE with *argc and *argv replaced by the arguments without those
 * options (standard input then still holds what the command should read);
 * otherwise runs the command on the hosts and returns the exit status.
 */
int remote_dispatch(const struct cmd_entry *entry, int *argc, char ***argv);

/* Whether NAME means this machine: ".", "localhost", its host name (short
 * or fully qualified). */
int remote_is_local(const char *name);

/* NAME (unchanged) in single quotes for a POSIX shell: 'it'\''s' (new string). */
char *remote_shell_quote(const char *arg);

/*
 * A --credential SPEC as ssh options: "user", "user@" (-l user),
 * "identity=FILE" (-i FILE, IdentitiesOnly), or several joined by commas.
 * Appends to *args (a NULL-terminated array of new strings, *n entries).
 * 0, or -1 after one line saying why (a password is never accepted).
 */
int remote_credential_args(const char *spec, char ***args, int *n);

/*
 * The far end of -C (remote-serve.c), for the hidden leading option
 * --remote-input=BYTES that remote.c gives the qckpt it runs: the first
 * BYTES of standard input become the command's standard input, and the end
 * of standard input after them (the driving qckpt interrupted, or gone)
 * becomes SIGINT to this process group, as a terminal's Ctrl-C.  0, or -1
 * after one line saying why.
 */
int remote_serve_input(const char *bytes);

/* The directory of session control sockets and records (private). */
char *remote_sessions_dir(void);

#endif
