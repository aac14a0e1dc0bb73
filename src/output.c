/*
 * output.c: see output.h.  Kept apart so every command prints objects and
 * tables the same way.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "output.h"
#include "util.h"

int output_write_errno;

void output_json_line(json_t *obj)
{
	char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);

	if (text != NULL) {
		errno = 0;
		puts(text);
		if (fflush(stdout) == EOF && output_write_errno == 0)
			output_write_errno = errno ? errno : EIO;
	}
	free(text);
}

const char *output_str(json_t *o, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : dflt;
}

void output_short_time(const char *iso8601, char *out, size_t len)
{
	if (strlen(iso8601) > 11)
		snprintf(out, len, "%.10s %.8s", iso8601, iso8601 + 11);
	else
		snprintf(out, len, "%s", iso8601);
}

/* Width of one code point when no UTF-8 locale is installed: East Asian
 * wide and fullwidth blocks take 2, combining diacritics 0. */
static int fallback_width(wchar_t c)
{
	if (c >= 0x300 && c <= 0x36f)
		return 0;
	if ((c >= 0x1100 && c <= 0x115f) || (c >= 0x2e80 && c <= 0xa4cf) ||
	    (c >= 0xac00 && c <= 0xd7a3) || (c >= 0xf900 && c <= 0xfaff) ||
	    (c >= 0xfe30 && c <= 0xfe4f) || (c >= 0xff00 && c <= 0xff60) ||
	    (c >= 0xffe0 && c <= 0xffe6) || (c >= 0x1f300 && c <= 0x1f64f) ||
	    (c >= 0x1f900 && c <= 0x1f9ff) || (c >= 0x20000 && c <= 0x3fffd))
		return 2;
	return 1;
}

/* Records hold UTF-8 (JSON) whatever the user's locale: decode them in a
 * UTF-8 locale of this thread only, so nothing else changes meaning. */
size_t output_display_width(const char *s)
{
	static locale_t utf8;
	static int tried;
	locale_t old = (locale_t)0;
	mbstate_t st;
	size_t width = 0, len = strlen(s);

	if (!tried) {
		tried = 1;
		utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	}
	if (utf8 != (locale_t)0)
		old = uselocale(utf8);
	memset(&st, 0, sizeof st);
	while (len > 0) {
		wchar_t c;
		size_t n = mbrtowc(&c, s, len, &st);
		int w;

		if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
			/* not UTF-8 after all: a byte is a column */
			memset(&st, 0, sizeof st);
			n = 1;
			w = 1;
		} else {
			w = utf8 != (locale_t)0 ? wcwidth(c) : fallback_width(c);
			if (w < 0) /* a control character: printed as one */
				w = 1;
		}
		width += (size_t)w;
		s += n;
		len -= n;
	}
	if (utf8 != (locale_t)0)
		uselocale(old);
	return width;
}

struct output_table {
	size_t ncols;
	char *align;
	json_t *rows; /* arrays of strings, the header first */
};

struct output_table *output_table_new(const char *align, const char *const *headers)
{
	struct output_table *t = xcalloc(1, sizeof *t);

	t->ncols = strlen(align);
	t->align = xstrdup(align);
	t->rows = json_array();
	output_table_add(t, headers);
	return t;
}

void output_table_add(struct output_table *t, const char *const *cells)
{
	json_t *row = json_array();

	for (size_t i = 0; i < t->ncols; i++)
		json_array_append_new(row, json_string(cells[i] ? cells[i] : ""));
	json_array_append_new(t->rows, row);
}

void output_padded(FILE *f, const char *s, size_t width)
{
	size_t w = output_display_width(s);

	fprintf(f, "%s%*s", s, w < width ? (int)(width - w) : 0, "");
}

static void print_cell(FILE *f, const char *s, size_t width, char align, int last)
{
	size_t w = output_display_width(s);

	if (align == 'r')
		fprintf(f, "%*s%s", (int)(width - w), "", s);
	else if (last)
		fputs(s, f);
	else
		output_padded(f, s, width);
}

void output_table_print(struct output_table *t, FILE *f)
{
	size_t *width = xcalloc(t->ncols, sizeof *width);
	size_t i;
	json_t *row;

	json_array_foreach(t->rows, i, row)
		for (size_t c = 0; c < t->ncols; c++) {
			size_t w = output_display_width(json_string_value(json_array_get(row, c)));

			if (w > width[c])
				width[c] = w;
		}
	json_array_foreach(t->rows, i, row) {
		for (size_t c = 0; c < t->ncols; c++) {
			if (c > 0)
				fputc(' ', f);
			print_cell(f, json_string_value(json_array_get(row, c)), width[c],
				     t->align[c], c + 1 == t->ncols);
		}
		fputc('\n', f);
	}
	fflush(f);
	free(width);
	free(t->align);
	json_decref(t->rows);
	free(t);
}
