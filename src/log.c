/*
 * log.c: the one place that formats messages for the user (see log.h).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <sys/time.h>
#include <time.h>

#include "log.h"

int log_verbose;
int log_quiet;
int log_debug;
void (*log_before_output)(void);

static void vline(const char *vm, const char *kind, const char *fmt,
		  va_list ap)
{
	/* One fputs of a whole line, so lines from concurrent jobs never mix. */
	char msg[2048];
	char line[2300];

	vsnprintf(msg, sizeof msg, fmt, ap);
	if (vm != NULL)
		snprintf(line, sizeof line, "qckpt: %s: %s%s\n", vm, kind, msg);
	else
		snprintf(line, sizeof line, "qckpt: %s%s\n", kind, msg);
	if (log_before_output != NULL)
		log_before_output();
	fputs(line, stderr);
}

int error_vm(const char *vm, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vline(vm, "", fmt, ap);
	va_end(ap);
	return -1;
}

void warn_vm(const char *vm, const char *fmt, ...)
{
	va_list ap;

	if (log_quiet)
		return;
	va_start(ap, fmt);
	vline(vm, "warning: ", fmt, ap);
	va_end(ap);
}

void verbose_vm(const char *vm, const char *fmt, ...)
{
	va_list ap;

	if (!log_verbose || log_quiet)
		return;
	va_start(ap, fmt);
	vline(vm, "", fmt, ap);
	va_end(ap);
}

static void debug_stamp(char *stamp, size_t len)
{
	struct timeval tv;
	struct tm tm;
	char hms[16];

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(hms, sizeof hms, "%H:%M:%S", &tm);
	snprintf(stamp, len, "%s.%06ld", hms, (long)tv.tv_usec);
}

void debug_vm(const char *vm, uint64_t start_ns, const char *fmt, ...)
{
	char stamp[40], msg[1024];
	va_list ap;

	if (!log_debug)
		return;
	debug_stamp(stamp, sizeof stamp);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (log_before_output != NULL)
		log_before_output();
	fprintf(stderr, "%s %s * +%.1f ms %s\n", stamp, vm ? vm : "-",
		(double)(uv_hrtime() - start_ns) / 1e6, msg);
}

void debug_qmp(const char *vm, char dir, const char *text, unsigned long len)
{
	char stamp[40];

	if (!log_debug)
		return;
	debug_stamp(stamp, sizeof stamp);
	/* Strip QMP's trailing CRLF so each message is exactly one line. */
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
	if (log_before_output != NULL)
		log_before_output();
	fprintf(stderr, "%s %s %c %.*s\n", stamp, vm ? vm : "-", dir, (int)len, text);
}

void log_test_stop_at(const char *env, const char *vm, const char *name)
{
	const char *list = getenv(env);
	size_t len = strlen(name);

	for (const char *p = list; p != NULL && *p != '\0'; p += strcspn(p, ",")) {
		p += *p == ',';
		if (strncmp(p, name, len) == 0 && (p[len] == ',' || p[len] == '\0')) {
			if (log_before_output != NULL)
				log_before_output();
			fprintf(stderr, "qckpt: %s: test: stopped at %s (%s)\n", vm ? vm : "-", name, env);
			raise(SIGSTOP);
			return;
		}
	}
}
