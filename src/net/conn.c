#include "net/conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

enum { CONN_READ_CHUNK = 16384 };

void
conn_init(struct conn *c, int fd)
{
	*c = (struct conn){ .fd = fd };
}

void
conn_tune_socket(int fd)
{
	int one = 1;

	/* Failure only costs latency; the connection still works. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

static ssize_t
conn_recv_some(struct conn *c, void *p, size_t n)
{
	int r, err;

	if (!c->ssl)
		return recv(c->fd, p, n, 0);
	r = SSL_read(c->ssl, p, (int)n);
	if (r > 0)
		return r;
	err = SSL_get_error(c->ssl, r);
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
		errno = EAGAIN;
		return -1;
	}
	if (err == SSL_ERROR_ZERO_RETURN)
		return 0;
	c->error = "TLS read failed";
	errno = EPROTO;
	return -1;
}

enum conn_io
conn_read(struct conn *c, size_t limit)
{
	size_t room;
	ssize_t n;

	while (buf_pending(&c->in) < limit) {
		if (buf_reserve(&c->in, CONN_READ_CHUNK)) {
			c->error = "out of memory";
			c->eof = true;
			return CONN_IO_ERROR;
		}
		room = c->in.cap - c->in.len;
		n = conn_recv_some(c, c->in.data + c->in.len, room);
		if (n > 0) {
			c->in.len += (size_t)n;
			/*
			 * A short read drained the socket: data arriving
			 * later raises a new edge (epoll calls back on every
			 * arrival), so skip the recv() that would only say
			 * EAGAIN.  TLS may still hold a decrypted record.
			 */
			if ((size_t)n < room && !c->ssl && !c->hangup) {
				c->readable = false;
				return CONN_IO_DONE;
			}
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			c->readable = false;
			return CONN_IO_DONE;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (!c->error)
			c->error = n == 0 ? "connection closed" : "read failed";
		c->eof = true;
		return CONN_IO_ERROR;
	}
	return CONN_IO_AGAIN;	/* limit reached, socket may hold more */
}

static ssize_t
conn_send_some(struct conn *c, const void *p, size_t n)
{
	int r, err;

	if (!c->ssl)
		return send(c->fd, p, n, MSG_NOSIGNAL);
	r = SSL_write(c->ssl, p, (int)n);
	if (r > 0)
		return r;
	err = SSL_get_error(c->ssl, r);
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
		errno = EAGAIN;
		return -1;
	}
	errno = EPIPE;
	return -1;
}

enum conn_io
conn_flush(struct conn *c)
{
	ssize_t n;

	while (buf_pending(&c->out) > 0) {
		n = conn_send_some(c, buf_head(&c->out), buf_pending(&c->out));
		if (n > 0) {
			buf_consume(&c->out, (size_t)n);
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return CONN_IO_AGAIN;
		if (n < 0 && errno == EINTR)
			continue;
		c->error = "write failed";
		c->eof = true;
		return CONN_IO_ERROR;
	}
	buf_release(&c->out);
	return CONN_IO_DONE;
}

void
conn_close(struct conn *c)
{
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	buf_free(&c->in);
	buf_free(&c->out);
}
