/*
 * spawn: start one worker process, reporting exec failures synchronously.
 *
 * The child is made with clone(CLONE_VM | CLONE_VFORK): it borrows the
 * daemon's memory until it execs, so the cost of a spawn does not grow with
 * the daemon's size (a plain fork() copies the page tables), and the
 * daemon is suspended until the exec succeeds or fails, which makes the
 * errno of a failed exec available the moment clone() returns.  The child
 * makes only async-signal-safe calls.
 *
 * Every field of struct spawn_req that is zero asks for nothing: a request
 * made with a designated initializer that names only argv and keep_fd gets
 * the daemon's ids, umask, limits and cwd.
 */
#ifndef KEYVISOR_SUPERVISORD_SPAWN_H
#define KEYVISOR_SUPERVISORD_SPAWN_H

#include <sys/resource.h>
#include <sys/types.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

/* One setrlimit(2) for the child: RESOURCE is an RLIMIT_* constant. */
struct spawn_limit {
	int           resource;
	struct rlimit lim; /* rlim_cur <= rlim_max; RLIM_INFINITY allowed */
};

struct spawn_req {
	char *const    *argv; /* argv[0]: a path, or a name searched in PATH */
	char *const    *envp; /* the whole environment; NULL: environ */
	const char     *cwd;  /* NULL: the daemon's; entered with the new ids */
	const sigset_t *mask; /* the child's signal mask; NULL: empty */
	/*
	 * An fd to keep open in the child, or -1: the worker's end of the
	 * worker channel.  It may be close-on-exec (the flag is cleared in
	 * the child only) and keeps its number, which the daemon puts in
	 * envp as KEYVISOR_NOTIFY_FD itself.  Every other fd above 2 is
	 * closed in the child.
	 */
	int keep_fd;

	/*
	 * Identity.  With SET_IDS the child's real, effective and saved ids
	 * all become UID and GID, and its supplementary groups exactly the
	 * NGROUPS of GROUPS (none when NGROUPS is 0; GROUPS may then be
	 * NULL).  spawn makes no NSS lookup (getpwnam(3) and getgrouplist(3)
	 * are not async-signal-safe and may block on the network): the
	 * daemon resolves a kind's user and group, and computes GROUPS with
	 * getgrouplist(user, gid) as initgroups(3) would, when it loads the
	 * configuration, and keeps the array alive across spawns.  UID and
	 * GID may not be -1.
	 */
	bool         set_ids;
	uid_t        uid;
	gid_t        gid;
	const gid_t *groups;
	size_t       ngroups;

	bool   set_umask; /* the child's umask is UMASK, 0 included */
	mode_t umask;

	/*
	 * NLIMITS setrlimit(2) calls, in order, made before the ids change:
	 * a hard limit above the daemon's can be granted to a worker that is
	 * not root, and RLIMIT_NPROC is the worker's when the kernel counts
	 * the user's processes (ORDER IN THE CHILD, spawn.c).
	 */
	const struct spawn_limit *limits;
	size_t                    nlimits;
};

/* Where a failed spawn failed, for the restart policy. */
enum spawn_stage {
	SPAWN_FORK, /* clone() itself: EAGAIN, ENOMEM */
	SPAWN_EXEC, /* in the child, up to and including execve() */
};

/*
 * Start R.  Returns the child's pid, or -errno with *STAGE saying where.
 * The child is its own process-group leader with PR_SET_PDEATHSIG(SIGKILL),
 * every signal disposition default, the mask of R, R's limits, umask, ids
 * and cwd, and no fd above 2 but KEEP_FD (whose close-on-exec flag is
 * cleared).  A child that failed has been reaped.  argv[0] is resolved (PATH
 * search, or against CWD) before the clone, with execve()'s errno values;
 * the PATH search checks execute permission with the DAEMON's ids, so with
 * SET_IDS a file only the daemon may run is still chosen, and execve() then
 * fails with EACCES.  A request that is malformed (no argv, UID or GID -1,
 * NULL arrays with a count, a limit with an unknown resource or soft above
 * hard) is refused with -EINVAL before the clone.  What fails in the child
 * comes back as its errno, stage SPAWN_EXEC: EPERM from an id change that
 * is refused or does not take, EPERM from raising a hard limit without
 * CAP_SYS_RESOURCE, EACCES from a CWD the new ids may not enter, EAGAIN
 * from an execve() refused because the user is over RLIMIT_NPROC.
 * MT-unsafe: the caller must be single-threaded (see spawn.c).
 */
pid_t spawn_process(const struct spawn_req *r, enum spawn_stage *stage);

/*
 * Reserve fd number FD (at least 3) for the children's channel: it is
 * made a /dev/null placeholder, and from then on children share the
 * caller's fd table until they make their own (see SHARED FD TABLE in
 * spawn.c), so that a spawn costs the same however many fds the caller
 * holds.  Call it before opening anything else: whatever FD was is closed.
 * Returns 0 or -errno.
 */
int spawn_reserve_fd(int fd);

/* The number a child will see KEEP_FD as: the reserved slot, if any. */
int spawn_notify_fd(int keep_fd);

#endif /* KEYVISOR_SUPERVISORD_SPAWN_H */
