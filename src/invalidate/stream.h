/*
 * stream.h - invalidation from writes that bypass the proxy, read from
 * Postgres' logical replication stream (pgoutput, protocol 1).
 *
 * One consumer thread per database the proxy's clients use, started on
 * the first stream_db_get() for it.  Each holds a libpq
 * replication=database connection, makes sure the publication exists
 * (creating it, empty, when missing: the catalog then adds tables as
 * reads of them are cached), creates its slot (temporary by default, or
 * the named permanent slot, resumed when it exists) and applies every
 * committed transaction: INSERT/UPDATE/DELETE bump row tags when the
 * row's key is known, else the table tag; TRUNCATE and column changes
 * bump the table; partition ancestors are bumped with their leaves.
 * Transactions are applied whole, at their commit (pgoutput sends
 * nothing of an aborted one).  The confirmed position advances after
 * every applied commit and when idle, so the slot never holds WAL back.
 *
 * A database's results may be served and stored only while its stream
 * is up (stream_db_up()).  The database is flushed (its tag bumped) when
 * the stream goes down, so results in flight are not stored, and again
 * when it comes back, before it reads as up: what changed while nobody
 * was listening is never served.  Reconnects back off from 100 ms to
 * 5 s.
 *
 * With cfg.notify (--invalidation notify, for servers without
 * wal_level = logical) the consumer LISTENs on a plain connection to the
 * NOTIFYs of statement-level triggers the catalog installs on each table
 * read (function _pgvalet.notify_change(), created here; `pgvalet clean`
 * removes it all).  NOTIFY is delivered at commit, so the rules are the
 * same: a change is applied once committed, a rolled-back one never.
 *
 * Thread-safe: stream_db_get() and stream_db_up() from any worker.
 */
#ifndef PGVALET_INVALIDATE_STREAM_H
#define PGVALET_INVALIDATE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/pgurl.h"

struct cache_store;
struct catalog;
struct push;
struct stream_set;
struct stream_db;

struct stream_config {
	struct pg_url upstream;		/* host, port, user, password, TLS */
	char publication[64];		/* "pgvalet" by default */
	char slot[64];			/* "" = a temporary slot per database */
	struct cache_store *cache;
	struct catalog *cat;
	struct push *push;		/* NULL = no push channel */
	struct cache_tier *tier;	/* NULL = no shared tier */
	bool notify;			/* LISTEN to pgvalet's triggers
					   instead of replication */
};

enum stream_state { STREAM_DOWN = 0, STREAM_UP = 1 };

/* NULL on OOM.  Nothing connects until stream_db_get(). */
struct stream_set *stream_set_new(const struct stream_config *cfg);
/* Stops every consumer (temporary slots go with their connections). */
void stream_set_free(struct stream_set *ss);

/* The database's consumer, started now if new; NULL on OOM. */
struct stream_db *stream_db_get(struct stream_set *ss, const char *db);
/* May results of this database be served and stored? */
bool stream_db_up(const struct stream_db *d);

/*
 * Check at start-up, over a plain connection to the upstream URL's
 * database, what the stream needs: wal_level = logical and the REPLICATION
 * attribute.  0 when all is well or the server cannot be reached (the
 * consumer retries); -1 with err naming what is missing and how to fix it.
 */
int stream_preflight(const struct stream_config *cfg, char *err,
		     size_t errlen);

struct stream_stats {
	uint32_t databases, up;		/* consumers, and how many are up */
	uint64_t transactions;		/* applied */
	uint64_t row_evictions;		/* row tags bumped */
	uint64_t table_evictions;	/* table tags bumped */
	uint64_t flushes;		/* whole-database bumps */
	uint64_t reconnects;		/* times a stream went down */
	uint64_t lag_bytes;		/* worst database: server WAL end -
					   applied position */
	uint64_t lag_ms;		/* worst: last commit applied - its
					   commit time */
};

void stream_set_stats(struct stream_set *ss, struct stream_stats *out);

#endif
