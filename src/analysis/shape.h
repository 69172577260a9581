/*
 * shape.h - what a SQL text does, read from the real Postgres parser
 * (libpg_query): statement kinds, tables read and written, function
 * calls, row locks, temp/catalog references, equality predicates usable
 * as row tags, INSERT/UPDATE values, and the statement fingerprint.
 *
 * Pure: no I/O, no catalog access; names are reported as written (the
 * parser lower-cases unquoted identifiers) for the caller to resolve.
 * The caller owns 'struct analysis' and releases it with analysis_free().
 * Thread-safe: libpg_query keeps one memory context per calling thread
 * (freed at thread exit, or by pg_query_exit()).
 */
#ifndef PGVALET_ANALYSIS_SHAPE_H
#define PGVALET_ANALYSIS_SHAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Ordered from harmless to dangerous: the kind of a multi-statement text
 * is the largest of its statements' kinds.
 */
enum analysis_kind {
	ANALYSIS_READ = 0,	/* SELECT/VALUES/TABLE/COPY TO STDOUT/EXPLAIN */
	ANALYSIS_TX,		/* BEGIN, COMMIT, SAVEPOINT, SET TRANSACTION ... */
	ANALYSIS_SESSION,	/* SET, SHOW, PREPARE, EXECUTE, DECLARE, LOCK ... */
	ANALYSIS_WRITE,		/* INSERT/UPDATE/DELETE/MERGE/COPY FROM/CTAS */
	ANALYSIS_DDL,		/* schema, privileges, TRUNCATE, VACUUM ... */
	ANALYSIS_UNKNOWN,	/* DO, CALL, COPY to a file, anything else */
};

enum analysis_tx {
	ANALYSIS_TX_NONE = 0,
	ANALYSIS_TX_BEGIN,	/* BEGIN and START TRANSACTION */
	ANALYSIS_TX_COMMIT,
	ANALYSIS_TX_ROLLBACK,
	ANALYSIS_TX_SAVEPOINT,
	ANALYSIS_TX_RELEASE,
	ANALYSIS_TX_ROLLBACK_TO,
	ANALYSIS_TX_PREPARE,	/* PREPARE TRANSACTION 'gid' */
	ANALYSIS_TX_COMMIT_PREPARED,
	ANALYSIS_TX_ROLLBACK_PREPARED,
	ANALYSIS_TX_SET,	/* SET TRANSACTION ... (incl. SNAPSHOT) */
};

enum analysis_isolation {
	ANALYSIS_ISO_UNSPECIFIED = 0,
	ANALYSIS_ISO_READ_UNCOMMITTED,
	ANALYSIS_ISO_READ_COMMITTED,
	ANALYSIS_ISO_REPEATABLE_READ,
	ANALYSIS_ISO_SERIALIZABLE,
};

enum analysis_value_kind {
	ANALYSIS_VALUE_OTHER = 0,	/* an expression: not usable */
	ANALYSIS_VALUE_CONST,		/* text/len hold the literal */
	ANALYSIS_VALUE_NULL,		/* the NULL literal */
	ANALYSIS_VALUE_PARAM,		/* $param */
	ANALYSIS_VALUE_PARAM_ARRAY,	/* col = ANY($param): every element */
	ANALYSIS_VALUE_DEFAULT,		/* DEFAULT in INSERT/UPDATE */
};

enum analysis_const_type {
	ANALYSIS_CONST_NONE = 0,
	ANALYSIS_CONST_INT,
	ANALYSIS_CONST_FLOAT,	/* numeric literal as written, e.g. "-3.5" */
	ANALYSIS_CONST_STRING,	/* quotes removed, escapes resolved */
	ANALYSIS_CONST_BOOL,	/* "true" / "false" */
	ANALYSIS_CONST_BITSTRING,	/* "b0101" / "xff" */
};

enum analysis_on_conflict {
	ANALYSIS_CONFLICT_NONE = 0,
	ANALYSIS_CONFLICT_NOTHING,
	ANALYSIS_CONFLICT_UPDATE,	/* may update a row found by ANY key */
};

/* Postgres truncates identifiers to NAMEDATALEN-1 = 63 bytes. */
enum { ANALYSIS_NAME_MAX = 64 };

/*
 * Every list below holds at most ANALYSIS_MAX_ITEMS entries per text
 * (statements included); beyond that 'overflow' is set and the rest is
 * dropped, so an overflowed analysis must be treated as UNKNOWN.  Trees
 * deeper than ANALYSIS_MAX_DEPTH are not walked further (also overflow).
 */
enum { ANALYSIS_MAX_ITEMS = 4096, ANALYSIS_MAX_DEPTH = 1000 };

/* A relation named in the text, once per statement. */
struct analysis_rel {
	char schema[ANALYSIS_NAME_MAX];	/* "" when unqualified */
	char name[ANALYSIS_NAME_MAX];
	bool read;		/* scanned: FROM, JOIN, USING, subqueries... */
	bool written;		/* target of a write, or named by DDL/TRUNCATE */
	bool maybe_cte;		/* unqualified and equal to a WITH name */
	bool is_system;		/* pg_catalog./information_schema./pg_* */
	bool is_temp;		/* pg_temp schema or TEMP relation */
};

/* A function call, once per statement. */
struct analysis_func {
	char schema[ANALYSIS_NAME_MAX];	/* "" when unqualified */
	char name[ANALYSIS_NAME_MAX];
	bool known_volatile;	/* random(), nextval(), set_config() ... */
};

struct analysis_value {
	enum analysis_value_kind kind;
	enum analysis_const_type ctype;	/* for ANALYSIS_VALUE_CONST */
	int param;			/* 1-based $n for PARAM/PARAM_ARRAY */
	const char *text;		/* CONST only (NUL-terminated), else "" */
	size_t len;
};

/*
 * One top-level conjunct of WHERE: column = value, or column IN (values):
 * a row the statement reads or changes has column equal to one of
 * values[values_first .. values_first + n_values).  All of a statement's
 * predicates hold at once (they are AND-ed); a WHERE whose top is an OR
 * yields none.  Only conjuncts whose column resolves unambiguously to a
 * relation of the FROM list (or the UPDATE/DELETE target) are listed.
 */
struct analysis_pred {
	size_t rel;		/* index into analysis.rels */
	char column[ANALYSIS_NAME_MAX];
	size_t values_first;	/* index into analysis.values */
	size_t n_values;
};

struct analysis_stmt {
	enum analysis_kind kind;
	size_t offset, length;	/* the statement within the text */

	/* ANALYSIS_TX (isolation also for SET SESSION CHARACTERISTICS). */
	enum analysis_tx tx;
	enum analysis_isolation isolation;
	int tx_read_only;	/* -1 not given, 0 READ WRITE, 1 READ ONLY */
	bool tx_chain;		/* COMMIT/ROLLBACK AND CHAIN */

	/*
	 * GUC (SET/RESET/SHOW; "" for RESET ALL), prepared statement
	 * (PREPARE/EXECUTE/DEALLOCATE; "" for DEALLOCATE ALL), cursor
	 * (DECLARE/FETCH/MOVE/CLOSE), channel (LISTEN/UNLISTEN/NOTIFY),
	 * savepoint, or gid.  EXECUTE runs a statement whose analysis is the
	 * one of its PREPARE: the caller must look it up by this name.
	 */
	char name[ANALYSIS_NAME_MAX];

	bool has_row_lock;	/* FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE */
	bool has_temp_ref;
	bool uses_system_catalog;
	bool has_volatile_func;	/* a known_volatile function is called */
	bool uses_clock;	/* CURRENT_TIMESTAMP, now(), 'now'::timestamp */
	bool creates_relation;	/* SELECT INTO, CREATE TABLE AS, matview */
	bool is_explain;	/* EXPLAIN; executed only with ANALYZE */
	bool has_returning;
	bool overflow;
	int max_param;		/* highest $n, 0 if none */

	size_t rels_first, n_rels;	/* into analysis.rels */
	size_t funcs_first, n_funcs;	/* into analysis.funcs */
	size_t preds_first, n_preds;	/* into analysis.preds */

	/*
	 * INSERT ... VALUES and UPDATE ... SET: n_rows rows of row_width
	 * values each, row r column c at values[rows_first + r*row_width + c].
	 * Column names are cols[cols_first ..]; n_cols is 0 for an INSERT
	 * without a column list (table order).  rows_known is false when
	 * the rows come from a query (INSERT ... SELECT, DEFAULT VALUES).
	 */
	size_t cols_first, n_cols;	/* into analysis.cols */
	size_t rows_first, row_width, n_rows;
	bool rows_known;
	enum analysis_on_conflict on_conflict;
};

struct analysis_col {
	char name[ANALYSIS_NAME_MAX];
};

struct analysis {
	enum analysis_kind kind;	/* the most dangerous statement's */
	uint64_t fingerprint;		/* pg_query_fingerprint() */

	/* OR (max for max_param) over all statements. */
	bool has_row_lock, has_temp_ref, uses_system_catalog;
	bool has_volatile_func, uses_clock, creates_relation, overflow;
	int max_param;

	size_t n_stmts;
	struct analysis_stmt *stmts;
	/* Shared pools the statements index into; the whole text's union. */
	size_t n_rels;
	struct analysis_rel *rels;
	size_t n_funcs;
	struct analysis_func *funcs;
	size_t n_preds;
	struct analysis_pred *preds;
	size_t n_values;
	struct analysis_value *values;
	size_t n_cols;
	struct analysis_col *cols;
	char *text_pool;	/* owns the bytes values[].text point into */
};

/*
 * Parse and analyse 'sql' (NUL-terminated, any number of statements).
 * Returns 0 and fills 'out'; or -1 with 'out' empty and the parser's
 * message (or "out of memory") in 'err' (truncated to errlen; err may
 * be NULL).  An empty text or one of only comments gives 0 statements
 * and ANALYSIS_READ.  A text whose tree libpg_query would blow up
 * (wide or nested SET (a, b, ...) = ...) is not parsed: it gives one
 * ANALYSIS_UNKNOWN statement spanning the text, with overflow set.
 * Either way release 'out' with analysis_free().
 *
 * libpg_query allocates in a memory context of the calling thread,
 * created on first use and kept between calls; it is freed when the
 * thread exits, or earlier by pg_query_exit() on that thread.
 */
int analysis_parse(const char *sql, struct analysis *out, char *err,
		   size_t errlen);

/* Free what analysis_parse() allocated; leaves 'a' empty.  Idempotent. */
void analysis_free(struct analysis *a);

/*
 * pg_query_fingerprint() of 'sql': equal for texts that differ only in
 * constants, parameter numbers, whitespace and comments.  0 on a parse
 * error.
 */
uint64_t analysis_fingerprint(const char *sql);

/*
 * 'sql' with every constant replaced by $n (pg_query_normalize()), as a
 * malloc()ed string the caller frees; NULL on a parse error, OOM, or a
 * text too costly to parse (see analysis_parse()).
 */
char *analysis_normalize(const char *sql);

const char *analysis_kind_name(enum analysis_kind kind);

/*
 * True when libpg_query must not parse 'sql' (its tree would copy too
 * much or nest deep enough to overflow the stack): analysis_parse()
 * refuses such a text; any other caller of the parser must too.
 */
bool analysis_too_complex(const char *sql);

#endif
