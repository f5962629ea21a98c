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
#include <sys/wait.h>

#include <errno.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "log.h"
#include "siphash.h"
#include "spawn.h"

extern char **environ;

static uint8_t map_seed[16];

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

/* The deadline heap: a min-heap of children by svc_next_deadline(). */

static uint64_t
deadline(const struct child *c)
{
	return svc_next_deadline(&c->svc);
}

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

	while (i > 0 && deadline(d->heap[(i - 1) / 2]) > deadline(c)) {
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
		if (l + 1 < d->nheap && deadline(d->heap[l + 1]) < deadline(d->heap[l]))
			m = l + 1;
		if (deadline(d->heap[m]) >= deadline(c))
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
	if (deadline(c) == 0)
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
	return d->nheap > 0 ? deadline(d->heap[0]) : 0;
}

/* Children. */

static struct child *
child_new(const struct req *rq)
{
	struct child *c;
	size_t        i, n = 0;
	char         *p;

	for (i = 0; i < rq->argc; i++)
		n += strlen(rq->argv[i]) + 1;
	c = calloc(1, sizeof(*c) + rq->keylen + 1);
	if (c == NULL)
		return NULL;
	c->cmd = malloc(n);
	c->cwd = rq->cwd != NULL ? strdup(rq->cwd) : NULL;
	if (c->cmd == NULL || (rq->cwd != NULL && c->cwd == NULL) ||
	    svc_init(&c->svc, &rq->policy) < 0) {
		free(c->cmd);
		free(c->cwd);
		free(c);
		return NULL;
	}
	for (i = 0, p = c->cmd; i < rq->argc; i++)
		p = stpcpy(p, rq->argv[i]) + 1;
	c->cmdlen = (uint32_t)n;
	c->argc = (uint32_t)rq->argc;
	memcpy(c->kind, rq->kind, sizeof(c->kind));
	c->keylen = (uint16_t)rq->keylen;
	memcpy(c->key, rq->key, rq->keylen + 1);
	return c;
}

static int
child_add(struct daemon *d, struct child *c)
{
	if (d->nchildren >= d->nbuckets && maps_grow(d) < 0)
		return -ENOMEM;
	link_key(d, c);
	d->nchildren++;
	return 0;
}

static void reply_waiters(struct daemon *d, struct child *c, enum wait_kind k,
    json_t *(*build)(const struct daemon *, const struct child *));

static json_t *gone_json(const struct daemon *d, const struct child *c);

/* Forget C: answer whoever waits on it, and free it. */
static void
child_free(struct daemon *d, struct child *c)
{
	struct waiter *w, *next;

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
	if (c->pid > 0)
		unlink_from(&d->by_pid[pid_slot(d, c->pid)], c, true);
	unlink_from(&d->by_key[key_slot(d, c->key, c->keylen)], c, false);
	d->nchildren--;
	svc_fini(&c->svc);
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
	e.flags = pid > 0 ? KV_ENTRY_PUBLISHED : 0;
	return e;
}

/* The argv and environment for C's exec.  Returns -ENOMEM on failure. */
struct exec_args {
	char **argv;
	char   vars[5][320];
};

static int
exec_args(struct daemon *d, const struct child *c, struct exec_args *a)
{
	const char *p = c->cmd;
	uint32_t    i;

	a->argv = calloc(c->argc + 1, sizeof(*a->argv));
	if (a->argv == NULL)
		return -ENOMEM;
	for (i = 0; i < c->argc; i++, p += strlen(p) + 1)
		a->argv[i] = (char *)p;
	snprintf(a->vars[0], sizeof(a->vars[0]), "KEYVISOR_KEY=%s", c->key);
	snprintf(a->vars[1], sizeof(a->vars[1]), "KEYVISOR_INSTANCE=%s",
	    d->instance);
	snprintf(a->vars[2], sizeof(a->vars[2]), "KEYVISOR_INCARNATION=%u",
	    c->svc.incarnation);
	snprintf(a->vars[3], sizeof(a->vars[3]), "KEYVISOR_SOCKET=%s",
	    d->socket_path);
	snprintf(a->vars[4], sizeof(a->vars[4]), "KEYVISOR_REGISTRY=%s",
	    d->registry);
	for (i = 0; i < 5; i++)
		d->env[d->envc + i] = a->vars[i];
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
	struct kv_entry  e = entry_of(d, c, 0), ex;
	struct exec_args a;
	struct spawn_req sr = {0};
	pid_t            pid;
	int              rc;

	*stage = SPAWN_FORK;
	rc = kv_reg_register(d->reg, &e, &ex);
	if (rc == -EEXIST)
		*holder = ex.pid;
	if (rc < 0)
		return rc;
	if ((rc = exec_args(d, c, &a)) < 0) {
		kv_reg_unregister(d->reg, c->key, c->keylen, 0);
		return rc;
	}
	sr.argv = a.argv;
	sr.envp = d->env;
	sr.cwd = c->cwd;
	sr.keep_fd = -1;
	pid = spawn_process(&sr, stage);
	free(a.argv);
	if (pid < 0) {
		kv_reg_unregister(d->reg, c->key, c->keylen, 0);
		return pid;
	}
	c->pid = pid;
	c->started_ns = realtime_ns();
	(void)kv_proc_start_time(pid, &c->start_time);
	e = entry_of(d, c, pid);
	e.start_time = c->start_time;
	if ((rc = kv_reg_replace(d->reg, 0, &e)) < 0)
		log_warnx("%s: unable to publish pid %d: %s", c->key, pid,
		    kv_reg_strerror(rc));
	link_pid(d, c);
	d->nrunning++;
	d->spawns++;
	c->last_pid = 0;
	svc_started(&c->svc, now_ms());
	return 0;
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

	if (!user && !svc_bucket_take(&d->bucket, now)) {
		svc_defer(&c->svc, svc_bucket_next_ms(&d->bucket, now));
		heap_fix(d, c);
		return;
	}
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

void
sup_start(struct daemon *d, const struct req *rq, uint32_t client)
{
	enum spawn_stage stage;
	struct child    *c;
	pid_t            holder = 0;
	json_t          *v;
	int              rc;

	if ((c = sup_find(d, rq->key, rq->keylen)) != NULL) {
		start_existing(d, rq, c, client);
		return;
	}
	if (rq->argv == NULL || rq->argc == 0) {
		reply_error(d, client, "usage", NULL, rq->key,
		    "no command given");
		return;
	}
	if (d->nchildren >= d->max_children) {
		reply_error(d, client, "capacity", NULL, rq->key,
		    "max_children reached");
		return;
	}
	if ((c = child_new(rq)) == NULL || child_add(d, c) < 0) {
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
	started(d, c);
	v = pid_json(d, c);
	json_object_set_new(v, "started", json_true());
	ctl_reply(d, client, d->clients[client]->gen, v);
}

void
sup_stop(struct daemon *d, struct child *c, uint32_t client)
{
	struct svc_effects fx = svc_stop(&c->svc, now_ms());

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

static void
reaped(struct daemon *d, struct child *c, int status)
{
	struct svc_exit ex = svc_exit_from_status(status);
	char            how[96];
	int             rc;

	/* First: from now on no lookup anywhere returns this pid. */
	rc = kv_reg_unregister(d->reg, c->key, c->keylen, c->pid);
	if (rc < 0 && rc != -ENOENT)
		log_warnx("%s: unable to release the name of pid %d: %s",
		    c->key, c->pid, kv_reg_strerror(rc));
	unlink_from(&d->by_pid[pid_slot(d, c->pid)], c, true);
	c->last_pid = c->pid;
	c->pid = 0;
	c->exited = true;
	c->svc.last = ex;
	d->nrunning--;
	svc_exit_describe(&ex, how, sizeof(how));
	log_info("%s: pid %d %s", c->key, c->last_pid, how);
	emit(d, c, "exited", json_pack("{s:i, s:o}", "pid", (int)c->last_pid,
	    "exit", proto_exit_json(&ex)));
	apply(d, c, svc_exited(&c->svc, &ex, now_ms()), false);
}

void
sup_reap(struct daemon *d)
{
	for (;;) {
		struct child *c;
		int           status;
		pid_t         pid = waitpid(-1, &status, WNOHANG);

		if (pid <= 0)
			break;
		if (pid == d->main_pid) {
			daemon_main_exited(d, status);
			continue;
		}
		c = pid_find(d, pid);
		if (c == NULL) {
			d->orphans++; /* not a keyed worker: reaped, no more */
			continue;
		}
		reaped(d, c, status);
	}
}

void
sup_timers(struct daemon *d, uint64_t now)
{
	while (d->nheap > 0 && deadline(d->heap[0]) <= now) {
		struct child *c = d->heap[0];

		heap_remove(d, c);
		apply(d, c, svc_timeout(&c->svc, now), false);
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
	return v;
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
