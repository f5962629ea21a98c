/*
 * Fuzz target for proto_parse() (supervisord/proto.c), the control
 * protocol's request decoder.  The input is one request line, without its
 * newline, as ctl.c hands it over.
 *
 * Besides crashes and leaks, the invariants proto.c promises are checked:
 * on failure the request is all zero bytes and the reason one line of
 * printable ASCII that proto_error() can put into a reply (which must
 * parse back to the same text); a shorter error buffer gets a prefix of
 * the same reason; on success every field the op does not take is empty,
 * the key passes kv_key_check(), argv is NULL-terminated with argc words,
 * and proto_req_fini() leaves the request zeroed, twice in a row.
 */
#include <signal.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "proto.h"

static bool
all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t         i;

	for (i = 0; i < n; i++)
		if (b[i] != 0)
			return false;
	return true;
}

static bool
takes_key(enum req_op op)
{
	switch (op) {
	case REQ_START:
	case REQ_ENSURE:
	case REQ_STOP:
	case REQ_RESTART:
	case REQ_SIGNAL:
	case REQ_STATUS:
	case REQ_WAIT:
	case REQ_TOUCH:
		return true;
	case REQ_LS:
	case REQ_COUNT:
	case REQ_INFO:
	case REQ_SHUTDOWN:
	case REQ_WATCH:
	case REQ_KINDS:
	case REQ_RELOAD:
		return false;
	}
	abort();
}

/* ERR is one line of printable ASCII, and a reply can carry it. */
static void
check_reason(const char *err, enum proto_err e)
{
	const char  *code = proto_err_code(e);
	json_t      *v;
	size_t       i, len;
	char        *reply;
	json_error_t je;

	FUZZ_CHECK(code != NULL);
	FUZZ_CHECK(err[0] != '\0');
	for (i = 0; err[i] != '\0'; i++)
		FUZZ_CHECK(err[i] >= 0x20 && err[i] < 0x7f);
	reply = proto_error(code, err, &len);
	FUZZ_CHECK(reply != NULL && len > 0 && reply[len - 1] == '\n');
	FUZZ_CHECK(memchr(reply, '\n', len - 1) == NULL);
	v = json_loadb(reply, len - 1, 0, &je);
	FUZZ_CHECK(v != NULL);
	FUZZ_CHECK(
	    strcmp(json_string_value(json_object_get(v, "error")), err) == 0);
	FUZZ_CHECK(
	    strcmp(json_string_value(json_object_get(v, "code")), code) == 0);
	json_decref(v);
	free(reply);
}

static void
check_request(const struct req *r)
{
	size_t i;

	FUZZ_CHECK(proto_op_name(r->op) != NULL);
	FUZZ_CHECK(r->keylen == strlen(r->key));
	if (takes_key(r->op))
		FUZZ_CHECK(kv_key_check(r->key, r->keylen) == NULL);
	else
		FUZZ_CHECK(r->keylen == 0);
	if (r->op != REQ_START && r->op != REQ_ENSURE) {
		FUZZ_CHECK(r->argv == NULL && r->cwd == NULL);
		FUZZ_CHECK(r->kind[0] == '\0' && r->set == 0);
	} else {
		FUZZ_CHECK(r->argv != NULL || r->kind[0] != '\0');
	}
	if (r->argv != NULL) {
		FUZZ_CHECK(r->argc >= 1 && r->argc <= PROTO_ARGC_MAX);
		FUZZ_CHECK(r->argv[0][0] != '\0');
		for (i = 0; i < r->argc; i++)
			FUZZ_CHECK(r->argv[i] != NULL);
		FUZZ_CHECK(r->argv[r->argc] == NULL);
	} else {
		FUZZ_CHECK(r->argc == 0);
	}
	FUZZ_CHECK(r->cwd == NULL || r->cwd[0] == '/');
	FUZZ_CHECK(strlen(r->kind) <= KV_KIND_MAX);
	for (i = 0; r->kind[i] != '\0'; i++)
		FUZZ_CHECK(strchr("abcdefghijklmnopqrstuvwxyz"
		                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-",
		               r->kind[i]) != NULL);
	if (r->op == REQ_SIGNAL) {
		const char *name = proto_signal_name(r->signo);

		FUZZ_CHECK(r->signo >= 1 && r->signo <= SIGRTMAX);
		/* A name we print is one we read back. */
		FUZZ_CHECK(
		    name == NULL || proto_signal_parse(name) == r->signo);
	} else
		FUZZ_CHECK(r->signo == 0 && !r->group);
	if (r->op != REQ_LS && r->op != REQ_COUNT && r->op != REQ_WATCH)
		FUZZ_CHECK(r->pattern == NULL);
	if (r->op != REQ_WAIT)
		FUZZ_CHECK(!r->gone && !r->ready);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct req r;
	char              err[256], small[24];
	size_t            smalllen = 1 + size % sizeof(small);
	enum proto_err    e, e2;

	memset(err, 'x', sizeof(err));
	memset(&r, 0xa5, sizeof(r));
	e = proto_parse((const char *)data, size, &r, err, sizeof(err));
	if (e != PROTO_OK) {
		FUZZ_CHECK(all_zero(&r, sizeof(r)));
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
		check_reason(err, e);
		/* The same answer with a short buffer, and with none. */
		e2 = proto_parse((const char *)data, size, &r, small, smalllen);
		FUZZ_CHECK(e2 == e && all_zero(&r, sizeof(r)));
		FUZZ_CHECK(strlen(small) < smalllen);
		FUZZ_CHECK(strncmp(small, err, strlen(small)) == 0);
		e2 = proto_parse((const char *)data, size, &r, NULL, 0);
		FUZZ_CHECK(e2 == e && all_zero(&r, sizeof(r)));
		return 0;
	}
	FUZZ_CHECK(err[0] == '\0');
	check_request(&r);
	(void)proto_op_name(r.op);
	proto_req_fini(&r);
	FUZZ_CHECK(all_zero(&r, sizeof(r)));
	proto_req_fini(&r);
	FUZZ_CHECK(all_zero(&r, sizeof(r)));
	return 0;
}
