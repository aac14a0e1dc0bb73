/*
 * jsondir.c: see jsondir.h.
 */
#include <dirent.h>
#include <stdlib.h>

#include "jsondir.h"
#include "util.h"

json_t *json_dir_load(const char *dir,
		      json_t *(*load)(const char *dir, const char *entry),
		      int (*compare)(const void *a, const void *b))
{
	DIR *d = opendir(dir);
	struct dirent *de;
	json_t **items = NULL, *list = json_array();
	size_t n = 0;

	while (d != NULL && (de = readdir(d)) != NULL) {
		json_t *item;

		if (de->d_name[0] == '.' || (item = load(dir, de->d_name)) == NULL)
			continue;
		items = xrealloc(items, (n + 1) * sizeof *items);
		items[n++] = item;
	}
	if (d != NULL)
		closedir(d);
	if (n > 1 && compare != NULL)
		qsort(items, n, sizeof *items, compare);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, items[i]);
	free(items);
	return list;
}
