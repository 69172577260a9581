/*
 * catalog.h - what the upstream's catalogs say about a relation or a
 * function name, as far as the result cache needs it.
 *
 * Facts are fetched by one background thread over libpq (one connection
 * per database, as the upstream URL's user) and cached per (database,
 * name).  Lookups never block and never wait for the network: a name not
 * known yet returns CAT_UNKNOWN and is queued; the statement that asked is
 * simply not cached this time (and a write is invalidated database-wide).
 *
 * Facts are keyed by name alone, the union over every schema that has
 * the name: safe whatever the client's search_path, at the cost of some
 * extra invalidation.  DDL seen by the proxy calls catalog_forget(),
 * which drops the database's facts; a fetch that raced with it is thrown
 * away (generation numbers), so no pre-DDL fact survives.
 *
 * Thread-safe: any worker may call any function.
 */
#ifndef PGVALET_ANALYSIS_CATALOG_H
#define PGVALET_ANALYSIS_CATALOG_H

#include <stdbool.h>
#include <stdint.h>

#include "core/pgurl.h"

struct catalog;

enum { CAT_MAX_TAGS = 16 };

enum cat_status {
	CAT_UNKNOWN = 0,	/* not fetched yet (now queued) or fetch failed */
	CAT_KNOWN,
};

/* A relation name. */
struct cat_rel {
	bool exists;		/* a table, view, matview, foreign table or sequence */
	bool uncacheable;	/* temp, foreign, sequence, or a view/policy
				   calling a volatile or user-defined function */
	bool write_floods;	/* user triggers or rules: a write may change
				   anything */
	char key_col[64];	/* single-column unique integer key (the
				   primary key first), "" if none: rows
				   are tagged by its value */
	uint8_t n_read;		/* 0 with !uncacheable: nothing to tag */
	uint8_t n_write;
	uint8_t n_up;
	uint64_t read_tags[CAT_MAX_TAGS];	/* base relations read */
	uint64_t write_tags[CAT_MAX_TAGS];	/* relations a write may change */
	uint64_t up_tags[CAT_MAX_TAGS];	/* inheritance/partition ancestors:
					   a row change here changes them;
					   n_up == CAT_MAX_TAGS: maybe more */
};

/* A function name, over all its overloads. */
enum cat_func {
	CAT_FUNC_SAFE,		/* immutable, or a built-in stable one */
	CAT_FUNC_UNSAFE,	/* volatile built-in, stable user function,
				   unknown name, or one that reads catalogs */
	CAT_FUNC_WRITES,	/* a volatile user function: may write */
};

/* NULL on OOM.  The upstream URL gives host, port, user, password, TLS. */
struct catalog *catalog_new(const struct pg_url *upstream);
/*
 * Reads are cached only when the invalidation stream carries every change
 * to what they read.  CAT_COVER_PUBLICATION: every base table they read
 * must be in publication 'pub' (a materialized view never is: REFRESH is
 * not in the stream).  CAT_COVER_TRIGGERS: every base table must carry
 * pgvalet's NOTIFY triggers (partitioned tables and their partitions are
 * not covered).  CAT_COVER_NONE (the default) checks nothing.  Call before
 * catalog_start().
 */
enum cat_cover { CAT_COVER_NONE, CAT_COVER_PUBLICATION, CAT_COVER_TRIGGERS };
void catalog_set_coverage(struct catalog *cat, enum cat_cover how,
			  const char *pub);
/*
 * May the catalog extend coverage in 'db'?  Publication: it is pgvalet's
 * own, so a table that has a replica identity is added to it the first
 * time the table is read (one without is left out: adding it would make
 * UPDATE and DELETE on it fail, and reads of it are not cached).
 * Triggers: pgvalet's trigger function exists, so a table gets the
 * triggers the first time it is read.  Not managed (the default): tables
 * not covered are simply not cached.  Changing it forgets the database's
 * facts.
 */
void catalog_manage_coverage(struct catalog *cat, const char *db,
			     bool manage);
/* Start the fetching thread; -1 if it cannot be created. */
int catalog_start(struct catalog *cat);
void catalog_free(struct catalog *cat);

enum cat_status catalog_rel(struct catalog *cat, const char *db,
			    const char *name, struct cat_rel *out);
/*
 * catalog_rel() for a thread that may block (the replication consumer):
 * waits up to timeout_ms for the facts to be fetched.
 */
enum cat_status catalog_rel_wait(struct catalog *cat, const char *db,
				 const char *name, struct cat_rel *out,
				 int timeout_ms);
enum cat_status catalog_func(struct catalog *cat, const char *db,
			     const char *name, enum cat_func *out);

/*
 * Does a plain BEGIN by 'user' in 'db' start a READ COMMITTED
 * transaction (server, database and role defaults all agree)?
 */
enum cat_status catalog_read_committed(struct catalog *cat, const char *db,
				       const char *user, bool *out);

/* Forget every fact about 'db' (after DDL). */
void catalog_forget(struct catalog *cat, const char *db);

#endif
