/*
 * spawn: start one worker process, reporting exec failures synchronously.
 *
 * The parent resolves argv[0] (PATH search included) before it clones, so
 * the child has nothing left to decide.  The child is made with
 * clone(CLONE_VM | CLONE_VFORK): it runs on a small stack of its own inside
 * the daemon's address space until it execs, and the daemon is suspended
 * until then.  The cost of a spawn therefore does not grow with the
 * daemon's size (fork() copies the page tables of every mapping), and the
 * errno of a failed exec is in the parent's memory the moment clone()
 * returns: B9's status pipe becomes one shared int.  (Valgrind runs
 * CLONE_VM | CLONE_VFORK as a plain fork, so under it the int stays 0 and
 * a failed exec shows up later, as an exit with status 127.)
 *
 * Invariants:
 * - The caller is single-threaded.  CLONE_VFORK suspends only the calling
 *   thread, so another thread would run on the memory the child is using.
 *   PR_SET_PDEATHSIG also fires when the parent THREAD exits, not the
 *   process.  keyvisord has one thread.
 * - The child stack is one static mapping, reused by every spawn.  It is
 *   free again when clone() returns: the child has then either exec'd (and
 *   lives in a new address space) or exited.  MT-unsafe, by the above.
 * - The child runs only async-signal-safe code (system calls through
 *   their plain wrappers or syscall(2)) and touches no memory of the
 *   parent but the struct child it is handed and the request it points to.
 *
 * spawn knows nothing about keys, registries or restart policies.
 */
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spawn.h"

/*
 * The child's stack.  Its deepest path is child_main() -> sigaction() or
 * execve(), a few hundred bytes, and under ASan the runtime's interceptors
 * run on it too; 64 KiB leaves ample room.  One PROT_NONE page below it
 * turns an overflow into a SIGSEGV in the child instead of a write into
 * whatever the kernel mapped next.
 */
#define STACK_SIZE (64 * 1024)

/* What execvp(3) searches when there is no PATH at all. */
#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

/*
 * The code that runs in the child is not instrumented by ASan.  Its frames
 * live on a stack ASan never registered, and the redzones they poison on
 * entry stay poisoned in the shadow memory the child shares with the
 * parent (CLONE_VM): execve() and _exit() never return to unpoison them.
 * The next child then trips over the stale poison (a "stack-use-after-
 * scope" in reset_signals() from the second spawn on), and ASan warns
 * about __asan_handle_no_return() on an unknown stack.  The child's code
 * is a straight line of system calls; there is nothing for ASan to check.
 */
#if defined(__SANITIZE_ADDRESS__)
#define CHILD_CODE __attribute__((no_sanitize("address")))
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHILD_CODE __attribute__((no_sanitize("address")))
#endif
#endif
#ifndef CHILD_CODE
#define CHILD_CODE
#endif

/*
 * SETXID IN A VFORK CHILD.  The child changes its ids with the raw system
 * calls, not glibc's setgroups()/setgid()/setuid().  Those give the POSIX
 * process-wide semantics by signalling every other thread glibc knows of
 * (SIGSETXID) and waiting for each to change its own ids, under a lock:
 * when the process has ever had a second thread, the child would walk the
 * DAEMON's thread list, in memory it shares, and could wait on a lock held
 * by a thread that does not run in it.  The kernel call changes the
 * calling task only, and the child is a process of one task (no
 * CLONE_THREAD), so it is exactly what is wanted.  glibc's own
 * posix_spawn() changes ids the same way for POSIX_SPAWN_RESETIDS.  The
 * setres*id() calls set the real, effective and saved ids at once, which
 * is what setuid() and setgid() do for a privileged caller; the 32-bit
 * variants exist where the plain ones take 16-bit ids.
 */
#ifdef SYS_setresuid32
#define NR_SETGROUPS SYS_setgroups32
#define NR_GETGROUPS SYS_getgroups32
#define NR_SETRESGID SYS_setresgid32
#define NR_SETRESUID SYS_setresuid32
#define NR_GETRESGID SYS_getresgid32
#define NR_GETRESUID SYS_getresuid32
#else
#define NR_SETGROUPS SYS_setgroups
#define NR_GETGROUPS SYS_getgroups
#define NR_SETRESGID SYS_setresgid
#define NR_SETRESUID SYS_setresuid
#define NR_GETRESGID SYS_getresgid
#define NR_GETRESUID SYS_getresuid
#endif

/*
 * What the parent hands the child.  It lives in the parent's frame, which
 * the child shares, and so does REQ: the child reads everything but ERR,
 * and writes ERR only when it is about to _exit(127).
 */
struct child {
	const struct spawn_req *req;
	const char             *path; /* argv[0] resolved */
	char *const            *envp; /* req->envp, or environ */
	sigset_t                mask; /* the mask the child execs with */
	pid_t                   ppid; /* the daemon, for the PDEATHSIG check */
	volatile int            err;  /* 0, or the errno the child died of */
};

/* A path being built in a caller's array. */
struct pbuf {
	char  *s;
	size_t size; /* of the array */
	size_t len;  /* of the path */
};

/* Append N bytes of S to B.  Returns 0 or -ENAMETOOLONG. */
static int
append(struct pbuf *b, const char *s, size_t n)
{
	if (n >= b->size - b->len)
		return -ENAMETOOLONG;
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
	return 0;
}

/*
 * Start B with "CWD/" when a path beginning with P is relative and CWD is
 * set, so that it names what it will name once the child has chdir'ed.
 */
static int
prefix(struct pbuf *b, const char *cwd, const char *p)
{
	int r;

	b->len = 0;
	b->s[0] = '\0';
	if (cwd == NULL || p[0] == '/')
		return 0;
	if ((r = append(b, cwd, strlen(cwd))) < 0)
		return r;
	return append(b, "/", 1);
}

/* The PATH the child will have: its own, else the daemon's, else a default. */
static const char *
search_path(char *const *envp)
{
	const char *p;

	for (; *envp != NULL; envp++)
		if (strncmp(*envp, "PATH=", 5) == 0)
			return *envp + 5;
	p = getenv("PATH");
	return p != NULL ? p : DEFAULT_PATH;
}

/*
 * Would execve() get past permission checks on PATH?  Returns 0, -EACCES
 * (not a regular file, or no execute permission for our effective ids), or
 * the -errno of stat(2).
 */
static int
probe(const char *path)
{
	struct stat st;

	if (stat(path, &st) == -1)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EACCES;
	if (faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) == -1)
		return -errno;
	return 0;
}

/*
 * Find NAME in the PATH of ENVP into B, as execvp(3) does.  A relative
 * PATH entry (the empty one is ".") is taken relative to CWD when set.
 * Returns 0, -EACCES if only unusable candidates exist, else -ENOENT.
 */
static int
search(const char *name, const char *cwd, char *const *envp, struct pbuf *b)
{
	const char *dir = search_path(envp), *end;
	int         r, res = -ENOENT;

	if (name[0] == '\0')
		return -ENOENT;
	for (;; dir = end + 1) {
		end = strchrnul(dir, ':');
		r = prefix(b, cwd, dir);
		if (r == 0 && end > dir)
			r = append(b, dir, (size_t)(end - dir));
		if (r == 0 && end > dir)
			r = append(b, "/", 1);
		if (r == 0)
			r = append(b, name, strlen(name));
		if (r == 0)
			r = probe(b->s);
		if (r == 0)
			return 0;
		if (r == -EACCES)
			res = -EACCES;
		if (*end == '\0')
			return res;
	}
}

/* The path execve() gets for R's argv[0], into B.  Returns 0 or -errno. */
static int
resolve(const struct spawn_req *r, char *const *envp, struct pbuf *b)
{
	const char *arg0 = r->argv[0];
	int         rc;

	if (strchr(arg0, '/') == NULL)
		return search(arg0, r->cwd, envp, b);
	if ((rc = prefix(b, r->cwd, arg0)) < 0)
		return rc;
	return append(b, arg0, strlen(arg0));
}

/*
 * The child's stack, mapped on first use and kept: returns its top, or NULL
 * with errno set.
 */
static void *
stack_top(void)
{
	static char *top;
	size_t       page = (size_t)sysconf(_SC_PAGESIZE);
	char        *base;
	int          err;

	if (top != NULL)
		return top;
	base = mmap(NULL, page + STACK_SIZE, PROT_NONE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (base == MAP_FAILED)
		return NULL;
	if (mprotect(base + page, STACK_SIZE, PROT_READ | PROT_WRITE) == -1) {
		err = errno;
		(void)munmap(base, page + STACK_SIZE);
		errno = err;
		return NULL;
	}
	top = base + page + STACK_SIZE;
	return top;
}

/*
 * SIGNALS IN A VFORK CHILD.  The child starts with a copy of the daemon's
 * dispositions but runs in the daemon's memory: a handler running in the
 * child would change the daemon's state behind its back.  So the parent
 * blocks every signal around clone(), the child sets every disposition to
 * SIG_DFL while they are blocked (SIG_IGN would survive execve(); handlers
 * would not, but must not run before it either), and only then installs
 * the mask the worker gets.  A signal that arrives after that meets a
 * default disposition: it is ignored or kills the child, which the parent
 * sees as a successful spawn followed by an exit, as after execve().
 * sigaction() fails for the two real-time signals glibc reserves; they have
 * no disposition to reset.
 */
CHILD_CODE static void
reset_signals(void)
{
	struct sigaction sa = {.sa_handler = SIG_DFL};
	int              sig;

	for (sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)sigaction(sig, &sa, NULL);
}

/*
 * SHARED FD TABLE
 *
 * A clone() without CLONE_FILES copies the daemon's whole fd table, and
 * the daemon holds one fd per worker (its end of the worker's channel):
 * with ten thousand workers that copy cost every spawn about 200 us more
 * than the exec itself.  Once a slot is reserved (spawn_reserve_fd()),
 * the child shares the table instead and makes its own small one: it
 * dup2()s KEEP onto the slot (in the shared table: the parent's
 * placeholder there is closed, and put back by the parent afterwards),
 * then close_range(slot + 1, ~0U, CLOSE_RANGE_UNSHARE) gives it a table
 * of its own holding only the fds below that, all the kernel copies.  The
 * worker finds its channel on the slot's number, 3 in keyvisord.
 */
static int slot = -1;        /* the reserved fd number, or -1 */
static int placeholder = -1; /* /dev/null, put back on the slot */

int
spawn_reserve_fd(int fd)
{
	int nul, rc;

	if (fd < 3)
		return -EINVAL;
	if ((nul = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1)
		return -errno;
	if (nul == fd) /* the slot holds it already: keep a spare */
		nul = fcntl(fd, F_DUPFD_CLOEXEC, fd + 1);
	else if (dup3(nul, fd, O_CLOEXEC) == -1)
		nul = -1;
	if (nul == -1) {
		rc = -errno;
		return rc;
	}
	slot = fd;
	placeholder = nul;
	return 0;
}

int
spawn_notify_fd(int keep_fd)
{
	return keep_fd < 0 ? -1 : slot >= 0 ? slot : keep_fd;
}

/* The shared-table way to CLOSE_FDS() below (see SHARED FD TABLE). */
CHILD_CODE static int
unshare_fds(int keep)
{
	unsigned int from = (unsigned)slot;

	if (keep >= 0) {
		if (dup2(keep, slot) == -1) /* clears close-on-exec */
			return -1;
		from++;
	}
	if (close_range(from, ~0U, CLOSE_RANGE_UNSHARE) == -1)
		return -1;
	/* Our own table now: what lay below the slot is closed cheaply. */
	return slot > 3 ? close_range(3, (unsigned)slot - 1, 0) : 0;
}

/*
 * Close every fd above 2 but KEEP, and clear KEEP's close-on-exec flag
 * (the daemon opens everything O_CLOEXEC).  Returns 0, or -1 with errno.
 */
CHILD_CODE static int
close_fds(int keep)
{
	unsigned int from = 3;

	if (slot >= 0)
		return unshare_fds(keep);

	if (keep >= 0 && fcntl(keep, F_SETFD, 0) == -1)
		return -1;
	if (keep >= 3) {
		if (keep > 3 && close_range(3, (unsigned)keep - 1, 0) == -1)
			return -1;
		from = (unsigned)keep + 1;
	}
	return close_range(from, ~0U, 0);
}

/* Apply R's limits in order.  Returns 0, or -1 with errno. */
CHILD_CODE static int
set_limits(const struct spawn_req *r)
{
	size_t i;

	for (i = 0; i < r->nlimits; i++)
		if (setrlimit(r->limits[i].resource, &r->limits[i].lim) == -1)
			return -1;
	return 0;
}

/*
 * Become R's groups, gid and uid, in that order: setgroups() and
 * setresgid() need CAP_SETGID, which setresuid() to a non-root uid takes
 * away.  Returns 0, or -1 with errno (EPERM when the change did not take).
 *
 * DROP CHECK.  Each call changes everything it was asked to or nothing,
 * but "returned 0" is not "happened": a seccomp filter can answer 0
 * without running the call, and a worker that silently kept root is the
 * one failure here that is worse than not starting.  So all three ids of
 * each kind are read back, and the number of supplementary groups (the
 * kernel keeps the list sorted, so its length is what can be compared
 * without copying it).
 */
CHILD_CODE static int
change_ids(const struct spawn_req *r)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	long  gid = (long)r->gid, uid = (long)r->uid;

	if (syscall(NR_SETGROUPS, (long)r->ngroups, r->groups) == -1 ||
	    syscall(NR_SETRESGID, gid, gid, gid) == -1 ||
	    syscall(NR_SETRESUID, uid, uid, uid) == -1)
		return -1;
	if (syscall(NR_GETRESGID, &rg, &eg, &sg) == -1 ||
	    syscall(NR_GETRESUID, &ru, &eu, &su) == -1)
		return -1;
	if (rg != r->gid || eg != r->gid || sg != r->gid || ru != r->uid ||
	    eu != r->uid || su != r->uid ||
	    syscall(NR_GETGROUPS, 0L, NULL) != (long)r->ngroups) {
		errno = EPERM;
		return -1;
	}
	return 0;
}

/*
 * The child.  Async-signal-safe calls only: it shares the daemon's memory,
 * including malloc's state and the errno of the daemon's one thread (no
 * CLONE_SETTLS, so the same TLS).  Clobbering that errno is harmless: the
 * daemon is suspended until this function execs or exits, and reads errno
 * afterwards only after calls that set it.
 *
 * ORDER IN THE CHILD.  Every step comes where the steps after it cannot
 * undo it and while the privilege it needs is still there:
 *  1. setpgid(0, 0): the worker leads its own group, which the daemon
 *     signals as a whole.
 *  2. Every disposition to SIG_DFL, all signals still blocked (SIGNALS IN
 *     A VFORK CHILD).
 *  3. The limits, before the ids change, for two reasons.  Raising a hard
 *     limit needs CAP_SYS_RESOURCE, which the worker's ids do not have.
 *     And the kernel counts a user's processes against RLIMIT_NPROC when
 *     setresuid() makes the task that user's, flagging it if over, and
 *     execve() then fails with EAGAIN: the worker's RLIMIT_NPROC has to be
 *     in place by then, or a user already at its limit gets one more.
 *  4. The umask, which needs no privilege and cannot fail.
 *  5. Groups, gid, uid, and the DROP CHECK.
 *  6. PR_SET_PDEATHSIG, then the getppid() re-check.  After the ids: the
 *     kernel clears the parent-death signal whenever the effective uid or
 *     gid changes, so armed earlier it would be lost for every worker that
 *     changes ids.  The re-check after arming covers a daemon that died at
 *     any moment since the clone.
 *  7. chdir(), with the worker's ids: a directory the user may not enter
 *     fails with EACCES, as it would in the user's own shell, instead of
 *     becoming the cwd of a worker that could not reach it by name (its
 *     own chdir("."), a re-exec or a relative path would fail later, far
 *     from the setting that caused it), and the daemon's privilege is not
 *     lent to get the worker into a directory its user is kept out of.
 *  8. Close every fd but keep_fd, whose close-on-exec flag is cleared.
 *     Nothing above needs an fd, and nothing above opens one.
 *  9. The worker's mask, last, so that no signal can reach the child
 *     between its setup and execve().
 * 10. execve().
 */
CHILD_CODE static int
child_main(void *arg)
{
	struct child           *c = arg;
	const struct spawn_req *r = c->req;

	if (setpgid(0, 0) == -1)
		goto fail;
	reset_signals();
	if (set_limits(r) == -1)
		goto fail;
	if (r->set_umask)
		(void)umask(r->umask);
	if (r->set_ids && change_ids(r) == -1)
		goto fail;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
		goto fail;
	/* The daemon died before PDEATHSIG was armed: nobody would reap us. */
	if (getppid() != c->ppid)
		_exit(127);
	if (r->cwd != NULL && chdir(r->cwd) == -1)
		goto fail;
	if (close_fds(r->keep_fd) == -1)
		goto fail;
	if (sigprocmask(SIG_SETMASK, &c->mask, NULL) == -1)
		goto fail;
	(void)execve(c->path, r->argv, c->envp);
fail:
	c->err = errno;
	_exit(127);
}

/*
 * Is the rest of R (argv aside) well-formed?  Returns 0 or -EINVAL.  A uid
 * or gid of -1 would ask setres*id() to leave that id alone.
 */
static int
check(const struct spawn_req *r)
{
	const struct spawn_limit *l;
	size_t                    i;

	if (r->set_ids && (r->uid == (uid_t)-1 || r->gid == (gid_t)-1 ||
	                      (r->ngroups > 0 && r->groups == NULL)))
		return -EINVAL;
	if (r->nlimits > 0 && r->limits == NULL)
		return -EINVAL;
	for (i = 0; i < r->nlimits; i++) {
		l = &r->limits[i];
		if (l->resource < 0 || l->resource >= RLIM_NLIMITS ||
		    l->lim.rlim_cur > l->lim.rlim_max)
			return -EINVAL;
	}
	return 0;
}

/* Reap PID, which has exited or is about to. */
static void
reap(pid_t pid)
{
	while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
		;
}

pid_t
spawn_process(const struct spawn_req *r, enum spawn_stage *stage)
{
	char         path[PATH_MAX];
	struct pbuf  b = {.s = path, .size = sizeof(path)};
	struct child c = {.req = r, .path = path};
	sigset_t     all, old;
	void        *top;
	pid_t        pid;
	int          rc;

	*stage = SPAWN_EXEC;
	if (r->argv == NULL || r->argv[0] == NULL)
		return -EINVAL;
	if ((rc = check(r)) < 0)
		return rc;
	c.envp = r->envp != NULL ? r->envp : environ;
	if ((rc = resolve(r, c.envp, &b)) < 0)
		return rc;
	if (r->mask != NULL)
		c.mask = *r->mask;
	else
		sigemptyset(&c.mask);
	c.ppid = getpid();

	*stage = SPAWN_FORK;
	if ((top = stack_top()) == NULL)
		return -errno;
	sigfillset(&all);
	(void)sigprocmask(SIG_SETMASK, &all, &old);
	pid = clone(child_main, top,
	    CLONE_VM | CLONE_VFORK | SIGCHLD | (slot >= 0 ? CLONE_FILES : 0),
	    &c);
	rc = errno;
	if (slot >= 0 && r->keep_fd >= 0) /* the child's dup2() went here */
		(void)dup3(placeholder, slot, O_CLOEXEC);
	(void)sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid == -1)
		return -rc;

	/* The child has exec'd, or exited after storing why in c.err. */
	if (c.err != 0) {
		*stage = SPAWN_EXEC;
		reap(pid);
		return -c.err;
	}
	return pid;
}
