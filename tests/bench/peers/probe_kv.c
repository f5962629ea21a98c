/*
 * probe_kv: the C timing loops of peer_keyvisor.py.  It reads keyvisord's
 * shared-memory registry through the public API (keyvisor/registry.h), so
 * that the poller's own cost is a few hundred nanoseconds a lookup.
 * peer_keyvisor.py compiles it at run time:
 *
 *   cc -O2 -I SRC/shm/include probe_kv.c BUILD/shm/libkvshm.a -pthread -lrt
 *
 * Usage (SEGMENT is the registry's name without the slash, such as
 * "keyvisor.peers-123"; OWNER is keyvisord's pid; KEYS is a file of keys,
 * one per line):
 *
 *   probe_kv bringup SEGMENT OWNER KEYS OUT -- CMD [ARG ...]
 *       Run CMD with KEYS on its stdin and its stdout in OUT, and time from
 *       its fork until it has exited 0 and every key is found with a live
 *       pid.  Prints "bringup_ms MS", then "pid KEY PID" for every key.
 *   probe_kv add SEGMENT OWNER KEY -- CMD [ARG ...]
 *       The same for one key, CMD's stdout to /dev/null: "add_ms MS PID".
 *   probe_kv restart SEGMENT OWNER KEYS CRASHES GAP_US SEED
 *       CRASHES times: take the next key of a shuffled round-robin, wait
 *       until it shows a live pid, SIGKILL that pid and spin on
 *       kv_reg_lookup() until the key shows another pid that is alive.
 *       Kills are at least GAP_US apart.  Prints "lat US OLD NEW" for each
 *       crash, then "lost N" (restarts not seen within 5 s).
 *   probe_kv lookup SEGMENT OWNER KEYS L SEED
 *       Take every key's pid, then time L lookups of random keys, each
 *       checked against it.  Prints "lookup_ns MEAN_NS" and "checked L".
 *   probe_kv dump SEGMENT OWNER KEYS
 *       Prints "pid KEY PID" for every key (0 when not found).
 *
 * A lookup counts only if the entry's owner is OWNER.  Exit status 0 when
 * the work was done, 1 (with one line on stderr) when it was not.  The only
 * process this program signals is a worker pid the registry shows for a
 * key of KEYS, owned by OWNER: one of the workers the caller's daemon
 * started for it.
 */
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keyvisor/registry.h"

#define NS_PER_S   UINT64_C(1000000000)
#define WAIT_LIMIT (5 * NS_PER_S)  /* for one restart to show */
#define FIND_LIMIT (30 * NS_PER_S) /* for a bring-up's keys to show */

static struct kv_reg *reg;
static pid_t          owner;
static char         **keys; /* from the keys file */
static size_t         nkeys;
static uint64_t       rng = UINT64_C(0x9e3779b97f4a7c15);

static void
die(const char *fmt, const char *arg)
{
	fprintf(stderr, "probe_kv: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(1);
}

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

/* xorshift64*, seeded from the command line: runs are repeatable. */
static uint64_t
rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * UINT64_C(0x2545f4914f6cdd1d);
}

static void
seed(unsigned long s)
{
	rng = ((uint64_t)s + 1) * UINT64_C(0x9e3779b97f4a7c15);
	if (rng == 0)
		rng = 1;
}

static unsigned long
number(const char *s)
{
	char         *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		die("not a number: %s", s);
	return v;
}

/* Read the keys file into keys[0..nkeys). */
static void
read_keys(const char *path)
{
	FILE  *f = fopen(path, "re");
	char   line[KV_KEY_MAX + 2];
	size_t cap = 0;

	if (f == NULL)
		die("unable to open %s", path);
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '\0')
			continue;
		if (nkeys == cap) {
			cap = cap ? cap * 2 : 1024;
			if ((keys = realloc(keys, cap * sizeof(*keys))) == NULL)
				die("%s", "out of memory");
		}
		if ((keys[nkeys++] = strdup(line)) == NULL)
			die("%s", "out of memory");
	}
	fclose(f);
	if (nkeys == 0)
		die("no keys in %s", path);
}

/*
 * The live pid of KEY: published, owned by our daemon, and alive
 * (kill(pid, 0) succeeds).  0 when there is none now.
 */
static pid_t
live_pid(const char *key)
{
	struct kv_entry e;

	if (kv_reg_lookup(reg, key, strlen(key), &e) != 0 || e.pid <= 0 ||
	    e.owner != owner)
		return 0;
	return kill(e.pid, 0) == 0 ? e.pid : 0;
}

/* Spin until KEY has a live pid other than NOT; 0 after LIMIT ns. */
static pid_t
wait_pid(const char *key, pid_t not, uint64_t limit)
{
	uint64_t end = now_ns() + limit;
	pid_t    pid;

	do {
		if ((pid = live_pid(key)) > 0 && pid != not)
			return pid;
		sched_yield();
	} while (now_ns() < end);
	return 0;
}

/*
 * Start ARGV with its stdin from IN and its stdout to OUT (paths), and
 * return its pid.  Its stderr is ours.
 */
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

/* bringup: time CMD (keys on its stdin) until every key shows a live pid. */
static int
cmd_bringup(const char *keysfile, const char *out, char **argv)
{
	pid_t   *pids = calloc(nkeys, sizeof(*pids));
	uint64_t t0, t1;
	size_t   i;

	if (pids == NULL)
		die("%s", "out of memory");
	t0 = now_ns();
	wait_ok(spawn(argv, keysfile, out), argv[0]);
	for (i = 0; i < nkeys; i++)
		if ((pids[i] = wait_pid(keys[i], 0, FIND_LIMIT)) == 0)
			die("%s: no live pid after the bring-up", keys[i]);
	t1 = now_ns();
	printf("bringup_ms %.3f\n", (double)(t1 - t0) / 1e6);
	for (i = 0; i < nkeys; i++)
		printf("pid %s %d\n", keys[i], (int)pids[i]);
	free(pids);
	return 0;
}

/* add: the same for one key. */
static int
cmd_add(const char *key, char **argv)
{
	uint64_t t0, t1;
	pid_t    pid;

	t0 = now_ns();
	wait_ok(spawn(argv, "/dev/null", "/dev/null"), argv[0]);
	if ((pid = wait_pid(key, 0, FIND_LIMIT)) == 0)
		die("%s: no live pid after the start", key);
	t1 = now_ns();
	printf("add_ms %.3f %d\n", (double)(t1 - t0) / 1e6, (int)pid);
	return 0;
}

/* restart: CRASHES kills, round-robin over the shuffled keys. */
static int
cmd_restart(unsigned long crashes, uint64_t gap)
{
	size_t  *order = calloc(nkeys, sizeof(*order));
	uint64_t due = 0, t0;
	unsigned long i, lost = 0;
	size_t        j, k, t;

	if (order == NULL)
		die("%s", "out of memory");
	for (j = 0; j < nkeys; j++)
		order[j] = j;
	for (j = nkeys - 1; j > 0; j--) { /* Fisher-Yates */
		k = (size_t)(rnd() % (j + 1));
		t = order[j];
		order[j] = order[k];
		order[k] = t;
	}
	for (i = 0; i < crashes; i++) {
		const char *key = keys[order[i % nkeys]];
		pid_t       old, new;

		sleep_until(due);
		/* The previous restart of this key (if any) is long done. */
		if ((old = wait_pid(key, 0, WAIT_LIMIT)) == 0) {
			lost++;
			continue;
		}
		t0 = now_ns();
		due = t0 + gap;
		if (kill(old, SIGKILL) == -1)
			die("kill: %s", strerror(errno));
		if ((new = wait_pid(key, old, WAIT_LIMIT)) == 0) {
			lost++;
			continue;
		}
		printf("lat %.3f %d %d\n", (double)(now_ns() - t0) / 1e3,
		    (int)old, (int)new);
	}
	printf("lost %lu\n", lost);
	free(order);
	return 0;
}

/* lookup: L checked lookups of random keys, mean ns each. */
static int
cmd_lookup(unsigned long n)
{
	pid_t          *want = calloc(nkeys, sizeof(*want));
	uint32_t       *pick = calloc(n ? n : 1, sizeof(*pick));
	struct kv_entry e;
	uint64_t        t0, t1;
	unsigned long   i, bad = 0;

	if (want == NULL || pick == NULL)
		die("%s", "out of memory");
	for (i = 0; i < nkeys; i++)
		if ((want[i] = live_pid(keys[i])) == 0)
			die("%s: no live pid before the lookups", keys[i]);
	/* The random keys are drawn before the clock starts. */
	for (i = 0; i < n; i++)
		pick[i] = (uint32_t)(rnd() % nkeys);
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		const char *key = keys[pick[i]];

		if (kv_reg_lookup(reg, key, strlen(key), &e) != 0 ||
		    e.pid != want[pick[i]] || e.owner != owner)
			bad++;
	}
	t1 = now_ns();
	if (bad != 0) {
		fprintf(stderr, "probe_kv: %lu of %lu lookups wrong\n", bad, n);
		return 1;
	}
	printf("lookup_ns %.3f\n", n ? (double)(t1 - t0) / (double)n : 0.0);
	printf("checked %lu\n", n);
	free(want);
	free(pick);
	return 0;
}

static int
cmd_dump(void)
{
	size_t i;

	for (i = 0; i < nkeys; i++)
		printf("pid %s %d\n", keys[i], (int)live_pid(keys[i]));
	return 0;
}

/* The command after "--" in ARGV[FROM..], or die. */
static char **
after_dashes(int argc, char **argv, int from)
{
	if (from >= argc - 1 || strcmp(argv[from], "--") != 0)
		die("%s", "expected -- CMD [ARG ...]");
	return argv + from + 1;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: probe_kv bringup SEGMENT OWNER KEYS OUT -- CMD ...\n"
	    "       probe_kv add SEGMENT OWNER KEY -- CMD ...\n"
	    "       probe_kv restart SEGMENT OWNER KEYS CRASHES GAP_US SEED\n"
	    "       probe_kv lookup SEGMENT OWNER KEYS L SEED\n"
	    "       probe_kv dump SEGMENT OWNER KEYS\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *cmd;
	int         rc;

	if (argc < 5)
		usage();
	cmd = argv[1];
	if ((rc = kv_reg_open(argv[2], KV_REG_RDONLY, &reg)) < 0) {
		fprintf(stderr, "probe_kv: unable to map /%s: %s\n", argv[2],
		    kv_reg_strerror(rc));
		return 1;
	}
	owner = (pid_t)number(argv[3]);
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	if (strcmp(cmd, "bringup") == 0 && argc >= 8) {
		read_keys(argv[4]);
		rc = cmd_bringup(argv[4], argv[5], after_dashes(argc, argv, 6));
	} else if (strcmp(cmd, "add") == 0 && argc >= 7) {
		rc = cmd_add(argv[4], after_dashes(argc, argv, 5));
	} else if (strcmp(cmd, "restart") == 0 && argc == 8) {
		read_keys(argv[4]);
		seed(number(argv[7]));
		rc = cmd_restart(number(argv[5]), number(argv[6]) * 1000);
	} else if (strcmp(cmd, "lookup") == 0 && argc == 7) {
		read_keys(argv[4]);
		seed(number(argv[6]));
		rc = cmd_lookup(number(argv[5]));
	} else if (strcmp(cmd, "dump") == 0 && argc == 5) {
		read_keys(argv[4]);
		rc = cmd_dump();
	} else {
		usage();
	}
	kv_reg_close(reg);
	fflush(stdout);
	return rc;
}
