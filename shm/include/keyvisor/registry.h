/*
 * keyvisor registry: a shared-memory table of live names, key -> process.
 *
 * The registry is a POSIX shared-memory segment holding a fixed-capacity
 * open-addressing hash table split into partitions.  Any process may map it
 * read-only and look keys up without locks (sequence counters, bounded
 * retries).  Writers take the partition's robust, process-shared mutex; a
 * writer that dies inside the critical section is repaired by the next one.
 *
 * All functions return >= 0 on success and -errno on failure, unless their
 * comment says otherwise.  Nothing here logs or exits.  The registry knows
 * nothing about supervision: it stores what writers put in it.
 */
#ifndef KEYVISOR_REGISTRY_H
#define KEYVISOR_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KV_KEY_MAX   255 /* bytes of UTF-8, not counting the NUL */
#define KV_VALUE_MAX 256 /* bytes, opaque */
#define KV_KIND_MAX  31  /* bytes, not counting the NUL */

/* Entry flags. */
#define KV_ENTRY_PUBLISHED 0x1u /* visible to kv_reg_lookup() */

/*
 * One registration, as copied out of (or into) the table.  key and kind are
 * NUL-terminated; value holds valuelen opaque bytes.
 */
struct kv_entry {
	uint64_t start_time;  /* /proc/PID/stat field 22: detects pid reuse */
	uint64_t reg_time_ns; /* CLOCK_REALTIME at registration; 0: now */
	uint64_t epoch;       /* fencing token; 0 on a single node */
	int32_t  pid;         /* 0 while the name is only reserved */
	int32_t  owner;       /* the supervisor's pid */
	uint32_t incarnation; /* restart count */
	uint32_t node;        /* node id; 0 on a single node */
	uint32_t flags;       /* KV_ENTRY_* */
	uint16_t keylen;
	uint16_t valuelen;
	char     kind[KV_KIND_MAX + 1];
	char     key[KV_KEY_MAX + 1];
	uint8_t  value[KV_VALUE_MAX];
};

struct kv_reg; /* opaque */

struct kv_reg_params {
	uint32_t capacity;    /* entries the registry holds; > 0 */
	uint32_t nslots;      /* table slots, a power of two; 0: automatic */
	uint32_t npartitions; /* a power of two; 0: automatic */
	mode_t   mode;        /* segment permissions; 0: 0640 */
};

struct kv_reg_stats {
	uint64_t created_ns;     /* CLOCK_REALTIME at creation */
	uint64_t registrations;  /* successful inserts since creation */
	uint64_t unregistrations;
	uint64_t repairs;        /* partitions repaired after a writer died */
	uint64_t size;           /* bytes in the segment */
	uint32_t capacity;
	uint32_t nslots;
	uint32_t npartitions;
	uint32_t count;          /* live entries, published or not */
	int32_t  creator_pid;
	uint32_t layout;
};

/* kv_reg_open() modes. */
#define KV_REG_RDONLY 0
#define KV_REG_RDWR   1

/*
 * Create the segment "/NAME" (NAME without the slash, e.g. "keyvisor.default")
 * exclusively.  -EEXIST if it exists, -EINVAL for impossible parameters.
 */
int kv_reg_create(const char *name, const struct kv_reg_params *params,
    struct kv_reg **out);

/*
 * Map an existing segment.  Besides open(2)'s errors: -EPROTO when the
 * segment is not a keyvisor registry (bad magic), -EPROTONOSUPPORT for
 * another layout version, -EBADMSG when its sizes are inconsistent or it is
 * truncated.  Such a segment is never read beyond its header.
 */
int kv_reg_open(const char *name, int mode, struct kv_reg **out);

/*
 * The same on an fd the caller owns (a memfd in tests, an inherited fd in a
 * worker).  kv_reg_create_fd() sizes the file with ftruncate(2).  The fd is
 * not closed by kv_reg_close().
 */
int kv_reg_create_fd(int fd, const struct kv_reg_params *params,
    struct kv_reg **out);
int kv_reg_open_fd(int fd, int mode, struct kv_reg **out);

/* Unmap.  Returns NULL; kv_reg_close(NULL) is a no-op. */
struct kv_reg *kv_reg_close(struct kv_reg *reg);

/* Remove the segment's name. */
int kv_reg_unlink(const char *name);

/* The text for a kv_reg_* error, including the layout errors above. */
const char *kv_reg_strerror(int err);

/*
 * Is KEY (LEN bytes, no NUL required) a valid key?  Returns NULL when it is,
 * else a static sentence saying why not ("key is empty", "key contains
 * whitespace", ...).  A key is 1..KV_KEY_MAX bytes of valid UTF-8 with no
 * ASCII whitespace, no C0 control character and no DEL.
 */
const char *kv_key_check(const char *key, size_t len);

/*
 * Insert E if its key is absent.  Returns 0, or -EEXIST and a copy of the
 * present entry in *EXISTING (when not NULL), -ENOSPC when the registry
 * holds its capacity, -EINVAL for an invalid key or kind, -EMSGSIZE for a
 * value longer than KV_VALUE_MAX.  On any error the table is unchanged.
 * key and keylen of E must agree; kind must be NUL-terminated.
 */
int kv_reg_register(struct kv_reg *reg, const struct kv_entry *e,
    struct kv_entry *existing);

/*
 * Remove KEY if it is registered to PID.  Returns 0, -ENOENT when absent,
 * -ESTALE when the key is held by another pid (a newer registration, which
 * is left alone).
 */
int kv_reg_unregister(struct kv_reg *reg, const char *key, size_t keylen,
    pid_t pid);

/*
 * Replace the entry of E->key, if it is registered to EXPECT_PID, with E as a
 * whole (pid, flags, value ...), atomically for readers.  Errors as
 * kv_reg_unregister(), plus those of kv_reg_register() for E.
 */
int kv_reg_replace(struct kv_reg *reg, pid_t expect_pid,
    const struct kv_entry *e);

/* Set the value of KEY, registered to PID.  Errors as kv_reg_replace(). */
int kv_reg_set_value(struct kv_reg *reg, const char *key, size_t keylen,
    pid_t pid, const void *value, size_t len);

/*
 * Look KEY up without locking.  Returns 0 and the entry in *OUT, -ENOENT when
 * absent or not yet published, -EINVAL for an empty key or one longer than
 * KV_KEY_MAX, -EBUSY when writers kept changing the partition (or one died
 * in it) for the whole bounded retry budget.  Never blocks.  MT-safe.  The
 * key is not otherwise validated: one that kv_key_check() refuses cannot
 * have been registered and is simply not found.
 */
int kv_reg_lookup(const struct kv_reg *reg, const char *key, size_t keylen,
    struct kv_entry *out);

/* As kv_reg_lookup(), but unpublished (reserved) entries are found too. */
int kv_reg_get(const struct kv_reg *reg, const char *key, size_t keylen,
    struct kv_entry *out);

/*
 * Call FN for each entry whose key matches the fnmatch(3) PATTERN (NULL: all),
 * published or not.  FN returning non-zero stops the walk and is returned.
 * Each entry passed is consistent; each partition is a consistent snapshot.
 * A read-write handle locks partition by partition; a read-only one retries
 * and returns -EBUSY if a partition would not hold still.
 */
typedef int (*kv_reg_iter_fn)(const struct kv_entry *e, void *arg);
int kv_reg_iter(const struct kv_reg *reg, const char *pattern,
    kv_reg_iter_fn fn, void *arg);

/* kv_reg_iter() restricted to the entries of PID. */
int kv_reg_keys_of(const struct kv_reg *reg, pid_t pid, kv_reg_iter_fn fn,
    void *arg);

/* Live entries (published or not), or -EBUSY. */
int kv_reg_count(const struct kv_reg *reg);

/* Fill *ST.  Counters are read without locks and may be a moment old. */
int kv_reg_stats(const struct kv_reg *reg, struct kv_reg_stats *st);

/*
 * Rendezvous (highest random weight) hashing: the index of the shard among
 * SHARDS[0..N) that KEY belongs to, or -EINVAL (N == 0, an empty shard name).
 * The weights are SipHash-2-4 under the fixed cluster seed KV_ROUTE_SEED, so
 * every machine agrees; equal weights go to the smaller name.
 */
#define KV_ROUTE_SEED "keyvisor/hrw/v1!" /* 16 bytes */
int kv_route_pick(const char *key, size_t keylen, const char *const *shards,
    size_t n);

/* The start time (clock ticks since boot) of PID from /proc, or -errno. */
int kv_proc_start_time(pid_t pid, uint64_t *out);

#ifdef __cplusplus
}
#endif

#endif /* KEYVISOR_REGISTRY_H */
