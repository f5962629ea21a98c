/*
 * chan: the messages of the worker channel (channel.md, libkeyvisor(3)
 * "The worker channel"): every valid form of READY, HEARTBEAT, TOUCH,
 * VALUE and STATUS, the one trailing newline allowed, and every invalid
 * form.  Each test starts from an output struct full of garbage, so that
 * a field chan_parse() forgets to set shows.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "chan.h"

static struct chan_msg m;

static void
garbage(void)
{
	memset(&m, 0xa5, sizeof(m));
}

/* Parse the LEN bytes at S into m, from garbage. */
static int
parse_n(const char *s, size_t len)
{
	garbage();
	return chan_parse(s, len, &m);
}

static int
parse(const char *s)
{
	return parse_n(s, strlen(s));
}

/* S is refused, whatever it would have parsed to. */
#define REFUSED(s, n, what) \
	cr_expect_eq(parse_n((s), (n)), -EINVAL, "%s: not refused", (what))

/* ---- READY, HEARTBEAT, TOUCH ------------------------------------------ */

Test(chan, ready)
{
	cr_assert_eq(parse("READY"), 0);
	cr_expect_eq(m.kind, CHAN_READY);
	cr_expect_eq(m.len, 0);
}

Test(chan, heartbeat)
{
	cr_assert_eq(parse("HEARTBEAT"), 0);
	cr_expect_eq(m.kind, CHAN_HEARTBEAT);
	cr_expect_eq(m.len, 0);
}

Test(chan, touch)
{
	cr_assert_eq(parse("TOUCH"), 0);
	cr_expect_eq(m.kind, CHAN_TOUCH);
	cr_expect_eq(m.len, 0);
}

Test(chan, trailing_newline)
{
	cr_assert_eq(parse("READY\n"), 0);
	cr_expect_eq(m.kind, CHAN_READY);
	cr_assert_eq(parse("HEARTBEAT\n"), 0);
	cr_expect_eq(m.kind, CHAN_HEARTBEAT);
	cr_assert_eq(parse("TOUCH\n"), 0);
	cr_expect_eq(m.kind, CHAN_TOUCH);
	cr_assert_eq(parse("VALUE 4142\n"), 0);
	cr_expect_eq(m.kind, CHAN_VALUE);
	cr_expect_eq(m.len, 2);
	cr_expect_eq(memcmp(m.value, "AB", 2), 0);
	cr_assert_eq(parse("STATUS up\n"), 0);
	cr_expect_eq(m.kind, CHAN_STATUS);
	cr_expect_str_eq(m.text, "up");
	cr_expect_eq(m.len, 2);
}

/* Only one trailing newline, and only a newline. */
Test(chan, newline_forms_refused)
{
	REFUSED("READY\n\n", 7, "two newlines");
	REFUSED("READY\r\n", 7, "CR LF");
	REFUSED("READY\r", 6, "CR");
	REFUSED("\nREADY", 6, "leading newline");
	REFUSED("\n", 1, "a newline alone");
	REFUSED("STATUS a\n\n", 10, "STATUS with two newlines");
	REFUSED("VALUE 41\n\n", 10, "VALUE with two newlines");
}

Test(chan, words_refused)
{
	REFUSED("READYX", 6, "READYX");
	REFUSED("READY extra", 11, "READY extra");
	REFUSED("READY ", 6, "READY and a space");
	REFUSED(" READY", 6, "a space and READY");
	REFUSED("ready", 5, "lower case");
	REFUSED("Ready", 5, "mixed case");
	REFUSED("READ", 4, "a prefix of READY");
	REFUSED("HEARTBEATS", 10, "HEARTBEATS");
	REFUSED("HEARTBEAT 1", 11, "HEARTBEAT with an argument");
	REFUSED("TOUCH me", 8, "TOUCH with an argument");
	REFUSED("TOUCHED", 7, "TOUCHED");
	REFUSED("VALUES 41", 9, "VALUES");
	REFUSED("VALUEX", 6, "VALUEX");
	REFUSED("STATUSES", 8, "STATUSES");
	REFUSED("STATUS\tx", 8, "STATUS and a tab");
	REFUSED("HELLO", 5, "unknown word");
	REFUSED("CALL 1 2", 8, "a daemon-to-worker word");
	REFUSED("REPLY 1", 7, "REPLY");
	REFUSED("READY\0", 6, "READY and a NUL");
	REFUSED("\0READY", 6, "a NUL and READY");
}

Test(chan, empty_refused)
{
	REFUSED("", 0, "empty message");
	REFUSED(" ", 1, "a space");
}

/* ---- VALUE ------------------------------------------------------------ */

/* "VALUE" alone and "VALUE " with nothing after it both clear it. */
Test(chan, value_empty)
{
	cr_assert_eq(parse("VALUE"), 0);
	cr_expect_eq(m.kind, CHAN_VALUE);
	cr_expect_eq(m.len, 0);
	cr_assert_eq(parse("VALUE\n"), 0);
	cr_expect_eq(m.kind, CHAN_VALUE);
	cr_expect_eq(m.len, 0);
	cr_assert_eq(parse("VALUE "), 0);
	cr_expect_eq(m.kind, CHAN_VALUE);
	cr_expect_eq(m.len, 0);
}

Test(chan, value_one_byte)
{
	static const struct {
		const char *msg;
		uint8_t     byte;
	} cases[] = {
	    {"VALUE 00", 0x00},
	    {"VALUE ff", 0xff},
	    {"VALUE FF", 0xff},
	    {"VALUE aB", 0xab},
	    {"VALUE 7f", 0x7f},
	    {"VALUE 09", 0x09},
	    {"VALUE A0", 0xa0},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(parse(cases[i].msg), 0, "%s", cases[i].msg);
		cr_expect_eq(m.kind, CHAN_VALUE, "%s", cases[i].msg);
		cr_expect_eq(m.len, 1, "%s", cases[i].msg);
		cr_expect_eq(m.value[0], cases[i].byte, "%s: %#x", cases[i].msg,
		    m.value[0]);
	}
}

/* "VALUE " and the hex of 0, 1, ... for N bytes, in lower or upper case. */
static size_t
value_msg(char *buf, size_t n, int upper)
{
	static const char lo[] = "0123456789abcdef", up[] = "0123456789ABCDEF";
	const char       *hex = upper ? up : lo;
	size_t            i, len = 6;

	memcpy(buf, "VALUE ", 6);
	for (i = 0; i < n; i++) {
		buf[len++] = hex[(i & 0xff) >> 4];
		buf[len++] = hex[i & 0xf];
	}
	return len;
}

Test(chan, value_256_bytes_both_cases)
{
	char   buf[CHAN_MSG_MAX + 8];
	size_t len, i;
	int    upper;

	for (upper = 0; upper < 2; upper++) {
		len = value_msg(buf, KV_VALUE_MAX, upper);
		cr_assert_eq(len, 6 + 512);
		cr_assert_eq(parse_n(buf, len), 0, "upper %d", upper);
		cr_expect_eq(m.kind, CHAN_VALUE);
		cr_assert_eq(m.len, KV_VALUE_MAX);
		for (i = 0; i < KV_VALUE_MAX; i++)
			cr_expect_eq(m.value[i], (uint8_t)i,
			    "byte %zu is %#x (upper %d)", i, m.value[i], upper);
		/* And with the newline. */
		buf[len] = '\n';
		cr_assert_eq(parse_n(buf, len + 1), 0, "upper %d, newline", upper);
		cr_expect_eq(m.len, KV_VALUE_MAX);
	}
}

Test(chan, value_257_bytes_refused)
{
	char   buf[CHAN_MSG_MAX + 8];
	size_t len;

	len = value_msg(buf, KV_VALUE_MAX + 1, 0);
	REFUSED(buf, len, "257 bytes of value");
	buf[len] = '\n';
	REFUSED(buf, len + 1, "257 bytes of value and a newline");
	len = value_msg(buf, 500, 1);
	REFUSED(buf, len, "500 bytes of value");
}

Test(chan, value_mixed_case)
{
	cr_assert_eq(parse("VALUE DeadBEEF"), 0);
	cr_expect_eq(m.len, 4);
	cr_expect_eq(memcmp(m.value, "\xde\xad\xbe\xef", 4), 0);
}

Test(chan, value_bad_hex_refused)
{
	REFUSED("VALUE 4", 7, "one hex digit");
	REFUSED("VALUE 414", 9, "three hex digits");
	REFUSED("VALUE 4g", 8, "g is not hex");
	REFUSED("VALUE g4", 8, "g first");
	REFUSED("VALUE 0x41", 10, "0x prefix");
	REFUSED("VALUE 41 42", 11, "a space inside");
	REFUSED("VALUE  41", 9, "two spaces");
	REFUSED("VALUE 41 ", 9, "a trailing space");
	REFUSED("VALUE 4\n", 8, "odd, with a newline");
	REFUSED("VALUE -1", 8, "a sign");
	REFUSED("VALUE zz", 8, "zz");
	REFUSED("VALUE 4:", 8, "':' (just above '9')");
	REFUSED("VALUE 4/", 8, "'/' (just below '0')");
	REFUSED("VALUE 4@", 8, "'@' (just below 'A')");
	REFUSED("VALUE 4G", 8, "'G' (just above 'F')");
	REFUSED("VALUE 4`", 8, "'`' (just below 'a')");
	REFUSED("VALUE 41\0" "0", 10, "a NUL inside");
	REFUSED("VALUE \xc3\xa9", 8, "non-ASCII");
	REFUSED("VALUE hello", 11, "text, not hex");
}

/* ---- STATUS ----------------------------------------------------------- */

Test(chan, status_text)
{
	cr_assert_eq(parse("STATUS serving 12 clients, 0 errors"), 0);
	cr_expect_eq(m.kind, CHAN_STATUS);
	cr_expect_str_eq(m.text, "serving 12 clients, 0 errors");
	cr_expect_eq(m.len, strlen("serving 12 clients, 0 errors"));
}

Test(chan, status_punctuation)
{
	const char *t = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ A";
	char        buf[128];

	snprintf(buf, sizeof(buf), "STATUS %s", t);
	cr_assert_eq(parse(buf), 0);
	cr_expect_str_eq(m.text, t);
}

/* Leading, trailing and repeated spaces are the text's own. */
Test(chan, status_spaces_kept)
{
	cr_assert_eq(parse("STATUS  two  spaces "), 0);
	cr_expect_str_eq(m.text, " two  spaces ");
	cr_expect_eq(m.len, 13);
}

Test(chan, status_utf8)
{
	const char *t = "caf\xc3\xa9 \xe2\x82\xac \xe6\x97\xa5\xe6\x9c\xac "
	                "\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf";
	char        buf[128];

	snprintf(buf, sizeof(buf), "STATUS %s\n", t);
	cr_assert_eq(parse(buf), 0);
	cr_expect_eq(m.kind, CHAN_STATUS);
	cr_expect_str_eq(m.text, t);
	cr_expect_eq(m.len, strlen(t));
}

Test(chan, status_empty)
{
	cr_assert_eq(parse("STATUS"), 0);
	cr_expect_eq(m.kind, CHAN_STATUS);
	cr_expect_eq(m.len, 0);
	cr_expect_str_eq(m.text, "");
	cr_assert_eq(parse("STATUS "), 0);
	cr_expect_eq(m.kind, CHAN_STATUS);
	cr_expect_eq(m.len, 0);
	cr_expect_str_eq(m.text, "");
	cr_assert_eq(parse("STATUS\n"), 0);
	cr_expect_eq(m.len, 0);
	cr_expect_str_eq(m.text, "");
}

/* "STATUS " and TEXT made of N copies of UNIT (of UNITLEN bytes). */
static size_t
status_msg(char *buf, const char *unit, size_t unitlen, size_t n)
{
	size_t i, len = 7;

	memcpy(buf, "STATUS ", 7);
	for (i = 0; i < n; i++, len += unitlen)
		memcpy(buf + len, unit, unitlen);
	return len;
}

Test(chan, status_200_bytes)
{
	char   buf[CHAN_MSG_MAX + 8];
	size_t len;

	len = status_msg(buf, "x", 1, CHAN_STATUS_MAX);
	cr_assert_eq(parse_n(buf, len), 0);
	cr_expect_eq(m.len, CHAN_STATUS_MAX);
	cr_expect_eq(strlen(m.text), CHAN_STATUS_MAX);
	cr_expect_eq(memcmp(m.text, buf + 7, CHAN_STATUS_MAX), 0);
	/* 100 two-byte characters: 200 bytes, with the newline. */
	len = status_msg(buf, "\xc3\xa9", 2, 100);
	buf[len] = '\n';
	cr_assert_eq(parse_n(buf, len + 1), 0);
	cr_expect_eq(m.len, 200);
	cr_expect_eq(memcmp(m.text, buf + 7, 200), 0);
	cr_expect_eq(m.text[200], '\0');
}

Test(chan, status_over_200_bytes_refused)
{
	char   buf[CHAN_MSG_MAX + 8];
	size_t len;

	len = status_msg(buf, "x", 1, CHAN_STATUS_MAX + 1);
	REFUSED(buf, len, "201 bytes of text");
	buf[len] = '\n';
	REFUSED(buf, len + 1, "201 bytes of text and a newline");
	/* 67 three-byte characters: 201 bytes. */
	len = status_msg(buf, "\xe2\x82\xac", 3, 67);
	REFUSED(buf, len, "67 euro signs (201 bytes)");
	len = status_msg(buf, "y", 1, 1000);
	REFUSED(buf, len, "1000 bytes of text");
}

Test(chan, status_control_refused)
{
	REFUSED("STATUS a\tb", 10, "a tab");
	REFUSED("STATUS a\nb", 10, "a newline inside");
	REFUSED("STATUS a\rb", 10, "a CR");
	REFUSED("STATUS a\x1b[31mb", 14, "an escape sequence");
	REFUSED("STATUS a\x7f", 9, "DEL");
	REFUSED("STATUS a\x01", 9, "SOH");
	REFUSED("STATUS a\0b", 10, "a NUL");
	REFUSED("STATUS \x1f", 8, "US");
	REFUSED("STATUS ok\r\n", 11, "a CR before the newline");
}

Test(chan, status_bad_utf8_refused)
{
	REFUSED("STATUS \xff", 8, "0xff");
	REFUSED("STATUS \x80", 8, "a lone continuation byte");
	REFUSED("STATUS \xc3", 8, "a truncated sequence at the end");
	REFUSED("STATUS \xc3 x", 10, "a truncated sequence");
	REFUSED("STATUS \xe2\x82", 9, "a truncated three-byte sequence");
	REFUSED("STATUS \xc0\x80", 9, "overlong NUL");
	REFUSED("STATUS \xc1\xbf", 9, "overlong C1");
	REFUSED("STATUS \xe0\x80\xaf", 10, "overlong three-byte");
	REFUSED("STATUS \xed\xa0\x80", 10, "a surrogate");
	REFUSED("STATUS \xf4\x90\x80\x80", 11, "above U+10FFFF");
	REFUSED("STATUS \xf5\x80\x80\x80", 11, "F5 lead");
	REFUSED("STATUS caf\xe9", 11, "Latin-1");
}

/*
 * "Printable UTF-8": the C1 controls U+0080..U+009F (0xc2 0x80..0x9f) are
 * control characters as much as the C0 ones; U+009B is CSI, which some
 * terminals take as ESC [.  keyvisor status itself treats them as controls
 * (cli.c, ctrl_len()).
 */
Test(chan, status_c1_control_refused)
{
	REFUSED("STATUS a\xc2\x85", 10, "U+0085 (NEL), a C1 control");
	REFUSED("STATUS \xc2\x9b" "31m", 12, "U+009B (CSI), a C1 control");
	REFUSED("STATUS \xc2\x80", 9, "U+0080, a C1 control");
	REFUSED("STATUS \xc2\x9f", 9, "U+009F, a C1 control");
	/* U+00A0 and up are not controls. */
	cr_expect_eq(parse("STATUS \xc2\xa0"), 0, "U+00A0 refused");
}

/* ---- length ----------------------------------------------------------- */

Test(chan, over_msg_max_refused)
{
	char *buf = malloc(CHAN_MSG_MAX + 2);

	cr_assert_not_null(buf);
	/* READY padded with nothing valid can only be invalid: what matters
	 * is that 1025 bytes are refused before anything is read. */
	memset(buf, 'A', CHAN_MSG_MAX + 2);
	REFUSED(buf, CHAN_MSG_MAX + 1, "1025 bytes");
	memcpy(buf, "STATUS ", 7);
	REFUSED(buf, CHAN_MSG_MAX + 1, "1025 bytes of STATUS");
	buf[CHAN_MSG_MAX] = '\n';
	REFUSED(buf, CHAN_MSG_MAX + 1, "1024 bytes and a newline");
	REFUSED(buf, CHAN_MSG_MAX, "1024 bytes of STATUS (over 200 of text)");
	free(buf);
}

/* A refused message does not read past LEN: the bytes after it are valid. */
Test(chan, len_is_the_bound)
{
	cr_expect_eq(parse_n("READY", 4), -EINVAL);
	cr_expect_eq(parse_n("TOUCH", 3), -EINVAL);
	cr_expect_eq(parse_n("VALUE 4142", 9), -EINVAL); /* "VALUE 414" */
	cr_assert_eq(parse_n("VALUE 41424344", 10), 0);  /* "VALUE 4142" */
	cr_expect_eq(m.len, 2);
	cr_assert_eq(parse_n("STATUS abcdef", 9), 0);
	cr_expect_str_eq(m.text, "ab");
	cr_assert_eq(parse_n("READY\nxyz", 6), 0);
	cr_expect_eq(m.kind, CHAN_READY);
}
