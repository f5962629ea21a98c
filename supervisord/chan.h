/*
 * chan: messages on a worker's channel (keyvisor-protocol(7), "The worker
 * channel").  Pure: chan_parse() turns one message into a typed value.
 */
#ifndef KEYVISOR_SUPERVISORD_CHAN_H
#define KEYVISOR_SUPERVISORD_CHAN_H

#include <stddef.h>
#include <stdint.h>

#include "keyvisor/registry.h"

#define CHAN_MSG_MAX    1024 /* bytes in one message */
#define CHAN_STATUS_MAX 200  /* bytes of STATUS text */

enum chan_kind {
	CHAN_READY,
	CHAN_HEARTBEAT,
	CHAN_TOUCH,
	CHAN_VALUE,
	CHAN_STATUS,
};

struct chan_msg {
	enum chan_kind kind;
	size_t         len;                /* VALUE: bytes; STATUS: text */
	uint8_t        value[KV_VALUE_MAX]; /* VALUE */
	char           text[CHAN_STATUS_MAX + 1]; /* STATUS, NUL-terminated */
};

/*
 * Parse the LEN bytes at MSG (one trailing newline allowed).  Returns 0,
 * or -EINVAL for anything that is not a valid message of this version.
 */
int chan_parse(const char *msg, size_t len, struct chan_msg *out);

#endif /* KEYVISOR_SUPERVISORD_CHAN_H */
