/*
 * indexcols.h - the columns an index could serve in one SELECT: equality,
 * range and join columns of its WHERE and JOIN ... ON conjuncts, and its
 * ORDER BY columns; plus its OFFSET (deep pagination).  Read from the
 * real Postgres parser (libpg_query) for the index advisor.  The rows an
 * UPDATE or DELETE finds are read the same way (its WHERE, FROM / USING).
 *
 * Pure: no I/O, no catalog.  Names are reported as written (the parser
 * lower-cases unquoted identifiers).  Subqueries (in FROM, EXISTS, NOT
 * EXISTS, IN), CTE bodies and UNION arms inside the statement are read
 * as queries of their own: each table and column carries its query's id
 * (0: the statement), a column reference is looked up in its own query
 * and then in the ones around it, and a CTE name is not a table.  An
 * unqualified column of a query over several tables has rel -1 for the
 * caller to resolve among that query's tables.  OR branches add nothing.
 * Thread-safe, like analysis_parse().
 */
#ifndef PGVALET_ANALYSIS_INDEXCOLS_H
#define PGVALET_ANALYSIS_INDEXCOLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "analysis/shape.h"

enum { IDXCOLS_MAX_RELS = 16, IDXCOLS_MAX_COLS = 32 };

enum idxcols_role {
	IDXCOLS_EQ = 0,		/* col = value, col IN (...) */
	IDXCOLS_JOIN,		/* col = other_table.col */
	IDXCOLS_RANGE,		/* <, <=, >, >=, BETWEEN */
	IDXCOLS_ORDER,		/* ORDER BY col */
};

struct idxcols_rel {
	char schema[ANALYSIS_NAME_MAX];	/* "" when unqualified */
	char name[ANALYSIS_NAME_MAX];
	char alias[ANALYSIS_NAME_MAX];	/* what columns are qualified by */
	int query;		/* the (sub)query it belongs to; 0: the top */
};

struct idxcols_col {
	int rel;		/* index into rels, -1: unqualified, ambiguous */
	char name[ANALYSIS_NAME_MAX];
	enum idxcols_role role;
	int query;		/* the (sub)query it appears in */
};

struct idxcols {
	bool is_select;		/* exactly one plain SELECT with a FROM */
	bool is_write;		/* exactly one UPDATE or DELETE */
	int n_queries;		/* nested queries read (ids 1..) */
	int n_rels;
	struct idxcols_rel rels[IDXCOLS_MAX_RELS];
	int n_cols;		/* each (rel, name, role) once, in text order */
	struct idxcols_col cols[IDXCOLS_MAX_COLS];
	int64_t offset;		/* a constant OFFSET, else -1 */
	bool offset_param;	/* OFFSET $n: value unknown here */
};

/*
 * Fill 'out' from 'sql' (NUL-terminated).  0 on success (is_select and
 * is_write both false when the text is anything but one plain SELECT,
 * UPDATE or DELETE; offset only for a SELECT); -1 with the reason in
 * 'err' on a syntax error, a text too complex to parse
 * (analysis_too_complex()) or out of memory.
 */
int idxcols_parse(const char *sql, struct idxcols *out, char *err,
		  size_t errlen);

const char *idxcols_role_name(enum idxcols_role role);

#endif
