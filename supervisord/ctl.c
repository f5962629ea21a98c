/*
 * ctl: the control socket.  Clients are non-blocking; each has an input
 * buffer bounded by PROTO_LINE_MAX and an output buffer.  Requests are
 * handled in order, one reply each; a request whose reply must wait (stop,
 * restart, wait) marks the client busy, and its later requests stay unread
 * in the buffer until that reply is sent, so replies never reorder.
 *
 * Nobody can stall the loop: a client that sends faster than it reads is
 * paused once CLIENT_OUT_PAUSE bytes of replies are queued for it, and a
 * watcher that does not read loses events beyond WATCH_OUT_MAX (it is told
 * which, by sequence number, once it catches up).
 */
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"

#define CLIENT_OUT_PAUSE (4u << 20) /* stop reading a client's requests */
#define WATCH_OUT_MAX    (1u << 20) /* drop a watcher's events beyond */
#define CLIENTS_MAX      4096
#define READ_CHUNK       65536

/*
 * An fd held back for hard times: when accept() fails for want of fds, it
 * is closed so that the waiting client can be accepted, told why and let
 * go, instead of waiting on a daemon that cannot answer it.
 */
static int spare = -1;

static void
spare_take(void)
{
	if (spare < 0)
		spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/*
 * Out of fds: refuse the next waiting client with a reply.  Returns 0 when
 * one was refused, 1 when none was waiting, -1 when there is no spare.
 */
static int
refuse_one(int listenfd)
{
	static const char no[] = "{\"ok\":false,\"code\":\"capacity\","
	                         "\"error\":\"keyvisord is out of file "
	                         "descriptors\"}\n";
	int fd;

	if (spare < 0)
		return -1;
	close(spare);
	spare = -1;
	fd = accept4(listenfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd >= 0) {
		(void)!send(fd, no, sizeof(no) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		close(fd);
	}
	spare_take();
	return fd >= 0 ? 0 : errno == EAGAIN ? 1 : -1;
}

int
ctl_listen(struct daemon *d)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV(TAG_LISTEN, 0)};
	mode_t             old;
	int                fd, r;

	if (strlen(d->socket_path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, d->socket_path, strlen(d->socket_path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1)
		return -errno;
	/* The caller holds the instance lock, so a socket here is stale. */
	if (unlink(d->socket_path) == 0)
		log_info("removed the stale socket %s", d->socket_path);
	old = umask(0117);
	r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (r == -1 || listen(fd, 512) == -1 ||
	    epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
		r = -errno;
		close(fd);
		return r;
	}
	d->listenfd = fd;
	spare_take();
	return 0;
}

/* Buffers. */

static int
buf_reserve(struct buf *b, size_t more)
{
	size_t cap;
	char  *p;

	if (b->off > 0 && b->len + more > b->cap) {
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->len + more <= b->cap)
		return 0;
	for (cap = b->cap ? b->cap : 4096; cap < b->len + more; cap *= 2)
		;
	if ((p = realloc(b->p, cap)) == NULL)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static void
buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static size_t
pending(const struct buf *b)
{
	return b->len - b->off;
}

/* Clients. */

static struct client *
client_get(struct daemon *d, uint32_t slot, uint32_t gen)
{
	struct client *cl;

	if (slot >= d->clientcap || (cl = d->clients[slot]) == NULL)
		return NULL;
	return cl->gen == gen ? cl : NULL;
}

static void
client_close(struct daemon *d, uint32_t slot)
{
	struct client *cl = d->clients[slot];

	if (cl == NULL)
		return;
	if (cl->watching)
		d->nwatchers--;
	sup_drop_client(d, slot);
	close(cl->fd); /* also removes it from the epoll set */
	buf_free(&cl->in);
	buf_free(&cl->out);
	free(cl->pattern);
	free(cl);
	d->clients[slot] = NULL;
	d->nclients--;
}

static void
client_arm(struct daemon *d, uint32_t slot)
{
	struct client     *cl = d->clients[slot];
	struct epoll_event ev = {.data.u64 = EV(TAG_CLIENT, slot)};

	if (!cl->paused && !cl->busy && !cl->closing)
		ev.events |= EPOLLIN;
	if (pending(&cl->out) > 0)
		ev.events |= EPOLLOUT;
	(void)epoll_ctl(d->epfd, EPOLL_CTL_MOD, cl->fd, &ev);
}

static void client_input(struct daemon *d, uint32_t slot);

/* Send what is queued.  Returns -1 if the client was closed. */
static int
client_flush(struct daemon *d, uint32_t slot)
{
	struct client *cl = d->clients[slot];

	while (pending(&cl->out) > 0) {
		ssize_t n = send(cl->fd, cl->out.p + cl->out.off,
		    pending(&cl->out), MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			break;
		if (n <= 0) {
			client_close(d, slot);
			return -1;
		}
		cl->out.off += (size_t)n;
	}
	if (pending(&cl->out) == 0) {
		cl->out.off = cl->out.len = 0;
		if (cl->closing) {
			client_close(d, slot);
			return -1;
		}
		if (cl->missed_from != 0) {
			char line[128];
			int  n = snprintf(line, sizeof(line),
			     "{\"event\":\"overflow\",\"seq\":%llu,"
			     "\"missed_from\":%llu,\"missed_to\":%llu}\n",
			     (unsigned long long)d->seq++,
			     (unsigned long long)cl->missed_from,
			     (unsigned long long)cl->missed_to);

			cl->missed_from = cl->missed_to = 0;
			if (buf_reserve(&cl->out, (size_t)n) == 0) {
				memcpy(cl->out.p + cl->out.len, line, (size_t)n);
				cl->out.len += (size_t)n;
			}
		}
	}
	if (cl->paused && pending(&cl->out) < CLIENT_OUT_PAUSE / 2)
		cl->paused = false;
	client_arm(d, slot);
	return 0;
}

static void
client_queue(struct daemon *d, uint32_t slot, const char *s, size_t n)
{
	struct client *cl = d->clients[slot];

	if (buf_reserve(&cl->out, n) < 0) {
		log_warnx("out of memory for a reply; closing a client");
		client_close(d, slot);
		return;
	}
	memcpy(cl->out.p + cl->out.len, s, n);
	cl->out.len += n;
	if (pending(&cl->out) >= CLIENT_OUT_PAUSE)
		cl->paused = true;
}

void
ctl_reply(struct daemon *d, uint32_t slot, uint32_t gen, json_t *v)
{
	struct client *cl = client_get(d, slot, gen);
	size_t         n;
	char          *s;

	if (cl == NULL) { /* the client went away meanwhile */
		json_decref(v);
		return;
	}
	if (v == NULL)
		v = json_pack("{s:b, s:s, s:s}", "ok", 0, "code", "internal",
		    "error", "out of memory");
	s = proto_dump(v, &n);
	if (s == NULL)
		s = proto_error("internal", "out of memory", &n);
	if (s != NULL)
		client_queue(d, slot, s, n);
	free(s);
	if (d->clients[slot] == NULL)
		return;
	cl->busy = false;
	/* A reply that came later than its request frees the ones behind it. */
	if (client_flush(d, slot) == 0 && !cl->paused && !cl->reading)
		client_input(d, slot);
}

void
ctl_emit(struct daemon *d, const char *key, json_t *ev)
{
	uint64_t seq = d->seq++;
	uint32_t i;
	size_t   n = 0;
	char    *s = NULL;

	json_object_set_new(ev, "seq", json_integer((json_int_t)seq));
	if (d->nwatchers == 0) {
		json_decref(ev);
		return;
	}
	s = proto_dump(ev, &n);
	for (i = 0; s != NULL && i < d->clientcap; i++) {
		struct client *cl = d->clients[i];

		if (cl == NULL || !cl->watching ||
		    (cl->pattern && fnmatch(cl->pattern, key, 0) != 0))
			continue;
		if (cl->missed_from != 0 || pending(&cl->out) + n > WATCH_OUT_MAX) {
			if (cl->missed_from == 0)
				cl->missed_from = seq;
			cl->missed_to = seq;
			continue;
		}
		client_queue(d, i, s, n);
		if (d->clients[i] != NULL)
			client_flush(d, i);
	}
	free(s);
}

/*
 * Who may connect: root, the daemon's own uid, and with socket_group the
 * members of that group (primary or supplementary, from SO_PEERGROUPS).
 * Identity is the kernel's word, never the client's.
 */
static bool
peer_allowed(const struct daemon *d, int fd, const struct ucred *cr)
{
	gid_t     groups[256];
	socklen_t len = sizeof(groups);
	size_t    i;

	if (cr->uid == 0 || cr->uid == getuid())
		return true;
	if (!d->has_socket_gid)
		return false;
	if (cr->gid == d->socket_gid)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == -1)
		return false;
	for (i = 0; i < len / sizeof(groups[0]); i++)
		if (groups[i] == d->socket_gid)
			return true;
	return false;
}

void
ctl_accept(struct daemon *d)
{
	struct ucred       cr;
	socklen_t          len = sizeof(cr);
	struct client     *cl;
	struct epoll_event ev;
	uint32_t           slot;
	int                fd;

	for (;;) {
		fd = accept4(d->listenfd, NULL, NULL,
		    SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd == -1) {
			int e = errno, r = -1;

			if (e == EMFILE || e == ENFILE)
				r = refuse_one(d->listenfd);
			if (r == 0) {
				static uint64_t said; /* once a second */

				if (now_ms() >= said + 1000) {
					log_warnx("out of file descriptors: "
					          "refusing clients");
					said = now_ms();
				}
				continue;
			}
			if (r == -1 && (e == EMFILE || e == ENFILE)) {
				errno = e;
				log_warn("unable to accept a client; pausing");
				d->accept_paused_until = now_ms() + 1000;
				(void)epoll_ctl(d->epfd, EPOLL_CTL_DEL,
				    d->listenfd, NULL);
			}
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == -1 ||
		    !peer_allowed(d, fd, &cr)) {
			static const char no[] =
			    "{\"ok\":false,\"code\":\"permission\",\"error\":"
			    "\"permission denied\"}\n";

			(void)!send(fd, no, sizeof(no) - 1,
			    MSG_NOSIGNAL | MSG_DONTWAIT);
			close(fd);
			continue;
		}
		for (slot = 0; slot < d->clientcap && d->clients[slot]; slot++)
			;
		if (slot == d->clientcap) {
			uint32_t        cap = d->clientcap ? d->clientcap * 2 : 16;
			struct client **v;

			if (cap > CLIENTS_MAX ||
			    (v = reallocarray(d->clients, cap, sizeof(*v))) == NULL) {
				log_warnx("too many clients; refusing one");
				close(fd);
				continue;
			}
			memset(v + d->clientcap, 0,
			    (cap - d->clientcap) * sizeof(*v));
			d->clients = v;
			d->clientcap = cap;
		}
		if ((cl = calloc(1, sizeof(*cl))) == NULL) {
			close(fd);
			continue;
		}
		cl->fd = fd;
		cl->uid = cr.uid;
		cl->gen = ++d->gen;
		d->clients[slot] = cl;
		d->nclients++;
		ev.events = EPOLLIN;
		ev.data.u64 = EV(TAG_CLIENT, slot);
		if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
			client_close(d, slot);
	}
}

/* Requests. */

static void
reply_err(struct daemon *d, uint32_t slot, const char *code, const char *key,
    const char *msg)
{
	json_t *v = json_pack("{s:b, s:s, s:s}", "ok", 0, "code", code, "error",
	    msg);

	if (v != NULL && key != NULL && key[0] != '\0')
		json_object_set_new(v, "key", json_string(key));
	ctl_reply(d, slot, d->clients[slot]->gen, v);
}

static json_t *
info_json(struct daemon *d)
{
	struct kv_reg_stats st;

	kv_reg_stats(d->reg, &st);
	return json_pack("{s:b, s:s, s:i, s:s, s:s, s:s, s:f, s:i, s:i, s:i,"
	                 " s:i, s:I, s:I, s:b, s:b, s:i, s:I}",
	    "ok", 1, "version", KEYVISOR_VERSION, "pid", (int)d->pid,
	    "instance", d->instance, "registry", d->registry, "socket",
	    d->socket_path, "uptime", (double)(now_ms() - d->started_ms) / 1000,
	    "workers", (int)d->nchildren, "running", (int)d->nrunning,
	    "capacity", (int)d->capacity, "max_children", (int)d->max_children,
	    "orphans_reaped", (json_int_t)d->orphans, "restarts",
	    (json_int_t)d->restarts, "subreaper", d->subreaper, "pid1",
	    d->pid1, "registry_count", (int)st.count, "spawns",
	    (json_int_t)d->spawns);
}

static void
do_list(struct daemon *d, uint32_t slot, const struct req *rq)
{
	struct child **v;
	json_t        *arr;
	int            n, i;

	n = sup_list(d, rq->pattern, &v);
	if (n < 0) {
		reply_err(d, slot, "internal", NULL, "out of memory");
		return;
	}
	if (rq->op == REQ_COUNT) {
		free(v);
		ctl_reply(d, slot, d->clients[slot]->gen,
		    json_pack("{s:b, s:i}", "ok", 1, "count", n));
		return;
	}
	arr = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(arr, sup_worker_json(d, v[i]));
	free(v);
	ctl_reply(d, slot, d->clients[slot]->gen,
	    json_pack("{s:b, s:o}", "ok", 1, "workers", arr));
}

static void
do_watch(struct daemon *d, uint32_t slot, struct req *rq)
{
	struct client *cl = d->clients[slot];

	cl->watching = true;
	cl->pattern = rq->pattern;
	rq->pattern = NULL;
	d->nwatchers++;
	ctl_reply(d, slot, cl->gen,
	    json_pack("{s:b, s:I}", "ok", 1, "seq", (json_int_t)d->seq));
}

static void
do_wait(struct daemon *d, uint32_t slot, struct child *c,
    const struct req *rq)
{
	struct client *cl = d->clients[slot];
	enum wait_kind k = rq->gone ? WAIT_GONE
	                 : rq->ready ? WAIT_READY
	                             : WAIT_RUNNING;

	if (c == NULL && k == WAIT_GONE) {
		ctl_reply(d, slot, cl->gen, json_pack("{s:b, s:s, s:i}", "ok",
		    1, "key", rq->key, "pid", 0));
		return;
	}
	if (c == NULL) { /* wait for it to be started */
		if (sup_wait_key(d, rq->key, rq->keylen, k, slot) < 0)
			reply_err(d, slot, "internal", rq->key, "out of memory");
		else
			cl->busy = true;
		return;
	}
	if (sup_wait_done(c, k)) {
		ctl_reply(d, slot, cl->gen, json_pack("{s:b, s:s, s:i, s:s}",
		    "ok", 1, "key", c->key, "pid", (int)c->pid, "state",
		    svc_state_name(c->svc.state)));
		return;
	}
	cl->busy = true;
	sup_add_waiter(c, k, slot, cl->gen);
}

/* Requests on a key that must be supervised. */
static void
do_keyed(struct daemon *d, uint32_t slot, struct child *c,
    const struct req *rq)
{
	struct client *cl = d->clients[slot];

	if (c == NULL) {
		reply_err(d, slot, "not_found", rq->key, "not found");
		return;
	}
	switch (rq->op) {
	case REQ_STOP:
		cl->busy = true;
		sup_stop(d, c, slot);
		break;
	case REQ_RESTART:
		cl->busy = true;
		sup_restart(d, c, slot);
		break;
	case REQ_SIGNAL:
		if (c->pid <= 0) {
			reply_err(d, slot, "not_found", rq->key,
			    "no process running");
		} else if (kill(rq->group ? -c->pid : c->pid, rq->signo) == -1) {
			reply_err(d, slot, "internal", rq->key, strerror(errno));
		} else {
			ctl_reply(d, slot, cl->gen, json_pack("{s:b, s:s, s:i}",
			    "ok", 1, "key", c->key, "pid", (int)c->pid));
		}
		break;
	case REQ_STATUS:
		ctl_reply(d, slot, cl->gen, json_pack("{s:b, s:o}", "ok", 1,
		    "worker", sup_worker_json(d, c)));
		break;
	default:
		reply_err(d, slot, "internal", rq->key, "unhandled request");
		break;
	}
}

static void
do_reload(struct daemon *d, uint32_t slot)
{
	char err[512];

	if (daemon_reload(d, err, sizeof(err)) < 0)
		reply_err(d, slot, "config", NULL, err);
	else
		ctl_reply(d, slot, d->clients[slot]->gen, json_pack("{s:b, s:i}",
		    "ok", 1, "kinds", (int)d->nkinds));
}

static void
dispatch(struct daemon *d, uint32_t slot, struct req *rq)
{
	struct child *c = rq->keylen ? sup_find(d, rq->key, rq->keylen) : NULL;

	switch (rq->op) {
	case REQ_START:
	case REQ_ENSURE:
		if (d->quit)
			reply_err(d, slot, "stopping", rq->key,
			    "the daemon is shutting down");
		else
			sup_start(d, rq, slot);
		break;
	case REQ_STOP:
	case REQ_RESTART:
	case REQ_SIGNAL:
	case REQ_STATUS:
		do_keyed(d, slot, c, rq);
		break;
	case REQ_LS:
	case REQ_COUNT:
		do_list(d, slot, rq);
		break;
	case REQ_WAIT:
		do_wait(d, slot, c, rq);
		break;
	case REQ_INFO:
		ctl_reply(d, slot, d->clients[slot]->gen, info_json(d));
		break;
	case REQ_SHUTDOWN:
		ctl_reply(d, slot, d->clients[slot]->gen,
		    json_pack("{s:b}", "ok", 1));
		daemon_shutdown(d, "shutdown requested", true);
		break;
	case REQ_WATCH:
		do_watch(d, slot, rq);
		break;
	case REQ_KINDS:
		ctl_reply(d, slot, d->clients[slot]->gen,
		    json_pack("{s:b, s:o}", "ok", 1, "kinds", sup_kinds_json(d)));
		break;
	case REQ_RELOAD:
		do_reload(d, slot);
		break;
	case REQ_TOUCH:
		if (c == NULL) {
			reply_err(d, slot, "not_found", rq->key, "not found");
			break;
		}
		sup_touch(d, c);
		ctl_reply(d, slot, d->clients[slot]->gen, json_pack("{s:b, s:s}",
		    "ok", 1, "key", c->key));
		break;
	}
}

static void
handle_line(struct daemon *d, uint32_t slot, const char *line, size_t len)
{
	struct req     rq;
	char           err[256];
	enum proto_err e;

	e = proto_parse(line, len, &rq, err, sizeof(err));
	if (e != PROTO_OK) {
		reply_err(d, slot, proto_err_code(e), NULL, err);
		return;
	}
	dispatch(d, slot, &rq);
	proto_req_fini(&rq);
}

/*
 * Handle the complete lines in the input buffer, in order, until one makes
 * the client busy.  A line that outgrows PROTO_LINE_MAX gets one error
 * reply and the connection is closed after it.
 */
static void
client_input(struct daemon *d, uint32_t slot)
{
	struct client *cl = d->clients[slot];

	cl->reading = true;
	while ((cl = d->clients[slot]) != NULL && !cl->busy && !cl->closing &&
	    !cl->watching) {
		char  *start = cl->in.p + cl->in.off;
		char  *nl = memchr(start, '\n', pending(&cl->in));
		size_t n;

		if (nl == NULL) {
			if (pending(&cl->in) >= PROTO_LINE_MAX) {
				reply_err(d, slot, "usage", NULL,
				    "request longer than 65536 bytes");
				if (d->clients[slot] != NULL) {
					d->clients[slot]->closing = true;
					client_flush(d, slot);
				}
			}
			return;
		}
		n = (size_t)(nl - start);
		cl->in.off += n + 1;
		handle_line(d, slot, start, n);
	}
	if (cl == NULL)
		return;
	cl->reading = false;
	if (!cl->busy && pending(&cl->in) == 0)
		cl->in.off = cl->in.len = 0;
}

static void
client_read(struct daemon *d, uint32_t slot)
{
	struct client *cl = d->clients[slot];
	ssize_t        n;

	if (buf_reserve(&cl->in, READ_CHUNK) < 0) {
		client_close(d, slot);
		return;
	}
	n = recv(cl->fd, cl->in.p + cl->in.len, cl->in.cap - cl->in.len,
	    MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* EOF: replies still owed are dropped; nothing else is lost. */
		client_close(d, slot);
		return;
	}
	cl->in.len += (size_t)n;
	if (cl->watching) /* a watcher has nothing more to say */
		cl->in.off = cl->in.len = 0;
	else
		client_input(d, slot);
}

void
ctl_event(struct daemon *d, uint32_t slot, uint32_t events)
{
	if (slot >= d->clientcap || d->clients[slot] == NULL)
		return;
	if (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLIN)) {
		client_close(d, slot);
		return;
	}
	if ((events & EPOLLOUT) && client_flush(d, slot) < 0)
		return;
	if (events & EPOLLIN)
		client_read(d, slot);
	if (d->clients[slot] != NULL)
		client_arm(d, slot);
}

bool
ctl_flushed(const struct daemon *d)
{
	uint32_t i;

	for (i = 0; i < d->clientcap; i++)
		if (d->clients[i] != NULL && pending(&d->clients[i]->out) > 0)
			return false;
	return true;
}

void
ctl_close_all(struct daemon *d)
{
	uint32_t i;

	for (i = 0; i < d->clientcap; i++)
		client_close(d, i);
	free(d->clients);
	d->clients = NULL;
	d->clientcap = 0;
	if (d->listenfd >= 0) {
		close(d->listenfd);
		unlink(d->socket_path);
		d->listenfd = -1;
	}
}
