/*
 * proto: request parsing, signal names, exit objects and reply framing.
 *
 * Every test starts from an output struct full of garbage, so that a
 * field proto_parse() forgets to set, or to clear after an error, shows.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "proto.h"

#define ERRLEN 256

#include "leakcheck.h"

static void
garbage(struct req *r)
{
	memset(r, 0xa5, sizeof(*r));
}

static bool
all_zero(const struct req *r)
{
	static const struct req zero_bytes; /* static: padding is zero too */

	return memcmp(r, &zero_bytes, sizeof(*r)) == 0;
}

/* R is empty but for its op (and the default policy parsing sets). */
static bool
all_zero_but_op(const struct req *r)
{
	struct req z;

	memcpy(&z, r, sizeof(z));
	z.op = 0;
	memset(&z.policy, 0, sizeof(z.policy));
	return all_zero(&z);
}

/* One line of printable ASCII, as proto_parse() promises for its reasons. */
static bool
err_ok(const char *err)
{
	size_t i;

	if (err[0] == '\0')
		return false;
	for (i = 0; err[i] != '\0'; i++)
		if ((unsigned char)err[i] < 0x20 || (unsigned char)err[i] > 0x7e)
			return false;
	return true;
}

static enum proto_err
parse(const char *line, struct req *r, char *err)
{
	garbage(r);
	return proto_parse(line, strlen(line), r, err, ERRLEN);
}

/*
 * Parse LINE (LEN bytes) and insist on error CODE with reason WANT; a WANT
 * ending in '*' is a prefix.
 */
static void
expect_err(const char *line, size_t len, enum proto_err code,
    const char *want)
{
	struct req     r;
	char           err[ERRLEN];
	enum proto_err e;
	size_t         n = strlen(want);

	garbage(&r);
	e = proto_parse(line, len, &r, err, sizeof(err));
	cr_assert_eq(e, code, "%.80s: code %d, want %d (%s)", line, e, code, err);
	if (n > 0 && want[n - 1] == '*')
		cr_assert(strncmp(err, want, n - 1) == 0,
		    "%.80s: error \"%s\", want prefix \"%.*s\"", line, err,
		    (int)n - 1, want);
	else
		cr_assert_str_eq(err, want, "%.80s", line);
	cr_assert(err_ok(err), "%.80s: error not one ASCII line: %s", line, err);
	cr_assert(all_zero(&r), "%.80s: out not zeroed after an error", line);
	proto_req_fini(&r); /* on a failed struct: a no-op */
	proto_req_fini(&r);
	cr_assert(all_zero(&r));
}

static void
expect_ok(const char *line, struct req *r)
{
	char           err[ERRLEN];
	enum proto_err e;

	e = parse(line, r, err);
	cr_assert_eq(e, PROTO_OK, "%s: %s", line, err);
}

#define ARGV_BAD   "\"argv\" must be a non-empty array of strings"
#define SIGNAL_BAD "\"signal\" must be a signal number from 1 to 64 or a " \
                   "name like \"TERM\""
#define DUR_BAD(f) "\"" f "\" must be a number of seconds from 0 to 1000000000"
#define MAXR_BAD   "\"max_restarts\" must be an integer from 0 to 1000"
#define RESTART_BAD \
	"\"restart\" must be \"permanent\", \"transient\" or \"temporary\""

/* ---- valid requests ---------------------------------------------------- */

Test(valid, start_every_field)
{
	struct req r;

	expect_ok("{\"op\":\"start\",\"key\":\"user:42\","
	          "\"argv\":[\"/usr/bin/worker\",\"--id\",\"42\",\"\",\"a\\nb\"],"
	          "\"cwd\":\"/home/me\",\"restart\":\"transient\","
	          "\"max_restarts\":7,\"max_seconds\":2.5,\"stop_timeout\":1,"
	          "\"restart_delay\":0.25,\"backoff_max\":30,\"kind\":\"tracker\","
	          "\"wait_ready\":true,\"future\":{\"x\":[1,null]}}",
	    &r);
	cr_assert_eq(r.op, REQ_START);
	cr_assert_str_eq(r.key, "user:42");
	cr_assert_eq(r.keylen, 7);
	cr_assert_eq(r.argc, 5);
	cr_assert_str_eq(r.argv[0], "/usr/bin/worker");
	cr_assert_str_eq(r.argv[1], "--id");
	cr_assert_str_eq(r.argv[2], "42");
	cr_assert_str_eq(r.argv[3], "");
	cr_assert_str_eq(r.argv[4], "a\nb");
	cr_assert_null(r.argv[5]);
	cr_assert_str_eq(r.cwd, "/home/me");
	cr_assert_str_eq(r.kind, "tracker");
	cr_assert_eq(r.set, REQ_SET_RESTART | REQ_SET_MAX_RESTARTS |
	                        REQ_SET_MAX_SECONDS | REQ_SET_STOP_TIMEOUT |
	                        REQ_SET_RESTART_DELAY | REQ_SET_BACKOFF_MAX);
	cr_assert_eq(r.policy.restart, SVC_TRANSIENT);
	cr_assert_eq(r.policy.max_restarts, 7);
	cr_assert_eq(r.policy.max_seconds_ms, 2500);
	cr_assert_eq(r.policy.stop_timeout_ms, 1000);
	cr_assert_eq(r.policy.restart_delay_ms, 250);
	cr_assert_eq(r.policy.backoff_max_ms, 30000);
	/* Not settable over the protocol: the defaults. */
	cr_assert_eq(r.policy.backoff_reset_ms,
	    svc_policy_default().backoff_reset_ms);
	cr_assert_eq(r.policy.stop_signal, SIGTERM);
	cr_assert(r.wait_ready);
	cr_assert_null(r.pattern);
	cr_assert_eq(r.signo, 0);
	cr_assert(!r.group && !r.gone && !r.ready);
	proto_req_fini(&r);
	cr_assert(all_zero(&r));
	proto_req_fini(&r);
	NO_LEAKS();
}

Test(valid, start_minimal_has_default_policy)
{
	struct svc_policy def = svc_policy_default();
	struct req        r;

	expect_ok("{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"/bin/true\"]}", &r);
	cr_assert_eq(r.argc, 1);
	cr_assert_null(r.cwd);
	cr_assert_str_eq(r.kind, "");
	cr_assert_eq(r.set, 0);
	/* Field by field: a struct assignment need not copy padding. */
	cr_assert_eq(r.policy.restart, def.restart);
	cr_assert_eq(r.policy.max_restarts, def.max_restarts);
	cr_assert_eq(r.policy.max_seconds_ms, def.max_seconds_ms);
	cr_assert_eq(r.policy.restart_delay_ms, def.restart_delay_ms);
	cr_assert_eq(r.policy.backoff_max_ms, def.backoff_max_ms);
	cr_assert_eq(r.policy.backoff_reset_ms, def.backoff_reset_ms);
	cr_assert_eq(r.policy.stop_timeout_ms, def.stop_timeout_ms);
	cr_assert_eq(r.policy.stop_signal, def.stop_signal);
	cr_assert(!r.wait_ready);
	proto_req_fini(&r);
	NO_LEAKS();
}

Test(valid, ensure_with_kind_only)
{
	struct req r;

	expect_ok("{\"op\":\"ensure\",\"key\":\"user:1\",\"kind\":\"a.B_c-9\"}", &r);
	cr_assert_eq(r.op, REQ_ENSURE);
	cr_assert_null(r.argv);
	cr_assert_eq(r.argc, 0);
	cr_assert_str_eq(r.kind, "a.B_c-9");
	proto_req_fini(&r);
	NO_LEAKS();
}

Test(valid, null_means_absent)
{
	struct req r;

	expect_ok("{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"x\"],\"cwd\":null,"
	          "\"kind\":null,\"restart\":null,\"max_restarts\":null,"
	          "\"max_seconds\":null,\"wait_ready\":null}",
	    &r);
	cr_assert_null(r.cwd);
	cr_assert_eq(r.set, 0);
	proto_req_fini(&r);
	expect_ok("{\"op\":\"ls\",\"pattern\":null}", &r);
	cr_assert_null(r.pattern);
	proto_req_fini(&r);
	NO_LEAKS();
}

/* The limits themselves are accepted. */
Test(valid, bounds)
{
	struct req r;

	expect_ok("{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"x\"],"
	          "\"max_restarts\":1000,\"max_seconds\":1000000000,"
	          "\"stop_timeout\":1e9,\"restart_delay\":0,\"backoff_max\":-0.0,"
	          "\"kind\":\"0123456789012345678901234567890\"}",
	    &r);
	cr_assert_eq(r.policy.max_restarts, 1000);
	cr_assert_eq(r.policy.max_seconds_ms, UINT64_C(1000000000000));
	cr_assert_eq(r.policy.stop_timeout_ms, UINT64_C(1000000000000));
	cr_assert_eq(r.policy.restart_delay_ms, 0);
	cr_assert_eq(r.policy.backoff_max_ms, 0);
	cr_assert_eq(strlen(r.kind), KV_KIND_MAX);
	proto_req_fini(&r);
	expect_ok("{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"x\"],"
	          "\"max_restarts\":0}",
	    &r);
	cr_assert_eq(r.policy.max_restarts, 0);
	cr_assert_eq(r.set, REQ_SET_MAX_RESTARTS);
	proto_req_fini(&r);
	NO_LEAKS();
}

Test(valid, durations_round_to_milliseconds)
{
	static const struct {
		const char *json;
		uint64_t    ms;
	} t[] = {
	    {"0", 0}, {"0.0004", 0}, {"0.0006", 1}, {"0.001", 1},
	    {"0.25", 250}, {"1.5", 1500}, {"3", 3000}, {"2e1", 20000},
	    {"86400", 86400000},
	};
	char       line[128];
	struct req r;
	size_t     i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(line, sizeof(line),
		    "{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"x\"],"
		    "\"restart_delay\":%s}", t[i].json);
		expect_ok(line, &r);
		cr_expect_eq(r.policy.restart_delay_ms, t[i].ms, "%s -> %llu",
		    t[i].json, (unsigned long long)r.policy.restart_delay_ms);
		cr_expect_eq(r.set, REQ_SET_RESTART_DELAY);
		proto_req_fini(&r);
	}
	NO_LEAKS();
}

Test(valid, restart_names)
{
	static const char *names[] = {"permanent", "transient", "temporary"};
	static const enum svc_restart want[] = {
	    SVC_PERMANENT, SVC_TRANSIENT, SVC_TEMPORARY};
	char       line[128];
	struct req r;
	size_t     i;

	for (i = 0; i < 3; i++) {
		snprintf(line, sizeof(line),
		    "{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"x\"],"
		    "\"restart\":\"%s\"}", names[i]);
		expect_ok(line, &r);
		cr_assert_eq(r.policy.restart, want[i]);
		cr_assert_eq(r.set, REQ_SET_RESTART);
		proto_req_fini(&r);
	}
	NO_LEAKS();
}

/* The keyed ops without options; fields of other ops are ignored. */
Test(valid, keyed_ops)
{
	static const struct {
		const char *op;
		enum req_op want;
	} t[] = {
	    {"stop", REQ_STOP}, {"restart", REQ_RESTART},
	    {"status", REQ_STATUS}, {"wait", REQ_WAIT},
	};
	char       line[256];
	struct req r;
	size_t     i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(line, sizeof(line),
		    "{\"key\":\"svc/\xc3\xa9t\xc3\xa9\",\"op\":\"%s\","
		    "\"argv\":5,\"pattern\":[],\"signal\":\"NOPE\","
		    "\"cwd\":\"rel\"}", t[i].op);
		expect_ok(line, &r);
		cr_assert_eq(r.op, t[i].want);
		cr_assert_str_eq(r.key, "svc/\xc3\xa9t\xc3\xa9");
		cr_assert_eq(r.keylen, 9);
		cr_assert_null(r.argv);
		cr_assert_null(r.pattern);
		cr_assert_null(r.cwd);
		cr_assert_eq(r.signo, 0);
		cr_assert(!r.gone && !r.ready);
		proto_req_fini(&r);
	}
	NO_LEAKS();
}

Test(valid, wait_flags)
{
	struct req r;

	expect_ok("{\"op\":\"wait\",\"key\":\"k\",\"gone\":true,\"ready\":false}", &r);
	cr_assert(r.gone && !r.ready);
	proto_req_fini(&r);
	expect_ok("{\"op\":\"wait\",\"key\":\"k\",\"ready\":true}", &r);
	cr_assert(!r.gone && r.ready);
	proto_req_fini(&r);
	NO_LEAKS();
}

Test(valid, signal_forms)
{
	static const struct {
		const char *json;
		int         signo;
	} t[] = {
	    {"1", SIGHUP}, {"9", SIGKILL}, {"64", 64}, {"\"TERM\"", SIGTERM},
	    {"\"SIGUSR1\"", SIGUSR1}, {"\"hup\"", SIGHUP},
	    {"\"sigkill\"", SIGKILL}, {"\"15\"", SIGTERM},
	    {"\"RTMIN+3\"", 0 /* SIGRTMIN + 3 */},
	};
	char       line[128];
	struct req r;
	size_t     i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(line, sizeof(line),
		    "{\"op\":\"signal\",\"key\":\"k\",\"signal\":%s}", t[i].json);
		expect_ok(line, &r);
		cr_assert_eq(r.op, REQ_SIGNAL);
		cr_assert_eq(r.signo, t[i].signo ? t[i].signo : SIGRTMIN + 3,
		    "%s", t[i].json);
		cr_assert(!r.group);
		proto_req_fini(&r);
	}
	expect_ok("{\"op\":\"signal\",\"key\":\"k\",\"signal\":2,\"group\":true}",
	    &r);
	cr_assert_eq(r.signo, SIGINT);
	cr_assert(r.group);
	proto_req_fini(&r);
	NO_LEAKS();
}

Test(valid, pattern_ops)
{
	static const struct {
		const char *op;
		enum req_op want;
	} t[] = {{"ls", REQ_LS}, {"count", REQ_COUNT}, {"watch", REQ_WATCH}};
	char       line[128];
	struct req r;
	size_t     i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(line, sizeof(line),
		    "{\"op\":\"%s\",\"pattern\":\"user:*\",\"key\":7}", t[i].op);
		expect_ok(line, &r);
		cr_assert_eq(r.op, t[i].want);
		cr_assert_str_eq(r.pattern, "user:*");
		cr_assert_str_eq(r.key, "");
		cr_assert_eq(r.keylen, 0);
		proto_req_fini(&r);
		snprintf(line, sizeof(line), "{\"op\":\"%s\"}", t[i].op);
		expect_ok(line, &r);
		cr_assert_eq(r.op, t[i].want);
		cr_assert_null(r.pattern);
		proto_req_fini(&r);
	}
	NO_LEAKS();
}

Test(valid, bare_ops)
{
	struct req r;

	expect_ok("{\"op\":\"info\"}", &r);
	cr_assert_eq(r.op, REQ_INFO);
	cr_assert_str_eq(r.key, "");
	proto_req_fini(&r);
	expect_ok(" {\"extra\":[1,{\"a\":2}],\"op\":\"shutdown\"} \r\n", &r);
	cr_assert_eq(r.op, REQ_SHUTDOWN);
	proto_req_fini(&r);
	NO_LEAKS();
}

Test(valid, longest_key_and_line)
{
	char      *line = malloc(PROTO_LINE_MAX + 1);
	char       key[KV_KEY_MAX + 1];
	struct req r;
	size_t     n;

	memset(key, 'k', KV_KEY_MAX);
	key[KV_KEY_MAX] = '\0';
	n = (size_t)snprintf(line, PROTO_LINE_MAX,
	    "{\"op\":\"status\",\"key\":\"%s\",\"pad\":\"", key);
	/* PROTO_LINE_MAX counts the newline, which the caller strips. */
	memset(line + n, 'p', PROTO_LINE_MAX - 3 - n);
	memcpy(line + PROTO_LINE_MAX - 3, "\"}", 3);
	cr_assert_eq(strlen(line), PROTO_LINE_MAX - 1);
	expect_ok(line, &r);
	cr_assert_eq(r.keylen, KV_KEY_MAX);
	cr_assert_str_eq(r.key, key);
	proto_req_fini(&r);
	free(line);
	NO_LEAKS();
}

Test(valid, argv_at_limit)
{
	size_t     cap = 64 + PROTO_ARGC_MAX * 4, n, i;
	char      *line = malloc(cap);
	struct req r;

	n = (size_t)snprintf(line, cap, "{\"op\":\"start\",\"key\":\"k\",\"argv\":[");
	for (i = 0; i < PROTO_ARGC_MAX; i++)
		n += (size_t)snprintf(line + n, cap - n, "%s\"a\"", i ? "," : "");
	snprintf(line + n, cap - n, "]}");
	expect_ok(line, &r);
	cr_assert_eq(r.argc, PROTO_ARGC_MAX);
	cr_assert_null(r.argv[PROTO_ARGC_MAX]);
	proto_req_fini(&r);
	free(line);
	NO_LEAKS();
}

/* ---- errors -------------------------------------------------------------- */

struct bad {
	const char    *line;
	enum proto_err code;
	const char    *err;
};

static void
run_bad(const struct bad *t, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		expect_err(t[i].line, strlen(t[i].line), t[i].code, t[i].err);
}

#define RUN_BAD(t) run_bad(t, sizeof(t) / sizeof(t[0]))

Test(errors, framing_and_json)
{
	static const struct bad t[] = {
	    {"", PROTO_USAGE, "empty request line"},
	    {" ", PROTO_USAGE, "malformed JSON: *"},
	    {"not json", PROTO_USAGE, "malformed JSON: invalid token near 'n*"},
	    {"{\"op\":\"stop\",\"key\":\"a\"", PROTO_USAGE, "malformed JSON: *"},
	    {"{\"op\":\"stop\",\"key\":\"a", PROTO_USAGE, "malformed JSON: *"},
	    {"{\"op\":\"info\"} x", PROTO_USAGE, "malformed JSON: *"},
	    {"{\"op\":\"info\"}{\"op\":\"info\"}", PROTO_USAGE,
	        "malformed JSON: *"},
	    {"{'op':'info'}", PROTO_USAGE, "malformed JSON: *"},
	    {"{\"op\":\"info\",}", PROTO_USAGE, "malformed JSON: *"},
	    {"[{\"op\":\"info\"}]", PROTO_USAGE, "request must be a JSON object"},
	    {"[]", PROTO_USAGE, "request must be a JSON object"},
	    {"42", PROTO_USAGE, "request must be a JSON object"},
	    {"\"op\"", PROTO_USAGE, "request must be a JSON object"},
	    {"null", PROTO_USAGE, "request must be a JSON object"},
	    {"true", PROTO_USAGE, "request must be a JSON object"},
	    {"{\"op\":\"stop\",\"key\":\"a\",\"op\":\"stop\"}", PROTO_USAGE,
	        "malformed JSON: duplicate object key*"},
	    {"{\"op\":\"info\",\"x\":1,\"x\":2}", PROTO_USAGE,
	        "malformed JSON: duplicate object key*"},
	    {"{\"op\":\"info\",\"k\\u0000\":1}", PROTO_USAGE,
	        "malformed JSON: *"},
	};

	RUN_BAD(t);
	NO_LEAKS();
}

Test(errors, column_is_reported)
{
	struct req r;
	char       err[ERRLEN];

	cr_assert_eq(parse("{\"op\":\"info\" x}", &r, err), PROTO_USAGE);
	cr_assert(strstr(err, " at column ") != NULL, "%s", err);
	cr_assert(all_zero(&r));
	NO_LEAKS();
}

Test(errors, op)
{
	static const struct bad t[] = {
	    {"{}", PROTO_USAGE, "\"op\" is required"},
	    {"{\"key\":\"a\"}", PROTO_USAGE, "\"op\" is required"},
	    {"{\"op\":null}", PROTO_USAGE, "\"op\" is required"},
	    {"{\"op\":1}", PROTO_USAGE, "\"op\" must be a string"},
	    {"{\"op\":[\"stop\"]}", PROTO_USAGE, "\"op\" must be a string"},
	    {"{\"op\":\"strat\"}", PROTO_USAGE, "unknown op \"strat\""},
	    {"{\"op\":\"\"}", PROTO_USAGE, "unknown op \"\""},
	    {"{\"op\":\"STOP\"}", PROTO_USAGE, "unknown op \"STOP\""},
	    {"{\"op\":\"st\\u0000op\"}", PROTO_USAGE,
	        "\"op\" must not contain a NUL byte"},
	    /* Client text comes back as one line of printable ASCII. */
	    {"{\"op\":\"a\\nb\\\"c\xc3\xa9\"}", PROTO_USAGE,
	        "unknown op \"a?b\"c??\""},
	    {"{\"op\":\"0123456789012345678901234567890123456789\"}",
	        PROTO_USAGE, "unknown op \"01234567890123456789012345678901\"..."},
	};

	RUN_BAD(t);
	NO_LEAKS();
}

Test(errors, key)
{
	static const struct bad t[] = {
	    {"{\"op\":\"stop\"}", PROTO_USAGE, "\"key\" is required"},
	    {"{\"op\":\"start\",\"argv\":[\"x\"]}", PROTO_USAGE,
	        "\"key\" is required"},
	    {"{\"op\":\"wait\",\"key\":null}", PROTO_USAGE, "\"key\" is required"},
	    {"{\"op\":\"stop\",\"key\":5}", PROTO_USAGE,
	        "\"key\" must be a string"},
	    {"{\"op\":\"signal\",\"key\":{},\"signal\":1}", PROTO_USAGE,
	        "\"key\" must be a string"},
	    {"{\"op\":\"stop\",\"key\":\"\"}", PROTO_INVALID_KEY, "key is empty"},
	    {"{\"op\":\"stop\",\"key\":\"a b\"}", PROTO_INVALID_KEY,
	        "key contains whitespace"},
	    {"{\"op\":\"stop\",\"key\":\"a\\tb\"}", PROTO_INVALID_KEY,
	        "key contains whitespace"},
	    {"{\"op\":\"stop\",\"key\":\"a\\u0001b\"}", PROTO_INVALID_KEY,
	        "key contains a control character"},
	    {"{\"op\":\"stop\",\"key\":\"a\\u007fb\"}", PROTO_INVALID_KEY,
	        "key contains a control character"},
	    /* A NUL is a control character to kv_key_check(). */
	    {"{\"op\":\"stop\",\"key\":\"a\\u0000b\"}", PROTO_INVALID_KEY,
	        "key contains a control character"},
	    /*
	     * Invalid UTF-8 is not JSON: jansson refuses the line, so the
	     * code is usage, whichever string held the bad bytes, and the
	     * reason is still printable ASCII.
	     */
	    {"{\"op\":\"stop\",\"key\":\"a\xff\"}", PROTO_USAGE,
	        "malformed JSON: unable to decode byte 0xff*"},
	    {"{\"op\":\"stop\",\"key\":\"\xc0\xaf\"}", PROTO_USAGE,
	        "malformed JSON: unable to decode byte 0xc0*"},
	    {"{\"op\":\"stop\",\"key\":\"\xed\xa0\x80\"}", PROTO_USAGE,
	        "malformed JSON: unable to decode byte 0xed*"},
	    {"{\"op\":\"stop\",\"key\":\"\\ud800\"}", PROTO_USAGE,
	        "malformed JSON: invalid Unicode*"},
	};

	RUN_BAD(t);
	NO_LEAKS();
}

Test(errors, key_too_long)
{
	char line[512];
	char key[KV_KEY_MAX + 2];

	memset(key, 'k', KV_KEY_MAX + 1);
	key[KV_KEY_MAX + 1] = '\0';
	snprintf(line, sizeof(line), "{\"op\":\"stop\",\"key\":\"%s\"}", key);
	expect_err(line, strlen(line), PROTO_INVALID_KEY,
	    "key is longer than 255 bytes");
	NO_LEAKS();
}

Test(errors, argv)
{
	static const struct bad t[] = {
	    {"{\"op\":\"start\",\"key\":\"k\"}", PROTO_USAGE,
	        "\"argv\" is required unless \"kind\" is given"},
	    {"{\"op\":\"ensure\",\"key\":\"k\",\"argv\":null}", PROTO_USAGE,
	        "\"argv\" is required unless \"kind\" is given"},
	    {"{\"op\":\"start\",\"key\":\"k\",\"argv\":[]}", PROTO_USAGE, ARGV_BAD},
	    {"{\"op\":\"start\",\"key\":\"k\",\"argv\":\"/bin/true\"}", PROTO_USAGE,
	        ARGV_BAD},
	    {"{\"op\":\"start\",\"key\":\"k\",\"argv\":{}}", PROTO_USAGE, ARGV_BAD},
	    {"{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"a\",1]}", PROTO_USAGE,
	        ARGV_BAD},
	    {"{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"a\",null]}", PROTO_USAGE,
	        ARGV_BAD},
	    {"{\"op\":\"start\",\"key\":\"k\",\"argv\":[[\"a\"]]}", PROTO_USAGE,
	        ARGV_BAD},
	    {"{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"a\\u0000b\"]}",
	        PROTO_USAGE, "\"argv\" must not contain a NUL byte"},
	    {"{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"a\",\"\\u0000\"]}",
	        PROTO_USAGE, "\"argv\" must not contain a NUL byte"},
	    {"{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"\"]}", PROTO_USAGE,
	        "\"argv\"[0] must not be empty"},
	    {"{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"\",\"x\"]}", PROTO_USAGE,
	        "\"argv\"[0] must not be empty"},
	    /* The type of a later field is checked even when argv is fine. */
	    {"{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"x\"],\"wait_ready\":1}",
	        PROTO_USAGE, "\"wait_ready\" must be a boolean"},
	};

	RUN_BAD(t);
	NO_LEAKS();
}

Test(errors, argv_too_many)
{
	size_t cap = 64 + (PROTO_ARGC_MAX + 1) * 4, n, i;
	char  *line = malloc(cap);

	n = (size_t)snprintf(line, cap, "{\"op\":\"start\",\"key\":\"k\",\"argv\":[");
	for (i = 0; i < PROTO_ARGC_MAX + 1; i++)
		n += (size_t)snprintf(line + n, cap - n, "%s\"a\"", i ? "," : "");
	snprintf(line + n, cap - n, "]}");
	expect_err(line, strlen(line), PROTO_USAGE,
	    "\"argv\" has more than 1024 elements");
	free(line);
	NO_LEAKS();
}

Test(errors, kind_cwd_restart)
{
#define S "{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"x\"],"
	static const struct bad t[] = {
	    {S "\"kind\":\"01234567890123456789012345678901\"}", PROTO_USAGE,
	        "\"kind\" is longer than 31 bytes"},
	    {S "\"kind\":\"a/b\"}", PROTO_USAGE,
	        "\"kind\" may only contain [A-Za-z0-9_.-]"},
	    {S "\"kind\":\"a b\"}", PROTO_USAGE,
	        "\"kind\" may only contain [A-Za-z0-9_.-]"},
	    {S "\"kind\":\"caf\xc3\xa9\"}", PROTO_USAGE,
	        "\"kind\" may only contain [A-Za-z0-9_.-]"},
	    {S "\"kind\":\"\"}", PROTO_USAGE, "\"kind\" must not be empty"},
	    {S "\"kind\":5}", PROTO_USAGE, "\"kind\" must be a string"},
	    {S "\"kind\":\"a\\u0000\"}", PROTO_USAGE,
	        "\"kind\" must not contain a NUL byte"},
	    {S "\"cwd\":\"home/me\"}", PROTO_USAGE,
	        "\"cwd\" must be an absolute path"},
	    {S "\"cwd\":\"\"}", PROTO_USAGE, "\"cwd\" must be an absolute path"},
	    {S "\"cwd\":[\"/\"]}", PROTO_USAGE, "\"cwd\" must be a string"},
	    {S "\"cwd\":\"/a\\u0000b\"}", PROTO_USAGE,
	        "\"cwd\" must not contain a NUL byte"},
	    {S "\"restart\":\"sometimes\"}", PROTO_USAGE, RESTART_BAD},
	    {S "\"restart\":\"Permanent\"}", PROTO_USAGE, RESTART_BAD},
	    {S "\"restart\":1}", PROTO_USAGE, "\"restart\" must be a string"},
	    {S "\"wait_ready\":\"true\"}", PROTO_USAGE,
	        "\"wait_ready\" must be a boolean"},
	};
#undef S

	RUN_BAD(t);
	NO_LEAKS();
}

Test(errors, policy_numbers)
{
#define S "{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"x\"],"
	static const struct bad t[] = {
	    {S "\"max_restarts\":-1}", PROTO_USAGE, MAXR_BAD},
	    {S "\"max_restarts\":1001}", PROTO_USAGE, MAXR_BAD},
	    {S "\"max_restarts\":99999999999999999}", PROTO_USAGE, MAXR_BAD},
	    {S "\"max_restarts\":2.0}", PROTO_USAGE, MAXR_BAD},
	    {S "\"max_restarts\":2.5}", PROTO_USAGE, MAXR_BAD},
	    {S "\"max_restarts\":\"3\"}", PROTO_USAGE, MAXR_BAD},
	    {S "\"max_restarts\":true}", PROTO_USAGE, MAXR_BAD},
	    {S "\"max_seconds\":-1}", PROTO_USAGE, DUR_BAD("max_seconds")},
	    {S "\"max_seconds\":\"5\"}", PROTO_USAGE, DUR_BAD("max_seconds")},
	    {S "\"stop_timeout\":-0.5}", PROTO_USAGE, DUR_BAD("stop_timeout")},
	    {S "\"stop_timeout\":1000000001}", PROTO_USAGE,
	        DUR_BAD("stop_timeout")},
	    {S "\"restart_delay\":1e10}", PROTO_USAGE, DUR_BAD("restart_delay")},
	    {S "\"restart_delay\":-1e-9}", PROTO_USAGE, DUR_BAD("restart_delay")},
	    {S "\"backoff_max\":\"1s\"}", PROTO_USAGE, DUR_BAD("backoff_max")},
	    {S "\"backoff_max\":false}", PROTO_USAGE, DUR_BAD("backoff_max")},
	    {S "\"backoff_max\":[1]}", PROTO_USAGE, DUR_BAD("backoff_max")},
	    {S "\"backoff_max\":1e999}", PROTO_USAGE, "malformed JSON: *"},
	};
#undef S

	RUN_BAD(t);
	NO_LEAKS();
}

Test(errors, signal)
{
#define S "{\"op\":\"signal\",\"key\":\"k\","
	static const struct bad t[] = {
	    {"{\"op\":\"signal\",\"key\":\"k\"}", PROTO_USAGE,
	        "\"signal\" is required"},
	    {S "\"signal\":0}", PROTO_USAGE, SIGNAL_BAD},
	    {S "\"signal\":65}", PROTO_USAGE, SIGNAL_BAD},
	    {S "\"signal\":-9}", PROTO_USAGE, SIGNAL_BAD},
	    {S "\"signal\":1.5}", PROTO_USAGE, SIGNAL_BAD},
	    {S "\"signal\":9.0}", PROTO_USAGE, SIGNAL_BAD},
	    {S "\"signal\":true}", PROTO_USAGE, SIGNAL_BAD},
	    {S "\"signal\":\"FOO\"}", PROTO_USAGE, SIGNAL_BAD},
	    {S "\"signal\":\"SIGFOO\"}", PROTO_USAGE, SIGNAL_BAD},
	    {S "\"signal\":\"0\"}", PROTO_USAGE, SIGNAL_BAD},
	    {S "\"signal\":\"65\"}", PROTO_USAGE, SIGNAL_BAD},
	    {S "\"signal\":\"\"}", PROTO_USAGE, SIGNAL_BAD},
	    {S "\"signal\":\"HUP\\u0000x\"}", PROTO_USAGE, SIGNAL_BAD},
	    {S "\"signal\":1,\"group\":\"yes\"}", PROTO_USAGE,
	        "\"group\" must be a boolean"},
	};
#undef S

	RUN_BAD(t);
	NO_LEAKS();
}

Test(errors, pattern_and_wait)
{
	static const struct bad t[] = {
	    {"{\"op\":\"ls\",\"pattern\":5}", PROTO_USAGE,
	        "\"pattern\" must be a string"},
	    {"{\"op\":\"watch\",\"pattern\":\"a\\u0000\"}", PROTO_USAGE,
	        "\"pattern\" must not contain a NUL byte"},
	    {"{\"op\":\"wait\",\"key\":\"k\",\"gone\":\"yes\"}", PROTO_USAGE,
	        "\"gone\" must be a boolean"},
	    {"{\"op\":\"wait\",\"key\":\"k\",\"ready\":1}", PROTO_USAGE,
	        "\"ready\" must be a boolean"},
	};

	RUN_BAD(t);
	NO_LEAKS();
}

Test(errors, pattern_too_long)
{
	static const char *const ops[] = {"ls", "count", "watch"};
	char                     line[1200], pat[1026];
	struct req               r;
	size_t                   i;

	for (i = 0; i < 3; i++) {
		memset(pat, '*', 1025);
		pat[1025] = '\0';
		snprintf(line, sizeof(line), "{\"op\":\"%s\",\"pattern\":\"%s\"}",
		    ops[i], pat);
		expect_err(line, strlen(line), PROTO_USAGE,
		    "\"pattern\" is longer than 1024 bytes");
		pat[1024] = '\0';
		snprintf(line, sizeof(line), "{\"op\":\"%s\",\"pattern\":\"%s\"}",
		    ops[i], pat);
		expect_ok(line, &r);
		cr_assert_eq(strlen(r.pattern), 1024);
		proto_req_fini(&r);
	}
	NO_LEAKS();
}

Test(errors, nul_byte_in_line)
{
	static const char line[] = "{\"op\":\"info\"}\0";
	static const char mid[] = "{\"op\":\"st\0op\",\"key\":\"k\"}";

	expect_err(line, sizeof(line) - 1, PROTO_USAGE,
	    "request line contains a NUL byte");
	expect_err(mid, sizeof(mid) - 1, PROTO_USAGE,
	    "request line contains a NUL byte");
	NO_LEAKS();
}

Test(errors, line_too_long)
{
	char  *line = malloc(PROTO_LINE_MAX + 2);
	size_t n;

	n = (size_t)snprintf(line, 64, "{\"op\":\"info\",\"pad\":\"");
	memset(line + n, 'p', PROTO_LINE_MAX + 1 - n);
	memcpy(line + PROTO_LINE_MAX - 2, "\"}", 3);
	cr_assert_eq(strlen(line), PROTO_LINE_MAX);
	expect_err(line, PROTO_LINE_MAX, PROTO_USAGE,
	    "request line longer than 65536 bytes");
	free(line);
	NO_LEAKS();
}

/* A field of the wrong type after a good argv: nothing leaks, out is zero. */
Test(errors, late_error_frees_early_fields)
{
	expect_err("{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"a\",\"b\",\"c\"],"
	           "\"cwd\":\"/tmp\",\"backoff_max\":\"x\"}",
	    strlen("{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"a\",\"b\",\"c\"],"
	           "\"cwd\":\"/tmp\",\"backoff_max\":\"x\"}"),
	    PROTO_USAGE, DUR_BAD("backoff_max"));
	NO_LEAKS();
}

Test(errors, small_or_no_error_buffer)
{
	static const char line[] = "{\"op\":\"strat\"}";
	struct req        r;
	char              err[8];

	garbage(&r);
	cr_assert_eq(proto_parse(line, strlen(line), &r, err, sizeof(err)),
	    PROTO_USAGE);
	cr_assert_str_eq(err, "unknown");
	cr_assert(all_zero(&r));
	garbage(&r);
	cr_assert_eq(proto_parse(line, strlen(line), &r, NULL, 0), PROTO_USAGE);
	cr_assert(all_zero(&r));
	garbage(&r);
	cr_assert_eq(proto_parse("{\"op\":\"info\"}", 13, &r, err, sizeof(err)),
	    PROTO_OK);
	cr_assert_str_eq(err, "");
	NO_LEAKS();
}

Test(fini, zeroed_and_repeated)
{
	struct req r;

	memset(&r, 0, sizeof(r));
	proto_req_fini(&r);
	proto_req_fini(&r);
	cr_assert(all_zero(&r));
	NO_LEAKS();
}

/* ---- readiness, kinds, reload, touch (keyvisor.conf's additions) -------- */

#define PUBLISH_BAD "\"publish\" must be \"start\" or \"ready\""

Test(ready, every_new_field)
{
	struct req r;

	expect_ok("{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"x\"],"
	          "\"wait_ready\":true,\"publish\":\"ready\","
	          "\"ready_timeout\":2.5}",
	    &r);
	cr_assert(r.wait_ready);
	cr_assert(r.publish_ready);
	cr_assert_eq(r.ready_timeout_ms, 2500);
	cr_assert_eq(r.set, REQ_SET_PUBLISH | REQ_SET_READY_TIMEOUT);
	proto_req_fini(&r);
	cr_assert(all_zero(&r));
	expect_ok("{\"op\":\"ensure\",\"key\":\"k\",\"kind\":\"tracker\","
	          "\"publish\":\"start\",\"ready_timeout\":10}",
	    &r);
	cr_assert_eq(r.op, REQ_ENSURE);
	cr_assert(!r.wait_ready);
	cr_assert(!r.publish_ready);
	cr_assert_eq(r.ready_timeout_ms, 10000);
	cr_assert_eq(r.set, REQ_SET_PUBLISH | REQ_SET_READY_TIMEOUT);
	proto_req_fini(&r);
	NO_LEAKS();
}

/* Absent or null: no bit, the fields stay zero. */
Test(ready, absent_and_null)
{
	static const char *const lines[] = {
	    "{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"x\"]}",
	    "{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"x\"],\"publish\":null,"
	    "\"ready_timeout\":null,\"wait_ready\":null}",
	};
	struct req r;
	size_t     i;

	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		expect_ok(lines[i], &r);
		cr_assert_eq(r.set, 0, "%s", lines[i]);
		cr_assert(!r.publish_ready && !r.wait_ready, "%s", lines[i]);
		cr_assert_eq(r.ready_timeout_ms, 0, "%s", lines[i]);
		proto_req_fini(&r);
	}
	NO_LEAKS();
}

Test(ready, publish_alone_and_timeout_alone)
{
	struct req r;

	expect_ok("{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"x\"],"
	          "\"publish\":\"ready\"}",
	    &r);
	cr_assert(r.publish_ready);
	cr_assert_eq(r.set, REQ_SET_PUBLISH);
	proto_req_fini(&r);
	expect_ok("{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"x\"],"
	          "\"publish\":\"start\"}",
	    &r);
	cr_assert(!r.publish_ready);
	cr_assert_eq(r.set, REQ_SET_PUBLISH);
	proto_req_fini(&r);
	/* Zero is a valid timeout, and distinct from no timeout. */
	expect_ok("{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"x\"],"
	          "\"ready_timeout\":0}",
	    &r);
	cr_assert_eq(r.ready_timeout_ms, 0);
	cr_assert_eq(r.set, REQ_SET_READY_TIMEOUT);
	proto_req_fini(&r);
	NO_LEAKS();
}

Test(ready, timeout_values)
{
	static const struct {
		const char *json;
		uint64_t    ms;
	} t[] = {
	    {"0", 0}, {"0.0", 0}, {"-0.0", 0}, {"0.0006", 1}, {"0.25", 250},
	    {"10", 10000}, {"1e3", 1000000}, {"1000000000", UINT64_C(1000000000000)},
	};
	char       line[160];
	struct req r;
	size_t     i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(line, sizeof(line),
		    "{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"x\"],"
		    "\"ready_timeout\":%s}", t[i].json);
		expect_ok(line, &r);
		cr_expect_eq(r.ready_timeout_ms, t[i].ms, "%s -> %llu",
		    t[i].json, (unsigned long long)r.ready_timeout_ms);
		cr_expect_eq(r.set, REQ_SET_READY_TIMEOUT);
		proto_req_fini(&r);
	}
	NO_LEAKS();
}

/* The new fields belong to start and ensure: other ops ignore them. */
Test(ready, other_ops_ignore_the_fields)
{
	struct req r;

	expect_ok("{\"op\":\"stop\",\"key\":\"k\",\"publish\":7,"
	          "\"ready_timeout\":\"x\",\"wait_ready\":[]}",
	    &r);
	cr_assert_eq(r.op, REQ_STOP);
	cr_assert_eq(r.set, 0);
	cr_assert(!r.publish_ready && !r.wait_ready);
	cr_assert_eq(r.ready_timeout_ms, 0);
	proto_req_fini(&r);
	NO_LEAKS();
}

Test(ready, errors)
{
#define S "{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"x\"],"
#define E "{\"op\":\"ensure\",\"key\":\"k\",\"kind\":\"t\","
	static const struct bad t[] = {
	    {S "\"publish\":\"never\"}", PROTO_USAGE, PUBLISH_BAD},
	    {S "\"publish\":\"Ready\"}", PROTO_USAGE, PUBLISH_BAD},
	    {S "\"publish\":\"START\"}", PROTO_USAGE, PUBLISH_BAD},
	    {S "\"publish\":\"\"}", PROTO_USAGE, PUBLISH_BAD},
	    {S "\"publish\":\"ready \"}", PROTO_USAGE, PUBLISH_BAD},
	    {E "\"publish\":\"fd\"}", PROTO_USAGE, PUBLISH_BAD},
	    {S "\"publish\":\"ready\\u0000\"}", PROTO_USAGE,
	        "\"publish\" must not contain a NUL byte"},
	    {S "\"publish\":true}", PROTO_USAGE, "\"publish\" must be a string"},
	    {S "\"publish\":1}", PROTO_USAGE, "\"publish\" must be a string"},
	    {S "\"publish\":[\"ready\"]}", PROTO_USAGE,
	        "\"publish\" must be a string"},
	    {E "\"publish\":{}}", PROTO_USAGE, "\"publish\" must be a string"},
	    {S "\"ready_timeout\":-1}", PROTO_USAGE, DUR_BAD("ready_timeout")},
	    {S "\"ready_timeout\":-0.001}", PROTO_USAGE,
	        DUR_BAD("ready_timeout")},
	    {S "\"ready_timeout\":1000000001}", PROTO_USAGE,
	        DUR_BAD("ready_timeout")},
	    {S "\"ready_timeout\":1e10}", PROTO_USAGE, DUR_BAD("ready_timeout")},
	    {S "\"ready_timeout\":\"10\"}", PROTO_USAGE,
	        DUR_BAD("ready_timeout")},
	    {S "\"ready_timeout\":true}", PROTO_USAGE, DUR_BAD("ready_timeout")},
	    {E "\"ready_timeout\":[1]}", PROTO_USAGE, DUR_BAD("ready_timeout")},
	    {E "\"ready_timeout\":{}}", PROTO_USAGE, DUR_BAD("ready_timeout")},
	    {S "\"ready_timeout\":1e999}", PROTO_USAGE, "malformed JSON: *"},
	    {S "\"wait_ready\":\"yes\",\"publish\":\"ready\"}", PROTO_USAGE,
	        "\"wait_ready\" must be a boolean"},
	    /* Fields are checked even when the others are fine. */
	    {S "\"wait_ready\":true,\"publish\":\"ready\",\"ready_timeout\":-2}",
	        PROTO_USAGE, DUR_BAD("ready_timeout")},
	    {S "\"wait_ready\":true,\"publish\":0,\"ready_timeout\":2}",
	        PROTO_USAGE, "\"publish\" must be a string"},
	    /* The existing checks still come first. */
	    {"{\"op\":\"start\",\"key\":\"k\",\"publish\":\"ready\"}", PROTO_USAGE,
	        "\"argv\" is required unless \"kind\" is given"},
	    {"{\"op\":\"start\",\"key\":\"a b\",\"publish\":\"x\"}",
	        PROTO_INVALID_KEY, "key contains whitespace"},
	};
#undef E
#undef S

	RUN_BAD(t);
	NO_LEAKS();
}

/* A bad field after good strings: nothing leaks, out is zero. */
Test(ready, late_error_frees_early_fields)
{
	static const char line[] =
	    "{\"op\":\"start\",\"key\":\"k\",\"argv\":[\"a\",\"b\"],"
	    "\"cwd\":\"/tmp\",\"publish\":\"ready\",\"ready_timeout\":\"x\"}";

	expect_err(line, strlen(line), PROTO_USAGE, DUR_BAD("ready_timeout"));
	NO_LEAKS();
}

Test(new_ops, kinds_and_reload_take_nothing)
{
	static const struct {
		const char *op;
		enum req_op want;
	} t[] = {{"kinds", REQ_KINDS}, {"reload", REQ_RELOAD}};
	char       line[160];
	struct req r;
	size_t     i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(line, sizeof(line), "{\"op\":\"%s\"}", t[i].op);
		expect_ok(line, &r);
		cr_assert_eq(r.op, t[i].want);
		cr_assert(all_zero_but_op(&r));
		proto_req_fini(&r);
		/* Fields of other ops, even ill-typed ones, are ignored. */
		snprintf(line, sizeof(line),
		    "{\"op\":\"%s\",\"key\":5,\"pattern\":[],\"argv\":{},"
		    "\"publish\":1,\"kinds\":\"all\"}", t[i].op);
		expect_ok(line, &r);
		cr_assert_eq(r.op, t[i].want);
		cr_assert(all_zero_but_op(&r));
		proto_req_fini(&r);
	}
	NO_LEAKS();
}

Test(new_ops, touch)
{
	struct req r;

	expect_ok("{\"op\":\"touch\",\"key\":\"user:42\"}", &r);
	cr_assert_eq(r.op, REQ_TOUCH);
	cr_assert_str_eq(r.key, "user:42");
	cr_assert_eq(r.keylen, 7);
	cr_assert_null(r.argv);
	cr_assert_null(r.pattern);
	cr_assert_eq(r.set, 0);
	proto_req_fini(&r);
	expect_ok("{\"key\":\"svc/\xc3\xa9t\xc3\xa9\",\"op\":\"touch\","
	          "\"argv\":5,\"pattern\":[],\"signal\":\"NOPE\","
	          "\"publish\":\"x\",\"ready_timeout\":-1}",
	    &r);
	cr_assert_eq(r.op, REQ_TOUCH);
	cr_assert_str_eq(r.key, "svc/\xc3\xa9t\xc3\xa9");
	cr_assert_null(r.argv);
	cr_assert_null(r.pattern);
	cr_assert_eq(r.signo, 0);
	cr_assert_eq(r.set, 0);
	cr_assert_eq(r.ready_timeout_ms, 0);
	proto_req_fini(&r);
	NO_LEAKS();
}

Test(new_ops, errors)
{
	static const struct bad t[] = {
	    {"{\"op\":\"touch\"}", PROTO_USAGE, "\"key\" is required"},
	    {"{\"op\":\"touch\",\"key\":null}", PROTO_USAGE,
	        "\"key\" is required"},
	    {"{\"op\":\"touch\",\"key\":42}", PROTO_USAGE,
	        "\"key\" must be a string"},
	    {"{\"op\":\"touch\",\"key\":[\"k\"]}", PROTO_USAGE,
	        "\"key\" must be a string"},
	    {"{\"op\":\"touch\",\"key\":\"\"}", PROTO_INVALID_KEY, "key is empty"},
	    {"{\"op\":\"touch\",\"key\":\"a b\"}", PROTO_INVALID_KEY,
	        "key contains whitespace"},
	    {"{\"op\":\"touch\",\"key\":\"a\\u0000\"}", PROTO_INVALID_KEY,
	        "key contains a control character"},
	    {"{\"op\":\"Kinds\"}", PROTO_USAGE, "unknown op \"Kinds\""},
	    {"{\"op\":\"kind\"}", PROTO_USAGE, "unknown op \"kind\""},
	    {"{\"op\":\"reload \"}", PROTO_USAGE, "unknown op \"reload \""},
	    {"{\"op\":\"touch\",\"op\":\"touch\",\"key\":\"k\"}", PROTO_USAGE,
	        "malformed JSON: duplicate object key*"},
	};

	RUN_BAD(t);
	NO_LEAKS();
}

Test(new_ops, names)
{
	cr_assert_str_eq(proto_op_name(REQ_KINDS), "kinds");
	cr_assert_str_eq(proto_op_name(REQ_RELOAD), "reload");
	cr_assert_str_eq(proto_op_name(REQ_TOUCH), "touch");
	/* Appended: the values older code and logs know are unchanged. */
	cr_assert_eq(REQ_START, 0);
	cr_assert_eq(REQ_WATCH, 11);
	cr_assert_eq(REQ_KINDS, REQ_WATCH + 1);
	cr_assert_eq(REQ_RELOAD, REQ_WATCH + 2);
	cr_assert_eq(REQ_TOUCH, REQ_WATCH + 3);
	NO_LEAKS();
}

/* The mutation test below, seeded with the new requests. */
static const char *const ready_seeds[] = {
    "{\"op\":\"start\",\"key\":\"user:42\",\"argv\":[\"/w\"],"
    "\"wait_ready\":true,\"publish\":\"ready\",\"ready_timeout\":2.5}",
    "{\"op\":\"ensure\",\"key\":\"k\",\"kind\":\"t\",\"publish\":\"start\","
    "\"ready_timeout\":0}",
    "{\"op\":\"touch\",\"key\":\"user:42\"}",
    "{\"op\":\"kinds\"}",
    "{\"op\":\"reload\"}",
};

/* ---- names ---------------------------------------------------------------- */

Test(names, ops_and_codes)
{
	static const char *const want[] = {"start", "ensure", "stop",
	    "restart", "signal", "status", "ls", "count", "wait", "info",
	    "shutdown", "watch"};
	char       line[64];
	struct req r;
	int        op;

	for (op = REQ_START; op <= REQ_WATCH; op++) {
		cr_assert_str_eq(proto_op_name((enum req_op)op), want[op]);
		if (op == REQ_INFO || op == REQ_SHUTDOWN) {
			snprintf(line, sizeof(line), "{\"op\":\"%s\"}", want[op]);
			expect_ok(line, &r);
			cr_assert_eq(r.op, (enum req_op)op);
			proto_req_fini(&r);
		}
	}
	/* One past the last op; REQ_WATCH was the last before issue 5. */
	cr_assert_null(proto_op_name((enum req_op)(REQ_TOUCH + 1)));
	cr_assert_str_eq(proto_err_code(PROTO_USAGE), "usage");
	cr_assert_str_eq(proto_err_code(PROTO_INVALID_KEY), "invalid_key");
	cr_assert_null(proto_err_code(PROTO_OK));
	NO_LEAKS();
}

Test(signals, names_round_trip)
{
	char buf[32];
	int  sig;

	for (sig = 1; sig <= 31; sig++) {
		const char *name = proto_signal_name(sig);

		cr_assert_not_null(name, "signal %d", sig);
		cr_assert_eq(proto_signal_parse(name), sig, "%s", name);
		snprintf(buf, sizeof(buf), "SIG%s", name);
		cr_assert_eq(proto_signal_parse(buf), sig, "%s", buf);
		snprintf(buf, sizeof(buf), "sig%s", name);
		for (size_t i = 0; buf[i]; i++)
			buf[i] = (char)(buf[i] >= 'A' && buf[i] <= 'Z' ?
			                    buf[i] - 'A' + 'a' :
			                    buf[i]);
		cr_assert_eq(proto_signal_parse(buf), sig, "%s", buf);
		cr_assert_eq(proto_signal_parse(buf + 3), sig, "%s", buf + 3);
		snprintf(buf, sizeof(buf), "%d", sig);
		cr_assert_eq(proto_signal_parse(buf), sig, "%s", buf);
	}
	cr_assert_str_eq(proto_signal_name(SIGHUP), "HUP");
	cr_assert_str_eq(proto_signal_name(SIGKILL), "KILL");
	cr_assert_null(proto_signal_name(0));
	cr_assert_null(proto_signal_name(-1));
	cr_assert_null(proto_signal_name(65));
	cr_assert_null(proto_signal_name(SIGRTMIN + 1));
	NO_LEAKS();
}

Test(signals, parse)
{
	static const struct {
		const char *s;
		int         sig;
	} good[] = {
	    {"HUP", SIGHUP}, {"SIGHUP", SIGHUP}, {"hup", SIGHUP},
	    {"sighup", SIGHUP}, {"SigTerm", SIGTERM}, {"1", 1}, {"64", 64},
	    {"09", 9}, {"IOT", SIGABRT}, {"CLD", SIGCHLD}, {"IO", SIGIO},
	    {"POLL", SIGPOLL},
	};
	static const char *const bad[] = {"0", "", "SIGFOO", "65", "-1", "1x",
	    "+1", " 1", "1 ", "HUP ", "SIG", "SIGSIGHUP", "0009", "RTMIN+",
	    "RTMIN+x", "RTMIN-1", "RTMAX+1", "RTMIN+31", "RTMIN+3x",
	    "RTMIN+99999999999999999999", "FOO", "65536"};
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert_eq(proto_signal_parse(good[i].s), good[i].sig, "%s",
		    good[i].s);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(proto_signal_parse(bad[i]), -EINVAL, "\"%s\"", bad[i]);
	cr_assert_eq(proto_signal_parse(NULL), -EINVAL);
	cr_assert_eq(proto_signal_parse("RTMIN"), SIGRTMIN);
	cr_assert_eq(proto_signal_parse("SIGRTMIN+3"), SIGRTMIN + 3);
	cr_assert_eq(proto_signal_parse("rtmin+0"), SIGRTMIN);
	cr_assert_eq(proto_signal_parse("RTMAX"), SIGRTMAX);
	cr_assert_eq(proto_signal_parse("RTMAX-2"), SIGRTMAX - 2);
	cr_assert_eq(proto_signal_parse("RTMIN+30"), SIGRTMAX);
	NO_LEAKS();
}

/* ---- replies ---------------------------------------------------------------- */

static void
expect_dump(json_t *v, const char *want)
{
	size_t len = 12345;
	char  *s = proto_dump(v, &len);

	cr_assert_not_null(s);
	cr_assert_str_eq(s, want);
	cr_assert_eq(len, strlen(want));
	free(s);
}

Test(replies, exit_json)
{
	struct svc_exit code = {.code = 3};
	struct svc_exit zero = {0};
	struct svc_exit kill = {.signo = SIGKILL};
	struct svc_exit segv = {.signo = SIGSEGV, .core = true};
	struct svc_exit rt = {.signo = 40};

	expect_dump(proto_exit_json(&code), "{\"code\":3}\n");
	expect_dump(proto_exit_json(&zero), "{\"code\":0}\n");
	expect_dump(proto_exit_json(&kill), "{\"signal\":\"KILL\"}\n");
	expect_dump(proto_exit_json(&segv),
	    "{\"signal\":\"SEGV\",\"core\":true}\n");
	expect_dump(proto_exit_json(&rt), "{\"signal\":40}\n");
	NO_LEAKS();
}

Test(replies, dump_one_newline)
{
	json_t *o = json_pack("{s:b,s:s,s:[s,s],s:f}", "ok", 1, "key",
	    "line1\nline2\r\n", "argv", "a\n", "\n", "uptime", 0.1);
	size_t  len, i, newlines = 0;
	char   *s;

	cr_assert_not_null(o);
	s = proto_dump(o, &len);
	cr_assert_not_null(s);
	cr_assert_eq(len, strlen(s));
	for (i = 0; i < len; i++)
		newlines += s[i] == '\n';
	cr_assert_eq(newlines, 1, "%s", s);
	cr_assert_eq(s[len - 1], '\n');
	cr_assert_str_eq(s, "{\"ok\":true,\"key\":\"line1\\nline2\\r\\n\","
	                    "\"argv\":[\"a\\n\",\"\\n\"],\"uptime\":0.1}\n");
	free(s);
	cr_assert_null(proto_dump(NULL, &len));
	s = proto_dump(json_object(), NULL);
	cr_assert_str_eq(s, "{}\n");
	free(s);
	NO_LEAKS();
}

Test(replies, error_object)
{
	size_t len;
	char  *s = proto_error("usage", "unknown op \"x\"\n", &len);

	cr_assert_str_eq(s, "{\"ok\":false,\"code\":\"usage\","
	                    "\"error\":\"unknown op \\\"x\\\"\\n\"}\n");
	cr_assert_eq(len, strlen(s));
	free(s);
	/* Not UTF-8: the bytes become '?' rather than the reply failing. */
	s = proto_error("internal", "bad \xff byte", &len);
	cr_assert_str_eq(s, "{\"ok\":false,\"code\":\"internal\","
	                    "\"error\":\"bad ? byte\"}\n");
	free(s);
	cr_assert_null(proto_error(NULL, "x", &len));
	NO_LEAKS();
}

/* Every reason proto_parse() gives makes a valid reply. */
Test(replies, parse_errors_make_replies)
{
	static const char *const lines[] = {"\xff", "{\"op\":\"\\u00e9\"}",
	    "{\"op\":\"stop\",\"key\":\"\xe2\x82\"}", "[1"};
	struct req r;
	char       err[ERRLEN], *s;
	size_t     i, len;

	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		enum proto_err e = parse(lines[i], &r, err);

		cr_assert_neq(e, PROTO_OK);
		s = proto_error(proto_err_code(e), err, &len);
		cr_assert_not_null(s, "%s", err);
		free(s);
	}
	NO_LEAKS();
}

/* ---- robustness ------------------------------------------------------------ */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t
next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static const char *const seeds[] = {
    "{\"op\":\"start\",\"key\":\"user:42\",\"argv\":[\"/usr/bin/worker\","
    "\"--id\",\"42\"],\"cwd\":\"/home/me\",\"restart\":\"permanent\","
    "\"max_restarts\":3,\"max_seconds\":5,\"stop_timeout\":5,"
    "\"restart_delay\":0.5,\"backoff_max\":30,\"kind\":\"tracker\","
    "\"wait_ready\":false}",
    "{\"op\":\"ensure\",\"key\":\"k\",\"kind\":\"t\"}",
    "{\"op\":\"stop\",\"key\":\"user:42\"}",
    "{\"op\":\"restart\",\"key\":\"a\"}",
    "{\"op\":\"signal\",\"key\":\"user:42\",\"signal\":\"TERM\",\"group\":true}",
    "{\"op\":\"signal\",\"key\":\"k\",\"signal\":9}",
    "{\"op\":\"status\",\"key\":\"\xc3\xa9t\xc3\xa9\"}",
    "{\"op\":\"ls\",\"pattern\":\"user:*\"}",
    "{\"op\":\"count\"}",
    "{\"op\":\"wait\",\"key\":\"k\",\"gone\":false,\"ready\":true}",
    "{\"op\":\"info\"}",
    "{\"op\":\"shutdown\"}",
    "{\"op\":\"watch\",\"pattern\":\"*\"}",
};

static const char *const tokens[] = {"\\u0000", "\"", "{", "}", "[", "]",
    ",", ":", "null", "true", "1e999", "-1", "0.5", "\\ud800", "\xff",
    "\xc3", ",\"op\":\"stop\"", ",\"key\":\"k\"", ",\"argv\":[]", "\\",
    "\\n", "\n", " ", "\0"};

static size_t
mutate(char *buf, size_t n, size_t cap)
{
	size_t pos = n ? next() % n : 0, k, t;

	switch (next() % 6) {
	case 0: /* flip a bit */
		if (n)
			buf[pos] ^= (char)(1u << (next() % 8));
		break;
	case 1: /* replace a byte */
		if (n)
			buf[pos] = (char)next();
		break;
	case 2: /* truncate */
		return pos;
	case 3: /* insert a token */
		t = next() % (sizeof(tokens) / sizeof(tokens[0]));
		k = tokens[t][0] ? strlen(tokens[t]) : 1;
		if (n + k > cap)
			break;
		memmove(buf + pos + k, buf + pos, n - pos);
		memcpy(buf + pos, tokens[t], k);
		return n + k;
	case 4: /* delete a run */
		k = next() % 8;
		if (k > n - pos)
			k = n - pos;
		memmove(buf + pos, buf + pos + k, n - pos - k);
		return n - k;
	case 5: /* duplicate a run */
		k = next() % 16;
		if (k > n - pos || n + k > cap)
			break;
		memmove(buf + pos + k, buf + pos, n - pos);
		return n + k;
	}
	return n;
}

static void
check_ok(const struct req *r)
{
	size_t i;

	cr_assert(proto_op_name(r->op) != NULL);
	cr_assert_eq(strlen(r->key), r->keylen);
	if (r->keylen > 0)
		cr_assert_null(kv_key_check(r->key, r->keylen));
	cr_assert(strlen(r->kind) <= KV_KIND_MAX);
	if (r->argv != NULL) {
		cr_assert(r->argc >= 1 && r->argc <= PROTO_ARGC_MAX);
		for (i = 0; i < r->argc; i++)
			cr_assert_not_null(r->argv[i]);
		cr_assert_null(r->argv[r->argc]);
		cr_assert(r->argv[0][0] != '\0');
	}
	cr_assert(r->cwd == NULL || r->cwd[0] == '/');
	cr_assert(r->pattern == NULL || strlen(r->pattern) <= 1024);
}

Test(robustness, random_mutations)
{
	enum { ROUNDS = 20000, CAP = 1024 };
	char       buf[CAP], err[ERRLEN];
	struct req r;
	size_t     round, n, m, nseeds = sizeof(seeds) / sizeof(seeds[0]);
	unsigned   ok = 0, bad = 0;

	for (round = 0; round < ROUNDS; round++) {
		const char    *seed = seeds[next() % nseeds];
		enum proto_err e;

		n = strlen(seed);
		memcpy(buf, seed, n);
		for (m = 1 + next() % 4; m > 0; m--)
			n = mutate(buf, n, CAP);
		garbage(&r);
		e = proto_parse(buf, n, &r, err, sizeof(err));
		if (e == PROTO_OK) {
			ok++;
			check_ok(&r);
		} else {
			bad++;
			cr_assert(e == PROTO_USAGE || e == PROTO_INVALID_KEY);
			cr_assert(all_zero(&r), "round %zu: not zeroed", round);
			cr_assert(err_ok(err), "round %zu: reason \"%s\"", round, err);
		}
		proto_req_fini(&r);
		proto_req_fini(&r);
	}
	/* Both outcomes were exercised. */
	cr_assert(ok > ROUNDS / 50 && bad > ROUNDS / 2, "ok %u bad %u", ok, bad);
	NO_LEAKS();
}

/* Mutations of the readiness fields and the new ops keep the invariants. */
Test(robustness, ready_mutations)
{
	enum { ROUNDS = 20000, CAP = 1024 };
	size_t     nseeds = sizeof(ready_seeds) / sizeof(ready_seeds[0]);
	char       buf[CAP], err[ERRLEN];
	struct req r;
	size_t     round, n, m;
	unsigned   ok = 0, bad = 0;

	for (round = 0; round < ROUNDS; round++) {
		const char    *seed = ready_seeds[next() % nseeds];
		enum proto_err e;

		n = strlen(seed);
		memcpy(buf, seed, n);
		for (m = 1 + next() % 4; m > 0; m--)
			n = mutate(buf, n, CAP);
		garbage(&r);
		e = proto_parse(buf, n, &r, err, sizeof(err));
		if (e == PROTO_OK) {
			ok++;
			check_ok(&r);
			if (r.op != REQ_START && r.op != REQ_ENSURE)
				cr_assert(r.set == 0 && !r.publish_ready &&
				    r.ready_timeout_ms == 0 && !r.wait_ready);
			if (!(r.set & REQ_SET_PUBLISH))
				cr_assert(!r.publish_ready);
			if (!(r.set & REQ_SET_READY_TIMEOUT))
				cr_assert_eq(r.ready_timeout_ms, 0);
			cr_assert(r.ready_timeout_ms <= UINT64_C(1000000000000));
		} else {
			bad++;
			cr_assert(e == PROTO_USAGE || e == PROTO_INVALID_KEY);
			cr_assert(all_zero(&r), "round %zu: not zeroed", round);
			cr_assert(err_ok(err), "round %zu: reason \"%s\"", round, err);
		}
		proto_req_fini(&r);
	}
	cr_assert(ok > ROUNDS / 50 && bad > ROUNDS / 4, "ok %u bad %u", ok, bad);
	NO_LEAKS();
}
