/*
 * LEAK CHECK INSIDE THE TEST
 *
 * Criterion runs each test in a worker process that ends without running
 * LeakSanitizer's exit-time check, and a failure reported from a suite's
 * .fini is ignored, so under ASan each test asks LeakSanitizer itself
 * before it returns: end a test with NO_LEAKS().  Elsewhere a no-op.
 * Include after <criterion/criterion.h>.
 */
#ifndef KEYVISOR_TESTS_UNIT_LEAKCHECK_H
#define KEYVISOR_TESTS_UNIT_LEAKCHECK_H

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KV_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(KV_ASAN)
#include <sanitizer/lsan_interface.h>
#define NO_LEAKS()                                                             \
	cr_assert_eq(__lsan_do_recoverable_leak_check(), 0,                    \
	    "memory leaked: LeakSanitizer's report is on stderr")
#else
#define NO_LEAKS() ((void)0)
#endif

#endif /* KEYVISOR_TESTS_UNIT_LEAKCHECK_H */
