/*
 * probe_s6: the C timing loops of peer_s6.py (the shared ones are in
 * probe.h).  An item is a service directory; its pid is found the way a
 * program using s6's own library finds it: s6_svstatus_read() from libs6
 * reads SERVICEDIR/supervise/status, the record s6-supervise rewrites
 * (atomically, by rename) whenever the service changes state.  peer_s6.py
 * compiles it at run time:
 *
 *     cc -Wall -Wextra -Werror -O2 -I DIR probe_s6.c -ls6 -lskarnet
 *
 * Usage:
 *
 *   probe_s6 COMMAND ...
 *       One of the commands of probe.h, or:
 *   probe_s6 add-api LIST TIMEOUT_S RUN
 *       Add the one service directory of LIST as a program does: mkdir it,
 *       make its `run` a symlink to RUN and its notification-fd file say 3,
 *       then write "a" to its scan directory's control fifo
 *       (.s6-svscan/control, through s6_svc_writectl(): what s6-svscanctl
 *       -a does), and poll as probe.h's wait does.  Timed from before the
 *       mkdir; prints what wait prints.
 */
#define PROBE_NAME "probe_s6"
#include "probe.h"

#include <sys/stat.h>

#include <s6/supervise.h>

/*
 * The pid of the service in DIR if it is up, else 0.  While ./finish runs
 * (s6-supervise spawns it after every death, even when there is no
 * ./finish: that child just fails to exec), st.pid is the pid of that
 * child and flagfinishing is set: the service is down, as s6-svstat says.
 */
static pid_t
probe_pid(const char *dir)
{
	s6_svstatus_t st = S6_SVSTATUS_ZERO;

	if (!s6_svstatus_read(dir, &st) || st.flagfinishing)
		return 0;
	return st.pid > 0 ? st.pid : 0;
}

static int
cmd_add_api(uint64_t timeout, const char *run)
{
	const char *dir = items[0];
	const char *slash = strrchr(dir, '/');
	char        path[4096], scan[4096];
	uint64_t    t0;
	int         fd;

	if (nitems != 1 || slash == NULL || slash == dir ||
	    strlen(dir) + 20 > sizeof(path))
		die("add-api takes one absolute service directory");
	memcpy(scan, dir, (size_t)(slash - dir));
	scan[slash - dir] = '\0';

	t0 = now_ns();
	if (mkdir(dir, 0755) == -1)
		die("mkdir %s: %s", dir, strerror(errno));
	snprintf(path, sizeof(path), "%s/run", dir);
	if (symlink(run, path) == -1)
		die("symlink %s: %s", path, strerror(errno));
	snprintf(path, sizeof(path), "%s/notification-fd", dir);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) ==
	        -1 ||
	    write(fd, "3\n", 2) != 2 || close(fd) == -1)
		die("%s: %s", path, strerror(errno));
	if (s6_svc_writectl(scan, S6_SVSCAN_CTLDIR, "a", 1) != 1)
		die("unable to write to %s/" S6_SVSCAN_CTLDIR "/control: %s", scan,
		    strerror(errno));
	return wait_up(t0, timeout);
}

int
main(int argc, char **argv)
{
	int rc;

	if (argc == 5 && strcmp(argv[1], "add-api") == 0) {
		load_items(argv[2]);
		rc = cmd_add_api(number(argv[3]) * NS_PER_S, argv[4]);
	} else {
		rc = probe_main(argc, argv);
	}
	fflush(stdout);
	return rc;
}
