/*
 * tls.h: TLS for a QMP connection (QEMU's `-object tls-creds-x509` on a
 * `-chardev socket,tls-creds=...` monitor), with GnuTLS driven by libuv:
 * GnuTLS never touches the socket.  Ciphertext read by libuv is fed in,
 * plaintext comes out; what GnuTLS wants to send goes out through
 * uv_write.  The client's certificate is presented and the server's is
 * verified against the CA and the host name (or IP address) connected to.
 * Credentials in QEMU's layout: DIR/ca-cert.pem, DIR/client-cert.pem,
 * DIR/client-key.pem.
 */
#ifndef QMP_TLS_H
#define QMP_TLS_H

#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

struct qmp_tls;

/* A session for HOST over STREAM with the credentials in DIR; 0, or
 * QMP_ETLS with the reason in err. */
int qmp_tls_new(struct qmp_tls **tls, uv_stream_t *stream, const char *dir,
		const char *host, char *err, size_t errlen);
void qmp_tls_free(struct qmp_tls *tls);

/* Ciphertext read from the socket. */
void qmp_tls_feed(struct qmp_tls *tls, const char *data, size_t len);

/* Drive the handshake: 0 done, 1 it needs more input, QMP_ETLS (reason in
 * err: a certificate that does not verify, the server refusing ours...). */
int qmp_tls_handshake(struct qmp_tls *tls, char *err, size_t errlen);

/* Plaintext: bytes into buf, 0 when it needs more input, QMP_ECLOSED at the
 * peer's close, QMP_ETLS on an error. */
ssize_t qmp_tls_recv(struct qmp_tls *tls, char *buf, size_t len, char *err, size_t errlen);

/* Encrypt and write LEN bytes; 0 or an error code. */
int qmp_tls_send(struct qmp_tls *tls, const char *data, size_t len);

#endif
