/*
 * log: see log.h.  Each message is formatted into one buffer and written
 * with a single write(2), so lines from the daemon and from workers sharing
 * its stderr do not interleave mid-line.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static const char *prog = "keyvisord";
static int         verbosity = 2; /* 0 error, 1 warn, 2 info, 3 debug */

void
log_init(const char *progname, int verbose)
{
	prog = progname;
	verbosity = verbose;
}

static void
vlog(int err, const char *fmt, va_list ap)
{
	char   buf[1024];
	size_t n;
	int    r;

	r = snprintf(buf, sizeof(buf), "%s: ", prog);
	n = r > 0 ? (size_t)r : 0;
	r = vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	n = r > 0 ? n + (size_t)r : n;
	if (n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	if (err != 0) {
		r = snprintf(buf + n, sizeof(buf) - n, ": %s", strerror(err));
		n = r > 0 ? n + (size_t)r : n;
		if (n > sizeof(buf) - 2)
			n = sizeof(buf) - 2;
	}
	buf[n++] = '\n';
	(void)!write(STDERR_FILENO, buf, n);
}

#define LOGFN(name, err, level)                                                \
	void name(const char *fmt, ...)                                        \
	{                                                                      \
		va_list ap;                                                    \
		int     saved = errno;                                         \
                                                                               \
		if (verbosity < (level))                                       \
			return;                                                \
		va_start(ap, fmt);                                             \
		vlog((err) ? saved : 0, fmt, ap);                              \
		va_end(ap);                                                    \
		errno = saved;                                                 \
	}

LOGFN(log_warn, 1, 1)
LOGFN(log_warnx, 0, 1)
LOGFN(log_info, 0, 2)
LOGFN(log_debug, 0, 3)

void
fatal(const char *fmt, ...)
{
	va_list ap;
	int     saved = errno;

	va_start(ap, fmt);
	vlog(saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(0, fmt, ap);
	va_end(ap);
	exit(1);
}
