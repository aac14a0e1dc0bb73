/*
 * output.c: see output.h.  Kept apart so every command prints objects the
 * same way.
 */
#include <stdio.h>
#include <stdlib.h>

#include "output.h"

void output_json_line(json_t *obj)
{
	char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);

	if (text != NULL) {
		puts(text);
		fflush(stdout);
	}
	free(text);
}
