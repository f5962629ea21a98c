/*
 * svc: the supervision of one key, as a pure state machine.
 *
 * A struct svc holds everything the daemon decides about one key: its
 * restart policy, its state, its restart history and backoff count.  Every
 * event (spawned, ready, reaped, timer, stop or restart request, spawn
 * failure) is a function that updates the struct and returns a small
 * struct svc_effects that the shell (loop.c, spawn.c, ctl.c) carries out:
 * spawn, signal the process group, arm the key's timer, forget the spec,
 * answer the waiting stop requests.
 *
 * Pure: no syscalls, no clock reads, no logging.  Times are uint64_t
 * milliseconds of a monotonic clock, always passed in as "now".  The only
 * allocation is svc_init()'s, and only for max_restarts above
 * SVC_HIST_INLINE.
 *
 * svc knows nothing about pids, names or the registry: the shell releases
 * a worker's name when it reaps it, before it calls svc_exited().
 *
 * STATE x EVENT: the next state ("-": ignored, state unchanged; "*":
 * with reply; "r": a restart is pending, set by restart, cleared by stop)
 *
 *            started  ready  exited      stop        restart     timeout
 *   STARTING RUNNING  -      -           GONE*       -           STARTING
 *   RUNNING  -        READY  policy      STOPPING    STOPPING+r  -
 *   READY    -        -      policy      STOPPING    STOPPING+r  -
 *   STOPPING -        -      GONE*, or   STOPPING-r  STOPPING+r  STOPPING
 *                            STARTING*                           (SIGKILL)
 *                            if r
 *   BACKOFF  -        -      -           GONE*       STARTING    STARTING
 *   FAILED   -        -      -           GONE*       STARTING    -
 *   GONE     -        -      -           -*          -           -
 *
 * "policy" is the restart decision: FORGET (GONE), SPAWN (STARTING), WAIT
 * (BACKOFF) or FAIL (FAILED).  A spawn failure in STARTING is a crash
 * (BACKOFF or FAILED).  STARTING -> STARTING with a deadline is a spawn
 * deferred for want of a token from the daemon's bucket (svc_defer()).
 */
#ifndef KEYVISOR_SUPERVISORD_SVC_H
#define KEYVISOR_SUPERVISORD_SVC_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Restart history kept inside struct svc: policies with max_restarts up to
 * this many need no allocation (8 timestamps, 64 bytes).
 */
#define SVC_HIST_INLINE 8

/*
 * Largest accepted max_restarts: its history costs 8 bytes a restart, so
 * 1000 is 8 KB for that key, already far beyond the 2 KiB per worker the
 * daemon aims at; anything larger is a typo, not a policy.
 */
#define SVC_MAX_RESTARTS 1000

/*
 * Exponential backoff starts from max(restart_delay, this) (see
 * svc_backoff_ms()), and a spawn that failed is retried after at least
 * this long: fork's EAGAIN means the process table or memory is exhausted,
 * and retrying faster than 10 times a second per key only adds to it.
 */
#define SVC_BACKOFF_BASE_MS 100
#define SVC_SPAWN_RETRY_MS  100

enum svc_restart {
	SVC_PERMANENT, /* always restart */
	SVC_TRANSIENT, /* restart after an abnormal exit only */
	SVC_TEMPORARY, /* never restart */
};

/* Durations are in milliseconds. */
struct svc_policy {
	enum svc_restart restart;          /* default SVC_PERMANENT */
	uint32_t         max_restarts;     /* default 3 */
	uint64_t         max_seconds_ms;   /* default 5000 */
	uint64_t         restart_delay_ms; /* default 0: restart at once */
	uint64_t         backoff_max_ms;   /* default 0: no backoff */
	uint64_t         backoff_reset_ms; /* default 10000: a stable run */
	uint64_t         stop_timeout_ms;  /* default 5000: then SIGKILL */
	int              stop_signal;      /* default SIGTERM */
};

enum svc_state {
	SVC_STARTING, /* to be spawned now, or when a spawn token is free */
	SVC_RUNNING,  /* spawned */
	SVC_READY,    /* spawned and said it is ready */
	SVC_STOPPING, /* stop signal sent; SIGKILL at deadline_ms */
	SVC_BACKOFF,  /* crashed; restart at deadline_ms */
	SVC_FAILED,   /* gave up; kept so that status can say why */
	SVC_GONE,     /* to be forgotten; the key may be started afresh */
};

/* Why a key is SVC_FAILED; svc_reason() turns it into text. */
enum svc_why {
	SVC_WHY_NONE,
	SVC_WHY_INTENSITY, /* more than max_restarts in max_seconds */
	SVC_WHY_EXEC,      /* a restart's exec failed with a lasting error */
};

/* Where a spawn failed, for svc_spawn_failed(). */
enum svc_stage {
	SVC_STAGE_FORK, /* fork itself: EAGAIN, ENOMEM */
	SVC_STAGE_EXEC, /* in the child up to and including execve */
};

/* How a worker ended.  Exactly one of code and signo is meaningful. */
struct svc_exit {
	int  code;  /* exit code, when signo is 0 */
	int  signo; /* the signal that killed it, or 0 */
	bool core;  /* it dumped core */
};

enum svc_action {
	SVC_ACT_NONE,   /* nothing to do */
	SVC_ACT_SPAWN,  /* spawn now (or svc_defer() for a spawn token) */
	SVC_ACT_WAIT,   /* restart pending: arm the timer, call svc_timeout() */
	SVC_ACT_SIGNAL, /* send fx.signo to the worker's process group */
	SVC_ACT_FORGET, /* state is GONE: svc_fini() and drop the key */
	SVC_ACT_FAIL,   /* state is FAILED: report svc_reason() */
};

struct svc_effects {
	enum svc_action action;
	int             signo;       /* for SVC_ACT_SIGNAL */
	uint64_t        deadline_ms; /* the key's timer from now on; 0 = none */
	bool            reply;       /* answer the stop requests waiting */
};

/*
 * Per-key supervision state.  Initialise with svc_init(), release with
 * svc_fini().  Members are readable (status output); write them only
 * through the functions below.  The struct may be moved with memcpy.
 */
struct svc {
	struct svc_policy policy; /* read-only after svc_init() */
	enum svc_state    state;
	enum svc_why      why;             /* set while SVC_FAILED */
	uint32_t          incarnation;     /* restarts so far; 0 at first */
	uint32_t          crashes;         /* in a row since a stable run */
	uint64_t          started_ms;      /* when the current run began */
	uint64_t          deadline_ms;     /* BACKOFF, STOPPING, STARTING */
	struct svc_exit   last;            /* how the last run ended */
	int               last_err;        /* errno of a failed spawn, or 0 */
	enum svc_stage    last_stage;      /* where it failed, if last_err */
	bool              restart_pending; /* restart once stopped */
	uint32_t          hist_cap;        /* = max_restarts */
	uint32_t          hist_len;        /* restart times held */
	uint32_t          hist_next;       /* ring slot written next */
	union {
		uint64_t  local[SVC_HIST_INLINE]; /* hist_cap <= INLINE */
		uint64_t *heap;                   /* hist_cap > INLINE */
	} hist;
};

/* Policy and names. */
struct svc_policy svc_policy_default(void);
/* Returns 0, or -EINVAL if a field is out of range. */
int         svc_policy_check(const struct svc_policy *p);
const char *svc_restart_name(enum svc_restart r);
/* Returns 0, or -EINVAL for anything but the three names. */
int         svc_restart_parse(const char *name, enum svc_restart *out);
const char *svc_state_name(enum svc_state st);

/* Exits. */
struct svc_exit svc_exit_from_status(int wstatus);
/*
 * True for exit code 0, the one exit after which a transient worker is not
 * restarted.  Whether the supervisor was stopping it is the state's business.
 */
bool svc_exit_is_normal(const struct svc_exit *e);
/* "exited with code 1", "killed by SIGSEGV (core dumped)"; as snprintf. */
int svc_exit_describe(const struct svc_exit *e, char *buf, size_t len);

/*
 * Life cycle.  svc_init() returns 0, -EINVAL (svc_policy_check()) or
 * -ENOMEM; the key starts in SVC_STARTING, to be spawned by the caller.
 * svc_fini() frees and leaves the struct GONE, ready for svc_init().
 */
int  svc_init(struct svc *s, const struct svc_policy *p);
void svc_fini(struct svc *s);
/*
 * A new policy for a supervised key (its kind was reloaded); the newest
 * restart times are kept.  Returns 0, or -EINVAL / -ENOMEM unchanged.
 */
int  svc_set_policy(struct svc *s, const struct svc_policy *p);

/*
 * Events.  The ones returning int return 0, or -EINVAL and change nothing
 * when the event does not apply in the current state.  The ones returning
 * effects return SVC_ACT_NONE in that case.  In every effects returned,
 * deadline_ms equals svc_next_deadline(s) after the call.
 */
int svc_started(struct svc *s, uint64_t now);    /* STARTING -> RUNNING */
int svc_ready(struct svc *s);                    /* RUNNING -> READY */
int svc_defer(struct svc *s, uint64_t until_ms); /* STARTING: no token */
struct svc_effects svc_exited(
    struct svc *s, const struct svc_exit *e, uint64_t now);
struct svc_effects svc_stop(struct svc *s, uint64_t now);
struct svc_effects svc_request_restart(struct svc *s, uint64_t now);
struct svc_effects svc_timeout(struct svc *s, uint64_t now);
struct svc_effects svc_spawn_failed(
    struct svc *s, enum svc_stage stage, int err, uint64_t now);
/* The key's next deadline, or 0 for none. */
uint64_t svc_next_deadline(const struct svc *s);

/* Restart pacing: the delay before the n-th crash in a row is restarted. */
uint64_t svc_backoff_ms(const struct svc_policy *p, uint32_t n);
/* Why the key is FAILED, "" otherwise; returns as snprintf. */
int svc_reason(const struct svc *s, char *buf, size_t len);

/*
 * Daemon-wide spawn-rate limit: a token bucket holding up to burst tokens,
 * refilled at rate tokens a second.  rate 0 means unlimited.
 */
struct svc_bucket {
	uint32_t rate;    /* tokens a second; 0 = unlimited */
	uint32_t burst;   /* capacity in tokens; at least 1 */
	uint64_t milli;   /* tokens held, in thousandths of a token */
	uint64_t last_ms; /* when milli was last brought up to date */
};

/* Starts full.  A burst of 0 is taken as 1. */
void svc_bucket_init(
    struct svc_bucket *b, uint32_t rate, uint32_t burst, uint64_t now);
/* Takes a token if one is available. */
bool svc_bucket_take(struct svc_bucket *b, uint64_t now);
/* When svc_bucket_take() will next succeed: now, or a later time. */
uint64_t svc_bucket_next_ms(const struct svc_bucket *b, uint64_t now);

/*
 * Seconds with up to 3 decimals ("5", "0.25", ".5") to milliseconds.
 * Returns 0, or -EINVAL for anything else (sign, blanks, suffix, a 4th
 * decimal, a bare ".", "5.", overflow); *out is set on success only.
 */
int svc_parse_duration_ms(const char *s, uint64_t *out);
/* The inverse: 5000 -> "5", 250 -> "0.25"; returns as snprintf. */
int svc_format_duration_ms(uint64_t ms, char *buf, size_t len);

#endif /* KEYVISOR_SUPERVISORD_SVC_H */
