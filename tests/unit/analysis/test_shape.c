/*
 * test_shape.c - statement analysis (analysis/shape.h) over the real
 * Postgres parser.  The cache trusts these answers for promise 1 (what
 * a write touches) and promise 4 (what may be cached), so each fact has
 * a table of statements with the expected answer, and every analysis is
 * also checked for the structural invariants the fuzzer checks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/shape.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ------------------------------------------------------------ */

struct buf {
	char s[8192];
	size_t n;
};

static void
buf_add(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(b->s + b->n, sizeof(b->s) - b->n, fmt, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < sizeof(b->s) - b->n);
	b->n += (size_t)n;
}

static bool
name_ok(const char *name)
{
	return memchr(name, '\0', ANALYSIS_NAME_MAX) != NULL;
}

/* The invariants every analysis must hold (the fuzzer checks the same). */
static void
check_invariants(const char *sql, const struct analysis *a)
{
	const struct analysis_stmt *st;
	const struct analysis_value *v;
	const struct analysis_pred *p;
	size_t i, j, len = strlen(sql);

	assert_true((unsigned)a->kind <= ANALYSIS_UNKNOWN);
	for (i = 0; i < a->n_values; i++) {
		v = &a->values[i];
		assert_non_null(v->text);
		assert_int_equal(strlen(v->text), v->len);
		if (v->kind != ANALYSIS_VALUE_CONST)
			assert_int_equal(v->len, 0);
	}
	for (i = 0; i < a->n_stmts; i++) {
		st = &a->stmts[i];
		assert_true((unsigned)st->kind <= (unsigned)a->kind);
		assert_true(st->offset <= len);
		assert_true(st->length <= len - st->offset);
		assert_true(name_ok(st->name));
		assert_true(st->rels_first + st->n_rels <= a->n_rels);
		assert_true(st->funcs_first + st->n_funcs <= a->n_funcs);
		assert_true(st->preds_first + st->n_preds <= a->n_preds);
		assert_true(st->cols_first + st->n_cols <= a->n_cols);
		assert_true(st->rows_first + st->n_rows * st->row_width <=
			    a->n_values);
		for (j = 0; j < st->n_preds; j++) {
			p = &a->preds[st->preds_first + j];
			assert_true(p->rel >= st->rels_first &&
				    p->rel < st->rels_first + st->n_rels);
			assert_true(p->values_first + p->n_values <=
				    a->n_values);
			assert_true(name_ok(p->column));
		}
	}
}

static void
parse_ok(const char *sql, struct analysis *a)
{
	char err[256] = "";

	if (analysis_parse(sql, a, err, sizeof(err)) != 0)
		fail_msg("analysis_parse(%s): %s", sql, err);
	check_invariants(sql, a);
}

static void
render_value(struct buf *b, const struct analysis_value *v)
{
	static const char ctypes[] = "?ifsbx";

	switch (v->kind) {
	case ANALYSIS_VALUE_CONST:
		buf_add(b, "%c:%s", ctypes[v->ctype], v->text);
		break;
	case ANALYSIS_VALUE_NULL:
		buf_add(b, "null");
		break;
	case ANALYSIS_VALUE_PARAM:
		buf_add(b, "$%d", v->param);
		break;
	case ANALYSIS_VALUE_PARAM_ARRAY:
		buf_add(b, "$%d[]", v->param);
		break;
	case ANALYSIS_VALUE_DEFAULT:
		buf_add(b, "default");
		break;
	default:
		buf_add(b, "?");
		break;
	}
}

static void
render_rel_name(struct buf *b, const struct analysis_rel *r)
{
	if (r->schema[0])
		buf_add(b, "%s.", r->schema);
	buf_add(b, "%s", r->name);
}

static int
cmp_str(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/*
 * "name:flags" per rel of statement 'si', sorted, flags from r (read),
 * w (written), c (maybe_cte), s (system), t (temp).
 */
static void
render_rels(struct buf *out, const struct analysis *a, size_t si)
{
	const struct analysis_stmt *st = &a->stmts[si];
	const struct analysis_rel *r;
	char *items[64];
	struct buf one;
	size_t i, n = st->n_rels;

	assert_true(n <= N_ELEMS(items));
	for (i = 0; i < n; i++) {
		r = &a->rels[st->rels_first + i];
		memset(&one, 0, sizeof(one));
		render_rel_name(&one, r);
		buf_add(&one, ":%s%s%s%s%s", r->read ? "r" : "",
			r->written ? "w" : "", r->maybe_cte ? "c" : "",
			r->is_system ? "s" : "", r->is_temp ? "t" : "");
		items[i] = strdup(one.s);
		assert_non_null(items[i]);
	}
	qsort(items, n, sizeof(*items), cmp_str);
	for (i = 0; i < n; i++) {
		buf_add(out, "%s%s", i ? " " : "", items[i]);
		free(items[i]);
	}
}

/* "rel.col=v1,v2 ; ..." for statement 'si', in WHERE order. */
static void
render_preds(struct buf *b, const struct analysis *a, size_t si)
{
	const struct analysis_stmt *st = &a->stmts[si];
	const struct analysis_pred *p;
	size_t i, j;

	for (i = 0; i < st->n_preds; i++) {
		p = &a->preds[st->preds_first + i];
		if (i)
			buf_add(b, " ; ");
		render_rel_name(b, &a->rels[p->rel]);
		buf_add(b, ".%s=", p->column);
		for (j = 0; j < p->n_values; j++) {
			if (j)
				buf_add(b, ",");
			render_value(b, &a->values[p->values_first + j]);
		}
	}
}

/* Columns "a,b" and rows "v,v|v,v" of statement 0. */
static void
render_rows(struct buf *cols, struct buf *rows, const struct analysis *a)
{
	const struct analysis_stmt *st = &a->stmts[0];
	size_t r, c;

	for (c = 0; c < st->n_cols; c++)
		buf_add(cols, "%s%s", c ? "," : "",
			a->cols[st->cols_first + c].name);
	for (r = 0; r < st->n_rows; r++) {
		if (r)
			buf_add(rows, "|");
		for (c = 0; c < st->row_width; c++) {
			if (c)
				buf_add(rows, ",");
			render_value(rows, &a->values[st->rows_first +
						      r * st->row_width + c]);
		}
	}
}

/* ---- kinds -------------------------------------------------------------- */

struct kind_case {
	const char *sql;
	enum analysis_kind kind;
};

static const struct kind_case kind_cases[] = {
	{"SELECT 1", ANALYSIS_READ},
	{"VALUES (1), (2)", ANALYSIS_READ},
	{"TABLE t", ANALYSIS_READ},
	{"SELECT * FROM t UNION SELECT * FROM u", ANALYSIS_READ},
	{"WITH x AS (SELECT 1) SELECT * FROM x", ANALYSIS_READ},
	{"COPY t TO STDOUT", ANALYSIS_READ},
	{"COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT csv)", ANALYSIS_READ},
	{"EXPLAIN SELECT 1", ANALYSIS_READ},
	{"EXPLAIN DELETE FROM t", ANALYSIS_READ},
	{"EXPLAIN (ANALYZE off) DELETE FROM t", ANALYSIS_READ},
	{"EXPLAIN (ANALYZE false, COSTS off) UPDATE t SET a = 1",
	 ANALYSIS_READ},
	{"EXPLAIN (ANALYZE 0) DELETE FROM t", ANALYSIS_READ},
	{"EXPLAIN ANALYZE SELECT 1", ANALYSIS_READ},
	{"EXPLAIN EXECUTE p", ANALYSIS_READ},
	{"BEGIN", ANALYSIS_TX},
	{"START TRANSACTION READ ONLY", ANALYSIS_TX},
	{"COMMIT", ANALYSIS_TX},
	{"END", ANALYSIS_TX},
	{"ROLLBACK", ANALYSIS_TX},
	{"ABORT", ANALYSIS_TX},
	{"SAVEPOINT a", ANALYSIS_TX},
	{"RELEASE SAVEPOINT a", ANALYSIS_TX},
	{"ROLLBACK TO SAVEPOINT a", ANALYSIS_TX},
	{"PREPARE TRANSACTION 'x'", ANALYSIS_TX},
	{"COMMIT PREPARED 'x'", ANALYSIS_TX},
	{"ROLLBACK PREPARED 'x'", ANALYSIS_TX},
	{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", ANALYSIS_TX},
	{"SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", ANALYSIS_TX},
	{"SET transaction_isolation = 'serializable'", ANALYSIS_TX},
	{"SET search_path = a, b", ANALYSIS_SESSION},
	{"SET LOCAL statement_timeout = 5", ANALYSIS_SESSION},
	{"SET TIME ZONE 'UTC'", ANALYSIS_SESSION},
	{"RESET ALL", ANALYSIS_SESSION},
	{"SHOW search_path", ANALYSIS_SESSION},
	{"PREPARE p AS SELECT 1", ANALYSIS_SESSION},
	{"PREPARE p (int) AS DELETE FROM t WHERE id = $1", ANALYSIS_SESSION},
	{"EXECUTE p (1)", ANALYSIS_SESSION},
	{"DEALLOCATE p", ANALYSIS_SESSION},
	{"DEALLOCATE ALL", ANALYSIS_SESSION},
	{"DECLARE c CURSOR FOR SELECT * FROM t", ANALYSIS_SESSION},
	{"FETCH 10 FROM c", ANALYSIS_SESSION},
	{"MOVE NEXT IN c", ANALYSIS_SESSION},
	{"CLOSE c", ANALYSIS_SESSION},
	{"LISTEN ch", ANALYSIS_SESSION},
	{"UNLISTEN *", ANALYSIS_SESSION},
	{"NOTIFY ch, 'x'", ANALYSIS_SESSION},
	{"DISCARD ALL", ANALYSIS_SESSION},
	{"LOCK TABLE t IN ACCESS EXCLUSIVE MODE", ANALYSIS_SESSION},
	{"SET CONSTRAINTS ALL DEFERRED", ANALYSIS_SESSION},
	{"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL "
	 "SERIALIZABLE", ANALYSIS_SESSION},
	{"SET default_transaction_isolation = 'serializable'",
	 ANALYSIS_SESSION},
	{"INSERT INTO t VALUES (1)", ANALYSIS_WRITE},
	{"UPDATE t SET a = 1", ANALYSIS_WRITE},
	{"DELETE FROM t", ANALYSIS_WRITE},
	{"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
	 ANALYSIS_WRITE},
	{"COPY t FROM STDIN", ANALYSIS_WRITE},
	{"CREATE TABLE x AS SELECT 1", ANALYSIS_WRITE},
	{"SELECT 1 AS a INTO x", ANALYSIS_WRITE},
	{"CREATE MATERIALIZED VIEW m AS SELECT 1", ANALYSIS_WRITE},
	{"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
	 ANALYSIS_WRITE},
	{"SELECT * FROM (WITH d AS (UPDATE t SET a = 1 RETURNING a) "
	 "SELECT * FROM d) s", ANALYSIS_WRITE},
	{"EXPLAIN ANALYZE UPDATE t SET a = 1", ANALYSIS_WRITE},
	{"EXPLAIN (ANALYZE, BUFFERS) INSERT INTO t VALUES (1)",
	 ANALYSIS_WRITE},
	{"EXPLAIN (ANALYZE true) DELETE FROM t", ANALYSIS_WRITE},
	{"SELECT 1; DELETE FROM t", ANALYSIS_WRITE},
	{"CREATE TABLE t (a int)", ANALYSIS_DDL},
	{"CREATE TEMP TABLE t (a int)", ANALYSIS_DDL},
	{"ALTER TABLE t ADD COLUMN b int", ANALYSIS_DDL},
	{"ALTER TABLE t RENAME TO u", ANALYSIS_DDL},
	{"DROP TABLE t", ANALYSIS_DDL},
	{"TRUNCATE t", ANALYSIS_DDL},
	{"CREATE INDEX ON t (a)", ANALYSIS_DDL},
	{"CREATE VIEW v AS SELECT * FROM t", ANALYSIS_DDL},
	{"GRANT SELECT ON t TO r", ANALYSIS_DDL},
	{"REVOKE ALL ON t FROM r", ANALYSIS_DDL},
	{"COMMENT ON TABLE t IS 'x'", ANALYSIS_DDL},
	{"VACUUM t", ANALYSIS_DDL},
	{"ANALYZE t", ANALYSIS_DDL},
	{"CLUSTER t USING i", ANALYSIS_DDL},
	{"REINDEX TABLE t", ANALYSIS_DDL},
	{"CREATE FUNCTION f() RETURNS int AS 'SELECT 1' LANGUAGE sql",
	 ANALYSIS_DDL},
	{"CREATE TRIGGER tg AFTER INSERT ON t EXECUTE FUNCTION f()",
	 ANALYSIS_DDL},
	{"CREATE SCHEMA s", ANALYSIS_DDL},
	{"CREATE EXTENSION hypopg", ANALYSIS_DDL},
	{"REFRESH MATERIALIZED VIEW m", ANALYSIS_DDL},
	{"ALTER SYSTEM SET work_mem = '4MB'", ANALYSIS_DDL},
	{"CREATE SEQUENCE s", ANALYSIS_DDL},
	{"ALTER SEQUENCE s RESTART", ANALYSIS_DDL},
	{"CREATE TYPE e AS ENUM ('a')", ANALYSIS_DDL},
	{"CREATE ROLE r", ANALYSIS_DDL},
	{"CREATE DATABASE d", ANALYSIS_DDL},
	{"DROP DATABASE d", ANALYSIS_DDL},
	{"CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING", ANALYSIS_DDL},
	{"CREATE POLICY p ON t USING (true)", ANALYSIS_DDL},
	{"CREATE PUBLICATION p FOR ALL TABLES", ANALYSIS_DDL},
	{"DO $$BEGIN END$$", ANALYSIS_UNKNOWN},
	{"CALL p()", ANALYSIS_UNKNOWN},
	{"CHECKPOINT", ANALYSIS_UNKNOWN},
	{"LOAD 'x'", ANALYSIS_UNKNOWN},
	{"COPY t TO '/tmp/f'", ANALYSIS_UNKNOWN},
	{"COPY t TO PROGRAM 'cat'", ANALYSIS_UNKNOWN},
	{"COPY t FROM PROGRAM 'cat'", ANALYSIS_UNKNOWN},
	{"EXPLAIN ANALYZE EXECUTE p", ANALYSIS_UNKNOWN},
	{"SELECT 1; DO $$BEGIN END$$; COMMIT", ANALYSIS_UNKNOWN},
};

static void
test_kinds(void **state)
{
	struct analysis a;
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(kind_cases); i++) {
		parse_ok(kind_cases[i].sql, &a);
		if (a.kind != kind_cases[i].kind)
			fail_msg("%s: kind %s, want %s", kind_cases[i].sql,
				 analysis_kind_name(a.kind),
				 analysis_kind_name(kind_cases[i].kind));
		analysis_free(&a);
	}
}

static void
test_kind_name(void **state)
{
	(void)state;
	assert_string_equal(analysis_kind_name(ANALYSIS_READ), "read");
	assert_string_equal(analysis_kind_name(ANALYSIS_TX), "tx");
	assert_string_equal(analysis_kind_name(ANALYSIS_SESSION), "session");
	assert_string_equal(analysis_kind_name(ANALYSIS_WRITE), "write");
	assert_string_equal(analysis_kind_name(ANALYSIS_DDL), "ddl");
	assert_string_equal(analysis_kind_name(ANALYSIS_UNKNOWN), "unknown");
	assert_string_equal(analysis_kind_name((enum analysis_kind)42), "?");
}

/* ---- relations ---------------------------------------------------------- */

struct rel_case {
	const char *sql;
	const char *rels;	/* render_rels() of statement 0 */
};

static const struct rel_case rel_cases[] = {
	{"SELECT 1", ""},
	{"SELECT * FROM a JOIN b ON a.id = b.id LEFT JOIN s.c USING (id)",
	 "a:r b:r s.c:r"},
	{"SELECT * FROM a WHERE id IN (SELECT aid FROM b WHERE EXISTS "
	 "(SELECT 1 FROM c))", "a:r b:r c:r"},
	{"SELECT * FROM (SELECT * FROM a) s, LATERAL (SELECT * FROM b) l",
	 "a:r b:r"},
	{"SELECT * FROM a, a AS a2", "a:r"},
	{"SELECT * FROM a UNION ALL SELECT * FROM b INTERSECT SELECT * FROM c",
	 "a:r b:r c:r"},
	{"WITH x AS (SELECT * FROM a) SELECT * FROM x JOIN b ON true",
	 "a:r b:r x:rc"},
	{"WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) "
	 "SELECT * FROM r", "r:rc"},
	{"SELECT (SELECT max(x) FROM b) FROM a", "a:r b:r"},
	{"TABLE a", "a:r"},
	{"INSERT INTO a SELECT * FROM b", "a:w b:r"},
	{"INSERT INTO a (x) VALUES ((SELECT max(x) FROM b))", "a:w b:r"},
	{"INSERT INTO a (x) VALUES (1) ON CONFLICT (x) DO UPDATE SET y = 2",
	 "a:w"},
	{"UPDATE a SET x = b.x FROM b WHERE a.id = b.id", "a:w b:r"},
	{"UPDATE a SET x = (SELECT max(y) FROM c)", "a:w c:r"},
	{"DELETE FROM a USING b WHERE a.id = b.id", "a:w b:r"},
	{"DELETE FROM ONLY s.a WHERE id = 1", "s.a:w"},
	{"MERGE INTO a USING b ON a.id = b.id WHEN MATCHED THEN DELETE",
	 "a:w b:r"},
	{"COPY a TO STDOUT", "a:r"},
	{"COPY a FROM STDIN", "a:w"},
	{"COPY (SELECT * FROM a JOIN b ON true) TO STDOUT", "a:r b:r"},
	{"CREATE TABLE n AS SELECT * FROM a", "a:r n:w"},
	{"SELECT * INTO TEMP n FROM a", "a:r n:wt"},
	{"CREATE VIEW v AS SELECT * FROM a JOIN b ON true", "a:r b:r v:w"},
	{"CREATE OR REPLACE VIEW s.v AS SELECT 1", "s.v:w"},
	{"DROP VIEW v, s.w", "s.w:w v:w"},
	{"DROP TABLE IF EXISTS a CASCADE", "a:w"},
	{"DROP MATERIALIZED VIEW m", "m:w"},
	{"DROP INDEX i", ""},
	{"TRUNCATE a, s.b", "a:w s.b:w"},
	{"ALTER TABLE a ADD COLUMN c int REFERENCES b", "a:w b:w"},
	{"VACUUM a", "a:w"},
	{"LOCK a", "a:r"},
	{"WITH d AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM d",
	 "a:w b:w d:rc"},
	{"WITH x AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM x",
	 "t:w x:rc"},
	{"EXPLAIN DELETE FROM a", "a:r"},
	{"EXPLAIN ANALYZE DELETE FROM a", "a:w"},
	{"PREPARE p AS UPDATE a SET x = 1", "a:r"},
	{"SELECT * FROM pg_temp.t, pg_catalog.pg_class, "
	 "information_schema.columns, pg_stat_activity",
	 "information_schema.columns:rs pg_catalog.pg_class:rs "
	 "pg_stat_activity:rs pg_temp.t:rt"},
	{"CREATE TEMP TABLE t (a int)", "t:wt"},
	{"CREATE TEMPORARY VIEW v AS SELECT * FROM a", "a:r v:wt"},
	{"SELECT * FROM \"Mixed\".\"Case\"", "Mixed.Case:r"},
};

static void
test_rels(void **state)
{
	struct analysis a;
	struct buf b;
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(rel_cases); i++) {
		parse_ok(rel_cases[i].sql, &a);
		assert_int_equal(a.n_stmts, 1);
		memset(&b, 0, sizeof(b));
		render_rels(&b, &a, 0);
		if (strcmp(b.s, rel_cases[i].rels) != 0)
			fail_msg("%s: rels \"%s\", want \"%s\"",
				 rel_cases[i].sql, b.s, rel_cases[i].rels);
		analysis_free(&a);
	}
}

static void
test_multi_statement(void **state)
{
	static const char sql[] = "SELECT * FROM a;  UPDATE b SET x = 1 ;"
				  "-- note\nSHOW x";
	struct analysis a;
	struct buf b;

	(void)state;
	parse_ok(sql, &a);
	assert_int_equal(a.n_stmts, 3);
	assert_int_equal(a.kind, ANALYSIS_WRITE);
	assert_int_equal(a.stmts[0].kind, ANALYSIS_READ);
	assert_int_equal(a.stmts[1].kind, ANALYSIS_WRITE);
	assert_int_equal(a.stmts[2].kind, ANALYSIS_SESSION);
	assert_int_equal(a.stmts[0].offset, 0);
	assert_int_equal(a.stmts[0].length, strlen("SELECT * FROM a"));
	/* Each statement's text holds it, and nothing of the next one. */
	assert_memory_equal(sql + a.stmts[1].offset + a.stmts[1].length -
				    strlen("SET x = 1 "),
			    "SET x = 1 ", strlen("SET x = 1 "));
	assert_non_null(strstr(sql + a.stmts[2].offset, "SHOW x"));
	assert_int_equal(a.stmts[2].offset + a.stmts[2].length, strlen(sql));
	memset(&b, 0, sizeof(b));
	render_rels(&b, &a, 1);
	assert_string_equal(b.s, "b:w");
	memset(&b, 0, sizeof(b));
	render_rels(&b, &a, 0);
	assert_string_equal(b.s, "a:r");
	analysis_free(&a);
}

/* ---- functions, flags --------------------------------------------------- */

struct flag_case {
	const char *sql;
	const char *flags;	/* letters, see below */
};

/*
 * Flags of the text: l row lock, t temp, s system catalog, v volatile,
 * c clock, n creates a relation, e explain (statement 0).
 */
static const struct flag_case flag_cases[] = {
	{"SELECT * FROM t", ""},
	{"SELECT * FROM t FOR UPDATE", "l"},
	{"SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED", "l"},
	{"SELECT * FROM t FOR SHARE OF t NOWAIT", "l"},
	{"SELECT * FROM t FOR KEY SHARE", "l"},
	{"SELECT * FROM t WHERE id IN (SELECT id FROM u FOR UPDATE)", "l"},
	{"SELECT * FROM pg_temp.x", "t"},
	{"SELECT * FROM pg_temp_3.x", "t"},
	{"CREATE TEMP TABLE x (a int)", "t"},
	{"CREATE TEMP TABLE x AS SELECT 1", "tn"},
	{"SELECT * FROM pg_class", "s"},
	{"SELECT * FROM pg_catalog.pg_namespace", "s"},
	{"SELECT * FROM information_schema.tables", "s"},
	{"SELECT * FROM t JOIN pg_stat_activity ON true", "s"},
	{"SELECT nextval('s')", "v"},
	{"SELECT setval('s', 1)", "v"},
	{"SELECT random()", "v"},
	{"SELECT * FROM t ORDER BY random()", "v"},
	{"SELECT gen_random_uuid()", "v"},
	{"SELECT uuid_generate_v4()", "v"},
	{"SELECT pg_advisory_lock(1)", "v"},
	{"SELECT pg_try_advisory_xact_lock(1)", "v"},
	{"SELECT set_config('a.b', 'c', false)", "v"},
	{"SELECT pg_sleep(1)", "v"},
	{"SELECT txid_current()", "v"},
	{"SELECT pg_backend_pid()", "v"},
	{"SELECT * FROM t TABLESAMPLE BERNOULLI (10)", "v"},
	{"SELECT * FROM t TABLESAMPLE SYSTEM (10) REPEATABLE (1)", ""},
	{"SELECT now()", "c"},
	{"SELECT pg_catalog.now()", "c"},
	{"SELECT CURRENT_TIMESTAMP", "c"},
	{"SELECT current_date", "c"},
	{"SELECT LOCALTIMESTAMP(3)", "c"},
	{"SELECT CURRENT_TIME", "c"},
	{"SELECT statement_timestamp()", "c"},
	{"SELECT clock_timestamp()", "vc"},
	{"SELECT 'now'::timestamptz", "c"},
	{"SELECT timestamp 'today'", "c"},
	{"SELECT CAST('tomorrow' AS date)", "c"},
	{"SELECT age(ts) FROM t", "c"},
	{"SELECT age(a, b) FROM t", ""},
	{"SELECT * FROM t WHERE ts > now() - interval '1 day'", "c"},
	{"SELECT current_user, session_user, current_schema", ""},
	{"SELECT lower('x'), count(*) FROM t", ""},
	{"SELECT * FROM my_func()", ""},
	{"SELECT * INTO x FROM t", "n"},
	{"CREATE TABLE x AS SELECT 1", "n"},
	{"CREATE MATERIALIZED VIEW m AS SELECT 1", "n"},
	{"EXPLAIN SELECT * INTO x FROM t", "e"},
	{"EXPLAIN SELECT 1", "e"},
	{"EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1", "ne"},
};

static void
render_flags(struct buf *b, const struct analysis *a)
{
	buf_add(b, "%s%s%s%s%s%s%s", a->has_row_lock ? "l" : "",
		a->has_temp_ref ? "t" : "", a->uses_system_catalog ? "s" : "",
		a->has_volatile_func ? "v" : "", a->uses_clock ? "c" : "",
		a->creates_relation ? "n" : "",
		a->n_stmts && a->stmts[0].is_explain ? "e" : "");
}

static void
test_flags(void **state)
{
	struct analysis a;
	struct buf b;
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(flag_cases); i++) {
		parse_ok(flag_cases[i].sql, &a);
		memset(&b, 0, sizeof(b));
		render_flags(&b, &a);
		if (strcmp(b.s, flag_cases[i].flags) != 0)
			fail_msg("%s: flags \"%s\", want \"%s\"",
				 flag_cases[i].sql, b.s, flag_cases[i].flags);
		/* The text's flags are its statement's. */
		assert_int_equal(a.has_row_lock, a.stmts[0].has_row_lock);
		assert_int_equal(a.uses_clock, a.stmts[0].uses_clock);
		analysis_free(&a);
	}
}

static void
test_funcs(void **state)
{
	struct analysis a;
	const struct analysis_func *f;

	(void)state;
	parse_ok("SELECT s.f(1), lower(x), lower(y), nextval('q') "
		 "FROM my_func() AS m", &a);
	assert_int_equal(a.stmts[0].n_funcs, 4);
	f = &a.funcs[a.stmts[0].funcs_first];
	assert_string_equal(f[0].schema, "s");
	assert_string_equal(f[0].name, "f");
	assert_false(f[0].known_volatile);
	assert_string_equal(f[1].schema, "");
	assert_string_equal(f[1].name, "lower");
	assert_string_equal(f[2].name, "nextval");
	assert_true(f[2].known_volatile);
	assert_string_equal(f[3].name, "my_func");
	assert_true(a.has_volatile_func);
	analysis_free(&a);
}

static void
test_params_and_names(void **state)
{
	static const struct {
		const char *sql;
		const char *name;
	} cases[] = {
		{"SET search_path TO a", "search_path"},
		{"RESET ALL", ""},
		{"SHOW work_mem", "work_mem"},
		{"PREPARE p1 AS SELECT 1", "p1"},
		{"EXECUTE p1", "p1"},
		{"DEALLOCATE p1", "p1"},
		{"DEALLOCATE ALL", ""},
		{"DECLARE c1 CURSOR FOR SELECT 1", "c1"},
		{"FETCH ALL FROM c1", "c1"},
		{"CLOSE c1", "c1"},
		{"LISTEN ch", "ch"},
		{"UNLISTEN ch", "ch"},
		{"NOTIFY ch", "ch"},
	};
	struct analysis a;
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(cases); i++) {
		parse_ok(cases[i].sql, &a);
		if (strcmp(a.stmts[0].name, cases[i].name) != 0)
			fail_msg("%s: name \"%s\", want \"%s\"", cases[i].sql,
				 a.stmts[0].name, cases[i].name);
		analysis_free(&a);
	}
	parse_ok("SELECT $1, $3 FROM t WHERE x = $2", &a);
	assert_int_equal(a.max_param, 3);
	assert_int_equal(a.stmts[0].max_param, 3);
	analysis_free(&a);
	parse_ok("SELECT 1; SELECT $2", &a);
	assert_int_equal(a.stmts[0].max_param, 0);
	assert_int_equal(a.max_param, 2);
	analysis_free(&a);
}

/* ---- transactions ------------------------------------------------------- */

struct tx_case {
	const char *sql;
	enum analysis_kind kind;
	enum analysis_tx tx;
	enum analysis_isolation iso;
	int read_only;
	bool chain;
	const char *name;
};

static const struct tx_case tx_cases[] = {
	{"BEGIN", ANALYSIS_TX, ANALYSIS_TX_BEGIN, ANALYSIS_ISO_UNSPECIFIED, -1,
	 false, ""},
	{"BEGIN ISOLATION LEVEL REPEATABLE READ", ANALYSIS_TX,
	 ANALYSIS_TX_BEGIN, ANALYSIS_ISO_REPEATABLE_READ, -1, false, ""},
	{"START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, "
	 "DEFERRABLE", ANALYSIS_TX, ANALYSIS_TX_BEGIN,
	 ANALYSIS_ISO_SERIALIZABLE, 1, false, ""},
	{"BEGIN DEFERRABLE, READ WRITE", ANALYSIS_TX, ANALYSIS_TX_BEGIN,
	 ANALYSIS_ISO_UNSPECIFIED, 0, false, ""},
	{"BEGIN TRANSACTION ISOLATION LEVEL READ COMMITTED", ANALYSIS_TX,
	 ANALYSIS_TX_BEGIN, ANALYSIS_ISO_READ_COMMITTED, -1, false, ""},
	{"BEGIN WORK ISOLATION LEVEL READ UNCOMMITTED", ANALYSIS_TX,
	 ANALYSIS_TX_BEGIN, ANALYSIS_ISO_READ_UNCOMMITTED, -1, false, ""},
	{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", ANALYSIS_TX,
	 ANALYSIS_TX_SET, ANALYSIS_ISO_SERIALIZABLE, -1, false,
	 "TRANSACTION"},
	{"SET TRANSACTION READ ONLY", ANALYSIS_TX, ANALYSIS_TX_SET,
	 ANALYSIS_ISO_UNSPECIFIED, 1, false, "TRANSACTION"},
	{"SET transaction_isolation = 'repeatable read'", ANALYSIS_TX,
	 ANALYSIS_TX_SET, ANALYSIS_ISO_REPEATABLE_READ, -1, false,
	 "transaction_isolation"},
	{"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL "
	 "REPEATABLE READ", ANALYSIS_SESSION, ANALYSIS_TX_NONE,
	 ANALYSIS_ISO_REPEATABLE_READ, -1, false, "SESSION CHARACTERISTICS"},
	{"SET default_transaction_isolation = 'repeatable read'",
	 ANALYSIS_SESSION, ANALYSIS_TX_NONE, ANALYSIS_ISO_REPEATABLE_READ, -1,
	 false, "default_transaction_isolation"},
	{"SET default_transaction_isolation TO 'SERIALIZABLE'",
	 ANALYSIS_SESSION, ANALYSIS_TX_NONE, ANALYSIS_ISO_SERIALIZABLE, -1,
	 false, "default_transaction_isolation"},
	{"SET SESSION default_transaction_isolation = \"read committed\"",
	 ANALYSIS_SESSION, ANALYSIS_TX_NONE, ANALYSIS_ISO_READ_COMMITTED, -1,
	 false, "default_transaction_isolation"},
	{"SET default_transaction_isolation = DEFAULT", ANALYSIS_SESSION,
	 ANALYSIS_TX_NONE, ANALYSIS_ISO_UNSPECIFIED, -1, false,
	 "default_transaction_isolation"},
	{"COMMIT", ANALYSIS_TX, ANALYSIS_TX_COMMIT, ANALYSIS_ISO_UNSPECIFIED,
	 -1, false, ""},
	{"END", ANALYSIS_TX, ANALYSIS_TX_COMMIT, ANALYSIS_ISO_UNSPECIFIED, -1,
	 false, ""},
	{"COMMIT AND CHAIN", ANALYSIS_TX, ANALYSIS_TX_COMMIT,
	 ANALYSIS_ISO_UNSPECIFIED, -1, true, ""},
	{"ROLLBACK AND CHAIN", ANALYSIS_TX, ANALYSIS_TX_ROLLBACK,
	 ANALYSIS_ISO_UNSPECIFIED, -1, true, ""},
	{"ABORT", ANALYSIS_TX, ANALYSIS_TX_ROLLBACK, ANALYSIS_ISO_UNSPECIFIED,
	 -1, false, ""},
	{"SAVEPOINT sp", ANALYSIS_TX, ANALYSIS_TX_SAVEPOINT,
	 ANALYSIS_ISO_UNSPECIFIED, -1, false, "sp"},
	{"RELEASE SAVEPOINT sp", ANALYSIS_TX, ANALYSIS_TX_RELEASE,
	 ANALYSIS_ISO_UNSPECIFIED, -1, false, "sp"},
	{"ROLLBACK TO SAVEPOINT sp", ANALYSIS_TX, ANALYSIS_TX_ROLLBACK_TO,
	 ANALYSIS_ISO_UNSPECIFIED, -1, false, "sp"},
	{"PREPARE TRANSACTION 'g1'", ANALYSIS_TX, ANALYSIS_TX_PREPARE,
	 ANALYSIS_ISO_UNSPECIFIED, -1, false, "g1"},
	{"COMMIT PREPARED 'g1'", ANALYSIS_TX, ANALYSIS_TX_COMMIT_PREPARED,
	 ANALYSIS_ISO_UNSPECIFIED, -1, false, "g1"},
	{"ROLLBACK PREPARED 'g1'", ANALYSIS_TX, ANALYSIS_TX_ROLLBACK_PREPARED,
	 ANALYSIS_ISO_UNSPECIFIED, -1, false, "g1"},
};

static void
test_tx(void **state)
{
	const struct tx_case *c;
	const struct analysis_stmt *st;
	struct analysis a;
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(tx_cases); i++) {
		c = &tx_cases[i];
		parse_ok(c->sql, &a);
		assert_int_equal(a.n_stmts, 1);
		st = &a.stmts[0];
		if (st->kind != c->kind || st->tx != c->tx ||
		    st->isolation != c->iso ||
		    st->tx_read_only != c->read_only ||
		    st->tx_chain != c->chain || strcmp(st->name, c->name) != 0)
			fail_msg("%s: kind %d tx %d iso %d ro %d chain %d name "
				 "\"%s\"", c->sql, st->kind, st->tx,
				 st->isolation, st->tx_read_only, st->tx_chain,
				 st->name);
		analysis_free(&a);
	}
}

/* ---- predicates --------------------------------------------------------- */

struct pred_case {
	const char *sql;
	const char *preds;	/* render_preds() of statement 0 */
};

static const struct pred_case pred_cases[] = {
	/* Forms of the value. */
	{"SELECT * FROM t WHERE id = 5", "t.id=i:5"},
	{"SELECT * FROM t WHERE 5 = id", "t.id=i:5"},
	{"SELECT * FROM t WHERE id = $1", "t.id=$1"},
	{"SELECT * FROM t WHERE id = $1::int", "t.id=$1"},
	{"SELECT * FROM t WHERE id = CAST($2 AS bigint)", "t.id=$2"},
	{"SELECT * FROM t WHERE id = '5'::int", "t.id=s:5"},
	{"SELECT * FROM t WHERE id = int8 '5'", "t.id=s:5"},
	{"SELECT * FROM t WHERE id = 5::bigint", "t.id=i:5"},
	{"SELECT * FROM t WHERE id = -5", "t.id=i:-5"},
	{"SELECT * FROM t WHERE id = -(5)", "t.id=i:-5"},
	{"SELECT * FROM t WHERE id = - 5::int", "t.id=i:-5"},
	{"SELECT * FROM t WHERE id = -(-5)", "t.id=i:5"},
	{"SELECT * FROM t WHERE id = +5", "t.id=i:5"},
	{"SELECT * FROM t WHERE id = -0", "t.id=i:0"},
	{"SELECT * FROM t WHERE id = 0042", "t.id=i:42"},
	{"SELECT * FROM t WHERE id = 9223372036854775807",
	 "t.id=i:9223372036854775807"},
	{"SELECT * FROM t WHERE id = -9223372036854775808",
	 "t.id=i:-9223372036854775808"},
	{"SELECT * FROM t WHERE id = -2147483648", "t.id=i:-2147483648"},
	{"SELECT * FROM t WHERE x = 1.5", "t.x=f:1.5"},
	{"SELECT * FROM t WHERE x = -1.5e3", "t.x=f:-1.5e3"},
	{"SELECT * FROM t WHERE name = 'O''Brien'", "t.name=s:O'Brien"},
	{"SELECT * FROM t WHERE name = E'a\\'b\\n'", "t.name=s:a'b\n"},
	{"SELECT * FROM t WHERE name = $$it's$$", "t.name=s:it's"},
	{"SELECT * FROM t WHERE name = $q$a;b$q$", "t.name=s:a;b"},
	{"SELECT * FROM t WHERE name = U&'d\\0061t'", "t.name=s:dat"},
	{"SELECT * FROM t WHERE name = ''", "t.name=s:"},
	{"SELECT * FROM t WHERE flag = true AND other = false",
	 "t.flag=b:true ; t.other=b:false"},
	{"SELECT * FROM t WHERE b = B'101' AND h = X'1F'",
	 "t.b=x:b101 ; t.h=x:x1F"},
	{"SELECT * FROM t WHERE x = NULL", "t.x=null"},
	{"SELECT * FROM t WHERE x = NULL::int", "t.x=null"},
	/* Lists and arrays. */
	{"SELECT * FROM t WHERE id IN (1, 2, 3)", "t.id=i:1,i:2,i:3"},
	{"SELECT * FROM t WHERE id IN ($1, $2)", "t.id=$1,$2"},
	{"SELECT * FROM t WHERE id IN (1, -2, 'x', f(y))",
	 "t.id=i:1,i:-2,s:x,?"},
	{"SELECT * FROM t WHERE id = ANY($1)", "t.id=$1[]"},
	{"SELECT * FROM t WHERE id = ANY($1::int[])", "t.id=$1[]"},
	{"SELECT * FROM t WHERE id = ANY(ARRAY[1, 2])", "t.id=i:1,i:2"},
	{"SELECT * FROM t WHERE id = ANY(ARRAY[$1, 2, now()])",
	 "t.id=$1,i:2,?"},
	{"SELECT * FROM t WHERE id = ANY('{1,2}')", "t.id=s:1,s:2"},
	{"SELECT * FROM t WHERE id = ANY('{1,2}'::int[])", "t.id=s:1,s:2"},
	{"SELECT * FROM t WHERE id = ANY('{a,NULL}')", "t.id=s:a,null"},
	{"SELECT * FROM t WHERE id = ANY('{\"a,b\",c}')", "t.id=?"},
	{"SELECT * FROM t WHERE id = ANY('{}')", "t.id=?"},
	{"SELECT * FROM t WHERE id = ANY('{1,,2}')", "t.id=?"},
	{"SELECT * FROM t WHERE id = ANY('{{1},{2}}')", "t.id=?"},
	{"SELECT * FROM t WHERE id = ANY(f())", "t.id=?"},
	{"SELECT * FROM t WHERE id = ANY(ARRAY[]::int[])", "t.id=?"},
	{"SELECT * FROM t WHERE id = ANY(SELECT x FROM u)", ""},
	{"SELECT * FROM t WHERE id IN (SELECT x FROM u)", ""},
	/* Conjunctions, and what is not one. */
	{"SELECT * FROM t WHERE id = 1 AND name = 'x' AND k > 3",
	 "t.id=i:1 ; t.name=s:x"},
	{"SELECT * FROM t WHERE (id = 1 AND (a = 2 AND (b = 3)))",
	 "t.id=i:1 ; t.a=i:2 ; t.b=i:3"},
	{"SELECT * FROM t WHERE id = 1 OR id = 2", ""},
	{"SELECT * FROM t WHERE NOT (id = 1)", ""},
	{"SELECT * FROM t WHERE id = 1 AND (a = 2 OR b = 3)", "t.id=i:1"},
	{"SELECT * FROM t WHERE id = 1 AND NOT (a = 2 AND b = 3)", "t.id=i:1"},
	{"SELECT * FROM t WHERE id <> 1 AND id NOT IN (2) AND id IS NULL "
	 "AND id = a AND id = t.a AND id < 3", ""},
	{"SELECT * FROM t WHERE id = 1 + 1 AND id = now() AND id = $1 + 1",
	 ""},
	{"SELECT * FROM t WHERE id = 1.5::int", ""},
	{"SELECT * FROM t WHERE flag = true::int", ""},
	{"SELECT * FROM t WHERE code = 'abcdef'::varchar(3)", ""},
	{"SELECT * FROM t WHERE code = $1::varchar(3)", ""},
	{"SELECT * FROM t WHERE code = 'a' COLLATE \"C\"", ""},
	{"SELECT * FROM t WHERE id = - 'x' AND id = -$1", ""},
	{"SELECT * FROM t WHERE id::text = '1'", ""},
	{"SELECT * FROM t WHERE id IS NOT DISTINCT FROM 1", ""},
	{"SELECT * FROM t WHERE t.* = t.*", ""},
	/* Which relation a column belongs to. */
	{"SELECT * FROM t AS x WHERE x.id = 1", "t.id=i:1"},
	{"SELECT * FROM t x WHERE t.id = 1", ""},
	{"SELECT * FROM public.t WHERE public.t.id = 1 AND t.k = 2 AND k2 = 3",
	 "public.t.id=i:1 ; public.t.k=i:2 ; public.t.k2=i:3"},
	{"SELECT * FROM public.t WHERE other.t.id = 1", ""},
	{"SELECT * FROM \"T\" WHERE \"T\".\"Id\" = 1", "T.Id=i:1"},
	{"SELECT * FROM t JOIN u ON t.id = u.tid WHERE t.id = 1 AND u.k = 2 "
	 "AND z = 3", "t.id=i:1 ; u.k=i:2"},
	{"SELECT * FROM t LEFT JOIN u USING (id) WHERE id = 1", ""},
	{"SELECT * FROM t, u WHERE id = 1 AND u.k = $1", "u.k=$1"},
	{"SELECT * FROM t a JOIN t b ON a.id = b.pid WHERE a.id = 1", ""},
	{"SELECT * FROM t WHERE id = 1 AND x IN (SELECT x FROM t)", ""},
	{"SELECT * FROM t WHERE id = 1 AND x IN (SELECT x FROM u)", "t.id=i:1"},
	{"SELECT * FROM t WHERE id = 1 AND EXISTS (SELECT 1 FROM u WHERE "
	 "u.k = 5)", "t.id=i:1"},
	{"SELECT * FROM (SELECT * FROM t) s WHERE s.id = 1", ""},
	{"SELECT * FROM (SELECT * FROM t) s WHERE id = 1", ""},
	{"SELECT * FROM generate_series(1, 3) g WHERE g = 1", ""},
	{"SELECT * FROM t, generate_series(1, 3) g WHERE t.id = 1", "t.id=i:1"},
	{"WITH c AS (SELECT * FROM u) SELECT * FROM c WHERE id = 1", ""},
	{"WITH c AS (SELECT 1) SELECT * FROM t WHERE id = 1", "t.id=i:1"},
	{"WITH t AS (SELECT 1 AS id) SELECT * FROM t WHERE id = 1", ""},
	{"SELECT * FROM t AS x(a, b) WHERE a = 1 AND x.b = 2", ""},
	{"SELECT * FROM s1.t, s2.t WHERE t.id = 1", ""},
	{"SELECT * FROM s1.t, s2.t WHERE s1.t.id = 1", "s1.t.id=i:1"},
	{"SELECT * FROM t TABLESAMPLE SYSTEM (1) WHERE id = 1", "t.id=i:1"},
	{"SELECT * FROM t WHERE id = 1 UNION SELECT * FROM t WHERE id = 2", ""},
	{"SELECT * FROM t WHERE id = 1 FOR UPDATE", "t.id=i:1"},
	{"SELECT count(*) FROM t WHERE id = 1 GROUP BY k HAVING k = 2",
	 "t.id=i:1"},
	{"SELECT * FROM t", ""},
	{"VALUES (1)", ""},
	/* UPDATE and DELETE. */
	{"UPDATE t SET a = 1 WHERE id = 7", "t.id=i:7"},
	{"UPDATE t AS x SET a = 1 WHERE x.id = $1", "t.id=$1"},
	{"UPDATE t SET a = u.a FROM u WHERE t.id = u.id AND t.id = 3 AND k = 4",
	 "t.id=i:3"},
	{"UPDATE t SET a = 1 WHERE CURRENT OF c", ""},
	{"DELETE FROM t WHERE id IN (1, 2) RETURNING *", "t.id=i:1,i:2"},
	{"DELETE FROM t USING u WHERE t.id = u.tid AND u.k = 1 AND z = 2",
	 "u.k=i:1"},
	{"DELETE FROM t WHERE id = 1 OR id = 2", ""},
	{"EXPLAIN ANALYZE SELECT * FROM t WHERE id = 1", "t.id=i:1"},
	{"EXPLAIN SELECT * FROM t WHERE id = 1", ""},
	{"INSERT INTO t SELECT * FROM u WHERE id = 1", ""},
};

static void
test_preds(void **state)
{
	struct analysis a;
	struct buf b;
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(pred_cases); i++) {
		parse_ok(pred_cases[i].sql, &a);
		assert_int_equal(a.n_stmts, 1);
		assert_false(a.overflow);
		memset(&b, 0, sizeof(b));
		render_preds(&b, &a, 0);
		if (strcmp(b.s, pred_cases[i].preds) != 0)
			fail_msg("%s: preds \"%s\", want \"%s\"",
				 pred_cases[i].sql, b.s, pred_cases[i].preds);
		analysis_free(&a);
	}
}

/* Each statement of a text has its own predicates and relations. */
static void
test_preds_per_statement(void **state)
{
	struct analysis a;
	struct buf b;

	(void)state;
	parse_ok("SELECT * FROM a WHERE id = 1; SELECT * FROM b WHERE id = 2; "
		 "SELECT * FROM a WHERE k IN ($1, $2)", &a);
	assert_int_equal(a.n_stmts, 3);
	memset(&b, 0, sizeof(b));
	render_preds(&b, &a, 0);
	assert_string_equal(b.s, "a.id=i:1");
	memset(&b, 0, sizeof(b));
	render_preds(&b, &a, 1);
	assert_string_equal(b.s, "b.id=i:2");
	memset(&b, 0, sizeof(b));
	render_preds(&b, &a, 2);
	assert_string_equal(b.s, "a.k=$1,$2");
	assert_int_equal(a.preds[a.stmts[2].preds_first].rel,
			 a.stmts[2].rels_first);
	analysis_free(&a);
}

/* ---- rows --------------------------------------------------------------- */

struct row_case {
	const char *sql;
	const char *cols;
	const char *rows;
	bool known;
	enum analysis_on_conflict conflict;
	bool returning;
};

static const struct row_case row_cases[] = {
	{"INSERT INTO t (a, b) VALUES (1, 'x')", "a,b", "i:1,s:x", true,
	 ANALYSIS_CONFLICT_NONE, false},
	{"INSERT INTO t (a, b) VALUES (1, 2), (3, 4), ($1, $2)", "a,b",
	 "i:1,i:2|i:3,i:4|$1,$2", true, ANALYSIS_CONFLICT_NONE, false},
	{"INSERT INTO t VALUES (1, DEFAULT, NULL)", "", "i:1,default,null",
	 true, ANALYSIS_CONFLICT_NONE, false},
	{"INSERT INTO t (a) VALUES (-5), (now()), ('5'::int), (-1.5)", "a",
	 "i:-5|?|s:5|f:-1.5", true, ANALYSIS_CONFLICT_NONE, false},
	{"INSERT INTO t (a) SELECT 1", "a", "", false, ANALYSIS_CONFLICT_NONE,
	 false},
	{"INSERT INTO t SELECT * FROM u", "", "", false,
	 ANALYSIS_CONFLICT_NONE, false},
	{"INSERT INTO t DEFAULT VALUES", "", "", false, ANALYSIS_CONFLICT_NONE,
	 false},
	{"INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING", "a", "i:1",
	 true, ANALYSIS_CONFLICT_NOTHING, false},
	{"INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (a) DO UPDATE SET "
	 "b = EXCLUDED.b RETURNING id", "a,b", "i:1,i:2", true,
	 ANALYSIS_CONFLICT_UPDATE, true},
	{"INSERT INTO t AS x (a) VALUES ($1) ON CONFLICT ON CONSTRAINT k "
	 "DO UPDATE SET a = x.a + 1 WHERE x.a < 5", "a", "$1", true,
	 ANALYSIS_CONFLICT_UPDATE, false},
	{"INSERT INTO t (a, b) VALUES (1)", "a,b", "", false,
	 ANALYSIS_CONFLICT_NONE, false},
	{"INSERT INTO t VALUES (1), (1, 2)", "", "", false,
	 ANALYSIS_CONFLICT_NONE, false},
	{"INSERT INTO t VALUES (1) UNION VALUES (2)", "", "", false,
	 ANALYSIS_CONFLICT_NONE, false},
	{"INSERT INTO t (a[1], b) VALUES (1, 2)", "a,b", "?,i:2", true,
	 ANALYSIS_CONFLICT_NONE, false},
	{"INSERT INTO t (a) VALUES (1) RETURNING *", "a", "i:1", true,
	 ANALYSIS_CONFLICT_NONE, true},
	{"UPDATE t SET a = 1, b = $1, c = DEFAULT, d = d + 1 WHERE id = 2",
	 "a,b,c,d", "i:1,$1,default,?", true, ANALYSIS_CONFLICT_NONE, false},
	{"UPDATE t SET (a, b) = (1, 2), c = 'x'", "a,b,c", "i:1,i:2,s:x", true,
	 ANALYSIS_CONFLICT_NONE, false},
	{"UPDATE t SET (a, b) = ROW($1, DEFAULT)", "a,b", "$1,default", true,
	 ANALYSIS_CONFLICT_NONE, false},
	{"UPDATE t SET (a, b) = (SELECT 1, 2)", "a,b", "?,?", true,
	 ANALYSIS_CONFLICT_NONE, false},
	{"UPDATE t SET a[2] = 5, c.f = 1", "a,c", "?,?", true,
	 ANALYSIS_CONFLICT_NONE, false},
	{"UPDATE t SET a = 1 RETURNING *", "a", "i:1", true,
	 ANALYSIS_CONFLICT_NONE, true},
	{"DELETE FROM t WHERE id = 1 RETURNING id", "", "", false,
	 ANALYSIS_CONFLICT_NONE, true},
	{"DELETE FROM t", "", "", false, ANALYSIS_CONFLICT_NONE, false},
	{"SELECT 1", "", "", false, ANALYSIS_CONFLICT_NONE, false},
	{"WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", "",
	 "", false, ANALYSIS_CONFLICT_NONE, false},
	{"EXPLAIN ANALYZE INSERT INTO t (a) VALUES (1)", "a", "i:1", true,
	 ANALYSIS_CONFLICT_NONE, false},
};

static void
test_rows(void **state)
{
	const struct row_case *c;
	const struct analysis_stmt *st;
	struct analysis a;
	struct buf cols, rows;
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(row_cases); i++) {
		c = &row_cases[i];
		parse_ok(c->sql, &a);
		st = &a.stmts[0];
		memset(&cols, 0, sizeof(cols));
		memset(&rows, 0, sizeof(rows));
		render_rows(&cols, &rows, &a);
		if (strcmp(cols.s, c->cols) != 0 ||
		    strcmp(rows.s, c->rows) != 0 ||
		    st->rows_known != c->known ||
		    st->on_conflict != c->conflict ||
		    st->has_returning != c->returning)
			fail_msg("%s: cols \"%s\" rows \"%s\" known %d conflict "
				 "%d returning %d", c->sql, cols.s, rows.s,
				 st->rows_known, st->on_conflict,
				 st->has_returning);
		analysis_free(&a);
	}
}

/* ---- fingerprint, normalize --------------------------------------------- */

static void
test_fingerprint(void **state)
{
	static const char *const same[] = {
		"SELECT * FROM t WHERE id = 1",
		"select *  from t\n where id = 42 -- note",
		"SELECT * FROM t WHERE id = 'x'",
		"SELECT * FROM t WHERE id = $1",
		"/* c */ SELECT * FROM t WHERE id = $7",
	};
	struct analysis a;
	uint64_t fp = analysis_fingerprint(same[0]);
	size_t i;

	(void)state;
	assert_true(fp != 0);
	for (i = 0; i < N_ELEMS(same); i++) {
		assert_true(analysis_fingerprint(same[i]) == fp);
		parse_ok(same[i], &a);
		assert_true(a.fingerprint == fp);
		analysis_free(&a);
	}
	assert_true(analysis_fingerprint("SELECT * FROM u WHERE id = 1") != fp);
	assert_true(analysis_fingerprint("SELECT * FROM t WHERE id > 1") != fp);
	assert_true(analysis_fingerprint("SELEC * FROM t") == 0);
}

static void
test_normalize(void **state)
{
	char *s;

	(void)state;
	s = analysis_normalize("SELECT * FROM t WHERE id = 5 AND n = 'x'");
	assert_non_null(s);
	assert_string_equal(s, "SELECT * FROM t WHERE id = $1 AND n = $2");
	free(s);
	assert_null(analysis_normalize("SELEC 1"));
}

/* ---- errors, limits ----------------------------------------------------- */

static void
test_parse_error(void **state)
{
	struct analysis a;
	char err[256] = "", tiny[8];

	(void)state;
	assert_int_equal(analysis_parse("SELECT * FRM t", &a, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "syntax error"));
	assert_non_null(strstr(err, "at character"));
	assert_int_equal(a.n_stmts, 0);
	assert_null(a.stmts);
	assert_null(a.rels);
	analysis_free(&a);
	/* Truncated message, and no message buffer at all. */
	assert_int_equal(analysis_parse("SELECT (", &a, tiny, sizeof(tiny)), -1);
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
	analysis_free(&a);
	assert_int_equal(analysis_parse("SELECT 'open", &a, NULL, 0), -1);
	analysis_free(&a);
	/* An error in the second statement fails the whole text. */
	assert_int_equal(analysis_parse("SELECT 1; SELEC 2", &a, err,
					sizeof(err)), -1);
	analysis_free(&a);
	analysis_free(&a);	/* idempotent */
	analysis_free(NULL);
}

static void
test_empty(void **state)
{
	static const char *const texts[] = {"", "   \n\t", "-- just a comment",
					    "/* c */", ";", " ; ; "};
	struct analysis a;
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(texts); i++) {
		parse_ok(texts[i], &a);
		assert_int_equal(a.n_stmts, 0);
		assert_int_equal(a.kind, ANALYSIS_READ);
		assert_false(a.overflow);
		analysis_free(&a);
	}
}

static char *
repeat(const char *head, const char *item, const char *sep, size_t n,
       const char *tail)
{
	size_t len = strlen(head) + n * (strlen(item) + strlen(sep)) +
		     strlen(tail) + 1;
	char *s = malloc(len), *p;
	size_t i;

	assert_non_null(s);
	p = stpcpy(s, head);
	for (i = 0; i < n; i++) {
		if (i)
			p = stpcpy(p, sep);
		p = stpcpy(p, item);
	}
	strcpy(p, tail);
	return s;
}

static void
test_overflow_in_list(void **state)
{
	char *sql = repeat("SELECT * FROM t WHERE k = 1 AND id IN (", "7", ", ",
			   ANALYSIS_MAX_ITEMS + 10, ")");
	struct analysis a;
	struct buf b;

	(void)state;
	parse_ok(sql, &a);
	assert_true(a.overflow);
	assert_true(a.stmts[0].overflow);
	assert_true(a.n_values <= ANALYSIS_MAX_ITEMS);
	/* The predicate that did not fit is dropped whole, not cut. */
	memset(&b, 0, sizeof(b));
	render_preds(&b, &a, 0);
	assert_string_equal(b.s, "t.k=i:1");
	analysis_free(&a);
	free(sql);

	sql = repeat("SELECT * FROM t WHERE id IN (", "7", ", ", 4000, ")");
	parse_ok(sql, &a);
	assert_false(a.overflow);
	assert_int_equal(a.preds[0].n_values, 4000);
	analysis_free(&a);
	free(sql);
}

static void
test_overflow_statements_and_rows(void **state)
{
	char *sql = repeat("", "SELECT 1", ";", ANALYSIS_MAX_ITEMS + 5, "");
	struct analysis a;

	(void)state;
	parse_ok(sql, &a);
	assert_true(a.overflow);
	assert_int_equal(a.n_stmts, ANALYSIS_MAX_ITEMS);
	analysis_free(&a);
	free(sql);

	sql = repeat("INSERT INTO t (a, b) VALUES ", "(1, 2)", ", ", 3000, "");
	parse_ok(sql, &a);
	assert_true(a.overflow);
	assert_false(a.stmts[0].rows_known);
	assert_true(a.stmts[0].n_rows <= ANALYSIS_MAX_ITEMS / 2);
	analysis_free(&a);
	free(sql);

	sql = repeat("INSERT INTO t (a, b) VALUES ", "($1, 2)", ", ", 2000, "");
	parse_ok(sql, &a);
	assert_false(a.overflow);
	assert_true(a.stmts[0].rows_known);
	assert_int_equal(a.stmts[0].n_rows, 2000);
	analysis_free(&a);
	free(sql);
}

/* Long names: the parser already cuts identifiers to 63 bytes. */
static void
test_long_names(void **state)
{
	char name[200], sql[300];
	struct analysis a;

	(void)state;
	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(sql, sizeof(sql), "SELECT * FROM %s WHERE id = 1", name);
	parse_ok(sql, &a);
	assert_int_equal(strlen(a.rels[0].name), ANALYSIS_NAME_MAX - 1);
	assert_int_equal(a.n_preds, 1);
	analysis_free(&a);
}

/* Deep ANDs are walked to a bound, never past it. */
static void
test_deep_and(void **state)
{
	char *head = repeat("SELECT * FROM t WHERE ", "a = 1 AND (", "", 300,
			    "b = 2");
	char *sql = repeat(head, ")", "", 300, "");
	struct analysis a;

	(void)state;
	parse_ok(sql, &a);
	assert_false(a.overflow);
	assert_int_equal(a.n_preds, 301);
	analysis_free(&a);
	free(head);
	free(sql);
}

/*
 * Texts libpg_query would take seconds or gigabytes to serialise, or
 * whose depth would overflow the stack, come back as one overflowed
 * UNKNOWN statement, quickly.
 */
static void
test_too_complex(void **state)
{
	char *cols = repeat("UPDATE t SET (", "a", ",", 1500, ") = (");
	char *wide = repeat(cols, "1", ",", 1500, ")");
	char *sum = repeat("SELECT ", "1", "+", 50000, "");
	char *nots = repeat("SELECT ", "NOT", " ", 5000, " true");
	char *sql[3] = {wide, sum, nots};
	struct analysis a;
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(sql); i++) {
		parse_ok(sql[i], &a);
		assert_int_equal(a.kind, ANALYSIS_UNKNOWN);
		assert_true(a.overflow);
		assert_int_equal(a.n_stmts, 1);
		assert_int_equal(a.stmts[0].kind, ANALYSIS_UNKNOWN);
		assert_int_equal(a.stmts[0].offset, 0);
		assert_int_equal(a.stmts[0].length, strlen(sql[i]));
		assert_null(analysis_normalize(sql[i]));
		analysis_free(&a);
		free(sql[i]);
	}
	free(cols);
	/* Modest ones are analysed as usual. */
	parse_ok("UPDATE t SET (a, b, c) = (1, 2, 3) WHERE id = 1", &a);
	assert_int_equal(a.kind, ANALYSIS_WRITE);
	assert_int_equal(a.stmts[0].n_rows, 1);
	analysis_free(&a);
	sum = repeat("SELECT ", "1", "+", 300, "");
	parse_ok(sum, &a);
	assert_int_equal(a.kind, ANALYSIS_READ);
	analysis_free(&a);
	free(sum);
}

/* Big but flat texts are not "too complex". */
static void
test_big_flat_texts(void **state)
{
	char *in = repeat("SELECT * FROM t WHERE id IN (", "1", ",", 20000, ")");
	char *and = repeat("SELECT * FROM t WHERE ", "c = $1", " AND ", 1000, "");
	char *cases = repeat("UPDATE t SET x = CASE ", "WHEN id = 1 THEN 'a'",
			     " ", 3000, " END WHERE id = 1");
	char *unions = repeat("", "SELECT 1", " UNION ALL ", 500, "");
	char *sql[4] = {in, and, cases, unions};
	struct analysis a;
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(sql); i++) {
		parse_ok(sql[i], &a);
		assert_int_not_equal(a.kind, ANALYSIS_UNKNOWN);
		analysis_free(&a);
		free(sql[i]);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kinds),
		cmocka_unit_test(test_kind_name),
		cmocka_unit_test(test_rels),
		cmocka_unit_test(test_multi_statement),
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_funcs),
		cmocka_unit_test(test_params_and_names),
		cmocka_unit_test(test_tx),
		cmocka_unit_test(test_preds),
		cmocka_unit_test(test_preds_per_statement),
		cmocka_unit_test(test_rows),
		cmocka_unit_test(test_fingerprint),
		cmocka_unit_test(test_normalize),
		cmocka_unit_test(test_parse_error),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_overflow_in_list),
		cmocka_unit_test(test_overflow_statements_and_rows),
		cmocka_unit_test(test_long_names),
		cmocka_unit_test(test_deep_and),
		cmocka_unit_test(test_too_complex),
		cmocka_unit_test(test_big_flat_texts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
