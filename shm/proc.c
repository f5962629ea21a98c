/*
 * Process start times, read from /proc/PID/stat (proc(5)).  The start time
 * is what tells a live process from a later one that reuses its pid: the
 * registry stores it next to the pid, and a pid whose start time differs is
 * not the process that registered.
 *
 * The line is "PID (COMM) STATE PPID ...", and COMM is whatever the process
 * chose (prctl(PR_SET_NAME), the executable's name): it may hold spaces,
 * parentheses, even newlines.  Every later field is a number or a single
 * letter, so the LAST ')' in the file ends COMM.  The fields after it are
 * separated by single spaces.
 *
 * A /proc mounted with hidepid=2 hides other users' processes; they then
 * read as absent (-ESRCH), which is all /proc lets us know.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <keyvisor/registry.h>

#define STAT_STARTTIME 22 /* proc(5) numbers fields from 1; COMM is 2 */

/* Read until end of file or SIZE bytes.  Returns the count, or -errno. */
static ssize_t
read_full(int fd, char *buf, size_t size)
{
	size_t  n = 0;
	ssize_t r;

	while (n < size) {
		r = read(fd, buf + n, size - n);
		if (r == 0)
			break;
		if (r == -1 && errno != EINTR)
			return -errno;
		if (r > 0)
			n += (size_t)r;
	}
	return (ssize_t)n;
}

/*
 * The decimal number at *P, which must end with a space or a newline before
 * END: a number cut off by the end of the buffer may be missing digits.
 */
static int
parse_u64(const char *p, const char *end, uint64_t *out)
{
	const char *start = p;
	uint64_t    v = 0, d;

	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		d = (uint64_t)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -EBADMSG;
		v = v * 10 + d;
	}
	if (p == start || p == end || (*p != ' ' && *p != '\n'))
		return -EBADMSG;
	*out = v;
	return 0;
}

/* Returns 0 and field 22 of the stat file in BUF, or -EBADMSG. */
static int
parse_stat(const char *buf, size_t len, uint64_t *out)
{
	const char *p, *end = buf + len;
	int         field;

	if ((p = memrchr(buf, ')', len)) == NULL)
		return -EBADMSG;
	p++;
	/* At the top of each turn, P is at the space before field FIELD. */
	for (field = 3; field < STAT_STARTTIME; field++) {
		if (p == end || *p++ != ' ' || p == end || *p == ' ')
			return -EBADMSG;
		while (p < end && *p != ' ')
			p++;
	}
	if (p == end || *p++ != ' ')
		return -EBADMSG;
	return parse_u64(p, end, out);
}

int
kv_proc_start_time(pid_t pid, uint64_t *out)
{
	char    path[32], buf[4096];
	ssize_t n;
	int     fd;

	if (pid <= 0)
		return -EINVAL;
	(void)snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return errno == ENOENT ? -ESRCH : -errno;
	n = read_full(fd, buf, sizeof(buf));
	(void)close(fd);
	if (n < 0)
		return (int)n;
	return parse_stat(buf, (size_t)n, out);
}
