/*
 * buf.h - a growable byte buffer with a send cursor.
 *
 *     data          sent            len            cap
 *      |-- gone -----|-- to send ----|-- free -------|
 *
 * Storage is allocated on first use and released by buf_release() when
 * empty, so idle connections hold no buffer memory.  Owned by one
 * connection, used by one worker thread.  A thread that brackets its life
 * with buf_stash_begin()/buf_stash_end() keeps up to BUF_STASH_MAX released
 * BUF_MIN_CAP blocks for reuse: a request/response cycle then costs no
 * malloc/free pair per buffer.
 */
#ifndef PGVALET_NET_BUF_H
#define PGVALET_NET_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct buf {
	uint8_t *data;
	size_t sent;		/* consumed from the front */
	size_t len;		/* filled */
	size_t cap;
};

enum { BUF_MIN_CAP = 16384, BUF_STASH_MAX = 64 };

/* The calling thread reuses released blocks from now on. */
void buf_stash_begin(void);
/* Free the calling thread's stashed blocks and stop stashing. */
void buf_stash_end(void);

/* buf_reserve's slow path: allocate or grow (or compact). */
int buf_grow(struct buf *b, size_t n);

/* Make room for n more bytes; -1 on allocation failure. */
static inline int
buf_reserve(struct buf *b, size_t n)
{
	return b->cap - b->len >= n ? 0 : buf_grow(b, n);
}

static inline int
buf_append(struct buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n))
		return -1;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}
/* Bytes waiting: [sent, len). */
static inline size_t
buf_pending(const struct buf *b)
{
	return b->len - b->sent;
}
static inline uint8_t *
buf_head(const struct buf *b)
{
	return b->data + b->sent;
}
/* Drop n bytes from the front; reset cursors when it empties. */
void buf_consume(struct buf *b, size_t n);
/* Move pending bytes to the front (called before reading more). */
void buf_compact(struct buf *b);
/* Free storage when empty and larger than needed for idle. */
void buf_release(struct buf *b);
void buf_free(struct buf *b);

#endif
