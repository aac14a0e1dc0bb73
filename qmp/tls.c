/*
 * tls.c: GnuTLS on a libuv stream for QMP over TLS (see tls.h).  GnuTLS
 * pulls ciphertext from a buffer that libuv's reads fill (EAGAIN when it is
 * empty, so every GnuTLS call returns instead of blocking) and pushes
 * ciphertext through uv_write, one copy per record.
 *
 * GnuTLS is loaded (dlopen) when the first TLS monitor is connected, not
 * linked: linking it cost every qckpt process 6-7 ms at exec here (its
 * nine libraries' relocations), paid by every command for the few VMs
 * behind tls: monitors, and twice by a restore (qckpt restore, then the
 * `qckpt run` that execs QEMU) before the new QEMU even starts.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "qmp.h"
#include "tls.h"

/* GnuTLS 3.x's soname (it has been .30 since 3.4). */
#define GNUTLS_SONAME "libgnutls.so.30"

#define GNUTLS_FUNCTIONS(X) \
	X(gnutls_certificate_allocate_credentials) \
	X(gnutls_certificate_free_credentials) \
	X(gnutls_certificate_set_x509_key_file) \
	X(gnutls_certificate_set_x509_trust_file) \
	X(gnutls_certificate_verification_status_print) \
	X(gnutls_credentials_set) \
	X(gnutls_deinit) \
	X(gnutls_error_is_fatal) \
	X(gnutls_handshake) \
	X(gnutls_init) \
	X(gnutls_record_recv) \
	X(gnutls_record_send) \
	X(gnutls_session_get_verify_cert_status) \
	X(gnutls_session_set_verify_cert) \
	X(gnutls_set_default_priority) \
	X(gnutls_strerror) \
	X(gnutls_transport_set_errno) \
	X(gnutls_transport_set_ptr) \
	X(gnutls_transport_set_pull_function) \
	X(gnutls_transport_set_push_function)

/* The library's functions, once loaded; gt.free is its gnutls_free
 * (a variable holding the deallocator, not a function). */
static struct {
	void *handle;
#define X(f) __typeof__(f) *f;
	GNUTLS_FUNCTIONS(X)
#undef X
	gnutls_free_function *free;
} gt;

/* 0, or QMP_ETLS with the reason (GnuTLS missing) in err. */
static int gnutls_load(char *err, size_t errlen)
{
	void *h;

	if (gt.handle != NULL)
		return 0;
	h = dlopen(GNUTLS_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		snprintf(err, errlen, "TLS needs GnuTLS: %s (install libgnutls30)", dlerror());
		return QMP_ETLS;
	}
#define X(f)                                                                            \
	if ((gt.f = (__typeof__(f) *)dlsym(h, #f)) == NULL) {                           \
		snprintf(err, errlen, "TLS needs GnuTLS 3.6 or later: %s has no %s", \
			 GNUTLS_SONAME, #f);                                             \
		dlclose(h);                                                              \
		return QMP_ETLS;                                                         \
	}
	GNUTLS_FUNCTIONS(X)
#undef X
	gt.free = (gnutls_free_function *)dlsym(h, "gnutls_free");
	if (gt.free == NULL) {
		snprintf(err, errlen, "TLS needs GnuTLS 3.6 or later: %s has no gnutls_free", GNUTLS_SONAME);
		dlclose(h);
		return QMP_ETLS;
	}
	gt.handle = h;
	return 0;
}

struct qmp_tls {
	gnutls_session_t session;
	gnutls_certificate_credentials_t cred;
	uv_stream_t *stream;
	char *in;            /* ciphertext not yet pulled */
	size_t in_len, in_off;
	int write_failed;
};

struct tls_write {
	uv_write_t req;
	char data[];
};

static void on_tls_written(uv_write_t *req, int status)
{
	free(req);
}

static ssize_t tls_push(gnutls_transport_ptr_t ptr, const void *data, size_t len)
{
	struct qmp_tls *tls = ptr;
	struct tls_write *w = malloc(sizeof *w + len);
	uv_buf_t buf;

	if (w == NULL || tls->write_failed) {
		free(w);
		errno = EIO;
		return -1;
	}
	memcpy(w->data, data, len);
	buf = uv_buf_init(w->data, (unsigned)len);
	if (uv_write(&w->req, tls->stream, &buf, 1, on_tls_written) < 0) {
		free(w);
		tls->write_failed = 1;
		errno = EIO;
		return -1;
	}
	return (ssize_t)len;
}

static ssize_t tls_pull(gnutls_transport_ptr_t ptr, void *data, size_t len)
{
	struct qmp_tls *tls = ptr;
	size_t avail = tls->in_len - tls->in_off;

	if (avail == 0) {
		gt.gnutls_transport_set_errno(tls->session, EAGAIN);
		return -1;
	}
	if (len > avail)
		len = avail;
	memcpy(data, tls->in + tls->in_off, len);
	tls->in_off += len;
	if (tls->in_off == tls->in_len)
		tls->in_off = tls->in_len = 0;
	return (ssize_t)len;
}

static int tls_fail(char *err, size_t errlen, const char *what, int code)
{
	snprintf(err, errlen, "%s: %s", what, gt.gnutls_strerror(code));
	return QMP_ETLS;
}

int qmp_tls_new(struct qmp_tls **out, uv_stream_t *stream, const char *dir,
		const char *host, char *err, size_t errlen)
{
	struct qmp_tls *tls = calloc(1, sizeof *tls);
	char ca[4096], cert[4096], key[4096];
	int rc;

	*out = NULL;
	if (tls == NULL)
		return UV_ENOMEM;
	if ((rc = gnutls_load(err, errlen)) < 0) {
		free(tls);
		return rc;
	}
	tls->stream = stream;
	snprintf(ca, sizeof ca, "%s/ca-cert.pem", dir);
	snprintf(cert, sizeof cert, "%s/client-cert.pem", dir);
	snprintf(key, sizeof key, "%s/client-key.pem", dir);
	if ((rc = gt.gnutls_certificate_allocate_credentials(&tls->cred)) < 0) {
		free(tls);
		return tls_fail(err, errlen, "TLS credentials", rc);
	}
	*out = tls;
	if ((rc = gt.gnutls_certificate_set_x509_trust_file(tls->cred, ca, GNUTLS_X509_FMT_PEM)) <= 0) {
		snprintf(err, errlen, "no CA certificate in %s%s%s", ca, rc < 0 ? ": " : "",
			 rc < 0 ? gt.gnutls_strerror(rc) : "");
		return QMP_ETLS;
	}
	if ((rc = gt.gnutls_certificate_set_x509_key_file(tls->cred, cert, key, GNUTLS_X509_FMT_PEM)) < 0) {
		snprintf(err, errlen, "client certificate %s and key %s: %s", cert, key,
			 gt.gnutls_strerror(rc));
		return QMP_ETLS;
	}
	if ((rc = gt.gnutls_init(&tls->session, GNUTLS_CLIENT | GNUTLS_NONBLOCK)) < 0)
		return tls_fail(err, errlen, "TLS session", rc);
	if ((rc = gt.gnutls_set_default_priority(tls->session)) < 0 ||
	    (rc = gt.gnutls_credentials_set(tls->session, GNUTLS_CRD_CERTIFICATE, tls->cred)) < 0)
		return tls_fail(err, errlen, "TLS session", rc);
	/* The server's certificate must name the host we connected to. */
	gt.gnutls_session_set_verify_cert(tls->session, host, 0);
	gt.gnutls_transport_set_ptr(tls->session, tls);
	gt.gnutls_transport_set_push_function(tls->session, tls_push);
	gt.gnutls_transport_set_pull_function(tls->session, tls_pull);
	return 0;
}

void qmp_tls_free(struct qmp_tls *tls)
{
	if (tls == NULL)
		return;
	if (tls->session)
		gt.gnutls_deinit(tls->session);
	gt.gnutls_certificate_free_credentials(tls->cred);
	free(tls->in);
	free(tls);
}

void qmp_tls_feed(struct qmp_tls *tls, const char *data, size_t len)
{
	char *grown = realloc(tls->in, tls->in_len + len);

	if (grown == NULL) {
		tls->write_failed = 1;
		return;
	}
	tls->in = grown;
	memcpy(tls->in + tls->in_len, data, len);
	tls->in_len += len;
}

int qmp_tls_handshake(struct qmp_tls *tls, char *err, size_t errlen)
{
	int rc = gt.gnutls_handshake(tls->session);

	if (rc == GNUTLS_E_SUCCESS)
		return 0;
	if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED || !gt.gnutls_error_is_fatal(rc))
		return 1;
	if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
		gnutls_datum_t text = { NULL, 0 };
		unsigned status = gt.gnutls_session_get_verify_cert_status(tls->session);

		gt.gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0);
		snprintf(err, errlen, "QEMU's certificate does not verify: %s",
			 text.data ? (char *)text.data : "?");
		(*gt.free)(text.data);
		return QMP_ETLS;
	}
	return tls_fail(err, errlen, "TLS handshake", rc);
}

ssize_t qmp_tls_recv(struct qmp_tls *tls, char *buf, size_t len, char *err, size_t errlen)
{
	ssize_t n = gt.gnutls_record_recv(tls->session, buf, len);

	if (n > 0)
		return n;
	if (n == 0)
		return QMP_ECLOSED;
	if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
		return 0;
	if (n == GNUTLS_E_PREMATURE_TERMINATION)
		return QMP_ECLOSED;
	return tls_fail(err, errlen, "TLS", (int)n);
}

int qmp_tls_send(struct qmp_tls *tls, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = gt.gnutls_record_send(tls->session, data, len);

		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n < 0)
			return QMP_ETLS;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}
