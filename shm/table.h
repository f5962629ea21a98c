/*
 * Private: the registry handle and the partition operations shared by
 * table.c (the operations) and registry.c (mapping and validation).
 */
#ifndef KEYVISOR_SHM_TABLE_H
#define KEYVISOR_SHM_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "keyvisor/registry.h"
#include "layout.h"

/*
 * A mapped segment.  Every size here was validated once, at open, and is
 * copied out of the header, so a header scribbled on later cannot make this
 * process read outside the mapping.
 */
struct kv_reg {
	uint8_t               *base;
	size_t                 size;
	bool                   writable;
	struct kv_shm_header  *hdr;
	struct kv_partition   *parts;
	kv_cell               *cells;
	struct kv_slot        *slots;
	struct kv_tail        *tails;
	uint8_t                seed[16];
	uint32_t               nparts;
	uint32_t               pshift; /* KV_PART_INDEX(): 6 - log2(nparts) */
	uint32_t               pslots; /* cells (and slots) per partition */
	uint32_t               cshift; /* log2(pslots) + 1: a cell's index */
	uint32_t               fill;   /* KV_PART_FILL(pslots) */
	uint32_t               capacity;
};

/* Reset partition P of a freshly sized, zeroed segment.  Returns -errno. */
int kv_table_init_partition(struct kv_partition *p);

/*
 * kv_reg_lookup() without the read protocol (and without validating the
 * key): the raw cost of the same probe, for the benchmark's baseline.  Its
 * answer may be torn while a writer runs.
 */
int kv_table_lookup_unsync(const struct kv_reg *r, const char *key,
    size_t len, struct kv_entry *out);

#ifdef KV_CRASHPOINTS
/*
 * Test-only: called at each step of a write with the step's number, so a
 * test can kill the writer there.  Compiled into kvshm_crash only.
 */
extern void (*kv_table_crashpoint)(int point);
#endif

/* The steps, in order of execution within each operation. */
enum kv_crashpoint {
	KV_CP_INS_ALLOC = 1, /* slot taken from the free list / hwm */
	KV_CP_INS_WRITTEN,   /* slot filled, not yet referenced */
	KV_CP_INS_OPEN,      /* sequence counter odd */
	KV_CP_INS_LINKED,    /* cell stored */
	KV_CP_INS_COUNTED,   /* count raised, counter still odd */
	KV_CP_DEL_OPEN,
	KV_CP_DEL_SHIFT,     /* after each cell moved backwards */
	KV_CP_DEL_CLEARED,   /* last cell of the run emptied */
	KV_CP_DEL_COUNTED,
	KV_CP_DEL_CLOSED,    /* counter even, slot not yet freed */
	KV_CP_DEL_FREE_LINK, /* slot's next_free written */
	KV_CP_REP_ALLOC,
	KV_CP_REP_WRITTEN,
	KV_CP_REP_OPEN,
	KV_CP_REP_SWAPPED,   /* cell points at the new slot */
	KV_CP_REP_CLOSED,
	KV_CP_REP_FREE_LINK,
	KV_CP_REPAIR_MARKED,  /* live slots marked, cells untouched */
	KV_CP_REPAIR_CLEARED, /* cells emptied, not yet put back */
	KV_CP_LAST = KV_CP_REPAIR_CLEARED,
};

#endif /* KEYVISOR_SHM_TABLE_H */
