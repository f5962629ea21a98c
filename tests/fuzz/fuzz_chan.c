/*
 * Fuzz target for chan_parse() (supervisord/chan.c), the worker channel's
 * line parser.  The input is one message.  Besides crashes, the answer is
 * compared with a reference written from keyvisor-protocol(7)'s grammar:
 *
 *   READY | HEARTBEAT | TOUCH | VALUE [SP hex] | STATUS [SP text]
 *
 * at most CHAN_MSG_MAX bytes, one trailing newline allowed; hex is pairs
 * of hex digits, at most KV_VALUE_MAX bytes decoded; text is at most
 * CHAN_STATUS_MAX bytes of UTF-8 with no control character (C0, DEL, C1).
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "chan.h"
#include "fuzz.h"

static int
ref_hex(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Is P (N bytes) UTF-8 without C0 or C1 controls or DEL?  By decoding. */
static bool
ref_text(const uint8_t *p, size_t n)
{
	size_t i = 0, len, k;

	while (i < n) {
		uint32_t v, min;

		if (p[i] < 0x80) {
			if (p[i] < 0x20 || p[i] == 0x7f)
				return false;
			i++;
			continue;
		}
		if ((p[i] & 0xe0) == 0xc0)
			len = 2, v = p[i] & 0x1f, min = 0x80;
		else if ((p[i] & 0xf0) == 0xe0)
			len = 3, v = p[i] & 0x0f, min = 0x800;
		else if ((p[i] & 0xf8) == 0xf0)
			len = 4, v = p[i] & 0x07, min = 0x10000;
		else
			return false;
		if (n - i < len)
			return false;
		for (k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			v = v << 6 | (p[i + k] & 0x3f);
		}
		if (v < min || (v >= 0xd800 && v <= 0xdfff) || v > 0x10ffff ||
		    (v >= 0x80 && v <= 0x9f))
			return false;
		i += len;
	}
	return true;
}

/* The expected result: 0 and *WANT, or -EINVAL. */
static int
ref_parse(const uint8_t *p, size_t n, struct chan_msg *want)
{
	size_t i;

	if (n > CHAN_MSG_MAX)
		return -EINVAL;
	if (n > 0 && p[n - 1] == '\n')
		n--;
	memset(want, 0, sizeof(*want));
	if (n == 5 && memcmp(p, "READY", 5) == 0) {
		want->kind = CHAN_READY;
		return 0;
	}
	if (n == 9 && memcmp(p, "HEARTBEAT", 9) == 0) {
		want->kind = CHAN_HEARTBEAT;
		return 0;
	}
	if (n == 5 && memcmp(p, "TOUCH", 5) == 0) {
		want->kind = CHAN_TOUCH;
		return 0;
	}
	if (n >= 5 && memcmp(p, "VALUE", 5) == 0 && (n == 5 || p[5] == ' ')) {
		p += n == 5 ? 5 : 6;
		n -= n == 5 ? 5 : 6;
		want->kind = CHAN_VALUE;
		if (n % 2 != 0 || n / 2 > KV_VALUE_MAX)
			return -EINVAL;
		for (i = 0; i < n / 2; i++) {
			if (ref_hex(p[2 * i]) < 0 || ref_hex(p[2 * i + 1]) < 0)
				return -EINVAL;
			want->value[i] = (uint8_t)(ref_hex(p[2 * i]) * 16 +
			                           ref_hex(p[2 * i + 1]));
		}
		want->len = n / 2;
		return 0;
	}
	if (n >= 6 && memcmp(p, "STATUS", 6) == 0 && (n == 6 || p[6] == ' ')) {
		p += n == 6 ? 6 : 7;
		n -= n == 6 ? 6 : 7;
		want->kind = CHAN_STATUS;
		if (n > CHAN_STATUS_MAX || !ref_text(p, n))
			return -EINVAL;
		memcpy(want->text, p, n);
		want->len = n;
		return 0;
	}
	return -EINVAL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct chan_msg got, want;
	int                    rc, ref;

	memset(&got, 0xa5, sizeof(got));
	rc = chan_parse((const char *)data, size, &got);
	ref = ref_parse(data, size, &want);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	FUZZ_CHECK(rc == ref);
	if (rc < 0)
		return 0;
	FUZZ_CHECK(got.kind == want.kind);
	switch (got.kind) {
	case CHAN_READY:
	case CHAN_HEARTBEAT:
	case CHAN_TOUCH:
		FUZZ_CHECK(got.len == 0);
		break;
	case CHAN_VALUE:
		FUZZ_CHECK(got.len == want.len && got.len <= KV_VALUE_MAX);
		FUZZ_CHECK(memcmp(got.value, want.value, got.len) == 0);
		break;
	case CHAN_STATUS:
		FUZZ_CHECK(got.len == want.len && got.len <= CHAN_STATUS_MAX);
		FUZZ_CHECK(memcmp(got.text, want.text, got.len) == 0);
		FUZZ_CHECK(got.text[got.len] == '\0');
		break;
	}
	return 0;
}
