/*
 * conf: keyvisor.conf, the daemon's configuration file, as plain structs.
 *
 * The file is INI (libinih) with a [keyvisord] section for the daemon and
 * one [kind NAME] section per kind of worker; keyvisor.conf(5) and the
 * shared spec (config.md) list the keys.  conf_parse() reads it into a
 * struct conf or refuses it with one line naming FILE:LINE, the section
 * and the key, as "FILE:LINE: [kind K]: key: what".  Nothing is kept from
 * a refused file, so a reload that fails leaves the running configuration
 * alone.
 *
 * Pure but for the user and group database (getpwnam_r(3) and the like),
 * which is consulted at load time so that an unknown user is an error in
 * the file rather than a failure of every spawn.  conf_load() also reads
 * the file.  Nothing here logs.
 */
#ifndef KEYVISOR_SUPERVISORD_CONF_H
#define KEYVISOR_SUPERVISORD_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "keyvisor/registry.h"
#include "svc.h"

#define CONF_LIMIT_MAX 16   /* limit_* keys a kind can hold (9 exist) */
#define CONF_KINDS_MAX 1024 /* kind sections in a file */
#define CONF_ENV_MAX   1024 /* environment variables of a kind */
#define CONF_FILE_MAX  (1024 * 1024) /* bytes conf_load() reads */

struct conf_limit {
	int           resource; /* RLIMIT_* */
	struct rlimit lim;
};

/*
 * One [kind NAME] section.  Strings and arrays are owned by the struct conf
 * it belongs to.  Durations are milliseconds, 0 meaning none.
 */
struct conf_kind {
	char              name[KV_KIND_MAX + 1];
	char            **argv; /* the command, unexpanded; NULL-terminated */
	size_t            argc; /* 0: none, a start must then give one */
	struct svc_policy policy;
	uint32_t          max_children; /* 0: no limit of its own */
	bool              has_user;     /* has_group is then true as well */
	bool              has_group;
	uid_t             uid;
	gid_t             gid;       /* group, or the user's primary group */
	char             *user_name; /* for initgroups(3); NULL if unknown */
	char             *directory; /* absolute; NULL: none */
	char            **env;       /* "NAME=VALUE"; NULL-terminated */
	size_t            envc;      /* each NAME once */
	bool              has_umask;
	mode_t            umask;
	struct conf_limit limits[CONF_LIMIT_MAX]; /* in the file's order */
	size_t            nlimits;
	uint64_t          ttl_ms;           /* idle lifetime */
	uint64_t          watchdog_ms;      /* heartbeat deadline */
	uint64_t          ready_timeout_ms; /* default 10000 */
	bool              ready_fd;         /* ready = fd */
	bool              publish_ready;    /* publish = ready */
	int               line;             /* of the section's header */
};

struct conf {
	char             *path;         /* the file's name, as in messages */
	char             *instance;     /* NULL if not set */
	char             *registry;     /* NULL if not set */
	char             *socket_group; /* as written; NULL if not set */
	bool              has_capacity;
	bool              has_max_children;
	uint32_t          capacity;
	uint32_t          max_children;
	bool              has_socket_gid; /* socket_group, resolved */
	gid_t             socket_gid;
	mode_t            registry_mode; /* default 0640 */
	int               log_level;     /* 0 error, 1 warn, 2 info, 3 debug */
	uint32_t          restart_rate;  /* default 1000; 0 = unlimited */
	uint32_t          restart_burst; /* default 100 */
	struct conf_kind *kinds;         /* in the file's order */
	size_t            nkinds;
};

/*
 * Read and parse the file PATH.  Returns 0 with a new struct conf in *OUT,
 * or -errno with *OUT NULL and one line in ERR: -EINVAL for a file that is
 * not a valid configuration ("PATH:LINE: ..."), -ENOENT and the like when
 * it cannot be read ("unable to open PATH: ..."), -EFBIG beyond
 * CONF_FILE_MAX bytes, -ENOMEM.
 */
int conf_load(const char *path, struct conf **out, char *err, size_t errlen);

/*
 * The same on TEXT, NAME standing for the file in messages (tests,
 * fuzzing).  TEXT ends at its first NUL.
 */
int conf_parse(const char *text, const char *name, struct conf **out, char *err,
    size_t errlen);

/* Free C and all it holds.  NULL-safe; returns NULL. */
struct conf *conf_free(struct conf *c);

/* The kind called NAME, or NULL. */
const struct conf_kind *conf_kind(const struct conf *c, const char *name);

/*
 * Split S into words as sh(1) would, without expanding anything: blanks
 * separate words, '...' quotes everything, "..." quotes everything but
 * backslash before $ ` " \ or a newline, and a backslash outside quotes
 * takes the next character literally.  Other characters, the shell's
 * special ones included (| ; $ * #), are plain word characters.  Returns 0
 * with a NULL-terminated array of *ARGC words in *ARGV (one allocation:
 * free it with conf_argv_free()), or -EINVAL with the reason in ERR
 * ("unterminated double quote", ...), or -ENOMEM.
 */
int conf_split(
    const char *s, char ***argv, size_t *argc, char *err, size_t errlen);

/*
 * A copy of ARGV (ARGC words) with "%k" replaced by KEY and "%%" by "%",
 * in one pass, so that a '%' inside KEY stays as it is.  Any other '%' is
 * copied as it is (conf_parse() refuses them in commands, so for a kind's
 * command this never happens).  NULL-terminated, in one allocation: free it
 * with conf_argv_free().  NULL only when memory runs out.
 */
char **conf_expand(char *const *argv, size_t argc, const char *key);

/* Free what conf_split() or conf_expand() returned.  NULL-safe. */
void conf_argv_free(char **argv);

#endif /* KEYVISOR_SUPERVISORD_CONF_H */
