/*
 * remote-serve.c: the far end of -C (remote.c), a qckpt that another qckpt
 * runs over ssh (or as a child, for this host among others).  Its standard
 * input carries two things: first exactly the bytes the command reads as its
 * own standard input (the VM objects routed to this host, often none), then
 * nothing until the driving qckpt is interrupted, when it closes its end.
 * OpenSSH passes that on (an EOF on the channel, or the connection gone)
 * and the end of standard input here becomes the interrupt a terminal's
 * Ctrl-C would have been: SIGINT to this process group, so the command does
 * what an interrupted qckpt does (its jobs undo, the same exit status).
 * ssh itself cannot carry a signal: without a terminal (-T, so that the
 * output stays as it is) a Ctrl-C only ends the local ssh, and the OpenSSH
 * client has no way to send RFC 4254's "signal" request.
 *
 * The end is watched by a thread of its own with its own libuv loop, so
 * every command gets it whatever its own loop does, from the start.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"
#include "remote.h"
#include "util.h"

static int watch_fd = -1;
static uv_thread_t watch_thread;
static uv_loop_t watch_loop;
static uv_pipe_t watch_pipe;
static char watch_buf[256];

/* What a terminal's Ctrl-C does: SIGINT to the foreground process group,
 * which is this qckpt's own (sshd's child leads a session; remote.c starts
 * this host's child detached), its qemu-img children with it. */
static void interrupt_as_a_terminal_does(void)
{
	if (getpgrp() == getpid())
		kill(0, SIGINT);
	else
		kill(getpid(), SIGINT);
}

static void on_watch_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	buf->base = watch_buf;
	buf->len = sizeof watch_buf;
}

/* Nothing more is ever sent: only the end (or the connection's error)
 * means something. */
static void on_watch_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	if (n >= 0)
		return;
	uv_close((uv_handle_t *)s, NULL);
	interrupt_as_a_terminal_does();
}

static void watch_main(void *arg)
{
	sigset_t all;

	/* The interrupt is for the command's thread, as a terminal's is. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	uv_run(&watch_loop, UV_RUN_DEFAULT);
}

/* A job's process (--as-job forks and goes on alone): the driving qckpt's
 * end is no longer its business. */
static void on_fork_child(void)
{
	if (watch_fd >= 0)
		close(watch_fd);
	watch_fd = -1;
}

/* Exactly N bytes of standard input: 0, or -1 when it ended first. */
static int read_input(char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(STDIN_FILENO, buf + got, n - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

/* BUF (N bytes) as standard input, from a file the command reads as ever. */
static int input_as_stdin(const char *buf, size_t n)
{
	FILE *f = tmpfile();

	if (f == NULL || (n && fwrite(buf, 1, n, f) != n) || fflush(f) != 0 ||
	    lseek(fileno(f), 0, SEEK_SET) < 0 || dup2(fileno(f), STDIN_FILENO) < 0) {
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	clearerr(stdin);
	return 0;
}

int remote_serve_input(const char *bytes)
{
	long n;
	struct stat st;
	char *buf;

	if (parse_long(bytes, 0, 64L << 20, &n) < 0)
		return error("--remote-input: a byte count, not '%s' (an option for remote.c's own use)", bytes);
	if (fstat(STDIN_FILENO, &st) < 0 || !(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
		return error("--remote-input: standard input must be the pipe or socket of the qckpt driving this one (-C)");
	buf = xmalloc((size_t)n + 1);
	if (read_input(buf, (size_t)n) < 0) {
		/* interrupted before the command could start */
		free(buf);
		interrupt_as_a_terminal_does();
		return error("--remote-input: standard input ended before the command's input: interrupted");
	}
	watch_fd = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
	if (watch_fd < 0 || input_as_stdin(buf, (size_t)n) < 0) {
		free(buf);
		return error("--remote-input: cannot set standard input up: %s", strerror(errno));
	}
	free(buf);
	pthread_atfork(NULL, NULL, on_fork_child);
	if (uv_loop_init(&watch_loop) < 0 || uv_pipe_init(&watch_loop, &watch_pipe, 0) < 0 ||
	    uv_pipe_open(&watch_pipe, watch_fd) < 0 ||
	    uv_read_start((uv_stream_t *)&watch_pipe, on_watch_alloc, on_watch_read) < 0 ||
	    uv_thread_create(&watch_thread, watch_main, NULL) < 0)
		return error("--remote-input: cannot watch standard input for an interrupt");
	return 0;
}
