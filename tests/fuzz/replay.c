/*
 * The replay driver: a main() for a fuzz target built without libFuzzer,
 * so that CI runs every target with gcc (STYLE B17).  It runs each file of
 * the corpus given on the command line, then a fixed number of mutations
 * of them drawn from a fixed seed: the "short fuzz smoke".  Same seed, same
 * corpus, same inputs, so a failure here reproduces.
 *
 *   fuzz-NAME [-n MUTATIONS] [-s SEED] [-q] PATH...
 *
 * A PATH is a file or a directory, whose regular files are read in name
 * order.  When an input crashes the target or fails one of its checks, it
 * is written to ./replay-crash-NAME (the name is printed), ready to be
 * copied into the corpus as a regress-* case.
 *
 * The mutations are the usual byte-level ones (flip a bit, set a byte to
 * an interesting value, insert, erase, duplicate a run, splice another
 * input in, truncate); they are no substitute for libFuzzer's guided
 * search, only a cheap net under every build.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"

#define MUTATIONS_DEFAULT 5000
#define INPUT_MAX         (1024 * 1024) /* bytes of a corpus file */
#define GROW_MAX          256           /* bytes a mutation may add */

struct input {
	uint8_t *p;
	size_t   n;
};

struct corpus {
	struct input *v;
	size_t        n, cap;
};

/* What is running now, for the crash handler. */
static const uint8_t *cur_p;
static size_t         cur_n;
static char           crash_path[256];

static void
save_current(void)
{
	int fd;

	if (cur_p == NULL)
		return;
	fd = open(crash_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1)
		return;
	(void)!write(fd, cur_p, cur_n);
	close(fd);
	(void)!write(2, "replay: input saved to ", 23);
	(void)!write(2, crash_path, strlen(crash_path));
	(void)!write(2, "\n", 1);
	cur_p = NULL;
}

/* Only async-signal-safe calls: open, write, close, then the default. */
static void
on_fatal(int sig)
{
	save_current();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* The sanitizers report through this when linked in (-fsanitize=...). */
extern void __sanitizer_set_death_callback(void (*cb)(void))
    __attribute__((weak));

static uint64_t
next(uint64_t *s) /* splitmix64 */
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static size_t
below(uint64_t *s, size_t n)
{
	return n == 0 ? 0 : (size_t)(next(s) % n);
}

static int
add(struct corpus *c, uint8_t *p, size_t n)
{
	if (c->n == c->cap) {
		size_t        cap = c->cap ? c->cap * 2 : 16;
		struct input *v = realloc(c->v, cap * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n].p = p;
	c->v[c->n].n = n;
	c->n++;
	return 0;
}

static int
read_file(struct corpus *c, const char *path)
{
	struct stat st;
	uint8_t    *p;
	ssize_t     r;
	size_t      got = 0;
	int         fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1 || fstat(fd, &st) == -1 || st.st_size > INPUT_MAX) {
		fprintf(stderr, "replay: unable to read %s\n", path);
		if (fd != -1)
			close(fd);
		return -1;
	}
	p = malloc((size_t)st.st_size + 1);
	while (p != NULL && got < (size_t)st.st_size) {
		r = read(fd, p + got, (size_t)st.st_size - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (p == NULL || got != (size_t)st.st_size || add(c, p, got) < 0) {
		fprintf(stderr, "replay: unable to read %s\n", path);
		free(p);
		return -1;
	}
	return 0;
}

static int
by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int
read_path(struct corpus *c, const char *path)
{
	struct dirent **ents;
	struct stat     st;
	char            buf[4096];
	int             i, n, rc = 0;

	if (stat(path, &st) == -1) {
		fprintf(stderr, "replay: unable to stat %s\n", path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return read_file(c, path);
	n = scandir(path, &ents, NULL, by_name);
	if (n < 0)
		return -1;
	for (i = 0; i < n; i++) {
		snprintf(buf, sizeof(buf), "%s/%s", path, ents[i]->d_name);
		if (ents[i]->d_name[0] != '.' && stat(buf, &st) == 0 &&
		    S_ISREG(st.st_mode) && read_file(c, buf) < 0)
			rc = -1;
		free(ents[i]);
	}
	free(ents);
	return rc;
}

/* Run the target on an exact-size copy: a read past the end is caught. */
static void
run(const uint8_t *p, size_t n)
{
	uint8_t *copy = malloc(n ? n : 1);

	FUZZ_CHECK(copy != NULL);
	memcpy(copy, p, n);
	cur_p = copy;
	cur_n = n;
	(void)LLVMFuzzerTestOneInput(copy, n);
	cur_p = NULL;
	free(copy);
}

static const uint8_t interesting[] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0x20, '\n',
    '"', '\\', '[', ']', '=', '%', 0xc0, 0xe0, 0xed, 0xf4, 0xf5};

/* One edit of BUF (N bytes, room for CAP) in place; returns the new size. */
static size_t
mutate_once(
    uint64_t *s, uint8_t *buf, size_t n, size_t cap, const struct corpus *c)
{
	size_t at = below(s, n + 1), k, len;

	switch (next(s) % 8) {
	case 0: /* flip a bit */
		if (n > 0)
			buf[below(s, n)] ^= (uint8_t)(1u << below(s, 8));
		return n;
	case 1: /* an interesting byte */
		if (n > 0)
			buf[below(s, n)] =
			    interesting[below(s, sizeof(interesting))];
		return n;
	case 2: /* a random byte */
		if (n > 0)
			buf[below(s, n)] = (uint8_t)next(s);
		return n;
	case 3: /* insert a byte */
		if (n >= cap)
			return n;
		memmove(buf + at + 1, buf + at, n - at);
		buf[at] = interesting[below(s, sizeof(interesting))];
		return n + 1;
	case 4: /* erase a run */
		len = 1 + below(s, 8);
		if (at + len > n)
			return at;
		memmove(buf + at, buf + at + len, n - at - len);
		return n - len;
	case 5: /* duplicate a run */
		if (n == 0)
			return n;
		k = below(s, n);
		len = 1 + below(s, n - k < 16 ? n - k : 16);
		if (n + len > cap)
			return n;
		memmove(buf + at + len, buf + at, n - at);
		memmove(buf + at, buf + (k < at ? k : k + len), len);
		return n + len;
	case 6: /* splice a run of another input */ {
		const struct input *o = &c->v[below(s, c->n)];

		if (o->n == 0)
			return n;
		k = below(s, o->n);
		len = 1 + below(s, o->n - k < 32 ? o->n - k : 32);
		if (at + len > cap)
			return n;
		memcpy(buf + at, o->p + k, len);
		return at + len > n ? at + len : n;
	}
	default: /* truncate */
		return at;
	}
}

static void
usage(void)
{
	fprintf(stderr, "usage: fuzz-NAME [-n mutations] [-s seed] [-q] "
	                "path ...\n");
	exit(2);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	const char *name =
	    strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	struct corpus c = {0};
	uint64_t      seed = 1, s;
	unsigned long mutations = MUTATIONS_DEFAULT, i;
	bool          quiet = false;
	double        t0 = now();
	int           opt, rc = 0;

	while ((opt = getopt(argc, argv, "n:s:q")) != -1) {
		switch (opt) {
		case 'n':
			mutations = strtoul(optarg, NULL, 10);
			break;
		case 's':
			seed = strtoull(optarg, NULL, 10);
			break;
		case 'q':
			quiet = true;
			break;
		default:
			usage();
		}
	}
	if (optind == argc)
		usage();
	for (; optind < argc; optind++)
		if (read_path(&c, argv[optind]) < 0)
			rc = 1;
	if (c.n == 0) {
		fprintf(stderr, "%s: no input\n", name);
		return 1;
	}
	snprintf(crash_path, sizeof(crash_path), "replay-crash-%s", name);
	/* Under a sanitizer, its own handlers report (with a stack) first. */
	if (__sanitizer_set_death_callback != NULL) {
		__sanitizer_set_death_callback(save_current);
	} else {
		signal(SIGSEGV, on_fatal);
		signal(SIGBUS, on_fatal);
		signal(SIGABRT, on_fatal);
		signal(SIGFPE, on_fatal);
	}
	for (i = 0; i < c.n; i++)
		run(c.v[i].p, c.v[i].n);
	s = seed;
	for (i = 0; i < mutations; i++) {
		const struct input *base = &c.v[i % c.n];
		size_t              cap = base->n + GROW_MAX, n = base->n, k;
		uint8_t            *buf = malloc(cap);
		unsigned            edits = 1 + (unsigned)below(&s, 4);

		FUZZ_CHECK(buf != NULL);
		memcpy(buf, base->p, n);
		for (k = 0; k < edits; k++)
			n = mutate_once(&s, buf, n, cap, &c);
		run(buf, n);
		free(buf);
	}
	if (!quiet)
		printf("%s: %zu inputs, %lu mutations (seed %llu) in %.2f s\n",
		    name, c.n, mutations, (unsigned long long)seed, now() - t0);
	for (i = 0; i < c.n; i++)
		free(c.v[i].p);
	free(c.v);
	return rc;
}
