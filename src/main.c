/*
 * main.c: qckpt's entry point.  Everything else lives in the commands
 * (src/cmd-*.c) and the modules they call; main only dispatches.
 */
#include <signal.h>

#include "cmd.h"

int main(int argc, char **argv)
{
	/* A closed QMP socket must be an error code, not a dead process. */
	signal(SIGPIPE, SIG_IGN);
	return cmd_dispatch(argc, argv);
}
