/*
 * bus.h - several proxies on one database: each publishes the evictions
 * it makes for writes it forwarded on a Redis pub/sub channel, and
 * applies the others' at once, instead of waiting for its own
 * replication stream to deliver the same commits.
 *
 * The bus only makes other proxies faster: every proxy still reads the
 * WAL, so losing Redis loses no invalidation, only speed; the proxy logs
 * it, keeps serving and reconnects with backoff.  Messages name tags
 * (cache/tags.h: hashes of database and relation names, the same in
 * every proxy), one line per committed write:
 *
 *	<proxy id>|<database>|<tag hex>,<tag hex>,...
 *	<proxy id>|<database>|*		(everything of the database)
 *
 * published on the channel "pgvalet:invalidate" (PUBLISH reaches every
 * node of a Redis Cluster).  A proxy ignores its own messages.
 *
 * One thread owns both Redis connections (subscribe, publish);
 * bus_publish() never blocks on the network (a bounded queue; when Redis
 * is down or slow, messages are dropped and counted).
 */
#ifndef PGVALET_INVALIDATE_BUS_H
#define PGVALET_INVALIDATE_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bus;
struct cache_store;
struct push;

/* NULL with err set ("invalid value for bus: ...") on a bad URL or OOM. */
struct bus *bus_new(const char *url, struct cache_store *cache,
		    struct push *push, char *err, size_t errlen);
int bus_start(struct bus *b);	/* its thread; -1 on failure */
void bus_free(struct bus *b);

/* Tell the other proxies: these tags of 'db' changed (n = 0: all). */
void bus_publish(struct bus *b, const char *db, const uint64_t *tags,
		 size_t n);

struct bus_stats {
	bool up;
	uint64_t published, received, applied_tags, dropped, reconnects;
};
void bus_get_stats(struct bus *b, struct bus_stats *out);

#endif
