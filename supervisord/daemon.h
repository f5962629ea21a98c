/*
 * keyvisord's shared state.  One thread, one epoll loop (daemon.c); the
 * supervision of keys (sup.c) and the control socket (ctl.c) are modules of
 * it.  Every decision about a key is made by svc (pure); these modules only
 * carry its effects out.
 */
#ifndef KEYVISOR_SUPERVISORD_DAEMON_H
#define KEYVISOR_SUPERVISORD_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "conf.h"
#include "keyvisor/registry.h"
#include "proto.h"
#include "svc.h"

/* epoll's data.u64: a tag in the high half, an index in the low half. */
#define EV(tag, idx) ((uint64_t)(tag) << 32 | (uint32_t)(idx))
enum ev_tag { TAG_SIGNAL = 1, TAG_TIMER, TAG_LISTEN, TAG_CLIENT, TAG_CHANNEL };

/* A request waiting for something to happen to a key. */
enum wait_kind {
	WAIT_STOPPED, /* stop: the worker reaped, or the key forgotten */
	WAIT_RESTARTED, /* restart: a new worker spawned */
	WAIT_RUNNING, /* wait: a worker running (or ready) */
	WAIT_READY,   /* wait --ready */
	WAIT_GONE,    /* wait --gone: the key forgotten */
	WAIT_STARTED, /* start --wait-ready: the worker said READY */
};

struct waiter {
	struct waiter *next;
	enum wait_kind kind;
	uint32_t       client; /* slot */
	uint32_t       gen;    /* the slot's generation when it waited */
};

/* A wait for a key that nobody supervises yet. */
struct keywait {
	struct keywait *next;
	enum wait_kind  kind;
	uint32_t        client, gen;
	uint16_t        keylen;
	char            key[]; /* keylen bytes and a NUL */
};

/*
 * One supervised key.  The command is kept packed: argc strings back to
 * back in cmd, so that a worker costs one allocation besides the struct.
 */
struct child {
	struct svc     svc;
	pid_t          pid;      /* 0 when no process runs */
	pid_t          last_pid; /* the last process reaped, or 0 */
	uint64_t       start_time; /* of pid, from /proc */
	uint64_t       started_ns; /* CLOCK_REALTIME of the current run */
	struct child  *next_key, *next_pid; /* hash chains */
	uint32_t       heap; /* index in the deadline heap + 1, or 0 */
	uint64_t       due;  /* its key there: deadline() when last placed */
	bool           exited; /* a process of this key has been reaped */
	struct waiter *waiters;
	int            chan; /* our end of the worker's channel, or -1 */
	uint64_t       ttl_ms, watchdog_ms;   /* 0: none */
	uint64_t       activity_ms, heartbeat_ms; /* the last, monotonic */
	uint64_t       ready_deadline_ms; /* a --wait-ready start's; 0: none */
	bool           publish_ready;  /* visible to lookups once READY */
	bool           publish_set;    /* ... by the start request itself */
	bool           from_kind;      /* the command is the kind's */
	struct confset *cs;            /* where its kind is defined, or NULL */
	unsigned        set;           /* REQ_SET_*: the request's own policy */
	struct svc_policy over;        /* ... and its values */
	bool           warned;         /* a bad channel message was logged */
	char          *message;        /* STATUS text, or NULL */
	char          *cmd;  /* argc NUL-terminated strings */
	uint32_t       cmdlen, argc;
	char          *cwd;  /* NULL: the daemon's */
	char           kind[KV_KIND_MAX + 1];
	uint16_t       keylen;
	char           key[]; /* keylen bytes and a NUL */
};

struct buf {
	char  *p;
	size_t len, cap, off; /* off: consumed (in) or sent (out) */
};

struct client {
	int      fd;
	uint32_t gen;
	uid_t    uid;
	struct buf in, out;
	bool     busy;    /* a request awaits its reply: read no further */
	bool     closing; /* close once out is flushed */
	bool     paused;  /* reading stopped until out drains */
	bool     reading; /* inside client_input(): replies do not re-enter */
	bool     watching;
	char    *pattern; /* watch filter; NULL: all */
	uint64_t missed_from, missed_to; /* events dropped, 0: none */
};

/* A kind of the configuration in force, with what the daemon derives. */
struct kindinfo {
	const struct conf_kind *k;
	gid_t                  *groups; /* supplementary, for k->user_name */
	size_t                  ngroups;
	uint32_t                count;  /* supervised keys of this kind */
};

/*
 * A configuration: the one in force, or an older one still holding the
 * kind of a worker whose kind a reload removed (that worker keeps its last
 * definition).  Counted: the daemon holds one reference to the set in
 * force, and each child one to the set its kind comes from.
 */
struct confset {
	struct conf     *conf;
	struct kindinfo *kinds;
	size_t           nkinds;
	uint32_t         refs;
};

struct daemon {
	/* Configuration; conf, kinds and nkinds mirror cs (in force). */
	const char      *conf_path; /* -c, or NULL */
	struct confset  *cs;        /* NULL without -c */
	struct conf     *conf;
	struct kindinfo *kinds;
	size_t           nkinds;

	/* Identity. */
	const char *instance, *registry;
	char        socket_path[108], lock_path[128], segment[80];
	char        reg_lock_path[192];
	pid_t       pid;
	uint64_t    started_ms;
	bool        pid1, subreaper;

	/* Limits and access. */
	uint32_t capacity, max_children;
	bool     has_socket_gid;
	gid_t    socket_gid;

	/* Resources. */
	int            epfd, sigfd, timerfd, listenfd, lockfd, reglockfd;
	struct kv_reg *reg;
	char         **env;     /* the workers' environment, 5 slots free */
	size_t         envc;

	/* Keys. */
	struct child **by_key, **by_pid; /* hash buckets */
	uint32_t       nbuckets, nchildren, nrunning;
	struct child **heap;             /* by deadline */
	uint32_t       nheap, heapcap;
	struct svc_bucket bucket;        /* restart rate */
	struct keywait   *keywaits;      /* waits for keys not yet started */
	struct child    **chans;         /* by channel fd */
	uint32_t          nchans;
	uint32_t          turn_spawns;   /* policy restarts this loop turn */

	/* Clients. */
	struct client **clients;
	uint32_t        nclients, clientcap, gen;
	uint64_t        accept_paused_until; /* ms; EMFILE backoff */
	uint64_t        seq;                 /* next event's number */
	uint32_t        nwatchers;

	/* Counters for info. */
	uint64_t orphans, restarts, spawns;

	/* The main command (container init), when one follows "--". */
	char   **main_argv;
	pid_t    main_pid;     /* 0: not running (none, or reaped) */
	uint64_t main_kill_at; /* SIGKILL it then (ms), after a shutdown */

	/* Shutdown. */
	bool quit;
	int  exit_status; /* the main command's, shell-style; else 0 */
};

/* daemon.c */
uint64_t now_ms(void);
void     loop_update_timer(struct daemon *d);
/* Stop everything and exit; by_request: keyvisor shutdown, not a signal. */
void     daemon_shutdown(struct daemon *d, const char *why, bool by_request);
/* Read the configuration file again.  0, or -errno with ERR. */
int      daemon_reload(struct daemon *d, char *err, size_t len);
/* The main command was reaped with STATUS (a waitpid status). */
void     daemon_main_exited(struct daemon *d, int status);

/* sup.c: the keys. */
int           sup_init(struct daemon *d);
void          sup_fini(struct daemon *d);
struct child *sup_find(struct daemon *d, const char *key, size_t len);
/* Start a new key from REQ; the reply goes to CLIENT.  See sup.c. */
void          sup_start(struct daemon *d, const struct req *rq,
                  uint32_t client);
void          sup_reap(struct daemon *d, pid_t hint);
void          sup_timers(struct daemon *d, uint64_t now);
void          sup_stop(struct daemon *d, struct child *c, uint32_t client);
void          sup_restart(struct daemon *d, struct child *c, uint32_t client);
void          sup_shutdown(struct daemon *d);
void          sup_channel(struct daemon *d, int fd, uint32_t events);
void          sup_touch(struct daemon *d, struct child *c);
/* Install CONF (taking it) as the configuration in force.  0 or -errno. */
int           sup_configure(struct daemon *d, struct conf *conf);
json_t       *sup_kinds_json(const struct daemon *d);
uint64_t      sup_next_deadline(const struct daemon *d);
json_t       *sup_worker_json(const struct daemon *d, const struct child *c);
void          sup_add_waiter(struct child *c, enum wait_kind k,
                  uint32_t client, uint32_t gen);
bool          sup_wait_done(const struct child *c, enum wait_kind k);
/* Wait for KEY to be started (and ready, for WAIT_READY). */
int           sup_wait_key(struct daemon *d, const char *key, size_t len,
                  enum wait_kind k, uint32_t client);
/* Forget the waits of a client that went away. */
void          sup_drop_client(struct daemon *d, uint32_t client);
int           sup_list(struct daemon *d, const char *pattern,
                  struct child ***out);

/* ctl.c: the control socket. */
int  ctl_listen(struct daemon *d);
void ctl_accept(struct daemon *d);
void ctl_event(struct daemon *d, uint32_t slot, uint32_t events);
void ctl_reply(struct daemon *d, uint32_t slot, uint32_t gen, json_t *v);
void ctl_emit(struct daemon *d, const char *key, json_t *ev);
void ctl_close_all(struct daemon *d);
bool ctl_flushed(const struct daemon *d);

#endif /* KEYVISOR_SUPERVISORD_DAEMON_H */
