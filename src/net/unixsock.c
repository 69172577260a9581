#include "net/unixsock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Is someone accepting on path?  1 yes, 0 no (stale file), -1 error. */
static int
someone_listens(const struct sockaddr_un *sa)
{
	int fd, rc, e;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	e = errno;
	close(fd);
	if (rc == 0 || e == EAGAIN || e == EINPROGRESS)
		return 1;	/* EAGAIN: a live listener with a full backlog */
	if (e == ECONNREFUSED || e == ENOENT)
		return 0;
	errno = e;
	return -1;
}

int
unix_listen(const char *path, int backlog, bool *created, char *err,
	    size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	struct stat st;
	int fd = -1;

	*created = false;
	if (len >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: path too long (at most %zu bytes)",
			 path, sizeof(sa.sun_path) - 1);
		return -1;
	}
	memcpy(sa.sun_path, path, len);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s: the file exists and is not "
				 "a socket", path);
			return -1;
		}
		switch (someone_listens(&sa)) {
		case 1:
			snprintf(err, errlen, "%s: another process is "
				 "listening there", path);
			return -1;
		case -1:
			goto fail;
		}
		if (unlink(path) && errno != ENOENT)
			goto fail;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
		goto fail;
	*created = true;
	if (chmod(path, 0777) || listen(fd, backlog))
		goto fail;
	return fd;

fail:
	snprintf(err, errlen, "%s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	if (*created)
		unlink(path);
	*created = false;
	return -1;
}
