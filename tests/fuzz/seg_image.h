/*
 * Registry segment images for the segment fuzz target and for mkseg, the
 * helper that writes its seed corpus: small registries built with the
 * library itself under a fixed SipHash seed, so that an image, and the
 * entries in it, are the same on every run.
 */
#ifndef KEYVISOR_TESTS_FUZZ_SEG_IMAGE_H
#define KEYVISOR_TESTS_FUZZ_SEG_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include <keyvisor/registry.h>

struct seg_template {
	uint32_t capacity, nslots, npartitions;
	uint32_t nentries; /* registered, unless the partition is full */
};

#define SEG_TEMPLATES 4
extern const struct seg_template seg_templates[SEG_TEMPLATES];

/* Entry I of every template: keys inline and in the tail, some unpublished. */
void seg_entry(uint32_t i, struct kv_entry *e);

/*
 * A malloc'ed image of template T in *BUF (*LEN bytes), with the creation
 * time and pid zeroed.  Returns 0 or -errno.
 */
int seg_image(unsigned t, uint8_t **buf, size_t *len);

#endif /* KEYVISOR_TESTS_FUZZ_SEG_IMAGE_H */
