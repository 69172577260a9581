/*
 * unixsock.h - listening on a unix-domain socket path, as servers do.
 *
 * unix_listen() returns a non-blocking, close-on-exec socket listening on
 * path, mode 0777 (who may connect is decided by authentication, as for
 * Postgres' own socket).  A socket file left by a process that died is
 * replaced; a path a live process listens on, a file that is not a socket
 * and a path too long for sockaddr_un are refused with a message in err
 * ("PATH: reason").  *created tells whether path was bound by us: the
 * caller unlinks it when it stops listening, and only then.
 */
#ifndef PGVALET_NET_UNIXSOCK_H
#define PGVALET_NET_UNIXSOCK_H

#include <stdbool.h>
#include <stddef.h>

int unix_listen(const char *path, int backlog, bool *created, char *err,
		size_t errlen);

#endif
