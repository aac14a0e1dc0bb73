/*
 * framer.h: splits the byte stream of a QMP connection into messages.
 *
 * QMP is a sequence of top-level JSON objects with optional whitespace
 * between them; reads may end anywhere, and one read may hold many
 * messages.  The framer buffers bytes, finds where each object ends
 * (tracking braces, strings and escapes without rescanning) and hands out
 * each complete object parsed by jansson.  It is separate from the client
 * so it can be tested byte by byte without sockets (and reused by the fake
 * server of the tests).
 */
#ifndef QMP_FRAMER_H
#define QMP_FRAMER_H

#include <stddef.h>
#include <jansson.h>

struct qmp_framer;

/* A framer accepting messages of at most max_message bytes (0: QMP_MAX_MESSAGE). */
struct qmp_framer *qmp_framer_new(size_t max_message);
void qmp_framer_free(struct qmp_framer *framer);

/* Append bytes as they arrive.  Returns 0 or UV_ENOMEM. */
int qmp_framer_feed(struct qmp_framer *framer, const char *data, size_t len);

/*
 * Zero-copy form of feed for libuv's alloc_cb: reserve() returns at least
 * *len writable bytes at the end of the buffer (NULL on ENOMEM), commit()
 * appends the n of them that were filled.
 */
char *qmp_framer_reserve(struct qmp_framer *framer, size_t *len);
void qmp_framer_commit(struct qmp_framer *framer, size_t n);

/*
 * Take the next complete message.  Returns 1 and sets *msg (a new
 * reference) and, if raw is not NULL, *raw and *raw_len to its text (valid
 * until the next call to feed/reserve); 0 if more bytes are needed;
 * QMP_EPROTO or QMP_ETOOBIG on a stream that is not QMP.  Errors are
 * sticky: the stream cannot be resynchronised.
 */
int qmp_framer_next(struct qmp_framer *framer, json_t **msg, const char **raw,
		    size_t *raw_len);

/*
 * The guest agent's stream (qemu-ga): a 0xFF byte, which JSON text never
 * holds, marks a fresh start: whatever partial object came before it is
 * dropped.  set_sentinel turns that rule on (off by default, as for QMP);
 * skip_to_sentinel also discards every byte up to the next 0xFF (for
 * guest-sync-delimited, whose reply follows one) and clears a sticky error.
 */
void qmp_framer_set_sentinel(struct qmp_framer *framer, int on);
void qmp_framer_skip_to_sentinel(struct qmp_framer *framer);

/* Bytes buffered but not yet returned as messages (for tests). */
size_t qmp_framer_buffered(const struct qmp_framer *framer);
/* Bytes examined since creation: equal to the bytes fed, never more. */
size_t qmp_framer_scanned(const struct qmp_framer *framer);

#endif
