/*
 * keyvisor(1)'s exit statuses: the contract scripts rely on.  keyvisor(1)'s
 * EXIT STATUS section lists the same table; a test checks both agree.
 */
#ifndef KEYVISOR_SUPERVISORD_EXITCODES_H
#define KEYVISOR_SUPERVISORD_EXITCODES_H

enum kv_exit {
	EXIT_OK = 0,
	EXIT_NOT_FOUND = 1,  /* key not found, or the worker exited before it was ready */
	EXIT_USAGE = 2,      /* usage error, invalid key or configuration error */
	EXIT_STARTED = 3,    /* already started */
	EXIT_CAPACITY = 4,   /* capacity or max_children reached */
	EXIT_NO_DAEMON = 5,  /* daemon not reachable */
	EXIT_PERMISSION = 6, /* permission denied */
	EXIT_TIMEOUT = 7,    /* timed out */
	EXIT_EXEC = 8,       /* exec of the command failed */
};

#endif /* KEYVISOR_SUPERVISORD_EXITCODES_H */
