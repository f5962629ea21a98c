/*
 * sup: the supervised keys.  Holds each key's child spec and svc state,
 * spawns and reaps, and carries out what svc decides.  Names are reserved
 * in the registry before a spawn (so two starts of one key, here or in
 * another daemon sharing the registry, never both run), published once the
 * process exists, and released in the same step as the reap, before
 * anything else looks at the exit.
 *
 * Lookups by key and by pid are chained hash tables sharing one bucket
 * count; deadlines (restart delays, stop timeouts, deferred spawns) live in
 * a binary heap, so the loop's one timer is armed in O(1) and a crash storm
 * of thousands of keys costs O(log n) per key.
 */
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"
#include "daemon.h"
#include "log.h"
#include "siphash.h"
#include "spawn.h"

extern char **environ;

/* Policy restarts in one turn of the loop; about 2 ms of spawning. */
#define TURN_SPAWNS_MAX 16

static uint8_t map_seed[16];

static void cs_unref(struct confset *cs);

static uint64_t
realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Hash tables. */

static uint32_t
key_slot(const struct daemon *d, const char *key, size_t len)
{
	return (uint32_t)kv_siphash64(map_seed, key, len) & (d->nbuckets - 1);
}

static uint32_t
pid_slot(const struct daemon *d, pid_t pid)
{
	return (uint32_t)(((uint64_t)pid * UINT64_C(0x9e3779b97f4a7c15)) >> 32) &
	    (d->nbuckets - 1);
}

static void
link_key(struct daemon *d, struct child *c)
{
	uint32_t s = key_slot(d, c->key, c->keylen);

	c->next_key = d->by_key[s];
	d->by_key[s] = c;
}

static void
link_pid(struct daemon *d, struct child *c)
{
	uint32_t s = pid_slot(d, c->pid);

	c->next_pid = d->by_pid[s];
	d->by_pid[s] = c;
}

static void
unlink_from(struct child **head, struct child *c, bool by_pid)
{
	struct child **pp = head;

	while (*pp != NULL && *pp != c)
		pp = by_pid ? &(*pp)->next_pid : &(*pp)->next_key;
	if (*pp != NULL)
		*pp = by_pid ? c->next_pid : c->next_key;
}

/* Double the buckets when the tables average more than one per bucket. */
static int
maps_grow(struct daemon *d)
{
	struct child **ok, **op, **nk, **np;
	uint32_t       n = d->nbuckets, i;

	nk = calloc((size_t)n * 2, sizeof(*nk));
	np = calloc((size_t)n * 2, sizeof(*np));
	if (nk == NULL || np == NULL) {
		free(nk);
		free(np);
		return -ENOMEM;
	}
	ok = d->by_key;
	op = d->by_pid;
	d->by_key = nk;
	d->by_pid = np;
	d->nbuckets = n * 2;
	for (i = 0; i < n; i++) {
		struct child *c, *next;

		for (c = ok[i]; c != NULL; c = next) {
			next = c->next_key;
			link_key(d, c);
			if (c->pid > 0)
				link_pid(d, c);
		}
	}
	free(ok);
	free(op);
	return 0;
}

int
sup_init(struct daemon *d)
{
	arc4random_buf(map_seed, sizeof(map_seed));
	d->nbuckets = 64;
	d->by_key = calloc(d->nbuckets, sizeof(*d->by_key));
	d->by_pid = calloc(d->nbuckets, sizeof(*d->by_pid));
	if (d->by_key == NULL || d->by_pid == NULL)
		return -ENOMEM;
	svc_bucket_init(&d->bucket, 1000, 100, now_ms());
	return 0;
}

/* At exit, once every key is forgotten (the loop ends only then). */
void
sup_fini(struct daemon *d)
{
	struct keywait *w, *next;

	for (w = d->keywaits; w != NULL; w = next) {
		next = w->next;
		free(w);
	}
	d->keywaits = NULL;
	free(d->chans);
	d->chans = NULL;
	d->nchans = 0;
	cs_unref(d->cs);
	d->cs = NULL;
	d->kinds = NULL;
	d->nkinds = 0;
	d->conf = NULL;
	free(d->by_key);
	free(d->by_pid);
	free(d->heap);
	d->by_key = d->by_pid = d->heap = NULL;
	d->nbuckets = d->nheap = d->heapcap = 0;
}

struct child *
sup_find(struct daemon *d, const char *key, size_t len)
{
	struct child *c = d->by_key[key_slot(d, key, len)];

	for (; c != NULL; c = c->next_key)
		if (c->keylen == len && memcmp(c->key, key, len) == 0)
			return c;
	return NULL;
}

static struct child *
pid_find(struct daemon *d, pid_t pid)
{
	struct child *c = d->by_pid[pid_slot(d, pid)];

	for (; c != NULL; c = c->next_pid)
		if (c->pid == pid)
			return c;
	return NULL;
}

/*
 * A child's next deadline: svc's (restart delay, stop timeout, deferred
 * spawn), a --wait-ready start's, and while a worker runs its idle
 * lifetime and its watchdog.
 */
static uint64_t
min_nz(uint64_t a, uint64_t b)
{
	return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

static bool
is_live(const struct child *c)
{
	return c->pid > 0 &&
	    (c->svc.state == SVC_RUNNING || c->svc.state == SVC_READY);
}

static uint64_t
deadline(const struct child *c)
{
	uint64_t t = min_nz(svc_next_deadline(&c->svc), c->ready_deadline_ms);

	if (is_live(c) && c->ttl_ms != 0)
		t = min_nz(t, c->activity_ms + c->ttl_ms);
	if (is_live(c) && c->watchdog_ms != 0)
		t = min_nz(t, c->heartbeat_ms + c->watchdog_ms);
	return t;
}

/*
 * The deadline heap: a min-heap of children by their due time, the
 * deadline() they had when placed.  Heartbeats and activity only push a
 * deadline later, so they do not touch the heap: a child whose due time
 * comes too early is simply placed again (see child_timeout()).
 */

static void
heap_set(struct daemon *d, uint32_t i, struct child *c)
{
	d->heap[i] = c;
	c->heap = i + 1;
}

static void
heap_up(struct daemon *d, uint32_t i)
{
	struct child *c = d->heap[i];

	while (i > 0 && d->heap[(i - 1) / 2]->due > c->due) {
		heap_set(d, i, d->heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_set(d, i, c);
}

static void
heap_down(struct daemon *d, uint32_t i)
{
	struct child *c = d->heap[i];

	for (;;) {
		uint32_t l = 2 * i + 1, m = l;

		if (l >= d->nheap)
			break;
		if (l + 1 < d->nheap && d->heap[l + 1]->due < d->heap[l]->due)
			m = l + 1;
		if (d->heap[m]->due >= c->due)
			break;
		heap_set(d, i, d->heap[m]);
		i = m;
	}
	heap_set(d, i, c);
}

static void
heap_remove(struct daemon *d, struct child *c)
{
	uint32_t i = c->heap - 1;

	if (c->heap == 0)
		return;
	c->heap = 0;
	if (i == --d->nheap)
		return;
	heap_set(d, i, d->heap[d->nheap]);
	heap_down(d, i);
	heap_up(d, d->heap[i]->heap - 1);
}

/* Put C where its current deadline says; out of the heap if it has none. */
static void
heap_fix(struct daemon *d, struct child *c)
{
	heap_remove(d, c);
	if ((c->due = deadline(c)) == 0)
		return;
	if (d->nheap == d->heapcap) {
		uint32_t       cap = d->heapcap ? d->heapcap * 2 : 64;
		struct child **h = reallocarray(d->heap, cap, sizeof(*h));

		if (h == NULL)
			fatalx("out of memory for the deadline heap");
		d->heap = h;
		d->heapcap = cap;
	}
	heap_set(d, d->nheap++, c);
	heap_up(d, d->nheap - 1);
}

uint64_t
sup_next_deadline(const struct daemon *d)
{
	return d->nheap > 0 ? d->heap[0]->due : 0;
}

/* Kinds. */

static struct kindinfo *
kind_in(const struct confset *cs, const char *name)
{
	size_t i;

	for (i = 0; cs != NULL && name[0] != '\0' && i < cs->nkinds; i++)
		if (strcmp(cs->kinds[i].k->name, name) == 0)
			return &cs->kinds[i];
	return NULL;
}

/* The kind NAME in force. */
static struct kindinfo *
kind_find(const struct daemon *d, const char *name)
{
	return kind_in(d->cs, name);
}

static void
cs_ref(struct confset *cs)
{
	if (cs != NULL)
		cs->refs++;
}

/*
 * C's kind: as it is in force, or, if a reload removed it, as C last had
 * it.  C follows its kind into the configuration in force.
 */
static struct kindinfo *
child_kind(struct daemon *d, struct child *c)
{
	struct kindinfo *ki = kind_find(d, c->kind);

	if (ki == NULL)
		return kind_in(c->cs, c->kind);
	if (c->cs != d->cs) {
		cs_ref(d->cs);
		cs_unref(c->cs);
		c->cs = d->cs;
	}
	return ki;
}

/* The supplementary groups of KIND's user, as initgroups(3) would set. */
static int
kind_groups(const struct conf_kind *k, struct kindinfo *ki)
{
	int    n = 16;
	gid_t *g = NULL;

	if (!k->has_user)
		return 0;
	for (;;) {
		gid_t *ng = reallocarray(g, (size_t)n, sizeof(*g));
		int    m = n;

		if (ng == NULL) {
			free(g);
			return -ENOMEM;
		}
		g = ng;
		if (k->user_name == NULL) { /* a bare uid: its group only */
			g[0] = k->gid;
			n = 1;
			break;
		}
		if (getgrouplist(k->user_name, k->gid, g, &m) != -1) {
			n = m;
			break;
		}
		n = m > n ? m : n * 2;
	}
	ki->groups = g;
	ki->ngroups = (size_t)n;
	return 0;
}

static void
kinds_free(struct kindinfo *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i].groups);
	free(v);
}

static void
cs_unref(struct confset *cs)
{
	if (cs == NULL || --cs->refs > 0)
		return;
	kinds_free(cs->kinds, cs->nkinds);
	conf_free(cs->conf);
	free(cs);
}

int
sup_configure(struct daemon *d, struct conf *conf)
{
	struct confset *cs = calloc(1, sizeof(*cs)), *old = d->cs;
	size_t          i;
	uint32_t        b;

	if (cs == NULL || (cs->kinds = calloc(conf->nkinds + 1,
	                       sizeof(*cs->kinds))) == NULL) {
		free(cs);
		return -ENOMEM;
	}
	for (i = 0; i < conf->nkinds; i++) {
		cs->kinds[i].k = &conf->kinds[i];
		if (kind_groups(cs->kinds[i].k, &cs->kinds[i]) < 0) {
			kinds_free(cs->kinds, i);
			free(cs);
			return -ENOMEM;
		}
	}
	cs->conf = conf;
	cs->nkinds = conf->nkinds;
	cs->refs = 1; /* the daemon's */
	d->cs = cs;
	d->conf = conf;
	d->kinds = cs->kinds;
	d->nkinds = cs->nkinds;
	for (b = 0; b < d->nbuckets; b++) {
		struct child    *c;
		struct kindinfo *ki;

		for (c = d->by_key[b]; c != NULL; c = c->next_key)
			if ((ki = kind_find(d, c->kind)) != NULL)
				ki->count++;
	}
	cs_unref(old);
	return 0;
}

/* What a start request resolves to, with its kind. */
struct spec {
	char *const     *argv;
	size_t           argc;
	char           **expanded; /* the kind's command for the key; owned */
	struct svc_policy policy;
	struct kindinfo *ki;
};

/* The fields named by SET (REQ_SET_*) of OVER, on top of P. */
static void
policy_override(struct svc_policy *p, unsigned set,
    const struct svc_policy *over)
{
	if (set & REQ_SET_RESTART)
		p->restart = over->restart;
	if (set & REQ_SET_MAX_RESTARTS)
		p->max_restarts = over->max_restarts;
	if (set & REQ_SET_MAX_SECONDS)
		p->max_seconds_ms = over->max_seconds_ms;
	if (set & REQ_SET_STOP_TIMEOUT)
		p->stop_timeout_ms = over->stop_timeout_ms;
	if (set & REQ_SET_RESTART_DELAY)
		p->restart_delay_ms = over->restart_delay_ms;
	if (set & REQ_SET_BACKOFF_MAX)
		p->backoff_max_ms = over->backoff_max_ms;
}

/*
 * Resolve RQ: its own command, or its kind's expanded for the key; the
 * kind's policy (or the defaults) under the request's own settings.
 * Returns NULL, or the reply's code with a sentence in MSG.
 */
static const char *
resolve(struct daemon *d, const struct req *rq, struct spec *sp, char *msg,
    size_t len)
{
	memset(sp, 0, sizeof(*sp));
	sp->policy = svc_policy_default();
	if (rq->kind[0] != '\0') {
		if ((sp->ki = kind_find(d, rq->kind)) == NULL) {
			snprintf(msg, len, "unknown kind \"%s\"", rq->kind);
			return "usage";
		}
		sp->policy = sp->ki->k->policy;
	}
	policy_override(&sp->policy, rq->set, &rq->policy);
	if (rq->argv != NULL && rq->argc > 0) {
		sp->argv = rq->argv;
		sp->argc = rq->argc;
	} else if (sp->ki != NULL && sp->ki->k->argc > 0) {
		sp->expanded = conf_expand(sp->ki->k->argv, sp->ki->k->argc,
		    rq->key);
		if (sp->expanded == NULL) {
			snprintf(msg, len, "out of memory");
			return "internal";
		}
		sp->argv = sp->expanded;
		sp->argc = sp->ki->k->argc;
	} else {
		snprintf(msg, len, sp->ki ? "kind %s has no command: give one "
		                            "after --" : "no command given",
		    rq->kind);
		return "usage";
	}
	if (sp->ki != NULL && sp->ki->k->max_children != 0 &&
	    sp->ki->count >= sp->ki->k->max_children) {
		snprintf(msg, len, "max_children of kind %s reached (%u)",
		    rq->kind, sp->ki->k->max_children);
		return "capacity";
	}
	return NULL;
}

/* Children. */

/* Store ARGV as C's command: argc strings back to back. */
static int
set_cmd(struct child *c, char *const *argv, size_t argc)
{
	size_t i, n = 0;
	char  *cmd, *p;

	for (i = 0; i < argc; i++)
		n += strlen(argv[i]) + 1;
	if ((cmd = malloc(n)) == NULL)
		return -ENOMEM;
	for (i = 0, p = cmd; i < argc; i++)
		p = stpcpy(p, argv[i]) + 1;
	free(c->cmd);
	c->cmd = cmd;
	c->cmdlen = (uint32_t)n;
	c->argc = (uint32_t)argc;
	return 0;
}

static struct child *
child_new(const struct req *rq, const struct spec *sp)
{
	struct child *c = calloc(1, sizeof(*c) + rq->keylen + 1);

	if (c == NULL)
		return NULL;
	c->chan = -1;
	c->cwd = rq->cwd != NULL ? strdup(rq->cwd) : NULL;
	if (set_cmd(c, sp->argv, sp->argc) < 0 ||
	    (rq->cwd != NULL && c->cwd == NULL) ||
	    svc_init(&c->svc, &sp->policy) < 0) {
		free(c->cmd);
		free(c->cwd);
		free(c);
		return NULL;
	}
	c->from_kind = sp->expanded != NULL;
	c->set = rq->set;
	c->over = rq->policy;
	c->publish_set = (rq->set & REQ_SET_PUBLISH) != 0;
	c->publish_ready = c->publish_set
	    ? rq->publish_ready
	    : sp->ki != NULL && sp->ki->k->publish_ready;
	memcpy(c->kind, rq->kind, sizeof(c->kind));
	c->keylen = (uint16_t)rq->keylen;
	memcpy(c->key, rq->key, rq->keylen + 1);
	return c;
}

static int
child_add(struct daemon *d, struct child *c)
{
	struct kindinfo *ki = kind_find(d, c->kind);

	if (d->nchildren >= d->nbuckets && maps_grow(d) < 0)
		return -ENOMEM;
	link_key(d, c);
	d->nchildren++;
	if (ki != NULL) {
		ki->count++;
		cs_ref(d->cs);
		c->cs = d->cs;
	}
	return 0;
}

static void reply_waiters(struct daemon *d, struct child *c, enum wait_kind k,
    json_t *(*build)(const struct daemon *, const struct child *));

static json_t *gone_json(const struct daemon *d, const struct child *c);

/* The worker channel: our end, by fd. */

static void
chan_close(struct daemon *d, struct child *c)
{
	if (c->chan < 0)
		return;
	d->chans[c->chan] = NULL;
	close(c->chan); /* also leaves the epoll set */
	c->chan = -1;
}

static int
chan_attach(struct daemon *d, struct child *c, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN,
	    .data.u64 = EV(TAG_CHANNEL, fd)};

	if ((uint32_t)fd >= d->nchans) {
		uint32_t       n = (uint32_t)fd + 1024;
		struct child **v = reallocarray(d->chans, n, sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		memset(v + d->nchans, 0, (n - d->nchans) * sizeof(*v));
		d->chans = v;
		d->nchans = n;
	}
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
		return -errno;
	d->chans[fd] = c;
	c->chan = fd;
	return 0;
}

/* Forget C: answer whoever waits on it, and free it. */
static void
child_free(struct daemon *d, struct child *c)
{
	struct kindinfo *ki;
	struct waiter   *w, *next;

	reply_waiters(d, c, WAIT_STOPPED, gone_json);
	reply_waiters(d, c, WAIT_GONE, gone_json);
	for (w = c->waiters; w != NULL; w = next) {
		json_t *err = json_pack("{s:b, s:s, s:s, s:s}", "ok", 0,
		    "code", "not_found", "key", c->key, "error",
		    "key is no longer supervised");

		next = w->next;
		ctl_reply(d, w->client, w->gen, err);
		free(w);
	}
	c->waiters = NULL;
	heap_remove(d, c);
	chan_close(d, c);
	if (c->pid > 0)
		unlink_from(&d->by_pid[pid_slot(d, c->pid)], c, true);
	unlink_from(&d->by_key[key_slot(d, c->key, c->keylen)], c, false);
	d->nchildren--;
	if ((ki = kind_find(d, c->kind)) != NULL && ki->count > 0)
		ki->count--;
	cs_unref(c->cs);
	svc_fini(&c->svc);
	free(c->message);
	free(c->cmd);
	free(c->cwd);
	free(c);
}

/* Waiters. */

void
sup_add_waiter(struct child *c, enum wait_kind k, uint32_t client,
    uint32_t gen)
{
	struct waiter *w = calloc(1, sizeof(*w));

	if (w == NULL)
		fatalx("out of memory for a waiter");
	w->kind = k;
	w->client = client;
	w->gen = gen;
	w->next = c->waiters;
	c->waiters = w;
}

bool
sup_wait_done(const struct child *c, enum wait_kind k)
{
	enum svc_state st = c->svc.state;

	switch (k) {
	case WAIT_RUNNING:
		return c->pid > 0 && (st == SVC_RUNNING || st == SVC_READY);
	case WAIT_READY:
		return c->pid > 0 && st == SVC_READY;
	case WAIT_STOPPED:
	case WAIT_RESTARTED:
	case WAIT_GONE:
	case WAIT_STARTED:
		break;
	}
	return false;
}

static void
reply_waiters(struct daemon *d, struct child *c, enum wait_kind k,
    json_t *(*build)(const struct daemon *, const struct child *))
{
	struct waiter **pp = &c->waiters, *w;

	while ((w = *pp) != NULL) {
		if (w->kind != k) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		ctl_reply(d, w->client, w->gen, build(d, c));
		free(w);
	}
}

static json_t *
exit_json(const struct child *c)
{
	return c->exited ? proto_exit_json(&c->svc.last) : json_null();
}

/* The reply to a stop: the process reaped (with how it ended), or none. */
static json_t *
gone_json(const struct daemon *d, const struct child *c)
{
	pid_t   pid = c->pid > 0 ? c->pid : c->last_pid;
	json_t *v = json_pack("{s:b, s:s, s:i}", "ok", 1, "key", c->key, "pid",
	    (int)pid);

	if (v != NULL && c->exited && c->pid == 0)
		json_object_set_new(v, "exit", exit_json(c));
	return v;
}

static json_t *
pid_json(const struct daemon *d, const struct child *c)
{
	return json_pack("{s:b, s:s, s:i, s:s, s:i}", "ok", 1, "key", c->key,
	    "pid", (int)c->pid, "state", svc_state_name(c->svc.state),
	    "incarnation", (int)c->svc.incarnation);
}

/* Events and log lines. */

static void
emit(struct daemon *d, const struct child *c, const char *event, json_t *ev)
{
	if (ev == NULL)
		ev = json_object();
	if (ev == NULL)
		return;
	json_object_set_new(ev, "event", json_string(event));
	json_object_set_new(ev, "key", json_string(c->key));
	ctl_emit(d, c->key, ev);
}

/* Spawning. */

/* The registry entry of C, as it should read with PID (0: reserved). */
static struct kv_entry
entry_of(const struct daemon *d, const struct child *c, pid_t pid)
{
	struct kv_entry e = {0};

	e.keylen = c->keylen;
	memcpy(e.key, c->key, c->keylen);
	e.pid = pid;
	e.owner = d->pid;
	e.incarnation = c->svc.incarnation;
	memcpy(e.kind, c->kind, sizeof(e.kind));
	e.flags = pid > 0 && !c->publish_ready ? KV_ENTRY_PUBLISHED : 0;
	return e;
}

/*
 * The argv and environment for C's exec: the daemon's environment, the
 * kind's on top (a name set by both takes the kind's value), then the
 * KEYVISOR_* variables.  Returns 0 or -ENOMEM; exec_args_free() after.
 */
#define EXEC_VARS 6
struct exec_args {
	char **argv, **envp;
	char   vars[EXEC_VARS][320];
};

static bool
env_overridden(const struct conf_kind *k, const char *e)
{
	size_t i;

	for (i = 0; k != NULL && i < k->envc; i++) {
		size_t n = (size_t)(strchr(k->env[i], '=') - k->env[i]) + 1;

		if (strncmp(e, k->env[i], n) == 0)
			return true;
	}
	return false;
}

static void
exec_vars(struct daemon *d, const struct child *c, int notify,
    struct exec_args *a)
{
	snprintf(a->vars[0], sizeof(a->vars[0]), "KEYVISOR_KEY=%s", c->key);
	snprintf(a->vars[1], sizeof(a->vars[1]), "KEYVISOR_INSTANCE=%s",
	    d->instance);
	snprintf(a->vars[2], sizeof(a->vars[2]), "KEYVISOR_INCARNATION=%u",
	    c->svc.incarnation);
	snprintf(a->vars[3], sizeof(a->vars[3]), "KEYVISOR_SOCKET=%s",
	    d->socket_path);
	snprintf(a->vars[4], sizeof(a->vars[4]), "KEYVISOR_REGISTRY=%s",
	    d->registry);
	snprintf(a->vars[5], sizeof(a->vars[5]), "KEYVISOR_NOTIFY_FD=%d",
	    spawn_notify_fd(notify));
}

static int
exec_args(struct daemon *d, const struct child *c,
    const struct conf_kind *k, int notify, struct exec_args *a)
{
	const char *p = c->cmd;
	size_t      i, n = 0, nenv = d->envc + (k ? k->envc : 0) + EXEC_VARS;

	a->argv = calloc(c->argc + 1, sizeof(*a->argv));
	a->envp = calloc(nenv + 1, sizeof(*a->envp));
	if (a->argv == NULL || a->envp == NULL) {
		free(a->argv);
		free(a->envp);
		return -ENOMEM;
	}
	for (i = 0; i < c->argc; i++, p += strlen(p) + 1)
		a->argv[i] = (char *)p;
	for (i = 0; i < d->envc; i++)
		if (!env_overridden(k, d->env[i]))
			a->envp[n++] = d->env[i];
	for (i = 0; k != NULL && i < k->envc; i++)
		a->envp[n++] = k->env[i];
	exec_vars(d, c, notify, a);
	for (i = 0; i < EXEC_VARS - (notify < 0); i++)
		a->envp[n++] = a->vars[i];
	return 0;
}

static void
exec_args_free(struct exec_args *a)
{
	free(a->argv);
	free(a->envp);
}

/* What the kind says about the process: identity, umask, limits, cwd. */
static void
spawn_kind(const struct child *c, const struct kindinfo *ki,
    struct spawn_req *sr, struct spawn_limit *lim)
{
	const struct conf_kind *k = ki != NULL ? ki->k : NULL;
	size_t                  i;

	sr->cwd = c->cwd;
	if (k == NULL)
		return;
	if (sr->cwd == NULL)
		sr->cwd = k->directory;
	if (k->has_user) {
		sr->set_ids = true;
		sr->uid = k->uid;
		sr->gid = k->gid;
		sr->groups = ki->groups;
		sr->ngroups = ki->ngroups;
	}
	sr->set_umask = k->has_umask;
	sr->umask = k->umask;
	for (i = 0; i < k->nlimits; i++) {
		lim[i].resource = k->limits[i].resource;
		lim[i].lim = k->limits[i].lim;
	}
	sr->limits = lim;
	sr->nlimits = k->nlimits;
}

/*
 * A channel for a worker: our end non-blocking in *OURS, its end in
 * *THEIRS.  Without one (out of fds) the worker still runs, and says so
 * once in the log; it just cannot talk back.
 */
static void
chan_open(struct daemon *d, int *ours, int *theirs)
{
	static bool warned;
	int         sv[2];

	*ours = *theirs = -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		if (!warned)
			log_warn("unable to make a worker channel (once)");
		warned = true;
		return;
	}
	(void)fcntl(sv[0], F_SETFL, O_NONBLOCK);
	*ours = sv[0];
	*theirs = sv[1];
}

/*
 * PID runs C's command: take its channel, publish it (or only fill in the
 * pid, for a key published once ready), and mark it started.
 */
static int
spawned(struct daemon *d, struct child *c, pid_t pid, int chan)
{
	struct kv_entry e;
	uint64_t        now = now_ms();
	int             rc;

	c->pid = pid;
	c->started_ns = realtime_ns();
	(void)kv_proc_start_time(pid, &c->start_time);
	e = entry_of(d, c, pid);
	e.start_time = c->start_time;
	if ((rc = kv_reg_replace(d->reg, 0, &e)) < 0)
		log_warnx("%s: unable to publish pid %d: %s", c->key, pid,
		    kv_reg_strerror(rc));
	if (chan >= 0 && chan_attach(d, c, chan) < 0)
		close(chan);
	c->activity_ms = c->heartbeat_ms = now;
	c->warned = false;
	link_pid(d, c);
	d->nrunning++;
	d->spawns++;
	c->last_pid = 0;
	svc_started(&c->svc, now);
	return 0;
}

/*
 * Spawn C's command: reserve the name, spawn, publish.  Returns 0, or
 * -errno with *STAGE set (-EEXIST: the name is held elsewhere, its holder
 * in *HOLDER; -ENOSPC: the registry is full).  Nothing stays registered on
 * failure.
 */
static int
child_spawn(struct daemon *d, struct child *c, enum spawn_stage *stage,
    pid_t *holder)
{
	struct kindinfo   *ki = child_kind(d, c);
	struct kv_entry    e = entry_of(d, c, 0), ex;
	struct spawn_limit lim[CONF_LIMIT_MAX];
	struct spawn_req   sr = {0};
	struct exec_args   a;
	int                ours, theirs, rc;
	pid_t              pid;

	*stage = SPAWN_FORK;
	if (ki != NULL) { /* the kind as it is now, for every (re)start */
		c->ttl_ms = ki->k->ttl_ms;
		c->watchdog_ms = ki->k->watchdog_ms;
		if (!c->publish_set)
			c->publish_ready = ki->k->publish_ready;
		e = entry_of(d, c, 0);
	}
	rc = kv_reg_register(d->reg, &e, &ex);
	if (rc == -EEXIST)
		*holder = ex.pid;
	if (rc < 0)
		return rc;
	chan_open(d, &ours, &theirs);
	if ((rc = exec_args(d, c, ki ? ki->k : NULL, theirs, &a)) < 0) {
		pid = rc;
		goto fail;
	}
	sr.argv = a.argv;
	sr.envp = a.envp;
	sr.keep_fd = theirs;
	spawn_kind(c, ki, &sr, lim);
	pid = spawn_process(&sr, stage);
	exec_args_free(&a);
	if (pid < 0)
		goto fail;
	close(theirs);
	return spawned(d, c, pid, ours);
fail:
	if (ours >= 0)
		close(ours);
	if (theirs >= 0)
		close(theirs);
	kv_reg_unregister(d->reg, c->key, c->keylen, 0);
	return pid;
}

int
sup_wait_key(struct daemon *d, const char *key, size_t len, enum wait_kind k,
    uint32_t client)
{
	struct keywait *w = malloc(sizeof(*w) + len + 1);

	if (w == NULL)
		return -ENOMEM;
	w->kind = k;
	w->client = client;
	w->gen = d->clients[client]->gen;
	w->keylen = (uint16_t)len;
	memcpy(w->key, key, len);
	w->key[len] = '\0';
	w->next = d->keywaits;
	d->keywaits = w;
	return 0;
}

void
sup_drop_client(struct daemon *d, uint32_t client)
{
	struct keywait **pp = &d->keywaits, *w;

	while ((w = *pp) != NULL) {
		if (w->client == client) {
			*pp = w->next;
			free(w);
		} else {
			pp = &w->next;
		}
	}
}

/* A key is supervised now: its waiters wait on the child from here on. */
static void
adopt_waits(struct daemon *d, struct child *c)
{
	struct keywait **pp = &d->keywaits, *w;

	while ((w = *pp) != NULL) {
		if (w->keylen != c->keylen ||
		    memcmp(w->key, c->key, c->keylen) != 0) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		sup_add_waiter(c, w->kind, w->client, w->gen);
		free(w);
	}
}

static void
started(struct daemon *d, struct child *c)
{
	log_info("%s: started pid %d (incarnation %u)", c->key, c->pid,
	    c->svc.incarnation);
	emit(d, c, "started", json_pack("{s:i, s:i, s:f}", "pid", (int)c->pid,
	    "incarnation", (int)c->svc.incarnation, "time",
	    (double)c->started_ns / 1e9));
	reply_waiters(d, c, WAIT_RESTARTED, pid_json);
	reply_waiters(d, c, WAIT_RUNNING, pid_json);
}

static void apply(struct daemon *d, struct child *c, struct svc_effects fx,
    bool user);

/*
 * A worker of a kind is restarted as its kind is now (after a reload): the
 * kind's policy under the start request's own settings, and, if it was
 * started with the kind's command, that command.  A kind a reload removed
 * stays as the worker last had it (child_kind()).
 */
static void
refresh(struct daemon *d, struct child *c)
{
	struct kindinfo  *ki = child_kind(d, c);
	struct svc_policy p;
	char            **argv;

	if (ki == NULL)
		return;
	p = ki->k->policy;
	policy_override(&p, c->set, &c->over);
	if (svc_set_policy(&c->svc, &p) < 0)
		log_warnx("%s: unable to take its kind's new policy", c->key);
	if (!c->from_kind || ki->k->argc == 0)
		return;
	if ((argv = conf_expand(ki->k->argv, ki->k->argc, c->key)) == NULL)
		return;
	(void)set_cmd(c, argv, ki->k->argc);
	conf_argv_free(argv);
}

/*
 * A spawn that svc asked for.  Restarts by policy take a token from the
 * daemon-wide bucket first; a user's request does not wait for one.
 */
static void
respawn(struct daemon *d, struct child *c, bool user)
{
	enum spawn_stage stage;
	pid_t            holder = 0;
	uint64_t         now = now_ms();
	int              rc;

	/*
	 * Policy restarts wait for a token, and at most TURN_SPAWNS_MAX are
	 * made per turn of the loop, the rest deferred to the next: a storm
	 * of crashes must not keep the control socket waiting, however slow
	 * spawning is on this machine.
	 */
	if (!user && (d->turn_spawns >= TURN_SPAWNS_MAX ||
	                 !svc_bucket_take(&d->bucket, now))) {
		svc_defer(&c->svc, d->turn_spawns >= TURN_SPAWNS_MAX
		        ? now
		        : svc_bucket_next_ms(&d->bucket, now));
		heap_fix(d, c);
		return;
	}
	d->turn_spawns++;
	refresh(d, c);
	rc = child_spawn(d, c, &stage, &holder);
	if (rc == 0) {
		d->restarts++;
		heap_fix(d, c);
		started(d, c);
		return;
	}
	if (rc == -EEXIST)
		log_warnx("%s: unable to restart: the name is held by pid %d",
		    c->key, holder);
	else
		log_warnx("%s: unable to restart: %s", c->key, strerror(-rc));
	apply(d, c, svc_spawn_failed(&c->svc,
	                stage == SPAWN_EXEC ? SVC_STAGE_EXEC : SVC_STAGE_FORK,
	                rc, now),
	    user);
}

/* Carry out FX for C.  C may be freed (SVC_ACT_FORGET). */
static void
apply(struct daemon *d, struct child *c, struct svc_effects fx, bool user)
{
	char why[256];

	switch (fx.action) {
	case SVC_ACT_NONE:
		break;
	case SVC_ACT_SPAWN:
		respawn(d, c, user);
		return;
	case SVC_ACT_WAIT:
		log_info("%s: restarting in %.3fs", c->key,
		    (double)(fx.deadline_ms - now_ms()) / 1000);
		emit(d, c, "restarting", json_pack("{s:f}", "delay",
		    (double)(fx.deadline_ms - now_ms()) / 1000));
		break;
	case SVC_ACT_SIGNAL:
		if (c->pid > 0 && kill(-c->pid, fx.signo) == -1 &&
		    errno != ESRCH)
			log_warn("%s: unable to signal group %d", c->key,
			    c->pid);
		break;
	case SVC_ACT_FORGET:
		emit(d, c, "stopped", json_pack("{s:i}", "pid",
		    (int)(c->pid > 0 ? c->pid : c->last_pid)));
		child_free(d, c);
		return;
	case SVC_ACT_FAIL:
		svc_reason(&c->svc, why, sizeof(why));
		log_warnx("%s: failed: %s", c->key, why);
		emit(d, c, "failed", json_pack("{s:s}", "reason", why));
		break;
	}
	if (fx.reply)
		reply_waiters(d, c, WAIT_STOPPED, gone_json);
	heap_fix(d, c);
}

/* The worker channel's messages. */

static json_t *
ready_json(const struct daemon *d, const struct child *c)
{
	json_t *v = pid_json(d, c);

	json_object_set_new(v, "started", json_true());
	return v;
}

/* Answer the --wait-ready starts of C with an error. */
static void
fail_start(struct daemon *d, struct child *c, const char *code,
    const char *msg)
{
	struct waiter **pp = &c->waiters, *w;

	c->ready_deadline_ms = 0;
	while ((w = *pp) != NULL) {
		if (w->kind != WAIT_STARTED) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		ctl_reply(d, w->client, w->gen,
		    json_pack("{s:b, s:s, s:s, s:s}", "ok", 0, "code", code,
		        "error", msg, "key", c->key));
		free(w);
	}
}

/* Make C's registry entry visible to lookups, keeping its value. */
static void
publish(struct daemon *d, struct child *c)
{
	struct kv_entry e;
	int             rc = kv_reg_get(d->reg, c->key, c->keylen, &e);

	if (rc == 0 && e.pid == c->pid) {
		e.flags |= KV_ENTRY_PUBLISHED;
		rc = kv_reg_replace(d->reg, c->pid, &e);
	}
	if (rc < 0)
		log_warnx("%s: unable to publish pid %d: %s", c->key, c->pid,
		    kv_reg_strerror(rc));
}

static void
became_ready(struct daemon *d, struct child *c)
{
	if (svc_ready(&c->svc) < 0)
		return; /* not running, or ready already */
	if (c->publish_ready)
		publish(d, c);
	c->ready_deadline_ms = 0;
	log_info("%s: pid %d ready", c->key, c->pid);
	emit(d, c, "ready", json_pack("{s:i}", "pid", (int)c->pid));
	reply_waiters(d, c, WAIT_STARTED, ready_json);
	reply_waiters(d, c, WAIT_READY, pid_json);
	heap_fix(d, c);
}

static void
on_message(struct daemon *d, struct child *c, const char *buf, size_t n)
{
	struct chan_msg m;
	int             rc;

	if (chan_parse(buf, n, &m) < 0) {
		if (!c->warned)
			log_warnx("%s: bad message on the worker channel "
			          "(further ones are ignored silently)", c->key);
		c->warned = true;
		return;
	}
	switch (m.kind) {
	case CHAN_READY:
		became_ready(d, c);
		break;
	case CHAN_HEARTBEAT:
		c->heartbeat_ms = now_ms();
		break;
	case CHAN_TOUCH:
		c->activity_ms = now_ms();
		break;
	case CHAN_VALUE:
		rc = kv_reg_set_value(d->reg, c->key, c->keylen, c->pid,
		    m.value, m.len);
		if (rc < 0)
			log_warnx("%s: unable to publish a value: %s", c->key,
			    kv_reg_strerror(rc));
		break;
	case CHAN_STATUS:
		free(c->message);
		c->message = m.len > 0 ? strdup(m.text) : NULL;
		break;
	}
}

/*
 * Messages from a worker.  At most a batch per wakeup, so that a chatty
 * worker cannot starve the loop; epoll reports the rest next turn.
 */
void
sup_channel(struct daemon *d, int fd, uint32_t events)
{
	struct child *c = (uint32_t)fd < d->nchans ? d->chans[fd] : NULL;
	char          buf[CHAN_MSG_MAX + 1];
	int           i;

	for (i = 0; c != NULL && c->chan == fd && i < 64; i++) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) { /* the worker closed it, or exited */
			chan_close(d, c);
			return;
		}
		if (c->pid > 0)
			on_message(d, c, buf, (size_t)n);
	}
}

void
sup_touch(struct daemon *d, struct child *c)
{
	c->activity_ms = now_ms();
}

/* Timeouts beyond svc's: readiness, the watchdog, the idle lifetime. */

static void
not_ready(struct daemon *d, struct child *c, uint64_t now)
{
	char msg[96];

	snprintf(msg, sizeof(msg), "not ready within %.3gs",
	    (double)(now - c->svc.started_ms) / 1000);
	log_warnx("%s: pid %d %s; stopping it", c->key, c->pid, msg);
	fail_start(d, c, "timeout", msg);
	apply(d, c, svc_stop(&c->svc, now), true);
}

static void
watchdog_fired(struct daemon *d, struct child *c, uint64_t now)
{
	log_warnx("%s: pid %d sent no heartbeat for %.3gs; killing it",
	    c->key, c->pid, (double)(now - c->heartbeat_ms) / 1000);
	emit(d, c, "watchdog", json_pack("{s:i}", "pid", (int)c->pid));
	if (kill(-c->pid, SIGKILL) == -1 && errno != ESRCH)
		log_warn("%s: unable to kill group %d", c->key, c->pid);
	c->heartbeat_ms = now; /* once: the reap follows */
}

static void
idle_expired(struct daemon *d, struct child *c, uint64_t now)
{
	log_info("%s: idle for %.3gs; stopping pid %d", c->key,
	    (double)(now - c->activity_ms) / 1000, c->pid);
	emit(d, c, "idle", json_pack("{s:i}", "pid", (int)c->pid));
	apply(d, c, svc_stop(&c->svc, now), true);
}

/*
 * C's due time has come: find which deadline it was.  A due time set
 * before a heartbeat or some activity may come early; C is then simply
 * placed again.  C may be freed.
 */
static void
child_timeout(struct daemon *d, struct child *c, uint64_t now)
{
	uint64_t sd = svc_next_deadline(&c->svc);

	if (sd != 0 && now >= sd) {
		apply(d, c, svc_timeout(&c->svc, now), false);
		return;
	}
	if (c->ready_deadline_ms != 0 && now >= c->ready_deadline_ms) {
		not_ready(d, c, now);
		return;
	}
	if (is_live(c) && c->watchdog_ms != 0 &&
	    now >= c->heartbeat_ms + c->watchdog_ms)
		watchdog_fired(d, c, now);
	else if (is_live(c) && c->ttl_ms != 0 &&
	    now >= c->activity_ms + c->ttl_ms) {
		idle_expired(d, c, now);
		return;
	}
	heap_fix(d, c);
}

/* Requests. */

static void
reply_error(struct daemon *d, uint32_t client, const char *code,
    const struct child *c, const char *key, const char *msg)
{
	uint32_t gen = d->clients[client]->gen;
	json_t  *v = json_pack("{s:b, s:s, s:s}", "ok", 0, "code", code,
	     "error", msg);

	if (v != NULL && key != NULL)
		json_object_set_new(v, "key", json_string(key));
	if (v != NULL && c != NULL) {
		json_object_set_new(v, "pid", json_integer(c->pid));
		json_object_set_new(v, "state",
		    json_string(svc_state_name(c->svc.state)));
	}
	ctl_reply(d, client, gen, v);
}

/* start or ensure of a key that is already supervised. */
static void
start_existing(struct daemon *d, const struct req *rq, struct child *c,
    uint32_t client)
{
	char msg[96];

	if (rq->op == REQ_ENSURE) {
		if (c->pid > 0 && c->svc.state != SVC_STOPPING) {
			json_t *v = pid_json(d, c);

			json_object_set_new(v, "started", json_false());
			ctl_reply(d, client, d->clients[client]->gen, v);
			return;
		}
		if (c->svc.state != SVC_STOPPING) {
			/* Backoff, failed, deferred: make it run now. */
			sup_add_waiter(c, WAIT_RUNNING, client,
			    d->clients[client]->gen);
			apply(d, c, svc_request_restart(&c->svc, now_ms()), true);
			return;
		}
	}
	if (c->pid > 0)
		snprintf(msg, sizeof(msg), "already started (pid %d)", c->pid);
	else
		snprintf(msg, sizeof(msg), "already started (%s, no process)",
		    svc_state_name(c->svc.state));
	reply_error(d, client, "already_started", c, c->key, msg);
}

static void
start_failed(struct daemon *d, uint32_t client, const struct child *c,
    int rc, enum spawn_stage stage, pid_t holder)
{
	char msg[128];

	if (rc == -EEXIST) {
		snprintf(msg, sizeof(msg),
		    "already started (pid %d, by another supervisor)", holder);
		reply_error(d, client, "already_started", NULL, c->key, msg);
	} else if (rc == -ENOSPC) {
		reply_error(d, client, "capacity", NULL, c->key,
		    "registry capacity reached");
	} else if (stage == SPAWN_EXEC) {
		snprintf(msg, sizeof(msg), "unable to execute %s: %s", c->cmd,
		    strerror(-rc));
		reply_error(d, client, "exec", NULL, c->key, msg);
	} else {
		snprintf(msg, sizeof(msg), "unable to fork: %s", strerror(-rc));
		reply_error(d, client, "spawn", NULL, c->key, msg);
	}
}

/* How long a --wait-ready start waits for READY: request, kind, 10 s. */
static uint64_t
ready_timeout(const struct req *rq, const struct kindinfo *ki)
{
	if (rq->set & REQ_SET_READY_TIMEOUT)
		return rq->ready_timeout_ms;
	return ki != NULL ? ki->k->ready_timeout_ms : 10000;
}

void
sup_start(struct daemon *d, const struct req *rq, uint32_t client)
{
	enum spawn_stage stage;
	struct spec      sp;
	struct child    *c;
	const char      *code;
	pid_t            holder = 0;
	char             msg[128];
	json_t          *v;
	int              rc;

	if ((c = sup_find(d, rq->key, rq->keylen)) != NULL) {
		start_existing(d, rq, c, client);
		return;
	}
	if (d->nchildren >= d->max_children) {
		reply_error(d, client, "capacity", NULL, rq->key,
		    "max_children reached");
		return;
	}
	if ((code = resolve(d, rq, &sp, msg, sizeof(msg))) != NULL) {
		reply_error(d, client, code, NULL, rq->key, msg);
		conf_argv_free(sp.expanded);
		return;
	}
	c = child_new(rq, &sp);
	conf_argv_free(sp.expanded);
	if (c == NULL || child_add(d, c) < 0) {
		free(c);
		reply_error(d, client, "internal", NULL, rq->key,
		    "out of memory");
		return;
	}
	rc = child_spawn(d, c, &stage, &holder);
	if (rc < 0) {
		start_failed(d, client, c, rc, stage, holder);
		child_free(d, c);
		return;
	}
	adopt_waits(d, c);
	started(d, c);
	if (rq->wait_ready || (sp.ki != NULL && sp.ki->k->ready_fd)) {
		/* The reply waits for READY (or the timeout, or an exit). */
		d->clients[client]->busy = true;
		sup_add_waiter(c, WAIT_STARTED, client, d->clients[client]->gen);
		c->ready_deadline_ms = now_ms() + ready_timeout(rq, sp.ki);
		heap_fix(d, c);
		return;
	}
	heap_fix(d, c); /* its idle lifetime and watchdog, if it has them */
	v = pid_json(d, c);
	json_object_set_new(v, "started", json_true());
	ctl_reply(d, client, d->clients[client]->gen, v);
}

void
sup_stop(struct daemon *d, struct child *c, uint32_t client)
{
	struct svc_effects fx = svc_stop(&c->svc, now_ms());

	if (fx.action == SVC_ACT_FORGET && c->pid == 0) {
		/* Backoff or failed: no process to wait for. */
		ctl_reply(d, client, d->clients[client]->gen,
		    json_pack("{s:b, s:s, s:i}", "ok", 1, "key", c->key, "pid",
		        0));
		apply(d, c, fx, true);
		return;
	}
	sup_add_waiter(c, WAIT_STOPPED, client, d->clients[client]->gen);
	if (fx.action == SVC_ACT_SIGNAL)
		log_info("%s: stopping pid %d", c->key, c->pid);
	apply(d, c, fx, true);
}

void
sup_restart(struct daemon *d, struct child *c, uint32_t client)
{
	sup_add_waiter(c, WAIT_RESTARTED, client, d->clients[client]->gen);
	apply(d, c, svc_request_restart(&c->svc, now_ms()), true);
}

/* Reaping. */

/* Release C's name: the first thing done for an exited worker. */
static void
release(struct daemon *d, struct child *c)
{
	int rc = kv_reg_unregister(d->reg, c->key, c->keylen, c->pid);

	if (rc < 0 && rc != -ENOENT)
		log_warnx("%s: unable to release the name of pid %d: %s",
		    c->key, c->pid, kv_reg_strerror(rc));
}

static void
reaped(struct daemon *d, struct child *c, int status)
{
	struct svc_exit ex = svc_exit_from_status(status);
	char            how[96];

	unlink_from(&d->by_pid[pid_slot(d, c->pid)], c, true);
	chan_close(d, c);
	c->last_pid = c->pid;
	c->pid = 0;
	c->exited = true;
	c->svc.last = ex;
	d->nrunning--;
	svc_exit_describe(&ex, how, sizeof(how));
	log_info("%s: pid %d %s", c->key, c->last_pid, how);
	emit(d, c, "exited", json_pack("{s:i, s:o}", "pid", (int)c->last_pid,
	    "exit", proto_exit_json(&ex)));
	if (c->ready_deadline_ms != 0) {
		/* A start that waited for READY failed: forget the key. */
		char msg[160];

		snprintf(msg, sizeof(msg), "exited before it was ready: %s", how);
		fail_start(d, c, "exited", msg);
		child_free(d, c);
		return;
	}
	apply(d, c, svc_exited(&c->svc, &ex, now_ms()), false);
}

/*
 * RELEASE BEFORE REAP
 *
 * Once waitpid() has reaped a worker its pid is gone from /proc and the
 * kernel may hand it out again, so its name must leave the registry first:
 * a lookup between the two would return a dead pid.  Each exited child is
 * therefore looked at with waitid(WNOWAIT), which leaves it a zombie; a
 * keyed worker's name is released; only then is it reaped.
 *
 * Returns false when ID names no exited child (P_ALL: none at all).
 */
static bool
reap_one(struct daemon *d, idtype_t type, pid_t id)
{
	siginfo_t     si;
	struct child *c;
	int           status;

	memset(&si, 0, sizeof(si));
	if (waitid(type, (id_t)id, &si, WEXITED | WNOHANG | WNOWAIT) == -1 ||
	    si.si_pid == 0)
		return false;
	c = pid_find(d, si.si_pid);
	if (c != NULL)
		release(d, c);
	if (waitpid(si.si_pid, &status, 0) != si.si_pid) {
		log_warn("unable to reap pid %d", (int)si.si_pid);
		return false;
	}
	if (c != NULL)
		reaped(d, c, status);
	else if (si.si_pid == d->main_pid)
		daemon_main_exited(d, status);
	else
		d->orphans++; /* not a keyed worker: reaped, no more */
	return true;
}

/*
 * Reap what has exited.  HINT is the pid a SIGCHLD named (0: none): it is
 * reaped first, by pid, because waitid(P_ALL) walks every child of the
 * daemon in the kernel (hundreds of microseconds with ten thousand
 * workers) and a crashed worker should not wait for that to be restarted.
 * SIGCHLDs coalesce, so the sweep still follows, until nothing is left.
 */
void
sup_reap(struct daemon *d, pid_t hint)
{
	if (hint > 0)
		(void)reap_one(d, P_PID, hint);
	while (reap_one(d, P_ALL, 0))
		;
}

void
sup_timers(struct daemon *d, uint64_t now)
{
	while (d->nheap > 0 && d->heap[0]->due <= now) {
		struct child *c = d->heap[0];

		heap_remove(d, c);
		child_timeout(d, c, now);
	}
}

void
sup_shutdown(struct daemon *d)
{
	uint32_t i;

	for (i = 0; i < d->nbuckets; i++) {
		struct child *c, *next;

		for (c = d->by_key[i]; c != NULL; c = next) {
			next = c->next_key;
			apply(d, c, svc_stop(&c->svc, now_ms()), true);
		}
	}
}

/* Views. */

static void worker_extras(const struct daemon *d, const struct child *c,
    json_t *v, uint64_t now);

json_t *
sup_worker_json(const struct daemon *d, const struct child *c)
{
	json_t     *v, *argv = json_array();
	const char *p = c->cmd;
	uint64_t    now = now_ms();
	char        why[256];
	uint32_t    i;

	for (i = 0; i < c->argc; i++, p += strlen(p) + 1)
		json_array_append_new(argv, json_string(p));
	v = json_pack("{s:s, s:i, s:i, s:s, s:i, s:f, s:s, s:s, s:o, s:o}",
	    "key", c->key, "pid", (int)c->pid, "pgid", (int)c->pid, "state",
	    svc_state_name(c->svc.state), "incarnation",
	    (int)c->svc.incarnation, "uptime",
	    c->pid > 0 ? (double)(now - c->svc.started_ms) / 1000 : 0.0,
	    "restart", svc_restart_name(c->svc.policy.restart), "kind",
	    c->kind, "argv", argv, "last_exit", exit_json(c));
	if (v == NULL)
		return NULL;
	if (c->cwd != NULL)
		json_object_set_new(v, "cwd", json_string(c->cwd));
	if (c->svc.state == SVC_BACKOFF && c->svc.deadline_ms > now)
		json_object_set_new(v, "backoff_left",
		    json_real((double)(c->svc.deadline_ms - now) / 1000));
	if (c->svc.state == SVC_FAILED) {
		svc_reason(&c->svc, why, sizeof(why));
		json_object_set_new(v, "reason", json_string(why));
	}
	worker_extras(d, c, v, now);
	return v;
}

/* The value a worker published, as text when it is UTF-8, else base64. */
static void
value_json(json_t *v, const struct kv_entry *e)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char   out[(KV_VALUE_MAX + 2) / 3 * 4 + 1];
	size_t i, n = 0;

	if (e->valuelen == 0)
		return;
	if (memchr(e->value, '\0', e->valuelen) == NULL) {
		json_t *str = json_stringn((const char *)e->value, e->valuelen);

		if (str != NULL) { /* NULL: not UTF-8 */
			json_object_set_new(v, "value", str);
			return;
		}
	}
	for (i = 0; i < e->valuelen; i += 3) {
		uint32_t w = (uint32_t)e->value[i] << 16;
		size_t   left = e->valuelen - i;

		w |= left > 1 ? (uint32_t)e->value[i + 1] << 8 : 0;
		w |= left > 2 ? e->value[i + 2] : 0;
		out[n++] = b64[w >> 18 & 63];
		out[n++] = b64[w >> 12 & 63];
		out[n++] = left > 1 ? b64[w >> 6 & 63] : '=';
		out[n++] = left > 2 ? b64[w & 63] : '=';
	}
	out[n] = '\0';
	json_object_set_new(v, "value_base64", json_string(out));
}

/* What the worker channel and the kind add to a WORKER object. */
static void
worker_extras(const struct daemon *d, const struct child *c, json_t *v,
    uint64_t now)
{
	struct kv_entry e;

	if (c->pid > 0 && kv_reg_get(d->reg, c->key, c->keylen, &e) == 0 &&
	    e.pid == c->pid) {
		value_json(v, &e);
		json_object_set_new(v, "published",
		    json_boolean(e.flags & KV_ENTRY_PUBLISHED));
	}
	if (c->message != NULL)
		json_object_set_new(v, "message", json_string(c->message));
	if (is_live(c) && c->ttl_ms != 0)
		json_object_set_new(v, "ttl_left",
		    json_real((double)(int64_t)(c->activity_ms + c->ttl_ms - now) /
		        1000));
	if (is_live(c) && c->watchdog_ms != 0)
		json_object_set_new(v, "watchdog_left",
		    json_real((double)(int64_t)(c->heartbeat_ms + c->watchdog_ms -
		                  now) / 1000));
}

json_t *
sup_kinds_json(const struct daemon *d)
{
	json_t *arr = json_array();
	size_t  i, j;

	for (i = 0; arr != NULL && i < d->nkinds; i++) {
		const struct conf_kind *k = d->kinds[i].k;
		json_t                 *cmd = json_array();

		for (j = 0; j < k->argc; j++)
			json_array_append_new(cmd, json_string(k->argv[j]));
		json_array_append_new(arr,
		    json_pack("{s:s, s:o, s:s, s:i, s:i, s:s?, s:s, s:s, s:f, "
		              "s:f}",
		        "name", k->name, "command", cmd, "restart",
		        svc_restart_name(k->policy.restart), "running",
		        (int)d->kinds[i].count, "max_children",
		        (int)k->max_children, "user", k->user_name, "ready",
		        k->ready_fd ? "fd" : "none", "publish",
		        k->publish_ready ? "ready" : "start", "ttl",
		        (double)k->ttl_ms / 1000, "watchdog",
		        (double)k->watchdog_ms / 1000));
	}
	return arr;
}

static int
by_key(const void *a, const void *b)
{
	const struct child *x = *(struct child *const *)a;
	const struct child *y = *(struct child *const *)b;

	return strcmp(x->key, y->key);
}

/* The children whose key matches PATTERN (NULL: all), sorted by key. */
int
sup_list(struct daemon *d, const char *pattern, struct child ***out)
{
	struct child **v = malloc((d->nchildren + 1) * sizeof(*v));
	uint32_t       i, n = 0;

	if (v == NULL)
		return -ENOMEM;
	for (i = 0; i < d->nbuckets; i++) {
		struct child *c;

		for (c = d->by_key[i]; c != NULL; c = c->next_key)
			if (pattern == NULL || fnmatch(pattern, c->key, 0) == 0)
				v[n++] = c;
	}
	qsort(v, n, sizeof(*v), by_key);
	*out = v;
	return (int)n;
}
