/*
 * The registry table: every operation and error, the structural invariants
 * after each scenario, header validation, owner death at every crash point,
 * and readers checking for torn entries while writer processes churn.
 * Segments live in memfds (hermetic), except the named-segment tests.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keyvisor/registry.h"
#include "siphash.h"
#include "table.h"

static int
memfd(void)
{
	int fd = memfd_create("kv-test", MFD_CLOEXEC);

	cr_assert(fd >= 0, "memfd_create: %s", strerror(errno));
	return fd;
}

static struct kv_reg *
make(uint32_t capacity, uint32_t nslots, uint32_t nparts, int *fdp)
{
	struct kv_reg_params p = {.capacity = capacity, .nslots = nslots,
	    .npartitions = nparts};
	struct kv_reg       *r = NULL;
	int                  fd = memfd(), rc;

	rc = kv_reg_create_fd(fd, &p, &r);
	cr_assert(rc == 0, "create: %s", kv_reg_strerror(rc));
	if (fdp != NULL)
		*fdp = fd;
	else
		close(fd);
	return r;
}

static struct kv_entry
entry(const char *key, pid_t pid)
{
	struct kv_entry e = {0};

	e.keylen = (uint16_t)strlen(key);
	memcpy(e.key, key, e.keylen);
	e.pid = pid;
	e.owner = 1;
	e.flags = KV_ENTRY_PUBLISHED;
	snprintf(e.kind, sizeof(e.kind), "test");
	return e;
}

static int
reg(struct kv_reg *r, const char *key, pid_t pid)
{
	struct kv_entry e = entry(key, pid);

	return kv_reg_register(r, &e, NULL);
}

/* The slot a cell names (layout.h). */
static uint32_t
cell_index(const struct kv_reg *r, kv_cell c)
{
	return (c & (((kv_cell)1 << r->cshift) - 1)) - 1;
}

/* The key a slot of partition P holds, and its hash. */
static uint64_t
slot_key_hash(const struct kv_reg *r, uint32_t p, uint32_t idx,
    const char **key, size_t *klen)
{
	const struct kv_slot *s = &r->slots[(size_t)p * r->pslots + idx];

	*klen = KV_SHAPE_KEYLEN(s->shape);
	*key = *klen <= KV_SLOT_INLINE
	    ? s->data
	    : r->tails[(size_t)p * r->pslots + idx].data;
	return kv_siphash64(r->seed, *key, *klen);
}

/*
 * The invariants, read straight from the segment: counters even, each
 * partition's count equal to its cells, every cell pointing at a slot that
 * holds a key hashing to this partition and home, reachable from its home
 * without crossing an empty cell, no key twice, and the free list disjoint
 * from the live slots and covering the rest of [0, hwm).  Returns the
 * number of live entries.
 */
static uint32_t
check(const struct kv_reg *r)
{
	uint32_t p, i, total = 0;

	for (p = 0; p < r->nparts; p++) {
		struct kv_partition *pp = &r->parts[p];
		kv_cell             *cells = r->cells + (size_t)p * r->pslots;
		struct kv_slot      *slots = r->slots + (size_t)p * r->pslots;
		uint32_t             mask = r->pslots - 1, n = 0, nfree = 0;
		uint8_t             *used = calloc(r->pslots, 1);

		cr_assert(used != NULL);
		cr_assert(pp->seq % 2 == 0, "partition %u left odd", p);
		cr_assert(pp->hwm <= r->pslots);
		for (i = 0; i <= mask; i++) {
			kv_cell         c = cells[i];
			struct kv_slot *s;
			uint32_t        home, j, idx;
			struct kv_entry e;
			const char     *key;
			uint64_t        h;
			size_t          klen;

			if (c == 0)
				continue;
			n++;
			idx = cell_index(r, c);
			cr_assert(idx < pp->hwm, "cell past hwm");
			s = &slots[idx];
			cr_assert(!used[idx], "slot used twice");
			used[idx] = 1;
			h = slot_key_hash(r, p, idx, &key, &klen);
			cr_assert(((c ^ (kv_cell)(h >> 32) << r->cshift) >>
			              r->cshift) == 0,
			    "cell's tag is not its key's");
			home = (uint32_t)h & mask;
			/*
			 * A key held twice has one home, so the later copy's
			 * way from it passes the earlier one.
			 */
			for (j = home; j != i; j = (j + 1) & mask) {
				uint32_t    x = cell_index(r, cells[j]);
				const char *k2;
				size_t      l2;

				cr_assert(cells[j] != 0,
				    "cell %u unreachable from home %u", i, home);
				if (x > mask)
					continue;
				(void)slot_key_hash(r, p, x, &k2, &l2);
				cr_assert(l2 != klen || memcmp(k2, key, l2),
				    "key %.*s held twice", (int)klen, key);
			}
			cr_assert(kv_reg_get(r, key, klen, &e) == 0,
			    "key %.*s not found by get", (int)klen, key);
			cr_assert(e.pid == s->pid);
		}
		cr_assert_eq(n, pp->count, "partition %u count %u, cells %u",
		    p, pp->count, n);
		for (i = pp->free_head; i != 0; i = slots[i - 1].next_free) {
			cr_assert(i - 1 < pp->hwm, "free list past hwm");
			cr_assert(!used[i - 1], "slot %u free and live", i - 1);
			used[i - 1] = 2;
			cr_assert(++nfree <= pp->hwm, "free list cycles");
		}
		cr_assert_eq(n + nfree, pp->hwm, "slots leaked");
		free(used);
		total += n;
	}
	cr_assert_eq((int)total, kv_reg_count(r));
	return total;
}

Test(table, register_lookup_unregister)
{
	struct kv_reg  *r = make(100, 0, 0, NULL);
	struct kv_entry e, got;

	e = entry("user:42", 4242);
	e.incarnation = 3;
	e.start_time = 777;
	e.valuelen = 3;
	memcpy(e.value, "abc", 3);
	cr_assert_eq(kv_reg_register(r, &e, NULL), 0);
	cr_assert_eq(kv_reg_lookup(r, "user:42", 7, &got), 0);
	cr_assert_eq(got.pid, 4242);
	cr_assert_eq(got.incarnation, 3);
	cr_assert_eq(got.start_time, 777);
	cr_assert_eq(got.valuelen, 3);
	cr_assert_eq(memcmp(got.value, "abc", 3), 0);
	cr_assert_str_eq(got.key, "user:42");
	cr_assert_str_eq(got.kind, "test");
	cr_assert(got.reg_time_ns > 0, "registration time filled in");
	cr_assert_eq(kv_reg_lookup(r, "user:43", 7, &got), -ENOENT);
	cr_assert_eq(check(r), 1);
	cr_assert_eq(kv_reg_unregister(r, "user:42", 7, 4242), 0);
	cr_assert_eq(kv_reg_lookup(r, "user:42", 7, &got), -ENOENT);
	cr_assert_eq(kv_reg_unregister(r, "user:42", 7, 4242), -ENOENT);
	cr_assert_eq(check(r), 0);
	kv_reg_close(r);
}

Test(table, register_is_insert_if_absent)
{
	struct kv_reg  *r = make(100, 0, 0, NULL);
	struct kv_entry e = entry("k", 10), ex, got;

	cr_assert_eq(kv_reg_register(r, &e, NULL), 0);
	e.pid = 11;
	memset(&ex, 0, sizeof(ex));
	cr_assert_eq(kv_reg_register(r, &e, &ex), -EEXIST);
	cr_assert_eq(ex.pid, 10, "the present entry is returned");
	cr_assert_eq(kv_reg_register(r, &e, NULL), -EEXIST);
	cr_assert_eq(kv_reg_lookup(r, "k", 1, &got), 0);
	cr_assert_eq(got.pid, 10, "the table is unchanged");
	cr_assert_eq(check(r), 1);
	kv_reg_close(r);
}

Test(table, unregister_is_conditional_on_pid)
{
	struct kv_reg  *r = make(100, 0, 0, NULL);
	struct kv_entry got;

	cr_assert_eq(reg(r, "job", 100), 0);
	cr_assert_eq(kv_reg_unregister(r, "job", 3, 100), 0);
	cr_assert_eq(reg(r, "job", 200), 0); /* a newer registration */
	cr_assert_eq(kv_reg_unregister(r, "job", 3, 100), -ESTALE,
	    "a late unregister must not remove the newer entry");
	cr_assert_eq(kv_reg_lookup(r, "job", 3, &got), 0);
	cr_assert_eq(got.pid, 200);
	cr_assert_eq(check(r), 1);
	kv_reg_close(r);
}

Test(table, reservation_is_invisible_to_lookup)
{
	struct kv_reg  *r = make(100, 0, 0, NULL);
	struct kv_entry e = entry("cam:1", 0), got;

	e.flags = 0;
	cr_assert_eq(kv_reg_register(r, &e, NULL), 0);
	cr_assert_eq(kv_reg_lookup(r, "cam:1", 5, &got), -ENOENT);
	cr_assert_eq(kv_reg_get(r, "cam:1", 5, &got), 0);
	cr_assert_eq(got.pid, 0);
	e.pid = 555;
	cr_assert_eq(reg(r, "cam:1", 9), -EEXIST, "a reservation holds");
	cr_assert_eq(kv_reg_replace(r, 1, &e), -ESTALE);
	cr_assert_eq(kv_reg_lookup(r, "cam:1", 5, &got), -ENOENT);
	cr_assert_eq(kv_reg_replace(r, 0, &e), 0);
	cr_assert_eq(kv_reg_lookup(r, "cam:1", 5, &got), -ENOENT,
	    "a pid without the published flag is still invisible");
	cr_assert_eq(kv_reg_get(r, "cam:1", 5, &got), 0);
	cr_assert_eq(got.pid, 555);
	check(r);
	kv_reg_close(r);
}

Test(table, reservation_then_publish)
{
	struct kv_reg  *r = make(100, 0, 0, NULL);
	struct kv_entry e = entry("cam:1", 0), got;

	e.flags = 0;
	cr_assert_eq(kv_reg_register(r, &e, NULL), 0);
	e.pid = 555;
	e.flags = KV_ENTRY_PUBLISHED;
	cr_assert_eq(kv_reg_replace(r, 0, &e), 0);
	cr_assert_eq(kv_reg_lookup(r, "cam:1", 5, &got), 0);
	cr_assert_eq(got.pid, 555);
	cr_assert_eq(kv_reg_replace(r, 0, &e), -ESTALE);
	cr_assert_eq(check(r), 1);
	kv_reg_close(r);
}

Test(table, set_value)
{
	struct kv_reg  *r = make(100, 0, 0, NULL);
	struct kv_entry got;
	uint8_t         big[KV_VALUE_MAX + 1];

	memset(big, 'v', sizeof(big));
	cr_assert_eq(reg(r, "acct:1", 50), 0);
	cr_assert_eq(kv_reg_set_value(r, "acct:1", 6, 50, "hello", 5), 0);
	cr_assert_eq(kv_reg_lookup(r, "acct:1", 6, &got), 0);
	cr_assert_eq(got.valuelen, 5);
	cr_assert_eq(memcmp(got.value, "hello", 5), 0);
	cr_assert_eq(got.pid, 50, "other fields kept");
	cr_assert_eq(kv_reg_set_value(r, "acct:1", 6, 50, big, KV_VALUE_MAX),
	    0);
	cr_assert_eq(kv_reg_set_value(r, "acct:1", 6, 50, big, sizeof(big)),
	    -EMSGSIZE);
	cr_assert_eq(kv_reg_set_value(r, "acct:1", 6, 51, "x", 1), -ESTALE);
	cr_assert_eq(kv_reg_set_value(r, "acct:2", 6, 50, "x", 1), -ENOENT);
	cr_assert_eq(kv_reg_lookup(r, "acct:1", 6, &got), 0);
	cr_assert_eq(got.valuelen, KV_VALUE_MAX, "failed updates changed nothing");
	cr_assert_eq(check(r), 1);
	kv_reg_close(r);
}

Test(table, invalid_input_changes_nothing)
{
	struct kv_reg  *r = make(100, 0, 0, NULL);
	struct kv_entry e = entry("ok", 1), got;

	cr_assert_eq(kv_reg_register(r, &e, NULL), 0);
	e = entry("has space", 2);
	cr_assert_eq(kv_reg_register(r, &e, NULL), -EINVAL);
	e = entry("x", 2);
	e.keylen = 0;
	cr_assert_eq(kv_reg_register(r, &e, NULL), -EINVAL);
	e = entry("x", 2);
	e.keylen = KV_KEY_MAX + 1;
	cr_assert_eq(kv_reg_register(r, &e, NULL), -EINVAL);
	e = entry("x", 2);
	memset(e.kind, 'k', sizeof(e.kind));
	cr_assert_eq(kv_reg_register(r, &e, NULL), -EINVAL, "unterminated kind");
	e = entry("x", 2);
	e.valuelen = KV_VALUE_MAX + 1;
	cr_assert_eq(kv_reg_register(r, &e, NULL), -EMSGSIZE);
	cr_assert_eq(kv_reg_lookup(r, "bad\tkey", 7, &got), -ENOENT,
	    "an invalid key cannot be registered, so it is not found");
	cr_assert_eq(kv_reg_lookup(r, "\xff", 1, &got), -ENOENT);
	cr_assert_eq(kv_reg_lookup(r, "", 0, &got), -EINVAL);
	cr_assert_eq(kv_reg_lookup(r, "x", KV_KEY_MAX + 1, &got), -EINVAL);
	cr_assert_eq(kv_reg_unregister(r, "", 0, 1), -EINVAL);
	cr_assert_eq(check(r), 1);
	cr_assert_eq(kv_reg_lookup(r, "x", 1, &got), -ENOENT);
	kv_reg_close(r);
}

Test(table, full_registry_refuses_and_keeps_everything)
{
	struct kv_reg *r = make(50, 0, 0, NULL);
	char           key[32];
	int            i;

	for (i = 0; i < 50; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		cr_assert_eq(reg(r, key, 1000 + i), 0);
	}
	cr_assert_eq(reg(r, "one-more", 1), -ENOSPC);
	cr_assert_eq(check(r), 50);
	for (i = 0; i < 50; i++) {
		struct kv_entry got;

		snprintf(key, sizeof(key), "k%d", i);
		cr_assert_eq(kv_reg_lookup(r, key, strlen(key), &got), 0);
		cr_assert_eq(got.pid, 1000 + i);
	}
	cr_assert_eq(kv_reg_unregister(r, "k7", 2, 1007), 0);
	cr_assert_eq(reg(r, "one-more", 1), 0, "room again after a delete");
	kv_reg_close(r);
}

Test(table, partition_fill_backstop)
{
	/* One partition of 64 cells, capacity as high as the backstop. */
	struct kv_reg *r = make(63, 64, 1, NULL);
	char           key[32];
	int            i;

	cr_assert_eq(r->fill, 63u);
	for (i = 0; i < 63; i++) {
		snprintf(key, sizeof(key), "f%d", i);
		cr_assert_eq(reg(r, key, i + 1), 0);
	}
	cr_assert_eq(reg(r, "f-last", 99), -ENOSPC);
	cr_assert_eq(check(r), 63);
	kv_reg_close(r);
}

static int
collect(const struct kv_entry *e, void *arg)
{
	int *n = arg;

	cr_assert(e->keylen > 0);
	(*n)++;
	return 0;
}

static int
stop_at_three(const struct kv_entry *e, void *arg)
{
	int *n = arg;

	return ++*n == 3 ? 42 : 0;
}

Test(table, iterate_match_count_keys_of)
{
	struct kv_reg *r = make(1000, 0, 0, NULL);
	struct kv_reg *ro;
	char           key[32];
	int            i, n, fd;

	kv_reg_close(r);
	r = make(1000, 0, 0, &fd);
	for (i = 0; i < 300; i++) {
		snprintf(key, sizeof(key), "%s:%d", i % 3 ? "user" : "txn", i);
		cr_assert_eq(reg(r, key, i % 10 + 1), 0);
	}
	cr_assert_eq(kv_reg_count(r), 300);
	cr_assert_eq(kv_reg_open_fd(fd, KV_REG_RDONLY, &ro), 0);
	n = 0;
	cr_assert_eq(kv_reg_iter(r, NULL, collect, &n), 0);
	cr_assert_eq(n, 300);
	n = 0;
	cr_assert_eq(kv_reg_iter(ro, "txn:*", collect, &n), 0);
	cr_assert_eq(n, 100, "read-only walk sees the same");
	n = 0;
	cr_assert_eq(kv_reg_iter(r, "user:1?", collect, &n), 0);
	cr_assert_eq(n, 7, "user:10..19 without 12, 15, 18");
	n = 0;
	cr_assert_eq(kv_reg_keys_of(ro, 3, collect, &n), 0);
	cr_assert_eq(n, 30);
	cr_assert_eq(kv_reg_keys_of(ro, 0, collect, &n), -EINVAL);
	n = 0;
	cr_assert_eq(kv_reg_iter(r, "*", stop_at_three, &n), 42);
	cr_assert_eq(n, 3);
	cr_assert_eq(check(r), 300);
	kv_reg_close(ro);
	kv_reg_close(r);
	close(fd);
}

static int
write_in_callback(const struct kv_entry *e, void *arg)
{
	struct kv_reg *r = arg;

	/* Callbacks run with no lock held, so writing is allowed. */
	return kv_reg_unregister(r, e->key, e->keylen, e->pid);
}

Test(table, iterate_callback_may_write)
{
	struct kv_reg *r = make(100, 0, 0, NULL);
	char           key[32];
	int            i;

	for (i = 0; i < 40; i++) {
		snprintf(key, sizeof(key), "w%d", i);
		cr_assert_eq(reg(r, key, 5), 0);
	}
	cr_assert_eq(kv_reg_iter(r, NULL, write_in_callback, r), 0);
	cr_assert_eq(check(r), 0);
	kv_reg_close(r);
}

Test(table, read_only_handle_cannot_write)
{
	struct kv_reg *r, *ro;
	int            fd;

	r = make(10, 0, 0, &fd);
	cr_assert_eq(kv_reg_open_fd(fd, KV_REG_RDONLY, &ro), 0);
	cr_assert_eq(reg(ro, "x", 1), -EPERM);
	cr_assert_eq(kv_reg_unregister(ro, "x", 1, 1), -EPERM);
	cr_assert_eq(kv_reg_open_fd(fd, 7, &ro), -EINVAL);
	kv_reg_close(ro);
	kv_reg_close(r);
	close(fd);
}

Test(table, stats)
{
	struct kv_reg      *r = make(1000, 4096, 4, NULL);
	struct kv_reg_stats st;

	cr_assert_eq(reg(r, "a", 1), 0);
	cr_assert_eq(reg(r, "b", 1), 0);
	cr_assert_eq(kv_reg_unregister(r, "a", 1, 1), 0);
	cr_assert_eq(kv_reg_stats(r, &st), 0);
	cr_assert_eq(st.capacity, 1000);
	cr_assert_eq(st.nslots, 4096);
	cr_assert_eq(st.npartitions, 4);
	cr_assert_eq(st.count, 1);
	cr_assert_eq(st.registrations, 2);
	cr_assert_eq(st.unregistrations, 1);
	cr_assert_eq(st.repairs, 0);
	cr_assert_eq(st.creator_pid, getpid());
	cr_assert(st.created_ns > 0);
	kv_reg_close(r);
}

Test(table, impossible_parameters)
{
	struct kv_reg_params p = {0};
	struct kv_reg       *r;
	int                  fd = memfd();

	cr_assert_eq(kv_reg_create_fd(fd, &p, &r), -EINVAL, "capacity 0");
	p.capacity = 10;
	p.nslots = 100;
	cr_assert_eq(kv_reg_create_fd(fd, &p, &r), -EINVAL, "not a power of 2");
	p.nslots = 64;
	p.npartitions = 3;
	cr_assert_eq(kv_reg_create_fd(fd, &p, &r), -EINVAL);
	p.npartitions = 8;
	cr_assert_eq(kv_reg_create_fd(fd, &p, &r), -EINVAL, "8 cells each");
	p.npartitions = 1;
	p.capacity = 64;
	cr_assert_eq(kv_reg_create_fd(fd, &p, &r), -EINVAL, "over the fill");
	close(fd);
}

/*
 * Churn against a model: random registers and unregisters over a key space
 * at about half load for many rounds.  Besides agreeing with the model, the
 * probe runs must not grow: tombstones would make the mean displacement
 * climb with every round; backward-shift deletion keeps it where a fresh
 * table of the same load has it.
 */
static double
mean_displacement(const struct kv_reg *r)
{
	uint64_t sum = 0, n = 0;
	uint32_t p, i, mask = r->pslots - 1;

	for (p = 0; p < r->nparts; p++) {
		kv_cell *cells = r->cells + (size_t)p * r->pslots;

		for (i = 0; i <= mask; i++) {
			const char *key;
			size_t      klen;
			uint64_t    h;

			if (cells[i] == 0)
				continue;
			h = slot_key_hash(r, p, cell_index(r, cells[i]), &key,
			    &klen);
			sum += (i - (uint32_t)h) & mask;
			n++;
		}
	}
	return n ? (double)sum / (double)n : 0;
}

Test(table, churn_matches_model_and_runs_stay_short)
{
	enum { NKEYS = 4000, ROUNDS = 400000 };
	struct kv_reg *r = make(NKEYS, 4096, 4, NULL);
	pid_t         *model = calloc(NKEYS, sizeof(*model));
	char           key[32];
	double         fresh = 0, churned;
	unsigned       seed = 12345;
	int            i;

	cr_assert(model != NULL);
	for (i = 0; i < ROUNDS; i++) {
		int   k = rand_r(&seed) % NKEYS, rc;
		pid_t pid = 1 + rand_r(&seed) % 30000;

		snprintf(key, sizeof(key), "churn:%d", k);
		if (model[k] == 0) {
			rc = reg(r, key, pid);
			cr_assert_eq(rc, 0, "register %s: %d", key, rc);
			model[k] = pid;
		} else {
			rc = kv_reg_unregister(r, key, strlen(key), model[k]);
			cr_assert_eq(rc, 0);
			model[k] = 0;
		}
		if (i == 20000)
			fresh = mean_displacement(r);
	}
	churned = mean_displacement(r);
	for (i = 0; i < NKEYS; i++) {
		struct kv_entry got;
		int             rc;

		snprintf(key, sizeof(key), "churn:%d", i);
		rc = kv_reg_lookup(r, key, strlen(key), &got);
		if (model[i] == 0)
			cr_assert_eq(rc, -ENOENT);
		else
			cr_assert(rc == 0 && got.pid == model[i]);
	}
	check(r);
	cr_assert(churned < fresh * 1.5 + 0.2,
	    "mean displacement grew from %.3f to %.3f", fresh, churned);
	free(model);
	kv_reg_close(r);
}

/* Header validation, on a copy of a good segment with one thing wrong. */
static struct kv_reg *
open_mangled(size_t off, const void *bytes, size_t n, off_t truncate_to,
    int *rc)
{
	struct kv_reg *r = make(10, 0, 0, NULL), *ro = NULL;
	int            fd = memfd();

	cr_assert_eq(ftruncate(fd, (off_t)r->size), 0);
	cr_assert_eq(pwrite(fd, r->base, r->size, 0), (ssize_t)r->size);
	kv_reg_close(r);
	if (n > 0)
		cr_assert_eq(pwrite(fd, bytes, n, (off_t)off), (ssize_t)n);
	if (truncate_to >= 0)
		cr_assert_eq(ftruncate(fd, truncate_to), 0);
	*rc = kv_reg_open_fd(fd, KV_REG_RDONLY, &ro);
	close(fd);
	return ro;
}

Test(table, open_refuses_bad_segments)
{
	struct kv_reg *ro;
	uint64_t       junk64 = 0x1122334455667788;
	uint32_t       v;
	int            rc;

	ro = open_mangled(0, NULL, 0, -1, &rc);
	cr_assert_eq(rc, 0, "a good copy opens");
	cr_assert(check(ro) == 0);
	kv_reg_close(ro);
	open_mangled(0, &junk64, 8, -1, &rc);
	cr_assert_eq(rc, -EPROTO, "magic");
	v = KV_SHM_LAYOUT + 1;
	open_mangled(offsetof(struct kv_shm_header, layout), &v, 4, -1, &rc);
	cr_assert_eq(rc, -EPROTONOSUPPORT, "layout");
	v = 1u << 20;
	open_mangled(offsetof(struct kv_shm_header, nslots), &v, 4, -1, &rc);
	cr_assert_eq(rc, -EBADMSG, "nslots larger than the file");
	v = 3;
	open_mangled(offsetof(struct kv_shm_header, npartitions), &v, 4, -1,
	    &rc);
	cr_assert_eq(rc, -EBADMSG, "npartitions");
	v = 641;
	open_mangled(offsetof(struct kv_shm_header, slot_size), &v, 4, -1, &rc);
	cr_assert_eq(rc, -EBADMSG, "slot size");
	v = 0;
	open_mangled(offsetof(struct kv_shm_header, capacity), &v, 4, -1, &rc);
	cr_assert_eq(rc, -EBADMSG, "capacity");
	open_mangled(0, NULL, 0, 4096 * 3, &rc);
	cr_assert_eq(rc, -EBADMSG, "truncated");
	open_mangled(0, NULL, 0, 100, &rc);
	cr_assert_eq(rc, -EBADMSG, "shorter than a header");
	open_mangled(0, NULL, 0, 0, &rc);
	cr_assert_eq(rc, -EPROTO, "empty");
	cr_assert_str_eq(kv_reg_strerror(-EPROTO),
	    "not a keyvisor registry (bad magic)");
}

Test(table, named_segments)
{
	struct kv_reg_params p = {.capacity = 16, .mode = 0600};
	struct kv_reg       *w, *ro, *again;
	struct kv_entry      got;
	char                 name[64];

	snprintf(name, sizeof(name), "keyvisor.test-%d", (int)getpid());
	(void)kv_reg_unlink(name);
	cr_assert_eq(kv_reg_create(name, &p, &w), 0);
	cr_assert_eq(kv_reg_create(name, &p, &again), -EEXIST);
	cr_assert_eq(reg(w, "n", 77), 0);
	cr_assert_eq(kv_reg_open(name, KV_REG_RDONLY, &ro), 0);
	cr_assert_eq(kv_reg_lookup(ro, "n", 1, &got), 0);
	cr_assert_eq(got.pid, 77);
	cr_assert_eq(kv_reg_unlink(name), 0);
	cr_assert_eq(kv_reg_open(name, KV_REG_RDONLY, &again), -ENOENT);
	cr_assert_eq(kv_reg_lookup(ro, "n", 1, &got), 0, "mapping outlives name");
	cr_assert_eq(kv_reg_open("a/b", KV_REG_RDONLY, &again), -EINVAL);
	cr_assert_eq(kv_reg_open("", KV_REG_RDONLY, &again), -EINVAL);
	kv_reg_close(ro);
	kv_reg_close(w);
}

/*
 * Owner death.  A child process runs one operation with the crash hook set
 * to SIGKILL itself at step POINT (its NTH occurrence), while holding the
 * partition lock.  The parent then checks that readers refuse to trust the
 * half-written partition (-EBUSY, never a hang), writes once (which must
 * repair), and checks the invariants, every entry committed before, and
 * that the interrupted operation is exactly applied or exactly absent as
 * the step implies.
 */
enum op { OP_INSERT, OP_DELETE, OP_REPLACE };

static int crash_point, crash_nth, crash_hits;

static void
die_at(int point)
{
	if (point == crash_point && ++crash_hits == crash_nth)
		raise(SIGKILL);
}

#define PRELOAD 300

static void
pre_key(char *buf, size_t len, int i)
{
	snprintf(buf, len, "pre:%d", i);
}

/* A one-partition table at 59 % load, so that deletes shift runs. */
static struct kv_reg *
preloaded(int *fdp)
{
	struct kv_reg *r = make(400, 512, 1, fdp);
	char           key[32];
	int            i;

	for (i = 0; i < PRELOAD; i++) {
		pre_key(key, sizeof(key), i);
		cr_assert_eq(reg(r, key, 1000 + i), 0);
		cr_assert_eq(kv_reg_set_value(r, key, strlen(key), 1000 + i,
		    "old", 3), 0);
	}
	return r;
}

/* Run OP on victim V in a child that dies at the crash point: true if it did. */
static bool
crash_child(struct kv_reg *r, enum op op, int v, int point, int nth)
{
	char  key[32];
	pid_t pid;
	int   st, rc = 0;

	pre_key(key, sizeof(key), v);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		crash_point = point;
		crash_nth = nth;
		kv_table_crashpoint = die_at;
		switch (op) {
		case OP_INSERT:
			rc = reg(r, "new:1", 4242);
			break;
		case OP_DELETE:
			rc = kv_reg_unregister(r, key, strlen(key), 1000 + v);
			break;
		case OP_REPLACE:
			rc = kv_reg_set_value(r, key, strlen(key), 1000 + v,
			    "newer", 5);
			break;
		}
		_exit(rc == 0 ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	if (WIFEXITED(st)) {
		cr_assert_eq(WEXITSTATUS(st), 0, "the operation failed");
		return false;
	}
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	return true;
}

static bool
point_applied(int point)
{
	switch (point) {
	case KV_CP_INS_ALLOC:
	case KV_CP_INS_WRITTEN:
	case KV_CP_INS_OPEN:
	case KV_CP_DEL_OPEN:
	case KV_CP_REP_ALLOC:
	case KV_CP_REP_WRITTEN:
	case KV_CP_REP_OPEN:
		return false;
	default:
		return true;
	}
}

static bool
point_inside_window(int point)
{
	return (point >= KV_CP_INS_OPEN && point <= KV_CP_INS_COUNTED) ||
	    (point >= KV_CP_DEL_OPEN && point <= KV_CP_DEL_COUNTED) ||
	    (point >= KV_CP_REP_OPEN && point <= KV_CP_REP_SWAPPED);
}

static void
verify_after(struct kv_reg *r, enum op op, int v, int point)
{
	struct kv_reg_stats st;
	struct kv_entry     got;
	bool                applied = point_applied(point);
	char                key[32];
	int                 i, rc;

	for (i = 0; i < PRELOAD; i++) {
		pre_key(key, sizeof(key), i);
		rc = kv_reg_lookup(r, key, strlen(key), &got);
		if (i == v && op == OP_DELETE) {
			cr_assert_eq(rc, applied ? -ENOENT : 0,
			    "delete at step %d: rc %d", point, rc);
			continue;
		}
		cr_assert_eq(rc, 0, "step %d lost %s", point, key);
		cr_assert_eq(got.pid, 1000 + i);
		if (i == v && op == OP_REPLACE && applied)
			cr_assert(got.valuelen == 5 &&
			    !memcmp(got.value, "newer", 5), "step %d", point);
		else
			cr_assert(got.valuelen == 3 &&
			    !memcmp(got.value, "old", 3), "step %d", point);
	}
	rc = kv_reg_lookup(r, "new:1", 5, &got);
	if (op == OP_INSERT)
		cr_assert_eq(rc, applied ? 0 : -ENOENT, "insert at step %d", point);
	cr_assert_eq(kv_reg_stats(r, &st), 0);
	cr_assert_eq(st.repairs, 1, "step %d: one repair", point);
}

static void
crash_trial(enum op op, int v, int point, int nth, int *crashed)
{
	struct kv_reg  *r = preloaded(NULL);
	struct kv_entry got;
	char            key[32];
	struct timespec t0, t1;

	pre_key(key, sizeof(key), v);
	if (!crash_child(r, op, v, point, nth)) {
		kv_reg_close(r);
		return;
	}
	(*crashed)++;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (point_inside_window(point))
		cr_assert_eq(kv_reg_lookup(r, key, strlen(key), &got), -EBUSY,
		    "step %d: a reader must not trust the partition", point);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert(t1.tv_sec - t0.tv_sec < 2, "the reader gave up in time");
	cr_assert_eq(reg(r, "after", 1), 0, "the next writer goes on");
	check(r);
	verify_after(r, op, v, point);
	kv_reg_close(r);
}

Test(owner_death, every_step_of_every_operation)
{
	static const struct {
		enum op op;
		int     first, last;
	} ops[] = {
	    {OP_INSERT, KV_CP_INS_ALLOC, KV_CP_INS_COUNTED},
	    {OP_DELETE, KV_CP_DEL_OPEN, KV_CP_DEL_FREE_LINK},
	    {OP_REPLACE, KV_CP_REP_ALLOC, KV_CP_REP_FREE_LINK},
	};
	size_t o;
	int    point;

	for (o = 0; o < sizeof(ops) / sizeof(ops[0]); o++) {
		for (point = ops[o].first; point <= ops[o].last; point++) {
			int crashed = 0, v;

			/* Try victims until one reaches the step. */
			for (v = 0; v < PRELOAD && !crashed; v++)
				crash_trial(ops[o].op, v, point, 1, &crashed);
			cr_assert_eq(crashed, 1, "step %d never reached", point);
		}
	}
}

Test(owner_death, in_the_middle_of_a_backward_shift)
{
	int nth, v;

	for (nth = 1; nth <= 3; nth++) {
		int crashed = 0;

		for (v = 0; v < PRELOAD && crashed < 3; v++)
			crash_trial(OP_DELETE, v, KV_CP_DEL_SHIFT, nth,
			    &crashed);
		cr_assert(crashed >= 1, "no delete shifted %d cells", nth);
	}
}

/*
 * The repairer dies too, in either phase of its repair, and the writer
 * after it must still recover everything: the first dead writer's insert
 * (linked, so applied) and all the entries committed before.
 */
static void
dead_repairer(int point)
{
	struct kv_reg      *r = preloaded(NULL);
	struct kv_reg_stats st;
	struct kv_entry     got;
	pid_t               pid;
	int                 ws, i;
	char                key[32];

	cr_assert(crash_child(r, OP_INSERT, 0, KV_CP_INS_LINKED, 1));
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		crash_point = point;
		crash_nth = 1;
		kv_table_crashpoint = die_at;
		(void)reg(r, "new:2", 2);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &ws, 0), pid);
	cr_assert(WIFSIGNALED(ws), "the repairer reached step %d", point);
	cr_assert_eq(reg(r, "after", 1), 0);
	check(r);
	for (i = 0; i < PRELOAD; i++) {
		pre_key(key, sizeof(key), i);
		cr_assert_eq(kv_reg_lookup(r, key, strlen(key), &got), 0,
		    "lost %s", key);
	}
	cr_assert_eq(kv_reg_lookup(r, "new:1", 5, &got), 0);
	cr_assert_eq(kv_reg_lookup(r, "new:2", 5, &got), -ENOENT);
	cr_assert_eq(kv_reg_stats(r, &st), 0);
	cr_assert_eq(st.repairs, 1, "one repair completed");
	kv_reg_close(r);
}

Test(owner_death, a_repairer_dead_after_marking)
{
	dead_repairer(KV_CP_REPAIR_MARKED);
}

Test(owner_death, a_repairer_dead_with_the_cells_emptied)
{
	dead_repairer(KV_CP_REPAIR_CLEARED);
}

/*
 * Readers against writers, in separate processes on one segment.  Every
 * value carries a checksum over the key, pid, incarnation and the rest of
 * the value; a reader that ever sees a mismatch has seen a torn entry.
 * Writers keep a model of their own keys, checked at the end.  A third
 * writer is SIGKILLed over and over mid-flight and restarted, so repairs
 * happen under load too.
 */
#define STRESS_SECONDS 3
#define STRESS_KEYS    500
#define STRESS_WRITERS 2
#define STRESS_READERS 2

struct shared {
	uint64_t lookups, found, torn, writes, kills;
	pid_t    model[STRESS_WRITERS][STRESS_KEYS];
	int      stop;
};

static uint64_t
fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n--)
		h = (h ^ *b++) * 0x100000001b3u;
	return h;
}

static uint64_t
entry_sum(const struct kv_entry *e)
{
	uint64_t h = 0xcbf29ce484222325u;

	h = fnv(h, e->key, e->keylen);
	h = fnv(h, &e->pid, sizeof(e->pid));
	h = fnv(h, &e->incarnation, sizeof(e->incarnation));
	return fnv(h, e->value + 8, e->valuelen - 8);
}

static void
fill_value(struct kv_entry *e, unsigned *seed)
{
	uint64_t sum;
	size_t   i;

	e->valuelen = (uint16_t)(8 + rand_r(seed) % (KV_VALUE_MAX - 8 + 1));
	for (i = 8; i < e->valuelen; i++)
		e->value[i] = (uint8_t)rand_r(seed);
	sum = entry_sum(e);
	memcpy(e->value, &sum, 8);
}

static void
writer(struct kv_reg *r, struct shared *sh, int w, bool model)
{
	unsigned seed = (unsigned)getpid();

	while (!__atomic_load_n(&sh->stop, __ATOMIC_RELAXED)) {
		int             k = rand_r(&seed) % STRESS_KEYS;
		char            key[32];
		struct kv_entry e;
		pid_t          *m = model ? &sh->model[w][k] : NULL;

		snprintf(key, sizeof(key), "w%d:%d", w, k);
		e = entry(key, 1 + rand_r(&seed) % 100000);
		e.incarnation = (uint32_t)rand_r(&seed);
		fill_value(&e, &seed);
		if (m != NULL && *m == 0) {
			cr_assert_eq(kv_reg_register(r, &e, NULL), 0);
			*m = e.pid;
		} else if (m != NULL && rand_r(&seed) % 2) {
			cr_assert_eq(kv_reg_unregister(r, key, e.keylen, *m), 0);
			*m = 0;
		} else if (m != NULL) {
			e.pid = *m;
			fill_value(&e, &seed); /* the sum covers the pid */
			cr_assert_eq(kv_reg_replace(r, *m, &e), 0);
		} else if (kv_reg_register(r, &e, NULL) == -EEXIST) {
			struct kv_entry old;

			if (kv_reg_get(r, key, e.keylen, &old) == 0)
				(void)kv_reg_unregister(r, key, e.keylen,
				    old.pid);
		}
		__atomic_fetch_add(&sh->writes, 1, __ATOMIC_RELAXED);
	}
	_exit(0);
}

static void
reader(struct kv_reg *r, struct shared *sh)
{
	unsigned seed = (unsigned)getpid();
	uint64_t n = 0, found = 0, torn = 0;

	while (!__atomic_load_n(&sh->stop, __ATOMIC_RELAXED)) {
		char            key[32];
		struct kv_entry e;
		uint64_t        sum;

		snprintf(key, sizeof(key), "w%d:%d",
		    rand_r(&seed) % (STRESS_WRITERS + 1),
		    rand_r(&seed) % STRESS_KEYS);
		n++;
		if (kv_reg_lookup(r, key, strlen(key), &e) != 0)
			continue;
		found++;
		memcpy(&sum, e.value, 8);
		if (strcmp(e.key, key) != 0 || e.valuelen < 8 ||
		    sum != entry_sum(&e))
			torn++;
	}
	__atomic_fetch_add(&sh->lookups, n, __ATOMIC_RELAXED);
	__atomic_fetch_add(&sh->found, found, __ATOMIC_RELAXED);
	__atomic_fetch_add(&sh->torn, torn, __ATOMIC_RELAXED);
	_exit(0);
}

static pid_t
spawn(void (*fn)(struct kv_reg *, struct shared *, int, bool),
    struct kv_reg *r, struct shared *sh, int w)
{
	pid_t pid = fork();

	cr_assert(pid >= 0);
	if (pid == 0)
		fn(r, sh, w, w < STRESS_WRITERS);
	return pid;
}

static void
reader_shim(struct kv_reg *r, struct shared *sh, int w, bool m)
{
	reader(r, sh);
}

Test(stress, readers_never_see_torn_entries, .timeout = 60)
{
	struct shared  *sh;
	struct kv_reg  *r;
	pid_t           pids[STRESS_WRITERS + STRESS_READERS], victim;
	struct timespec t0, now;
	int             i, st, w;
	char            key[32];

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert(sh != MAP_FAILED);
	r = make(4 * STRESS_KEYS, 0, 4, NULL);
	for (i = 0; i < STRESS_WRITERS; i++)
		pids[i] = spawn(writer, r, sh, i);
	for (; i < STRESS_WRITERS + STRESS_READERS; i++)
		pids[i] = spawn(reader_shim, r, sh, 0);
	victim = spawn(writer, r, sh, STRESS_WRITERS);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		usleep(2000 + (unsigned)(rand() % 3000));
		kill(victim, SIGKILL);
		cr_assert_eq(waitpid(victim, &st, 0), victim);
		sh->kills++;
		victim = spawn(writer, r, sh, STRESS_WRITERS);
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec - t0.tv_sec < STRESS_SECONDS);
	kill(victim, SIGKILL);
	waitpid(victim, &st, 0);
	__atomic_store_n(&sh->stop, 1, __ATOMIC_RELAXED);
	for (i = 0; i < STRESS_WRITERS + STRESS_READERS; i++) {
		cr_assert_eq(waitpid(pids[i], &st, 0), pids[i]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		    "child %d failed: status %#x", i, st);
	}
	/* A writer holding a lock when killed is repaired by the next write. */
	cr_assert_eq(reg(r, "final", 1), 0);
	check(r);
	for (w = 0; w < STRESS_WRITERS; w++) {
		for (i = 0; i < STRESS_KEYS; i++) {
			struct kv_entry e;
			int             rc;

			snprintf(key, sizeof(key), "w%d:%d", w, i);
			rc = kv_reg_lookup(r, key, strlen(key), &e);
			if (sh->model[w][i] == 0)
				cr_assert_eq(rc, -ENOENT, "%s", key);
			else
				cr_assert(rc == 0 && e.pid == sh->model[w][i],
				    "%s", key);
		}
	}
	cr_log_info("stress: %llu lookups (%llu hits), %llu writes, "
		    "%llu writer kills, torn %llu",
	    (unsigned long long)sh->lookups, (unsigned long long)sh->found,
	    (unsigned long long)sh->writes, (unsigned long long)sh->kills,
	    (unsigned long long)sh->torn);
	cr_assert(sh->lookups > 10000 && sh->found > 1000 && sh->writes > 10000);
	cr_assert_eq(sh->torn, 0, "%llu torn reads",
	    (unsigned long long)sh->torn);
	kv_reg_close(r);
	munmap(sh, sizeof(*sh));
}

/* Is GOT field for field E?  WHAT names the case in a failure. */
static void
assert_same(const struct kv_entry *got, const struct kv_entry *e,
    const char *what)
{
	cr_assert(got->start_time == e->start_time &&
	    got->reg_time_ns == e->reg_time_ns && got->epoch == e->epoch &&
	    got->pid == e->pid && got->owner == e->owner &&
	    got->incarnation == e->incarnation && got->node == e->node &&
	    got->flags == e->flags, "%s: fixed fields", what);
	cr_assert(got->keylen == e->keylen &&
	    !memcmp(got->key, e->key, e->keylen) &&
	    got->key[e->keylen] == '\0', "%s: key", what);
	cr_assert(got->valuelen == e->valuelen &&
	    !memcmp(got->value, e->value, e->valuelen), "%s: value", what);
	cr_assert_str_eq(got->kind, e->kind, "%s: kind", what);
}

/*
 * An entry lives in its slot's one line when its key, value and kind fit
 * KV_SLOT_INLINE bytes and it has no epoch, no node and flags below 128;
 * otherwise partly in its tail.  Every field round-trips on both sides of
 * each of those boundaries, keys on both sides of KV_SLOT_INLINE too.
 */
Test(table, every_field_round_trips_inline_and_in_the_tail)
{
	static const size_t vlens[] = {0, 1, 15, 16, 17, 31};
	static const size_t kdlens[] = {0, 5, 16, 31};
	static const struct {
		uint64_t epoch;
		uint32_t node, flags;
	} extra[] = {{0, 0, KV_ENTRY_PUBLISHED}, {0, 0, 0x7f}, {0, 0, 0x80},
	    {5, 0, KV_ENTRY_PUBLISHED}, {0, 3, 0}, {~0ull, ~0u, ~0u}};
	struct kv_reg  *r = make(64, 0, 0, NULL);
	struct kv_entry e, got;
	size_t          klen, v, k, x;
	char            what[64];

	for (klen = 1; klen <= KV_SLOT_INLINE + 2; klen++)
		for (v = 0; v < sizeof(vlens) / sizeof(vlens[0]); v++)
			for (k = 0; k < sizeof(kdlens) / sizeof(kdlens[0]); k++)
				for (x = 0; x < sizeof(extra) / sizeof(*extra);
				     x++) {
					memset(&e, 0, sizeof(e));
					memset(e.key, 'a' + (int)(x + k), klen);
					e.keylen = (uint16_t)klen;
					e.valuelen = (uint16_t)vlens[v];
					memset(e.value, 0xa0 + (int)klen,
					    vlens[v]);
					memset(e.kind, 'K', kdlens[k]);
					e.start_time = 1000 + klen;
					e.reg_time_ns = 7 + v;
					e.epoch = extra[x].epoch;
					e.pid = 9;
					e.owner = 11;
					e.incarnation = 13 + (uint32_t)k;
					e.node = extra[x].node;
					e.flags = extra[x].flags;
					cr_assert_eq(
					    kv_reg_register(r, &e, NULL), 0);
					cr_assert_eq(kv_reg_get(r, e.key, klen,
					                 &got),
					    0);
					snprintf(what, sizeof(what),
					    "klen %zu vlen %zu kind %zu "
					    "extra %zu",
					    klen, vlens[v], kdlens[k], x);
					assert_same(&got, &e, what);
					cr_assert_eq(kv_reg_unregister(r,
					                 e.key, klen, 9),
					    0);
				}
	cr_assert_eq(check(r), 0);
	kv_reg_close(r);
}

/*
 * A lookup copies the strings out of data[] by shifting whole words: every
 * split of the inline bytes between key, value and kind, with every byte
 * distinct, so that a string read from a byte too early or too late shows.
 * The slots are reused throughout (each entry is removed before the next
 * goes in), so stale bytes lie after the strings of most of them, and the
 * kind must still end where its length says.
 */
Test(table, every_inline_split_copies_out_exactly)
{
	struct kv_reg  *r = make(16, 0, 0, NULL);
	struct kv_entry e, got;
	size_t          klen, vlen, kdlen, i;
	char            what[64];
	unsigned        n = 0;

	for (klen = 1; klen <= KV_SLOT_INLINE; klen++)
		for (vlen = 0; klen + vlen <= KV_SLOT_INLINE; vlen++)
			for (kdlen = 0; kdlen <= KV_KIND_MAX &&
			     klen + vlen + kdlen <= KV_SLOT_INLINE + 1;
			     kdlen++) {
				memset(&e, 0, sizeof(e));
				for (i = 0; i < klen; i++)
					e.key[i] = (char)('!' + (n + i) % 90);
				for (i = 0; i < vlen; i++)
					e.value[i] = (uint8_t)(0x80 + i);
				for (i = 0; i < kdlen; i++)
					e.kind[i] = (char)('A' + i);
				e.keylen = (uint16_t)klen;
				e.valuelen = (uint16_t)vlen;
				e.pid = (pid_t)(100 + n % 1000);
				e.owner = 1;
				e.incarnation = n;
				e.start_time = n * 3u;
				e.reg_time_ns = 1 + n;
				e.flags = KV_ENTRY_PUBLISHED | (n & 0x7e);
				snprintf(what, sizeof(what),
				    "klen %zu vlen %zu kind %zu", klen, vlen,
				    kdlen);
				cr_assert_eq(kv_reg_register(r, &e, NULL), 0,
				    "%s", what);
				memset(&got, 0x5a, sizeof(got));
				cr_assert_eq(kv_reg_lookup(r, e.key, klen, &got),
				    0, "%s", what);
				assert_same(&got, &e, what);
				memset(&got, 0x5a, sizeof(got));
				cr_assert_eq(kv_reg_get(r, e.key, klen, &got), 0,
				    "%s", what);
				assert_same(&got, &e, what);
				cr_assert_eq(kv_reg_unregister(r, e.key, klen,
				                 e.pid),
				    0, "%s", what);
				n++;
			}
	cr_assert_eq(check(r), 0);
	kv_reg_close(r);
}

/*
 * Strings of up to KV_SLOT_INLINE bytes live in the slot, longer ones in
 * its tail; an update may move an entry either way.  Every size round-trips.
 */
Test(table, inline_and_tail_entries_round_trip)
{
	struct kv_reg  *r = make(64, 0, 0, NULL);
	struct kv_entry e, got;
	size_t          klen, vlen;
	char            key[KV_KEY_MAX + 1];

	for (klen = 1; klen <= KV_KEY_MAX; klen += 37) {
		for (vlen = 0; vlen <= KV_VALUE_MAX; vlen += 64) {
			memset(key, 'a' + (int)(klen % 26), klen);
			key[klen] = '\0';
			e = entry(key, 9);
			memset(e.kind, 'K', KV_KIND_MAX);
			e.kind[vlen % (KV_KIND_MAX + 1)] = '\0';
			memset(e.value, (int)vlen, vlen);
			e.valuelen = (uint16_t)vlen;
			cr_assert_eq(kv_reg_register(r, &e, NULL), 0);
			cr_assert_eq(kv_reg_lookup(r, key, klen, &got), 0);
			cr_assert(got.keylen == klen && !strcmp(got.key, key));
			cr_assert(got.valuelen == vlen &&
			    !memcmp(got.value, e.value, vlen));
			cr_assert_str_eq(got.kind, e.kind);
			/* Move it across the boundary and back. */
			cr_assert_eq(kv_reg_set_value(r, key, klen, 9,
			    e.value, vlen ? 0 : KV_VALUE_MAX), 0);
			cr_assert_eq(kv_reg_set_value(r, key, klen, 9,
			    e.value, vlen), 0);
			cr_assert_eq(kv_reg_get(r, key, klen, &got), 0);
			cr_assert(got.valuelen == vlen &&
			    !memcmp(got.value, e.value, vlen));
			cr_assert_str_eq(got.kind, e.kind);
			check(r);
			cr_assert_eq(kv_reg_unregister(r, key, klen, 9), 0);
		}
	}
	cr_assert_eq(check(r), 0);
	kv_reg_close(r);
}

/*
 * The cell that points at KEY, found by probing from the key's home as a
 * lookup does, or -1.  Its partition goes to *PART and the partition's
 * slot it names to *IDX.
 */
static int64_t
find_cell(const struct kv_reg *r, const char *key, size_t len,
    uint32_t *part, uint32_t *idx)
{
	uint64_t h = kv_siphash64(r->seed, key, len);
	uint32_t p = KV_PART_INDEX(h, r->pshift), mask = r->pslots - 1, i, n;
	kv_cell *cells = r->cells + (size_t)p * r->pslots;

	for (i = (uint32_t)h & mask, n = 0; n <= mask && cells[i] != 0;
	     i = (i + 1) & mask, n++) {
		const char *k;
		size_t      klen;

		(void)slot_key_hash(r, p, cell_index(r, cells[i]), &k, &klen);
		if (klen == len && memcmp(k, key, len) == 0) {
			*part = p;
			*idx = cell_index(r, cells[i]);
			return i;
		}
	}
	return -1;
}

/* Does E fit its slot's line (layout.h)? */
static bool
fits_inline(const struct kv_entry *e)
{
	return e->epoch == 0 && e->node == 0 &&
	    e->flags <= KV_SHAPE_FLAGS_MAX &&
	    e->keylen + e->valuelen + strlen(e->kind) <= KV_SLOT_INLINE;
}

/*
 * A replace may move an entry from its slot's line into its tail and back:
 * a longer value, an epoch, a node, a high flag, a long kind.  After each
 * step the entry reads back whole and lives where the inline rule says.
 * The replace writes a fresh slot and swaps it into the entry's cell, so
 * the cell stays where it was, and every other cell of the partition and
 * the slot each points at are untouched: the neighbours in its probe run
 * still read back as they were.
 */
Test(table, replace_moves_entries_between_inline_and_tail)
{
	static const char *const keys[] = {"target",
	    "a-key-longer-than-thirty-two-bytes-0123"};
	struct kv_reg *r = make(63, 64, 1, NULL);
	kv_cell        cells[64];
	struct kv_slot slots[64];
	char           key[32], what[32];
	size_t         t;
	int            i, step;

	cr_assert_eq(r->pslots, 64u);
	/* Neighbours, so that the entries replaced sit inside probe runs. */
	for (i = 0; i < 40; i++) {
		snprintf(key, sizeof(key), "nb:%d", i);
		cr_assert_eq(reg(r, key, 500 + i), 0);
	}
	for (t = 0; t < sizeof(keys) / sizeof(keys[0]); t++) {
		struct kv_entry e = entry(keys[t], 77), got;
		uint32_t        p, idx, old_idx;
		int64_t         ci, old_ci;

		e.start_time = 99;
		e.reg_time_ns = 12345;
		e.incarnation = 1;
		e.valuelen = 3;
		memcpy(e.value, "abc", 3);
		cr_assert_eq(kv_reg_register(r, &e, NULL), 0);
		old_ci = find_cell(r, e.key, e.keylen, &p, &old_idx);
		cr_assert(old_ci >= 0 && p == 0);
		for (step = 0; step < 9; step++) {
			pid_t old = e.pid;

			switch (step) {
			case 0: /* a value too long for the line */
				e.valuelen = 200;
				memset(e.value, 'x', 200);
				break;
			case 1: /* a short one again */
				e.valuelen = 4;
				memcpy(e.value, "back", 4);
				break;
			case 2:
				e.epoch = 5;
				break;
			case 3:
				e.epoch = 0;
				e.pid = 78;
				break;
			case 4:
				e.node = 3;
				break;
			case 5:
				e.node = 0;
				e.flags = 0x80 | KV_ENTRY_PUBLISHED;
				break;
			case 6:
				e.flags = KV_ENTRY_PUBLISHED;
				memset(e.kind, 'k', KV_KIND_MAX);
				e.kind[KV_KIND_MAX] = '\0';
				break;
			case 7:
				snprintf(e.kind, sizeof(e.kind), "k");
				e.incarnation = 2;
				break;
			case 8: /* the longest value */
				e.valuelen = KV_VALUE_MAX;
				memset(e.value, 'y', KV_VALUE_MAX);
				break;
			}
			memcpy(cells, r->cells, sizeof(cells));
			memcpy(slots, r->slots, sizeof(slots));
			cr_assert_eq(kv_reg_replace(r, old, &e), 0, "step %d",
			    step);
			snprintf(what, sizeof(what), "step %d", step);
			cr_assert_eq(kv_reg_get(r, e.key, e.keylen, &got), 0);
			assert_same(&got, &e, what);
			cr_assert_eq(kv_reg_lookup(r, e.key, e.keylen,
			                 &got),
			    0);
			assert_same(&got, &e, what);
			ci = find_cell(r, e.key, e.keylen, &p, &idx);
			cr_assert_eq(ci, old_ci, "step %d: the cell moved",
			    step);
			cr_assert_neq(idx, old_idx,
			    "step %d: the live slot was written over", step);
			old_idx = idx;
			cr_assert_eq(!(r->slots[idx].shape & KV_SHAPE_TAIL),
			    fits_inline(&e), "step %d: shape %#x", step,
			    r->slots[idx].shape);
			for (i = 0; i < 64; i++) {
				if (i == ci || cells[i] == 0)
					continue;
				cr_assert_eq(r->cells[i], cells[i],
				    "step %d: cell %d changed", step, i);
				cr_assert(!memcmp(
				    &r->slots[cell_index(r, cells[i])],
				    &slots[cell_index(r, cells[i])],
				    sizeof(slots[0])),
				    "step %d: the slot of cell %d changed",
				    step, i);
			}
			cr_assert_eq(check(r), 41 + t);
			for (i = 0; i < 40; i++) {
				snprintf(key, sizeof(key), "nb:%d", i);
				cr_assert_eq(kv_reg_lookup(r, key, strlen(key),
				                 &got),
				    0);
				cr_assert(got.pid == 500 + i &&
				    got.valuelen == 0);
			}
		}
	}
	kv_reg_close(r);
}

/*
 * Thousands of registers, replaces and unregisters of random keys in
 * small partitions filled to their limit, so that probe runs wrap around
 * the partition's end, deletes shift long runs, and a replace in a full
 * partition must make do with the one slot the fill keeps free.  The
 * invariants hold throughout and every key of the model is found with its
 * pid.
 */
static void
churn_key(char *buf, size_t len, int k)
{
	if (k % 5 == 0) /* some keys live in the tail */
		snprintf(buf, len, "churn-key-longer-than-the-line:%d", k);
	else
		snprintf(buf, len, "c:%d", k);
}

static void
churn_verify(const struct kv_reg *r, const pid_t *model, int nkeys)
{
	char key[64];
	int  k;

	for (k = 0; k < nkeys; k++) {
		struct kv_entry got;
		int             rc;

		churn_key(key, sizeof(key), k);
		rc = kv_reg_lookup(r, key, strlen(key), &got);
		if (model[k] == 0)
			cr_assert_eq(rc, -ENOENT, "%s", key);
		else
			cr_assert(rc == 0 && got.pid == model[k],
			    "%s: rc %d", key, rc);
	}
}

Test(table, small_partitions_survive_heavy_churn)
{
	static const struct {
		uint32_t capacity, nslots, nparts;
	} cfg[] = {{63, 64, 1}, {60, 64, 4}};
	enum { NKEYS = 300, ROUNDS = 30000 };
	size_t c;

	for (c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
		struct kv_reg *r = make(cfg[c].capacity, cfg[c].nslots,
		    cfg[c].nparts, NULL);
		pid_t          model[NKEYS] = {0};
		unsigned       seed = 777 + (unsigned)c;
		char           key[64];
		int            i, nfull = 0;

		for (i = 0; i < ROUNDS; i++) {
			int             k = rand_r(&seed) % NKEYS, rc;
			struct kv_entry e;

			churn_key(key, sizeof(key), k);
			e = entry(key, 1 + rand_r(&seed) % 30000);
			e.valuelen = (uint16_t)(rand_r(&seed) % 40);
			memset(e.value, 'a' + k % 26, e.valuelen);
			if (model[k] == 0) {
				rc = kv_reg_register(r, &e, NULL);
				if (rc == -ENOSPC) {
					uint64_t h = kv_siphash64(r->seed, key,
					    strlen(key));
					uint32_t p = KV_PART_INDEX(h,
					    r->pshift);

					cr_assert(r->parts[p].count ==
					            r->fill ||
					        (uint32_t)kv_reg_count(r) ==
					            cfg[c].capacity,
					    "ENOSPC with room");
					nfull++;
					continue;
				}
				cr_assert_eq(rc, 0, "register %s: %d", key, rc);
				model[k] = e.pid;
			} else if (rand_r(&seed) % 3 == 0) {
				rc = kv_reg_replace(r, model[k], &e);
				cr_assert_eq(rc, 0, "replace %s: %d", key, rc);
				model[k] = e.pid;
			} else {
				rc = kv_reg_unregister(r, key, strlen(key),
				    model[k]);
				cr_assert_eq(rc, 0, "unregister %s: %d", key,
				    rc);
				model[k] = 0;
			}
			if (i % 1000 == 999) {
				check(r);
				churn_verify(r, model, NKEYS);
			}
		}
		cr_assert(nfull > 0, "the partitions were never full");
		check(r);
		churn_verify(r, model, NKEYS);
		kv_reg_close(r);
	}
}

/* Key I of a colliding set: 24 bytes, I's 8 hex digits at byte POS. */
static void
collide_key(char key[25], uint32_t i, size_t pos)
{
	char hex[9];

	memcpy(key, "filler:-keyvisor-:filler", 24);
	snprintf(hex, sizeof(hex), "%08x", i);
	memcpy(key + pos, hex, 8);
	key[24] = '\0';
}

struct sig {
	uint64_t sig;
	uint32_t i;
};

static int
sig_cmp(const void *a, const void *b)
{
	const struct sig *x = a, *y = b;

	return x->sig < y->sig ? -1 : x->sig > y->sig;
}

/*
 * Two keys of the same length whose cells carry the same tag and that have
 * the same home cell differ only in their bytes: the slot's key comparison
 * alone tells them apart.  For keys that differ only in their first, middle
 * or last 8 bytes, found by hashing 2^18 keys under the segment's seed, the
 * second key is absent while the first is registered, and then registers
 * beside it; each is found as itself.
 */
Test(table, keys_alike_in_tag_and_home_are_told_apart_by_their_bytes)
{
	enum { N = 1 << 18 };
	static const size_t poss[] = {0, 8, 16};
	struct sig         *v = malloc(N * sizeof(*v));
	size_t              p, i;

	cr_assert_not_null(v);
	for (p = 0; p < sizeof(poss) / sizeof(poss[0]); p++) {
		struct kv_reg  *r = make(8, 16, 1, NULL);
		struct kv_entry a, b, got;
		char            ka[25], kb[25];
		bool            found = false;

		for (i = 0; i < N; i++) {
			uint64_t h;

			collide_key(ka, (uint32_t)i, poss[p]);
			h = kv_siphash64(r->seed, ka, 24);
			v[i].sig = (uint64_t)((kv_cell)(h >> 32) << r->cshift)
			        << 32 |
			    (h & (r->pslots - 1));
			v[i].i = (uint32_t)i;
		}
		qsort(v, N, sizeof(*v), sig_cmp);
		for (i = 1; i < N && !found; i++)
			found = v[i].sig == v[i - 1].sig;
		cr_assert(found, "no two of %d keys alike (bytes %zu)", N,
		    poss[p]);
		collide_key(ka, v[i - 2].i, poss[p]);
		collide_key(kb, v[i - 1].i, poss[p]);
		a = entry(ka, 100);
		b = entry(kb, 200);
		cr_assert_eq(kv_reg_register(r, &a, NULL), 0);
		cr_assert_eq(kv_reg_lookup(r, kb, 24, &got), -ENOENT,
		    "%s found as %s", kb, got.key);
		cr_assert_eq(kv_reg_get(r, kb, 24, &got), -ENOENT);
		cr_assert_eq(kv_reg_register(r, &b, &got), 0, "%s taken by %s",
		    kb, got.key);
		cr_assert_eq(kv_reg_lookup(r, ka, 24, &got), 0);
		cr_assert_eq(got.pid, 100);
		cr_assert_eq(kv_reg_lookup(r, kb, 24, &got), 0);
		cr_assert_eq(got.pid, 200);
		cr_assert_eq(kv_reg_unregister(r, ka, 24, 100), 0);
		cr_assert_eq(kv_reg_lookup(r, kb, 24, &got), 0);
		cr_assert_eq(got.pid, 200);
		cr_assert_eq(kv_reg_lookup(r, ka, 24, &got), -ENOENT);
		cr_assert_eq(check(r), 1);
		kv_reg_close(r);
	}
	free(v);
}

/*
 * One partition of 64 cells filled to its limit: most keys' cells cannot
 * sit at their home, which another key's cell holds, and every such key
 * is still found, with and without the read protocol; a miss ends at the
 * one empty cell; and after half the keys are gone (their cells' runs
 * shifted back) the rest are still found.
 */
Test(table, lookups_find_entries_displaced_from_home)
{
	struct kv_reg  *r = make(63, 64, 1, NULL);
	struct kv_entry got;
	char            key[KV_KEY_MAX + 1];
	uint32_t        i, mask = r->pslots - 1, displaced = 0;
	int             k;

	cr_assert_eq(r->nparts, 1u);
	for (k = 0; k < 63; k++) {
		snprintf(key, sizeof(key), "col:%d", k);
		cr_assert_eq(reg(r, key, 100 + k), 0);
	}
	cr_assert_eq(check(r), 63);
	for (i = 0; i <= mask; i++) {
		const struct kv_slot *s;
		const char           *kp;
		size_t                klen;
		uint32_t              home, idx;

		if (r->cells[i] == 0)
			continue;
		idx = cell_index(r, r->cells[i]);
		s = &r->slots[idx];
		home = (uint32_t)slot_key_hash(r, 0, idx, &kp, &klen) & mask;
		if (home == i)
			continue;
		displaced++;
		cr_assert(r->cells[home] != 0);
		memcpy(key, kp, klen);
		cr_assert_eq(kv_reg_lookup(r, key, klen, &got), 0,
		    "%.*s, home %u, in cell %u", (int)klen, key, home, i);
		cr_assert_eq(got.pid, s->pid);
		cr_assert_eq(kv_table_lookup_unsync(r, key, klen, &got), 0,
		    "%.*s, home %u, in cell %u", (int)klen, key, home, i);
		cr_assert_eq(got.pid, s->pid);
	}
	cr_assert(displaced > 0, "no key was displaced");
	for (k = 0; k < 63; k++) {
		snprintf(key, sizeof(key), "col:%d", k);
		cr_assert_eq(kv_reg_lookup(r, key, strlen(key), &got), 0);
		cr_assert_eq(got.pid, 100 + k);
	}
	for (k = 0; k < 1000; k++) {
		snprintf(key, sizeof(key), "absent:%d", k);
		cr_assert_eq(kv_reg_lookup(r, key, strlen(key), &got),
		    -ENOENT);
		cr_assert_eq(kv_table_lookup_unsync(r, key, strlen(key),
		                 &got),
		    -ENOENT);
	}
	for (k = 0; k < 63; k += 2) {
		snprintf(key, sizeof(key), "col:%d", k);
		cr_assert_eq(kv_reg_unregister(r, key, strlen(key), 100 + k),
		    0);
	}
	cr_assert_eq(check(r), 31);
	for (k = 0; k < 63; k++) {
		snprintf(key, sizeof(key), "col:%d", k);
		cr_assert_eq(kv_reg_lookup(r, key, strlen(key), &got),
		    k % 2 ? 0 : -ENOENT, "%s", key);
	}
	kv_reg_close(r);
}
