/*
 * indexer.h - the database half of the index advisor: for one slow
 * SELECT, candidate indexes from its equality, join, range and ORDER BY
 * columns (analysis/indexcols.h), each verified with hypopg's
 * hypothetical indexes against EXPLAIN's cost; and the creation of a
 * verified index (CREATE INDEX CONCURRENTLY under a pgvalet_idx_ name,
 * marked by a comment so that `pgvalet clean` finds it).
 *
 * Blocking libpq calls on a connection the caller owns: for the
 * advisor's own thread, never a worker.  Nothing here is shared.
 */
#ifndef PGVALET_OBSERVE_INDEXER_H
#define PGVALET_OBSERVE_INDEXER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "analysis/shape.h"

enum { INDEXER_MAX_COLS = 4 };

/* Postgres' identifier limit is 63 bytes; pgvalet's index names fit. */
enum { INDEXER_NAME_MAX = 64 };

/* What `COMMENT ON INDEX` of every index pgvalet creates starts with. */
#define INDEXER_COMMENT "created by pgvalet"
#define INDEXER_PREFIX "pgvalet_idx_"

/* The cost must drop by at least this fraction to be advised. */
#define INDEXER_MIN_GAIN 0.30

struct indexer_advice {
	char schema[ANALYSIS_NAME_MAX];
	char table[ANALYSIS_NAME_MAX];
	int n_cols;
	char cols[INDEXER_MAX_COLS][ANALYSIS_NAME_MAX];
	char name[INDEXER_NAME_MAX];	/* pgvalet_idx_<table>_<cols> */
	char ddl[1100];			/* CREATE INDEX CONCURRENTLY ... */
	double cost_before, cost_after;	/* EXPLAIN total cost */
	int candidates;			/* how many were tried */
};

enum indexer_result {
	INDEXER_ADVICE = 0,	/* 'out' holds a verified index */
	INDEXER_NONE,		/* nothing worth it; 'why' says why */
	INDEXER_ERROR,		/* a database error; 'why' holds it */
};

/*
 * Make sure hypopg is usable on 'c' (CREATE EXTENSION IF NOT EXISTS
 * when missing; an extension created here is commented
 * INDEXER_COMMENT so that `pgvalet clean` drops it).  0, or -1 with
 * the reason (e.g. "permission denied to create extension") in 'why'.
 */
int indexer_hypopg(PGconn *c, char *why, size_t whylen);

/*
 * Verify candidate indexes for 'sql' (one SELECT, with constants or
 * $n parameters: those are planned generically).  Candidates whose
 * leading column already leads an index of the table are not tried.
 * Hypothetical indexes are reset before returning.
 */
enum indexer_result indexer_advise(PGconn *c, const char *sql,
				   struct indexer_advice *out, char *why,
				   size_t whylen);

/*
 * CREATE INDEX CONCURRENTLY a->name and COMMENT ON it.  0 on success,
 * also when it already exists (*existed set, 'why' says so); -1 with the
 * error in 'why'.  An invalid index left by an earlier or this failed
 * build is dropped (*dropped_invalid set).
 */
int indexer_create(PGconn *c, const struct indexer_advice *a, uint64_t shape,
		   bool *existed, bool *dropped_invalid, char *why,
		   size_t whylen);

/*
 * EXPLAIN 'sql' as it is now: 0 with whether the plan uses index 'name'
 * and its total cost; -1 with the error in 'why'.
 */
int indexer_check_plan(PGconn *c, const char *sql, const char *name,
		       bool *used, double *cost, char *why, size_t whylen);

/*
 * SET ROLE 'role' (RESET ROLE when 'role' is NULL or ""): statements are
 * planned as the role that sent them, never as the proxy's own (maybe
 * superuser) role - planning may run the role's IMMUTABLE functions.
 * 'why' is left alone (may be NULL) for a RESET.
 */
int indexer_set_role(PGconn *c, const char *role, char *why, size_t whylen);

/* pgvalet_idx_<table>_<col>_<col>: [a-z0-9_] only, at most 63 bytes
 * (a hash of the full name ends a shortened one). */
void indexer_name(const char *table, const char *const *cols, int n_cols,
		  char out[INDEXER_NAME_MAX]);

/* Whether schema.table is in 'list' ("a, s.b": a in any schema, b only
 * in s).  Names compare case-insensitively. */
bool indexer_excluded(const char *list, const char *schema,
		      const char *table);

#endif
