/*
 * conf: keyvisor.conf parsing, word splitting and %k expansion.
 *
 * Files are given as strings to conf_parse() under the name "t.conf",
 * except for the conf_load() tests, which write a temporary file.  Users
 * and groups are looked up with getpwnam(3) here rather than hard-coded,
 * so the tests hold on any system that has a "nobody" user; without one
 * the tests that need it are skipped.  No test forks.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "conf.h"

#define ERRLEN 512

#include "leakcheck.h"

/* One line of printable ASCII, as conf_parse() promises for its errors. */
static bool
err_ok(const char *err)
{
	size_t i;

	if (err[0] == '\0')
		return false;
	for (i = 0; err[i] != '\0'; i++)
		if ((unsigned char)err[i] < 0x20 ||
		    (unsigned char)err[i] > 0x7e)
			return false;
	return true;
}

static struct conf *
parse_ok(const char *text)
{
	struct conf *c = (struct conf *)1;
	char         err[ERRLEN] = "x";
	int          r;

	r = conf_parse(text, "t.conf", &c, err, sizeof(err));
	cr_assert_eq(r, 0, "%s\n---\n%s", err, text);
	cr_assert_not_null(c);
	cr_assert_str_eq(err, "");
	return c;
}

/*
 * Parse TEXT and insist on -EINVAL with the message WANT; a WANT ending in
 * '*' is a prefix.
 */
static void
expect_err(const char *text, const char *want)
{
	struct conf *c = (struct conf *)1;
	char         err[ERRLEN];
	size_t       n = strlen(want);
	int          r;

	r = conf_parse(text, "t.conf", &c, err, sizeof(err));
	cr_assert_eq(r, -EINVAL, "got %d (%s)\n---\n%s", r, err, text);
	cr_assert_null(c, "*out set on error");
	if (n > 0 && want[n - 1] == '*')
		cr_assert(strncmp(err, want, n - 1) == 0,
		    "error \"%s\", want prefix \"%.*s\"", err, (int)n - 1,
		    want);
	else
		cr_assert_str_eq(err, want);
	cr_assert(err_ok(err), "error not one ASCII line: %s", err);
}

/* Skip the test when there is no user "nobody"; else its entry. */
static struct passwd
nobody(void)
{
	struct passwd *pw = getpwnam("nobody");

	if (pw == NULL)
		cr_skip_test("no user \"nobody\" here");
	return *pw;
}

/* ---- valid files ------------------------------------------------------- */

#define FULL                                                                   \
	"; every key\n"                                                        \
	"[keyvisord]\n"                                                        \
	"instance = prod-1        ; like -n\n"                                 \
	"registry = reg.main\n"                                                \
	"capacity = 65536\n"                                                   \
	"max_children = 40000\n"                                               \
	"socket_group = %s\n"                                                  \
	"registry_mode = 0644\n"                                               \
	"log_level = debug\n"                                                  \
	"restart_rate = 0\n"                                                   \
	"restart_burst = 7\n"                                                  \
	"\n"                                                                   \
	"# a comment\n"                                                        \
	"[kind tracker]            ; the spec's example\n"                     \
	"command = /usr/lib/tracker/worker --txn %%k --log "                   \
	"\"/var/log/tracker/%%k.log\"\n"                                       \
	"restart = transient\n"                                                \
	"max_restarts = 9\n"                                                   \
	"max_seconds = 0.25\n"                                                 \
	"restart_delay = 1.5\n"                                                \
	"backoff_max = 30\n"                                                   \
	"backoff_reset = 12\n"                                                 \
	"stop_signal = SIGINT\n"                                               \
	"stop_timeout = 2\n"                                                   \
	"max_children = 100\n"                                                 \
	"user = nobody\n"                                                      \
	"group = %s\n"                                                         \
	"directory = /var/lib/tracker\n"                                       \
	"environment = A=1 B=\"two words\"\n"                                  \
	"environment = C= A=3\n"                                               \
	"umask = 027\n"                                                        \
	"limit_nofile = 1024\n"                                                \
	"limit_nproc = 10:20\n"                                                \
	"limit_core = 0\n"                                                     \
	"limit_as = infinity\n"                                                \
	"limit_cpu = 5:infinity\n"                                             \
	"limit_data = 1000000\n"                                               \
	"limit_fsize = 2048\n"                                                 \
	"limit_memlock = 65536\n"                                              \
	"limit_stack = 8388608:16777216\n"                                     \
	"ttl = 600\n"                                                          \
	"watchdog = 15\n"                                                      \
	"ready = fd\n"                                                         \
	"ready_timeout = 30\n"                                                 \
	"publish = ready\n"                                                    \
	"[kind other]\n"                                                       \
	"stop_signal = 9\n"

static void
check_full_daemon(const struct conf *c)
{
	cr_assert_str_eq(c->path, "t.conf");
	cr_assert_str_eq(c->instance, "prod-1");
	cr_assert_str_eq(c->registry, "reg.main");
	cr_assert(c->has_capacity);
	cr_assert_eq(c->capacity, 65536);
	cr_assert(c->has_max_children);
	cr_assert_eq(c->max_children, 40000);
	cr_assert(c->has_socket_gid);
	cr_assert_eq(c->socket_gid, 0);
	cr_assert_eq(c->registry_mode, 0644);
	cr_assert_eq(c->log_level, 3);
	cr_assert_eq(c->restart_rate, 0);
	cr_assert_eq(c->restart_burst, 7);
	cr_assert_eq(c->nkinds, 2);
}

static void
check_full_limits(const struct conf_kind *k)
{
	static const struct {
		int    res;
		rlim_t soft, hard;
	} want[] = {
	    {RLIMIT_NOFILE, 1024, 1024},
	    {RLIMIT_NPROC, 10, 20},
	    {RLIMIT_CORE, 0, 0},
	    {RLIMIT_AS, RLIM_INFINITY, RLIM_INFINITY},
	    {RLIMIT_CPU, 5, RLIM_INFINITY},
	    {RLIMIT_DATA, 1000000, 1000000},
	    {RLIMIT_FSIZE, 2048, 2048},
	    {RLIMIT_MEMLOCK, 65536, 65536},
	    {RLIMIT_STACK, 8388608, 16777216},
	};
	size_t i;

	cr_assert_eq(k->nlimits, 9);
	for (i = 0; i < 9; i++) {
		cr_assert_eq(
		    k->limits[i].resource, want[i].res, "order, %zu", i);
		cr_assert_eq(k->limits[i].lim.rlim_cur, want[i].soft, "%zu", i);
		cr_assert_eq(k->limits[i].lim.rlim_max, want[i].hard, "%zu", i);
	}
}

static void
check_full_kind(const struct conf_kind *k, const struct passwd *pw)
{
	cr_assert_str_eq(k->name, "tracker");
	cr_assert_eq(k->line, 14);
	cr_assert_eq(k->argc, 5);
	cr_assert_str_eq(k->argv[0], "/usr/lib/tracker/worker");
	cr_assert_str_eq(k->argv[1], "--txn");
	cr_assert_str_eq(k->argv[2], "%k");
	cr_assert_str_eq(k->argv[3], "--log");
	cr_assert_str_eq(k->argv[4], "/var/log/tracker/%k.log");
	cr_assert_null(k->argv[5]);
	cr_assert_eq(k->policy.restart, SVC_TRANSIENT);
	cr_assert_eq(k->policy.max_restarts, 9);
	cr_assert_eq(k->policy.max_seconds_ms, 250);
	cr_assert_eq(k->policy.restart_delay_ms, 1500);
	cr_assert_eq(k->policy.backoff_max_ms, 30000);
	cr_assert_eq(k->policy.backoff_reset_ms, 12000);
	cr_assert_eq(k->policy.stop_signal, SIGINT);
	cr_assert_eq(k->policy.stop_timeout_ms, 2000);
	cr_assert_eq(k->max_children, 100);
	cr_assert(k->has_user);
	cr_assert(k->has_group);
	cr_assert_eq(k->uid, pw->pw_uid);
	cr_assert_eq(k->gid, pw->pw_gid);
	cr_assert_str_eq(k->user_name, "nobody");
	cr_assert_str_eq(k->directory, "/var/lib/tracker");
	cr_assert_eq(k->envc, 3);
	cr_assert_str_eq(k->env[0], "A=3"); /* the last value, first place */
	cr_assert_str_eq(k->env[1], "B=two words");
	cr_assert_str_eq(k->env[2], "C=");
	cr_assert_null(k->env[3]);
	cr_assert(k->has_umask);
	cr_assert_eq(k->umask, 027);
	check_full_limits(k);
	cr_assert_eq(k->ttl_ms, 600000);
	cr_assert_eq(k->watchdog_ms, 15000);
	cr_assert(k->ready_fd);
	cr_assert_eq(k->ready_timeout_ms, 30000);
	cr_assert(k->publish_ready);
}

Test(valid, every_key)
{
	struct passwd           pw = nobody();
	struct group           *gr;
	char                    text[4096], root[256], prim[256];
	struct conf            *c;
	const struct conf_kind *o;

	/* getgrgid(3) returns a static struct: copy each name at once. */
	cr_assert_not_null(gr = getgrgid(0));
	snprintf(root, sizeof(root), "%s", gr->gr_name);
	cr_assert_not_null(gr = getgrgid(pw.pw_gid));
	snprintf(prim, sizeof(prim), "%s", gr->gr_name);
	snprintf(text, sizeof(text), FULL, root, prim);
	c = parse_ok(text);
	check_full_daemon(c);
	check_full_kind(&c->kinds[0], &pw);
	cr_assert_eq(conf_kind(c, "tracker"), &c->kinds[0]);
	o = conf_kind(c, "other");
	cr_assert_eq(o, &c->kinds[1]);
	cr_assert_eq(o->policy.stop_signal, SIGKILL);
	cr_assert_null(conf_kind(c, "Tracker"));
	cr_assert_null(conf_free(c));
	NO_LEAKS();
}

Test(valid, defaults)
{
	struct svc_policy       def = svc_policy_default();
	struct conf            *c = parse_ok("[kind bare]\n");
	const struct conf_kind *k = conf_kind(c, "bare");

	cr_assert_str_eq(c->path, "t.conf");
	cr_assert_null(c->instance);
	cr_assert_null(c->registry);
	cr_assert_null(c->socket_group);
	cr_assert(!c->has_capacity && !c->has_max_children);
	cr_assert(!c->has_socket_gid);
	cr_assert_eq(c->registry_mode, 0640);
	cr_assert_eq(c->log_level, 2);
	cr_assert_eq(c->restart_rate, 1000);
	cr_assert_eq(c->restart_burst, 100);
	cr_assert_eq(c->nkinds, 1);
	cr_assert_not_null(k, "a kind with no keys still exists");
	cr_assert_eq(k->line, 1);
	cr_assert_eq(k->argc, 0);
	cr_assert_null(k->argv);
	cr_assert_eq(k->policy.restart, def.restart);
	cr_assert_eq(k->policy.max_restarts, def.max_restarts);
	cr_assert_eq(k->policy.max_seconds_ms, def.max_seconds_ms);
	cr_assert_eq(k->policy.restart_delay_ms, def.restart_delay_ms);
	cr_assert_eq(k->policy.backoff_max_ms, def.backoff_max_ms);
	cr_assert_eq(k->policy.backoff_reset_ms, def.backoff_reset_ms);
	cr_assert_eq(k->policy.stop_timeout_ms, def.stop_timeout_ms);
	cr_assert_eq(k->policy.stop_signal, SIGTERM);
	cr_assert_eq(k->max_children, 0);
	cr_assert(!k->has_user && !k->has_group && !k->has_umask);
	cr_assert_null(k->user_name);
	cr_assert_null(k->directory);
	cr_assert_eq(k->envc, 0);
	cr_assert_null(k->env);
	cr_assert_eq(k->nlimits, 0);
	cr_assert_eq(k->ttl_ms, 0);
	cr_assert_eq(k->watchdog_ms, 0);
	cr_assert_eq(k->ready_timeout_ms, 10000);
	cr_assert(!k->ready_fd && !k->publish_ready);
	conf_free(c);
	NO_LEAKS();
}

Test(valid, empty_and_comments_only)
{
	struct conf *c = parse_ok("");

	cr_assert_eq(c->nkinds, 0);
	conf_free(c);
	c = parse_ok("; nothing\n# at all\n\n   ; indented comment\n\t\n");
	cr_assert_eq(c->nkinds, 0);
	conf_free(c);
	cr_assert_null(conf_free(NULL));
	NO_LEAKS();
}

/* CRLF, a BOM, no final newline, "key: value", inline comments. */
static const char variants[] = "\xEF\xBB\xBF[keyvisord]\r\n"
                               "capacity: 5\r\n"
                               "[kind a] ; comment\n"
                               "command = x;y #z ; a comment\n"
                               "environment = K=v\n"
                               "environment=L=w\n"
                               "restart=temporary";

Test(valid, syntax_variants)
{
	struct conf            *c = parse_ok(variants);
	const struct conf_kind *k = conf_kind(c, "a");

	cr_assert_eq(c->capacity, 5);
	cr_assert_not_null(k);
	cr_assert_eq(k->argc, 2);
	cr_assert_str_eq(k->argv[0], "x;y");
	cr_assert_str_eq(k->argv[1], "#z");
	cr_assert_eq(k->envc, 2);
	cr_assert_str_eq(k->env[1], "L=w");
	cr_assert_eq(k->policy.restart, SVC_TEMPORARY);
	conf_free(c);
	NO_LEAKS();
}

Test(valid, kind_names)
{
	char         text[128];
	struct conf *c;

	snprintf(text, sizeof(text), "[kind %s]\n[kind A-z_0.9]\n[kind .]\n",
	    "abcdefghijklmnopqrstuvwxyz01234"); /* 31 bytes */
	c = parse_ok(text);
	cr_assert_eq(c->nkinds, 3);
	cr_assert_str_eq(c->kinds[0].name, "abcdefghijklmnopqrstuvwxyz01234");
	cr_assert_str_eq(c->kinds[1].name, "A-z_0.9");
	cr_assert_eq(c->kinds[1].line, 2);
	cr_assert_str_eq(c->kinds[2].name, ".");
	conf_free(c);
	NO_LEAKS();
}

Test(valid, user_nobody)
{
	struct passwd           pw = nobody();
	struct conf            *c = parse_ok("[kind a]\nuser = nobody\n");
	const struct conf_kind *k = &c->kinds[0];

	cr_assert(k->has_user);
	cr_assert_eq(k->uid, pw.pw_uid);
	cr_assert(k->has_group, "group defaults to the primary group");
	cr_assert_eq(k->gid, pw.pw_gid);
	cr_assert_str_eq(k->user_name, "nobody");
	conf_free(c);
	NO_LEAKS();
}

Test(valid, numeric_user_and_group)
{
	struct passwd          *root = getpwuid(0);
	struct conf            *c;
	const struct conf_kind *k;

	c = parse_ok("[kind a]\nuser = 0\n"
	             "[kind b]\ngroup = 54321\nuser = 4000000000\n"
	             "[kind c]\ngroup = 7\n");
	k = &c->kinds[0];
	cr_assert(k->has_user && k->has_group);
	cr_assert_eq(k->uid, 0);
	cr_assert_eq(k->gid, root != NULL ? root->pw_gid : 0);
	cr_assert_str_eq(k->user_name, root != NULL ? root->pw_name : "root");
	k = &c->kinds[1];
	cr_assert(k->has_user && k->has_group);
	cr_assert_eq(k->uid, 4000000000u);
	cr_assert_eq(k->gid, 54321);
	cr_assert_null(k->user_name, "no passwd entry, no name");
	k = &c->kinds[2];
	cr_assert(!k->has_user);
	cr_assert(k->has_group);
	cr_assert_eq(k->gid, 7);
	conf_free(c);
	NO_LEAKS();
}

Test(valid, bounds)
{
	struct conf            *c;
	const struct conf_kind *k;

	c = parse_ok("[keyvisord]\ncapacity = 2147483647\nmax_children = 1\n"
	             "restart_burst = 1\nregistry_mode = 0\n"
	             "[kind a]\nmax_restarts = 1000\nmax_seconds = 1000000000\n"
	             "stop_timeout = .5\nstop_signal = 64\numask = 0777\n"
	             "limit_nofile = 18446744073709551614\n"
	             "ready_timeout = 0\nrestart_delay = 0.001\n"
	             "[kind b]\nmax_restarts = 0\numask = 0\n"
	             "stop_signal = rtmin+1\n");
	cr_assert_eq(c->capacity, 2147483647u);
	cr_assert_eq(c->max_children, 1);
	cr_assert_eq(c->restart_burst, 1);
	cr_assert_eq(c->registry_mode, 0);
	k = &c->kinds[0];
	cr_assert_eq(k->policy.max_restarts, 1000);
	cr_assert_eq(k->policy.max_seconds_ms, 1000000000000u);
	cr_assert_eq(k->policy.stop_timeout_ms, 500);
	cr_assert_eq(k->policy.stop_signal, 64);
	cr_assert_eq(k->umask, 0777);
	cr_assert_eq(k->limits[0].lim.rlim_cur, 18446744073709551614u);
	cr_assert_eq(k->ready_timeout_ms, 0);
	cr_assert_eq(k->policy.restart_delay_ms, 1);
	k = &c->kinds[1];
	cr_assert_eq(k->policy.max_restarts, 0);
	cr_assert(k->has_umask);
	cr_assert_eq(k->umask, 0);
	cr_assert_eq(k->policy.stop_signal, SIGRTMIN + 1);
	conf_free(c);
	NO_LEAKS();
}

/* ---- errors: one each, with the line and the key ----------------------- */

Test(error, bad_number)
{
	expect_err("[keyvisord]\ncapacity = 12x\n",
	    "t.conf:2: [keyvisord]: capacity: expected a number from 1 to "
	    "2147483647, got \"12x\"");
	expect_err("[kind a]\n\nmax_children = 0x10\n",
	    "t.conf:3: [kind a]: max_children: expected a number from 0 to "
	    "2147483647, got \"0x10\"");
	expect_err("[keyvisord]\nrestart_rate = 1 0\n",
	    "t.conf:2: [keyvisord]: restart_rate: expected a number from 0 to "
	    "2147483647, got \"1 0\"");
	expect_err("[keyvisord]\nrestart_burst = 0\n",
	    "t.conf:2: [keyvisord]: restart_burst: expected a number from 1 to "
	    "2147483647, got \"0\"");
	NO_LEAKS();
}

Test(error, negative)
{
	expect_err("[kind a]\nmax_restarts = -1\n",
	    "t.conf:2: [kind a]: max_restarts: expected a number from 0 to "
	    "1000, got \"-1\"");
	expect_err("[kind a]\nttl = -5\n",
	    "t.conf:2: [kind a]: ttl: expected seconds from 0 to 1000000000, "
	    "3 decimals at most, got \"-5\"");
	expect_err("[kind a]\nlimit_core = -1\n",
	    "t.conf:2: [kind a]: limit_core: expected N, SOFT:HARD or "
	    "infinity, got \"-1\"");
	NO_LEAKS();
}

Test(error, too_large)
{
	expect_err("[kind a]\nmax_restarts = 1001\n",
	    "t.conf:2: [kind a]: max_restarts: expected a number from 0 to "
	    "1000, got \"1001\"");
	expect_err("[keyvisord]\ncapacity = 2147483648\n",
	    "t.conf:2: [keyvisord]: capacity: expected a number from 1 to "
	    "2147483647, got \"2147483648\"");
	expect_err("[keyvisord]\nmax_children = 99999999999999999999999\n",
	    "t.conf:2: [keyvisord]: max_children: expected a number from 1 to "
	    "2147483647, got \"99999999999999999999999\"");
	expect_err("[kind a]\nwatchdog = 1000000000.001\n",
	    "t.conf:2: [kind a]: watchdog: expected seconds from 0 to "
	    "1000000000, 3 decimals at most, got \"1000000000.001\"");
	expect_err("[kind a]\nlimit_fsize = 18446744073709551615\n",
	    "t.conf:2: [kind a]: limit_fsize: expected N, SOFT:HARD or "
	    "infinity, got \"18446744073709551615\"");
	NO_LEAKS();
}

Test(error, bad_duration)
{
	static const char *const bad[] = {
	    "5s", "1.2345", "5.", ".", "1e3", "+1", "1,5", "infinity"};
	char   text[128], want[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[kind a]\nstop_timeout = %s\n",
		    bad[i]);
		snprintf(want, sizeof(want),
		    "t.conf:2: [kind a]: stop_timeout: "
		    "expected seconds from 0 to 1000000000, 3 decimals at "
		    "most, got \"%s\"",
		    bad[i]);
		expect_err(text, want);
	}
	NO_LEAKS();
}

Test(error, bad_signal)
{
	static const char *const bad[] = {
	    "SIGFOO", "0", "65", "-9", "TERM9", "rtmin+99"};
	char   text[128], want[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(
		    text, sizeof(text), "[kind k]\nstop_signal = %s\n", bad[i]);
		snprintf(want, sizeof(want),
		    "t.conf:2: [kind k]: stop_signal: "
		    "expected a signal name or number from 1 to 64, got \"%s\"",
		    bad[i]);
		expect_err(text, want);
	}
	NO_LEAKS();
}

Test(error, bad_restart)
{
	/* The spec's own example. */
	expect_err("[kind tracker]\ncommand = w\n\n\n\n\n\n\n\n\n\n"
	           "restart = sometimes\n",
	    "t.conf:12: [kind tracker]: restart: expected permanent, "
	    "transient or temporary, got \"sometimes\"");
	expect_err("[kind a]\nrestart = Permanent\n",
	    "t.conf:2: [kind a]: restart: expected permanent, transient or "
	    "temporary, got \"Permanent\"");
	NO_LEAKS();
}

Test(error, unknown_key)
{
	expect_err("[kind a]\ncommand = x\ncolour = blue\n",
	    "t.conf:3: [kind a]: colour: unknown key");
	expect_err("[keyvisord]\ncommand = x\n",
	    "t.conf:2: [keyvisord]: command: unknown key");
	expect_err("[kind a]\nRestart = permanent\n",
	    "t.conf:2: [kind a]: Restart: unknown key");
	expect_err("[kind a]\ninstance = x\n",
	    "t.conf:2: [kind a]: instance: unknown key");
	expect_err(
	    "capacity = 5\n", "t.conf:1: capacity: key outside any section");
	NO_LEAKS();
}

Test(error, unknown_section)
{
	expect_err("[kind a]\n[daemon]\ncapacity = 5\n",
	    "t.conf:2: [daemon]: unknown section");
	expect_err("[kinds a]\n", "t.conf:1: [kinds a]: unknown section");
	expect_err(
	    "[ keyvisord ]\n", "t.conf:1: [ keyvisord ]: unknown section");
	expect_err("[kind]\n", "t.conf:1: [kind]: unknown section");
	/* Empty sections are seen too: inih alone would not report them. */
	expect_err("[kind a]\ncommand = x\n[kidn b]\n",
	    "t.conf:3: [kidn b]: unknown section");
	NO_LEAKS();
}

Test(error, duplicate_kind)
{
	expect_err("[kind a]\ncommand = x\n\n[kind b]\n[kind a]\n",
	    "t.conf:5: [kind a]: duplicate section (first on line 1)");
	expect_err("[keyvisord]\n[kind a]\n[keyvisord]\n",
	    "t.conf:3: [keyvisord]: duplicate section (first on line 1)");
	NO_LEAKS();
}

Test(error, repeated_key)
{
	expect_err("[kind a]\ncommand = x\nrestart = transient\n"
	           "restart = transient\n",
	    "t.conf:4: [kind a]: restart: repeated (first set on line 3)");
	expect_err("[keyvisord]\nlog_level = info\n; x\nlog_level = info\n",
	    "t.conf:4: [keyvisord]: log_level: repeated (first set on line 2)");
	/* Per section: the same key in two kinds is fine. */
	conf_free(parse_ok("[kind a]\nttl = 1\n[kind b]\nttl = 1\n"));
	NO_LEAKS();
}

Test(error, bad_kind_name)
{
	char text[64];

	expect_err("[kind a/b]\n", "t.conf:1: [kind a/b]: invalid kind name: "
	                           "expected 1 to 31 bytes of "
	                           "A-Z a-z 0-9 _ . -");
	expect_err("[kind ]\n", "t.conf:1: [kind ]: invalid kind name*");
	expect_err("[kind  a]\n", "t.conf:1: [kind  a]: invalid kind name*");
	expect_err("[kind a b]\n", "t.conf:1: [kind a b]: invalid kind name*");
	expect_err("[kind caf\xc3\xa9]\n",
	    "t.conf:1: [kind caf??]: invalid kind name*");
	snprintf(text, sizeof(text), "[kind %s]\n",
	    "abcdefghijklmnopqrstuvwxyz012345"); /* 32 bytes */
	expect_err(text, "t.conf:1: [kind abcdefghijklmnopqrstuvwxyz012345]: "
	                 "invalid kind name*");
	NO_LEAKS();
}

Test(error, unknown_user)
{
	expect_err("[kind a]\nuser = no-such-user-kv\n",
	    "t.conf:2: [kind a]: user: unknown user \"no-such-user-kv\"");
	NO_LEAKS();
}

Test(error, unknown_group)
{
	expect_err("[kind a]\nuser = 0\ngroup = no-such-group-kv\n",
	    "t.conf:3: [kind a]: group: unknown group \"no-such-group-kv\"");
	expect_err("[keyvisord]\nsocket_group = no-such-group-kv\n",
	    "t.conf:2: [keyvisord]: socket_group: unknown group "
	    "\"no-such-group-kv\"");
	NO_LEAKS();
}

Test(error, numeric_user_needs_group)
{
	/* A uid without a passwd entry has no primary group to default to. */
	expect_err("[kind a]\nuser = 4000000000\ncommand = x\n[kind b]\n",
	    "t.conf:2: [kind a]: user: uid 4000000000 has no passwd entry, so "
	    "group must be set");
	expect_err("[kind a]\nuser = 4000000000\n",
	    "t.conf:2: [kind a]: user: uid 4000000000 has no passwd entry, so "
	    "group must be set");
	expect_err("[kind a]\nuser = 4294967295\n",
	    "t.conf:2: [kind a]: user: unknown user \"4294967295\"");
	NO_LEAKS();
}

Test(error, relative_directory)
{
	expect_err("[kind a]\ndirectory = var/lib\n",
	    "t.conf:2: [kind a]: directory: expected an absolute path, got "
	    "\"var/lib\"");
	expect_err("[kind a]\ndirectory = ~/x\n",
	    "t.conf:2: [kind a]: directory: expected an absolute path, got "
	    "\"~/x\"");
	NO_LEAKS();
}

Test(error, bad_umask)
{
	static const char *const bad[] = {
	    "0800", "8", "1000", "0o22", "-22", "u=rwx", "00000000001000"};
	char   text[128], want[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[kind a]\numask = %s\n", bad[i]);
		snprintf(want, sizeof(want),
		    "t.conf:2: [kind a]: umask: "
		    "expected an octal mode from 0 to 0777, got \"%s\"",
		    bad[i]);
		expect_err(text, want);
	}
	expect_err("[keyvisord]\nregistry_mode = 640x\n",
	    "t.conf:2: [keyvisord]: registry_mode: expected an octal mode from "
	    "0 to 0777, got \"640x\"");
	NO_LEAKS();
}

Test(error, bad_limit_syntax)
{
	static const char *const bad[] = {"1k", "1:2:3", ":5", "5:", "inf",
	    "Infinity", "unlimited", "1 : 2", "0x10", "infinity:"};
	char                     text[128], want[256];
	size_t                   i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[kind a]\nlimit_nofile = %s\n",
		    bad[i]);
		snprintf(want, sizeof(want),
		    "t.conf:2: [kind a]: limit_nofile: "
		    "expected N, SOFT:HARD or infinity, got \"%s\"",
		    bad[i]);
		expect_err(text, want);
	}
	expect_err("[kind a]\nlimit_rss = 5\n",
	    "t.conf:2: [kind a]: limit_rss: unknown key");
	NO_LEAKS();
}

Test(error, soft_above_hard)
{
	expect_err("[kind a]\nlimit_nofile = 2048:1024\n",
	    "t.conf:2: [kind a]: limit_nofile: the soft limit is above the "
	    "hard one in \"2048:1024\"");
	expect_err("[kind a]\nlimit_stack = infinity:10\n",
	    "t.conf:2: [kind a]: limit_stack: the soft limit is above the "
	    "hard one in \"infinity:10\"");
	NO_LEAKS();
}

Test(error, bad_ready_publish)
{
	expect_err("[kind a]\nready = yes\n",
	    "t.conf:2: [kind a]: ready: expected none or fd, got \"yes\"");
	expect_err("[kind a]\npublish = later\n",
	    "t.conf:2: [kind a]: publish: expected start or ready, got "
	    "\"later\"");
	expect_err("[keyvisord]\nlog_level = verbose\n",
	    "t.conf:2: [keyvisord]: log_level: expected error, warn, info or "
	    "debug, got \"verbose\"");
	NO_LEAKS();
}

Test(error, unknown_escape)
{
	expect_err("[kind a]\ncommand = w --id %x\n",
	    "t.conf:2: [kind a]: command: unknown escape %x: only %k and %% "
	    "are expanded");
	expect_err("[kind a]\ncommand = w 100%\n",
	    "t.conf:2: [kind a]: command: '%' at the end of a word: write %% "
	    "for a literal '%'");
	expect_err("[kind a]\ncommand = w '%K'\n",
	    "t.conf:2: [kind a]: command: unknown escape %K*");
	/* %% then k is a literal "%k", not an escape; checked by expand. */
	conf_free(parse_ok("[kind a]\ncommand = w %%k %%%k\n"));
	NO_LEAKS();
}

Test(error, unterminated_quote)
{
	expect_err("[kind a]\ncommand = w \"a b\n",
	    "t.conf:2: [kind a]: command: unterminated double quote");
	expect_err("[kind a]\ncommand = w 'a b\n",
	    "t.conf:2: [kind a]: command: unterminated single quote");
	expect_err("[kind a]\nenvironment = A=\"x\n",
	    "t.conf:2: [kind a]: environment: unterminated double quote");
	/* A ';' after a blank is a comment even inside quotes (inih). */
	expect_err("[kind a]\ncommand = sh -c 'prepare ; run'\n",
	    "t.conf:2: [kind a]: command: unterminated single quote");
	expect_err("[kind a]\ncommand = w trailing\\\n",
	    "t.conf:2: [kind a]: command: backslash at the end");
	NO_LEAKS();
}

Test(error, environment_word_without_equals)
{
	expect_err("[kind a]\nenvironment = A=1 B\n",
	    "t.conf:2: [kind a]: environment: expected NAME=VALUE with NAME of "
	    "A-Z a-z 0-9 _, got \"B\"");
	expect_err("[kind a]\nenvironment = =x\n",
	    "t.conf:2: [kind a]: environment: expected NAME=VALUE*");
	expect_err("[kind a]\nenvironment = 1A=x\n",
	    "t.conf:2: [kind a]: environment: expected NAME=VALUE*");
	expect_err("[kind a]\nenvironment = A-B=x\n",
	    "t.conf:2: [kind a]: environment: expected NAME=VALUE*");
	NO_LEAKS();
}

Test(error, long_line)
{
	char   text[512];
	size_t n;

	/* A line inih would cut in two, its tail read as a line of its own. */
	n = (size_t)snprintf(text, sizeof(text), "[kind a]\ncommand = w ");
	memset(text + n, 'x', 300);
	strcpy(text + n + 300, " restart = temporary\nttl = 1\n");
	expect_err(text, "t.conf:2: [kind a]: line too long (more than *");
	NO_LEAKS();
}

Test(error, long_line_boundary)
{
	char         text[512], err[ERRLEN];
	struct conf *c;
	int          max, n;

	n = snprintf(text, sizeof(text), "[kind a]\ncommand = %0300d\n", 0);
	cr_assert(n > 0);
	cr_assert_eq(conf_parse(text, "t.conf", &c, err, sizeof(err)), -EINVAL);
	cr_assert_eq(sscanf(err,
	                 "t.conf:2: [kind a]: line too long (more than "
	                 "%d bytes)",
	                 &max),
	    1, "%s", err);
	cr_assert(max >= 100 && max < 300, "max %d", max);
	/* A line of exactly MAX bytes is fine, one more is not. */
	n = snprintf(
	    text, sizeof(text), "[kind a]\ncommand = %0*d\n", max - 10, 0);
	c = parse_ok(text);
	cr_assert_eq(strlen(c->kinds[0].argv[0]), (size_t)max - 10);
	conf_free(c);
	n = snprintf(
	    text, sizeof(text), "[kind a]\ncommand = %0*d\n", max - 9, 0);
	cr_assert_eq(conf_parse(text, "t.conf", &c, err, sizeof(err)), -EINVAL);
	/* The same at the end of a file without a final newline. */
	n = snprintf(
	    text, sizeof(text), "[kind a]\ncommand = %0*d", max - 9, 0);
	cr_assert_eq(conf_parse(text, "t.conf", &c, err, sizeof(err)), -EINVAL);
	NO_LEAKS();
}

Test(error, empty_value)
{
	expect_err("[kind a]\ncommand =\n",
	    "t.conf:2: [kind a]: command: empty value");
	expect_err("[kind a]\nenvironment =   ; nothing\n",
	    "t.conf:2: [kind a]: environment: empty value");
	expect_err("[keyvisord]\ninstance = \n",
	    "t.conf:2: [keyvisord]: instance: empty value");
	expect_err("[kind a]\ncommand = ''\n",
	    "t.conf:2: [kind a]: command: the program's name is empty");
	NO_LEAKS();
}

Test(error, layout)
{
	/* Indented lines: inih would read them as the previous value's. */
	expect_err("[kind a]\ncommand = x\n  restart = temporary\n",
	    "t.conf:3: [kind a]: indented line: keys and sections start in "
	    "column 1 (inih would read a continuation)");
	expect_err("[kind a]\ncommand = x\n\t[kind b]\n",
	    "t.conf:3: [kind a]: indented line*");
	expect_err(
	    "[kind a]\n  ttl = 1\n", "t.conf:2: [kind a]: indented line*");
	expect_err("[kind a\n", "t.conf:1: section header without ']'");
	expect_err("[kind a ;]\n", "t.conf:1: section header without ']'");
	expect_err("[kind a] x\n", "t.conf:1: [kind a]: text after ']'");
	expect_err("[kind a]\ncommand x\n",
	    "t.conf:2: [kind a]: expected key = value or [section]");
	expect_err("[kind a]\ncommand ; = x\n",
	    "t.conf:2: [kind a]: expected key = value or [section]");
	NO_LEAKS();
}

Test(error, names_and_paths)
{
	expect_err("[keyvisord]\ninstance = .hidden\n",
	    "t.conf:2: [keyvisord]: instance: expected 1 to 64 bytes of A-Z "
	    "a-z 0-9 . _ - not starting with '.', got \".hidden\"");
	expect_err("[keyvisord]\nregistry = a/b\n",
	    "t.conf:2: [keyvisord]: registry: expected 1 to 64 bytes*");
	NO_LEAKS();
}

Test(error, message_is_one_tame_line)
{
	char text[256];

	/* Control bytes and long values are neither copied nor kept whole. */
	expect_err("[kind a]\nrestart = \x01\x7f\xff\n",
	    "t.conf:2: [kind a]: restart: expected permanent, transient or "
	    "temporary, got \"???\"");
	snprintf(text, sizeof(text), "[kind a]\nrestart = %060d\n", 7);
	expect_err(text, "t.conf:2: [kind a]: restart: expected permanent, "
	                 "transient or temporary, got "
	                 "\"0000000000000000000000000000000000000000...\"");
	NO_LEAKS();
}

Test(error, small_buffer)
{
	struct conf *c;
	char         err[16];

	cr_assert_eq(
	    conf_parse("[x]\n", "t.conf", &c, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.conf:1: [x]: ");
	cr_assert_eq(conf_parse("[x]\n", "t.conf", &c, NULL, 0), -EINVAL);
	cr_assert_null(c);
	NO_LEAKS();
}

Test(error, first_error_wins)
{
	expect_err("[kind a]\nttl = x\nrestart = y\n[zzz]\n",
	    "t.conf:2: [kind a]: ttl: expected seconds*");
	NO_LEAKS();
}

/* ---- conf_split -------------------------------------------------------- */

struct split_case {
	const char *in;
	const char *out[8]; /* NULL-terminated */
};

static void
check_split(const struct split_case *t)
{
	char   err[64] = "";
	char **v;
	size_t n, i;

	cr_assert_eq(conf_split(t->in, &v, &n, err, sizeof(err)), 0, "[%s]: %s",
	    t->in, err);
	for (i = 0; t->out[i] != NULL; i++) {
		cr_assert(i < n, "[%s]: only %zu words", t->in, n);
		cr_assert_str_eq(v[i], t->out[i], "[%s] word %zu", t->in, i);
	}
	cr_assert_eq(n, i, "[%s]: %zu words, want %zu", t->in, n, i);
	cr_assert_null(v[n]);
	conf_argv_free(v);
}

Test(split, table)
{
	static const struct split_case cases[] = {
	    {"", {NULL}},
	    {"   \t ", {NULL}},
	    {"a", {"a", NULL}},
	    {"  a  b\tc\t", {"a", "b", "c", NULL}},
	    {"a\t\tb", {"a", "b", NULL}},
	    {"a\nb", {"a", "b", NULL}},
	    {"'a b'", {"a b", NULL}},
	    {"\"a b\"", {"a b", NULL}},
	    {"''", {"", NULL}},
	    {"\"\"", {"", NULL}},
	    {"a '' b", {"a", "", "b", NULL}},
	    {"\"a\"'b'", {"ab", NULL}},
	    {"x\"a\"'b'y", {"xaby", NULL}},
	    {"--log=\"/var/a b\"", {"--log=/var/a b", NULL}},
	    {"a\\ b", {"a b", NULL}},
	    {"\\'", {"'", NULL}},
	    {"\\\\", {"\\", NULL}},
	    {"\\a", {"a", NULL}},
	    {"'\\n'", {"\\n", NULL}},
	    {"\"\\\"\"", {"\"", NULL}},
	    {"\"\\\\ \\$ \\` \\a\"", {"\\ $ ` \\a", NULL}},
	    {"\"it's\"", {"it's", NULL}},
	    {"'say \"hi\"'", {"say \"hi\"", NULL}},
	    {"a\\\nb", {"ab", NULL}},
	    {"\"a\\\nb\"", {"ab", NULL}},
	    {"$HOME * | ; # ~", {"$HOME", "*", "|", ";", "#", "~", NULL}},
	    {"%k %%", {"%k", "%%", NULL}},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_split(&cases[i]);
	NO_LEAKS();
}

Test(split, errors)
{
	static const struct {
		const char *in, *why;
	} cases[] = {
	    {"a\\", "backslash at the end"},
	    {"'a", "unterminated single quote"},
	    {"a 'b\"", "unterminated single quote"},
	    {"\"a", "unterminated double quote"},
	    {"\"a\\\"", "unterminated double quote"},
	    {"\"a'", "unterminated double quote"},
	};
	char   err[64];
	char **v = (char **)1;
	size_t n = 5, i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(conf_split(cases[i].in, &v, &n, err, sizeof(err)),
		    -EINVAL, "[%s]", cases[i].in);
		cr_assert_str_eq(err, cases[i].why, "[%s]", cases[i].in);
		cr_assert_null(v);
		cr_assert_eq(n, 0);
	}
	cr_assert_eq(conf_split("'", &v, &n, NULL, 0), -EINVAL);
	conf_argv_free(NULL);
	NO_LEAKS();
}

/* ---- conf_expand ------------------------------------------------------- */

static void
check_expand(
    char *const *argv, size_t argc, const char *key, const char *const *want)
{
	char **v = conf_expand(argv, argc, key);
	size_t i;

	cr_assert_not_null(v);
	for (i = 0; i < argc; i++)
		cr_assert_str_eq(v[i], want[i], "word %zu", i);
	cr_assert_null(v[argc]);
	conf_argv_free(v);
}

Test(expand, escapes)
{
	char *argv[] = {"/bin/w", "--id=%k", "%k/%k", "100%%", "%%k", "%%%k",
	    "%", "%x", "", "k%", NULL};
	const char *want[] = {"/bin/w", "--id=user:42", "user:42/user:42",
	    "100%", "%k", "%user:42", "%", "%x", "", "k%"};

	check_expand(argv, 10, "user:42", want);
	NO_LEAKS();
}

Test(expand, key_with_percent_stays_literal)
{
	char       *argv[] = {"w", "%k", "a%kb", NULL};
	const char *want[] = {"w", "50%k%%", "a50%k%%b"};
	const char *empty[] = {"w", "", "ab"};

	check_expand(argv, 3, "50%k%%", want);
	check_expand(argv, 3, "", empty);
	check_expand(argv, 3, NULL, empty);
	check_expand(argv, 0, "k", NULL);
	NO_LEAKS();
}

Test(expand, from_a_kind)
{
	struct conf *c = parse_ok(
	    "[kind t]\ncommand = /w --txn %k --log \"/var/log/%k.log\" 5%%\n");
	char **v = conf_expand(c->kinds[0].argv, c->kinds[0].argc, "txn_9");

	cr_assert_not_null(v);
	cr_assert_str_eq(v[0], "/w");
	cr_assert_str_eq(v[2], "txn_9");
	cr_assert_str_eq(v[4], "/var/log/txn_9.log");
	cr_assert_str_eq(v[5], "5%");
	cr_assert_null(v[6]);
	conf_argv_free(v);
	conf_free(c);
	NO_LEAKS();
}

/* ---- conf_load --------------------------------------------------------- */

/* Write TEXT (LEN bytes) to a new temporary file; its name into PATH. */
static void
temp_file(char *path, size_t size, const char *text, size_t len)
{
	int fd;

	snprintf(path, size, "/tmp/test_conf.XXXXXX");
	fd = mkstemp(path);
	cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
	cr_assert_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
}

Test(load, real_file)
{
	static const char text[] = "[keyvisord]\ncapacity = 10\n"
	                           "[kind a]\ncommand = /bin/true %k\n";
	char              path[64], err[ERRLEN] = "x";
	struct conf      *c = NULL;

	temp_file(path, sizeof(path), text, sizeof(text) - 1);
	cr_assert_eq(conf_load(path, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(err, "");
	cr_assert_str_eq(c->path, path);
	cr_assert_eq(c->capacity, 10);
	cr_assert_eq(c->nkinds, 1);
	cr_assert_str_eq(c->kinds[0].argv[1], "%k");
	conf_free(c);
	unlink(path);
	NO_LEAKS();
}

Test(load, errors_name_the_file)
{
	static const char bad[] = "[kind a]\n\nttl = soon\n";
	char              path[64], want[256], err[ERRLEN];
	struct conf      *c = (struct conf *)1;

	temp_file(path, sizeof(path), bad, sizeof(bad) - 1);
	cr_assert_eq(conf_load(path, &c, err, sizeof(err)), -EINVAL);
	cr_assert_null(c);
	snprintf(want, sizeof(want),
	    "%s:3: [kind a]: ttl: expected seconds "
	    "from 0 to 1000000000, 3 decimals at most, got \"soon\"",
	    path);
	cr_assert_str_eq(err, want);
	unlink(path);
	NO_LEAKS();
}

Test(load, missing_file)
{
	char         err[ERRLEN];
	struct conf *c = (struct conf *)1;

	cr_assert_eq(
	    conf_load("/nonexistent/keyvisor.conf", &c, err, sizeof(err)),
	    -ENOENT);
	cr_assert_null(c);
	cr_assert_str_eq(err, "unable to open /nonexistent/keyvisor.conf: "
	                      "No such file or directory");
	NO_LEAKS();
}

Test(load, nul_byte)
{
	static const char text[] = "[kind a]\nttl = 1\0\n";
	char              path[64], want[128], err[ERRLEN];
	struct conf      *c;

	temp_file(path, sizeof(path), text, sizeof(text) - 1);
	cr_assert_eq(conf_load(path, &c, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:2: NUL byte", path);
	cr_assert_str_eq(err, want);
	unlink(path);
	NO_LEAKS();
}

Test(load, too_large)
{
	char         path[64], want[128], err[ERRLEN];
	char        *text = malloc(CONF_FILE_MAX + 1);
	struct conf *c;

	cr_assert_not_null(text);
	memset(text, '\n', CONF_FILE_MAX + 1);
	temp_file(path, sizeof(path), text, CONF_FILE_MAX + 1);
	free(text);
	cr_assert_eq(conf_load(path, &c, err, sizeof(err)), -EFBIG);
	snprintf(want, sizeof(want), "%s: larger than %d bytes", path,
	    CONF_FILE_MAX);
	cr_assert_str_eq(err, want);
	unlink(path);
	NO_LEAKS();
}

Test(load, directory)
{
	char         err[ERRLEN];
	struct conf *c;

	cr_assert_eq(conf_load("/tmp", &c, err, sizeof(err)), -EISDIR);
	cr_assert_str_eq(err, "unable to read /tmp: Is a directory");
	NO_LEAKS();
}
