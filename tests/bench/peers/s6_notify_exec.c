/*
 * s6_notify_exec: the `run` of peer_s6.py's services.  s6-supervise 2.11
 * waits 1 s before it restarts a service that never notified readiness, so
 * the services notify: the service directory's notification-fd file says 3,
 * and this program writes the readiness newline on fd 3, closes it and
 * execs the worker (WORKER, given with -D when peer_s6.py compiles it,
 * statically where it can), keeping its pid: the running process is the
 * worker itself, with no shell in between.
 */
#include <unistd.h>

#ifndef WORKER
#error "compile with -DWORKER='\"/path/to/worker\"'"
#endif

int
main(int argc, char **argv)
{
	(void)argc;
	if (write(3, "\n", 1) != 1)
		return 111;
	close(3);
	execv(WORKER, argv);
	return 111;
}
