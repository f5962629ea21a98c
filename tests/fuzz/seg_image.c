/*
 * seg_image: see seg_image.h.  Knows layout.h only for where the header
 * keeps the seed, the creation time and the creator's pid.
 */
#include "seg_image.h"

#include <sys/mman.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layout.h"

/*
 * Template 1 is full: 15 entries in a 16-cell partition, the most
 * KV_PART_FILL allows.  Template 3's partitions have 16 cells each, so some
 * of its entries may find theirs full and be left out.
 */
const struct seg_template seg_templates[SEG_TEMPLATES] = {
    {.capacity = 8, .nslots = 16, .npartitions = 1, .nentries = 6},
    {.capacity = 15, .nslots = 16, .npartitions = 1, .nentries = 15},
    {.capacity = 48, .nslots = 64, .npartitions = 2, .nentries = 30},
    {.capacity = 60, .nslots = 64, .npartitions = 4, .nentries = 40},
};

static const uint8_t seed[16] = "fuzz-seed-v1:kv!";

void
seg_entry(uint32_t i, struct kv_entry *e)
{
	size_t n;

	memset(e, 0, sizeof(*e));
	switch (i % 5) {
	case 0: /* long enough for the tail */
		n = (size_t)snprintf(e->key, sizeof(e->key), "long:%u:", i);
		memset(e->key + n, 'x', 90 + i);
		n += 90 + i;
		e->key[n] = '\0';
		break;
	case 1:
		n = (size_t)snprintf(
		    e->key, sizeof(e->key), "caf\xc3\xa9:%u", i);
		break;
	default:
		n = (size_t)snprintf(e->key, sizeof(e->key), "user:%u", i);
	}
	e->keylen = (uint16_t)n;
	e->valuelen = (uint16_t)(i % 3 == 0 ? 0 : i % 3 == 1 ? 8 : 200);
	memset(e->value, 'a' + (int)(i % 26), e->valuelen);
	if (i % 2 == 0)
		strcpy(e->kind, "tracker");
	e->pid = (int32_t)(1000 + i);
	e->owner = 1;
	e->start_time = 12345 + i;
	e->reg_time_ns = 1;
	e->incarnation = i;
	e->flags = i % 4 == 3 ? 0 : KV_ENTRY_PUBLISHED;
}

static int
fill(int fd, const struct seg_template *t)
{
	struct kv_reg_params p = {.capacity = t->capacity,
	    .nslots = t->nslots,
	    .npartitions = t->npartitions,
	    .mode = 0600};
	struct kv_entry      e;
	struct kv_reg       *r;
	uint32_t             i;
	int                  rc;

	rc = kv_reg_create_fd(fd, &p, &r);
	if (rc < 0)
		return rc;
	kv_reg_close(r);
	if (pwrite(fd, seed, sizeof(seed),
	        offsetof(struct kv_shm_header, seed)) != sizeof(seed))
		return -EIO;
	rc = kv_reg_open_fd(fd, KV_REG_RDWR, &r);
	if (rc < 0)
		return rc;
	for (i = 0; i < t->nentries; i++) {
		seg_entry(i, &e);
		rc = kv_reg_register(r, &e, NULL);
		if (rc < 0 && rc != -ENOSPC)
			break;
		rc = 0;
	}
	kv_reg_close(r);
	return rc;
}

int
seg_image(unsigned t, uint8_t **buf, size_t *len)
{
	struct kv_shm_header h;
	off_t                size;
	uint8_t             *b = NULL;
	int                  fd, rc;

	if (t >= SEG_TEMPLATES)
		return -EINVAL;
	fd = memfd_create("kv-seg-image", MFD_CLOEXEC);
	if (fd == -1)
		return -errno;
	rc = fill(fd, &seg_templates[t]);
	if (rc < 0)
		goto out;
	size = lseek(fd, 0, SEEK_END);
	b = malloc((size_t)size);
	if (size < (off_t)sizeof(h) || b == NULL ||
	    pread(fd, b, (size_t)size, 0) != size) {
		rc = -EIO;
		goto out;
	}
	memcpy(&h, b, sizeof(h));
	h.creator_pid = 0;
	h.created_ns = 0;
	memcpy(b, &h, sizeof(h));
	*buf = b;
	*len = (size_t)size;
	b = NULL;
out:
	free(b);
	close(fd);
	return rc;
}
