/*
 * agent.c: see agent.h.  The advice for an agent that is missing, silent or
 * refusing is written here once, so the job and its messages stay short.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "util.h"

struct agent_call {
	struct agent *agent;
	const char *command;
	unsigned timeout_ms;
	agent_count_cb cb;
	void *arg;
};

unsigned agent_timeout_ms(unsigned default_ms)
{
	const char *env = getenv("QCKPT_AGENT_TIMEOUT_MS");
	long v;

	if (env == NULL || parse_long(env, 1, 3600000, &v) < 0)
		return default_ms;
	return (unsigned)v;
}

/* One line for a failure of WHAT (a command, or "connecting"). */
static void agent_explain(struct agent *agent, int status,
			  const struct qmp_error *qerr, const char *what,
			  unsigned timeout_ms)
{
	const char *addr = agent->address;

	if (status == QMP_ECOMMAND)
		snprintf(agent->error, sizeof agent->error,
			 "the guest agent refused %s: %s", what, qerr->desc);
	else if (status == QMP_ETIMEDOUT && strcmp(what, "connecting") == 0)
		snprintf(agent->error, sizeof agent->error,
			 "the guest agent at %s did not answer within %u ms (is qemu-ga running in the guest, on the port org.qemu.guest_agent.0?)",
			 addr, timeout_ms);
	else if (status == QMP_ETIMEDOUT)
		snprintf(agent->error, sizeof agent->error,
			 "the guest agent did not answer %s within %u ms", what,
			 timeout_ms);
	else if (status == QMP_ECLOSED)
		snprintf(agent->error, sizeof agent->error,
			 "the guest agent's connection closed during %s (QEMU or qemu-ga exited?)",
			 what);
	else if (status == UV_ENOENT || status == UV_ECONNREFUSED)
		snprintf(agent->error, sizeof agent->error,
			 "no guest agent socket at %s (%s): check agent= in the registry and QEMU's -chardev socket,path=...,server=on for the agent's virtserialport",
			 addr, qmp_strerror(status));
	else
		snprintf(agent->error, sizeof agent->error,
			 "guest agent at %s, %s: %s", addr, what,
			 qmp_strerror(status));
	/* The guest's words, printed and recorded: untrusted. */
	text_strip_controls(agent->error);
}

static void on_agent_connected(qmp_client *client, int status)
{
	struct agent *agent = client->data;

	if (status < 0)
		agent_explain(agent, status, NULL, "connecting",
			      agent_timeout_ms(AGENT_CONNECT_TIMEOUT_MS));
	agent->on_ready(agent, status);
}

int agent_open(uv_loop_t *loop, struct agent *agent, const char *vm,
	       const char *address, agent_ready_cb cb)
{
	unsigned timeout = agent_timeout_ms(AGENT_CONNECT_TIMEOUT_MS);
	int rc;

	agent->vm = xstrdup(vm);
	agent->address = xstrdup(address);
	agent->error[0] = '\0';
	agent->on_ready = cb;
	rc = qmp_client_init(loop, &agent->qmp);
	if (rc < 0) {
		agent_explain(agent, rc, NULL, "connecting", timeout);
		return rc;
	}
	agent->qmp.data = agent;
	agent->opened = 1;
	rc = qmp_client_connect_agent(&agent->qmp, address, timeout,
				      on_agent_connected);
	if (rc < 0)
		agent_explain(agent, rc, NULL, "connecting", timeout);
	return rc;
}

int agent_ready(const struct agent *agent)
{
	return agent->opened && agent->qmp.state == QMP_STATE_READY;
}

static void on_agent_reply(qmp_client *client, int status, json_t *result,
			   const struct qmp_error *qerr, void *arg)
{
	struct agent_call *call = arg;
	struct agent *agent = call->agent;
	long long count = 0;

	if (status == 0 && !json_is_integer(result)) {
		snprintf(agent->error, sizeof agent->error,
			 "the guest agent answered %s with something that is not a count",
			 call->command);
		status = QMP_EPROTO;
	} else if (status == 0) {
		count = (long long)json_integer_value(result);
	} else {
		agent_explain(agent, status, qerr, call->command,
			      call->timeout_ms);
	}
	call->cb(agent, status, count, call->arg);
	free(call);
}

static int agent_count_command(struct agent *agent, const char *command,
			       unsigned timeout_ms, agent_count_cb cb,
			       void *arg)
{
	struct agent_call *call;
	int rc;

	if (!agent_ready(agent)) {
		snprintf(agent->error, sizeof agent->error,
			 "cannot send %s: the guest agent is not connected",
			 command);
		return QMP_ENOTREADY;
	}
	call = xcalloc(1, sizeof *call);
	call->agent = agent;
	call->command = command;
	call->timeout_ms = timeout_ms;
	call->cb = cb;
	call->arg = arg;
	rc = qmp_client_execute_ex(&agent->qmp, command, NULL, -1, timeout_ms,
				   on_agent_reply, call);
	if (rc < 0) {
		free(call);
		agent_explain(agent, rc, NULL, command, timeout_ms);
	}
	return rc;
}

int agent_freeze(struct agent *agent, agent_count_cb cb, void *arg)
{
	return agent_count_command(agent, "guest-fsfreeze-freeze",
				   agent_timeout_ms(AGENT_FREEZE_TIMEOUT_MS),
				   cb, arg);
}

int agent_thaw(struct agent *agent, agent_count_cb cb, void *arg)
{
	return agent_count_command(agent, "guest-fsfreeze-thaw",
				   agent_timeout_ms(AGENT_THAW_TIMEOUT_MS), cb,
				   arg);
}

void agent_close(struct agent *agent)
{
	if (agent->opened) {
		agent->opened = 0;
		qmp_client_close(&agent->qmp, NULL);
	}
	free(agent->vm);
	free(agent->address);
	agent->vm = agent->address = NULL;
}
