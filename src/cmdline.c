/*
 * cmdline.c: see cmdline.h.  The rules follow QEMU's own parsers
 * (util/qemu-option.c for QemuOpts, util/keyval.c for -blockdev, the
 * option table of qemu-options.hx for which options take a value), so
 * that qckpt reads a command line exactly as QEMU will.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "cmdline.h"
#include "util.h"

/* ---- option values ---------------------------------------------------- */

/* Read a value up to a single ',' (",," is a comma); advance past it. */
static char *read_value(const char **pp)
{
	const char *p = *pp;
	char *out = xmalloc(strlen(p) + 1), *o = out;

	while (*p) {
		if (*p == ',') {
			if (p[1] != ',')
				break;
			p++;
		}
		*o++ = *p++;
	}
	*o = '\0';
	if (*p == ',')
		p++;
	*pp = p;
	return out;
}

static void qopts_push(struct qopts *o, char *key, char *value, int implied)
{
	o->v = xrealloc(o->v, (o->n + 1) * sizeof *o->v);
	o->v[o->n].key = key;
	o->v[o->n].value = value;
	o->v[o->n].implied = implied;
	o->n++;
}

void qopts_parse(const char *text, const char *implied, struct qopts *o)
{
	const char *p = text;
	int first = 1;

	memset(o, 0, sizeof *o);
	while (*p) {
		size_t klen = strcspn(p, "=,");

		if (p[klen] == '=') {
			char *key = xstrndup(p, klen);

			p += klen + 1;
			qopts_push(o, key, read_value(&p), 0);
		} else if (first && implied != NULL) {
			qopts_push(o, xstrdup(implied), read_value(&p), 1);
		} else {
			qopts_push(o, xstrndup(p, klen), NULL, 0);
			p += klen;
			if (*p == ',')
				p++;
		}
		first = 0;
	}
}

static struct qopt *qopts_find(const struct qopts *o, const char *key)
{
	for (size_t i = o->n; i-- > 0;)
		if (strcmp(o->v[i].key, key) == 0)
			return &o->v[i];
	return NULL;
}

const char *qopts_get(const struct qopts *o, const char *key)
{
	struct qopt *q = qopts_find(o, key);

	if (q == NULL)
		return NULL;
	return q->value ? q->value : "on";
}

int qopts_has(const struct qopts *o, const char *key)
{
	return qopts_find(o, key) != NULL;
}

void qopts_set(struct qopts *o, const char *key, const char *value)
{
	struct qopt *q = qopts_find(o, key);

	if (q == NULL) {
		qopts_push(o, xstrdup(key), xstrdup(value), 0);
		return;
	}
	free(q->value);
	q->value = xstrdup(value);
}

char *qopts_escape(const char *value)
{
	char *out = xmalloc(2 * strlen(value) + 1), *o = out;

	for (const char *p = value; *p; p++) {
		if (*p == ',')
			*o++ = ',';
		*o++ = *p;
	}
	*o = '\0';
	return out;
}

char *qopts_format(const struct qopts *o)
{
	char *out = xstrdup("");

	for (size_t i = 0; i < o->n; i++) {
		const struct qopt *q = &o->v[i];
		char *val = q->value ? qopts_escape(q->value) : NULL;
		char *next;

		if (q->implied)
			next = xasprintf("%s%s%s", out, i ? "," : "", val);
		else if (val == NULL)
			next = xasprintf("%s%s%s", out, i ? "," : "", q->key);
		else
			next = xasprintf("%s%s%s=%s", out, i ? "," : "", q->key, val);
		free(out);
		free(val);
		out = next;
	}
	return out;
}

void qopts_free(struct qopts *o)
{
	for (size_t i = 0; i < o->n; i++) {
		free(o->v[i].key);
		free(o->v[i].value);
	}
	free(o->v);
	memset(o, 0, sizeof *o);
}

int qopts_true(const char *value)
{
	return value != NULL && (strcmp(value, "on") == 0 || strcmp(value, "yes") == 0 ||
				 strcmp(value, "true") == 0 || strcmp(value, "y") == 0);
}

/* ---- the command line ------------------------------------------------- */

void cmdline_init(struct cmdline *c, char *const *argv, size_t argc)
{
	c->argv = xcalloc(argc + 1, sizeof *c->argv);
	for (size_t i = 0; i < argc; i++)
		c->argv[i] = xstrdup(argv[i]);
	c->argc = argc;
}

void cmdline_free(struct cmdline *c)
{
	for (size_t i = 0; i < c->argc; i++)
		free(c->argv[i]);
	free(c->argv);
	memset(c, 0, sizeof *c);
}

void cmdline_append(struct cmdline *c, const char *first, ...)
{
	va_list ap;

	va_start(ap, first);
	for (const char *a = first; a != NULL; a = va_arg(ap, const char *)) {
		c->argv = xrealloc(c->argv, (c->argc + 2) * sizeof *c->argv);
		c->argv[c->argc++] = xstrdup(a);
		c->argv[c->argc] = NULL;
	}
	va_end(ap);
}

json_t *cmdline_to_json(const struct cmdline *c)
{
	json_t *a = json_array();

	for (size_t i = 0; i < c->argc; i++)
		json_array_append_new(a, json_string(c->argv[i]));
	return a;
}

/* QEMU's options that take no value (qemu-options.hx, 7.2 to 10.x, and a
 * few older spellings); every other option takes one. */
static const char *const options_without_value[] = {
	"h", "help", "version", "S", "s", "snapshot", "nographic", "portrait",
	"full-screen", "win2k-hack", "no-fd-bootchk", "no-acpi", "no-hpet",
	"usb", "audio-help", "mem-prealloc", "enable-kvm", "no-kvm",
	"xen-attach", "xen-domid-restrict", "no-reboot", "no-shutdown",
	"daemonize", "only-migratable", "nodefaults", "no-user-config",
	"nodefconfig", "enable-sync-profile", "async-teardown", "preconfig",
	"singlestep", "sdl", "curses", "alt-grab", "ctrl-grab", "no-quit",
	"no-frame", "semihosting", "perfmap", "jitdump", "enable-fips",
	"old-param", "localtime", "show-cursor", "no-kvm-irqchip",
	"no-kvm-pit", "no-kvm-pit-reinjection", "rtc-td-hack", "tdf",
	"no-kqemu", "kernel-kqemu", "enable-nesting", "nvram-nonvolatile",
	NULL,
};

const char *cmdline_option(const struct cmdline *c, size_t i, int *takes_value)
{
	const char *a = c->argv[i];

	*takes_value = 0;
	if (a[0] != '-' || a[1] == '\0')
		return NULL;
	a += a[1] == '-' ? 2 : 1;
	*takes_value = 1;
	for (size_t k = 0; options_without_value[k]; k++)
		if (strcmp(a, options_without_value[k]) == 0)
			*takes_value = 0;
	return a;
}

/*
 * Walk the options: for each option with a value call visit(name, index of
 * the value); bare arguments are visited as "hda" (what QEMU does with
 * them).
 */
typedef int (*visit_fn)(void *arg, const char *opt, size_t value_index);

static int cmdline_walk(const struct cmdline *c, visit_fn visit, void *arg)
{
	size_t i = 1;

	while (i < c->argc) {
		int takes_value, rc;
		const char *opt = cmdline_option(c, i, &takes_value);

		if (opt == NULL) {
			if ((rc = visit(arg, "hda", i)) < 0)
				return rc;
			i++;
			continue;
		}
		if (takes_value && i + 1 < c->argc) {
			if ((rc = visit(arg, opt, i + 1)) < 0)
				return rc;
			i += 2;
		} else {
			i++;
		}
	}
	return 0;
}

struct name_walk {
	const struct cmdline *c;
	char *name;
};

static int visit_name(void *arg, const char *opt, size_t vi)
{
	struct name_walk *w = arg;
	struct qopts o;
	const char *guest;

	if (strcmp(opt, "name") != 0)
		return 0;
	qopts_parse(w->c->argv[vi], "guest", &o);
	if ((guest = qopts_get(&o, "guest")) != NULL) {
		free(w->name);
		w->name = xstrdup(guest);
	}
	qopts_free(&o);
	return 0;
}

char *cmdline_guest_name(const struct cmdline *c)
{
	struct name_walk w = { c, NULL };

	cmdline_walk(c, visit_name, &w);
	return w.name;
}

/* ---- QMP monitors ------------------------------------------------------ */

struct qmp_walk {
	const struct cmdline *c;
	int count;
	char *address;
};

/* "unix:PATH,server=on" / "tcp:HOST:PORT,server" (QEMU's compat chardev
 * syntax for -qmp): the reachable address or NULL. */
static char *compat_server_address(const char *spec)
{
	struct qopts o;
	char *addr = NULL;
	const char *path;

	if (strncmp(spec, "unix:", 5) == 0) {
		qopts_parse(spec + 5, "path", &o);
		path = qopts_get(&o, "path");
		if (qopts_true(qopts_get(&o, "server")) && path && path[0])
			addr = xasprintf("unix:%s", path);
	} else if (strncmp(spec, "tcp:", 4) == 0) {
		qopts_parse(spec + 4, "hostport", &o);
		path = qopts_get(&o, "hostport");
		if (qopts_true(qopts_get(&o, "server")) && path && strchr(path, ':'))
			addr = xasprintf("tcp:%s%s", path[0] == ':' ? "localhost" : "", path);
	} else {
		return NULL;
	}
	qopts_free(&o);
	return addr;
}

/* The -chardev with this id: its reachable server address or NULL. */
static char *chardev_server_address(const struct cmdline *c, const char *id)
{
	char *addr = NULL;

	for (size_t i = 1; i + 1 < c->argc; i++) {
		int tv;
		const char *opt = cmdline_option(c, i, &tv);
		struct qopts o;
		const char *cid, *path, *host, *port;

		if (opt == NULL || strcmp(opt, "chardev") != 0)
			continue;
		qopts_parse(c->argv[i + 1], "backend", &o);
		cid = qopts_get(&o, "id");
		path = qopts_get(&o, "path");
		host = qopts_get(&o, "host");
		port = qopts_get(&o, "port");
		if (cid && strcmp(cid, id) == 0 && addr == NULL &&
		    strcmp(qopts_get(&o, "backend") ? qopts_get(&o, "backend") : "", "socket") == 0 &&
		    qopts_true(qopts_get(&o, "server"))) {
			if (path && path[0])
				addr = xasprintf("unix:%s", path);
			else if (port)
				addr = xasprintf("tcp:%s:%s", host && host[0] ? host : "localhost", port);
		}
		qopts_free(&o);
	}
	return addr;
}

static int visit_qmp(void *arg, const char *opt, size_t vi)
{
	struct qmp_walk *w = arg;
	const char *value = w->c->argv[vi];
	char *addr = NULL;

	if (strcmp(opt, "qmp") == 0 || strcmp(opt, "qmp-pretty") == 0) {
		w->count++;
		addr = compat_server_address(value);
	} else if (strcmp(opt, "mon") == 0) {
		struct qopts o;
		const char *mode, *chardev;

		qopts_parse(value, "chardev", &o);
		mode = qopts_get(&o, "mode");
		chardev = qopts_get(&o, "chardev");
		if (mode && strcmp(mode, "control") == 0) {
			w->count++;
			if (chardev)
				addr = chardev_server_address(w->c, chardev);
		}
		qopts_free(&o);
	}
	if (addr != NULL && w->address == NULL)
		w->address = addr;
	else
		free(addr);
	return 0;
}

int cmdline_find_qmp(const struct cmdline *c, char **address)
{
	struct qmp_walk w = { c, 0, NULL };

	cmdline_walk(c, visit_qmp, &w);
	*address = w.address;
	return w.count;
}

/* ---- paths ------------------------------------------------------------- */

char *cmdline_absolute(const char *cwd, const char *path)
{
	char *joined = path[0] == '/' ? xstrdup(path) : xasprintf("%s/%s", cwd, path);
	char *out = xmalloc(strlen(joined) + 2), *o = out;
	const char *p = joined;

	/* Fold "//" and "/./"; ".." stays (the kernel resolves it through
	 * symlinks, a lexical fold would not). */
	while (*p) {
		if (*p == '/') {
			while (p[0] == '/' || (p[0] == '.' && (p[1] == '/' || p[1] == '\0') && p[-1] == '/'))
				p++;
			*o++ = '/';
			continue;
		}
		*o++ = *p++;
	}
	if (o > out + 1 && o[-1] == '/')
		o--;
	*o = '\0';
	free(joined);
	return out;
}

/* QEMU's path_has_protocol(): "proto:..." before any '/'. */
static int has_protocol(const char *path)
{
	return path[strcspn(path, ":/\\")] == ':';
}

/* The protocols of block/file-posix.c, which QEMU strips to open the local
 * file named after them ("file:/x" is /x; zoned_host_device: since 8.1);
 * the path, or NULL for any other. */
static const char *local_protocol_path(const char *path)
{
	static const char *const prefixes[] = { "file:", "host_device:", "host_cdrom:",
						"zoned_host_device:", NULL };

	for (size_t i = 0; prefixes[i]; i++)
		if (strncmp(path, prefixes[i], strlen(prefixes[i])) == 0)
			return path + strlen(prefixes[i]);
	return NULL;
}

/* Whether the command has the option NAME that takes no value. */
static int has_flag(const struct cmdline *c, const char *name)
{
	for (size_t i = 1; i < c->argc; i++) {
		int tv;
		const char *opt = cmdline_option(c, i, &tv);

		if (opt && !tv && strcmp(opt, name) == 0)
			return 1;
		i += opt && tv;
	}
	return 0;
}

/* Options whose value QEMU opens as a writable disk image with no way to
 * give it a format or an overlay (qemu-options.hx). */
static const struct {
	const char *opt, *instead;
} bare_disk_options[] = {
	{ "fda", "-drive if=floppy,index=0,file=IMAGE" },
	{ "fdb", "-drive if=floppy,index=1,file=IMAGE" },
	{ "pflash", "-drive if=pflash,format=raw,file=IMAGE" },
	{ "mtdblock", "-drive if=mtd,file=IMAGE" },
	{ "sd", "-drive if=sd,file=IMAGE" },
};

/* Is the -drive value (or -hdX image when DRIVE is 0) a writable disk
 * named through json:{...}, whose images qckpt does not read? */
static int writable_json_image(const char *value, int drive, int snapshot)
{
	struct qopts o;
	const char *file, *media;
	int yes;

	if (!drive)
		return !snapshot && strncmp(value, "json:", 5) == 0;
	qopts_parse(value, NULL, &o);
	file = qopts_get(&o, "file");
	media = qopts_get(&o, "media");
	yes = file && strncmp(file, "json:", 5) == 0 && !snapshot &&
	      !(media && strcmp(media, "cdrom") == 0) && !qopts_true(qopts_get(&o, "readonly")) &&
	      !qopts_true(qopts_get(&o, "read-only")) && !qopts_true(qopts_get(&o, "snapshot"));
	qopts_free(&o);
	return yes;
}

/* 1 with WHY for option OPT with value V, or 0 when qckpt can place it. */
static int unplaceable(const char *opt, const char *v, int snapshot, char *why, size_t len)
{
	for (size_t k = 0; k < sizeof bare_disk_options / sizeof bare_disk_options[0]; k++)
		if (strcmp(opt, bare_disk_options[k].opt) == 0) {
			snprintf(why, len, "-%s %s opens a writable disk qckpt cannot move onto its overlays; write it as %s",
				 opt, v, bare_disk_options[k].instead);
			return 1;
		}
	if (strcmp(opt, "readconfig") == 0) {
		snprintf(why, len, "-readconfig %s may define disks qckpt does not read; put them on the command line",
			 v);
		return 1;
	}
	if (strcmp(opt, "set") == 0) {
		snprintf(why, len, "-set %s changes options after qckpt read them; put the value in the option itself",
			 v);
		return 1;
	}
	if ((strcmp(opt, "drive") == 0 && writable_json_image(v, 1, snapshot)) ||
	    (strncmp(opt, "hd", 2) == 0 && strlen(opt) == 3 && opt[2] >= 'a' && opt[2] <= 'd' &&
	     writable_json_image(v, 0, snapshot))) {
		snprintf(why, len, "-%s %.200s names a disk through json:, whose images qckpt does not read; use -blockdev",
			 opt, v);
		return 1;
	}
	return 0;
}

int cmdline_find_unplaceable(const struct cmdline *c, size_t *pos, char *why,
			     size_t len)
{
	int snapshot = has_flag(c, "snapshot");

	for (size_t i = *pos ? *pos : 1; i < c->argc; i++) {
		int tv;
		const char *opt = cmdline_option(c, i, &tv);

		if (opt == NULL) {
			if (writable_json_image(c->argv[i], 0, snapshot)) {
				snprintf(why, len, "the image %.200s names a disk through json:, whose images qckpt does not read; use -blockdev",
					 c->argv[i]);
				*pos = i + 1;
				return 1;
			}
			continue;
		}
		if (!tv || i + 1 >= c->argc)
			continue;
		i++;
		if (unplaceable(opt, c->argv[i], snapshot, why, len)) {
			*pos = i + 1;
			return 1;
		}
	}
	*pos = c->argc;
	return 0;
}

/* ---- disk images -------------------------------------------------------- */

struct disk_walk {
	struct cmdline *c;
	const char *cwd;
	cmdline_image_fn fn;
	void *arg;
	char *err;
	size_t errlen;
	/* -blockdev values, handled after the walk (file nodes first) */
	size_t *blockdevs;
	size_t nblockdevs;
	int snapshot; /* -snapshot: every -drive and -hdX opened read-only */
};

/* An image path: absolute, or its replacement; new string in *out, or NULL
 * when the path cannot be a local file (a protocol). *replaced says which.
 * "file:/x" is the local file /x, and is written back without the prefix. */
static int resolve_image(struct disk_walk *w, const char *path, int writable,
			 char **out, int *replaced)
{
	char *abs, *rep = NULL;
	const char *orig = path, *local = local_protocol_path(path);

	*out = NULL;
	*replaced = 0;
	if (local != NULL)
		path = local;
	if (path[0] == '\0' || (local == NULL && has_protocol(path)))
		return 0;
	abs = cmdline_absolute(w->cwd, path);
	if (w->fn(w->arg, abs, writable, &rep, w->err, w->errlen) < 0) {
		free(abs);
		return -1;
	}
	if (rep != NULL) {
		free(abs);
		*out = rep;
		*replaced = 1;
	} else if (local != NULL) {
		/* The prefix is kept: host_device: is not file:. */
		*out = xasprintf("%.*s%s", (int)(local - orig), orig, abs);
		free(abs);
	} else {
		*out = abs;
	}
	return 0;
}

static void set_arg(struct disk_walk *w, size_t vi, char *owned)
{
	free(w->c->argv[vi]);
	w->c->argv[vi] = owned;
}

static int rewrite_plain(struct disk_walk *w, size_t vi)
{
	char *img;
	int replaced;

	if (resolve_image(w, w->c->argv[vi], !w->snapshot, &img, &replaced) < 0)
		return -1;
	if (img != NULL)
		set_arg(w, vi, img);
	return 0;
}

static int rewrite_drive(struct disk_walk *w, size_t vi)
{
	struct qopts o;
	const char *key = "file", *path, *media;
	char *img = NULL;
	int replaced = 0, rc = 0, writable;

	qopts_parse(w->c->argv[vi], NULL, &o);
	media = qopts_get(&o, "media");
	if ((media && strcmp(media, "cdrom") == 0) || qopts_true(qopts_get(&o, "readonly")) ||
	    qopts_true(qopts_get(&o, "read-only")))
		goto out;
	if ((path = qopts_get(&o, "file")) == NULL) {
		key = "file.filename";
		path = qopts_get(&o, "file.filename");
	}
	if (path == NULL)
		goto out;
	/* snapshot=on opens the image read-only, writes go to a temporary
	 * overlay (QEMU's BDRV_O_SNAPSHOT). */
	writable = !w->snapshot && !qopts_true(qopts_get(&o, "snapshot"));
	if ((rc = resolve_image(w, path, writable, &img, &replaced)) < 0 || img == NULL)
		goto out;
	qopts_set(&o, key, img);
	if (replaced) {
		const char *drv = qopts_get(&o, "file.driver");

		if (drv && strcmp(drv, "file") != 0)
			qopts_set(&o, "file.driver", "file");
		if (!qopts_has(&o, "format") && qopts_has(&o, "driver"))
			qopts_set(&o, "driver", "qcow2");
		else
			qopts_set(&o, "format", "qcow2");
	}
	set_arg(w, vi, qopts_format(&o));
out:
	free(img);
	qopts_free(&o);
	return rc;
}

static int visit_disk(void *arg, const char *opt, size_t vi)
{
	struct disk_walk *w = arg;

	if (strcmp(opt, "hda") == 0 || strcmp(opt, "hdb") == 0 ||
	    strcmp(opt, "hdc") == 0 || strcmp(opt, "hdd") == 0)
		return rewrite_plain(w, vi);
	if (strcmp(opt, "drive") == 0)
		return rewrite_drive(w, vi);
	if (strcmp(opt, "blockdev") == 0) {
		w->blockdevs = xrealloc(w->blockdevs, (w->nblockdevs + 1) * sizeof *w->blockdevs);
		w->blockdevs[w->nblockdevs++] = vi;
	}
	return 0;
}

/* One -blockdev, in either syntax, with dotted keys for both. */
struct bnode {
	size_t vi;
	json_t *json;     /* the JSON form, or NULL */
	struct qopts kv;  /* the keyval form */
	int to_qcow2;     /* its format must become qcow2 */
	int is_file;      /* a protocol node whose image was replaced */
	int used;         /* some node's "file" names it */
};

static json_t *json_dotted(json_t *obj, const char *key, int create)
{
	char *copy = xstrdup(key), *save = NULL, *part, *next;
	json_t *cur = obj;

	part = strtok_r(copy, ".", &save);
	while (part && cur) {
		next = strtok_r(NULL, ".", &save);
		if (next == NULL) {
			if (create)
				json_object_set_new(cur, part, json_string(""));
			cur = json_object_get(cur, part);
			break;
		}
		cur = json_object_get(cur, part);
		if (!json_is_object(cur))
			cur = NULL;
		part = next;
	}
	free(copy);
	return cur;
}

static const char *bn_get(struct bnode *b, const char *key)
{
	json_t *v;

	if (b->json == NULL)
		return qopts_get(&b->kv, key);
	v = json_dotted(b->json, key, 0);
	if (json_is_true(v))
		return "on";
	if (json_is_false(v))
		return "off";
	return json_string_value(v);
}

static int bn_has(struct bnode *b, const char *key)
{
	return b->json ? json_dotted(b->json, key, 0) != NULL : qopts_has(&b->kv, key);
}

static void bn_set(struct bnode *b, const char *key, const char *value)
{
	if (b->json == NULL) {
		qopts_set(&b->kv, key, value);
		return;
	}
	/* Only keys under existing objects are set (the parent exists). */
	char *copy = xstrdup(key), *dot = strrchr(copy, '.');
	json_t *parent = b->json;

	if (dot != NULL) {
		*dot = '\0';
		parent = json_dotted(b->json, copy, 0);
	}
	if (json_is_object(parent))
		json_object_set_new(parent, dot ? dot + 1 : copy, json_string(value));
	free(copy);
}

static int is_protocol_driver(const char *drv)
{
	return drv && (strcmp(drv, "file") == 0 || strcmp(drv, "host_device") == 0);
}

/* A file node's image (PREFIX "" or "file."): replace it if asked. */
static int rewrite_file_node(struct disk_walk *w, struct bnode *b, const char *prefix,
			     int *replaced)
{
	char key[64], *img = NULL;
	const char *path;

	snprintf(key, sizeof key, "%sfilename", prefix);
	if ((path = bn_get(b, key)) == NULL)
		return 0;
	if (resolve_image(w, path, 1, &img, replaced) < 0)
		return -1;
	if (img == NULL)
		return 0;
	bn_set(b, key, img);
	free(img);
	if (*replaced) {
		snprintf(key, sizeof key, "%sdriver", prefix);
		bn_set(b, key, "file");
	}
	return 0;
}

static int bnode_parse(struct disk_walk *w, struct bnode *b)
{
	const char *text = w->c->argv[b->vi];
	json_error_t jerr;

	if (text[0] != '{') {
		qopts_parse(text, "driver", &b->kv);
		return 0;
	}
	b->json = json_loads(text, 0, &jerr);
	if (!json_is_object(b->json)) {
		snprintf(w->err, w->errlen, "-blockdev '%.80s': not a JSON object (%s)", text, jerr.text);
		return -1;
	}
	return 0;
}

static int bnode_to_qcow2(struct disk_walk *w, struct bnode *b)
{
	const char *drv = bn_get(b, "driver");

	if (drv && strcmp(drv, "qcow2") == 0)
		return 0;
	if (drv && strcmp(drv, "raw") == 0 && (bn_has(b, "offset") || bn_has(b, "size"))) {
		snprintf(w->err, w->errlen,
			 "-blockdev '%.80s': a raw node with offset= or size= cannot be moved onto a qcow2 overlay; drop them or launch QEMU yourself with 'qckpt disks'",
			 w->c->argv[b->vi]);
		return -1;
	}
	bn_set(b, "driver", "qcow2");
	return 0;
}

static int rewrite_blockdevs(struct disk_walk *w)
{
	size_t n = w->nblockdevs;
	struct bnode *b = xcalloc(n ? n : 1, sizeof *b);
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		b[i].vi = w->blockdevs[i];
		rc = bnode_parse(w, &b[i]);
	}
	/* Protocol nodes, standalone or nested as "file". */
	for (size_t i = 0; i < n && rc == 0; i++) {
		int replaced = 0;

		if (qopts_true(bn_get(&b[i], "read-only")))
			continue;
		if (is_protocol_driver(bn_get(&b[i], "driver"))) {
			rc = rewrite_file_node(w, &b[i], "", &replaced);
			b[i].is_file = replaced;
		} else if (is_protocol_driver(bn_get(&b[i], "file.driver"))) {
			rc = rewrite_file_node(w, &b[i], "file.", &replaced);
			b[i].to_qcow2 = replaced;
		}
	}
	/* Format nodes on top of a replaced file node. */
	for (size_t i = 0; i < n && rc == 0; i++) {
		const char *file = bn_get(&b[i], "file");

		for (size_t j = 0; j < n && file; j++) {
			const char *node = bn_get(&b[j], "node-name");

			if (b[j].is_file && node && strcmp(node, file) == 0) {
				b[i].to_qcow2 = 1;
				b[j].used = 1;
			}
		}
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (b[i].is_file && !b[i].used) {
			snprintf(w->err, w->errlen,
				 "-blockdev '%.80s': a disk on a file node without a format node cannot be moved onto a qcow2 overlay; put -blockdev driver=raw,file=NODE,... on top of it",
				 w->c->argv[b[i].vi]);
			rc = -1;
		} else if (b[i].to_qcow2) {
			rc = bnode_to_qcow2(w, &b[i]);
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (rc == 0)
			set_arg(w, b[i].vi, b[i].json ? json_dumps(b[i].json, JSON_COMPACT | JSON_PRESERVE_ORDER)
						      : qopts_format(&b[i].kv));
		json_decref(b[i].json);
		qopts_free(&b[i].kv);
	}
	free(b);
	return rc;
}

int cmdline_rewrite_disks(struct cmdline *c, const char *cwd,
			  cmdline_image_fn fn, void *arg, char *err,
			  size_t errlen)
{
	struct disk_walk w = { c, cwd, fn, arg, err, errlen, NULL, 0, 0 };
	int rc;

	w.snapshot = has_flag(c, "snapshot");
	rc = cmdline_walk(c, visit_disk, &w);

	if (rc == 0)
		rc = rewrite_blockdevs(&w);
	free(w.blockdevs);
	return rc;
}

/* ---- printing ----------------------------------------------------------- */

char *cmdline_quote(const struct cmdline *c)
{
	char *out = xstrdup("");

	for (size_t i = 0; i < c->argc; i++) {
		const char *a = c->argv[i];
		char *q, *next;

		if (a[0] != '\0' && strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
					      "0123456789_@%+=:,./-") == strlen(a)) {
			q = xstrdup(a);
		} else {
			q = xstrdup("'");
			for (const char *p = a; *p; p++) {
				char *t = *p == '\'' ? xasprintf("%s'\\''", q) : xasprintf("%s%c", q, *p);

				free(q);
				q = t;
			}
			next = xasprintf("%s'", q);
			free(q);
			q = next;
		}
		next = xasprintf("%s%s%s", out, i ? " " : "", q);
		free(out);
		free(q);
		out = next;
	}
	return out;
}

/* ---- the recorded launch ------------------------------------------------ */

int cmdline_launch_is_running(json_t *command_line)
{
	json_int_t pid = json_integer_value(json_object_get(command_line, "Pid"));
	json_int_t start = json_integer_value(json_object_get(command_line, "StartTime"));

	/* Not /proc/PID/cmdline against Executed: a wrapper that execs QEMU
	 * with more arguments (get-qemu10's, a distribution's) keeps the
	 * process but changes its arguments.  A zombie keeps its start time
	 * but has ended: a QEMU restore launched detached is nobody's child
	 * once restore exits, and not every container's init reaps it. */
	return pid > 0 && start > 0 && proc_start_time((long)pid) == start &&
	       !proc_is_zombie((long)pid);
}

int cmdline_vm_launched_by_run(const char *root, const char *vm)
{
	json_t *state = catalog_load_vm(root, vm);
	int yes = cmdline_launch_is_running(json_object_get(state, "CommandLine"));

	json_decref(state);
	return yes;
}

/* ---- a command for another VM (export, restore --from) ----------------- */

/* Remove argv[i..i+n-1]. */
static void cmdline_remove(struct cmdline *c, size_t i, size_t n)
{
	for (size_t k = i; k < i + n; k++)
		free(c->argv[k]);
	memmove(c->argv + i, c->argv + i + n, (c->argc - i - n + 1) * sizeof *c->argv);
	c->argc -= n;
}

/* Whether argv[i] is "-chardev" with an id in IDS. */
static int chardev_in(const struct cmdline *c, size_t i, char **ids, size_t nids)
{
	int tv;
	const char *opt = cmdline_option(c, i, &tv);
	struct qopts o;
	int found = 0;

	if (opt == NULL || strcmp(opt, "chardev") != 0 || i + 1 >= c->argc)
		return 0;
	qopts_parse(c->argv[i + 1], "backend", &o);
	for (size_t k = 0; k < nids && qopts_get(&o, "id"); k++)
		found |= strcmp(ids[k], qopts_get(&o, "id")) == 0;
	qopts_free(&o);
	return found;
}

int cmdline_drop_qmp(struct cmdline *c)
{
	char **ids = NULL;
	size_t nids = 0, i = 1;
	int dropped = 0;

	while (i < c->argc) {
		int tv;
		const char *opt = cmdline_option(c, i, &tv);
		int drop = 0;

		if (opt != NULL && tv && i + 1 < c->argc) {
			if (strcmp(opt, "qmp") == 0 || strcmp(opt, "qmp-pretty") == 0) {
				drop = 1;
			} else if (strcmp(opt, "mon") == 0) {
				struct qopts o;

				qopts_parse(c->argv[i + 1], "chardev", &o);
				if (strcmp(qopts_get(&o, "mode") ?: "", "control") == 0) {
					drop = 1;
					if (qopts_get(&o, "chardev") != NULL) {
						ids = xrealloc(ids, (nids + 1) * sizeof *ids);
						ids[nids++] = xstrdup(qopts_get(&o, "chardev"));
					}
				}
				qopts_free(&o);
			}
		}
		if (drop) {
			cmdline_remove(c, i, 2);
			dropped++;
		} else {
			i += opt != NULL && tv ? 2 : 1;
		}
	}
	/* The chardevs those monitors served on: their sockets are the old
	 * VM's, and an unused chardev would still take its path. */
	for (i = 1; i < c->argc;) {
		if (chardev_in(c, i, ids, nids))
			cmdline_remove(c, i, 2);
		else
			i++;
	}
	while (nids > 0)
		free(ids[--nids]);
	free(ids);
	return dropped;
}

void cmdline_set_guest_name(struct cmdline *c, const char *name)
{
	int found = 0;

	for (size_t i = 1; i + 1 < c->argc; i++) {
		int tv;
		const char *opt = cmdline_option(c, i, &tv);
		struct qopts o;

		if (opt == NULL || strcmp(opt, "name") != 0)
			continue;
		qopts_parse(c->argv[i + 1], "guest", &o);
		qopts_set(&o, "guest", name);
		free(c->argv[i + 1]);
		c->argv[i + 1] = qopts_format(&o);
		qopts_free(&o);
		found = 1;
		i++;
	}
	if (!found)
		cmdline_append(c, "-name", name, NULL);
}

/* ---- two QEMUs of one VM at once (restore's pre-start) ---------------------- */

/* Compat chardev specs ("unix:P,server", "tcp:H:P", "file:F", ...) of
 * -serial, -monitor, -qmp and friends.  The address of a server socket
 * (unix:PATH or tcp), or "" for one that is safe twice, or a phrase for
 * one that is not (file truncated, host device, udp port). */
static const char *compat_twice(const char *spec, const char *monitor_path, char *buf, size_t len)
{
	static const char *const safe[] = { "stdio", "null", "vc", "none", "pty", "mon:stdio",
					    "msmouse", "braille", "chardev:", "vc:", "mon:vc", NULL };
	char *addr = compat_server_address(spec);

	if (addr != NULL) {
		int mine = strncmp(addr, "unix:", 5) == 0 && monitor_path != NULL &&
			   strcmp(addr + 5, monitor_path) == 0;

		snprintf(buf, len, "%s", mine ? "" : addr);
		free(addr);
		return buf;
	}
	for (size_t i = 0; safe[i]; i++)
		if (strncmp(spec, safe[i], strlen(safe[i])) == 0)
			return "";
	if (strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "tcp:", 4) == 0)
		return ""; /* a client: it connects, like any other */
	snprintf(buf, len, "%s", spec);
	return buf;
}

/* A -chardev that cannot be opened twice at once: 1 with a phrase in WHY,
 * or 0. */
static int chardev_twice(const char *value, const char *monitor_path, char *why, size_t len)
{
	static const char *const safe[] = { "null", "stdio", "vc", "ringbuf", "memory", "pty",
					    "msmouse", "wctablet", "braille", "testdev",
					    "qemu-vdagent", "mux", NULL };
	struct qopts o;
	const char *backend, *path, *id;
	int bad = 0;

	qopts_parse(value, "backend", &o);
	backend = qopts_get(&o, "backend") ?: "";
	path = qopts_get(&o, "path");
	id = qopts_get(&o, "id") ?: "?";
	if (strcmp(backend, "socket") == 0) {
		if (qopts_true(qopts_get(&o, "server")) &&
		    !(path != NULL && monitor_path != NULL && strcmp(path, monitor_path) == 0)) {
			snprintf(why, len, "-chardev %s serves a socket (%s)", id, path ? path : "a TCP port");
			bad = 1;
		}
	} else if (strcmp(backend, "file") == 0) {
		if (!qopts_true(qopts_get(&o, "append"))) {
			snprintf(why, len, "-chardev %s writes the file %s from its start (append=on would not)",
				 id, path ? path : "?");
			bad = 1;
		}
	} else {
		bad = 1;
		for (size_t i = 0; safe[i]; i++)
			bad &= strcmp(backend, safe[i]) != 0;
		if (bad)
			snprintf(why, len, "-chardev %s is a %s backend", id, backend);
	}
	qopts_free(&o);
	return bad;
}

/* A network backend (-netdev, -nic, -net) that holds a host resource: a
 * tap or bridge device, a port, a vhost device.  User networking only
 * listens with hostfwd. */
static int netdev_twice(const char *opt, const char *value, char *why, size_t len)
{
	struct qopts o;
	const char *type;
	int bad = 0;

	qopts_parse(value, "type", &o);
	type = qopts_get(&o, "type") ?: "";
	if (strcmp(type, "user") == 0) {
		if (qopts_has(&o, "hostfwd")) {
			snprintf(why, len, "-%s user forwards a host port (hostfwd=%s)", opt,
				 qopts_get(&o, "hostfwd") ?: "");
			bad = 1;
		}
	} else if (strcmp(type, "none") != 0 && strcmp(type, "hubport") != 0 &&
		   !(strcmp(opt, "net") == 0 && strcmp(type, "nic") == 0)) {
		snprintf(why, len, "-%s %s holds a host network resource", opt, type);
		bad = 1;
	}
	qopts_free(&o);
	return bad;
}

/* The value of KEY (the implied first key of VALUE) when it names one of
 * KINDS (a prefix of it with PREFIX), else NULL; free *o after. */
static const char *kind_in(const char *value, const char *key, const char *const *kinds,
			   int prefix, struct qopts *o)
{
	const char *v;

	qopts_parse(value, key, o);
	v = qopts_get(o, key) ?: "";
	for (size_t i = 0; kinds[i]; i++)
		if (prefix ? strncmp(v, kinds[i], strlen(kinds[i])) == 0 : strcmp(v, kinds[i]) == 0)
			return v;
	return NULL;
}

static int device_twice(const char *value, char *why, size_t len)
{
	static const char *const exclusive[] = { "vfio", "vhost-", "ivshmem", "usb-host",
						 "pci-assign", "xen-", NULL };
	struct qopts o;
	const char *driver = kind_in(value, "driver", exclusive, 1, &o);

	if (driver != NULL)
		snprintf(why, len, "-device %s holds a host device or a backend of its own", driver);
	qopts_free(&o);
	return driver != NULL;
}

static int object_twice(const char *value, char *why, size_t len)
{
	static const char *const exclusive[] = { "memory-backend-file", "input-linux", "filter-dump",
						 "cryptodev-vhost-user", "iommufd", NULL };
	struct qopts o;
	const char *type = kind_in(value, "qom-type", exclusive, 0, &o);

	if (type != NULL)
		snprintf(why, len, "-object %s would be shared by both", type);
	qopts_free(&o);
	return type != NULL;
}

int cmdline_prestart_blocker(const struct cmdline *c, const char *monitor_path, char *why,
			     size_t len)
{
	/* each alone holds something only one process can have */
	static const char *const always[] = { "pidfile", "daemonize", "spice", "gdb", "s",
					      "tpmdev", "mem-path", "readconfig", "set", "chroot",
					      "runas", "run-with", "incoming", "vnc", NULL };
	static const char *const compat[] = { "serial", "parallel", "monitor", "qmp", "qmp-pretty",
					      "debugcon", "virtioconsole", NULL };
	char buf[512];

	for (size_t i = 1; i < c->argc; i++) {
		int tv;
		const char *opt = cmdline_option(c, i, &tv);
		const char *v = tv && i + 1 < c->argc ? c->argv[i + 1] : "";

		if (opt == NULL)
			continue;
		i += tv;
		for (size_t k = 0; always[k]; k++)
			if (strcmp(opt, always[k]) == 0 &&
			    !(strcmp(opt, "vnc") == 0 && strcmp(v, "none") == 0))
				return snprintf(why, len, "it has -%s%s%s", opt, tv ? " " : "", v), 1;
		for (size_t k = 0; compat[k]; k++) {
			const char *bad;

			if (strcmp(opt, compat[k]) != 0)
				continue;
			bad = compat_twice(v, monitor_path, buf, sizeof buf);
			if (bad[0] != '\0')
				return snprintf(why, len, "-%s %s is a server socket, a file or a host device", opt, bad), 1;
		}
		if (strcmp(opt, "chardev") == 0 && chardev_twice(v, monitor_path, why, len))
			return 1;
		if ((strcmp(opt, "netdev") == 0 || strcmp(opt, "nic") == 0 || strcmp(opt, "net") == 0) &&
		    netdev_twice(opt, v, why, len))
			return 1;
		if (strcmp(opt, "device") == 0 && device_twice(v, why, len))
			return 1;
		if (strcmp(opt, "object") == 0 && object_twice(v, why, len))
			return 1;
		if (strcmp(opt, "display") == 0 &&
		    (strncmp(v, "vnc", 3) == 0 || strncmp(v, "spice", 5) == 0 || strncmp(v, "dbus", 4) == 0))
			return snprintf(why, len, "-display %s serves a port or a bus name", v), 1;
		if (strcmp(opt, "audiodev") == 0 || strcmp(opt, "audio") == 0) {
			struct qopts o;
			const char *drv;
			int bad;

			qopts_parse(v, "driver", &o);
			drv = qopts_get(&o, "driver") ?: "";
			bad = strcmp(drv, "alsa") == 0 || strcmp(drv, "oss") == 0 || strcmp(drv, "wav") == 0;
			if (bad)
				snprintf(why, len, "-%s %s holds a sound device or a file", opt, drv);
			qopts_free(&o);
			if (bad)
				return 1;
		}
	}
	return 0;
}

/* Point a compat spec "unix:FROM,..." at TO: new string, or NULL. */
static char *moved_compat(const char *spec, const char *from, const char *to)
{
	struct qopts o;
	char *out = NULL, *rest;
	const char *path;

	if (strncmp(spec, "unix:", 5) != 0)
		return NULL;
	qopts_parse(spec + 5, "path", &o);
	path = qopts_get(&o, "path");
	if (path != NULL && strcmp(path, from) == 0 && qopts_true(qopts_get(&o, "server"))) {
		qopts_set(&o, "path", to);
		rest = qopts_format(&o);
		out = xasprintf("unix:%s", rest);
		free(rest);
	}
	qopts_free(&o);
	return out;
}

int cmdline_move_unix_server(struct cmdline *c, const char *from, const char *to)
{
	static const char *const compat[] = { "serial", "parallel", "monitor", "qmp", "qmp-pretty",
					      "debugcon", "virtioconsole", NULL };
	int moved = 0;

	for (size_t i = 1; i + 1 < c->argc; i++) {
		int tv;
		const char *opt = cmdline_option(c, i, &tv);
		char *now = NULL;

		if (opt == NULL || !tv)
			continue;
		for (size_t k = 0; compat[k] && now == NULL; k++)
			if (strcmp(opt, compat[k]) == 0)
				now = moved_compat(c->argv[i + 1], from, to);
		if (strcmp(opt, "chardev") == 0) {
			struct qopts o;

			qopts_parse(c->argv[i + 1], "backend", &o);
			if (strcmp(qopts_get(&o, "backend") ?: "", "socket") == 0 &&
			    qopts_true(qopts_get(&o, "server")) &&
			    strcmp(qopts_get(&o, "path") ?: "", from) == 0) {
				qopts_set(&o, "path", to);
				now = qopts_format(&o);
			}
			qopts_free(&o);
		}
		if (now != NULL) {
			free(c->argv[i + 1]);
			c->argv[i + 1] = now;
			moved++;
		}
		i++;
	}
	return moved;
}
