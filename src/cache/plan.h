/*
 * plan.h - what the result cache does with one statement text: serve and
 * store it (with the tags of what it reads), invalidate what it writes,
 * or stay out of the way.
 *
 * Each distinct text is parsed once (analysis/shape.h) and summarised in
 * a shared table bounded in bytes (oldest texts dropped first); planning a text seen before costs a hash, a
 * compare and one catalog lookup per relation or function name.  The
 * catalog (analysis/catalog.h) turns names into tags; a name it does not
 * know yet makes a read uncacheable this time and a write flood the
 * database: never less invalidation than needed.
 *
 * Thread-safe: one plan_table for all workers.
 */
#ifndef PGVALET_CACHE_PLAN_H
#define PGVALET_CACHE_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "analysis/catalog.h"
#include "cache/store.h"

struct plan_table;

enum plan_tx {
	PLAN_TX_NONE = 0,
	PLAN_TX_BEGIN,		/* BEGIN / START TRANSACTION */
	PLAN_TX_END,		/* COMMIT, ROLLBACK, PREPARE TRANSACTION */
	PLAN_TX_OTHER,		/* savepoints, SET, SHOW: other control */
};

struct plan {
	bool cacheable;		/* a read whose answer may be served/stored */
	bool flood;		/* at completion: invalidate the database */
	bool forget_catalog;	/* at completion: the catalog changed */
	bool writes;		/* the statement may change data */
	bool repeatable;	/* BEGIN/SET asks for REPEATABLE READ or above */
	enum plan_tx tx;
	uint32_t n_tags;	/* cacheable: the result's tags (db tag first) */
	uint64_t tags[CACHE_MAX_TAGS];
	uint32_t n_inval;	/* writes && !flood: tags to bump */
	uint64_t inval[CACHE_MAX_TAGS];
};

/* max_bytes bounds the memory the summaries take (at least 1MB). */
struct plan_table *plan_table_new(struct catalog *cat, size_t max_bytes);
void plan_table_free(struct plan_table *pt);

/*
 * Plan 'text' (len bytes, no NUL needed) run in database 'db', with the
 * Bind body after its portal and statement names (parameter formats and
 * values; NULL for none), from which row keys given as $n are read.
 * Never fails: on OOM the plan is the conservative one (not cacheable,
 * flood); a text the parser rejects is neither cached nor invalidating
 * (the server rejects it too).
 */
void plan_make(struct plan_table *pt, const char *db, const char *text,
	       size_t len, const uint8_t *bind, size_t bind_len,
	       struct plan *out);

#endif
