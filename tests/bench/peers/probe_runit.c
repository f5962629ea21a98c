/*
 * probe_runit: the C timing loops of peer_runit.py (all of them in
 * probe.h).  An item is a service directory.  runit has no library, so a
 * program finds a service's pid the way sv(8) does: it reads the binary
 * record runsv(8) keeps in SERVICEDIR/supervise/status (runsv rewrites it
 * by rename on every change).  Its layout, from runsv.c update_status()
 * (runit 2.1.2, "supervise compatibility" with daemontools):
 *
 *     bytes  0..11  TAI64N of the last state change (taia_pack, big-endian)
 *     bytes 12..15  pid of ./run (or ./finish), LITTLE-endian; 0 when down
 *     byte  16      1 if paused
 *     byte  17      'u' if the service is wanted up, 'd' if down
 *     byte  18      1 if runsv sent it TERM
 *     byte  19      state: 0 down, 1 run, 2 finish
 *
 * (sv status reads the same 20 bytes and prints "run: DIR: (pid N) Ts".)
 * A service is up when byte 19 is 1 and the pid is not 0.
 *
 * peer_runit.py compiles it at run time:
 *
 *     cc -Wall -Wextra -Werror -O2 -I DIR probe_runit.c
 *
 * Usage: probe_runit COMMAND ..., one of the commands of probe.h.
 */
#define PROBE_NAME "probe_runit"
#include "probe.h"

#define STATUS_FILE "/supervise/status"

/* The pid of the service in DIR if runsv shows it running, else 0. */
static pid_t
probe_pid(const char *dir)
{
	char          path[4096];
	unsigned char b[20];
	size_t        len = strlen(dir);
	ssize_t       r;
	uint32_t      pid;
	int           fd;

	if (len + sizeof(STATUS_FILE) > sizeof(path))
		return 0;
	memcpy(path, dir, len);
	memcpy(path + len, STATUS_FILE, sizeof(STATUS_FILE));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return 0;
	r = read(fd, b, sizeof(b));
	close(fd);
	if (r != (ssize_t)sizeof(b) || b[19] != 1)
		return 0;
	pid = (uint32_t)b[12] | (uint32_t)b[13] << 8 | (uint32_t)b[14] << 16 |
	      (uint32_t)b[15] << 24;
	return (pid_t)pid;
}

int
main(int argc, char **argv)
{
	return probe_main(argc, argv);
}
