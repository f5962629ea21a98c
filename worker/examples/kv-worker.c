/*
 * kv-worker: the example worker of the demo and the tests.  It does what
 * its options say and nothing else: by default it prints nothing, sends
 * nothing on the worker channel, and waits for SIGTERM or SIGINT, then
 * exits 0.
 *
 * The channel options show libkeyvisor (<keyvisor/worker.h>) at work:
 * --ready-after sends READY once, --heartbeat and --touch send HEARTBEAT and
 * TOUCH periodically (the first one period after the start), --value
 * publishes a value at the start and --lookup prints where a peer runs.  A
 * failed send is reported on stderr once per kind of message, and the
 * worker carries on: without a channel (run by hand) every send fails with
 * ENOTCONN.
 *
 * Signals are taken synchronously (sigtimedwait(2) on a blocked set), so
 * there are no handlers; the timers are the deadlines of that wait.  It
 * does not check the environment keyvisord gives it (empty mask, default
 * dispositions); the spawn tests do.
 */
#include <sys/resource.h>
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <keyvisor/worker.h>

#define MAX_SECONDS 1e9        /* about 31 years: any longer is a typo */
#define MAX_ORPHANS 1000       /* one worker must not exhaust the pid space */
#define ORPHAN_NS   200000000L /* how long an orphan outlives the worker */
#define NS          1000000000LL
#define NEVER       INT64_MAX /* a deadline that does not come */

#define USAGE                                                                  \
	"usage: kv-worker [--exit-after S] [--code N] [--crash] "              \
	"[--ignore-term]\n"                                                    \
	"                 [--orphans N] [--print] [--stdout-line TEXT]\n"      \
	"                 [--ready-after S] [--heartbeat S] [--touch S]\n"     \
	"                 [--value TEXT] [--lookup KEY]\n"

struct opts {
	double      exit_after; /* seconds; < 0: wait for a signal */
	long        code;       /* the exit status when the time is up */
	long        orphans;
	int         crash;
	int         ignore_term;
	int         print;
	const char *line;        /* --stdout-line; NULL: none */
	double      ready_after; /* seconds; < 0: never */
	double      heartbeat;   /* period in seconds; < 0: none */
	double      touch;       /* period in seconds; < 0: none */
	const char *value;       /* --value; NULL: none */
	const char *lookup;      /* --lookup KEY; NULL: none */
};

/*
 * What the worker does when, as deadlines on CLOCK_MONOTONIC in ns (NEVER:
 * not at all).  WARNED has a bit per kind of message already reported as
 * failed.
 */
struct plan {
	int64_t  exit_at;
	int64_t  ready_at;
	int64_t  beat_at, beat_every;
	int64_t  touch_at, touch_every;
	unsigned warned;
};

#define WARN_READY 0x1u
#define WARN_BEAT  0x2u
#define WARN_TOUCH 0x4u
#define WARN_VALUE 0x8u

static _Noreturn void
usage(void)
{
	fputs(USAGE, stderr);
	exit(2);
}

/* A number of seconds, decimals allowed.  Returns 0 or -EINVAL. */
static int
parse_seconds(const char *s, double *out)
{
	char  *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	/* The comparisons are false for NaN too. */
	if (end == s || *end != '\0' || errno != 0 || !(v >= 0) ||
	    !(v <= MAX_SECONDS))
		return -EINVAL;
	*out = v;
	return 0;
}

/* A period: seconds as parse_seconds() takes them, but not 0. */
static int
parse_period(const char *s, double *out)
{
	double v;

	if (parse_seconds(s, &v) < 0 || v == 0)
		return -EINVAL;
	*out = v;
	return 0;
}

/* A value for kv_set_value(): at most KV_VALUE_MAX bytes. */
static int
parse_value(const char *s, const char **out)
{
	if (strlen(s) > KV_VALUE_MAX)
		return -EINVAL;
	*out = s;
	return 0;
}

/* A decimal integer in [0, MAX].  Returns 0 or -EINVAL. */
static int
parse_count(const char *s, long max, long *out)
{
	char *end;
	long  v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0 || v < 0 || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static const struct option longopts[] = {
    {"exit-after", required_argument, NULL, 'e'},
    {"code", required_argument, NULL, 'c'},
    {"crash", no_argument, NULL, 'C'},
    {"ignore-term", no_argument, NULL, 'i'},
    {"orphans", required_argument, NULL, 'o'},
    {"print", no_argument, NULL, 'p'},
    {"stdout-line", required_argument, NULL, 'l'},
    {"ready-after", required_argument, NULL, 'r'},
    {"heartbeat", required_argument, NULL, 'h'},
    {"touch", required_argument, NULL, 't'},
    {"value", required_argument, NULL, 'v'},
    {"lookup", required_argument, NULL, 'k'},
    {NULL, 0, NULL, 0},
};

/* Apply option CH, with ARG, to O.  Returns 0, or -EINVAL for a bad ARG. */
static int
apply(struct opts *o, int ch, const char *arg)
{
	switch (ch) {
	case 'e':
		return parse_seconds(arg, &o->exit_after);
	case 'c':
		return parse_count(arg, 255, &o->code);
	case 'C':
		o->crash = 1;
		break;
	case 'i':
		o->ignore_term = 1;
		break;
	case 'o':
		return parse_count(arg, MAX_ORPHANS, &o->orphans);
	case 'p':
		o->print = 1;
		break;
	case 'l':
		o->line = arg;
		break;
	case 'r':
		return parse_seconds(arg, &o->ready_after);
	case 'h':
		return parse_period(arg, &o->heartbeat);
	case 't':
		return parse_period(arg, &o->touch);
	case 'v':
		return parse_value(arg, &o->value);
	case 'k':
		o->lookup = arg;
		break;
	}
	return 0;
}

static void
parse(int argc, char **argv, struct opts *o)
{
	int ch, li;

	*o = (struct opts){
	    .exit_after = -1, .ready_after = -1, .heartbeat = -1, .touch = -1};
	opterr = 0; /* our messages, with our name */
	while ((ch = getopt_long(argc, argv, ":", longopts, &li)) != -1) {
		if (ch == ':') {
			warnx("%s needs a value", argv[optind - 1]);
			usage();
		}
		if (ch == '?') {
			if (optopt != 0)
				warnx("unknown option -%c", optopt);
			else
				warnx("unknown option %s", argv[optind - 1]);
			usage();
		}
		if (apply(o, ch, optarg) < 0) {
			warnx("bad value for --%s: '%s'", longopts[li].name,
			    optarg);
			usage();
		}
	}
	if (optind < argc) {
		warnx("unexpected argument '%s'", argv[optind]);
		usage();
	}
	/* Both --orphans and --crash act at once unless told to wait. */
	if (o->exit_after < 0 && (o->orphans > 0 || o->crash))
		o->exit_after = 0;
}

/*
 * Fork N children that sleep ORPHAN_NS and exit.  The worker exits before
 * them, so they are orphans, which the supervisor (a subreaper) must reap.
 * They get back the default handling of SIGTERM and SIGINT, which the
 * worker changed (blocked as BLOCKED says, SIGTERM perhaps ignored).
 */
static void
spawn_orphans(long n, const sigset_t *blocked)
{
	struct timespec ts = {0, ORPHAN_NS};
	pid_t           pid;

	for (; n > 0; n--) {
		if ((pid = fork()) == -1)
			err(1, "unable to fork");
		if (pid == 0) {
			(void)signal(SIGTERM, SIG_DFL);
			(void)sigprocmask(SIG_UNBLOCK, blocked, NULL);
			while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
				;
			_exit(0);
		}
	}
}

static void
announce(const struct opts *o)
{
	const char *key = getenv("KEYVISOR_KEY");
	const char *inc = getenv("KEYVISOR_INCARNATION");

	if (o->print)
		printf("kv-worker %s pid %d incarnation %s\n",
		    key != NULL ? key : "-", (int)getpid(),
		    inc != NULL ? inc : "-");
	if (o->line != NULL)
		puts(o->line);
	if (fflush(stdout) == EOF)
		err(1, "unable to write to stdout");
}

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

/* NOW + SECONDS (at most MAX_SECONDS, so no overflow), or NEVER if < 0. */
static int64_t
after(int64_t now, double seconds)
{
	return seconds < 0 ? NEVER : now + (int64_t)(seconds * 1e9);
}

static void
plan_init(struct plan *p, const struct opts *o)
{
	int64_t now = now_ns();

	*p = (struct plan){
	    .exit_at = after(now, o->exit_after),
	    .ready_at = after(now, o->ready_after),
	    .beat_at = after(now, o->heartbeat),
	    .beat_every = o->heartbeat < 0 ? 0 : after(0, o->heartbeat),
	    .touch_at = after(now, o->touch),
	    .touch_every = o->touch < 0 ? 0 : after(0, o->touch),
	};
}

/* Report a failed send of WHAT (R < 0), once per kind (BIT). */
static void
report(struct plan *p, unsigned bit, const char *what, int r)
{
	if (r >= 0 || (p->warned & bit))
		return;
	p->warned |= bit;
	warnx("unable to send %s: %s", what, strerror(-r));
}

/*
 * The deadline after AT for a period of EVERY.  Missed periods (a stopped
 * worker) are skipped, not sent in a burst.
 */
static int64_t
next_period(int64_t at, int64_t every, int64_t now)
{
	return at + every > now ? at + every : now + every;
}

/* Send what is due at NOW, and move the deadlines on. */
static void
send_due(struct plan *p, int64_t now)
{
	if (now >= p->ready_at) {
		report(p, WARN_READY, "READY", kv_ready());
		p->ready_at = NEVER;
	}
	if (now >= p->beat_at) {
		report(p, WARN_BEAT, "HEARTBEAT", kv_heartbeat());
		p->beat_at = next_period(p->beat_at, p->beat_every, now);
	}
	if (now >= p->touch_at) {
		report(p, WARN_TOUCH, "TOUCH", kv_touch());
		p->touch_at = next_period(p->touch_at, p->touch_every, now);
	}
}

static int64_t
next_deadline(const struct plan *p)
{
	int64_t next = p->exit_at;

	if (p->ready_at < next)
		next = p->ready_at;
	if (p->beat_at < next)
		next = p->beat_at;
	if (p->touch_at < next)
		next = p->touch_at;
	return next;
}

/*
 * Say what the channel options ask for at the start: the value, and the
 * lookup.  The lookup's answer is data, so it goes to stdout; its failure
 * goes to stderr.
 */
static void
start_channel(const struct opts *o, struct plan *p)
{
	struct kv_entry e;
	int             r;

	if (o->value != NULL)
		report(p, WARN_VALUE, "VALUE",
		    kv_set_value(o->value, strlen(o->value)));
	if (o->lookup == NULL)
		return;
	if ((r = kv_lookup(o->lookup, &e)) < 0) {
		warnx("lookup %s: %s", o->lookup, kv_reg_strerror(r));
		return;
	}
	printf("lookup %s pid %d\n", o->lookup, (int)e.pid);
	if (fflush(stdout) == EOF)
		err(1, "unable to write to stdout");
}

/*
 * Wait for a signal of SET, sending what P says when it says so, until
 * P->exit_at.  Returns 1 if a signal came, 0 if the time ran out.
 */
static int
wait_signal(const sigset_t *set, struct plan *p)
{
	struct timespec left;
	int64_t         now, next;

	for (;;) {
		now = now_ns();
		send_due(p, now);
		if (now >= p->exit_at)
			return 0;
		if ((next = next_deadline(p)) == NEVER)
			break;
		left.tv_sec = (time_t)((next - now) / NS);
		left.tv_nsec = (long)((next - now) % NS);
		if (sigtimedwait(set, NULL, &left) != -1)
			return 1;
		if (errno != EAGAIN && errno != EINTR)
			err(1, "sigtimedwait");
	}
	while (sigwaitinfo(set, NULL) == -1)
		if (errno != EINTR)
			err(1, "sigwaitinfo");
	return 1;
}

/* Die of SIGSEGV, without leaving a core file behind. */
static _Noreturn void
crash(void)
{
	struct rlimit no_core = {0, 0};
	sigset_t      segv;

	(void)setrlimit(RLIMIT_CORE, &no_core);
	(void)signal(SIGSEGV, SIG_DFL);
	sigemptyset(&segv);
	sigaddset(&segv, SIGSEGV);
	(void)sigprocmask(SIG_UNBLOCK, &segv, NULL);
	(void)raise(SIGSEGV);
	abort(); /* NOTREACHED */
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct plan p;
	sigset_t    set;

	parse(argc, argv, &o);
	/* Before anything is printed: a stop may follow the first line. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	if (!o.ignore_term)
		sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		err(1, "sigprocmask");
	if (o.ignore_term)
		(void)signal(SIGTERM, SIG_IGN);
	spawn_orphans(o.orphans, &set);
	announce(&o);
	plan_init(&p, &o);
	start_channel(&o, &p);
	if (wait_signal(&set, &p))
		return 0;
	if (o.crash)
		crash();
	return (int)o.code;
}
