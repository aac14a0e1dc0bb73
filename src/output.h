/*
 * output.h: what qckpt prints on stdout for scripts and people: JSON objects
 * one per line (stable field names, scripts depend on them) and tables.
 */
#ifndef OUTPUT_H
#define OUTPUT_H

#include <jansson.h>

/* One compact JSON object and a newline, keys in insertion order. */
void output_json_line(json_t *obj);

/* errno of the first write to stdout that failed in output_json_line (its
 * flush), 0 if none: the final check names the cause (cmd.c). */
extern int output_write_errno;

#endif
