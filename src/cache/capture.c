/*
 * capture.c - a cacheable response copied aside (see capture.h).
 */
#include "cache/capture.h"
#include "cache/tier.h"

#include <stdlib.h>
#include <string.h>

struct capture *
capture_new(const struct cache_store *s, uint8_t *key, size_t keylen,
	    uint64_t hash, const uint64_t *tags, size_t ntags,
	    size_t max_entry)
{
	/* malloc, not calloc: glibc's calloc skips the thread cache */
	struct capture *c = malloc(sizeof(*c));

	if (c)
		*c = (struct capture){ 0 };
	if (!c || cache_stamp_take(s, &c->stamp, tags, ntags)) {
		free(c);
		free(key);
		return NULL;
	}
	c->key = key;
	c->keylen = keylen;
	c->hash = hash;
	c->max = max_entry > keylen ? max_entry - keylen : 0;
	return c;
}

void
capture_spoil(struct capture *c)
{
	c->spoiled = true;
	free(c->data);
	c->data = NULL;
	c->len = c->cap = 0;
}

void
capture_add(struct capture *c, const uint8_t *msg, size_t len)
{
	size_t cap;
	uint8_t *nd;

	if (c->spoiled)
		return;
	if (c->len + len > c->max) {
		capture_spoil(c);
		return;
	}
	if (c->len + len > c->cap) {
		cap = c->cap ? c->cap * 2 : 512;
		while (cap < c->len + len)
			cap *= 2;
		if (cap > c->max)
			cap = c->max;
		nd = realloc(c->data, cap);
		if (!nd) {
			capture_spoil(c);
			return;
		}
		c->data = nd;
		c->cap = cap;
	}
	memcpy(c->data + c->len, msg, len);
	c->len += len;
}

enum cache_put_result
capture_finish(struct cache_store *s, struct capture *c, uint8_t tx_status,
	       uint64_t now_ms)
{
	enum cache_put_result r = CACHE_TOO_BIG;

	if (!c->spoiled && c->len &&
	    (tx_status == 'I' || (tx_status == 'T' && c->in_block_ok))) {
		r = cache_put(s, c->hash, c->key, c->keylen, c->data, c->len,
			      &c->stamp, now_ms);
		c->claim = NULL;	/* a put ends the claim */
	}
	if (r == CACHE_STORED && c->tier && c->tier_stamp) {
		cache_tier_put(c->tier, c->tier_db, c->hash, c->key, c->keylen,
			       c->stamp.tags, c->stamp.n, c->data, c->len,
			       c->tier_stamp);
		c->tier_stamp = NULL;
	}
	capture_free(c);
	return r;
}

void
capture_set_tier(struct capture *c, struct cache_tier *t, uint64_t db,
		 char *stamp)
{
	free(c->tier_stamp);
	c->tier = t;
	c->tier_db = db;
	c->tier_stamp = stamp;
}

void
capture_free(struct capture *c)
{
	if (!c)
		return;
	free(c->tier_stamp);
	if (c->claim)
		cache_abandon(c->claim, c->hash, c->key, c->keylen);
	free(c->key);
	free(c->data);
	free(c);
}
