/*
 * kv-regfault: a registry writer that dies where it is told to, and a
 * window on the partitions, for test_faults.sh.
 *
 *   kv-regfault crash SEGMENT POINT KEY [OWNER]
 *       Map /SEGMENT read-write (e.g. keyvisor.INSTANCE, a daemon's
 *       registry) and register KEY (pid: this process; owner: OWNER, else
 *       this process) with the crash-point hook of kvshm_crash armed: at
 *       step POINT (enum kv_crashpoint in shm/table.h, e.g. 3 =
 *       KV_CP_INS_OPEN: partition locked, sequence counter odd) the
 *       process SIGKILLs itself, holding the partition's robust mutex.
 *       Exits 3 if the step was never reached (the key exists, ...), 2 on
 *       a usage or open error.
 *   kv-regfault part SEGMENT KEY...
 *       Print "KEY PARTITION" for each KEY: where it hashes in this
 *       segment (its seed is random per segment).
 *   kv-regfault state SEGMENT KEY
 *       Print "part P seq S odd 0|1 repairing R count N repairs N" for
 *       KEY's partition.
 *   kv-regfault stats SEGMENT
 *       Print "count N registrations N unregistrations N repairs N
 *       npartitions N" (kv_reg_stats(), summed over the partitions).
 *
 * part and state read the private layout (table.h, layout.h): a test
 * tool's privilege, so that the test picks keys in the partition it broke
 * instead of hoping to hit it.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keyvisor/registry.h>

#include "siphash.h"
#include "table.h"

#define USAGE                                                                  \
	"usage: kv-regfault crash SEGMENT POINT KEY [OWNER]\n"                 \
	"       kv-regfault part SEGMENT KEY...\n"                             \
	"       kv-regfault state SEGMENT KEY\n"                               \
	"       kv-regfault stats SEGMENT\n"

static int crash_at;

static void
hook(int point)
{
	if (point == crash_at)
		(void)raise(SIGKILL);
}

static uint32_t
part_of_key(const struct kv_reg *r, const char *key)
{
	uint64_t h = kv_siphash64(r->seed, key, strlen(key));

	return KV_PART_INDEX(h, r->pshift);
}

static int
open_seg(const char *seg, int mode, struct kv_reg **r)
{
	int rc = kv_reg_open(seg, mode, r);

	if (rc < 0) {
		fprintf(stderr, "kv-regfault: /%s: %s\n", seg,
		    kv_reg_strerror(rc));
		return -1;
	}
	return 0;
}

static int
do_crash(int argc, char **argv)
{
	struct kv_entry e = {0};
	struct kv_reg  *r;
	const char     *key;
	char           *end;
	long            point, owner = 0;
	int             rc;

	if (argc < 5 || argc > 6)
		goto usage;
	point = strtol(argv[3], &end, 10);
	if (*end != '\0' || point < 1 || point > KV_CP_LAST)
		goto usage;
	if (argc == 6) {
		owner = strtol(argv[5], &end, 10);
		if (*end != '\0' || owner <= 0)
			goto usage;
	}
	key = argv[4];
	if (strlen(key) > KV_KEY_MAX)
		goto usage;
	if (open_seg(argv[2], KV_REG_RDWR, &r) < 0)
		return 2;
	e.keylen = (uint16_t)strlen(key);
	memcpy(e.key, key, e.keylen);
	e.pid = (int32_t)getpid();
	e.owner = owner > 0 ? (int32_t)owner : (int32_t)getpid();
	e.flags = KV_ENTRY_PUBLISHED;
	(void)kv_proc_start_time(getpid(), &e.start_time);
	crash_at = (int)point;
	kv_table_crashpoint = hook;
	rc = kv_reg_register(r, &e, NULL);
	kv_table_crashpoint = NULL;
	fprintf(stderr, "kv-regfault: crash point %ld not reached: %s\n", point,
	    rc < 0 ? kv_reg_strerror(rc) : "registered");
	kv_reg_close(r);
	return 3;
usage:
	fputs(USAGE, stderr);
	return 2;
}

static int
do_part(int argc, char **argv)
{
	struct kv_reg *r;
	int            i;

	if (argc < 4)
		goto usage;
	if (open_seg(argv[2], KV_REG_RDONLY, &r) < 0)
		return 2;
	for (i = 3; i < argc; i++)
		printf("%s %" PRIu32 "\n", argv[i], part_of_key(r, argv[i]));
	kv_reg_close(r);
	return 0;
usage:
	fputs(USAGE, stderr);
	return 2;
}

static int
do_state(int argc, char **argv)
{
	const struct kv_partition *p;
	struct kv_reg             *r;
	uint32_t                   i, seq;

	if (argc != 4)
		goto usage;
	if (open_seg(argv[2], KV_REG_RDONLY, &r) < 0)
		return 2;
	i = part_of_key(r, argv[3]);
	p = &r->parts[i];
	seq = __atomic_load_n(&p->seq, __ATOMIC_ACQUIRE);
	printf("part %" PRIu32 " seq %" PRIu32 " odd %u repairing %" PRIu32
	       " count %" PRIu32 " repairs %" PRIu64 "\n",
	    i, seq, seq & 1u, p->repairing,
	    __atomic_load_n(&p->count, __ATOMIC_RELAXED), p->repairs);
	kv_reg_close(r);
	return 0;
usage:
	fputs(USAGE, stderr);
	return 2;
}

static int
do_stats(int argc, char **argv)
{
	struct kv_reg_stats st;
	struct kv_reg      *r;

	if (argc != 3)
		goto usage;
	if (open_seg(argv[2], KV_REG_RDONLY, &r) < 0)
		return 2;
	kv_reg_stats(r, &st);
	printf("count %" PRIu32 " registrations %" PRIu64
	       " unregistrations %" PRIu64 " repairs %" PRIu64
	       " npartitions %" PRIu32 "\n",
	    st.count, st.registrations, st.unregistrations, st.repairs,
	    st.npartitions);
	kv_reg_close(r);
	return 0;
usage:
	fputs(USAGE, stderr);
	return 2;
}

int
main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "crash") == 0)
		return do_crash(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "part") == 0)
		return do_part(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "state") == 0)
		return do_state(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "stats") == 0)
		return do_stats(argc, argv);
	fputs(USAGE, stderr);
	return 2;
}
