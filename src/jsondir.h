/*
 * jsondir.h: a directory whose entries each hold one JSON record (the
 * catalog's checkpoints, the background jobs), read as one sorted array.
 */
#ifndef JSONDIR_H
#define JSONDIR_H

#include <jansson.h>

/* LOAD(dir, entry) returns a new reference or NULL to skip the entry;
 * entries starting with '.' are skipped.  Sorted with COMPARE (qsort on
 * json_t *), which may be NULL.  A missing directory is an empty array. */
json_t *json_dir_load(const char *dir,
		      json_t *(*load)(const char *dir, const char *entry),
		      int (*compare)(const void *a, const void *b));

#endif
