/*
 * paths: instance names, the control socket's path and the segment's name.
 *
 * Criterion runs each test in its own process, so a test may change the
 * environment freely; each one still sets every variable it depends on.
 * Root and non-root cannot be switched inside a test: the socket tests
 * check the branch for the uid they run under.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "paths.h"

Test(name_ok, good)
{
	static const char *const good[] = {"default", "a", "A", "0", "my-app",
	    "my_app", "v1.2", "a.", "a..b", "-x", "_", "Z9._-"};
	char   longest[PATHS_NAME_MAX + 1];
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert_eq(paths_name_ok(good[i]), 1, "\"%s\"", good[i]);
	memset(longest, 'n', PATHS_NAME_MAX);
	longest[PATHS_NAME_MAX] = '\0';
	cr_assert_eq(paths_name_ok(longest), 1);
}

Test(name_ok, bad)
{
	static const char *const bad[] = {"", ".", "..", ".hidden", "a/b", "/",
	    "../x", "a b", " a", "a ", "a\tb", "a\nb", "caf\xc3\xa9",
	    "\xe2\x98\x83", "a:b", "a*", "a\x7f", "\xff"};
	char   toolong[PATHS_NAME_MAX + 2];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(paths_name_ok(bad[i]), 0, "\"%s\"", bad[i]);
	memset(toolong, 'n', PATHS_NAME_MAX + 1);
	toolong[PATHS_NAME_MAX + 1] = '\0';
	cr_assert_eq(strlen(toolong), 65);
	cr_assert_eq(paths_name_ok(toolong), 0);
}

Test(instance, precedence)
{
	cr_assert_eq(unsetenv("KEYVISOR_INSTANCE"), 0);
	cr_assert_str_eq(paths_instance(NULL), "default");
	cr_assert_str_eq(paths_instance("cli"), "cli");

	cr_assert_eq(setenv("KEYVISOR_INSTANCE", "env", 1), 0);
	cr_assert_str_eq(paths_instance(NULL), "env");
	cr_assert_str_eq(paths_instance("cli"), "cli");

	/* An empty variable counts as unset. */
	cr_assert_eq(setenv("KEYVISOR_INSTANCE", "", 1), 0);
	cr_assert_str_eq(paths_instance(NULL), "default");
	cr_assert_str_eq(paths_instance("cli"), "cli");
}

Test(socket, env_override)
{
	char buf[256];

	cr_assert_eq(setenv("KEYVISOR_SOCKET", "/srv/kv/ctl.sock", 1), 0);
	cr_assert_eq(setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1), 0);
	cr_assert_eq(paths_socket("default", buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "/srv/kv/ctl.sock");
	/* The override names the socket whatever the instance. */
	cr_assert_eq(paths_socket("other", buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "/srv/kv/ctl.sock");
}

/* Exactly fitting is fine; one byte short is -ENAMETOOLONG. */
Test(socket, env_override_buffer_bounds)
{
	char buf[17];

	cr_assert_eq(setenv("KEYVISOR_SOCKET", "/srv/kv/ctl.sock", 1), 0);
	cr_assert_eq(paths_socket("default", buf, 17), 0);
	cr_assert_str_eq(buf, "/srv/kv/ctl.sock");
	cr_assert_eq(paths_socket("default", buf, 16), -ENAMETOOLONG);
}

Test(socket, huge_env_is_too_long)
{
	size_t n = 100000;
	char  *huge = malloc(n + 1);
	char   buf[4096];

	cr_assert_not_null(huge);
	memset(huge, 'x', n);
	huge[0] = '/';
	huge[n] = '\0';
	cr_assert_eq(setenv("KEYVISOR_SOCKET", huge, 1), 0);
	cr_assert_eq(paths_socket("default", buf, sizeof(buf)), -ENAMETOOLONG);
	free(huge);
}

/* An empty $KEYVISOR_SOCKET is ignored, as an empty $KEYVISOR_INSTANCE is. */
Test(socket, empty_env_ignored)
{
	char buf[256], want[256];

	cr_assert_eq(setenv("KEYVISOR_SOCKET", "", 1), 0);
	cr_assert_eq(unsetenv("XDG_RUNTIME_DIR"), 0);
	cr_assert_eq(paths_socket("default", buf, sizeof(buf)), 0);
	if (getuid() == 0)
		snprintf(want, sizeof(want), "/run/keyvisor/default.sock");
	else
		snprintf(want, sizeof(want), "/tmp/keyvisor-%u/default.sock",
		    (unsigned)getuid());
	cr_assert_str_eq(buf, want);
}

Test(socket, default_for_this_uid)
{
	char buf[256], want[256];

	cr_assert_eq(unsetenv("KEYVISOR_SOCKET"), 0);
	cr_assert_eq(setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1), 0);
	cr_assert_eq(paths_socket("web", buf, sizeof(buf)), 0);
	if (getuid() == 0) /* root ignores XDG_RUNTIME_DIR */
		snprintf(want, sizeof(want), "/run/keyvisor/web.sock");
	else
		snprintf(want, sizeof(want), "/run/user/4242/keyvisor/web.sock");
	cr_assert_str_eq(buf, want);

	/* Without XDG_RUNTIME_DIR, or with a relative one (invalid per the
	 * XDG base directory spec), a non-root user falls back to /tmp. */
	cr_assert_eq(unsetenv("XDG_RUNTIME_DIR"), 0);
	cr_assert_eq(paths_socket("web", buf, sizeof(buf)), 0);
	if (getuid() != 0)
		snprintf(want, sizeof(want), "/tmp/keyvisor-%u/web.sock",
		    (unsigned)getuid());
	cr_assert_str_eq(buf, want);
	cr_assert_eq(setenv("XDG_RUNTIME_DIR", "run/user", 1), 0);
	cr_assert_eq(paths_socket("web", buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, want);
}

Test(socket, default_too_long)
{
	char buf[8];

	cr_assert_eq(unsetenv("KEYVISOR_SOCKET"), 0);
	cr_assert_eq(unsetenv("XDG_RUNTIME_DIR"), 0);
	cr_assert_eq(paths_socket("default", buf, sizeof(buf)), -ENAMETOOLONG);
}

Test(segment, names)
{
	char buf[128];

	cr_assert_eq(paths_segment("default", buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "keyvisor.default");
	cr_assert_eq(paths_segment("a-b_c.1", buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "keyvisor.a-b_c.1");
	/* No slash: kv_reg_create() takes the name without it. */
	cr_assert(strchr(buf, '/') == NULL);
}

Test(segment, invalid_registry)
{
	static const char *const bad[] = {"", ".x", "a/b", "a b", "caf\xc3\xa9",
	    "12345678901234567890123456789012345678901234567890123456789012345"};
	char   buf[128];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(paths_segment(bad[i], buf, sizeof(buf)), -EINVAL,
		    "\"%s\"", bad[i]);
}

Test(segment, buffer_bounds)
{
	char buf[32];

	/* "keyvisor.default" is 16 bytes and its NUL the 17th. */
	cr_assert_eq(paths_segment("default", buf, 17), 0);
	cr_assert_str_eq(buf, "keyvisor.default");
	cr_assert_eq(paths_segment("default", buf, 16), -ENAMETOOLONG);
	cr_assert_eq(paths_segment("default", buf, 1), -ENAMETOOLONG);
}
