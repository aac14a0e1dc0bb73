/*
 * vmconn.h: one connection to one VM's QMP monitor, as every command needs
 * it: resolve the target (a registry name or a socket), connect, negotiate,
 * and check with query-name that the socket belongs to the VM asked for.
 * Failures come back as one line that says what to do.
 */
#ifndef VMCONN_H
#define VMCONN_H

#include "qmp.h"
#include "registry.h"

struct vmconn;
typedef void (*vmconn_ready_cb)(struct vmconn *conn, int status);

struct vmconn {
	qmp_client qmp;
	void *data;
	char *vm;          /* the name the user gave (for messages) */
	char *monitor;     /* the address connected to */
	char *expect_name; /* the -name QEMU must report, or NULL */
	char *qemu_name;   /* what query-name said, or NULL */
	/* Set before vmconn_open: a QEMU without -name cannot be checked
	 * against expect_name, so refuse it (checkpoints: the registry's
	 * name-check=off lifts it). */
	int require_name;
	char error[512];   /* the last failure, one line without the VM name */
	const char *reason; /* the same in a few words ("no socket"), for tables */
	vmconn_ready_cb on_ready;
	void (*on_closed)(struct vmconn *conn);
	int opened;
};

/*
 * Resolve TARGET: a name in REG (verified with query-name), or a socket
 * given directly ("unix:PATH", "/path", "./path", "tcp:HOST:PORT").  Fills
 * *monitor and *expect (new strings; expect NULL for a direct socket).
 * Returns 0, or -1 with a message in err.
 */
int vmconn_resolve(const struct registry *reg, const char *target,
		   char **monitor, char **expect, char *err, size_t errlen);

/*
 * vmconn_resolve for a command that works on a VM's catalog (restore,
 * remove), so TARGET must be a registered name, not a socket: 0, or -1
 * after one line naming the VM that says what COMMAND needs.
 */
int vmconn_resolve_registered(const struct registry *reg, const char *target,
			      const char *command, char **monitor, char **expect);

/* Connect; cb gets 0 or a negative code with conn->error filled. */
/* The x509 directory for tls: monitors: --credential x509=DIR (set by the
 * dispatcher), else $QCKPT_TLS_DIR, else NULL (QEMU's /etc/pki/qemu). */
extern const char *vmconn_tls_credential;
const char *vmconn_tls_dir(void);

/* A tcp: or tls: monitor: QEMU may run on another host. */
int vmconn_is_network(const char *monitor);
/* The HOST of a tcp:HOST:PORT or tls:HOST:PORT monitor (an IPv6 address
 * without its brackets), malloc'd; NULL for any other monitor. */
char *vmconn_network_host(const char *monitor);

int vmconn_open(uv_loop_t *loop, struct vmconn *conn, const char *vm,
		const char *monitor, const char *expect_name,
		unsigned timeout_ms, vmconn_ready_cb cb);

/* The same for a monitor QEMU connected to us (-chardev socket in client
 * mode): accept from SERVER, negotiate; no query-name check.  ADDRESS is
 * the socket, for messages. */
int vmconn_accept(uv_loop_t *loop, struct vmconn *conn, const char *vm,
		  uv_stream_t *server, const char *address, unsigned timeout_ms,
		  vmconn_ready_cb cb);

/* Close and release; closed (may be NULL) runs when the memory is free
 * to reuse.  The strings are freed here. */
void vmconn_close(struct vmconn *conn, void (*closed)(struct vmconn *conn));

/* Turn a qmp failure into advice for the user, in conn->error. */
void vmconn_explain(struct vmconn *conn, int status,
		    const struct qmp_error *qerr, const char *what);

#endif
