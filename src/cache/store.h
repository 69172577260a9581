/*
 * store.h - the shared result cache: immutable refcounted entries, version
 * stamps for invalidation, S3-FIFO eviction under a byte cap, coalescing
 * of identical in-flight misses.
 *
 * One store is shared by every worker thread; all functions are
 * thread-safe.  The store is 16 lock-striped shards picked by the top bits
 * of the caller's key hash; a hit holds one shard lock for a hash-chain
 * walk and a refcount increment, and the bytes are read after the lock is
 * released.  An entry is owned by the store plus every holder of a
 * reference: eviction only drops the store's reference.
 *
 * Invalidation is by version stamps (DESIGN 1.3): a tag (table, row,
 * database) maps to an atomic counter slot; a result is stored with the
 * versions its tags had before the query was sent, and is served only
 * while they are unchanged.  Bumping a tag is lock-free and evicts lazily.
 */
#ifndef PGVALET_CACHE_STORE_H
#define PGVALET_CACHE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef MUST_CHECK
#define MUST_CHECK __attribute__((warn_unused_result))
#endif

struct cache_store;
struct cache_entry;		/* immutable once stored, refcounted */

enum {
	CACHE_MAX_TAGS = 32,
	CACHE_CLAIM_TIMEOUT_MS = 30000,	/* a leader silent this long gave up */
};

struct cache_store_config {
	size_t max_bytes;	/* whole budget, metadata included; 0 = off */
	size_t max_entry;	/* largest key+value accepted; 0 = a shard */
	uint64_t ttl_ms;	/* 0 = entries never expire by age */
};

struct cache_stats {
	uint64_t hits, misses, stores;
	uint64_t rejected_stale, rejected_too_big;
	uint64_t evicted_capacity, evicted_invalidated, evicted_ttl;
	uint64_t invalidations;	/* tags bumped */
	uint64_t coalesced;	/* waiters served by a leader's put */
	uint64_t bytes, entries;	/* now; bytes includes all metadata */
	uint64_t budget_bytes, metadata_bytes;	/* fixed metadata */
};

/*
 * NULL on OOM.  The fixed metadata (version slots, hash and ghost tables,
 * shards) is sized from max_bytes and charged to it; what is left is split
 * evenly across the shards.  When nothing is left (max_bytes 0 or smaller
 * than the metadata) the store works but stores nothing: puts return
 * CACHE_DISABLED, lookups miss, and stats.bytes stays 0.
 */
struct cache_store *cache_store_new(const struct cache_store_config *cfg);
/*
 * Frees the store and its references.  Entries still held elsewhere stay
 * valid until released (an entry does not point back to the store).
 * Waiters still queued are woken with NULL.
 */
void cache_store_free(struct cache_store *s);

/* ---- invalidation: version stamps (DESIGN 1.3) --------------------------- */

/*
 * A tag is a 64-bit id chosen by the caller (hash of "table t", "row k of
 * table t", "database d").  Tags map to a fixed power-of-two array of
 * atomic counters (max_bytes / 4096 slots, clamped to [4096, 1 << 20]);
 * two tags sharing a slot only cause extra invalidation, never less.
 */
uint64_t cache_tag_version(const struct cache_store *s, uint64_t tag);
/* Lock-free: one atomic increment per tag.  Entries are dropped lazily. */
void cache_tag_bump(struct cache_store *s, const uint64_t *tags, size_t n);

/* Versions of a query's tags, taken BEFORE the query is sent upstream. */
struct cache_stamp {
	uint32_t n;
	uint64_t tags[CACHE_MAX_TAGS];
	uint64_t versions[CACHE_MAX_TAGS];
};

/* 0, or -1 when n > CACHE_MAX_TAGS (the caller must not cache). */
MUST_CHECK int cache_stamp_take(const struct cache_store *s,
				struct cache_stamp *st, const uint64_t *tags,
				size_t n);

/* ---- lookup and store ---------------------------------------------------- */

/*
 * hash is the caller's 64-bit hash of the key bytes; the store keeps the
 * whole key and compares it, so colliding hashes never give a false hit.
 * Returns a new reference, or NULL.  An entry whose tags moved since its
 * stamp, or which expired, is dropped here (evicted_invalidated /
 * evicted_ttl) and NULL is returned.
 */
struct cache_entry *cache_get(struct cache_store *s, uint64_t hash,
			      const void *key, size_t keylen, uint64_t now_ms);
/* The stored bytes; valid for as long as the reference is held. */
const uint8_t *cache_entry_data(const struct cache_entry *e, size_t *len);
/* Drop a reference (any thread); the last one frees the entry. */
void cache_entry_release(struct cache_entry *e);
/* Take one more reference on an entry already held. */
struct cache_entry *cache_entry_ref(struct cache_entry *e);

enum cache_put_result {
	CACHE_STORED,
	CACHE_DISABLED,		/* the store holds nothing */
	CACHE_TOO_BIG,		/* over max_entry or a shard's budget */
	CACHE_STALE,		/* a tag moved since the stamp */
	CACHE_NOMEM,
};

/*
 * Copy key and data into a new entry carrying stamp's tags and versions
 * (stamp NULL = no tags: only the TTL bounds it).  CACHE_STALE when any
 * tag's version moved since the stamp was taken: an invalidation happened
 * while the query was in flight.  An entry with the same key is replaced;
 * its holders keep it.  Every put (stored or not) ends the key's claim, if
 * any: queued waiters are woken with the new entry, or with NULL.
 */
enum cache_put_result cache_put(struct cache_store *s, uint64_t hash,
				const void *key, size_t keylen,
				const void *data, size_t len,
				const struct cache_stamp *stamp,
				uint64_t now_ms);

/* A snapshot: each shard is read under its lock, one after the other. */
void cache_store_stats(const struct cache_store *s, struct cache_stats *out);
/*
 * Bytes charged per entry beyond key + data + 16 per tag: the entry
 * header plus malloc's chunk header (the charge is then rounded up to 16,
 * malloc's granularity).
 */
size_t cache_entry_overhead(void);
/* Entries stored from now on expire after ttl_ms (0 = never by age). */
void cache_set_ttl(struct cache_store *s, uint64_t ttl_ms);
/* Drop every entry (held references stay valid until released). */
void cache_clear(struct cache_store *s);

/* ---- coalescing of identical in-flight misses ---------------------------- */

struct cache_waiter {
	/*
	 * Called exactly once, from the thread ending the claim, outside any
	 * store lock.  e is a new reference the callee must release, or NULL
	 * when the leader gave up or its result was not stored.
	 */
	void (*wake)(struct cache_waiter *w, struct cache_entry *e);
	struct cache_waiter *next;	/* owned by the store while queued */
};

enum cache_claim {
	CACHE_CLAIM_HIT,	/* *out holds a reference */
	CACHE_CLAIM_LEADER,	/* go upstream, then put or abandon */
	CACHE_CLAIM_WAIT,	/* waiter queued; its wake() will be called */
	CACHE_CLAIM_MISS,	/* plain miss, no claim taken, nothing queued */
};

/*
 * The hot-path lookup.  On a miss, the first caller for a key becomes its
 * LEADER and must end the claim with cache_put() or cache_abandon(); later
 * callers are queued (WAIT) until then.  waiter == NULL never takes part:
 * a miss returns CACHE_CLAIM_MISS.  So does a disabled store, and a failed
 * claim allocation.  A claim older than CACHE_CLAIM_TIMEOUT_MS (by now_ms)
 * counts as abandoned: its waiters are woken with NULL from this call and
 * the caller becomes the new leader.  The claim is per key, not per
 * caller: whoever puts or abandons the key next ends it.
 */
MUST_CHECK enum cache_claim cache_claim(struct cache_store *s, uint64_t hash,
					const void *key, size_t keylen,
					uint64_t now_ms,
					struct cache_waiter *waiter,
					struct cache_entry **out);
/* End the key's claim: waiters are woken with NULL. */
void cache_abandon(struct cache_store *s, uint64_t hash, const void *key,
		   size_t keylen);
/*
 * Remove a queued waiter (its client went away).  True if it was still
 * queued: then wake() will not be called.  False: wake() has been or is
 * being called.
 */
bool cache_cancel_wait(struct cache_store *s, uint64_t hash, const void *key,
		       size_t keylen, struct cache_waiter *w);

#endif
