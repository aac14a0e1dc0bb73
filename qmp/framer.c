/*
 * framer.c: the QMP message splitter (see framer.h).
 *
 * The scanner is a small state machine (depth, inside a string, after a
 * backslash) whose position survives between calls, so a multi-MiB
 * message arriving in 64 KiB reads is scanned once, not once per read.
 * Consumed bytes are dropped lazily, when more room is needed, so many
 * small messages in one read cost one memmove, not one each.
 */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "qmp.h"
#include "framer.h"

/* Room offered to each read: libuv's usual 64 KiB. */
#define FRAMER_READ_SIZE (64u * 1024)

struct qmp_framer {
	char *buf;
	size_t cap;
	size_t len;       /* bytes in buf */
	size_t scan;      /* next byte to look at */
	size_t msg_start; /* first byte of the object being scanned */
	size_t max_message;
	int depth;        /* nesting of {} and [] inside the current object */
	int in_string;
	int escaped;      /* previous byte was a backslash inside a string */
	int error;
	int sentinel;     /* 0xFF resets the stream (guest agent mode) */
	int skipping;     /* drop everything up to the next 0xFF */
	size_t scanned;   /* bytes examined in total, to prove there are no rescans */
};

/* The guest agent's delimiter: never valid in JSON text (not UTF-8). */
#define FRAMER_SENTINEL ((char)0xFF)

struct qmp_framer *qmp_framer_new(size_t max_message)
{
	struct qmp_framer *framer = calloc(1, sizeof(*framer));

	if (framer != NULL)
		framer->max_message = max_message ? max_message : QMP_MAX_MESSAGE;
	return framer;
}

void qmp_framer_free(struct qmp_framer *framer)
{
	if (framer == NULL)
		return;
	free(framer->buf);
	free(framer);
}

/* The first byte still needed: the start of an unfinished object, or the
 * scan position between objects. */
static size_t framer_keep_from(const struct qmp_framer *framer)
{
	return framer->depth > 0 ? framer->msg_start : framer->scan;
}

/* Drop consumed bytes, then make room for `want` more. */
static int framer_make_room(struct qmp_framer *framer, size_t want)
{
	size_t keep = framer_keep_from(framer);
	size_t cap;
	char *buf;

	if (keep > 0) {
		memmove(framer->buf, framer->buf + keep, framer->len - keep);
		framer->len -= keep;
		framer->scan -= keep;
		framer->msg_start -= keep;
	}
	if (framer->cap - framer->len >= want)
		return 0;
	cap = framer->cap ? framer->cap : FRAMER_READ_SIZE;
	while (cap - framer->len < want)
		cap *= 2;
	buf = realloc(framer->buf, cap);
	if (buf == NULL)
		return UV_ENOMEM;
	framer->buf = buf;
	framer->cap = cap;
	return 0;
}

int qmp_framer_feed(struct qmp_framer *framer, const char *data, size_t len)
{
	int err = len > 0 ? framer_make_room(framer, len) : 0;

	if (err)
		return err;
	if (len > 0)
		memcpy(framer->buf + framer->len, data, len);
	framer->len += len;
	return 0;
}

char *qmp_framer_reserve(struct qmp_framer *framer, size_t *len)
{
	if (framer_make_room(framer, FRAMER_READ_SIZE))
		return NULL;
	*len = framer->cap - framer->len;
	return framer->buf + framer->len;
}

void qmp_framer_commit(struct qmp_framer *framer, size_t n)
{
	framer->len += n;
}

size_t qmp_framer_buffered(const struct qmp_framer *framer)
{
	return framer->len - framer_keep_from(framer);
}

size_t qmp_framer_scanned(const struct qmp_framer *framer)
{
	return framer->scanned;
}

void qmp_framer_set_sentinel(struct qmp_framer *framer, int on)
{
	framer->sentinel = on;
}

void qmp_framer_skip_to_sentinel(struct qmp_framer *framer)
{
	framer->sentinel = 1;
	framer->skipping = 1;
	framer->depth = 0;
	framer->in_string = 0;
	framer->escaped = 0;
	framer->error = 0;
}

/* A sentinel at buf[i]: forget any partial object and start afresh after it. */
static void framer_reset_at(struct qmp_framer *framer, size_t i)
{
	framer->scanned += i + 1 - framer->scan;
	framer->scan = i + 1;
	framer->depth = 0;
	framer->in_string = 0;
	framer->escaped = 0;
	framer->skipping = 0;
}

static int is_json_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Between objects: skip whitespace, accept only the start of an object. */
static int framer_scan_between(struct qmp_framer *framer)
{
	while (framer->scan < framer->len) {
		char c = framer->buf[framer->scan];

		if (framer->sentinel && c == FRAMER_SENTINEL) {
			framer_reset_at(framer, framer->scan);
			continue;
		}
		if (framer->skipping) {
			framer->scan++;
			framer->scanned++;
			continue;
		}
		if (c == '{') {
			framer->msg_start = framer->scan++;
			framer->scanned++;
			framer->depth = 1;
			return 0;
		}
		if (!is_json_space(c))
			return QMP_EPROTO;
		framer->scan++;
		framer->scanned++;
	}
	return 0;
}

/* Inside an object: returns 1 once its closing brace has been scanned, 2
 * when a sentinel dropped it (scanning goes on between objects). */
static int framer_scan_object(struct qmp_framer *framer)
{
	const char *buf = framer->buf;
	size_t i;

	for (i = framer->scan; i < framer->len; i++) {
		char c = buf[i];

		if (framer->sentinel && c == FRAMER_SENTINEL) {
			framer_reset_at(framer, i);
			return 2;
		}
		if (framer->in_string) {
			if (framer->escaped)
				framer->escaped = 0;
			else if (c == '\\')
				framer->escaped = 1;
			else if (c == '"')
				framer->in_string = 0;
		} else if (c == '"') {
			framer->in_string = 1;
		} else if (c == '{' || c == '[') {
			framer->depth++;
		} else if ((c == '}' || c == ']') && --framer->depth == 0) {
			framer->scanned += i + 1 - framer->scan;
			framer->scan = i + 1;
			return 1;
		}
	}
	framer->scanned += i - framer->scan;
	framer->scan = i;
	return 0;
}

static int framer_parse(struct qmp_framer *framer, json_t **msg,
			const char **raw, size_t *raw_len)
{
	const char *text = framer->buf + framer->msg_start;
	size_t len = framer->scan - framer->msg_start;
	json_error_t error;

	*msg = json_loadb(text, len, 0, &error);
	if (*msg == NULL || !json_is_object(*msg)) {
		json_decref(*msg);
		*msg = NULL;
		return QMP_EPROTO;
	}
	if (raw != NULL) {
		*raw = text;
		*raw_len = len;
	}
	return 1;
}

int qmp_framer_next(struct qmp_framer *framer, json_t **msg, const char **raw,
		    size_t *raw_len)
{
	int r;

	*msg = NULL;
	if (framer->error)
		return framer->error;
	do {
		if (framer->depth == 0)
			r = framer_scan_between(framer);
		else
			r = 0;
		if (r == 0 && framer->depth > 0)
			r = framer_scan_object(framer);
	} while (r == 2);
	/* An unfinished object already over the limit can never be valid. */
	if (r == 0 && framer->depth > 0 &&
	    framer->scan - framer->msg_start > framer->max_message)
		r = QMP_ETOOBIG;
	if (r == 1) {
		framer->depth = 0;
		if (framer->scan - framer->msg_start > framer->max_message)
			r = QMP_ETOOBIG;
		else
			r = framer_parse(framer, msg, raw, raw_len);
	}
	if (r < 0)
		framer->error = r;
	return r;
}
