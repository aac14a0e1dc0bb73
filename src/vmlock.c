/*
 * vmlock.c: see vmlock.h.  The locks this process holds are kept in one
 * table, so that a command that takes a VM's lock twice (a checkpoint,
 * then its --keep prune) does not refuse itself: flock(2) locks belong to
 * an open file, and a second open of the same file in the same process
 * would conflict with the first.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include <jansson.h>

#include "catalog.h"
#include "util.h"
#include "vmlock.h"

struct held {
	char *path;
	char *command;
	int fd;
	int count;
};

static struct held *held;
static size_t nheld;

char *vmlock_path(const char *root, const char *vm)
{
	char *dir = catalog_vm_dir(root, vm);
	char *path = xasprintf("%s/.lock", dir);

	free(dir);
	return path;
}

static struct held *find_held(const char *path)
{
	for (size_t i = 0; i < nheld; i++)
		if (strcmp(held[i].path, path) == 0)
			return &held[i];
	return NULL;
}

/* Who holds it, for the refusal only: not fsynced, not atomic (a reader
 * that catches it half written says "another process"). */
static void write_owner(const struct held *h, const char *job_id)
{
	json_t *o = json_pack("{s:s, s:I, s:I}", "Command", h->command,
			      "Pid", (json_int_t)getpid(),
			      "StartTime", (json_int_t)proc_start_time((long)getpid()));
	char *text, *line;
	ssize_t written;

	if (job_id != NULL)
		json_object_set_new(o, "JobId", json_string(job_id));
	text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	line = xasprintf("%s\n", text ? text : "{}");
	/* a failed write only makes a refusal say less about the holder */
	written = ftruncate(h->fd, 0) == 0 ? pwrite(h->fd, line, strlen(line), 0) : -1;
	(void)written;
	free(line);
	free(text);
	json_decref(o);
}

/* Whether the holder the file names still runs (a dead one's content
 * stays: the file is never cleared, see vmlock_release). */
static int owner_alive(json_t *o)
{
	json_int_t pid = json_integer_value(json_object_get(o, "Pid"));
	json_t *start = json_object_get(o, "StartTime");

	if (pid <= 0 || (kill((pid_t)pid, 0) < 0 && errno != EPERM))
		return 0;
	return !json_is_integer(start) || proc_start_time((long)pid) == json_integer_value(start);
}

static void describe_holder(int fd, const char *path, char *err, size_t errlen)
{
	char buf[1024];
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	json_t *o = n > 0 ? json_loadb(buf, (size_t)n, 0, NULL) : NULL;
	const char *command = json_string_value(json_object_get(o, "Command"));
	const char *job = json_string_value(json_object_get(o, "JobId"));
	json_int_t pid = json_integer_value(json_object_get(o, "Pid"));

	if (command == NULL || !owner_alive(o))
		snprintf(err, errlen, "another process holds its lock %s; wait until it lets go, then run this again",
			 path);
	else if (job != NULL)
		snprintf(err, errlen, "'qckpt %s' (pid %lld, job %s) is changing this VM; wait for it or 'qckpt job wait %s', then run this again",
			 command, (long long)pid, job, job);
	else
		snprintf(err, errlen, "'qckpt %s' (pid %lld) is changing this VM; wait for it, then run this again",
			 command, (long long)pid);
	json_decref(o);
}

int vmlock_take(const char *root, const char *vm, const char *command,
		char *err, size_t errlen)
{
	char *path = vmlock_path(root, vm), *dir = catalog_vm_dir(root, vm);
	struct held *h = find_held(path);
	int fd = -1, rc;

	if (h != NULL) {
		h->count++;
		goto out;
	}
	if ((rc = mkdir_p(dir, 0700)) < 0 ||
	    (fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
		snprintf(err, errlen, "cannot open its lock %s: %s; check the catalog's permissions",
			 path, strerror(fd < 0 && rc == 0 ? errno : -rc));
		goto fail;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			describe_holder(fd, path, err, errlen);
		else
			snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
		goto fail;
	}
	held = xrealloc(held, (nheld + 1) * sizeof *held);
	h = &held[nheld++];
	*h = (struct held){ .path = path, .command = xstrdup(command), .fd = fd, .count = 1 };
	path = NULL;
	write_owner(h, NULL);
out:
	free(path);
	free(dir);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	free(path);
	free(dir);
	return -1;
}

void vmlock_release(const char *root, const char *vm)
{
	char *path = vmlock_path(root, vm);
	struct held *h = find_held(path);

	free(path);
	if (h == NULL || --h->count > 0)
		return;
	close(h->fd);
	free(h->path);
	free(h->command);
	*h = held[--nheld];
	if (nheld == 0) {
		free(held);
		held = NULL;
	}
}

void vmlock_moved_to_job(const char *job_id)
{
	for (size_t i = 0; i < nheld; i++)
		write_owner(&held[i], job_id);
}
