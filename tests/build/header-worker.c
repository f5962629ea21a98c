/*
 * <keyvisor/worker.h> on its own, first and alone, in C99 -pedantic: it
 * must bring everything it uses (struct kv_entry, size_t) with it.
 */
#include <keyvisor/worker.h>

int main(void);

int
main(void)
{
	return 0;
}
