/*
 * Unit tests for supervisord/svc.c, the pure supervision core: restart
 * policy x exit kind x history, Erlang's intensity arithmetic, backoff,
 * every event in every state, the spawn token bucket and durations.
 * No fork, no clock: time is whatever each test says it is.
 */
#include "svc.h"

#include <sys/wait.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

/* A plausible monotonic time; 0 would hide "0 means no deadline" bugs. */
#define T0 ((uint64_t)1000000)

/* Every effects returned must agree with svc_next_deadline(). */
static struct svc_effects
chk(const struct svc *s, struct svc_effects fx)
{
	cr_assert_eq(fx.deadline_ms, svc_next_deadline(s),
	    "effects say deadline %llu, svc says %llu",
	    (unsigned long long)fx.deadline_ms,
	    (unsigned long long)svc_next_deadline(s));
	return fx;
}

static struct svc_effects
exit_code(struct svc *s, int code, uint64_t now)
{
	struct svc_exit e = {.code = code};

	return chk(s, svc_exited(s, &e, now));
}

static struct svc_effects
exit_sig(struct svc *s, int signo, uint64_t now)
{
	struct svc_exit e = {.signo = signo};

	return chk(s, svc_exited(s, &e, now));
}

static struct svc_effects
stop(struct svc *s, uint64_t now)
{
	return chk(s, svc_stop(s, now));
}

static struct svc_effects
timeout(struct svc *s, uint64_t now)
{
	return chk(s, svc_timeout(s, now));
}

static struct svc_effects
restart(struct svc *s, uint64_t now)
{
	return chk(s, svc_request_restart(s, now));
}

static struct svc_effects
spawn_failed(struct svc *s, enum svc_stage stage, int err, uint64_t now)
{
	return chk(s, svc_spawn_failed(s, stage, err, now));
}

static void
start(struct svc *s, const struct svc_policy *p, uint64_t now)
{
	cr_assert_eq(svc_init(s, p), 0);
	cr_assert_eq(s->state, SVC_STARTING);
	cr_assert_eq(svc_started(s, now), 0);
	cr_assert_eq(s->state, SVC_RUNNING);
}

/* A crash at "at" that must be restarted at once, then the new run. */
static void
crash_restart(struct svc *s, uint64_t at)
{
	cr_assert_eq(exit_code(s, 1, at).action, SVC_ACT_SPAWN,
	    "crash at +%llu not restarted", (unsigned long long)(at - T0));
	cr_assert_eq(svc_started(s, at), 0);
}

/*
 * Crash instantly (or every "every" ms), following every SPAWN and WAIT,
 * until the key fails; returns the number of runs, or -1 after "limit".
 */
static int
runs_until_failed(struct svc *s, uint64_t *now, uint64_t every, int limit)
{
	struct svc_effects fx;
	int                runs = 1;

	for (; runs <= limit; runs++) {
		*now += every;
		fx = exit_sig(s, SIGKILL, *now);
		if (fx.action == SVC_ACT_FAIL)
			return runs;
		if (fx.action == SVC_ACT_WAIT) {
			*now = fx.deadline_ms;
			fx = timeout(s, *now);
		}
		cr_assert_eq(fx.action, SVC_ACT_SPAWN);
		cr_assert_eq(svc_started(s, *now), 0);
	}
	return -1;
}

static const char *
reason(const struct svc *s)
{
	static char buf[256];

	svc_reason(s, buf, sizeof(buf));
	return buf;
}

/* Names, parsing, policy. */

Test(names, state_names)
{
	cr_assert_str_eq(svc_state_name(SVC_STARTING), "starting");
	cr_assert_str_eq(svc_state_name(SVC_RUNNING), "running");
	cr_assert_str_eq(svc_state_name(SVC_READY), "ready");
	cr_assert_str_eq(svc_state_name(SVC_STOPPING), "stopping");
	cr_assert_str_eq(svc_state_name(SVC_BACKOFF), "backoff");
	cr_assert_str_eq(svc_state_name(SVC_FAILED), "failed");
	cr_assert_str_eq(svc_state_name(SVC_GONE), "gone");
	cr_assert_str_eq(svc_state_name((enum svc_state)77), "?");
}

Test(names, restart_round_trip)
{
	static const enum svc_restart all[] = {
	    SVC_PERMANENT, SVC_TRANSIENT, SVC_TEMPORARY};
	static const char *const names[] = {
	    "permanent", "transient", "temporary"};
	enum svc_restart r;
	size_t           i;

	for (i = 0; i < 3; i++) {
		cr_assert_str_eq(svc_restart_name(all[i]), names[i]);
		r = (enum svc_restart)99;
		cr_assert_eq(svc_restart_parse(names[i], &r), 0);
		cr_assert_eq(r, all[i]);
	}
	cr_assert_null(svc_restart_name((enum svc_restart)3));
}

Test(names, restart_parse_rejects)
{
	static const char *const bad[] = {"", "Permanent", "perm", "permanent ",
	    " transient", "temporaryx", "always"};
	enum svc_restart         r = SVC_TEMPORARY;
	size_t                   i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(
		    svc_restart_parse(bad[i], &r), -EINVAL, "%s", bad[i]);
	cr_assert_eq(svc_restart_parse(NULL, &r), -EINVAL);
	cr_assert_eq(r, SVC_TEMPORARY, "output written on failure");
}

Test(policy, defaults)
{
	struct svc_policy p = svc_policy_default();

	cr_assert_eq(p.restart, SVC_PERMANENT);
	cr_assert_eq(p.max_restarts, 3);
	cr_assert_eq(p.max_seconds_ms, 5000);
	cr_assert_eq(p.restart_delay_ms, 0);
	cr_assert_eq(p.backoff_max_ms, 0);
	cr_assert_eq(p.backoff_reset_ms, 10000);
	cr_assert_eq(p.stop_timeout_ms, 5000);
	cr_assert_eq(p.stop_signal, SIGTERM);
	cr_assert_eq(svc_policy_check(&p), 0);
}

Test(policy, check_ranges)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;

	p.max_restarts = SVC_MAX_RESTARTS;
	cr_assert_eq(svc_policy_check(&p), 0);
	p.max_restarts = SVC_MAX_RESTARTS + 1;
	cr_assert_eq(svc_policy_check(&p), -EINVAL);
	cr_assert_eq(svc_init(&s, &p), -EINVAL);
	p = svc_policy_default();
	p.stop_signal = 0;
	cr_assert_eq(svc_policy_check(&p), -EINVAL);
	p.stop_signal = NSIG;
	cr_assert_eq(svc_policy_check(&p), -EINVAL);
	p.stop_signal = SIGKILL;
	cr_assert_eq(svc_policy_check(&p), 0);
	p.restart = (enum svc_restart)3;
	cr_assert_eq(svc_policy_check(&p), -EINVAL);
}

Test(svc, small_and_movable)
{
	struct svc_policy p = svc_policy_default();
	struct svc        a, b;
	uint64_t          now = T0;

	cr_assert_leq(sizeof(struct svc), 200);
	start(&a, &p, now);
	crash_restart(&a, now);
	crash_restart(&a, now + 1);
	memcpy(&b, &a, sizeof(b)); /* as a realloc'ed array would */
	memset(&a, 0xa5, sizeof(a));
	cr_assert_eq(exit_code(&b, 1, now + 2).action, SVC_ACT_SPAWN);
	cr_assert_eq(svc_started(&b, now + 2), 0);
	cr_assert_eq(exit_code(&b, 1, now + 3).action, SVC_ACT_FAIL);
	svc_fini(&b);
}

Test(svc, fini_allows_init_again)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;

	p.max_restarts = 50; /* heap history */
	start(&s, &p, T0);
	crash_restart(&s, T0);
	svc_fini(&s);
	cr_assert_eq(s.state, SVC_GONE);
	svc_fini(&s); /* twice is harmless */
	start(&s, &p, T0);
	cr_assert_eq(s.hist_len, 0);
	cr_assert_eq(s.incarnation, 0);
	svc_fini(&s);
}

/* Exits. */

Test(exit, from_status)
{
	struct svc_exit e;

	e = svc_exit_from_status(W_EXITCODE(0, 0));
	cr_assert(e.code == 0 && e.signo == 0 && !e.core);
	cr_assert(svc_exit_is_normal(&e));
	e = svc_exit_from_status(W_EXITCODE(3, 0));
	cr_assert(e.code == 3 && e.signo == 0 && !e.core);
	cr_assert_not(svc_exit_is_normal(&e));
	e = svc_exit_from_status(W_EXITCODE(0, SIGKILL));
	cr_assert(e.signo == SIGKILL && !e.core);
	cr_assert_not(svc_exit_is_normal(&e));
	e = svc_exit_from_status(W_EXITCODE(0, SIGSEGV) | WCOREFLAG);
	cr_assert(e.signo == SIGSEGV && e.core);
}

Test(exit, describe)
{
	struct svc_exit e = {.code = 1};
	char            buf[64];

	svc_exit_describe(&e, buf, sizeof(buf));
	cr_assert_str_eq(buf, "exited with code 1");
	e = (struct svc_exit){.signo = SIGKILL};
	svc_exit_describe(&e, buf, sizeof(buf));
	cr_assert_str_eq(buf, "killed by SIGKILL");
	e = (struct svc_exit){.signo = SIGSEGV, .core = true};
	svc_exit_describe(&e, buf, sizeof(buf));
	cr_assert_str_eq(buf, "killed by SIGSEGV (core dumped)");
}

/*
 * Policy x exit kind x history.  "Full" history is 3 restarts within
 * the window (permanent, transient) or max_restarts 0 (all three).
 */
enum kind { CODE0, CODE1, SIG_BY_STOP, SIG_NOT_BY_STOP };

struct mcase {
	enum svc_restart restart;
	enum kind        kind;
	uint32_t         max_restarts;
	int              prior; /* instant crashes before the exit */
	enum svc_action  want;
};

ParameterizedTestParameters(matrix, exit)
{
	static struct mcase cases[] = {
	    {SVC_PERMANENT, CODE0, 3, 0, SVC_ACT_SPAWN},
	    {SVC_PERMANENT, CODE1, 3, 0, SVC_ACT_SPAWN},
	    {SVC_PERMANENT, SIG_BY_STOP, 3, 0, SVC_ACT_FORGET},
	    {SVC_PERMANENT, SIG_NOT_BY_STOP, 3, 0, SVC_ACT_SPAWN},
	    {SVC_TRANSIENT, CODE0, 3, 0, SVC_ACT_FORGET},
	    {SVC_TRANSIENT, CODE1, 3, 0, SVC_ACT_SPAWN},
	    {SVC_TRANSIENT, SIG_BY_STOP, 3, 0, SVC_ACT_FORGET},
	    {SVC_TRANSIENT, SIG_NOT_BY_STOP, 3, 0, SVC_ACT_SPAWN},
	    {SVC_TEMPORARY, CODE0, 3, 0, SVC_ACT_FORGET},
	    {SVC_TEMPORARY, CODE1, 3, 0, SVC_ACT_FORGET},
	    {SVC_TEMPORARY, SIG_BY_STOP, 3, 0, SVC_ACT_FORGET},
	    {SVC_TEMPORARY, SIG_NOT_BY_STOP, 3, 0, SVC_ACT_FORGET},
	    {SVC_PERMANENT, CODE0, 3, 3, SVC_ACT_FAIL},
	    {SVC_PERMANENT, CODE1, 3, 3, SVC_ACT_FAIL},
	    {SVC_PERMANENT, SIG_BY_STOP, 3, 3, SVC_ACT_FORGET},
	    {SVC_PERMANENT, SIG_NOT_BY_STOP, 3, 3, SVC_ACT_FAIL},
	    {SVC_TRANSIENT, CODE0, 3, 3, SVC_ACT_FORGET},
	    {SVC_TRANSIENT, CODE1, 3, 3, SVC_ACT_FAIL},
	    {SVC_TRANSIENT, SIG_BY_STOP, 3, 3, SVC_ACT_FORGET},
	    {SVC_TRANSIENT, SIG_NOT_BY_STOP, 3, 3, SVC_ACT_FAIL},
	    {SVC_PERMANENT, CODE0, 0, 0, SVC_ACT_FAIL},
	    {SVC_PERMANENT, CODE1, 0, 0, SVC_ACT_FAIL},
	    {SVC_PERMANENT, SIG_BY_STOP, 0, 0, SVC_ACT_FORGET},
	    {SVC_PERMANENT, SIG_NOT_BY_STOP, 0, 0, SVC_ACT_FAIL},
	    {SVC_TRANSIENT, CODE0, 0, 0, SVC_ACT_FORGET},
	    {SVC_TRANSIENT, CODE1, 0, 0, SVC_ACT_FAIL},
	    {SVC_TRANSIENT, SIG_BY_STOP, 0, 0, SVC_ACT_FORGET},
	    {SVC_TRANSIENT, SIG_NOT_BY_STOP, 0, 0, SVC_ACT_FAIL},
	    {SVC_TEMPORARY, CODE0, 0, 0, SVC_ACT_FORGET},
	    {SVC_TEMPORARY, CODE1, 0, 0, SVC_ACT_FORGET},
	    {SVC_TEMPORARY, SIG_BY_STOP, 0, 0, SVC_ACT_FORGET},
	    {SVC_TEMPORARY, SIG_NOT_BY_STOP, 0, 0, SVC_ACT_FORGET},
	};

	return cr_make_param_array(
	    struct mcase, cases, sizeof(cases) / sizeof(cases[0]));
}

static struct svc_effects
exit_by_kind(struct svc *s, enum kind k, uint64_t now)
{
	switch (k) {
	case CODE0:
		return exit_code(s, 0, now);
	case CODE1:
		return exit_code(s, 1, now);
	case SIG_BY_STOP:
		cr_assert_eq(stop(s, now).action, SVC_ACT_SIGNAL);
		return exit_sig(s, SIGTERM, now + 10);
	case SIG_NOT_BY_STOP:
		return exit_sig(s, SIGTERM, now);
	}
	cr_assert_fail("bad kind");
	return svc_timeout(s, now);
}

ParameterizedTest(struct mcase *c, matrix, exit)
{
	struct svc_policy  p = svc_policy_default();
	struct svc         s;
	struct svc_effects fx;
	int                i;

	p.restart = c->restart;
	p.max_restarts = c->max_restarts;
	start(&s, &p, T0);
	for (i = 0; i < c->prior; i++)
		crash_restart(&s, T0 + (uint64_t)i);
	fx = exit_by_kind(&s, c->kind, T0 + 100);
	cr_assert_eq(fx.action, c->want, "%s kind %d max %u prior %d: %d",
	    svc_restart_name(c->restart), c->kind, c->max_restarts, c->prior,
	    fx.action);
	cr_assert_eq(fx.reply, c->kind == SIG_BY_STOP);
	cr_assert_eq(s.last.signo,
	    c->kind == SIG_BY_STOP || c->kind == SIG_NOT_BY_STOP ? SIGTERM : 0);
	switch (c->want) {
	case SVC_ACT_SPAWN:
		cr_assert_eq(s.state, SVC_STARTING);
		cr_assert_eq(s.incarnation, (uint32_t)c->prior + 1);
		cr_assert_eq(s.hist_len, (uint32_t)c->prior + 1);
		break;
	case SVC_ACT_FAIL:
		cr_assert_eq(s.state, SVC_FAILED);
		cr_assert_eq(s.why, SVC_WHY_INTENSITY);
		cr_assert_eq(s.incarnation, (uint32_t)c->prior);
		break;
	case SVC_ACT_FORGET:
		cr_assert_eq(s.state, SVC_GONE);
		cr_assert_eq(s.hist_len, (uint32_t)c->prior,
		    "a forgotten key counted a restart");
		break;
	default:
		cr_assert_fail("unexpected want");
	}
	cr_assert_eq(svc_next_deadline(&s), 0);
	svc_fini(&s);
}

/* Intensity. */

Test(intensity, crash_loop_runs_one_plus_three_times)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;
	uint64_t          now = T0;

	start(&s, &p, now);
	cr_assert_eq(runs_until_failed(&s, &now, 0, 100), 4);
	cr_assert_eq(s.state, SVC_FAILED);
	cr_assert_eq(s.incarnation, 3);
	cr_assert_eq(svc_next_deadline(&s), 0);
	cr_assert_str_eq(reason(&s),
	    "exceeded 3 restarts in 5s; last exit: killed by SIGKILL");
	svc_fini(&s);
}

Test(intensity, crasher_every_2s_never_fails)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;
	uint64_t          now = T0;

	start(&s, &p, now);
	cr_assert_eq(runs_until_failed(&s, &now, 2000, 1000), -1);
	cr_assert_eq(s.incarnation, 1000);
	cr_assert_eq(s.state, SVC_RUNNING);
	svc_fini(&s);
}

/*
 * Evenly spaced crashes: the 3rd previous restart is 3 x spacing old, so
 * 1666 ms (4998 <= 5000) fails on the 4th crash and 1667 ms (5001) never.
 */
Test(intensity, spacing_edge)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;
	uint64_t          now = T0;

	start(&s, &p, now);
	cr_assert_eq(runs_until_failed(&s, &now, 1666, 1000), 4);
	cr_assert_eq(now, T0 + 4 * 1666);
	svc_fini(&s);
	now = T0;
	start(&s, &p, now);
	cr_assert_eq(runs_until_failed(&s, &now, 1667, 1000), -1);
	svc_fini(&s);
}

/* An entry exactly max_seconds old still counts (now <= then + period). */
Test(intensity, window_edge_is_inclusive)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;

	start(&s, &p, T0);
	crash_restart(&s, T0);
	crash_restart(&s, T0 + 1);
	crash_restart(&s, T0 + 2);
	cr_assert_eq(exit_code(&s, 1, T0 + 5000).action, SVC_ACT_FAIL);
	svc_fini(&s);

	start(&s, &p, T0);
	crash_restart(&s, T0);
	crash_restart(&s, T0 + 1);
	crash_restart(&s, T0 + 2);
	crash_restart(&s, T0 + 5001); /* T0 has left the window */
	crash_restart(&s, T0 + 5002); /* and T0 + 1 */
	cr_assert_eq(exit_code(&s, 1, T0 + 5002).action, SVC_ACT_FAIL,
	    "T0 + 2, T0 + 5001 and T0 + 5002 are in the window");
	svc_fini(&s);
}

Test(intensity, max_restarts_zero_fails_first_crash)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;

	p.max_restarts = 0;
	start(&s, &p, T0);
	cr_assert_eq(exit_code(&s, 1, T0 + 60000).action, SVC_ACT_FAIL);
	cr_assert_str_eq(reason(&s),
	    "exceeded 0 restarts in 5s; last exit: exited with code 1");
	svc_fini(&s);
}

Test(intensity, window_in_reason_keeps_decimals)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;

	p.max_restarts = 1;
	p.max_seconds_ms = 2500;
	start(&s, &p, T0);
	crash_restart(&s, T0);
	cr_assert_eq(exit_code(&s, 2, T0 + 2500).action, SVC_ACT_FAIL);
	cr_assert_str_eq(reason(&s),
	    "exceeded 1 restarts in 2.5s; last exit: exited with code 2");
	svc_fini(&s);
}

/* 8 is the last inline history, 9 the first on the heap, 1000 the cap. */
Test(intensity, large_max_restarts)
{
	static const uint32_t maxes[] = {1, 7, 8, 9, 20, SVC_MAX_RESTARTS};
	struct svc_policy     p = svc_policy_default();
	struct svc            s;
	uint64_t              now;
	size_t                i;

	for (i = 0; i < sizeof(maxes) / sizeof(maxes[0]); i++) {
		p.max_restarts = maxes[i];
		p.max_seconds_ms = 100000;
		now = T0;
		start(&s, &p, now);
		cr_assert_eq(runs_until_failed(&s, &now, 1, 5000),
		    (int)maxes[i] + 1, "max_restarts %u", maxes[i]);
		svc_fini(&s);
	}
}

/* The ring must keep the newest, not the first, max_restarts times. */
Test(intensity, ring_wraps)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;
	uint64_t          t = T0;
	int               i;

	p.max_restarts = 9; /* heap */
	p.max_seconds_ms = 1000;
	start(&s, &p, t);
	for (i = 0; i < 100; i++) {
		t += 120; /* 9 x 120 = 1080 > 1000: never fails */
		crash_restart(&s, t);
	}
	/*
	 * At 111 ms spacing the 9th previous restart of the k-th crash is
	 * 1080 - 9k old: still outside for k <= 8, inside (999) at k = 9.
	 */
	for (i = 1; i <= 8; i++)
		crash_restart(&s, t + (uint64_t)i * 111);
	cr_assert_eq(exit_code(&s, 1, t + 9 * 111).action, SVC_ACT_FAIL);
	svc_fini(&s);
}

/* Backoff. */

Test(backoff, growth_and_cap)
{
	static const uint64_t want[] = {
	    0, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000};
	struct svc_policy p = svc_policy_default();
	uint32_t          n;

	p.backoff_max_ms = 30000;
	for (n = 1; n <= 11; n++)
		cr_assert_eq(svc_backoff_ms(&p, n), want[n - 1], "n %u", n);
	p.restart_delay_ms = 500;
	p.backoff_max_ms = 10000;
	cr_assert_eq(svc_backoff_ms(&p, 1), 500);
	cr_assert_eq(svc_backoff_ms(&p, 2), 1000);
	cr_assert_eq(svc_backoff_ms(&p, 5), 8000);
	cr_assert_eq(svc_backoff_ms(&p, 6), 10000);
	p.restart_delay_ms = 0;
	p.backoff_max_ms = 150; /* below 100 << 1 */
	cr_assert_eq(svc_backoff_ms(&p, 2), 150);
}

Test(backoff, off_means_floor_only)
{
	struct svc_policy p = svc_policy_default();
	uint32_t          n;

	p.restart_delay_ms = 250;
	for (n = 0; n < 100; n++)
		cr_assert_eq(svc_backoff_ms(&p, n), 250);
	p.backoff_max_ms = 250; /* not above the floor: still off */
	cr_assert_eq(svc_backoff_ms(&p, 7), 250);
	p.restart_delay_ms = 0;
	p.backoff_max_ms = 0;
	cr_assert_eq(svc_backoff_ms(&p, 7), 0);
}

Test(backoff, shift_overflow_guard)
{
	struct svc_policy p = svc_policy_default();

	p.backoff_max_ms = UINT64_MAX;
	cr_assert_eq(svc_backoff_ms(&p, 58), (uint64_t)100 << 57);
	cr_assert_eq(svc_backoff_ms(&p, 59), UINT64_MAX);
	cr_assert_eq(svc_backoff_ms(&p, 64), UINT64_MAX);
	cr_assert_eq(svc_backoff_ms(&p, 65), UINT64_MAX);
	cr_assert_eq(svc_backoff_ms(&p, 1000), UINT64_MAX);
	cr_assert_eq(svc_backoff_ms(&p, UINT32_MAX), UINT64_MAX);
	p.backoff_max_ms = 30000;
	cr_assert_eq(svc_backoff_ms(&p, 64), 30000);
	cr_assert_eq(svc_backoff_ms(&p, UINT32_MAX), 30000);
}

/* Crash with the given run length; returns the delay chosen (0: now). */
static uint64_t
crash_after(struct svc *s, uint64_t *now, uint64_t ran)
{
	struct svc_effects fx;
	uint64_t           delay = 0;

	*now += ran;
	fx = exit_code(s, 1, *now);
	if (fx.action == SVC_ACT_WAIT) {
		cr_assert_eq(s->state, SVC_BACKOFF);
		delay = fx.deadline_ms - *now;
		cr_assert_eq(timeout(s, fx.deadline_ms - 1).action,
		    SVC_ACT_NONE, "restarted before its deadline");
		cr_assert_eq(s->state, SVC_BACKOFF);
		*now = fx.deadline_ms;
		fx = timeout(s, *now);
		cr_assert_eq(svc_next_deadline(s), 0);
	}
	cr_assert_eq(fx.action, SVC_ACT_SPAWN);
	cr_assert_eq(s->state, SVC_STARTING);
	cr_assert_eq(svc_started(s, *now), 0);
	return delay;
}

Test(backoff, transitions_grow_cap_and_reset)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;
	uint64_t          now = T0;

	p.max_restarts = 100;
	p.backoff_max_ms = 1000;
	start(&s, &p, now);
	cr_assert_eq(crash_after(&s, &now, 0), 0);
	cr_assert_eq(crash_after(&s, &now, 0), 200);
	cr_assert_eq(crash_after(&s, &now, 0), 400);
	cr_assert_eq(crash_after(&s, &now, 9999), 800); /* not stable yet */
	cr_assert_eq(crash_after(&s, &now, 0), 1000);
	cr_assert_eq(crash_after(&s, &now, 0), 1000);
	cr_assert_eq(crash_after(&s, &now, 10000), 0); /* stable: n = 1 */
	cr_assert_eq(s.crashes, 1);
	cr_assert_eq(crash_after(&s, &now, 0), 200);
	svc_fini(&s);
}

Test(backoff, floor_delay_without_backoff)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;
	uint64_t          now = T0;

	p.restart_delay_ms = 300;
	start(&s, &p, now);
	cr_assert_eq(crash_after(&s, &now, 0), 300);
	cr_assert_eq(crash_after(&s, &now, 0), 300);
	cr_assert_eq(crash_after(&s, &now, 20000), 300);
	svc_fini(&s);
}

/* The restart is recorded at crash time, not at the delayed respawn. */
Test(backoff, history_records_crash_time)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;
	uint64_t          now = T0;

	p.restart_delay_ms = 2000;
	start(&s, &p, now);
	cr_assert_eq(crash_after(&s, &now, 1000), 2000); /* at T0 + 1000 */
	cr_assert_eq(crash_after(&s, &now, 0), 2000);    /* T0 + 3000 */
	cr_assert_eq(crash_after(&s, &now, 0), 2000);    /* T0 + 5000 */
	now += 1000;                                     /* T0 + 8000 */
	cr_assert_eq(exit_code(&s, 1, now).action, SVC_ACT_WAIT,
	    "T0 + 1000 is 7 s old: 2 restarts in the window");
	svc_fini(&s);
}

/* Started, ready, defer. */

Test(events, started_and_ready)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;

	cr_assert_eq(svc_init(&s, &p), 0);
	cr_assert_eq(svc_ready(&s), -EINVAL);
	cr_assert_eq(s.state, SVC_STARTING);
	cr_assert_eq(svc_started(&s, T0 + 7), 0);
	cr_assert_eq(s.started_ms, T0 + 7);
	cr_assert_eq(svc_started(&s, T0 + 8), -EINVAL);
	cr_assert_eq(s.started_ms, T0 + 7);
	cr_assert_eq(svc_ready(&s), 0);
	cr_assert_eq(s.state, SVC_READY);
	cr_assert_eq(svc_ready(&s), 0);
	cr_assert_eq(s.state, SVC_READY);
	cr_assert_eq(exit_code(&s, 1, T0 + 9).action, SVC_ACT_SPAWN);
	cr_assert_eq(svc_started(&s, T0 + 9), 0);
	cr_assert_eq(stop(&s, T0 + 10).action, SVC_ACT_SIGNAL);
	cr_assert_eq(svc_ready(&s), -EINVAL);
	cr_assert_eq(s.state, SVC_STOPPING);
	svc_fini(&s);
}

Test(events, defer_waits_for_a_token)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;

	cr_assert_eq(svc_init(&s, &p), 0);
	cr_assert_eq(svc_defer(&s, T0 + 50), 0);
	cr_assert_eq(svc_next_deadline(&s), T0 + 50);
	cr_assert_eq(timeout(&s, T0 + 49).action, SVC_ACT_NONE);
	cr_assert_eq(timeout(&s, T0 + 50).action, SVC_ACT_SPAWN);
	cr_assert_eq(s.state, SVC_STARTING);
	cr_assert_eq(svc_next_deadline(&s), 0);
	cr_assert_eq(svc_defer(&s, T0 + 90), 0);
	cr_assert_eq(restart(&s, T0 + 60).action, SVC_ACT_NONE);
	cr_assert_eq(svc_next_deadline(&s), T0 + 90);
	cr_assert_eq(svc_started(&s, T0 + 90), 0);
	cr_assert_eq(svc_next_deadline(&s), 0);
	cr_assert_eq(svc_defer(&s, T0 + 100), -EINVAL);
	cr_assert_eq(svc_next_deadline(&s), 0);
	svc_fini(&s);
}

Test(events, exited_without_worker_is_ignored)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;

	p.restart_delay_ms = 100;
	cr_assert_eq(svc_init(&s, &p), 0);
	cr_assert_eq(exit_code(&s, 1, T0).action, SVC_ACT_NONE);
	cr_assert_eq(s.state, SVC_STARTING);
	cr_assert_eq(svc_started(&s, T0), 0);
	cr_assert_eq(exit_code(&s, 1, T0).action, SVC_ACT_WAIT);
	cr_assert_eq(exit_code(&s, 1, T0 + 1).action, SVC_ACT_NONE);
	cr_assert_eq(s.state, SVC_BACKOFF);
	cr_assert_eq(svc_next_deadline(&s), T0 + 100);
	cr_assert_eq(s.incarnation, 1);
	svc_fini(&s);
}

/* Stop in each state. */

Test(stop, running_and_ready_get_stop_signal)
{
	struct svc_policy  p = svc_policy_default();
	struct svc         s;
	struct svc_effects fx;

	start(&s, &p, T0);
	fx = stop(&s, T0 + 1);
	cr_assert_eq(fx.action, SVC_ACT_SIGNAL);
	cr_assert_eq(fx.signo, SIGTERM);
	cr_assert_eq(fx.deadline_ms, T0 + 5001);
	cr_assert_not(fx.reply, "the reply waits for the reap");
	cr_assert_eq(s.state, SVC_STOPPING);
	svc_fini(&s);

	p.stop_signal = SIGINT;
	p.stop_timeout_ms = 250;
	start(&s, &p, T0);
	cr_assert_eq(svc_ready(&s), 0);
	fx = stop(&s, T0 + 1);
	cr_assert_eq(fx.action, SVC_ACT_SIGNAL);
	cr_assert_eq(fx.signo, SIGINT);
	cr_assert_eq(fx.deadline_ms, T0 + 251);
	svc_fini(&s);
}

Test(stop, twice_keeps_the_first_deadline)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;

	start(&s, &p, T0);
	stop(&s, T0);
	cr_assert_eq(stop(&s, T0 + 3000).action, SVC_ACT_NONE);
	cr_assert_eq(s.state, SVC_STOPPING);
	cr_assert_eq(svc_next_deadline(&s), T0 + 5000);
	svc_fini(&s);
}

Test(stop, without_worker_forgets_at_once)
{
	struct svc_policy  p = svc_policy_default();
	struct svc         s;
	struct svc_effects fx;
	uint64_t           now = T0;

	cr_assert_eq(svc_init(&s, &p), 0); /* STARTING */
	fx = stop(&s, now);
	cr_assert(fx.action == SVC_ACT_FORGET && fx.reply);
	cr_assert_eq(s.state, SVC_GONE);
	fx = stop(&s, now); /* GONE */
	cr_assert(fx.action == SVC_ACT_NONE && fx.reply);
	svc_fini(&s);

	p.restart_delay_ms = 1000;
	start(&s, &p, now);
	cr_assert_eq(exit_code(&s, 1, now).action, SVC_ACT_WAIT);
	fx = stop(&s, now + 1); /* BACKOFF */
	cr_assert(fx.action == SVC_ACT_FORGET && fx.reply);
	cr_assert_eq(s.state, SVC_GONE);
	cr_assert_eq(svc_next_deadline(&s), 0);
	svc_fini(&s);

	p = svc_policy_default();
	start(&s, &p, now);
	cr_assert_eq(runs_until_failed(&s, &now, 0, 10), 4);
	fx = stop(&s, now); /* FAILED */
	cr_assert(fx.action == SVC_ACT_FORGET && fx.reply);
	cr_assert_eq(s.state, SVC_GONE);
	svc_fini(&s);
}

/* A stop is never a crash, whatever the exit and the history. */
Test(stop, is_never_a_crash)
{
	struct svc_policy  p = svc_policy_default();
	struct svc         s;
	struct svc_effects fx;

	start(&s, &p, T0);
	crash_restart(&s, T0);
	crash_restart(&s, T0 + 1);
	crash_restart(&s, T0 + 2); /* the next crash would fail it */
	stop(&s, T0 + 3);
	fx = exit_code(&s, 1, T0 + 4);
	cr_assert(fx.action == SVC_ACT_FORGET && fx.reply);
	cr_assert_eq(s.hist_len, 3);
	cr_assert_eq(s.incarnation, 3);
	cr_assert_eq(s.last.code, 1);
	svc_fini(&s);
}

/* Timeouts. */

Test(timeout, stopping_escalates_to_sigkill)
{
	struct svc_policy  p = svc_policy_default();
	struct svc         s;
	struct svc_effects fx;

	start(&s, &p, T0);
	stop(&s, T0);
	cr_assert_eq(timeout(&s, T0 + 4999).action, SVC_ACT_NONE);
	fx = timeout(&s, T0 + 5000);
	cr_assert_eq(fx.action, SVC_ACT_SIGNAL);
	cr_assert_eq(fx.signo, SIGKILL);
	cr_assert_eq(s.state, SVC_STOPPING);
	cr_assert_eq(svc_next_deadline(&s), 0);
	cr_assert_eq(timeout(&s, T0 + 6000).action, SVC_ACT_NONE);
	fx = exit_sig(&s, SIGKILL, T0 + 5001);
	cr_assert(fx.action == SVC_ACT_FORGET && fx.reply);
	svc_fini(&s);
}

Test(timeout, zero_stop_timeout_kills_at_once)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;

	p.stop_timeout_ms = 0;
	start(&s, &p, T0);
	cr_assert_eq(stop(&s, T0).action, SVC_ACT_SIGNAL);
	cr_assert_eq(svc_next_deadline(&s), T0);
	cr_assert_eq(timeout(&s, T0).signo, SIGKILL);
	svc_fini(&s);
}

Test(timeout, late_timer_still_fires)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;

	p.restart_delay_ms = 100;
	start(&s, &p, T0);
	exit_code(&s, 1, T0);
	cr_assert_eq(timeout(&s, T0 + 100000).action, SVC_ACT_SPAWN);
	cr_assert_eq(s.state, SVC_STARTING);
	svc_fini(&s);
}

Test(timeout, nothing_in_running_or_failed)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;
	uint64_t          now = T0;

	start(&s, &p, now);
	cr_assert_eq(timeout(&s, UINT64_MAX).action, SVC_ACT_NONE);
	cr_assert_eq(s.state, SVC_RUNNING);
	cr_assert_eq(runs_until_failed(&s, &now, 0, 10), 4);
	cr_assert_eq(timeout(&s, UINT64_MAX).action, SVC_ACT_NONE);
	cr_assert_eq(s.state, SVC_FAILED);
	svc_fini(&s);
}

/* Restart requests and revival. */

Test(restart, revive_clears_history_and_backoff)
{
	struct svc_policy  p = svc_policy_default();
	struct svc         s;
	struct svc_effects fx;
	uint64_t           now = T0;

	p.backoff_max_ms = 1000;
	start(&s, &p, now);
	cr_assert_eq(runs_until_failed(&s, &now, 0, 10), 4);
	cr_assert_eq(s.incarnation, 3);
	fx = restart(&s, now);
	cr_assert_eq(fx.action, SVC_ACT_SPAWN);
	cr_assert_eq(s.state, SVC_STARTING);
	cr_assert_eq(s.incarnation, 4);
	cr_assert_eq(s.why, SVC_WHY_NONE);
	cr_assert_str_eq(reason(&s), "");
	cr_assert_eq(svc_started(&s, now), 0);
	/* crashes was reset: the first crash restarts at once again */
	cr_assert_eq(exit_code(&s, 1, now).action, SVC_ACT_SPAWN);
	cr_assert_eq(svc_started(&s, now), 0);
	/* history was cleared: 1 + 3 runs again, all in the same ms */
	cr_assert_eq(runs_until_failed(&s, &now, 0, 10), 3);
	svc_fini(&s);
}

Test(restart, running_worker_is_stopped_then_spawned)
{
	struct svc_policy  p = svc_policy_default();
	struct svc         s;
	struct svc_effects fx;

	start(&s, &p, T0);
	crash_restart(&s, T0);
	crash_restart(&s, T0 + 1);
	crash_restart(&s, T0 + 2); /* the next crash would fail it */
	fx = restart(&s, T0 + 3);
	cr_assert_eq(fx.action, SVC_ACT_SIGNAL);
	cr_assert_eq(fx.signo, SIGTERM);
	cr_assert_eq(s.state, SVC_STOPPING);
	fx = exit_sig(&s, SIGTERM, T0 + 4);
	cr_assert_eq(fx.action, SVC_ACT_SPAWN, "a restart is not a crash");
	cr_assert(fx.reply);
	cr_assert_eq(s.state, SVC_STARTING);
	cr_assert_eq(s.incarnation, 4);
	cr_assert_eq(s.hist_len, 3);
	svc_fini(&s);
}

Test(restart, last_request_wins)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;

	start(&s, &p, T0);
	restart(&s, T0);
	cr_assert_eq(stop(&s, T0 + 1).action, SVC_ACT_NONE);
	cr_assert_eq(exit_sig(&s, SIGTERM, T0 + 2).action, SVC_ACT_FORGET);
	svc_fini(&s);

	start(&s, &p, T0);
	stop(&s, T0);
	cr_assert_eq(restart(&s, T0 + 1).action, SVC_ACT_NONE);
	cr_assert_eq(svc_next_deadline(&s), T0 + 5000);
	cr_assert_eq(exit_sig(&s, SIGTERM, T0 + 2).action, SVC_ACT_SPAWN);
	svc_fini(&s);
}

Test(restart, backoff_skips_the_wait)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;

	p.restart_delay_ms = 60000;
	start(&s, &p, T0);
	cr_assert_eq(exit_code(&s, 1, T0).action, SVC_ACT_WAIT);
	cr_assert_eq(restart(&s, T0 + 1).action, SVC_ACT_SPAWN);
	cr_assert_eq(s.state, SVC_STARTING);
	cr_assert_eq(svc_next_deadline(&s), 0);
	cr_assert_eq(s.incarnation, 1, "the crash already counted it");
	cr_assert_eq(restart(&s, T0 + 2).action, SVC_ACT_NONE); /* STARTING */
	cr_assert_eq(s.incarnation, 1);
	svc_fini(&s);
}

/* Spawn failures. */

Test(spawn, fork_failure_backs_off_then_fails)
{
	struct svc_policy  p = svc_policy_default();
	struct svc         s;
	struct svc_effects fx;

	start(&s, &p, T0);
	crash_restart(&s, T0); /* STARTING after an instant crash */
	exit_code(&s, 1, T0 + 1);
	fx = spawn_failed(&s, SVC_STAGE_FORK, -EAGAIN, T0 + 1);
	cr_assert_eq(fx.action, SVC_ACT_WAIT, "not a tight loop");
	cr_assert_eq(fx.deadline_ms, T0 + 1 + SVC_SPAWN_RETRY_MS);
	cr_assert_eq(s.state, SVC_BACKOFF);
	cr_assert_eq(s.incarnation, 3);
	cr_assert_eq(timeout(&s, fx.deadline_ms).action, SVC_ACT_SPAWN);
	fx = spawn_failed(&s, SVC_STAGE_FORK, EAGAIN, T0 + 101);
	cr_assert_eq(fx.action, SVC_ACT_FAIL, "4th restart in 5 s");
	cr_assert_str_eq(reason(&s), "exceeded 3 restarts in 5s; last error: "
	                             "unable to fork: Resource temporarily "
	                             "unavailable");
	svc_fini(&s);
}

Test(spawn, fork_failure_follows_backoff)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;

	p.max_restarts = 10;
	p.backoff_max_ms = 5000;
	start(&s, &p, T0);
	crash_restart(&s, T0);
	cr_assert_eq(exit_code(&s, 1, T0).deadline_ms, T0 + 200);
	cr_assert_eq(timeout(&s, T0 + 200).action, SVC_ACT_SPAWN);
	cr_assert_eq(
	    spawn_failed(&s, SVC_STAGE_FORK, ENOMEM, T0 + 200).deadline_ms,
	    T0 + 600, "third crash in a row: 100 << 2");
	svc_fini(&s);
}

Test(spawn, exec_failure_fails_at_once)
{
	struct svc_policy  p = svc_policy_default();
	struct svc         s;
	struct svc_effects fx;

	start(&s, &p, T0);
	exit_code(&s, 1, T0 + 1);
	fx = spawn_failed(&s, SVC_STAGE_EXEC, ENOENT, T0 + 1);
	cr_assert_eq(fx.action, SVC_ACT_FAIL);
	cr_assert_eq(s.state, SVC_FAILED);
	cr_assert_eq(s.why, SVC_WHY_EXEC);
	cr_assert_eq(svc_next_deadline(&s), 0);
	cr_assert_str_eq(
	    reason(&s), "unable to exec: No such file or directory");
	cr_assert_eq(restart(&s, T0 + 2).action, SVC_ACT_SPAWN);
	cr_assert_str_eq(reason(&s), "");
	svc_fini(&s);
}

Test(spawn, exec_resource_error_is_retried)
{
	struct svc_policy  p = svc_policy_default();
	struct svc         s;
	struct svc_effects fx;

	start(&s, &p, T0);
	exit_code(&s, 1, T0);
	fx = spawn_failed(&s, SVC_STAGE_EXEC, ETXTBSY, T0);
	cr_assert_eq(fx.action, SVC_ACT_WAIT);
	cr_assert_eq(fx.deadline_ms, T0 + SVC_SPAWN_RETRY_MS);
	svc_fini(&s);
}

/* A fork error followed by a run that exits: the exit is what counts. */
Test(spawn, reason_names_the_latest_event)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;

	start(&s, &p, T0);
	crash_restart(&s, T0);
	exit_code(&s, 1, T0);
	spawn_failed(&s, SVC_STAGE_FORK, EAGAIN, T0);
	cr_assert_eq(timeout(&s, T0 + 100).action, SVC_ACT_SPAWN);
	cr_assert_eq(svc_started(&s, T0 + 100), 0);
	cr_assert_eq(exit_code(&s, 7, T0 + 100).action, SVC_ACT_FAIL);
	cr_assert_str_eq(reason(&s),
	    "exceeded 3 restarts in 5s; last exit: exited with code 7");
	svc_fini(&s);
}

Test(spawn, ignored_with_a_worker)
{
	struct svc_policy p = svc_policy_default();
	struct svc        s;

	start(&s, &p, T0);
	cr_assert_eq(
	    spawn_failed(&s, SVC_STAGE_FORK, EAGAIN, T0).action, SVC_ACT_NONE);
	cr_assert_eq(s.state, SVC_RUNNING);
	cr_assert_eq(s.last_err, 0);
	svc_fini(&s);
}

/* Token bucket. */

Test(bucket, burst_then_rate)
{
	struct svc_bucket b;
	int               i;

	svc_bucket_init(&b, 10, 5, T0);
	for (i = 0; i < 5; i++)
		cr_assert(svc_bucket_take(&b, T0), "burst token %d", i);
	cr_assert_not(svc_bucket_take(&b, T0));
	cr_assert_eq(svc_bucket_next_ms(&b, T0), T0 + 100);
	cr_assert_not(svc_bucket_take(&b, T0 + 99));
	cr_assert_eq(svc_bucket_next_ms(&b, T0 + 99), T0 + 100);
	cr_assert(svc_bucket_take(&b, T0 + 100));
	cr_assert_not(svc_bucket_take(&b, T0 + 100));
}

Test(bucket, refills_up_to_burst)
{
	struct svc_bucket b;
	int               i;

	svc_bucket_init(&b, 10, 5, T0);
	for (i = 0; i < 5; i++)
		svc_bucket_take(&b, T0);
	cr_assert(svc_bucket_take(&b, T0 + 250));
	cr_assert(svc_bucket_take(&b, T0 + 250));
	cr_assert_not(svc_bucket_take(&b, T0 + 250));
	cr_assert_eq(svc_bucket_next_ms(&b, T0 + 250), T0 + 300);
	for (i = 0; i < 5; i++)
		cr_assert(svc_bucket_take(&b, T0 + 60000));
	cr_assert_not(svc_bucket_take(&b, T0 + 60000), "more than burst");
}

/* 3 tokens a second is 1000/3 ms a token: exact, no drift. */
Test(bucket, fractional_rate_is_exact)
{
	struct svc_bucket b;
	uint64_t          t;
	int               n = 0;

	svc_bucket_init(&b, 3, 1, T0);
	cr_assert(svc_bucket_take(&b, T0));
	cr_assert_eq(svc_bucket_next_ms(&b, T0), T0 + 334);
	cr_assert_not(svc_bucket_take(&b, T0 + 333));
	cr_assert(svc_bucket_take(&b, T0 + 334));
	svc_bucket_init(&b, 3, 2, T0); /* 2: the cap never clips a refill */
	svc_bucket_take(&b, T0);
	svc_bucket_take(&b, T0);
	for (t = T0 + 1; t <= T0 + 100000; t++)
		n += svc_bucket_take(&b, t);
	cr_assert_eq(n, 300);
}

Test(bucket, rate_zero_is_unlimited)
{
	struct svc_bucket b;
	int               i;

	svc_bucket_init(&b, 0, 1, T0);
	for (i = 0; i < 100000; i++)
		cr_assert(svc_bucket_take(&b, T0));
	cr_assert_eq(svc_bucket_next_ms(&b, T0), T0);
}

Test(bucket, burst_zero_is_one)
{
	struct svc_bucket b;

	svc_bucket_init(&b, 1, 0, T0);
	cr_assert(svc_bucket_take(&b, T0));
	cr_assert_not(svc_bucket_take(&b, T0));
	cr_assert(svc_bucket_take(&b, T0 + 1000));
}

Test(bucket, big_time_jumps)
{
	struct svc_bucket b;
	int               i;

	svc_bucket_init(&b, UINT32_MAX, UINT32_MAX, 0);
	cr_assert(svc_bucket_take(&b, 0));
	cr_assert_eq(b.milli, (uint64_t)UINT32_MAX * 1000 - 1000);
	cr_assert(svc_bucket_take(&b, UINT64_MAX - 1));
	cr_assert_eq(b.milli, (uint64_t)UINT32_MAX * 1000 - 1000);

	svc_bucket_init(&b, 1, 2, 5);
	svc_bucket_take(&b, 5);
	svc_bucket_take(&b, 5);
	for (i = 0; i < 2; i++)
		cr_assert(svc_bucket_take(&b, UINT64_MAX - 10));
	cr_assert_not(svc_bucket_take(&b, UINT64_MAX - 10));
	cr_assert_eq(svc_bucket_next_ms(&b, UINT64_MAX - 10), UINT64_MAX,
	    "saturates instead of wrapping");
}

Test(bucket, time_going_back_refills_nothing)
{
	struct svc_bucket b;

	svc_bucket_init(&b, 1, 1, T0);
	svc_bucket_take(&b, T0);
	cr_assert_not(svc_bucket_take(&b, T0 - 5000));
	cr_assert_eq(svc_bucket_next_ms(&b, T0 - 5000), T0 + 1000);
	cr_assert_not(svc_bucket_take(&b, T0 + 999));
	cr_assert(svc_bucket_take(&b, T0 + 1000));
	cr_assert_not(svc_bucket_take(&b, T0 + 1000));
}

/* Durations. */

Test(duration, good)
{
	static const struct {
		const char *s;
		uint64_t    ms;
	} ok[] = {
	    {"0", 0},
	    {"5", 5000},
	    {"0.25", 250},
	    {"1.5", 1500},
	    {".5", 500},
	    {"1.234", 1234},
	    {"0.001", 1},
	    {"007", 7000},
	    {"2.50", 2500},
	    {"18446744073709551", 18446744073709551000u},
	    {"18446744073709551.615", UINT64_MAX},
	};
	uint64_t v;
	size_t   i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		v = 42;
		cr_assert_eq(
		    svc_parse_duration_ms(ok[i].s, &v), 0, "%s", ok[i].s);
		cr_assert_eq(v, ok[i].ms, "%s", ok[i].s);
	}
}

Test(duration, bad)
{
	static const char *const bad[] = {"", ".", "5.", "-1", "+1", " 1", "1 ",
	    "1s", "5ms", "1.2345", "0.0001", "1..2", "1.2.3", "0x10", "1e3",
	    "1,5", "18446744073709551.616", "18446744073709552",
	    "99999999999999999999999", "\xc2\xbd"};
	uint64_t                 v = 42;
	size_t                   i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(svc_parse_duration_ms(bad[i], &v), -EINVAL,
		    "\"%s\" accepted", bad[i]);
	cr_assert_eq(svc_parse_duration_ms(NULL, &v), -EINVAL);
	cr_assert_eq(v, 42, "output written on failure");
}

Test(duration, format_and_round_trip)
{
	char     buf[32];
	uint64_t v, ms;

	svc_format_duration_ms(5000, buf, sizeof(buf));
	cr_assert_str_eq(buf, "5");
	svc_format_duration_ms(250, buf, sizeof(buf));
	cr_assert_str_eq(buf, "0.25");
	svc_format_duration_ms(1500, buf, sizeof(buf));
	cr_assert_str_eq(buf, "1.5");
	svc_format_duration_ms(1, buf, sizeof(buf));
	cr_assert_str_eq(buf, "0.001");
	svc_format_duration_ms(1010, buf, sizeof(buf));
	cr_assert_str_eq(buf, "1.01");
	svc_format_duration_ms(UINT64_MAX, buf, sizeof(buf));
	cr_assert_str_eq(buf, "18446744073709551.615");
	for (ms = 0; ms < 200000; ms += 7) {
		svc_format_duration_ms(ms, buf, sizeof(buf));
		cr_assert_eq(svc_parse_duration_ms(buf, &v), 0, "%s", buf);
		cr_assert_eq(v, ms, "%s", buf);
	}
}
