/*
 * What every fuzz target shares: libFuzzer's entry point and a check that
 * aborts, so that a broken invariant is a finding like a crash is, in
 * libFuzzer as in the replay driver (replay.c).
 */
#ifndef KEYVISOR_TESTS_FUZZ_FUZZ_H
#define KEYVISOR_TESTS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* One run of the target on SIZE bytes at DATA.  Always returns 0. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
			    __LINE__, #cond);                                  \
			abort();                                               \
		}                                                              \
	} while (0)

#endif /* KEYVISOR_TESTS_FUZZ_FUZZ_H */
