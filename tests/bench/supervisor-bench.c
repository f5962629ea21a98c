/*
 * supervisor-bench: what keyvisord costs, next to what the same work costs
 * a bare C loop on the same machine.  One run prints one "NAME VALUE UNIT"
 * line per figure and "# ..." comment lines (the machine, the targets);
 * README.md in this folder says what each figure means.
 *
 *   supervisor-bench [-n WORKERS] [-c CRASHES] [-g CYCLES] [-r RUNS]
 *       [-R ROUNDS] [-F] [-k] [--keyvisord PATH] [--keyvisor PATH]
 *       [--worker PATH] [--ballast PATH]
 *
 * Defaults: 10,000 workers, 1,000 timed crashes, 10,000 crash/restart
 * cycles for the memory growth, 200 runs of each short-lived command, 3
 * rounds of each spawn rate.  -F skips the daemon with 512 MiB of ballast,
 * -k keeps the temporary directory (the daemons' logs).
 *
 * What is measured (README.md has the details):
 *  - spawn rates: one "keyvisor start --stdin" starting n workers, timed
 *    from its fork to its exit, next to a bare loop of fork+exec and one
 *    of vfork+exec (what keyvisord does), each waiting for the exec the
 *    way keyvisord does; then again with the daemon holding 512 MiB;
 *  - restarts: SIGKILL a worker whose pid the registry shows, spin on the
 *    registry until another pid shows (see PACING), next to kill +
 *    waitpid + fork+exec in a bare loop;
 *  - the daemon's VmRSS (RssAnon, RssShmem) at 0 and n workers, and its
 *    growth over many crash/restart cycles;
 *  - one whole "keyvisor lookup" process, next to /bin/true.
 *
 * ROUNDS.  On a small shared machine a compile next door halves a spawn
 * rate for seconds at a time.  Each spawn rate is therefore measured
 * ROUNDS times, the rounds of the four kinds (fork+exec, vfork+exec,
 * keyvisord, keyvisord with ballast) interleaved so that a disturbance
 * hits them alike, and the best round is the figure: it is what the
 * machine can do.  All rounds are printed as a comment, and the CPU time
 * keyvisord spent a worker, which a busy neighbour disturbs far less.
 *
 * The programs are found, in this order, from the options, from
 * $KV_KEYVISORD, $KV_KEYVISOR, $KV_BENCH_WORKER and $KV_BALLAST (meson's
 * benchmark() sets them), from $KV_BUILD (a build root), and next to this
 * executable in a build tree.
 *
 * Every daemon gets its own instance name, its own KEYVISOR_SOCKET in a
 * temporary directory and so its own registry segment, and dies with this
 * program (PR_SET_PDEATHSIG), as do the workers of the raw loops.  The
 * only processes this program signals are those it started and the
 * workers its daemons started for it, by pid.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <dirent.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keyvisor/registry.h"
#include "testutil.h"

extern char **environ;

#define MS (UINT64_C(1000000)) /* nanoseconds */
#define S  (UINT64_C(1000000000))

/*
 * PACING.  keyvisord restarts through a daemon-wide token bucket of 1000
 * restarts a second with a burst of 100, and fails a key that restarts
 * more than 3 times in 5 s (the default policy).  The timed crashes are
 * CRASH_GAP apart (500 a second, half the bucket's rate, so a token is
 * always there and the figure is the restart path, not the limiter), the
 * growth cycles GROWTH_GAP apart (830 a second, still under the rate).
 * Keys are crashed in a shuffled round-robin, so one key comes back only
 * after every other key had its turn; with fewer workers than that takes
 * REVISIT_MIN, the gap grows to keep each key under 3 restarts in 5 s.
 */
#define CRASH_GAP   (2 * MS)
#define GROWTH_GAP  (1200 * UINT64_C(1000))
#define REVISIT_MIN (2 * S)

#define WAIT_LIMIT  (5 * S)  /* for a restart to show in the registry */
#define READY_LIMIT (10 * S) /* for a daemon to listen */
#define STOP_LIMIT  (60 * S) /* for a daemon to stop 10,000 workers */
#define SPARE_PIDS  256      /* beside the workers: CLIs, the daemon ... */

#define ROUNDS_MAX 16

struct cfg {
	const char *keyvisord, *keyvisor, *worker, *ballast;
	unsigned    n, crashes, cycles, runs, rounds, ballast_mib;
	bool        fat, keep;
};

static struct cfg cfg = {.n = 10000,
    .crashes = 1000,
    .cycles = 10000,
    .runs = 200,
    .rounds = 3,
    .ballast_mib = 512,
    .fat = true};

/* A daemon this program started. */
struct kvd {
	pid_t          pid;       /* 0: not running */
	char           name[64];  /* instance and registry name */
	char           sock[108]; /* sun_path's size */
	char           log[128];
	struct kv_reg *reg; /* mapped read-only */
};

/* VmRSS and its parts, from /proc/PID/status, in KiB. */
struct rss {
	long vm, anon, file, shmem;
};

/* One round of a spawn rate. */
struct spawn_run {
	double rate;       /* workers a second */
	double daemon_cpu; /* keyvisord's CPU time, us a worker */
	double cli_cpu;    /* keyvisor start --stdin's */
};

/* The rounds of one spawn rate. */
struct series {
	struct spawn_run run[ROUNDS_MAX];
	unsigned         n;
};

struct results {
	struct series raw, vfork, lean, fat;
	double        raw_restart_p50;
	double        p50, p99, max, per_worker, growth, cli_us, raw_exec_us;
};

/* TMPDIR is used only when shorter than 40 bytes: the socket must fit. */
static char        tmpdir[64];
static char        keysfile[80];
static int         devnull = -1;
static struct kvd *live;      /* the daemon running, for cleanup() */
static pid_t      *raw_pids;  /* the raw loop's workers, for cleanup() */
static unsigned    raw_alive; /* raw_pids[0..raw_alive) */
static uint64_t    rng = UINT64_C(0x9e3779b97f4a7c15);
static bool        keep_tmp; /* -k; cfg.keep is also set while failing */

/* Utilities. */

static void
sleep_until(uint64_t t)
{
	struct timespec ts = {
	    .tv_sec = (time_t)(t / S), .tv_nsec = (long)(t % S)};

	while (
	    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void
sleep_ms(unsigned ms)
{
	sleep_until(tu_now_ns() + ms * MS);
}

/* xorshift64*: a fixed sequence, so that runs crash the same keys. */
static uint64_t
rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * UINT64_C(0x2545f4914f6cdd1d);
}

static void
fig(const char *name, int prec, double v, const char *unit)
{
	printf("%s %.*f %s\n", name, prec, v, unit);
	fflush(stdout);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The Q-quantile (nearest rank) of V[0..N), which it sorts. */
static double
quantile(double *v, size_t n, double q)
{
	size_t i;

	if (n == 0)
		return NAN;
	qsort(v, n, sizeof(*v), cmp_double);
	i = (size_t)ceil(q * (double)n);
	return v[i > 0 ? i - 1 : 0];
}

static size_t
key_name(char *buf, size_t size, uint32_t i)
{
	return (size_t)snprintf(buf, size, "bench:%u", i);
}

/* Cleanup: whatever this program started and still runs. */

/* Wait up to LIMIT ns for PID to exit.  Returns true once reaped. */
static bool
reap_within(pid_t pid, uint64_t limit, int *status)
{
	uint64_t end = tu_now_ns() + limit;
	pid_t    r;

	do {
		r = waitpid(pid, status, WNOHANG);
		if (r == pid || (r == -1 && errno == ECHILD))
			return true;
		sleep_ms(5);
	} while (tu_now_ns() < end);
	return false;
}

static void kvd_stop(struct kvd *d);

static void
cleanup(void)
{
	unsigned i;

	if (live != NULL)
		kvd_stop(live);
	for (i = 0; i < raw_alive; i++)
		if (raw_pids[i] > 0)
			(void)kill(raw_pids[i], SIGKILL);
	for (i = 0; i < raw_alive; i++)
		if (raw_pids[i] > 0)
			(void)waitpid(raw_pids[i], NULL, 0);
	raw_alive = 0;
	if (tmpdir[0] != '\0' && !cfg.keep)
		(void)nftw(tmpdir, tu_rm_one, 16, FTW_DEPTH | FTW_PHYS);
	else if (tmpdir[0] != '\0')
		fprintf(stderr, "supervisor-bench: kept %s\n", tmpdir);
}

/* The machine. */

/*
 * Print the machine and check that n workers and SPARE_PIDS more fit under
 * pid_max, threads-max and RLIMIT_NPROC.  The raw loops and the daemons
 * never run their workers at the same time, so n is the peak.
 */
static void
machine(void)
{
	long   cores = sysconf(_SC_NPROCESSORS_ONLN), now = tu_nprocs();
	long   pid_max = tu_read_long("/proc/sys/kernel/pid_max");
	long   threads = tu_read_long("/proc/sys/kernel/threads-max");
	long   need = (long)cfg.n + SPARE_PIDS;
	rlim_t nproc = tu_raise_limit(RLIMIT_NPROC);

	(void)tu_raise_limit(RLIMIT_NOFILE);
	fig("machine_cores", 0, (double)cores, "cpus");
	fig("machine_pid_max", 0, (double)pid_max, "pids");
	printf("# machine: %ld processes running, threads-max %ld, "
	       "RLIMIT_NPROC %s%.0f\n",
	    now, threads, nproc == RLIM_INFINITY ? "unlimited " : "",
	    nproc == RLIM_INFINITY ? 0.0 : (double)nproc);
	if (pid_max > 0 && pid_max - now < need)
		errx(1,
		    "pid_max %ld leaves room for %ld processes, %ld needed;"
		    " lower -n",
		    pid_max, pid_max - now, need);
	if (threads > 0 && threads - now < need)
		errx(1,
		    "threads-max %ld is too low for %ld processes; lower -n",
		    threads, need);
	if (getuid() != 0 && nproc != RLIM_INFINITY && (long)nproc < now + need)
		errx(1,
		    "RLIMIT_NPROC %ld is too low for %ld more processes; "
		    "lower -n or raise ulimit -u",
		    (long)nproc, need);
}

/* Short-lived commands. */

/*
 * Start ARGV with fds 0, 1, 2 taken from IO (-1: inherit) and
 * PR_SET_PDEATHSIG(SIGTERM), so that nothing outlives this program.
 */
static pid_t
run_start(char *const *argv, const int io[3])
{
	pid_t pid = fork();
	int   i;

	if (pid == -1)
		err(1, "fork");
	if (pid > 0)
		return pid;
	for (i = 0; i < 3; i++)
		if (io[i] >= 0 && dup2(io[i], i) == -1)
			_exit(126);
	(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
	execv(argv[0], argv);
	_exit(127);
}

/* Wait for PID; returns its wait status, and its usage in *RU if asked. */
static int
run_wait(pid_t pid, struct rusage *ru)
{
	int status;

	while (wait4(pid, &status, 0, ru) == -1)
		if (errno != EINTR)
			err(1, "wait4");
	return status;
}

/* Wall time of one whole run of ARGV, in microseconds; exit 0 required. */
static double
run_timed(char *const *argv)
{
	int      io[3] = {devnull, devnull, -1};
	uint64_t t0 = tu_now_ns();
	int      st = run_wait(run_start(argv, io), NULL);
	uint64_t t1 = tu_now_ns();

	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		errx(1, "%s %s: exit status %#x", argv[0],
		    argv[1] != NULL ? argv[1] : "", st);
	return (double)(t1 - t0) / 1e3;
}

/* The raw loops. */

/*
 * fork+exec PATH and return once the child has exec'd: the pipe is
 * O_CLOEXEC, so its EOF says execve() succeeded, which is the guarantee
 * keyvisord's vfork gives before it replies.  The child's only other call
 * is PR_SET_PDEATHSIG, one syscall, so that an interrupted run cannot
 * leave 10,000 workers behind.  Returns the pid or -errno.
 */
static pid_t
raw_spawn(const char *path)
{
	char *const argv[] = {(char *)path, NULL};
	int         p[2], e = 0;
	ssize_t     n;
	pid_t       pid;

	if (pipe2(p, O_CLOEXEC) == -1)
		return -errno;
	if ((pid = fork()) == 0) {
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		execve(path, argv, environ);
		e = errno;
		(void)!write(p[1], &e, sizeof(e));
		_exit(127);
	}
	e = errno;
	close(p[1]);
	if (pid == -1) {
		close(p[0]);
		return -e;
	}
	do
		n = read(p[0], &e, sizeof(e));
	while (n == -1 && errno == EINTR);
	close(p[0]);
	if (n == 0)
		return pid;
	(void)waitpid(pid, NULL, 0);
	return n == sizeof(e) ? -e : -EIO;
}

/*
 * The same with clone(CLONE_VM | CLONE_VFORK), as keyvisord's spawn.c
 * does and posix_spawn(3) does: no page tables are copied, and the parent
 * sleeps until the child has exec'd or died, which makes the errno of a
 * failed exec one shared int.  The child makes the same single prctl().
 * MT-unsafe (one child stack).
 */
struct vchild {
	const char  *path;
	volatile int err;
};

static int
vchild_main(void *arg)
{
	struct vchild *c = arg;
	char *const    argv[] = {(char *)c->path, NULL};

	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	execve(c->path, argv, environ);
	c->err = errno;
	_exit(127);
}

static pid_t
raw_vspawn(const char *path)
{
	static char  *stack;
	struct vchild c = {.path = path};
	const size_t  size = 64 * 1024;
	pid_t         pid;

	if (stack == NULL && (stack = malloc(size)) == NULL)
		return -ENOMEM;
	pid = clone(
	    vchild_main, stack + size, CLONE_VM | CLONE_VFORK | SIGCHLD, &c);
	if (pid == -1)
		return -errno;
	if (c.err != 0) {
		(void)waitpid(pid, NULL, 0);
		return -c.err;
	}
	return pid;
}

/* Spawn cfg.n workers with SPAWN into raw_pids; returns workers/s. */
static double
raw_fill(pid_t (*spawn)(const char *))
{
	uint64_t t0 = tu_now_ns();

	for (; raw_alive < cfg.n; raw_alive++) {
		pid_t pid = spawn(cfg.worker);

		if (pid < 0)
			errx(1, "unable to spawn %s: %s (after %u workers)",
			    cfg.worker, strerror((int)-pid), raw_alive);
		raw_pids[raw_alive] = pid;
	}
	return cfg.n / ((double)(tu_now_ns() - t0) / 1e9);
}

static void
raw_kill_all(void)
{
	unsigned i;

	for (i = 0; i < raw_alive; i++)
		(void)kill(raw_pids[i], SIGKILL);
	for (i = 0; i < raw_alive; i++)
		(void)waitpid(raw_pids[i], NULL, 0);
	raw_alive = 0;
}

/* kill -> waitpid -> fork+exec, on random workers of the raw set. */
static void
raw_restarts(struct results *res)
{
	double  *v = calloc(cfg.crashes, sizeof(*v));
	unsigned i;

	if (v == NULL)
		err(1, "calloc");
	for (i = 0; i < cfg.crashes; i++) {
		unsigned j = (unsigned)(rnd() % cfg.n);
		uint64_t t0 = tu_now_ns();
		pid_t    pid;

		(void)kill(raw_pids[j], SIGKILL);
		(void)waitpid(raw_pids[j], NULL, 0);
		if ((pid = raw_spawn(cfg.worker)) < 0)
			errx(1, "unable to spawn %s: %s", cfg.worker,
			    strerror((int)-pid));
		raw_pids[j] = pid;
		v[i] = (double)(tu_now_ns() - t0) / 1e3;
	}
	res->raw_restart_p50 = quantile(v, cfg.crashes, 0.50);
	fig("raw_restart_p50_us", 1, res->raw_restart_p50, "us");
	fig("raw_restart_p99_us", 1, quantile(v, cfg.crashes, 0.99), "us");
	free(v);
}

/* One round of each raw spawn; the first also times raw restarts. */
static void
raw_round(struct results *res, bool first)
{
	struct spawn_run *r = &res->raw.run[res->raw.n++];

	r->rate = raw_fill(raw_spawn);
	if (first)
		raw_restarts(res);
	raw_kill_all();
	r = &res->vfork.run[res->vfork.n++];
	r->rate = raw_fill(raw_vspawn);
	raw_kill_all();
}

/* Daemons. */

static int
rss_read(pid_t pid, struct rss *r)
{
	char  path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return -errno;
	memset(r, 0, sizeof(*r));
	while (fgets(line, sizeof(line), f) != NULL) {
		(void)(sscanf(line, "VmRSS: %ld", &r->vm) == 1 ||
		       sscanf(line, "RssAnon: %ld", &r->anon) == 1 ||
		       sscanf(line, "RssFile: %ld", &r->file) == 1 ||
		       sscanf(line, "RssShmem: %ld", &r->shmem) == 1);
	}
	fclose(f);
	return 0;
}

static struct rss
rss_of(const struct kvd *d)
{
	struct rss r;

	if (rss_read(d->pid, &r) < 0)
		err(1, "unable to read /proc/%d/status", (int)d->pid);
	return r;
}

/* utime + stime of PID, in microseconds, or -1. */
static double
cpu_us(pid_t pid)
{
	char               path[64], buf[1024], *p;
	unsigned long long ut, st;
	ssize_t            n;
	int                fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* Fields 14 and 15, counted after the ")" that ends field 2. */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2,
	        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu "
	        "%llu",
	        &ut, &st) != 2)
		return -1;
	return (double)(ut + st) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

/*
 * ON: set the environment the daemon with ballast starts with; off: put
 * ours back.  A sanitized (ASan) daemon refuses to start when its runtime
 * is not the first library loaded, which a preload prevents, so
 * verify_asan_link_order=0 is added for it: the figures of a sanitized
 * build mean little, but the run completes.
 */
static void
preload(bool on)
{
	static char *asan; /* our ASAN_OPTIONS, or NULL */
	char         mib[16], *opts;
	const char  *old = getenv("ASAN_OPTIONS");

	if (!on) {
		(void)unsetenv("LD_PRELOAD");
		(void)unsetenv("KV_BALLAST_MIB");
		if (asan != NULL)
			(void)setenv("ASAN_OPTIONS", asan, 1);
		else
			(void)unsetenv("ASAN_OPTIONS");
		return;
	}
	free(asan);
	asan = old != NULL ? strdup(old) : NULL;
	snprintf(mib, sizeof(mib), "%u", cfg.ballast_mib);
	if (asprintf(&opts, "%s%sverify_asan_link_order=0",
	        old != NULL ? old : "", old != NULL && old[0] ? ":" : "") == -1)
		err(1, "asprintf");
	if (setenv("LD_PRELOAD", cfg.ballast, 1) == -1 ||
	    setenv("KV_BALLAST_MIB", mib, 1) == -1 ||
	    setenv("ASAN_OPTIONS", opts, 1) == -1)
		err(1, "setenv");
	free(opts);
}

/*
 * Start keyvisord as instance "bench-PID-TAG" with its socket in the
 * temporary directory, its stdout and stderr in a log there, and with the
 * ballast preloaded if FAT.  Returns once it accepts connections, with its
 * registry mapped read-only.  KEYVISOR_SOCKET and KEYVISOR_INSTANCE are set
 * in our environment for the CLIs run against it.
 */
static void
kvd_start(struct kvd *d, const char *tag, bool fat)
{
	char     seg[96];
	char    *argv[] = {(char *)cfg.keyvisord, "-n", d->name, NULL};
	uint64_t end;
	int      io[3], st, rc;

	snprintf(d->name, sizeof(d->name), "bench-%d-%s", (int)getpid(), tag);
	snprintf(d->sock, sizeof(d->sock), "%s/%s/kv.sock", tmpdir, tag);
	snprintf(d->log, sizeof(d->log), "%s/%s.log", tmpdir, tag);
	if (setenv("KEYVISOR_SOCKET", d->sock, 1) == -1 ||
	    setenv("KEYVISOR_INSTANCE", d->name, 1) == -1 ||
	    unsetenv("KEYVISOR_REGISTRY") == -1)
		err(1, "setenv");
	io[0] = devnull;
	io[1] = io[2] =
	    open(d->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (io[1] == -1)
		err(1, "unable to create %s", d->log);
	if (fat)
		preload(true);
	d->pid = run_start(argv, io);
	live = d;
	if (fat)
		preload(false);
	close(io[1]);
	cfg.keep = true; /* until it listens: keep its log to say why */
	for (end = tu_now_ns() + READY_LIMIT; !tu_can_connect(d->sock);) {
		if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
			d->pid = 0;
			errx(1, "keyvisord exited (status %#x); see %s", st,
			    d->log);
		}
		if (tu_now_ns() > end)
			errx(1, "keyvisord is not listening on %s", d->sock);
		sleep_ms(2);
	}
	cfg.keep = keep_tmp;
	snprintf(seg, sizeof(seg), "keyvisor.%s", d->name);
	if ((rc = kv_reg_open(seg, KV_REG_RDONLY, &d->reg)) < 0)
		errx(1, "unable to map /%s: %s", seg, kv_reg_strerror(rc));
}

/*
 * SIGTERM: the daemon stops every worker and exits.  SIGKILL after
 * STOP_LIMIT (its workers then die of their PR_SET_PDEATHSIG), and the
 * registry segment is removed if it was left behind.
 */
static void
kvd_stop(struct kvd *d)
{
	char seg[96];
	int  st;

	d->reg = kv_reg_close(d->reg);
	if (d->pid > 0) {
		(void)kill(d->pid, SIGTERM);
		if (!reap_within(d->pid, STOP_LIMIT, &st)) {
			warnx("keyvisord %d did not stop; killing it",
			    (int)d->pid);
			(void)kill(d->pid, SIGKILL);
			(void)waitpid(d->pid, &st, 0);
		}
		d->pid = 0;
	}
	snprintf(seg, sizeof(seg), "keyvisor.%s", d->name);
	(void)kv_reg_unlink(seg);
	if (live == d)
		live = NULL;
}

/*
 * spawn_rate: one "keyvisor start --stdin -- WORKER" with the n keys on its
 * stdin, timed from fork() until it has exited, which it does once every
 * reply (each sent after the worker exec'd) has arrived.  TAG names its
 * log.  Fills *OUT.
 */
static void
spawn_all(struct kvd *d, const char *tag, struct spawn_run *out)
{
	char *argv[] = {(char *)cfg.keyvisor, "-n", d->name, "start", "--stdin",
	    "--", (char *)cfg.worker, NULL};
	char  errlog[128];
	struct rusage ru;
	int           io[3], st, count;
	double        c0 = cpu_us(d->pid);
	uint64_t      t0, t1;

	snprintf(errlog, sizeof(errlog), "%s/%s.cli.log", tmpdir, tag);
	io[0] = open(keysfile, O_RDONLY | O_CLOEXEC);
	io[1] = devnull;
	io[2] = open(errlog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (io[0] == -1 || io[2] == -1)
		err(1, "unable to open %s or %s", keysfile, errlog);
	t0 = tu_now_ns();
	st = run_wait(run_start(argv, io), &ru);
	t1 = tu_now_ns();
	close(io[0]);
	close(io[2]);
	cfg.keep = true; /* a failure leaves the logs */
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		errx(1, "keyvisor start --stdin: status %#x; see %s", st,
		    errlog);
	if ((count = kv_reg_count(d->reg)) != (int)cfg.n)
		errx(1, "%d names registered after starting %u; see %s", count,
		    cfg.n, d->log);
	cfg.keep = keep_tmp;
	out->rate = cfg.n / ((double)(t1 - t0) / 1e9);
	out->daemon_cpu = (cpu_us(d->pid) - c0) / cfg.n;
	out->cli_cpu =
	    ((double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
	        (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec)) /
	    cfg.n;
}

/* Crashes. */

struct crasher {
	struct kvd *d;
	uint32_t   *order; /* the keys, shuffled */
	uint64_t    next;  /* crashes so far, across phases */
	uint64_t    due;   /* the earliest time for the next kill */
	unsigned    lost;  /* restarts not seen within WAIT_LIMIT */
};

static void
crasher_init(struct crasher *cr, struct kvd *d)
{
	uint32_t i, j, t;

	memset(cr, 0, sizeof(*cr));
	cr->d = d;
	if ((cr->order = calloc(cfg.n, sizeof(*cr->order))) == NULL)
		err(1, "calloc");
	for (i = 0; i < cfg.n; i++)
		cr->order[i] = i;
	for (i = cfg.n - 1; i > 0; i--) { /* Fisher-Yates */
		j = (uint32_t)(rnd() % (i + 1));
		t = cr->order[i];
		cr->order[i] = cr->order[j];
		cr->order[j] = t;
	}
}

/*
 * The published entry of KEY, waiting up to WAIT_LIMIT for one.  Returns
 * its pid, or 0.
 */
static pid_t
published(const struct kvd *d, const char *key, size_t len)
{
	struct kv_entry e;
	uint64_t        end = tu_now_ns() + WAIT_LIMIT;

	do {
		if (kv_reg_lookup(d->reg, key, len, &e) == 0 && e.pid > 0 &&
		    e.owner == d->pid)
			return e.pid;
		sched_yield();
	} while (tu_now_ns() < end);
	return 0;
}

/*
 * Crash the next key's worker at least GAP after the previous crash, and
 * spin on the registry until another pid is published for the key.
 * Returns kill -> visible in microseconds, or -1 (counted in lost).
 */
static double
crash_one(struct crasher *cr, uint64_t gap)
{
	struct kv_entry e;
	char            key[32];
	size_t          len;
	pid_t           old;
	uint64_t        t0;

	len = key_name(key, sizeof(key), cr->order[cr->next++ % cfg.n]);
	sleep_until(cr->due);
	if ((old = published(cr->d, key, len)) == 0) {
		cr->lost++;
		return -1;
	}
	t0 = tu_now_ns();
	cr->due = t0 + gap;
	/* Ours: the daemon we started spawned it and has not reaped it. */
	if (kill(old, SIGKILL) == -1)
		err(1, "kill %d", (int)old);
	do {
		if (kv_reg_lookup(cr->d->reg, key, len, &e) == 0 &&
		    e.pid != old && e.pid > 0)
			return (double)(tu_now_ns() - t0) / 1e3;
		sched_yield();
	} while (tu_now_ns() - t0 < WAIT_LIMIT);
	cr->lost++;
	return -1;
}

/* The per-kill gap: BASE, or longer when few keys share the crashes. */
static uint64_t
gap_for(uint64_t base)
{
	uint64_t g = REVISIT_MIN / cfg.n;

	return g > base ? g : base;
}

static void
bench_restart(struct crasher *cr, struct results *res)
{
	double  *v = calloc(cfg.crashes, sizeof(*v));
	uint64_t gap = gap_for(CRASH_GAP);
	size_t   n = 0;
	unsigned i;

	if (v == NULL)
		err(1, "calloc");
	printf("# restarts: %u crashes %.1f ms apart, round-robin over %u "
	       "shuffled keys\n",
	    cfg.crashes, (double)gap / MS, cfg.n);
	for (i = 0; i < cfg.crashes; i++) {
		double us = crash_one(cr, gap);

		if (us >= 0)
			v[n++] = us;
	}
	res->p50 = quantile(v, n, 0.50);
	res->p99 = quantile(v, n, 0.99);
	res->max = quantile(v, n, 1.0);
	fig("restart_p50_us", 1, res->p50, "us");
	fig("restart_p99_us", 1, res->p99, "us");
	fig("restart_max_us", 1, res->max, "us");
	fig("restart_lost", 0, cr->lost, "crashes");
	free(v);
}

static void
bench_growth(struct crasher *cr, struct results *res)
{
	uint64_t   gap = gap_for(GROWTH_GAP);
	struct rss a, b;
	unsigned   i, lost = cr->lost;

	a = rss_of(cr->d);
	for (i = 0; i < cfg.cycles; i++)
		(void)crash_one(cr, gap);
	b = rss_of(cr->d);
	res->growth = (double)(b.vm - a.vm) * 1024;
	printf("# growth: %u crash/restart cycles %.1f ms apart; RssAnon "
	       "%+ld KiB, RssShmem %+ld KiB\n",
	    cfg.cycles, (double)gap / MS, b.anon - a.anon, b.shmem - a.shmem);
	fig("daemon_rss_growth_bytes", 0, res->growth, "bytes");
	fig("growth_lost", 0, cr->lost - lost, "crashes");
}

/*
 * cli_lookup_us and raw_exec_us, alternating run by run so that both see
 * the same machine.
 */
static void
bench_lookup(struct kvd *d, struct results *res)
{
	char *look[] = {
	    (char *)cfg.keyvisor, "-n", d->name, "lookup", "bench:0", NULL};
	char    *truth[] = {"/bin/true", NULL};
	double  *a = calloc(cfg.runs, sizeof(*a));
	double  *b = calloc(cfg.runs, sizeof(*b));
	unsigned i;

	if (a == NULL || b == NULL)
		err(1, "calloc");
	for (i = 0; i < cfg.runs; i++) {
		a[i] = run_timed(look);
		b[i] = run_timed(truth);
	}
	res->cli_us = quantile(a, cfg.runs, 0.5);
	res->raw_exec_us = quantile(b, cfg.runs, 0.5);
	fig("cli_lookup_us", 1, res->cli_us, "us");
	fig("raw_exec_us", 1, res->raw_exec_us, "us");
	free(a);
	free(b);
}

static void
print_rss(const char *prefix, struct rss r)
{
	char name[64];

	snprintf(name, sizeof(name), "%s_kib", prefix);
	fig(name, 0, (double)r.vm, "KiB");
	snprintf(name, sizeof(name), "%s_anon_kib", prefix);
	fig(name, 0, (double)r.anon, "KiB");
	snprintf(name, sizeof(name), "%s_shmem_kib", prefix);
	fig(name, 0, (double)r.shmem, "KiB");
}

/*
 * The first keyvisord round: besides its spawn rate, the memory figures,
 * the restarts and the lookups, all on this daemon and its n workers.
 */
static void
lean_detailed(struct results *res, const char *tag)
{
	struct kvd     d = {0};
	struct crasher cr;
	struct rss     r0, r1;

	kvd_start(&d, tag, false);
	r0 = rss_of(&d);
	print_rss("daemon_rss_0", r0);
	spawn_all(&d, tag, &res->lean.run[res->lean.n++]);
	r1 = rss_of(&d);
	print_rss("daemon_rss_10k", r1);
	res->per_worker = (double)(r1.vm - r0.vm) * 1024 / cfg.n;
	fig("daemon_rss_per_worker_bytes", 0, res->per_worker, "bytes");
	fig("daemon_anon_per_worker_bytes", 0,
	    (double)(r1.anon - r0.anon) * 1024 / cfg.n, "bytes");
	fig("daemon_shmem_per_worker_bytes", 0,
	    (double)(r1.shmem - r0.shmem) * 1024 / cfg.n, "bytes");
	crasher_init(&cr, &d);
	bench_restart(&cr, res);
	bench_growth(&cr, res);
	bench_lookup(&d, res);
	free(cr.order);
	kvd_stop(&d);
}

/* A keyvisord round that only spawns; FAT preloads the ballast. */
static void
daemon_round(struct results *res, const char *tag, bool fat)
{
	struct series *s = fat ? &res->fat : &res->lean;
	struct kvd     d = {0};
	struct rss     r;

	kvd_start(&d, tag, fat);
	r = rss_of(&d);
	if (fat && s->n == 0)
		fig("daemon_rss_fat_kib", 0, (double)r.vm, "KiB");
	if (fat && r.vm < (long)cfg.ballast_mib * 1024)
		errx(1, "the ballast did not take: VmRSS %ld KiB < %u MiB",
		    r.vm, cfg.ballast_mib);
	spawn_all(&d, tag, &s->run[s->n++]);
	kvd_stop(&d);
}

/* The spawn rates, round by round. */
static void
rounds(struct results *res)
{
	char     tag[16];
	unsigned i;

	for (i = 0; i < cfg.rounds; i++) {
		raw_round(res, i == 0);
		snprintf(tag, sizeof(tag), "lean%u", i);
		if (i == 0)
			lean_detailed(res, tag);
		else
			daemon_round(res, tag, false);
		snprintf(tag, sizeof(tag), "fat%u", i);
		if (cfg.fat)
			daemon_round(res, tag, true);
		fprintf(stderr,
		    "supervisor-bench: round %u/%u: fork %.0f, "
		    "vfork %.0f, keyvisord %.0f, fat %.0f workers/s\n",
		    i + 1, cfg.rounds, res->raw.run[i].rate,
		    res->vfork.run[i].rate, res->lean.run[i].rate,
		    cfg.fat ? res->fat.run[i].rate : 0.0);
	}
}

/* The best round of S (the highest rate). */
static const struct spawn_run *
best(const struct series *s)
{
	const struct spawn_run *b = &s->run[0];
	unsigned                i;

	for (i = 1; i < s->n; i++)
		if (s->run[i].rate > b->rate)
			b = &s->run[i];
	return b;
}

/* NAME's best round as a figure, every round as a comment. */
static double
print_series(const char *name, const struct series *s, bool cpu)
{
	const struct spawn_run *b = best(s);
	char                    fname[64];
	unsigned                i;

	printf("# %s rounds:", name);
	for (i = 0; i < s->n; i++)
		printf(" %.0f", s->run[i].rate);
	printf("\n");
	fig(name, 0, b->rate, "workers/s");
	if (!cpu)
		return b->rate;
	snprintf(fname, sizeof(fname), "%s_daemon_cpu_us", name);
	fig(fname, 1, b->daemon_cpu, "us/worker");
	snprintf(fname, sizeof(fname), "%s_cli_cpu_us", name);
	fig(fname, 1, b->cli_cpu, "us/worker");
	return b->rate;
}

static void
print_rates(const struct results *res)
{
	double raw = print_series("raw_spawn_rate", &res->raw, false);
	double vf = print_series("raw_vfork_spawn_rate", &res->vfork, false);
	double lean = print_series("spawn_rate", &res->lean, true);

	fig("spawn_vs_raw", 1, 100 * lean / raw, "%");
	fig("spawn_vs_raw_vfork", 1, 100 * lean / vf, "%");
	if (cfg.fat)
		fig("fat_vs_lean", 1,
		    100 * print_series("spawn_rate_fat", &res->fat, true) /
		        lean,
		    "%");
}

/* The targets: comments, not assertions. */

static void
target(const char *what, bool met, const char *fmt, double v)
{
	printf("# target %-42s %-6s (", what, met ? "met" : "MISSED");
	printf(fmt, v);
	printf(")\n");
}

static void
targets(const struct results *r)
{
	double lean = best(&r->lean)->rate;
	double ratio = 100 * lean / best(&r->raw)->rate;
	double fat = cfg.fat ? best(&r->fat)->rate : 0;

	target("spawn_rate >= 50 % of raw_spawn_rate", ratio >= 50, "%.1f %%",
	    ratio);
	if (cfg.fat)
		target("spawn_rate_fat within 20 % of spawn_rate",
		    fabs(fat / lean - 1) <= 0.2, "%.1f %%", 100 * fat / lean);
	target("restart_p50_us < 1000", r->p50 < 1000, "%.0f us", r->p50);
	target("restart_p99_us < 5000", r->p99 < 5000, "%.0f us", r->p99);
	target("cli_lookup_us < 1000", r->cli_us < 1000, "%.0f us", r->cli_us);
	target("daemon_rss_per_worker_bytes < 2048", r->per_worker < 2048,
	    "%.0f bytes", r->per_worker);
	/* "About 0": within one 4 KiB page per 1,000 cycles. */
	target("daemon_rss_growth_bytes ~ 0",
	    fabs(r->growth) <= 4096.0 * (cfg.cycles / 1000 + 1), "%.0f bytes",
	    r->growth);
}

/* Setup. */

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
		err(1, "strdup");
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
		err(1, "strdup");
	cfg.keyvisord = locate(
	    cfg.keyvisord, "KV_KEYVISORD", root, "supervisord/keyvisord");
	cfg.keyvisor =
	    locate(cfg.keyvisor, "KV_KEYVISOR", root, "supervisord/keyvisor");
	cfg.worker = locate(
	    cfg.worker, "KV_BENCH_WORKER", root, "tests/bench/bench-worker");
	cfg.ballast =
	    locate(cfg.ballast, "KV_BALLAST", root, "tests/bench/ballast.so");
	if (access(cfg.keyvisord, X_OK) || access(cfg.keyvisor, X_OK) ||
	    access(cfg.worker, X_OK) || (cfg.fat && access(cfg.ballast, R_OK)))
		errx(1,
		    "missing one of %s %s %s %s; set KV_BUILD or the "
		    "options",
		    cfg.keyvisord, cfg.keyvisor, cfg.worker, cfg.ballast);
	free(root);
}

static _Noreturn void
usage(void)
{
	fprintf(stderr,
	    "usage: supervisor-bench [-n WORKERS] [-c CRASHES] [-g CYCLES] "
	    "[-r RUNS] [-R ROUNDS]\n"
	    "                        [-F] [-k] [--keyvisord PATH] "
	    "[--keyvisor PATH]\n"
	    "                        [--worker PATH] [--ballast PATH]\n");
	exit(2);
}

static unsigned
count_arg(const char *s)
{
	char         *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v == 0 || v > 1000000)
		usage();
	return (unsigned)v;
}

static void
options(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"keyvisord", required_argument, NULL, 'D'},
	    {"keyvisor", required_argument, NULL, 'C'},
	    {"worker", required_argument, NULL, 'W'},
	    {"ballast", required_argument, NULL, 'B'},
	    {NULL, 0, NULL, 0},
	};
	int ch;

	while ((ch = getopt_long(
	            argc, argv, "n:c:g:r:R:Fkh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'n':
			cfg.n = count_arg(optarg);
			break;
		case 'c':
			cfg.crashes = count_arg(optarg);
			break;
		case 'g':
			cfg.cycles = count_arg(optarg);
			break;
		case 'r':
			cfg.runs = count_arg(optarg);
			break;
		case 'R':
			cfg.rounds = count_arg(optarg);
			if (cfg.rounds > ROUNDS_MAX)
				usage();
			break;
		case 'F':
			cfg.fat = false;
			break;
		case 'k':
			cfg.keep = keep_tmp = true;
			break;
		case 'D':
			cfg.keyvisord = optarg;
			break;
		case 'C':
			cfg.keyvisor = optarg;
			break;
		case 'W':
			cfg.worker = optarg;
			break;
		case 'B':
			cfg.ballast = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
}

/* The temporary directory and the keys file: "bench:0" .. "bench:n-1". */
static void
setup(void)
{
	const char *t = getenv("TMPDIR");
	char        key[32];
	FILE       *f;
	unsigned    i;

	snprintf(tmpdir, sizeof(tmpdir), "%s/kv-bench.XXXXXX",
	    t != NULL && t[0] == '/' && strlen(t) < 40 ? t : "/tmp");
	if (mkdtemp(tmpdir) == NULL) {
		tmpdir[0] = '\0';
		err(1, "mkdtemp");
	}
	atexit(cleanup);
	if ((devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) == -1)
		err(1, "/dev/null");
	if ((raw_pids = calloc(cfg.n, sizeof(*raw_pids))) == NULL)
		err(1, "calloc");
	snprintf(keysfile, sizeof(keysfile), "%s/keys", tmpdir);
	if ((f = fopen(keysfile, "we")) == NULL)
		err(1, "%s", keysfile);
	for (i = 0; i < cfg.n; i++) {
		key_name(key, sizeof(key), i);
		fprintf(f, "%s\n", key);
	}
	if (fclose(f) == EOF)
		err(1, "%s", keysfile);
}

int
main(int argc, char **argv)
{
	struct results res = {0};

	options(argc, argv);
	find_programs();
	machine();
	setup();
	printf("# supervisor-bench: %u workers (%s), %u crashes, %u cycles, "
	       "%u runs, %u rounds\n",
	    cfg.n, cfg.worker, cfg.crashes, cfg.cycles, cfg.runs, cfg.rounds);
	rounds(&res);
	print_rates(&res);
	targets(&res);
	return 0;
}
