/*
 * Fuzz target for opening a registry segment whose bytes are not to be
 * trusted (shm/registry.c, shm/table.c).  Whatever the segment holds, a
 * reader must not read outside the mapping or crash, and a writer must not
 * crash, write outside the mapping or hang.
 *
 * The input picks how the segment is made:
 *
 *   byte 0   mode: 0 raw, 1 or 2 template + patches, 3 template + splice
 *   byte 1   locks: bit p % 8 set = partition p's lock holder died
 *   raw:     the segment is bytes 2.. as they are
 *   else:    byte 2 the template (seg_image.h), byte 3 a size change
 *            (0x80|n: n * 97 + 1 bytes shorter, 0xc0|n: n * 8 + 1
 *            longer), then
 *              patches: {region, offset (2 bytes LE), length, bytes} ...
 *                       region: header, partitions, cells, slots, tails,
 *                       the whole file; the offset wraps in it
 *              splice:  {offset (2 bytes LE, of 65536ths of the file),
 *                       bytes}
 *
 * The segment goes into a memfd, which is opened read-only: on success it
 * gets lookups (the template's keys and every key the table yields),
 * kv_reg_iter(), kv_reg_keys_of(), kv_reg_count() and kv_reg_stats().
 * Then it is opened read-write, and every entry found (16 at most) is
 * looked up, registered again (-EEXIST, with the entry of that very key),
 * given a new value, replaced and unregistered, and a few new keys are
 * registered and unregistered.
 *
 * THE LOCKS.  Before the read-write open, each partition's mutex is
 * replaced by a fresh, robust, process-shared one: unlocked, or marked as
 * held by a thread that died (glibc's FUTEX_OWNER_DIED, so that the next
 * writer runs the EOWNERDEAD repair on whatever the table holds).  A lock
 * word naming any other thread would make the writer wait for ever, as it
 * must: a lock held by a live process looks the same.  That is the one
 * part of the segment whose corruption the library cannot defend against.
 *
 * Also checked: an image of a template left as it is opens, and its
 * entries are all there; a lookup that answers returns the key it was
 * asked; every entry yielded is well formed.
 */
#include <sys/mman.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "layout.h"
#include "seg_image.h"

#define FUTEX_OWNER_DIED_BIT 0x40000000 /* linux/futex.h */
#define COLLECT_MAX          64         /* entries taken from the table */
#define NEW_KEYS             6          /* registered in the RW pass */

struct image {
	uint8_t *p;
	size_t   n;
};

struct keys {
	struct kv_entry v[COLLECT_MAX];
	size_t          n;
};

static struct image templates[SEG_TEMPLATES];

static const struct image *
tmpl_image(unsigned t)
{
	struct image *im = &templates[t % SEG_TEMPLATES];

	if (im->p == NULL)
		FUZZ_CHECK(seg_image(t % SEG_TEMPLATES, &im->p, &im->n) == 0);
	return im;
}

/* Where each patch region starts and how long it is, for template T. */
static void
region(const struct seg_template *t, unsigned which, size_t total, size_t *off,
    size_t *len)
{
	size_t cells = sizeof(struct kv_shm_header) +
	               (size_t)t->npartitions * sizeof(struct kv_partition);
	size_t slots =
	    (cells + (size_t)t->nslots * sizeof(kv_cell) + 4095) / 4096 * 4096;
	size_t tails = slots + (size_t)t->nslots * sizeof(struct kv_slot);

	switch (which % 6) {
	case 0:
		*off = 0, *len = sizeof(struct kv_shm_header);
		break;
	case 1:
		*off = sizeof(struct kv_shm_header);
		*len = cells - *off;
		break;
	case 2:
		*off = cells, *len = (size_t)t->nslots * sizeof(kv_cell);
		break;
	case 3:
		*off = slots, *len = tails - slots;
		break;
	case 4:
		*off = tails, *len = total - tails;
		break;
	default:
		*off = 0, *len = total;
	}
}

static void
put(uint8_t *img, size_t n, size_t at, const uint8_t *src, size_t len)
{
	if (at >= n)
		return;
	memcpy(img + at, src, len < n - at ? len : n - at);
}

/*
 * The segment the input describes, in a malloc'ed buffer.  *PRISTINE is
 * set when it is a template as it was made.
 */
static uint8_t *
build(const uint8_t *d, size_t size, size_t *n, bool *pristine)
{
	const struct seg_template *t;
	const struct image        *im;
	size_t                     off, len, at;
	uint8_t                   *img, adj;

	*pristine = false;
	if ((d[0] & 3) == 0 || size < 4) {
		*n = size > 2 ? size - 2 : 0;
		FUZZ_CHECK((img = malloc(*n + 1)) != NULL);
		memcpy(img, d + (size > 2 ? 2 : size), *n);
		return img;
	}
	t = &seg_templates[d[2] % SEG_TEMPLATES];
	im = tmpl_image(d[2]);
	adj = d[3];
	*n = im->n;
	if ((adj & 0xc0) == 0x80)
		*n = *n > (adj & 0x3fu) * 97 + 1 ? *n - (adj & 0x3fu) * 97 - 1
		                                 : 0;
	else if ((adj & 0xc0) == 0xc0)
		*n += (adj & 0x3fu) * 8 + 1;
	FUZZ_CHECK((img = calloc(1, *n + 1)) != NULL);
	memcpy(img, im->p, *n < im->n ? *n : im->n);
	d += 4, size -= 4;
	*pristine = size == 0 && *n == im->n;
	if ((d[-4] & 3) == 3) {
		if (size >= 2) {
			at = (size_t)(d[0] | d[1] << 8) * *n / 65536;
			put(img, *n, at, d + 2, size - 2);
		}
		return img;
	}
	while (size >= 4) {
		region(t, d[0], im->n, &off, &len);
		at = off + (len ? (size_t)(d[1] | d[2] << 8) % len : 0);
		len = d[3] % 32 < size - 4 ? d[3] % 32 : size - 4;
		put(img, *n, at, d + 4, len);
		d += 4 + len, size -= 4 + len;
	}
	return img;
}

static int
collect(const struct kv_entry *e, void *arg)
{
	struct keys *k = arg;
	size_t       i;

	FUZZ_CHECK(e->keylen <= KV_KEY_MAX && e->key[e->keylen] == '\0');
	FUZZ_CHECK(e->valuelen <= KV_VALUE_MAX);
	FUZZ_CHECK(memchr(e->kind, '\0', sizeof(e->kind)) != NULL);
	for (i = 0; i < k->n; i++) /* the same key twice: once is enough */
		if (k->v[i].keylen == e->keylen &&
		    memcmp(k->v[i].key, e->key, e->keylen) == 0)
			return 0;
	if (k->n < COLLECT_MAX)
		k->v[k->n++] = *e;
	return 0;
}

static int
count_cb(const struct kv_entry *e, void *arg)
{
	(void)e;
	++*(size_t *)arg;
	return 0;
}

/*
 * A lookup in a partition whose sequence counter is stuck odd (a writer
 * died inside, or the segment says so) gives up with -EBUSY only after 64
 * attempts, 56 of them after sched_yield(): bounded, but slow enough with
 * a hundred lookups to an input to look like a hang to libFuzzer on a
 * busy machine.  Three such answers an input are enough.
 */
static int busy_left;

/* Look KEY up both ways; an answer must be about KEY. */
static int
lookup(struct kv_reg *r, const char *key, size_t len, bool published)
{
	struct kv_entry out;
	int             rc;

	if (busy_left <= 0)
		return -EBUSY;
	rc = published ? kv_reg_lookup(r, key, len, &out)
	               : kv_reg_get(r, key, len, &out);
	FUZZ_CHECK(rc == 0 || rc == -ENOENT || rc == -EINVAL || rc == -EBUSY);
	busy_left -= rc == -EBUSY;
	if (rc == 0) {
		FUZZ_CHECK(out.keylen == len && memcmp(out.key, key, len) == 0);
		FUZZ_CHECK(!published || (out.flags & KV_ENTRY_PUBLISHED));
		return (int)out.pid;
	}
	return rc;
}

static void
read_pass(struct kv_reg *r, const struct seg_template *t, bool pristine,
    struct keys *k)
{
	struct kv_reg_stats st;
	struct kv_entry     e;
	size_t              i, n = 0;
	bool                all;
	int                 rc;

	FUZZ_CHECK(kv_reg_stats(r, &st) == 0);
	FUZZ_CHECK(st.nslots >= 16 && st.npartitions >= 1);
	(void)kv_reg_count(r);
	rc = kv_reg_iter(r, NULL, collect, k);
	FUZZ_CHECK(rc == 0 || rc == -EBUSY);
	(void)kv_reg_iter(r, "user:*", count_cb, &n);
	(void)kv_reg_iter(r, "*[!x]?", count_cb, &n);
	if (k->n > 0)
		(void)kv_reg_keys_of(
		    r, k->v[0].pid > 0 ? k->v[0].pid : 1, count_cb, &n);
	for (i = 0; i < k->n; i++) {
		(void)lookup(r, k->v[i].key, k->v[i].keylen, true);
		(void)lookup(r, k->v[i].key, k->v[i].keylen, false);
	}
	/* A template as made, every entry registered: all must be there. */
	all = pristine && t != NULL && kv_reg_count(r) == (int)t->nentries;
	if (pristine)
		FUZZ_CHECK(kv_reg_count(r) == (int)k->n);
	for (i = 0; t != NULL && i < t->nentries; i++) {
		seg_entry((uint32_t)i, &e);
		rc = lookup(r, e.key, e.keylen, false);
		FUZZ_CHECK(!all || rc == e.pid);
		rc = lookup(r, e.key, e.keylen, true);
		FUZZ_CHECK(
		    !all ||
		    rc == ((e.flags & KV_ENTRY_PUBLISHED) ? e.pid : -ENOENT));
	}
}

/* Fresh locks for the NPARTS partitions of the segment in FD (THE LOCKS). */
static void
reset_locks(int fd, uint32_t nparts, uint8_t died)
{
	pthread_mutexattr_t a;
	pthread_mutex_t     m;
	uint32_t            p;

	FUZZ_CHECK(pthread_mutexattr_init(&a) == 0);
	FUZZ_CHECK(
	    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) == 0);
	FUZZ_CHECK(pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) == 0);
	for (p = 0; p < nparts; p++) {
		off_t at = (off_t)(sizeof(struct kv_shm_header) +
		                   p * sizeof(struct kv_partition));

		memset(&m, 0, sizeof(m));
		FUZZ_CHECK(pthread_mutex_init(&m, &a) == 0);
		if (died & (1u << (p % 8)))
			m.__data.__lock = FUTEX_OWNER_DIED_BIT;
		FUZZ_CHECK(pwrite(fd, &m, sizeof(m),
		               at + offsetof(struct kv_partition, lock)) ==
		           (ssize_t)sizeof(m));
	}
	pthread_mutexattr_destroy(&a);
}

static bool
write_ok(int rc)
{
	return rc == 0 || rc == -EEXIST || rc == -ENOSPC || rc == -ENOENT ||
	       rc == -ESTALE;
}

/* PID + D, wrapping: the pids in a segment are anything. */
static int32_t
other_pid(int32_t pid, unsigned d)
{
	return (int32_t)((uint32_t)pid + d);
}

static void
write_pass(struct kv_reg *r, struct keys *k, bool pristine)
{
	struct kv_entry e, old;
	size_t          i;
	int             rc;

	k->n = 0;
	FUZZ_CHECK(kv_reg_iter(r, NULL, collect, k) == 0);
	for (i = 0; i < k->n && i < 16; i++) {
		struct kv_entry *x = &k->v[i];
		bool valid = kv_key_check(x->key, x->keylen) == NULL;

		(void)lookup(r, x->key, x->keylen, false);
		e = *x;
		e.kind[sizeof(e.kind) - 1] = '\0';
		rc = kv_reg_register(r, &e, &old);
		FUZZ_CHECK(write_ok(rc) || (!valid && rc == -EINVAL));
		FUZZ_CHECK(!pristine || rc == -EEXIST);
		if (rc == -EEXIST) /* the present entry, of the same key */
			FUZZ_CHECK(old.keylen == x->keylen &&
			           memcmp(old.key, x->key, x->keylen) == 0);
		rc = kv_reg_set_value(r, x->key, x->keylen, x->pid, "fz", 2);
		FUZZ_CHECK(write_ok(rc) || (!valid && rc == -EINVAL));
		FUZZ_CHECK(!pristine || rc == 0);
		e = *x;
		e.pid = other_pid(x->pid, 1);
		e.kind[sizeof(e.kind) - 1] = '\0';
		rc = kv_reg_replace(r, x->pid, &e);
		FUZZ_CHECK(write_ok(rc) || (!valid && rc == -EINVAL));
		FUZZ_CHECK(!pristine || rc == 0);
		rc = kv_reg_unregister(
		    r, x->key, x->keylen, other_pid(x->pid, (unsigned)i & 1));
		FUZZ_CHECK(write_ok(rc) || (!valid && rc == -EINVAL));
		if (pristine && valid)
			FUZZ_CHECK(rc == ((i & 1) ? 0 : -ESTALE));
		(void)lookup(r, x->key, x->keylen, true);
	}
	for (i = 0; i < NEW_KEYS; i++) {
		memset(&e, 0, sizeof(e));
		e.keylen = (uint16_t)snprintf(e.key, sizeof(e.key),
		    i % 2 ? "fz:%zu"
		          : "fz:%zu:with-a-key-long-enough-for-the-"
		            "tail-of-its-slot-%0120zu",
		    i, i);
		e.valuelen = (uint16_t)(i * 40);
		e.pid = 77;
		e.flags = KV_ENTRY_PUBLISHED;
		rc = kv_reg_register(r, &e, NULL);
		FUZZ_CHECK(rc == 0 || rc == -EEXIST || rc == -ENOSPC);
		if (pristine)
			FUZZ_CHECK(rc == 0 || rc == -ENOSPC);
		if (rc == 0)
			FUZZ_CHECK(lookup(r, e.key, e.keylen, true) == 77 ||
			           !pristine);
	}
	for (i = 0; i < NEW_KEYS; i++) {
		memset(&e, 0, sizeof(e));
		e.keylen = (uint16_t)snprintf(e.key, sizeof(e.key),
		    i % 2 ? "fz:%zu"
		          : "fz:%zu:with-a-key-long-enough-for-the-"
		            "tail-of-its-slot-%0120zu",
		    i, i);
		rc = kv_reg_unregister(r, e.key, e.keylen, 77);
		FUZZ_CHECK(write_ok(rc));
	}
	(void)kv_reg_count(r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct keys         k;
	const struct seg_template *t = NULL;
	struct kv_shm_header       h;
	struct kv_reg             *r;
	uint8_t                   *img;
	size_t                     n;
	bool                       pristine;
	int                        fd, rc;

	if (size < 2)
		return 0;
	img = build(data, size, &n, &pristine);
	if ((data[0] & 3) != 0 && size >= 4)
		t = &seg_templates[data[2] % SEG_TEMPLATES];
	fd = memfd_create("kv-fuzz-seg", MFD_CLOEXEC);
	FUZZ_CHECK(fd != -1);
	FUZZ_CHECK(ftruncate(fd, (off_t)n) == 0);
	FUZZ_CHECK(pwrite(fd, img, n, 0) == (ssize_t)n);
	rc = kv_reg_open_fd(fd, KV_REG_RDONLY, &r);
	FUZZ_CHECK(rc == 0 || rc == -EPROTO || rc == -EPROTONOSUPPORT ||
	           rc == -EBADMSG);
	FUZZ_CHECK(!pristine || rc == 0);
	if (rc == 0) {
		k.n = 0;
		busy_left = 3;
		read_pass(r, t, pristine, &k);
		kv_reg_close(r);
		memcpy(&h, img, sizeof(h));
		reset_locks(fd, h.npartitions, data[1]);
		FUZZ_CHECK(kv_reg_open_fd(fd, KV_REG_RDWR, &r) == 0);
		busy_left = 3;
		write_pass(r, &k, pristine && data[1] == 0);
		kv_reg_close(r);
	}
	close(fd);
	free(img);
	return 0;
}
