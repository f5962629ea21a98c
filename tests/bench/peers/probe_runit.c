/*
 * probe_runit: the timing loops of peer_runit.py.  runit has no library, so
 * a program finds a service's pid the way sv(8) does: it reads the binary
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
 * peer_runit.py compiles it at run time into its --tmp directory:
 *
 *     cc -Wall -Wextra -Werror -O2 -o probe_runit probe_runit.c
 *
 * Usage (PATHS: a file with one absolute service directory per line):
 *
 *     probe_runit wait PATHS TIMEOUT_S
 *         Print "ready", then poll every service until each shows a pid
 *         that is alive; print "up FIRST_NS LAST_NS" (CLOCK_MONOTONIC, the
 *         clock of Python's time.monotonic_ns()): when the first and the
 *         last service were first seen up.  Exit 2 on timeout.
 *     probe_runit restart PATHS CRASHES GAP_US MINUP_US TIMEOUT_S
 *         Round-robin over PATHS in the given (shuffled) order: SIGKILL the
 *         service's pid and spin on supervise/status until it shows
 *         another pid that is alive.  A service is killed again only after
 *         MINUP_US of its restart, and kills are at least GAP_US apart.
 *         One line per crash: "restart LAT_NS OLD NEW" or "lost OLD".
 *     probe_runit lookup PATHS L SEED
 *         Read every service's pid once ("ref I PID" lines), then time L
 *         lookups of random services, each checked against that pid:
 *         "lookup TOTAL_NS L BAD".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

static char  **paths;
static size_t  npaths;

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
sleep_until(uint64_t t)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(t / 1000000000u);
	ts.tv_nsec = (long)(t % 1000000000u);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static uint64_t rng_state;

static uint64_t
rnd(void) /* splitmix64 */
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

#define STATUS_FILE "/supervise/status"

/* The pid of the service in DIR if runsv shows it running, else 0. */
static pid_t
svc_pid(const char *dir)
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

static int
alive(pid_t pid)
{
	return pid > 0 && kill(pid, 0) == 0;
}

static void
load_paths(const char *file)
{
	FILE   *f = fopen(file, "r");
	char   *line = NULL;
	size_t  cap = 0, room = 0;
	ssize_t len;

	if (f == NULL) {
		perror(file);
		exit(1);
	}
	while ((len = getline(&line, &cap, f)) > 0) {
		if (line[len - 1] == '\n')
			line[--len] = '\0';
		if (len == 0)
			continue;
		if (npaths == room) {
			room = room ? 2 * room : 1024;
			paths = realloc(paths, room * sizeof(*paths));
			if (paths == NULL) {
				perror("realloc");
				exit(1);
			}
		}
		if ((paths[npaths++] = strdup(line)) == NULL) {
			perror("strdup");
			exit(1);
		}
	}
	free(line);
	fclose(f);
	if (npaths == 0) {
		fprintf(stderr, "probe: no paths in %s\n", file);
		exit(1);
	}
}

static int
do_wait(uint64_t timeout)
{
	unsigned char *up = calloc(npaths, 1);
	size_t         left = npaths, i;
	uint64_t       first = 0, last = 0, t, end;

	if (up == NULL) {
		perror("calloc");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	end = now_ns() + timeout;
	for (;;) {
		uint64_t pass = now_ns();

		for (i = 0; i < npaths; i++) {
			if (up[i] || !alive(svc_pid(paths[i])))
				continue;
			t = now_ns();
			up[i] = 1;
			if (first == 0)
				first = t;
			last = t;
			left--;
		}
		if (left == 0)
			break;
		if (now_ns() > end) {
			printf("timeout %zu\n", npaths - left);
			return 2;
		}
		if (npaths > 1) {
			/*
			 * Leave the cores to the supervisor: sleep as long as the
			 * pass took (~1 us a service), at least 0.5 ms, so that
			 * polling many services costs at most half a core.
			 */
			pass = now_ns() - pass;
			sleep_until(now_ns() + (pass > 500000 ? pass : 500000));
		} else
			sched_yield();
	}
	printf("up %llu %llu\n", (unsigned long long)first,
	       (unsigned long long)last);
	free(up);
	return 0;
}

static int
do_restart(unsigned long crashes, uint64_t gap, uint64_t minup,
           uint64_t timeout)
{
	uint64_t     *since = calloc(npaths, sizeof(*since));
	uint64_t      due = 0, t0, t = 0;
	unsigned long k;
	size_t        i;
	pid_t         old, p;

	if (since == NULL) {
		perror("calloc");
		return 1;
	}
	for (k = 0; k < crashes; k++) {
		i = k % npaths;
		if (since[i] && since[i] + minup > due)
			due = since[i] + minup;
		sleep_until(due);
		old = svc_pid(paths[i]);
		if (!alive(old)) {
			printf("lost %d\n", (int)old);
			fflush(stdout);
			continue;
		}
		t0 = now_ns();
		/* Ours: a worker of the runsvdir tree this benchmark started. */
		if (kill(old, SIGKILL) == -1) {
			perror("kill");
			return 1;
		}
		for (;;) {
			p = svc_pid(paths[i]);
			if (p != old && alive(p)) {
				t = now_ns();
				printf("restart %llu %d %d\n",
				       (unsigned long long)(t - t0), (int)old,
				       (int)p);
				break;
			}
			if (now_ns() - t0 > timeout) {
				t = now_ns();
				printf("lost %d\n", (int)old);
				break;
			}
			sched_yield();
		}
		fflush(stdout);
		since[i] = t;
		due = t + gap;
	}
	free(since);
	return 0;
}

static int
do_lookup(unsigned long n, uint64_t seed)
{
	pid_t        *ref = calloc(npaths, sizeof(*ref));
	unsigned long j, bad = 0;
	uint64_t      t0, t1;
	size_t        i;

	if (ref == NULL) {
		perror("calloc");
		return 1;
	}
	for (i = 0; i < npaths; i++) {
		ref[i] = svc_pid(paths[i]);
		if (!alive(ref[i])) {
			fprintf(stderr, "probe: %s is not up\n", paths[i]);
			return 1;
		}
		printf("ref %zu %d\n", i, (int)ref[i]);
	}
	rng_state = seed;
	t0 = now_ns();
	for (j = 0; j < n; j++) {
		i = (size_t)(rnd() % npaths);
		if (svc_pid(paths[i]) != ref[i])
			bad++;
	}
	t1 = now_ns();
	printf("lookup %llu %lu %lu\n", (unsigned long long)(t1 - t0), n, bad);
	free(ref);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "wait") == 0) {
		load_paths(argv[2]);
		return do_wait(strtoull(argv[3], NULL, 10) * 1000000000u);
	}
	if (argc == 7 && strcmp(argv[1], "restart") == 0) {
		load_paths(argv[2]);
		return do_restart(strtoul(argv[3], NULL, 10),
		                  strtoull(argv[4], NULL, 10) * 1000u,
		                  strtoull(argv[5], NULL, 10) * 1000u,
		                  strtoull(argv[6], NULL, 10) * 1000000000u);
	}
	if (argc == 5 && strcmp(argv[1], "lookup") == 0) {
		load_paths(argv[2]);
		return do_lookup(strtoul(argv[3], NULL, 10),
		                 strtoull(argv[4], NULL, 10));
	}
	fprintf(stderr,
	        "usage: probe wait PATHS TIMEOUT_S | restart PATHS CRASHES "
	        "GAP_US MINUP_US TIMEOUT_S | lookup PATHS L SEED\n");
	return 1;
}
