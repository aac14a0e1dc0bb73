/*
 * fakeqmp.h: a scripted fake QMP server for the tests, running on the
 * test's own libuv loop.  It does on demand what real QEMU will not:
 * greetings in pieces or malformed, replies out of order or never,
 * connections dropped mid-message.  It also records every command it
 * receives, with any file descriptor that came along (SCM_RIGHTS).
 *
 * A script is a list of steps, run in order for the first connection
 * (later connections are closed at once).  Output steps write at most one
 * piece per loop iteration, so the client reads each piece separately.
 * Reply templates may use %ID% for the command's "id", copied as JSON,
 * %SYNC% for its arguments' "id" (a guest agent's guest-sync-delimited)
 * and %JOBID% for its arguments' "job-id" (blockdev-create's events);
 * replies and events get QEMU's "\r\n" appended, fakeqmp_send does not.
 */
#ifndef FAKEQMP_H
#define FAKEQMP_H

#include <stddef.h>
#include <jansson.h>
#include <uv.h>

struct fakeqmp;

/* Listen on "unix:PATH" or "tcp:127.0.0.1:0" (a free port is chosen). */
struct fakeqmp *fakeqmp_new(uv_loop_t *loop, const char *address);
/* The address to give qmp_client_connect. */
const char *fakeqmp_address(const struct fakeqmp *fake);
/* Stop listening and close everything; freed once the loop ran the close
 * callbacks.  Received fds are closed. */
void fakeqmp_free(struct fakeqmp *fake);

/* --- script steps ---------------------------------------------------- */
void fakeqmp_send(struct fakeqmp *fake, const char *raw);
/* raw in pieces of `chunk` bytes, one write per loop iteration. */
void fakeqmp_send_chunks(struct fakeqmp *fake, const char *raw, size_t chunk);
/* QEMU 7.2.0's greeting (package "fake"). */
void fakeqmp_greet(struct fakeqmp *fake);
/* Greeting, then answer qmp_capabilities with {"return": {}}. */
void fakeqmp_negotiate(struct fakeqmp *fake);
/* Wait for COMMAND; answer with the reply template (NULL: never answer). */
void fakeqmp_expect(struct fakeqmp *fake, const char *command,
		    const char *reply);
/* The same, but the reply is held until fakeqmp_release. */
void fakeqmp_expect_hold(struct fakeqmp *fake, const char *command,
			 const char *reply);
/* Send the held replies, last held first. */
void fakeqmp_release(struct fakeqmp *fake);
/* An event with a fixed timestamp (1700000000 s, 123456 us); data_json may
 * be NULL for an event without "data". */
void fakeqmp_event(struct fakeqmp *fake, const char *name,
		   const char *data_json);
/* Close the connection. */
void fakeqmp_hangup(struct fakeqmp *fake);

/* --- observations ---------------------------------------------------- */
int fakeqmp_finished(const struct fakeqmp *fake);   /* all steps done */
const char *fakeqmp_error(const struct fakeqmp *fake); /* NULL: script kept */
int fakeqmp_connections(const struct fakeqmp *fake);
int fakeqmp_peer_closed(const struct fakeqmp *fake); /* client hung up */
int fakeqmp_sentinels(const struct fakeqmp *fake);   /* 0xFF bytes received */
size_t fakeqmp_command_count(const struct fakeqmp *fake);
json_t *fakeqmp_command(const struct fakeqmp *fake, size_t i); /* borrowed */
int fakeqmp_command_fd(const struct fakeqmp *fake, size_t i);  /* or -1 */

/* The guest agent's answer to guest-sync-delimited: 0xFF, then the id. */
#define FAKEQMP_AGENT_SYNC "\xff{\"return\": %SYNC%}"

#define FAKEQMP_GREETING                                                     \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, "   \
	"\"major\": 7}, \"package\": \"fake\"}, \"capabilities\": "          \
	"[\"oob\"]}}\r\n"

#endif
