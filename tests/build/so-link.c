/*
 * A program linked against libkeyvisor.so rather than the archive: every
 * function of the public headers must resolve there (the link is the test),
 * and a call through the .so must behave.  Prints TAP.
 */
#include <keyvisor/worker.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int main(void);

/* Each API function, so that the linker must find every one in the .so. */
static void (*const api[])(void) = {
    (void (*)(void))kv_ready,
    (void (*)(void))kv_heartbeat,
    (void (*)(void))kv_touch,
    (void (*)(void))kv_set_value,
    (void (*)(void))kv_set_status,
    (void (*)(void))kv_self_key,
    (void (*)(void))kv_lookup,
    (void (*)(void))kv_reg_create,
    (void (*)(void))kv_reg_create_fd,
    (void (*)(void))kv_reg_open,
    (void (*)(void))kv_reg_open_fd,
    (void (*)(void))kv_reg_close,
    (void (*)(void))kv_reg_unlink,
    (void (*)(void))kv_reg_strerror,
    (void (*)(void))kv_key_check,
    (void (*)(void))kv_reg_register,
    (void (*)(void))kv_reg_unregister,
    (void (*)(void))kv_reg_replace,
    (void (*)(void))kv_reg_set_value,
    (void (*)(void))kv_reg_lookup,
    (void (*)(void))kv_reg_get,
    (void (*)(void))kv_reg_iter,
    (void (*)(void))kv_reg_keys_of,
    (void (*)(void))kv_reg_count,
    (void (*)(void))kv_reg_stats,
    (void (*)(void))kv_route_pick,
    (void (*)(void))kv_proc_start_time,
};

int
main(void)
{
	size_t i, n = sizeof(api) / sizeof(api[0]);
	int    ok;

	printf("1..2\n");
	for (ok = 1, i = 0; i < n; i++)
		ok &= api[i] != NULL;
	printf("%s 1 - %zu API functions resolved\n", ok ? "ok" : "not ok", n);
	(void)unsetenv("KEYVISOR_NOTIFY_FD");
	ok = kv_ready() == -ENOTCONN && kv_key_check("user:42", 7) == NULL;
	printf("%s 2 - calls through the .so\n", ok ? "ok" : "not ok");
	return 0;
}
