/*
 * test_indexcols.c - the columns the index advisor builds candidates
 * from (analysis/indexcols.h): each statement with the (table, column,
 * role) triples it must yield, rendered as "rel.col:role" in text order,
 * and its OFFSET.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "analysis/indexcols.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static void
render(const struct idxcols *ic, char *out, size_t len)
{
	size_t used = 0;
	int i;

	out[0] = '\0';
	for (i = 0; i < ic->n_cols; i++) {
		const struct idxcols_col *c = &ic->cols[i];

		used += (size_t)snprintf(out + used, len - used, "%s%s.%s:%s",
					 i ? " " : "",
					 c->rel < 0 ? "?" : ic->rels[c->rel].name,
					 c->name, idxcols_role_name(c->role));
		assert_true(used < len);
	}
}

static void
test_columns(void **state)
{
	static const struct {
		const char *sql, *want;
	} cases[] = {
		{ "SELECT * FROM t WHERE v = 5", "t.v:eq" },
		{ "select * from T where V = $1 and w > 3 order by x",
		  "t.v:eq t.w:range t.x:order" },
		{ "SELECT * FROM s.t a WHERE a.v IN (1, 2) AND a.w BETWEEN 1 "
		  "AND 9", "t.v:eq t.w:range" },
		{ "SELECT * FROM t WHERE 5 = v AND now() - interval '1 day' < ts",
		  "t.v:eq t.ts:range" },
		{ "SELECT * FROM p JOIN c ON c.pid = p.id WHERE p.kind = 'x' "
		  "ORDER BY c.at DESC", "c.pid:join p.id:join p.kind:eq c.at:order" },
		{ "SELECT * FROM p, c WHERE c.pid = p.id AND flag = true",
		  "c.pid:join p.id:join ?.flag:eq" },
		/* OR and functions of a column: nothing to index */
		{ "SELECT * FROM t WHERE v = 1 OR w = 2", "" },
		{ "SELECT * FROM t WHERE lower(name) = 'a'", "" },
		/* subqueries are queries of their own; s.w names none of ours */
		{ "SELECT * FROM (SELECT * FROM t WHERE v = 1) s WHERE s.w = 2",
		  "t.v:eq" },
		{ "SELECT * FROM a WHERE EXISTS (SELECT 1 FROM b WHERE "
		  "b.a_id = a.id AND b.k = 3) AND a.v = 1",
		  "b.a_id:join a.id:join b.k:eq a.v:eq" },
		{ "SELECT * FROM a WHERE NOT EXISTS (SELECT 1 FROM b WHERE "
		  "a_id = a.id)", "b.a_id:join a.id:join" },
		{ "SELECT * FROM a WHERE v = 1 AND id IN (SELECT a_id FROM b "
		  "WHERE k = 2)", "a.v:eq a.id:eq b.k:eq" },
		{ "WITH r AS (SELECT * FROM t WHERE v = 1) SELECT * FROM r "
		  "JOIN u ON u.id = r.uid WHERE u.w > 3",
		  "t.v:eq u.id:join u.w:range" },
		{ "SELECT * FROM t WHERE v = 1 AND w IN (SELECT w FROM t "
		  "UNION SELECT x FROM s WHERE s.y = 2)",
		  "t.v:eq t.w:eq s.y:eq" },
		/* UNION arms are queries of their own: unqualified columns
		 * resolve within their arm */
		{ "SELECT * FROM a WHERE id IN (SELECT aid FROM t WHERE k = 1 "
		  "UNION SELECT aid FROM s WHERE y = 2)",
		  "a.id:eq t.k:eq s.y:eq" },
		/* an inner alias hides the outer one */
		{ "SELECT * FROM t x WHERE EXISTS (SELECT 1 FROM u x WHERE "
		  "x.k = 1)", "u.k:eq" },
		/* writes: the rows they find */
		{ "UPDATE t SET v = 1 WHERE w = 2 AND ts < now()",
		  "t.w:eq t.ts:range" },
		{ "UPDATE t SET v = s.v FROM s WHERE s.id = t.sid AND s.k = 1",
		  "s.id:join t.sid:join s.k:eq" },
		{ "DELETE FROM t USING s WHERE s.id = t.sid AND s.gone",
		  "s.id:join t.sid:join" },
		{ "WITH old AS (SELECT id FROM s WHERE at < $1) DELETE FROM t "
		  "WHERE sid IN (SELECT id FROM old)", "s.at:range t.sid:eq" },
		{ "SELECT * FROM t WHERE v::text = '1'", "t.v:eq" },
		{ "SELECT * FROM t WHERE v = w", "" },
		{ "SELECT * FROM t WHERE t.v = t.w", "" },
		{ "SELECT * FROM t a JOIN t b ON a.v = b.w", "t.v:join t.w:join" },
	};
	struct idxcols ic;
	char got[512], err[128];
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(cases); i++) {
		assert_int_equal(idxcols_parse(cases[i].sql, &ic, err,
					       sizeof(err)), 0);
		assert_true(ic.is_select != ic.is_write);
		render(&ic, got, sizeof(got));
		if (strcmp(got, cases[i].want) != 0)
			fail_msg("%s\n  got  '%s'\n  want '%s'", cases[i].sql,
				 got, cases[i].want);
	}
}

static void
test_not_select(void **state)
{
	static const char *const texts[] = {
		"INSERT INTO t SELECT * FROM s WHERE v = 1",
		"SELECT 1",
		"SELECT * FROM t WHERE v = 1; SELECT 2",
		"SELECT * FROM a UNION SELECT * FROM b",
		"",
	};
	struct idxcols ic;
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMS(texts); i++) {
		assert_int_equal(idxcols_parse(texts[i], &ic, NULL, 0), 0);
		assert_false(ic.is_select);
		assert_false(ic.is_write);
	}
	assert_int_equal(idxcols_parse("SELEC * FROM t", &ic, NULL, 0), -1);
}

static void
test_offset(void **state)
{
	struct idxcols ic;

	(void)state;
	assert_int_equal(idxcols_parse("SELECT * FROM t ORDER BY id LIMIT 10 "
				       "OFFSET 5000", &ic, NULL, 0), 0);
	assert_int_equal(ic.offset, 5000);
	assert_int_equal(idxcols_parse("SELECT * FROM t OFFSET 10000000000",
				       &ic, NULL, 0), 0);
	assert_true(ic.offset == 10000000000LL);
	assert_int_equal(idxcols_parse("SELECT * FROM t OFFSET $1", &ic, NULL,
				       0), 0);
	assert_int_equal(ic.offset, -1);
	assert_true(ic.offset_param);
	assert_int_equal(idxcols_parse("SELECT * FROM t LIMIT 5", &ic, NULL, 0),
			 0);
	assert_int_equal(ic.offset, -1);
	assert_false(ic.offset_param);
}

/* Many columns and tables: bounded, never overflowing the arrays. */
static void
test_bounds(void **state)
{
	char sql[8192];
	size_t used;
	struct idxcols ic;
	int i;

	(void)state;
	used = (size_t)snprintf(sql, sizeof(sql), "SELECT * FROM t0");
	for (i = 1; i < 40; i++)
		used += (size_t)snprintf(sql + used, sizeof(sql) - used,
					 " JOIN t%d ON t%d.a = t%d.b", i, i,
					 i - 1);
	assert_true(used < sizeof(sql));
	assert_int_equal(idxcols_parse(sql, &ic, NULL, 0), 0);
	assert_int_equal(ic.n_rels, IDXCOLS_MAX_RELS);
	assert_true(ic.n_cols <= IDXCOLS_MAX_COLS);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_columns),
		cmocka_unit_test(test_not_select),
		cmocka_unit_test(test_offset),
		cmocka_unit_test(test_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
