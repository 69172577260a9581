/*
 * tier.h - the shared result tier (--cache-tier redis://...): an L2 on
 * Redis that several proxies read and fill, behind each one's in-process
 * store (store.h).  A local miss looks here before going upstream; an
 * upstream answer the local store accepted is stored here too; every
 * invalidation this proxy applies is made here first.
 *
 * Keys (all of one database share the hash tag {<database tag>}, so
 * every script below touches one Redis Cluster slot; in a cluster the
 * thread maps slots to masters with CLUSTER SLOTS and sends each
 * database's commands to its slot's master, and a MOVED/ASK/CLUSTERDOWN
 * reply is an outage like any other: reconnect, remap, bump epochs):
 *
 *	pgv:{D}:e:<key hash>	entry: hash {s: stamp, k: full key, d: bytes}
 *	pgv:{D}:v:<tag>		version counter of one tag (cache/tags.h)
 *	pgv:{D}:epoch		the database's epoch
 *
 * A stamp is "epoch,v1,v2,...": the values of the epoch and of the
 * entry's tags' counters.  An entry is valid only while its stamp equals
 * the current one; the check and the read are one Lua script (one round
 * trip), as are the checked store and the bump.
 *
 * Why no stale entry is served (DESIGN 1.1-1.3 with the tier):
 *  - A lookup returns the current stamp on a miss, read BEFORE the query
 *    goes upstream; the store script stores only if the stamp is still
 *    the same.  A write that commits after the query's snapshot bumps
 *    its tags (below) after its commit: if the bump came first the store
 *    is refused, otherwise the stored entry is invalid from the bump on.
 *  - A write through a proxy bumps its tags' counters here BEFORE the
 *    proxy bumps them locally and before the writer sees its
 *    ReadyForQuery; WAL events (writes that bypass the proxies) the same,
 *    before the local bump.  Tier first, local second: a local copy made
 *    from a tier hit carries the local stamp taken before the tier was
 *    asked, so it is refused (or dropped) by the local bump that follows.
 *  - Counters never come back to an old value: a counter or epoch key
 *    that does not exist (new, expired, evicted, Redis restarted empty)
 *    is created from Redis' clock in microseconds, greater than any value
 *    the key had before (it would need more bumps than microseconds).
 *  - The bump waits at most TIER_WRITE_TIMEOUT_MS.  If Redis cannot
 *    confirm it (error, timeout, queue full) the tier is marked down
 *    BEFORE the local bump and the writer's ack: this proxy stops reading
 *    and filling it (fail closed).  Its thread reconnects with backoff
 *    and, before it marks the tier up again, bumps the epoch of every
 *    database this proxy has used, so nothing stored before the outage
 *    is served by anyone.  Every (re)connection bumps them (Redis may
 *    have restarted with an old snapshot, or missed our bumps).
 *  - Limit: while this proxy cannot reach Redis, another proxy that
 *    still can may serve an entry a write through this proxy changed,
 *    until its own replication stream delivers that commit (or this
 *    proxy reconnects and bumps the epoch): the same bound as for a
 *    write that bypasses the proxies (DESIGN 1.2).
 *
 * Threads: one thread owns the Redis connection and pipelines what the
 * workers queue (bounded).  Lookups wait up to lookup_timeout_ms (then
 * count as a miss), bumps up to TIER_WRITE_TIMEOUT_MS, stores never.
 * All functions are thread-safe.
 */
#ifndef PGVALET_CACHE_TIER_H
#define PGVALET_CACHE_TIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	TIER_WRITE_TIMEOUT_MS = 50,	/* a bump waits this long at most */
	TIER_QUEUE_MAX = 10000,
	TIER_DEFAULT_TTL_MS = 3600 * 1000,
};

struct cache_tier;

struct cache_tier_config {
	const char *url;		/* redis://[[user]:password@]host[:port][/db] */
	uint64_t ttl_ms;		/* entries' TTL in Redis; 0 = 1 h */
	int lookup_timeout_ms;		/* a lookup slower than this misses */
};

/* NULL with err set ("invalid value for cache-tier: ...") on a bad URL. */
struct cache_tier *cache_tier_new(const struct cache_tier_config *cfg,
				  char *err, size_t errlen);
int cache_tier_start(struct cache_tier *t);	/* its thread; -1 on failure */
void cache_tier_free(struct cache_tier *t);

/* Connected, epochs bumped, no failed bump since: reads and stores go. */
bool cache_tier_up(const struct cache_tier *t);

enum tier_found {
	TIER_HIT,		/* *data, *len: the bytes (malloc'ed);
				   *age_ms: how long ago they were stored */
	TIER_MISS,		/* *stamp: the current stamp (malloc'ed) */
	TIER_UNAVAILABLE,	/* down, slow or failed: a miss, no stamp */
};

/*
 * Look a key up (db_tag = cache_tag_db(database); tags: the result's,
 * as for the local store).  Blocks up to lookup_timeout_ms.  A hit's key
 * is compared whole, so colliding hashes never give a false hit.
 */
enum tier_found cache_tier_get(struct cache_tier *t, uint64_t db_tag,
			       uint64_t hash, const void *key, size_t keylen,
			       const uint64_t *tags, size_t ntags,
			       uint8_t **data, size_t *len, uint64_t *age_ms,
			       char **stamp);

/*
 * Store what a miss's query answered, if the stamp its lookup returned
 * still holds.  Never blocks; takes stamp, copies the rest.
 */
void cache_tier_put(struct cache_tier *t, uint64_t db_tag, uint64_t hash,
		    const void *key, size_t keylen, const uint64_t *tags,
		    size_t ntags, const void *data, size_t len, char *stamp);

/*
 * Make the entries carrying these tags invalid for every proxy.  Call
 * BEFORE bumping the same tags locally.  Blocks up to
 * TIER_WRITE_TIMEOUT_MS; when Redis does not confirm, marks the tier
 * down (see above) and returns -1.  A tier already down returns -1 at
 * once (the epoch bump on reconnection covers it).
 */
int cache_tier_invalidate(struct cache_tier *t, uint64_t db_tag,
			  const uint64_t *tags, size_t ntags);

struct cache_tier_stats {
	bool up;
	uint64_t hits, misses, stores, rejected_stores, invalidations;
	uint64_t timeouts, errors, downs, dropped;
};
void cache_tier_get_stats(struct cache_tier *t, struct cache_tier_stats *out);
/* "redis://host:port[/db]" (no secrets), for log lines. */
const char *cache_tier_display(const struct cache_tier *t);

#endif
