#include "net/buf.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local struct {
	bool on;
	int n;
	uint8_t *blocks[BUF_STASH_MAX];
} stash;

void
buf_stash_begin(void)
{
	stash.on = true;
}

void
buf_stash_end(void)
{
	while (stash.n)
		free(stash.blocks[--stash.n]);
	stash.on = false;
}

int
buf_grow(struct buf *b, size_t n)
{
	size_t need, cap;
	uint8_t *p;

	if (b->sent > 0 && b->cap - buf_pending(b) >= n &&
	    b->sent >= b->cap / 2) {
		buf_compact(b);
		return 0;
	}
	need = b->len + n;
	if (!b->data && need <= BUF_MIN_CAP && stash.n) {
		b->data = stash.blocks[--stash.n];
		b->cap = BUF_MIN_CAP;
		return 0;
	}
	cap = b->cap ? b->cap : BUF_MIN_CAP;
	while (cap < need)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

void
buf_consume(struct buf *b, size_t n)
{
	b->sent += n;
	if (b->sent >= b->len)
		b->sent = b->len = 0;
}

void
buf_compact(struct buf *b)
{
	size_t pending = buf_pending(b);

	if (b->sent == 0)
		return;
	if (pending)
		memmove(b->data, b->data + b->sent, pending);
	b->sent = 0;
	b->len = pending;
}

void
buf_release(struct buf *b)
{
	if (b->data && b->len == 0) {
		if (stash.on && b->cap == BUF_MIN_CAP &&
		    stash.n < BUF_STASH_MAX)
			stash.blocks[stash.n++] = b->data;
		else
			free(b->data);
		b->data = NULL;
		b->cap = 0;
		b->sent = 0;
	}
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->cap = b->len = b->sent = 0;
}
