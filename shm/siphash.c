/*
 * SipHash-2-4, written from the paper (Aumasson and Bernstein, 2012): two
 * SipRounds per 8-byte message word and four to finalize.  The 128-bit
 * variant follows the authors' reference code: 0xee folded into v1 at
 * initialization and into v2 before finalization, then 0xdd into v1 before
 * four more rounds give the second word.
 *
 * kv_siphash64() sits on the registry's lookup path, where keys are 8 to 20
 * bytes.  Its cost there is the chain of dependent SipRounds: 6 for a message
 * of 0 to 7 bytes and 2 more per whole 8 bytes, so 8 for an 8-byte key and
 * 10 for a 16-byte one.  The code around them is kept to whole-word loads
 * and one switch for the tail.
 */
#include "siphash.h"

#include <string.h>

struct sip {
	uint64_t v0, v1, v2, v3;
};

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))

/* The paper's SipRound, on the state S. */
#define SIP_ROUND(s)                                                           \
	do {                                                                   \
		(s)->v0 += (s)->v1;                                            \
		(s)->v1 = ROTL((s)->v1, 13);                                   \
		(s)->v1 ^= (s)->v0;                                            \
		(s)->v0 = ROTL((s)->v0, 32);                                   \
		(s)->v2 += (s)->v3;                                            \
		(s)->v3 = ROTL((s)->v3, 16);                                   \
		(s)->v3 ^= (s)->v2;                                            \
		(s)->v0 += (s)->v3;                                            \
		(s)->v3 = ROTL((s)->v3, 21);                                   \
		(s)->v3 ^= (s)->v0;                                            \
		(s)->v2 += (s)->v1;                                            \
		(s)->v1 = ROTL((s)->v1, 17);                                   \
		(s)->v1 ^= (s)->v2;                                            \
		(s)->v2 = ROTL((s)->v2, 32);                                   \
	} while (0)

/*
 * Little-endian loads and stores.  On a little-endian host the memcpy is one
 * unaligned move; elsewhere the bytes are assembled one by one, which is
 * correct on any byte order.
 */
static inline uint64_t
load64(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	uint64_t w;

	memcpy(&w, p, sizeof(w));
	return w;
#else
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
	       (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 |
	       (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
	       (uint64_t)p[7] << 56;
#endif
}

static inline void
store64(uint8_t *p, uint64_t w)
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(w >> (8 * i));
}

/* MARK is 0 for SipHash-2-4 and 0xee for its 128-bit variant. */
static inline void
sip_init(struct sip *s, const uint8_t key[16], uint64_t mark)
{
	uint64_t k0 = load64(key), k1 = load64(key + 8);

	/* "somepseudorandomlygeneratedbytes", as the paper specifies. */
	s->v0 = k0 ^ 0x736f6d6570736575ULL;
	s->v1 = k1 ^ 0x646f72616e646f6dULL ^ mark;
	s->v2 = k0 ^ 0x6c7967656e657261ULL;
	s->v3 = k1 ^ 0x7465646279746573ULL;
}

static inline void
sip_compress(struct sip *s, uint64_t m)
{
	s->v3 ^= m;
	SIP_ROUND(s);
	SIP_ROUND(s);
	s->v0 ^= m;
}

/*
 * The final word: the last 0 to 7 bytes of the message from byte OFF on,
 * with the message length modulo 256 in the top byte.  Indexing, rather than
 * pointer arithmetic, keeps (NULL, 0) well defined.
 */
static inline uint64_t
last_word(const uint8_t *p, size_t off, size_t len)
{
	uint64_t b = (uint64_t)len << 56;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	/*
	 * With a whole word before them, the last bytes are the top of the
	 * word that ends the message: one load and a shift, no byte loop.
	 */
	if (len >= 8) {
		if (len & 7)
			b |= load64(p + len - 8) >> (64 - 8 * (len & 7));
		return b;
	}
#endif
	switch (len & 7) {
	case 7:
		b |= (uint64_t)p[off + 6] << 48;
		/* FALLTHROUGH */
	case 6:
		b |= (uint64_t)p[off + 5] << 40;
		/* FALLTHROUGH */
	case 5:
		b |= (uint64_t)p[off + 4] << 32;
		/* FALLTHROUGH */
	case 4:
		b |= (uint64_t)p[off + 3] << 24;
		/* FALLTHROUGH */
	case 3:
		b |= (uint64_t)p[off + 2] << 16;
		/* FALLTHROUGH */
	case 2:
		b |= (uint64_t)p[off + 1] << 8;
		/* FALLTHROUGH */
	case 1:
		b |= (uint64_t)p[off];
		break;
	case 0:
		break;
	}
	return b;
}

/* Inlined into both callers: a call here costs a tenth of a short hash. */
static inline __attribute__((always_inline)) void
sip_absorb(struct sip *s, const uint8_t *p, size_t len)
{
	size_t off = len & ~(size_t)7, i;

	for (i = 0; i < off; i += 8)
		sip_compress(s, load64(p + i));
	sip_compress(s, last_word(p, off, len));
}

/* Four rounds, then the output word. */
static inline uint64_t
sip_final(struct sip *s)
{
	SIP_ROUND(s);
	SIP_ROUND(s);
	SIP_ROUND(s);
	SIP_ROUND(s);
	return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

uint64_t
kv_siphash64(const uint8_t key[16], const void *msg, size_t len)
{
	struct sip s;

	sip_init(&s, key, 0);
	sip_absorb(&s, msg, len);
	s.v2 ^= 0xff;
	return sip_final(&s);
}

void
kv_siphash128(
    const uint8_t key[16], const void *msg, size_t len, uint8_t out[16])
{
	struct sip s;

	sip_init(&s, key, 0xee);
	sip_absorb(&s, msg, len);
	s.v2 ^= 0xee;
	store64(out, sip_final(&s));
	s.v1 ^= 0xdd;
	store64(out + 8, sip_final(&s));
}
