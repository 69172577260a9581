/*
 * audit.h - the self-optimizer's audit log: every action of the index
 * advisor (recommended, created, skipped and why, failed, dropped) as a
 * log line and as a record in an in-memory ring of the last AUDIT_RING
 * actions, readable as JSON by the dashboard.
 *
 * Thread-safe (one mutex); audit_add() is for the advisor's thread, not
 * the workers' hot path.
 */
#ifndef PGVALET_OBSERVE_AUDIT_H
#define PGVALET_OBSERVE_AUDIT_H

#include <stdint.h>

#include "observe/rows.h"

enum { AUDIT_RING = 256 };

enum audit_action {
	AUDIT_RECOMMENDED = 0,	/* a verified index, not created (mode) */
	AUDIT_CREATED,		/* CREATE INDEX CONCURRENTLY done */
	AUDIT_SKIPPED,		/* not created or not advised: 'detail' says why */
	AUDIT_FAILED,		/* an error from Postgres */
	AUDIT_DROPPED,		/* an invalid index left by a failed build */
};

struct audit;

struct audit *audit_new(void);
void audit_free(struct audit *a);

/*
 * Record one action.  'shape' is the statement fingerprint (0: none),
 * 'table' schema.table or "", 'index' the index name or DDL or "",
 * 'detail' a short reason.  Also logs one line.
 */
void audit_add(struct audit *a, enum audit_action action, uint64_t shape,
	       const char *db, const char *table, const char *index,
	       const char *detail);

/* [{"at":..,"action":..,"summary":..,"shape":..,"db":..,"table":..,
 * "index":..,"detail":..}, ...] newest first, malloc()ed; NULL on OOM. */
char *audit_json(struct audit *a);

/* SHOW AUDIT: one row per action, newest first, columns AUDIT_COLUMNS. */
enum { AUDIT_NCOLS = 7 };
extern const char *const audit_columns[AUDIT_NCOLS];
void audit_rows(struct audit *a, observe_row_fn fn, void *arg);

/* How many actions of this kind were recorded since start. */
uint64_t audit_count(struct audit *a, enum audit_action action);

const char *audit_action_name(enum audit_action action);

#endif
