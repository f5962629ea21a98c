/*
 * Differential fuzz target for kv_key_check() (shm/key.c).
 *
 * key.c is written for speed: a word-at-a-time printable-ASCII fast path,
 * then RFC 3629's byte ranges.  The reference below is written for
 * obviousness and shares nothing with it: decode each scalar value the
 * textbook way (lead byte, continuation bytes, then refuse overlong forms,
 * surrogates and values above U+10FFFF), then apply the rules code point by
 * code point.  Both must give the same answer, and the same reason, for
 * every prefix of the input, at every alignment.
 */
#include <string.h>

#include <keyvisor/registry.h>

#include "fuzz.h"

enum why {
	KEY_OK,
	KEY_EMPTY,
	KEY_LONG,
	KEY_SPACE,
	KEY_CONTROL,
	KEY_UTF8,
};

/*
 * The scalar value at P (AVAIL bytes) in *CP, and its length; 0 when the
 * bytes there are not one well-formed UTF-8 sequence.
 */
static size_t
ref_decode(const uint8_t *p, size_t avail, uint32_t *cp)
{
	uint32_t v, min;
	size_t   n, k;

	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if ((p[0] & 0xe0) == 0xc0) {
		n = 2, v = p[0] & 0x1f, min = 0x80;
	} else if ((p[0] & 0xf0) == 0xe0) {
		n = 3, v = p[0] & 0x0f, min = 0x800;
	} else if ((p[0] & 0xf8) == 0xf0) {
		n = 4, v = p[0] & 0x07, min = 0x10000;
	} else {
		return 0; /* a continuation byte, or F8..FF */
	}
	if (avail < n)
		return 0;
	for (k = 1; k < n; k++) {
		if ((p[k] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (p[k] & 0x3f);
	}
	if (v < min || (v >= 0xd800 && v <= 0xdfff) || v > 0x10ffff)
		return 0;
	*cp = v;
	return n;
}

static enum why
ref_check(const uint8_t *p, size_t len)
{
	uint32_t cp;
	size_t   i, n;

	if (len == 0)
		return KEY_EMPTY;
	if (len > KV_KEY_MAX)
		return KEY_LONG;
	for (i = 0; i < len; i += n) {
		n = ref_decode(p + i, len - i, &cp);
		if (n == 0)
			return KEY_UTF8;
		if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\v' ||
		    cp == '\f' || cp == '\r')
			return KEY_SPACE;
		if (cp < 0x20 || cp == 0x7f)
			return KEY_CONTROL;
	}
	return KEY_OK;
}

static enum why
classify(const char *reason)
{
	static const struct {
		const char *s;
		enum why    w;
	} reasons[] = {
	    {"key is empty", KEY_EMPTY},
	    {"key is longer than 255 bytes", KEY_LONG},
	    {"key contains whitespace", KEY_SPACE},
	    {"key contains a control character", KEY_CONTROL},
	    {"key is not valid UTF-8", KEY_UTF8},
	};
	size_t i;

	if (reason == NULL)
		return KEY_OK;
	for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (strcmp(reason, reasons[i].s) == 0)
			return reasons[i].w;
	fprintf(stderr, "unknown reason \"%s\"\n", reason);
	abort();
}

static void
compare(const uint8_t *p, size_t len)
{
	enum why want = ref_check(p, len), got;

	got = classify(kv_key_check((const char *)p, len));
	if (got != want) {
		fprintf(stderr,
		    "kv_key_check: %d, reference: %d, for %zu "
		    "bytes:",
		    (int)got, (int)want, len);
		for (size_t i = 0; i < len; i++)
			fprintf(stderr, " %02x", p[i]);
		fprintf(stderr, "\n");
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t len, shift, max = size < KV_KEY_MAX + 9 ? size : KV_KEY_MAX + 9;
	uint8_t *buf;

	/*
	 * Every prefix, so that a sequence cut at the end of the key is
	 * tried at every point, each in a buffer that ends exactly where the
	 * key does (a read past the key is caught) and starting at each
	 * alignment mod 8 in turn (the fast path reads words).
	 */
	for (len = 0; len <= max; len++) {
		shift = len % 8;
		buf = malloc(shift + len > 0 ? shift + len : 1);
		FUZZ_CHECK(buf != NULL);
		memcpy(buf + shift, data, len);
		compare(buf + shift, len);
		free(buf);
	}
	compare(data, size);
	return 0;
}
