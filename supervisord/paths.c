/*
 * Instance naming and paths.  Pure but for getenv(3) and getuid(2).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paths.h"

int
paths_name_ok(const char *name)
{
	size_t i, n = strlen(name);

	if (n == 0 || n > PATHS_NAME_MAX || name[0] == '.')
		return 0;
	for (i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		        c == '-'))
			return 0;
	}
	return 1;
}

const char *
paths_instance(const char *arg)
{
	const char *env = getenv("KEYVISOR_INSTANCE");

	if (arg != NULL)
		return arg;
	return env != NULL && env[0] != '\0' ? env : "default";
}

static int
fit(int n, size_t len)
{
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int
paths_socket(const char *instance, char *buf, size_t len)
{
	const char *env = getenv("KEYVISOR_SOCKET");
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	if (env != NULL && env[0] != '\0')
		return fit(snprintf(buf, len, "%s", env), len);
	if (getuid() == 0)
		return fit(snprintf(buf, len, "/run/keyvisor/%s.sock",
		               instance), len);
	if (xdg != NULL && xdg[0] == '/')
		return fit(snprintf(buf, len, "%s/keyvisor/%s.sock", xdg,
		               instance), len);
	return fit(snprintf(buf, len, "/tmp/keyvisor-%u/%s.sock",
	               (unsigned)getuid(), instance), len);
}

int
paths_segment(const char *registry, char *buf, size_t len)
{
	if (!paths_name_ok(registry))
		return -EINVAL;
	return fit(snprintf(buf, len, "keyvisor.%s", registry), len);
}
