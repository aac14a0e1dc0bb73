/*
 * error.c: messages for the QMP_E* codes.  Kept apart from the client so
 * callers that only report errors need not pull in the connection code;
 * anything that is not ours is a libuv (or -errno) code and libuv names it.
 */
#include <uv.h>

#include "qmp.h"

const char *qmp_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case QMP_EPROTO:
		return "QMP protocol error (the peer does not speak QMP)";
	case QMP_ECOMMAND:
		return "QEMU returned an error";
	case QMP_ETIMEDOUT:
		return "timed out waiting for QEMU";
	case QMP_ECLOSED:
		return "QMP connection closed";
	case QMP_ENOTSUP:
		return "not supported on this transport (file descriptors need a unix socket)";
	case QMP_ENOTREADY:
		return "QMP connection not ready";
	case QMP_EADDR:
		return "QMP monitor address not understood (expected unix:PATH, PATH, tcp:HOST:PORT or tls:HOST:PORT)";
	case QMP_ETOOBIG:
		return "QMP message too big";
	case QMP_ETLS:
		return "TLS failed";
	default:
		return uv_strerror(err);
	}
}
