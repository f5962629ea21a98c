/*
 * SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF",
 * 2012): a keyed hash whose output an attacker who does not know the key
 * cannot predict, so keys chosen by clients cannot be made to collide in
 * the registry's table.
 *
 * The key is 16 bytes, read as two little-endian 64-bit words, and the
 * message is read little-endian too, so every host, whatever its byte order,
 * computes the same value for the same bytes.  Both functions are pure and
 * MT-safe.  Private to shm/.
 */
#ifndef KEYVISOR_SHM_SIPHASH_H
#define KEYVISOR_SHM_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/*
 * The 64-bit output as a number.  The reference implementation writes it as
 * 8 little-endian bytes; those bytes read back little-endian give this
 * value.
 */
uint64_t kv_siphash64(const uint8_t key[16], const void *msg, size_t len);

/*
 * The 128-bit variant from the authors' reference code, written to OUT as
 * 16 bytes: the first output word little-endian, then the second.
 */
void kv_siphash128(
    const uint8_t key[16], const void *msg, size_t len, uint8_t out[16]);

#endif /* KEYVISOR_SHM_SIPHASH_H */
