/*
 * conf: keyvisor.conf, read with libinih into plain structs.
 *
 * inih finds the keys and values and strips comments; everything else is
 * ours.  inih reads the text through reader() below, one line per call,
 * and reader() counts the lines (Debian's libinih is built without
 * INI_HANDLER_LINENO, so the handler is never told its line), checks each
 * raw line before inih sees it, and opens the sections.  handler() then
 * sets one key.  The first error ends the parse: reader() reports end of
 * file from then on, so the message is always about the first bad line.
 *
 * Invariants of conf_parse():
 *  - On success every field has been checked: numbers and durations are in
 *    range, users and groups exist, commands hold no %-escape other than
 *    %k and %%, limits have soft <= hard.
 *  - On failure nothing is returned or leaked, and ERR holds one line,
 *    "FILE:LINE: [SECTION]: KEY: what", the parts that do not apply left
 *    out.  Every byte outside 0x20..0x7e is replaced by '?', as in
 *    proto.c, so the line can go into a JSON reply (json_string() refuses
 *    invalid UTF-8) and a log line as it is, and truncating it to ERRLEN
 *    cannot cut a UTF-8 sequence in half.
 *
 * DECISIONS (keyvisor.conf(5) says the same)
 *  - An empty value ("key =") is an error for every key, environment
 *    included: there is no inherited list for "environment =" to reset, so
 *    it could only mean nothing, and more likely is a mistake.
 *  - A repeated key is an error, except environment, whose lines add up; a
 *    variable set twice in a kind keeps its last value.
 *  - group defaults to the user's primary group, so has_group is true
 *    whenever has_user is.  A numeric user without a passwd entry has no
 *    primary group, and must then name its group.  A user or group made of
 *    digits only is a number, never a name.
 *  - Only commands are %-expanded; environment and directory are literal.
 *  - Numbers are decimal digits only (no sign, no blanks, no 0x), modes are
 *    octal digits, durations are what svc_parse_duration_ms() takes, up to
 *    DURATION_MAX_S as in the protocol.
 *  - Variable names in environment are [A-Za-z_][A-Za-z0-9_]*.
 *
 * INIH QUIRKS, AND WHAT WE DO ABOUT THEM (libinih 55, Debian 12)
 *  - Long lines.  inih reads into a buffer of ini_max_line bytes (200 in
 *    Debian's build, so 198 bytes of text) and takes whatever does not fit
 *    as the next line: a long command would be split in two, its tail read
 *    as a line of its own, and every later line number would be off.
 *    reader() is told the buffer's size and refuses a longer line.
 *  - Continuation lines.  INI_ALLOW_MULTILINE is on: an indented line after
 *    a key is passed to the handler as that key again, so "  restart =
 *    temporary" under "command = x" would become a second command value.
 *    reader() refuses every indented line that is not a comment.
 *  - Sections.  The handler hears only of keys, so an empty [kind x] (or an
 *    empty, misspelt [kidn x]) would go unnoticed; inih also truncates a
 *    section's name to 49 bytes and ignores any text after its ']'.
 *    reader() parses section headers itself and refuses trailing text.
 *  - Inline comments start at a ';' after a blank, even inside quotes: in
 *    'a ;b' the value ends at 'a.  A '#' starts a comment only at the start
 *    of a line.  "key: value" is taken as "key = value".
 *  - Duplicate keys reach the handler each time; we count them.
 */
#include "conf.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "paths.h"
#include "proto.h"

#define NUMBER_MAX     (UINT32_MAX / 2) /* as keyvisord's --capacity takes */
#define DURATION_MAX_S 1000000000u      /* about 31 years, as in proto.c */
#define QUOTE_MAX      40               /* bytes of a bad value quoted back */
#define KEYS_MAX       32               /* keys a section knows */
#define LOOKUP_BUF_MAX (1024 * 1024)    /* for getpwnam_r(3), getgrnam_r(3) */

enum sect {
	SECT_NONE, /* before the first section */
	SECT_DAEMON,
	SECT_KIND,
};

/* The state of one conf_parse(). */
struct parse {
	struct conf *c;
	const char  *name;           /* the file, for messages */
	const char  *next;           /* the text inih has not read yet */
	int          lineno;         /* the line inih is on */
	enum sect    sect;           /* the section it is in */
	size_t       kind;           /* c->kinds[kind] when sect is SECT_KIND */
	size_t       kinds_cap;      /* elements allocated at c->kinds */
	int          daemon_line;    /* of [keyvisord]; 0 before */
	int          seen[KEYS_MAX]; /* where each key was set; 0: not yet */
	int          user_line;      /* where the kind's user was set */
	bool         user_gid_known; /* the user has a passwd entry */
	gid_t        user_gid;       /* its primary group */
	const char  *key;            /* the key being set, for messages */
	char         label[QUOTE_MAX + 8]; /* "[kind K]"; "" outside */
	char         quote[QUOTE_MAX + 4]; /* shorten()'s result */
	int          err;                  /* 0, or what conf_parse returns */
	char        *errbuf;
	size_t       errlen;
};

/* A key: its setter, an argument for the setter, and whether it adds up. */
struct key {
	const char *name;
	int (*set)(struct parse *p, const char *v, int arg);
	int  arg;
	bool repeat;
};

/* Make BUF printable ASCII: see the invariants above. */
static void
tame(char *buf)
{
	for (; *buf != '\0'; buf++)
		if ((unsigned char)*buf < 0x20 || (unsigned char)*buf > 0x7e)
			*buf = '?';
}

__attribute__((format(printf, 3, 4))) static void
say(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	tame(err);
}

/*
 * Record the first error, R, as "NAME:LINE: [SECTION]: KEY: " and the
 * message; later ones are dropped.  Returns the first error's R.
 */
static int
vfail(struct parse *p, int r, const char *fmt, va_list ap)
{
	char msg[256], at[16] = "";

	if (p->err != 0)
		return p->err;
	p->err = r;
	if (p->errbuf == NULL || p->errlen == 0)
		return r;
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	if (p->lineno > 0)
		(void)snprintf(at, sizeof(at), ":%d", p->lineno);
	say(p->errbuf, p->errlen, "%s%s: %s%s%s%s%s", p->name, at, p->label,
	    p->label[0] != '\0' ? ": " : "", p->key != NULL ? p->key : "",
	    p->key != NULL ? ": " : "", msg);
	return r;
}

__attribute__((format(printf, 2, 3))) static int
fail(struct parse *p, const char *fmt, ...)
{
	va_list ap;
	int     r;

	va_start(ap, fmt);
	r = vfail(p, -EINVAL, fmt, ap);
	va_end(ap);
	return r;
}

__attribute__((format(printf, 3, 4))) static int
fail_errno(struct parse *p, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	r = vfail(p, r, fmt, ap);
	va_end(ap);
	return r;
}

static int
oom(struct parse *p)
{
	return fail_errno(p, -ENOMEM, "out of memory");
}

/* V for a message: at most QUOTE_MAX bytes, "..." marking a cut. */
static const char *
shorten(struct parse *p, const char *v)
{
	if (strlen(v) <= QUOTE_MAX)
		return v;
	(void)snprintf(p->quote, sizeof(p->quote), "%.*s...", QUOTE_MAX, v);
	return p->quote;
}

static struct conf_kind *
cur(struct parse *p)
{
	return &p->c->kinds[p->kind];
}

/* ---- words ------------------------------------------------------------- */

/*
 * The splitter's output.  With argv NULL it only measures: argc words
 * needing len bytes, their NULs included.
 */
struct words {
	char **argv;
	char  *buf;
	size_t argc;
	size_t len;    /* bytes of buf used */
	size_t start;  /* where the current word began */
	bool   inword; /* a word has begun, if only with '' */
};

static void
put(struct words *w, const char *s, size_t n)
{
	if (!w->inword) {
		w->inword = true;
		w->start = w->len;
	}
	if (w->buf != NULL)
		memcpy(w->buf + w->len, s, n);
	w->len += n;
}

static void
endword(struct words *w)
{
	if (!w->inword)
		return;
	if (w->buf != NULL) {
		w->buf[w->len] = '\0';
		w->argv[w->argc] = w->buf + w->start;
	}
	w->len++;
	w->argc++;
	w->inword = false;
}

/* After an opening '"': returns past the closing one, NULL if none. */
static const char *
dquote(const char *s, struct words *w)
{
	put(w, s, 0); /* "" is a word */
	for (;;) {
		if (*s == '\0')
			return NULL;
		if (*s == '"')
			return s + 1;
		if (*s == '\\' && s[1] != '\0' && strchr("$`\"\\\n", s[1])) {
			if (s[1] != '\n') /* backslash-newline is removed */
				put(w, s + 1, 1);
			s += 2;
		} else {
			put(w, s++, 1);
		}
	}
}

/* Returns NULL, or why S cannot be split. */
static const char *
split(const char *s, struct words *w)
{
	const char *e;

	for (;;) {
		switch (*s) {
		case '\0':
			endword(w);
			return NULL;
		case ' ':
		case '\t':
		case '\n':
			endword(w);
			s++;
			break;
		case '\'':
			if ((e = strchr(s + 1, '\'')) == NULL)
				return "unterminated single quote";
			put(w, s + 1, (size_t)(e - s - 1));
			s = e + 1;
			break;
		case '"':
			if ((s = dquote(s + 1, w)) == NULL)
				return "unterminated double quote";
			break;
		case '\\':
			if (s[1] == '\0')
				return "backslash at the end";
			if (s[1] != '\n')
				put(w, s + 1, 1);
			s += 2;
			break;
		default:
			put(w, s++, 1);
		}
	}
}

int
conf_split(const char *s, char ***argv, size_t *argc, char *err, size_t errlen)
{
	struct words w = {0};
	const char  *why;
	char       **v;
	size_t       n;

	*argv = NULL;
	*argc = 0;
	if ((why = split(s, &w)) != NULL) {
		say(err, errlen, "%s", why);
		return -EINVAL;
	}
	n = w.argc;
	v = malloc((n + 1) * sizeof(*v) + w.len);
	if (v == NULL)
		return -ENOMEM;
	w = (struct words){.argv = v, .buf = (char *)(v + n + 1)};
	(void)split(s, &w);
	v[n] = NULL;
	*argv = v;
	*argc = n;
	return 0;
}

/* Bytes WORD needs once expanded, its NUL included; SIZE_MAX: too many. */
static size_t
expanded_len(const char *word, size_t keylen)
{
	size_t n = 1;

	while (*word != '\0') {
		if (word[0] == '%' && word[1] == 'k') {
			if (__builtin_add_overflow(n, keylen, &n))
				return SIZE_MAX;
			word += 2;
		} else {
			word += word[0] == '%' && word[1] == '%' ? 2 : 1;
			n++;
		}
	}
	return n;
}

/* Write WORD expanded at O; returns the byte after its NUL. */
static char *
expand_word(char *o, const char *word, const char *key, size_t keylen)
{
	while (*word != '\0') {
		if (word[0] == '%' && word[1] == 'k') {
			memcpy(o, key, keylen);
			o += keylen;
			word += 2;
		} else {
			*o++ = *word;
			word += word[0] == '%' && word[1] == '%' ? 2 : 1;
		}
	}
	*o++ = '\0';
	return o;
}

char **
conf_expand(char *const *argv, size_t argc, const char *key)
{
	size_t i, need, keylen;
	char **v, *o;

	key = key != NULL ? key : "";
	keylen = strlen(key);
	if (__builtin_mul_overflow(argc + 1, sizeof(*v), &need))
		return NULL;
	for (i = 0; i < argc; i++)
		if (__builtin_add_overflow(
		        need, expanded_len(argv[i], keylen), &need))
			return NULL;
	if ((v = malloc(need)) == NULL)
		return NULL;
	o = (char *)(v + argc + 1);
	for (i = 0; i < argc; i++) {
		v[i] = o;
		o = expand_word(o, argv[i], key, keylen);
	}
	v[argc] = NULL;
	return v;
}

void
conf_argv_free(char **argv)
{
	free(argv);
}

/* ---- values ------------------------------------------------------------ */

/* Decimal digits S to *OUT.  Returns 0, or -EINVAL for more than MAX. */
static int
digits(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t n = 0, d;

	if (*s == '\0')
		return -EINVAL;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		d = (uint64_t)(*s - '0');
		if (d > max || n > (max - d) / 10)
			return -EINVAL;
		n = n * 10 + d;
	}
	*out = n;
	return 0;
}

static int
number(
    struct parse *p, const char *v, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t n;

	if (digits(v, max, &n) < 0 || n < min)
		return fail(p,
		    "expected a number from %" PRIu32 " to %" PRIu32
		    ", got \"%s\"",
		    min, max, shorten(p, v));
	*out = (uint32_t)n;
	return 0;
}

static int
octal(struct parse *p, const char *v, mode_t *out)
{
	const char *s = v;
	mode_t      m = 0;

	for (; *s >= '0' && *s <= '7' && m <= 0777; s++)
		m = m * 8 + (mode_t)(*s - '0');
	if (s == v || *s != '\0' || m > 0777)
		return fail(p,
		    "expected an octal mode from 0 to 0777, got \"%s\"",
		    shorten(p, v));
	*out = m;
	return 0;
}

static int
duration(struct parse *p, const char *v, uint64_t *out)
{
	uint64_t ms;

	if (svc_parse_duration_ms(v, &ms) < 0 ||
	    ms > (uint64_t)DURATION_MAX_S * 1000)
		return fail(p,
		    "expected seconds from 0 to %u, 3 decimals at most, "
		    "got \"%s\"",
		    DURATION_MAX_S, shorten(p, v));
	*out = ms;
	return 0;
}

/* ONE of NAMES (NULL-terminated) to its index, or fail with WANT. */
static int
choice(
    struct parse *p, const char *v, const char *const *names, const char *want)
{
	int i;

	for (i = 0; names[i] != NULL; i++)
		if (strcmp(v, names[i]) == 0)
			return i;
	return fail(p, "expected %s, got \"%s\"", want, shorten(p, v));
}

/* ---- users and groups -------------------------------------------------- */

/*
 * The passwd entry of NAME, or of UID when NAME is NULL.  Returns 0 with
 * *BUF to free after use, -ENOENT when there is none, or -errno.
 */
static int
pw_lookup(const char *name, uid_t uid, struct passwd *pw, char **bufp)
{
	struct passwd *res = NULL;
	size_t         len;
	char          *buf;
	int            r = ERANGE;

	for (len = 1024; r == ERANGE && len <= LOOKUP_BUF_MAX; len *= 2) {
		if ((buf = malloc(len)) == NULL)
			return -ENOMEM;
		r = name != NULL ? getpwnam_r(name, pw, buf, len, &res)
		                 : getpwuid_r(uid, pw, buf, len, &res);
		if (r == 0 && res != NULL) {
			*bufp = buf;
			return 0;
		}
		free(buf);
	}
	/* getpwnam_r(3): "not found" may also be ENOENT, ESRCH, ... */
	return r == 0 || r == ENOENT || r == ESRCH ? -ENOENT : -r;
}

/* The gid of group NAME.  Returns 0, -ENOENT when there is none, or -errno. */
static int
gr_lookup(const char *name, gid_t *gid)
{
	struct group gr, *res = NULL;
	size_t       len;
	char        *buf;
	int          r = ERANGE;

	for (len = 1024; r == ERANGE && len <= LOOKUP_BUF_MAX; len *= 2) {
		if ((buf = malloc(len)) == NULL)
			return -ENOMEM;
		r = getgrnam_r(name, &gr, buf, len, &res);
		if (r == 0 && res != NULL)
			*gid = gr.gr_gid;
		free(buf);
		if (r == 0 && res != NULL)
			return 0;
	}
	return r == 0 || r == ENOENT || r == ESRCH ? -ENOENT : -r;
}

/* A group's name or number to *GID. */
static int
group(struct parse *p, const char *v, gid_t *gid)
{
	uint64_t n;
	int      r;

	if (digits(v, UINT32_MAX - 1, &n) == 0) { /* (gid_t)-1 is no gid */
		*gid = (gid_t)n;
		return 0;
	}
	if ((r = gr_lookup(v, gid)) == -ENOENT)
		return fail(p, "unknown group \"%s\"", shorten(p, v));
	if (r == -ENOMEM)
		return oom(p);
	if (r < 0)
		return fail_errno(p, r, "unable to look up group \"%s\": %s",
		    shorten(p, v), strerror(-r));
	return 0;
}

static int
set_user(struct parse *p, const char *v, int arg)
{
	struct conf_kind *k = cur(p);
	struct passwd     pw;
	uint64_t          n = 0;
	bool              numeric;
	char             *buf = NULL;
	int               r;

	numeric = digits(v, UINT32_MAX - 1, &n) == 0;
	r = pw_lookup(numeric ? NULL : v, (uid_t)n, &pw, &buf);
	if (r == -ENOENT && !numeric)
		return fail(p, "unknown user \"%s\"", shorten(p, v));
	if (r == -ENOMEM)
		return oom(p);
	if (r < 0 && r != -ENOENT)
		return fail_errno(p, r, "unable to look up user \"%s\": %s",
		    shorten(p, v), strerror(-r));
	k->has_user = true;
	k->uid = (uid_t)n;
	p->user_line = p->lineno;
	if (r == -ENOENT) /* a number with no passwd entry */
		return 0;
	k->uid = pw.pw_uid;
	p->user_gid_known = true;
	p->user_gid = pw.pw_gid;
	k->user_name = strdup(pw.pw_name);
	free(buf);
	return k->user_name != NULL ? 0 : oom(p);
}

static int
set_group(struct parse *p, const char *v, int arg)
{
	struct conf_kind *k = cur(p);
	int               r;

	if ((r = group(p, v, &k->gid)) < 0)
		return r;
	k->has_group = true;
	return 0;
}

/* ---- [keyvisord] ------------------------------------------------------- */

static int
set_name(struct parse *p, const char *v, int arg)
{
	char **dst = arg ? &p->c->registry : &p->c->instance;

	if (!paths_name_ok(v))
		return fail(p,
		    "expected 1 to %d bytes of A-Z a-z 0-9 . _ - not "
		    "starting with '.', got \"%s\"",
		    PATHS_NAME_MAX, shorten(p, v));
	if ((*dst = strdup(v)) == NULL)
		return oom(p);
	return 0;
}

static int
set_count(struct parse *p, const char *v, int arg)
{
	struct conf *c = p->c;

	if (arg == 0) {
		c->has_capacity = true;
		return number(p, v, 1, NUMBER_MAX, &c->capacity);
	}
	c->has_max_children = true;
	return number(p, v, 1, NUMBER_MAX, &c->max_children);
}

static int
set_socket_group(struct parse *p, const char *v, int arg)
{
	struct conf *c = p->c;
	int          r;

	if ((r = group(p, v, &c->socket_gid)) < 0)
		return r;
	c->has_socket_gid = true;
	if ((c->socket_group = strdup(v)) == NULL)
		return oom(p);
	return 0;
}

static int
set_registry_mode(struct parse *p, const char *v, int arg)
{
	return octal(p, v, &p->c->registry_mode);
}

static int
set_log_level(struct parse *p, const char *v, int arg)
{
	static const char *const names[] = {
	    "error", "warn", "info", "debug", NULL};
	int r;

	r = choice(p, v, names, "error, warn, info or debug");
	if (r < 0)
		return r;
	p->c->log_level = r;
	return 0;
}

static int
set_rate(struct parse *p, const char *v, int arg)
{
	if (arg == 0)
		return number(p, v, 0, NUMBER_MAX, &p->c->restart_rate);
	return number(p, v, 1, NUMBER_MAX, &p->c->restart_burst);
}

/* ---- [kind NAME] ------------------------------------------------------- */

/* Only %k and %% may follow a '%' in a command. */
static int
escapes(struct parse *p, const char *word)
{
	const char *s;

	for (s = strchr(word, '%'); s != NULL; s = strchr(s + 2, '%')) {
		if (s[1] == '\0')
			return fail(p, "'%%' at the end of a word: write %%%% "
			               "for a literal '%%'");
		if (s[1] != 'k' && s[1] != '%')
			return fail(p,
			    "unknown escape %%%c: only %%k and %%%% "
			    "are expanded",
			    s[1]);
	}
	return 0;
}

static int
set_command(struct parse *p, const char *v, int arg)
{
	struct conf_kind *k = cur(p);
	char              why[64];
	size_t            i;
	int               r;

	r = conf_split(v, &k->argv, &k->argc, why, sizeof(why));
	if (r == -ENOMEM)
		return oom(p);
	if (r < 0)
		return fail(p, "%s", why);
	if (k->argc == 0 || k->argv[0][0] == '\0')
		return fail(p, "the program's name is empty");
	for (i = 0; i < k->argc; i++)
		if ((r = escapes(p, k->argv[i])) < 0)
			return r;
	return 0;
}

static int
set_restart(struct parse *p, const char *v, int arg)
{
	if (svc_restart_parse(v, &cur(p)->policy.restart) < 0)
		return fail(p,
		    "expected permanent, transient or temporary, got \"%s\"",
		    shorten(p, v));
	return 0;
}

static int
set_max_restarts(struct parse *p, const char *v, int arg)
{
	return number(p, v, 0, SVC_MAX_RESTARTS, &cur(p)->policy.max_restarts);
}

/* ARG is the offset of a uint64_t in struct conf_kind. */
static int
set_duration(struct parse *p, const char *v, int arg)
{
	return duration(p, v, (uint64_t *)((char *)cur(p) + arg));
}

static int
set_stop_signal(struct parse *p, const char *v, int arg)
{
	int sig = proto_signal_parse(v);

	if (sig < 1)
		return fail(p,
		    "expected a signal name or number from 1 to %d, got \"%s\"",
		    SIGRTMAX, shorten(p, v));
	cur(p)->policy.stop_signal = sig;
	return 0;
}

static int
set_max_children(struct parse *p, const char *v, int arg)
{
	return number(p, v, 0, NUMBER_MAX, &cur(p)->max_children);
}

static int
set_directory(struct parse *p, const char *v, int arg)
{
	struct conf_kind *k = cur(p);

	if (v[0] != '/')
		return fail(
		    p, "expected an absolute path, got \"%s\"", shorten(p, v));
	if (strlen(v) >= PATH_MAX)
		return fail(p, "longer than %d bytes", PATH_MAX - 1);
	if ((k->directory = strdup(v)) == NULL)
		return oom(p);
	return 0;
}

/* ASCII only, whatever the locale: kind names go into the registry. */
static bool
alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

/* The length of the variable name WORD starts with, or 0 if invalid. */
static size_t
env_name(const char *word)
{
	size_t n = 0;

	if (word[0] >= '0' && word[0] <= '9')
		return 0;
	while (word[n] == '_' || alnum(word[n]))
		n++;
	return word[n] == '=' ? n : 0;
}

/* Add or replace the variable WORD ("NAME=VALUE"). */
static int
env_put(struct parse *p, struct conf_kind *k, const char *word)
{
	size_t n = env_name(word), i;
	char  *dup, **env;

	if (n == 0)
		return fail(p,
		    "expected NAME=VALUE with NAME of A-Z a-z 0-9 _, "
		    "got \"%s\"",
		    shorten(p, word));
	if ((dup = strdup(word)) == NULL)
		return oom(p);
	for (i = 0; i < k->envc; i++) {
		if (strncmp(k->env[i], word, n + 1) == 0) {
			free(k->env[i]);
			k->env[i] = dup;
			return 0;
		}
	}
	if (k->envc == CONF_ENV_MAX) {
		free(dup);
		return fail(p, "more than %d variables", CONF_ENV_MAX);
	}
	if ((env = realloc(k->env, (k->envc + 2) * sizeof(*env))) == NULL) {
		free(dup);
		return oom(p);
	}
	env[k->envc++] = dup;
	env[k->envc] = NULL;
	k->env = env;
	return 0;
}

static int
set_environment(struct parse *p, const char *v, int arg)
{
	char   why[64], **w;
	size_t n, i;
	int    r;

	r = conf_split(v, &w, &n, why, sizeof(why));
	if (r == -ENOMEM)
		return oom(p);
	if (r < 0)
		return fail(p, "%s", why);
	for (i = 0; i < n && r == 0; i++)
		r = env_put(p, cur(p), w[i]);
	conf_argv_free(w);
	return r;
}

static int
set_umask(struct parse *p, const char *v, int arg)
{
	cur(p)->has_umask = true;
	return octal(p, v, &cur(p)->umask);
}

/* N bytes at S: digits below RLIM_INFINITY, or "infinity". */
static int
rlim_value(const char *s, size_t n, rlim_t *out)
{
	char     buf[24];
	uint64_t v;

	if (n == 8 && memcmp(s, "infinity", 8) == 0) {
		*out = RLIM_INFINITY;
		return 0;
	}
	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (digits(buf, (uint64_t)RLIM_INFINITY - 1, &v) < 0)
		return -EINVAL;
	*out = (rlim_t)v;
	return 0;
}

/* ARG is the RLIMIT_* resource. */
static int
set_limit(struct parse *p, const char *v, int arg)
{
	struct conf_kind *k = cur(p);
	struct rlimit     rl;
	const char       *colon = strchr(v, ':');
	size_t            n = colon != NULL ? (size_t)(colon - v) : strlen(v);

	if (rlim_value(v, n, &rl.rlim_cur) < 0 ||
	    rlim_value(colon != NULL ? colon + 1 : v,
	        strlen(colon != NULL ? colon + 1 : v), &rl.rlim_max) < 0)
		return fail(p, "expected N, SOFT:HARD or infinity, got \"%s\"",
		    shorten(p, v));
	if (rl.rlim_cur > rl.rlim_max)
		return fail(p, "the soft limit is above the hard one in \"%s\"",
		    shorten(p, v));
	if (k->nlimits == CONF_LIMIT_MAX) /* each limit_ key is set once */
		return fail(p, "more than %d limits", CONF_LIMIT_MAX);
	k->limits[k->nlimits].resource = arg;
	k->limits[k->nlimits++].lim = rl;
	return 0;
}

static int
set_ready(struct parse *p, const char *v, int arg)
{
	static const char *const names[] = {"none", "fd", NULL};
	int                      r;

	if ((r = choice(p, v, names, "none or fd")) < 0)
		return r;
	cur(p)->ready_fd = r == 1;
	return 0;
}

static int
set_publish(struct parse *p, const char *v, int arg)
{
	static const char *const names[] = {"start", "ready", NULL};
	int                      r;

	if ((r = choice(p, v, names, "start or ready")) < 0)
		return r;
	cur(p)->publish_ready = r == 1;
	return 0;
}

/* ---- keys and sections ------------------------------------------------- */

#define KO(f) ((int)offsetof(struct conf_kind, f))

static const struct key daemon_keys[] = {
    {"instance", set_name, 0, false},
    {"registry", set_name, 1, false},
    {"capacity", set_count, 0, false},
    {"max_children", set_count, 1, false},
    {"socket_group", set_socket_group, 0, false},
    {"registry_mode", set_registry_mode, 0, false},
    {"log_level", set_log_level, 0, false},
    {"restart_rate", set_rate, 0, false},
    {"restart_burst", set_rate, 1, false},
    {NULL, NULL, 0, false},
};

static const struct key kind_keys[] = {
    {"command", set_command, 0, false},
    {"restart", set_restart, 0, false},
    {"max_restarts", set_max_restarts, 0, false},
    {"max_seconds", set_duration, KO(policy.max_seconds_ms), false},
    {"restart_delay", set_duration, KO(policy.restart_delay_ms), false},
    {"backoff_max", set_duration, KO(policy.backoff_max_ms), false},
    {"backoff_reset", set_duration, KO(policy.backoff_reset_ms), false},
    {"stop_signal", set_stop_signal, 0, false},
    {"stop_timeout", set_duration, KO(policy.stop_timeout_ms), false},
    {"max_children", set_max_children, 0, false},
    {"user", set_user, 0, false},
    {"group", set_group, 0, false},
    {"directory", set_directory, 0, false},
    {"environment", set_environment, 0, true},
    {"umask", set_umask, 0, false},
    {"limit_nofile", set_limit, RLIMIT_NOFILE, false},
    {"limit_nproc", set_limit, RLIMIT_NPROC, false},
    {"limit_core", set_limit, RLIMIT_CORE, false},
    {"limit_as", set_limit, RLIMIT_AS, false},
    {"limit_cpu", set_limit, RLIMIT_CPU, false},
    {"limit_data", set_limit, RLIMIT_DATA, false},
    {"limit_fsize", set_limit, RLIMIT_FSIZE, false},
    {"limit_memlock", set_limit, RLIMIT_MEMLOCK, false},
    {"limit_stack", set_limit, RLIMIT_STACK, false},
    {"ttl", set_duration, KO(ttl_ms), false},
    {"watchdog", set_duration, KO(watchdog_ms), false},
    {"ready", set_ready, 0, false},
    {"ready_timeout", set_duration, KO(ready_timeout_ms), false},
    {"publish", set_publish, 0, false},
    {NULL, NULL, 0, false},
};

_Static_assert(sizeof(kind_keys) / sizeof(kind_keys[0]) <= KEYS_MAX,
    "seen[] holds a line for each key");
_Static_assert(sizeof(daemon_keys) / sizeof(daemon_keys[0]) <= KEYS_MAX,
    "seen[] holds a line for each key");

/* Set one key of the current section; returns 0 or the error. */
static int
set_key(struct parse *p, const char *name, const char *value)
{
	const struct key *keys, *k;
	int              *seen;

	if (value == NULL) /* a build with INI_ALLOW_NO_VALUE */
		return fail(p, "expected key = value");
	if (p->sect == SECT_NONE)
		return fail(p, "key outside any section");
	keys = p->sect == SECT_DAEMON ? daemon_keys : kind_keys;
	for (k = keys; k->name != NULL && strcmp(k->name, name) != 0; k++)
		;
	if (k->name == NULL)
		return fail(p, "unknown key");
	seen = &p->seen[k - keys];
	if (*seen != 0 && !k->repeat)
		return fail(p, "repeated (first set on line %d)", *seen);
	if (*seen == 0)
		*seen = p->lineno;
	if (value[0] == '\0')
		return fail(p, "empty value");
	return k->set(p, value, k->arg);
}

static int
handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;
	int           r;

	(void)section; /* reader() follows the sections: see INIH QUIRKS */
	if (p->err != 0)
		return 0;
	p->key = name;
	r = set_key(p, name, value);
	p->key = NULL;
	return r == 0;
}

/* The end of a kind's section: what depends on more than one key. */
static int
finish_kind(struct parse *p)
{
	struct conf_kind *k = cur(p);

	if (!k->has_user || k->has_group)
		return 0;
	if (p->user_gid_known) {
		k->gid = p->user_gid;
		k->has_group = true;
		return 0;
	}
	p->lineno = p->user_line; /* the parse ends here */
	p->key = "user";
	return fail(p, "uid %u has no passwd entry, so group must be set",
	    (unsigned)k->uid);
}

static bool
kind_name_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > KV_KIND_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (!alnum(s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
			return false;
	return true;
}

static int
open_kind(struct parse *p, const char *name, size_t n)
{
	struct conf      *c = p->c;
	struct conf_kind *k;
	size_t            i;

	if (!kind_name_ok(name, n))
		return fail(p,
		    "invalid kind name: expected 1 to %d bytes of "
		    "A-Z a-z 0-9 _ . -",
		    KV_KIND_MAX);
	for (i = 0; i < c->nkinds; i++)
		if (strlen(c->kinds[i].name) == n &&
		    memcmp(c->kinds[i].name, name, n) == 0)
			return fail(p, "duplicate section (first on line %d)",
			    c->kinds[i].line);
	if (c->nkinds == CONF_KINDS_MAX)
		return fail(p, "more than %d kinds", CONF_KINDS_MAX);
	if (c->nkinds == p->kinds_cap) {
		k = reallocarray(c->kinds, p->kinds_cap * 2 + 4, sizeof(*k));
		if (k == NULL)
			return oom(p);
		c->kinds = k;
		p->kinds_cap = p->kinds_cap * 2 + 4;
	}
	k = &c->kinds[c->nkinds];
	*k = (struct conf_kind){.policy = svc_policy_default(),
	    .ready_timeout_ms = 10000,
	    .line = p->lineno};
	memcpy(k->name, name, n);
	p->kind = c->nkinds++;
	p->sect = SECT_KIND;
	return 0;
}

/* The N bytes of a header between '[' and ']'. */
static int
open_section(struct parse *p, const char *name, size_t n)
{
	if (n == 9 && memcmp(name, "keyvisord", 9) == 0) {
		if (p->daemon_line != 0)
			return fail(p, "duplicate section (first on line %d)",
			    p->daemon_line);
		p->daemon_line = p->lineno;
		p->sect = SECT_DAEMON;
		return 0;
	}
	if (n >= 5 && memcmp(name, "kind ", 5) == 0)
		return open_kind(p, name + 5, n - 5);
	return fail(p, "unknown section");
}

/*
 * Where inih's find_chars_or_comment() stops: the first of CHARS, or a ';'
 * after a blank (an inline comment), or END.
 */
static const char *
scan(const char *s, const char *end, const char *chars)
{
	bool blank = false;

	for (; s < end && !strchr(chars, *s) && !(blank && *s == ';'); s++)
		blank = isspace((unsigned char)*s);
	return s;
}

/* A header line, S just past its '['. */
static int
section(struct parse *p, const char *s, const char *end)
{
	const char *close = scan(s, end, "]"), *t;
	int         n = (int)(close - s);

	if (p->sect == SECT_KIND && finish_kind(p) < 0)
		return p->err;
	p->sect = SECT_NONE;
	memset(p->seen, 0, sizeof(p->seen));
	p->user_gid_known = false;
	p->label[0] = '\0';
	if (close == end || *close != ']')
		return fail(p, "section header without ']'");
	if (n > QUOTE_MAX)
		(void)snprintf(
		    p->label, sizeof(p->label), "[%.*s...]", QUOTE_MAX, s);
	else
		(void)snprintf(p->label, sizeof(p->label), "[%.*s]", n, s);
	for (t = close + 1; t < end && isspace((unsigned char)*t); t++)
		;
	if (t < end && *t != ';' && *t != '#')
		return fail(p, "text after ']'");
	return open_section(p, s, (size_t)n);
}

/* Check the raw line S (LEN bytes, no newline) before inih reads it. */
static int
check_line(struct parse *p, const char *s, size_t len)
{
	const char *end = s + len, *t;

	if (p->lineno == 1 && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3; /* inih skips a UTF-8 BOM */
	for (t = s; t < end && isspace((unsigned char)*t); t++)
		;
	if (t == end || *t == ';' || *t == '#')
		return 0;
	if (t != s)
		return fail(p, "indented line: keys and sections start in "
		               "column 1 (inih would read a continuation)");
	if (*t == '[')
		return section(p, t + 1, end);
	t = scan(t, end, "=:");
	if (t == end || (*t != '=' && *t != ':'))
		return fail(p, "expected key = value or [section]");
	return 0;
}

/* inih's fgets(): hands it the next line, checked. */
static char *
reader(char *buf, int num, void *stream)
{
	struct parse *p = stream;
	const char   *nl;
	size_t        len, take;

	if (p->err != 0 || *p->next == '\0')
		return NULL;
	nl = strchr(p->next, '\n');
	len = nl != NULL ? (size_t)(nl - p->next) : strlen(p->next);
	take = nl != NULL ? len + 1 : len;
	p->lineno++;
	/* inih needs room for the newline and the NUL. */
	if (num < 2 || len > (size_t)num - 2) {
		fail(p, "line too long (more than %d bytes)",
		    num < 2 ? 0 : num - 2);
		return NULL;
	}
	if (check_line(p, p->next, len) < 0)
		return NULL;
	memcpy(buf, p->next, take);
	buf[take] = '\0';
	p->next += take;
	return buf;
}

/* ---- the whole file ---------------------------------------------------- */

static void
kind_fini(struct conf_kind *k)
{
	size_t i;

	conf_argv_free(k->argv);
	free(k->user_name);
	free(k->directory);
	for (i = 0; i < k->envc; i++)
		free(k->env[i]);
	free(k->env);
}

struct conf *
conf_free(struct conf *c)
{
	size_t i;

	if (c == NULL)
		return NULL;
	for (i = 0; i < c->nkinds; i++)
		kind_fini(&c->kinds[i]);
	free(c->kinds);
	free(c->path);
	free(c->instance);
	free(c->registry);
	free(c->socket_group);
	free(c);
	return NULL;
}

static struct conf *
conf_new(const char *name)
{
	struct conf *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	if ((c->path = strdup(name)) == NULL) {
		free(c);
		return NULL;
	}
	c->registry_mode = 0640;
	c->log_level = 2;
	c->restart_rate = 1000;
	c->restart_burst = 100;
	return c;
}

int
conf_parse(const char *text, const char *name, struct conf **out, char *err,
    size_t errlen)
{
	struct parse p = {.name = name != NULL ? name : "(string)",
	    .next = text,
	    .errbuf = err,
	    .errlen = errlen};
	int          r;

	*out = NULL;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if ((p.c = conf_new(p.name)) == NULL)
		return oom(&p);
	r = ini_parse_stream(reader, &p, handler, &p);
	if (p.err == 0 && p.sect == SECT_KIND)
		(void)finish_kind(&p);
	if (p.err == 0 && r == -2)
		(void)oom(&p);
	if (p.err == 0 && r != 0) { /* not expected: check_line() knows */
		p.lineno = r;
		p.label[0] = '\0';
		(void)fail(&p, "syntax error");
	}
	if (p.err != 0) {
		conf_free(p.c);
		return p.err;
	}
	*out = p.c;
	return 0;
}

/* Read FD to its end into *BUFP, NUL-terminated.  0, -EFBIG or -errno. */
static int
read_all(int fd, char **bufp, size_t *lenp)
{
	size_t  len = 0, cap = 4096;
	ssize_t n;
	char   *buf, *nbuf;
	int     r;

	if ((buf = malloc(cap + 1)) == NULL)
		return -ENOMEM;
	for (;;) {
		r = -EFBIG;
		if (len == cap && cap > CONF_FILE_MAX)
			goto fail;
		if (len == cap) {
			cap = cap * 2 > CONF_FILE_MAX ? CONF_FILE_MAX + 1
			                              : cap * 2;
			r = -ENOMEM;
			if ((nbuf = realloc(buf, cap + 1)) == NULL)
				goto fail;
			buf = nbuf;
		}
		n = read(fd, buf + len, cap - len);
		if (n == 0)
			break;
		r = -errno;
		if (n < 0 && r != -EINTR)
			goto fail;
		len += n > 0 ? (size_t)n : 0;
	}
	buf[len] = '\0';
	*bufp = buf;
	*lenp = len;
	return 0;
fail:
	free(buf);
	return r;
}

/* The line of the byte at END of TEXT, counting from 1. */
static unsigned long
line_of(const char *text, const char *end)
{
	unsigned long n = 1;

	for (; text < end; text++)
		n += *text == '\n';
	return n;
}

int
conf_load(const char *path, struct conf **out, char *err, size_t errlen)
{
	char  *text = NULL, *nul;
	size_t len = 0;
	int    fd, r;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		r = -errno;
		say(err, errlen, "unable to open %s: %s", path, strerror(-r));
		return r;
	}
	r = read_all(fd, &text, &len);
	(void)close(fd);
	if (r == -EFBIG)
		say(err, errlen, "%s: larger than %d bytes", path,
		    CONF_FILE_MAX);
	else if (r < 0)
		say(err, errlen, "unable to read %s: %s", path, strerror(-r));
	if (r < 0)
		return r;
	if ((nul = memchr(text, '\0', len)) != NULL) {
		say(err, errlen, "%s:%lu: NUL byte", path, line_of(text, nul));
		free(text);
		return -EINVAL;
	}
	r = conf_parse(text, path, out, err, errlen);
	free(text);
	return r;
}

const struct conf_kind *
conf_kind(const struct conf *c, const char *name)
{
	size_t i;

	for (i = 0; i < c->nkinds; i++)
		if (strcmp(c->kinds[i].name, name) == 0)
			return &c->kinds[i];
	return NULL;
}
