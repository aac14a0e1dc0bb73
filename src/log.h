/*
 * log.h: how qckpt talks to its user on stderr.  Every error a user can
 * meet is one line that names the VM and says what to do; these helpers keep
 * that shape in one place.  Only main() decides the exit status.
 */
#ifndef LOG_H
#define LOG_H

#include <stdarg.h>
#include <stdint.h>

extern int log_verbose; /* -v: progress lines */
extern int log_quiet;   /* -q: no warnings, only errors */
extern int log_debug;   /* --debug: QMP traffic with timestamps */

/* "qckpt: VM: message" (VM may be NULL); always returns -1 (git's idiom). */
int error_vm(const char *vm, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define error(...) error_vm(NULL, __VA_ARGS__)

/* "qckpt: VM: warning: ..." unless -q. */
void warn_vm(const char *vm, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* "qckpt: VM: ..." with -v only. */
void verbose_vm(const char *vm, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Called before any line goes to stderr (the live progress lines clear
 * themselves), or NULL. */
extern void (*log_before_output)(void);

/* --debug: one QMP message, "HH:MM:SS.mmmmmm VM > {...}". */
void debug_qmp(const char *vm, char dir, const char *text, unsigned long len);

/* --debug: a step of a job, "HH:MM:SS.mmmmmm VM * +MS.M ms text", MS the
 * monotonic milliseconds since START_NS (uv_hrtime()), so a restore's
 * phases read as one timeline beside its QMP messages. */
void debug_vm(const char *vm, uint64_t start_ns, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Testing only: when the environment variable ENV lists NAME (a comma-
 * separated list), say so on stderr ("qckpt: VM: test: stopped at NAME
 * (ENV)") and stop the process (SIGSTOP), so that a test can kill qckpt at
 * exactly that step.
 */
void log_test_stop_at(const char *env, const char *vm, const char *name);

#endif
