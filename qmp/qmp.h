/*
 * qmp.h: a small asynchronous client for QEMU's machine protocol (QMP) on
 * libuv.  It knows nothing about checkpoints: it connects, negotiates,
 * sends commands (optionally with a file descriptor), matches replies by id
 * and delivers events.  The shape follows libuv: a long-lived handle
 * (struct qmp_client, embedded by the user, init/close), requests that
 * complete exactly once, callbacks named for what happened, and negative
 * error codes with qmp_strerror().
 *
 * Promise kept everywhere: if a function that takes a callback returns an
 * error, that callback is never called; otherwise it is called exactly once.
 */
#ifndef QMP_H
#define QMP_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>

/* Error codes: negative, outside libuv's range (libuv uses -errno and -3000..). */
enum {
	QMP_EPROTO = -20001,    /* the peer sent something that is not QMP */
	QMP_ECOMMAND = -20002,  /* QEMU answered with an error object */
	QMP_ETIMEDOUT = -20003, /* no reply within the command's timeout */
	QMP_ECLOSED = -20004,   /* the connection closed before the reply */
	QMP_ENOTSUP = -20005,   /* not possible on this transport (fd over tcp) */
	QMP_ENOTREADY = -20006, /* not connected / negotiation not finished */
	QMP_EADDR = -20007,     /* monitor address not understood */
	QMP_ETOOBIG = -20008,   /* one message larger than QMP_MAX_MESSAGE */
	QMP_ETLS = -20009,      /* TLS failed: client->tls_error says why */
};

/* Largest single message accepted (query-qmp-schema is a few MiB). */
#define QMP_MAX_MESSAGE (64u * 1024 * 1024)
/* Default per-command timeout; 0 disables it. */
#define QMP_DEFAULT_TIMEOUT_MS 30000u

typedef struct qmp_client qmp_client;

/* QEMU's error object, kept verbatim; valid only during the callback. */
struct qmp_error {
	const char *klass; /* "class", e.g. "GenericError", "CommandNotFound" */
	const char *desc;
};

/* QEMU's event timestamp (wall clock of the QEMU host). */
struct qmp_timestamp {
	int64_t seconds;
	int64_t microseconds;
};

/* Connected and negotiated (status 0), or failed (status < 0). */
typedef void (*qmp_connect_cb)(qmp_client *client, int status);

/*
 * One command's completion.  status 0: result is the "return" value
 * (borrowed: json_incref it to keep it).  QMP_ECOMMAND: error holds QEMU's
 * class and desc.  Any other negative status: the command did not complete
 * (timeout, closed connection, ...), result and error are NULL.
 */
typedef void (*qmp_reply_cb)(qmp_client *client, int status, json_t *result,
			     const struct qmp_error *error, void *arg);

/* An asynchronous event; data is borrowed (may be an empty object). */
typedef void (*qmp_event_cb)(qmp_client *client, const char *name,
			     json_t *data, const struct qmp_timestamp *ts,
			     void *arg);

/*
 * The connection was lost without the user asking (peer closed, read
 * error, protocol error).  Called once, after every pending request has
 * completed with QMP_ECLOSED (or QMP_EPROTO).  The user still calls
 * qmp_client_close() to release the handle.
 */
typedef void (*qmp_disconnect_cb)(qmp_client *client, int status, void *arg);

/* The handle is fully closed and its memory may be freed. */
typedef void (*qmp_close_cb)(qmp_client *client);

/* Raw traffic for --debug: dir is '>' (sent) or '<' (received). */
typedef void (*qmp_trace_cb)(qmp_client *client, char dir, const char *text,
			     size_t len, void *arg);

enum qmp_client_state {
	QMP_STATE_INIT,
	QMP_STATE_CONNECTING,
	QMP_STATE_GREETING,
	QMP_STATE_NEGOTIATING,
	QMP_STATE_SYNCING,     /* guest agent: waiting for our guest-sync-delimited */
	QMP_STATE_READY,
	QMP_STATE_DISCONNECTED,
	QMP_STATE_CLOSING,
	QMP_STATE_CLOSED,
};

struct qmp_pending; /* private: one command in flight */

struct qmp_client {
	void *data; /* for the user */

	/* read-only for the user */
	enum qmp_client_state state;
	json_t *greeting;          /* the "QMP" object of the greeting */
	int version_major, version_minor, version_micro;
	char version_string[64];  /* "7.2.0", with the package suffix if any */

	/* private */
	uv_loop_t *loop;
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_pipe_t pipe;
		uv_tcp_t tcp;
	} io;
	int is_unix;
	int agent;                   /* guest agent mode (no greeting, 0xFF resync) */
	int64_t sync_id;             /* the id of our guest-sync-delimited */
	uv_connect_t connect_req;
	uv_getaddrinfo_t gai_req;
	int gai_active;              /* gai_req is waiting for its callback */
	uv_timer_t connect_timer;
	uv_timer_t command_timer;    /* armed for the earliest command deadline */
	unsigned connect_timeout_ms;
	unsigned timeout_ms;
	uint64_t next_id;
	char id_prefix[16];
	struct qmp_pending *pending; /* list of commands in flight */
	struct qmp_pending *pending_tail;
	int io_open;                 /* io holds an initialised handle */
	void *framer;                /* struct qmp_framer * */
	qmp_connect_cb on_connect;
	qmp_event_cb on_event;
	void *on_event_arg;
	qmp_disconnect_cb on_disconnect;
	void *on_disconnect_arg;
	qmp_trace_cb on_trace;
	void *on_trace_arg;
	qmp_close_cb on_close;
	int open_handles;            /* handles and requests not yet finished */
	int callback_depth;
	int close_requested;
	/* tls:HOST:PORT */
	int is_tls;
	int tls_handshaking;
	void *tls;                   /* struct qmp_tls * */
	char tls_dir[512];
	char tls_host[256];
	char tls_error[512];         /* why QMP_ETLS (read-only for the user) */
};

int qmp_client_init(uv_loop_t *loop, qmp_client *client);

/*
 * Where the x509 credentials for a tls:HOST:PORT monitor are, in QEMU's
 * layout (ca-cert.pem, client-cert.pem, client-key.pem); after init,
 * before connect.  Default: /etc/pki/qemu, QEMU's own.
 */
void qmp_client_set_tls_dir(qmp_client *client, const char *dir);

/*
 * Connect to ADDRESS ("unix:PATH", a bare path to a unix socket,
 * "tcp:HOST:PORT" or "tls:HOST:PORT", TLS verified against the CA and HOST,
 * the client certificate presented), read the greeting, send qmp_capabilities, then call cb.
 * timeout_ms bounds the whole sequence (0: QMP_DEFAULT_TIMEOUT_MS).  QMP
 * monitors serve one client at a time, so a busy monitor shows up as a
 * timeout waiting for the greeting.
 */
int qmp_client_connect(qmp_client *client, const char *address,
		       unsigned timeout_ms, qmp_connect_cb cb);

/*
 * The same over a connection QEMU made to us: accept it from SERVER (a
 * listening uv_pipe_t, whose connection callback we are in), then greeting,
 * qmp_capabilities and cb as above.  For a monitor QEMU opens in client
 * mode (-chardev socket,path=SOCK without server=on), which is there before
 * the guest runs and leaves the user's own monitors free.
 */
int qmp_client_accept(qmp_client *client, uv_stream_t *server,
		      unsigned timeout_ms, qmp_connect_cb cb);

/*
 * Connect to a QEMU guest agent (qemu-ga) at ADDRESS, as above.  The agent
 * speaks the same JSON but sends no greeting and takes no
 * qmp_capabilities; its stream may still hold stale bytes of an earlier
 * client.  So the client sends a 0xFF byte (the agent drops any partial
 * input) and guest-sync-delimited with a random id, discards everything up
 * to the 0xFF the agent puts before its answer and every message that is
 * not that answer, then calls cb(0).  In this mode a 0xFF byte from the
 * agent always restarts the framing, and a reply without "id" completes
 * the oldest command in flight (qemu-ga runs commands one at a time, in
 * order; it copies "id" like QEMU, but an answer to unparsable input has
 * none).  The version fields stay 0; no events are expected.  timeout_ms
 * bounds the connect and the resync: an agent that is not running in the
 * guest shows up as QMP_ETIMEDOUT (QEMU accepts the connection for it).
 */
int qmp_client_connect_agent(qmp_client *client, const char *address,
			     unsigned timeout_ms, qmp_connect_cb cb);

/* Default timeout for commands sent after this call (0: none). */
void qmp_client_set_timeout(qmp_client *client, unsigned timeout_ms);

void qmp_client_on_event(qmp_client *client, qmp_event_cb cb, void *arg);
void qmp_client_on_disconnect(qmp_client *client, qmp_disconnect_cb cb,
			      void *arg);
void qmp_client_on_trace(qmp_client *client, qmp_trace_cb cb, void *arg);

/*
 * Send COMMAND with ARGS (a JSON object or NULL; the reference is always
 * stolen, also on error).  Replies are matched by a unique "id", so many
 * commands may be in flight.
 */
int qmp_client_execute(qmp_client *client, const char *command, json_t *args,
		       qmp_reply_cb cb, void *arg);

/* The same with a file descriptor attached (SCM_RIGHTS, unix sockets only),
 * for getfd / add-fd.  The fd is duplicated: the caller keeps its own. */
int qmp_client_execute_fd(qmp_client *client, const char *command,
			  json_t *args, int fd, qmp_reply_cb cb, void *arg);

/* The general form: fd may be -1; timeout_ms 0 means no timeout for this
 * command (use qmp_client_execute for the client's default). */
int qmp_client_execute_ex(qmp_client *client, const char *command,
			  json_t *args, int fd, unsigned timeout_ms,
			  qmp_reply_cb cb, void *arg);

/*
 * Close the connection.  Pending commands complete with QMP_ECLOSED
 * (before cb).  cb (may be NULL) is called when all libuv handles are
 * closed; only then may the memory of the client be released.  Safe to
 * call from inside any callback of this client, and in any state.
 */
void qmp_client_close(qmp_client *client, qmp_close_cb cb);

/* Version as one number: major * 10000 + minor * 100 + micro. */
int qmp_client_version(const qmp_client *client);

const char *qmp_strerror(int err);

#endif
