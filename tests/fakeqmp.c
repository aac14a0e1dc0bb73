/*
 * fakeqmp.c: the scripted fake QMP server (see fakeqmp.h).
 *
 * It runs on the test's loop so tests stay single-threaded and never
 * sleep.  The script advances from a uv_check callback, which runs after
 * the loop polled for I/O: whatever was written in the previous iteration
 * has been read by the client before the next piece goes out, so "one
 * write per iteration" really is "one read per piece" on the other side.
 * Incoming bytes are split with the library's own framer; file
 * descriptors arrive through libuv's ipc pipe (recvmsg with SCM_RIGHTS)
 * and are taken with uv_accept.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qmp.h"
#include "framer.h"
#include "fakeqmp.h"

enum step_type { STEP_SEND, STEP_EXPECT, STEP_RELEASE, STEP_HANGUP };

struct step {
	enum step_type type;
	char *text;     /* SEND: bytes; EXPECT: reply template or NULL */
	size_t chunk;   /* SEND: piece size (0: all at once) */
	size_t offset;  /* SEND: bytes already written */
	char *command;  /* EXPECT */
	int hold;       /* EXPECT */
};

union stream {
	uv_handle_t handle;
	uv_stream_t stream;
	uv_pipe_t pipe;
	uv_tcp_t tcp;
};

struct fakeqmp {
	uv_loop_t *loop;
	char address[160];
	char path[120]; /* unix socket to unlink, or "" */
	int is_unix;
	union stream listener;
	union stream conn;
	int conn_open;
	uv_check_t check;
	struct qmp_framer *framer;
	int open_handles;
	int freeing;

	struct step *steps;
	size_t nsteps, cursor;

	json_t *commands;  /* every command received, in order */
	int *command_fds;
	size_t next_command; /* first command not yet matched by a step */
	int *fd_queue;     /* fds received, not yet attached to a command */
	size_t nfd_queue;
	char **held;
	size_t nheld;

	int connections;
	int peer_closed;
	int sentinels;     /* 0xFF bytes received */
	char error[256];
};

/* --- handles ------------------------------------------------------------ */

static void fake_release_memory(struct fakeqmp *fake)
{
	size_t i;

	for (i = 0; i < json_array_size(fake->commands); i++)
		if (fake->command_fds[i] >= 0)
			close(fake->command_fds[i]);
	for (i = 0; i < fake->nfd_queue; i++)
		close(fake->fd_queue[i]);
	for (i = 0; i < fake->nsteps; i++) {
		free(fake->steps[i].text);
		free(fake->steps[i].command);
	}
	for (i = 0; i < fake->nheld; i++)
		free(fake->held[i]);
	free(fake->held);
	free(fake->steps);
	free(fake->fd_queue);
	free(fake->command_fds);
	json_decref(fake->commands);
	qmp_framer_free(fake->framer);
	free(fake);
}

static void fake_handle_closed(uv_handle_t *handle)
{
	struct fakeqmp *fake = handle->data;

	if (--fake->open_handles == 0 && fake->freeing)
		fake_release_memory(fake);
}

static void fake_close(struct fakeqmp *fake, uv_handle_t *handle)
{
	if (!uv_is_closing(handle))
		uv_close(handle, fake_handle_closed);
}

static void fake_hangup_now(struct fakeqmp *fake)
{
	if (fake->conn_open) {
		fake_close(fake, &fake->conn.handle);
		uv_check_stop(&fake->check);
		fake->conn_open = 0;
	}
}

static void fake_fail(struct fakeqmp *fake, const char *fmt, const char *a,
		      const char *b)
{
	if (fake->error[0] == '\0')
		snprintf(fake->error, sizeof(fake->error), fmt, a, b);
}

/* --- writing -------------------------------------------------------------- */

struct fake_write {
	uv_write_t req;
	char text[];
};

static void on_fake_written(uv_write_t *req, int status)
{
	free(req);
}

static void fake_write(struct fakeqmp *fake, const char *text, size_t len)
{
	struct fake_write *w = malloc(sizeof(*w) + len + 1);
	uv_buf_t buf;

	memcpy(w->text, text, len);
	buf = uv_buf_init(w->text, len);
	if (uv_write(&w->req, &fake->conn.stream, &buf, 1, on_fake_written))
		free(w);
}

/* A value of the command as JSON text ("null" if absent), malloc'd. */
static char *fake_json_text(json_t *value)
{
	return value ? json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT)
		     : strdup("null");
}

/* The template with every %ID% replaced by the command's id, every %SYNC%
 * by its arguments' id (what guest-sync-delimited echoes) and every %JOBID%
 * by its arguments' job-id (what blockdev-create's events name), plus \r\n. */
static char *fake_render_reply(const char *template, json_t *command)
{
	json_t *args = json_object_get(command, "arguments");
	struct { const char *key; char *text; size_t len; } vars[] = {
		{ "%ID%", fake_json_text(json_object_get(command, "id")), 0 },
		{ "%SYNC%", fake_json_text(json_object_get(args, "id")), 0 },
		{ "%JOBID%", fake_json_text(json_object_get(args, "job-id")), 0 },
	};
	size_t nvars = sizeof vars / sizeof vars[0], most = 0, len = 0, i;
	char *out;
	const char *p;

	for (i = 0; i < nvars; i++) {
		vars[i].len = strlen(vars[i].text);
		if (vars[i].len > most)
			most = vars[i].len;
	}
	out = malloc(strlen(template) * (most + 1) + 3);
	for (p = template; *p != '\0';) {
		for (i = 0; i < nvars; i++)
			if (strncmp(p, vars[i].key, strlen(vars[i].key)) == 0)
				break;
		if (i < nvars) {
			memcpy(out + len, vars[i].text, vars[i].len);
			len += vars[i].len;
			p += strlen(vars[i].key);
		} else {
			out[len++] = *p++;
		}
	}
	strcpy(out + len, "\r\n");
	for (i = 0; i < nvars; i++)
		free(vars[i].text);
	return out;
}

/* --- the script ------------------------------------------------------------ */

static struct step *fake_add_step(struct fakeqmp *fake, enum step_type type)
{
	struct step *step;

	fake->steps = realloc(fake->steps,
			      (fake->nsteps + 1) * sizeof(*fake->steps));
	step = &fake->steps[fake->nsteps++];
	memset(step, 0, sizeof(*step));
	step->type = type;
	return step;
}

void fakeqmp_send_chunks(struct fakeqmp *fake, const char *raw, size_t chunk)
{
	struct step *step = fake_add_step(fake, STEP_SEND);

	step->text = strdup(raw);
	step->chunk = chunk;
}

void fakeqmp_send(struct fakeqmp *fake, const char *raw)
{
	fakeqmp_send_chunks(fake, raw, 0);
}

void fakeqmp_greet(struct fakeqmp *fake)
{
	fakeqmp_send(fake, FAKEQMP_GREETING);
}

void fakeqmp_negotiate(struct fakeqmp *fake)
{
	fakeqmp_greet(fake);
	fakeqmp_expect(fake, "qmp_capabilities", "{\"return\": {}, \"id\": %ID%}");
}

static void fake_add_expect(struct fakeqmp *fake, const char *command,
			    const char *reply, int hold)
{
	struct step *step = fake_add_step(fake, STEP_EXPECT);

	step->command = strdup(command);
	step->text = reply ? strdup(reply) : NULL;
	step->hold = hold;
}

void fakeqmp_expect(struct fakeqmp *fake, const char *command,
		    const char *reply)
{
	fake_add_expect(fake, command, reply, 0);
}

void fakeqmp_expect_hold(struct fakeqmp *fake, const char *command,
			 const char *reply)
{
	fake_add_expect(fake, command, reply, 1);
}

void fakeqmp_release(struct fakeqmp *fake)
{
	fake_add_step(fake, STEP_RELEASE);
}

void fakeqmp_hangup(struct fakeqmp *fake)
{
	fake_add_step(fake, STEP_HANGUP);
}

void fakeqmp_event(struct fakeqmp *fake, const char *name,
		   const char *data_json)
{
	char text[4096];

	if (data_json != NULL)
		snprintf(text, sizeof(text),
			 "{\"timestamp\": {\"seconds\": 1700000000, "
			 "\"microseconds\": 123456}, \"event\": \"%s\", "
			 "\"data\": %s}\r\n", name, data_json);
	else
		snprintf(text, sizeof(text),
			 "{\"timestamp\": {\"seconds\": 1700000000, "
			 "\"microseconds\": 123456}, \"event\": \"%s\"}\r\n",
			 name);
	fakeqmp_send(fake, text);
}

/* SEND: one piece; returns 1 when the step is complete. */
static int fake_step_send(struct fakeqmp *fake, struct step *step)
{
	size_t left = strlen(step->text) - step->offset;
	size_t n = step->chunk && step->chunk < left ? step->chunk : left;

	fake_write(fake, step->text + step->offset, n);
	step->offset += n;
	return step->offset == strlen(step->text);
}

/* EXPECT: returns -1 while waiting, 1 if it wrote, 0 if not. */
static int fake_step_expect(struct fakeqmp *fake, struct step *step)
{
	json_t *command;
	const char *name;
	char *reply;

	if (fake->next_command >= json_array_size(fake->commands))
		return -1;
	command = json_array_get(fake->commands, fake->next_command++);
	name = json_string_value(json_object_get(command, "execute"));
	if (name == NULL || strcmp(name, step->command) != 0)
		fake_fail(fake, "expected command %s, got %s", step->command,
			  name ? name : "(none)");
	if (step->text == NULL)
		return 0;
	reply = fake_render_reply(step->text, command);
	if (step->hold) {
		fake->held = realloc(fake->held,
				     (fake->nheld + 1) * sizeof(*fake->held));
		fake->held[fake->nheld++] = reply;
		return 0;
	}
	fake_write(fake, reply, strlen(reply));
	free(reply);
	return 1;
}

static void fake_step_release(struct fakeqmp *fake)
{
	while (fake->nheld > 0) {
		char *reply = fake->held[--fake->nheld];

		fake_write(fake, reply, strlen(reply));
		free(reply);
	}
}

/* Run steps until one has written something or must wait. */
static void on_fake_check(uv_check_t *check)
{
	struct fakeqmp *fake = check->data;

	while (fake->conn_open && fake->cursor < fake->nsteps) {
		struct step *step = &fake->steps[fake->cursor];
		int wrote = 1;

		switch (step->type) {
		case STEP_SEND:
			if (fake_step_send(fake, step))
				fake->cursor++;
			return;
		case STEP_EXPECT:
			wrote = fake_step_expect(fake, step);
			if (wrote < 0)
				return;
			fake->cursor++;
			break;
		case STEP_RELEASE:
			fake_step_release(fake);
			fake->cursor++;
			break;
		case STEP_HANGUP:
			fake->cursor++;
			fake_hangup_now(fake);
			return;
		}
		if (wrote)
			return;
	}
}

/* --- reading ---------------------------------------------------------------- */

static void on_fake_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	struct fakeqmp *fake = handle->data;
	size_t len = 0;

	buf->base = qmp_framer_reserve(fake->framer, &len);
	buf->len = buf->base ? len : 0;
}

static void on_fd_pipe_closed(uv_handle_t *handle)
{
	free(handle);
}

/* Take the descriptors libuv received with the bytes (SCM_RIGHTS). */
static void fake_take_fds(struct fakeqmp *fake)
{
	while (fake->is_unix && uv_pipe_pending_count(&fake->conn.pipe) > 0) {
		uv_pipe_t *holder = malloc(sizeof(*holder));
		uv_os_fd_t fd = -1;

		uv_pipe_init(fake->loop, holder, 0);
		if (uv_accept(&fake->conn.stream, (uv_stream_t *)holder) == 0 &&
		    uv_fileno((uv_handle_t *)holder, &fd) == 0) {
			fake->fd_queue = realloc(fake->fd_queue,
				(fake->nfd_queue + 1) * sizeof(int));
			fake->fd_queue[fake->nfd_queue++] = dup(fd);
		}
		uv_close((uv_handle_t *)holder, on_fd_pipe_closed);
	}
}

/* A descriptor belongs to the first command completed after it arrived. */
static void fake_record_command(struct fakeqmp *fake, json_t *msg)
{
	size_t n = json_array_size(fake->commands);
	int fd = -1;

	if (fake->nfd_queue > 0) {
		fd = fake->fd_queue[0];
		memmove(fake->fd_queue, fake->fd_queue + 1,
			--fake->nfd_queue * sizeof(int));
	}
	fake->command_fds = realloc(fake->command_fds, (n + 1) * sizeof(int));
	fake->command_fds[n] = fd;
	json_array_append_new(fake->commands, msg);
}

static void on_fake_read(uv_stream_t *stream, ssize_t nread,
			 const uv_buf_t *buf)
{
	struct fakeqmp *fake = stream->data;
	json_t *msg;
	int r;

	if (nread < 0) {
		fake->peer_closed = 1;
		fake_hangup_now(fake);
		return;
	}
	for (ssize_t i = 0; i < nread; i++)
		fake->sentinels += buf->base[i] == (char)0xFF;
	qmp_framer_commit(fake->framer, (size_t)nread);
	fake_take_fds(fake);
	while ((r = qmp_framer_next(fake->framer, &msg, NULL, NULL)) > 0)
		fake_record_command(fake, msg);
	if (r < 0)
		fake_fail(fake, "client sent something that is not QMP%s%s", "",
			  "");
}

/* --- listening ------------------------------------------------------------- */

static int fake_init_stream(struct fakeqmp *fake, union stream *s, int ipc)
{
	int err = fake->is_unix ? uv_pipe_init(fake->loop, &s->pipe, ipc)
				: uv_tcp_init(fake->loop, &s->tcp);

	s->handle.data = fake;
	fake->open_handles++;
	return err;
}

static void on_fake_connection(uv_stream_t *listener, int status)
{
	struct fakeqmp *fake = listener->data;
	union stream *extra;

	if (status < 0)
		return;
	if (fake->connections++ > 0) {
		/* One client at a time, like a QMP monitor: refuse the rest. */
		extra = malloc(sizeof(*extra));
		if (fake->is_unix)
			uv_pipe_init(fake->loop, &extra->pipe, 0);
		else
			uv_tcp_init(fake->loop, &extra->tcp);
		uv_accept(listener, &extra->stream);
		uv_close(&extra->handle, on_fd_pipe_closed);
		return;
	}
	fake_init_stream(fake, &fake->conn, 1);
	uv_accept(listener, &fake->conn.stream);
	fake->conn_open = 1;
	uv_read_start(&fake->conn.stream, on_fake_alloc, on_fake_read);
	uv_check_start(&fake->check, on_fake_check);
}

static int fake_listen_tcp(struct fakeqmp *fake)
{
	struct sockaddr_storage ss;
	struct sockaddr_in sin;
	int len = sizeof(ss);

	uv_ip4_addr("127.0.0.1", 0, &sin);
	if (uv_tcp_bind(&fake->listener.tcp, (struct sockaddr *)&sin, 0) ||
	    uv_tcp_getsockname(&fake->listener.tcp, (struct sockaddr *)&ss,
			       &len))
		return -1;
	snprintf(fake->address, sizeof(fake->address), "tcp:127.0.0.1:%d",
		 ntohs(((struct sockaddr_in *)&ss)->sin_port));
	return 0;
}

struct fakeqmp *fakeqmp_new(uv_loop_t *loop, const char *address)
{
	struct fakeqmp *fake = calloc(1, sizeof(*fake));
	int err;

	fake->loop = loop;
	fake->commands = json_array();
	fake->framer = qmp_framer_new(0);
	/* Like qemu-ga: a 0xFF from the client drops its partial input. */
	qmp_framer_set_sentinel(fake->framer, 1);
	fake->is_unix = strncmp(address, "tcp:", 4) != 0;
	uv_check_init(loop, &fake->check);
	fake->check.data = fake;
	fake->open_handles++;
	fake_init_stream(fake, &fake->listener, 0);
	if (fake->is_unix) {
		const char *path = address + (strncmp(address, "unix:", 5) ? 0 : 5);

		snprintf(fake->path, sizeof(fake->path), "%s", path);
		snprintf(fake->address, sizeof(fake->address), "unix:%s", path);
		unlink(path);
		err = uv_pipe_bind(&fake->listener.pipe, path);
	} else {
		err = fake_listen_tcp(fake);
	}
	if (err == 0)
		err = uv_listen(&fake->listener.stream, 4, on_fake_connection);
	if (err) {
		fprintf(stderr, "fakeqmp: cannot listen on %s\n", address);
		fakeqmp_free(fake);
		return NULL;
	}
	return fake;
}

void fakeqmp_free(struct fakeqmp *fake)
{
	fake->freeing = 1;
	fake_hangup_now(fake);
	fake_close(fake, &fake->listener.handle);
	fake_close(fake, (uv_handle_t *)&fake->check);
	if (fake->path[0] != '\0')
		unlink(fake->path);
}

const char *fakeqmp_address(const struct fakeqmp *fake)
{
	return fake->address;
}

int fakeqmp_finished(const struct fakeqmp *fake)
{
	return fake->cursor == fake->nsteps;
}

const char *fakeqmp_error(const struct fakeqmp *fake)
{
	return fake->error[0] ? fake->error : NULL;
}

int fakeqmp_connections(const struct fakeqmp *fake)
{
	return fake->connections;
}

int fakeqmp_sentinels(const struct fakeqmp *fake)
{
	return fake->sentinels;
}

int fakeqmp_peer_closed(const struct fakeqmp *fake)
{
	return fake->peer_closed;
}

size_t fakeqmp_command_count(const struct fakeqmp *fake)
{
	return json_array_size(fake->commands);
}

json_t *fakeqmp_command(const struct fakeqmp *fake, size_t i)
{
	return json_array_get(fake->commands, i);
}

int fakeqmp_command_fd(const struct fakeqmp *fake, size_t i)
{
	return i < json_array_size(fake->commands) ? fake->command_fds[i] : -1;
}
