/*
 * mkseg: writes the segment target's seed corpus into DIR.
 *
 *   fuzz-mkseg DIR
 *
 * One raw image of the smallest template (the only big seed, 15 KiB), one
 * input per template, and a few inputs that damage a template where the
 * table is most sensitive (see fuzz_segment.c for the input's format).
 * Run at corpus-creation time; the output is committed.  The regress-*
 * inputs are those that found bugs in shm/table.c (README.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layout.h"
#include "seg_image.h"

#define PART(field) offsetof(struct kv_partition, field)
#define SLOT(field) offsetof(struct kv_slot, field)
#define HDR(field)  offsetof(struct kv_shm_header, field)

enum { R_HEADER, R_PARTS, R_CELLS, R_SLOTS, R_TAILS, R_FILE };

struct seed {
	const char *name;
	uint8_t     mode, locks, tmpl, adj;
	struct {
		uint8_t     region;
		uint16_t    off;
		uint8_t     len;
		const char *bytes;
	} patch[4];
};

static const struct seed seeds[] = {
    {"tmpl-0", 1, 0, 0, 0, {{0}}},
    {"tmpl-1-full", 1, 0, 1, 0, {{0}}},
    {"tmpl-2", 2, 0, 2, 0, {{0}}},
    {"tmpl-3", 1, 0, 3, 0, {{0}}},
    {"tmpl-2-owner-died", 1, 0x03, 2, 0, {{0}}},
    {"truncated", 1, 0, 0, 0x83, {{0}}},
    {"extended", 1, 0, 2, 0xc1, {{0}}},
    {"bad-magic", 1, 0, 0, 0, {{R_HEADER, 0, 1, "\x00"}}},
    {"bad-nslots", 1, 0, 0, 0, {{R_HEADER, HDR(nslots), 4, "\x20\0\0\0"}}},
    {"regress-free-head", 1, 0, 0, 0,
        {{R_PARTS, PART(free_head), 4, "\xff\xff\xff\x7f"}}},
    {"hwm", 1, 0, 2, 0, {{R_PARTS, PART(hwm), 4, "\x00\x01\x00\x00"}}},
    {"count-zero", 1, 0, 1, 0, {{R_PARTS, PART(count), 4, "\0\0\0\0"}}},
    {"seq-odd", 1, 0, 0, 0, {{R_PARTS, PART(seq), 1, "\x01"}}},
    {"regress-repairing-hwm", 1, 0x01, 0, 0,
        {{R_PARTS, PART(repairing), 1, "\x01"},
            {R_PARTS, PART(hwm), 4, "\xe8\x03\0\0"}}},
    {"cell-far", 1, 0, 0, 0,
        {{R_CELLS, 0, 8, "\xf0\xff\xff\xff\x12\x34\x56\x78"}}},
    {"keylen", 1, 0x01, 0, 0, {{R_SLOTS, SLOT(shape), 2, "\xff\xff"}}},
    {"splice", 3, 0, 2, 0, {{R_FILE, 0x8000, 7, "garbage"}}},
};

static int
put(const char *dir, const char *name, const uint8_t *p, size_t n)
{
	char path[4096];
	int  fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1 || write(fd, p, n) != (ssize_t)n) {
		perror(path);
		return -1;
	}
	close(fd);
	return 0;
}

static int
seed(const char *dir, const struct seed *s)
{
	uint8_t buf[512];
	size_t  n = 0, i;

	buf[n++] = s->mode;
	buf[n++] = s->locks;
	buf[n++] = s->tmpl;
	buf[n++] = s->adj;
	for (i = 0; i < 4 && s->patch[i].bytes != NULL; i++) {
		if (s->mode == 3) { /* splice: offset in 65536ths, bytes */
			buf[n++] = (uint8_t)s->patch[i].off;
			buf[n++] = (uint8_t)(s->patch[i].off >> 8);
		} else {
			buf[n++] = s->patch[i].region;
			buf[n++] = (uint8_t)s->patch[i].off;
			buf[n++] = (uint8_t)(s->patch[i].off >> 8);
			buf[n++] = s->patch[i].len;
		}
		memcpy(buf + n, s->patch[i].bytes, s->patch[i].len);
		n += s->patch[i].len;
	}
	return put(dir, s->name, buf, n);
}

/*
 * Template 1 with its one empty cell overwritten by a copy of the next
 * cell: a partition with no empty cell, where a delete's backward shift
 * never stopped.  Which cell is empty depends on the hashes, so it is
 * looked up in the image.
 */
static int
no_empty_cell(const char *dir)
{
	const struct seg_template *t = &seg_templates[1];
	size_t                     cells = sizeof(struct kv_shm_header) +
	               t->npartitions * sizeof(struct kv_partition);
	uint8_t *img, buf[8 + sizeof(kv_cell)] = {1, 0, 1, 0, R_CELLS, 0, 0,
	                 sizeof(kv_cell)};
	size_t   n, i;
	kv_cell  c;
	int      rc = -1;

	if (seg_image(1, &img, &n) < 0)
		return -1;
	for (i = 0; i < t->nslots; i++) {
		memcpy(&c, img + cells + i * sizeof(c), sizeof(c));
		if (c != 0)
			continue;
		buf[5] = (uint8_t)(i * sizeof(c));
		buf[6] = (uint8_t)(i * sizeof(c) >> 8);
		memcpy(buf + 8, img + cells + ((i + 1) % t->nslots) * sizeof(c),
		    sizeof(c));
		rc = put(dir, "regress-no-empty-cell", buf, sizeof(buf));
		break;
	}
	free(img);
	return rc;
}

int
main(int argc, char **argv)
{
	uint8_t *img, *raw;
	size_t   n, i;
	int      rc = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: fuzz-mkseg dir\n");
		return 2;
	}
	if (seg_image(0, &img, &n) < 0 || (raw = malloc(n + 2)) == NULL) {
		fprintf(stderr, "fuzz-mkseg: unable to build an image\n");
		return 1;
	}
	raw[0] = 0; /* raw mode */
	raw[1] = 0; /* locks as they are */
	memcpy(raw + 2, img, n);
	if (put(argv[1], "raw-tiny", raw, n + 2) < 0)
		rc = 1;
	for (i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
		if (seed(argv[1], &seeds[i]) < 0)
			rc = 1;
	if (no_empty_cell(argv[1]) < 0)
		rc = 1;
	free(raw);
	free(img);
	return rc;
}
