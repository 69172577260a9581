/*
 * sqlclass.h - the little the pooler must know about SQL text: statement
 * boundaries and the statements that change or pin session state.
 *
 * A lexer, not a parser: it skips strings, quoted identifiers, dollar
 * quotes and comments, splits on ';', and looks at the leading keywords.
 * Pure functions over (ptr, len); fuzzed by tests/fuzz/fuzz_sqlclass.c.
 */
#ifndef PGVALET_POOL_SQLCLASS_H
#define PGVALET_POOL_SQLCLASS_H

#include <stddef.h>

enum sql_kind {
	SQL_OTHER = 0,
	SQL_SET,		/* session-level SET name ...: name filled */
	SQL_RESET,		/* RESET name / SET name TO DEFAULT */
	SQL_RESET_ALL,
	SQL_DISCARD_ALL,
	SQL_DEALLOCATE,		/* DEALLOCATE [PREPARE] name: name filled */
	SQL_DEALLOCATE_ALL,
	SQL_PIN,		/* ties the session to its backend */
};

enum { SQL_NAME_MAX = 128 };

struct sql_stmt {
	size_t off;		/* statement start within the text */
	size_t len;		/* without the ';' */
	enum sql_kind kind;
	char name[SQL_NAME_MAX];	/* GUC (lower case) or statement name */
};

/*
 * Classify one statement (no ';' inside).  'name' receives the GUC for
 * SET/RESET (lower-cased unless quoted) or the DEALLOCATE target.
 */
enum sql_kind sqlclass_classify(const char *text, size_t len, char *name,
				size_t namelen);

/*
 * Split 'text' into statements and classify each; empty statements are
 * skipped.  Returns how many were found (may exceed max: only the first
 * max are stored).
 */
size_t sqlclass_split(const char *text, size_t len, struct sql_stmt *out,
		      size_t max);

/* True when any statement of the text may need special handling. */
int sqlclass_interesting(const char *text, size_t len);

#endif
