/*
 * spawn: start one worker process, reporting exec failures synchronously.
 *
 * The child is made with clone(CLONE_VM | CLONE_VFORK): it borrows the
 * daemon's memory until it execs, so the cost of a spawn does not grow with
 * the daemon's size (a plain fork() copies the page tables), and the
 * daemon is suspended until the exec succeeds or fails, which makes the
 * errno of a failed exec available the moment clone() returns.  The child
 * makes only async-signal-safe calls.
 */
#ifndef KEYVISOR_SUPERVISORD_SPAWN_H
#define KEYVISOR_SUPERVISORD_SPAWN_H

#include <signal.h>
#include <sys/types.h>

struct spawn_req {
	char *const    *argv; /* argv[0]: a path, or a name searched in PATH */
	char *const    *envp; /* the whole environment; NULL: environ */
	const char     *cwd;  /* NULL: the daemon's */
	const sigset_t *mask; /* the child's signal mask; NULL: empty */
	int             keep_fd; /* an fd to keep open in the child, or -1 */
};

/* Where a failed spawn failed, for the restart policy. */
enum spawn_stage {
	SPAWN_FORK, /* clone() itself: EAGAIN, ENOMEM */
	SPAWN_EXEC, /* in the child, up to and including execve() */
};

/*
 * Start R.  Returns the child's pid (its own process-group leader, with
 * PR_SET_PDEATHSIG(SIGKILL), every signal disposition default, the mask of
 * R, fds above 2 closed but KEEP_FD), or -errno with *STAGE saying where.
 * A child that failed has been reaped.  argv[0] is resolved (PATH search,
 * or against CWD) before the clone, with execve()'s errno values.
 * MT-unsafe: the caller must be single-threaded (see spawn.c).
 */
pid_t spawn_process(const struct spawn_req *r, enum spawn_stage *stage);

#endif /* KEYVISOR_SUPERVISORD_SPAWN_H */
