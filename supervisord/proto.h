/*
 * proto: the control protocol's requests, as typed values.  One JSON object
 * per line in, one struct req out, every field's type checked before
 * anything acts on it.  Pure: no I/O, no clock; allocation only for the
 * request's strings.  keyvisor-protocol(7) is the prose version.
 */
#ifndef KEYVISOR_SUPERVISORD_PROTO_H
#define KEYVISOR_SUPERVISORD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "keyvisor/registry.h"
#include "svc.h"

#define PROTO_LINE_MAX 65536 /* bytes in a request line, newline included */
#define PROTO_ARGC_MAX 1024  /* argv elements */

enum req_op {
	REQ_START,
	REQ_ENSURE,
	REQ_STOP,
	REQ_RESTART,
	REQ_SIGNAL,
	REQ_STATUS,
	REQ_LS,
	REQ_COUNT,
	REQ_WAIT,
	REQ_INFO,
	REQ_SHUTDOWN,
	REQ_WATCH,
	/* Issue 5 (keyvisor.conf): appended, so the values above stand. */
	REQ_KINDS,
	REQ_RELOAD,
	REQ_TOUCH,
};

/* Which optional fields a start request gave (struct req.set). */
#define REQ_SET_RESTART       0x01u
#define REQ_SET_MAX_RESTARTS  0x02u
#define REQ_SET_MAX_SECONDS   0x04u
#define REQ_SET_STOP_TIMEOUT  0x08u
#define REQ_SET_RESTART_DELAY 0x10u
#define REQ_SET_BACKOFF_MAX   0x20u
#define REQ_SET_PUBLISH       0x40u /* publish_ready is valid */
#define REQ_SET_READY_TIMEOUT 0x80u /* ready_timeout_ms is valid */

struct req {
	enum req_op op;
	char        key[KV_KEY_MAX + 1]; /* "" when the op takes none */
	size_t      keylen;
	char       *pattern; /* ls, count, watch; NULL: all */
	char      **argv;    /* start/ensure: NULL-terminated; NULL if absent */
	size_t      argc;
	char       *cwd;                  /* start/ensure; NULL if absent */
	char        kind[KV_KIND_MAX + 1]; /* "" if absent */
	unsigned    set;                  /* REQ_SET_* */
	struct svc_policy policy;         /* fields named by set are valid */
	bool        wait_ready;           /* start/ensure */
	bool        publish_ready;        /* start/ensure: "publish":"ready" */
	uint64_t    ready_timeout_ms;     /* start/ensure: "ready_timeout" */
	int         signo;                /* signal */
	bool        group;                /* signal: the process group */
	bool        gone, ready;          /* wait */
};

/* Why a line was refused: the reply's "code". */
enum proto_err {
	PROTO_OK = 0,
	PROTO_USAGE,       /* malformed, unknown op, bad field */
	PROTO_INVALID_KEY, /* the key fails kv_key_check() */
};

/*
 * Parse one request line (LEN bytes, without its newline).  Returns
 * PROTO_OK and fills *OUT (release with proto_req_fini()), or an error with
 * a one-line reason in ERR and *OUT left empty.
 */
enum proto_err proto_parse(const char *line, size_t len, struct req *out,
    char *err, size_t errlen);
void proto_req_fini(struct req *r);

/* "start", "stop", ... for logs. */
const char *proto_op_name(enum req_op op);

/* The reply code's string for an error enum value ("usage", ...). */
const char *proto_err_code(enum proto_err e);

/*
 * Signals by name: "HUP", "SIGHUP", "hup" or a number ("1").  Returns the
 * signal number, or -EINVAL.  proto_signal_name(1) is "HUP" (NULL if
 * unknown).
 */
int         proto_signal_parse(const char *s);
const char *proto_signal_name(int signo);

/*
 * How a process ended, as the protocol's exit object: {"code":N} or
 * {"signal":"KILL"} (or {"signal":N} for an unnamed signal).  A new
 * reference; NULL on allocation failure.
 */
json_t *proto_exit_json(const struct svc_exit *e);

/*
 * Serialise V compactly, followed by a newline, into a malloc'ed string
 * (*LEN set to its length).  Steals the reference to V.  NULL on failure.
 */
char *proto_dump(json_t *v, size_t *len);

/* {"ok":false,"code":CODE,"error":MSG} as proto_dump() does. */
char *proto_error(const char *code, const char *msg, size_t *len);

#endif /* KEYVISOR_SUPERVISORD_PROTO_H */
