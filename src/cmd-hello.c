/*
 * cmd-hello.c: "qckpt hello [PROTOCOL]", hidden: the handshake another
 * qckpt runs first when it drives this host with -C (remote.c).  One JSON
 * line saying who answers; with PROTOCOL, exit status 3 when this qckpt does
 * not speak it, so that `qckpt hello 1 && exec qckpt ...` never starts a
 * command this side would misread.
 */
#include <stdio.h>
#include <unistd.h>
#include <jansson.h>

#include "cmd.h"
#include "log.h"
#include "output.h"
#include "remote.h"
#include "util.h"

static int cmd_hello_exec(int argc, char **argv);

const struct cmd_entry cmd_hello_entry = {
	.name = "hello",
	.usage = "[PROTOCOL]",
	.summary = "the remote handshake (-C): who answers, which protocol it speaks",
	.exec = cmd_hello_exec,
	.flags = CMD_F_HIDDEN,
};

static int cmd_hello_exec(int argc, char **argv)
{
	char host[256] = "localhost";
	long want = REMOTE_PROTOCOL;
	json_t *o;

	if (argc > 2 || (argc == 2 && parse_long(argv[1], 1, 1000000, &want) < 0))
		return cmd_usage(&cmd_hello_entry);
	gethostname(host, sizeof host);
	host[sizeof host - 1] = '\0';
	o = json_pack("{s:s, s:s, s:i, s:s}", "Program", "qckpt", "Version", PACKAGE_VERSION,
		      "Protocol", REMOTE_PROTOCOL, "ComputerName", host);
	output_json_line(o);
	json_decref(o);
	fflush(stdout);
	if (want != REMOTE_PROTOCOL)
		return error("remote protocol %ld asked for, this qckpt %s speaks %d: install the same qckpt version on both hosts",
			     want, PACKAGE_VERSION, REMOTE_PROTOCOL), 3;
	return EXIT_ALL_OK;
}
