/*
 * probe_kv: the C timing loops of peer_keyvisor.py (the shared ones are in
 * probe.h).  An item is a key; its pid is what kv_reg_lookup() finds in
 * keyvisord's shared-memory registry through the public API
 * (keyvisor/registry.h), so that a lookup costs a few hundred nanoseconds
 * and no system call.  peer_keyvisor.py compiles it at run time:
 *
 *   cc -Wall -Wextra -Werror -O2 -I DIR -I SRC/shm/include probe_kv.c \
 *       BUILD/shm/libkvshm.a -pthread -lrt
 *
 * Usage (SEGMENT is the registry's name without the slash, such as
 * "keyvisor.peers-123"; OWNER is keyvisord's pid: a lookup counts only if
 * the entry's owner is OWNER):
 *
 *   probe_kv SEGMENT OWNER COMMAND ...
 *       One of the commands of probe.h, or:
 *   probe_kv SEGMENT OWNER start-api LIST TIMEOUT_S SOCKET -- ARGV ...
 *       Start the one key of LIST as a program does: connect to keyvisord's
 *       control SOCKET, send one "start" request (keyvisor-protocol(7)) for
 *       the key with ARGV as its command, read the reply, then poll the
 *       registry until the key shows a live pid, which must be the reply's.
 *       Timed from before the connect; prints what probe.h's wait prints,
 *       and "reply PID".
 */
#define PROBE_NAME "probe_kv"
#include "probe.h"

#include <sys/socket.h>
#include <sys/un.h>

#include "keyvisor/registry.h"

static struct kv_reg *reg;
static pid_t          owner;

/* The pid the registry shows for KEY, published by our daemon; or 0. */
static pid_t
probe_pid(const char *key)
{
	struct kv_entry e;

	if (kv_reg_lookup(reg, key, strlen(key), &e) != 0 || e.pid <= 0 ||
	    e.owner != owner)
		return 0;
	return e.pid;
}

/* Append S to BUF[*LEN..CAP) as a JSON string; die if it does not fit. */
static void
json_string(char *buf, size_t *len, size_t cap, const char *s)
{
	size_t n = *len;

	for (buf[n++] = '"'; *s != '\0' && n + 8 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)c;
		} else if (c < 0x20) {
			n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
		} else {
			buf[n++] = (char)c;
		}
	}
	if (*s != '\0' || n + 2 >= cap)
		die("start request too long");
	buf[n++] = '"';
	*len = n;
}

static int
cmd_start_api(const char *sock, uint64_t timeout, char **argv)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char               req[65536], reply[4096];
	size_t             len = 0, got = 0;
	const char        *p;
	uint64_t           t0;
	ssize_t            r;
	int                fd, i;

	if (nitems != 1)
		die("start-api takes one key");
	if (strlen(sock) >= sizeof(sa.sun_path))
		die("%s: too long for a socket path", sock);
	strcpy(sa.sun_path, sock);
	/* {"op":"start","key":KEY,"argv":[ARG,...]} and a newline. */
	len = (size_t)snprintf(req, sizeof(req), "{\"op\":\"start\",\"key\":");
	json_string(req, &len, sizeof(req), items[0]);
	memcpy(req + len, ",\"argv\":[", 9);
	len += 9;
	for (i = 0; argv[i] != NULL; i++) {
		if (i > 0)
			req[len++] = ',';
		json_string(req, &len, sizeof(req), argv[i]);
	}
	if (len + 4 > sizeof(req))
		die("start request too long");
	memcpy(req + len, "]}\n", 3);
	len += 3;

	t0 = now_ns();
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1)
		die("connect %s: %s", sock, strerror(errno));
	for (p = req; p < req + len; p += r)
		if ((r = write(fd, p, (size_t)(req + len - p))) <= 0)
			die("write: %s", r < 0 ? strerror(errno) : "nothing written");
	/* One reply line. */
	while (got == 0 || memchr(reply, '\n', got) == NULL) {
		if (got == sizeof(reply) - 1)
			die("reply too long");
		if ((r = read(fd, reply + got, sizeof(reply) - 1 - got)) <= 0)
			die("read: %s", r < 0 ? strerror(errno) : "connection closed");
		got += (size_t)r;
	}
	close(fd);
	reply[got] = '\0';
	if (strncmp(reply, "{\"ok\":true", 10) != 0 ||
	    (p = strstr(reply, "\"pid\":")) == NULL)
		die("start %s: %s", items[0], reply);
	if ((r = wait_up(t0, timeout)) != 0)
		return (int)r;
	if (atol(p + 6) != (long)up_pid[0])
		die("the reply's pid %ld is not the registry's %d", atol(p + 6),
		    (int)up_pid[0]);
	printf("reply %ld\n", atol(p + 6));
	return 0;
}

int
main(int argc, char **argv)
{
	int rc;

	if (argc < 5) {
		fprintf(stderr, "usage: probe_kv SEGMENT OWNER COMMAND ...\n");
		return 2;
	}
	if ((rc = kv_reg_open(argv[1], KV_REG_RDONLY, &reg)) < 0)
		die("unable to map /%s: %s", argv[1], kv_reg_strerror(rc));
	owner = (pid_t)number(argv[2]);
	if (strcmp(argv[3], "start-api") == 0 && argc >= 9) {
		load_items(argv[4]);
		rc = cmd_start_api(argv[6], number(argv[5]) * NS_PER_S,
		    after_dashes(argc, argv, 7));
	} else {
		rc = probe_main(argc - 2, argv + 2);
	}
	fflush(stdout);
	kv_reg_close(reg);
	return rc;
}
