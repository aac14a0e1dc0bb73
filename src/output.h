/*
 * output.h: what qckpt prints on stdout for scripts and people: JSON objects
 * one per line (stable field names, scripts depend on them) and tables.
 */
#ifndef OUTPUT_H
#define OUTPUT_H

#include <stdio.h>
#include <jansson.h>

/* One compact JSON object and a newline, keys in insertion order. */
void output_json_line(json_t *obj);

/* errno of the first write to stdout that failed in output_json_line (its
 * flush), 0 if none: the final check names the cause (cmd.c). */
extern int output_write_errno;
/* The string member KEY of a record, DFLT when it is absent or not a string. */
const char *output_str(json_t *o, const char *key, const char *dflt);

/* A record's CreationTime for a table: "2026-11-25T07:55:45.594+00:00" ->
 * "2026-11-25 07:55:45" (the local time it was taken, as recorded). */
void output_short_time(const char *iso8601, char *out, size_t len);

/*
 * The columns a terminal gives a UTF-8 string: a code point takes what
 * wcwidth() says in a UTF-8 locale (2 for East Asian wide characters, 0 for
 * combining marks), whatever the user's locale is.
 */
size_t output_display_width(const char *s);

/* S then spaces up to WIDTH display columns (S as is when wider). */
void output_padded(FILE *f, const char *s, size_t width);

/*
 * A text table: each column as wide as its widest cell, measured in display
 * width, so that "Production" and a name like "café" or "数据库" keep the
 * columns in line.  Columns are separated by one space; ALIGN has one
 * character per column, 'l' or 'r'; the last column is not padded.
 */
struct output_table;
struct output_table *output_table_new(const char *align, const char *const *headers);
/* A row of as many cells as there are headers (copied). */
void output_table_add(struct output_table *t, const char *const *cells);
/* Print the header and the rows, and free the table. */
void output_table_print(struct output_table *t, FILE *f);

#endif
