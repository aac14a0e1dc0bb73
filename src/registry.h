/*
 * registry.h: the name registry, a plain text file mapping VM names to QMP
 * monitors and per-VM settings (format: qckpt-registry(5)).  Parsing is
 * strict: an unknown key or a malformed line is an error naming file and
 * line, because a typo must not pass silently.
 */
#ifndef REGISTRY_H
#define REGISTRY_H

#include <stddef.h>

enum vm_type {
	VM_TYPE_STANDARD,
	VM_TYPE_PRODUCTION,
	VM_TYPE_PRODUCTION_ONLY,
	VM_TYPE_DISABLED,
};

struct registry_entry {
	char *name;
	char *monitor;     /* "unix:PATH", "/abs/path" or "tcp:HOST:PORT" */
	char *dir;         /* catalog directory, NULL for the default */
	char *overlay_dir; /* where new overlays go, NULL: beside the image */
	/* tcp:/tls: monitors: where on the QEMU host memory states go, NULL:
	 * beside the first disk's active image */
	char *remote_dir;
	char *agent;       /* guest agent socket, as monitor; NULL if none */
	enum vm_type type;
	int name_check_off; /* name-check=off: a QEMU without -name is accepted */
	int line;
};

struct registry {
	char *path;
	int exists;
	struct registry_entry *entries;
	size_t count;
};

/*
 * Load PATH, or when NULL the first of $QCKPT_REGISTRY,
 * $XDG_CONFIG_HOME/qckpt/registry (~/.config), /etc/qckpt/registry.  A
 * default file that does not exist is an empty registry; a file named
 * explicitly must exist.  On error returns -1 with "FILE:LINE: ..." in err.
 */
int registry_load(const char *path, struct registry *reg, char *err,
		  size_t errlen);

/* Parse registry text (for tests and for load). */
int registry_parse(const char *path, const char *text, struct registry *reg,
		   char *err, size_t errlen);

const struct registry_entry *registry_find(const struct registry *reg,
					   const char *name);
void registry_free(struct registry *reg);

int registry_parse_type(const char *text, enum vm_type *type);
const char *registry_type_name(enum vm_type type);
/* The same type as Hyper-V's CheckpointType names it ("ProductionOnly"). */
const char *registry_checkpoint_type_name(enum vm_type type);

/* A VM name: letters, digits, '.', '_', '-', not starting with '-' or '.'. */
int registry_valid_name(const char *name);
/* A monitor (or agent) address qckpt understands: unix:/PATH, /PATH or
 * tcp:HOST:PORT. */
int registry_valid_monitor(const char *monitor);
/* The socket path of a unix address ("unix:/p" or "/p": "/p", pointing
 * into ADDRESS), or NULL for any other (tcp:, relative). */
const char *registry_unix_path(const char *address);
/* Can WORD stay one word of a registry line: not empty, no blanks, no
 * control characters (a newline would add a line), no leading '#'? */
int registry_one_word(const char *word);

/*
 * The registry file that register/unregister change: PATH if given, else
 * $QCKPT_REGISTRY, else the default file that registry_load reads if it
 * exists (so a new file never hides it), else /etc/qckpt/registry for root,
 * else $XDG_CONFIG_HOME/qckpt/registry (~/.config).  New string.
 */
char *registry_path_for_writing(const char *path);

/*
 * Add the line "NAME MONITOR KEY=VALUE..." to the registry file at PATH
 * (created if missing), or remove NAME's line.  Under an exclusive lock
 * (PATH.lock), the new text is checked by the parser and written crash-safely
 * (temporary file, fsync, rename); comments, blank lines and the order of
 * the other lines are kept.  A duplicate name, a name not registered or bad
 * syntax is refused: -1 with a message in err.
 */
int registry_add(const char *path, const char *name, const char *monitor,
		 char *const *keys, size_t nkeys, char *err, size_t errlen);
int registry_remove(const char *path, const char *name, char *err,
		    size_t errlen);

#endif
