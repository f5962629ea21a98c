/*
 * kv-soak: an hour (by default) of churn against one keyvisord, checked
 * from outside (issue #6).
 *
 *   kv-soak [-d DURATION] [-n WORKERS] [-i SECONDS] [-s SEED]
 *       [-K MIN,MAX] [-S MIN,MAX] [-k] [--rss-tolerance KIB]
 *       [--fd-tolerance N] [--keyvisord PATH] [--worker PATH]
 *
 * It starts a private keyvisord (instance "soak-PID", its socket in a
 * temporary directory, so its own registry segment), starts WORKERS
 * workers (default 1,000) under the keys "soak:1" .. "soak:N", and then,
 * for DURATION, at the same time:
 *
 *  - SIGKILLs random workers, at a rate drawn anew every RATE_PERIOD
 *    between the two rates of -K (default 2 to 40 a second), and watches
 *    each killed key in the registry until another pid shows up: a restart
 *    handled, or one lost after LOST_LIMIT;
 *  - stops random keys (running or being restarted) at a rate drawn the
 *    same way from -S (default 0.5 to 5 a second), and starts each again
 *    0 to RESTART_AFTER_MAX later, speaking the JSON protocol of
 *    keyvisor-protocol(7) on the control socket;
 *  - looks every key up without pause in a checker thread, and checks each
 *    answer against /proc (see THE CHECKER);
 *  - scans /proc every ZOMBIE_EVERY for zombies whose parent is the daemon.
 *
 * Every interval (-i, default 60 s) and at the end the churn pauses until
 * every key runs again (QUIESCE), and one line gives the totals so far,
 * the daemon's VmRSS and open fds, in that steady state: so the figures of
 * two lines are comparable.  The first line is the warm-up baseline.
 *
 * DURATION is a number with an optional unit, s, m or h; without one it is
 * minutes.  Without -d, $KV_SOAK_DURATION, else 60m.  The programs are
 * found from the options, then $KV_KEYVISORD and $KV_SOAK_WORKER (meson's
 * test() sets them), then $KV_BUILD (a build root), then next to this
 * executable in a build tree.  The worker is started as "WORKER KEY": it
 * must take one argument, exit on SIGTERM and otherwise wait; tests/bench's
 * bench-worker does.  The key in its command line is how the checker tells
 * one worker from another.
 *
 * Exit status: 0 when the soak passed; 1 when a wrong answer was seen, a
 * zombie lasted, a restart was lost, a request failed, the daemon's
 * private RSS or fd count grew beyond the tolerance after the warm-up, or
 * the shutdown left something behind; 2 for a usage or set-up error; 77
 * (meson's "skipped") when the machine cannot hold WORKERS more processes.
 *
 * Nothing outlives the soak.  keyvisord runs in a process group of its own
 * (so a ^C reaches only this program, which then finishes cleanly) with
 * PR_SET_PDEATHSIG(SIGTERM), so it shuts down, stopping its workers, if
 * this program dies; its workers get SIGKILL when it dies.  The only
 * processes signalled are the daemon and the workers it registered, the
 * latter through a pidfd checked against the registry's start time.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <dirent.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "keyvisor/registry.h"
#include "testutil.h"

#define MS (UINT64_C(1000000)) /* nanoseconds */
#define S  (UINT64_C(1000000000))

/*
 * PACING.  keyvisord fails a key that restarts more than 3 times in 5 s
 * (the default intensity, which the soak keeps), so a key is killed again
 * only KILL_GAP after its last kill: kills at 0, 2.5 and 5 s make at most
 * 3 restarts in any 5 s.  The daemon-wide restart bucket (1,000 a second,
 * a burst of 100) is far above the highest default kill rate.
 */
#define KILL_GAP          (2500 * MS)
#define RATE_PERIOD       (10 * S)   /* how long one drawn rate lasts */
#define RESTART_AFTER_MAX (2 * S)    /* a stopped key stays stopped */
#define LOST_LIMIT        (10 * S)   /* for a restart to show */
#define ZOMBIE_EVERY      (5 * S)    /* a zombie in two scans is a leak */
#define QUIESCE_LIMIT     (60 * S)   /* for every key to run again */
#define READY_LIMIT       (10 * S)   /* for the daemon to listen */
#define INFO_LIMIT        (30 * S)   /* for the info reply */
#define STOP_LIMIT        (60 * S)   /* for the daemon to shut down */
#define FOLLOW_NS         (100 * MS) /* follow a zombie's key at most */

#define STOP_CONNS   4     /* stops in flight: a stop holds its connection */
#define START_WINDOW 128   /* starts in flight on the start connection */
#define IN_MAX       65536 /* a reply line's bound, as a request's */
#define SPARE_PIDS   256   /* beside the workers: the daemon, the rest */
#define REPORT_MAX   10    /* problems of each sort told on stderr */
#define LAT_STEP_US  100   /* restart latency histogram: 0.1 ms buckets */
#define LAT_BUCKETS  10000 /* up to 1 s, then one overflow bucket */
#define NAME_MAX_    24    /* "soak:1000000" and a NUL fit */

#define INC(x)    atomic_fetch_add_explicit(&(x), 1, memory_order_relaxed)
#define LOAD(x)   atomic_load_explicit(&(x), memory_order_relaxed)
#define COUNT_MAX 100000 /* -n: a typo beyond this */

struct cfg {
	const char *keyvisord, *worker;
	uint64_t    duration, interval; /* ns */
	unsigned    n;
	double      kill_min, kill_max, stop_min, stop_max; /* a second */
	long        rss_tol_kib, fd_tol;
	uint64_t    seed;
	bool        keep;
};

static struct cfg cfg = {.n = 1000,
    .interval = 60 * S,
    .kill_min = 2,
    .kill_max = 40,
    .stop_min = 0.5,
    .stop_max = 5,
    .rss_tol_kib = 1024,
    .fd_tol = 2};

/* The driver's view of a key.  Only the main thread touches it. */
enum kstate { K_STARTING, K_RUNNING, K_KILLED, K_STOPPING, K_STOPPED };

struct key {
	enum kstate state;
	pid_t       pid;       /* K_KILLED: the pid killed */
	uint64_t    at;        /* K_KILLED: when; K_STOPPED: start due */
	uint64_t    last_kill; /* 0: never */
	bool        lost;      /* K_KILLED: counted lost, stop pending */
};

/* The key names: immutable once made, shared with the checker. */
struct names {
	char (*v)[NAME_MAX_];
	size_t  *len;
	unsigned n;
};

enum op { OP_START, OP_STOP, OP_INFO };

struct req {
	uint32_t key;
	enum op  op;
};

/* A control connection; its requests are answered in order (FIFO). */
struct conn {
	int         fd;
	char       *in;
	size_t      inlen;
	struct req *q;
	unsigned    qcap, qhead, qlen;
};

/*
 * What the checker counts: written by the checker (and wrong answers by
 * the main thread too), read by the main thread.  Wrong answers by kind:
 * dead (a pid gone from /proc still registered after a re-check), reused
 * (the same with another start time), torn (the entry of another key),
 * owner (not registered by the daemon), parent (a live process with the
 * registered start time whose parent is not the daemon), identity (one
 * whose command line names another key), start_ack and stop_ack (the
 * registry disagreeing with a start or stop reply just received).
 */
struct tally {
	_Atomic uint64_t lookups, hits, misses, busy, races, zombies, errors;
	_Atomic uint64_t dead, reused, torn, owner, parent, identity;
	_Atomic uint64_t start_ack, stop_ack;
	_Atomic uint64_t reported;
};

struct checker {
	const struct kv_reg *reg;
	const struct names  *names;
	pid_t                daemon;
	struct tally         t;
	atomic_bool          stop;
	pthread_t            thread;
};

/* The driver's own counts. */
struct stats {
	uint64_t kills, restarts, lost, vanished, skipped, preempted;
	uint64_t stops, starts, req_errors;
	uint64_t zombies_seen, zombies_lasting;
	uint64_t lat[LAT_BUCKETS + 1], lat_max_us, ival_lat_max_us;
};

/* The daemon's info reply. */
struct info {
	long workers, running, restarts, registry_count;
	bool got;
};

/* One steady-state sample. */
struct sample {
	double      min;
	long        rss, anon, shmem, fds; /* KiB, count */
	struct info info;
};

struct zombie {
	pid_t    pid;
	uint64_t start;
	bool     lasting; /* already counted */
};

struct soak {
	pid_t            dpid; /* 0: not running */
	int              dstatus;
	char             tmpdir[64], name[64], sock[108], log[128];
	struct kv_reg   *reg;
	struct names     names;
	struct key      *keys;
	struct conn      start, stop[STOP_CONNS];
	int              sigfd;
	bool             chaos, interrupted, failed_io, stalled, inconsistent;
	bool             shutdown_ok;
	double           startup_s, shutdown_s;
	unsigned         survivors;
	double           kill_rate, stop_rate;
	uint64_t         t0, next_kill, next_stop, rate_until, next_zscan;
	unsigned         nkilled, nstopped, nbusy; /* keys in those states */
	struct zombie   *zprev;
	size_t           nzprev;
	struct stats     st;
	struct info      info;
	struct checker   ck;
	struct sample    base, last;
	bool             have_base;
	uint64_t         reported; /* the driver's own problems told */
	uint64_t         lookups_before_stop;
	struct kv_entry *final; /* the workers at the end, for survivors */
};

static uint64_t rng;

/* Utilities. */

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = {
	    .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* xorshift64*: the run is repeatable from its seed (-s). */
static uint64_t
rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * UINT64_C(0x2545f4914f6cdd1d);
}

/* Uniform in [0, 1). */
static double
rnd01(void)
{
	return (double)(rnd() >> 11) / 9007199254740992.0; /* 2^53 */
}

/* The gap to the next event of a Poisson process of RATE a second. */
static uint64_t
exp_gap(double rate)
{
	return (uint64_t)(-log(1.0 - rnd01()) / rate * 1e9);
}

/* /proc. */

struct pstat {
	char     state;
	pid_t    ppid;
	uint64_t start; /* field 22, clock ticks since boot */
};

/*
 * State, parent and start time of PID.  Returns 0, -ESRCH when it is
 * gone, or another -errno.
 */
static int
pstat_read(pid_t pid, struct pstat *ps)
{
	char               path[32], buf[1024], *p;
	unsigned long long start;
	ssize_t            n;
	int                fd, ppid;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return errno == ENOENT ? -ESRCH : -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0) /* reaped between the open and the read */
		return -ESRCH;
	buf[n] = '\0';
	/* Field 3 onwards, after the ")" that ends the command name. */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1,
	        " %c %d %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s "
	        "%*s %*s %*s %*s %llu",
	        &ps->state, &ppid, &start) != 3)
		return -EIO;
	ps->ppid = ppid;
	ps->start = start;
	return 0;
}

/*
 * The process of E: 0 and its stat in *PS while it exists (alive or a
 * zombie); -ESRCH when it is gone, -ESTALE when its pid was reused.
 *
 * BEING REAPED.  A read of /proc/PID/stat that overlaps the reap still
 * succeeds, with the state X (dead) and a parent of 0, which the kernel
 * gives once the pid is detached: that process is gone as well.
 */
static int
pstat_of(const struct kv_entry *e, struct pstat *ps)
{
	int r = pstat_read(e->pid, ps);

	if (r == 0 && ps->start != e->start_time)
		r = -ESTALE;
	else if (r == 0 && (ps->state == 'X' || ps->ppid == 0))
		r = -ESRCH;
	return r;
}

/*
 * Is KEY (LEN bytes) the first argument of PID?  1 yes, 0 no, -ESRCH when
 * there is no command line to read (gone, or a zombie).
 */
static int
cmdline_is(pid_t pid, const char *key, size_t len)
{
	char    path[40], buf[PATH_MAX + NAME_MAX_ + 8], *arg;
	ssize_t n;
	int     fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -ESRCH;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n <= 0)
		return -ESRCH;
	if ((arg = memchr(buf, '\0', (size_t)n)) == NULL)
		return 0;
	arg++;
	return (size_t)(buf + n - arg) >= len + 1 &&
	       memcmp(arg, key, len) == 0 && arg[len] == '\0';
}

/* VmRSS, RssAnon and RssShmem of PID in KiB; -1 each if unreadable. */
static void
rss_read(pid_t pid, struct sample *sm)
{
	char  path[40], line[256];
	FILE *f;

	sm->rss = sm->anon = sm->shmem = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL)
		(void)(sscanf(line, "VmRSS: %ld", &sm->rss) == 1 ||
		       sscanf(line, "RssAnon: %ld", &sm->anon) == 1 ||
		       sscanf(line, "RssShmem: %ld", &sm->shmem) == 1);
	fclose(f);
}

/* The open fds of PID, or -1. */
static long
fd_count(pid_t pid)
{
	char           path[40];
	DIR           *dir;
	struct dirent *de;
	long           n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if ((dir = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(dir)) != NULL)
		n += de->d_name[0] != '.';
	closedir(dir);
	return n;
}

/*
 * THE CHECKER.  A thread looks the keys up in turn, without pause, with
 * kv_reg_lookup() on the segment mapped read-only, and checks every hit:
 *
 *  - the entry is the key's and was registered by the daemon;
 *  - its pid exists in /proc with the start time the entry records.  If
 *    not, the key is looked up once more (REAPED OR RACED, as in
 *    tests/integration/kv-lookup-checker.c): the daemon releases a name
 *    before it reaps the worker, so if the entry still names that process
 *    now that /proc says it is gone, a lookup made after the reap returned
 *    a reaped pid: a wrong answer.  If the entry changed, the checker
 *    merely raced the release;
 *  - the process is the daemon's child and runs the key's own worker (its
 *    command line is "WORKER KEY").  The command line is read between two
 *    reads of the start time, so a pid reused in between is not taken for
 *    a wrong worker;
 *  - a zombie is fine (killed, not yet reaped, so still rightly named),
 *    and so is a process on its way to become one; its key is followed
 *    closely until the name is released, since that is the moment a dead
 *    answer could slip through.
 */

static void
wrong(struct tally *t, _Atomic uint64_t *kind, const char *key, pid_t pid,
    const char *what)
{
	INC(*kind);
	if (INC(t->reported) < REPORT_MAX)
		fprintf(stderr, "kv-soak: WRONG ANSWER: %s: pid %d: %s\n", key,
		    (int)pid, what);
}

static bool
same_process(const struct kv_entry *a, const struct kv_entry *b)
{
	return a->pid == b->pid && a->start_time == b->start_time;
}

/* /proc said the process of E is gone (R): does the key still name it? */
static void
reaped(struct checker *c, const struct kv_entry *e, int r)
{
	struct kv_entry again;

	if (r != -ESRCH && r != -ESTALE) {
		INC(c->t.errors);
		return;
	}
	INC(c->t.lookups);
	if (kv_reg_lookup(c->reg, e->key, e->keylen, &again) == 0 &&
	    same_process(&again, e))
		wrong(&c->t, r == -ESRCH ? &c->t.dead : &c->t.reused, e->key,
		    e->pid,
		    r == -ESRCH ? "gone from /proc, still registered"
		                : "pid reused, still registered");
	else
		INC(c->t.races);
}

/* E names a zombie: look its key up until the name moves on. */
static void
follow(struct checker *c, const struct kv_entry *e)
{
	struct kv_entry cur;
	struct pstat    ps;
	uint64_t        end = tu_now_ns() + FOLLOW_NS;
	int             r;

	INC(c->t.zombies);
	while (tu_now_ns() < end) {
		INC(c->t.lookups);
		r = kv_reg_lookup(c->reg, e->key, e->keylen, &cur);
		if (r == 0)
			INC(c->t.hits);
		else
			INC(c->t.misses);
		if (r != 0 || !same_process(&cur, e))
			return; /* released (and perhaps restarted): fine */
		if ((r = pstat_of(e, &ps)) != 0) {
			reaped(c, e, r);
			return;
		}
	}
}

/* The process of the hit E, alive by /proc: is it the key's worker? */
static void
check_identity(struct checker *c, const struct kv_entry *e)
{
	struct pstat ps;
	int          r, again;

	r = cmdline_is(e->pid, e->key, e->keylen);
	if (r == 1)
		return;
	/*
	 * Gone meanwhile, or not the key's: look again.  A process still
	 * there without a command line is exiting (its memory is released
	 * before it turns zombie): follow it as a zombie.
	 */
	if ((again = pstat_of(e, &ps)) != 0)
		reaped(c, e, again);
	else if (ps.state == 'Z' || r < 0)
		follow(c, e);
	else
		wrong(&c->t, &c->t.identity, e->key, e->pid,
		    "the process runs another key's worker");
}

static void
check_hit(struct checker *c, const struct kv_entry *e)
{
	struct pstat ps;
	int          r;

	if (e->owner != c->daemon) {
		wrong(&c->t, &c->t.owner, e->key, e->pid,
		    "registered by another process");
		return;
	}
	if ((r = pstat_of(e, &ps)) != 0) {
		reaped(c, e, r);
		return;
	}
	if (ps.ppid != c->daemon) {
		wrong(&c->t, &c->t.parent, e->key, e->pid,
		    "the process is not the daemon's child");
		return;
	}
	if (ps.state == 'Z')
		follow(c, e);
	else
		check_identity(c, e);
}

static void
look(struct checker *c, unsigned i)
{
	const char     *key = c->names->v[i];
	size_t          len = c->names->len[i];
	struct kv_entry e;
	int             r;

	INC(c->t.lookups);
	r = kv_reg_lookup(c->reg, key, len, &e);
	if (r == -ENOENT) {
		INC(c->t.misses);
		return;
	}
	if (r == -EBUSY) {
		INC(c->t.busy);
		return;
	}
	if (r < 0) {
		INC(c->t.errors);
		return;
	}
	INC(c->t.hits);
	if (e.keylen != len || memcmp(e.key, key, len) != 0)
		wrong(
		    &c->t, &c->t.torn, key, e.pid, "the entry of another key");
	else
		check_hit(c, &e);
}

static void *
checker_main(void *arg)
{
	struct checker *c = arg;
	unsigned        i;

	while (!atomic_load(&c->stop))
		for (i = 0; i < c->names->n; i++)
			look(c, i);
	return NULL;
}

/* The daemon. */

/* Wait up to LIMIT ns for PID to exit.  Returns true once reaped. */
static bool
reap_within(pid_t pid, uint64_t limit, int *status)
{
	uint64_t end = tu_now_ns() + limit;
	pid_t    r;

	do {
		r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return true;
		if (r == -1 && errno != EINTR)
			return true;
		sleep_ms(5);
	} while (tu_now_ns() < end);
	return false;
}

/*
 * The daemon's child, until execve: a process group of its own, the
 * signal mask we had before blocking the ones we read, and SIGTERM if we
 * die (re-checked: we may have died before the prctl).
 */
static _Noreturn void
daemon_exec(char *const *argv, const sigset_t *mask, int logfd)
{
	int devnull = open("/dev/null", O_RDONLY);

	(void)setpgid(0, 0);
	(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		_exit(125);
	if (devnull == -1 || dup2(devnull, 0) == -1 || dup2(logfd, 1) == -1 ||
	    dup2(logfd, 2) == -1)
		_exit(126);
	(void)sigprocmask(SIG_SETMASK, mask, NULL);
	execv(argv[0], argv);
	_exit(127);
}

/*
 * Start keyvisord as instance "soak-PID" with its socket in the temporary
 * directory and its output in a log there.  Returns once it accepts
 * connections, with its registry mapped read-only.
 */
static void
daemon_start(struct soak *s, const sigset_t *mask)
{
	char  cap[16], seg[96];
	char *argv[] = {
	    (char *)cfg.keyvisord, "-n", s->name, "--capacity", cap, NULL};
	uint64_t end;
	int      logfd, st, rc;

	snprintf(s->name, sizeof(s->name), "soak-%d", (int)getpid());
	snprintf(s->sock, sizeof(s->sock), "%s/kv.sock", s->tmpdir);
	snprintf(s->log, sizeof(s->log), "%s/keyvisord.log", s->tmpdir);
	/* Twice the keys: a stopped key's name is free while it waits. */
	snprintf(cap, sizeof(cap), "%u", 2 * cfg.n);
	if (setenv("KEYVISOR_SOCKET", s->sock, 1) == -1 ||
	    unsetenv("KEYVISOR_INSTANCE") == -1 ||
	    unsetenv("KEYVISOR_REGISTRY") == -1)
		err(2, "setenv");
	logfd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (logfd == -1)
		err(2, "unable to create %s", s->log);
	if ((s->dpid = fork()) == -1)
		err(2, "fork");
	if (s->dpid == 0)
		daemon_exec(argv, mask, logfd);
	close(logfd);
	for (end = tu_now_ns() + READY_LIMIT; !tu_can_connect(s->sock);) {
		if (waitpid(s->dpid, &st, WNOHANG) == s->dpid) {
			s->dpid = 0;
			cfg.keep = true;
			errx(2, "keyvisord exited (status %#x); see %s", st,
			    s->log);
		}
		if (tu_now_ns() > end)
			errx(2, "keyvisord is not listening on %s", s->sock);
		sleep_ms(2);
	}
	snprintf(seg, sizeof(seg), "keyvisor.%s", s->name);
	if ((rc = kv_reg_open(seg, KV_REG_RDONLY, &s->reg)) < 0)
		errx(2, "unable to map /%s: %s", seg, kv_reg_strerror(rc));
}

/*
 * SIGTERM: the daemon stops every worker and exits.  SIGKILL after
 * STOP_LIMIT (its workers then die of their PR_SET_PDEATHSIG).  Returns
 * whether it exited 0 of its own accord.  The registry stays mapped: the
 * checker may still be reading it.
 */
static bool
daemon_stop(struct soak *s)
{
	bool clean = false;

	if (s->dpid <= 0)
		return false;
	(void)kill(s->dpid, SIGTERM);
	if (reap_within(s->dpid, STOP_LIMIT, &s->dstatus)) {
		clean = WIFEXITED(s->dstatus) && WEXITSTATUS(s->dstatus) == 0;
	} else {
		warnx("keyvisord %d did not stop; killing it", (int)s->dpid);
		(void)kill(s->dpid, SIGKILL);
		(void)waitpid(s->dpid, &s->dstatus, 0);
	}
	s->dpid = 0;
	return clean;
}

/* Remove the registry segment if the daemon left it.  True if it did. */
static bool
segment_left(const struct soak *s)
{
	char seg[96];

	snprintf(seg, sizeof(seg), "keyvisor.%s", s->name);
	return s->name[0] != '\0' && kv_reg_unlink(seg) == 0;
}

/* Control connections. */

static void
conn_open(struct soak *s, struct conn *c, unsigned qcap)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", s->sock);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd == -1 ||
	    connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    fcntl(c->fd, F_SETFL, O_NONBLOCK) == -1)
		err(2, "unable to connect to %s", s->sock);
	c->in = malloc(IN_MAX);
	c->q = calloc(qcap, sizeof(*c->q));
	if (c->in == NULL || c->q == NULL)
		err(2, "malloc");
	c->qcap = qcap;
	c->inlen = c->qhead = c->qlen = 0;
}

static void
conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->in);
	free(c->q);
	c->in = NULL;
	c->q = NULL;
}

/* Write all of BUF, waiting for room if the daemon is slow to read. */
static int
send_all(int fd, const char *buf, size_t len)
{
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	ssize_t       n;

	while (len > 0) {
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		} else if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			(void)poll(&pfd, 1, 1000);
		} else {
			return -errno;
		}
	}
	return 0;
}

/* Send REQ (stolen) for key K on C.  Returns 0 or -errno. */
static int
conn_send(struct soak *s, struct conn *c, json_t *req, enum op op, uint32_t k)
{
	char *line = json_dumps(req, JSON_COMPACT);
	char *nl;
	int   r;

	json_decref(req);
	if (line == NULL || c->qlen == c->qcap)
		errx(2, "unable to send a request");
	if ((nl = realloc(line, strlen(line) + 2)) == NULL)
		err(2, "realloc");
	strcat(nl, "\n");
	r = send_all(c->fd, nl, strlen(nl));
	free(nl);
	if (r < 0) {
		warnx("unable to send to keyvisord: %s", strerror(-r));
		s->failed_io = true;
		return r;
	}
	c->q[(c->qhead + c->qlen++) % c->qcap] = (struct req){k, op};
	return 0;
}

/* Problems of the driver's own, told on stderr up to REPORT_MAX. */
static void problem(struct soak *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
problem(struct soak *s, const char *fmt, ...)
{
	va_list ap;

	if (s->reported++ >= REPORT_MAX)
		return;
	va_start(ap, fmt);
	fputs("kv-soak: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static const char *
name_of(const struct soak *s, uint32_t k)
{
	return s->names.v[k];
}

static void
set_state(struct soak *s, uint32_t k, enum kstate to)
{
	struct key *key = &s->keys[k];

	s->nkilled -= key->state == K_KILLED;
	s->nstopped -= key->state == K_STOPPED;
	s->nbusy -= key->state == K_STARTING || key->state == K_STOPPING;
	key->state = to;
	s->nkilled += to == K_KILLED;
	s->nstopped += to == K_STOPPED;
	s->nbusy += to == K_STARTING || to == K_STOPPING;
}

static void
send_start(struct soak *s, uint32_t k)
{
	json_t *req = json_pack("{s:s, s:s, s:[s, s], s:s}", "op", "start",
	    "key", name_of(s, k), "argv", cfg.worker, name_of(s, k), "restart",
	    "permanent");

	if (req == NULL)
		errx(2, "json_pack");
	if (conn_send(s, &s->start, req, OP_START, k) == 0)
		set_state(s, k, K_STARTING);
}

static void
send_stop(struct soak *s, struct conn *c, uint32_t k)
{
	json_t *req =
	    json_pack("{s:s, s:s}", "op", "stop", "key", name_of(s, k));

	if (req == NULL)
		errx(2, "json_pack");
	if (conn_send(s, c, req, OP_STOP, k) == 0)
		set_state(s, k, K_STOPPING);
}

/* Replies. */

static const char *
reply_error(json_t *rep)
{
	const char *code = json_string_value(json_object_get(rep, "code"));
	const char *why = json_string_value(json_object_get(rep, "error"));

	return why != NULL ? why : code != NULL ? code : "no error given";
}

/*
 * A start reply: the registry must name the pid the reply gives, since
 * nothing can have killed that worker yet.
 */
static void
on_start(struct soak *s, uint32_t k, json_t *rep)
{
	json_t *ok = json_object_get(rep, "ok");
	pid_t   pid = (pid_t)json_integer_value(json_object_get(rep, "pid"));
	struct kv_entry e;
	int             r;

	if (!json_is_true(ok) || pid <= 0) {
		const char *code =
		    json_string_value(json_object_get(rep, "code"));

		s->st.req_errors++;
		problem(s, "start %s: %s", name_of(s, k), reply_error(rep));
		if (code != NULL && strcmp(code, "already_started") == 0) {
			set_state(s, k, K_RUNNING);
		} else {
			set_state(s, k, K_STOPPED);
			s->keys[k].at = tu_now_ns() + S;
		}
		return;
	}
	s->st.starts++;
	set_state(s, k, K_RUNNING);
	INC(s->ck.t.lookups);
	r = kv_reg_lookup(s->reg, name_of(s, k), s->names.len[k], &e);
	if (r == -EBUSY)
		return;
	if (r != 0 || e.pid != pid) {
		char why[96];

		snprintf(why, sizeof(why), "started, but the registry %s",
		    r == 0 ? "names another pid" : "has no entry");
		wrong(&s->ck.t, &s->ck.t.start_ack, name_of(s, k), pid, why);
	}
}

/* A stop reply: the name must be gone once the reply has come. */
static void
on_stop(struct soak *s, uint32_t k, json_t *rep)
{
	struct kv_entry e;
	int             r;

	set_state(s, k, K_STOPPED);
	s->keys[k].at = tu_now_ns() + (uint64_t)(rnd01() * RESTART_AFTER_MAX);
	if (!json_is_true(json_object_get(rep, "ok"))) {
		s->st.req_errors++;
		problem(s, "stop %s: %s", name_of(s, k), reply_error(rep));
		return;
	}
	s->st.stops++;
	INC(s->ck.t.lookups);
	r = kv_reg_lookup(s->reg, name_of(s, k), s->names.len[k], &e);
	if (r == 0)
		wrong(&s->ck.t, &s->ck.t.stop_ack, name_of(s, k), e.pid,
		    "still registered after its stop was answered");
}

static void
on_info(struct soak *s, json_t *rep)
{
	s->info.workers =
	    (long)json_integer_value(json_object_get(rep, "workers"));
	s->info.running =
	    (long)json_integer_value(json_object_get(rep, "running"));
	s->info.restarts =
	    (long)json_integer_value(json_object_get(rep, "restarts"));
	s->info.registry_count =
	    (long)json_integer_value(json_object_get(rep, "registry_count"));
	s->info.got = json_is_true(json_object_get(rep, "ok"));
}

static void
on_line(struct soak *s, struct conn *c, char *line)
{
	json_error_t jerr;
	json_t      *rep = json_loads(line, 0, &jerr);
	struct req   q;

	if (c->qlen == 0 || rep == NULL || !json_is_object(rep)) {
		warnx("unexpected line from keyvisord: %.200s", line);
		s->failed_io = true;
		json_decref(rep);
		return;
	}
	q = c->q[c->qhead];
	c->qhead = (c->qhead + 1) % c->qcap;
	c->qlen--;
	switch (q.op) {
	case OP_START:
		on_start(s, q.key, rep);
		break;
	case OP_STOP:
		on_stop(s, q.key, rep);
		break;
	case OP_INFO:
		on_info(s, rep);
		break;
	}
	json_decref(rep);
}

/* Read what C has for us and handle each complete line. */
static void
conn_read(struct soak *s, struct conn *c)
{
	ssize_t n;
	char   *start, *nl;

	for (;;) {
		n = read(c->fd, c->in + c->inlen, IN_MAX - c->inlen);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		if (n <= 0) {
			warnx("keyvisord closed a control connection%s",
			    n == 0 ? "" : " with an error");
			s->failed_io = true;
			return;
		}
		c->inlen += (size_t)n;
		start = c->in;
		while ((nl = memchr(
		            start, '\n', c->inlen - (size_t)(start - c->in)))) {
			*nl = '\0';
			on_line(s, c, start);
			start = nl + 1;
		}
		c->inlen -= (size_t)(start - c->in);
		memmove(c->in, start, c->inlen);
		if (c->inlen == IN_MAX)
			errx(2, "a reply line longer than %d bytes", IN_MAX);
	}
}

/* The churn. */

/*
 * SIGKILL the process E names, through a pidfd checked against the start
 * time the registry gives, so that a pid reused meanwhile is never hit.
 * pidfd_open(2) and pidfd_send_signal(2) go through syscall(2), for libcs
 * without the wrappers.  Returns 0 or -errno (-ESTALE: pid reused).
 */
static int
kill_entry(const struct kv_entry *e)
{
	uint64_t st;
	int      fd, r;

	if ((fd = (int)syscall(SYS_pidfd_open, e->pid, 0)) == -1)
		return -errno;
	if ((r = kv_proc_start_time(e->pid, &st)) == 0 && st != e->start_time)
		r = -ESTALE;
	if (r == 0 &&
	    syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0) == -1)
		r = -errno;
	close(fd);
	return r;
}

/* A random key that KEEP accepts, or -1 after a few tries. */
static long
pick(const struct soak *s, bool (*keep)(const struct key *, uint64_t),
    uint64_t            now)
{
	int      tries;
	uint32_t k;

	for (tries = 0; tries < 64; tries++) {
		k = (uint32_t)(rnd() % cfg.n);
		if (keep(&s->keys[k], now))
			return k;
	}
	return -1;
}

static bool
killable(const struct key *k, uint64_t now)
{
	return k->state == K_RUNNING &&
	       (k->last_kill == 0 || now - k->last_kill >= KILL_GAP);
}

static bool
stoppable(const struct key *k, uint64_t now)
{
	(void)now;
	return k->state == K_RUNNING || (k->state == K_KILLED && !k->lost);
}

static void
kill_one(struct soak *s, uint64_t now)
{
	struct kv_entry e;
	long            k = pick(s, killable, now);
	int             r;

	if (k < 0) {
		s->st.skipped++;
		return;
	}
	INC(s->ck.t.lookups);
	r = kv_reg_lookup(s->reg, name_of(s, k), s->names.len[k], &e);
	if (r == -EBUSY) {
		s->st.skipped++;
		return;
	}
	if (r == 0 && e.owner != s->dpid)
		r = -EPERM;
	if (r < 0 || (r = kill_entry(&e)) < 0) {
		s->st.vanished++;
		problem(s, "%s: running, yet %s", name_of(s, k),
		    r == -ENOENT ? "not registered" : strerror(-r));
		return;
	}
	set_state(s, (uint32_t)k, K_KILLED);
	s->keys[k].pid = e.pid;
	s->keys[k].at = s->keys[k].last_kill = now;
	s->keys[k].lost = false;
	s->st.kills++;
}

static struct conn *
free_stop_conn(struct soak *s)
{
	unsigned i;

	for (i = 0; i < STOP_CONNS; i++)
		if (s->stop[i].qlen == 0 && s->stop[i].fd >= 0)
			return &s->stop[i];
	return NULL;
}

static void
stop_one(struct soak *s, struct conn *c, uint64_t now)
{
	long k = pick(s, stoppable, now);

	if (k < 0)
		return;
	s->st.preempted += s->keys[k].state == K_KILLED;
	send_stop(s, c, (uint32_t)k);
}

static void
restarted(struct soak *s, struct key *key, uint64_t now)
{
	uint64_t us = (now - key->at) / 1000;

	s->st.lat[us / LAT_STEP_US < LAT_BUCKETS ? us / LAT_STEP_US
	                                         : LAT_BUCKETS]++;
	if (us > s->st.lat_max_us)
		s->st.lat_max_us = us;
	if (us > s->st.ival_lat_max_us)
		s->st.ival_lat_max_us = us;
	s->st.restarts++;
}

/*
 * Each killed key: restarted once the registry names another process of
 * the daemon's; lost after LOST_LIMIT, and then stopped (and so started
 * afresh), which also gets a key the daemon has failed going again.
 */
static void
check_killed(struct soak *s, uint64_t now)
{
	struct kv_entry e;
	struct conn    *c;
	uint32_t        k;

	for (k = 0; k < cfg.n && s->nkilled > 0; k++) {
		struct key *key = &s->keys[k];

		if (key->state != K_KILLED)
			continue;
		INC(s->ck.t.lookups);
		if (kv_reg_lookup(s->reg, name_of(s, k), s->names.len[k], &e) ==
		        0 &&
		    e.pid != key->pid && e.owner == s->dpid) {
			set_state(s, k, K_RUNNING);
			if (!key->lost)
				restarted(s, key, now);
			continue;
		}
		if (!key->lost && now - key->at > LOST_LIMIT) {
			key->lost = true;
			s->st.lost++;
			problem(s,
			    "%s: pid %d killed, no restart seen in %" PRIu64
			    " s",
			    name_of(s, k), (int)key->pid, LOST_LIMIT / S);
		}
		if (key->lost && (c = free_stop_conn(s)) != NULL)
			send_stop(s, c, k);
	}
}

/* Start the stopped keys that are due; all of them while quiescing. */
static void
start_due(struct soak *s, uint64_t now)
{
	uint32_t k;

	for (k = 0; k < cfg.n && s->nstopped > 0; k++) {
		if (s->start.qlen >= START_WINDOW || s->start.fd < 0)
			return;
		if (s->keys[k].state == K_STOPPED &&
		    (!s->chaos || s->keys[k].at <= now))
			send_start(s, k);
	}
}

/* Kills and stops as the current rates say. */
static void
churn(struct soak *s, uint64_t now)
{
	struct conn *c;

	if (now >= s->rate_until) {
		s->kill_rate =
		    cfg.kill_min + rnd01() * (cfg.kill_max - cfg.kill_min);
		s->stop_rate =
		    cfg.stop_min + rnd01() * (cfg.stop_max - cfg.stop_min);
		s->rate_until = now + RATE_PERIOD;
	}
	/* After a pause (a sample, a stall), no burst to catch up. */
	if (s->next_kill + S < now)
		s->next_kill = now;
	if (s->next_stop + S < now)
		s->next_stop = now;
	while (s->next_kill <= now) {
		kill_one(s, now);
		s->next_kill += exp_gap(s->kill_rate);
	}
	while (s->next_stop <= now && (c = free_stop_conn(s)) != NULL) {
		stop_one(s, c, now);
		s->next_stop += exp_gap(s->stop_rate);
	}
}

/*
 * Zombies whose parent is the daemon, from a scan of /proc.  One seen in
 * two scans ZOMBIE_EVERY apart is a leak; the daemon reaps a worker within
 * microseconds of its death, so a scan catching one is already rare.
 */
static void
zombie_scan(struct soak *s)
{
	DIR           *dir = opendir("/proc");
	struct dirent *de;
	struct zombie *cur = NULL, *p;
	struct pstat   ps;
	size_t         n = 0, cap = 0, i, j;

	if (dir == NULL)
		err(2, "/proc");
	while ((de = readdir(dir)) != NULL) {
		pid_t pid = (pid_t)atoi(de->d_name);

		if (pid <= 0 || pstat_read(pid, &ps) != 0 || ps.state != 'Z' ||
		    ps.ppid != s->dpid)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			if ((p = realloc(cur, cap * sizeof(*cur))) == NULL)
				err(2, "realloc");
			cur = p;
		}
		cur[n++] = (struct zombie){pid, ps.start, false};
	}
	closedir(dir);
	for (i = 0; i < n; i++) {
		for (j = 0; j < s->nzprev; j++)
			if (s->zprev[j].pid == cur[i].pid &&
			    s->zprev[j].start == cur[i].start)
				break;
		if (j == s->nzprev) {
			s->st.zombies_seen++;
		} else if (!(cur[i].lasting = s->zprev[j].lasting)) {
			cur[i].lasting = true;
			s->st.zombies_lasting++;
			problem(s,
			    "pid %d: a zombie child of keyvisord in two "
			    "scans %" PRIu64 " s apart",
			    (int)cur[i].pid, ZOMBIE_EVERY / S);
		}
	}
	free(s->zprev);
	s->zprev = cur;
	s->nzprev = n;
}

/* The daemon must not exit on its own. */
static void
daemon_check(struct soak *s)
{
	int st;

	if (s->dpid > 0 && waitpid(s->dpid, &st, WNOHANG) == s->dpid) {
		warnx("keyvisord exited during the soak (status %#x); see %s",
		    st, s->log);
		s->dpid = 0;
		s->failed_io = cfg.keep = true;
	}
}

static void
on_signal(struct soak *s)
{
	struct signalfd_siginfo si;

	if (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		warnx("got signal %u: finishing", si.ssi_signo);
		s->interrupted = true;
	}
}

/*
 * One turn of the event loop: wait up to TIMEOUT_MS for replies or a
 * signal, handle them, then whatever is due.
 */
static void
step(struct soak *s, int timeout_ms)
{
	struct pollfd pfd[2 + STOP_CONNS];
	struct conn  *c[2 + STOP_CONNS];
	uint64_t      now;
	int           i, n = 0;

	pfd[n++] = (struct pollfd){.fd = s->sigfd, .events = POLLIN};
	c[n] = &s->start;
	pfd[n++] = (struct pollfd){.fd = s->start.fd, .events = POLLIN};
	for (i = 0; i < STOP_CONNS; i++) {
		c[n] = &s->stop[i];
		pfd[n++] =
		    (struct pollfd){.fd = s->stop[i].fd, .events = POLLIN};
	}
	if (poll(pfd, (nfds_t)n, timeout_ms) == -1 && errno != EINTR)
		err(2, "poll");
	if (pfd[0].revents & POLLIN)
		on_signal(s);
	for (i = 1; i < n; i++)
		if (pfd[i].revents != 0)
			conn_read(s, c[i]);
	now = tu_now_ns();
	if (s->nkilled > 0)
		check_killed(s, now);
	start_due(s, now);
	if (now >= s->next_zscan) {
		zombie_scan(s);
		daemon_check(s);
		s->next_zscan = now + ZOMBIE_EVERY;
	}
	if (s->chaos && !s->failed_io)
		churn(s, now);
}

static unsigned
in_flight(const struct soak *s)
{
	unsigned i, n = s->start.qlen;

	for (i = 0; i < STOP_CONNS; i++)
		n += s->stop[i].qlen;
	return n;
}

/*
 * QUIESCE.  Pause the churn until every key runs again (restarts seen,
 * stopped keys started) and no request is in flight, so that every sample
 * is taken with the same workers and connections.  Returns false if that
 * did not happen within QUIESCE_LIMIT.
 */
static bool
quiesce(struct soak *s)
{
	uint64_t end = tu_now_ns() + QUIESCE_LIMIT;

	s->chaos = false;
	while (s->nkilled + s->nstopped + s->nbusy > 0 || in_flight(s) > 0) {
		if (s->failed_io || tu_now_ns() > end)
			return false;
		step(s, 1);
	}
	return true;
}

/* The daemon's RSS, fds and info, once quiesced.  False on failure. */
static bool
sample(struct soak *s, struct sample *sm)
{
	uint64_t end = tu_now_ns() + INFO_LIMIT;
	json_t  *req = json_pack("{s:s}", "op", "info");

	rss_read(s->dpid, sm);
	sm->fds = fd_count(s->dpid);
	memset(&s->info, 0, sizeof(s->info));
	if (req == NULL || conn_send(s, &s->start, req, OP_INFO, 0) < 0)
		return false;
	while (s->start.qlen > 0) {
		if (s->failed_io || tu_now_ns() > end)
			return false;
		step(s, 1);
	}
	sm->info = s->info;
	sm->min = (double)(tu_now_ns() - s->t0) / 60e9;
	return s->info.got && sm->rss > 0 && sm->fds > 0;
}

/* Reports. */

static uint64_t
wrong_total(struct tally *t)
{
	return LOAD(t->dead) + LOAD(t->reused) + LOAD(t->torn) +
	       LOAD(t->owner) + LOAD(t->parent) + LOAD(t->identity) +
	       LOAD(t->start_ack) + LOAD(t->stop_ack);
}

static void
print_header(void)
{
	printf("# %6s %9s %5s %7s %7s %12s %5s %7s %7s %8s %8s %5s %7s\n",
	    "min", "restarts", "lost", "stops", "starts", "lookups", "wrong",
	    "zombies", "lasting", "rss_kib", "anon_kib", "fds", "max_ms");
	fflush(stdout);
}

/* One line of totals so far, with the interval's slowest restart. */
static void
print_line(struct soak *s, const struct sample *sm)
{
	printf("  %6.1f %9" PRIu64 " %5" PRIu64 " %7" PRIu64 " %7" PRIu64
	       " %12" PRIu64 " %5" PRIu64 " %7" PRIu64 " %7" PRIu64
	       " %8ld %8ld %5ld %7.1f\n",
	    sm->min, s->st.restarts, s->st.lost, s->st.stops, s->st.starts,
	    LOAD(s->ck.t.lookups), wrong_total(&s->ck.t), s->st.zombies_seen,
	    s->st.zombies_lasting, sm->rss, sm->anon, sm->fds,
	    (double)s->st.ival_lat_max_us / 1000);
	fflush(stdout);
	s->st.ival_lat_max_us = 0;
}

/* The Q-quantile of the restart latencies, in ms (bucket upper bounds). */
static double
lat_quantile(const struct stats *st, double q)
{
	uint64_t n = 0, seen = 0, rank;
	size_t   i;

	for (i = 0; i <= LAT_BUCKETS; i++)
		n += st->lat[i];
	if (n == 0)
		return 0;
	rank = (uint64_t)ceil(q * (double)n);
	for (i = 0; i < LAT_BUCKETS; i++)
		if ((seen += st->lat[i]) >= rank)
			return (double)((i + 1) * LAT_STEP_US) / 1000;
	return (double)st->lat_max_us / 1000;
}

/*
 * PRIVATE RSS.  The growth check is on VmRSS minus RssShmem.  The shared
 * pages are the registry segment's: a page of it enters the daemon's RSS
 * when the daemon first writes there, so a key re-registered in a slot
 * not used before can add one, up to the segment's size.  That is not a
 * leak, and counting it could hide one of that size.  VmRSS itself is
 * printed all the same.
 */
static long
private_kib(const struct sample *sm)
{
	return sm->rss - (sm->shmem > 0 ? sm->shmem : 0);
}

static void
because(char *why, size_t size, const char *what)
{
	size_t len = strlen(why);

	snprintf(why + len, size - len, "%s%s", len ? ", " : "", what);
}

static void
print_summary(struct soak *s)
{
	struct tally *t = &s->ck.t;

	printf("# summary: %.1f min, %u workers, seed %" PRIu64 "%s\n",
	    s->last.min, cfg.n, cfg.seed,
	    s->interrupted ? ", interrupted" : "");
	printf("# restarts handled %" PRIu64 " of %" PRIu64
	       " kills (lost %" PRIu64 ", stopped before their restart %" PRIu64
	       ", running keys found unregistered %" PRIu64
	       "); the daemon counted %ld\n",
	    s->st.restarts, s->st.kills, s->st.lost, s->st.preempted,
	    s->st.vanished, s->last.info.restarts);
	printf("# kill to visible in the registry: p50 %.1f ms, p99 %.1f ms, "
	       "max %.1f ms\n",
	    lat_quantile(&s->st, 0.5), lat_quantile(&s->st, 0.99),
	    (double)s->st.lat_max_us / 1000);
	printf("# stops %" PRIu64 ", starts %" PRIu64 " (after the %u initial "
	       "ones, %.2f s), failed requests %" PRIu64 "\n",
	    s->st.stops, s->st.starts, cfg.n, s->startup_s, s->st.req_errors);
	printf("# lookups %" PRIu64 " (%" PRIu64 " during the shutdown): hits "
	       "%" PRIu64 ", misses %" PRIu64 ", busy %" PRIu64
	       ", raced releases %" PRIu64 ", dying workers followed %" PRIu64
	       ", errors %" PRIu64 "\n",
	    LOAD(t->lookups), LOAD(t->lookups) - s->lookups_before_stop,
	    LOAD(t->hits), LOAD(t->misses), LOAD(t->busy), LOAD(t->races),
	    LOAD(t->zombies), LOAD(t->errors));
	printf("# wrong answers %" PRIu64 ": dead %" PRIu64 ", reused %" PRIu64
	       ", torn %" PRIu64 ", owner %" PRIu64 ", parent %" PRIu64
	       ", identity %" PRIu64 ", start_ack %" PRIu64
	       ", stop_ack %" PRIu64 "\n",
	    wrong_total(t), LOAD(t->dead), LOAD(t->reused), LOAD(t->torn),
	    LOAD(t->owner), LOAD(t->parent), LOAD(t->identity),
	    LOAD(t->start_ack), LOAD(t->stop_ack));
	printf("# zombies: %" PRIu64 " seen in scans %" PRIu64
	       " s apart, %" PRIu64 " lasting\n",
	    s->st.zombies_seen, ZOMBIE_EVERY / S, s->st.zombies_lasting);
	printf("# daemon after warm-up -> end: VmRSS %ld -> %ld KiB, private "
	       "%ld -> %ld KiB (%+ld, tolerance %ld), fds %ld -> %ld (%+ld, "
	       "tolerance %ld)\n",
	    s->base.rss, s->last.rss, private_kib(&s->base),
	    private_kib(&s->last),
	    private_kib(&s->last) - private_kib(&s->base), cfg.rss_tol_kib,
	    s->base.fds, s->last.fds, s->last.fds - s->base.fds, cfg.fd_tol);
	printf("# shutdown: keyvisord %s in %.2f s, %u of %u workers outlived "
	       "it\n",
	    s->shutdown_ok ? "exited 0" : "did NOT exit cleanly", s->shutdown_s,
	    s->survivors, cfg.n);
}

/* Prints the summary and the verdict; returns the exit status. */
static int
verdict(struct soak *s)
{
	struct tally *t = &s->ck.t;
	char          why[512] = "";

	print_summary(s);
	if (wrong_total(t) > 0)
		because(why, sizeof(why), "wrong answers");
	if (LOAD(t->errors) > 0)
		because(why, sizeof(why), "checker errors");
	if (s->st.zombies_lasting > 0)
		because(why, sizeof(why), "lasting zombies");
	if (s->st.lost > 0)
		because(why, sizeof(why), "lost restarts");
	if (s->st.req_errors > 0)
		because(why, sizeof(why), "failed requests");
	if (s->failed_io)
		because(why, sizeof(why), "the daemon's connection failed");
	if (s->stalled)
		because(why, sizeof(why), "the keys did not all run again");
	if (s->inconsistent)
		because(why, sizeof(why), "info disagreed with the keys");
	if (!s->have_base)
		because(why, sizeof(why), "no sample");
	else if (private_kib(&s->last) - private_kib(&s->base) >
	         cfg.rss_tol_kib)
		because(why, sizeof(why), "RSS grew");
	if (s->have_base && s->last.fds - s->base.fds > cfg.fd_tol)
		because(why, sizeof(why), "fds grew");
	if (!s->shutdown_ok)
		because(why, sizeof(why), "unclean shutdown");
	if (s->survivors > 0)
		because(why, sizeof(why), "workers outlived the daemon");
	if (why[0] == '\0') {
		printf("PASS\n");
		return 0;
	}
	printf("FAIL: %s\n", why);
	cfg.keep = true;
	return 1;
}

/* The run. */

/* A quiesced sample, checked and printed.  False if it failed. */
static bool
checkpoint(struct soak *s)
{
	struct sample sm;
	long          n = (long)cfg.n;

	if (!quiesce(s)) {
		warnx("the keys did not all run again within %" PRIu64 " s",
		    QUIESCE_LIMIT / S);
		s->stalled = true;
		return false;
	}
	if (!sample(s, &sm)) {
		warnx("unable to sample the daemon");
		s->failed_io = true;
		return false;
	}
	if (sm.info.workers != n || sm.info.running != n ||
	    sm.info.registry_count != n) {
		warnx("info: %ld workers, %ld running, %ld names; %ld expected",
		    sm.info.workers, sm.info.running, sm.info.registry_count,
		    n);
		s->inconsistent = true;
	}
	print_line(s, &sm);
	if (!s->have_base)
		s->base = sm;
	s->have_base = true;
	s->last = sm;
	return true;
}

static void
run(struct soak *s)
{
	uint64_t end = s->t0 + cfg.duration, next = s->t0, until;

	for (;;) {
		next += cfg.interval;
		until = next < end ? next : end;
		s->chaos = true;
		while (tu_now_ns() < until && !s->interrupted && !s->failed_io)
			step(s, 1);
		if (s->failed_io || !checkpoint(s))
			return;
		if (tu_now_ns() >= end || s->interrupted)
			return;
	}
}

/* Where every worker is, once quiesced at the end: for survivors(). */
static void
record_workers(struct soak *s)
{
	uint32_t k;

	if ((s->final = calloc(cfg.n, sizeof(*s->final))) == NULL)
		err(2, "calloc");
	for (k = 0; k < cfg.n; k++)
		(void)kv_reg_lookup(
		    s->reg, name_of(s, k), s->names.len[k], &s->final[k]);
}

/* The workers of the end that still exist: none should. */
static unsigned
survivors(const struct soak *s)
{
	unsigned n = 0;
	uint32_t k;
	uint64_t st;

	for (k = 0; s->final != NULL && k < cfg.n; k++)
		if (s->final[k].pid > 0 &&
		    kv_proc_start_time(s->final[k].pid, &st) == 0 &&
		    st == s->final[k].start_time) {
			if (n++ < REPORT_MAX)
				warnx("%s: pid %d outlived keyvisord",
				    name_of(s, k), (int)s->final[k].pid);
		}
	return n;
}

/*
 * Shut the daemon down with the checker still looking (the shutdown
 * releases every name: no lookup may return a reaped pid then either),
 * then stop the checker.
 */
static void
finish(struct soak *s)
{
	uint64_t t;

	if (s->dpid > 0 && !s->failed_io)
		record_workers(s);
	s->lookups_before_stop = LOAD(s->ck.t.lookups);
	t = tu_now_ns();
	s->shutdown_ok = daemon_stop(s);
	s->shutdown_s = (double)(tu_now_ns() - t) / 1e9;
	atomic_store(&s->ck.stop, true);
	pthread_join(s->ck.thread, NULL);
	s->reg = kv_reg_close(s->reg);
	if (segment_left(s)) {
		warnx("the registry segment /keyvisor.%s was left behind",
		    s->name);
		s->shutdown_ok = false;
	}
	s->survivors = survivors(s);
}

/* Set-up. */

static struct soak *live; /* for cleanup() */

/* At exit, on any path: the daemon stopped, the temporary dir removed. */
static void
cleanup(void)
{
	struct soak *s = live;

	if (s == NULL)
		return;
	if (s->dpid > 0)
		(void)daemon_stop(s);
	(void)segment_left(s);
	if (s->tmpdir[0] != '\0' && !cfg.keep)
		(void)nftw(s->tmpdir, tu_rm_one, 16, FTW_DEPTH | FTW_PHYS);
	else if (s->tmpdir[0] != '\0')
		fprintf(
		    stderr, "kv-soak: kept %s (the daemon's log)\n", s->tmpdir);
}

/* Room for n workers and SPARE_PIDS more, or exit 77 (skipped). */
static void
machine(void)
{
	long   now = tu_nprocs(), need = (long)cfg.n + SPARE_PIDS;
	long   pid_max = tu_read_long("/proc/sys/kernel/pid_max");
	long   threads = tu_read_long("/proc/sys/kernel/threads-max");
	rlim_t nproc = tu_raise_limit(RLIMIT_NPROC);

	(void)tu_raise_limit(RLIMIT_NOFILE);
	if ((pid_max > 0 && pid_max - now < need) ||
	    (threads > 0 && threads - now < need) ||
	    (getuid() != 0 && nproc != RLIM_INFINITY &&
	        (long)nproc < now + need)) {
		fprintf(stderr,
		    "kv-soak: no room for %ld more processes (pid_max %ld, "
		    "threads-max %ld, %ld running); skipped\n",
		    need, pid_max, threads, now);
		exit(77);
	}
}

/* The temporary directory, the key names and the keys, all stopped. */
static void
setup(struct soak *s)
{
	const char *t = getenv("TMPDIR");
	uint32_t    k;

	snprintf(s->tmpdir, sizeof(s->tmpdir), "%s/kv-soak.XXXXXX",
	    t != NULL && t[0] == '/' && strlen(t) < 40 ? t : "/tmp");
	if (mkdtemp(s->tmpdir) == NULL) {
		s->tmpdir[0] = '\0';
		err(2, "mkdtemp");
	}
	live = s;
	atexit(cleanup);
	s->names.n = cfg.n;
	s->names.v = calloc(cfg.n, sizeof(*s->names.v));
	s->names.len = calloc(cfg.n, sizeof(*s->names.len));
	s->keys = calloc(cfg.n, sizeof(*s->keys));
	if (s->names.v == NULL || s->names.len == NULL || s->keys == NULL)
		err(2, "calloc");
	for (k = 0; k < cfg.n; k++) {
		s->names.len[k] = (size_t)snprintf(
		    s->names.v[k], NAME_MAX_, "soak:%u", k + 1);
		s->keys[k].state = K_STOPPED; /* and due: quiesce starts it */
	}
	s->nstopped = cfg.n;
	s->start.fd = s->sigfd = -1;
	for (k = 0; k < STOP_CONNS; k++)
		s->stop[k].fd = -1;
}

static void
checker_start(struct soak *s)
{
	int r;

	s->ck.reg = s->reg;
	s->ck.names = &s->names;
	s->ck.daemon = s->dpid;
	atomic_init(&s->ck.stop, false);
	if ((r = pthread_create(&s->ck.thread, NULL, checker_main, &s->ck)))
		errx(2, "pthread_create: %s", strerror(r));
}

/* Options. */

static _Noreturn void
usage(void)
{
	fprintf(stderr,
	    "usage: kv-soak [-d DURATION] [-n WORKERS] [-i SECONDS] [-s SEED]\n"
	    "               [-K MIN,MAX] [-S MIN,MAX] [-k] "
	    "[--rss-tolerance KIB]\n"
	    "               [--fd-tolerance N] [--keyvisord PATH] "
	    "[--worker PATH]\n");
	exit(2);
}

/* A number with an optional unit s, m or h (default minutes), in ns. */
static uint64_t
duration_arg(const char *arg)
{
	char  *end;
	double v;

	errno = 0;
	v = strtod(arg, &end);
	if (end == arg || errno != 0 || !(v > 0))
		usage();
	if (*end == 's')
		end++;
	else if (*end == 'h')
		v *= 3600, end++;
	else
		v *= 60, end += *end == 'm';
	if (*end != '\0' || v > 1e7)
		usage();
	return (uint64_t)(v * 1e9);
}

static double
number_arg(const char *arg, double min, double max)
{
	char  *end;
	double v;

	errno = 0;
	v = strtod(arg, &end);
	if (end == arg || *end != '\0' || errno != 0 || !(v >= min) ||
	    !(v <= max))
		usage();
	return v;
}

/* "MIN,MAX" rates a second into LO and HI. */
static void
range_arg(const char *arg, double *lo, double *hi)
{
	char  *end;
	double a, b;

	errno = 0;
	a = strtod(arg, &end);
	if (end == arg || *end != ',' || errno != 0)
		usage();
	b = number_arg(end + 1, 0.01, 10000);
	if (!(a >= 0.01) || a > b)
		usage();
	*lo = a;
	*hi = b;
}

static void
options(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"keyvisord", required_argument, NULL, 'D'},
	    {"worker", required_argument, NULL, 'W'},
	    {"rss-tolerance", required_argument, NULL, 'R'},
	    {"fd-tolerance", required_argument, NULL, 'F'},
	    {NULL, 0, NULL, 0},
	};
	const char *d = getenv("KV_SOAK_DURATION");
	int         ch;

	cfg.duration =
	    d != NULL && d[0] != '\0' ? duration_arg(d) : 60 * 60 * S;
	cfg.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	while ((ch = getopt_long(
	            argc, argv, "d:n:i:s:K:S:kh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			cfg.duration = duration_arg(optarg);
			break;
		case 'n':
			cfg.n = (unsigned)number_arg(optarg, 1, COUNT_MAX);
			break;
		case 'i':
			cfg.interval =
			    (uint64_t)(number_arg(optarg, 1, 1e6) * 1e9);
			break;
		case 's':
			cfg.seed = (uint64_t)strtoull(optarg, NULL, 0);
			break;
		case 'K':
			range_arg(optarg, &cfg.kill_min, &cfg.kill_max);
			break;
		case 'S':
			range_arg(optarg, &cfg.stop_min, &cfg.stop_max);
			break;
		case 'k':
			cfg.keep = true;
			break;
		case 'R':
			cfg.rss_tol_kib = (long)number_arg(optarg, 0, 1e9);
			break;
		case 'F':
			cfg.fd_tol = (long)number_arg(optarg, 0, 1e6);
			break;
		case 'D':
			cfg.keyvisord = optarg;
			break;
		case 'W':
			cfg.worker = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	rng = cfg.seed != 0 ? cfg.seed : 1; /* xorshift's state is never 0 */
}

/*
 * OPT if set, else $ENV, else BASE/REL; made absolute when it exists
 * (malloc'ed, kept till exit).
 */
static const char *
locate(const char *opt, const char *env, const char *base, const char *rel)
{
	const char *e = getenv(env);
	char       *p, *abs;

	if (opt != NULL)
		p = strdup(opt);
	else if (e != NULL && e[0] != '\0')
		p = strdup(e);
	else if (asprintf(&p, "%s/%s", base, rel) == -1)
		p = NULL;
	if (p == NULL)
		err(2, "strdup");
	if ((abs = realpath(p, NULL)) == NULL)
		return p;
	free(p);
	return abs;
}

static void
find_programs(void)
{
	char        here[PATH_MAX];
	const char *build = getenv("KV_BUILD");
	char       *root = NULL;

	tu_self_dir(here, sizeof(here));
	if (build != NULL && build[0] != '\0')
		root = strdup(build);
	else if (asprintf(&root, "%s/../..", here) == -1)
		root = NULL;
	if (root == NULL)
		err(2, "strdup");
	cfg.keyvisord = locate(
	    cfg.keyvisord, "KV_KEYVISORD", root, "supervisord/keyvisord");
	cfg.worker = locate(
	    cfg.worker, "KV_SOAK_WORKER", root, "tests/bench/bench-worker");
	if (access(cfg.keyvisord, X_OK) || access(cfg.worker, X_OK))
		errx(2, "missing %s or %s; set KV_BUILD or the options",
		    cfg.keyvisord, cfg.worker);
	free(root);
}

/* The signals that end the soak early, read from a signalfd. */
static void
signals(struct soak *s, sigset_t *old)
{
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, old) == -1 ||
	    (s->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) == -1)
		err(2, "signalfd");
}

static void
start_up(struct soak *s)
{
	uint64_t t = tu_now_ns();
	unsigned i;

	conn_open(s, &s->start, START_WINDOW + 8);
	for (i = 0; i < STOP_CONNS; i++)
		conn_open(s, &s->stop[i], 2);
	printf("# kv-soak: %u workers (%s), %s, instance %s\n", cfg.n,
	    cfg.worker, cfg.keyvisord, s->name);
	printf("# %.1f min, a line every %.0f s, kills %g-%g/s, stops "
	       "%g-%g/s, seed %" PRIu64 "\n",
	    (double)cfg.duration / 60e9, (double)cfg.interval / 1e9,
	    cfg.kill_min, cfg.kill_max, cfg.stop_min, cfg.stop_max, cfg.seed);
	fflush(stdout);
	if (!quiesce(s) || s->st.req_errors > 0) {
		cfg.keep = true;
		errx(2, "unable to start %u workers; see %s", cfg.n, s->log);
	}
	s->startup_s = (double)(tu_now_ns() - t) / 1e9;
	s->st.starts = 0;
	checker_start(s);
	s->t0 = s->next_zscan = tu_now_ns();
}

int
main(int argc, char **argv)
{
	static struct soak s; /* large: the latency histogram */
	sigset_t           old;
	unsigned           i;
	int                rc;

	options(argc, argv);
	find_programs();
	machine();
	setup(&s);
	signals(&s, &old);
	daemon_start(&s, &old);
	start_up(&s);
	print_header();
	run(&s);
	finish(&s);
	rc = verdict(&s);
	conn_close(&s.start);
	for (i = 0; i < STOP_CONNS; i++)
		conn_close(&s.stop[i]);
	free(s.final);
	free(s.zprev);
	free(s.keys);
	free(s.names.v);
	free(s.names.len);
	close(s.sigfd);
	return rc;
}
