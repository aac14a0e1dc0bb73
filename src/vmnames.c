/*
 * vmnames.c: see vmnames.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "log.h"
#include "util.h"
#include "vmnames.h"

void vm_names_add(struct vm_names *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], name) == 0)
			return;
	l->v = xrealloc(l->v, (l->n + 1) * sizeof *l->v);
	l->v[l->n++] = xstrdup(name);
}

void vm_names_add_list(struct vm_names *l, const char *list)
{
	char *copy = xstrdup(list), *save = NULL;

	for (char *n = strtok_r(copy, ",", &save); n; n = strtok_r(NULL, ",", &save))
		if (*n != '\0')
			vm_names_add(l, n);
	free(copy);
}

/* A `qckpt vms --json` object (or a checkpoint object: VMName). */
static int add_object(struct vm_names *l, const char *text, int lineno)
{
	json_t *obj = json_loads(text, 0, NULL);
	const char *name = json_string_value(json_object_get(obj, "Name"));
	int rc = 0;

	if (name == NULL)
		name = json_string_value(json_object_get(obj, "VMName"));
	if (name == NULL)
		rc = error("stdin:%d: a VM object needs a \"Name\" (as 'qckpt vms --json' prints)", lineno);
	else
		vm_names_add(l, name);
	json_decref(obj);
	return rc;
}

int vm_names_read_stdin(struct vm_names *l)
{
	char *line = NULL;
	size_t cap = 0;
	int lineno = 0, rc = 0;

	while (getline(&line, &cap, stdin) >= 0) {
		char *s = line + strspn(line, " \t");

		lineno++;
		s[strcspn(s, "\r\n")] = '\0';
		if (*s == '\0')
			continue;
		if (*s == '{') {
			if (add_object(l, s, lineno) < 0)
				rc = -1;
			continue;
		}
		vm_names_add(l, s);
	}
	free(line);
	return rc;
}

void vm_names_free(struct vm_names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}
