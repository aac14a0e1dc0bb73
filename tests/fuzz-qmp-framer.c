/*
 * fuzz-qmp-framer.c: the fuzz target for the QMP stream parser.
 *
 * Everything QEMU (or a guest agent, which runs inside an untrusted guest)
 * sends goes through qmp/framer.c first, so it must survive any bytes.  The
 * target checks more than "no crash": it feeds the same bytes twice, once
 * whole and once cut into pieces of fuzzer-chosen sizes (through both feed
 * and reserve/commit), and requires the same messages and the same final
 * error from both, since where reads end must never change what is parsed.
 * Each message's raw text must parse to the same object, and the framer
 * must never have scanned more bytes than it was given.
 *
 * Built two ways:
 * - with -DQCKPT_LIBFUZZER by scripts/fuzz (clang -fsanitize=fuzzer): the
 *   campaign CI runs for a bounded time on the committed seed corpus;
 * - as an ordinary cmocka test (make check): it replays every file of
 *   tests/corpus/qmp-framer/, so each crash once found stays fixed.
 *
 * The first input byte chooses the mode: bit 0 the guest agent's 0xFF
 * sentinel (with a resync after each error, as the agent client does),
 * bit 1 a small message limit (only the no-crash checks apply then: an
 * unfinished object over the limit is refused as soon as it is seen, so
 * the result may depend on where reads end).  The second byte seeds the
 * piece sizes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "qmp.h"
#include "framer.h"

#define SMALL_LIMIT 64u

struct outcome {
	json_t *messages; /* array of what next() returned, in order */
	int error;        /* the sticky error at the end, 0 for none */
};

static void fuzz_check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz-qmp-framer: %s\n", what);
		abort();
	}
}

/* Take every complete message out of the framer; resync on errors in
 * sentinel mode, as qmp/client.c does for the guest agent. */
static void drain(struct qmp_framer *f, int sentinel, struct outcome *out)
{
	for (;;) {
		json_t *msg, *again;
		const char *raw;
		size_t raw_len;
		int r = qmp_framer_next(f, &msg, &raw, &raw_len);

		if (r == 0)
			return;
		if (r < 0) {
			fuzz_check(msg == NULL, "an error came with a message");
			fuzz_check(r == QMP_EPROTO || r == QMP_ETOOBIG, "unknown error");
			out->error = r;
			if (!sentinel)
				return;
			json_array_append_new(out->messages, json_integer(r));
			qmp_framer_skip_to_sentinel(f);
			out->error = 0;
			continue;
		}
		fuzz_check(json_is_object(msg), "a message that is not an object");
		fuzz_check(raw_len >= 2 && raw[0] == '{' && raw[raw_len - 1] == '}',
			   "raw text is not the object's");
		again = json_loadb(raw, raw_len, 0, NULL);
		fuzz_check(json_equal(again, msg), "raw text parses to another object");
		json_decref(again);
		json_array_append_new(out->messages, msg);
	}
}

static struct qmp_framer *framer_for(int sentinel, int small)
{
	struct qmp_framer *f = qmp_framer_new(small ? SMALL_LIMIT : 0);

	fuzz_check(f != NULL, "out of memory");
	qmp_framer_set_sentinel(f, sentinel);
	return f;
}

static struct outcome run_whole(const uint8_t *data, size_t size, int sentinel,
				int small)
{
	struct qmp_framer *f = framer_for(sentinel, small);
	struct outcome out = { json_array(), 0 };

	fuzz_check(qmp_framer_feed(f, (const char *)data, size) == 0, "feed failed");
	drain(f, sentinel, &out);
	fuzz_check(qmp_framer_scanned(f) <= size, "scanned more than was fed");
	qmp_framer_free(f);
	return out;
}

static struct outcome run_pieces(const uint8_t *data, size_t size, int sentinel,
				 int small, unsigned seed)
{
	struct qmp_framer *f = framer_for(sentinel, small);
	struct outcome out = { json_array(), 0 };
	size_t done = 0;

	while (done < size && out.error == 0) {
		size_t n, room;
		char *p;

		seed = seed * 1103515245u + 12345u;
		n = 1 + (seed >> 16) % 97;
		if (n > size - done)
			n = size - done;
		if (seed & 0x8000u) {
			fuzz_check(qmp_framer_feed(f, (const char *)data + done, n) == 0,
				   "feed failed");
		} else {
			p = qmp_framer_reserve(f, &room);
			fuzz_check(p != NULL && room >= n, "reserve failed");
			memcpy(p, data + done, n);
			qmp_framer_commit(f, n);
		}
		done += n;
		drain(f, sentinel, &out);
		fuzz_check(qmp_framer_scanned(f) <= done, "scanned more than was fed");
		fuzz_check(qmp_framer_buffered(f) <= done, "buffered more than was fed");
	}
	qmp_framer_free(f);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome whole, pieces;
	int sentinel, small;

	if (size < 2)
		return 0;
	sentinel = data[0] & 1;
	small = (data[0] >> 1) & 1;
	whole = run_whole(data + 2, size - 2, sentinel, small);
	pieces = run_pieces(data + 2, size - 2, sentinel, small, data[1]);
	if (!small) {
		fuzz_check(json_equal(whole.messages, pieces.messages),
			   "whole and in pieces gave different messages");
		fuzz_check(whole.error == pieces.error,
			   "whole and in pieces ended differently");
	}
	json_decref(whole.messages);
	json_decref(pieces.messages);
	return 0;
}

#ifndef QCKPT_LIBFUZZER
/* The regression test: replay the committed corpus. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

static size_t replay_file(const char *path)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, n;

	assert_non_null(fp);
	do {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		n = fread(buf + len, 1, cap - len, fp);
		len += n;
	} while (n > 0);
	fclose(fp);
	LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	return 1;
}

static void test_corpus_replays_cleanly(void **state)
{
	const char *top = getenv("QCKPT_TOP_SRCDIR");
	char dir[4096], path[8192];
	struct dirent *e;
	size_t files = 0;
	DIR *d;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/tests/corpus/qmp-framer", top ? top : ".");
	d = opendir(dir);
	if (d == NULL)
		fail_msg("no seed corpus at %s (set QCKPT_TOP_SRCDIR)", dir);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		files += replay_file(path);
	}
	closedir(d);
	/* a corpus that went missing would make this test pass on nothing */
	assert_true(files >= 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corpus_replays_cleanly),
	};

	return cmocka_run_group_tests_name("qmp framer fuzz corpus", tests, NULL, NULL);
}
#endif
