/*
 * remote.c: a command run on several hosts at once (see remote.h).
 *
 * One target per host, each a child process on one libuv loop: `ssh [opts]
 * -- HOST 'qckpt hello 2 && exec qckpt --remote-input=N CMD ARGS'` for a
 * remote host, this very program for this host when other hosts take part
 * too (alone, this host runs in-process and nothing here is involved).
 * The handshake and the command share one ssh connection: the remote
 * `hello` refuses a protocol it does not speak before the command can
 * start, and its answer is the first line on stdout, so an unreachable
 * host, a host without qckpt and an incompatible one each get their own
 * line.
 *
 * Every argument is single-quoted for the remote shell (ssh joins its
 * arguments into one command line for the login shell there): names with
 * spaces, quotes, ';', $(...) or newlines arrive unchanged.
 *
 * What the hosts print is streamed as it comes, line by line: JSON objects
 * (one a line, or indented over several as `job show` prints one) get
 * "ComputerName" set to the host as the user named it (so that `qckpt
 * checkpoint -` can route them back), other lines are passed on, prefixed
 * with the host when there are several; error lines become "qckpt: HOST:
 * ...".  A command whose output is a table asks the hosts for JSON and
 * draws the table here, with a ComputerName column, once all are in.
 *
 * Ctrl-C reaches the hosts' qckpt: the children run detached (a terminal's
 * SIGINT is this process's alone, so ssh stays up to bring back what the
 * hosts say), each child's standard input stays open after the command's
 * input (--remote-input=N: its first N bytes), and an interrupt here closes
 * it: ssh passes the end on, and the qckpt there takes it as its own Ctrl-C
 * (remote-serve.c), undoes what it had started and says so through the
 * same connection.  A further Ctrl-C stops waiting for the hosts.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include <uv.h>

#include "cmd.h"
#include "log.h"
#include "output.h"
#include "registry.h"
#include "remote.h"
#include "util.h"
#include "vmconn.h"

#define REMOTE_CONNECT_TIMEOUT_S "10"

/* ---- small pieces --------------------------------------------------------- */

int remote_is_local(const char *name)
{
	char host[256];
	size_t n;

	if (strcmp(name, ".") == 0 || strcmp(name, "localhost") == 0)
		return 1;
	if (gethostname(host, sizeof host) != 0)
		return 0;
	host[sizeof host - 1] = '\0';
	if (strcmp(name, host) == 0)
		return 1;
	/* "host" matches "host.example.org" and the other way round */
	n = strcspn(host, ".");
	return strncmp(name, host, n) == 0 && (name[n] == '\0' || name[n] == '.');
}

char *remote_shell_quote(const char *arg)
{
	size_t len = 2;
	char *out, *p;

	for (const char *s = arg; *s; s++)
		len += *s == '\'' ? 4 : 1;
	out = p = xmalloc(len + 1);
	*p++ = '\'';
	for (const char *s = arg; *s; s++) {
		if (*s == '\'') {
			memcpy(p, "'\\''", 4);
			p += 4;
		} else {
			*p++ = *s;
		}
	}
	*p++ = '\'';
	*p = '\0';
	return out;
}

static void args_add(char ***args, int *n, char *arg)
{
	*args = xrealloc(*args, (*n + 2) * sizeof **args);
	(*args)[(*n)++] = arg;
	(*args)[*n] = NULL;
}

static void args_free(char **args)
{
	for (char **a = args; a && *a; a++)
		free(*a);
	free(args);
}

int remote_credential_args(const char *spec, char ***args, int *n)
{
	char *copy = xstrdup(spec), *save = NULL;
	int rc = 0;

	for (char *p = strtok_r(copy, ",", &save); p && rc == 0; p = strtok_r(NULL, ",", &save)) {
		size_t ulen = strcspn(p, "@");

		if (strncmp(p, "x509=", 5) == 0 && p[5] != '\0') {
			/* for tls: monitors (vmconn), not for ssh */
		} else if (strncmp(p, "identity=", 9) == 0 && p[9] != '\0') {
			args_add(args, n, xstrdup("-i"));
			args_add(args, n, xstrdup(p + 9));
			args_add(args, n, xstrdup("-oIdentitiesOnly=yes"));
		} else if (strncmp(p, "password", 8) == 0) {
			rc = error("--credential: qckpt never takes a password on the command line; use an ssh key (identity=FILE) or ssh-agent");
		} else if (ulen > 0 && (p[ulen] == '\0' || (p[ulen] == '@' && p[ulen + 1] == '\0')) &&
			   strchr(p, '=') == NULL && p[0] != '-') {
			args_add(args, n, xstrdup("-l"));
			args_add(args, n, xstrndup(p, ulen));
		} else {
			rc = error("--credential '%s': give USER, USER@ or identity=FILE (several joined by commas)", p);
		}
	}
	free(copy);
	return rc;
}

char *remote_sessions_dir(void)
{
	const char *env = getenv("QCKPT_RUNTIME_DIR");
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	if (env != NULL && env[0] == '/')
		return xasprintf("%s/sessions", env);
	if (geteuid() == 0)
		return xstrdup("/run/qckpt/sessions");
	if (xdg != NULL && xdg[0] == '/')
		return xasprintf("%s/qckpt/sessions", xdg);
	return xasprintf("/tmp/qckpt-%u/sessions", (unsigned)geteuid());
}

/* ---- the options this module takes out of the command's ----------------- */

struct remote_opts {
	char **hosts;       /* -C, in order, each once */
	int nhosts;
	const char *credential;
	char **sessions;    /* --session NAME[,NAME] */
	int nsessions;
	char **rest;        /* the command's arguments without ours */
	int nrest;
	int reads_stdin;    /* a "-" argument */
	int has_json;       /* the entry's json_option was given */
	int has_text_format; /* an output the hosts print as text (--names, --tree) */
};

static void add_list(char ***v, int *n, const char *list)
{
	char *copy = xstrdup(list), *save = NULL;

	for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		int seen = 0;

		for (int i = 0; i < *n; i++)
			seen |= strcmp((*v)[i], p) == 0;
		if (!seen && *p)
			args_add(v, n, xstrdup(p));
	}
	free(copy);
}

/* The value of option LONG (--long VALUE, --long=VALUE) or SHORT (-S VALUE,
 * -SVALUE) at argv[*i], advancing *i past it; NULL when argv[*i] is not it. */
static const char *option_value(int argc, char **argv, int *i, const char *lng, char shrt,
				int *missing)
{
	const char *a = argv[*i];
	size_t n = strlen(lng);

	if (strncmp(a, "--", 2) == 0 && strncmp(a + 2, lng, n) == 0) {
		if (a[2 + n] == '=')
			return a + 3 + n;
		if (a[2 + n] != '\0')
			return NULL;
	} else if (!(shrt && a[0] == '-' && a[1] == shrt)) {
		return NULL;
	} else if (a[2] != '\0') {
		return a + 2;
	}
	if (*i + 1 >= argc) {
		*missing = 1;
		return NULL;
	}
	return argv[++*i];
}

static int split_options(const struct cmd_entry *entry, int argc, char **argv,
			 struct remote_opts *o)
{
	int ended = 0;

	args_add(&o->rest, &o->nrest, xstrdup(argv[0]));
	for (int i = 1; i < argc; i++) {
		const char *v;
		int missing = 0;

		if (!ended && strcmp(argv[i], "--") == 0)
			ended = 1;
		if (ended) {
			args_add(&o->rest, &o->nrest, xstrdup(argv[i]));
			o->reads_stdin |= strcmp(argv[i], "-") == 0;
			continue;
		}
		if ((v = option_value(argc, argv, &i, "computer-name", 'C', &missing)) != NULL)
			add_list(&o->hosts, &o->nhosts, v);
		else if ((v = option_value(argc, argv, &i, "credential", 0, &missing)) != NULL)
			o->credential = v;
		else if ((v = option_value(argc, argv, &i, "session", 0, &missing)) != NULL)
			add_list(&o->sessions, &o->nsessions, v);
		else if (missing)
			return error("%s needs a value; see 'qckpt %s --help'", argv[i], entry->name);
		else {
			args_add(&o->rest, &o->nrest, xstrdup(argv[i]));
			o->reads_stdin |= strcmp(argv[i], "-") == 0;
			o->has_json |= entry->json_option != NULL &&
				       strcmp(argv[i], entry->json_option) == 0;
			/* Outputs no JSON object carries: passed on as text. */
			o->has_text_format |= strcmp(argv[i], "--names") == 0 ||
					      strcmp(argv[i], "--tree") == 0;
		}
	}
	for (int i = 0; i < o->nhosts; i++)
		if (o->hosts[i][0] == '-')
			return error("-C '%s': a host name cannot start with '-'", o->hosts[i]);
	return 0;
}

/* ---- targets: one child process per host ---------------------------------- */

struct remote_run;

struct line_buf {
	char *data;
	size_t len;
};

struct target {
	struct remote_run *run;
	char *host;          /* ComputerName: the host as the user named it */
	int local;           /* this machine: this program, no ssh, no hello */
	char *session;       /* the session it goes through, or NULL */
	char *control_path;  /* that session's ssh control socket */
	char *input;         /* what it reads on stdin (routed VM objects), or NULL */
	size_t input_len;

	uv_process_t proc;
	uv_pipe_t in, out, err;
	uv_pipe_t probe;     /* the session check */
	uv_connect_t probe_req;
	uv_write_t write_req;
	struct line_buf out_buf, err_buf;
	struct line_buf doc; /* an indented JSON object being read (job show) */
	int open_handles;
	int spawned;
	int64_t exit_status;
	int term_signal;
	int hello;           /* the handshake line was read (remote only) */
	char *hello_version;
	char early_err[512]; /* the last line on stderr before the hello */
	int failed;          /* already reported: the host did not run the command */
	int exited;          /* its process is gone (or never ran) */
	int status;          /* its exit status as this command counts it */
};

struct remote_run {
	uv_loop_t loop;
	const struct cmd_entry *entry;
	struct remote_opts *opts;
	struct target *targets;
	int ntargets;
	int table;           /* collect objects, draw a table at the end */
	json_t *objects;
	char **ssh_cred;     /* --credential as ssh options */
	int nssh_cred;
	uv_signal_t sigint, sigterm;
	int signals;         /* Ctrl-C (or SIGTERM) so far */
};

static void signals_maybe_close(struct remote_run *run);

static void target_handle_closed(uv_handle_t *h)
{
	struct target *t = h->data;

	t->open_handles--;
	signals_maybe_close(t->run);
}

static void target_close(struct target *t, uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, target_handle_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	buf->base = xmalloc(suggested);
	buf->len = suggested;
}

/* A line that is no object, after its host's name when there are several. */
static void text_out(struct target *t, const char *line)
{
	if (t->run->ntargets > 1)
		printf("%s: %s\n", t->host, line);
	else
		printf("%s\n", line);
	fflush(stdout);
}

/* An object of the host's, tagged with it; INDENTED as it came (job show). */
static void object_out(struct target *t, json_t *o, int indented)
{
	json_object_set_new(o, "ComputerName", json_string(t->host));
	if (t->run->table) {
		json_array_append(t->run->objects, o);
	} else if (indented) {
		char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		printf("%s\n", text);
		fflush(stdout);
		free(text);
	} else {
		output_json_line(o);
	}
	json_decref(o);
}

/* The pending lines of an indented object passed on as they were (the
 * output ended before its closing brace, or they were not JSON). */
static void doc_as_text(struct target *t)
{
	char *save = NULL;

	for (char *l = strtok_r(t->doc.data, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		text_out(t, l);
	free(t->doc.data);
	t->doc.data = NULL;
	t->doc.len = 0;
}

/* A line of an object printed indented (jansson's JSON_INDENT: "{" and "}"
 * alone at the start of a line open and close it): whole, it is tagged
 * like a one-line object, so `job show -C` says which host's job it is. */
static void doc_line(struct target *t, const char *line)
{
	size_t n = strlen(line);
	json_t *o;

	t->doc.data = xrealloc(t->doc.data, t->doc.len + n + 2);
	memcpy(t->doc.data + t->doc.len, line, n);
	t->doc.len += n;
	t->doc.data[t->doc.len++] = '\n';
	t->doc.data[t->doc.len] = '\0';
	if (strcmp(line, "}") != 0)
		return;
	o = json_loads(t->doc.data, 0, NULL);
	if (!json_is_object(o)) {
		json_decref(o);
		doc_as_text(t);
		return;
	}
	free(t->doc.data);
	t->doc.data = NULL;
	t->doc.len = 0;
	object_out(t, o, 1);
}

/* A stdout line of the target: the handshake first, then the output. */
static void out_line(struct target *t, char *line)
{
	json_t *o;

	if (!t->local && !t->hello) {
		json_t *h = json_loads(line, 0, NULL);

		t->hello = 1;
		t->hello_version = xstrdup(output_str(h, "Version", "?"));
		if (json_integer_value(json_object_get(h, "Protocol")) != REMOTE_PROTOCOL) {
			error_vm(t->host, "runs qckpt %s, which speaks remote protocol %lld; this qckpt %s speaks %d: install the same qckpt version on both",
				 t->hello_version, (long long)json_integer_value(json_object_get(h, "Protocol")),
				 PACKAGE_VERSION, REMOTE_PROTOCOL);
			t->failed = 1;
		}
		json_decref(h);
		return;
	}
	if (t->failed)
		return;
	if (t->doc.data != NULL || strcmp(line, "{") == 0) {
		doc_line(t, line);
		return;
	}
	if (line[0] == '{' && (o = json_loads(line, 0, NULL)) != NULL && json_is_object(o)) {
		object_out(t, o, 0);
		return;
	}
	text_out(t, line);
}

/* A stderr line: "qckpt: VM: msg" becomes "qckpt: HOST: VM: msg".  Before
 * the hello it is ssh's or the remote shell's, kept to explain a failure. */
static void err_line(struct target *t, char *line)
{
	if (!t->local && !t->hello) {
		size_t n;

		snprintf(t->early_err, sizeof t->early_err, "%s", line);
		text_strip_controls(t->early_err);
		/* "Permission denied (publickey)." ends a sentence of ours */
		n = strlen(t->early_err);
		while (n > 0 && (t->early_err[n - 1] == '.' || t->early_err[n - 1] == ' '))
			t->early_err[--n] = '\0';
		verbose_vm(t->host, "%s", line);
		return;
	}
	if (strncmp(line, "qckpt: ", 7) == 0)
		line += 7;
	error_vm(t->host, "%s", line);
}

static void buf_feed(struct target *t, struct line_buf *b, const char *data, size_t len,
		     void (*fn)(struct target *, char *))
{
	char *nl;

	b->data = xrealloc(b->data, b->len + len + 1);
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	while ((nl = memchr(b->data, '\n', b->len)) != NULL) {
		size_t n = (size_t)(nl - b->data) + 1;

		*nl = '\0';
		fn(t, b->data);
		memmove(b->data, b->data + n, b->len - n);
		b->len -= n;
		b->data[b->len] = '\0';
	}
}

static void buf_flush(struct target *t, struct line_buf *b, void (*fn)(struct target *, char *))
{
	if (b->len > 0)
		fn(t, b->data);
	free(b->data);
	b->data = NULL;
	b->len = 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct target *t = s->data;
	int is_out = s == (uv_stream_t *)&t->out;
	void (*fn)(struct target *, char *) = is_out ? out_line : err_line;
	struct line_buf *b = is_out ? &t->out_buf : &t->err_buf;

	if (nread > 0)
		buf_feed(t, b, buf->base, (size_t)nread, fn);
	free(buf->base);
	if (nread < 0) {
		buf_flush(t, b, fn);
		if (is_out && t->doc.data != NULL)
			doc_as_text(t);
		target_close(t, (uv_handle_t *)s);
	}
}

static void on_exit_proc(uv_process_t *p, int64_t status, int signum)
{
	struct target *t = p->data;

	t->exit_status = status;
	t->term_signal = signum;
	t->exited = 1;
	target_close(t, (uv_handle_t *)&t->in);
	target_close(t, (uv_handle_t *)p);
}

/* The input is written; the pipe stays open: its end is the interrupt. */
static void on_input_written(uv_write_t *req, int status)
{
}

static char *remote_program(void)
{
	const char *env = getenv("QCKPT_REMOTE_QCKPT");

	return remote_shell_quote(env && *env ? env : "qckpt");
}

/* 'qckpt' hello 2 && exec 'qckpt' --remote-input=N 'CMD' 'ARG'... */
static char *remote_command_line(struct target *t)
{
	struct remote_run *run = t->run;
	char *prog = remote_program();
	char *line = xasprintf("%s hello %d && exec %s --remote-input=%zu", prog, REMOTE_PROTOCOL,
			       prog, t->input_len);

	for (int i = 0; i < run->opts->nrest; i++) {
		char *q = remote_shell_quote(run->opts->rest[i]), *next;

		next = xasprintf("%s %s", line, q);
		free(line);
		free(q);
		line = next;
		if (i == 0) {
			next = xasprintf("%s%s%s%s%s", line, run->table ? " " : "",
					 run->table ? run->entry->json_option : "",
					 log_verbose ? " -v" : "", log_debug ? " --debug" : "");
			free(line);
			line = next;
			if (log_quiet) {
				next = xasprintf("%s -q", line);
				free(line);
				line = next;
			}
		}
	}
	free(prog);
	return line;
}

static char **target_argv(struct target *t)
{
	struct remote_run *run = t->run;
	char **args = NULL, exe[4096];
	size_t exelen = sizeof exe;
	int n = 0;

	if (t->local) {
		if (uv_exepath(exe, &exelen) != 0)
			snprintf(exe, sizeof exe, "/proc/self/exe");
		args_add(&args, &n, xstrdup(exe));
		args_add(&args, &n, xasprintf("--remote-input=%zu", t->input_len));
		for (int i = 0; i < run->opts->nrest; i++) {
			args_add(&args, &n, xstrdup(run->opts->rest[i]));
			if (i == 0 && run->table)
				args_add(&args, &n, xstrdup(run->entry->json_option));
			if (i == 0 && log_quiet)
				args_add(&args, &n, xstrdup("-q"));
		}
		return args;
	}
	{
		const char *ssh = getenv("QCKPT_SSH");

		args_add(&args, &n, xstrdup(ssh && *ssh ? ssh : "ssh"));
	}
	args_add(&args, &n, xstrdup("-T"));
	args_add(&args, &n, xstrdup("-oBatchMode=yes"));
	args_add(&args, &n, xstrdup("-oConnectTimeout=" REMOTE_CONNECT_TIMEOUT_S));
	if (t->control_path) {
		args_add(&args, &n, xstrdup("-oControlMaster=no"));
		args_add(&args, &n, xasprintf("-oControlPath=%s", t->control_path));
	} else {
		for (int i = 0; i < run->nssh_cred; i++)
			args_add(&args, &n, xstrdup(run->ssh_cred[i]));
	}
	args_add(&args, &n, xstrdup("--"));
	args_add(&args, &n, xstrdup(t->host));
	args_add(&args, &n, remote_command_line(t));
	return args;
}

static void target_spawn(struct target *t)
{
	struct remote_run *run = t->run;
	char **args = target_argv(t);
	uv_stdio_container_t io[3];
	/* Detached: a terminal's Ctrl-C is ours to pass on (see the top). */
	uv_process_options_t opts = { .file = args[0], .args = args, .exit_cb = on_exit_proc,
				      .stdio = io, .stdio_count = 3,
				      .flags = UV_PROCESS_DETACHED };
	int rc;

	uv_pipe_init(&run->loop, &t->in, 0);
	uv_pipe_init(&run->loop, &t->out, 0);
	uv_pipe_init(&run->loop, &t->err, 0);
	t->in.data = t->out.data = t->err.data = t->proc.data = t;
	t->open_handles += 3;
	io[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
	io[0].data.stream = (uv_stream_t *)&t->in;
	io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	io[1].data.stream = (uv_stream_t *)&t->out;
	io[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	io[2].data.stream = (uv_stream_t *)&t->err;
	if (log_debug) {
		fprintf(stderr, "qckpt: %s: running", t->host);
		for (char **a = args; *a; a++)
			fprintf(stderr, " %s", *a);
		fputc('\n', stderr);
	}
	rc = uv_spawn(&run->loop, &t->proc, &opts);
	args_free(args);
	if (rc < 0) {
		error_vm(t->host, "cannot run %s: %s", t->local ? "qckpt" : "ssh", uv_strerror(rc));
		t->failed = 1;
		t->exited = 1;
		t->status = EXIT_SOME_FAILED;
		t->open_handles++;
		target_close(t, (uv_handle_t *)&t->proc);
		target_close(t, (uv_handle_t *)&t->in);
		target_close(t, (uv_handle_t *)&t->out);
		target_close(t, (uv_handle_t *)&t->err);
		return;
	}
	t->spawned = 1;
	t->open_handles++;
	uv_read_start((uv_stream_t *)&t->out, on_alloc, on_read);
	uv_read_start((uv_stream_t *)&t->err, on_alloc, on_read);
	if (t->input_len > 0) {
		uv_buf_t b = uv_buf_init(t->input, (unsigned)t->input_len);

		t->write_req.data = t;
		if (uv_write(&t->write_req, (uv_stream_t *)&t->in, &b, 1, on_input_written) < 0)
			target_close(t, (uv_handle_t *)&t->in);
	}
	/* interrupted before it started: it starts interrupted */
	if (t->run->signals > 0)
		target_close(t, (uv_handle_t *)&t->in);
}

/* A session's master must be listening on its control socket: otherwise
 * ssh would quietly connect on its own, with no session. */
static void on_probe_closed(uv_handle_t *h)
{
	struct target *t = h->data;

	t->open_handles--;
	if (!t->failed)
		target_spawn(t);
	else
		t->exited = 1;
	signals_maybe_close(t->run);
}

static void on_session_probe(uv_connect_t *req, int status)
{
	struct target *t = req->data;

	if (status < 0) {
		error_vm(t->host, "session '%s' is dead (its ssh connection is gone: %s); open it again with 'qckpt session open %s --name %s' or close it with 'qckpt session close %s'",
			 t->session, uv_strerror(status), t->host, t->session, t->session);
		t->failed = 1;
		t->status = EXIT_SOME_FAILED;
	}
	uv_close((uv_handle_t *)&t->probe, on_probe_closed);
}

static void target_start(struct target *t)
{
	if (t->control_path == NULL) {
		target_spawn(t);
		return;
	}
	uv_pipe_init(&t->run->loop, &t->probe, 0);
	t->probe.data = t->probe_req.data = t;
	t->open_handles++;
	uv_pipe_connect(&t->probe_req, &t->probe, t->control_path, on_session_probe);
}

/* After the target's process is gone: did the host run the command? */
static void target_judge(struct target *t)
{
	int st = t->term_signal ? 128 + t->term_signal : (int)t->exit_status;

	if (t->failed || !t->spawned) {
		t->status = EXIT_SOME_FAILED;
		return;
	}
	if (t->local || t->hello) {
		t->status = st == 0 ? EXIT_ALL_OK : st == EXIT_USAGE ? EXIT_USAGE : EXIT_SOME_FAILED;
		/* A command with no interrupt handling of its own ends on the
		 * signal (ssh says 255); one that has one said what it undid. */
		if (t->run->signals > 0 && t->term_signal != SIGTERM &&
		    (st == 128 + SIGINT || (!t->local && st == 255)))
			error_vm(t->host, "interrupted: its qckpt ended on the interrupt");
		return;
	}
	t->status = EXIT_SOME_FAILED;
	if (t->run->signals > 0)
		error_vm(t->host, "interrupted before its qckpt started: nothing was done there");
	else if (st == 255)
		error_vm(t->host, "cannot reach it over ssh: %s; check the host name, that sshd runs there and the credential (ssh runs with BatchMode: it never asks for a password)",
			 t->early_err[0] ? t->early_err : "ssh failed");
	else if (st == 127)
		error_vm(t->host, "qckpt is not installed there (not in the PATH of a non-interactive ssh command): install it, or set QCKPT_REMOTE_QCKPT to its path there");
	else
		error_vm(t->host, "its qckpt cannot be driven from here (no 'hello': %s); install qckpt %s there",
			 t->early_err[0] ? t->early_err : "no answer", PACKAGE_VERSION);
}

/* ---- Ctrl-C: passed on to the hosts' qckpt -------------------------------- */

static int target_running(const struct target *t)
{
	return t->spawned && !t->exited;
}

/*
 * The first interrupt closes every child's standard input: the qckpt at
 * the other end takes that as its Ctrl-C (remote-serve.c), and what it says
 * while it undoes its work still comes back.  A further one stops waiting
 * for the hosts: their qckpt finish on their own (this host's child gets
 * the further Ctrl-C, as it would without -C).
 */
static void on_signal(uv_signal_t *h, int signum)
{
	struct remote_run *run = h->data;

	if (++run->signals == 1) {
		error("interrupted: passing the interrupt on to each host's qckpt, which undoes what it had started; waiting for them (Ctrl-C again: stop waiting)");
		for (int i = 0; i < run->ntargets; i++)
			if (target_running(&run->targets[i]))
				target_close(&run->targets[i], (uv_handle_t *)&run->targets[i].in);
		return;
	}
	for (int i = 0; i < run->ntargets; i++) {
		struct target *t = &run->targets[i];

		if (!target_running(t))
			continue;
		if (t->local) {
			uv_process_kill(&t->proc, SIGINT);
			continue;
		}
		error_vm(t->host, "no longer waiting for it: its qckpt got the interrupt and finishes there on its own; see 'qckpt list -C %s' or 'qckpt job -C %s list'",
			 t->host, t->host);
		uv_process_kill(&t->proc, SIGTERM);
	}
}

/* Once no child runs, the loop must be free to end. */
static void signals_maybe_close(struct remote_run *run)
{
	if (uv_is_closing((uv_handle_t *)&run->sigint))
		return;
	for (int i = 0; i < run->ntargets; i++)
		if (!run->targets[i].exited)
			return;
	uv_close((uv_handle_t *)&run->sigint, NULL);
	uv_close((uv_handle_t *)&run->sigterm, NULL);
}

/* ---- the table drawn here from the hosts' objects ------------------------- */

static char *cell_text(json_t *v)
{
	if (json_is_string(v))
		return xstrdup(json_string_value(v));
	if (json_is_integer(v))
		return xasprintf("%lld", (long long)json_integer_value(v));
	if (json_is_real(v))
		return xasprintf("%g", json_real_value(v));
	if (json_is_boolean(v))
		return xstrdup(json_is_true(v) ? "True" : "False");
	if (json_is_array(v))
		return xasprintf("%zu", json_array_size(v));
	if (json_is_object(v))
		return xstrdup(output_str(v, "Name", "-"));
	return xstrdup("-");
}

static void print_table(struct remote_run *run)
{
	const char *const *cols = run->entry->columns;
	const char *headers[16] = { "ComputerName" };
	char align[17] = "l";
	struct output_table *tab;
	size_t ncols = 0, i;
	json_t *o;

	while (cols[ncols] != NULL && ncols < 15) {
		headers[ncols + 1] = cols[ncols];
		align[ncols + 1] = 'l';
		ncols++;
	}
	align[ncols + 1] = '\0';
	tab = output_table_new(align, headers);
	json_array_foreach(run->objects, i, o) {
		char *cells[16];

		cells[0] = xstrdup(output_str(o, "ComputerName", "-"));
		for (size_t c = 0; c < ncols; c++)
			cells[c + 1] = cell_text(json_object_get(o, cols[c]));
		output_table_add(tab, (const char *const *)cells);
		for (size_t c = 0; c <= ncols; c++)
			free(cells[c]);
	}
	output_table_print(tab, stdout);
}

/* ---- stdin: VM objects routed by their ComputerName ---------------------- */

static struct target *target_add(struct remote_run *run, const char *host)
{
	struct target *t;

	for (int i = 0; i < run->ntargets; i++)
		if (strcmp(run->targets[i].host, host) == 0 ||
		    (run->targets[i].local && remote_is_local(host)))
			return &run->targets[i];
	run->targets = xrealloc(run->targets, (run->ntargets + 1) * sizeof *run->targets);
	t = &run->targets[run->ntargets++];
	memset(t, 0, sizeof *t);
	t->host = xstrdup(host);
	t->local = remote_is_local(host);
	if (t->local) {
		char name[256];

		if (gethostname(name, sizeof name) == 0) {
			name[sizeof name - 1] = '\0';
			free(t->host);
			t->host = xstrdup(name);
		}
	}
	return t;
}

static void target_input(struct target *t, const char *line)
{
	size_t n = strlen(line);

	t->input = xrealloc(t->input, t->input_len + n + 2);
	memcpy(t->input + t->input_len, line, n);
	t->input_len += n;
	t->input[t->input_len++] = '\n';
	t->input[t->input_len] = '\0';
}

/* Standard input, whole (read(2), so stdio's buffer stays empty for the
 * command that reads it again when it runs here). */
static char *read_stdin_all(size_t *len)
{
	size_t cap = 4096;
	char *buf = xmalloc(cap);
	ssize_t n;

	*len = 0;
	for (;;) {
		if (*len + 1 >= cap)
			buf = xrealloc(buf, cap *= 2);
		n = read(STDIN_FILENO, buf + *len, cap - *len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		*len += (size_t)n;
	}
	buf[*len] = '\0';
	return buf;
}

/*
 * Each line to the host its object names; names and objects without a
 * ComputerName to the -C hosts (this one when none).  Objects lose their
 * ComputerName on the way: the host they reach is theirs, and must not
 * route them again.
 */
static void route_stdin(struct remote_run *run, char *text, int default_targets)
{
	for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *s = line + strspn(line, " \t");
		json_t *o = *s == '{' ? json_loads(s, 0, NULL) : NULL;
		const char *host = json_string_value(json_object_get(o, "ComputerName"));

		if (host != NULL && *host) {
			struct target *t = target_add(run, host);
			char *text2;

			json_object_del(o, "ComputerName");
			text2 = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
			target_input(t, text2);
			free(text2);
		} else {
			for (int i = 0; i < default_targets; i++)
				target_input(&run->targets[i], s);
		}
		json_decref(o);
	}
}

/* Hosts that no line went to have nothing to do (with no input at all,
 * the first stays, so that the command says what it missed). */
static void drop_idle_targets(struct remote_run *run)
{
	int n = 0;

	for (int i = 0; i < run->ntargets; i++) {
		struct target *t = &run->targets[i];

		if (t->input == NULL && (n > 0 || i + 1 < run->ntargets)) {
			free(t->host);
			free(t->session);
			free(t->control_path);
			continue;
		}
		run->targets[n++] = *t;
	}
	run->ntargets = n;
}

/* The routed input of this host back on fd 0, for the command run here. */
static int stdin_from(const char *data, size_t len)
{
	FILE *f = tmpfile();

	if (f == NULL || (len && fwrite(data, 1, len, f) != len) || fflush(f) != 0 ||
	    lseek(fileno(f), 0, SEEK_SET) < 0 || dup2(fileno(f), STDIN_FILENO) < 0) {
		if (f)
			fclose(f);
		return error("cannot keep standard input for the command: %s", strerror(errno));
	}
	fclose(f);
	clearerr(stdin);
	return 0;
}

/* ---- sessions ------------------------------------------------------------- */

static int session_target(struct remote_run *run, const char *name)
{
	char *dir = remote_sessions_dir();
	char *path = xasprintf("%s/%s.json", dir, name);
	json_t *rec = registry_valid_name(name) ? json_load_file(path, 0, NULL) : NULL;
	const char *host = json_string_value(json_object_get(rec, "ComputerName"));
	const char *ctl = json_string_value(json_object_get(rec, "ControlPath"));
	int rc = 0;

	if (!registry_valid_name(name)) {
		rc = error("--session '%s' is not a session name; see 'qckpt session list'", name);
	} else if (host == NULL || ctl == NULL) {
		rc = error("--session %s: no such session (see 'qckpt session list'; open one with 'qckpt session open HOST --name %s')",
			   name, name);
	} else {
		struct target *t = target_add(run, host);

		free(t->session);
		free(t->control_path);
		t->session = xstrdup(name);
		t->control_path = xstrdup(ctl);
		t->local = 0;
	}
	json_decref(rec);
	free(path);
	free(dir);
	return rc;
}

/* --credential x509=DIR for the command run here (kept for the process:
 * vmconn reads it). */
static void set_tls_credential(const char *spec)
{
	static char dir[1024];
	const char *p = spec ? strstr(spec, "x509=") : NULL;

	if (p == NULL || (p != spec && p[-1] != ','))
		return;
	snprintf(dir, sizeof dir, "%.*s", (int)strcspn(p + 5, ","), p + 5);
	vmconn_tls_credential = dir;
}

/* ---- the run -------------------------------------------------------------- */

static void opts_free(struct remote_opts *o)
{
	args_free(o->hosts);
	args_free(o->sessions);
	args_free(o->rest);
}

static int run_targets(struct remote_run *run)
{
	int rc = EXIT_ALL_OK;

	uv_loop_init(&run->loop);
	run->objects = json_array();
	uv_signal_init(&run->loop, &run->sigint);
	uv_signal_init(&run->loop, &run->sigterm);
	run->sigint.data = run->sigterm.data = run;
	uv_signal_start(&run->sigint, on_signal, SIGINT);
	uv_signal_start(&run->sigterm, on_signal, SIGTERM);
	for (int i = 0; i < run->ntargets; i++)
		run->targets[i].run = run;
	for (int i = 0; i < run->ntargets; i++)
		target_start(&run->targets[i]);
	signals_maybe_close(run);
	uv_run(&run->loop, UV_RUN_DEFAULT);
	uv_loop_close(&run->loop);
	for (int i = 0; i < run->ntargets; i++) {
		struct target *t = &run->targets[i];

		target_judge(t);
		if (t->status > rc)
			rc = t->status;
	}
	if (run->table)
		print_table(run);
	fflush(stdout);
	json_decref(run->objects);
	return rc;
}

static void run_free(struct remote_run *run)
{
	for (int i = 0; i < run->ntargets; i++) {
		struct target *t = &run->targets[i];

		free(t->host);
		free(t->session);
		free(t->control_path);
		free(t->input);
		free(t->hello_version);
		free(t->doc.data);
	}
	free(run->targets);
	args_free(run->ssh_cred);
}

int remote_dispatch(const struct cmd_entry *entry, int *argc, char ***argv)
{
	struct remote_opts o = { 0 };
	struct remote_run run = { .entry = entry, .opts = &o };
	char *input = NULL;
	size_t input_len = 0;
	int rc = EXIT_USAGE, remote = 0, ncmd;

	if (split_options(entry, *argc, *argv, &o) < 0)
		goto out;
	if (o.credential && remote_credential_args(o.credential, &run.ssh_cred, &run.nssh_cred) < 0)
		goto out;
	for (int i = 0; i < o.nhosts; i++)
		target_add(&run, o.hosts[i]);
	for (int i = 0; i < o.nsessions; i++)
		if (session_target(&run, o.sessions[i]) < 0)
			goto out;
	if (run.ntargets == 0)
		target_add(&run, ".");
	ncmd = run.ntargets;
	if (o.reads_stdin && (entry->flags & CMD_F_STDIN_VMS) && !isatty(STDIN_FILENO)) {
		input = read_stdin_all(&input_len);
		route_stdin(&run, input, ncmd);
		drop_idle_targets(&run);
	}
	for (int i = 0; i < run.ntargets; i++)
		remote |= !run.targets[i].local;
	if (!remote) {
		/* Only this host: the command runs in this process, as ever;
		 * x509=DIR is for its tls: monitors. */
		set_tls_credential(o.credential);
		if (input != NULL && stdin_from(run.targets[0].input ? run.targets[0].input : "",
						run.targets[0].input_len) < 0)
			goto out;
		*argc = o.nrest;
		*argv = o.rest;
		o.rest = NULL;
		rc = REMOTE_RUN_HERE;
		goto out;
	}
	if (o.reads_stdin && input != NULL)
		for (int i = 0; i < run.ntargets; i++)
			if (run.targets[i].input == NULL)
				run.targets[i].input = xstrdup(""), run.targets[i].input_len = 0;
	run.table = entry->json_option != NULL && entry->columns != NULL && !o.has_json &&
		    !o.has_text_format;
	rc = run_targets(&run);
out:
	free(input);
	run_free(&run);
	opts_free(&o);
	return rc;
}
