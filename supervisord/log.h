/*
 * log: keyvisord's diagnostics, one line each on stderr, in the shape of
 * OpenBSD's log.c: log_warn() appends strerror(errno), log_warnx() does not,
 * fatal()/fatalx() log and exit 1.  Messages read "unable to VERB OBJECT".
 */
#ifndef KEYVISOR_SUPERVISORD_LOG_H
#define KEYVISOR_SUPERVISORD_LOG_H

#include <stdarg.h>

/* LEVEL: 0 errors only, 1 warnings too, 2 information (default), 3 debug. */
void log_init(const char *progname, int level);
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
_Noreturn void fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

#endif /* KEYVISOR_SUPERVISORD_LOG_H */
