/*
 * shape_build.h - private to src/analysis/: the growable pools that
 * shape.c (statements, walk, kinds) and shape_pred.c (predicates, rows)
 * fill while analysing one text, before they are handed to the caller
 * in 'struct analysis'.  One builder per analysis_parse() call.
 */
#ifndef PGVALET_ANALYSIS_SHAPE_BUILD_H
#define PGVALET_ANALYSIS_SHAPE_BUILD_H

#include <stdbool.h>
#include <stddef.h>

#include <pg_query/pg_query.pb-c.h>

#include "analysis/shape.h"

struct shape_vec {
	void *p;
	size_t n, cap;
};

struct shape_build {
	struct shape_vec stmts;		/* struct analysis_stmt */
	struct shape_vec rels;		/* struct analysis_rel */
	struct shape_vec rel_refs;	/* size_t, parallel to rels: mentions */
	struct shape_vec funcs;		/* struct analysis_func */
	struct shape_vec preds;		/* struct analysis_pred */
	struct shape_vec values;	/* struct analysis_value */
	struct shape_vec value_offs;	/* size_t, parallel to values */
	struct shape_vec cols;		/* struct analysis_col */
	struct shape_vec ctes;		/* struct analysis_col: WITH names */
	char *pool;			/* constant text, NUL-separated */
	size_t pool_len, pool_cap;
	bool oom;
	bool overflow;			/* of the statement being built */
};

#define SHAPE_AT(vec, type, i) (&((type *)(vec).p)[i])

/* A zeroed slot at the end of 'v', or NULL (b->oom or b->overflow set). */
void *shape_vec_push(struct shape_build *b, struct shape_vec *v, size_t elem);

/* Bounded copy; a truncation marks the statement overflowed. */
void shape_copy_name(struct shape_build *b, char *dst, const char *src);

/* The text of a String node, or NULL for any other node. */
const char *shape_node_str(const PgQuery__Node *n);

/* Index of (schema, name) among the statement's rels, or SIZE_MAX. */
size_t shape_find_rel(const struct shape_build *b,
		      const struct analysis_stmt *st, const char *schema,
		      const char *name);

/*
 * Equality predicates of the statement's top-level WHERE, and the rows
 * of INSERT ... VALUES / UPDATE ... SET ('top' is SELECT, INSERT,
 * UPDATE or DELETE; anything else adds nothing).
 */
void shape_preds(struct shape_build *b, struct analysis_stmt *st,
		 const PgQuery__Node *top);

#endif
