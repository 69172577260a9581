/*
 * nplus1.h - N+1 query detection and deep-OFFSET pagination warnings.
 *
 * N+1: one SELECT shape run again and again with a different parameter
 * each time - at least NPLUS1_MIN_CALLS times within NPLUS1_WINDOW_MS - on
 * one client connection (an ORM loading each parent's children lazily),
 * or across connections.  Deep OFFSET: a SELECT whose constant OFFSET is
 * at least NPLUS1_DEEP_OFFSET rows (reported by the advisor's thread,
 * which parses statements).  Each finding is logged once, with its
 * shape and an example, and kept (counts updated) for nplus1_json().
 *
 * nplus1_observe() is an observe.h listener: called by workers on the
 * hot path, it takes one striped lock and copies nothing except when a
 * finding is new.  Everything is thread-safe.
 */
#ifndef PGVALET_OBSERVE_NPLUS1_H
#define PGVALET_OBSERVE_NPLUS1_H

#include <stdint.h>

#include "observe/observe.h"
#include "observe/rows.h"

enum {
	NPLUS1_WINDOW_MS = 1000,
	NPLUS1_MIN_CALLS = 10,
	NPLUS1_DEEP_OFFSET = 1000,
	NPLUS1_MAX_FINDINGS = 128,
};

struct nplus1;

struct nplus1 *nplus1_new(void);
void nplus1_free(struct nplus1 *np);

/* observe_fn: 'arg' is the struct nplus1. */
void nplus1_observe(const struct stmt_observation *o, void *arg);

/* A SELECT of shape 'shape' ran with OFFSET 'offset' (>= the limit). */
void nplus1_note_offset(struct nplus1 *np, uint64_t shape, const char *db,
			const char *sql, int64_t offset);

/* Findings so far, oldest first, as a malloc()ed JSON array of
 * {"kind":"n+1"|"deep_offset","scope":..,"summary":..,"shape":..,
 * "example":..,...}; NULL on OOM. */
char *nplus1_json(struct nplus1 *np);

/* SHOW NPLUS1: one row per finding, columns nplus1_columns. */
enum { NPLUS1_NCOLS = 9 };
extern const char *const nplus1_columns[NPLUS1_NCOLS];
void nplus1_rows(struct nplus1 *np, observe_row_fn fn, void *arg);

/* How many distinct findings (N+1 and deep OFFSET) there are. */
unsigned nplus1_count(struct nplus1 *np);

#endif
