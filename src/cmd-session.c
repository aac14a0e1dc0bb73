/*
 * cmd-session.c: "qckpt session open|list|close", Hyper-V's -CimSession for
 * SSH: a persistent authenticated connection to a host (an OpenSSH
 * ControlMaster whose control socket lives in the private runtime
 * directory) that later commands reuse with --session NAME, so they skip
 * the connection and authentication.  A record beside the socket
 * (NAME.json) says which host and credential it stands for; remote.c reads
 * it.  qckpt holds no connection itself: ssh's master process does, and a
 * session whose master is gone is reported as dead.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>
#include <jansson.h>
#include <uv.h>

#include "cmd.h"
#include "jsondir.h"
#include "log.h"
#include "output.h"
#include "registry.h"
#include "remote.h"
#include "util.h"

static int cmd_session_exec(int argc, char **argv);

const struct cmd_entry cmd_session_entry = {
	.name = "session",
	.usage = "open HOST [--credential SPEC] [--name NAME] | list [--json] | close NAME[,NAME...]",
	.summary = "persistent SSH connections to hosts, reused with --session NAME",
	.exec = cmd_session_exec,
};

enum { OPT_CREDENTIAL = OPT_COMMON_LAST, OPT_NAME };

/* ---- waiting for a child (ssh) or a socket on a loop of our own ---------- */

struct wait_proc {
	int64_t status;
	int signal;
};

static void on_ssh_exit(uv_process_t *p, int64_t status, int signum)
{
	struct wait_proc *w = p->data;

	w->status = status;
	w->signal = signum;
	uv_close((uv_handle_t *)p, NULL);
}

/* Run ARGS with no stdio (a master that goes to the background must not
 * hold our pipes); its exit status, or -1 when it cannot run. */
static int run_ssh(char **args)
{
	uv_loop_t loop;
	uv_process_t proc;
	uv_stdio_container_t io[3] = { { .flags = UV_IGNORE }, { .flags = UV_IGNORE },
					{ .flags = UV_IGNORE } };
	uv_process_options_t opts = { .file = args[0], .args = args, .exit_cb = on_ssh_exit,
				      .stdio = io, .stdio_count = 3 };
	struct wait_proc w = { -1, 0 };
	int rc;

	uv_loop_init(&loop);
	proc.data = &w;
	rc = uv_spawn(&loop, &proc, &opts);
	if (rc < 0) {
		error("cannot run %s: %s", args[0], uv_strerror(rc));
		uv_close((uv_handle_t *)&proc, NULL);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return rc < 0 ? -1 : w.signal ? 128 + w.signal : (int)w.status;
}

struct probe {
	uv_pipe_t pipe;
	uv_connect_t req;
	int status;
};

static void on_probe(uv_connect_t *req, int status)
{
	struct probe *p = req->data;

	p->status = status;
	uv_close((uv_handle_t *)&p->pipe, NULL);
}

/* Whether a master listens on the control socket PATH. */
static int session_alive(const char *path)
{
	uv_loop_t loop;
	struct probe p = { .status = -1 };

	uv_loop_init(&loop);
	uv_pipe_init(&loop, &p.pipe, 0);
	p.req.data = &p;
	uv_pipe_connect(&p.req, &p.pipe, path, on_probe);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return p.status == 0;
}

/* ---- records ---------------------------------------------------------------- */

static char *session_file(const char *dir, const char *name, const char *ext)
{
	return xasprintf("%s/%s.%s", dir, name, ext);
}

static char *ssh_program(void)
{
	const char *ssh = getenv("QCKPT_SSH");

	return xstrdup(ssh && *ssh ? ssh : "ssh");
}

static void add(char ***args, int *n, char *arg)
{
	*args = xrealloc(*args, (*n + 2) * sizeof **args);
	(*args)[(*n)++] = arg;
	(*args)[*n] = NULL;
}

static void free_args(char **args)
{
	for (char **a = args; a && *a; a++)
		free(*a);
	free(args);
}

/* The last line ssh logged (with -E), for the error line. */
static char *last_log_line(const char *path)
{
	char *text = NULL, *end, *start;

	if (read_whole_file(path, &text) < 0 || text[0] == '\0') {
		free(text);
		return xstrdup("ssh failed without saying why");
	}
	end = text + strlen(text);
	while (end > text && (end[-1] == '\n' || end[-1] == '\r'))
		*--end = '\0';
	start = strrchr(text, '\n');
	start = xstrdup(start ? start + 1 : text);
	free(text);
	text_strip_controls(start);
	return start;
}

static int session_open(const char *host, const char *name, const char *credential)
{
	char *dir = remote_sessions_dir(), *ctl = NULL, *log = NULL, *rec = NULL, **args = NULL;
	char why[512], when[64];
	int n = 0, rc = EXIT_USAGE;

	if (!registry_valid_name(name) || strlen(name) > 40) {
		error("session name '%s': up to 40 letters, digits, '.', '_' and '-', not starting with '-' or '.'; give one with --name", name);
		goto out;
	}
	if (host[0] == '-' || host[0] == '\0') {
		error("session open: '%s' is not a host name", host);
		goto out;
	}
	if (private_dir(dir, why, sizeof why) < 0) {
		error("sessions directory: %s", why);
		goto out;
	}
	ctl = session_file(dir, name, "sock");
	log = session_file(dir, name, "log");
	rec = session_file(dir, name, "json");
	/* ssh makes the socket under a longer temporary name first. */
	if (strlen(ctl) + 18 >= sizeof ((struct sockaddr_un *)0)->sun_path) {
		error("session %s: its control socket %s is too long for a unix socket; set QCKPT_RUNTIME_DIR to a shorter directory", name, ctl);
		goto out;
	}
	if (session_alive(ctl)) {
		error("session %s is open already (see 'qckpt session list'); close it first or give another --name", name);
		goto out;
	}
	unlink(ctl);
	unlink(log);
	add(&args, &n, ssh_program());
	add(&args, &n, xstrdup("-oBatchMode=yes"));
	add(&args, &n, xstrdup("-oConnectTimeout=10"));
	if (credential && remote_credential_args(credential, &args, &n) < 0)
		goto out;
	add(&args, &n, xstrdup("-M"));
	add(&args, &n, xasprintf("-oControlPath=%s", ctl));
	add(&args, &n, xstrdup("-oControlPersist=yes"));
	add(&args, &n, xstrdup("-f"));
	add(&args, &n, xstrdup("-N"));
	add(&args, &n, xstrdup("-E"));
	add(&args, &n, xstrdup(log));
	add(&args, &n, xstrdup("--"));
	add(&args, &n, xstrdup(host));
	rc = run_ssh(args);
	if (rc != 0 || !session_alive(ctl)) {
		char *line = last_log_line(log);

		error_vm(host, "cannot open a session: %s; check the host name, that sshd runs there and the credential (ssh never asks for a password here)", line);
		free(line);
		rc = EXIT_SOME_FAILED;
	} else {
		json_t *o;
		char *text;

		format_iso8601(wall_ms(), when, sizeof when);
		o = json_pack("{s:s, s:s, s:s?, s:s, s:s}", "Name", name, "ComputerName", host,
			      "Credential", credential, "ControlPath", ctl, "CreationTime", when);
		text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		rc = write_file_atomic(rec, text, strlen(text), 0600) < 0
			? error("session %s: cannot write %s", name, rec), EXIT_SOME_FAILED
			: EXIT_ALL_OK;
		verbose_vm(host, "session %s open", name);
		free(text);
		json_decref(o);
	}
	unlink(log);
out:
	free_args(args);
	free(ctl);
	free(log);
	free(rec);
	free(dir);
	return rc;
}

static json_t *load_session(const char *dir, const char *entry)
{
	size_t len = strlen(entry);
	char *path;
	json_t *o;

	if (len < 6 || strcmp(entry + len - 5, ".json") != 0)
		return NULL;
	path = xasprintf("%s/%s", dir, entry);
	o = json_load_file(path, 0, NULL);
	free(path);
	if (!json_is_object(o) || !json_is_string(json_object_get(o, "ControlPath"))) {
		json_decref(o);
		return NULL;
	}
	json_object_set_new(o, "State", json_string(session_alive(output_str(o, "ControlPath", ""))
						     ? "open" : "dead"));
	return o;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(output_str(*(json_t *const *)a, "Name", ""),
		      output_str(*(json_t *const *)b, "Name", ""));
}

static int session_list(int json)
{
	static const char *const headers[] = { "Name", "ComputerName", "State", "CreationTime" };
	char *dir = remote_sessions_dir();
	json_t *list = json_dir_load(dir, load_session, by_name), *o;
	struct output_table *t = json ? NULL : output_table_new("llll", headers);
	size_t i;

	json_array_foreach(list, i, o) {
		if (json) {
			output_json_line(o);
		} else {
			char when[32];

			output_short_time(output_str(o, "CreationTime", "-"), when, sizeof when);
			output_table_add(t, (const char *const[]){ output_str(o, "Name", "?"),
					 output_str(o, "ComputerName", "?"), output_str(o, "State", "?"), when });
		}
	}
	if (t)
		output_table_print(t, stdout);
	json_decref(list);
	free(dir);
	return EXIT_ALL_OK;
}

static int session_close_one(const char *dir, const char *name)
{
	char *rec = session_file(dir, name, "json");
	json_t *o = registry_valid_name(name) ? json_load_file(rec, 0, NULL) : NULL;
	const char *ctl = output_str(o, "ControlPath", NULL);
	const char *host = output_str(o, "ComputerName", NULL);
	int rc = EXIT_ALL_OK;

	if (ctl == NULL || host == NULL) {
		rc = (error("session %s: no such session; see 'qckpt session list'", name), EXIT_SOME_FAILED);
	} else if (!session_alive(ctl)) {
		warn_vm(host, "session %s was dead already (its ssh connection had gone); removed it", name);
	} else {
		char **args = NULL;
		int n = 0;

		add(&args, &n, ssh_program());
		add(&args, &n, xasprintf("-oControlPath=%s", ctl));
		add(&args, &n, xstrdup("-Oexit"));
		add(&args, &n, xstrdup("--"));
		add(&args, &n, xstrdup(host));
		if (run_ssh(args) != 0)
			rc = (error_vm(host, "session %s: its ssh master did not stop; kill the 'ssh -M' process for %s", name, ctl), EXIT_SOME_FAILED);
		free_args(args);
	}
	if (ctl != NULL && rc == EXIT_ALL_OK) {
		unlink(ctl);
		unlink(rec);
		fsync_dir(dir);
	}
	json_decref(o);
	free(rec);
	return rc;
}

static int session_close(char **names, int n)
{
	char *dir = remote_sessions_dir();
	int rc = EXIT_ALL_OK;

	for (int i = 0; i < n; i++) {
		char *copy = xstrdup(names[i]), *save = NULL;

		for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save))
			if (session_close_one(dir, p) != EXIT_ALL_OK)
				rc = EXIT_SOME_FAILED;
		free(copy);
	}
	free(dir);
	return rc;
}

static int cmd_session_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		CMD_COMMON_LONG,
		{ "credential", required_argument, NULL, OPT_CREDENTIAL },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *credential = NULL, *name = NULL, *verb;
	int opt, json = 0;

	optind = 1;
	while ((opt = cmd_getopt(&cmd_session_entry, argc, argv, CMD_COMMON_SHORT, longopts)) != -1) {
		if (opt == CMD_OPT_HELP)
			return EXIT_ALL_OK;
		if (opt == OPT_CREDENTIAL)
			credential = optarg;
		else if (opt == OPT_NAME)
			name = optarg;
		else if (opt == 'j')
			json = 1;
		else
			return cmd_usage(&cmd_session_entry);
	}
	if (optind >= argc)
		return cmd_usage(&cmd_session_entry);
	verb = argv[optind++];
	if (strcmp(verb, "open") == 0 && optind + 1 == argc)
		return session_open(argv[optind], name ? name : argv[optind], credential);
	if (strcmp(verb, "list") == 0 && optind == argc)
		return session_list(json);
	if (strcmp(verb, "close") == 0 && optind < argc)
		return session_close(argv + optind, argc - optind);
	return cmd_usage(&cmd_session_entry);
}
