/*
 * keyvisor(1): the command line of keyvisord.
 *
 * Each invocation runs one command from the table near the end of this
 * file.  Commands that need the daemon connect to its control socket, send
 * one JSON request per line and read one reply line per request
 * (keyvisor-protocol(7)).  lookup and count never talk to the daemon: they
 * map the shared-memory registry read-only, so they work while the daemon
 * is busy or stopped.  route only hashes.
 *
 * Conventions.  stdout carries data only; stderr carries exactly one
 * "keyvisor: ..." line per failure, followed by the command's usage for a
 * usage error.  Handlers return an exit status from exitcodes.h.  A helper
 * that fails prints its diagnostic itself and returns the status, so its
 * callers only pass the status on.  Nothing here knows how the daemon
 * supervises; this file only speaks the protocol.
 *
 * The pure helpers (formatting, %k substitution, reply codes) come first,
 * then option parsing, the connection, the commands, and main().
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "exitcodes.h"
#include "keyvisor/registry.h"
#include "paths.h"
#include "proto.h"
#include "svc.h"

#ifndef KEYVISOR_VERSION
#define KEYVISOR_VERSION "0.1.0"
#endif

/*
 * The protocol's "internal" code, and every failure with no status of its
 * own (a malformed reply, ENOMEM), exit 1 like "not found" does.
 */
#define EXIT_INTERNAL EXIT_NOT_FOUND

/*
 * Longest reply line we accept: an ls of the whole registry.  A worker
 * object is about 200 bytes, so 64 MiB holds some 300,000 of them.
 */
#define REPLY_MAX (64u << 20)
#define READ_MIN  65536u /* free space a read is given, when it can grow */
#define BUF_MAX   (REPLY_MAX + READ_MIN)

/*
 * start --stdin: start requests in flight at once.  256 requests of a few
 * hundred bytes keep the daemon busy, yet its replies to us stay below
 * ~30 KiB, well inside a Unix socket's buffer.  Requests are encoded only
 * while fewer than OUT_HIGH bytes wait to be written.
 */
#define BATCH_WINDOW 256
#define OUT_HIGH     65536u
#define PROGRESS_MS  100 /* redraw the progress line at most this often */

#define NO_DEADLINE UINT64_MAX
#define DUMP_FLAGS  (JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY)

enum opt_id {
	OPT_HELP,
	OPT_JSON,
	OPT_STDIN,
	OPT_GROUP,
	OPT_GONE,
	OPT_READY,
	OPT_WAIT_READY,
	OPT_RESTART,
	OPT_MAX_RESTARTS,
	OPT_MAX_SECONDS,
	OPT_STOP_TIMEOUT,
	OPT_KIND,
	OPT_TIMEOUT,
	OPT_PUBLISH,
	OPT_READY_TIMEOUT,
};

struct optdef {
	const char *name; /* without the leading "--"; NULL ends a table */
	enum opt_id id;
	bool        arg; /* takes a value: "--name VALUE" or "--name=VALUE" */
};

/* Which valued options were given (struct opts.set). */
#define SET_MAX_RESTARTS  0x01u
#define SET_MAX_SECONDS   0x02u
#define SET_STOP_TIMEOUT  0x04u
#define SET_TIMEOUT       0x08u
#define SET_READY_TIMEOUT 0x10u

struct opts {
	char      **pos; /* positional arguments, in order */
	int         npos;
	char      **argv; /* "-- CMD [ARG...]" for start and ensure */
	int         argc;
	bool        help, json, stdin_keys, group, gone, ready, wait_ready;
	const char *restart, *kind;
	const char *publish; /* "start" or "ready"; NULL: the kind's */
	unsigned    set;     /* SET_* */
	long long   max_restarts;
	uint64_t    max_seconds_ms, stop_timeout_ms, timeout_ms;
	uint64_t    ready_timeout_ms;
};

struct conn {
	int    fd; /* -1: not connected */
	char   path[sizeof(((struct sockaddr_un *)NULL)->sun_path)];
	char  *buf; /* bytes received; [off, len) not yet returned */
	size_t off, len, cap;
	size_t scan; /* bytes after off known to hold no newline */
};

struct ctx;

/* A command: returns the exit status, having printed any diagnostic. */
typedef int cmd_fn(struct ctx *c);

struct cmd {
	const char          *name;
	cmd_fn              *run;
	const struct optdef *opts;
	int                  minpos, maxpos; /* positionals; maxpos -1: any */
	const char          *posname[2];     /* for "missing KEY" */
	bool                 takes_argv;     /* "-- CMD [ARG...]" follows */
	const char          *usage;          /* the SYNOPSIS lines */
	const char          *summary;        /* for keyvisor --help */
	const char          *help;           /* for keyvisor help CMD */
};

struct ctx {
	const char       *name; /* -n NAME, or NULL */
	const struct cmd *cmd;
	struct opts       o;
	struct conn       conn;
	char             *cwd;      /* start, ensure: sent with a CMD */
	uint64_t          deadline; /* for replies; NO_DEADLINE */
};

static int fail(const char *key, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int usage_error(const struct cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- Pure helpers ---------------------------------------------------- */

/* An uptime in its two largest units: 12s, 3m04s, 2h03m, 4d02h. */
static void
fmt_uptime(double secs, char *buf, size_t len)
{
	unsigned long long t = 0;

	if (secs > 0 && secs < 1e15) /* also false for NaN */
		t = (unsigned long long)secs;
	if (t < 60)
		snprintf(buf, len, "%llus", t);
	else if (t < 3600)
		snprintf(buf, len, "%llum%02llus", t / 60, t % 60);
	else if (t < 86400)
		snprintf(buf, len, "%lluh%02llum", t / 3600, t / 60 % 60);
	else
		snprintf(buf, len, "%llud%02lluh", t / 86400, t / 3600 % 24);
}

/* The protocol's exit object as "code 1", "SIGKILL", or "-" for none. */
static void
fmt_exit(const json_t *e, char *buf, size_t len)
{
	const json_t *sig = json_object_get(e, "signal");
	const json_t *code = json_object_get(e, "code");
	const char   *s;

	if (json_is_string(sig)) {
		s = json_string_value(sig);
		snprintf(
		    buf, len, "%s%s", strncmp(s, "SIG", 3) ? "SIG" : "", s);
	} else if (json_is_integer(sig))
		snprintf(buf, len, "signal %" JSON_INTEGER_FORMAT,
		    json_integer_value(sig));
	else if (json_is_integer(code))
		snprintf(buf, len, "code %" JSON_INTEGER_FORMAT,
		    json_integer_value(code));
	else
		snprintf(buf, len, "-");
}

/*
 * ARG with each "%k" replaced by KEY and each "%%" by "%"; any other '%'
 * stays as it is.  A new string, or NULL when out of memory.
 */
static char *
subst_key(const char *arg, const char *key)
{
	size_t klen = strlen(key), n = 0, i;
	char  *out, *p;

	for (i = 0; arg[i] != '\0'; i++, n++)
		if (arg[i] == '%' && (arg[i + 1] == 'k' || arg[i + 1] == '%'))
			n += arg[++i] == 'k' ? klen - 1 : 0;
	if ((out = malloc(n + 1)) == NULL)
		return NULL;
	for (p = out, i = 0; arg[i] != '\0'; i++) {
		if (arg[i] == '%' && arg[i + 1] == 'k') {
			memcpy(p, key, klen);
			p += klen;
			i++;
		} else {
			*p++ = arg[i];
			i += arg[i] == '%' && arg[i + 1] == '%';
		}
	}
	*p = '\0';
	return out;
}

static const char b64_tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              "abcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 with padding; a new string, or NULL. */
static char *
base64(const uint8_t *p, size_t n)
{
	const char *tab = b64_tab;
	char       *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
	uint32_t    v;
	size_t      i;

	if (out == NULL)
		return NULL;
	for (i = 0; i < n; i += 3) {
		v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		*o++ = tab[v >> 18];
		*o++ = tab[v >> 12 & 63];
		*o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? tab[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

/*
 * S in standard base64 with padding, decoded into a new buffer of *N
 * bytes.  NULL if S is not such base64, or when out of memory.
 */
static uint8_t *
unbase64(const char *s, size_t *n)
{
	size_t      len = strlen(s), pad = 0, i;
	uint8_t    *out;
	const char *c;
	uint32_t    v = 0;

	while (pad < 2 && pad < len && s[len - 1 - pad] == '=')
		pad++;
	if (len % 4 != 0 || (out = malloc(len / 4 * 3 + 1)) == NULL)
		return NULL;
	for (*n = 0, i = 0; i < len - pad; i++) {
		if ((c = strchr(b64_tab, s[i])) == NULL || *c == '\0') {
			free(out);
			return NULL;
		}
		v = v << 6 | (uint32_t)(c - b64_tab);
		if (i % 4 != 0)
			out[(*n)++] = (uint8_t)(v >> (6 - 2 * (i % 4)));
	}
	return out;
}

/*
 * The exit status for a reply's "code" (keyvisor-protocol(7)'s table).
 * "config" is reload's keyvisor.conf error; "exited" a --wait-ready
 * worker that exited before it said READY.
 */
static int
code_status(const char *code)
{
	static const struct {
		const char *code;
		int         status;
	} map[] = {
	    {"not_found", EXIT_NOT_FOUND},
	    {"usage", EXIT_USAGE},
	    {"invalid_key", EXIT_USAGE},
	    {"already_started", EXIT_STARTED},
	    {"capacity", EXIT_CAPACITY},
	    {"spawn", EXIT_CAPACITY},
	    {"permission", EXIT_PERMISSION},
	    {"timeout", EXIT_TIMEOUT},
	    {"exec", EXIT_EXEC},
	    {"stopping", EXIT_NO_DAEMON},
	    {"internal", EXIT_INTERNAL},
	    {"config", EXIT_USAGE},
	    {"exited", EXIT_INTERNAL},
	};
	size_t i;

	for (i = 0; code != NULL && i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(code, map[i].code) == 0)
			return map[i].status;
	return EXIT_INTERNAL;
}

/*
 * The exit status REP calls for: 0 for {"ok":true,...}; else its code's
 * status, with *MSG set to its "error" text (valid while REP lives).
 */
static int
reply_status(const json_t *rep, const char **msg)
{
	const json_t *ok = json_object_get(rep, "ok");
	const char   *code, *err;

	if (json_is_true(ok))
		return 0;
	if (!json_is_false(ok)) {
		*msg = "invalid reply from the daemon";
		return EXIT_INTERNAL;
	}
	code = json_string_value(json_object_get(rep, "code"));
	err = json_string_value(json_object_get(rep, "error"));
	*msg = err != NULL ? err : code != NULL ? code : "request failed";
	return code_status(code);
}

/* Drop V; returns NULL, so that "v = jfree(v);" reads as a release. */
static json_t *
jfree(json_t *v)
{
	json_decref(v);
	return NULL;
}

/* Seconds as the protocol's JSON number: 5000 -> 5, 250 -> 0.25. */
static json_t *
secs_json(uint64_t ms)
{
	if (ms % 1000 == 0)
		return json_integer((json_int_t)(ms / 1000));
	return json_real((double)ms / 1000.0);
}

/* Columns S takes on a terminal, counting UTF-8 sequences as one. */
static size_t
width(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

/* ---- Diagnostics and output ------------------------------------------ */

/*
 * Print "keyvisor: KEY: MESSAGE" (or "keyvisor: MESSAGE" when KEY is
 * NULL) on stderr.  Returns STATUS.
 */
static int
fail(const char *key, int status, const char *fmt, ...)
{
	va_list ap;
	char   *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		msg = NULL;
	va_end(ap);
	if (key != NULL)
		warnx("%s: %s", key, msg != NULL ? msg : fmt);
	else
		warnx("%s", msg != NULL ? msg : fmt);
	free(msg);
	return status;
}

static int
oom(void)
{
	return fail(NULL, EXIT_INTERNAL, "%s", strerror(ENOMEM));
}

static void
print_usage(FILE *f, const struct cmd *cmd)
{
	if (cmd == NULL)
		fputs("usage: keyvisor [-n NAME] COMMAND [ARG...]\n", f);
	else
		fprintf(f, "usage: %s\n", cmd->usage);
}

/* One "keyvisor: ..." line, then CMD's usage.  Returns EXIT_USAGE. */
static int
usage_error(const struct cmd *cmd, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("keyvisor: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	print_usage(stderr, cmd);
	return EXIT_USAGE;
}

/* Returns 0 if KEY is a valid key, else EXIT_USAGE with its reason. */
static int
key_ok(const char *key)
{
	const char *why = kv_key_check(key, strlen(key));

	return why == NULL ? 0 : fail(key, EXIT_USAGE, "%s", why);
}

/* V compactly on one line of stdout. */
static void
print_json(const json_t *v)
{
	json_dumpf(v, stdout, DUMP_FLAGS);
	putchar('\n');
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- Option parsing -------------------------------------------------- */

static const struct optdef *
opt_find(const struct optdef *defs, const char *name, size_t len)
{
	for (; defs != NULL && defs->name != NULL; defs++)
		if (strlen(defs->name) == len &&
		    memcmp(defs->name, name, len) == 0)
			return defs;
	return NULL;
}

static int
opt_duration(struct ctx *c, const char *val, uint64_t *out, unsigned bit)
{
	if (svc_parse_duration_ms(val, out) < 0)
		return usage_error(c->cmd, "invalid duration '%s'", val);
	c->o.set |= bit;
	return 0;
}

static int
opt_number(struct ctx *c, const char *val)
{
	const char *errstr;

	c->o.max_restarts = strtonum(val, 0, SVC_MAX_RESTARTS, &errstr);
	if (errstr != NULL)
		return usage_error(c->cmd, "invalid max-restarts '%s'", val);
	c->o.set |= SET_MAX_RESTARTS;
	return 0;
}

/* Record option ID with its value VAL (NULL for a flag). */
static int
opt_set(struct ctx *c, enum opt_id id, const char *val)
{
	struct opts     *o = &c->o;
	enum svc_restart rp;

	switch (id) {
	case OPT_HELP:
		o->help = true;
		return 0;
	case OPT_JSON:
		o->json = true;
		return 0;
	case OPT_STDIN:
		o->stdin_keys = true;
		return 0;
	case OPT_GROUP:
		o->group = true;
		return 0;
	case OPT_GONE:
		o->gone = true;
		return 0;
	case OPT_READY:
		o->ready = true;
		return 0;
	case OPT_WAIT_READY:
		o->wait_ready = true;
		return 0;
	case OPT_RESTART:
		if (svc_restart_parse(val, &rp) < 0)
			return usage_error(
			    c->cmd, "invalid restart policy '%s'", val);
		o->restart = val;
		return 0;
	case OPT_MAX_RESTARTS:
		return opt_number(c, val);
	case OPT_MAX_SECONDS:
		return opt_duration(
		    c, val, &o->max_seconds_ms, SET_MAX_SECONDS);
	case OPT_STOP_TIMEOUT:
		return opt_duration(
		    c, val, &o->stop_timeout_ms, SET_STOP_TIMEOUT);
	case OPT_TIMEOUT:
		return opt_duration(c, val, &o->timeout_ms, SET_TIMEOUT);
	case OPT_KIND:
		if (val[0] == '\0' || strlen(val) > KV_KIND_MAX)
			return usage_error(c->cmd, "invalid kind '%s'", val);
		o->kind = val;
		return 0;
	case OPT_PUBLISH:
		if (strcmp(val, "start") != 0 && strcmp(val, "ready") != 0)
			return usage_error(c->cmd,
			    "invalid publish '%s' (start or ready)", val);
		o->publish = val;
		return 0;
	case OPT_READY_TIMEOUT:
		return opt_duration(
		    c, val, &o->ready_timeout_ms, SET_READY_TIMEOUT);
	}
	return 0;
}

/* The option at ARGV[*I]; a value in the next argument advances *I. */
static int
opt_parse(struct ctx *c, int argc, char **argv, int *i)
{
	const char          *a = argv[*i], *eq, *val = NULL;
	const struct optdef *d = NULL;
	const char          *name = c->cmd->name;

	if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
		return opt_set(c, OPT_HELP, NULL);
	eq = strchr(a, '=');
	if (a[1] == '-')
		d = opt_find(c->cmd->opts, a + 2,
		    eq != NULL ? (size_t)(eq - a - 2) : strlen(a + 2));
	if (d == NULL)
		return usage_error(c->cmd, "%s: unknown option '%s'", name, a);
	if (!d->arg && eq != NULL)
		return usage_error(c->cmd,
		    "%s: option '--%s' takes no argument", name, d->name);
	if (d->arg) {
		val = eq != NULL ? eq + 1 : *i + 1 < argc ? argv[++*i] : NULL;
		if (val == NULL)
			return usage_error(c->cmd,
			    "%s: option '--%s' requires an argument", name,
			    d->name);
	}
	return opt_set(c, d->id, val);
}

/* Check the number of positional arguments against the command's. */
static int
check_npos(const struct ctx *c)
{
	const struct cmd *cmd = c->cmd;
	int               k = c->o.npos < 2 ? c->o.npos : 1;

	if (c->o.npos < cmd->minpos)
		return usage_error(
		    cmd, "%s: missing %s", cmd->name, cmd->posname[k]);
	if (cmd->maxpos >= 0 && c->o.npos > cmd->maxpos)
		return usage_error(cmd, "%s: unexpected argument '%s'",
		    cmd->name, c->o.pos[cmd->maxpos]);
	return 0;
}

/*
 * Parse a command's arguments ARGV[0..ARGC): options may come before or
 * after the positional arguments, and "--" ends them.  After "--" come CMD
 * and its arguments for start and ensure, more positionals otherwise.
 * Returns 0, or EXIT_USAGE having said why.  --help stops the parse.
 */
static int
parse_args(struct ctx *c, int argc, char **argv)
{
	struct opts *o = &c->o;
	int          i, r;

	if ((o->pos = calloc((size_t)argc + 1, sizeof(*o->pos))) == NULL)
		return oom();
	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (argv[i][0] != '-' || argv[i][1] == '\0')
			o->pos[o->npos++] = argv[i];
		else if ((r = opt_parse(c, argc, argv, &i)) != 0 || o->help)
			return r;
	}
	if (c->cmd->takes_argv) {
		o->argv = argv + i;
		o->argc = argc - i;
	} else
		while (i < argc)
			o->pos[o->npos++] = argv[i++];
	return check_npos(c);
}

/* ---- The connection -------------------------------------------------- */

static int
conn_refused(struct ctx *c, int err)
{
	const char *path = c->conn.path;

	switch (err) {
	case ENOENT:
	case ECONNREFUSED:
	case ENOTDIR:
		return fail(
		    NULL, EXIT_NO_DAEMON, "daemon not reachable at %s", path);
	case EACCES:
	case EPERM:
		return fail(NULL, EXIT_PERMISSION,
		    "unable to connect to %s: %s", path, strerror(err));
	}
	return fail(NULL, EXIT_NO_DAEMON, "unable to connect to %s: %s", path,
	    strerror(err));
}

/* Connect to the instance's control socket.  0 or an exit status. */
static int
conn_open(struct ctx *c)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	const char        *inst = paths_instance(c->name);
	int                fd, err;

	if (!paths_name_ok(inst))
		return fail(
		    NULL, EXIT_USAGE, "invalid instance name '%s'", inst);
	if (paths_socket(inst, c->conn.path, sizeof(c->conn.path)) < 0)
		return fail(NULL, EXIT_USAGE,
		    "the socket path of instance %s is too long", inst);
	memcpy(sun.sun_path, c->conn.path, sizeof(sun.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return fail(NULL, EXIT_INTERNAL,
		    "unable to create a socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		err = errno;
		close(fd);
		return conn_refused(c, err);
	}
	c->conn.fd = fd;
	return 0;
}

/*
 * The next complete line received, NUL-terminated in place without its
 * newline, valid until the next conn_* call.  Returns 1 with *LINE and
 * *LEN set, 0 when no complete line has arrived, -EMSGSIZE when the line
 * is longer than REPLY_MAX.
 */
static int
conn_take_line(struct conn *cn, char **line, size_t *len)
{
	char *start = cn->buf + cn->off, *nl;

	if (cn->off == cn->len)
		return 0;
	nl = memchr(start + cn->scan, '\n', cn->len - cn->off - cn->scan);
	if (nl == NULL) {
		cn->scan = cn->len - cn->off;
		return cn->scan > REPLY_MAX ? -EMSGSIZE : 0;
	}
	*nl = '\0';
	*line = start;
	*len = (size_t)(nl - start);
	cn->off += *len + 1;
	cn->scan = 0;
	return 1;
}

/*
 * Read what has arrived, after making room for it.  Returns the number of
 * bytes read, 0 at end of file, or -errno (-EMSGSIZE: no room is left, the
 * line is too long).  Call it only when conn_take_line() returned 0.
 */
static ssize_t
conn_read(struct conn *cn)
{
	size_t  cap = cn->cap;
	char   *p;
	ssize_t n;

	if (cn->off > 0) {
		memmove(cn->buf, cn->buf + cn->off, cn->len - cn->off);
		cn->len -= cn->off;
		cn->off = 0;
	}
	while (cap - cn->len < READ_MIN && cap < BUF_MAX)
		cap = cap == 0            ? READ_MIN
		      : cap > BUF_MAX / 2 ? BUF_MAX
		                          : cap * 2;
	if (cap != cn->cap) {
		if ((p = realloc(cn->buf, cap)) == NULL)
			return -ENOMEM;
		cn->buf = p;
		cn->cap = cap;
	}
	if (cn->len == cn->cap)
		return -EMSGSIZE;
	do
		n = read(cn->fd, cn->buf + cn->len, cn->cap - cn->len);
	while (n == -1 && errno == EINTR);
	if (n < 0)
		return -errno;
	cn->len += (size_t)n;
	return n;
}

/* Wait for EVENTS on FD until DEADLINE.  0, or -ETIMEDOUT. */
static int
wait_fd(int fd, short events, uint64_t deadline)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	uint64_t      now;
	int           ms, n;

	do {
		ms = -1;
		if (deadline != NO_DEADLINE) {
			now = now_ms();
			ms = now >= deadline            ? 0
			     : deadline - now > INT_MAX ? INT_MAX
			                                : (int)(deadline - now);
		}
		n = poll(&pfd, 1, ms);
	} while ((n == -1 && errno == EINTR) || (n == 0 && ms == INT_MAX));
	return n == 0 ? -ETIMEDOUT : 0;
}

/* The next line, waiting until DEADLINE.  0, -ECONNRESET at EOF, -errno. */
static int
conn_getline(struct conn *cn, uint64_t deadline, char **line, size_t *len)
{
	ssize_t n;
	int     r;

	for (;;) {
		if ((r = conn_take_line(cn, line, len)) != 0)
			return r < 0 ? r : 0;
		if ((r = wait_fd(cn->fd, POLLIN, deadline)) < 0)
			return r;
		if ((n = conn_read(cn)) <= 0)
			return n == 0 ? -ECONNRESET : (int)n;
	}
}

/* Say why a reply could not be read (conn_getline()'s ERR). */
static int
conn_error(struct ctx *c, const char *key, int err)
{
	switch (-err) {
	case ETIMEDOUT:
		return fail(key, EXIT_TIMEOUT, "timed out");
	case ECONNRESET:
	case EPIPE:
		return fail(
		    NULL, EXIT_NO_DAEMON, "the daemon closed the connection");
	case EMSGSIZE:
		return fail(NULL, EXIT_INTERNAL,
		    "a reply from the daemon is longer than %u bytes",
		    REPLY_MAX);
	}
	return fail(NULL, EXIT_NO_DAEMON, "unable to read from %s: %s",
	    c->conn.path, strerror(-err));
}

/* V serialised compactly plus a newline, malloc'ed; NULL on failure. */
static char *
dump_line(const json_t *v, size_t *len)
{
	char *s = json_dumps(v, DUMP_FLAGS), *p;

	if (s == NULL)
		return NULL;
	*len = strlen(s);
	if ((p = realloc(s, *len + 2)) == NULL) {
		free(s);
		return NULL;
	}
	p[(*len)++] = '\n';
	p[*len] = '\0';
	return p;
}

static int
send_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Send REQ (stolen; NULL when building it failed) as one line.  A daemon
 * that refuses us replies and closes at once, so a write to a closed
 * socket is not an error here: the reply may be waiting to be read.
 */
static int
send_req(struct ctx *c, json_t *req, const char *key)
{
	char  *s;
	size_t len;
	int    r;

	/* REQ is NULL when an argument was not UTF-8 (or on ENOMEM). */
	s = req != NULL ? dump_line(req, &len) : NULL;
	json_decref(req);
	if (s == NULL)
		return fail(key, EXIT_USAGE, "arguments must be valid UTF-8");
	if (len > PROTO_LINE_MAX) {
		free(s);
		return fail(key, EXIT_USAGE,
		    "request too long (%zu bytes; at most %d)", len,
		    PROTO_LINE_MAX);
	}
	r = send_all(c->conn.fd, s, len);
	free(s);
	if (r < 0 && r != -EPIPE && r != -ECONNRESET)
		return fail(NULL, EXIT_NO_DAEMON, "unable to write to %s: %s",
		    c->conn.path, strerror(-r));
	return 0;
}

/*
 * Send REQ (stolen) and read its reply into *REP (the caller's reference),
 * connecting first if need be.  Returns 0, or an exit status having
 * printed why; an error reply is printed with KEY, if not NULL.
 */
static int
request(struct ctx *c, json_t *req, const char *key, json_t **rep)
{
	json_error_t jerr;
	const char  *msg;
	char        *line;
	size_t       len;
	int          r;

	if (c->conn.fd == -1 && (r = conn_open(c)) != 0) {
		json_decref(req);
		return r;
	}
	if ((r = send_req(c, req, key)) != 0)
		return r;
	if ((r = conn_getline(&c->conn, c->deadline, &line, &len)) < 0)
		return conn_error(c, key, r);
	/* A worker's value may hold a NUL byte, escaped as \u0000. */
	if ((*rep = json_loadb(line, len, JSON_ALLOW_NUL, &jerr)) == NULL)
		return fail(NULL, EXIT_INTERNAL,
		    "invalid reply from the daemon: %s", jerr.text);
	if ((r = reply_status(*rep, &msg)) != 0) {
		r = fail(key, r, "%s", msg);
		*rep = jfree(*rep);
	}
	return r;
}

/* A request {"op":OP} with "key" KEY and "pattern" PAT when not NULL. */
static json_t *
simple_req(const char *op, const char *key, const char *pat)
{
	json_t *req = json_pack("{s:s}", "op", op);

	if (req != NULL && key != NULL &&
	    json_object_set_new(req, "key", json_string(key)) != 0)
		req = jfree(req);
	if (req != NULL && pat != NULL &&
	    json_object_set_new(req, "pattern", json_string(pat)) != 0)
		req = jfree(req);
	return req;
}

/* ---- The registry ---------------------------------------------------- */

/*
 * Map the registry read-only: $KEYVISOR_REGISTRY's, else the instance's
 * (without a daemon there is no other way to learn its name).
 */
static int
reg_open(const struct ctx *c, struct kv_reg **out)
{
	const char *env = getenv("KEYVISOR_REGISTRY");
	const char *name =
	    env != NULL && env[0] != '\0' ? env : paths_instance(c->name);
	char seg[PATHS_NAME_MAX + 16];
	int  r;

	if (paths_segment(name, seg, sizeof(seg)) < 0)
		return fail(NULL, EXIT_USAGE, "invalid %s name '%s'",
		    name == env ? "registry" : "instance", name);
	switch (-(r = kv_reg_open(seg, KV_REG_RDONLY, out))) {
	case 0:
		return 0;
	case ENOENT:
		return fail(NULL, EXIT_NO_DAEMON,
		    "daemon not reachable (no registry segment %s)", seg);
	case EACCES:
	case EPERM:
		return fail(NULL, EXIT_PERMISSION, "unable to open %s: %s", seg,
		    strerror(-r));
	case EPROTO:
	case EPROTONOSUPPORT:
	case EBADMSG:
		return fail(NULL, EXIT_NO_DAEMON, "registry invalid: %s",
		    kv_reg_strerror(r));
	}
	return fail(NULL, EXIT_NO_DAEMON, "unable to open %s: %s", seg,
	    kv_reg_strerror(r));
}

/* A failed registry read: busy is a timeout (7), anything else is 1. */
static int
reg_error(const char *key, int err)
{
	return fail(key, err == -EBUSY ? EXIT_TIMEOUT : EXIT_INTERNAL, "%s",
	    kv_reg_strerror(err));
}

/* The entry as lookup --json shows it; NULL on failure. */
static json_t *
entry_json(const struct kv_entry *e)
{
	json_t *o, *v;
	char   *b64 = NULL;

	o = json_pack("{s:s,s:i,s:i,s:I,s:s,s:I,s:f}", "key", e->key, "pid",
	    (int)e->pid, "owner", (int)e->owner, "incarnation",
	    (json_int_t)e->incarnation, "kind", e->kind, "start_time",
	    (json_int_t)e->start_time, "registered",
	    (double)(e->reg_time_ns / 1000000) / 1000.0);
	if (o == NULL)
		return NULL;
	/* json_stringn() refuses bytes that are not UTF-8. */
	if ((v = json_stringn((const char *)e->value, e->valuelen)) != NULL)
		json_object_set_new(o, "value", v);
	else if ((b64 = base64(e->value, e->valuelen)) != NULL)
		json_object_set_new(o, "value_base64", json_string(b64));
	else
		o = jfree(o);
	free(b64);
	return o;
}

/* ---- lookup, count, route: no daemon --------------------------------- */

/*
 * Is the daemon that registered an entry still there?  A daemon that was
 * SIGKILLed leaves its segment behind, full of names nobody will release;
 * they must not be reported as live.  A zombie (state Z or X in
 * /proc/PID/stat, after the last ')') is as dead as a reaped process.
 */
static bool
owner_alive(pid_t owner)
{
	char    path[64], buf[512], *p;
	ssize_t n;
	int     fd;

	if (owner <= 0 || (kill(owner, 0) == -1 && errno != EPERM))
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)owner);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return errno != ENOENT;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return true;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p == NULL || (p[1] != ' ' || (p[2] != 'Z' && p[2] != 'X'));
}

static int
stale(pid_t owner)
{
	char msg[128];

	snprintf(msg, sizeof(msg),
	    "daemon not reachable (the registry is stale: pid %d is gone)",
	    (int)owner);
	return fail(NULL, EXIT_NO_DAEMON, "%s", msg);
}

static int
cmd_lookup(struct ctx *c)
{
	const char     *key = c->o.pos[0];
	struct kv_reg  *reg;
	struct kv_entry e;
	json_t         *o;
	int             r;

	if ((r = key_ok(key)) != 0 || (r = reg_open(c, &reg)) != 0)
		return r;
	r = kv_reg_lookup(reg, key, strlen(key), &e);
	kv_reg_close(reg);
	if (r == -ENOENT)
		return fail(key, EXIT_NOT_FOUND, "not found");
	if (r < 0)
		return reg_error(key, r);
	if (!owner_alive(e.owner))
		return stale(e.owner);
	if (!c->o.json) {
		printf("%d\n", (int)e.pid);
		return 0;
	}
	if ((o = entry_json(&e)) == NULL)
		return oom();
	print_json(o);
	json_decref(o);
	return 0;
}

/* Live names are counted; those of dead owners are stale. */
struct tally {
	int   live, stale;
	pid_t owner, dead; /* the last owner seen alive, and dead */
};

static int
count_one(const struct kv_entry *e, void *arg)
{
	struct tally *t = arg;

	if (!(e->flags & KV_ENTRY_PUBLISHED)) /* reserved, or not ready yet */
		return 0;
	if (e->owner != t->owner && e->owner != t->dead) {
		if (owner_alive(e->owner))
			t->owner = e->owner;
		else
			t->dead = e->owner;
	}
	if (e->owner == t->owner)
		t->live++;
	else
		t->stale++;
	return 0;
}

static int
cmd_count(struct ctx *c)
{
	const char    *pat = c->o.npos > 0 ? c->o.pos[0] : NULL;
	struct kv_reg *reg;
	struct tally   t = {0};
	int            r;

	if ((r = reg_open(c, &reg)) != 0)
		return r;
	r = kv_reg_iter(reg, pat, count_one, &t);
	kv_reg_close(reg);
	if (r < 0)
		return reg_error(NULL, r);
	if (t.live == 0 && t.stale > 0)
		return stale(t.dead);
	printf("%d\n", t.live);
	return 0;
}

static int
cmd_route(struct ctx *c)
{
	const char *key = c->o.pos[0];
	int         r;

	if ((r = key_ok(key)) != 0)
		return r;
	r = kv_route_pick(key, strlen(key), (const char *const *)c->o.pos + 1,
	    (size_t)c->o.npos - 1);
	if (r < 0)
		return fail(key, EXIT_USAGE, "shard names must not be empty");
	puts(c->o.pos[1 + r]);
	return 0;
}

/* ---- start and ensure ------------------------------------------------ */

/*
 * The start or ensure request for C's options, without "key" and "argv".
 * "cwd" goes with a command only: a kind's own directory must stand when
 * the kind's command is used.  NULL on failure (invalid UTF-8).
 */
static json_t *
start_template(const struct ctx *c)
{
	const struct opts *o = &c->o;
	json_t            *r;
	int                bad = 0;

	r = json_pack(
	    "{s:s,s:b}", "op", c->cmd->name, "wait_ready", o->wait_ready);
	if (r == NULL)
		return NULL;
	if (c->cwd != NULL)
		bad |= json_object_set_new(r, "cwd", json_string(c->cwd));
	if (o->restart != NULL)
		bad |=
		    json_object_set_new(r, "restart", json_string(o->restart));
	if (o->set & SET_MAX_RESTARTS)
		bad |= json_object_set_new(
		    r, "max_restarts", json_integer(o->max_restarts));
	if (o->set & SET_MAX_SECONDS)
		bad |= json_object_set_new(
		    r, "max_seconds", secs_json(o->max_seconds_ms));
	if (o->set & SET_STOP_TIMEOUT)
		bad |= json_object_set_new(
		    r, "stop_timeout", secs_json(o->stop_timeout_ms));
	if (o->kind != NULL)
		bad |= json_object_set_new(r, "kind", json_string(o->kind));
	if (o->publish != NULL)
		bad |=
		    json_object_set_new(r, "publish", json_string(o->publish));
	if (o->set & SET_READY_TIMEOUT)
		bad |= json_object_set_new(
		    r, "ready_timeout", secs_json(o->ready_timeout_ms));
	if (bad)
		r = jfree(r);
	return r;
}

/*
 * Set "key" to KEY and "argv" to CMD in REQ, substituting %k in CMD when
 * SUBST.  Returns 0, or -1 (invalid UTF-8, ENOMEM).
 */
static int
set_key_argv(json_t *req, const struct opts *o, const char *key, bool subst)
{
	json_t *a;
	char   *s;
	int     i, bad = 0;

	if (json_object_set_new(req, "key", json_string(key)) != 0)
		return -1;
	if (o->argc == 0)
		return 0;
	if ((a = json_array()) == NULL)
		return -1;
	for (i = 0; i < o->argc && !bad; i++) {
		s = subst ? subst_key(o->argv[i], key) : o->argv[i];
		bad = s == NULL || json_array_append_new(a, json_string(s));
		if (subst)
			free(s);
	}
	if (bad) {
		json_decref(a);
		return -1;
	}
	return json_object_set_new(req, "argv", a);
}

/* Arguments start and ensure need, whether one KEY or keys on stdin. */
static int
start_check(struct ctx *c)
{
	const struct opts *o = &c->o;
	const char        *name = c->cmd->name;

	if (!o->stdin_keys && o->npos == 0)
		return usage_error(c->cmd, "%s: missing KEY", name);
	if (o->stdin_keys && o->npos > 0)
		return usage_error(
		    c->cmd, "%s: unexpected argument '%s'", name, o->pos[0]);
	if (o->argc == 0 && o->kind == NULL)
		return usage_error(c->cmd, "%s: missing '-- CMD'", name);
	if (o->argc > 0 && (c->cwd = getcwd(NULL, 0)) == NULL)
		return fail(NULL, EXIT_INTERNAL,
		    "unable to get the current directory: %s", strerror(errno));
	return 0;
}

static int start_batch(struct ctx *c);

static int
cmd_start(struct ctx *c)
{
	const char *key = c->o.pos[0];
	json_t     *req, *rep;
	int         r;

	if ((r = start_check(c)) != 0)
		return r;
	if (c->o.stdin_keys)
		return start_batch(c);
	if ((r = key_ok(key)) != 0)
		return r;
	req = start_template(c);
	if (req != NULL && set_key_argv(req, &c->o, key, false) != 0)
		req = jfree(req);
	if ((r = request(c, req, key, &rep)) != 0)
		return r;
	printf("%" JSON_INTEGER_FORMAT "\n",
	    json_integer_value(json_object_get(rep, "pid")));
	json_decref(rep);
	return 0;
}

/* ---- start --stdin --------------------------------------------------- */

/*
 * PIPELINING.  Every key read from stdin becomes one start request, all on
 * one connection, and the daemon answers them in order.  One poll(2) loop
 * both writes requests and reads replies.  Writing everything before
 * reading would deadlock: the daemon stops reading us once its replies
 * fill the socket buffer that we are not draining.  At most BATCH_WINDOW
 * requests are in flight.
 *
 * Items are reported in input order.  A key that fails locally (invalid,
 * or too long a request) is never sent; it is reported when its turn
 * comes, between the replies of its neighbours.
 */
struct item {
	char       *key;
	const char *err;    /* why it was not sent; NULL if sent */
	int         status; /* the exit status for err */
};

struct batch {
	struct ctx  *c;
	json_t      *tmpl; /* the request but for key and argv */
	struct item *items;
	size_t       n, cap;
	size_t       queued;   /* items[0..queued) encoded, or failed */
	size_t       settled;  /* items[0..settled) reported */
	size_t       inflight; /* requests sent, replies not read */
	size_t       started;
	char        *out; /* encoded requests; [outoff, outlen) unwritten */
	size_t       outoff, outlen, outcap;
	bool         wclosed; /* the daemon no longer reads */
	int          status;  /* the first failure's exit status, or 0 */
	bool         tty, out_tty, shown; /* progress on stderr, shown now */
	uint64_t     shown_ms;
};

static void
progress_clear(struct batch *b)
{
	if (b->shown)
		fputs("\r\033[K", stderr);
	b->shown = false;
}

static void
progress(struct batch *b, bool force)
{
	uint64_t now = now_ms();

	if (!b->tty || (!force && now - b->shown_ms < PROGRESS_MS))
		return;
	fflush(stdout);
	fprintf(stderr, "\rstarted %zu/%zu", b->started, b->n);
	b->shown = true;
	b->shown_ms = now;
}

/* Report ITEM's failure and remember the first failure's status. */
static void
item_failed(struct batch *b, const struct item *it, int status, const char *msg)
{
	progress_clear(b);
	fail(it->key, status, "%s", msg);
	if (b->status == 0)
		b->status = status;
}

/* Add a line read from stdin to the batch. */
static int
batch_add(struct batch *b, const char *line, size_t len)
{
	struct item *it;

	if (b->n == b->cap) {
		b->cap = b->cap == 0 ? 1024 : b->cap * 2;
		it = reallocarray(b->items, b->cap, sizeof(*it));
		if (it == NULL)
			return oom();
		b->items = it;
	}
	it = &b->items[b->n];
	if ((it->key = strndup(line, len)) == NULL)
		return oom();
	it->err = kv_key_check(line, len);
	it->status = EXIT_USAGE;
	b->n++;
	return 0;
}

/* Read stdin's keys, one per line; blank lines are skipped. */
static int
batch_read_keys(struct batch *b)
{
	char   *line = NULL;
	size_t  cap = 0;
	ssize_t n;
	int     r = 0;

	while (r == 0 && (n = getline(&line, &cap, stdin)) != -1) {
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		if (strspn(line, " \t\r\v\f") != (size_t)n)
			r = batch_add(b, line, (size_t)n);
	}
	free(line);
	if (r == 0 && ferror(stdin))
		r = fail(NULL, EXIT_INTERNAL, "unable to read stdin: %s",
		    strerror(errno));
	return r;
}

/* Encode IT's request at the end of the output buffer, or fail IT. */
static int
batch_encode(struct batch *b, struct item *it)
{
	char  *s, *p;
	size_t len = 0;

	s = set_key_argv(b->tmpl, &b->c->o, it->key, true) == 0
	        ? dump_line(b->tmpl, &len)
	        : NULL;
	if (s == NULL || len > PROTO_LINE_MAX) {
		it->err = s == NULL ? "arguments must be valid UTF-8"
		                    : "request too long";
		free(s);
		return 0;
	}
	if (b->outlen + len > b->outcap) {
		b->outcap = b->outlen + len + OUT_HIGH;
		if ((p = realloc(b->out, b->outcap)) == NULL) {
			free(s);
			return oom();
		}
		b->out = p;
	}
	memcpy(b->out + b->outlen, s, len);
	b->outlen += len;
	b->inflight++;
	free(s);
	return 0;
}

/* Encode requests until the window or the output buffer is full. */
static int
batch_fill(struct batch *b)
{
	struct item *it;
	int          r;

	while (b->queued < b->n && b->inflight < BATCH_WINDOW &&
	       b->outlen - b->outoff < OUT_HIGH && !b->wclosed) {
		it = &b->items[b->queued++];
		if (it->err == NULL && (r = batch_encode(b, it)) != 0)
			return r;
	}
	while (b->settled < b->queued && b->items[b->settled].err != NULL) {
		it = &b->items[b->settled++];
		item_failed(b, it, it->status, it->err);
	}
	return 0;
}

static void
batch_write(struct batch *b)
{
	ssize_t n;

	n = send(b->c->conn.fd, b->out + b->outoff, b->outlen - b->outoff,
	    MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n == -1 && errno != EINTR && errno != EAGAIN)
		b->wclosed = true; /* EPIPE: read what it said, then EOF */
	if (n > 0)
		b->outoff += (size_t)n;
	if (b->outoff == b->outlen)
		b->outoff = b->outlen = 0;
}

/* The reply LINE belongs to the next sent item. */
static int
batch_reply(struct batch *b, const char *line, size_t len)
{
	struct item *it;
	json_t      *rep;
	const char  *msg;
	int          st;

	if (b->inflight == 0)
		return fail(
		    NULL, EXIT_INTERNAL, "unexpected reply from the daemon");
	it = &b->items[b->settled++];
	b->inflight--;
	rep = json_loadb(line, len, 0, NULL);
	if ((st = reply_status(rep, &msg)) != 0) {
		item_failed(b, it, st, msg);
	} else {
		if (b->out_tty)
			progress_clear(b);
		printf("%s %" JSON_INTEGER_FORMAT "\n", it->key,
		    json_integer_value(json_object_get(rep, "pid")));
		b->started++;
	}
	json_decref(rep);
	return 0;
}

/* Read replies.  Returns 0, or an exit status when the daemon is gone. */
static int
batch_read(struct batch *b)
{
	struct conn *cn = &b->c->conn;
	char        *line;
	size_t       len;
	ssize_t      n;
	int          r;

	if ((n = conn_read(cn)) <= 0) {
		progress_clear(b);
		if (n != 0 && n != -ECONNRESET)
			return conn_error(b->c, NULL, (int)n);
		return fail(NULL, EXIT_NO_DAEMON,
		    "the daemon closed the connection after %zu of %zu keys",
		    b->settled, b->n);
	}
	while ((r = conn_take_line(cn, &line, &len)) > 0)
		if ((r = batch_reply(b, line, len)) != 0 ||
		    (r = batch_fill(b)) != 0)
			return r;
	return r < 0 ? conn_error(b->c, NULL, r) : 0;
}

static int
batch_loop(struct batch *b)
{
	struct pollfd pfd = {.fd = b->c->conn.fd};
	int           r;

	for (;;) {
		if ((r = batch_fill(b)) != 0)
			return r;
		progress(b, false);
		if (b->settled == b->n)
			return 0;
		pfd.events = POLLIN;
		if (b->outoff < b->outlen && !b->wclosed)
			pfd.events |= POLLOUT;
		if (poll(&pfd, 1, -1) == -1) {
			if (errno == EINTR)
				continue;
			return fail(
			    NULL, EXIT_INTERNAL, "poll: %s", strerror(errno));
		}
		if (pfd.revents & POLLOUT)
			batch_write(b);
		if ((pfd.revents & (POLLIN | POLLHUP | POLLERR)) &&
		    (r = batch_read(b)) != 0)
			return r;
	}
}

static int
start_batch(struct ctx *c)
{
	struct batch b = {.c = c,
	    .tty = isatty(STDERR_FILENO) == 1,
	    .out_tty = isatty(STDOUT_FILENO) == 1};
	size_t       i;
	int          r;

	/* Substituting %k and %% cannot make CMD valid UTF-8, nor invalid. */
	b.tmpl = start_template(c);
	if (b.tmpl == NULL || set_key_argv(b.tmpl, &c->o, "-", false) != 0)
		r = fail(NULL, EXIT_USAGE, "arguments must be valid UTF-8");
	else if ((r = batch_read_keys(&b)) == 0 && b.n > 0 &&
	         (r = conn_open(c)) == 0) {
		r = batch_loop(&b);
		progress(&b, true);
		if (b.shown)
			fputc('\n', stderr);
	}
	for (i = 0; i < b.n; i++)
		free(b.items[i].key);
	free(b.items);
	free(b.out);
	json_decref(b.tmpl);
	return b.status != 0 ? b.status : r;
}

/* ---- Commands that ask the daemon ------------------------------------ */

/* stop, restart and touch: a request with KEY alone. */
static int
cmd_stop(struct ctx *c)
{
	const char *key = c->o.pos[0];
	json_t     *req, *rep;
	int         r;

	if ((r = key_ok(key)) != 0)
		return r;
	req = simple_req(c->cmd->name, key, NULL);
	if ((r = request(c, req, key, &rep)) != 0)
		return r;
	/* restart prints the new worker's pid; stop has nothing to say. */
	if (strcmp(c->cmd->name, "restart") == 0)
		printf("%" JSON_INTEGER_FORMAT "\n",
		    json_integer_value(json_object_get(rep, "pid")));
	json_decref(rep);
	return 0;
}

static int
cmd_signal(struct ctx *c)
{
	const char *key = c->o.pos[0], *sig = c->o.pos[1];
	json_t     *req, *rep;
	int         r, signo;

	if ((signo = proto_signal_parse(sig)) < 0)
		return usage_error(c->cmd, "invalid signal '%s'", sig);
	if ((r = key_ok(key)) != 0)
		return r;
	req = json_pack("{s:s,s:s,s:i,s:b}", "op", "signal", "key", key,
	    "signal", signo, "group", c->o.group);
	if ((r = request(c, req, key, &rep)) != 0)
		return r;
	json_decref(rep);
	return 0;
}

/* A string field of O, or "-". */
static const char *
jstr(const json_t *o, const char *field)
{
	const char *s = json_string_value(json_object_get(o, field));

	return s != NULL ? s : "-";
}

/* ARG as a POSIX shell word on F: quoted only when it has to be. */
static void
put_word(FILE *f, const char *arg)
{
	const char *p;

	if (arg[0] != '\0' &&
	    strspn(arg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                "0123456789_@%+=:,./-") == strlen(arg)) {
		fputs(arg, f);
		return;
	}
	fputc('\'', f);
	for (p = arg; *p != '\0'; p++)
		if (*p == '\'')
			fputs("'\\''", f);
		else
			fputc(*p, f);
	fputc('\'', f);
}

/* ARGV, an array of strings, as shell words on F, each after SEP. */
static void
put_words(FILE *f, const json_t *argv, const char *sep)
{
	const json_t *v;
	size_t        i;

	json_array_foreach(argv, i, v)
	{
		fputs(i > 0 ? " " : sep, f);
		put_word(f, json_is_string(v) ? json_string_value(v) : "?");
	}
}

/* "state: backoff (restart in 0.8s)" */
static void
status_state(const json_t *w)
{
	const json_t *left = json_object_get(w, "backoff_left");

	printf("state: %s", jstr(w, "state"));
	if (json_is_number(left))
		printf(" (restart in %.1fs)", json_number_value(left));
	putchar('\n');
}

static void
status_command(const json_t *argv)
{
	fputs("command:", stdout);
	put_words(stdout, argv, " ");
	putchar('\n');
}

/* Seconds left: "4.2s" below 10s, else as an uptime ("12s", "3m04s"). */
static void
fmt_left(double secs, char *buf, size_t len)
{
	if (secs >= 0 && secs < 10)
		snprintf(buf, len, "%.1fs", secs);
	else
		fmt_uptime(secs, buf, len);
}

/*
 * The length of the control character at S (N > 0 bytes of UTF-8): 1 for
 * C0 or DEL, 2 for C1 (U+0080..U+009F are 0xc2 0x80..0x9f), else 0.
 */
static size_t
ctrl_len(const char *s, size_t n)
{
	unsigned char c = (unsigned char)s[0];

	if (c < 0x20 || c == 0x7f)
		return 1;
	return c == 0xc2 && n > 1 && (unsigned char)s[1] < 0xa0 ? 2 : 0;
}

/* Can the N bytes of UTF-8 at S go to a terminal as they are? */
static bool
printable(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (ctrl_len(s + i, n - i) > 0)
			return false;
	return true;
}

/* "value: TEXT" if it is printable, else "value: 0x" and its bytes in hex. */
static void
status_value(const json_t *w)
{
	const json_t *v = json_object_get(w, "value");
	const char   *b = json_string_value(json_object_get(w, "value_base64"));
	uint8_t      *bytes = NULL;
	const char   *p;
	size_t        n, i;

	if (json_is_string(v)) {
		p = json_string_value(v);
		n = json_string_length(v);
		if (printable(p, n)) {
			printf("value:%s%s\n", n > 0 ? " " : "", p);
			return;
		}
	} else {
		if (b == NULL || (bytes = unbase64(b, &n)) == NULL)
			return;
		p = (const char *)bytes;
	}
	fputs(n > 0 ? "value: 0x" : "value:", stdout);
	for (i = 0; i < n; i++)
		printf("%02x", (unsigned char)p[i]);
	putchar('\n');
	free(bytes);
}

/* "message: TEXT", the worker's STATUS text, controls shown as '?'. */
static void
status_message(const json_t *w)
{
	const json_t *m = json_object_get(w, "message");
	const char   *p = json_string_value(m);
	size_t        n = json_string_length(m), i, k;

	if (p == NULL)
		return;
	fputs(n > 0 ? "message: " : "message:", stdout);
	for (i = 0; i < n; i += k) {
		if ((k = ctrl_len(p + i, n - i)) > 0) {
			putchar('?');
		} else {
			putchar(p[i]);
			k = 1;
		}
	}
	putchar('\n');
}

/*
 * What the worker told its supervisor, and its deadlines: each line only
 * when the reply has the field ("published" only when it is false).
 */
static void
status_channel(const json_t *w)
{
	const json_t *ttl = json_object_get(w, "ttl_left");
	const json_t *wd = json_object_get(w, "watchdog_left");
	char          buf[64];

	if (json_is_false(json_object_get(w, "published")))
		puts("published: no");
	status_value(w);
	status_message(w);
	if (json_is_number(ttl)) {
		fmt_left(json_number_value(ttl), buf, sizeof(buf));
		printf("ttl left: %s\n", buf);
	}
	if (json_is_number(wd)) {
		fmt_left(json_number_value(wd), buf, sizeof(buf));
		printf("watchdog left: %s\n", buf);
	}
}

/*
 * A WORKER object, one "field: value" line each, in the order of
 * keyvisor(1)'s example; uptime (while a process runs), kind (when there
 * is one) and what the worker said on its channel are added where they
 * belong.
 */
static void
status_print(const json_t *w)
{
	json_int_t  pid = json_integer_value(json_object_get(w, "pid"));
	const char *kind = jstr(w, "kind");
	char        buf[64];

	printf("key: %s\n", jstr(w, "key"));
	printf("pid: %" JSON_INTEGER_FORMAT "\n", pid);
	status_state(w);
	printf("incarnation: %" JSON_INTEGER_FORMAT "\n",
	    json_integer_value(json_object_get(w, "incarnation")));
	if (pid > 0) {
		fmt_uptime(json_number_value(json_object_get(w, "uptime")), buf,
		    sizeof(buf));
		printf("uptime: %s\n", buf);
	}
	printf("restart: %s\n", jstr(w, "restart"));
	if (kind[0] != '\0' && strcmp(kind, "-") != 0)
		printf("kind: %s\n", kind);
	status_channel(w);
	fmt_exit(json_object_get(w, "last_exit"), buf, sizeof(buf));
	printf("last exit: %s\n", buf);
	if (json_is_string(json_object_get(w, "reason")))
		printf("reason: %s\n", jstr(w, "reason"));
	status_command(json_object_get(w, "argv"));
}

static int
cmd_status(struct ctx *c)
{
	const char *key = c->o.pos[0];
	json_t     *rep, *w;
	int         r;

	if ((r = key_ok(key)) != 0)
		return r;
	if ((r = request(c, simple_req("status", key, NULL), key, &rep)) != 0)
		return r;
	w = json_object_get(rep, "worker");
	if (!json_is_object(w))
		r = fail(key, EXIT_INTERNAL, "invalid reply from the daemon");
	else if (c->o.json)
		print_json(w);
	else
		status_print(w);
	json_decref(rep);
	return r;
}

/*
 * ALIGNED TABLES.  ls and kinds print one row per object of an array,
 * every column but the last padded to its widest cell.  A row's cells
 * point into the object or into the row's buffers, so a table is built
 * twice, once to measure it and once to print it, rather than kept.
 */
#define TABLE_COLS 7 /* ls with KIND, and kinds */

struct row {
	const char *cell[TABLE_COLS];
	char        buf[TABLE_COLS][64];
	char       *own; /* a malloc'ed cell, freed with the row; or NULL */
};

struct table {
	const char *head[TABLE_COLS];
	size_t      ncols;
	void (*fill)(const json_t *o, struct row *r); /* sets every cell */
};

/* One table line; every column but the last padded to its width. */
static void
table_line(const char *const *cell, const size_t *wid, size_t ncols)
{
	size_t i, n;

	for (i = 0; i < ncols - 1; i++) {
		fputs(cell[i], stdout);
		for (n = width(cell[i]); n < wid[i] + 2; n++)
			putchar(' ');
	}
	puts(cell[ncols - 1]);
}

static void
table_print(const struct table *t, const json_t *rows)
{
	struct row    row;
	size_t        wid[TABLE_COLS], i, k;
	const json_t *o;

	for (k = 0; k < t->ncols; k++)
		wid[k] = width(t->head[k]);
	json_array_foreach(rows, i, o)
	{
		t->fill(o, &row);
		for (k = 0; k < t->ncols; k++)
			if (width(row.cell[k]) > wid[k])
				wid[k] = width(row.cell[k]);
		free(row.own);
	}
	table_line(t->head, wid, t->ncols);
	json_array_foreach(rows, i, o)
	{
		t->fill(o, &row);
		table_line(row.cell, wid, t->ncols);
		free(row.own);
	}
}

/* A worker's kind, or NULL when it has none. */
static const char *
kind_of(const json_t *w)
{
	const char *k = json_string_value(json_object_get(w, "kind"));

	return k != NULL && k[0] != '\0' ? k : NULL;
}

/* ls: KEY PID STATE INCARNATION UPTIME LAST-EXIT [KIND]. */
static void
ls_fill(const json_t *w, struct row *r)
{
	json_int_t pid = json_integer_value(json_object_get(w, "pid"));

	r->own = NULL;
	snprintf(r->buf[1], sizeof(r->buf[1]), "%" JSON_INTEGER_FORMAT, pid);
	snprintf(r->buf[3], sizeof(r->buf[3]), "%" JSON_INTEGER_FORMAT,
	    json_integer_value(json_object_get(w, "incarnation")));
	if (pid > 0)
		fmt_uptime(json_number_value(json_object_get(w, "uptime")),
		    r->buf[4], sizeof(r->buf[4]));
	else
		snprintf(r->buf[4], sizeof(r->buf[4]), "-");
	fmt_exit(json_object_get(w, "last_exit"), r->buf[5], sizeof(r->buf[5]));
	r->cell[0] = jstr(w, "key");
	r->cell[1] = r->buf[1];
	r->cell[2] = jstr(w, "state");
	r->cell[3] = r->buf[3];
	r->cell[4] = r->buf[4];
	r->cell[5] = r->buf[5];
	r->cell[6] = kind_of(w) != NULL ? kind_of(w) : "-";
}

/*
 * The KIND column comes last, and only when some worker has a kind, so
 * that the columns scripts know keep their places.
 */
static void
ls_table(const json_t *workers)
{
	struct table  t = {{"KEY", "PID", "STATE", "INCARNATION", "UPTIME",
	                       "LAST-EXIT", "KIND"},
	     6, ls_fill};
	const json_t *w;
	size_t        i;

	json_array_foreach(workers, i, w)
	{
		if (kind_of(w) != NULL)
			t.ncols = 7;
	}
	table_print(&t, workers);
}

static int
cmd_ls(struct ctx *c)
{
	const char *pat = c->o.npos > 0 ? c->o.pos[0] : NULL;
	json_t     *rep, *workers;
	int         r;

	if ((r = request(c, simple_req("ls", NULL, pat), NULL, &rep)) != 0)
		return r;
	workers = json_object_get(rep, "workers");
	if (!json_is_array(workers))
		r = fail(NULL, EXIT_INTERNAL, "invalid reply from the daemon");
	else if (c->o.json)
		print_json(workers);
	else
		ls_table(workers);
	json_decref(rep);
	return r;
}

/* kinds: NAME COMMAND RESTART RUNNING MAX READY PUBLISH. */
static void
kinds_fill(const json_t *k, struct row *r)
{
	const json_t *argv = json_object_get(k, "command");
	json_int_t    max;
	size_t        n;
	FILE         *f;

	r->own = NULL;
	if (json_array_size(argv) > 0 &&
	    (f = open_memstream(&r->own, &n)) != NULL) {
		put_words(f, argv, "");
		if (fclose(f) != 0) {
			free(r->own);
			r->own = NULL;
		}
	}
	snprintf(r->buf[3], sizeof(r->buf[3]), "%" JSON_INTEGER_FORMAT,
	    json_integer_value(json_object_get(k, "running")));
	/* A kind's max_children of 0 means no limit of its own. */
	max = json_integer_value(json_object_get(k, "max_children"));
	if (max > 0)
		snprintf(
		    r->buf[4], sizeof(r->buf[4]), "%" JSON_INTEGER_FORMAT, max);
	else
		snprintf(r->buf[4], sizeof(r->buf[4]), "-");
	r->cell[0] = jstr(k, "name");
	r->cell[1] = r->own != NULL ? r->own : "-";
	r->cell[2] = jstr(k, "restart");
	r->cell[3] = r->buf[3];
	r->cell[4] = r->buf[4];
	r->cell[5] = jstr(k, "ready");
	r->cell[6] = jstr(k, "publish");
}

static const struct table kinds_table = {
    {"NAME", "COMMAND", "RESTART", "RUNNING", "MAX", "READY", "PUBLISH"}, 7,
    kinds_fill};

static int
cmd_kinds(struct ctx *c)
{
	json_t *rep, *kinds;
	int     r;

	if ((r = request(c, simple_req("kinds", NULL, NULL), NULL, &rep)) != 0)
		return r;
	kinds = json_object_get(rep, "kinds");
	if (!json_is_array(kinds))
		r = fail(NULL, EXIT_INTERNAL, "invalid reply from the daemon");
	else if (c->o.json)
		print_json(kinds);
	else
		table_print(&kinds_table, kinds);
	json_decref(rep);
	return r;
}

static int
cmd_watch(struct ctx *c)
{
	const char *pat = c->o.npos > 0 ? c->o.pos[0] : NULL;
	json_t     *rep;
	char       *line;
	size_t      len;
	int         r;

	if ((r = request(c, simple_req("watch", NULL, pat), NULL, &rep)) != 0)
		return r;
	json_decref(rep);
	/* Events are passed on verbatim, each as soon as it arrives. */
	while ((r = conn_getline(&c->conn, NO_DEADLINE, &line, &len)) == 0) {
		fwrite(line, 1, len, stdout);
		putchar('\n');
		if (fflush(stdout) == EOF)
			return fail(NULL, EXIT_INTERNAL,
			    "unable to write to stdout: %s", strerror(errno));
	}
	return conn_error(c, NULL, r);
}

static int
cmd_wait(struct ctx *c)
{
	const char *key = c->o.pos[0];
	json_t     *req, *rep;
	int         r;

	if (c->o.gone && c->o.ready)
		return usage_error(
		    c->cmd, "wait: --gone and --ready are mutually exclusive");
	if ((r = key_ok(key)) != 0)
		return r;
	if (c->o.set & SET_TIMEOUT)
		c->deadline = now_ms() + c->o.timeout_ms;
	req = json_pack("{s:s,s:s,s:b,s:b}", "op", "wait", "key", key, "gone",
	    c->o.gone, "ready", c->o.ready);
	if ((r = request(c, req, key, &rep)) != 0)
		return r;
	if (!c->o.gone)
		printf("%" JSON_INTEGER_FORMAT "\n",
		    json_integer_value(json_object_get(rep, "pid")));
	json_decref(rep);
	return 0;
}

/* An info field as a person reads it. */
static void
info_value(const char *field, const json_t *v)
{
	char up[32];

	if (json_is_string(v)) {
		puts(json_string_value(v));
	} else if (strcmp(field, "uptime") == 0 && json_is_number(v)) {
		fmt_uptime(json_number_value(v), up, sizeof(up));
		puts(up);
	} else
		print_json(v);
}

static int
cmd_info(struct ctx *c)
{
	const char *field;
	json_t     *rep, *v;
	int         r;

	if ((r = request(c, simple_req("info", NULL, NULL), NULL, &rep)) != 0)
		return r;
	json_object_del(rep, "ok");
	if (c->o.json) {
		print_json(rep);
	} else {
		json_object_foreach(rep, field, v)
		{
			printf("%s: ", field);
			info_value(field, v);
		}
	}
	json_decref(rep);
	return 0;
}

/*
 * shutdown and reload: a request without arguments, and nothing to print
 * on success.  reload's error (code "config") is "FILE:LINE: reason".
 */
static int
cmd_plain(struct ctx *c)
{
	json_t *rep;
	int     r;

	r = request(c, simple_req(c->cmd->name, NULL, NULL), NULL, &rep);
	if (r != 0)
		return r;
	json_decref(rep);
	return 0;
}

/* ---- The command table ----------------------------------------------- */

/* ensure's options are start_opts + 1: all but --stdin. */
static const struct optdef start_opts[] = {
    {"stdin", OPT_STDIN, false},
    {"restart", OPT_RESTART, true},
    {"max-restarts", OPT_MAX_RESTARTS, true},
    {"max-seconds", OPT_MAX_SECONDS, true},
    {"stop-timeout", OPT_STOP_TIMEOUT, true},
    {"kind", OPT_KIND, true},
    {"wait-ready", OPT_WAIT_READY, false},
    {"publish", OPT_PUBLISH, true},
    {"ready-timeout", OPT_READY_TIMEOUT, true},
    {NULL, OPT_HELP, false},
};
static const struct optdef json_opts[] = {
    {"json", OPT_JSON, false},
    {NULL, OPT_HELP, false},
};
static const struct optdef signal_opts[] = {
    {"group", OPT_GROUP, false},
    {NULL, OPT_HELP, false},
};
static const struct optdef wait_opts[] = {
    {"gone", OPT_GONE, false},
    {"ready", OPT_READY, false},
    {"timeout", OPT_TIMEOUT, true},
    {NULL, OPT_HELP, false},
};

#define START_HELP                                                             \
	"  --restart POLICY  permanent, transient or temporary\n"              \
	"  --max-restarts N  restarts allowed within --max-seconds\n"          \
	"  --max-seconds S   the restart intensity window, in seconds\n"       \
	"  --stop-timeout S  seconds from the stop signal to SIGKILL\n"        \
	"  --kind KIND       a kind of keyvisor.conf(5): its settings, and\n"  \
	"                    its command unless CMD is given\n"                \
	"  --wait-ready      reply once the worker has said it is ready;\n"    \
	"                    exit 7 if it is not within the ready timeout\n"   \
	"                    (the daemon stops it), 1 if it exits first\n"     \
	"  --publish WHEN    start or ready: when lookups see KEY (it is\n"    \
	"                    reserved from the start either way)\n"            \
	"  --ready-timeout S seconds --wait-ready waits for READY\n"

static int cmd_help(struct ctx *c);

static const struct cmd cmds[] = {
    {"start", cmd_start, start_opts, 0, 1, {"KEY"}, true,
        "keyvisor [-n NAME] start KEY"
        " [--restart permanent|transient|temporary]\n"
        "                                    [--max-restarts N]"
        " [--max-seconds S]\n"
        "                                    [--stop-timeout S]"
        " [--kind KIND]\n"
        "                                    [--wait-ready]"
        " [--publish start|ready]\n"
        "                                    [--ready-timeout S]"
        " -- CMD [ARG...]\n"
        "       keyvisor [-n NAME] start --stdin [options] -- CMD [ARG...]",
        "start a worker for KEY, or for each key read from stdin",
        "Start a worker for KEY running CMD and print its pid.  With\n"
        "--stdin, start one worker per key read from stdin (one per line,\n"
        "blank lines skipped) and print \"KEY PID\" for each; in CMD, %k\n"
        "stands for the key and %% for a '%'.\n\n" START_HELP
        "  --stdin           read the keys from stdin\n"},
    {"ensure", cmd_start, start_opts + 1, 1, 1, {"KEY"}, true,
        "keyvisor [-n NAME] ensure KEY [options] -- CMD [ARG...]",
        "start a worker for KEY unless one is supervised",
        "Print the pid of KEY's worker, starting it first, as start does,\n"
        "if KEY is not supervised yet.\n\n" START_HELP},
    {"stop", cmd_stop, NULL, 1, 1, {"KEY"}, false,
        "keyvisor [-n NAME] stop KEY", "stop KEY's worker and forget KEY",
        "Stop KEY's worker and forget KEY; return once the worker has\n"
        "exited and its name is released.\n"},
    {"restart", cmd_stop, NULL, 1, 1, {"KEY"}, false,
        "keyvisor [-n NAME] restart KEY", "restart KEY's worker",
        "Stop KEY's worker (this is not a crash), start it again and\n"
        "print the new pid.  A failed or backing-off key starts at once.\n"},
    {"signal", cmd_signal, signal_opts, 2, 2, {"KEY", "SIG"}, false,
        "keyvisor [-n NAME] signal KEY SIG [--group]",
        "send a signal to KEY's worker",
        "Send SIG (HUP, SIGHUP or a number) to KEY's worker.\n\n"
        "  --group  signal the worker's process group\n"},
    {"touch", cmd_stop, NULL, 1, 1, {"KEY"}, false,
        "keyvisor [-n NAME] touch KEY", "reset KEY's idle lifetime (ttl)",
        "Count as activity of KEY's worker: its idle lifetime (the ttl of\n"
        "its kind) starts again, as when the worker says TOUCH.  Exit 1\n"
        "if KEY is not supervised.\n"},
    {"lookup", cmd_lookup, json_opts, 1, 1, {"KEY"}, false,
        "keyvisor [-n NAME] lookup KEY [--json]",
        "print KEY's pid, read from the registry",
        "Print the pid registered under KEY, read from the shared-memory\n"
        "registry without asking the daemon.\n\n"
        "  --json  the whole entry as a JSON object\n"},
    {"status", cmd_status, json_opts, 1, 1, {"KEY"}, false,
        "keyvisor [-n NAME] status KEY [--json]",
        "show what the daemon knows of KEY",
        "Show KEY's worker: pid, state, restarts, last exit, command and,\n"
        "when it has them, its kind, the value and status message it\n"
        "published, the time left on its ttl and watchdog, and\n"
        "\"published: no\" while lookups cannot see it yet.\n\n"
        "  --json  the daemon's worker object\n"},
    {"ls", cmd_ls, json_opts, 0, 1, {"PATTERN"}, false,
        "keyvisor [-n NAME] ls [PATTERN] [--json]", "list supervised keys",
        "List the supervised keys matching PATTERN (an fnmatch(3) glob),\n"
        "sorted by key: KEY PID STATE INCARNATION UPTIME LAST-EXIT, and\n"
        "KIND last when some worker has a kind.\n\n"
        "  --json  the daemon's array of worker objects\n"},
    {"count", cmd_count, NULL, 0, 1, {"PATTERN"}, false,
        "keyvisor [-n NAME] count [PATTERN]",
        "count registered names, read from the registry",
        "Print how many names matching PATTERN (an fnmatch(3) glob) the\n"
        "registry holds, read without asking the daemon.\n"},
    {"watch", cmd_watch, NULL, 0, 1, {"PATTERN"}, false,
        "keyvisor [-n NAME] watch [PATTERN]", "print events as they happen",
        "Print each event of the keys matching PATTERN as one JSON line,\n"
        "until interrupted or until the daemon goes away (exit 5).\n"},
    {"wait", cmd_wait, wait_opts, 1, 1, {"KEY"}, false,
        "keyvisor [-n NAME] wait KEY [--gone] [--ready] [--timeout S]",
        "wait until KEY runs, is ready, or is gone",
        "Wait until KEY has a running worker and print its pid.\n\n"
        "  --gone       wait until KEY is no longer supervised instead\n"
        "  --ready      wait until the worker has said it is ready\n"
        "  --timeout S  give up after S seconds (exit 7)\n"},
    {"kinds", cmd_kinds, json_opts, 0, 0, {NULL}, false,
        "keyvisor [-n NAME] kinds [--json]",
        "list the kinds of keyvisor.conf(5)",
        "List the kinds the daemon read from keyvisor.conf(5): NAME\n"
        "COMMAND RESTART RUNNING MAX READY PUBLISH, where RUNNING counts\n"
        "its workers, MAX is its max_children ('-': no limit of its own),\n"
        "READY is none or fd and PUBLISH is start or ready.\n\n"
        "  --json  the daemon's array of kind objects\n"},
    {"reload", cmd_plain, NULL, 0, 0, {NULL}, false,
        "keyvisor [-n NAME] reload", "read keyvisor.conf(5) again",
        "Make the daemon read its configuration file again, as SIGHUP does.\n"
        "Running workers are left alone; new starts and restarts use the\n"
        "new kinds.  On an error the daemon keeps its old configuration and\n"
        "reload prints \"keyvisor: FILE:LINE: reason\" (exit 2).\n"},
    {"info", cmd_info, json_opts, 0, 0, {NULL}, false,
        "keyvisor [-n NAME] info [--json]", "show the daemon's state",
        "Show the daemon's version, paths, counters and limits.\n\n"
        "  --json  the daemon's info object\n"},
    {"shutdown", cmd_plain, NULL, 0, 0, {NULL}, false,
        "keyvisor [-n NAME] shutdown", "stop every worker, then the daemon",
        "Ask the daemon to stop every worker and exit.\n"},
    {"route", cmd_route, NULL, 2, -1, {"KEY", "SHARD"}, false,
        "keyvisor route KEY SHARD...", "pick KEY's shard (no daemon needed)",
        "Print the SHARD that KEY belongs to by rendezvous hashing; every\n"
        "machine picks the same one.\n"},
    {"help", cmd_help, NULL, 0, 1, {"COMMAND"}, false,
        "keyvisor help [COMMAND]", "show a command's help",
        "Show COMMAND's usage and options.\n"},
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static const char global_help[] =
    "\noptions:\n"
    "  -n NAME    the instance (default: $KEYVISOR_INSTANCE, else default)\n"
    "  --help     this help; \"keyvisor help COMMAND\" shows a command's\n"
    "  --version  print \"keyvisor " KEYVISOR_VERSION "\"\n"
    "\nenvironment: KEYVISOR_INSTANCE, KEYVISOR_SOCKET, KEYVISOR_REGISTRY\n"
    "\nexit status: 0 success, 1 key not found (or the worker exited before\n"
    "it was ready), 2 usage, invalid key or configuration error, 3 already\n"
    "started, 4 capacity or max_children reached, 5 daemon not reachable,\n"
    "6 permission denied, 7 timed out, 8 exec failed.\n";

static const struct cmd *
cmd_find(const char *name)
{
	size_t i;

	for (i = 0; i < NCMDS; i++)
		if (strcmp(cmds[i].name, name) == 0)
			return &cmds[i];
	return NULL;
}

static int
show_help(const struct cmd *cmd)
{
	size_t i;

	print_usage(stdout, cmd);
	if (cmd != NULL) {
		printf("\n%s", cmd->help);
		return EXIT_OK;
	}
	fputs("       keyvisor help [COMMAND]\n"
	      "       keyvisor --help | --version\n\ncommands:\n",
	    stdout);
	for (i = 0; i < NCMDS; i++)
		printf("  %-9s %s\n", cmds[i].name, cmds[i].summary);
	fputs(global_help, stdout);
	return EXIT_OK;
}

static int
cmd_help(struct ctx *c)
{
	const struct cmd *cmd = NULL;

	if (c->o.npos > 0 && (cmd = cmd_find(c->o.pos[0])) == NULL)
		return usage_error(
		    c->cmd, "help: unknown command '%s'", c->o.pos[0]);
	return show_help(cmd);
}

/* ---- main ------------------------------------------------------------ */

/*
 * The options before the command.  Returns -1 with *NEXT at the command,
 * or the exit status to end with (--help, --version, a usage error).
 */
static int
global_opts(struct ctx *c, int argc, char **argv, int *next)
{
	int i;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0)
			return show_help(NULL);
		if (strcmp(argv[i], "--version") == 0) {
			puts("keyvisor " KEYVISOR_VERSION);
			return EXIT_OK;
		}
		if (strncmp(argv[i], "-n", 2) != 0)
			return usage_error(
			    NULL, "unknown option '%s'", argv[i]);
		if (argv[i][2] != '\0')
			c->name = argv[i] + 2;
		else if (i + 1 < argc)
			c->name = argv[++i];
		else
			return usage_error(
			    NULL, "option '-n' requires an argument");
	}
	if (i == argc)
		return usage_error(NULL, "missing command");
	*next = i;
	return -1;
}

/* stdout is data: failing to write it all is a failure. */
static int
finish(int status)
{
	if (fflush(stdout) == EOF || ferror(stdout)) {
		warn("unable to write to stdout");
		if (status == EXIT_OK)
			status = EXIT_INTERNAL;
	}
	return status;
}

int
main(int argc, char **argv)
{
	struct ctx c = {.conn.fd = -1, .deadline = NO_DEADLINE};
	int        i = 0, r;

	if ((r = global_opts(&c, argc, argv, &i)) >= 0)
		return finish(r);
	if ((c.cmd = cmd_find(argv[i])) == NULL)
		return usage_error(NULL, "unknown command '%s'", argv[i]);
	r = parse_args(&c, argc - i - 1, argv + i + 1);
	if (r == 0)
		r = c.o.help ? show_help(c.cmd) : c.cmd->run(&c);
	if (c.conn.fd != -1)
		close(c.conn.fd);
	free(c.conn.buf);
	free(c.o.pos);
	free(c.cwd);
	return finish(r);
}
