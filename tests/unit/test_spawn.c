/*
 * spawn_process(): real processes, checked from the outside.  The children
 * are /bin/sh, /bin/sleep and /bin/true, so the test depends on nothing we
 * build.  What a child looks like after exec (mask, dispositions, fds,
 * process group) is read from /proc/PID of a sleeping child, since any
 * program that reported it itself might change it first.  Every test reaps
 * what it started and signals only its own children.
 */
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include "spawn.h"

#define SH    "/bin/sh"
#define SLEEP "/bin/sleep"

static char tmp[64]; /* this test's scratch directory */

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
setup(void)
{
	char *d;

	snprintf(tmp, sizeof(tmp), "/tmp/kv-spawn-XXXXXX");
	d = mkdtemp(tmp);
	cr_assert_not_null(d, "mkdtemp: %s", strerror(errno));
}

static void
teardown(void)
{
	if (tmp[0] != '\0')
		(void)nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * No .timeout: Criterion 2.4.1's runner leaks 48 bytes per run when tests
 * with one run in parallel (-j2 under ASan shows it).  Every wait here is
 * bounded, and meson's own timeout backs that up.
 */
TestSuite(spawn, .init = setup, .fini = teardown);

/* "tmp/NAME" in a static buffer, one of four so a call may use several. */
static const char *
at(const char *name)
{
	static char buf[4][256];
	static int  i;
	int         n;

	i = (i + 1) % 4;
	n = snprintf(buf[i], sizeof(buf[i]), "%s/%s", tmp, name);
	cr_assert_lt((size_t)n, sizeof(buf[i]));
	return buf[i];
}

static void
put(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(chmod(path, mode), 0);
}

/* The contents of PATH, "" if it does not exist. */
static const char *
slurp(const char *path)
{
	static char buf[4096];
	FILE       *f = fopen(path, "r");
	size_t      n = 0;

	if (f != NULL) {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
	return buf;
}

static int
reap(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) == -1)
		cr_assert_eq(
		    errno, EINTR, "waitpid %d: %s", pid, strerror(errno));
	return st;
}

static void
kill_reap(pid_t pid)
{
	int st;

	cr_assert_eq(kill(pid, SIGKILL), 0);
	st = reap(pid);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

static pid_t
spawn_ok(const struct spawn_req *r)
{
	enum spawn_stage stage;
	pid_t            pid = spawn_process(r, &stage);

	cr_assert_gt(pid, 0, "spawn %s: %s (stage %d)", r->argv[0],
	    strerror(-pid), stage);
	return pid;
}

/* Spawn R, wait for it and return its exit code; it must exit. */
static int
run(const struct spawn_req *r)
{
	int st = reap(spawn_ok(r));

	cr_assert(WIFEXITED(st), "%s: status %#x", r->argv[0], st);
	return WEXITSTATUS(st);
}

static char *const sleeper[] = {SLEEP, "30", NULL};

/* Wait up to 5 s for PID to run sleep.  Returns 0, or -1 if it never does. */
static int
wait_sleep(pid_t pid)
{
	char   comm[64];
	double end = now() + 5;

	snprintf(comm, sizeof(comm), "/proc/%d/comm", pid);
	while (strcmp(slurp(comm), "sleep\n") != 0) {
		if (now() > end)
			return -1;
		usleep(1000);
	}
	return 0;
}

/* Spawn `sleep 30` per R (its argv is replaced) and wait until it runs. */
static pid_t
spawn_sleeper(struct spawn_req *r)
{
	pid_t pid;

	r->argv = sleeper;
	pid = spawn_ok(r);
	cr_assert_eq(wait_sleep(pid), 0, "pid %d never ran sleep", pid);
	return pid;
}

/* The hex field NAME ("SigBlk") of /proc/PID/status. */
static unsigned long long
status_hex(pid_t pid, const char *name)
{
	char               path[64], line[256];
	size_t             len = strlen(name);
	FILE              *f;
	unsigned long long v = ~0ULL;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, name, len) == 0 && line[len] == ':')
			v = strtoull(line + len + 1, NULL, 16);
	fclose(f);
	cr_assert_neq(v, ~0ULL, "no %s in %s", name, path);
	return v;
}

/* How many processes, zombies included, have us as their parent. */
static int
count_children(void)
{
	DIR           *d = opendir("/proc");
	struct dirent *e;
	char           path[300], *p;
	int            n = 0, ppid;

	cr_assert_not_null(d);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		p = strrchr(slurp(path), ')');
		if (p != NULL && sscanf(p, ") %*c %d", &ppid) == 1 &&
		    ppid == getpid())
			n++;
	}
	closedir(d);
	return n;
}

static void
assert_no_children(void)
{
	cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1);
	cr_assert_eq(errno, ECHILD);
	cr_assert_eq(count_children(), 0);
}

Test(spawn, own_process_group)
{
	struct spawn_req r = {.keep_fd = -1};
	pid_t            pid = spawn_sleeper(&r);

	cr_expect_eq(getpgid(pid), pid);
	cr_expect_neq(getpgid(0), pid);
	kill_reap(pid);
}

Test(spawn, environment_is_exactly_envp)
{
	static char      script[] = "[ -z \"${KV_PARENT_ONLY+set}\" ] && "
	                            "printf %s \"$FOO\" > \"$OUT\"";
	char             out[PATH_MAX + 4];
	char *const      argv[] = {SH, "-c", script, NULL};
	char *const      envp[] = {"FOO=bar baz", out, NULL};
	struct spawn_req r = {.argv = argv, .envp = envp, .keep_fd = -1};

	snprintf(out, sizeof(out), "OUT=%s", at("out"));
	cr_assert_eq(setenv("KV_PARENT_ONLY", "1", 1), 0);
	cr_assert_eq(run(&r), 0);
	cr_expect_str_eq(slurp(at("out")), "bar baz");
}

Test(spawn, null_envp_means_environ)
{
	char *const argv[] = {SH, "-c", "[ \"$KV_PARENT_ONLY\" = yes ]", NULL};
	struct spawn_req r = {.argv = argv, .keep_fd = -1};

	cr_assert_eq(setenv("KV_PARENT_ONLY", "yes", 1), 0);
	cr_expect_eq(run(&r), 0);
}

/*
 * The parent blocks every signal and ignores or catches some, as keyvisord
 * does; the worker must see none of it.
 */
static void
on_usr1(int sig)
{
}

Test(spawn, signals_default_and_mask_empty)
{
	struct sigaction   ign = {.sa_handler = SIG_IGN};
	struct sigaction   handle = {.sa_handler = on_usr1};
	struct spawn_req   r = {.keep_fd = -1};
	sigset_t           all, old;
	unsigned long long blk, ignored;
	pid_t              pid;

	sigfillset(&all);
	cr_assert_eq(sigprocmask(SIG_SETMASK, &all, &old), 0);
	cr_assert_eq(sigaction(SIGPIPE, &ign, NULL), 0);
	cr_assert_eq(sigaction(SIGTERM, &ign, NULL), 0);
	cr_assert_eq(sigaction(SIGTSTP, &ign, NULL), 0);
	cr_assert_eq(sigaction(SIGUSR1, &handle, NULL), 0);
	cr_assert_neq(status_hex(getpid(), "SigIgn"), 0);
	blk = status_hex(getpid(), "SigBlk");

	pid = spawn_sleeper(&r);
	cr_expect_eq(status_hex(pid, "SigBlk"), 0);
	cr_expect_eq(status_hex(pid, "SigIgn"), 0);
	cr_expect_eq(status_hex(pid, "SigCgt"), 0);
	kill_reap(pid);
	/* The parent's own mask and dispositions are untouched. */
	cr_expect_eq(status_hex(getpid(), "SigBlk"), blk);
	ignored = status_hex(getpid(), "SigIgn");
	cr_expect_neq(ignored & (1ULL << (SIGPIPE - 1)), 0);
	cr_assert_eq(sigprocmask(SIG_SETMASK, &old, NULL), 0);
}

Test(spawn, mask_of_request)
{
	struct spawn_req r = {.keep_fd = -1};
	sigset_t         mask;
	pid_t            pid;

	sigemptyset(&mask);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR2);
	r.mask = &mask;
	pid = spawn_sleeper(&r);
	cr_expect_eq(status_hex(pid, "SigBlk"),
	    (1ULL << (SIGHUP - 1)) | (1ULL << (SIGUSR2 - 1)));
	kill_reap(pid);
}

/*
 * The open fds of PID (0 for ourselves) below 63 as bits; bit 63 stands for
 * all higher ones.  No assertions: this also runs in forked children.
 */
static unsigned long long
fd_bits(pid_t pid)
{
	char               path[64];
	DIR               *d;
	struct dirent     *e;
	unsigned long long bits = 0;
	int                fd;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid > 0 ? pid : getpid());
	if ((d = opendir(path)) == NULL)
		return ~0ULL;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		fd = atoi(e->d_name);
		bits |= 1ULL << (fd < 63 ? fd : 63);
	}
	closedir(d);
	return bits;
}

/*
 * Spawn `sleep 30` keeping KEEP and return the fds it has that it should
 * not have, as bits, or ~0 if it failed: it must have our fds 0-2 and KEEP.
 */
static unsigned long long
sleeper_extra_fds(int keep)
{
	struct spawn_req   r = {.argv = sleeper, .keep_fd = keep};
	unsigned long long want =
	    (fd_bits(0) & 7) | (keep >= 0 ? 1ULL << keep : 0);
	unsigned long long got = ~0ULL;
	pid_t              pid;

	pid = spawn_process(&r, &(enum spawn_stage){0});
	if (pid < 0)
		return ~0ULL;
	if (wait_sleep(pid) == 0)
		got = fd_bits(pid);
	(void)kill(pid, SIGKILL);
	(void)waitpid(pid, NULL, 0);
	return (got & want) != want ? ~0ULL : got & ~want;
}

Test(spawn, fds_above_2_closed)
{
	int a, b, keep;

	/* Neither has O_CLOEXEC: only spawn_process() can close them. */
	a = open("/dev/null", O_RDONLY);
	cr_assert_geq(a, 3);
	b = fcntl(a, F_DUPFD, 100);
	cr_assert_geq(b, 100);
	cr_expect_eq(sleeper_extra_fds(-1), 0);

	/* The one to keep has O_CLOEXEC, as every fd of keyvisord does. */
	keep = fcntl(a, F_DUPFD_CLOEXEC, 50);
	cr_assert_eq(keep, 50);
	cr_expect_eq(sleeper_extra_fds(keep), 0);
	cr_expect_eq(sleeper_extra_fds(0), 0);
	close(a);
	close(b);
	close(keep);
	assert_no_children();
}

/*
 * Keeping fd 3 leaves no range below it to close.  Criterion may hold fd 3
 * itself, so this runs in a child that may replace it.
 */
Test(spawn, keep_fd_3)
{
	pid_t pid;
	int   st, fd;

	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd != 3 && dup3(fd, 3, O_CLOEXEC) != 3)
			_exit(2);
		if (fcntl(3, F_DUPFD, 10) < 4) /* one that must go */
			_exit(3);
		_exit(sleeper_extra_fds(3) == 0 ? 0 : 1);
	}
	st = reap(pid);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}

Test(spawn, keep_fd_is_usable)
{
	char             script[64], buf[16] = "";
	char *const      argv[] = {SH, "-c", script, NULL};
	struct spawn_req r = {.argv = argv, .keep_fd = -1};
	int              p[2];
	ssize_t          n;

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	r.keep_fd = p[1];
	/* dash's >& takes one digit; /proc reopens the pipe just as well. */
	snprintf(script, sizeof(script), "echo hi > /proc/self/fd/%d", p[1]);
	cr_assert_eq(run(&r), 0);
	close(p[1]);
	n = read(p[0], buf, sizeof(buf) - 1);
	cr_assert_eq(n, 3);
	cr_expect_str_eq(buf, "hi\n");
	close(p[0]);
}

Test(spawn, cwd_honoured)
{
	char *const      argv[] = {SH, "-c", "pwd -P > out", NULL};
	struct spawn_req r = {.argv = argv, .cwd = tmp, .keep_fd = -1};
	char             real[PATH_MAX], want[PATH_MAX + 1];

	cr_assert_not_null(realpath(tmp, real));
	snprintf(want, sizeof(want), "%s\n", real);
	cr_assert_eq(run(&r), 0);
	cr_expect_str_eq(slurp(at("out")), want);
}

/*
 * A relative argv[0] with a '/' names a file relative to the cwd the
 * worker gets, not the daemon's (the test runs in the build directory,
 * which has no bin/hello).
 */
Test(spawn, relative_argv0_against_cwd)
{
	static const char *const names[] = {"./bin/hello", "bin/hello"};
	struct spawn_req         r = {.cwd = tmp, .keep_fd = -1};
	char                     name[32];
	char *const              argv[] = {name, NULL};
	size_t                   i;

	cr_assert_eq(mkdir(at("bin"), 0755), 0);
	put(at("bin/hello"), "#!/bin/sh\necho hello > ran\n", 0755);
	r.argv = argv;
	for (i = 0; i < 2; i++) {
		snprintf(name, sizeof(name), "%s", names[i]);
		cr_assert_eq(run(&r), 0, "%s", name);
		cr_expect_str_eq(slurp(at("ran")), "hello\n", "%s", name);
		cr_assert_eq(remove(at("ran")), 0);
	}
	/* Without a cwd, relative to the daemon's. */
	cr_assert_eq(chdir(tmp), 0);
	r.cwd = NULL;
	cr_assert_eq(run(&r), 0);
	cr_expect_str_eq(slurp("ran"), "hello\n");
}

Test(spawn, path_search)
{
	char             path[1024];
	char            *name = "kv-tool";
	char *const      argv[] = {name, NULL};
	char *const      envp[] = {path, NULL};
	struct spawn_req r = {.argv = argv, .envp = envp, .keep_fd = -1};
	enum spawn_stage stage;

	cr_assert_eq(mkdir(at("a"), 0755), 0);
	cr_assert_eq(mkdir(at("b"), 0755), 0);
	cr_assert_eq(mkdir(at("c"), 0755), 0);
	/* A directory of the name, then a file without execute permission. */
	cr_assert_eq(mkdir(at("c/kv-tool"), 0755), 0);
	put(at("a/kv-tool"), "#!/bin/sh\nexit 3\n", 0644);
	put(at("b/kv-tool"), "#!/bin/sh\nexit 7\n", 0755);

	/* The first usable entry wins; the directory and 0644 are skipped. */
	snprintf(path, sizeof(path), "PATH=/nonexistent:%s:%s:%s", at("c"),
	    at("a"), at("b"));
	cr_expect_eq(run(&r), 7);

	/* Only unusable candidates: EACCES, as execvp(3) says. */
	snprintf(path, sizeof(path), "PATH=%s:%s", at("c"), at("a"));
	cr_expect_eq(spawn_process(&r, &stage), -EACCES);
	cr_expect_eq(stage, SPAWN_EXEC);

	/* None: ENOENT. */
	snprintf(path, sizeof(path), "PATH=/nonexistent:%s", tmp);
	cr_expect_eq(spawn_process(&r, &stage), -ENOENT);
	cr_expect_eq(stage, SPAWN_EXEC);

	/* A relative entry is relative to the worker's cwd. */
	snprintf(path, sizeof(path), "PATH=b");
	r.cwd = tmp;
	cr_expect_eq(run(&r), 7);
	assert_no_children();
}

Test(spawn, path_from_daemon_without_path_in_envp)
{
	char *const      argv[] = {"true", NULL};
	char *const      envp[] = {"FOO=1", NULL};
	struct spawn_req r = {.argv = argv, .envp = envp, .keep_fd = -1};

	cr_assert_eq(setenv("PATH", "/usr/bin:/bin", 1), 0);
	cr_expect_eq(run(&r), 0);
	/* No PATH anywhere: the default one still has true. */
	cr_assert_eq(unsetenv("PATH"), 0);
	cr_expect_eq(run(&r), 0);
}

struct exec_case {
	const char *what;
	const char *file; /* in tmp, or absolute */
	const char *cwd;  /* NULL: none */
	int         keep_fd;
	int         err;
};

Test(spawn, exec_errors_are_synchronous)
{
	static const struct exec_case cases[] = {
	    {"missing file", "/nonexistent/kv-worker", NULL, -1, ENOENT},
	    {"missing dir in path", "plain/x", NULL, -1, ENOTDIR},
	    {"not executable", "plain", NULL, -1, EACCES},
	    {"garbage with exec bit", "garbage", NULL, -1, ENOEXEC},
	    {"a directory", "dir", NULL, -1, EACCES},
	    {"missing cwd", "/bin/true", "/nonexistent", -1, ENOENT},
	    {"bad keep_fd", "/bin/true", NULL, 999, EBADF},
	    {"empty name", "", NULL, -1, ENOENT},
	};
	struct spawn_req   r = {0};
	enum spawn_stage   stage;
	char               file[PATH_MAX];
	char *const        argv[] = {file, NULL};
	unsigned long long fds = fd_bits(0);
	size_t             i;
	pid_t              pid;

	put(at("plain"), "#!/bin/sh\nexit 0\n", 0644);
	put(at("garbage"), "\x01\x02 this is not a program\n", 0755);
	cr_assert_eq(mkdir(at("dir"), 0755), 0);
	cr_assert_eq(fcntl(999, F_GETFD), -1);
	r.argv = argv;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct exec_case *c = &cases[i];

		if (c->file[0] == '/' || c->file[0] == '\0')
			snprintf(file, sizeof(file), "%s", c->file);
		else
			snprintf(file, sizeof(file), "%s", at(c->file));
		r.cwd = c->cwd;
		r.keep_fd = c->keep_fd;
		stage = SPAWN_FORK;
		pid = spawn_process(&r, &stage);
		cr_expect_eq(pid, -c->err, "%s: got %d (%s), want -%s", c->what,
		    pid, strerror(-pid), strerrorname_np(c->err));
		cr_expect_eq(stage, SPAWN_EXEC, "%s", c->what);
		if (pid > 0)
			(void)reap(pid);
		assert_no_children();
	}
	cr_expect_eq(fd_bits(0), fds, "spawn_process() leaked an fd");
}

Test(spawn, no_argv)
{
	char *const      argv[] = {NULL};
	struct spawn_req r = {.argv = argv, .keep_fd = -1};
	enum spawn_stage stage;

	cr_expect_eq(spawn_process(&r, &stage), -EINVAL);
	r.argv = NULL;
	cr_expect_eq(spawn_process(&r, &stage), -EINVAL);
}

/*
 * An intermediate process spawns `sleep 30` and dies; the sleeper must die
 * of SIGKILL with it.  As a subreaper we inherit the orphan and reap it.
 */
Test(spawn, pdeathsig_kills_orphan)
{
	struct spawn_req r = {.keep_fd = -1};
	pid_t            mid, rc, pid = 0;
	int              p[2], st;
	double           t0;

	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	cr_assert_eq(pipe(p), 0);
	mid = fork();
	cr_assert_geq(mid, 0);
	if (mid == 0) {
		r.argv = sleeper;
		pid = spawn_process(&r, &(enum spawn_stage){0});
		if (pid < 0 || write(p[1], &pid, sizeof(pid)) != sizeof(pid))
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	cr_assert_eq(read(p[0], &pid, sizeof(pid)), sizeof(pid));
	close(p[0]);
	st = reap(mid);
	t0 = now();
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_assert_gt(pid, 0);
	while ((rc = waitpid(pid, &st, WNOHANG)) == 0) {
		if (now() - t0 > 1) {
			kill_reap(pid);
			cr_assert_fail(
			    "pid %d outlived its parent by 1 s", pid);
		}
		usleep(1000);
	}
	cr_assert_eq(rc, pid, "waitpid %d: %s", pid, strerror(errno));
	cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status %#x", st);
	cr_log_info("orphan died %.1f ms after its parent was reaped",
	    (now() - t0) * 1e3);
}

/*
 * Spawn and reap /bin/true N times in a child that first touches HEAP
 * bytes.  Returns spawns per second; every spawn must exit 0.
 */
static double
spawn_rate(size_t heap, int n)
{
	char *const      argv[] = {"/bin/true", NULL};
	struct spawn_req r = {.argv = argv, .keep_fd = -1};
	double           rate = 0, t0;
	int              p[2], i, st, bad = 0;
	pid_t            pid;
	char            *mem;

	cr_assert_eq(pipe(p), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		if (heap > 0) {
			if ((mem = malloc(heap)) == NULL)
				_exit(2);
			memset(mem, 0x5a, heap);
		}
		t0 = now();
		for (i = 0; i < n; i++) {
			pid = spawn_process(&r, &(enum spawn_stage){0});
			if (pid < 0 || waitpid(pid, &st, 0) != pid || st != 0)
				bad++;
		}
		rate = n / (now() - t0);
		if (bad > 0 || write(p[1], &rate, sizeof(rate)) != sizeof(rate))
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	cr_expect_eq(read(p[0], &rate, sizeof(rate)), sizeof(rate));
	close(p[0]);
	st = reap(pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "a spawn failed (heap %zu): status %#x", heap, st);
	return rate;
}

Test(spawn, cost_independent_of_parent_size)
{
	double small = spawn_rate(0, 200);
	double big = spawn_rate((size_t)512 << 20, 200);

	cr_log_info("/bin/true spawns/s: %.0f from a small parent, "
	            "%.0f from one with 512 MiB touched",
	    small, big);
	assert_no_children();
}
