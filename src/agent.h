/*
 * agent.h: one VM's QEMU guest agent (qemu-ga), as production checkpoints
 * need it: connect and resynchronise (the qmp/ library's agent mode), then
 * freeze and thaw the guest's file systems.  Kept apart from the job so the
 * job only sees "frozen N file systems" or one line saying what went wrong
 * and what to do.
 */
#ifndef AGENT_H
#define AGENT_H

#include <uv.h>

#include "qmp.h"

/* Defaults; QCKPT_AGENT_TIMEOUT_MS overrides all three (tests use it). */
#define AGENT_CONNECT_TIMEOUT_MS 5000u  /* connect + guest-sync-delimited */
#define AGENT_FREEZE_TIMEOUT_MS 10000u  /* guest-fsfreeze-freeze (syncs first) */
#define AGENT_THAW_TIMEOUT_MS 10000u

struct agent;

/* Connected and in sync (0), or not (negative, agent->error filled). */
typedef void (*agent_ready_cb)(struct agent *agent, int status);

/* A freeze or thaw finished: status 0 and the number of file systems
 * frozen / thawed, or negative with agent->error filled. */
typedef void (*agent_count_cb)(struct agent *agent, int status,
			       long long count, void *arg);

struct agent {
	qmp_client qmp;
	void *data;
	char *vm;          /* for messages */
	char *address;     /* the agent's socket */
	char error[400];   /* the last failure, one line without the VM name */
	agent_ready_cb on_ready;
	int opened;
};

/* The timeout for kind (one of the defaults above), or the override. */
unsigned agent_timeout_ms(unsigned default_ms);

/* Connect to ADDRESS ("unix:PATH" or a path).  0: cb will be called once;
 * negative: it will not, agent->error says why. */
int agent_open(uv_loop_t *loop, struct agent *agent, const char *vm,
	       const char *address, agent_ready_cb cb);

/* guest-fsfreeze-freeze / guest-fsfreeze-thaw with a timeout.  0: cb will
 * be called once; negative: it will not (not connected), agent->error set. */
int agent_freeze(struct agent *agent, agent_count_cb cb, void *arg);
int agent_thaw(struct agent *agent, agent_count_cb cb, void *arg);

/* Whether commands can be sent (connected and in sync). */
int agent_ready(const struct agent *agent);

/* Close (pending commands complete with an error first) and free the
 * strings; the memory is reusable once the loop ran the close. */
void agent_close(struct agent *agent);

#endif
