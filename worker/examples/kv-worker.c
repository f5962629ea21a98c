/*
 * kv-worker: the example worker of the demo and the tests.  It does what
 * its options say and nothing else: by default it prints nothing and waits
 * for SIGTERM or SIGINT, then exits 0.
 *
 * Signals are taken synchronously (sigtimedwait(2) on a blocked set), so
 * there are no handlers.  It does not check the environment keyvisord
 * gives it (empty mask, default dispositions); the spawn tests do.
 */
#include <sys/resource.h>
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_SECONDS 1e9        /* about 31 years: any longer is a typo */
#define MAX_ORPHANS 1000       /* one worker must not exhaust the pid space */
#define ORPHAN_NS   200000000L /* how long an orphan outlives the worker */

#define USAGE                                                                  \
	"usage: kv-worker [--exit-after S] [--code N] [--crash] "              \
	"[--ignore-term]\n"                                                    \
	"                 [--orphans N] [--print] [--stdout-line TEXT]\n"

struct opts {
	double      exit_after; /* seconds; < 0: wait for a signal */
	long        code;       /* the exit status when the time is up */
	long        orphans;
	int         crash;
	int         ignore_term;
	int         print;
	const char *line; /* --stdout-line; NULL: none */
};

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
	}
	return 0;
}

static void
parse(int argc, char **argv, struct opts *o)
{
	int ch, li;

	*o = (struct opts){.exit_after = -1};
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

/*
 * Wait for a signal of SET, for SECONDS if >= 0.  Returns 1 if one came,
 * 0 if the time ran out.
 */
static int
wait_signal(const sigset_t *set, double seconds)
{
	struct timespec now, end, left;

	if (seconds < 0) {
		while (sigwaitinfo(set, NULL) == -1)
			if (errno != EINTR)
				err(1, "sigwaitinfo");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += (time_t)seconds;
	end.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
	if (end.tv_nsec >= 1000000000L) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000L;
	}
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		left.tv_sec = end.tv_sec - now.tv_sec;
		left.tv_nsec = end.tv_nsec - now.tv_nsec;
		if (left.tv_nsec < 0) {
			left.tv_sec--;
			left.tv_nsec += 1000000000L;
		}
		if (left.tv_sec < 0)
			return 0;
		if (sigtimedwait(set, NULL, &left) != -1)
			return 1;
		if (errno == EAGAIN)
			return 0;
		if (errno != EINTR)
			err(1, "sigtimedwait");
	}
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
	if (wait_signal(&set, o.exit_after))
		return 0;
	if (o.crash)
		crash();
	return (int)o.code;
}
