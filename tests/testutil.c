/*
 * testutil.c: see testutil.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <uv.h>

#include "harness.h"
#include "testutil.h"

void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

struct run qckpt_argv(char *const *args)
{
	char *argv[128];
	int n = 0;
	struct run r = { 0 };

	argv[n++] = (char *)harness_qckpt();
	assert_non_null(argv[0]);
	for (; args[n - 1] != NULL && n < 126; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	assert_int_equal(harness_run(argv, &r.out, &r.err, &r.status), 0);
	if (r.err && r.err[0] && getenv("QCKPT_VERBOSE"))
		fprintf(stderr, "[qckpt stderr] %s", r.err);
	return r;
}

struct run qckpt(const char *first, ...)
{
	char *args[96];
	int n = 0;
	va_list ap;

	va_start(ap, first);
	for (const char *a = first; a != NULL && n < 94; a = va_arg(ap, const char *))
		args[n++] = (char *)a;
	va_end(ap);
	args[n] = NULL;
	return qckpt_argv(args);
}

struct run shell(const char *cmd)
{
	char *argv[] = { "/bin/sh", "-c", (char *)cmd, NULL };
	struct run r = { 0 };

	assert_int_equal(harness_run(argv, &r.out, &r.err, &r.status), 0);
	return r;
}

json_t *checkpoint_ok(const char *vm, const char *mode, const char *name,
		      char **err)
{
	char *mode_opt = fmt("--mode=%s", mode);
	struct run r = qckpt("checkpoint", "--passthru", mode_opt, vm, name, NULL);
	json_t *lines, *rec;

	if (r.status != 0)
		fail_msg("qckpt checkpoint %s failed (%d): %s", vm, r.status, r.err);
	lines = json_lines(r.out);
	assert_int_equal(json_array_size(lines), 1);
	rec = json_incref(json_array_get(lines, 0));
	json_decref(lines);
	assert_string_equal(jstr(rec, "Name"), name);
	assert_string_equal(jstr(rec, "VMName"), vm);
	if (err != NULL) {
		*err = r.err;
		r.err = NULL;
	}
	run_free(&r);
	free(mode_opt);
	return rec;
}

json_t *json_lines(const char *text)
{
	json_t *list = json_array();
	const char *p = text;

	while (p && *p) {
		size_t len = strcspn(p, "\n");
		json_t *o = json_loadb(p, len, 0, NULL);

		if (o == NULL)
			fail_msg("not a JSON object: %.*s", (int)len, p);
		json_array_append_new(list, o);
		p += len + (p[len] == '\n');
	}
	return list;
}

void job_started(const struct run *r, char *id, size_t len)
{
	if (r->status != 0)
		fail_msg("--as-job: exit %d: %s", r->status, r->err);
	snprintf(id, len, "%.*s", (int)strcspn(r->out, "\n"), r->out);
	assert_true(atoi(id) > 0);
}

void job_wait_completed(const char *id, unsigned seconds)
{
	char *timeout = fmt("%u", seconds);
	struct run r = qckpt("job", "wait", "--timeout", timeout, id, NULL);

	if (r.status != 0 || strstr(r.out, "Completed") == NULL)
		fail_msg("qckpt job wait %s: exit %d: %s%s", id, r.status, r.out, r.err);
	run_free(&r);
	free(timeout);
}

json_t *job_received_one(const char *id)
{
	struct run r = qckpt("job", "receive", id, NULL);
	json_t *lines, *one;

	if (r.status != 0)
		fail_msg("qckpt job receive %s: exit %d: %s", id, r.status, r.err);
	lines = json_lines(r.out);
	if (json_array_size(lines) != 1)
		fail_msg("qckpt job receive %s: %zu objects, not one: %s", id, json_array_size(lines), r.out);
	one = json_incref(json_array_get(lines, 0));
	json_decref(lines);
	run_free(&r);
	return one;
}

char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *text = NULL;
	size_t cap = 0;
	ssize_t n;

	if (f == NULL)
		fail_msg("cannot read %s", path);
	n = getdelim(&text, &cap, '\0', f);
	fclose(f);
	if (n < 0) {
		free(text);
		return strdup("");
	}
	return text;
}

const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

char *fmt(const char *f, ...)
{
	va_list ap;
	char *s;

	va_start(ap, f);
	assert_true(vasprintf(&s, f, ap) >= 0);
	va_end(ap);
	return s;
}

int group_files_setup(const char *program, char **registry, char **catalog)
{
	FILE *f;

	group_files_teardown(registry, catalog);
	*catalog = harness_path("catalog");
	if (mkdir(*catalog, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "mkdir %s: %s\n", *catalog, strerror(errno));
		return -1;
	}
	if (registry == NULL)
		return 0;
	*registry = harness_path("registry");
	f = fopen(*registry, "w");
	if (f == NULL) {
		fprintf(stderr, "%s: %s\n", *registry, strerror(errno));
		return -1;
	}
	fprintf(f, "# written by %s\n", program);
	fclose(f);
	setenv("QCKPT_REGISTRY", *registry, 1);
	return 0;
}

void group_files_teardown(char **registry, char **catalog)
{
	if (registry != NULL) {
		free(*registry);
		*registry = NULL;
	}
	free(*catalog);
	*catalog = NULL;
}

/* ---- a program in the background ---- */

static void child_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct child *c = h->data;

	b->base = c->errbuf + c->errlen;
	b->len = sizeof c->errbuf - 1 - c->errlen;
}

static void child_err_closed(uv_handle_t *h)
{
	((struct child *)h->data)->err_closed = true;
}

static void child_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct child *c = s->data;

	if (n > 0) {
		c->errlen += (size_t)n;
		c->errbuf[c->errlen] = '\0';
	} else if (n < 0) {
		uv_close((uv_handle_t *)s, child_err_closed);
	}
}

static void child_exit(uv_process_t *p, int64_t status, int sig)
{
	struct child *c = p->data;

	c->status = sig ? 128 + sig : (int)status;
	c->exited = true;
	uv_close((uv_handle_t *)p, NULL);
}

static void child_spawn(struct child *c, char **argv, unsigned flags)
{
	uv_stdio_container_t io[3] = {
		{ .flags = UV_IGNORE }, { .flags = UV_IGNORE },
		{ .flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&c->err },
	};
	uv_process_options_t opts = { .file = argv[0], .args = argv, .exit_cb = child_exit,
				      .stdio = io, .stdio_count = 3, .flags = flags };

	memset(c, 0, sizeof *c);
	uv_pipe_init(harness_loop(), &c->err, 0);
	c->err.data = c->proc.data = c;
	assert_int_equal(uv_spawn(harness_loop(), &c->proc, &opts), 0);
	uv_read_start((uv_stream_t *)&c->err, child_alloc, child_read);
}

void child_start(struct child *c, char **argv)
{
	child_spawn(c, argv, 0);
}

void child_start_own_group(struct child *c, char **argv)
{
	/* libuv's DETACHED is setsid(): a group (and session) of its own */
	child_spawn(c, argv, UV_PROCESS_DETACHED);
}

bool child_done(void *arg)
{
	struct child *c = arg;

	return c->exited && c->err_closed;
}

/* A CA, QEMU's server certificate (localhost, 127.0.0.1), a client
 * certificate it signed (client/), a client certificate of another CA
 * (stranger/, which holds our CA, so only QEMU's check refuses it) and a
 * directory trusting only that other CA (other/), made by certtool. */
static const char tls_script[] =
	"set -e; cd \"$1\"; mkdir -p server client stranger other\n"
	"printf 'cn = qckpt test CA\\nca\\ncert_signing_key\\nexpiration_days = 2\\n' >ca.info\n"
	"printf 'cn = localhost\\ndns_name = localhost\\nip_address = 127.0.0.1\\ntls_www_server\\nencryption_key\\nsigning_key\\nexpiration_days = 2\\n' >server.info\n"
	"printf 'cn = qckpt client\\ntls_www_client\\nencryption_key\\nsigning_key\\nexpiration_days = 2\\n' >client.info\n"
	"ct() { certtool \"$@\" 2>/dev/null >/dev/null; }\n"
	"ct --generate-privkey --outfile ca-key.pem\n"
	"ct --generate-self-signed --load-privkey ca-key.pem --template ca.info --outfile ca-cert.pem\n"
	"ct --generate-privkey --outfile other/ca-key.pem\n"
	"ct --generate-self-signed --load-privkey other/ca-key.pem --template ca.info --outfile other/ca-cert.pem\n"
	"ct --generate-privkey --outfile server/server-key.pem\n"
	"ct --generate-certificate --load-privkey server/server-key.pem --load-ca-certificate ca-cert.pem --load-ca-privkey ca-key.pem --template server.info --outfile server/server-cert.pem\n"
	"ct --generate-privkey --outfile client/client-key.pem\n"
	"ct --generate-certificate --load-privkey client/client-key.pem --load-ca-certificate ca-cert.pem --load-ca-privkey ca-key.pem --template client.info --outfile client/client-cert.pem\n"
	"ct --generate-privkey --outfile stranger/client-key.pem\n"
	"ct --generate-certificate --load-privkey stranger/client-key.pem --load-ca-certificate other/ca-cert.pem --load-ca-privkey other/ca-key.pem --template client.info --outfile stranger/client-cert.pem\n"
	"cp ca-cert.pem server/; cp ca-cert.pem client/; cp ca-cert.pem stranger/\n"
	"cp client/client-cert.pem client/client-key.pem other/\n";

char *tls_make_certs(const char *test)
{
	char *dir, *cmd;
	struct run r;

	if (system("command -v certtool >/dev/null") != 0) {
		fprintf(stderr, "%s: certtool is missing (gnutls-bin; scripts/install-deps installs it)\n",
			test);
		return NULL;
	}
	dir = harness_path("tls");
	mkdir(dir, 0700);
	/* the script through the environment: no quoting of it in a shell */
	cmd = fmt("sh -c 'eval \"$QCKPT_TLS_SCRIPT\"' sh '%s'", dir);
	setenv("QCKPT_TLS_SCRIPT", tls_script, 1);
	r = shell(cmd);
	free(cmd);
	unsetenv("QCKPT_TLS_SCRIPT");
	if (r.status != 0) {
		fprintf(stderr, "%s: certtool: %s\n", test, r.err);
		free(dir);
		dir = NULL;
	}
	run_free(&r);
	return dir;
}

bool child_said(void *arg)
{
	struct child_said *s = arg;

	return strstr(s->c->errbuf, s->text) != NULL || s->c->exited;
}
