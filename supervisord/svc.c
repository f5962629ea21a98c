/*
 * svc.c: restart policy, intensity window, backoff and the per-key state
 * machine, plus the daemon-wide spawn token bucket and the duration
 * syntax shared by the CLI and the config.
 *
 * Invariants:
 *  - deadline_ms is non-zero only in STOPPING (SIGKILL time), BACKOFF
 *    (restart time) and STARTING (waiting for a spawn token).
 *  - the history ring holds the times of the last min(hist_cap, restarts)
 *    restarts since svc_init() or the last revival, oldest first from
 *    slot hist_next - hist_len (mod hist_cap).
 *  - incarnation grows by one for every restart decided, including one
 *    whose spawn then fails: a number is never reused for another run.
 *
 * Pure: no syscalls, no clock, no logging (see svc.h).
 */
#include "svc.h"

#include <sys/wait.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * 56 (policy) + 72 (state) + 64 (inline history) on LP64: the daemon's
 * budget is 2 KiB per worker in all, and this is its largest part.
 */
_Static_assert(sizeof(struct svc) <= 200, "struct svc grew past 200 bytes");

/* now + delay, saturating, and never 0 since 0 means "no deadline". */
static uint64_t
after(uint64_t now, uint64_t delay)
{
	uint64_t t = now + delay;

	if (t < now)
		return UINT64_MAX;
	return t == 0 ? 1 : t;
}

static uint32_t
inc(uint32_t n)
{
	return n == UINT32_MAX ? n : n + 1;
}

static struct svc_effects
effects(const struct svc *s, enum svc_action action)
{
	struct svc_effects fx = {.action = action};

	fx.deadline_ms = s->deadline_ms;
	return fx;
}

/* Policy and names. */

struct svc_policy
svc_policy_default(void)
{
	struct svc_policy p = {
	    .restart = SVC_PERMANENT,
	    .max_restarts = 3,
	    .max_seconds_ms = 5000,
	    .restart_delay_ms = 0,
	    .backoff_max_ms = 0,
	    .backoff_reset_ms = 10000,
	    .stop_timeout_ms = 5000,
	    .stop_signal = SIGTERM,
	};

	return p;
}

int
svc_policy_check(const struct svc_policy *p)
{
	if (svc_restart_name(p->restart) == NULL)
		return -EINVAL;
	if (p->max_restarts > SVC_MAX_RESTARTS)
		return -EINVAL;
	if (p->stop_signal <= 0 || p->stop_signal >= NSIG)
		return -EINVAL;
	return 0;
}

/* NULL for a value outside the enum, which svc_policy_check() relies on. */
const char *
svc_restart_name(enum svc_restart r)
{
	switch (r) {
	case SVC_PERMANENT:
		return "permanent";
	case SVC_TRANSIENT:
		return "transient";
	case SVC_TEMPORARY:
		return "temporary";
	}
	return NULL;
}

int
svc_restart_parse(const char *name, enum svc_restart *out)
{
	static const enum svc_restart all[] = {
	    SVC_PERMANENT, SVC_TRANSIENT, SVC_TEMPORARY};
	size_t i;

	if (name == NULL)
		return -EINVAL;
	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (strcmp(name, svc_restart_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	}
	return -EINVAL;
}

const char *
svc_state_name(enum svc_state st)
{
	switch (st) {
	case SVC_STARTING:
		return "starting";
	case SVC_RUNNING:
		return "running";
	case SVC_READY:
		return "ready";
	case SVC_STOPPING:
		return "stopping";
	case SVC_BACKOFF:
		return "backoff";
	case SVC_FAILED:
		return "failed";
	case SVC_GONE:
		return "gone";
	}
	return "?";
}

/* Exits. */

struct svc_exit
svc_exit_from_status(int wstatus)
{
	struct svc_exit e = {0};

	if (WIFSIGNALED(wstatus)) {
		e.signo = WTERMSIG(wstatus);
		e.core = WCOREDUMP(wstatus) != 0;
	} else {
		e.code = WEXITSTATUS(wstatus);
	}
	return e;
}

bool
svc_exit_is_normal(const struct svc_exit *e)
{
	return e->signo == 0 && e->code == 0;
}

int
svc_exit_describe(const struct svc_exit *e, char *buf, size_t len)
{
	const char *abbrev;

	if (e->signo == 0)
		return snprintf(buf, len, "exited with code %d", e->code);
	abbrev = sigabbrev_np(e->signo);
	if (abbrev == NULL)
		return snprintf(buf, len, "killed by signal %d%s", e->signo,
		    e->core ? " (core dumped)" : "");
	return snprintf(buf, len, "killed by SIG%s%s", abbrev,
	    e->core ? " (core dumped)" : "");
}

/* Life cycle. */

static uint64_t *
hist(struct svc *s)
{
	return s->hist_cap > SVC_HIST_INLINE ? s->hist.heap : s->hist.local;
}

int
svc_init(struct svc *s, const struct svc_policy *p)
{
	int r;

	r = svc_policy_check(p);
	if (r < 0)
		return r;
	memset(s, 0, sizeof(*s));
	s->policy = *p;
	s->state = SVC_STARTING;
	s->hist_cap = p->max_restarts;
	if (s->hist_cap > SVC_HIST_INLINE) {
		s->hist.heap = calloc(s->hist_cap, sizeof(uint64_t));
		if (s->hist.heap == NULL)
			return -ENOMEM;
	}
	return 0;
}

/*
 * Give S the policy P, as a reload of its kind does.  The restart history
 * carries over: its newest min(restarts held, P's max_restarts) times, so
 * that the intensity window still counts the restarts before the change.
 * Returns 0, or -EINVAL / -ENOMEM with S unchanged.
 */
int
svc_set_policy(struct svc *s, const struct svc_policy *p)
{
	uint64_t  keep[SVC_MAX_RESTARTS], *heap = NULL, *h;
	uint32_t  n, i;
	int       r;

	if ((r = svc_policy_check(p)) < 0)
		return r;
	if (p->max_restarts > SVC_HIST_INLINE &&
	    (heap = calloc(p->max_restarts, sizeof(*heap))) == NULL)
		return -ENOMEM;
	n = s->hist_len < p->max_restarts ? s->hist_len : p->max_restarts;
	for (i = 0; i < n; i++) /* oldest of the kept first */
		keep[i] = hist(s)[(s->hist_next + s->hist_cap - n + i) %
		    s->hist_cap];
	if (s->hist_cap > SVC_HIST_INLINE)
		free(s->hist.heap);
	s->policy = *p;
	s->hist_cap = p->max_restarts;
	if (heap != NULL)
		s->hist.heap = heap;
	h = hist(s);
	for (i = 0; i < n; i++)
		h[i] = keep[i];
	s->hist_len = n;
	s->hist_next = s->hist_cap != 0 ? n % s->hist_cap : 0;
	return 0;
}

void
svc_fini(struct svc *s)
{
	if (s->hist_cap > SVC_HIST_INLINE)
		free(s->hist.heap);
	memset(s, 0, sizeof(*s));
	s->state = SVC_GONE;
}

/*
 * INTENSITY: ERLANG'S ARITHMETIC IN max_restarts TIMESTAMPS
 *
 * Erlang's supervisor (and Elixir's DynamicSupervisor) keeps a list of
 * restart times.  On a crash at "now" it prepends now, keeps the entries
 * with now <= then + period (an entry exactly max_seconds old still
 * counts), and gives up when the list is longer than max_restarts.  Since
 * times only grow, an entry dropped once would be dropped again later, so
 * the kept list is exactly "every past restart within the period, plus
 * now", and Erlang gives up exactly when
 *
 *	#{past restarts t : now - t <= max_seconds} >= max_restarts.
 *
 * That needs only the max_restarts most recent restarts: the condition
 * holds iff there are max_restarts of them and the oldest of those is in
 * the window.  A ring of max_restarts times is therefore exact, and
 * max_restarts = 0 gives up on the first crash.  The crash that gives up
 * is not recorded; the history is cleared on revival.
 *
 * Erlang counts in whole seconds of monotonic time; we use the same
 * inequality on milliseconds, so the window is exactly max_seconds wide
 * instead of between max_seconds and max_seconds + 1 s.  The time
 * recorded is the crash's (the decision's), not the later respawn's, as
 * in Erlang.
 */
static bool
window_full(struct svc *s, uint64_t now)
{
	uint64_t oldest;

	if (s->hist_cap == 0)
		return true;
	if (s->hist_len < s->hist_cap)
		return false;
	oldest = hist(s)[s->hist_next]; /* a full ring's next slot */
	return now <= oldest || now - oldest <= s->policy.max_seconds_ms;
}

static void
hist_push(struct svc *s, uint64_t now)
{
	hist(s)[s->hist_next] = now;
	s->hist_next = (s->hist_next + 1) % s->hist_cap;
	if (s->hist_len < s->hist_cap)
		s->hist_len++;
}

/*
 * BACKOFF
 *
 * The n-th crash in a row (n = 1 after a stable run) waits restart_delay
 * when n is 1 or when backoff is off (backoff_max <= restart_delay), else
 * min(backoff_max, max(restart_delay, 100) << (n - 1)): 0, 200, 400, 800 ms
 * ... with the defaults' floor of 0.  base << k exceeds backoff_max iff
 * base > backoff_max >> k, which cannot overflow; k >= 64 always does.
 */
uint64_t
svc_backoff_ms(const struct svc_policy *p, uint32_t n)
{
	uint64_t base = p->restart_delay_ms;
	uint32_t k;

	if (p->backoff_max_ms <= p->restart_delay_ms || n <= 1)
		return p->restart_delay_ms;
	if (base < SVC_BACKOFF_BASE_MS)
		base = SVC_BACKOFF_BASE_MS;
	k = n - 1;
	if (k >= 64 || base > p->backoff_max_ms >> k)
		return p->backoff_max_ms;
	return base << k;
}

static struct svc_effects
fail(struct svc *s, enum svc_why why)
{
	s->state = SVC_FAILED;
	s->why = why;
	s->deadline_ms = 0;
	return effects(s, SVC_ACT_FAIL);
}

static struct svc_effects
forget(struct svc *s, bool reply)
{
	struct svc_effects fx;

	s->state = SVC_GONE;
	s->deadline_ms = 0;
	s->restart_pending = false;
	fx = effects(s, SVC_ACT_FORGET);
	fx.reply = reply;
	return fx;
}

/*
 * A crash (s->crashes already counts it) that the policy would restart:
 * give up, restart now, or restart after a delay of at least floor_ms.
 */
static struct svc_effects
crashed(struct svc *s, uint64_t now, uint64_t floor_ms)
{
	uint64_t delay;

	if (window_full(s, now))
		return fail(s, SVC_WHY_INTENSITY);
	hist_push(s, now);
	s->incarnation = inc(s->incarnation);
	delay = svc_backoff_ms(&s->policy, s->crashes);
	if (delay < floor_ms)
		delay = floor_ms;
	if (delay == 0) {
		s->state = SVC_STARTING;
		s->deadline_ms = 0;
		return effects(s, SVC_ACT_SPAWN);
	}
	s->state = SVC_BACKOFF;
	s->deadline_ms = after(now, delay);
	return effects(s, SVC_ACT_WAIT);
}

/* Events. */

int
svc_started(struct svc *s, uint64_t now)
{
	if (s->state != SVC_STARTING)
		return -EINVAL;
	s->state = SVC_RUNNING;
	s->started_ms = now;
	s->deadline_ms = 0;
	return 0;
}

/* Idempotent: a second notification while READY is no error. */
int
svc_ready(struct svc *s)
{
	if (s->state != SVC_RUNNING && s->state != SVC_READY)
		return -EINVAL;
	s->state = SVC_READY;
	return 0;
}

/*
 * The shell got SVC_ACT_SPAWN but the daemon's bucket has no token:
 * stay STARTING, and svc_timeout() at until_ms says SPAWN again.
 */
int
svc_defer(struct svc *s, uint64_t until_ms)
{
	if (s->state != SVC_STARTING)
		return -EINVAL;
	s->deadline_ms = until_ms == 0 ? 1 : until_ms;
	return 0;
}

static bool
has_worker(enum svc_state st)
{
	switch (st) {
	case SVC_RUNNING:
	case SVC_READY:
	case SVC_STOPPING:
		return true;
	case SVC_STARTING:
	case SVC_BACKOFF:
	case SVC_FAILED:
	case SVC_GONE:
		return false;
	}
	return false;
}

static bool
restarts_after(enum svc_restart r, const struct svc_exit *e)
{
	switch (r) {
	case SVC_PERMANENT:
		return true;
	case SVC_TRANSIENT:
		return !svc_exit_is_normal(e);
	case SVC_TEMPORARY:
		return false;
	}
	return false;
}

/* The worker we were stopping is gone: a stop is never a crash. */
static struct svc_effects
stopped(struct svc *s)
{
	struct svc_effects fx;

	if (!s->restart_pending)
		return forget(s, true);
	s->restart_pending = false;
	s->crashes = 0;
	s->incarnation = inc(s->incarnation);
	s->state = SVC_STARTING;
	s->deadline_ms = 0;
	fx = effects(s, SVC_ACT_SPAWN);
	fx.reply = true;
	return fx;
}

/*
 * The worker was reaped and its name already released.  A run that
 * lasted backoff_reset_ms or more was stable and restarts the count of
 * crashes in a row.
 */
struct svc_effects
svc_exited(struct svc *s, const struct svc_exit *e, uint64_t now)
{
	uint64_t ran;

	if (!has_worker(s->state))
		return effects(s, SVC_ACT_NONE);
	s->last = *e;
	s->last_err = 0;
	s->deadline_ms = 0;
	if (s->state == SVC_STOPPING)
		return stopped(s);
	if (!restarts_after(s->policy.restart, e))
		return forget(s, false);
	ran = now > s->started_ms ? now - s->started_ms : 0;
	if (ran >= s->policy.backoff_reset_ms)
		s->crashes = 1;
	else
		s->crashes = inc(s->crashes);
	return crashed(s, now, 0);
}

/*
 * Stop the key.  A live worker gets the stop signal and, at deadline_ms,
 * SIGKILL (svc_timeout()); the reply waits for its exit.  Without a
 * worker the key is forgotten at once.
 */
struct svc_effects
svc_stop(struct svc *s, uint64_t now)
{
	struct svc_effects fx;

	switch (s->state) {
	case SVC_RUNNING:
	case SVC_READY:
		s->state = SVC_STOPPING;
		s->deadline_ms = after(now, s->policy.stop_timeout_ms);
		fx = effects(s, SVC_ACT_SIGNAL);
		fx.signo = s->policy.stop_signal;
		return fx;
	case SVC_STOPPING: /* already on its way; a stop cancels a restart */
		s->restart_pending = false;
		return effects(s, SVC_ACT_NONE);
	case SVC_STARTING:
	case SVC_BACKOFF:
	case SVC_FAILED:
		return forget(s, true);
	case SVC_GONE:
		break;
	}
	fx = effects(s, SVC_ACT_NONE);
	fx.reply = true;
	return fx;
}

static struct svc_effects
revive(struct svc *s)
{
	s->hist_len = 0;
	s->hist_next = 0;
	s->crashes = 0;
	s->why = SVC_WHY_NONE;
	s->incarnation = inc(s->incarnation);
	s->state = SVC_STARTING;
	return effects(s, SVC_ACT_SPAWN);
}

/*
 * "keyvisor restart KEY": a FAILED key is revived with its history
 * cleared, a BACKOFF key is spawned without waiting any longer, a live
 * worker is stopped as by svc_stop() and spawned again once reaped (the
 * last request wins: a stop after this cancels the restart).
 */
struct svc_effects
svc_request_restart(struct svc *s, uint64_t now)
{
	struct svc_effects fx;

	switch (s->state) {
	case SVC_FAILED:
		return revive(s);
	case SVC_BACKOFF:
		s->state = SVC_STARTING;
		s->deadline_ms = 0;
		return effects(s, SVC_ACT_SPAWN);
	case SVC_RUNNING:
	case SVC_READY:
		fx = svc_stop(s, now);
		s->restart_pending = true;
		return fx;
	case SVC_STOPPING:
		s->restart_pending = true;
		break;
	case SVC_STARTING:
	case SVC_GONE:
		break;
	}
	return effects(s, SVC_ACT_NONE);
}

struct svc_effects
svc_timeout(struct svc *s, uint64_t now)
{
	struct svc_effects fx;

	if (s->deadline_ms == 0 || now < s->deadline_ms)
		return effects(s, SVC_ACT_NONE);
	s->deadline_ms = 0;
	switch (s->state) {
	case SVC_STARTING:
	case SVC_BACKOFF:
		s->state = SVC_STARTING;
		return effects(s, SVC_ACT_SPAWN);
	case SVC_STOPPING:
		fx = effects(s, SVC_ACT_SIGNAL);
		fx.signo = SIGKILL;
		return fx;
	case SVC_RUNNING:
	case SVC_READY:
	case SVC_FAILED:
	case SVC_GONE:
		break;
	}
	return effects(s, SVC_ACT_NONE);
}

/* Exec errors that may well go away by themselves. */
static bool
transient_errno(int err)
{
	return err == EAGAIN || err == ENOMEM || err == ENFILE ||
	       err == EMFILE || err == ETXTBSY;
}

/*
 * A restart's spawn failed (a first start's failure is reported to the
 * caller by the shell, and the spec dropped).  It counts as a crash for
 * intensity and backoff and is retried after SVC_SPAWN_RETRY_MS at least;
 * an exec error that will not go away by itself (ENOENT, EACCES, ...)
 * fails the key at once.  err is an errno value of either sign.
 */
struct svc_effects
svc_spawn_failed(struct svc *s, enum svc_stage stage, int err, uint64_t now)
{
	if (s->state != SVC_STARTING)
		return effects(s, SVC_ACT_NONE);
	s->last_err = err < 0 ? -err : err;
	s->last_stage = stage;
	s->deadline_ms = 0;
	if (stage == SVC_STAGE_EXEC && !transient_errno(s->last_err))
		return fail(s, SVC_WHY_EXEC);
	s->crashes = inc(s->crashes);
	return crashed(s, now, SVC_SPAWN_RETRY_MS);
}

uint64_t
svc_next_deadline(const struct svc *s)
{
	return s->deadline_ms;
}

static const char *
errtext(int err)
{
	const char *t = strerrordesc_np(err);

	return t != NULL ? t : "unknown error";
}

static const char *
stage_verb(enum svc_stage stage)
{
	switch (stage) {
	case SVC_STAGE_FORK:
		return "fork";
	case SVC_STAGE_EXEC:
		return "exec";
	}
	return "spawn";
}

/* "exceeded 3 restarts in 5s; last exit: killed by SIGKILL" */
int
svc_reason(const struct svc *s, char *buf, size_t len)
{
	char window[32], last[96];

	switch (s->why) {
	case SVC_WHY_NONE:
		break;
	case SVC_WHY_EXEC:
		return snprintf(
		    buf, len, "unable to exec: %s", errtext(s->last_err));
	case SVC_WHY_INTENSITY:
		svc_format_duration_ms(
		    s->policy.max_seconds_ms, window, sizeof(window));
		if (s->last_err == 0)
			svc_exit_describe(&s->last, last, sizeof(last));
		else
			snprintf(last, sizeof(last), "unable to %s: %s",
			    stage_verb(s->last_stage), errtext(s->last_err));
		return snprintf(buf, len,
		    "exceeded %" PRIu32 " restarts in %ss; last %s: %s",
		    s->hist_cap, window, s->last_err == 0 ? "exit" : "error",
		    last);
	}
	return snprintf(buf, len, "%s", "");
}

/*
 * TOKEN BUCKET IN THOUSANDTHS
 *
 * rate tokens a second is exactly rate thousandths of a token a
 * millisecond, so counting thousandths keeps every step an integer with
 * no drift.  The cap is burst * 1000 <= 2^32 * 1000 < 2^42, and a refill
 * multiplies only an elapsed time shorter than the time to fill the
 * bucket (< cap / rate + 1 ms) by rate, so nothing overflows even when
 * now jumps by years.  Time running backwards refills nothing.
 */
static uint64_t
refilled(const struct svc_bucket *b, uint64_t now)
{
	uint64_t cap = (uint64_t)b->burst * 1000, need, elapsed;

	if (now <= b->last_ms || b->milli >= cap)
		return b->milli;
	need = cap - b->milli;
	elapsed = now - b->last_ms;
	if (elapsed >= (need + b->rate - 1) / b->rate)
		return cap;
	return b->milli + elapsed * b->rate;
}

void
svc_bucket_init(
    struct svc_bucket *b, uint32_t rate, uint32_t burst, uint64_t now)
{
	b->rate = rate;
	b->burst = burst == 0 ? 1 : burst;
	b->milli = (uint64_t)b->burst * 1000;
	b->last_ms = now;
}

bool
svc_bucket_take(struct svc_bucket *b, uint64_t now)
{
	if (b->rate == 0)
		return true;
	b->milli = refilled(b, now);
	if (now > b->last_ms)
		b->last_ms = now;
	if (b->milli < 1000)
		return false;
	b->milli -= 1000;
	return true;
}

uint64_t
svc_bucket_next_ms(const struct svc_bucket *b, uint64_t now)
{
	uint64_t milli, from;

	if (b->rate == 0)
		return now;
	milli = refilled(b, now);
	if (milli >= 1000)
		return now;
	from = now > b->last_ms ? now : b->last_ms;
	return after(from, (1000 - milli + b->rate - 1) / b->rate);
}

/* Durations. */

/* Reads up to max digits into *v; returns how many, or -1 on overflow. */
static int
digits(const char **p, int max, uint64_t *v)
{
	int n = 0;

	for (; **p >= '0' && **p <= '9'; (*p)++, n++) {
		unsigned d = (unsigned)(**p - '0');

		if (n == max || *v > (UINT64_MAX - d) / 10)
			return -1;
		*v = *v * 10 + d;
	}
	return n;
}

int
svc_parse_duration_ms(const char *s, uint64_t *out)
{
	uint64_t sec = 0, frac = 0;
	int      nint, nfrac = 0;

	if (s == NULL)
		return -EINVAL;
	nint = digits(&s, INT_MAX, &sec);
	if (nint < 0)
		return -EINVAL;
	if (*s == '.') {
		s++;
		nfrac = digits(&s, 3, &frac);
		if (nfrac <= 0)
			return -EINVAL; /* "5.", ".", or a 4th decimal */
	}
	if (*s != '\0' || nint + nfrac == 0)
		return -EINVAL;
	for (; nfrac < 3; nfrac++)
		frac *= 10;
	if (sec > (UINT64_MAX - frac) / 1000)
		return -EINVAL;
	*out = sec * 1000 + frac;
	return 0;
}

int
svc_format_duration_ms(uint64_t ms, char *buf, size_t len)
{
	uint64_t sec = ms / 1000;
	unsigned frac = (unsigned)(ms % 1000);

	if (frac == 0)
		return snprintf(buf, len, "%" PRIu64, sec);
	if (frac % 100 == 0)
		return snprintf(buf, len, "%" PRIu64 ".%u", sec, frac / 100);
	if (frac % 10 == 0)
		return snprintf(buf, len, "%" PRIu64 ".%02u", sec, frac / 10);
	return snprintf(buf, len, "%" PRIu64 ".%03u", sec, frac);
}
