/*
 * advisor.h - the index advisor: watches the observation feed for slow
 * statement shapes (mean upstream time >= --threshold-duration-ms) and,
 * on a thread of its own, finds an index that makes each one cheaper,
 * verified with hypopg (observe/indexer.h).  In every mode the advice is
 * recorded; in --mode optimize the index is also created (CREATE INDEX
 * CONCURRENTLY, at most --max-indexes-per-hour, never on
 * --exclude-tables).  Every action goes to the audit log (audit.h).  It
 * also parses each new shape once, and samples those with an OFFSET,
 * for the deep-OFFSET warnings of nplus1.h.
 *
 * advisor_observe() is an observe.h listener: workers call it; it takes
 * one striped lock and copies the statement only when it hands a shape
 * to the thread (once per shape, or once a second for OFFSET samples).
 * advisor_start()/advisor_stop() from the main thread; the JSON
 * functions from any thread.
 */
#ifndef PGVALET_OBSERVE_ADVISOR_H
#define PGVALET_OBSERVE_ADVISOR_H

#include <stdint.h>

#include "core/config.h"
#include "observe/observe.h"
#include "observe/rows.h"

struct advisor;
struct nplus1;
struct audit;

/* Keeps pointers to cfg, np and au: they must outlive the advisor. */
struct advisor *advisor_new(const struct config *cfg, struct nplus1 *np,
			    struct audit *au);
int advisor_start(struct advisor *ad);
/* Cancel what the thread is doing, join it.  Idempotent. */
void advisor_stop(struct advisor *ad);
void advisor_free(struct advisor *ad);

/* A new --threshold-duration-ms at run time (POST /api/settings): shapes
 * already handed to the advisor are not looked at again before their
 * retry time. */
void advisor_set_threshold(struct advisor *ad, int ms);

/* observe_fn: 'arg' is the struct advisor. */
void advisor_observe(const struct stmt_observation *o, void *arg);

/* A JSON array, malloc()ed (NULL on OOM), newest first: notes
 * ({"kind":"note","summary":..}: e.g. hypopg missing in a database), then
 * each verified index ({"kind":"index","summary":..}) with its table,
 * columns, DDL, costs before and after, shape, example, time, status. */
char *advisor_advice_json(struct advisor *ad);

/* SHOW ADVICE: the same, one row per index advice (notes left out),
 * newest first, columns advisor_advice_columns. */
enum { ADVISOR_ADVICE_NCOLS = 11 };
extern const char *const advisor_advice_columns[ADVISOR_ADVICE_NCOLS];
void advisor_advice_rows(struct advisor *ad, observe_row_fn fn, void *arg);

/* The audit log (audit_json() of the advisor's audit). */
char *advisor_audit_json(struct advisor *ad);

#endif
