/*
 * kv-lookup-checker: proves, from outside the daemon, that no lookup
 * returns the pid of a worker that has already been reaped.
 *
 *   kv-lookup-checker [-p PREFIX -n COUNT] REGISTRY SECONDS [KEY ...]
 *
 * It maps the segment /keyvisor.REGISTRY read-only and, for SECONDS, looks
 * the keys up in turn with kv_reg_lookup() (the keys given, plus PREFIX1 ..
 * PREFIXCOUNT).  Every hit is checked against /proc: the pid must exist
 * with the start time the entry records.  A zombie is fine (killed, not
 * yet reaped, so still legitimately registered); a pid that is gone, or
 * reused by another process, means the worker was reaped.
 *
 * REAPED OR RACED.  Seeing the process gone does not by itself convict the
 * registry: the daemon may have reaped it and released the name between
 * our lookup and our look at /proc.  So the key is looked up once more
 * after /proc said "gone".  If the entry still names the same process
 * (pid and start time), then a lookup made after the reap returned the
 * reaped pid: a "dead answer", the violation DESIGN rules out.  If the
 * entry changed, it was a race in the checker, counted but harmless.  For
 * a dead answer the checker keeps looking to report how long the stale
 * entry stayed (stale_max_us).  A hit on a zombie is followed closely
 * (see follow()), since that key is about to change.
 *
 * Output: one line on stdout,
 *   lookups N hits N misses N dead N races N zombies N busy N torn N
 *   errors N stale_max_us N
 * and a line on stderr for each of the first few violations.  Exit 0, or 1
 * when any dead answer, torn entry (a key other than the one asked for) or
 * unexpected /proc error was seen, 2 for a usage or open error.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <keyvisor/registry.h>

#define USAGE                                                                  \
	"usage: kv-lookup-checker [-p PREFIX -n COUNT] REGISTRY SECONDS "      \
	"[KEY ...]\n"
#define CLOCK_EVERY  256          /* lookups between two reads of the clock */
#define REPORT_MAX   10           /* violations described on stderr */
#define STALE_MAX_NS 1000000000LL /* stop timing a stale entry after 1 s */
#define COUNT_MAX    1000000      /* keys from -n: a typo beyond this */
#define FOLLOW_NS    100000000LL  /* follow a zombie's key for 0.1 s at most */

struct keys {
	char  **v;
	size_t *len;
	size_t  n;
};

struct opts {
	const char *registry;
	double      seconds;
	struct keys keys;
	size_t      nalloc; /* keys[0 .. nalloc) were allocated here */
};

/* What the checker saw; see the output line above. */
struct tally {
	uint64_t lookups, hits, misses, dead, races, zombies, busy, torn;
	uint64_t errors;
	int64_t  stale_max_ns;
};

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static _Noreturn void
usage(void)
{
	fputs(USAGE, stderr);
	exit(2);
}

/* State letter of PID from /proc/PID/stat: the one after the last ')'. */
static char
proc_state(pid_t pid)
{
	char   path[32], buf[512], *p;
	FILE  *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return '?';
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL || p[1] != ' ')
		return '?';
	return p[2];
}

static bool
same_process(const struct kv_entry *a, const struct kv_entry *b)
{
	return a->pid == b->pid && a->start_time == b->start_time;
}

/*
 * KEY still names the process of OLD although /proc says it was reaped:
 * time how long the entry stays, up to STALE_MAX_NS, and describe it.
 */
static void
convict(const struct kv_reg *reg, const struct kv_entry *old, int why,
    struct tally *t)
{
	struct kv_entry e;
	int64_t         from = now_ns(), ns;

	do
		ns = now_ns() - from;
	while (ns < STALE_MAX_NS &&
	       kv_reg_lookup(reg, old->key, old->keylen, &e) == 0 &&
	       same_process(&e, old));
	if (ns > t->stale_max_ns)
		t->stale_max_ns = ns;
	if (++t->dead <= REPORT_MAX)
		fprintf(stderr,
		    "kv-lookup-checker: %s: dead answer: pid %d %s, still "
		    "registered %" PRId64 " us after that was seen\n",
		    old->key, (int)old->pid,
		    why == -ESRCH ? "no longer exists" : "was reused",
		    ns / 1000);
}

/*
 * The process of E: 0 while it exists (alive or a zombie), else -ESRCH
 * (gone) or -ESTALE (its pid reused), or another -errno.
 */
static int
process_of(const struct kv_entry *e)
{
	uint64_t st;
	int      r;

	r = kv_proc_start_time(e->pid, &st);
	if (r == 0 && st != e->start_time)
		r = -ESTALE;
	return r;
}

/*
 * /proc said the process of E is gone (R): look again.  If the key still
 * names it, that is a dead answer.
 */
static void
reaped(
    const struct kv_reg *reg, const struct kv_entry *e, int r, struct tally *t)
{
	struct kv_entry again;

	if (r != -ESRCH && r != -ESTALE) {
		if (++t->errors <= REPORT_MAX)
			fprintf(stderr, "kv-lookup-checker: %s: pid %d: %s\n",
			    e->key, (int)e->pid, strerror(-r));
		return;
	}
	if (kv_reg_lookup(reg, e->key, e->keylen, &again) == 0 &&
	    same_process(&again, e))
		convict(reg, e, r, t);
	else
		t->races++;
}

/*
 * FOLLOW A ZOMBIE.  A zombie is a worker killed and not yet reaped: the
 * daemon is about to reap it and release its name, which is the moment a
 * dead answer could slip through.  So its key is looked up without pause,
 * with /proc checked after each hit, until the entry no longer names that
 * process (or FOLLOW_NS passed).  Cycling over all the keys would come
 * back to it only after the transition is long over.
 */
static void
follow(const struct kv_reg *reg, const struct kv_entry *e, struct tally *t)
{
	struct kv_entry cur;
	int64_t         end = now_ns() + FOLLOW_NS;
	int             r;

	t->zombies++;
	while (now_ns() < end) {
		t->lookups++;
		r = kv_reg_lookup(reg, e->key, e->keylen, &cur);
		if (r != 0 || !same_process(&cur, e)) {
			t->misses += r != 0;
			t->hits += r == 0;
			return; /* released (and perhaps restarted): fine */
		}
		t->hits++;
		if ((r = process_of(e)) != 0) {
			reaped(reg, e, r, t);
			return;
		}
	}
}

/* A hit E: is its process still there? */
static void
check_hit(const struct kv_reg *reg, const struct kv_entry *e, struct tally *t)
{
	int r;

	if ((r = process_of(e)) != 0)
		reaped(reg, e, r, t);
	else if (proc_state(e->pid) == 'Z')
		follow(reg, e, t);
}

/* One lookup of KEY, and the checks of its answer. */
static void
look(const struct kv_reg *reg, const char *key, size_t len, struct tally *t)
{
	struct kv_entry e;
	int             r;

	t->lookups++;
	r = kv_reg_lookup(reg, key, len, &e);
	if (r == -ENOENT) {
		t->misses++;
		return;
	}
	if (r == -EBUSY) {
		t->busy++;
		return;
	}
	if (r < 0) {
		if (++t->errors <= REPORT_MAX)
			fprintf(stderr, "kv-lookup-checker: %s: %s\n", key,
			    kv_reg_strerror(r));
		return;
	}
	t->hits++;
	if (e.keylen != len || memcmp(e.key, key, len) != 0) {
		if (++t->torn <= REPORT_MAX)
			fprintf(stderr,
			    "kv-lookup-checker: %s: got the entry "
			    "of another key\n",
			    key);
		return;
	}
	check_hit(reg, &e, t);
}

static void
run(const struct kv_reg *reg, const struct keys *k, double seconds,
    struct tally *t)
{
	int64_t end = now_ns() + (int64_t)(seconds * 1e9);
	size_t  i = 0;

	for (;;) {
		int n;

		for (n = 0; n < CLOCK_EVERY; n++) {
			look(reg, k->v[i], k->len[i], t);
			if (++i == k->n)
				i = 0;
		}
		if (now_ns() >= end)
			break;
	}
}

static void
add_key(struct keys *k, char *key)
{
	const char *why = kv_key_check(key, strlen(key));

	if (why != NULL) {
		fprintf(stderr, "kv-lookup-checker: %s: %s\n", key, why);
		exit(2);
	}
	k->v[k->n] = key;
	k->len[k->n] = strlen(key);
	k->n++;
}

/* The keys: PREFIX1 .. PREFIXCOUNT, then ARGV[0 .. ARGC). */
static void
keys_init(struct keys *k, const char *prefix, long count, int argc, char **argv)
{
	long i;

	k->n = 0;
	k->v = calloc((size_t)count + (size_t)argc, sizeof(*k->v));
	k->len = calloc((size_t)count + (size_t)argc, sizeof(*k->len));
	if (k->v == NULL || k->len == NULL) {
		perror("kv-lookup-checker");
		exit(2);
	}
	for (i = 1; i <= count; i++) {
		char *key;

		if (asprintf(&key, "%s%ld", prefix, i) == -1) {
			perror("kv-lookup-checker");
			exit(2);
		}
		add_key(k, key);
	}
	for (i = 0; i < argc; i++)
		add_key(k, argv[i]);
}

/* A number of seconds, decimals allowed, up to a million. */
static double
seconds_arg(const char *s)
{
	char  *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	/* The comparisons are false for NaN too. */
	if (end == s || *end != '\0' || errno != 0 || !(v >= 0) || !(v <= 1e6))
		usage();
	return v;
}

/* A key count, 1 to COUNT_MAX. */
static long
count_arg(const char *s)
{
	char *end;
	long  v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0 || v < 1 || v > COUNT_MAX)
		usage();
	return v;
}

static void
report(const struct tally *t)
{
	printf("lookups %" PRIu64 " hits %" PRIu64 " misses %" PRIu64
	       " dead %" PRIu64 " races %" PRIu64 " zombies %" PRIu64
	       " busy %" PRIu64 " torn %" PRIu64 " errors %" PRIu64
	       " stale_max_us %" PRId64 "\n",
	    t->lookups, t->hits, t->misses, t->dead, t->races, t->zombies,
	    t->busy, t->torn, t->errors, t->stale_max_ns / 1000);
}

static void
keys_fini(struct keys *k, size_t nalloc)
{
	size_t i;

	for (i = 0; i < nalloc; i++)
		free(k->v[i]);
	free(k->v);
	free(k->len);
}

/* Options and keys; exits on a usage error. */
static void
parse(int argc, char **argv, struct opts *o)
{
	const char *prefix = NULL;
	long        count = 0;
	int         ch;

	while ((ch = getopt(argc, argv, "p:n:")) != -1) {
		switch (ch) {
		case 'p':
			prefix = optarg;
			break;
		case 'n':
			count = count_arg(optarg);
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 2 || (prefix == NULL) != (count == 0))
		usage();
	o->registry = argv[0];
	o->seconds = seconds_arg(argv[1]);
	keys_init(&o->keys, prefix, count, argc - 2, argv + 2);
	o->nalloc = (size_t)count;
	if (o->keys.n == 0)
		usage();
}

int
main(int argc, char **argv)
{
	struct tally   t = {0};
	struct opts    o;
	struct kv_reg *reg;
	char           seg[128];
	int            r;

	parse(argc, argv, &o);
	if (snprintf(seg, sizeof(seg), "keyvisor.%s", o.registry) >=
	    (int)sizeof(seg))
		usage();
	if ((r = kv_reg_open(seg, KV_REG_RDONLY, &reg)) < 0) {
		fprintf(stderr, "kv-lookup-checker: unable to open /%s: %s\n",
		    seg, kv_reg_strerror(r));
		return 2;
	}
	run(reg, &o.keys, o.seconds, &t);
	kv_reg_close(reg);
	keys_fini(&o.keys, o.nalloc);
	report(&t);
	return t.dead > 0 || t.torn > 0 || t.errors > 0;
}
