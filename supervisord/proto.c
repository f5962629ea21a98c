/*
 * proto: one request line in, one typed struct req out.
 *
 * The line is parsed with jansson into a tree, the tree is checked field by
 * field against the op's schema, and the values are copied into the
 * request, so that nothing in the daemon ever touches the JSON.  Pure: no
 * I/O, no clock, no globals; allocation only for the tree (freed before
 * returning) and for the request's strings.
 *
 * Invariants of proto_parse():
 *  - On success every field the op takes has its type and range checked;
 *    fields the op does not take are zero (pointers NULL, strings "").
 *  - On failure *out is all zero bytes and ERR holds one line of printable
 *    ASCII.  Text from the client (an unknown op, jansson's "near '...'")
 *    has every byte outside 0x20..0x7e replaced by '?', so the reason can
 *    go into a JSON reply (json_string() refuses invalid UTF-8) and into a
 *    log line without further escaping, and truncating it to ERRLEN cannot
 *    cut a UTF-8 sequence in half.
 *  - Fields the request carries but its op does not take, and fields no op
 *    knows, are ignored: a newer client may send fields an older daemon
 *    does not understand (forward compatibility).  A JSON null in an
 *    optional field means the field is absent.
 *
 * Strings: the line is parsed with JSON_ALLOW_NUL so that a "\u0000" in a
 * value reaches us and is refused with the field's name instead of a
 * jansson column number; every string is then read with its length and
 * refused if it holds a NUL.  The key is the exception: kv_key_check()
 * already calls a NUL a control character, and that is its reason.
 * Invalid UTF-8 never reaches us: RFC 8259 text is UTF-8, jansson refuses
 * the whole line ("unable to decode byte 0xff"), and the reply is "usage"
 * rather than "invalid_key" even when the bad bytes were in the key.
 */
#include "proto.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PATTERN_MAX   1024 /* bytes in an ls/count/watch pattern */
#define DURATION_MAX  1e9  /* seconds, about 31 years: beyond is a typo */
#define OP_QUOTE_MAX  32   /* bytes of an unknown op quoted back */

#define ARGV_BAD   "\"argv\" must be a non-empty array of strings"
#define SIGNAL_BAD "\"signal\" must be a signal number from 1 to %d or a " \
                   "name like \"TERM\""

/* What an op's request may carry, besides "op". */
#define TAKES_KEY     0x01u
#define TAKES_SPEC    0x02u /* start, ensure */
#define TAKES_SIGNAL  0x04u
#define TAKES_PATTERN 0x08u
#define TAKES_WAIT    0x10u

static const struct {
	const char *name;
	unsigned    takes;
} ops[] = {
    [REQ_START] = {"start", TAKES_KEY | TAKES_SPEC},
    [REQ_ENSURE] = {"ensure", TAKES_KEY | TAKES_SPEC},
    [REQ_STOP] = {"stop", TAKES_KEY},
    [REQ_RESTART] = {"restart", TAKES_KEY},
    [REQ_SIGNAL] = {"signal", TAKES_KEY | TAKES_SIGNAL},
    [REQ_STATUS] = {"status", TAKES_KEY},
    [REQ_LS] = {"ls", TAKES_PATTERN},
    [REQ_COUNT] = {"count", TAKES_PATTERN},
    [REQ_WAIT] = {"wait", TAKES_KEY | TAKES_WAIT},
    [REQ_INFO] = {"info", 0},
    [REQ_SHUTDOWN] = {"shutdown", 0},
    [REQ_WATCH] = {"watch", TAKES_PATTERN},
    [REQ_KINDS] = {"kinds", 0},
    [REQ_RELOAD] = {"reload", 0},
    [REQ_TOUCH] = {"touch", TAKES_KEY},
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))

/* One parse: the object being read and where its reason goes. */
struct parse {
	json_t     *obj;
	struct req *r;
	char       *err;
	size_t      errlen;
};

/* Every fail path returns -1 after writing one line to the error buffer. */
__attribute__((format(printf, 2, 3))) static int
fail(struct parse *p, const char *fmt, ...)
{
	va_list ap;

	if (p->err == NULL || p->errlen == 0)
		return -1;
	va_start(ap, fmt);
	(void)vsnprintf(p->err, p->errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* A string from the request: N bytes at S, valid while the tree lives. */
struct str {
	const char *s;
	size_t      n;
};

/* Copy STR into BUF as printable ASCII, truncated to fit LEN. */
static void
tame(char *buf, size_t len, const char *s, size_t n)
{
	size_t i, k = n;

	if (len == 0)
		return;
	if (k > len - 1)
		k = len - 1;
	for (i = 0; i < k; i++) {
		unsigned char c = (unsigned char)s[i];

		buf[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	buf[k] = '\0';
}

/*
 * The optional field NAME: returns 1 with *V set when present, 0 when
 * absent or null, -1 when the request lacks a required one.
 */
static int
field(struct parse *p, const char *name, bool required, json_t **v)
{
	*v = json_object_get(p->obj, name);
	if (*v != NULL && !json_is_null(*v))
		return 1;
	if (required)
		return fail(p, "\"%s\" is required", name);
	return 0;
}

/*
 * A string field without NUL bytes.  Returns 1 with *OUT set, 0 when
 * absent, -1 on error.
 */
static int
string_field(struct parse *p, const char *name, bool required,
    struct str *out)
{
	json_t *v;
	int     r;

	if ((r = field(p, name, required, &v)) <= 0)
		return r;
	if (!json_is_string(v))
		return fail(p, "\"%s\" must be a string", name);
	out->s = json_string_value(v);
	out->n = json_string_length(v);
	if (memchr(out->s, '\0', out->n) != NULL)
		return fail(p, "\"%s\" must not contain a NUL byte", name);
	return 1;
}

static int
bool_field(struct parse *p, const char *name, bool *out)
{
	json_t *v;
	int     r;

	if ((r = field(p, name, false, &v)) <= 0)
		return r;
	if (!json_is_boolean(v))
		return fail(p, "\"%s\" must be a boolean", name);
	*out = json_is_true(v);
	return 1;
}

static char *
copy(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d != NULL) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static int
oom(struct parse *p)
{
	return fail(p, "out of memory");
}

static int
parse_op(struct parse *p, enum req_op *op)
{
	char       quoted[OP_QUOTE_MAX + 1];
	struct str v;
	size_t     i;

	if (string_field(p, "op", true, &v) < 0)
		return -1;
	for (i = 0; i < NOPS; i++) {
		if (strcmp(v.s, ops[i].name) == 0) {
			*op = (enum req_op)i;
			return 0;
		}
	}
	tame(quoted, sizeof(quoted), v.s, v.n);
	return fail(p, "unknown op \"%s\"%s", quoted,
	    v.n > OP_QUOTE_MAX ? "..." : "");
}

/* Returns 0, -1 for a usage error, -2 for an invalid key. */
static int
parse_key(struct parse *p)
{
	const char *why;
	json_t     *v;

	if (field(p, "key", true, &v) < 0)
		return -1;
	if (!json_is_string(v))
		return fail(p, "\"key\" must be a string");
	why = kv_key_check(json_string_value(v), json_string_length(v));
	if (why != NULL) {
		(void)fail(p, "%s", why);
		return -2;
	}
	/* kv_key_check() bounds the length by KV_KEY_MAX. */
	p->r->keylen = json_string_length(v);
	memcpy(p->r->key, json_string_value(v), p->r->keylen);
	p->r->key[p->r->keylen] = '\0';
	return 0;
}

static int
parse_argv(struct parse *p)
{
	json_t *v, *a;
	size_t  i, n;
	int     r;

	if ((r = field(p, "argv", false, &v)) <= 0)
		return r;
	if (!json_is_array(v) || (n = json_array_size(v)) == 0)
		return fail(p, "%s", ARGV_BAD);
	if (n > PROTO_ARGC_MAX)
		return fail(p, "\"argv\" has more than %d elements",
		    PROTO_ARGC_MAX);
	json_array_foreach (v, i, a) {
		if (!json_is_string(a))
			return fail(p, "%s", ARGV_BAD);
		if (memchr(json_string_value(a), '\0',
		        json_string_length(a)) != NULL)
			return fail(p, "\"argv\" must not contain a NUL byte");
	}
	if (json_string_length(json_array_get(v, 0)) == 0)
		return fail(p, "\"argv\"[0] must not be empty");
	/* Types checked: now copy.  A failure leaves argv for the caller's fini. */
	if ((p->r->argv = calloc(n + 1, sizeof(char *))) == NULL)
		return oom(p);
	json_array_foreach (v, i, a) {
		p->r->argv[i] =
		    copy(json_string_value(a), json_string_length(a));
		if (p->r->argv[i] == NULL)
			return oom(p);
		p->r->argc = i + 1;
	}
	return 1;
}

static int
parse_kind(struct parse *p)
{
	struct str v;
	size_t     i;
	int        r;

	if ((r = string_field(p, "kind", false, &v)) <= 0)
		return r;
	if (v.n == 0)
		return fail(p, "\"kind\" must not be empty");
	if (v.n > KV_KIND_MAX)
		return fail(p, "\"kind\" is longer than %d bytes", KV_KIND_MAX);
	for (i = 0; i < v.n; i++) {
		char c = v.s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		        c == '-'))
			return fail(p,
			    "\"kind\" may only contain [A-Za-z0-9_.-]");
	}
	memcpy(p->r->kind, v.s, v.n);
	p->r->kind[v.n] = '\0';
	return 1;
}

static int
parse_cwd(struct parse *p)
{
	struct str v;
	int        r;

	if ((r = string_field(p, "cwd", false, &v)) <= 0)
		return r;
	if (v.n == 0 || v.s[0] != '/')
		return fail(p, "\"cwd\" must be an absolute path");
	if (v.n >= PATH_MAX)
		return fail(p, "\"cwd\" is longer than %d bytes", PATH_MAX - 1);
	if ((p->r->cwd = copy(v.s, v.n)) == NULL)
		return oom(p);
	return 1;
}

/*
 * A duration in seconds, integer or real, to milliseconds rounded to the
 * nearest.  JSON has no NaN or infinity, and jansson refuses a real that
 * overflows a double, so the range check below sees every possible value.
 */
static int
parse_duration(struct parse *p, const char *name, uint64_t *ms)
{
	json_t *v;
	double  d;
	int     r;

	if ((r = field(p, name, false, &v)) <= 0)
		return r;
	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0 ||
		    json_integer_value(v) > (json_int_t)DURATION_MAX)
			goto range;
		*ms = (uint64_t)json_integer_value(v) * 1000;
		return 1;
	}
	if (!json_is_real(v))
		goto range;
	d = json_real_value(v);
	if (!(d >= 0 && d <= DURATION_MAX))
		goto range;
	*ms = (uint64_t)(d * 1000.0 + 0.5);
	return 1;
range:
	return fail(p, "\"%s\" must be a number of seconds from 0 to %.0f",
	    name, DURATION_MAX);
}

static int
parse_policy(struct parse *p)
{
	struct svc_policy *pol = &p->r->policy;
	const struct {
		const char *name;
		unsigned    bit;
		uint64_t   *ms;
	} durations[] = {
	    {"max_seconds", REQ_SET_MAX_SECONDS, &pol->max_seconds_ms},
	    {"stop_timeout", REQ_SET_STOP_TIMEOUT, &pol->stop_timeout_ms},
	    {"restart_delay", REQ_SET_RESTART_DELAY, &pol->restart_delay_ms},
	    {"backoff_max", REQ_SET_BACKOFF_MAX, &pol->backoff_max_ms},
	};
	struct str name;
	json_t    *v;
	size_t     i;
	int        got;

	if ((got = string_field(p, "restart", false, &name)) < 0)
		return -1;
	if (got && svc_restart_parse(name.s, &pol->restart) < 0)
		return fail(p, "\"restart\" must be \"permanent\", "
		               "\"transient\" or \"temporary\"");
	p->r->set |= got ? REQ_SET_RESTART : 0;
	if ((got = field(p, "max_restarts", false, &v)) < 0)
		return -1;
	if (got) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > SVC_MAX_RESTARTS)
			return fail(p, "\"max_restarts\" must be an integer "
			               "from 0 to %d", SVC_MAX_RESTARTS);
		pol->max_restarts = (uint32_t)json_integer_value(v);
		p->r->set |= REQ_SET_MAX_RESTARTS;
	}
	for (i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
		got = parse_duration(p, durations[i].name, durations[i].ms);
		if (got < 0)
			return -1;
		p->r->set |= got ? durations[i].bit : 0;
	}
	return 0;
}

/*
 * Readiness: "wait_ready", "publish" ("start" or "ready": when lookups
 * see the key) and "ready_timeout" (how long a wait_ready start waits).
 */
static int
parse_ready(struct parse *p)
{
	struct str v;
	int        got;

	if (bool_field(p, "wait_ready", &p->r->wait_ready) < 0 ||
	    (got = string_field(p, "publish", false, &v)) < 0)
		return -1;
	if (got) {
		if (strcmp(v.s, "ready") == 0)
			p->r->publish_ready = true;
		else if (strcmp(v.s, "start") != 0)
			return fail(
			    p, "\"publish\" must be \"start\" or \"ready\"");
		p->r->set |= REQ_SET_PUBLISH;
	}
	got = parse_duration(p, "ready_timeout", &p->r->ready_timeout_ms);
	if (got < 0)
		return -1;
	p->r->set |= got ? REQ_SET_READY_TIMEOUT : 0;
	return 0;
}

static int
parse_spec(struct parse *p)
{
	int argv, kind;

	if ((argv = parse_argv(p)) < 0 || (kind = parse_kind(p)) < 0)
		return -1;
	if (!argv && !kind)
		return fail(p, "\"argv\" is required unless \"kind\" is given");
	if (parse_cwd(p) < 0 || parse_policy(p) < 0)
		return -1;
	return parse_ready(p);
}

static int
parse_signal(struct parse *p)
{
	json_t    *v;
	json_int_t i;

	if (field(p, "signal", true, &v) < 0)
		return -1;
	if (json_is_integer(v)) {
		i = json_integer_value(v);
		if (i < 1 || i > SIGRTMAX)
			return fail(p, SIGNAL_BAD, SIGRTMAX);
		p->r->signo = (int)i;
	} else if (json_is_string(v)) {
		if (memchr(json_string_value(v), '\0',
		        json_string_length(v)) != NULL ||
		    (p->r->signo = proto_signal_parse(json_string_value(v))) < 0)
			return fail(p, SIGNAL_BAD, SIGRTMAX);
	} else {
		return fail(p, SIGNAL_BAD, SIGRTMAX);
	}
	return bool_field(p, "group", &p->r->group) < 0 ? -1 : 0;
}

static int
parse_pattern(struct parse *p)
{
	struct str v;
	int        r;

	if ((r = string_field(p, "pattern", false, &v)) <= 0)
		return r;
	if (v.n > PATTERN_MAX)
		return fail(p, "\"pattern\" is longer than %d bytes",
		    PATTERN_MAX);
	if ((p->r->pattern = copy(v.s, v.n)) == NULL)
		return oom(p);
	return 1;
}

static int
parse_wait(struct parse *p)
{
	if (bool_field(p, "gone", &p->r->gone) < 0 ||
	    bool_field(p, "ready", &p->r->ready) < 0)
		return -1;
	return 0;
}

/* The object's fields, op first.  Returns PROTO_OK or the error. */
static enum proto_err
parse_fields(struct parse *p)
{
	unsigned takes;
	int      r;

	if (parse_op(p, &p->r->op) < 0)
		return PROTO_USAGE;
	takes = ops[p->r->op].takes;
	if ((takes & TAKES_KEY) && (r = parse_key(p)) < 0)
		return r == -2 ? PROTO_INVALID_KEY : PROTO_USAGE;
	if ((takes & TAKES_SPEC) && parse_spec(p) < 0)
		return PROTO_USAGE;
	if ((takes & TAKES_SIGNAL) && parse_signal(p) < 0)
		return PROTO_USAGE;
	if ((takes & TAKES_PATTERN) && parse_pattern(p) < 0)
		return PROTO_USAGE;
	if ((takes & TAKES_WAIT) && parse_wait(p) < 0)
		return PROTO_USAGE;
	return PROTO_OK;
}

/* The line as JSON, or NULL with the reason in P's error buffer. */
static json_t *
load(struct parse *p, const char *line, size_t len)
{
	json_error_t je;
	json_t      *v;
	char         text[sizeof(je.text)];

	if (len >= PROTO_LINE_MAX) {
		(void)fail(p, "request line longer than %d bytes",
		    PROTO_LINE_MAX);
		return NULL;
	}
	if (len == 0) {
		(void)fail(p, "empty request line");
		return NULL;
	}
	if (memchr(line, '\0', len) != NULL) {
		(void)fail(p, "request line contains a NUL byte");
		return NULL;
	}
	v = json_loadb(line, len,
	    JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	if (v == NULL) {
		tame(text, sizeof(text), je.text, strlen(je.text));
		(void)fail(p, "malformed JSON: %s at column %d", text,
		    je.column);
		return NULL;
	}
	if (!json_is_object(v)) {
		json_decref(v);
		(void)fail(p, "request must be a JSON object");
		return NULL;
	}
	return v;
}

enum proto_err
proto_parse(const char *line, size_t len, struct req *out, char *err,
    size_t errlen)
{
	struct parse   p = {.r = out, .err = err, .errlen = errlen};
	enum proto_err e;

	memset(out, 0, sizeof(*out));
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if ((p.obj = load(&p, line, len)) == NULL)
		return PROTO_USAGE;
	out->policy = svc_policy_default();
	e = parse_fields(&p);
	json_decref(p.obj);
	if (e != PROTO_OK)
		proto_req_fini(out);
	return e;
}

/* Frees what the request owns and zeroes it; idempotent. */
void
proto_req_fini(struct req *r)
{
	size_t i;

	if (r->argv != NULL) {
		for (i = 0; r->argv[i] != NULL; i++)
			free(r->argv[i]);
		free(r->argv);
	}
	free(r->pattern);
	free(r->cwd);
	memset(r, 0, sizeof(*r));
}

/* NULL for a value outside the enum. */
const char *
proto_op_name(enum req_op op)
{
	if ((unsigned)op >= NOPS)
		return NULL;
	return ops[op].name;
}

/* NULL for PROTO_OK, which is no reply code, and outside the enum. */
const char *
proto_err_code(enum proto_err e)
{
	switch (e) {
	case PROTO_OK:
		return NULL;
	case PROTO_USAGE:
		return "usage";
	case PROTO_INVALID_KEY:
		return "invalid_key";
	}
	return NULL;
}

/* "RTMIN", "RTMIN+N", "RTMAX", "RTMAX-N" (kill -l's spelling), or -EINVAL. */
static int
signal_rt(const char *s)
{
	int   base, sign, n = 0;
	char *end;
	long  l;

	if (strncasecmp(s, "RTMIN", 5) == 0) {
		base = SIGRTMIN;
		sign = '+';
	} else if (strncasecmp(s, "RTMAX", 5) == 0) {
		base = SIGRTMAX;
		sign = '-';
	} else {
		return -EINVAL;
	}
	s += 5;
	if (*s != '\0') {
		if (*s++ != sign || *s < '0' || *s > '9')
			return -EINVAL;
		l = strtol(s, &end, 10);
		if (*end != '\0' || l > SIGRTMAX - SIGRTMIN)
			return -EINVAL;
		n = (int)l;
	}
	n = sign == '+' ? base + n : base - n;
	return n >= SIGRTMIN && n <= SIGRTMAX ? n : -EINVAL;
}

/*
 * Names as kill(1) takes them, "SIG" prefix and case optional.  The names
 * are sigabbrev_np()'s, plus the aliases glibc's table leaves out.
 */
int
proto_signal_parse(const char *s)
{
	static const struct {
		const char *name;
		int         signo;
	} alias[] = {{"IOT", SIGABRT}, {"CLD", SIGCHLD}, {"IO", SIGIO}};
	const char *name;
	size_t      i, n;
	int         sig;

	if (s == NULL || *s == '\0')
		return -EINVAL;
	if (*s >= '0' && *s <= '9') {
		n = strspn(s, "0123456789");
		if (s[n] != '\0' || n > 3 || (sig = atoi(s)) < 1 ||
		    sig > SIGRTMAX)
			return -EINVAL;
		return sig;
	}
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (sig = 1; sig < SIGRTMIN; sig++) {
		name = sigabbrev_np(sig);
		if (name != NULL && strcasecmp(s, name) == 0)
			return sig;
	}
	for (i = 0; i < sizeof(alias) / sizeof(alias[0]); i++)
		if (strcasecmp(s, alias[i].name) == 0)
			return alias[i].signo;
	return signal_rt(s);
}

const char *
proto_signal_name(int signo)
{
	return sigabbrev_np(signo);
}

json_t *
proto_exit_json(const struct svc_exit *e)
{
	json_t     *o = json_object();
	const char *name;
	int         r;

	if (o == NULL)
		return NULL;
	if (e->signo == 0)
		r = json_object_set_new(o, "code", json_integer(e->code));
	else if ((name = proto_signal_name(e->signo)) != NULL)
		r = json_object_set_new(o, "signal", json_string(name));
	else
		r = json_object_set_new(o, "signal", json_integer(e->signo));
	if (r == 0 && e->core)
		r = json_object_set_new(o, "core", json_true());
	if (r != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/*
 * COMPACT output has no newline of its own and escapes those in strings,
 * so the one appended here is the line's only one.  Reals get 15
 * significant digits, enough for a CLOCK_REALTIME time in milliseconds,
 * and 0.1 prints as 0.1 rather than 0.10000000000000001.
 */
char *
proto_dump(json_t *v, size_t *len)
{
	const size_t flags =
	    JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15);
	char  *buf = NULL;
	size_t n;

	if (v == NULL)
		return NULL;
	n = json_dumpb(v, NULL, 0, flags);
	if (n > 0 && (buf = malloc(n + 2)) != NULL) {
		if (json_dumpb(v, buf, n, flags) != n) {
			free(buf);
			buf = NULL;
		} else {
			buf[n] = '\n';
			buf[n + 1] = '\0';
			if (len != NULL)
				*len = n + 1;
		}
	}
	json_decref(v);
	return buf;
}

/*
 * MSG as a JSON string.  It is normally ASCII (proto_parse()'s reasons
 * are), but a caller may pass a key or a file name; if it is not valid
 * UTF-8, its bytes outside printable ASCII become '?' rather than the
 * reply failing.
 */
static json_t *
message(const char *msg)
{
	json_t *m = json_string(msg);
	char   *tamed;
	size_t  n;

	if (m != NULL || msg == NULL)
		return m;
	n = strlen(msg);
	if ((tamed = malloc(n + 1)) == NULL)
		return NULL;
	tame(tamed, n + 1, msg, n);
	m = json_string(tamed);
	free(tamed);
	return m;
}

char *
proto_error(const char *code, const char *msg, size_t *len)
{
	json_t *o = json_object();

	/* json_object_set_new() consumes its value even when it fails. */
	if (json_object_set_new(o, "ok", json_false()) != 0 ||
	    json_object_set_new(o, "code", json_string(code)) != 0 ||
	    json_object_set_new(o, "error", message(msg)) != 0) {
		json_decref(o);
		return NULL;
	}
	return proto_dump(o, len);
}
