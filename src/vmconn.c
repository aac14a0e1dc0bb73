/*
 * vmconn.c: see vmconn.h.  Every command that talks to a VM starts here, so
 * the advice for a dead socket, a busy monitor or the wrong VM is written
 * once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "vmconn.h"

const char *vmconn_tls_credential;

const char *vmconn_tls_dir(void)
{
	const char *env = getenv("QCKPT_TLS_DIR");

	if (vmconn_tls_credential != NULL)
		return vmconn_tls_credential;
	return env != NULL && *env ? env : NULL;
}

int vmconn_is_network(const char *monitor)
{
	return strncmp(monitor, "tcp:", 4) == 0 || strncmp(monitor, "tls:", 4) == 0;
}

char *vmconn_network_host(const char *monitor)
{
	const char *host, *colon;

	if (!vmconn_is_network(monitor))
		return NULL;
	host = monitor + 4;
	colon = strrchr(host, ':');
	if (colon == NULL)
		colon = host + strlen(host);
	if (host[0] == '[' && colon > host + 1 && colon[-1] == ']')
		return xstrndup(host + 1, (size_t)(colon - host - 2));
	return xstrndup(host, (size_t)(colon - host));
}

static int is_direct_socket(const char *target)
{
	return strchr(target, '/') != NULL || strncmp(target, "unix:", 5) == 0 ||
	       strncmp(target, "tcp:", 4) == 0 || strncmp(target, "tls:", 4) == 0;
}

int vmconn_resolve(const struct registry *reg, const char *target,
		   char **monitor, char **expect, char *err, size_t errlen)
{
	const struct registry_entry *e;

	if (is_direct_socket(target)) {
		char *abs;

		*expect = NULL;
		if (target[0] == '/' || strncmp(target, "unix:", 5) == 0 ||
		    strncmp(target, "tcp:", 4) == 0 || strncmp(target, "tls:", 4) == 0) {
			*monitor = xstrdup(target);
			return 0;
		}
		/* A relative path: QEMU and qckpt may not share a cwd later. */
		abs = absolute_path(target);
		if (abs == NULL) {
			snprintf(err, errlen, "no QMP socket at %s: %s", target,
				 strerror(errno));
			return -1;
		}
		*monitor = abs;
		return 0;
	}
	e = registry_find(reg, target);
	if (e == NULL && access(target, F_OK) == 0) {
		/* Not a registered name but a socket in the current directory. */
		*expect = NULL;
		*monitor = absolute_path(target);
		return *monitor ? 0 : -1;
	}
	if (e == NULL) {
		snprintf(err, errlen,
			 "not in the registry %s; register it with 'qckpt register %s MONITOR' or give its QMP socket path",
			 reg->path ? reg->path : "", target);
		return -1;
	}
	*monitor = xstrdup(e->monitor);
	*expect = xstrdup(e->name);
	return 0;
}

int vmconn_resolve_registered(const struct registry *reg, const char *target,
			      const char *command, char **monitor, char **expect)
{
	char err[512];

	if (vmconn_resolve(reg, target, monitor, expect, err, sizeof err) < 0)
		return error_vm(target, "%s", err);
	if (*expect == NULL) {
		free(*monitor);
		*monitor = NULL;
		return error_vm(target, "%s needs a registered VM name (its catalog is found by name): 'qckpt vms' lists them",
				command);
	}
	return 0;
}

static const char *socket_path(const struct vmconn *conn)
{
	const char *path = registry_unix_path(conn->monitor);

	return path ? path : conn->monitor;
}

void vmconn_explain(struct vmconn *conn, int status,
		    const struct qmp_error *qerr, const char *what)
{
	const char *path = socket_path(conn);

	switch (status) {
	case UV_ENOENT:
		conn->reason = "no socket";
		snprintf(conn->error, sizeof conn->error,
			 "no QMP socket at %s; is the VM running with -qmp unix:%s,server=on,wait=off?",
			 path, path);
		break;
	case UV_ECONNREFUSED:
		conn->reason = "refused";
		snprintf(conn->error, sizeof conn->error,
			 "nothing listens on %s (QEMU not running?); start the VM or fix its monitor path",
			 path);
		break;
	case UV_EACCES:
		conn->reason = "no permission";
		snprintf(conn->error, sizeof conn->error,
			 "permission denied on %s; run qckpt as the user that runs QEMU",
			 path);
		break;
	case QMP_ETIMEDOUT:
		conn->reason = "no answer";
		snprintf(conn->error, sizeof conn->error,
			 "%s on %s timed out; QMP serves one client at a time, so another tool may hold the monitor: give QEMU a second -qmp socket for qckpt",
			 what, path);
		break;
	case QMP_ECLOSED:
		conn->reason = "closed";
		if (conn->monitor != NULL && vmconn_is_network(conn->monitor))
			snprintf(conn->error, sizeof conn->error,
				 "the connection to the monitor %s was lost during %s (the network, or QEMU gone)",
				 conn->monitor, what);
		else
			snprintf(conn->error, sizeof conn->error,
				 "QEMU closed the monitor %s during %s (did the VM exit?)",
				 path, what);
		break;
	case QMP_ETLS:
		conn->reason = "TLS";
		snprintf(conn->error, sizeof conn->error,
			 "TLS with %.80s: %.220s (x509 credentials from %.100s; another with --credential x509=DIR)",
			 conn->monitor, conn->qmp.tls_error, conn->qmp.tls_dir);
		break;
	case QMP_ECOMMAND:
		conn->reason = "failed";
		snprintf(conn->error, sizeof conn->error, "%s failed: %s (%s)",
			 what, qerr && qerr->desc ? qerr->desc : "?",
			 qerr && qerr->klass ? qerr->klass : "?");
		break;
	default:
		conn->reason = status == QMP_EPROTO ? "not QMP" : "error";
		snprintf(conn->error, sizeof conn->error, "%s on %s: %s", what,
			 path, qmp_strerror(status));
	}
}

static void on_trace(qmp_client *client, char dir, const char *text,
		     size_t len, void *arg)
{
	struct vmconn *conn = arg;

	debug_qmp(conn->vm, dir, text, len);
}

static void on_query_name(qmp_client *client, int status, json_t *result,
			  const struct qmp_error *qerr, void *arg)
{
	struct vmconn *conn = arg;
	const char *name;

	if (status < 0) {
		vmconn_explain(conn, status, qerr, "query-name");
		conn->on_ready(conn, status);
		return;
	}
	name = json_string_value(json_object_get(result, "name"));
	if (name != NULL)
		conn->qemu_name = xstrdup(name);
	if (conn->expect_name != NULL && name != NULL &&
	    strcmp(name, conn->expect_name) != 0) {
		conn->reason = "wrong VM";
		snprintf(conn->error, sizeof conn->error,
			 "the socket %s belongs to the VM named '%s' (query-name), not '%s'; fix the monitor path in the registry",
			 socket_path(conn), name, conn->expect_name);
		conn->on_ready(conn, -EINVAL);
		return;
	}
	if (conn->expect_name != NULL && name == NULL && conn->require_name) {
		conn->reason = "unnamed";
		snprintf(conn->error, sizeof conn->error,
			 "QEMU at %s has no -name, so qckpt cannot check that it is '%s': start it with -name %s, or add name-check=off to its registry line if that socket can only ever be this VM",
			 socket_path(conn), conn->expect_name, conn->expect_name);
		conn->on_ready(conn, -EINVAL);
		return;
	}
	if (conn->expect_name != NULL && name == NULL)
		verbose_vm(conn->vm, "QEMU has no -name, so the socket cannot be checked against the registry");
	conn->on_ready(conn, 0);
}

static void on_connect(qmp_client *client, int status)
{
	struct vmconn *conn = client->data;

	if (status < 0) {
		vmconn_explain(conn, status, NULL, "connecting");
		conn->on_ready(conn, status);
		return;
	}
	status = qmp_client_execute(client, "query-name", NULL, on_query_name,
				    conn);
	if (status < 0) {
		vmconn_explain(conn, status, NULL, "query-name");
		conn->on_ready(conn, status);
	}
}

static void on_accepted(qmp_client *client, int status)
{
	struct vmconn *conn = client->data;

	if (status < 0)
		vmconn_explain(conn, status, NULL, "QMP negotiation");
	conn->on_ready(conn, status);
}

/* What opening and accepting share: the strings, the client, tracing. */
static int vmconn_init(uv_loop_t *loop, struct vmconn *conn, const char *vm,
		       const char *monitor, const char *expect_name, vmconn_ready_cb cb)
{
	int rc;

	conn->vm = xstrdup(vm);
	conn->monitor = xstrdup(monitor);
	conn->expect_name = expect_name ? xstrdup(expect_name) : NULL;
	conn->qemu_name = NULL;
	conn->error[0] = '\0';
	conn->reason = NULL;
	conn->on_ready = cb;
	rc = qmp_client_init(loop, &conn->qmp);
	if (rc < 0)
		return rc;
	conn->opened = 1;
	conn->qmp.data = conn;
	qmp_client_on_trace(&conn->qmp, on_trace, conn);
	return 0;
}

int vmconn_open(uv_loop_t *loop, struct vmconn *conn, const char *vm,
		const char *monitor, const char *expect_name,
		unsigned timeout_ms, vmconn_ready_cb cb)
{
	int rc;

	rc = vmconn_init(loop, conn, vm, monitor, expect_name, cb);
	if (rc < 0)
		return rc;
	if (vmconn_tls_dir() != NULL)
		qmp_client_set_tls_dir(&conn->qmp, vmconn_tls_dir());
	rc = qmp_client_connect(&conn->qmp, monitor, timeout_ms, on_connect);
	if (rc < 0)
		vmconn_explain(conn, rc, NULL, "connecting");
	return rc;
}

int vmconn_accept(uv_loop_t *loop, struct vmconn *conn, const char *vm,
		  uv_stream_t *server, const char *address, unsigned timeout_ms,
		  vmconn_ready_cb cb)
{
	int rc;

	rc = vmconn_init(loop, conn, vm, address, NULL, cb);
	if (rc < 0)
		return rc;
	/* QEMU opened it itself: the greeting's end is the ready point. */
	rc = qmp_client_accept(&conn->qmp, server, timeout_ms, on_accepted);
	if (rc < 0)
		vmconn_explain(conn, rc, NULL, "accepting QEMU's connection");
	return rc;
}

static void vmconn_free_strings(struct vmconn *conn)
{
	free(conn->vm);
	free(conn->monitor);
	free(conn->expect_name);
	free(conn->qemu_name);
	conn->vm = conn->monitor = conn->expect_name = conn->qemu_name = NULL;
}

static void on_qmp_closed(qmp_client *client)
{
	struct vmconn *conn = client->data;

	vmconn_free_strings(conn);
	if (conn->on_closed)
		conn->on_closed(conn);
}

void vmconn_close(struct vmconn *conn, void (*closed)(struct vmconn *conn))
{
	conn->on_closed = closed;
	if (!conn->opened) {
		vmconn_free_strings(conn);
		if (closed)
			closed(conn);
		return;
	}
	conn->opened = 0;
	qmp_client_close(&conn->qmp, on_qmp_closed);
}
