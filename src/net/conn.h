/*
 * conn.h - a socket with an input and an output buffer, plain or TLS.
 *
 * conn_read() fills 'in' until the socket would block (edge-triggered
 * epoll requires draining) or 'in' holds 'limit' unread bytes;
 * conn_flush() sends 'out'.  A conn belongs to one worker thread.
 */
#ifndef PGVALET_NET_CONN_H
#define PGVALET_NET_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>

#include "net/buf.h"
#include "net/loop.h"

struct conn {
	int fd;
	SSL *ssl;
	struct buf in;
	struct buf out;
	struct loop_watch watch;
	bool readable;		/* an edge arrived and was not drained */
	bool eof;		/* peer closed or socket error */
	bool hangup;		/* RDHUP/HUP seen: read on to the EOF */
	const char *error;	/* why, for logs (static string) */
	bool want_write;	/* output pending: EPOLLOUT will flush it */
};

enum conn_io { CONN_IO_DONE = 0, CONN_IO_AGAIN = 1, CONN_IO_ERROR = -1 };

void conn_init(struct conn *c, int fd);
/* Read while possible; CONN_IO_ERROR also on orderly EOF. */
enum conn_io conn_read(struct conn *c, size_t limit);
/* Send pending output: DONE when empty, AGAIN when the socket is full. */
enum conn_io conn_flush(struct conn *c);
/* Close the socket and free the buffers (and the TLS session). */
void conn_close(struct conn *c);
/* Socket options every proxied connection gets. */
void conn_tune_socket(int fd);

#endif
