/*
 * registry-bench: lookups per second from a separate reader process, with
 * the same probe run unsynchronised as the raw limit, and a writer process
 * churning beside the reader.  Prints one "NAME VALUE UNIT" line per figure.
 *
 *   registry-bench [SECONDS_PER_ROUND [ROUNDS]]     (default 0.1, 30)
 *
 * Each figure is the best of ROUNDS rounds, each a new reader process
 * pinned to the last CPU (the churning writer is pinned to the first, so
 * that on a 2-core machine they do not share a core); every round is
 * printed in a comment line.  On a virtual machine one reader process
 * can run at a third of the speed of the next, the same code on the same
 * table, as the host places it: the best round is what the code costs,
 * the spread is what the host costs.  The host's slow spells last
 * seconds, so many short rounds spread over a longer time find the
 * code's cost more often than a few long ones: 0.1 s is still two
 * million lookups a round.  The five figures at 50 % are measured
 * together, round by round (hit, miss, raw hit, plain hit, raw miss,
 * then again), so that their ratios compare the same moments of the
 * host.
 *
 * lookup_hit_50_uuid is lookup_hit_50 with keys of 36 bytes (UUIDs as
 * text) in a registry of their own: too long for a slot's line, so that
 * every hit also reads the slot's tail.
 *
 * plain_hit_50 is the floor this machine sets at the moment of the run:
 * the same keys in a private table of the same 65,536 slots, one 64-byte
 * cache line each, found by SipHash-2-4 and linear probing, with no
 * partitions, no synchronisation and no header.  Memory latency moves
 * every hit figure from one run to the next on a shared host; the ratio
 * lookup_vs_plain_50 moves much less.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keyvisor/registry.h"
#include "siphash.h"
#include "table.h"

#define NSLOTS    65536u
#define KEYS_MAX  (NSLOTS - NSLOTS / 64)
#define CHURN_PPS 10000 /* register/unregister pairs a second */
#define NCHURN    1024

typedef int (*lookup_fn)(const struct kv_reg *, const char *, size_t,
    struct kv_entry *);

struct shared {
	int    stop;
	double churn_rate; /* pairs a second, as achieved */
};

static char   keys[KEYS_MAX][16];
static size_t keylens[KEYS_MAX];
/* Keys of 36 bytes, too long for a slot's line: UUIDs, as text. */
#define NUUIDS (NSLOTS / 2)
static char   uuids[NUUIDS][40];
static size_t uuidlens[NUUIDS];
#define ROUNDS_MAX 64
#define FIGS_MAX   8 /* measured together */

static double seconds = 0.1;
static int    rounds = 30; /* at most ROUNDS_MAX */

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
pin(int cpu)
{
	cpu_set_t set;
	long      n = sysconf(_SC_NPROCESSORS_ONLN);

	if (cpu < 0)
		cpu = (int)n - 1;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	(void)sched_setaffinity(0, sizeof(set), &set);
}

/*
 * The value is 16 bytes derived from the pid (one multiply, so checking it
 * costs little beside a lookup): a reader that sees a value that does not
 * match the pid, or a key other than the one it asked for, has seen a torn
 * entry.
 */
#define MIX UINT64_C(0x9e3779b97f4a7c15)

static struct kv_entry
entry(const char *key, size_t len, pid_t pid)
{
	struct kv_entry e = {0};
	uint64_t        v[2] = {(uint64_t)pid * MIX, ~((uint64_t)pid * MIX)};

	e.keylen = (uint16_t)len;
	memcpy(e.key, key, len);
	e.pid = pid;
	e.flags = KV_ENTRY_PUBLISHED;
	e.valuelen = sizeof(v);
	memcpy(e.value, v, sizeof(v));
	snprintf(e.kind, sizeof(e.kind), "bench");
	return e;
}

/*
 * Are the first LEN bytes (at most 16) of A and B equal?  In two masked
 * words, so that the check costs the reader a few instructions rather than
 * a call: it runs after every lookup, and what it costs is counted against
 * every figure alike.  Both buffers hold 16 bytes; little-endian masks.
 */
static bool
key16_eq(const char *a, const char *b, size_t len)
{
	uint64_t a0, a1, b0, b1, m0, m1;

	memcpy(&a0, a, 8);
	memcpy(&a1, a + 8, 8);
	memcpy(&b0, b, 8);
	memcpy(&b1, b + 8, 8);
	m0 = len >= 8 ? ~UINT64_C(0) : (UINT64_C(1) << (8 * len)) - 1;
	m1 = len >= 16 ? ~UINT64_C(0)
	     : len <= 8 ? 0
	                : (UINT64_C(1) << (8 * (len - 8))) - 1;
	return ((a0 ^ b0) & m0) == 0 && ((a1 ^ b1) & m1) == 0;
}

static bool
torn(const struct kv_entry *e, const char *key, size_t len)
{
	uint64_t v[2];

	memcpy(v, e->value, sizeof(v));
	return e->keylen != len || !key16_eq(e->key, key, len) ||
	    e->valuelen != sizeof(v) || v[0] != (uint64_t)e->pid * MIX ||
	    v[1] != ~v[0];
}

/* A registry of P's geometry in a memfd of its own. */
static struct kv_reg *
new_registry(const struct kv_reg_params *p)
{
	struct kv_reg *r;
	int            fd = memfd_create("registry-bench", MFD_CLOEXEC);
	int            rc = fd < 0 ? -errno : kv_reg_create_fd(fd, p, &r);

	if (rc < 0) {
		fprintf(stderr, "registry-bench: %s\n", kv_reg_strerror(rc));
		exit(1);
	}
	close(fd);
	return r;
}

/* Register keys [FROM, TO) of keys[], or of uuids[]. */
static void
fill(struct kv_reg *r, size_t from, size_t to, bool uuid)
{
	size_t i;

	for (i = from; i < to; i++) {
		const char     *key = uuid ? uuids[i] : keys[i];
		struct kv_entry e = entry(key, uuid ? uuidlens[i] : keylens[i],
		    (pid_t)i + 2);
		int             rc = kv_reg_register(r, &e, NULL);

		if (rc < 0) {
			fprintf(stderr, "registry-bench: register %s: %s\n", key,
			    kv_reg_strerror(rc));
			exit(1);
		}
	}
}

/*
 * Look up keys [lo, hi) of the set at BASE (rows of STRIDE bytes, lengths
 * in LENS) in a scrambled order for the configured time; returns lookups a
 * second and adds torn reads to *BAD.  Inlined into reader() once per key
 * set, so that each copy indexes its rows with a constant stride.
 */
static inline __attribute__((always_inline)) double
lookups(const struct kv_reg *r, lookup_fn fn, const char *base,
    size_t stride, const size_t *lens, size_t lo, size_t hi, uint64_t *bad)
{
	struct kv_entry e;
	uint64_t        n = 0, sum = 0;
	double          t0, t;
	size_t          span = hi - lo, i = 0;

	t0 = now_s();
	do {
		int k;

		for (k = 0; k < 4096; k++) {
			size_t      j = lo + (i * 2654435761u) % span;
			const char *key = base + j * stride;

			if (fn(r, key, lens[j], &e) == 0) {
				sum += (uint64_t)e.pid;
				*bad += torn(&e, key, lens[j]);
			}
			i++;
		}
		n += 4096;
		t = now_s() - t0;
	} while (t < seconds);
	*bad += sum == 42; /* keep sum alive */
	return (double)n / t;
}

/*
 * In a child pinned to the last CPU: look up keys [lo, hi) of the short
 * keys, or of the UUIDs.  Writes lookups/s and torn reads to FD.
 */
static void
reader(const struct kv_reg *r, lookup_fn fn, size_t lo, size_t hi,
    bool uuid, int fd)
{
	uint64_t bad = 0;
	double   out[2];

	pin(-1);
	if (uuid)
		out[0] = lookups(r, fn, uuids[0], sizeof(uuids[0]), uuidlens,
		    lo, hi, &bad);
	else
		out[0] = lookups(r, fn, keys[0], sizeof(keys[0]), keylens, lo,
		    hi, &bad);
	out[1] = (double)bad;
	if (write(fd, out, sizeof(out)) != sizeof(out))
		_exit(1);
	_exit(0);
}

static double
measure_once(const struct kv_reg *r, lookup_fn fn, size_t lo, size_t hi,
    bool uuid, double *torn_out)
{
	double out[2] = {0, 0};
	int    p[2], st;
	pid_t  pid;

	if (pipe(p) == -1)
		exit(1);
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		reader(r, fn, lo, hi, uuid, p[1]);
	}
	close(p[1]);
	if (read(p[0], out, sizeof(out)) != sizeof(out))
		fprintf(stderr, "registry-bench: reader failed\n");
	close(p[0]);
	waitpid(pid, &st, 0);
	if (torn_out != NULL)
		*torn_out += out[1];
	return out[0] / 1e6;
}

/* One figure: what to look up, how, and what was measured. */
struct figure {
	const char *name;
	lookup_fn   fn;
	size_t      lo, hi; /* the keys looked up */
	bool        uuid;   /* in uuids[], not keys[] */
	double     *torn;   /* where to count torn reads; NULL: not counted */
	double      best;   /* Mlookups/s, the best round */
};

/*
 * Measure the N figures of FIG together, round by round (each round runs
 * every figure once before the next round starts), so that the host's
 * slow and fast moments fall on all of them alike and their ratios compare
 * like with like.  Every round is printed in a comment line per figure.
 */
static void
measure(const struct kv_reg *r, struct figure *fig, size_t n)
{
	double x[ROUNDS_MAX][FIGS_MAX];
	size_t f;
	int    i;

	if (n > FIGS_MAX)
		n = FIGS_MAX;
	for (i = 0; i < rounds; i++)
		for (f = 0; f < n; f++)
			x[i][f] = measure_once(r, fig[f].fn, fig[f].lo,
			    fig[f].hi, fig[f].uuid, fig[f].torn);
	for (f = 0; f < n; f++) {
		fig[f].best = 0;
		printf("# %s rounds:", fig[f].name);
		for (i = 0; i < rounds; i++) {
			printf(" %.2f", x[i][f]);
			if (x[i][f] > fig[f].best)
				fig[f].best = x[i][f];
		}
		printf("\n");
	}
}

/* One figure measured alone: its best round. */
static double
measure1(const char *name, const struct kv_reg *r, lookup_fn fn, size_t lo,
    size_t hi, bool uuid, double *torn_out)
{
	struct figure f = {name, fn, lo, hi, uuid, torn_out, 0};

	measure(r, &f, 1);
	return f.best;
}

/*
 * The churning writer: CHURN_PPS register/unregister pairs a second over
 * keys the reader also looks up, paced in 1 ms steps.
 */
static pid_t
churn(struct kv_reg *r, struct shared *sh, size_t base)
{
	uint64_t pairs = 0;
	double   t0;
	pid_t    pid = fork();

	if (pid != 0)
		return pid;
	pin(0);
	t0 = now_s();
	while (!__atomic_load_n(&sh->stop, __ATOMIC_RELAXED)) {
		uint64_t due = (uint64_t)((now_s() - t0) * CHURN_PPS);

		for (; pairs < due; pairs++) {
			size_t          j = base + pairs % NCHURN;
			struct kv_entry e = entry(keys[j], keylens[j],
			    (pid_t)(pairs % 30000) + 2);

			if (kv_reg_register(r, &e, NULL) == 0)
				kv_reg_unregister(r, keys[j], keylens[j], e.pid);
		}
		usleep(1000);
	}
	sh->churn_rate = (double)pairs / (now_s() - t0);
	_exit(0);
}

/* The plain table of plain_hit_50. */
struct plain_slot {
	uint64_t hash; /* 0: empty */
	int32_t  pid;
	uint16_t keylen;
	uint16_t valuelen;
	char     key[24];
	uint8_t  value[24];
};
_Static_assert(sizeof(struct plain_slot) == 64, "one cache line");

static struct plain_slot *plain;
static uint8_t            plain_seed[16];

static uint64_t
plain_hash(const char *key, size_t len)
{
	uint64_t h = kv_siphash64(plain_seed, key, len);

	return h != 0 ? h : 1;
}

static void
plain_fill(size_t from, size_t to)
{
	size_t i;

	plain = aligned_alloc(64, NSLOTS * sizeof(*plain));
	if (plain == NULL)
		exit(1);
	memset(plain, 0, NSLOTS * sizeof(*plain));
	arc4random_buf(plain_seed, sizeof(plain_seed));
	for (i = from; i < to; i++) {
		struct kv_entry   e = entry(keys[i], keylens[i], (pid_t)i + 2);
		uint64_t          h = plain_hash(keys[i], keylens[i]);
		size_t            j = h & (NSLOTS - 1);
		struct plain_slot *ps;

		while (plain[j].hash != 0)
			j = (j + 1) & (NSLOTS - 1);
		ps = &plain[j];
		ps->hash = h;
		ps->pid = e.pid;
		ps->keylen = e.keylen;
		ps->valuelen = e.valuelen;
		memcpy(ps->key, e.key, e.keylen);
		memcpy(ps->value, e.value, e.valuelen);
	}
}

static int
plain_lookup(const struct kv_reg *r, const char *k, size_t n,
    struct kv_entry *e)
{
	uint64_t h = plain_hash(k, n);
	size_t   j = h & (NSLOTS - 1);

	(void)r;
	for (; plain[j].hash != 0; j = (j + 1) & (NSLOTS - 1)) {
		const struct plain_slot *ps = &plain[j];

		if (ps->hash == h && ps->keylen == n &&
		    memcmp(ps->key, k, n) == 0) {
			e->pid = ps->pid;
			e->keylen = ps->keylen;
			e->valuelen = ps->valuelen;
			memcpy(e->key, ps->key, sizeof(ps->key));
			memcpy(e->value, ps->value, sizeof(ps->value));
			return 0;
		}
	}
	return -ENOENT;
}

static int
sync_lookup(const struct kv_reg *r, const char *k, size_t n,
    struct kv_entry *e)
{
	return kv_reg_lookup(r, k, n, e);
}

int
main(int argc, char **argv)
{
	struct kv_reg_params p = {.capacity = KEYS_MAX, .nslots = NSLOTS};
	struct kv_reg       *r;
	struct shared       *sh;
	size_t               half = NSLOTS / 2, most = NSLOTS * 9 / 10, i;
	double               t = 0, t_churn = 0;
	pid_t                w;

	if (argc > 1)
		seconds = atof(argv[1]) > 0 ? atof(argv[1]) : seconds;
	if (argc > 2)
		rounds = atoi(argv[2]) > 0 ? atoi(argv[2]) : rounds;
	if (rounds > ROUNDS_MAX)
		rounds = ROUNDS_MAX;
	for (i = 0; i < KEYS_MAX; i++)
		keylens[i] = (size_t)snprintf(keys[i], sizeof(keys[i]),
		    "user:%zu", i * 7919 % 1000003);
	for (i = 0; i < NUUIDS; i++)
		uuidlens[i] = (size_t)snprintf(uuids[i], sizeof(uuids[i]),
		    "%08zx-e29b-41d4-a716-446655440000", i * 7919 % 1000003);
	r = new_registry(&p);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	fill(r, 0, half, false);
	plain_fill(0, half);
	{
		struct figure f50[] = {
		    {"lookup_hit_50", sync_lookup, 0, half, false, &t, 0},
		    {"lookup_miss_50", sync_lookup, half, most, false, &t, 0},
		    {"raw_hit_50", kv_table_lookup_unsync, 0, half, false, NULL,
		        0},
		    {"plain_hit_50", plain_lookup, 0, half, false, NULL, 0},
		    {"raw_miss_50", kv_table_lookup_unsync, half, most, false,
		        NULL, 0},
		};

		measure(r, f50, sizeof(f50) / sizeof(f50[0]));
		printf("lookup_hit_50 %.2f Mlookups/s\n", f50[0].best);
		printf("lookup_miss_50 %.2f Mlookups/s\n", f50[1].best);
		printf("raw_hit_50 %.2f Mlookups/s\n", f50[2].best);
		printf("lookup_vs_raw_50 %.1f %%\n",
		    100 * f50[0].best / f50[2].best);
		printf("plain_hit_50 %.2f Mlookups/s\n", f50[3].best);
		printf("lookup_vs_plain_50 %.1f %%\n",
		    100 * f50[0].best / f50[3].best);
		printf("raw_miss_50 %.2f Mlookups/s\n", f50[4].best);
	}
	free(plain);
	{
		struct kv_reg *ru = new_registry(&p);

		fill(ru, 0, half, true);
		printf("lookup_hit_50_uuid %.2f Mlookups/s\n",
		    measure1("lookup_hit_50_uuid", ru, sync_lookup, 0, half, true,
		        &t));
		kv_reg_close(ru);
	}
	fill(r, half, most, false);
	printf("lookup_hit_90 %.2f Mlookups/s\n",
	    measure1("lookup_hit_90", r, sync_lookup, 0, most, false, &t));
	printf("lookup_miss_90 %.2f Mlookups/s\n",
	    measure1("lookup_miss_90", r, sync_lookup, most, KEYS_MAX, false,
	        &t));
	for (i = half; i < most; i++)
		kv_reg_unregister(r, keys[i], keylens[i], (pid_t)i + 2);
	/*
	 * The churned keys are the top of the hit range: the writer registers
	 * and unregisters them while the reader looks them up with the rest.
	 */
	for (i = half - NCHURN; i < half; i++)
		kv_reg_unregister(r, keys[i], keylens[i], (pid_t)i + 2);
	w = churn(r, sh, half - NCHURN);
	printf("lookup_hit_50_churn %.2f Mlookups/s\n",
	    measure1("lookup_hit_50_churn", r, sync_lookup, 0, half, false,
	        &t_churn));
	__atomic_store_n(&sh->stop, 1, __ATOMIC_RELAXED);
	waitpid(w, NULL, 0);
	printf("churn_rate %.0f pairs/s\n", sh->churn_rate);
	printf("torn_reads %.0f count\n", t + t_churn);
	kv_reg_close(r);
	return t + t_churn > 0 ? 1 : 0;
}
