/*
 * probe.h: what the C probes of the peer comparison share (probe_kv.c,
 * probe_s6.c, probe_runit.c), so that every peer's timing loops are the
 * same code.  peerlib.py compiles each probe at run time:
 *
 *     cc -Wall -Wextra -Werror -O2 -I DIR_OF_THIS_FILE probe_X.c ...
 *
 * A probe is one C file that includes this header first and then defines
 *
 *     static pid_t probe_pid(const char *item);
 *
 * An item is what the peer finds a worker by: a key for keyvisor, a service
 * directory for s6 and runit.  probe_pid() returns the pid the peer's own
 * API shows for it, or 0 when it shows none (unknown, down, finishing); it
 * is the one thing the timed loops call.  The probe's main() handles its
 * own arguments and commands, then passes the rest to probe_main(), which
 * runs these (LIST: a file of items, one a line; times on CLOCK_MONOTONIC,
 * the clock of Python's time.monotonic_ns(); a live pid is one that
 * kill(pid, 0) finds):
 *
 *   wait LIST TIMEOUT_S
 *       Print "ready", then poll every item until each shows a live pid.
 *   run LIST TIMEOUT_S IN OUT -- CMD [ARG ...]
 *       Fork CMD with its stdin from IN and its stdout to OUT (paths), wait
 *       until it has exited 0, then poll as wait does.
 *           Both print "up T0_NS FIRST_NS LAST_NS" (T0: when the polling
 *           started, or CMD's fork; FIRST, LAST: when the first and the last
 *           item was first seen up), then "pid I PID" for each item, and
 *           exit 0; or "timeout N_UP" and exit 2.
 *   restart LIST CRASHES GAP_US MINUP_US TIMEOUT_S SEED
 *       CRASHES times, round-robin over the items shuffled with SEED: wait
 *       for the item's live pid, SIGKILL it and spin (sched_yield) on
 *       probe_pid() until the item shows another live pid.  An item is
 *       killed again only MINUP_US after its restart was seen, and a kill
 *       comes at least GAP_US after the previous restart was seen.  One line
 *       per crash: "restart LAT_NS OLD NEW", or "lost OLD" when no live pid
 *       showed within TIMEOUT_S.
 *   lookup LIST L SEED
 *       Read every item's pid ("ref I PID"), draw L random items, then time
 *       L probe_pid() calls on them, each checked against that pid:
 *       "lookup TOTAL_NS L BAD".
 *   pids LIST
 *       "pid I PID" for every item (0: no live pid).
 *
 * Exit status 0 when the work was done, 1 (with one line on stderr) when it
 * was not.  The only processes a probe signals are the pids the supervisor
 * under test shows for the items it was given: that supervisor's workers.
 */
#ifndef PROBE_H
#define PROBE_H

#define _GNU_SOURCE
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef PROBE_NAME
#error "define PROBE_NAME before including probe.h"
#endif

#define NS_PER_S UINT64_C(1000000000)

/* Defined by the probe: see above. */
static pid_t probe_pid(const char *item);

static char  **items; /* from the LIST file */
static size_t  nitems;
static pid_t  *up_pid; /* wait_up(): the live pid each item showed */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)))
    __attribute__((noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	fputs(PROBE_NAME ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);

	if (p == NULL)
		die("out of memory");
	return p;
}

/* A whole decimal number, or die. */
static unsigned long long
number(const char *s)
{
	char              *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		die("not a number: %s", s);
	return v;
}

/* -- time -------------------------------------------------------------- */

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void
sleep_until(uint64_t t)
{
	struct timespec ts = {
	    .tv_sec = (time_t)(t / NS_PER_S), .tv_nsec = (long)(t % NS_PER_S)};

	while (
	    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* -- randomness: splitmix64, seeded from the command line --------------- */

static uint64_t rng_state;

static uint64_t
rnd(void)
{
	uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Fisher-Yates over V[0..n). */
static void
shuffle(size_t *v, size_t n)
{
	size_t i, j, t;

	for (i = n; i > 1; i--) {
		j = (size_t)(rnd() % i);
		t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}

/* -- items -------------------------------------------------------------- */

/* Read the LIST file into items[0..nitems). */
static void
load_items(const char *path)
{
	FILE   *f = fopen(path, "re");
	char   *line = NULL;
	size_t  cap = 0, room = 0;
	ssize_t len;

	if (f == NULL)
		die("unable to open %s: %s", path, strerror(errno));
	while ((len = getline(&line, &cap, f)) > 0) {
		if (line[len - 1] == '\n')
			line[--len] = '\0';
		if (len == 0)
			continue;
		if (nitems == room) {
			room = room ? 2 * room : 1024;
			if ((items = realloc(items, room * sizeof(*items))) == NULL)
				die("out of memory");
		}
		if ((items[nitems++] = strdup(line)) == NULL)
			die("out of memory");
	}
	free(line);
	fclose(f);
	if (nitems == 0)
		die("no items in %s", path);
	up_pid = xcalloc(nitems, sizeof(*up_pid));
}

/* The pid ITEM shows if it is alive, else 0. */
static pid_t
live_pid(const char *item)
{
	pid_t pid = probe_pid(item);

	return pid > 0 && kill(pid, 0) == 0 ? pid : 0;
}

/* Spin until ITEM shows a live pid other than NOT; 0 after LIMIT ns. */
static pid_t
wait_pid(const char *item, pid_t not, uint64_t limit)
{
	uint64_t end = now_ns() + limit;
	pid_t    pid;

	for (;;) {
		if ((pid = live_pid(item)) > 0 && pid != not)
			return pid;
		if (now_ns() >= end)
			return 0;
		sched_yield();
	}
}

/*
 * Poll every item until each shows a live pid (kept in up_pid[]), at most
 * TIMEOUT ns.  *FIRST and *LAST: when the first and the last item was first
 * seen up.  How many items are up at the end.
 */
static size_t
poll_up(uint64_t timeout, uint64_t *first, uint64_t *last)
{
	uint64_t end = now_ns() + timeout, pass, t;
	size_t   left = nitems, i;

	*first = *last = 0;
	for (;;) {
		pass = now_ns();
		for (i = 0; i < nitems; i++) {
			if (up_pid[i] != 0 || (up_pid[i] = live_pid(items[i])) == 0)
				continue;
			t = now_ns();
			if (*first == 0)
				*first = t;
			*last = t;
			left--;
		}
		if (left == 0 || now_ns() > end)
			return nitems - left;
		if (nitems > 1) {
			/*
			 * Leave the cores to the supervisor: sleep as long as the
			 * pass took (about 1 us an item), at least 0.5 ms, so that
			 * polling many items costs at most half a core.
			 */
			pass = now_ns() - pass;
			sleep_until(now_ns() + (pass > 500000 ? pass : 500000));
		} else
			sched_yield();
	}
}

/* poll_up() from T0, and print what probe.h's header says; exit status. */
static int
wait_up(uint64_t t0, uint64_t timeout)
{
	uint64_t first, last;
	size_t   n = poll_up(timeout, &first, &last), i;

	if (n < nitems) {
		printf("timeout %zu\n", n);
		return 2;
	}
	printf("up %llu %llu %llu\n", (unsigned long long)t0,
	    (unsigned long long)first, (unsigned long long)last);
	for (i = 0; i < nitems; i++)
		printf("pid %zu %d\n", i, (int)up_pid[i]);
	return 0;
}

/* -- running a command ---------------------------------------------------- */

/* Fork ARGV with its stdin from IN and its stdout to OUT; its pid. */
static pid_t
spawn(char **argv, const char *in, const char *out)
{
	pid_t pid = fork();
	int   fd;

	if (pid == -1)
		die("fork: %s", strerror(errno));
	if (pid > 0)
		return pid;
	if ((fd = open(in, O_RDONLY)) == -1 || dup2(fd, 0) == -1)
		_exit(126);
	if ((fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1 ||
	    dup2(fd, 1) == -1)
		_exit(126);
	execv(argv[0], argv);
	_exit(127);
}

/* Wait for PID; die unless it exited 0. */
static void
wait_ok(pid_t pid, const char *what)
{
	int st;

	while (waitpid(pid, &st, 0) == -1)
		if (errno != EINTR)
			die("waitpid: %s", strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		die("%s failed (see its message above)", what);
}

/* The command after "--" at ARGV[FROM], or die. */
static char **
after_dashes(int argc, char **argv, int from)
{
	if (from >= argc - 1 || strcmp(argv[from], "--") != 0)
		die("expected -- CMD [ARG ...]");
	return argv + from + 1;
}

/* -- the shared commands -------------------------------------------------- */

static int
cmd_run(uint64_t timeout, const char *in, const char *out, char **argv)
{
	uint64_t t0 = now_ns();

	wait_ok(spawn(argv, in, out), argv[0]);
	return wait_up(t0, timeout);
}

static int
cmd_restart(unsigned long long crashes, uint64_t gap, uint64_t minup,
    uint64_t timeout)
{
	size_t   *order = xcalloc(nitems, sizeof(*order));
	uint64_t *since = xcalloc(nitems, sizeof(*since)); /* restart seen */
	uint64_t  due = 0, t0, t;
	unsigned long long k;
	size_t    i;
	pid_t     old, new;

	for (i = 0; i < nitems; i++)
		order[i] = i;
	shuffle(order, nitems);
	for (k = 0; k < crashes; k++) {
		i = order[k % nitems];
		if (since[i] != 0 && since[i] + minup > due)
			due = since[i] + minup;
		sleep_until(due);
		/* Its previous restart (if any) is long done. */
		if ((old = wait_pid(items[i], 0, timeout)) == 0) {
			printf("lost 0\n");
			fflush(stdout);
			continue;
		}
		t0 = now_ns();
		if (kill(old, SIGKILL) == -1)
			die("kill %d: %s", (int)old, strerror(errno));
		new = wait_pid(items[i], old, timeout);
		t = now_ns();
		if (new != 0)
			printf("restart %llu %d %d\n", (unsigned long long)(t - t0),
			    (int)old, (int)new);
		else
			printf("lost %d\n", (int)old);
		fflush(stdout);
		since[i] = t;
		due = t + gap;
	}
	free(order);
	free(since);
	return 0;
}

static int
cmd_lookup(unsigned long long n)
{
	pid_t             *want = xcalloc(nitems, sizeof(*want));
	size_t            *pick = xcalloc(n, sizeof(*pick));
	unsigned long long j, bad = 0;
	uint64_t           t0, t1;
	size_t             i;

	for (i = 0; i < nitems; i++) {
		if ((want[i] = live_pid(items[i])) == 0)
			die("%s: no live pid before the lookups", items[i]);
		printf("ref %zu %d\n", i, (int)want[i]);
	}
	/* The random items are drawn before the clock starts. */
	for (j = 0; j < n; j++)
		pick[j] = (size_t)(rnd() % nitems);
	t0 = now_ns();
	for (j = 0; j < n; j++)
		if (probe_pid(items[pick[j]]) != want[pick[j]])
			bad++;
	t1 = now_ns();
	printf("lookup %llu %llu %llu\n", (unsigned long long)(t1 - t0), n, bad);
	free(want);
	free(pick);
	return 0;
}

static int
cmd_pids(void)
{
	size_t i;

	for (i = 0; i < nitems; i++)
		printf("pid %zu %d\n", i, (int)live_pid(items[i]));
	return 0;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: " PROBE_NAME " ... wait LIST TIMEOUT_S\n"
	    "       " PROBE_NAME " ... run LIST TIMEOUT_S IN OUT -- CMD ...\n"
	    "       " PROBE_NAME " ... restart LIST CRASHES GAP_US MINUP_US "
	    "TIMEOUT_S SEED\n"
	    "       " PROBE_NAME " ... lookup LIST L SEED\n"
	    "       " PROBE_NAME " ... pids LIST\n");
	exit(2);
}

/*
 * Run the shared command in ARGV[1] with its arguments after it (ARGV[0] is
 * not used); the exit status.
 */
static int
probe_main(int argc, char **argv)
{
	const char *cmd = argc > 2 ? argv[1] : "";
	int         rc;

	if (argc < 3)
		usage();
	load_items(argv[2]);
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	if (strcmp(cmd, "wait") == 0 && argc == 4) {
		printf("ready\n");
		fflush(stdout);
		rc = wait_up(now_ns(), number(argv[3]) * NS_PER_S);
	} else if (strcmp(cmd, "run") == 0 && argc >= 8) {
		rc = cmd_run(number(argv[3]) * NS_PER_S, argv[4], argv[5],
		    after_dashes(argc, argv, 6));
	} else if (strcmp(cmd, "restart") == 0 && argc == 8) {
		rng_state = number(argv[7]);
		rc = cmd_restart(number(argv[3]), number(argv[4]) * 1000,
		    number(argv[5]) * 1000, number(argv[6]) * NS_PER_S);
	} else if (strcmp(cmd, "lookup") == 0 && argc == 5) {
		rng_state = number(argv[4]);
		rc = cmd_lookup(number(argv[3]));
	} else if (strcmp(cmd, "pids") == 0 && argc == 3) {
		rc = cmd_pids();
	} else {
		usage();
	}
	fflush(stdout);
	return rc;
}

#endif /* PROBE_H */
