/*
 * registry.c: reading the registry file (see registry.h and
 * qckpt-registry(5)).  Kept apart from the commands so that every command,
 * and the tests, resolve names the same way.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry.h"
#include "util.h"

static const char *const type_names[] = {
	[VM_TYPE_STANDARD] = "standard",
	[VM_TYPE_PRODUCTION] = "production",
	[VM_TYPE_PRODUCTION_ONLY] = "production-only",
	[VM_TYPE_DISABLED] = "disabled",
};

int registry_parse_type(const char *text, enum vm_type *type)
{
	for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++) {
		if (strcmp(text, type_names[i]) == 0) {
			*type = (enum vm_type)i;
			return 0;
		}
	}
	return -1;
}

const char *registry_type_name(enum vm_type type)
{
	return type_names[type];
}

int registry_valid_name(const char *name)
{
	if (name[0] == '\0' || name[0] == '-' || name[0] == '.' ||
	    strlen(name) > 64)
		return 0;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
			return 0;
	return 1;
}

int registry_valid_monitor(const char *monitor)
{
	if (strncmp(monitor, "unix:", 5) == 0)
		return monitor[5] == '/';
	if (strncmp(monitor, "tcp:", 4) == 0)
		return strrchr(monitor + 4, ':') != NULL;
	return monitor[0] == '/';
}

static void entry_free(struct registry_entry *e)
{
	free(e->name);
	free(e->monitor);
	free(e->dir);
	free(e->overlay_dir);
	free(e->agent);
}

void registry_free(struct registry *reg)
{
	for (size_t i = 0; i < reg->count; i++)
		entry_free(&reg->entries[i]);
	free(reg->entries);
	free(reg->path);
	memset(reg, 0, sizeof *reg);
}

const struct registry_entry *registry_find(const struct registry *reg,
					   const char *name)
{
	for (size_t i = 0; i < reg->count; i++)
		if (strcmp(reg->entries[i].name, name) == 0)
			return &reg->entries[i];
	return NULL;
}

/* One key=value of an entry; returns a message on error, else NULL. */
static const char *entry_set_key(struct registry_entry *e, const char *word)
{
	const char *eq = strchr(word, '=');
	char **slot = NULL;

	if (eq == NULL || eq == word)
		return "expected key=value";
	if (eq[1] == '\0')
		return "empty value";
	if (strncmp(word, "dir=", 4) == 0)
		slot = &e->dir;
	else if (strncmp(word, "overlay-dir=", 12) == 0)
		slot = &e->overlay_dir;
	else if (strncmp(word, "agent=", 6) == 0)
		slot = &e->agent;
	else if (strncmp(word, "type=", 5) == 0)
		return registry_parse_type(eq + 1, &e->type) == 0 ? NULL :
		       "type must be standard, production, production-only or disabled";
	else
		return "unknown key (known: dir, overlay-dir, agent, type)";
	if (*slot != NULL)
		return "key given twice";
	if (eq[1] != '/')
		return "path must be absolute";
	*slot = xstrdup(eq + 1);
	return NULL;
}

static const char *parse_line(char *line, struct registry_entry *e)
{
	char *save = NULL;
	char *word = strtok_r(line, " \t", &save);
	const char *why;

	if (!registry_valid_name(word))
		return "bad VM name (letters, digits, '.', '_' and '-')";
	e->name = xstrdup(word);
	word = strtok_r(NULL, " \t", &save);
	if (word == NULL)
		return "missing monitor (unix:PATH, /abs/path or tcp:HOST:PORT)";
	if (!registry_valid_monitor(word))
		return "bad monitor (unix:PATH, /abs/path or tcp:HOST:PORT)";
	e->monitor = xstrdup(word);
	while ((word = strtok_r(NULL, " \t", &save)) != NULL) {
		if (word[0] == '#')
			break;
		if ((why = entry_set_key(e, word)) != NULL)
			return why;
	}
	return NULL;
}

int registry_parse(const char *path, const char *text, struct registry *reg,
		   char *err, size_t errlen)
{
	const char *p = text;
	int lineno = 0;

	memset(reg, 0, sizeof *reg);
	reg->path = xstrdup(path);
	reg->exists = 1;
	while (*p != '\0') {
		size_t len = strcspn(p, "\n");
		char *line = xstrndup(p, len);
		char *s = line + strspn(line, " \t");
		struct registry_entry e = { .line = ++lineno };
		const char *why;

		p += len + (p[len] == '\n');
		s[strcspn(s, "\r")] = '\0';
		if (*s == '\0' || *s == '#') {
			free(line);
			continue;
		}
		why = parse_line(s, &e);
		if (why == NULL && registry_find(reg, e.name) != NULL)
			why = "VM name registered twice";
		free(line);
		if (why != NULL) {
			snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
			entry_free(&e);
			registry_free(reg);
			return -1;
		}
		reg->entries = xrealloc(reg->entries,
					(reg->count + 1) * sizeof e);
		reg->entries[reg->count++] = e;
	}
	return 0;
}

static char *registry_default_path(int *explicit)
{
	const char *env = getenv("QCKPT_REGISTRY");
	const char *xdg = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	char *path;

	*explicit = 0;
	if (env != NULL && *env != '\0') {
		*explicit = 1;
		return xstrdup(env);
	}
	if (xdg != NULL && *xdg == '/')
		path = xasprintf("%s/qckpt/registry", xdg);
	else if (home != NULL && *home == '/')
		path = xasprintf("%s/.config/qckpt/registry", home);
	else
		return xstrdup("/etc/qckpt/registry");
	if (access(path, F_OK) == 0)
		return path;
	free(path);
	return xstrdup("/etc/qckpt/registry");
}

int registry_load(const char *path, struct registry *reg, char *err,
		  size_t errlen)
{
	int explicit = path != NULL;
	char *file = path ? xstrdup(path) : registry_default_path(&explicit);
	char *text = NULL;
	int rc;

	rc = read_whole_file(file, &text);
	if (rc == -ENOENT && !explicit) {
		memset(reg, 0, sizeof *reg);
		reg->path = file;
		return 0;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s: cannot read the registry: %s", file,
			 strerror(-rc));
		free(file);
		return -1;
	}
	rc = registry_parse(file, text, reg, err, errlen);
	free(text);
	free(file);
	return rc;
}
