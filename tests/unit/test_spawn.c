/*
 * spawn_process(): real processes, checked from the outside.  The children
 * are /bin/sh, /bin/sleep and /bin/true, so the test depends on nothing we
 * build.  What a child looks like after exec (mask, dispositions, fds,
 * process group) is read from /proc/PID of a sleeping child, since any
 * program that reported it itself might change it first.  Every test reaps
 * what it started and signals only its own children.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
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
 * Skip the running test.  Criterion 2.4.1 does not run the suite's .fini
 * after cr_skip_test(), so the scratch directory is removed here.
 */
#define SKIP(...)                                                              \
	do {                                                                   \
		teardown();                                                    \
		tmp[0] = '\0';                                                 \
		cr_skip_test(__VA_ARGS__);                                     \
		return;                                                        \
	} while (0)

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

/* The state letter of PID in /proc/PID/stat, or '?'. */
static char
proc_state(pid_t pid)
{
	char        path[64];
	const char *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	p = strrchr(slurp(path), ')');
	return p != NULL && p[1] == ' ' ? p[2] : '?';
}

/*
 * Wait up to 5 s for PID to be asleep in sleep.  Returns 0, or -1 if it
 * never is.  Its name changes at execve(), but the dynamic loader and
 * sleep's own start-up still run after that and open files (fd 3 for a
 * moment); state S (interruptible sleep) after the exec means nanosleep.
 */
static int
wait_sleep(pid_t pid)
{
	char   comm[64];
	double end = now() + 5;

	snprintf(comm, sizeof(comm), "/proc/%d/comm", pid);
	while (strcmp(slurp(comm), "sleep\n") != 0 || proc_state(pid) != 'S') {
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
 * Spawn `sleep 30` per *TMPL and return the fds it has that it should not
 * have, as bits, or ~0 if it failed: it must have our fds 0-2 and keep_fd.
 */
static unsigned long long
extra_fds(const struct spawn_req *tmpl)
{
	struct spawn_req   r = *tmpl;
	int                keep = r.keep_fd;
	unsigned long long want =
	    (fd_bits(0) & 7) | (keep >= 0 ? 1ULL << keep : 0);
	unsigned long long got = ~0ULL;
	pid_t              pid;

	r.argv = sleeper;
	pid = spawn_process(&r, &(enum spawn_stage){0});
	if (pid < 0)
		return ~0ULL;
	if (wait_sleep(pid) == 0)
		got = fd_bits(pid);
	(void)kill(pid, SIGKILL);
	(void)waitpid(pid, NULL, 0);
	return (got & want) != want ? ~0ULL : got & ~want;
}

static unsigned long long
sleeper_extra_fds(int keep)
{
	return extra_fds(&(struct spawn_req){.keep_fd = keep});
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
 * An intermediate process spawns `sleep 30` per R and dies; the sleeper
 * must die of SIGKILL with it.  As a subreaper we inherit the orphan and
 * reap it.
 */
static void
orphan_dies(struct spawn_req *r)
{
	pid_t  mid, rc, pid = 0;
	int    p[2], st;
	double t0;

	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	cr_assert_eq(pipe(p), 0);
	mid = fork();
	cr_assert_geq(mid, 0);
	if (mid == 0) {
		r->argv = sleeper;
		pid = spawn_process(r, &(enum spawn_stage){0});
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

Test(spawn, pdeathsig_kills_orphan)
{
	orphan_dies(&(struct spawn_req){.keep_fd = -1});
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

/*
 * Identity, umask, limits, and the order they are applied in.  Changing ids
 * needs root, as it does in keyvisord; those tests skip without it.  A
 * worker that has dropped to nobody cannot write into our scratch
 * directory, so what it got is read from /proc/PID of a sleeping child
 * again.  Steps that must FAIL inside spawn_process() run in a forked
 * intermediate process that first gives up something (its ids, a
 * capability) or installs a seccomp filter, since neither can be undone;
 * it sends back what spawn_process() said, in a struct outcome.
 */
static bool
is_root(void)
{
	return geteuid() == 0;
}

/* A user to drop to, its group, and its groups as keyvisord computes them. */
struct who {
	uid_t uid;
	gid_t gid;
	gid_t groups[64];
	int   ngroups;
};

/* nobody, with nogroup (else nobody's primary group).  False if none. */
static bool
nobody(struct who *w)
{
	struct passwd *pw = getpwnam("nobody");
	struct group  *gr = getgrnam("nogroup");

	if (pw == NULL)
		return false;
	w->uid = pw->pw_uid;
	w->gid = gr != NULL ? gr->gr_gid : pw->pw_gid;
	w->ngroups = 64;
	cr_assert_geq(
	    getgrouplist(pw->pw_name, w->gid, w->groups, &w->ngroups), 0);
	return true;
}

static void
become(struct spawn_req *r, const struct who *w)
{
	r->set_ids = true;
	r->uid = w->uid;
	r->gid = w->gid;
	r->groups = w->groups;
	r->ngroups = (size_t)w->ngroups;
}

#define NEED_ROOT_AND_NOBODY(w)                                                \
	do {                                                                   \
		if (!is_root())                                                \
			SKIP("changing ids needs root");                       \
		if (!nobody(w))                                                \
			SKIP("no user nobody");                                \
	} while (0)

/* Field NAME of /proc/PID/status, without its tab and trailing blanks. */
static const char *
status_str(pid_t pid, const char *name)
{
	static char buf[1024];
	char        path[64];
	size_t      len = strlen(name), n;
	FILE       *f;
	bool        found = false;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	while (!found && fgets(buf, sizeof(buf), f) != NULL)
		found = strncmp(buf, name, len) == 0 && buf[len] == ':';
	fclose(f);
	cr_assert(found, "no %s in %s", name, path);
	n = strlen(buf);
	while (n > len + 1 && strchr(" \t\n", buf[n - 1]) != NULL)
		buf[--n] = '\0';
	return buf + len + 1 + strspn(buf + len + 1, " \t");
}

/* "I\tI\tI\tI": real, effective, saved and filesystem id, as in status. */
static const char *
four(unsigned int id)
{
	static char buf[64];

	snprintf(buf, sizeof(buf), "%u\t%u\t%u\t%u", id, id, id, id);
	return buf;
}

static int
gid_cmp(const void *a, const void *b)
{
	gid_t x = *(const gid_t *)a, y = *(const gid_t *)b;

	return x < y ? -1 : x > y;
}

/* The N groups of G as the kernel lists them in status: sorted, spaced. */
static const char *
group_list(const gid_t *g, size_t n)
{
	static char buf[1024];
	gid_t       s[64];
	size_t      i, len = 0;

	cr_assert_leq(n, 64);
	if (n > 0)
		memcpy(s, g, n * sizeof(*g));
	qsort(s, n, sizeof(*s), gid_cmp);
	buf[0] = '\0';
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%u",
		    i > 0 ? " " : "", s[i]);
	return buf;
}

static void
expect_ids(pid_t pid, uid_t uid, gid_t gid, const gid_t *g, size_t n)
{
	char want[64];

	snprintf(want, sizeof(want), "%s", four(uid));
	cr_expect_str_eq(status_str(pid, "Uid"), want);
	snprintf(want, sizeof(want), "%s", four(gid));
	cr_expect_str_eq(status_str(pid, "Gid"), want);
	snprintf(want, sizeof(want), "%s", group_list(g, n));
	cr_expect_str_eq(status_str(pid, "Groups"), want);
}

/* A zeroed request leaves the ids alone: the worker gets ours. */
Test(spawn, ids_default_unchanged)
{
	static const gid_t mine[] = {4243, 4242};
	struct spawn_req   r = {.keep_fd = -1};
	gid_t              g[64];
	int                n;
	pid_t              pid;

	if (is_root())
		cr_assert_eq(setgroups(2, mine), 0);
	n = getgroups(64, g);
	cr_assert_geq(n, 0);
	pid = spawn_sleeper(&r);
	expect_ids(pid, getuid(), getgid(), g, (size_t)n);
	kill_reap(pid);
}

Test(spawn, ids_drop_to_nobody)
{
	struct spawn_req r = {.keep_fd = -1};
	struct who       w;
	pid_t            pid;

	NEED_ROOT_AND_NOBODY(&w);
	become(&r, &w);
	pid = spawn_sleeper(&r);
	expect_ids(pid, w.uid, w.gid, w.groups, (size_t)w.ngroups);
	kill_reap(pid);
	/* The daemon is still root. */
	cr_expect_str_eq(status_str(getpid(), "Uid"), four(0));
}

/* The supplementary groups are exactly GROUPS: ours go, none are added. */
Test(spawn, ids_supplementary_groups_exact)
{
	static const gid_t mine[] = {777, 778};
	static const gid_t want[] = {4243, 100, 4242};
	struct spawn_req   r = {.keep_fd = -1};
	struct who         w;
	pid_t              pid;

	NEED_ROOT_AND_NOBODY(&w);
	cr_assert_eq(setgroups(2, mine), 0);
	become(&r, &w);
	r.groups = want;
	r.ngroups = 3;
	pid = spawn_sleeper(&r);
	expect_ids(pid, w.uid, w.gid, want, 3);
	kill_reap(pid);

	r.groups = NULL;
	r.ngroups = 0;
	pid = spawn_sleeper(&r);
	expect_ids(pid, w.uid, w.gid, NULL, 0);
	kill_reap(pid);
}

/* What spawn_process() said in an intermediate process. */
struct outcome {
	int   setup;    /* 0, or the errno with which PREP failed */
	pid_t rc;       /* spawn_process()'s return */
	int   stage;    /* its *stage */
	int   leftover; /* children the intermediate still had */
};

/*
 * Fork; in the child, run PREP(ARG), then spawn R (killing what starts).
 * No assertions in the child; it leaves with _exit(), so that ASan's leak
 * check, which cannot work in a process that changed ids, does not run.
 */
static struct outcome
spawn_elsewhere(int (*prep)(void *), void *arg, const struct spawn_req *r)
{
	struct outcome   o = {0};
	enum spawn_stage stage = SPAWN_FORK;
	int              p[2], st;
	pid_t            pid;

	cr_assert_eq(pipe(p), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(p[0]);
		o.setup = prep(arg);
		if (o.setup == 0) {
			o.rc = spawn_process(r, &stage);
			o.stage = (int)stage;
			if (o.rc > 0) {
				(void)kill(o.rc, SIGKILL);
				(void)waitpid(o.rc, NULL, 0);
			}
			errno = 0;
			while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
				o.leftover++;
			if (pid == 0 || errno != ECHILD)
				o.leftover++;
		}
		_exit(write(p[1], &o, sizeof(o)) == sizeof(o) ? 0 : 1);
	}
	close(p[1]);
	cr_assert_eq(read(p[0], &o, sizeof(o)), sizeof(o));
	close(p[0]);
	st = reap(pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
	return o;
}

static void
expect_refused(const struct outcome *o, int err)
{
	cr_expect_eq(o->rc, -err, "got %d (%s), want -%s", o->rc,
	    o->rc < 0 ? strerror(-o->rc) : "a pid", strerrorname_np(err));
	cr_expect_eq(o->stage, SPAWN_EXEC);
	cr_expect_eq(o->leftover, 0, "a failed spawn left a child");
}

/* Become W entirely, as a daemon not run as root would be. */
static int
drop_to(void *arg)
{
	const struct who *w = arg;

	if (setgroups((size_t)w->ngroups, w->groups) == -1 ||
	    setgid(w->gid) == -1 || setuid(w->uid) == -1)
		return errno;
	return 0;
}

/*
 * A daemon that is not root cannot change ids (setgroups() needs
 * CAP_SETGID even to the ids it has), nor raise a hard limit.
 */
Test(spawn, ids_refused_unprivileged)
{
	struct spawn_req   r = {.argv = sleeper, .keep_fd = -1};
	struct spawn_limit l = {RLIMIT_NOFILE, {0, 0}};
	struct who         w;
	struct outcome     o;

	NEED_ROOT_AND_NOBODY(&w);
	r.set_ids = true; /* to root: uid 0, gid 0, no groups */
	o = spawn_elsewhere(drop_to, &w, &r);
	cr_assert_eq(o.setup, 0, "drop to nobody: %s", strerror(o.setup));
	expect_refused(&o, EPERM);

	r.set_ids = false;
	/* Linux bounds this one by fs.nr_open, so it is never infinite. */
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &l.lim), 0);
	cr_assert_neq(l.lim.rlim_max, RLIM_INFINITY);
	l.lim.rlim_max++;
	r.limits = &l;
	r.nlimits = 1;
	o = spawn_elsewhere(drop_to, &w, &r);
	expect_refused(&o, EPERM);
}

/* Give up CAP_SETUID and keep the rest of root. */
static int
lose_setuid(void *arg)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct   d[2];

	if (syscall(SYS_capget, &h, d) == -1)
		return errno;
	d[0].effective &= ~(1U << CAP_SETUID);
	d[0].permitted &= ~(1U << CAP_SETUID);
	if (syscall(SYS_capset, &h, d) == -1)
		return errno;
	return 0;
}

/* setgroups() and setgid() work, setuid() does not: the spawn fails. */
Test(spawn, ids_setuid_refused)
{
	struct spawn_req r = {.argv = sleeper, .keep_fd = -1};
	struct who       w;
	struct outcome   o;

	NEED_ROOT_AND_NOBODY(&w);
	become(&r, &w);
	o = spawn_elsewhere(lose_setuid, NULL, &r);
	cr_assert_eq(o.setup, 0, "capset: %s", strerror(o.setup));
	expect_refused(&o, EPERM);
}

/*
 * Make system call *ARG return 0 without running, as a seccomp filter or
 * a broken sandbox can.  No architecture check: the filter lives and dies
 * with a throwaway process that makes only native calls.  We first drop
 * our own supplementary groups, so that a faked setgroups() leaves a list
 * whose length differs from nobody's (the DROP CHECK compares lengths).
 */
static int
fake_call(void *arg)
{
	struct sock_filter f[] = {
	    BPF_STMT(
	        BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)*(long *)arg, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 0),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};

	if (setgroups(0, NULL) == -1 ||
	    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == -1)
		return errno;
	return 0;
}

/* The calls spawn.c makes (its NR_* macros). */
#ifdef SYS_setresuid32
#define TEST_NR_SETRESUID SYS_setresuid32
#define TEST_NR_SETRESGID SYS_setresgid32
#define TEST_NR_SETGROUPS SYS_setgroups32
#else
#define TEST_NR_SETRESUID SYS_setresuid
#define TEST_NR_SETRESGID SYS_setresgid
#define TEST_NR_SETGROUPS SYS_setgroups
#endif

/* A call that "succeeds" without changing anything is caught (DROP CHECK). */
Test(spawn, ids_drop_verified)
{
	static const long faked[] = {
	    TEST_NR_SETRESUID, TEST_NR_SETRESGID, TEST_NR_SETGROUPS};
	struct spawn_req r = {.argv = sleeper, .keep_fd = -1};
	struct who       w;
	struct outcome   o;
	size_t           i;

	NEED_ROOT_AND_NOBODY(&w);
	become(&r, &w);
	for (i = 0; i < 3; i++) {
		o = spawn_elsewhere(fake_call, (void *)&faked[i], &r);
		if (o.setup == EINVAL || o.setup == ENOSYS)
			SKIP("no seccomp filters here");
		cr_assert_eq(o.setup, 0, "seccomp: %s", strerror(o.setup));
		cr_log_info("faking system call %ld", faked[i]);
		expect_refused(&o, EPERM);
	}
}

Test(spawn, ids_malformed)
{
	static const gid_t       g[] = {100};
	const struct spawn_limit bad[] = {
	    {-1, {0, 0}},
	    {RLIM_NLIMITS, {0, 0}},
	    {RLIMIT_CORE, {2, 1}},
	};
	struct spawn_req r = {.argv = sleeper, .keep_fd = -1};
	enum spawn_stage stage;
	size_t           i;

	r.set_ids = true;
	r.uid = (uid_t)-1;
	cr_expect_eq(spawn_process(&r, &stage), -EINVAL);
	r.uid = 1;
	r.gid = (gid_t)-1;
	cr_expect_eq(spawn_process(&r, &stage), -EINVAL);
	r.gid = 1;
	r.ngroups = 1;
	cr_expect_eq(spawn_process(&r, &stage), -EINVAL);
	r.groups = g;
	r.set_ids = false;
	r.nlimits = 1;
	cr_expect_eq(spawn_process(&r, &stage), -EINVAL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r.limits = &bad[i];
		stage = SPAWN_FORK;
		cr_expect_eq(
		    spawn_process(&r, &stage), -EINVAL, "limit %zu", i);
		cr_expect_eq(stage, SPAWN_EXEC);
	}
	assert_no_children();
}

Test(spawn, umask_of_request)
{
	struct spawn_req r = {.keep_fd = -1};
	mode_t           old = umask(077);
	pid_t            pid;

	/* Unset: ours.  Set, even to 0: the request's, and ours stays. */
	pid = spawn_sleeper(&r);
	cr_expect_str_eq(status_str(pid, "Umask"), "0077");
	kill_reap(pid);
	r.set_umask = true;
	r.umask = 027;
	pid = spawn_sleeper(&r);
	cr_expect_str_eq(status_str(pid, "Umask"), "0027");
	kill_reap(pid);
	r.umask = 0;
	pid = spawn_sleeper(&r);
	cr_expect_str_eq(status_str(pid, "Umask"), "0000");
	kill_reap(pid);
	cr_expect_eq(umask(old), 077);
}

/* The soft and hard limit named NAME in /proc/PID/limits. */
static void
limit_of(pid_t pid, const char *name, char soft[32], char hard[32])
{
	char   path[64], line[256];
	size_t len = strlen(name);
	FILE  *f;
	int    n = 0;

	snprintf(path, sizeof(path), "/proc/%d/limits", pid);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	while (n != 2 && fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, name, len) == 0 && line[len] == ' ')
			n = sscanf(line + len, "%31s %31s", soft, hard);
	fclose(f);
	cr_assert_eq(n, 2, "no \"%s\" in %s", name, path);
}

static const char *
rlim_str(rlim_t v, char buf[32])
{
	if (v == RLIM_INFINITY)
		return "unlimited";
	snprintf(buf, 32, "%llu", (unsigned long long)v);
	return buf;
}

static void
expect_limit(pid_t pid, const char *name, struct rlimit want)
{
	char soft[32], hard[32], buf[32];

	limit_of(pid, name, soft, hard);
	cr_expect_str_eq(soft, rlim_str(want.rlim_cur, buf), "%s soft", name);
	cr_expect_str_eq(hard, rlim_str(want.rlim_max, buf), "%s hard", name);
}

static const char *const limit_names[] = {
    [RLIMIT_NOFILE] = "Max open files",
    [RLIMIT_CORE] = "Max core file size",
    [RLIMIT_NPROC] = "Max processes",
};

/* Lowering needs no privilege, so the limits are within our hard ones. */
Test(spawn, limits_applied)
{
	static const int    res[] = {RLIMIT_NOFILE, RLIMIT_CORE, RLIMIT_NPROC};
	static const rlim_t want[][2] = {{64, 128}, {0, 4096}, {100, 200}};
	struct spawn_limit  l[3];
	struct rlimit       ours[3], after;
	struct spawn_req    r = {.limits = l, .nlimits = 3, .keep_fd = -1};
	pid_t               pid;
	int                 i;

	for (i = 0; i < 3; i++) {
		cr_assert_eq(getrlimit(res[i], &ours[i]), 0);
		if (ours[i].rlim_max < want[i][1])
			SKIP("hard %s below %llu", limit_names[res[i]],
			    (unsigned long long)want[i][1]);
		l[i].resource = res[i];
		l[i].lim.rlim_cur = want[i][0];
		l[i].lim.rlim_max = want[i][1];
	}
	pid = spawn_sleeper(&r);
	for (i = 0; i < 3; i++)
		expect_limit(pid, limit_names[res[i]], l[i].lim);
	kill_reap(pid);
	for (i = 0; i < 3; i++) {
		cr_assert_eq(getrlimit(res[i], &after), 0);
		cr_expect(after.rlim_cur == ours[i].rlim_cur &&
		              after.rlim_max == ours[i].rlim_max,
		    "our own %s changed", limit_names[res[i]]);
	}
}

/*
 * The limits are set before the ids change: a worker at its user's
 * RLIMIT_NPROC is refused.  The kernel counts the user's processes when
 * setresuid() runs, with the limit then in force, and execve() fails with
 * EAGAIN; set after the drop, the limit would be too late to count.
 */
Test(spawn, limits_before_drop_nproc)
{
	struct spawn_limit l = {RLIMIT_NPROC, {0, 0}};
	struct spawn_req   r = {.keep_fd = -1};
	enum spawn_stage   stage = SPAWN_FORK;
	struct who         w;
	pid_t              first, pid;

	NEED_ROOT_AND_NOBODY(&w);
	become(&r, &w);
	first = spawn_sleeper(&r); /* nobody has one process now */
	r.limits = &l;
	r.nlimits = 1;
	pid = spawn_process(&r, &stage);
	cr_expect_eq(pid, -EAGAIN, "got %d (%s)", pid,
	    pid < 0 ? strerror(-pid) : "a pid");
	cr_expect_eq(stage, SPAWN_EXEC);
	if (pid > 0)
		kill_reap(pid);
	kill_reap(first);
	assert_no_children();
}

/* Does this process have CAP_SYS_RESOURCE?  (Containers often drop it.) */
static bool
have_sys_resource(void)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct   d[2];

	cr_assert_eq(syscall(SYS_capget, &h, d), 0);
	return (d[CAP_SYS_RESOURCE / 32].effective &
	           (1U << (CAP_SYS_RESOURCE % 32))) != 0;
}

/* A hard limit above the daemon's, for a worker that is not root. */
Test(spawn, limits_raised_before_drop)
{
	struct spawn_limit l = {RLIMIT_NOFILE, {0, 0}};
	struct spawn_req   r = {.limits = &l, .nlimits = 1, .keep_fd = -1};
	struct rlimit      ours, lower;
	struct who         w;
	pid_t              pid;

	NEED_ROOT_AND_NOBODY(&w);
	if (!have_sys_resource())
		SKIP("no CAP_SYS_RESOURCE to raise a hard limit with");
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &ours), 0);
	lower.rlim_max = 256;
	lower.rlim_cur = 256;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &lower), 0);
	l.lim.rlim_cur = 512;
	l.lim.rlim_max = 1024;
	become(&r, &w);
	pid = spawn_sleeper(&r);
	expect_limit(pid, "Max open files", l.lim);
	kill_reap(pid);
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &ours), 0);
}

/* Where PID's cwd is, resolved. */
static const char *
cwd_of(pid_t pid)
{
	static char buf[PATH_MAX];
	char        path[64];
	ssize_t     n;

	snprintf(path, sizeof(path), "/proc/%d/cwd", pid);
	n = readlink(path, buf, sizeof(buf) - 1);
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	return buf;
}

/*
 * The cwd is entered with the worker's ids: a directory that only root
 * may enter fails for nobody, as `cd` would in nobody's shell.
 */
Test(spawn, cwd_entered_as_worker)
{
	struct spawn_req r = {.keep_fd = -1};
	enum spawn_stage stage = SPAWN_FORK;
	struct who       w;
	char             real[PATH_MAX];
	pid_t            pid;

	NEED_ROOT_AND_NOBODY(&w);
	cr_assert_eq(chmod(tmp, 0711), 0);
	cr_assert_eq(mkdir(at("private"), 0700), 0);
	cr_assert_eq(mkdir(at("open"), 0755), 0);
	r.argv = sleeper;
	r.cwd = at("private");
	become(&r, &w);
	pid = spawn_process(&r, &stage);
	cr_expect_eq(pid, -EACCES, "got %d (%s)", pid,
	    pid < 0 ? strerror(-pid) : "a pid");
	cr_expect_eq(stage, SPAWN_EXEC);
	if (pid > 0)
		kill_reap(pid);
	assert_no_children();

	r.cwd = at("open");
	pid = spawn_sleeper(&r);
	cr_assert_not_null(realpath(at("open"), real));
	cr_expect_str_eq(cwd_of(pid), real);
	kill_reap(pid);

	/* Root itself may enter it. */
	r.set_ids = false;
	r.cwd = at("private");
	pid = spawn_sleeper(&r);
	cr_assert_not_null(realpath(at("private"), real));
	cr_expect_str_eq(cwd_of(pid), real);
	kill_reap(pid);
}

/*
 * The worker channel: one end of a SOCK_SEQPACKET socketpair, close-on-
 * exec like every fd of keyvisord, kept open through the drop to nobody
 * and usable by the worker, with nothing else beside 0-2.  dash's >&N
 * takes one digit and Criterion holds fds 3-9, so the spawning runs in a
 * child that may put the worker's end on fd 9.
 */
Test(spawn, keep_fd_survives_id_drop)
{
	char *const      argv[] = {SH, "-c", "printf READY >&9", NULL};
	struct spawn_req r = {.keep_fd = 9};
	struct who       w;
	char             buf[16] = "";
	int              sv[2], st;
	ssize_t          n;
	pid_t            pid;

	NEED_ROOT_AND_NOBODY(&w);
	become(&r, &w);
	cr_assert_eq(
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		if (sv[1] != 9 &&
		    (dup3(sv[1], 9, O_CLOEXEC) != 9 || close(sv[1]) == -1))
			_exit(2);
		if (extra_fds(&r) != 0)
			_exit(3);
		r.argv = argv;
		pid = spawn_process(&r, &(enum spawn_stage){0});
		if (pid < 0 || waitpid(pid, &st, 0) != pid || st != 0)
			_exit(4);
		_exit(0);
	}
	close(sv[1]);
	st = reap(pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "status %#x (2: dup, 3: other fds, 4: the worker failed)", st);
	n = recv(sv[0], buf, sizeof(buf) - 1, MSG_DONTWAIT);
	cr_assert_eq(n, 5, "recv: %zd (%s)", n, strerror(errno));
	cr_expect_str_eq(buf, "READY");
	close(sv[0]);
}

/* The kernel clears PDEATHSIG when ids change; it must be armed after. */
Test(spawn, pdeathsig_survives_id_drop)
{
	struct spawn_req r = {.keep_fd = -1};
	struct who       w;

	NEED_ROOT_AND_NOBODY(&w);
	become(&r, &w);
	orphan_dies(&r);
}
