/*
 * client.c: the QMP connection (see qmp.h): address parsing, connecting,
 * greeting and capability negotiation, sending commands (with an optional
 * file descriptor), matching replies by id, events, timeouts and teardown.
 *
 * Lifetime rules, because callbacks may call anything:
 * - every user callback runs between callback_enter/callback_leave, and
 *   after one returns the code re-checks client->state before going on;
 * - qmp_client_close never frees: the memory is released (and close_cb
 *   called) from the last libuv close callback; the connect timer is
 *   closed last, and only once no user callback is on the stack, so that
 *   moment cannot come while this file is still using the client;
 * - a pending command is unlinked before its callback runs, so every path
 *   that completes commands (reply, timeout, disconnect, close) completes
 *   each exactly once.
 */
#include <fcntl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/un.h>

#include "qmp.h"
#include "framer.h"
#include "tls.h"

struct qmp_pending {
	struct qmp_pending *prev, *next;
	char id[40];
	uint64_t deadline; /* uv_now() in ms; 0: no timeout */
	qmp_reply_cb cb;
	void *arg;
};

/* One write in flight; the fd travels in a temporary pipe handle. */
struct qmp_write {
	uv_write_t req;
	qmp_client *client;
	uv_pipe_t *fd_pipe;
	size_t len;
	char text[];
};

struct qmp_address {
	int is_unix;
	int is_tls;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char host[256];
	char port[8];
};

static void client_fail(qmp_client *client, int status);
static void client_handle_closed(uv_handle_t *handle);

/* --- callbacks and teardown ------------------------------------------- */

static void client_maybe_finish(qmp_client *client)
{
	if (client->state != QMP_STATE_CLOSING || client->open_handles > 0 ||
	    client->callback_depth > 0)
		return;
	qmp_framer_free(client->framer);
	client->framer = NULL;
	qmp_tls_free(client->tls);
	client->tls = NULL;
	json_decref(client->greeting);
	client->greeting = NULL;
	client->state = QMP_STATE_CLOSED;
	if (client->on_close != NULL)
		client->on_close(client); /* may free the client: touch nothing after */
}

/* The connect timer is the last handle closed, once no callback runs. */
static void client_close_last_handle(qmp_client *client)
{
	if (client->state == QMP_STATE_CLOSING && client->callback_depth == 0 &&
	    !uv_is_closing((uv_handle_t *)&client->connect_timer))
		uv_close((uv_handle_t *)&client->connect_timer,
			 client_handle_closed);
}

static void client_handle_closed(uv_handle_t *handle)
{
	qmp_client *client = handle->data;

	client->open_handles--;
	client_maybe_finish(client);
}

static void callback_enter(qmp_client *client)
{
	client->callback_depth++;
}

static void callback_leave(qmp_client *client)
{
	if (--client->callback_depth == 0)
		client_close_last_handle(client);
}

static int client_is_live(const qmp_client *client)
{
	return client->state >= QMP_STATE_CONNECTING &&
	       client->state <= QMP_STATE_READY;
}

static void client_trace(qmp_client *client, char dir, const char *text,
			 size_t len)
{
	if (client->on_trace == NULL)
		return;
	callback_enter(client);
	client->on_trace(client, dir, text, len, client->on_trace_arg);
	callback_leave(client);
}

/* Report the end of the connect sequence, once. */
static void client_connect_done(qmp_client *client, int status)
{
	qmp_connect_cb cb = client->on_connect;

	client->on_connect = NULL;
	uv_timer_stop(&client->connect_timer);
	if (cb == NULL)
		return;
	callback_enter(client);
	cb(client, status);
	callback_leave(client);
}

/* --- pending commands ------------------------------------------------- */

static void pending_link(qmp_client *client, struct qmp_pending *p)
{
	p->next = NULL;
	p->prev = client->pending_tail;
	if (client->pending_tail != NULL)
		client->pending_tail->next = p;
	else
		client->pending = p;
	client->pending_tail = p;
}

static void pending_unlink(qmp_client *client, struct qmp_pending *p)
{
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		client->pending = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	else
		client->pending_tail = p->prev;
	p->prev = p->next = NULL;
}

static struct qmp_pending *pending_find(qmp_client *client, const char *id)
{
	struct qmp_pending *p;

	for (p = client->pending; p != NULL; p = p->next)
		if (strcmp(p->id, id) == 0)
			return p;
	return NULL;
}

/* p must be unlinked already; it is freed before the callback runs. */
static void pending_complete(qmp_client *client, struct qmp_pending *p,
			     int status, json_t *result,
			     const struct qmp_error *error)
{
	qmp_reply_cb cb = p->cb;
	void *arg = p->arg;

	free(p);
	if (cb == NULL)
		return;
	callback_enter(client);
	cb(client, status, result, error, arg);
	callback_leave(client);
}

static void pending_fail_all(qmp_client *client, int status)
{
	struct qmp_pending *p;

	while ((p = client->pending) != NULL) {
		pending_unlink(client, p);
		pending_complete(client, p, status, NULL, NULL);
	}
}

/* --- command timeouts: one timer, armed for the earliest deadline ------ */

static void on_command_timeout(uv_timer_t *timer);

static void command_timer_arm(qmp_client *client, uint64_t deadline)
{
	uint64_t now = uv_now(client->loop);
	uint64_t delay = deadline > now ? deadline - now : 0;
	uv_timer_t *timer = &client->command_timer;

	if (uv_is_closing((uv_handle_t *)timer))
		return;
	if (!uv_is_active((uv_handle_t *)timer) ||
	    delay < uv_timer_get_due_in(timer))
		uv_timer_start(timer, on_command_timeout, delay, 0);
}

static struct qmp_pending *pending_first_expired(qmp_client *client,
						 uint64_t now)
{
	struct qmp_pending *p;

	for (p = client->pending; p != NULL; p = p->next)
		if (p->deadline != 0 && p->deadline <= now)
			return p;
	return NULL;
}

static void on_command_timeout(uv_timer_t *timer)
{
	qmp_client *client = timer->data;
	uint64_t now = uv_now(client->loop);
	struct qmp_pending *p;

	while (client->state == QMP_STATE_READY &&
	       (p = pending_first_expired(client, now)) != NULL) {
		/* Its id is forgotten: a late reply is ignored as unknown. */
		pending_unlink(client, p);
		pending_complete(client, p, QMP_ETIMEDOUT, NULL, NULL);
	}
	if (client->state != QMP_STATE_READY)
		return;
	for (p = client->pending; p != NULL; p = p->next)
		if (p->deadline != 0)
			command_timer_arm(client, p->deadline);
}

/*
 * The peer hanging up, however the kernel reports it, is "closed": QEMU
 * exiting after "quit" often shows up as ECONNRESET (it leaves our
 * trailing newline unread).
 */
static int closed_status(int err)
{
	if (err == UV_EOF || err == UV_ECONNRESET || err == UV_EPIPE)
		return QMP_ECLOSED;
	return err;
}

/* --- sending ---------------------------------------------------------- */

static void on_fd_pipe_closed(uv_handle_t *handle)
{
	qmp_client *client = handle->data;

	free(handle);
	client->open_handles--;
	client_maybe_finish(client);
}

/*
 * Wrap a duplicate of fd in a pipe handle, the form uv_write2 sends with
 * SCM_RIGHTS.  uv_pipe_open makes the fd non-blocking, which would also
 * change the caller's open file (dup shares it), so the flags are put back:
 * the handle is only ever sent, never read or written.
 */
static int client_open_fd_pipe(qmp_client *client, int fd, uv_pipe_t **out)
{
	uv_pipe_t *fd_pipe;
	int copy, flags, err;

	copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (copy < 0)
		return -errno;
	fd_pipe = malloc(sizeof(*fd_pipe));
	if (fd_pipe == NULL) {
		close(copy);
		return UV_ENOMEM;
	}
	uv_pipe_init(client->loop, fd_pipe, 0);
	fd_pipe->data = client;
	client->open_handles++;
	flags = fcntl(copy, F_GETFL);
	err = uv_pipe_open(fd_pipe, copy);
	if (flags >= 0)
		fcntl(copy, F_SETFL, flags);
	if (err) {
		close(copy);
		uv_close((uv_handle_t *)fd_pipe, on_fd_pipe_closed);
		return err;
	}
	*out = fd_pipe;
	return 0;
}

static void on_written(uv_write_t *req, int status)
{
	struct qmp_write *w = (struct qmp_write *)req;
	qmp_client *client = w->client;

	if (w->fd_pipe != NULL)
		uv_close((uv_handle_t *)w->fd_pipe, on_fd_pipe_closed);
	free(w);
	if (status < 0 && status != UV_ECANCELED && client_is_live(client))
		client_fail(client, closed_status(status));
}

/* msg as one line; with sentinel, a 0xFF byte goes first (not traced). */
static int client_write_ex(qmp_client *client, json_t *msg, int fd,
			   int sentinel)
{
	size_t pre = sentinel ? 1 : 0;
	struct qmp_write *w;
	uv_buf_t buf;
	char *text;
	size_t len;
	int err;

	text = json_dumps(msg, JSON_COMPACT);
	if (text == NULL)
		return UV_ENOMEM;
	len = strlen(text);
	w = calloc(1, sizeof(*w) + pre + len + 1);
	if (w == NULL) {
		free(text);
		return UV_ENOMEM;
	}
	if (sentinel)
		w->text[0] = (char)0xFF;
	memcpy(w->text + pre, text, len);
	free(text);
	w->text[pre + len] = '\n';
	w->len = pre + len;
	w->client = client;
	if (client->tls != NULL) {
		/* TLS carries no file descriptors; GnuTLS writes the records. */
		err = fd >= 0 ? QMP_ENOTSUP : qmp_tls_send(client->tls, w->text, pre + len + 1);
		/* QEMU (7.2 and later, TLS 1.2 and 1.3) acts on a TLS record
		 * only when the next one arrives: each command is followed by
		 * a record holding a newline, which JSON ignores. */
		if (!err)
			err = qmp_tls_send(client->tls, "\n", 1);
		if (!err)
			client_trace(client, '>', w->text + pre, len);
		free(w);
		return err;
	}
	if (fd >= 0 && (err = client_open_fd_pipe(client, fd, &w->fd_pipe))) {
		free(w);
		return err;
	}
	buf = uv_buf_init(w->text, pre + len + 1);
	err = uv_write2(&w->req, &client->io.stream, &buf, 1,
			(uv_stream_t *)w->fd_pipe, on_written);
	if (err) {
		if (w->fd_pipe != NULL)
			uv_close((uv_handle_t *)w->fd_pipe, on_fd_pipe_closed);
		free(w);
		return err;
	}
	client_trace(client, '>', w->text + pre, len);
	return 0;
}

static int client_write(qmp_client *client, json_t *msg, int fd)
{
	return client_write_ex(client, msg, fd, 0);
}

static json_t *command_message(const char *command, json_t *args,
			       const char *id)
{
	json_t *msg = json_object();

	if (msg == NULL) {
		json_decref(args);
		return NULL;
	}
	if (json_object_set_new(msg, "execute", json_string(command)) ||
	    (args != NULL && json_object_set_new(msg, "arguments", args)) ||
	    json_object_set_new(msg, "id", json_string(id))) {
		json_decref(msg);
		return NULL;
	}
	return msg;
}

/*
 * Send without the READY check (also used for qmp_capabilities).  The
 * command is linked before it is written so that a trace callback closing
 * the client still completes it, exactly once.
 */
static int client_send_command(qmp_client *client, const char *command,
			       json_t *args, int fd, unsigned timeout_ms,
			       qmp_reply_cb cb, void *arg)
{
	struct qmp_pending *p;
	uint64_t deadline = 0;
	json_t *msg;
	int err;

	if (command == NULL || (args != NULL && !json_is_object(args))) {
		json_decref(args);
		return UV_EINVAL;
	}
	if (fd >= 0 && !client->is_unix) {
		json_decref(args);
		return QMP_ENOTSUP;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		json_decref(args);
		return UV_ENOMEM;
	}
	snprintf(p->id, sizeof(p->id), "%s%" PRIu64, client->id_prefix,
		 ++client->next_id);
	msg = command_message(command, args, p->id);
	if (msg == NULL) {
		free(p);
		return UV_ENOMEM;
	}
	p->cb = cb;
	p->arg = arg;
	if (timeout_ms != 0)
		p->deadline = deadline = uv_now(client->loop) + timeout_ms;
	pending_link(client, p);
	err = client_write(client, msg, fd);
	json_decref(msg);
	if (err) {
		pending_unlink(client, p);
		free(p);
		return err;
	}
	/* A trace callback may have closed the client (and completed p). */
	if (deadline != 0 && client->state == QMP_STATE_READY)
		command_timer_arm(client, deadline);
	return 0;
}

/* --- receiving -------------------------------------------------------- */

static void on_capabilities(qmp_client *client, int status, json_t *result,
			    const struct qmp_error *error, void *arg)
{
	if (client->state != QMP_STATE_NEGOTIATING)
		return; /* torn down: the connect callback already ran */
	if (status != 0) {
		client_fail(client, status);
		return;
	}
	client->state = QMP_STATE_READY;
	client_connect_done(client, 0);
}

static void format_version(qmp_client *client, const char *package)
{
	size_t n;

	n = (size_t)snprintf(client->version_string,
			     sizeof(client->version_string), "%d.%d.%d",
			     client->version_major, client->version_minor,
			     client->version_micro);
	while (package != NULL && *package == ' ')
		package++;
	if (package != NULL && *package != '\0' &&
	    n < sizeof(client->version_string))
		snprintf(client->version_string + n,
			 sizeof(client->version_string) - n, " (%s)", package);
}

/* {"QMP": {"version": {"qemu": {major, minor, micro}, "package"}, ...}} */
static int client_on_greeting(qmp_client *client, json_t *msg)
{
	json_t *qmp = json_object_get(msg, "QMP");
	json_t *version = json_object_get(qmp, "version");
	json_t *qemu = json_object_get(version, "qemu");
	json_t *major = json_object_get(qemu, "major");
	json_t *minor = json_object_get(qemu, "minor");
	json_t *micro = json_object_get(qemu, "micro");

	if (!json_is_object(qmp) || !json_is_integer(major) ||
	    !json_is_integer(minor) || !json_is_integer(micro))
		return QMP_EPROTO;
	client->greeting = json_incref(qmp);
	client->version_major = (int)json_integer_value(major);
	client->version_minor = (int)json_integer_value(minor);
	client->version_micro = (int)json_integer_value(micro);
	format_version(client,
		       json_string_value(json_object_get(version, "package")));
	client->state = QMP_STATE_NEGOTIATING;
	return client_send_command(client, "qmp_capabilities", NULL, -1, 0,
				   on_capabilities, NULL);
}

/* Guest agent: everything but the answer to our guest-sync-delimited is
 * stale (an earlier client's replies, the error for our 0xFF) and dropped. */
static int client_on_sync(qmp_client *client, json_t *msg)
{
	json_t *ret = json_object_get(msg, "return");

	if (!json_is_integer(ret) || json_integer_value(ret) != client->sync_id)
		return 0;
	client->state = QMP_STATE_READY;
	client_connect_done(client, 0);
	return 0;
}

/* A fresh random id (53 bits, so any JSON reader keeps it exact). */
static int64_t sync_id_new(void)
{
	uint64_t r = 0;

	if (uv_random(NULL, NULL, &r, sizeof(r), 0, NULL) != 0)
		r = (uint64_t)uv_hrtime() ^ ((uint64_t)getpid() << 32);
	r &= (UINT64_C(1) << 53) - 1;
	return r ? (int64_t)r : 1;
}

static int client_start_sync(qmp_client *client)
{
	json_t *msg;
	int err;

	client->sync_id = sync_id_new();
	msg = json_pack("{s:s, s:{s:I}}", "execute", "guest-sync-delimited",
			"arguments", "id", (json_int_t)client->sync_id);
	if (msg == NULL)
		return UV_ENOMEM;
	qmp_framer_skip_to_sentinel(client->framer);
	err = client_write_ex(client, msg, -1, 1);
	json_decref(msg);
	return err;
}

static void client_on_event(qmp_client *client, json_t *msg, const char *name)
{
	json_t *data = json_object_get(msg, "data");
	json_t *timestamp = json_object_get(msg, "timestamp");
	struct qmp_timestamp ts;
	json_t *empty = NULL;

	if (client->on_event == NULL)
		return;
	ts.seconds = json_integer_value(json_object_get(timestamp, "seconds"));
	ts.microseconds =
		json_integer_value(json_object_get(timestamp, "microseconds"));
	if (data == NULL)
		data = empty = json_object();
	callback_enter(client);
	client->on_event(client, name, data, &ts, client->on_event_arg);
	callback_leave(client);
	json_decref(empty);
}

static void client_on_reply(qmp_client *client, json_t *msg)
{
	const char *id = json_string_value(json_object_get(msg, "id"));
	json_t *error = json_object_get(msg, "error");
	struct qmp_pending *p;
	struct qmp_error qerr;

	/* Unknown ids (e.g. replies after a timeout) were traced; drop them.
	 * The agent answers in order: one without an id is the oldest's. */
	if (id == NULL && client->agent)
		p = client->pending;
	else
		p = id != NULL ? pending_find(client, id) : NULL;
	if (p == NULL)
		return;
	pending_unlink(client, p);
	if (error == NULL) {
		pending_complete(client, p, 0, json_object_get(msg, "return"),
				 NULL);
		return;
	}
	qerr.klass = json_string_value(json_object_get(error, "class"));
	qerr.desc = json_string_value(json_object_get(error, "desc"));
	if (qerr.klass == NULL)
		qerr.klass = "";
	if (qerr.desc == NULL)
		qerr.desc = "";
	pending_complete(client, p, QMP_ECOMMAND, NULL, &qerr);
}

static int client_dispatch(qmp_client *client, json_t *msg)
{
	const char *event;

	if (client->state == QMP_STATE_GREETING)
		return client_on_greeting(client, msg);
	if (client->state == QMP_STATE_SYNCING)
		return client_on_sync(client, msg);
	event = json_string_value(json_object_get(msg, "event"));
	if (event != NULL)
		client_on_event(client, msg, event);
	else if (json_object_get(msg, "return") != NULL ||
		 json_object_get(msg, "error") != NULL)
		client_on_reply(client, msg);
	return 0;
}

static void client_process(qmp_client *client)
{
	const char *raw;
	size_t raw_len;
	json_t *msg;
	int r;

	while (client_is_live(client)) {
		r = qmp_framer_next(client->framer, &msg, &raw, &raw_len);
		if (r == 0)
			break;
		if (r < 0) {
			client_fail(client, r);
			break;
		}
		client_trace(client, '<', raw, raw_len);
		r = client_is_live(client) ? client_dispatch(client, msg) : 0;
		json_decref(msg);
		if (r < 0)
			client_fail(client, r);
	}
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	qmp_client *client = handle->data;
	size_t len = 0;

	buf->base = qmp_framer_reserve(client->framer, &len);
	buf->len = buf->base != NULL ? len : 0; /* 0: libuv reports ENOBUFS */
}

/* TLS: libuv reads ciphertext into a buffer of ours; GnuTLS decrypts into
 * the framer. */
static void on_alloc_tls(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	buf->base = malloc(suggested);
	buf->len = buf->base != NULL ? suggested : 0;
}

static int tls_pump(qmp_client *client)
{
	for (;;) {
		size_t len = 0;
		char *room = qmp_framer_reserve(client->framer, &len);
		ssize_t n;

		if (room == NULL)
			return QMP_ETOOBIG;
		n = qmp_tls_recv(client->tls, room, len, client->tls_error,
				 sizeof client->tls_error);
		if (n <= 0)
			return (int)n;
		qmp_framer_commit(client->framer, (size_t)n);
	}
}

static void tls_refused(qmp_client *client)
{
	if (!client->tls_error[0])
		snprintf(client->tls_error, sizeof client->tls_error,
			 "QEMU ended the TLS session before its greeting: it refused the client certificate in %.300s (not signed by the CA it trusts?)",
			 client->tls_dir);
}

static void on_read_tls(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	qmp_client *client = stream->data;
	int err = 0;

	if (nread > 0)
		qmp_tls_feed(client->tls, buf->base, (size_t)nread);
	free(buf->base);
	if (nread < 0) {
		/* QEMU verifies our certificate after TLS 1.3's handshake is
		 * done on our side: it refuses by closing before its greeting. */
		if (client->state == QMP_STATE_GREETING)
			tls_refused(client);
		client_fail(client, client->state == QMP_STATE_GREETING ? QMP_ETLS
					: closed_status((int)nread));
		return;
	}
	if (client->tls_handshaking) {
		err = qmp_tls_handshake(client->tls, client->tls_error, sizeof client->tls_error);
		if (err == 1)
			return;
		client->tls_handshaking = 0;
	}
	if (err == 0)
		err = tls_pump(client);
	if (err == QMP_ECLOSED && client->state == QMP_STATE_GREETING)
		tls_refused(client);
	if (err < 0) {
		client_fail(client, err == QMP_ECLOSED && client->state == QMP_STATE_GREETING
				    ? QMP_ETLS : err);
		return;
	}
	client_process(client);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	qmp_client *client = stream->data;

	if (nread < 0) {
		client_fail(client, closed_status((int)nread));
		return;
	}
	qmp_framer_commit(client->framer, (size_t)nread);
	client_process(client);
}

/* --- connecting ------------------------------------------------------- */

static int parse_port(const char *text, char *port, size_t size)
{
	char *end;
	long value;

	if (*text < '0' || *text > '9')
		return QMP_EADDR;
	value = strtol(text, &end, 10);
	if (*end != '\0' || value < 1 || value > 65535)
		return QMP_EADDR;
	snprintf(port, size, "%ld", value);
	return 0;
}

/* "tcp:HOST:PORT", HOST possibly "[v6 address]". */
static int parse_tcp(const char *rest, struct qmp_address *addr)
{
	const char *colon = strrchr(rest, ':');
	size_t host_len;

	if (colon == NULL)
		return QMP_EADDR;
	host_len = (size_t)(colon - rest);
	if (host_len >= 2 && rest[0] == '[' && rest[host_len - 1] == ']') {
		rest++;
		host_len -= 2;
	}
	if (host_len == 0 || host_len >= sizeof(addr->host) ||
	    memchr(rest, '[', host_len) || memchr(rest, ']', host_len))
		return QMP_EADDR;
	memcpy(addr->host, rest, host_len);
	addr->host[host_len] = '\0';
	return parse_port(colon + 1, addr->port, sizeof(addr->port));
}

static int parse_address(const char *address, struct qmp_address *addr)
{
	memset(addr, 0, sizeof(*addr));
	if (address == NULL)
		return QMP_EADDR;
	if (strncmp(address, "tcp:", 4) == 0)
		return parse_tcp(address + 4, addr);
	if (strncmp(address, "tls:", 4) == 0) {
		addr->is_tls = 1;
		return parse_tcp(address + 4, addr);
	}
	if (strncmp(address, "unix:", 5) == 0)
		address += 5;
	/* sun_path is short; libuv would silently truncate a longer path. */
	if (*address == '\0' || strlen(address) >= sizeof(addr->path))
		return QMP_EADDR;
	addr->is_unix = 1;
	strcpy(addr->path, address);
	return 0;
}

static void on_connected(uv_connect_t *req, int status)
{
	qmp_client *client = req->handle->data;
	int err;

	if (status == UV_ECANCELED || client->state != QMP_STATE_CONNECTING)
		return;
	if (status < 0) {
		client_fail(client, status);
		return;
	}
	client->state = client->agent ? QMP_STATE_SYNCING : QMP_STATE_GREETING;
	if (client->is_tls) {
		struct qmp_tls *tls;

		err = qmp_tls_new(&tls, &client->io.stream, client->tls_dir, client->tls_host,
				  client->tls_error, sizeof client->tls_error);
		client->tls = tls;
		if (!err) {
			client->tls_handshaking = 1;
			err = qmp_tls_handshake(tls, client->tls_error, sizeof client->tls_error);
			err = err == 1 ? 0 : err;
		}
		if (!err)
			err = uv_read_start(&client->io.stream, on_alloc_tls, on_read_tls);
		if (err)
			client_fail(client, err);
		return;
	}
	err = uv_read_start(&client->io.stream, on_alloc, on_read);
	if (!err && client->agent)
		err = client_start_sync(client);
	if (err)
		client_fail(client, err);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
			struct addrinfo *res)
{
	qmp_client *client = req->data;
	int err;

	client->gai_active = 0;
	client->open_handles--;
	if (client->state != QMP_STATE_CONNECTING) {
		uv_freeaddrinfo(res);
		client_maybe_finish(client);
		return;
	}
	if (status < 0) {
		client_fail(client, status);
		return;
	}
	uv_tcp_init(client->loop, &client->io.tcp);
	client->io.handle.data = client;
	client->io_open = 1;
	client->open_handles++;
	err = uv_tcp_connect(&client->connect_req, &client->io.tcp,
			     res->ai_addr, on_connected);
	uv_freeaddrinfo(res);
	if (err)
		client_fail(client, err);
}

static void on_connect_timeout(uv_timer_t *timer)
{
	client_fail(timer->data, QMP_ETIMEDOUT);
}

static int client_start_resolve(qmp_client *client,
				const struct qmp_address *addr)
{
	struct addrinfo hints;
	int err;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	client->gai_req.data = client;
	err = uv_getaddrinfo(client->loop, &client->gai_req, on_resolved,
			     addr->host, addr->port, &hints);
	if (err)
		return err;
	client->gai_active = 1;
	client->open_handles++;
	return 0;
}

static void client_start_pipe(qmp_client *client,
			      const struct qmp_address *addr)
{
	/* ipc=1: uv_write2 can then attach file descriptors. */
	uv_pipe_init(client->loop, &client->io.pipe, 1);
	client->io.handle.data = client;
	client->io_open = 1;
	client->open_handles++;
	uv_pipe_connect(&client->connect_req, &client->io.pipe, addr->path,
			on_connected);
}

int qmp_client_connect(qmp_client *client, const char *address,
		       unsigned timeout_ms, qmp_connect_cb cb)
{
	struct qmp_address addr;
	int err;

	if (client->state != QMP_STATE_INIT)
		return UV_EALREADY;
	err = parse_address(address, &addr);
	if (err)
		return err;
	client->is_unix = addr.is_unix;
	client->is_tls = addr.is_tls;
	snprintf(client->tls_host, sizeof client->tls_host, "%s", addr.host);
	if (client->tls_dir[0] == '\0')
		snprintf(client->tls_dir, sizeof client->tls_dir, "/etc/pki/qemu");
	if (!addr.is_unix && (err = client_start_resolve(client, &addr)))
		return err;
	if (addr.is_unix)
		client_start_pipe(client, &addr);
	client->on_connect = cb;
	client->connect_timeout_ms =
		timeout_ms ? timeout_ms : QMP_DEFAULT_TIMEOUT_MS;
	client->state = QMP_STATE_CONNECTING;
	uv_timer_start(&client->connect_timer, on_connect_timeout,
		       client->connect_timeout_ms, 0);
	return 0;
}

int qmp_client_accept(qmp_client *client, uv_stream_t *server,
		      unsigned timeout_ms, qmp_connect_cb cb)
{
	int err;

	if (client->state != QMP_STATE_INIT)
		return UV_EALREADY;
	/* ipc=1: uv_write2 can then attach file descriptors. */
	uv_pipe_init(client->loop, &client->io.pipe, 1);
	client->io.handle.data = client;
	client->io_open = 1;
	client->open_handles++;
	client->is_unix = 1;
	err = uv_accept(server, &client->io.stream);
	if (err == 0)
		err = uv_read_start(&client->io.stream, on_alloc, on_read);
	if (err) {
		/* The handle is closed by qmp_client_close(); no callback. */
		client->state = QMP_STATE_DISCONNECTED;
		uv_close(&client->io.handle, client_handle_closed);
		return err;
	}
	client->on_connect = cb;
	client->connect_timeout_ms =
		timeout_ms ? timeout_ms : QMP_DEFAULT_TIMEOUT_MS;
	client->state = QMP_STATE_GREETING;
	uv_timer_start(&client->connect_timer, on_connect_timeout,
		       client->connect_timeout_ms, 0);
	return 0;
}

int qmp_client_connect_agent(qmp_client *client, const char *address,
			     unsigned timeout_ms, qmp_connect_cb cb)
{
	int err;

	if (client->state != QMP_STATE_INIT)
		return UV_EALREADY;
	client->agent = 1;
	qmp_framer_set_sentinel(client->framer, 1);
	err = qmp_client_connect(client, address, timeout_ms, cb);
	if (err) {
		client->agent = 0;
		qmp_framer_set_sentinel(client->framer, 0);
	}
	return err;
}

/* --- teardown --------------------------------------------------------- */

/* Stop all I/O; the handles stay allocated until their close callbacks. */
static void client_stop_io(qmp_client *client)
{
	uv_timer_stop(&client->connect_timer);
	uv_timer_stop(&client->command_timer);
	if (client->gai_active)
		uv_cancel((uv_req_t *)&client->gai_req);
	if (client->io_open && !uv_is_closing(&client->io.handle))
		uv_close(&client->io.handle, client_handle_closed);
}

static int pending_status(int status)
{
	return status == QMP_EPROTO || status == QMP_ETOOBIG ? QMP_EPROTO
							      : QMP_ECLOSED;
}

/* The connection failed or was lost without the user asking. */
static void client_fail(qmp_client *client, int status)
{
	enum qmp_client_state was = client->state;

	if (!client_is_live(client))
		return;
	client->state = QMP_STATE_DISCONNECTED;
	client_stop_io(client);
	if (was < QMP_STATE_READY) {
		client_connect_done(client, status);
		pending_fail_all(client, pending_status(status));
		return;
	}
	pending_fail_all(client, pending_status(status));
	if (client->state != QMP_STATE_DISCONNECTED ||
	    client->on_disconnect == NULL)
		return;
	callback_enter(client);
	client->on_disconnect(client, status, client->on_disconnect_arg);
	callback_leave(client);
}

void qmp_client_close(qmp_client *client, qmp_close_cb cb)
{
	if (client->state >= QMP_STATE_CLOSING)
		return;
	client->on_close = cb;
	client->close_requested = 1;
	client->state = QMP_STATE_CLOSING;
	client_stop_io(client);
	uv_close((uv_handle_t *)&client->command_timer, client_handle_closed);
	client_connect_done(client, QMP_ECLOSED);
	pending_fail_all(client, QMP_ECLOSED);
	client_close_last_handle(client);
}

/* --- the rest of the API ---------------------------------------------- */

int qmp_client_init(uv_loop_t *loop, qmp_client *client)
{
	void *data = client->data;

	memset(client, 0, sizeof(*client));
	client->data = data;
	client->framer = qmp_framer_new(QMP_MAX_MESSAGE);
	if (client->framer == NULL)
		return UV_ENOMEM;
	client->loop = loop;
	client->state = QMP_STATE_INIT;
	client->timeout_ms = QMP_DEFAULT_TIMEOUT_MS;
	snprintf(client->id_prefix, sizeof(client->id_prefix), "qckpt-");
	uv_timer_init(loop, &client->connect_timer);
	uv_timer_init(loop, &client->command_timer);
	client->connect_timer.data = client;
	client->command_timer.data = client;
	client->open_handles = 2;
	return 0;
}

void qmp_client_set_tls_dir(qmp_client *client, const char *dir)
{
	snprintf(client->tls_dir, sizeof client->tls_dir, "%s", dir);
}

void qmp_client_set_timeout(qmp_client *client, unsigned timeout_ms)
{
	client->timeout_ms = timeout_ms;
}

void qmp_client_on_event(qmp_client *client, qmp_event_cb cb, void *arg)
{
	client->on_event = cb;
	client->on_event_arg = arg;
}

void qmp_client_on_disconnect(qmp_client *client, qmp_disconnect_cb cb,
			      void *arg)
{
	client->on_disconnect = cb;
	client->on_disconnect_arg = arg;
}

void qmp_client_on_trace(qmp_client *client, qmp_trace_cb cb, void *arg)
{
	client->on_trace = cb;
	client->on_trace_arg = arg;
}

int qmp_client_execute_ex(qmp_client *client, const char *command,
			  json_t *args, int fd, unsigned timeout_ms,
			  qmp_reply_cb cb, void *arg)
{
	if (client->state != QMP_STATE_READY) {
		json_decref(args);
		return QMP_ENOTREADY;
	}
	return client_send_command(client, command, args, fd, timeout_ms, cb,
				   arg);
}

int qmp_client_execute(qmp_client *client, const char *command, json_t *args,
		       qmp_reply_cb cb, void *arg)
{
	return qmp_client_execute_ex(client, command, args, -1,
				     client->timeout_ms, cb, arg);
}

int qmp_client_execute_fd(qmp_client *client, const char *command,
			  json_t *args, int fd, qmp_reply_cb cb, void *arg)
{
	if (fd < 0) {
		json_decref(args);
		return UV_EBADF;
	}
	return qmp_client_execute_ex(client, command, args, fd,
				     client->timeout_ms, cb, arg);
}

int qmp_client_version(const qmp_client *client)
{
	return client->version_major * 10000 + client->version_minor * 100 +
	       client->version_micro;
}
