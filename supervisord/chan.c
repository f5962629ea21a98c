/*
 * chan: see chan.h.  A message is one line of ASCII: a word, and for VALUE
 * and STATUS one space and an argument.  Nothing here trusts a length the
 * message claims; everything is bounded by LEN.
 */
#include <errno.h>
#include <string.h>

#include "chan.h"

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int
parse_value(const char *p, size_t n, struct chan_msg *out)
{
	size_t i;

	if (n % 2 != 0 || n / 2 > KV_VALUE_MAX)
		return -EINVAL;
	for (i = 0; i < n; i += 2) {
		int hi = hexval(p[i]), lo = hexval(p[i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		out->value[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	out->len = n / 2;
	return 0;
}

/* STATUS text: printable UTF-8 (no controls), at most CHAN_STATUS_MAX. */
static int
parse_status(const char *p, size_t n, struct chan_msg *out)
{
	size_t i;

	if (n > CHAN_STATUS_MAX)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		unsigned char b = (unsigned char)p[i];

		/* C0, DEL, and C1 (U+0080..U+009F: 0xc2 0x80..0x9f). */
		if (b < 0x20 || b == 0x7f ||
		    (b == 0xc2 && i + 1 < n && (unsigned char)p[i + 1] < 0xa0))
			return -EINVAL;
	}
	/*
	 * UTF-8 validity is kv_key_check()'s, which refuses spaces too: check
	 * a copy with its spaces as underscores.
	 */
	if (n > 0) {
		char tmp[CHAN_STATUS_MAX];

		memcpy(tmp, p, n);
		for (i = 0; i < n; i++)
			if (tmp[i] == ' ')
				tmp[i] = '_';
		if (kv_key_check(tmp, n) != NULL)
			return -EINVAL;
	}
	memcpy(out->text, p, n);
	out->text[n] = '\0';
	out->len = n;
	return 0;
}

/* Does the message at P (N bytes) start with WORD, then end or a space? */
static size_t
word(const char *p, size_t n, const char *w)
{
	size_t l = strlen(w);

	if (n < l || memcmp(p, w, l) != 0)
		return 0;
	if (n == l)
		return l;
	return p[l] == ' ' ? l + 1 : 0;
}

int
chan_parse(const char *msg, size_t len, struct chan_msg *out)
{
	size_t n;

	if (len > CHAN_MSG_MAX)
		return -EINVAL;
	if (len > 0 && msg[len - 1] == '\n')
		len--;
	memset(out, 0, offsetof(struct chan_msg, value));
	if (len == 5 && memcmp(msg, "READY", 5) == 0)
		out->kind = CHAN_READY;
	else if (len == 9 && memcmp(msg, "HEARTBEAT", 9) == 0)
		out->kind = CHAN_HEARTBEAT;
	else if (len == 5 && memcmp(msg, "TOUCH", 5) == 0)
		out->kind = CHAN_TOUCH;
	else if ((n = word(msg, len, "VALUE")) != 0) {
		out->kind = CHAN_VALUE;
		return parse_value(msg + n, len - n, out);
	} else if ((n = word(msg, len, "STATUS")) != 0) {
		out->kind = CHAN_STATUS;
		return parse_status(msg + n, len - n, out);
	} else
		return -EINVAL;
	return 0;
}
