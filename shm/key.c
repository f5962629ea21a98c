/*
 * Key validation.  A key is what a client types and what the registry
 * hashes, compares and prints, so it is held to the strictest reading:
 * 1..KV_KEY_MAX bytes of UTF-8 as RFC 3629 defines it (no overlong forms,
 * no surrogates, nothing above U+10FFFF), with no ASCII whitespace, no C0
 * control character and no DEL.  One spelling per name means two keys are
 * the same name exactly when their bytes are equal.
 *
 * Pure: no allocation, no locale, no reads outside the LEN bytes given.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <keyvisor/registry.h>

#define STR(x)  #x
#define XSTR(x) STR(x)

/*
 * The length of the well-formed UTF-8 sequence that starts with the non-ASCII
 * byte P[0] and fits in the N bytes at P, or 0.  The ranges are RFC 3629's
 * UTF8-2, UTF8-3 and UTF8-4 productions: the second byte's range excludes
 * the overlong forms (after E0 and F0), the surrogates (after ED) and code
 * points above U+10FFFF (after F4); C0, C1 and F5..FF never lead.
 */
static size_t
utf8_seq(const uint8_t *p, size_t n)
{
	uint8_t lo = 0x80, hi = 0xbf;
	size_t  len, i;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

/* Whitespace is tested first: \t, \n, \v, \f and \r are controls too. */
static const char *
ascii_check(uint8_t c)
{
	if (c == ' ' || (c >= '\t' && c <= '\r'))
		return "key contains whitespace";
	if (c < 0x20 || c == 0x7f)
		return "key contains a control character";
	return NULL;
}

/*
 * PRINTABLE ASCII FAST PATH
 *
 * Keys are mostly printable ASCII, and every lookup checks its key, so
 * eight bytes are tested at once: the word is skipped when no byte has its
 * high bit set, none is below 0x21 and none is 0x7f.  With ONES = 0x01 in
 * every byte, (w - n * ONES) & ~w has a byte's high bit set if that byte is
 * below n (for bytes below 0x80; a borrow can also flag a higher byte,
 * which only sends the word to the byte loop).  Equality with 0x7f is the
 * same test with n = 1 on w ^ 0x7f7f...  A false alarm costs the byte loop;
 * a word with a byte to report is never skipped.
 */
static bool
word_printable(uint64_t w)
{
	const uint64_t ones = UINT64_C(0x0101010101010101), high = ones << 7;
	uint64_t       del = w ^ (ones * 0x7f);

	return ((w | ((w - ones * 0x21) & ~w) | ((del - ones) & ~del)) &
	           high) == 0;
}

/*
 * Is every byte of P[0..LEN) printable ASCII?  Words at 0, 8, ... and one
 * last word ending at LEN (overlapping the one before it), so that no byte
 * is tested alone; a key shorter than a word is padded with '!', which is
 * printable.  Answers false whenever in doubt.
 */
static bool
all_printable(const uint8_t *p, size_t len)
{
	uint64_t w = UINT64_C(0x2121212121212121);
	size_t   i;

	if (len < 8) {
		memcpy(&w, p, len);
		return word_printable(w);
	}
	for (i = 0; i + 8 < len; i += 8) {
		memcpy(&w, p + i, 8);
		if (!word_printable(w))
			return false;
	}
	memcpy(&w, p + len - 8, 8);
	return word_printable(w);
}

/*
 * The reason is that of the first offending byte, except that the length is
 * checked before the content.
 */
const char *
kv_key_check(const char *key, size_t len)
{
	const uint8_t *p = (const uint8_t *)key;
	const char    *why;
	size_t         i, n;

	if (len == 0)
		return "key is empty";
	if (len > KV_KEY_MAX)
		return "key is longer than " XSTR(KV_KEY_MAX) " bytes";
	if (all_printable(p, len))
		return NULL;
	for (i = 0; i < len; i += n) {
		n = 1;
		if (p[i] >= 0x80)
			n = utf8_seq(p + i, len - i);
		else if ((why = ascii_check(p[i])) != NULL)
			return why;
		if (n == 0)
			return "key is not valid UTF-8";
	}
	return NULL;
}
