/*
 * Rendezvous (highest random weight) hashing, Thaler and Ravishankar 1998:
 * every shard draws a pseudo-random weight for the key, and the heaviest
 * shard owns it.  Adding a shard moves only the keys the newcomer now
 * outweighs, to the newcomer; removing one moves only its own keys.
 *
 * WEIGHT FORMAT.  The weight of shard NAME for KEY is SipHash-2-4, keyed
 * with the 16 bytes of KV_ROUTE_SEED, of the bytes of NAME, one 0x00 byte,
 * then the bytes of KEY.  Names hold no NUL, so the separator makes the
 * message unambiguous.  Every node must compute the same weights, so this
 * format is a wire format: changing it reshuffles every cluster.
 *
 * Pure apart from a malloc(3) when a shard name is longer than the stack
 * buffer allows.  The answer depends on the shard names, not on their
 * order: ties go to the name that strcmp(3) ranks first, and a name listed
 * twice weighs the same both times, so its first index is returned.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <keyvisor/registry.h>

#include "siphash.h"

/*
 * 512 bytes holds a key of KV_KEY_MAX bytes, the separator and a name of up
 * to 256 bytes, which covers host names (at most 253 bytes in DNS).
 */
#define ROUTE_BUF 512

_Static_assert(sizeof(KV_ROUTE_SEED) - 1 == 16, "the seed is a SipHash key");

/*
 * Returns 0 and the length of the longest name in *MAXLEN, or -EINVAL for no
 * shards, more than an int can index, or a NULL or empty name.
 */
static int
check_shards(const char *const *shards, size_t n, size_t *maxlen)
{
	size_t i, len;

	if (shards == NULL || n == 0 || n > INT_MAX)
		return -EINVAL;
	*maxlen = 0;
	for (i = 0; i < n; i++) {
		if (shards[i] == NULL || shards[i][0] == '\0')
			return -EINVAL;
		len = strlen(shards[i]);
		if (len > *maxlen)
			*maxlen = len;
	}
	return 0;
}

/* BUF has room for NAME, the separator and KEYLEN bytes. */
static uint64_t
weigh(uint8_t *buf, const char *name, const char *key, size_t keylen)
{
	size_t len = strlen(name);

	memcpy(buf, name, len);
	buf[len] = 0x00;
	if (keylen != 0)
		memcpy(buf + len + 1, key, keylen);
	return kv_siphash64(
	    (const uint8_t *)KV_ROUTE_SEED, buf, len + 1 + keylen);
}

int
kv_route_pick(
    const char *key, size_t keylen, const char *const *shards, size_t n)
{
	uint8_t  stack[ROUTE_BUF], *buf = stack;
	uint64_t w, best_w = 0;
	size_t   i, best = 0, maxlen;
	int      r;

	if (key == NULL && keylen != 0)
		return -EINVAL;
	if ((r = check_shards(shards, n, &maxlen)) < 0)
		return r;
	if (keylen > SIZE_MAX - 1 - maxlen)
		return -EINVAL;
	if (maxlen + 1 + keylen > sizeof(stack) &&
	    (buf = malloc(maxlen + 1 + keylen)) == NULL)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		w = weigh(buf, shards[i], key, keylen);
		if (i == 0 || w > best_w ||
		    (w == best_w && strcmp(shards[i], shards[best]) < 0)) {
			best = i;
			best_w = w;
		}
	}
	if (buf != stack)
		free(buf);
	return (int)best;
}
