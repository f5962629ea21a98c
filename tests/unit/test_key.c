/*
 * kv_key_check(): one table of keys and the reason each must get.  Every
 * case is copied into a heap block of exactly its length, so a sanitizer
 * build catches a read past LEN.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <keyvisor/registry.h>

#define EMPTY    "key is empty"
#define TOO_LONG "key is longer than 255 bytes"
#define BAD_UTF8 "key is not valid UTF-8"
#define SPACE    "key contains whitespace"
#define CONTROL  "key contains a control character"

struct key_case {
	const char *name;
	const char *key;
	size_t      len; /* 0: strlen(key) */
	const char *why; /* NULL: valid */
};

static const struct key_case cases[] = {
    {"ascii", "user:42", 0, NULL},
    {"one byte", "a", 0, NULL},
    {"punctuation", "a/b.c-d_e@f#g~", 0, NULL},
    {"cyrillic", "ключ", 0, NULL},
    {"cjk", "日本", 0, NULL},
    {"emoji U+1F600", "\xf0\x9f\x98\x80", 0, NULL},
    {"U+0080", "\xc2\x80", 0, NULL},
    {"U+07FF", "\xdf\xbf", 0, NULL},
    {"U+0800", "\xe0\xa0\x80", 0, NULL},
    {"U+D7FF", "\xed\x9f\xbf", 0, NULL},
    {"U+E000", "\xee\x80\x80", 0, NULL},
    {"U+FFFF", "\xef\xbf\xbf", 0, NULL},
    {"U+10000", "\xf0\x90\x80\x80", 0, NULL},
    {"U+10FFFF", "\xf4\x8f\xbf\xbf", 0, NULL},

    {"empty", "", 0, EMPTY},

    {"space", "a b", 0, SPACE},
    {"tab", "a\tb", 0, SPACE},
    {"newline", "a\n", 0, SPACE},
    {"vertical tab", "\va", 0, SPACE},
    {"form feed", "a\fb", 0, SPACE},
    {"carriage return", "a\rb", 0, SPACE},

    {"0x01", "a\x01", 0, CONTROL},
    {"0x1f", "\x1f", 0, CONTROL},
    {"DEL", "a\x7f", 0, CONTROL},
    {"ESC", "\x1b[0m", 0, CONTROL},
    {"NUL inside", "a\0b", 3, CONTROL},
    {"NUL alone", "", 1, CONTROL},

    {"overlong C0 80", "\xc0\x80", 0, BAD_UTF8},
    {"overlong C1 BF", "\xc1\xbf", 0, BAD_UTF8},
    {"overlong E0 80 80", "\xe0\x80\x80", 0, BAD_UTF8},
    {"overlong E0 9F BF", "\xe0\x9f\xbf", 0, BAD_UTF8},
    {"overlong F0 8F BF BF", "\xf0\x8f\xbf\xbf", 0, BAD_UTF8},
    {"surrogate ED A0 80", "\xed\xa0\x80", 0, BAD_UTF8},
    {"surrogate ED BF BF", "\xed\xbf\xbf", 0, BAD_UTF8},
    {"U+110000", "\xf4\x90\x80\x80", 0, BAD_UTF8},
    {"lead F5", "\xf5\x80\x80\x80", 0, BAD_UTF8},
    {"truncated E2 82", "\xe2\x82", 0, BAD_UTF8},
    {"truncated F0 9F 98", "a\xf0\x9f\x98", 0, BAD_UTF8},
    {"cut by len", "\xe6\x97\xa5", 2, BAD_UTF8},
    {"lone continuation", "\x80", 0, BAD_UTF8},
    {"continuation after char", "\xc3\xa9\xa9", 0, BAD_UTF8},
    {"ASCII where continuation due", "\xc3\x61", 0, BAD_UTF8},
    {"0xFE", "a\xfe", 0, BAD_UTF8},
    {"0xFF", "\xff", 0, BAD_UTF8},

    {"first offence wins: space", "a b\xff", 0, SPACE},
    {"first offence wins: UTF-8", "\xff\x61 b", 0, BAD_UTF8},
};

static const char *
check_exact(const char *key, size_t len)
{
	const char *why;
	char       *copy;

	copy = malloc(len != 0 ? len : 1);
	cr_assert_not_null(copy);
	memcpy(copy, key, len);
	why = kv_key_check(copy, len);
	free(copy);
	return why;
}

static void
expect_reason(const char *name, const char *key, size_t len, const char *want)
{
	const char *got = check_exact(key, len);

	if (want == NULL)
		cr_expect_null(got, "%s: rejected: %s", name, got);
	else if (got == NULL)
		cr_expect_fail("%s: accepted, want \"%s\"", name, want);
	else
		cr_expect_str_eq(
		    got, want, "%s: got \"%s\", want \"%s\"", name, got, want);
}

Test(key, table)
{
	size_t i, len;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		len = cases[i].len != 0 ? cases[i].len : strlen(cases[i].key);
		expect_reason(cases[i].name, cases[i].key, len, cases[i].why);
	}
}

Test(key, null_pointer_empty)
{
	cr_expect_str_eq(kv_key_check(NULL, 0), EMPTY);
}

Test(key, length_limits)
{
	char buf[KV_KEY_MAX + 1];

	cr_assert_eq(KV_KEY_MAX, 255);
	memset(buf, 'k', sizeof(buf));
	expect_reason("255 bytes", buf, KV_KEY_MAX, NULL);
	expect_reason("256 bytes", buf, KV_KEY_MAX + 1, TOO_LONG);
	/* The length is judged before the content. */
	buf[0] = ' ';
	expect_reason("256 bytes with a space", buf, KV_KEY_MAX + 1, TOO_LONG);
}

/*
 * 63 four-byte characters and one three-byte one end exactly at byte 255;
 * one more byte of a character is too long, and one byte fewer cuts it.
 */
Test(key, multibyte_to_the_limit)
{
	char   buf[KV_KEY_MAX + 4];
	size_t i;

	for (i = 0; i + 4 <= 252; i += 4)
		memcpy(buf + i, "\xf0\x9f\x98\x80", 4);
	memcpy(buf + 252, "\xe2\x82\xac", 3);
	memcpy(buf + 255, "\xc3\xa9", 2);
	expect_reason("255 bytes of 4+3-byte characters", buf, 255, NULL);
	expect_reason("cut inside the last character", buf, 254, BAD_UTF8);
	expect_reason("257 bytes", buf, 257, TOO_LONG);
}

/* Every single byte: valid alone exactly when printable ASCII. */
Test(key, every_single_byte)
{
	char        c, name[32];
	const char *want;
	int         b;

	for (b = 0; b < 256; b++) {
		c = (char)b;
		if (b == ' ' || (b >= '\t' && b <= '\r'))
			want = SPACE;
		else if (b < 0x20 || b == 0x7f)
			want = CONTROL;
		else if (b >= 0x80)
			want = BAD_UTF8;
		else
			want = NULL;
		snprintf(name, sizeof(name), "byte %#04x", b);
		expect_reason(name, &c, 1, want);
	}
}

/*
 * An independent judge for the exhaustive tests: decode by bit arithmetic
 * (not by the RFC's byte ranges) and reject what decodes to an overlong
 * form, a surrogate or a code point above U+10FFFF.
 */
static int
valid_ref(const uint8_t *p, size_t n)
{
	static const uint32_t mins[] = {0, 0x80, 0x800, 0x10000};
	uint32_t              cp, min;
	size_t                i, k, more;

	for (i = 0; i < n; i += more + 1) {
		if (p[i] < 0x80) {
			if (p[i] <= 0x20 || p[i] == 0x7f)
				return 0;
			more = 0;
			continue;
		}
		if ((p[i] & 0xe0) == 0xc0)
			more = 1;
		else if ((p[i] & 0xf0) == 0xe0)
			more = 2;
		else if ((p[i] & 0xf8) == 0xf0)
			more = 3;
		else
			return 0;
		if (n - i - 1 < more)
			return 0;
		cp = p[i] & (0x7fu >> (more + 1));
		min = mins[more];
		for (k = 1; k <= more; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
	}
	return 1;
}

static void
expect_agree(const uint8_t *p, size_t n)
{
	int want = valid_ref(p, n);
	int got = kv_key_check((const char *)p, n) == NULL;

	if (got != want)
		cr_assert_fail(
		    "%02x %02x %02x %02x (%zu bytes): got %s, want %s", p[0],
		    n > 1 ? p[1] : 0, n > 2 ? p[2] : 0, n > 3 ? p[3] : 0, n,
		    got ? "valid" : "invalid", want ? "valid" : "invalid");
}

/* Every string of 2 and 3 bytes. */
Test(key, exhaustive_short)
{
	uint8_t  p[3];
	uint32_t v;

	for (v = 0; v < 1u << 24; v++) {
		p[0] = (uint8_t)(v >> 16);
		p[1] = (uint8_t)(v >> 8);
		p[2] = (uint8_t)v;
		if (p[2] == 0)
			expect_agree(p, 2);
		expect_agree(p, 3);
	}
}

/* Every 4-byte lead and second byte, with boundary values after them. */
Test(key, exhaustive_four)
{
	static const uint8_t tail[] = {0x41, 0x7f, 0x80, 0xbf, 0xc0, 0xff};
	uint8_t              p[4];
	uint32_t             v;
	size_t               i, j;

	for (v = 0; v < 1u << 16; v++) {
		p[0] = (uint8_t)(v >> 8);
		p[1] = (uint8_t)v;
		for (i = 0; i < sizeof(tail); i++) {
			for (j = 0; j < sizeof(tail); j++) {
				p[2] = tail[i];
				p[3] = tail[j];
				expect_agree(p, 4);
			}
		}
	}
}

/*
 * The eight-bytes-at-a-time path must report exactly what the byte loop
 * does: one bad byte at every position of a long printable key, for each
 * kind of bad byte, including those next to the printable range.
 */
Test(key, bad_byte_at_every_position_of_a_long_key)
{
	static const struct {
		unsigned char b;
		const char   *why;
	} bad[] = {
	    {' ', "key contains whitespace"},
	    {'\t', "key contains whitespace"},
	    {'\r', "key contains whitespace"},
	    {0x00, "key contains a control character"},
	    {0x1f, "key contains a control character"},
	    {0x7f, "key contains a control character"},
	    {0x80, "key is not valid UTF-8"},
	    {0xff, "key is not valid UTF-8"},
	};
	char   key[40];
	size_t i, pos, len;

	for (len = 8; len <= sizeof(key); len += 5) {
		memset(key, '!', len); /* 0x21, the lowest printable */
		key[len - 1] = '~';    /* 0x7e, the highest */
		cr_assert_null(kv_key_check(key, len));
		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			for (pos = 0; pos < len; pos++) {
				const char *why;
				char        saved = key[pos];

				key[pos] = (char)bad[i].b;
				why = kv_key_check(key, len);
				cr_assert(why != NULL && !strcmp(why, bad[i].why),
				    "byte %#x at %zu of %zu: %s", bad[i].b, pos,
				    len, why ? why : "accepted");
				key[pos] = saved;
			}
		}
	}
}
