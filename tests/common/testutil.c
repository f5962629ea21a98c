/* testutil: see testutil.h. */
#include "testutil.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t
tu_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

long
tu_read_long(const char *file)
{
	FILE *f = fopen(file, "re");
	long  v = -1;

	if (f != NULL) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

long
tu_nprocs(void)
{
	DIR           *dir = opendir("/proc");
	struct dirent *de;
	long           n = 0;

	if (dir == NULL)
		return 0;
	while ((de = readdir(dir)) != NULL)
		n += de->d_name[0] >= '1' && de->d_name[0] <= '9';
	closedir(dir);
	return n;
}

rlim_t
tu_raise_limit(int res)
{
	struct rlimit rl;

	if (getrlimit(res, &rl) == -1)
		return RLIM_INFINITY;
	if (rl.rlim_cur != rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(res, &rl);
	}
	return rl.rlim_cur;
}

bool
tu_can_connect(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int                fd, r;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return false;
	r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	close(fd);
	return r == 0;
}

void
tu_self_dir(char *buf, size_t size)
{
	ssize_t n = readlink("/proc/self/exe", buf, size - 1);
	char   *slash;

	buf[n > 0 ? n : 0] = '\0';
	if ((slash = strrchr(buf, '/')) != NULL)
		*slash = '\0';
	else
		snprintf(buf, size, ".");
}

int
tu_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	(void)remove(path);
	return 0;
}
