/*
 * testutil: the small helpers that supervisor-bench and kv-soak both need
 * (clock, /proc, limits, the control socket, their temporary directory).
 */
#ifndef KEYVISOR_TESTUTIL_H
#define KEYVISOR_TESTUTIL_H

#include <sys/resource.h>
#include <sys/stat.h>

#include <ftw.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in ns. */
uint64_t tu_now_ns(void);
/* The first long in FILE, or -1. */
long tu_read_long(const char *file);
/* Processes now on the machine: one numeric entry of /proc each. */
long tu_nprocs(void);
/* Raise a soft limit to its hard limit; returns the new soft limit. */
rlim_t tu_raise_limit(int res);
/* Does a connect() to the Unix socket PATH succeed? */
bool tu_can_connect(const char *path);
/* The directory this executable lives in, into BUF. */
void tu_self_dir(char *buf, size_t size);
/* An nftw() callback that removes each path (for FTW_DEPTH | FTW_PHYS). */
int tu_rm_one(const char *path, const struct stat *st, int flag,
    struct FTW *ftw);

#endif
