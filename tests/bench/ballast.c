/*
 * ballast.so: make the process it is preloaded into hold KV_BALLAST_MIB
 * MiB of touched heap, to show whether spawning slows down as the
 * supervisor grows (fork() copies page tables; keyvisord's
 * clone(CLONE_VM | CLONE_VFORK) should not care).
 *
 *   KV_BALLAST_MIB=512 LD_PRELOAD=/path/to/ballast.so keyvisord ...
 *
 * The constructor removes both variables from the environment before
 * main() runs.  keyvisord copies its environment for its workers in main,
 * so they inherit neither, and 10,000 workers do not each try to take
 * 512 MiB.  Without KV_BALLAST_MIB the library does nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/*
 * The writes go through a volatile pointer: the compiler may otherwise
 * drop them (and the malloc) as unobservable, which it does at -O2.
 */
static volatile char *ballast;

__attribute__((constructor)) static void
ballast_init(void)
{
	const char *s = getenv("KV_BALLAST_MIB");
	size_t      page = (size_t)sysconf(_SC_PAGESIZE), size, i;
	char       *m;

	(void)unsetenv("LD_PRELOAD");
	if (s == NULL)
		return;
	size = (size_t)strtoul(s, NULL, 10) << 20;
	(void)unsetenv("KV_BALLAST_MIB");
	if (size == 0 || (m = malloc(size)) == NULL) {
		fprintf(stderr, "ballast.so: unable to allocate %zu MiB\n",
		    size >> 20);
		return;
	}
	ballast = m;
	/* One write a page makes every page resident (no shared zero page). */
	for (i = 0; i < size; i += page)
		ballast[i] = 1;
}
