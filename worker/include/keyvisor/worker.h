/*
 * keyvisor worker API: what a process started by keyvisord uses to talk to
 * its supervisor, and to find its peers.
 *
 * keyvisord gives every worker one end of a SOCK_SEQPACKET socket pair, on
 * the file descriptor named by $KEYVISOR_NOTIFY_FD (the "channel").  Each
 * message is one line of text sent with a single send(2), as each function
 * below says.  A worker in another language needs no library: one write(2)
 * per message on that fd will do (printf 'READY\n' >&3 from a shell).
 *
 * All functions return 0 (or a non-negative value) on success and -errno on
 * failure; none sets errno, none logs, none exits.  kv_ready() and the
 * other channel functions return -ENOTCONN when the process has no channel
 * ($KEYVISOR_NOTIFY_FD unset, not a plain decimal number >= 3, or not a
 * socket).  The library never closes, duplicates or changes the channel fd.
 *
 * THE ENVIRONMENT IS READ ONCE.  The first call of any channel function
 * reads $KEYVISOR_NOTIFY_FD and checks the fd with fstat(2); the answer,
 * channel or no channel, is kept for the life of the process.  In the same
 * way kv_self_key() reads $KEYVISOR_KEY once, and kv_lookup() maps the
 * registry once (a failed attempt is retried by the next call).
 *
 * SIGNAL AND THREAD SAFETY.  Every function is MT-safe.  The channel functions
 * (kv_ready, kv_heartbeat, kv_touch, kv_set_value, kv_set_status) are
 * async-signal-safe once any one of them has returned in the process, and
 * kv_self_key() once it has returned: from then on a call is pure
 * computation, atomic loads and, for the channel functions, one send(2).  A
 * first call also runs getenv(3) (and fstat(2)), which is unsafe only if the
 * code it interrupts, or another thread, is changing the environment at that
 * moment (setenv(3), putenv(3), unsetenv(3)).  So a program that changes its
 * environment calls, say, kv_heartbeat() and kv_self_key() once before it
 * installs a signal handler that uses them or starts threads.  kv_lookup() is
 * not async-signal-safe while the registry is not mapped yet (the call that
 * maps it allocates).  Once a call has mapped it, later calls take no lock
 * and allocate nothing, but they read /proc through kv_proc_start_time(),
 * which formats the path with snprintf(3), a function POSIX does not list as
 * async-signal-safe (glibc's integer formatting neither allocates nor
 * locks).
 */
#ifndef KEYVISOR_WORKER_H
#define KEYVISOR_WORKER_H

#include <stddef.h>

#include <keyvisor/registry.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KV_STATUS_MAX 200 /* bytes of kv_set_status() text, without NUL */

/* Send READY: the worker is ready to serve. */
int kv_ready(void);

/* Send HEARTBEAT: the worker is alive (resets the supervisor's watchdog). */
int kv_heartbeat(void);

/* Send TOUCH: the worker was active (resets its idle lifetime). */
int kv_touch(void);

/*
 * Publish the LEN bytes at VALUE in the worker's registry entry, sent as
 * "VALUE <hex>" (LEN == 0 sends "VALUE", which clears it).  -EMSGSIZE
 * when LEN > KV_VALUE_MAX, -EINVAL when VALUE is NULL and LEN is not 0.
 */
int kv_set_value(const void *value, size_t len);

/*
 * Set the worker's status text, shown by "keyvisor status": sent as
 * "STATUS <text>" (an empty TEXT clears it).  -EMSGSIZE when TEXT is longer
 * than KV_STATUS_MAX bytes; -EINVAL when TEXT is NULL or is not valid UTF-8
 * made of printable characters (no C0 or C1 control character, no DEL, so
 * no newline or tab, and no U+2028 or U+2029 line or paragraph separator).
 */
int kv_set_status(const char *text);

/*
 * The worker's own key ($KEYVISOR_KEY, as it was at the first call), or
 * NULL when the variable is unset or empty.  The string is not to be freed.
 */
const char *kv_self_key(void);

/*
 * Look KEY (NUL-terminated) up in the registry and copy its entry to *OUT.
 * The registry is the segment "keyvisor.NAME", NAME being
 * $KEYVISOR_REGISTRY, else $KEYVISOR_INSTANCE, else "default" (empty
 * variables count as unset); it is mapped read-only by the first
 * successful call and stays mapped.  Returns 0, or: -ENOENT when the key is
 * absent or not yet published, or there is no such segment; -EINVAL for
 * NULL arguments, an invalid key or an invalid registry name; -EBUSY when
 * writers kept the entry changing; -ESRCH when the entry's process is gone
 * or its pid now belongs to another process (its start time differs from
 * the entry's); kv_reg_open()'s errors.  *OUT is written only on success.
 * A zombie (exited, not yet reaped by keyvisord) still counts as alive.
 */
int kv_lookup(const char *key, struct kv_entry *out);

#ifdef __cplusplus
}
#endif

#endif /* KEYVISOR_WORKER_H */
