/*
 * The registry segment's binary layout.  This file is an ABI: every process
 * that maps a segment relies on it, so any change below bumps KV_SHM_LAYOUT.
 *
 *   offset 0            +------------------------------------------+
 *                       | struct kv_shm_header            256 B    |
 *   header_size         +------------------------------------------+
 *                       | struct kv_partition [npartitions] 128 B  |
 *   cells_off           +------------------------------------------+
 *                       | kv_cell cells [nslots]             4 B   |
 *   slots_off           +------------------------------------------+
 *                       | struct kv_slot [nslots]           64 B   |
 *   tails_off           +------------------------------------------+
 *                       | struct kv_tail [nslots]          576 B   |
 *   total_size          +------------------------------------------+
 *
 * Partition p owns the pslots = nslots / npartitions cells, slots and tails
 * that start at index p * pslots.  A key's 64-bit SipHash h chooses its partition
 * by its top bits and its home cell by its low bits:
 *
 *   partition = h >> (64 - log2(npartitions))        (0 when there is one)
 *             = (h >> 58) >> (6 - log2(npartitions))   (KV_PART_INDEX)
 *   home      = h & (pslots - 1)
 *   b         = log2(pslots) + 1                     (bits of an index + 1)
 *   tag       = (uint32_t)(h >> 32) << b             (the cell's top 32 - b)
 *
 * A cell is 0 when empty, else (tag | local slot index + 1).  The cells
 * form a linear-probing table; the slots they point at hold the entries.
 * A cell is 4 bytes so that the cell array of a registry stays small
 * enough to live in a core's cache beside the slots a lookup reads.
 * Readers scan the dense cell array and touch a slot only when a tag
 * matches.  A slot keeps its strings inline when they fit and in the tail
 * of the same index otherwise, so that the slots a lookup touches stay
 * dense: a registry of short entries is one 64-byte line an entry to
 * readers.  Deletion shifts later cells of the probe run backwards (no
 * tombstones), moving only 4-byte cells, never slots.
 *
 * The cells are the only truth about what is registered.  A slot no cell
 * points at is free, whatever it contains; the free list, the high-water
 * mark and the count are derived and can be rebuilt from the cells (see
 * EOWNERDEAD REPAIR in table.c).  A slot a cell points at is never written:
 * changing an entry writes a fresh slot and swaps the cell.
 */
#ifndef KEYVISOR_SHM_LAYOUT_H
#define KEYVISOR_SHM_LAYOUT_H

#include <pthread.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>

#define KV_SHM_MAGIC  UINT64_C(0x3152535649564b83) /* "\x83KVIVSR1" LE */
#define KV_SHM_LAYOUT 5u

/*
 * The capacity is what bounds the load factor (by default nslots is twice
 * the capacity, so a full registry is half full).  The per-partition bound
 * is only a backstop that keeps an empty cell in every probe run, so that a
 * probe always ends: a partition is filled to 63/64 of its cells at most.
 * With the automatic sizing a partition reaches it only after receiving
 * about 97 % more than its fair share.
 *
 * The division rounds up so that a partition of fewer than 64 cells (16 or
 * 32, possible with explicit parameters) also keeps one cell empty: with
 * pslots - pslots / 64 it could fill up completely, and then a delete's
 * backward shift found no empty cell to stop at (an endless loop), and a
 * replace found no free slot and took one past the partition's last (found
 * by tests/fuzz/fuzz_segment.c).  For 64 cells and more this is the same
 * number as before.
 */
typedef uint32_t kv_cell;

#define KV_PART_FILL(pslots) ((pslots) - ((pslots) + 63) / 64)
#define KV_PART_MIN          16u /* cells per partition, at least */
#define KV_PARTS_MAX     64u

/* The partition of hash H, for PSHIFT = 6 - log2(npartitions). */
#define KV_PART_INDEX(h, pshift) ((uint32_t)((h) >> 58) >> (pshift))
_Static_assert(KV_PARTS_MAX == 1u << 6, "KV_PART_INDEX takes 6 bits");

struct kv_shm_header {
	uint64_t magic; /* KV_SHM_MAGIC, written last at creation */
	uint32_t layout;
	uint32_t header_size;    /* sizeof(struct kv_shm_header) */
	uint32_t partition_size; /* sizeof(struct kv_partition) */
	uint32_t slot_size;      /* sizeof(struct kv_slot) */
	uint32_t nslots;         /* a power of two */
	uint32_t npartitions;    /* a power of two, <= KV_PARTS_MAX */
	uint32_t capacity;       /* live entries allowed, <= nslots */
	int32_t  creator_pid;
	uint64_t total_size;
	uint64_t cells_off;
	uint64_t slots_off;
	uint8_t  seed[16]; /* SipHash-2-4 key, random per segment */
	uint64_t created_ns;
	uint64_t tails_off;
	uint32_t tail_size; /* sizeof(struct kv_tail) */
	uint32_t reserved0;
	uint64_t reserved[19];
};
_Static_assert(sizeof(struct kv_shm_header) == 256, "kv_shm_header is ABI");
_Static_assert(offsetof(struct kv_shm_header, seed) == 64, "seed moved");

struct kv_partition {
	alignas(64) pthread_mutex_t lock; /* robust, process-shared */
	uint32_t seq;       /* odd while a writer is inside; atomic access */
	uint32_t count;     /* live cells */
	uint32_t hwm;       /* slots [0, hwm) have been handed out */
	uint32_t free_head; /* local index + 1 of the first free slot, or 0 */
	uint32_t repairing; /* 1: the slots' marks are the truth (table.c) */
	uint64_t registrations;
	uint64_t unregistrations;
	uint64_t repairs;
};
_Static_assert(sizeof(pthread_mutex_t) <= 64 - 8, "mutex too large");
_Static_assert(sizeof(struct kv_partition) == 128,
    "a partition owns two whole cache lines");

/*
 * One entry, in one cache line: the fixed fields that every entry has,
 * then a shape word, then data[], which holds the key, the value and the
 * kind back to back (no NULs) when they fit in its 32 bytes and the entry
 * has no epoch, no node and only flags below 128, the usual case; a lookup
 * then reads this one line.  Otherwise the slot is marked KV_SHAPE_TAIL and
 * the epoch, node, flags and strings live in the tail of the same index.
 * The tail is written with the slot and is part of it for every rule in
 * table.c.
 *
 * A key of at most KV_SLOT_INLINE bytes always starts data[], also when the
 * strings live in the tail: where a reader compares a key is then decided
 * by the length it looks for, not by anything read from the slot.
 *
 * The slot does not keep the key's hash: the cell has 32 bits of it, which
 * is all a lookup needs, and the writers' repair recomputes it from the key.
 * A free slot's data[] holds its free-list link.
 */
#define KV_SLOT_INLINE 32
#define KV_TAIL_SIZE   576

/* The shape word: lengths, flags, where the rest lives, repair's mark. */
#define KV_SHAPE_KEYLEN(w)   ((uint32_t)(w) & 0xffu)
#define KV_SHAPE_VALUELEN(w) (((uint32_t)(w) >> 8) & 0x1ffu)
#define KV_SHAPE_KINDLEN(w)  (((uint32_t)(w) >> 17) & 0x1fu)
#define KV_SHAPE_FLAGS(w)    (((uint32_t)(w) >> 22) & 0x7fu)
#define KV_SHAPE_FLAGS_MAX   0x7fu
#define KV_SHAPE_TAIL        (1u << 29) /* epoch, node, flags, strings: tail */
#define KV_SHAPE_MARK        (1u << 30) /* scratch for repair */
#define KV_SHAPE(keylen, valuelen, kindlen, flags)                             \
	((uint32_t)(keylen) | (uint32_t)(valuelen) << 8 |                      \
	    (uint32_t)(kindlen) << 17 | (uint32_t)(flags) << 22)

struct kv_slot {
	alignas(64) uint64_t start_time;
	uint64_t reg_time_ns;
	int32_t  pid;
	int32_t  owner;
	uint32_t incarnation;
	uint32_t shape; /* KV_SHAPE_* */
	union {
		char     data[KV_SLOT_INLINE];
		uint32_t next_free; /* free list: local index + 1, when free */
	};
};
_Static_assert(offsetof(struct kv_slot, data) == 32, "data moved");
_Static_assert(sizeof(struct kv_slot) == 64, "kv_slot is ABI");

struct kv_tail {
	alignas(64) uint64_t epoch;
	uint32_t node;
	uint32_t flags;
	char     data[KV_TAIL_SIZE - 16];
};
_Static_assert(sizeof(struct kv_tail) == KV_TAIL_SIZE, "kv_tail is ABI");
_Static_assert(KV_TAIL_SIZE - 16 >= 255 + 256 + 31, "tail too small");

#endif /* KEYVISOR_SHM_LAYOUT_H */
