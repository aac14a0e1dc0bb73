/*
 * output.c: see output.h.  Kept apart so every command prints objects the
 * same way.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "output.h"

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
