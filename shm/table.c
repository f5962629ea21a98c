/*
 * The registry's operations on a mapped segment: lock-free lookups under a
 * per-partition sequence counter, and writes under the partition's robust
 * mutex.  See layout.h for the layout and its invariants.
 *
 * Writers follow three rules that make both the lock-free readers and the
 * repair after a writer's death simple:
 *
 *  1. A slot is filled while no cell points at it, and is never written
 *     while one does.  An entry changes by filling a fresh slot and storing
 *     one 4-byte cell.
 *  2. Cells change only while the partition's sequence counter is odd.
 *  3. Everything but the cells (free list, high-water mark, count) can be
 *     derived from the cells and is rebuilt after a writer's death.
 *
 * Nothing here allocates except kv_reg_iter(), which buffers a partition's
 * matches so that callbacks never run under a lock.
 */
#include <errno.h>
#include <fnmatch.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "siphash.h"
#include "table.h"

#ifdef KV_CRASHPOINTS
void (*kv_table_crashpoint)(int point);
#define CRASHPOINT(n)                                                          \
	do {                                                                   \
		if (kv_table_crashpoint != NULL)                               \
			kv_table_crashpoint(n);                                \
	} while (0)
#else
#define CRASHPOINT(n) ((void)0)
#endif

/*
 * A reader gives up after this many attempts at a consistent read.  A write
 * keeps the counter odd for well under a microsecond, so a reader that fails
 * 64 times running is up against a writer that died inside (until the next
 * writer repairs the partition) or a partition rewritten continuously.  From
 * the 8th failed attempt on it yields the CPU between attempts, so that on a
 * busy machine the writer it waits for can run.
 */
#define READ_TRIES       64
#define READ_YIELD_AFTER 8

/*
 * The read path's common case (read_entry() and what it calls, but for
 * read_general()) is compiled as one function, with the partition's
 * geometry in registers: a hit spends its time on the cache lines it
 * needs, not on calls and reloads.
 */
#define READ_PATH static inline __attribute__((always_inline))

struct part {
	struct kv_partition *p;
	kv_cell             *cells;
	struct kv_slot      *slots;
	struct kv_tail      *tails;
	uint32_t             mask;
	uint32_t             shift; /* a cell's index bits (layout.h) */
	kv_cell              imask; /* those bits: (1 << shift) - 1 */
	uint32_t             index;
};

READ_PATH struct part
part_of(const struct kv_reg *r, uint32_t i)
{
	struct part pt = {
		.p = &r->parts[i],
		.cells = r->cells + (size_t)i * r->pslots,
		.slots = r->slots + (size_t)i * r->pslots,
		.tails = r->tails + (size_t)i * r->pslots,
		.mask = r->pslots - 1,
		.shift = r->cshift,
		.imask = ((kv_cell)1 << r->cshift) - 1,
		.index = i,
	};

	return pt;
}

static uint64_t
hash_key(const struct kv_reg *r, const char *key, size_t len)
{
	return kv_siphash64(r->seed, key, len);
}

static uint32_t
part_index(const struct kv_reg *r, uint64_t h)
{
	return KV_PART_INDEX(h, r->pshift);
}

/* The partition a key of hash H belongs to. */
READ_PATH struct part
part_of_hash(const struct kv_reg *r, uint64_t h)
{
	return part_of(r, part_index(r, h));
}

/* A cell's tag bits for hash H: what cells of this key have above the index. */
READ_PATH kv_cell
cell_tag(const struct part *pt, uint64_t h)
{
	return (kv_cell)(h >> 32) << pt->shift;
}

static kv_cell
cell_make(const struct part *pt, uint64_t h, uint32_t idx)
{
	return cell_tag(pt, h) | (idx + 1);
}

/* The slot cell C names; past the partition for a cell written by others. */
READ_PATH uint32_t
cell_slot(const struct part *pt, kv_cell c)
{
	return (c & pt->imask) - 1;
}

/* Does cell C carry the tag TAG (from cell_tag())? */
READ_PATH bool
cell_tagged(const struct part *pt, kv_cell c, kv_cell tag)
{
	return (c ^ tag) >> pt->shift == 0;
}

READ_PATH kv_cell
cell_load(const kv_cell *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

static void
cell_store(kv_cell *c, kv_cell v)
{
	__atomic_store_n(c, v, __ATOMIC_RELAXED);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
cpu_relax(unsigned attempt)
{
	if (attempt >= READ_YIELD_AFTER)
		sched_yield();
#if defined(__x86_64__) || defined(__i386__)
	else
		__builtin_ia32_pause();
#endif
}

/*
 * Where slot IDX keeps a key of LEN bytes: in data[] if it fits there,
 * whether or not the rest of the entry does, else in the tail (layout.h).
 */
READ_PATH const char *
key_at(const struct part *pt, uint32_t idx, size_t len)
{
	return len <= KV_SLOT_INLINE ? pt->slots[idx].data : pt->tails[idx].data;
}

/* Where slot IDX keeps its key, by its own length.  Writers only. */
static const char *
slot_key(const struct part *pt, uint32_t idx)
{
	return key_at(pt, idx, KV_SHAPE_KEYLEN(pt->slots[idx].shape));
}

/* The hash of the key slot IDX holds.  Writers only: plausibility, repair. */
static uint64_t
slot_hash(const struct kv_reg *r, const struct part *pt, uint32_t idx)
{
	uint32_t klen = KV_SHAPE_KEYLEN(pt->slots[idx].shape);

	return hash_key(r, slot_key(pt, idx), klen);
}

/* The bits in which the 8 bytes at A + I and B + I differ. */
static inline uint64_t
word_diff(const char *a, const char *b, size_t i)
{
	uint64_t x, y;

	memcpy(&x, a + i, 8);
	memcpy(&y, b + i, 8);
	return x ^ y;
}

/*
 * Are the LEN bytes at A and B equal?  From 8 bytes on, the first word, the
 * word that ends at LEN and every whole word between, or-ed together and
 * tested once: the keys compared here have matched 32 bits of hash and are
 * nearly always equal, so nothing is gained by stopping early, and a key of
 * 8 to 16 bytes costs four loads and a test.  Both buffers hold at
 * least LEN bytes.  Under 8 bytes, two overlapping 4-byte words cover 4 to
 * 7, and bytes 0, LEN / 2 and LEN - 1 cover 1 to 3.
 */
static inline bool
key_eq(const char *a, const char *b, size_t len)
{
	uint32_t u, v, p, q;
	uint64_t d;
	size_t   i;

	if (len < 4)
		return len == 0 || (a[0] == b[0] && a[len / 2] == b[len / 2] &&
		                       a[len - 1] == b[len - 1]);
	if (len < 8) {
		memcpy(&u, a, 4);
		memcpy(&v, b, 4);
		memcpy(&p, a + len - 4, 4);
		memcpy(&q, b + len - 4, 4);
		return u == v && p == q;
	}
	d = word_diff(a, b, 0) | word_diff(a, b, len - 8);
	for (i = 8; i + 8 < len; i += 8)
		d |= word_diff(a, b, i);
	return d == 0;
}

/*
 * Does slot IDX hold KEY?  The cell's tag has matched some of the hash.
 * Under the read protocol the slot may be changing under us; the caller
 * discards the answer if the sequence counter moved.  Where the key is
 * compared depends on LEN alone, which is ours (see layout.h).
 */
READ_PATH bool
slot_is(const struct part *pt, uint32_t idx, const char *key, size_t len)
{
	return KV_SHAPE_KEYLEN(pt->slots[idx].shape) == len &&
	    key_eq(key_at(pt, idx, len), key, len);
}

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* Byte i of kv_ones + 32 - n is 0xff for i < n and 0 up to i = 31. */
static const unsigned char kv_ones[64] = {
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255};

/* Word X, the bytes AT to AT + 7 of a string, with those past LEN zeroed. */
READ_PATH uint64_t
masked_word(uint64_t x, size_t len, size_t at)
{
	uint64_t m;

	memcpy(&m, kv_ones + 32 - len + at, 8);
	return x & m;
}

/*
 * Put the LEN bytes at OFF in D[32] at DST, and zeros after them up to
 * DST[31], or up to DST[7] for LEN under 8 (so LEN < 32 is NUL-terminated).
 * OFF + LEN <= 32.  In registers, so that the stores go to DST whatever OFF
 * and LEN are: D as four little-endian words shifted right by OFF bytes,
 * then masked.  Under 8 bytes (most kinds) one word does: the 8 bytes at
 * OFF, or the last 8 of D when OFF is past 24, shifted and masked.
 */
READ_PATH void
inline_str_copy(char *dst, const char *d, size_t off, size_t len)
{
	uint64_t w0, w1, w2, w3, x0, x1, x2, x3;
	unsigned b = (unsigned)(off & 7) * 8;

	if (len < 8) {
		size_t p = off < 24 ? off : 24;

		x0 = 0;
		if (len > 0) {
			memcpy(&x0, d + p, 8);
			x0 = masked_word(x0 >> (off - p) * 8, len, 0);
		}
		memcpy(dst, &x0, 8);
		return;
	}
	memcpy(&w0, d, 8);
	memcpy(&w1, d + 8, 8);
	memcpy(&w2, d + 16, 8);
	memcpy(&w3, d + 24, 8);
	if (off & 16) {
		w0 = w2;
		w1 = w3;
		w2 = w3 = 0;
	}
	if (off & 8) {
		w0 = w1;
		w1 = w2;
		w2 = w3;
		w3 = 0;
	}
	/* (w << 1) << (63 - b) is w << (64 - b), and 0 for b = 0. */
	x0 = masked_word(w0 >> b | (w1 << 1) << (63 - b), len, 0);
	x1 = masked_word(w1 >> b | (w2 << 1) << (63 - b), len, 8);
	x2 = masked_word(w2 >> b | (w3 << 1) << (63 - b), len, 16);
	x3 = masked_word(w3 >> b, len, 24);
	memcpy(dst, &x0, 8);
	memcpy(dst + 8, &x1, 8);
	memcpy(dst + 16, &x2, 8);
	memcpy(dst + 24, &x3, 8);
}
#else
/* As above, for a machine whose words are not little-endian. */
READ_PATH void
inline_str_copy(char *dst, const char *d, size_t off, size_t len)
{
	memset(dst, 0, KV_SLOT_INLINE);
	memcpy(dst, d + off, len);
}
#endif

/*
 * Are the strings of a slot with shape word W, and a key of KLEN bytes, all
 * in data[]?
 */
READ_PATH bool
shape_inline(uint32_t w, size_t klen)
{
	return !(w & KV_SHAPE_TAIL) &&
	    klen + KV_SHAPE_VALUELEN(w) + KV_SHAPE_KINDLEN(w) <= KV_SLOT_INLINE;
}

/*
 * Copy slot IDX, whose key is KLEN bytes long, to OUT.  KLEN is what the
 * caller knows: the length of the key a lookup matched (the slot's own,
 * unless the slot is changing under a lock-free reader, whose copy is then
 * thrown away), or the slot's own when nothing else is known.  Every
 * length the slot claims is bounded by its bit width or clamped, and
 * strings that would not fit in data[] are read from the tail, so a torn
 * slot yields garbage (discarded by the caller) but no access outside the
 * slot, its tail or the entry.  The bytes past each string's length in
 * OUT are unspecified.
 *
 * Strings held in data[], the usual case, go out with stores whose
 * addresses depend on KLEN only, never on what the slot says: the lookup
 * after this one need not wait for this slot's cache line to know whether
 * its loads read what these stores write.  The key is data[] stored at
 * key[]; the value is data[] stored at value[] minus KLEN (the bytes before
 * value[] are the unspecified tail of key[], whose 256 bytes leave room);
 * the kind, which lies after the value, is shifted into place in registers.
 */
READ_PATH void
slot_copy_out(const struct part *pt, uint32_t idx, size_t klen,
    struct kv_entry *out)
{
	const struct kv_slot *s = &pt->slots[idx];
	uint32_t              w = s->shape;
	size_t vlen = KV_SHAPE_VALUELEN(w), kdlen = KV_SHAPE_KINDLEN(w);

	_Static_assert(offsetof(struct kv_entry, key) + KV_SLOT_INLINE <=
	        offsetof(struct kv_entry, value) - KV_SLOT_INLINE,
	    "room for the value's shifted store");
	_Static_assert(sizeof(out->kind) == KV_SLOT_INLINE, "kind is 32 bytes");
	if (shape_inline(w, klen)) {
		char d[KV_SLOT_INLINE];

		memcpy(d, s->data, KV_SLOT_INLINE);
		memcpy(out->key, d, KV_SLOT_INLINE);
		memcpy((char *)out + offsetof(struct kv_entry, value) - klen, d,
		    KV_SLOT_INLINE);
		inline_str_copy(out->kind, s->data, klen + vlen, kdlen);
		out->epoch = 0;
		out->node = 0;
		out->flags = KV_SHAPE_FLAGS(w);
	} else {
		const struct kv_tail *t = &pt->tails[idx];

		out->epoch = t->epoch;
		out->node = t->node;
		out->flags = t->flags;
		/*
		 * A short key is taken from data[], where slot_is() compared
		 * it: the tail's copy should be the same, but only the bytes
		 * compared are known to be the key asked for.
		 */
		if (vlen > KV_VALUE_MAX)
			vlen = KV_VALUE_MAX;
		memcpy(out->key, key_at(pt, idx, klen), klen);
		memcpy(out->value, t->data + klen, vlen);
		memcpy(out->kind, t->data + klen + vlen, kdlen);
		out->kind[kdlen] = '\0';
	}
	memcpy(&out->start_time, &s->start_time, 16); /* and reg_time_ns */
	out->pid = s->pid;
	out->owner = s->owner;
	out->incarnation = s->incarnation;
	out->keylen = (uint16_t)klen;
	out->valuelen = (uint16_t)vlen;
	out->key[klen] = '\0';
}

/* Fill free slot IDX (and its tail if need be) with E. */
static void
slot_fill(const struct part *pt, uint32_t idx, const struct kv_entry *e)
{
	struct kv_slot *s = &pt->slots[idx];
	size_t          klen = e->keylen, vlen = e->valuelen;
	size_t          kdlen = strnlen(e->kind, KV_KIND_MAX);
	uint32_t        w = KV_SHAPE(klen, vlen, kdlen, 0);
	char           *d = s->data;

	s->start_time = e->start_time;
	s->reg_time_ns = e->reg_time_ns != 0 ? e->reg_time_ns : now_ns();
	s->pid = e->pid;
	s->owner = e->owner;
	s->incarnation = e->incarnation;
	if (e->epoch == 0 && e->node == 0 && e->flags <= KV_SHAPE_FLAGS_MAX &&
	    klen + vlen + kdlen <= KV_SLOT_INLINE) {
		w |= KV_SHAPE(0, 0, 0, e->flags);
	} else {
		struct kv_tail *t = &pt->tails[idx];

		t->epoch = e->epoch;
		t->node = e->node;
		t->flags = e->flags;
		if (klen <= KV_SLOT_INLINE)
			memcpy(s->data, e->key, klen);
		d = t->data;
		w |= KV_SHAPE_TAIL;
	}
	memcpy(d, e->key, klen);
	memcpy(d + klen, e->value, vlen);
	memcpy(d + klen + vlen, e->kind, kdlen);
	s->shape = w;
}

/*
 * Find KEY in the partition.  Returns the cell index and the slot it points
 * at in *SLOT, or -ENOENT with the index of the empty cell that ends the
 * probe run in *HOLE (either pointer may be NULL).  Lock-free callers must
 * validate the result with the sequence counter, and use *SLOT rather than
 * load the cell again: it may have changed since.
 */
READ_PATH int64_t
probe(const struct part *pt, uint64_t h, const char *key, size_t len,
    uint32_t *hole, uint32_t *slot)
{
	kv_cell  tag = cell_tag(pt, h);
	uint32_t i = (uint32_t)h & pt->mask, n;

	for (n = 0; n <= pt->mask; n++, i = (i + 1) & pt->mask) {
		kv_cell  c = cell_load(&pt->cells[i]);
		uint32_t idx = cell_slot(pt, c);

		if (c == 0)
			break;
		if (cell_tagged(pt, c, tag) && idx <= pt->mask &&
		    slot_is(pt, idx, key, len)) {
			if (slot != NULL)
				*slot = idx;
			return i;
		}
	}
	if (hole != NULL)
		*hole = i;
	return -ENOENT;
}

/*
 * SEQLOCK READ PROTOCOL
 *
 * Read the counter (acquire); if odd a writer is inside, try again.  Probe
 * and copy the entry out with plain loads, then an acquire fence and a
 * second read of the counter: if it is unchanged, no writer touched the
 * partition meanwhile and the copy is whole.  Otherwise the copy may be
 * torn and is thrown away.  The fences pair with the writer's in
 * seq_open()/seq_close().  Every bound the probe uses comes from the handle,
 * so a torn read can give a wrong answer, which is discarded, but never an
 * access outside the mapping.
 */
/* lookup_once()'s answer when the entry is not in data[] (INLINE_ONLY). */
#define READ_NOT_INLINE 1

/*
 * One probe and copy, unsynchronised; the caller validates.  With
 * INLINE_ONLY, an entry whose strings are not all in data[] is left alone
 * and READ_NOT_INLINE returned, so that the caller's copy of this function
 * has no tail to handle.
 */
READ_PATH int
lookup_once(const struct part *pt, uint64_t h, const char *key, size_t len,
    struct kv_entry *out, bool published_only, bool inline_only)
{
	uint32_t idx;

	if (probe(pt, h, key, len, NULL, &idx) < 0)
		return -ENOENT;
	if (inline_only && !shape_inline(pt->slots[idx].shape, len))
		return READ_NOT_INLINE;
	slot_copy_out(pt, idx, len, out);
	if (published_only && !(out->flags & KV_ENTRY_PUBLISHED))
		return -ENOENT;
	return 0;
}

/*
 * One attempt under the read protocol.  Returns false if the counter was
 * odd or moved meanwhile, and *RC is then meaningless.
 */
READ_PATH bool
read_attempt(const struct part *pt, uint64_t h, const char *key, size_t len,
    struct kv_entry *out, bool published_only, bool inline_only, int *rc)
{
	uint32_t s1 = __atomic_load_n(&pt->p->seq, __ATOMIC_ACQUIRE);

	if (s1 & 1)
		return false;
	*rc = lookup_once(pt, h, key, len, out, published_only, inline_only);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n(&pt->p->seq, __ATOMIC_RELAXED) == s1;
}

/*
 * The whole read protocol, for any key and entry: up to READ_TRIES
 * attempts, then -EBUSY.
 */
static __attribute__((noinline)) int
read_general(const struct kv_reg *r, uint64_t h, const char *key, size_t len,
    struct kv_entry *out, bool published_only)
{
	struct part pt = part_of_hash(r, h);
	unsigned    attempt;
	int         rc;

	for (attempt = 0; attempt < READ_TRIES; attempt++) {
		if (attempt > 0)
			cpu_relax(attempt - 1);
		if (read_attempt(&pt, h, key, len, out, published_only, false,
		        &rc))
			return rc;
	}
	return -EBUSY;
}

/*
 * Most lookups are of a key short enough to live in data[], for an entry
 * held there whole, in a partition no writer is inside: one attempt,
 * compiled for that case alone, settles them.  Anything else, and any
 * attempt that fails, goes to read_general().
 */
READ_PATH int
read_entry(const struct kv_reg *r, const char *key, size_t len,
    struct kv_entry *out, bool published_only)
{
	uint64_t h = hash_key(r, key, len);
	int      rc;

	if (len <= KV_SLOT_INLINE) {
		struct part pt = part_of_hash(r, h);

		if (read_attempt(&pt, h, key, len, out, published_only, true,
		        &rc) &&
		    rc != READ_NOT_INLINE)
			return rc;
	}
	return read_general(r, h, key, len, out, published_only);
}

int
kv_table_lookup_unsync(const struct kv_reg *r, const char *key, size_t len,
    struct kv_entry *out)
{
	uint64_t    h = hash_key(r, key, len);
	struct part pt = part_of_hash(r, h);

	return lookup_once(&pt, h, key, len, out, true, false);
}

/*
 * Readers check the length only: writers validate every key they insert,
 * so a key that is not valid is simply not found, and the lookup path does
 * not pay for a UTF-8 check on every call.
 */
int
kv_reg_lookup(const struct kv_reg *r, const char *key, size_t len,
    struct kv_entry *out)
{
	if (len == 0 || len > KV_KEY_MAX)
		return -EINVAL;
	return read_entry(r, key, len, out, true);
}

int
kv_reg_get(const struct kv_reg *r, const char *key, size_t len,
    struct kv_entry *out)
{
	if (len == 0 || len > KV_KEY_MAX)
		return -EINVAL;
	return read_entry(r, key, len, out, false);
}

/* The writer's half of the read protocol (see above). */
static void
seq_open(struct kv_partition *p)
{
	uint32_t s = __atomic_load_n(&p->seq, __ATOMIC_RELAXED);

	__atomic_store_n(&p->seq, s | 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void
seq_close(struct kv_partition *p)
{
	uint32_t s = __atomic_load_n(&p->seq, __ATOMIC_RELAXED);

	__atomic_store_n(&p->seq, (s | 1) + 1, __ATOMIC_RELEASE);
}

/*
 * EOWNERDEAD REPAIR
 *
 * A writer died holding the lock, at any step of an insert, delete or
 * replace.  By rule 1 every slot a cell points at is whole; by rule 3 the
 * cells are the truth.  So: keep every cell that points at a plausible slot
 * (in range, hash matching the cell's tag and this partition, sane lengths)
 * and drop duplicates, which a backward shift cut short leaves behind; put
 * the surviving cells back at their probe positions; then derive the count,
 * the free list and the high-water mark.  An interrupted insert is present
 * iff its cell was stored, a delete applied iff its cell was overwritten, a
 * replace applied iff the cell was swapped; nothing else changes.  No
 * allocation: the slots' mark field is the scratch space.
 *
 * A repairer can die too.  Phase one only marks the live slots and leaves
 * the cells alone; then the partition's repairing flag says that the marks,
 * not the cells, are the truth, and phase two empties the cells and puts
 * them back from the marks.  A repairer that dies in phase one leaves the
 * cells as they were; one that dies in phase two leaves the flag set, and
 * the next one redoes phase two alone.
 */
/*
 * Could slot IDX be an entry of this partition?  Its lengths fit their
 * fields and its key hashes here; *H gets that hash.
 */
static bool
slot_plausible(const struct kv_reg *r, const struct part *pt, uint32_t idx,
    uint64_t *h)
{
	uint32_t w = pt->slots[idx].shape;
	uint32_t len = KV_SHAPE_KEYLEN(w) + KV_SHAPE_VALUELEN(w) +
	    KV_SHAPE_KINDLEN(w);

	if (KV_SHAPE_KEYLEN(w) < 1 || KV_SHAPE_VALUELEN(w) > KV_VALUE_MAX ||
	    (!(w & KV_SHAPE_TAIL) && len > KV_SLOT_INLINE))
		return false;
	*h = slot_hash(r, pt, idx);
	return part_index(r, *h) == pt->index;
}

static bool
cell_plausible(const struct kv_reg *r, const struct part *pt, kv_cell c)
{
	uint32_t idx = cell_slot(pt, c);
	uint64_t h;

	return idx <= pt->mask && slot_plausible(r, pt, idx, &h) &&
	    cell_tagged(pt, c, cell_tag(pt, h));
}

static uint32_t
repair_mark(const struct kv_reg *r, const struct part *pt)
{
	uint32_t i, hwm = pt->p->hwm > r->pslots ? r->pslots : pt->p->hwm;

	for (i = 0; i <= pt->mask; i++) {
		kv_cell c = pt->cells[i];

		if (c != 0 && cell_plausible(r, pt, c) &&
		    cell_slot(pt, c) >= hwm)
			hwm = cell_slot(pt, c) + 1;
	}
	for (i = 0; i < hwm; i++)
		pt->slots[i].shape &= ~KV_SHAPE_MARK;
	for (i = 0; i <= pt->mask; i++) {
		kv_cell c = pt->cells[i];

		if (c != 0 && cell_plausible(r, pt, c))
			pt->slots[cell_slot(pt, c)].shape |= KV_SHAPE_MARK;
	}
	return hwm;
}

static void
repair_relink(const struct kv_reg *r, const struct part *pt, uint32_t hwm)
{
	uint32_t idx, count = 0, free_head = 0;

	memset(pt->cells, 0, (size_t)(pt->mask + 1) * sizeof(*pt->cells));
	CRASHPOINT(KV_CP_REPAIR_CLEARED);
	for (idx = 0; idx < hwm; idx++) {
		struct kv_slot *s = &pt->slots[idx];
		uint32_t        hole;
		uint64_t        h;

		if (!(s->shape & KV_SHAPE_MARK))
			continue;
		/*
		 * In a table this code wrote, phase one marked plausible
		 * slots only, no more than the fill.  A segment written by
		 * anything else may hold any marks (tests/fuzz): a slot whose
		 * lengths would take the probe outside its tail is dropped,
		 * and so is one beyond the fill, so that an empty cell is left
		 * to end the probes.  So is a second slot for one key.
		 */
		if (count >= r->fill || !slot_plausible(r, pt, idx, &h) ||
		    probe(pt, h, slot_key(pt, idx), KV_SHAPE_KEYLEN(s->shape),
		        &hole, NULL) >= 0) {
			s->shape &= ~KV_SHAPE_MARK;
			continue;
		}
		pt->cells[hole] = cell_make(pt, h, idx);
		count++;
	}
	for (idx = hwm; idx-- > 0;) {
		if (pt->slots[idx].shape & KV_SHAPE_MARK)
			continue;
		pt->slots[idx].next_free = free_head;
		free_head = idx + 1;
	}
	pt->p->count = count;
	pt->p->hwm = hwm;
	pt->p->free_head = free_head;
}

static void
repair(const struct kv_reg *r, const struct part *pt)
{
	seq_open(pt->p);
	if (!pt->p->repairing) {
		pt->p->hwm = repair_mark(r, pt);
		CRASHPOINT(KV_CP_REPAIR_MARKED);
		pt->p->repairing = 1;
	}
	/* Phase one bounds it; a segment written by anything else may not. */
	if (pt->p->hwm > r->pslots)
		pt->p->hwm = r->pslots;
	repair_relink(r, pt, pt->p->hwm);
	pt->p->repairing = 0;
	pt->p->repairs++;
	seq_close(pt->p);
}

/* Returns 0 with the partition locked, or -errno. */
static int
part_lock(const struct kv_reg *r, const struct part *pt)
{
	int e;

	if (!r->writable)
		return -EPERM;
	e = pthread_mutex_lock(&pt->p->lock);
	if (e == EOWNERDEAD) {
		repair(r, pt);
		e = pthread_mutex_consistent(&pt->p->lock);
		if (e != 0)
			(void)pthread_mutex_unlock(&pt->p->lock);
	}
	return -e;
}

static void
part_unlock(const struct part *pt)
{
	(void)pthread_mutex_unlock(&pt->p->lock);
}

int
kv_table_init_partition(struct kv_partition *p)
{
	pthread_mutexattr_t a;
	int                 e;

	e = pthread_mutexattr_init(&a);
	if (e != 0)
		return -e;
	e = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	if (e == 0)
		e = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	if (e == 0)
		e = pthread_mutex_init(&p->lock, &a);
	pthread_mutexattr_destroy(&a);
	return -e;
}

/*
 * The free list and the high-water mark are derived state (rule 3), and
 * the only part of a partition that names a slot without being checked
 * first.  If either points outside the partition (or no slot is left,
 * which the fill forbids), the segment was written by something other
 * than this code: rebuild them from the cells, as after a writer's death.
 * Called with the lock held and before the probe, since a repair moves
 * cells.  Found by tests/fuzz/fuzz_segment.c: a scribbled free_head or hwm
 * had inserts write a slot anywhere in, or beyond, the mapping.
 */
static void
alloc_check(const struct kv_reg *r, const struct part *pt)
{
	if (pt->p->free_head > r->pslots || pt->p->hwm > r->pslots ||
	    (pt->p->free_head == 0 && pt->p->hwm == r->pslots))
		repair(r, pt);
}

/*
 * Take a free slot.  The caller holds the lock, has run alloc_check() and
 * checked the fill.  Returns its index, or -ENOSPC when every slot is
 * live, which after alloc_check() only a segment whose cells were all
 * written by something else can cause.
 */
static int64_t
slot_alloc(const struct part *pt)
{
	uint32_t idx;

	if (pt->p->free_head != 0 && pt->p->free_head - 1 <= pt->mask) {
		idx = pt->p->free_head - 1;
		pt->p->free_head = pt->slots[idx].next_free;
	} else if (pt->p->hwm <= pt->mask) {
		idx = pt->p->hwm++;
	} else {
		return -ENOSPC;
	}
	return idx;
}

/* Give back a slot no cell points at any more. */
static void
slot_free(const struct part *pt, uint32_t idx, int cp_link)
{
	pt->slots[idx].next_free = pt->p->free_head;
	CRASHPOINT(cp_link);
	pt->p->free_head = idx + 1;
}

static int
entry_check(const struct kv_entry *e)
{
	if (e->keylen > KV_KEY_MAX || kv_key_check(e->key, e->keylen) != NULL)
		return -EINVAL;
	if (memchr(e->kind, '\0', sizeof(e->kind)) == NULL)
		return -EINVAL;
	if (e->valuelen > KV_VALUE_MAX)
		return -EMSGSIZE;
	return 0;
}

static uint32_t
total_count(const struct kv_reg *r)
{
	uint32_t i, n = 0;

	for (i = 0; i < r->nparts; i++)
		n += __atomic_load_n(&r->parts[i].count, __ATOMIC_RELAXED);
	return n;
}

static int
insert_locked(const struct kv_reg *r, const struct part *pt, uint64_t h,
    const struct kv_entry *e, struct kv_entry *existing)
{
	uint32_t hole, idx, idx0;
	int64_t  a;

	alloc_check(r, pt);
	if (probe(pt, h, e->key, e->keylen, &hole, &idx0) >= 0) {
		if (existing != NULL)
			slot_copy_out(pt, idx0, e->keylen, existing);
		return -EEXIST;
	}
	/* An occupied hole: no empty cell, so the count was scribbled on. */
	if (pt->p->count >= r->fill || total_count(r) >= r->capacity ||
	    pt->cells[hole] != 0)
		return -ENOSPC;
	if ((a = slot_alloc(pt)) < 0)
		return (int)a;
	idx = (uint32_t)a;
	CRASHPOINT(KV_CP_INS_ALLOC);
	slot_fill(pt, idx, e);
	CRASHPOINT(KV_CP_INS_WRITTEN);
	seq_open(pt->p);
	CRASHPOINT(KV_CP_INS_OPEN);
	cell_store(&pt->cells[hole], cell_make(pt, h, idx));
	CRASHPOINT(KV_CP_INS_LINKED);
	pt->p->count++;
	CRASHPOINT(KV_CP_INS_COUNTED);
	seq_close(pt->p);
	pt->p->registrations++;
	return 0;
}

int
kv_reg_register(struct kv_reg *r, const struct kv_entry *e,
    struct kv_entry *existing)
{
	struct part pt;
	uint64_t    h;
	int         rc;

	rc = entry_check(e);
	if (rc < 0)
		return rc;
	h = hash_key(r, e->key, e->keylen);
	pt = part_of_hash(r, h);
	rc = part_lock(r, &pt);
	if (rc < 0)
		return rc;
	rc = insert_locked(r, &pt, h, e, existing);
	part_unlock(&pt);
	return rc;
}

/*
 * Remove cell I by shifting the rest of its probe run backwards: a cell
 * moves into the hole unless its home lies cyclically in (hole, j], where
 * moving it would put it before its home.  Runs with the counter odd.
 */
static void
delete_cell(const struct kv_reg *r, const struct part *pt, uint32_t i)
{
	uint32_t hole = i, j = i, n;

	/*
	 * At most once round the partition: with no empty cell (a segment
	 * scribbled on, or filled before KV_PART_FILL kept one free) the run
	 * has no end, and the walk looped for ever (tests/fuzz).  A full
	 * round visits every other cell once, which is all the shift needs.
	 * A cell keeps no home; it is its slot's key's, hashed again.  A cell
	 * naming no slot of the partition (written by something else) stays.
	 */
	for (n = 0; n < pt->mask; n++) {
		kv_cell  c;
		uint32_t idx, home;

		j = (j + 1) & pt->mask;
		c = pt->cells[j];
		if (c == 0)
			break;
		idx = cell_slot(pt, c);
		home = idx <= pt->mask
		    ? (uint32_t)slot_hash(r, pt, idx) & pt->mask
		    : j;
		if (((j - home) & pt->mask) < ((j - hole) & pt->mask))
			continue;
		cell_store(&pt->cells[hole], c);
		CRASHPOINT(KV_CP_DEL_SHIFT);
		hole = j;
	}
	cell_store(&pt->cells[hole], 0);
	CRASHPOINT(KV_CP_DEL_CLEARED);
}

/* Find KEY for a conditional write: its cell index, or -ENOENT/-ESTALE. */
static int64_t
find_owned(const struct part *pt, uint64_t h, const char *key, size_t len,
    pid_t pid)
{
	int64_t i = probe(pt, h, key, len, NULL, NULL);

	if (i < 0)
		return i;
	if (pt->slots[cell_slot(pt, pt->cells[i])].pid != pid)
		return -ESTALE;
	return i;
}

/*
 * The start of every conditional write: lock KEY's partition (into *PT)
 * and find KEY registered to PID.  Returns its cell index with the
 * partition locked, or -errno with it unlocked.
 */
static int64_t
lock_owned(struct kv_reg *r, const char *key, size_t len, pid_t pid,
    struct part *pt, uint64_t *hp)
{
	int64_t i;
	int     rc;

	if (kv_key_check(key, len) != NULL)
		return -EINVAL;
	*hp = hash_key(r, key, len);
	*pt = part_of_hash(r, *hp);
	if ((rc = part_lock(r, pt)) < 0)
		return rc;
	alloc_check(r, pt);
	i = find_owned(pt, *hp, key, len, pid);
	if (i < 0)
		part_unlock(pt);
	return i;
}

int
kv_reg_unregister(struct kv_reg *r, const char *key, size_t len, pid_t pid)
{
	struct part pt;
	uint64_t    h;
	uint32_t    idx;
	int64_t     i;

	if ((i = lock_owned(r, key, len, pid, &pt, &h)) < 0)
		return (int)i;
	idx = cell_slot(&pt, pt.cells[i]);
	seq_open(pt.p);
	CRASHPOINT(KV_CP_DEL_OPEN);
	delete_cell(r, &pt, (uint32_t)i);
	pt.p->count--;
	CRASHPOINT(KV_CP_DEL_COUNTED);
	seq_close(pt.p);
	CRASHPOINT(KV_CP_DEL_CLOSED);
	slot_free(&pt, idx, KV_CP_DEL_FREE_LINK);
	pt.p->unregistrations++;
	part_unlock(&pt);
	return 0;
}

/*
 * Point cell I at a fresh copy of E.  Rule 1: the old slot is not touched.
 * Returns 0, or -ENOSPC (see slot_alloc()).
 */
static int
swap_locked(const struct part *pt, uint64_t h, uint32_t i,
    const struct kv_entry *e)
{
	uint32_t old = cell_slot(pt, pt->cells[i]), idx;
	int64_t  a;

	if ((a = slot_alloc(pt)) < 0) /* the fill keeps free slots */
		return (int)a;
	idx = (uint32_t)a;
	CRASHPOINT(KV_CP_REP_ALLOC);
	slot_fill(pt, idx, e);
	CRASHPOINT(KV_CP_REP_WRITTEN);
	seq_open(pt->p);
	CRASHPOINT(KV_CP_REP_OPEN);
	cell_store(&pt->cells[i], cell_make(pt, h, idx));
	CRASHPOINT(KV_CP_REP_SWAPPED);
	seq_close(pt->p);
	CRASHPOINT(KV_CP_REP_CLOSED);
	slot_free(pt, old, KV_CP_REP_FREE_LINK);
	return 0;
}

/*
 * The common shape of the conditional writes: lock KEY's partition, find
 * KEY registered to PID, let EDIT turn the present entry into the new one
 * (or refuse with -errno), and swap it in.
 */
typedef int (*edit_fn)(struct kv_entry *e, const void *arg);

static int
modify(struct kv_reg *r, const char *key, size_t len, pid_t pid,
    edit_fn edit, const void *arg)
{
	struct kv_entry e;
	struct part     pt;
	uint64_t        h;
	int64_t         i;
	int             rc;

	if ((i = lock_owned(r, key, len, pid, &pt, &h)) < 0)
		return (int)i;
	slot_copy_out(&pt, cell_slot(&pt, pt.cells[i]), len, &e);
	rc = edit(&e, arg);
	if (rc == 0)
		rc = swap_locked(&pt, h, (uint32_t)i, &e);
	part_unlock(&pt);
	return rc;
}

static int
edit_replace(struct kv_entry *e, const void *arg)
{
	*e = *(const struct kv_entry *)arg;
	return 0;
}

int
kv_reg_replace(struct kv_reg *r, pid_t expect_pid, const struct kv_entry *e)
{
	int rc = entry_check(e);

	if (rc < 0)
		return rc;
	return modify(r, e->key, e->keylen, expect_pid, edit_replace, e);
}

struct value {
	const void *p;
	size_t      len;
};

static int
edit_value(struct kv_entry *e, const void *arg)
{
	const struct value *v = arg;

	memcpy(e->value, v->p, v->len);
	e->valuelen = (uint16_t)v->len;
	return 0;
}

int
kv_reg_set_value(struct kv_reg *r, const char *key, size_t len, pid_t pid,
    const void *value, size_t vlen)
{
	struct value v = {value, vlen};

	if (vlen > KV_VALUE_MAX)
		return -EMSGSIZE;
	return modify(r, key, len, pid, edit_value, &v);
}

int
kv_reg_count(const struct kv_reg *r)
{
	return (int)total_count(r);
}

struct filter {
	const char *pattern; /* NULL: any key */
	pid_t       pid;     /* 0: any pid */
};

struct snap {
	struct kv_entry *v;
	size_t           n, cap;
};

static bool
filter_match(const struct filter *f, const struct kv_entry *e)
{
	if (f->pid != 0 && e->pid != f->pid)
		return false;
	return f->pattern == NULL || fnmatch(f->pattern, e->key, 0) == 0;
}

/* Copy the partition's matching entries to SN.  Returns 0 or -ENOMEM. */
static int
snap_part(const struct part *pt, const struct filter *f, struct snap *sn)
{
	uint32_t i, idx;

	sn->n = 0;
	for (i = 0; i <= pt->mask; i++) {
		kv_cell c = cell_load(&pt->cells[i]);

		if (c == 0 || cell_slot(pt, c) > pt->mask)
			continue;
		if (sn->n == sn->cap) {
			size_t           cap = sn->cap ? sn->cap * 2 : 64;
			struct kv_entry *v;

			v = reallocarray(sn->v, cap, sizeof(*v));
			if (v == NULL)
				return -ENOMEM;
			sn->v = v;
			sn->cap = cap;
		}
		idx = cell_slot(pt, c);
		slot_copy_out(pt, idx, KV_SHAPE_KEYLEN(pt->slots[idx].shape),
		    &sn->v[sn->n]);
		if (filter_match(f, &sn->v[sn->n]))
			sn->n++;
	}
	return 0;
}

/* A consistent snapshot of one partition: locked, or by the read protocol. */
static int
snap_consistent(const struct kv_reg *r, const struct part *pt,
    const struct filter *f, struct snap *sn)
{
	unsigned attempt;
	int      rc;

	if (r->writable) {
		rc = part_lock(r, pt);
		if (rc < 0)
			return rc;
		rc = snap_part(pt, f, sn);
		part_unlock(pt);
		return rc;
	}
	for (attempt = 0; attempt < READ_TRIES; attempt++) {
		uint32_t s1 = __atomic_load_n(&pt->p->seq, __ATOMIC_ACQUIRE);

		if (!(s1 & 1)) {
			rc = snap_part(pt, f, sn);
			if (rc < 0)
				return rc;
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			if (__atomic_load_n(&pt->p->seq, __ATOMIC_RELAXED) ==
			    s1)
				return 0;
		}
		cpu_relax(attempt);
	}
	return -EBUSY;
}

static int
walk(const struct kv_reg *r, const struct filter *f, kv_reg_iter_fn fn,
    void *arg)
{
	struct snap sn = {0};
	uint32_t    p;
	size_t      i;
	int         rc = 0;

	for (p = 0; p < r->nparts && rc == 0; p++) {
		struct part pt = part_of(r, p);

		rc = snap_consistent(r, &pt, f, &sn);
		for (i = 0; i < sn.n && rc == 0; i++)
			rc = fn(&sn.v[i], arg);
	}
	free(sn.v);
	return rc;
}

int
kv_reg_iter(const struct kv_reg *r, const char *pattern, kv_reg_iter_fn fn,
    void *arg)
{
	struct filter f = {pattern, 0};

	return walk(r, &f, fn, arg);
}

int
kv_reg_keys_of(const struct kv_reg *r, pid_t pid, kv_reg_iter_fn fn,
    void *arg)
{
	struct filter f = {NULL, pid};

	if (pid <= 0)
		return -EINVAL;
	return walk(r, &f, fn, arg);
}
