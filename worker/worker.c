/*
 * The worker side of keyvisor: the channel to keyvisord, and registry
 * lookups of peers.
 *
 * The channel is a SOCK_SEQPACKET socket inherited on $KEYVISOR_NOTIFY_FD.
 * Each message is built in a buffer on the stack and sent with exactly one
 * send(2), so message boundaries are the socket's and nothing is ever
 * partly sent.  Messages carry no trailing newline (the protocol allows
 * one; we do not need it).  Arguments are validated before the channel is
 * looked at, so a bad argument is reported even without a channel.
 *
 * Invariants:
 *   - Every cache below is written once, by compare-and-swap from its
 *     "unknown" value, and read with atomic loads; kv_worker_reset() is the
 *     only other writer.  This file takes no lock (only kv_reg_open(), in
 *     the kv_lookup() call that maps the registry, allocates), which is
 *     what makes the channel functions async-signal-safe (see worker.h).
 *   - The channel fd belongs to the process, not to us: it is never closed,
 *     duplicated, or given flags.  If the fd is non-blocking, a full socket
 *     buffer is reported as -EAGAIN; if it blocks, so does the call.
 *   - errno is the same on return as on entry, so that the functions can be
 *     called from signal handlers without saving it.
 *
 * This file knows the channel messages and the registry's naming
 * convention ("keyvisor.NAME"); it knows nothing of the daemon's state
 * machine, and nothing here logs.
 */
#include <keyvisor/worker.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testhook.h"

/*
 * The library is compiled with -fvisibility=hidden; this marks the API.
 * libkeyvisor.map then decides, for the whole .so, what is exported.
 */
#define KV_EXPORT __attribute__((visibility("default")))

/* The channel cache: an fd (>= 3) or one of these. */
#define CHAN_UNKNOWN (-2) /* the environment has not been read yet */
#define CHAN_NONE    (-1) /* no usable channel: -ENOTCONN */

#define FD_MIN 3 /* 0, 1 and 2 are stdio, never the channel */

/* Registry names, as keyvisord checks them (supervisord/paths.c). */
#define REG_NAME_MAX   64
#define REG_SEG_PREFIX "keyvisor."

/* "VALUE " and two hex digits per byte: 518 bytes, under the 1024 limit. */
#define VALUE_MSG_MAX (sizeof("VALUE ") - 1 + 2 * KV_VALUE_MAX)
/* "STATUS " and the text: 207 bytes. */
#define STATUS_MSG_MAX (sizeof("STATUS ") - 1 + KV_STATUS_MAX)

/*
 * The caches are read from signal handlers, which is only safe if their
 * atomics need no lock (a handler must not wait for the code it interrupted).
 */
#if __GCC_ATOMIC_INT_LOCK_FREE != 2 || __GCC_ATOMIC_POINTER_LOCK_FREE != 2
#error "atomic int and pointer operations must be lock-free"
#endif

static const char key_unknown[1]; /* kv_self_key() not called yet */

static int            chan = CHAN_UNKNOWN;
static const char    *self_key = key_unknown;
static struct kv_reg *reg; /* NULL until a kv_lookup() mapped it */

/*
 * $KEYVISOR_NOTIFY_FD as an fd, or CHAN_NONE.  Strict: one canonical
 * decimal number (digits only, no sign, space or leading zero) >= FD_MIN.
 */
static int
parse_fd(const char *s)
{
	long v = 0;

	if (s == NULL || *s < '1' || *s > '9')
		return CHAN_NONE;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return CHAN_NONE;
		v = v * 10 + (*s - '0');
		if (v > INT_MAX)
			return CHAN_NONE;
	}
	return v >= FD_MIN ? (int)v : CHAN_NONE;
}

/*
 * The channel fd, or CHAN_NONE.  The first call reads the environment;
 * every later one is a single atomic load.
 *
 * FIRST-CALL RACE.  Threads (or a signal handler and the code it
 * interrupted) may all find CHAN_UNKNOWN and look at the environment at
 * once.  Each computes its answer without side effects, and the first to
 * compare-and-swap it in wins; the others adopt the winner's answer, so
 * every caller sees the same channel for the life of the process.
 */
static int
chan_get(void)
{
	struct stat st;
	int         fd, expect = CHAN_UNKNOWN;

	fd = __atomic_load_n(&chan, __ATOMIC_ACQUIRE);
	if (fd != CHAN_UNKNOWN)
		return fd;
	fd = parse_fd(getenv("KEYVISOR_NOTIFY_FD"));
	if (fd >= 0 && (fstat(fd, &st) == -1 || !S_ISSOCK(st.st_mode)))
		fd = CHAN_NONE;
	if (!__atomic_compare_exchange_n(
	        &chan, &expect, fd, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		fd = expect;
	return fd;
}

/* Send the LEN bytes at MSG as one message.  Returns 0 or -errno. */
static int
chan_send(const char *msg, size_t len)
{
	ssize_t n;
	int     fd, r = 0, saved = errno;

	if ((fd = chan_get()) < 0) {
		errno = saved;
		return -ENOTCONN;
	}
	do
		n = send(fd, msg, len, MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		r = -errno;
	else if ((size_t)n != len) /* SOCK_SEQPACKET: cannot happen */
		r = -EIO;
	errno = saved;
	return r;
}

KV_EXPORT int
kv_ready(void)
{
	return chan_send("READY", sizeof("READY") - 1);
}

KV_EXPORT int
kv_heartbeat(void)
{
	return chan_send("HEARTBEAT", sizeof("HEARTBEAT") - 1);
}

KV_EXPORT int
kv_touch(void)
{
	return chan_send("TOUCH", sizeof("TOUCH") - 1);
}

KV_EXPORT int
kv_set_value(const void *value, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	const uint8_t    *v = value;
	char              msg[VALUE_MSG_MAX];
	size_t            n, i;

	if (value == NULL && len > 0)
		return -EINVAL;
	if (len > KV_VALUE_MAX)
		return -EMSGSIZE;
	memcpy(msg, "VALUE", sizeof("VALUE") - 1);
	n = sizeof("VALUE") - 1;
	if (len > 0)
		msg[n++] = ' ';
	for (i = 0; i < len; i++) {
		msg[n++] = digits[v[i] >> 4];
		msg[n++] = digits[v[i] & 0xf];
	}
	return chan_send(msg, n);
}

/*
 * Decode the UTF-8 character at S (LEN > 0 bytes left) into *CP.  Returns
 * its length in bytes, or 0 if it is not well-formed: overlong forms,
 * surrogates and code points above U+10FFFF are refused, as are sequences
 * cut off by the end.
 */
static size_t
utf8_next(const uint8_t *s, size_t len, uint32_t *cp)
{
	uint32_t c = s[0], min;
	size_t   n, k;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		c &= 0x1f;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		c &= 0x0f;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		c &= 0x07;
		min = 0x10000;
	} else {
		return 0; /* a continuation byte, 0xc0, 0xc1, or 0xf5.. */
	}
	if (len < n)
		return 0;
	for (k = 1; k < n; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[k] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

/* Are the LEN bytes at S valid UTF-8 made of printable characters? */
static bool
printable(const uint8_t *s, size_t len)
{
	uint32_t c;
	size_t   i, n;

	for (i = 0; i < len; i += n) {
		if ((n = utf8_next(s + i, len - i, &c)) == 0)
			return false;
		if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) /* C0, DEL, C1 */
			return false;
		if (c == 0x2028 ||
		    c == 0x2029) /* line breaks by another name */
			return false;
	}
	return true;
}

KV_EXPORT int
kv_set_status(const char *text)
{
	char   msg[STATUS_MSG_MAX];
	size_t len, n = sizeof("STATUS ") - 1;

	if (text == NULL)
		return -EINVAL;
	/* Bounded: TEXT may be any length, and we stop one byte past it. */
	for (len = 0; len <= KV_STATUS_MAX && text[len] != '\0'; len++)
		;
	if (len > KV_STATUS_MAX)
		return -EMSGSIZE;
	if (!printable((const uint8_t *)text, len))
		return -EINVAL;
	memcpy(msg, "STATUS ", n);
	memcpy(msg + n, text, len);
	return chan_send(msg, n + len);
}

KV_EXPORT const char *
kv_self_key(void)
{
	const char *k, *expect = key_unknown;

	k = __atomic_load_n(&self_key, __ATOMIC_ACQUIRE);
	if (k != key_unknown)
		return k;
	/* The first-call race is chan_get()'s, and so is its answer. */
	k = getenv("KEYVISOR_KEY");
	if (k != NULL && k[0] == '\0')
		k = NULL;
	if (!__atomic_compare_exchange_n(&self_key, &expect, k, false,
	        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		k = expect;
	return k;
}

/* Is NAME a registry name keyvisord would accept? */
static bool
reg_name_ok(const char *name)
{
	size_t i;

	if (name[0] == '.')
		return false;
	for (i = 0; name[i] != '\0'; i++) {
		char c = name[i];

		if (i == REG_NAME_MAX)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		        c == '-'))
			return false;
	}
	return i > 0;
}

/* The segment name of the registry the environment names, into SEG. */
static int
reg_segment(char *seg, size_t size)
{
	const char *name = getenv("KEYVISOR_REGISTRY");

	if (name == NULL || name[0] == '\0')
		name = getenv("KEYVISOR_INSTANCE");
	if (name == NULL || name[0] == '\0')
		name = "default";
	if (!reg_name_ok(name))
		return -EINVAL;
	if (strlen(REG_SEG_PREFIX) + strlen(name) >= size)
		return -ENAMETOOLONG; /* cannot happen: size fits the limit */
	strcpy(seg, REG_SEG_PREFIX);
	strcat(seg, name);
	return 0;
}

/*
 * The registry, mapped read-only on first use, in *OUT.  Returns 0 or
 * -errno; a failure is not remembered, so a worker started before its
 * registry existed finds it later.
 *
 * OPEN RACE.  Threads that find no mapping each map the segment, and the
 * first to compare-and-swap its handle in wins; the others unmap theirs and
 * use the winner's.  Unlike pthread_once(3), this lets a failed first open
 * be retried, and lets kv_worker_reset() start over.
 */
static int
reg_get(struct kv_reg **out)
{
	struct kv_reg *r, *expect = NULL;
	char           seg[sizeof(REG_SEG_PREFIX) + REG_NAME_MAX];
	int            rc;

	r = __atomic_load_n(&reg, __ATOMIC_ACQUIRE);
	if (r == NULL) {
		if ((rc = reg_segment(seg, sizeof(seg))) < 0)
			return rc;
		if ((rc = kv_reg_open(seg, KV_REG_RDONLY, &r)) < 0)
			return rc;
		if (!__atomic_compare_exchange_n(&reg, &expect, r, false,
		        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			(void)kv_reg_close(r);
			r = expect;
		}
	}
	*out = r;
	return 0;
}

/*
 * Is the process of E the one that registered?  A pid is reused once its
 * process is reaped, so the pid alone proves nothing: the start time in
 * /proc must still be the one recorded (the PidRef check).  Returns 0 or
 * -ESRCH, or another error of reading /proc.
 */
static int
same_process(const struct kv_entry *e)
{
	uint64_t start;
	int      rc;

	if (e->pid <= 0)
		return -ESRCH;
	if ((rc = kv_proc_start_time(e->pid, &start)) < 0)
		return rc;
	return start == e->start_time ? 0 : -ESRCH;
}

KV_EXPORT int
kv_lookup(const char *key, struct kv_entry *out)
{
	struct kv_entry e;
	struct kv_reg  *r;
	int             rc, saved = errno;

	/* A worker passes keys it got from elsewhere: say so if one is bad. */
	if (key == NULL || out == NULL || kv_key_check(key, strlen(key)) != NULL)
		return -EINVAL;
	rc = reg_get(&r);
	if (rc == 0)
		rc = kv_reg_lookup(r, key, strlen(key), &e);
	if (rc == 0)
		rc = same_process(&e);
	if (rc == 0)
		*out = e;
	errno = saved;
	return rc;
}

void
kv_worker_reset(void)
{
	__atomic_store_n(&chan, CHAN_UNKNOWN, __ATOMIC_SEQ_CST);
	__atomic_store_n(&self_key, key_unknown, __ATOMIC_SEQ_CST);
	(void)kv_reg_close(__atomic_exchange_n(&reg, NULL, __ATOMIC_SEQ_CST));
}
