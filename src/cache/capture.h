/*
 * capture.h - the response of a cacheable query on its way to the client,
 * copied aside so it can be stored once it completed cleanly.
 *
 * A capture is made when the query is sent (the key and the stamp of its
 * tags' versions, taken before the send), fed every message the server
 * answers with, and finished at ReadyForQuery: stored only if no error
 * came, it ended outside a transaction block (or inside one, when the
 * caller vouched for the block with in_block_ok) and it fits max_entry.
 * Owned by the pending request it belongs to; one thread at a time.
 */
#ifndef PGVALET_CACHE_CAPTURE_H
#define PGVALET_CACHE_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/store.h"

struct cache_tier;

struct capture {
	uint64_t hash;
	uint8_t *key;
	size_t keylen;
	uint8_t *data;
	size_t len, cap, max;
	bool spoiled;		/* error, too big or out of memory */
	bool in_block_ok;	/* may end inside a transaction block */
	struct cache_store *claim;	/* the key's claim is ours: end it */
	struct cache_stamp stamp;
	/* The shared tier (tier.h) missed this key and said which stamp a
	 * store must match: once stored locally, store it there too. */
	struct cache_tier *tier;
	uint64_t tier_db;		/* cache_tag_db() of the database */
	char *tier_stamp;		/* owned */
};

/* Takes ownership of key (malloc'ed); NULL on OOM or too many tags. */
struct capture *capture_new(const struct cache_store *s, uint8_t *key,
			    size_t keylen, uint64_t hash, const uint64_t *tags,
			    size_t ntags, size_t max_entry);
/* One server message (type byte included), in order. */
void capture_add(struct capture *c, const uint8_t *msg, size_t len);
void capture_spoil(struct capture *c);
/* At ReadyForQuery: store if clean (and end the claim either way), in
 * the shared tier too when the local store took it; frees c. */
enum cache_put_result capture_finish(struct cache_store *s, struct capture *c,
				     uint8_t tx_status, uint64_t now_ms);
/* Give a capture the tier stamp of its key's miss (taken over). */
void capture_set_tier(struct capture *c, struct cache_tier *t, uint64_t db,
		      char *stamp);
/* Drop a capture; a claim it holds is abandoned (waiters woken). */
void capture_free(struct capture *c);

#endif
