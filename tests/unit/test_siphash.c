/*
 * SipHash-2-4 against the reference vectors (all 64 of them, both output
 * sizes) and against libsodium, an independent implementation, on random
 * keys and messages.  The random runs print their seed on failure; set
 * KV_TEST_SEED to replay one.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <sodium.h>

#include "siphash.h"

#define NVECTORS 64     /* message lengths 0..63 */
#define NRANDOM  100000 /* random cross-checks per output size */
#define MAXLEN   300    /* random message lengths are 0..MAXLEN */

struct vector {
	int     seen;
	uint8_t out64[8];
	uint8_t out128[16];
};

static void
unhex(const char *s, uint8_t *out, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		cr_assert_eq(sscanf(s + 2 * i, "%2hhx", &out[i]), 1);
}

/*
 * Parse $KV_TESTDATA/siphash-2-4-vectors.txt into V.  Every non-comment line
 * must be "LEN OUT64 OUT128" with LEN in 0..63 and each LEN present once.
 */
static void
load_vectors(struct vector v[NVECTORS])
{
	const char *dir = getenv("KV_TESTDATA");
	char        path[4096], line[256], h64[17], h128[33];
	unsigned    len, n = 0;
	FILE       *f;

	cr_assert_not_null(dir, "KV_TESTDATA is not set");
	snprintf(path, sizeof(path), "%s/siphash-2-4-vectors.txt", dir);
	f = fopen(path, "r");
	cr_assert_not_null(f, "cannot open %s", path);
	memset(v, 0, sizeof(*v) * NVECTORS);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (line[0] == '#' || line[strspn(line, " \t\r\n")] == '\0')
			continue;
		cr_assert_eq(
		    sscanf(line, "%u %16[0-9a-f] %32[0-9a-f]", &len, h64, h128),
		    3, "malformed line: %s", line);
		cr_assert(strlen(h64) == 16 && strlen(h128) == 32,
		    "short output in line: %s", line);
		cr_assert(len < NVECTORS && !v[len].seen,
		    "length %u out of range or repeated", len);
		unhex(h64, v[len].out64, 8);
		unhex(h128, v[len].out128, 16);
		v[len].seen = 1;
		n++;
	}
	fclose(f);
	cr_assert_eq(
	    n, NVECTORS, "%s holds %u vectors, not %d", path, n, NVECTORS);
}

/* The reference key 00 01 .. 0f and message 00 01 .. LEN-1. */
static void
reference_input(uint8_t key[16], uint8_t msg[NVECTORS])
{
	int i;

	for (i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (i = 0; i < NVECTORS; i++)
		msg[i] = (uint8_t)i;
}

static void
le64(uint64_t w, uint8_t out[8])
{
	int i;

	for (i = 0; i < 8; i++)
		out[i] = (uint8_t)(w >> (8 * i));
}

Test(siphash, vectors64)
{
	struct vector v[NVECTORS];
	uint8_t       key[16], msg[NVECTORS], out[8];
	size_t        len;

	load_vectors(v);
	reference_input(key, msg);
	for (len = 0; len < NVECTORS; len++) {
		le64(kv_siphash64(key, msg, len), out);
		cr_expect(memcmp(out, v[len].out64, 8) == 0,
		    "64-bit output differs for length %zu", len);
	}
}

Test(siphash, vectors128)
{
	struct vector v[NVECTORS];
	uint8_t       key[16], msg[NVECTORS], out[16];
	size_t        len;

	load_vectors(v);
	reference_input(key, msg);
	for (len = 0; len < NVECTORS; len++) {
		kv_siphash128(key, msg, len, out);
		cr_expect(memcmp(out, v[len].out128, 16) == 0,
		    "128-bit output differs for length %zu", len);
	}
}

Test(siphash, null_empty_message)
{
	struct vector v[NVECTORS];
	uint8_t       key[16], msg[NVECTORS], out[16];

	load_vectors(v);
	reference_input(key, msg);
	le64(kv_siphash64(key, NULL, 0), out);
	cr_expect(memcmp(out, v[0].out64, 8) == 0);
	kv_siphash128(key, NULL, 0, out);
	cr_expect(memcmp(out, v[0].out128, 16) == 0);
}

/* splitmix64: a small, good generator for test inputs. */
static uint64_t
next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void
fill(uint64_t *s, uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)next(s);
}

static uint64_t
test_seed(void)
{
	const char *env = getenv("KV_TEST_SEED");
	uint64_t    seed;

	cr_assert_geq(sodium_init(), 0, "sodium_init failed");
	if (env != NULL)
		return strtoull(env, NULL, 0);
	randombytes_buf(&seed, sizeof(seed));
	return seed;
}

/*
 * One random case: key, length 0..MAXLEN and a start offset 0..7 into BUF,
 * so the 8-byte loads see every alignment.
 */
static const uint8_t *
random_case(uint64_t *s, uint8_t key[16], uint8_t *buf, size_t *len)
{
	size_t off = next(s) % 8;

	fill(s, key, 16);
	*len = next(s) % (MAXLEN + 1);
	fill(s, buf + off, *len);
	return buf + off;
}

Test(siphash, libsodium64)
{
	uint64_t       seed = test_seed(), s = seed;
	uint8_t        key[16], buf[MAXLEN + 8], want[8], got[8];
	const uint8_t *msg;
	size_t         len;
	int            i;

	for (i = 0; i < NRANDOM; i++) {
		msg = random_case(&s, key, buf, &len);
		cr_assert_eq(
		    crypto_shorthash_siphash24(want, msg, len, key), 0);
		le64(kv_siphash64(key, msg, len), got);
		cr_assert(memcmp(got, want, 8) == 0,
		    "case %d (length %zu) differs; KV_TEST_SEED=%#" PRIx64, i,
		    len, seed);
	}
}

#ifdef crypto_shorthash_siphashx24_BYTES
Test(siphash, libsodium128)
{
	uint64_t       seed = test_seed(), s = seed;
	uint8_t        key[16], buf[MAXLEN + 8], want[16], got[16];
	const uint8_t *msg;
	size_t         len;
	int            i;

	for (i = 0; i < NRANDOM; i++) {
		msg = random_case(&s, key, buf, &len);
		cr_assert_eq(
		    crypto_shorthash_siphashx24(want, msg, len, key), 0);
		kv_siphash128(key, msg, len, got);
		cr_assert(memcmp(got, want, 16) == 0,
		    "case %d (length %zu) differs; KV_TEST_SEED=%#" PRIx64, i,
		    len, seed);
	}
}
#endif
