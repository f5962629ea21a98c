/*
 * keyvisord: one process per key, found by its key, restarted by policy.
 *
 * main() sets up (init phase: any failure is fatal) and runs one epoll loop
 * over a signalfd, one timerfd, the listening socket and the clients (loop
 * phase: nothing may kill the daemon but a broken invariant).  There are no
 * signal handlers: every signal but the kernel's fault signals is blocked
 * and read from the signalfd.
 */
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

#include "daemon.h"
#include "exitcodes.h"
#include "log.h"
#include "paths.h"
#include "spawn.h"

#define CAPACITY_DEFAULT 65536u

extern char **environ;

uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static _Noreturn void
usage(void)
{
	fprintf(stderr,
	    "usage: keyvisord [-n NAME] [-c FILE] [--registry NAME] "
	    "[--capacity N]\n"
	    "                 [--max-children N] [--no-subreaper] "
	    "[-- MAIN_CMD [ARG...]]\n");
	exit(EXIT_USAGE);
}

static uint32_t
number(const char *opt, const char *s)
{
	const char *err;
	long long   n = strtonum(s, 1, UINT32_MAX / 2, &err);

	if (err != NULL) {
		fprintf(stderr, "keyvisord: %s: %s is %s\n", opt, s, err);
		exit(EXIT_USAGE);
	}
	return (uint32_t)n;
}

/*
 * The configuration file, at start-up: any error in it stops keyvisord
 * before it does anything (exit 2, the error on stderr as FILE:LINE: ...).
 */
static void
config_load(struct daemon *d)
{
	char err[512];

	if (d->conf_path == NULL)
		return;
	if (conf_load(d->conf_path, &d->conf, err, sizeof(err)) < 0) {
		fprintf(stderr, "keyvisord: %s\n", err);
		exit(EXIT_USAGE);
	}
}

static void
options(struct daemon *d, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"registry", required_argument, NULL, 'r'},
	    {"capacity", required_argument, NULL, 'C'},
	    {"max-children", required_argument, NULL, 'm'},
	    {"no-subreaper", no_argument, NULL, 'S'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	const char *name = NULL;
	int         ch, verbose = 0;

	d->subreaper = true;
	while ((ch = getopt_long(argc, argv, "+n:c:vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'n':
			name = optarg;
			break;
		case 'c':
			d->conf_path = optarg;
			break;
		case 'r':
			d->registry = optarg;
			break;
		case 'C':
			d->capacity = number("--capacity", optarg);
			break;
		case 'm':
			d->max_children = number("--max-children", optarg);
			break;
		case 'S':
			d->subreaper = false;
			break;
		case 'v':
			verbose++;
			break;
		case 'V':
			printf("keyvisord %s\n", KEYVISOR_VERSION);
			exit(0);
		case 'h':
		default:
			usage();
		}
	}
	if (optind < argc)
		d->main_argv = argv + optind;
	config_load(d);
	log_init("keyvisord", d->conf ? d->conf->log_level + verbose : 2 + verbose);
	if (name == NULL && d->conf != NULL)
		name = d->conf->instance;
	d->instance = paths_instance(name);
	if (!paths_name_ok(d->instance))
		fatalx("invalid instance name '%s'", d->instance);
	if (d->registry == NULL && d->conf != NULL)
		d->registry = d->conf->registry;
	if (d->registry == NULL)
		d->registry = d->instance;
	if (!paths_name_ok(d->registry))
		fatalx("invalid registry name '%s'", d->registry);
	if (d->capacity == 0 && d->conf != NULL && d->conf->has_capacity)
		d->capacity = d->conf->capacity;
	if (d->capacity == 0)
		d->capacity = CAPACITY_DEFAULT;
	if (d->max_children == 0 && d->conf != NULL &&
	    d->conf->has_max_children)
		d->max_children = d->conf->max_children;
	if (d->max_children == 0)
		d->max_children = d->capacity;
	/* Own copies: a reload frees the configuration they may come from. */
	if ((d->instance = strdup(d->instance)) == NULL ||
	    (d->registry = strdup(d->registry)) == NULL)
		fatal("unable to allocate the instance name");
}

/* What keyvisord forwards to the main command's process group. */
static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1,
    SIGUSR2, SIGWINCH};

/*
 * Block every signal but those the kernel raises for our own faults, and
 * read every blocked one from the signalfd: those we do not act on are
 * read and dropped.  A blocked signal nobody reads stays pending for good
 * (SigPnd in /proc/PID/status), and real-time ones queue up against the
 * uid's RLIMIT_SIGPENDING until sigqueue(3) fails for all of its
 * processes.  SIGPIPE is one of the dropped: writes use MSG_NOSIGNAL.  As
 * PID 1 the terminal stop signals are ignored too: nothing may stop the
 * init of a container.  Blocked and ignored signals are undone in every
 * child by spawn_process().
 *
 * INHERITED DISPOSITIONS.  SIG_IGN survives execve(), and a shell starts
 * "cmd &" with SIGINT and SIGQUIT ignored.  Blocked signals are still
 * queued for the signalfd when ignored, but an ignored SIGCHLD is not
 * harmless: the kernel then reaps every child itself, waitpid() fails with
 * ECHILD, and keyvisord never learns that a worker or the main command
 * exited.  So every disposition is made SIG_DFL first; none of the
 * blocked ones ever runs.
 */
static void
signals_setup(struct daemon *d)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV(TAG_SIGNAL, 0)};
	struct sigaction   dfl = {.sa_handler = SIG_DFL};
	sigset_t           all;
	static const int   faults[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT,
	              SIGTRAP, SIGSYS};
	static const int   stops[] = {SIGTSTP, SIGTTIN, SIGTTOU};
	size_t             i;
	int                sig;

	sigfillset(&all);
	for (i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
		sigdelset(&all, faults[i]);
	if (sigprocmask(SIG_SETMASK, &all, NULL) == -1)
		fatal("unable to block signals");
	/* It fails for SIGKILL, SIGSTOP and glibc's 32 and 33: none to undo. */
	for (sig = 1; sig < NSIG; sig++)
		(void)sigaction(sig, &dfl, NULL);
	for (i = 0; d->pid1 && i < sizeof(stops) / sizeof(stops[0]); i++)
		if (signal(stops[i], SIG_IGN) == SIG_ERR)
			fatal("unable to ignore signal %d", stops[i]);
	d->sigfd = signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
	if (d->sigfd == -1 || epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->sigfd, &ev))
		fatal("unable to set up the signalfd");
}

/* mkdir -p for the socket's directory; the last component is made 0700. */
static void
socket_dir(const char *path)
{
	char  dir[PATH_MAX], *p;
	char *slash;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		fatalx("socket path too long: %s", path);
	if ((slash = strrchr(dir, '/')) == NULL || slash == dir)
		return;
	*slash = '\0';
	for (p = dir + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		if (mkdir(dir, 0755) == -1 && errno != EEXIST)
			fatal("unable to create %s", dir);
		*p = '/';
	}
	if (mkdir(dir, 0700) == -1 && errno != EEXIST)
		fatal("unable to create %s", dir);
}

/*
 * Take an flock on PATH (created if need be), exclusive or shared, without
 * waiting.  Returns the fd, or -1 with errno EWOULDBLOCK when someone else
 * holds it.  A lock file removed by its previous holder between our open
 * and our lock is not the lock any more: compare inodes and try again.
 */
static int
lock_file(const char *path, int how)
{
	struct stat a, b;
	int         fd;

	for (;;) {
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd == -1)
			fatal("unable to open %s", path);
		if (flock(fd, how | LOCK_NB) == -1) {
			int e = errno;

			close(fd);
			errno = e;
			return -1;
		}
		if (fstat(fd, &a) == 0 && stat(path, &b) == 0 &&
		    a.st_ino == b.st_ino && a.st_dev == b.st_dev)
			return fd;
		close(fd);
	}
}

static void
instance_lock(struct daemon *d)
{
	char pid[32] = "";
	int  n;

	if (snprintf(d->lock_path, sizeof(d->lock_path), "%s.lock",
	        d->socket_path) >= (int)sizeof(d->lock_path))
		fatalx("socket path too long: %s", d->socket_path);
	d->lockfd = lock_file(d->lock_path, LOCK_EX);
	if (d->lockfd == -1 && errno == EWOULDBLOCK) {
		int fd = open(d->lock_path, O_RDONLY | O_CLOEXEC);

		if (fd >= 0) {
			n = (int)read(fd, pid, sizeof(pid) - 1);
			pid[n > 0 ? n : 0] = '\0';
			pid[strcspn(pid, "\n")] = '\0';
			close(fd);
		}
		fatalx("instance %s is already running (pid %s)", d->instance,
		    pid[0] ? pid : "unknown");
	}
	if (d->lockfd == -1)
		fatal("unable to lock %s", d->lock_path);
	n = snprintf(pid, sizeof(pid), "%d\n", (int)d->pid);
	if (ftruncate(d->lockfd, 0) == -1 || pwrite(d->lockfd, pid, (size_t)n, 0) != n)
		log_warn("unable to write %s", d->lock_path);
}

/*
 * The registry segment.  Every daemon that uses a registry holds a shared
 * flock on its lock file; one that can take it exclusively is alone, so a
 * segment already there is a dead predecessor's and is replaced.  One that
 * cannot joins the segment the others use.
 */
static void
registry_open(struct daemon *d)
{
	struct kv_reg_params p = {.capacity = d->capacity,
	    .mode = d->conf ? d->conf->registry_mode : 0};
	struct kv_reg       *old;
	char                 dir[PATH_MAX];
	int                  rc;

	if (paths_segment(d->registry, d->segment, sizeof(d->segment)) < 0)
		fatalx("invalid registry name '%s'", d->registry);
	snprintf(dir, sizeof(dir), "%s", d->socket_path);
	*strrchr(dir, '/') = '\0';
	if (snprintf(d->reg_lock_path, sizeof(d->reg_lock_path),
	        "%s/registry.%s.lock", dir, d->registry) >=
	    (int)sizeof(d->reg_lock_path))
		fatalx("socket directory too long: %s", dir);
	d->reglockfd = lock_file(d->reg_lock_path, LOCK_EX);
	if (d->reglockfd == -1) {
		d->reglockfd = lock_file(d->reg_lock_path, LOCK_SH);
		if (d->reglockfd == -1)
			fatal("unable to lock %s", d->reg_lock_path);
		if ((rc = kv_reg_open(d->segment, KV_REG_RDWR, &d->reg)) < 0)
			fatalx("unable to join registry /%s, used by another "
			       "daemon: %s", d->segment, kv_reg_strerror(rc));
		log_info("joined registry /%s shared with another daemon",
		    d->segment);
		return;
	}
	rc = kv_reg_open(d->segment, KV_REG_RDONLY, &old);
	if (rc == 0) {
		struct kv_reg_stats st;

		kv_reg_stats(old, &st);
		log_info("removed the stale registry /%s of pid %d (%u names)",
		    d->segment, st.creator_pid, st.count);
		kv_reg_close(old);
	} else if (rc != -ENOENT) {
		log_warnx("replaced the invalid registry /%s: %s", d->segment,
		    kv_reg_strerror(rc));
	}
	if (rc != -ENOENT && (rc = kv_reg_unlink(d->segment)) < 0)
		fatalx("unable to remove /%s: %s", d->segment, strerror(-rc));
	if ((rc = kv_reg_create(d->segment, &p, &d->reg)) < 0)
		fatalx("unable to create registry /%s: %s", d->segment,
		    kv_reg_strerror(rc));
	if (flock(d->reglockfd, LOCK_SH) == -1)
		fatal("unable to share the lock %s", d->reg_lock_path);
}

/* The workers' environment: ours without KEYVISOR_*, and 5 slots + NULL. */
static void
env_setup(struct daemon *d)
{
	size_t n = 0, i;

	while (environ[n] != NULL)
		n++;
	d->env = calloc(n + 6, sizeof(*d->env));
	if (d->env == NULL)
		fatal("unable to allocate the environment");
	for (i = 0; i < n; i++)
		if (strncmp(environ[i], "KEYVISOR_", 9) != 0)
			d->env[d->envc++] = environ[i];
}

void
loop_update_timer(struct daemon *d)
{
	struct itimerspec its = {0};
	uint64_t          t = sup_next_deadline(d);

	if (d->accept_paused_until != 0 &&
	    (t == 0 || d->accept_paused_until < t))
		t = d->accept_paused_until;
	if (d->main_kill_at != 0 && (t == 0 || d->main_kill_at < t))
		t = d->main_kill_at;
	if (t != 0) {
		its.it_value.tv_sec = (time_t)(t / 1000);
		its.it_value.tv_nsec = (long)(t % 1000) * 1000000;
	}
	if (timerfd_settime(d->timerfd, TFD_TIMER_ABSTIME, &its, NULL) == -1)
		log_warn("unable to arm the timer");
}

static void main_start(struct daemon *d);

/*
 * Every worker's channel costs the daemon one fd: take the whole hard
 * limit for them.
 */
static void
fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/*
 * With socket_group, that group's members may connect too: the socket
 * becomes 0660 and its directory 0750, both of that group (the peer check
 * in ctl.c lets them in).
 */
static void
socket_group(struct daemon *d)
{
	char dir[PATH_MAX];

	if (d->conf == NULL || !d->conf->has_socket_gid)
		return;
	d->socket_gid = d->conf->socket_gid;
	d->has_socket_gid = true;
	snprintf(dir, sizeof(dir), "%s", d->socket_path);
	*strrchr(dir, '/') = '\0';
	if (chown(d->socket_path, (uid_t)-1, d->socket_gid) == -1 ||
	    chmod(d->socket_path, 0660) == -1 ||
	    chown(dir, (uid_t)-1, d->socket_gid) == -1 || chmod(dir, 0750) == -1)
		fatal("unable to open %s to group %u", d->socket_path,
		    (unsigned)d->socket_gid);
}

int
daemon_reload(struct daemon *d, char *err, size_t len)
{
	struct conf *c;
	int          rc;

	if (d->conf_path == NULL) {
		snprintf(err, len, "no configuration file: keyvisord runs "
		                   "without -c");
		return -ENOENT;
	}
	if ((rc = conf_load(d->conf_path, &c, err, len)) < 0) {
		log_warnx("reload: %s; the configuration in force stays", err);
		return rc;
	}
	if ((c->instance && strcmp(c->instance, d->instance) != 0) ||
	    (c->registry && strcmp(c->registry, d->registry) != 0) ||
	    (c->has_capacity && c->capacity != d->capacity))
		log_warnx("reload: instance, registry and capacity cannot change "
		          "while keyvisord runs; ignored");
	d->bucket.rate = c->restart_rate;
	d->bucket.burst = c->restart_burst ? c->restart_burst : 1;
	if ((rc = sup_configure(d, c)) < 0) {
		conf_free(c);
		snprintf(err, len, "out of memory");
		return rc;
	}
	log_info("reloaded %s: %zu kinds", d->conf_path, d->nkinds);
	ctl_emit(d, "", json_pack("{s:s, s:i}", "event", "reloaded", "kinds",
	    (int)d->nkinds));
	return 0;
}

static void
init(struct daemon *d)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV(TAG_TIMER, 0)};
	int                rc;

	d->pid = getpid();
	d->pid1 = d->pid == 1;
	d->started_ms = now_ms();
	d->listenfd = d->lockfd = d->reglockfd = -1;
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->epfd == -1)
		fatal("unable to create the epoll instance");
	signals_setup(d);
	if (d->subreaper && prctl(PR_SET_CHILD_SUBREAPER, 1) == -1)
		fatal("unable to become a subreaper");
	if (paths_socket(d->instance, d->socket_path, sizeof(d->socket_path)))
		fatalx("socket path too long for instance %s", d->instance);
	socket_dir(d->socket_path);
	instance_lock(d);
	registry_open(d);
	env_setup(d);
	fd_limit();
	if (sup_init(d) < 0)
		fatalx("out of memory");
	if (d->conf != NULL) {
		struct conf *c = d->conf;

		d->conf = NULL; /* sup_configure() takes it */
		if (sup_configure(d, c) < 0)
			fatalx("out of memory");
		svc_bucket_init(&d->bucket, c->restart_rate, c->restart_burst,
		    now_ms());
	}
	d->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (d->timerfd == -1 || epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->timerfd, &ev))
		fatal("unable to set up the timer");
	if ((rc = ctl_listen(d)) < 0)
		fatalx("unable to listen on %s: %s", d->socket_path,
		    strerror(-rc));
	socket_group(d);
	log_info("instance %s ready: pid %d, socket %s, registry /%s, "
	         "capacity %u", d->instance, (int)d->pid, d->socket_path,
	    d->segment, d->capacity);
	if (d->main_argv != NULL)
		main_start(d);
}

/*
 * The main command: started once the socket listens, so that it can start
 * keyed workers at once.  It gets its own process group and, when
 * keyvisord was in the foreground of a terminal, that terminal's
 * foreground; stdin, stdout and stderr are ours.  If it cannot be
 * executed keyvisord exits as a shell would, 127 or 126.
 */
static void
main_start(struct daemon *d)
{
	struct spawn_req sr = {.argv = d->main_argv, .keep_fd = -1};
	enum spawn_stage stage;
	char             vars[3][320];
	pid_t            pid;

	snprintf(vars[0], sizeof(vars[0]), "KEYVISOR_INSTANCE=%s", d->instance);
	snprintf(vars[1], sizeof(vars[1]), "KEYVISOR_SOCKET=%s", d->socket_path);
	snprintf(vars[2], sizeof(vars[2]), "KEYVISOR_REGISTRY=%s", d->registry);
	d->env[d->envc] = vars[0];
	d->env[d->envc + 1] = vars[1];
	d->env[d->envc + 2] = vars[2];
	d->env[d->envc + 3] = NULL;
	sr.envp = d->env;
	pid = spawn_process(&sr, &stage);
	d->env[d->envc] = NULL;
	if (pid < 0) {
		log_warnx("unable to execute %s: %s", d->main_argv[0],
		    strerror(-pid));
		d->exit_status = pid == -ENOENT ? 127 : 126;
		daemon_shutdown(d, "no main command", false);
		return;
	}
	d->main_pid = pid;
	/* SIGTTOU is blocked, so a background keyvisord may do this. */
	if (isatty(STDIN_FILENO) && tcgetpgrp(STDIN_FILENO) == getpgrp())
		(void)tcsetpgrp(STDIN_FILENO, pid);
	log_info("main command %s started: pid %d", d->main_argv[0], pid);
}

void
daemon_main_exited(struct daemon *d, int status)
{
	struct svc_exit ex = svc_exit_from_status(status);
	char            how[96];

	svc_exit_describe(&ex, how, sizeof(how));
	log_info("main command pid %d %s", d->main_pid, how);
	d->exit_status = ex.signo != 0 ? 128 + ex.signo : ex.code;
	d->main_pid = 0;
	d->main_kill_at = 0;
	daemon_shutdown(d, "the main command exited", false);
}

void
daemon_shutdown(struct daemon *d, const char *why, bool by_request)
{
	if (by_request && d->main_pid > 0 && d->main_kill_at == 0) {
		(void)kill(-d->main_pid, SIGTERM);
		d->main_kill_at = now_ms() + 5000;
	}
	if (d->quit)
		return;
	log_info("%s: stopping %u workers", why, d->nchildren);
	d->quit = true;
	sup_shutdown(d);
}

/*
 * A signal for the main command: pass it to its process group.  Termination
 * signals also stop the keyed workers; keyvisord then exits when the main
 * command does, with its status.  Without a main command they stop
 * keyvisord, SIGHUP reloads the configuration, and SIGUSR1, SIGUSR2 and
 * SIGWINCH have nothing to do.
 */
static void
on_forwarded(struct daemon *d, int sig)
{
	bool terminate = sig == SIGTERM || sig == SIGINT || sig == SIGQUIT;
	char err[512];

	/* Without a main command, SIGHUP is ours: read the file again. */
	if (sig == SIGHUP && d->main_argv == NULL) {
		(void)daemon_reload(d, err, sizeof(err));
		return;
	}
	if (d->main_pid > 0 && kill(-d->main_pid, sig) == -1 &&
	    kill(d->main_pid, sig) == -1)
		log_warn("unable to forward SIG%s to the main command",
		    sigabbrev_np(sig));
	if (terminate)
		daemon_shutdown(d, sigabbrev_np(sig), false);
}

static bool
is_forwarded(int sig)
{
	size_t i;

	for (i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
		if (forwarded[i] == sig)
			return true;
	return false;
}

static void
on_signals(struct daemon *d)
{
	struct signalfd_siginfo si;
	bool                    chld = false;
	pid_t                   hint = 0;

	while (read(d->sigfd, &si, sizeof(si)) == sizeof(si)) {
		int sig = (int)si.ssi_signo;

		if (sig == SIGCHLD) {
			chld = true;
			hint = (pid_t)si.ssi_pid;
		} else if (is_forwarded(sig)) {
			on_forwarded(d, sig);
		} else { /* read only so that it does not stay pending */
			log_debug("ignored signal %d from pid %u", sig,
			    si.ssi_pid);
		}
	}
	/* SIGCHLD is only a hint: reap until nothing is left. */
	if (chld || d->quit)
		sup_reap(d, hint);
}

static void
on_timer(struct daemon *d)
{
	uint64_t expirations, now = now_ms();

	(void)!read(d->timerfd, &expirations, sizeof(expirations));
	if (d->accept_paused_until != 0 && now >= d->accept_paused_until) {
		struct epoll_event ev = {.events = EPOLLIN,
		    .data.u64 = EV(TAG_LISTEN, 0)};

		d->accept_paused_until = 0;
		(void)epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->listenfd, &ev);
	}
	if (d->main_kill_at != 0 && now >= d->main_kill_at && d->main_pid > 0) {
		log_warnx("the main command outlived its stop timeout; SIGKILL");
		(void)kill(-d->main_pid, SIGKILL);
		d->main_kill_at = 0;
	}
	sup_timers(d, now);
}

static void
dispatch(struct daemon *d, uint64_t data, uint32_t events)
{
	switch ((enum ev_tag)(data >> 32)) {
	case TAG_SIGNAL:
		on_signals(d);
		break;
	case TAG_TIMER:
		on_timer(d);
		break;
	case TAG_LISTEN:
		ctl_accept(d);
		break;
	case TAG_CLIENT:
		ctl_event(d, (uint32_t)data, events);
		break;
	case TAG_CHANNEL:
		sup_channel(d, (int)(uint32_t)data, events);
		break;
	}
}

/*
 * Loop phase.  It ends once shutdown has stopped every worker and the
 * replies owed have been sent (or a second has passed for a client that
 * will not read them).
 */
static void
loop(struct daemon *d)
{
	uint64_t flush_deadline = 0;

	for (;;) {
		struct epoll_event evs[64];
		int                i, n;

		if (d->quit && d->nchildren == 0 && d->main_pid == 0) {
			if (flush_deadline == 0)
				flush_deadline = now_ms() + 1000;
			if (ctl_flushed(d) || now_ms() >= flush_deadline)
				break;
		}
		loop_update_timer(d);
		d->turn_spawns = 0;
		n = epoll_wait(d->epfd, evs, 64, d->quit ? 100 : -1);
		if (n == -1 && errno != EINTR)
			fatal("epoll_wait");
		for (i = 0; i < n; i++)
			dispatch(d, evs[i].data.u64, evs[i].events);
	}
}

static void
fini(struct daemon *d)
{
	ctl_close_all(d);
	sup_fini(d);
	free(d->env);
	d->env = NULL;
	kv_reg_close(d->reg);
	/* The last daemon on the registry removes it. */
	if (flock(d->reglockfd, LOCK_EX | LOCK_NB) == 0) {
		kv_reg_unlink(d->segment);
		unlink(d->reg_lock_path);
	}
	close(d->reglockfd);
	unlink(d->lock_path);
	close(d->lockfd);
	close(d->timerfd);
	close(d->sigfd);
	close(d->epfd);
	log_info("instance %s stopped", d->instance);
	free((char *)d->instance); /* options() made them our own copies */
	free((char *)d->registry);
}

/*
 * Before anything is opened: fds 0, 1 and 2 exist (on /dev/null if we were
 * started without them, so that nothing of ours lands there), and fd 3 is
 * reserved for the workers' channels (spawn_reserve_fd()).
 */
static void
fds_setup(void)
{
	int fd, rc;

	for (fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) == -1 &&
		    open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd)
			exit(EXIT_NO_DAEMON);
#ifdef HAVE_VALGRIND_H
	/*
	 * valgrind cannot run clone(CLONE_FILES): under it, children copy
	 * the fd table (slower) and see their channel on its own number.
	 */
	if (RUNNING_ON_VALGRIND)
		return;
#endif
	if ((rc = spawn_reserve_fd(3)) < 0) {
		errno = -rc;
		fatal("unable to reserve fd 3");
	}
}

int
main(int argc, char **argv)
{
	struct daemon d = {0};

	fds_setup();
	options(&d, argc, argv);
	init(&d);
	loop(&d);
	fini(&d);
	return d.exit_status;
}
