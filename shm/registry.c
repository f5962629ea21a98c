/*
 * The registry segment's life: sizing, creation, validation on open,
 * mapping, statistics.  The operations on a mapped table are in table.c.
 *
 * Nothing mapped is trusted.  An opener reads the fixed-size header first,
 * checks magic, layout version and every size against what this build
 * computes for the same parameters, checks the file is exactly that long,
 * and only then maps the rest.  Sizes are copied into the handle so that a
 * header changed afterwards cannot widen any access.
 */
#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "table.h"

#define NSLOTS_MAX (UINT32_C(1) << 28) /* 180 GiB of slots: plenty */

static bool
is_pow2(uint32_t x)
{
	return x != 0 && (x & (x - 1)) == 0;
}

static uint32_t
pow2_at_least(uint64_t x)
{
	uint32_t p = 1;

	while (p < x && p < NSLOTS_MAX)
		p <<= 1;
	return p;
}

static uint32_t
log2u(uint32_t x)
{
	return 31 - (uint32_t)__builtin_clz(x);
}

/*
 * Where things go for NSLOTS slots in NPARTS partitions.  The cells start
 * on a cache line, the slots on a page so that they are touched page by
 * page as the high-water marks grow.
 */
struct geometry {
	uint64_t cells_off, slots_off, tails_off, total;
};

static struct geometry
geometry(uint32_t nslots, uint32_t nparts)
{
	struct geometry g;
	uint64_t        page = 4096;

	g.cells_off = sizeof(struct kv_shm_header) +
	    (uint64_t)nparts * sizeof(struct kv_partition);
	g.slots_off = g.cells_off + (uint64_t)nslots * sizeof(kv_cell);
	g.slots_off = (g.slots_off + page - 1) / page * page;
	g.tails_off = g.slots_off + (uint64_t)nslots * sizeof(struct kv_slot);
	g.total = g.tails_off + (uint64_t)nslots * sizeof(struct kv_tail);
	return g;
}

/* Do these numbers make a table?  Shared by create and open. */
static bool
shape_ok(uint32_t capacity, uint32_t nslots, uint32_t nparts)
{
	uint32_t pslots;

	if (!is_pow2(nslots) || nslots > NSLOTS_MAX || !is_pow2(nparts) ||
	    nparts > KV_PARTS_MAX || nslots / nparts < KV_PART_MIN)
		return false;
	pslots = nslots / nparts;
	return capacity >= 1 &&
	    (uint64_t)capacity <= (uint64_t)KV_PART_FILL(pslots) * nparts;
}

/*
 * Fill in the automatic sizes: twice the capacity in slots, so that a full
 * registry is half full, and one partition per 256 slots up to 16.
 */
static int
params_resolve(const struct kv_reg_params *in, struct kv_reg_params *out)
{
	*out = *in;
	if (out->capacity == 0 || out->capacity > NSLOTS_MAX / 2)
		return -EINVAL;
	if (out->nslots == 0) {
		out->nslots = pow2_at_least((uint64_t)out->capacity * 2);
		if (out->nslots < 64)
			out->nslots = 64;
	}
	if (out->npartitions == 0) {
		out->npartitions = out->nslots / 256;
		if (out->npartitions > 16)
			out->npartitions = 16;
		if (out->npartitions == 0)
			out->npartitions = 1;
	}
	if (out->mode == 0)
		out->mode = 0640;
	return shape_ok(out->capacity, out->nslots, out->npartitions) ? 0
	                                                               : -EINVAL;
}

static void
handle_set(struct kv_reg *r, void *base, size_t size, bool writable)
{
	struct kv_shm_header *h = base;
	struct geometry       g = geometry(h->nslots, h->npartitions);

	r->base = base;
	r->size = size;
	r->writable = writable;
	r->hdr = h;
	r->parts = (struct kv_partition *)(r->base + sizeof(*h));
	r->cells = (kv_cell *)(r->base + g.cells_off);
	r->slots = (struct kv_slot *)(r->base + g.slots_off);
	r->tails = (struct kv_tail *)(r->base + g.tails_off);
	memcpy(r->seed, h->seed, sizeof(r->seed));
	r->nparts = h->npartitions;
	r->pshift = 6 - log2u(h->npartitions);
	r->pslots = h->nslots / h->npartitions;
	r->cshift = log2u(r->pslots) + 1;
	r->fill = KV_PART_FILL(r->pslots);
	r->capacity = h->capacity;
}

static int
header_init(void *base, const struct kv_reg_params *p, struct geometry g)
{
	struct kv_shm_header *h = base;
	struct kv_partition  *parts = (void *)((uint8_t *)base + sizeof(*h));
	struct timespec       ts;
	uint32_t              i;
	int                   rc;

	h->layout = KV_SHM_LAYOUT;
	h->header_size = sizeof(struct kv_shm_header);
	h->partition_size = sizeof(struct kv_partition);
	h->slot_size = sizeof(struct kv_slot);
	h->nslots = p->nslots;
	h->npartitions = p->npartitions;
	h->capacity = p->capacity;
	h->creator_pid = getpid();
	h->total_size = g.total;
	h->cells_off = g.cells_off;
	h->slots_off = g.slots_off;
	h->tails_off = g.tails_off;
	h->tail_size = sizeof(struct kv_tail);
	arc4random_buf(h->seed, sizeof(h->seed));
	clock_gettime(CLOCK_REALTIME, &ts);
	h->created_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	for (i = 0; i < p->npartitions; i++) {
		rc = kv_table_init_partition(&parts[i]);
		if (rc < 0)
			return rc;
	}
	/* Last: an opener that sees the magic sees everything above. */
	__atomic_store_n(&h->magic, KV_SHM_MAGIC, __ATOMIC_RELEASE);
	return 0;
}

int
kv_reg_create_fd(int fd, const struct kv_reg_params *params,
    struct kv_reg **out)
{
	struct kv_reg_params p;
	struct geometry      g;
	struct kv_reg       *r;
	void                *base;
	int                  rc;

	rc = params_resolve(params, &p);
	if (rc < 0)
		return rc;
	g = geometry(p.nslots, p.npartitions);
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	if (ftruncate(fd, (off_t)g.total) == -1) {
		rc = -errno;
		goto fail;
	}
	base = mmap(NULL, g.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		rc = -errno;
		goto fail;
	}
	rc = header_init(base, &p, g);
	if (rc < 0) {
		munmap(base, g.total);
		goto fail;
	}
	handle_set(r, base, g.total, true);
	*out = r;
	return 0;
fail:
	free(r);
	return rc;
}

/* Check a header against what this build would have made.  Pure. */
static int
header_check(const struct kv_shm_header *h, uint64_t file_size)
{
	struct geometry g;

	if (h->magic != KV_SHM_MAGIC)
		return -EPROTO;
	if (h->layout != KV_SHM_LAYOUT)
		return -EPROTONOSUPPORT;
	if (h->header_size != sizeof(struct kv_shm_header) ||
	    h->partition_size != sizeof(struct kv_partition) ||
	    h->slot_size != sizeof(struct kv_slot) ||
	    h->tail_size != sizeof(struct kv_tail) ||
	    !shape_ok(h->capacity, h->nslots, h->npartitions))
		return -EBADMSG;
	g = geometry(h->nslots, h->npartitions);
	if (h->cells_off != g.cells_off || h->slots_off != g.slots_off ||
	    h->tails_off != g.tails_off || h->total_size != g.total ||
	    file_size != g.total)
		return -EBADMSG;
	return 0;
}

int
kv_reg_open_fd(int fd, int mode, struct kv_reg **out)
{
	struct kv_shm_header h;
	struct stat          st;
	struct kv_reg       *r;
	void                *base;
	int                  prot = PROT_READ, rc;

	if (mode != KV_REG_RDONLY && mode != KV_REG_RDWR)
		return -EINVAL;
	if (fstat(fd, &st) == -1)
		return -errno;
	if ((uint64_t)st.st_size < sizeof(h))
		return st.st_size == 0 ? -EPROTO : -EBADMSG;
	/* pread, not a mapping: a segment shrunk meanwhile cannot SIGBUS us. */
	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		return -EBADMSG;
	rc = header_check(&h, (uint64_t)st.st_size);
	if (rc < 0)
		return rc;
	if (mode == KV_REG_RDWR)
		prot |= PROT_WRITE;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	base = mmap(NULL, h.total_size, prot, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		rc = -errno;
		free(r);
		return rc;
	}
	/* Use the header we checked, not whatever the mapping holds now. */
	if (memcmp(base, &h, sizeof(h)) != 0) {
		munmap(base, h.total_size);
		free(r);
		return -EBADMSG;
	}
	handle_set(r, base, h.total_size, mode == KV_REG_RDWR);
	*out = r;
	return 0;
}

static int
name_path(const char *name, char *buf, size_t len)
{
	if (name == NULL || name[0] == '\0' || strchr(name, '/') != NULL)
		return -EINVAL;
	if ((size_t)snprintf(buf, len, "/%s", name) >= len)
		return -ENAMETOOLONG;
	return 0;
}

int
kv_reg_create(const char *name, const struct kv_reg_params *params,
    struct kv_reg **out)
{
	struct kv_reg_params p;
	char                 path[256];
	int                  fd, rc;

	rc = name_path(name, path, sizeof(path));
	if (rc == 0)
		rc = params_resolve(params, &p);
	if (rc < 0)
		return rc;
	fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, p.mode);
	if (fd == -1)
		return -errno;
	/* shm_open() applied the umask; the caller asked for exactly this. */
	if (fchmod(fd, p.mode) == -1)
		rc = -errno;
	else
		rc = kv_reg_create_fd(fd, &p, out);
	close(fd);
	if (rc < 0)
		shm_unlink(path);
	return rc;
}

int
kv_reg_open(const char *name, int mode, struct kv_reg **out)
{
	char path[256];
	int  fd, rc;

	rc = name_path(name, path, sizeof(path));
	if (rc < 0)
		return rc;
	fd = shm_open(path, (mode == KV_REG_RDWR ? O_RDWR : O_RDONLY) | O_CLOEXEC,
	    0);
	if (fd == -1)
		return -errno;
	rc = kv_reg_open_fd(fd, mode, out);
	close(fd);
	return rc;
}

struct kv_reg *
kv_reg_close(struct kv_reg *r)
{
	if (r != NULL) {
		munmap(r->base, r->size);
		free(r);
	}
	return NULL;
}

int
kv_reg_unlink(const char *name)
{
	char path[256];
	int  rc;

	rc = name_path(name, path, sizeof(path));
	if (rc < 0)
		return rc;
	return shm_unlink(path) == -1 ? -errno : 0;
}

const char *
kv_reg_strerror(int err)
{
	switch (err < 0 ? -err : err) {
	case EPROTO:
		return "not a keyvisor registry (bad magic)";
	case EPROTONOSUPPORT:
		return "registry has another layout version";
	case EBADMSG:
		return "registry is corrupt or truncated";
	case ENOSPC:
		return "registry is full";
	case EBUSY:
		return "registry is busy (a writer kept it changing)";
	case ESTALE:
		return "key is registered to another process";
	default:
		return strerror(err < 0 ? -err : err);
	}
}

int
kv_reg_stats(const struct kv_reg *r, struct kv_reg_stats *st)
{
	uint32_t i;

	memset(st, 0, sizeof(*st));
	st->created_ns = r->hdr->created_ns;
	st->creator_pid = r->hdr->creator_pid;
	st->layout = KV_SHM_LAYOUT;
	st->size = r->size;
	st->capacity = r->capacity;
	st->nslots = r->pslots * r->nparts;
	st->npartitions = r->nparts;
	for (i = 0; i < r->nparts; i++) {
		const struct kv_partition *p = &r->parts[i];

		st->count += __atomic_load_n(&p->count, __ATOMIC_RELAXED);
		st->registrations += p->registrations;
		st->unregistrations += p->unregistrations;
		st->repairs += p->repairs;
	}
	return 0;
}
