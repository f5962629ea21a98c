/*
 * kv_route_pick(): the properties that make rendezvous hashing worth having
 * (fair shares, minimal movement when shards come and go, independence from
 * the order the shards are listed in), its errors, and a few answers fixed
 * once with libsodium's SipHash, so a change of the weight format, which
 * would reshuffle every cluster, cannot pass unnoticed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <keyvisor/registry.h>

#define NKEYS   10000
#define NSHARDS 9

static const char *const names[NSHARDS] = {
    "node-a.example.net",
    "node-b.example.net",
    "node-c.example.net",
    "node-d.example.net",
    "node-e.example.net",
    "node-f.example.net",
    "node-g.example.net",
    "node-h.example.net",
    "node-i.example.net",
};

static size_t
key_of(int i, char *buf, size_t size)
{
	return (size_t)snprintf(buf, size, "user:%d", i);
}

/* The NAME that KEY number I goes to; any error fails the test. */
static const char *
owner(int i, const char *const *shards, size_t n)
{
	char   key[32];
	size_t len = key_of(i, key, sizeof(key));
	int    r;

	r = kv_route_pick(key, len, shards, n);
	cr_assert(
	    r >= 0 && (size_t)r < n, "pick returned %d for %zu shards", r, n);
	return shards[r];
}

Test(route, errors)
{
	const char *one[] = {"a"};
	const char *bad[3][3] = {
	    {NULL, "b", "c"}, {"a", NULL, "c"}, {"a", "b", NULL}};
	const char *empty[3][3] = {
	    {"", "b", "c"}, {"a", "", "c"}, {"a", "b", ""}};
	int i;

	cr_expect_eq(kv_route_pick("k", 1, one, 0), -EINVAL);
	cr_expect_eq(kv_route_pick("k", 1, NULL, 1), -EINVAL);
	cr_expect_eq(kv_route_pick(NULL, 1, one, 1), -EINVAL);
	for (i = 0; i < 3; i++) {
		cr_expect_eq(kv_route_pick("k", 1, bad[i], 3), -EINVAL,
		    "NULL name at %d", i);
		cr_expect_eq(kv_route_pick("k", 1, empty[i], 3), -EINVAL,
		    "empty name at %d", i);
	}
	cr_expect_eq(kv_route_pick("k", 1, one, 1), 0);
}

/* Answers computed independently, with libsodium's crypto_shorthash. */
Test(route, fixed_answers)
{
	static const char *const shards[] = {
	    "alpha", "bravo", "charlie", "delta", "echo"};
	static const int want[] = {1, 2, 4, 2, 4, 1, 0, 1, 4, 3, 3, 2, 3, 2, 3,
	    0, 4, 4, 2, 2, 4, 1, 4, 1};
	char             key[32];
	size_t           len;
	int              i, r;

	for (i = 0; i < (int)(sizeof(want) / sizeof(want[0])); i++) {
		len = key_of(i, key, sizeof(key));
		r = kv_route_pick(key, len, shards, 5);
		cr_expect_eq(
		    r, want[i], "%s: got %d, want %d", key, r, want[i]);
	}
}

Test(route, deterministic_and_keylen_bounded)
{
	char key[32];
	int  i, first;

	for (i = 0; i < NKEYS; i++)
		cr_assert_eq(owner(i, names, 5), owner(i, names, 5));
	/* Bytes past KEYLEN are not part of the key. */
	for (i = 0; i < 100; i++) {
		key_of(i, key, sizeof(key));
		first = kv_route_pick(key, strlen(key), names, 5);
		strcat(key, "#tail");
		cr_assert_eq(
		    kv_route_pick(key, strlen(key) - 5, names, 5), first);
	}
}

/* Each of 4 shards gets 2500 keys of 10000, give or take 25%. */
Test(route, fair_shares)
{
	size_t count[4] = {0}, i;
	char   key[32];
	int    k, r;

	for (k = 0; k < NKEYS; k++) {
		r = kv_route_pick(key, key_of(k, key, sizeof(key)), names, 4);
		cr_assert(r >= 0 && r < 4);
		count[r]++;
	}
	for (i = 0; i < 4; i++)
		cr_expect(count[i] >= NKEYS / 4 * 3 / 4 &&
		              count[i] <= NKEYS / 4 * 5 / 4,
		    "shard %zu holds %zu of %d keys", i, count[i], NKEYS);
}

/*
 * Going from N to N+1 shards moves about 1/(N+1) of the keys, every one of
 * them to the new shard.  The newcomer is listed first, so an index mixed
 * up with a name would show.
 */
Test(route, adding_a_shard)
{
	const char *grown[NSHARDS];
	const char *before, *after;
	size_t      n, moved;
	double      lo, hi;
	int         k;

	for (n = 3; n <= 8; n++) {
		grown[0] = names[n];
		memcpy(grown + 1, names, n * sizeof(names[0]));
		moved = 0;
		for (k = 0; k < NKEYS; k++) {
			before = owner(k, names, n);
			after = owner(k, grown, n + 1);
			if (before == after)
				continue;
			cr_assert_eq(after, names[n],
			    "n=%zu: key %d moved from %s to %s, not the new "
			    "shard",
			    n, k, before, after);
			moved++;
		}
		lo = 0.5 / (double)(n + 1) * NKEYS;
		hi = 1.5 / (double)(n + 1) * NKEYS;
		cr_expect(moved >= lo && moved <= hi,
		    "n=%zu: %zu of %d keys moved, want %.0f..%.0f", n, moved,
		    NKEYS, lo, hi);
	}
}

/* Removing shard R moves the keys it held and no others. */
Test(route, removing_a_shard)
{
	const char *rest[NSHARDS - 1];
	const char *before, *after;
	size_t      n, r, j, m;
	int         k;

	for (n = 4; n <= 8; n++) {
		for (r = 0; r < n; r++) {
			for (j = 0, m = 0; j < n; j++)
				if (j != r)
					rest[m++] = names[j];
			for (k = 0; k < NKEYS; k++) {
				before = owner(k, names, n);
				after = owner(k, rest, n - 1);
				cr_assert(before == names[r] || after == before,
				    "n=%zu, removed %s: key %d moved from %s "
				    "to %s",
				    n, names[r], k, before, after);
			}
		}
	}
}

static unsigned
lcg(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 16;
}

/* The winner is a name: any permutation of the list picks the same one. */
Test(route, order_does_not_matter)
{
	const char *perm[NSHARDS], *tmp;
	unsigned    seed = 42;
	size_t      i, j;
	int         round, k;

	for (round = 0; round < 20; round++) {
		memcpy(perm, names, sizeof(perm));
		for (i = NSHARDS - 1; i > 0; i--) {
			j = lcg(&seed) % (i + 1);
			tmp = perm[i];
			perm[i] = perm[j];
			perm[j] = tmp;
		}
		for (k = 0; k < 2000; k++)
			cr_assert_eq(owner(k, perm, NSHARDS),
			    owner(k, names, NSHARDS), "round %d, key %d", round,
			    k);
	}
}

/* A name listed twice weighs the same twice; its first index is returned. */
Test(route, duplicate_names)
{
	const char *same[] = {"x", "x", "x"};
	const char *dup[] = {"a", "b", "a", "c", "b"};
	const char *uniq[] = {"a", "b", "c"};
	char        key[32];
	size_t      len;
	int         k, r;

	for (k = 0; k < 1000; k++) {
		len = key_of(k, key, sizeof(key));
		cr_assert_eq(kv_route_pick(key, len, same, 3), 0);
		r = kv_route_pick(key, len, dup, 5);
		cr_assert(
		    r == 0 || r == 1 || r == 3, "key %d went to %d", k, r);
		cr_assert_str_eq(dup[r], owner(k, uniq, 3));
	}
}

/*
 * Names and keys too long for the stack buffer.  Two long names that differ
 * only in their last byte must still split the keys: the whole name counts.
 */
Test(route, long_names_and_keys)
{
	static char long1[5000], long2[5000], key[KV_KEY_MAX];
	const char *shards[] = {"short", long1, long2};
	const char *rev[] = {long2, long1, "short"};
	size_t      count[3] = {0};
	int         k, r;

	memset(long1, 'n', sizeof(long1) - 1);
	memcpy(long2, long1, sizeof(long2));
	long2[sizeof(long2) - 2] = 'm';
	memset(key, 'k', sizeof(key));
	for (k = 0; k < 3000; k++) {
		snprintf(key, sizeof(key), "%d", k);
		key[strlen(key)] = 'k';
		r = kv_route_pick(key, sizeof(key), shards, 3);
		cr_assert(r >= 0 && r < 3, "key %d: %d", k, r);
		cr_assert_eq(kv_route_pick(key, sizeof(key), rev, 3), 2 - r,
		    "key %d: the order of the shards matters", k);
		count[r]++;
	}
	for (r = 0; r < 3; r++)
		cr_expect_gt(count[r], 3000 / 3 * 3 / 4, "shard %d: %zu keys",
		    r, count[r]);
}
