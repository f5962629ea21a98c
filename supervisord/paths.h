/*
 * Where an instance lives: its name, control socket and registry segment.
 * Shared by keyvisord and keyvisor so that both always agree.
 */
#ifndef KEYVISOR_SUPERVISORD_PATHS_H
#define KEYVISOR_SUPERVISORD_PATHS_H

#include <stddef.h>

#define PATHS_NAME_MAX 64

/*
 * Is NAME a valid instance or registry name: 1..PATHS_NAME_MAX bytes of
 * [A-Za-z0-9._-], not starting with '.'?
 */
int paths_name_ok(const char *name);

/* The instance name: ARG if not NULL, else $KEYVISOR_INSTANCE, else "default". */
const char *paths_instance(const char *arg);

/*
 * The control socket's path for INSTANCE into BUF: $KEYVISOR_SOCKET if set,
 * else /run/keyvisor/INSTANCE.sock for root, else
 * $XDG_RUNTIME_DIR/keyvisor/INSTANCE.sock, else
 * /tmp/keyvisor-UID/INSTANCE.sock.  Returns 0 or -ENAMETOOLONG.
 */
int paths_socket(const char *instance, char *buf, size_t len);

/* The shm segment name ("keyvisor.REGISTRY") into BUF.  0 or -errno. */
int paths_segment(const char *registry, char *buf, size_t len);

#endif /* KEYVISOR_SUPERVISORD_PATHS_H */
