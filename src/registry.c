/*
 * registry.c: reading the registry file (see registry.h and
 * qckpt-registry(5)).  Kept apart from the commands so that every command,
 * and the tests, resolve names the same way.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry.h"
#include "util.h"

/* Each type as the registry spells it and as Hyper-V's CheckpointType does. */
static const struct {
	const char *key, *checkpoint_type;
} type_names[] = {
	[VM_TYPE_STANDARD] = { "standard", "Standard" },
	[VM_TYPE_PRODUCTION] = { "production", "Production" },
	[VM_TYPE_PRODUCTION_ONLY] = { "production-only", "ProductionOnly" },
	[VM_TYPE_DISABLED] = { "disabled", "Disabled" },
};

int registry_parse_type(const char *text, enum vm_type *type)
{
	for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++) {
		if (strcmp(text, type_names[i].key) == 0) {
			*type = (enum vm_type)i;
			return 0;
		}
	}
	return -1;
}

const char *registry_type_name(enum vm_type type)
{
	return type_names[type].key;
}

const char *registry_checkpoint_type_name(enum vm_type type)
{
	return type_names[type].checkpoint_type;
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

const char *registry_unix_path(const char *address)
{
	if (strncmp(address, "unix:", 5) == 0)
		address += 5;
	return address[0] == '/' ? address : NULL;
}

int registry_valid_monitor(const char *monitor)
{
	if (strncmp(monitor, "tcp:", 4) == 0 || strncmp(monitor, "tls:", 4) == 0)
		return strrchr(monitor + 4, ':') != NULL;
	return registry_unix_path(monitor) != NULL;
}

int registry_one_word(const char *word)
{
	for (const char *p = word; *p; p++)
		if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
			return 0;
	return word[0] != '\0' && word[0] != '#';
}

static void entry_free(struct registry_entry *e)
{
	free(e->name);
	free(e->monitor);
	free(e->dir);
	free(e->overlay_dir);
	free(e->remote_dir);
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
	else if (strncmp(word, "remote-dir=", 11) == 0)
		slot = &e->remote_dir;
	else if (strncmp(word, "agent=", 6) == 0)
		slot = &e->agent;
	else if (strncmp(word, "type=", 5) == 0)
		return registry_parse_type(eq + 1, &e->type) == 0 ? NULL :
		       "type must be standard, production, production-only or disabled";
	else if (strncmp(word, "name-check=", 11) == 0) {
		/* off: a QEMU without -name is trusted to be this VM */
		if (strcmp(eq + 1, "on") != 0 && strcmp(eq + 1, "off") != 0)
			return "name-check must be on or off";
		e->name_check_off = strcmp(eq + 1, "off") == 0;
		return NULL;
	} else
		return "unknown key (known: dir, overlay-dir, remote-dir, agent, type, name-check)";
	if (*slot != NULL)
		return "key given twice";
	/* The agent is a socket, spelled as the monitor is. */
	if (slot == &e->agent && !registry_valid_monitor(eq + 1))
		return "agent must be unix:PATH, an absolute path or tcp:HOST:PORT";
	if (slot != &e->agent && eq[1] != '/')
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
		return "missing monitor (unix:PATH, /abs/path, tcp:HOST:PORT or tls:HOST:PORT)";
	if (!registry_valid_monitor(word))
		return "bad monitor (unix:PATH, /abs/path, tcp:HOST:PORT or tls:HOST:PORT)";
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

char *registry_path_for_writing(const char *path)
{
	const char *env = getenv("QCKPT_REGISTRY");
	const char *xdg = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	char *reading;
	int explicit;

	if (path != NULL)
		return xstrdup(path);
	if (env != NULL && *env != '\0')
		return xstrdup(env);
	/* The file that is read, when there is one: creating another would
	 * hide it (a new ~/.config file shadows /etc/qckpt/registry). */
	reading = registry_default_path(&explicit);
	if (access(reading, F_OK) == 0)
		return reading;
	free(reading);
	if (geteuid() == 0)
		return xstrdup("/etc/qckpt/registry");
	if (xdg != NULL && *xdg == '/')
		return xasprintf("%s/qckpt/registry", xdg);
	return xasprintf("%s/.config/qckpt/registry", home ? home : "");
}

/* Lock PATH.lock (the registry itself is replaced by rename, so it cannot
 * carry the lock).  Returns the lock fd or -errno. */
static int registry_lock(const char *path)
{
	char *lock = xasprintf("%s.lock", path);
	char *dir = dir_name(path);
	int fd, rc = mkdir_p(dir, 0755);

	fd = rc < 0 ? rc : open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0 && rc == 0)
		fd = -errno;
	if (fd >= 0 && flock(fd, LOCK_EX) < 0) {
		rc = -errno;
		close(fd);
		fd = rc;
	}
	free(lock);
	free(dir);
	return fd;
}

/* Check NEWTEXT with the parser, then write it; 0 or -1 with err. */
static int registry_commit(const char *path, const char *newtext, char *err,
			   size_t errlen)
{
	struct registry check;
	int rc;

	if (registry_parse(path, newtext, &check, err, errlen) < 0)
		return -1;
	registry_free(&check);
	rc = write_file_atomic(path, newtext, strlen(newtext), 0644);
	if (rc < 0) {
		snprintf(err, errlen, "%s: cannot write the registry: %s", path,
			 strerror(-rc));
		return -1;
	}
	return 0;
}

/* Read the current text ("" when the file does not exist yet). */
static int registry_read_for_change(const char *path, char **text, char *err,
				    size_t errlen)
{
	struct registry reg;
	int rc = read_whole_file(path, text);

	if (rc == -ENOENT) {
		*text = xstrdup("");
		return 0;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s: cannot read the registry: %s", path,
			 strerror(-rc));
		return -1;
	}
	if (registry_parse(path, *text, &reg, err, errlen) < 0) {
		free(*text);
		return -1;
	}
	registry_free(&reg);
	return 0;
}

/*
 * The one way the registry file changes: lock, read and check the current
 * text, let CHANGE make the new text (NULL with err filled to refuse), check
 * and write it.
 */
typedef char *(*registry_change_fn)(const char *path, const char *text,
				    void *arg, char *err, size_t errlen);

static int registry_change(const char *path, registry_change_fn change,
			   void *arg, char *err, size_t errlen)
{
	char *text, *newtext;
	int lock, rc = -1;

	if ((lock = registry_lock(path)) < 0) {
		snprintf(err, errlen, "%s: cannot lock the registry: %s", path,
			 strerror(-lock));
		return -1;
	}
	if (registry_read_for_change(path, &text, err, errlen) == 0) {
		newtext = change(path, text, arg, err, errlen);
		if (newtext != NULL)
			rc = registry_commit(path, newtext, err, errlen);
		free(newtext);
		free(text);
	}
	close(lock);
	return rc;
}

struct add_args {
	const char *name;
	char *line;
};

static char *append_line(const char *path, const char *text, void *arg,
			 char *err, size_t errlen)
{
	struct add_args *a = arg;
	struct registry reg;
	const struct registry_entry *e;
	size_t len = strlen(text);
	char *newtext = NULL;

	registry_parse(path, text, &reg, err, errlen);
	if ((e = registry_find(&reg, a->name)) != NULL)
		snprintf(err, errlen, "%s: '%s' is already registered (line %d); 'qckpt unregister %s' first",
			 path, a->name, e->line, a->name);
	else
		newtext = xasprintf("%s%s%s\n", text,
				    len && text[len - 1] != '\n' ? "\n" : "", a->line);
	registry_free(&reg);
	return newtext;
}

int registry_add(const char *path, const char *name, const char *monitor,
		 char *const *keys, size_t nkeys, char *err, size_t errlen)
{
	struct add_args a = { .name = name };
	int rc;

	/* A blank or a newline in a value would make another word or another
	 * line (another VM) of the registry. */
	if (!registry_one_word(name) || !registry_one_word(monitor)) {
		snprintf(err, errlen, "%s: the name and the monitor must be words without blanks or control characters",
			 path);
		return -1;
	}
	for (size_t i = 0; i < nkeys; i++) {
		if (!registry_one_word(keys[i])) {
			snprintf(err, errlen, "%s: setting '%.*s' must be key=value without blanks or control characters",
				 path, (int)strcspn(keys[i], "="), keys[i]);
			return -1;
		}
	}
	a.line = xasprintf("%s %s", name, monitor);
	for (size_t i = 0; i < nkeys; i++) {
		char *longer = xasprintf("%s %s", a.line, keys[i]);

		free(a.line);
		a.line = longer;
	}
	rc = registry_change(path, append_line, &a, err, errlen);
	free(a.line);
	return rc;
}

/* Is LINE the entry of NAME?  (First word; comments and blanks never.) */
static int line_names(const char *line, size_t len, const char *name)
{
	size_t skip = strspn(line, " \t"), n = strlen(name);

	return len > skip + n && strncmp(line + skip, name, n) == 0 &&
	       (line[skip + n] == ' ' || line[skip + n] == '\t' ||
		line[skip + n] == '\r' || skip + n == len);
}

static char *drop_line(const char *path, const char *text, void *arg,
		       char *err, size_t errlen)
{
	const char *name = arg;
	char *newtext = xmalloc(strlen(text) + 1);
	size_t outlen = 0;
	int found = 0;

	for (const char *p = text; *p != '\0';) {
		size_t len = strcspn(p, "\n"), with_nl = len + (p[len] == '\n');

		if (line_names(p, len, name)) {
			found = 1;
		} else {
			memcpy(newtext + outlen, p, with_nl);
			outlen += with_nl;
		}
		p += with_nl;
	}
	newtext[outlen] = '\0';
	if (!found) {
		snprintf(err, errlen, "%s: '%s' is not registered; see the names with 'qckpt vms'",
			 path, name);
		free(newtext);
		return NULL;
	}
	return newtext;
}

int registry_remove(const char *path, const char *name, char *err,
		    size_t errlen)
{
	return registry_change(path, drop_line, (void *)name, err, errlen);
}
