/*
 * The test hook of the worker library: private, not installed, and not
 * exported from libkeyvisor.so (hidden visibility, absent from
 * libkeyvisor.map).  It is reachable only by programs that link the static
 * library and include this header, which is what tests/unit/test_worker.c
 * does.
 */
#ifndef KEYVISOR_WORKER_TESTHOOK_H
#define KEYVISOR_WORKER_TESTHOOK_H

/*
 * Forget everything the library has cached: the channel fd (which is not
 * closed: it was never ours), $KEYVISOR_KEY, and the registry mapping
 * (unmapped), so that the next call reads the environment again.  For
 * tests only: MT-unsafe and not async-signal-safe, and it must not run
 * while another thread is inside a kv_* call.
 */
void kv_worker_reset(void);

#endif /* KEYVISOR_WORKER_TESTHOOK_H */
