/*
 * observe.h - the per-statement observation feed: the session layer
 * reports each completed statement once, and the listeners registered at
 * start-up (workload stats, index advisor, N+1 detector, ...) each get it.
 *
 * Contract:
 *  - observe_add_listener() is called only during start-up, before any
 *    worker thread runs; at most OBSERVE_MAX_LISTENERS listeners.
 *  - observe_statement() is called from worker threads, concurrently, on
 *    the hot path: listeners must be thread-safe, must not block on I/O
 *    and should cost well under a microsecond (queue work for a thread of
 *    their own if they need a database).
 *  - The observation and every pointer in it are valid only during the
 *    call: a listener copies what it keeps.
 *  - With no listener registered, observe_statement() is one branch.
 */
#ifndef PGVALET_OBSERVE_OBSERVE_H
#define PGVALET_OBSERVE_OBSERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { OBSERVE_MAX_LISTENERS = 8 };

struct stmt_observation {
	uint64_t fingerprint;	/* analysis_fingerprint(): the statement's shape */
	const char *sql;	/* the statement text as the client sent it */
	size_t sql_len;
	const char *db;		/* database name (NUL-terminated) */
	const char *user;	/* client's user name (NUL-terminated) */
	uint64_t client_id;	/* unique per client connection, never reused */
	uint64_t params_hash;	/* hash of the bound parameter values; 0: none */
	int64_t started_us;	/* clock_unix_us() when the statement arrived */
	int64_t duration_us;	/* arrival to the last byte of its answer */
	uint64_t rows;		/* rows returned or affected, when known */
	bool cache_hit;		/* answered by the result cache */
	bool failed;		/* ended in an ErrorResponse */
};

typedef void (*observe_fn)(const struct stmt_observation *o, void *arg);

/* Returns 0, or -1 when OBSERVE_MAX_LISTENERS are already registered. */
int observe_add_listener(observe_fn fn, void *arg);

/* Hands 'o' to every listener, in registration order. */
void observe_statement(const struct stmt_observation *o);

/* True when at least one listener is registered (skip building 'o'). */
bool observe_enabled(void);

#endif
