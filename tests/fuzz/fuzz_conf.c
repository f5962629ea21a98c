/*
 * Fuzz target for conf_parse() (supervisord/conf.c), keyvisor.conf's
 * parser, and the word splitter and %-expansion it uses for commands.
 * The input is the file's text (conf_parse() reads up to the first NUL).
 *
 * Checked besides crashes and leaks:
 *  - a refused file returns no conf and one line of printable ASCII that
 *    starts with the file's name; an accepted one holds what conf.h
 *    promises (NULL-terminated arrays with their counts, names of the
 *    right alphabet, soft limits under hard ones, absolute directories),
 *    and conf_kind() finds each kind by its name;
 *  - conf_split() on the same text: quoting every word it returns in '...'
 *    and splitting again gives the same words back;
 *  - conf_expand() agrees with a naive expansion of each word;
 *  - conf_load() on the same bytes (in a memfd) answers as conf_parse()
 *    did, or refuses a NUL byte.
 *
 * The user and group database is read (user = root and the like), as it is
 * by keyvisord: the parse is pure but for that.
 */
#include <sys/mman.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "fuzz.h"

#define KEY "user:42%k%%"

static void
check_reason(const char *err, const char *name)
{
	size_t i;

	FUZZ_CHECK(strncmp(err, name, strlen(name)) == 0);
	for (i = 0; err[i] != '\0'; i++)
		FUZZ_CHECK(err[i] >= 0x20 && err[i] < 0x7f);
}

/* WORD with "%k" replaced by KEY and "%%" by "%", in a new string. */
static char *
naive_expand(const char *word)
{
	size_t n = strlen(word), klen = strlen(KEY), i, o = 0;
	char  *s = malloc(n * (klen + 1) + 1);

	FUZZ_CHECK(s != NULL);
	for (i = 0; i < n; i++) {
		if (word[i] == '%' && word[i + 1] == 'k') {
			memcpy(s + o, KEY, klen);
			o += klen;
			i++;
		} else {
			s[o++] = word[i];
			if (word[i] == '%' && word[i + 1] == '%')
				i++;
		}
	}
	s[o] = '\0';
	return s;
}

static void
check_expand(char *const *argv, size_t argc)
{
	char **x = conf_expand(argv, argc, KEY);
	size_t i;

	FUZZ_CHECK(x != NULL);
	for (i = 0; i < argc; i++) {
		char *want = naive_expand(argv[i]);

		FUZZ_CHECK(strcmp(x[i], want) == 0);
		free(want);
	}
	FUZZ_CHECK(x[argc] == NULL);
	conf_argv_free(x);
}

static void
check_kind(const struct conf *c, const struct conf_kind *k)
{
	size_t i;

	FUZZ_CHECK(k->name[0] != '\0' && strlen(k->name) <= KV_KIND_MAX);
	FUZZ_CHECK(strspn(k->name, "abcdefghijklmnopqrstuvwxyz"
	                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") ==
	           strlen(k->name));
	FUZZ_CHECK(conf_kind(c, k->name) == k);
	if (k->argc > 0) {
		FUZZ_CHECK(k->argv != NULL && k->argv[k->argc] == NULL);
		for (i = 0; i < k->argc; i++)
			FUZZ_CHECK(k->argv[i] != NULL);
		check_expand(k->argv, k->argc);
	}
	for (i = 0; i < k->envc; i++)
		FUZZ_CHECK(k->env[i] != NULL && strchr(k->env[i], '=') != NULL);
	FUZZ_CHECK(k->envc == 0 || k->env[k->envc] == NULL);
	FUZZ_CHECK(k->envc <= CONF_ENV_MAX && k->nlimits <= CONF_LIMIT_MAX);
	for (i = 0; i < k->nlimits; i++)
		FUZZ_CHECK(
		    k->limits[i].lim.rlim_cur <= k->limits[i].lim.rlim_max);
	FUZZ_CHECK(k->directory == NULL || k->directory[0] == '/');
	FUZZ_CHECK(!k->has_user || k->has_group);
}

static void
check_conf(const struct conf *c, const char *name)
{
	size_t i;

	FUZZ_CHECK(strcmp(c->path, name) == 0);
	FUZZ_CHECK(c->nkinds <= CONF_KINDS_MAX);
	FUZZ_CHECK(c->log_level >= 0 && c->log_level <= 3);
	for (i = 0; i < c->nkinds; i++)
		check_kind(c, &c->kinds[i]);
	FUZZ_CHECK(conf_kind(c, "no such kind!") == NULL);
}

/* 'WORD' with each ' as '\'' : what sh(1) and conf_split() read back. */
static char *
quote_all(char *const *argv, size_t argc)
{
	size_t need = 1, i, o = 0;
	char  *s, *w;

	for (i = 0; i < argc; i++)
		need += 4 * strlen(argv[i]) + 3;
	FUZZ_CHECK((s = malloc(need)) != NULL);
	for (i = 0; i < argc; i++) {
		s[o++] = '\'';
		for (w = argv[i]; *w != '\0'; w++) {
			if (*w == '\'') {
				memcpy(s + o, "'\\''", 4);
				o += 4;
			} else {
				s[o++] = *w;
			}
		}
		s[o++] = '\'';
		s[o++] = ' ';
	}
	s[o] = '\0';
	return s;
}

static void
check_split(const char *text)
{
	char **v, **v2, err[128], *q;
	size_t n, n2, i;
	int    r;

	err[0] = '\0';
	r = conf_split(text, &v, &n, err, sizeof(err));
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL && v == NULL && err[0] != '\0');
		return;
	}
	FUZZ_CHECK(v != NULL && v[n] == NULL);
	q = quote_all(v, n);
	FUZZ_CHECK(conf_split(q, &v2, &n2, err, sizeof(err)) == 0);
	FUZZ_CHECK(n2 == n);
	for (i = 0; i < n; i++)
		FUZZ_CHECK(strcmp(v[i], v2[i]) == 0);
	check_expand(v, n);
	free(q);
	conf_argv_free(v2);
	conf_argv_free(v);
}

/*
 * conf_load() on the same bytes, through a memfd: what conf_parse()
 * answered (RC), unless the bytes hold a NUL, which conf_load() refuses.
 */
static void
check_load(const uint8_t *data, size_t size, int rc)
{
	struct conf *c;
	char         path[64], err[512];
	int          fd, r;

	fd = memfd_create("fuzz.conf", MFD_CLOEXEC);
	FUZZ_CHECK(fd != -1);
	FUZZ_CHECK(write(fd, data, size) == (ssize_t)size);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r = conf_load(path, &c, err, sizeof(err));
	close(fd);
	if (memchr(data, '\0', size) != NULL) {
		FUZZ_CHECK(r == -EINVAL && c == NULL);
		FUZZ_CHECK(strstr(err, ": NUL byte") != NULL);
		check_reason(err, path);
		return;
	}
	FUZZ_CHECK(r == rc);
	if (r < 0)
		check_reason(err, path);
	FUZZ_CHECK((r == 0) == (c != NULL));
	conf_free(c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char name[] = "fuzz.conf";
	struct conf      *c = (void *)1;
	char             *text, err[512];
	int               r;

	if (size > CONF_FILE_MAX)
		return 0;
	text = malloc(size + 1);
	FUZZ_CHECK(text != NULL);
	memcpy(text, data, size);
	text[size] = '\0';
	memset(err, 'x', sizeof(err));
	r = conf_parse(text, name, &c, err, sizeof(err));
	if (r < 0) {
		FUZZ_CHECK(c == NULL);
		FUZZ_CHECK(r == -EINVAL || r == -ENOMEM);
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
		check_reason(err, name);
	} else {
		FUZZ_CHECK(r == 0 && c != NULL);
		check_conf(c, name);
		FUZZ_CHECK(conf_free(c) == NULL);
	}
	check_split(text);
	check_load(data, size, r);
	free(text);
	return 0;
}
