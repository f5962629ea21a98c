/*
 * The worker library: the exact bytes of each channel message, argument
 * checks, what counts as "no channel", the fd left alone, kv_lookup()
 * against a real named registry segment (found, absent, dead or reused
 * pid), kv_self_key(), and the example workers speaking the protocol.
 *
 * The channel is a socketpair(AF_UNIX, SOCK_SEQPACKET): the test holds the
 * daemon's end and names the worker's end in KEYVISOR_NOTIFY_FD, then
 * recv()s one message per call.
 *
 * ISOLATION.  The library reads its environment once and caches the answer
 * (channel fd, key, registry mapping).  Criterion runs every Test in its own
 * process, so each test starts with empty caches; a test that needs another
 * first call within itself (several bad spellings of KEYVISOR_NOTIFY_FD, say)
 * calls kv_worker_reset(), the library's test hook (worker/testhook.h).  The
 * hook lives in the static library only: it is hidden and absent from
 * libkeyvisor.map, and the symbol test checks that the .so lacks it.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keyvisor/worker.h>

#include "testhook.h"

#include "leakcheck.h"

#define MSG_MAX  2048 /* more than any message: a longer one shows */
#define WAIT_MS  5000 /* for a message from a child process */
#define NTHREADS 8

/* ---- The channel --------------------------------------------------------- */

/* [0]: the daemon's end (close-on-exec), [1]: the worker's end. */
static int pair[2] = {-1, -1};

static void
channel_open(void)
{
	char num[16];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pair), 0,
	    "socketpair: %s", strerror(errno));
	cr_assert_eq(fcntl(pair[0], F_SETFD, FD_CLOEXEC), 0);
	(void)snprintf(num, sizeof(num), "%d", pair[1]);
	cr_assert_eq(setenv("KEYVISOR_NOTIFY_FD", num, 1), 0);
}

static void
channel_close(void)
{
	if (pair[0] >= 0)
		(void)close(pair[0]);
	if (pair[1] >= 0)
		(void)close(pair[1]);
	pair[0] = pair[1] = -1;
	(void)unsetenv("KEYVISOR_NOTIFY_FD");
}

/*
 * The next message on the daemon's end, waiting up to MS milliseconds, in
 * BUF (MSG_MAX bytes).  Returns its length, 0 at end of file, -1 if none
 * came.
 */
static ssize_t
next_msg(char *buf, int ms)
{
	struct pollfd pfd = {.fd = pair[0], .events = POLLIN};
	ssize_t       n;

	if (poll(&pfd, 1, ms) != 1)
		return -1;
	n = recv(pair[0], buf, MSG_MAX, MSG_DONTWAIT | MSG_TRUNC);
	cr_assert(n >= 0, "recv: %s", strerror(errno));
	cr_assert(n <= MSG_MAX, "a message of %zd bytes", n);
	return n;
}

/* The next message must be exactly WANT (already sent: no waiting). */
static void
expect(const char *want)
{
	char    buf[MSG_MAX];
	ssize_t n = next_msg(buf, 0);

	cr_assert(n > 0, "no message, expected \"%s\"", want);
	cr_assert(
	    (size_t)n == strlen(want) && memcmp(buf, want, (size_t)n) == 0,
	    "got \"%.*s\" (%zd bytes), expected \"%s\"", (int)n, buf, n, want);
}

static void
expect_none(void)
{
	char    buf[MSG_MAX];
	ssize_t n = next_msg(buf, 0);

	cr_assert(n < 0, "unexpected message \"%.*s\"", (int)n, buf);
}

/* Name NUM in KEYVISOR_NOTIFY_FD (NULL: unset it) and forget the cache. */
static void
notify_fd_is(const char *num)
{
	if (num != NULL)
		cr_assert_eq(setenv("KEYVISOR_NOTIFY_FD", num, 1), 0);
	else
		cr_assert_eq(unsetenv("KEYVISOR_NOTIFY_FD"), 0);
	kv_worker_reset();
}

/* Every channel function, with valid arguments, returns WANT. */
static void
all_return(int want, const char *why)
{
	cr_assert_eq(kv_ready(), want, "kv_ready, %s", why);
	cr_assert_eq(kv_heartbeat(), want, "kv_heartbeat, %s", why);
	cr_assert_eq(kv_touch(), want, "kv_touch, %s", why);
	cr_assert_eq(kv_set_value("x", 1), want, "kv_set_value, %s", why);
	cr_assert_eq(kv_set_status("ok"), want, "kv_set_status, %s", why);
}

TestSuite(channel, .init = channel_open, .fini = channel_close);

Test(channel, each_call_is_one_message)
{
	cr_assert_eq(kv_ready(), 0);
	cr_assert_eq(kv_heartbeat(), 0);
	cr_assert_eq(kv_touch(), 0);
	cr_assert_eq(kv_heartbeat(), 0);
	expect("READY");
	expect("HEARTBEAT");
	expect("TOUCH");
	expect("HEARTBEAT");
	expect_none();
	NO_LEAKS();
}

Test(channel, value_is_hex)
{
	static const uint8_t one[] = {0xab}, zero[] = {0x00};
	uint8_t              all[KV_VALUE_MAX];
	char                 want[sizeof("VALUE ") + 2 * KV_VALUE_MAX];
	size_t               i, n;

	cr_assert_eq(kv_set_value("", 0), 0);
	expect("VALUE");
	cr_assert_eq(kv_set_value(NULL, 0), 0);
	expect("VALUE");
	cr_assert_eq(kv_set_value(zero, 1), 0);
	expect("VALUE 00");
	cr_assert_eq(kv_set_value(one, 1), 0);
	expect("VALUE ab");
	cr_assert_eq(kv_set_value("hi", 2), 0);
	expect("VALUE 6869");
	n = (size_t)sprintf(want, "VALUE ");
	for (i = 0; i < KV_VALUE_MAX; i++) {
		all[i] = (uint8_t)i;
		n += (size_t)sprintf(want + n, "%02x", (unsigned)i);
	}
	cr_assert_eq(kv_set_value(all, sizeof(all)), 0);
	expect(want);
	expect_none();
	NO_LEAKS();
}

Test(channel, bad_values_send_nothing)
{
	uint8_t big[KV_VALUE_MAX + 1] = {0};

	cr_assert_eq(kv_set_value(big, sizeof(big)), -EMSGSIZE);
	cr_assert_eq(kv_set_value(big, SIZE_MAX), -EMSGSIZE);
	cr_assert_eq(kv_set_value(NULL, 1), -EINVAL);
	expect_none();
	NO_LEAKS();
}

Test(channel, status_is_sent_as_is)
{
	char text[KV_STATUS_MAX + 1], want[sizeof("STATUS ") + KV_STATUS_MAX];

	cr_assert_eq(kv_set_status("warming up: 3/10"), 0);
	expect("STATUS warming up: 3/10");
	cr_assert_eq(kv_set_status("Grüße, 世界 🙂"), 0);
	expect("STATUS Grüße, 世界 🙂");
	cr_assert_eq(kv_set_status(""), 0);
	expect("STATUS ");
	/* Exactly KV_STATUS_MAX bytes, ending in a two-byte character. */
	memset(text, 'x', KV_STATUS_MAX - 2);
	memcpy(text + KV_STATUS_MAX - 2, "\xc3\xa9", 3);
	cr_assert_eq(strlen(text), KV_STATUS_MAX);
	cr_assert_eq(kv_set_status(text), 0);
	(void)snprintf(want, sizeof(want), "STATUS %s", text);
	expect(want);
	expect_none();
	NO_LEAKS();
}

Test(channel, bad_status_sends_nothing)
{
	static const char *const bad[] = {"two\nlines", "cr\r", "tab\there",
	    "del\x7f", "\x1b[31mred", "nel \xc2\x85", "csi \xc2\x9b",
	    "ls \xe2\x80\xa8", "ps \xe2\x80\xa9", "\xff", "\x80", "\xc0\x80",
	    "\xc1\xbf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
	    "\xf5\x80\x80\x80", "cut \xe2\x82", "cut \xf0\x9f\x99"};
	static char              long_text[10000];
	char                     text[KV_STATUS_MAX + 2];
	size_t                   i;

	cr_assert_eq(kv_set_status(NULL), -EINVAL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(kv_set_status(bad[i]), -EINVAL, "bad[%zu]", i);
	/* KV_STATUS_MAX bytes, the last one the start of a character. */
	memset(text, 'x', KV_STATUS_MAX - 1);
	memcpy(text + KV_STATUS_MAX - 1, "\xc3", 2);
	cr_assert_eq(kv_set_status(text), -EINVAL);
	/* One byte too many: the size is checked first. */
	memset(text, 'x', KV_STATUS_MAX + 1);
	text[KV_STATUS_MAX + 1] = '\0';
	cr_assert_eq(kv_set_status(text), -EMSGSIZE);
	text[0] = '\n';
	cr_assert_eq(kv_set_status(text), -EMSGSIZE);
	memset(long_text, 'y', sizeof(long_text) - 1);
	cr_assert_eq(kv_set_status(long_text), -EMSGSIZE);
	expect_none();
	NO_LEAKS();
}

/* Bad arguments are refused before the channel is looked at. */
Test(no_channel, arguments_are_checked_first)
{
	uint8_t big[KV_VALUE_MAX + 1] = {0};

	cr_assert_eq(kv_set_value(big, sizeof(big)), -EMSGSIZE);
	cr_assert_eq(kv_set_value(NULL, 3), -EINVAL);
	cr_assert_eq(kv_set_status("a\nb"), -EINVAL);
	cr_assert_eq(kv_set_status(NULL), -EINVAL);
	NO_LEAKS();
}

Test(no_channel, unset_or_not_a_number_or_below_3)
{
	static const char *const bad[] = {"", "abc", "3x", "x3", "-3", "+3",
	    " 3", "3 ", "3\n", "03", "0x3", "3.0", "0", "1", "2", "2147483648",
	    "99999999999999999999999"};
	size_t                   i;

	notify_fd_is(NULL);
	all_return(-ENOTCONN, "unset");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		notify_fd_is(bad[i]);
		all_return(-ENOTCONN, bad[i]);
	}
	NO_LEAKS();
}

Test(no_channel, not_a_socket)
{
	char num[16];
	int  p[2], fd;

	cr_assert_eq(pipe(p), 0);
	(void)snprintf(num, sizeof(num), "%d", p[1]);
	notify_fd_is(num);
	all_return(-ENOTCONN, "a pipe");
	fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	cr_assert(fd >= 0);
	(void)snprintf(num, sizeof(num), "%d", fd);
	notify_fd_is(num);
	all_return(-ENOTCONN, "/dev/null");
	/* A closed fd: fstat() fails. */
	cr_assert_eq(close(fd), 0);
	notify_fd_is(num);
	all_return(-ENOTCONN, "a closed fd");
	(void)close(p[0]);
	(void)close(p[1]);
	NO_LEAKS();
}

/* The first answer stands until the process ends (or the test hook). */
Test(channel, the_environment_is_read_once)
{
	char num[16];

	(void)snprintf(num, sizeof(num), "%d", pair[1]);
	cr_assert_eq(kv_ready(), 0);
	expect("READY");
	cr_assert_eq(unsetenv("KEYVISOR_NOTIFY_FD"), 0);
	cr_assert_eq(kv_heartbeat(), 0, "the channel was forgotten");
	expect("HEARTBEAT");
	/* And no channel stays no channel. */
	notify_fd_is(NULL);
	cr_assert_eq(kv_touch(), -ENOTCONN);
	cr_assert_eq(setenv("KEYVISOR_NOTIFY_FD", num, 1), 0);
	cr_assert_eq(kv_touch(), -ENOTCONN, "the environment was read again");
	kv_worker_reset();
	cr_assert_eq(kv_touch(), 0);
	expect("TOUCH");
	NO_LEAKS();
}

struct fdstate {
	int   fd_flags, fl_flags;
	dev_t dev;
	ino_t ino;
};

static struct fdstate
fdstate(int fd)
{
	struct fdstate s;
	struct stat    st;

	s.fd_flags = fcntl(fd, F_GETFD);
	s.fl_flags = fcntl(fd, F_GETFL);
	cr_assert(s.fd_flags >= 0 && s.fl_flags >= 0, "fd %d is closed", fd);
	cr_assert_eq(fstat(fd, &st), 0);
	s.dev = st.st_dev;
	s.ino = st.st_ino;
	return s;
}

static void
same_fdstate(const struct fdstate *a, const struct fdstate *b)
{
	cr_assert_eq(a->fd_flags, b->fd_flags, "FD_CLOEXEC changed");
	cr_assert_eq(a->fl_flags, b->fl_flags, "file status flags changed");
	cr_assert(a->dev == b->dev && a->ino == b->ino, "another file");
}

Test(channel, the_fd_is_left_alone)
{
	struct fdstate before, after;
	int            round;

	/* Blocking without FD_CLOEXEC, then non-blocking with it. */
	for (round = 0; round < 2; round++) {
		if (round == 1) {
			cr_assert_eq(fcntl(pair[1], F_SETFD, FD_CLOEXEC), 0);
			cr_assert_eq(fcntl(pair[1], F_SETFL, O_NONBLOCK), 0);
		}
		before = fdstate(pair[1]);
		all_return(0, "a channel");
		after = fdstate(pair[1]);
		same_fdstate(&before, &after);
		expect("READY");
		expect("HEARTBEAT");
		expect("TOUCH");
		expect("VALUE 78");
		expect("STATUS ok");
		/* The reset hook forgets the fd; it does not close it. */
		kv_worker_reset();
		after = fdstate(pair[1]);
		same_fdstate(&before, &after);
	}
	NO_LEAKS();
}

Test(channel, errno_is_preserved)
{
	errno = EDOM;
	cr_assert_eq(kv_ready(), 0);
	cr_assert_eq(kv_set_value("x", 1), 0);
	cr_assert_eq(kv_set_status("\n"), -EINVAL);
	cr_assert_eq(errno, EDOM);
	expect("READY");
	expect("VALUE 78");
	(void)close(pair[0]);
	pair[0] = -1;
	cr_assert_eq(kv_heartbeat(), -EPIPE);
	cr_assert_eq(errno, EDOM);
	notify_fd_is(NULL);
	errno = EDOM;
	cr_assert_eq(kv_touch(), -ENOTCONN);
	cr_assert_eq(errno, EDOM);
	cr_assert_eq(kv_self_key(), NULL);
	cr_assert_eq(errno, EDOM);
	NO_LEAKS();
}

/*
 * MSG_NOSIGNAL: a daemon gone is an error, not a SIGPIPE.  A daemon that
 * left messages unread is ECONNRESET once, then EPIPE.
 */
Test(channel, closed_peer_is_an_error_not_sigpipe)
{
	cr_assert_neq(signal(SIGPIPE, SIG_DFL), SIG_ERR);
	cr_assert_eq(kv_ready(), 0);
	(void)close(pair[0]);
	pair[0] = -1;
	cr_assert_eq(kv_heartbeat(), -ECONNRESET);
	cr_assert_eq(kv_touch(), -EPIPE);
	cr_assert_eq(kv_set_value("x", 1), -EPIPE);
	NO_LEAKS();
}

Test(channel, full_nonblocking_channel_is_eagain)
{
	char buf[MSG_MAX];
	int  i, r = 0;

	cr_assert_eq(fcntl(pair[1], F_SETFL, O_NONBLOCK), 0);
	for (i = 0; i < 1000000 && (r = kv_heartbeat()) == 0; i++)
		;
	cr_assert_eq(r, -EAGAIN, "%d messages, then %d", i, r);
	cr_assert(i > 0);
	cr_assert(next_msg(buf, 0) > 0);
	cr_assert_eq(kv_heartbeat(), 0, "room again after one recv");
	NO_LEAKS();
}

static volatile sig_atomic_t handler_rc = 1;

static void
on_usr1(int sig)
{
	(void)sig;
	handler_rc = kv_heartbeat();
}

/* After a first call, a signal handler may use the channel. */
Test(channel, usable_from_a_signal_handler)
{
	struct sigaction sa = {.sa_handler = on_usr1};

	cr_assert_eq(kv_ready(), 0);
	sigemptyset(&sa.sa_mask);
	cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	cr_assert_eq(raise(SIGUSR1), 0);
	cr_assert_eq(handler_rc, 0);
	expect("READY");
	expect("HEARTBEAT");
	NO_LEAKS();
}

#define PER_THREAD 10 /* NTHREADS * PER_THREAD fit the socket's buffer */

static pthread_barrier_t start_line;

static void *
beat(void *arg)
{
	intptr_t bad = 0;
	int      i;

	(void)arg;
	(void)pthread_barrier_wait(&start_line);
	for (i = 0; i < PER_THREAD; i++)
		bad += kv_heartbeat() != 0;
	bad += kv_self_key() == NULL;
	return (void *)bad;
}

/* Threads racing for the first call all get the channel. */
Test(channel, threads_race_for_the_first_call)
{
	pthread_t t[NTHREADS];
	char      buf[MSG_MAX];
	void     *bad;
	int       i, n = 0;

	cr_assert_eq(setenv("KEYVISOR_KEY", "user:1", 1), 0);
	cr_assert_eq(pthread_barrier_init(&start_line, NULL, NTHREADS), 0);
	for (i = 0; i < NTHREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, beat, NULL), 0);
	for (i = 0; i < NTHREADS; i++) {
		cr_assert_eq(pthread_join(t[i], &bad), 0);
		cr_assert_eq((intptr_t)bad, 0, "thread %d failed", i);
	}
	(void)pthread_barrier_destroy(&start_line);
	while (next_msg(buf, 0) > 0) {
		cr_assert(memcmp(buf, "HEARTBEAT", 9) == 0);
		n++;
	}
	cr_assert_eq(n, NTHREADS * PER_THREAD);
	NO_LEAKS();
}

/* ---- kv_self_key() ------------------------------------------------------- */

Test(self_key, is_keyvisor_key_read_once)
{
	const char *k;

	cr_assert_eq(setenv("KEYVISOR_KEY", "user:42", 1), 0);
	k = kv_self_key();
	cr_assert_str_eq(k, "user:42");
	cr_assert_eq(setenv("KEYVISOR_KEY", "user:43", 1), 0);
	cr_assert_eq(kv_self_key(), k, "read again");
	kv_worker_reset();
	cr_assert_str_eq(kv_self_key(), "user:43");
	cr_assert_eq(unsetenv("KEYVISOR_KEY"), 0);
	kv_worker_reset();
	cr_assert_null(kv_self_key());
	cr_assert_eq(setenv("KEYVISOR_KEY", "", 1), 0);
	kv_worker_reset();
	cr_assert_null(kv_self_key(), "an empty key is no key");
	NO_LEAKS();
}

/* ---- kv_lookup() --------------------------------------------------------- */

static char           reg_name[64]; /* $KEYVISOR_REGISTRY */
static char           seg_name[80]; /* "keyvisor." + reg_name */
static struct kv_reg *writer;

/* Segment names are per test process: tests may run in parallel. */
static void
registry_names(void)
{
	(void)snprintf(
	    reg_name, sizeof(reg_name), "kvtest-worker-%d", (int)getpid());
	(void)snprintf(seg_name, sizeof(seg_name), "keyvisor.%s", reg_name);
}

static void
registry_create(void)
{
	/* Read-only for its owner: kv_lookup() must not ask for more. */
	struct kv_reg_params p = {.capacity = 64, .mode = 0400};
	int                  rc;

	rc = kv_reg_create(seg_name, &p, &writer);
	cr_assert_eq(rc, 0, "create %s: %s", seg_name, kv_reg_strerror(rc));
}

static void
registry_open(void)
{
	registry_names();
	(void)kv_reg_unlink(seg_name); /* a crashed run's, with our pid */
	registry_create();
	cr_assert_eq(setenv("KEYVISOR_REGISTRY", reg_name, 1), 0);
	cr_assert_eq(unsetenv("KEYVISOR_INSTANCE"), 0);
}

static void
registry_close(void)
{
	writer = kv_reg_close(writer);
	(void)kv_reg_unlink(seg_name);
	kv_worker_reset();
}

static uint64_t
start_of(pid_t pid)
{
	uint64_t st;
	int      rc = kv_proc_start_time(pid, &st);

	cr_assert_eq(rc, 0, "start time of %d: %s", (int)pid, strerror(-rc));
	return st;
}

/* Register KEY for PID with start time START, published or not. */
static void
put(const char *key, pid_t pid, uint64_t start, uint32_t flags)
{
	struct kv_entry e = {0};
	int             rc;

	e.keylen = (uint16_t)strlen(key);
	memcpy(e.key, key, e.keylen);
	e.pid = pid;
	e.start_time = start;
	e.owner = (int32_t)getpid();
	e.flags = flags;
	memcpy(e.kind, "test", 5);
	e.valuelen = 2;
	memcpy(e.value, "v1", 2);
	rc = kv_reg_register(writer, &e, NULL);
	cr_assert_eq(rc, 0, "register %s: %s", key, kv_reg_strerror(rc));
}

/* kv_lookup(KEY) must fail with WANT and leave *out alone. */
static void
lookup_fails(const char *key, int want)
{
	static const struct kv_entry zero;
	struct kv_entry              out;

	memset(&out, 0, sizeof(out));
	cr_assert_eq(kv_lookup(key, &out), want, "lookup \"%s\"",
	    key != NULL ? key : "(null)");
	cr_assert(memcmp(&out, &zero, sizeof(out)) == 0, "*out was written");
}

TestSuite(lookup, .init = registry_open, .fini = registry_close);

Test(lookup, finds_a_live_process)
{
	struct kv_entry e;
	pid_t           me = getpid();

	put("self", me, start_of(me), KV_ENTRY_PUBLISHED);
	cr_assert_eq(kv_lookup("self", &e), 0);
	cr_assert_eq(e.pid, me);
	cr_assert_eq(e.start_time, start_of(me));
	cr_assert_str_eq(e.key, "self");
	cr_assert_eq(e.keylen, 4);
	cr_assert_str_eq(e.kind, "test");
	cr_assert(e.valuelen == 2 && memcmp(e.value, "v1", 2) == 0);
	NO_LEAKS();
}

Test(lookup, absent_reserved_or_invalid)
{
	char longkey[KV_KEY_MAX + 2];

	lookup_fails("nobody", -ENOENT);
	put("reserved", 0, 0, 0); /* a name claimed before the fork */
	lookup_fails("reserved", -ENOENT);
	lookup_fails("", -EINVAL);
	lookup_fails("two words", -EINVAL);
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	lookup_fails(longkey, -EINVAL);
	lookup_fails(NULL, -EINVAL);
	cr_assert_eq(kv_lookup("nobody", NULL), -EINVAL);
	NO_LEAKS();
}

/*
 * A process that has exited but is not reaped still holds its pid (and its
 * /proc entry), so it is found; once reaped it is gone.
 */
Test(lookup, dead_process_is_esrch)
{
	struct kv_entry e;
	siginfo_t       si;
	pid_t           child;

	child = fork();
	cr_assert(child >= 0);
	if (child == 0)
		_exit(0);
	cr_assert_eq(waitid(P_PID, (id_t)child, &si, WEXITED | WNOWAIT), 0);
	put("zombie", child, start_of(child), KV_ENTRY_PUBLISHED);
	cr_assert_eq(kv_lookup("zombie", &e), 0);
	cr_assert_eq(e.pid, child);
	cr_assert_eq(waitpid(child, NULL, 0), child);
	lookup_fails("zombie", -ESRCH);
	NO_LEAKS();
}

/* The pid is alive, but it is not the process that registered. */
Test(lookup, reused_pid_is_esrch)
{
	pid_t me = getpid();

	put("older", me, start_of(me) - 1, KV_ENTRY_PUBLISHED);
	put("newer", me, start_of(me) + 1, KV_ENTRY_PUBLISHED);
	lookup_fails("older", -ESRCH);
	lookup_fails("newer", -ESRCH);
	NO_LEAKS();
}

/* A failed open is not remembered: the daemon may start after us. */
Test(lookup, missing_registry_is_retried)
{
	struct kv_entry e;

	writer = kv_reg_close(writer);
	cr_assert_eq(kv_reg_unlink(seg_name), 0);
	lookup_fails("self", -ENOENT);
	registry_create();
	put("self", getpid(), start_of(getpid()), KV_ENTRY_PUBLISHED);
	cr_assert_eq(kv_lookup("self", &e), 0);
	NO_LEAKS();
}

/* Mapped once: the name can go, the mapping stays and sees new entries. */
Test(lookup, the_mapping_is_kept)
{
	struct kv_entry e;
	pid_t           me = getpid();

	lookup_fails("late", -ENOENT);
	cr_assert_eq(kv_reg_unlink(seg_name), 0);
	put("late", me, start_of(me), KV_ENTRY_PUBLISHED);
	cr_assert_eq(kv_lookup("late", &e), 0);
	cr_assert_eq(kv_reg_set_value(writer, "late", 4, me, "v2", 2), 0);
	cr_assert_eq(kv_lookup("late", &e), 0);
	cr_assert(e.valuelen == 2 && memcmp(e.value, "v2", 2) == 0);
	NO_LEAKS();
}

Test(lookup, registry_name_from_the_environment)
{
	static const char *const bad[] = {
	    "a/b", ".hidden", "two words", "semi;colon", "\xc3\xa9"};
	struct kv_entry e;
	char            name[66];
	pid_t           me = getpid();
	size_t          i;

	put("self", me, start_of(me), KV_ENTRY_PUBLISHED);
	/* $KEYVISOR_INSTANCE when $KEYVISOR_REGISTRY is unset or empty. */
	cr_assert_eq(unsetenv("KEYVISOR_REGISTRY"), 0);
	cr_assert_eq(setenv("KEYVISOR_INSTANCE", reg_name, 1), 0);
	cr_assert_eq(kv_lookup("self", &e), 0);
	kv_worker_reset();
	cr_assert_eq(setenv("KEYVISOR_REGISTRY", "", 1), 0);
	cr_assert_eq(kv_lookup("self", &e), 0);
	/* $KEYVISOR_REGISTRY wins over $KEYVISOR_INSTANCE. */
	kv_worker_reset();
	cr_assert_eq(setenv("KEYVISOR_REGISTRY", "kvtest-no-such", 1), 0);
	lookup_fails("self", -ENOENT);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(setenv("KEYVISOR_REGISTRY", bad[i], 1), 0);
		kv_worker_reset();
		cr_assert_eq(kv_lookup("self", &e), -EINVAL, "%s", bad[i]);
	}
	/* keyvisord's limit is 64 bytes: the longest name is merely absent. */
	memset(name, 'n', 65);
	name[65] = '\0';
	cr_assert_eq(setenv("KEYVISOR_REGISTRY", name, 1), 0);
	kv_worker_reset();
	cr_assert_eq(kv_lookup("self", &e), -EINVAL, "65 bytes");
	name[64] = '\0';
	cr_assert_eq(setenv("KEYVISOR_REGISTRY", name, 1), 0);
	kv_worker_reset();
	cr_assert_eq(kv_lookup("self", &e), -ENOENT, "64 bytes");
	NO_LEAKS();
}

static void *
look(void *arg)
{
	struct kv_entry e;

	(void)pthread_barrier_wait(&start_line);
	return (void *)(intptr_t)kv_lookup(arg, &e);
}

/* Threads racing to map the registry: one mapping wins, none leaks. */
Test(lookup, threads_race_for_the_first_lookup)
{
	pthread_t t[NTHREADS];
	void     *rc;
	int       i;

	put("self", getpid(), start_of(getpid()), KV_ENTRY_PUBLISHED);
	cr_assert_eq(pthread_barrier_init(&start_line, NULL, NTHREADS), 0);
	for (i = 0; i < NTHREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, look, "self"), 0);
	for (i = 0; i < NTHREADS; i++) {
		cr_assert_eq(pthread_join(t[i], &rc), 0);
		cr_assert_eq(
		    (intptr_t)rc, 0, "thread %d: %d", i, (int)(intptr_t)rc);
	}
	(void)pthread_barrier_destroy(&start_line);
	NO_LEAKS();
}

/* ---- The example workers ------------------------------------------------- */

/* build/worker/kv-worker, from build/tests/unit/test_worker; NULL if absent. */
static const char *
kv_worker_path(void)
{
	static char path[PATH_MAX];
	ssize_t     n = readlink("/proc/self/exe", path, sizeof(path) - 32);
	char       *slash;

	if (n <= 0)
		return NULL;
	path[n] = '\0';
	if ((slash = strrchr(path, '/')) == NULL)
		return NULL;
	strcpy(slash, "/../../worker/kv-worker");
	return access(path, X_OK) == 0 ? path : NULL;
}

/* worker/examples/sh-worker.sh, from $KV_TESTDATA (tests/data). */
static const char *
sh_worker_path(void)
{
	static char path[PATH_MAX];
	const char *data = getenv("KV_TESTDATA");

	if (data == NULL)
		return NULL;
	(void)snprintf(
	    path, sizeof(path), "%s/../../worker/examples/sh-worker.sh", data);
	return access(path, R_OK) == 0 ? path : NULL;
}

/*
 * Run ARGV with the worker's end of the channel, its stdout into a pipe
 * whose read end goes to *OUT when OUT is not NULL.  Our copy of the
 * worker's end is closed, so the channel ends when the child does.  With
 * AT3, the child gets the channel on fd 3, as from keyvisord; else on the
 * (likely higher) number it has here.
 */
static pid_t
spawn(char *const argv[], int *out, bool at3)
{
	int   p[2] = {-1, -1};
	pid_t pid;

	if (out != NULL)
		cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	if (at3)
		cr_assert_eq(setenv("KEYVISOR_NOTIFY_FD", "3", 1), 0);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		if (out != NULL && dup2(p[1], 1) == -1)
			_exit(126);
		if (at3 && dup2(pair[1], 3) == -1)
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	(void)close(pair[1]);
	pair[1] = -1;
	if (out != NULL) {
		(void)close(p[1]);
		*out = p[0];
	}
	return pid;
}

static void
exits_zero(pid_t pid)
{
	int status;

	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x",
	    status);
}

TestSuite(examples, .init = channel_open, .fini = channel_close);

Test(examples, kv_worker_sends_what_it_is_told)
{
	char        buf[MSG_MAX + 1];
	const char *exe = kv_worker_path();
	ssize_t     n;
	int         beats = 0, touches = 0, i;
	pid_t       pid;

	if (exe == NULL)
		cr_skip_test("kv-worker is not built");
	pid = spawn((char *[]){(char *)exe, "--value", "hi", "--ready-after",
	                "0.05", "--heartbeat", "0.1", "--touch", "0.1",
	                "--exit-after", "0.35", NULL},
	    NULL, false);
	for (i = 0; (n = next_msg(buf, WAIT_MS)) > 0; i++) {
		buf[n] = '\0';
		if (i == 0)
			cr_assert_str_eq(buf, "VALUE 6869");
		else if (i == 1)
			cr_assert_str_eq(buf, "READY");
		else if (strcmp(buf, "HEARTBEAT") == 0)
			beats++;
		else {
			cr_assert_str_eq(buf, "TOUCH");
			touches++;
		}
	}
	cr_assert_eq(n, 0, "no end of file");
	cr_assert(
	    beats >= 2 && touches >= 2, "%d beats, %d touches", beats, touches);
	exits_zero(pid);
	NO_LEAKS();
}

/* Without the new options kv-worker stays silent on the channel. */
Test(examples, kv_worker_default_sends_nothing)
{
	char        buf[MSG_MAX];
	const char *exe = kv_worker_path();
	pid_t       pid;

	if (exe == NULL)
		cr_skip_test("kv-worker is not built");
	pid = spawn(
	    (char *[]){(char *)exe, "--exit-after", "0.05", NULL}, NULL, false);
	cr_assert_eq(next_msg(buf, WAIT_MS), 0, "a message, or no end");
	exits_zero(pid);
	NO_LEAKS();
}

Test(examples, kv_worker_looks_up_a_peer)
{
	char        want[64], got[64] = {0};
	const char *exe = kv_worker_path();
	ssize_t     n;
	pid_t       pid, me = getpid();
	int         out;

	if (exe == NULL)
		cr_skip_test("kv-worker is not built");
	registry_open();
	put("peer", me, start_of(me), KV_ENTRY_PUBLISHED);
	pid = spawn((char *[]){(char *)exe, "--lookup", "peer", "--exit-after",
	                "0", NULL},
	    &out, false);
	n = read(out, got, sizeof(got) - 1);
	(void)close(out);
	exits_zero(pid);
	registry_close();
	(void)snprintf(want, sizeof(want), "lookup peer pid %d\n", (int)me);
	cr_assert(n > 0);
	cr_assert_str_eq(got, want);
	NO_LEAKS();
}

Test(examples, sh_worker_speaks_the_protocol)
{
	char        buf[MSG_MAX];
	const char *script = sh_worker_path();
	ssize_t     n;
	pid_t       pid;

	if (script == NULL)
		cr_skip_test("sh-worker.sh not found ($KV_TESTDATA)");
	/* On fd 3: dash redirects only fds 0 to 9 (see sh-worker.sh). */
	pid = spawn(
	    (char *[]){"/bin/sh", (char *)script, "hi", NULL}, NULL, true);
	n = next_msg(buf, WAIT_MS);
	cr_assert(n == 11 && memcmp(buf, "VALUE 6869\n", 11) == 0,
	    "got \"%.*s\"", (int)n, buf);
	n = next_msg(buf, WAIT_MS);
	cr_assert(n == 6 && memcmp(buf, "READY\n", 6) == 0, "got \"%.*s\"",
	    (int)n, buf);
	cr_assert_eq(kill(pid, SIGTERM), 0);
	exits_zero(pid);
	NO_LEAKS();
}
