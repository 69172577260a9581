/*
 * test_sqlclass.c - the SQL splitter and statement classifier
 * (pool/sqlclass.h).  A wrong split or class either breaks a client's
 * session state in transaction mode or pins it for no reason, so each
 * lexical construct that can hide a ';' gets its own case.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "pool/sqlclass.h"

enum { MAXST = 16 };

/* Split 's' and return the count; statements land in out. */
static size_t
split(const char *s, struct sql_stmt *out)
{
	return sqlclass_split(s, strlen(s), out, MAXST);
}

/* The text of statement i, for comparisons. */
static char *
stmt_text(const char *s, const struct sql_stmt *st)
{
	char *t = malloc(st->len + 1);

	assert_non_null(t);
	memcpy(t, s + st->off, st->len);
	t[st->len] = 0;
	return t;
}

static void
assert_stmt(const char *s, const struct sql_stmt *st, const char *want)
{
	char *t = stmt_text(s, st);

	assert_string_equal(t, want);
	free(t);
}

static enum sql_kind
classify(const char *s, char *name)
{
	return sqlclass_classify(s, strlen(s), name, SQL_NAME_MAX);
}

/* ---- split -------------------------------------------------------------- */

static void
test_split_plain(void **state)
{
	static const char s[] = "SELECT 1; SELECT 2;SELECT 3";
	struct sql_stmt st[MAXST];

	(void)state;
	assert_int_equal(split(s, st), 3);
	assert_stmt(s, &st[0], "SELECT 1");
	assert_stmt(s, &st[1], " SELECT 2");
	assert_stmt(s, &st[2], "SELECT 3");
	assert_int_equal(st[0].off, 0);
	assert_int_equal(st[2].off, 19);
}

static void
test_split_quotes(void **state)
{
	static const char s[] = "SELECT 'a;b', 'it''s;'; SELECT 2";
	struct sql_stmt st[MAXST];

	(void)state;
	assert_int_equal(split(s, st), 2);
	assert_stmt(s, &st[0], "SELECT 'a;b', 'it''s;'");
	assert_stmt(s, &st[1], " SELECT 2");
}

static void
test_split_escape_string(void **state)
{
	/* E'\'' is one quote char: the string ends at the second '. */
	static const char s[] = "SELECT E'\\';x', e'\\\\';SELECT 2";
	/* Without E the backslash is literal: the string ends early. */
	static const char s2[] = "SELECT '\\';SELECT 2";
	struct sql_stmt st[MAXST];

	(void)state;
	assert_int_equal(split(s, st), 2);
	assert_stmt(s, &st[0], "SELECT E'\\';x', e'\\\\'");
	assert_stmt(s, &st[1], "SELECT 2");
	assert_int_equal(split(s2, st), 2);
	assert_stmt(s2, &st[0], "SELECT '\\'");
}

static void
test_split_quoted_ident(void **state)
{
	static const char s[] = "SELECT \"ident;\" FROM \"a\"\";b\";SELECT 2";
	struct sql_stmt st[MAXST];

	(void)state;
	assert_int_equal(split(s, st), 2);
	assert_stmt(s, &st[0], "SELECT \"ident;\" FROM \"a\"\";b\"");
}

static void
test_split_dollar(void **state)
{
	static const char s[] =
		"DO $$ BEGIN PERFORM 1; END $$;"
		"SELECT $tag$ a;$$;$t$ b $tag$;"
		"SELECT $1, $2;"
		"SELECT a$b; SELECT 4";
	struct sql_stmt st[MAXST];

	(void)state;
	assert_int_equal(split(s, st), 5);
	assert_stmt(s, &st[0], "DO $$ BEGIN PERFORM 1; END $$");
	assert_stmt(s, &st[1], "SELECT $tag$ a;$$;$t$ b $tag$");
	/* $1 is a parameter, not the start of a quote. */
	assert_stmt(s, &st[2], "SELECT $1, $2");
	/* Inside an identifier '$' is just a character. */
	assert_stmt(s, &st[3], "SELECT a$b");
	assert_stmt(s, &st[4], " SELECT 4");
}

static void
test_split_dollar_param_semicolon(void **state)
{
	static const char s[] = "SELECT $1;SELECT $2";
	struct sql_stmt st[MAXST];

	(void)state;
	assert_int_equal(split(s, st), 2);
	assert_stmt(s, &st[0], "SELECT $1");
	assert_stmt(s, &st[1], "SELECT $2");
}

static void
test_split_unterminated(void **state)
{
	/* An open quote or dollar quote swallows the rest. */
	struct sql_stmt st[MAXST];

	(void)state;
	assert_int_equal(split("SELECT 'a;b", st), 1);
	assert_int_equal(split("SELECT $x$ a; b $y$", st), 1);
	assert_int_equal(split("SELECT \"a;b", st), 1);
	assert_int_equal(split("SELECT E'\\", st), 1);
	assert_int_equal(split("SELECT 1 /* a; /* b; */", st), 1);
	assert_int_equal(split("SELECT $", st), 1);
	assert_int_equal(split("SELECT $a", st), 1);
}

static void
test_split_comments(void **state)
{
	static const char s[] =
		"SELECT 1 -- no; split\n;"
		"SELECT /* a; /* nested; */ still; */ 2;"
		"-- only a comment;\n;"
		"/* only; */";
	struct sql_stmt st[MAXST];

	(void)state;
	assert_int_equal(split(s, st), 2);
	assert_stmt(s, &st[0], "SELECT 1 -- no; split\n");
	assert_stmt(s, &st[1], "SELECT /* a; /* nested; */ still; */ 2");
}

static void
test_split_empty(void **state)
{
	static const char s[] = " ; ;;\n\t; SET x = 1 ;;";
	struct sql_stmt st[MAXST];

	(void)state;
	assert_int_equal(sqlclass_split("", 0, st, MAXST), 0);
	assert_int_equal(split(";;;", st), 0);
	assert_int_equal(split("  \n", st), 0);
	assert_int_equal(split(s, st), 1);
	assert_stmt(s, &st[0], " SET x = 1 ");
	assert_int_equal(st[0].kind, SQL_SET);
	assert_string_equal(st[0].name, "x");
}

static void
test_split_classifies(void **state)
{
	static const char s[] =
		"SET a = 1; RESET b; DEALLOCATE s1; SELECT 1; DISCARD ALL";
	struct sql_stmt st[MAXST];

	(void)state;
	assert_int_equal(split(s, st), 5);
	assert_int_equal(st[0].kind, SQL_SET);
	assert_string_equal(st[0].name, "a");
	assert_int_equal(st[1].kind, SQL_RESET);
	assert_string_equal(st[1].name, "b");
	assert_int_equal(st[2].kind, SQL_DEALLOCATE);
	assert_string_equal(st[2].name, "s1");
	assert_int_equal(st[3].kind, SQL_OTHER);
	assert_int_equal(st[4].kind, SQL_DISCARD_ALL);
}

static void
test_split_max(void **state)
{
	static const char s[] = "SET a=1;SET b=2;SET c=3;SET d=4";
	struct sql_stmt st[3];

	(void)state;
	memset(st, 0x5a, sizeof(st));
	/* The count is exact; only 'max' entries are written. */
	assert_int_equal(sqlclass_split(s, strlen(s), st, 2), 4);
	assert_string_equal(st[1].name, "b");
	assert_int_equal(st[2].off, 0x5a5a5a5a5a5a5a5aull);
	assert_int_equal(sqlclass_split(s, strlen(s), NULL, 0), 4);
}

static void
test_split_not_nul_terminated(void **state)
{
	/* The length bounds the scan: the bytes after it are never read. */
	static const char s[] = "SET a = 1;SET b = 2";
	struct sql_stmt st[MAXST];

	(void)state;
	assert_int_equal(sqlclass_split(s, 9, st, MAXST), 1);
	assert_int_equal(st[0].len, 9);
	assert_string_equal(st[0].name, "a");
}

/* ---- classify ----------------------------------------------------------- */

static void
test_classify_set(void **state)
{
	char name[SQL_NAME_MAX];

	(void)state;
	assert_int_equal(classify("SET x = 1", name), SQL_SET);
	assert_string_equal(name, "x");
	assert_int_equal(classify("set Work_Mem TO '64MB'", name), SQL_SET);
	assert_string_equal(name, "work_mem");
	assert_int_equal(classify("SET SESSION x TO 'a'", name), SQL_SET);
	assert_string_equal(name, "x");
	assert_int_equal(classify("SET myext.opt = 'v'", name), SQL_SET);
	assert_string_equal(name, "myext.opt");
	assert_int_equal(classify("SET \"Quoted\" = 1", name), SQL_SET);
	assert_string_equal(name, "Quoted");
	assert_int_equal(classify("  /* c */ SET -- x\n y = 1", name),
			 SQL_SET);
	assert_string_equal(name, "y");
}

static void
test_classify_set_local(void **state)
{
	char name[SQL_NAME_MAX];

	(void)state;
	/* Transaction-scoped: nothing to replay. */
	assert_int_equal(classify("SET LOCAL x = 1", name), SQL_OTHER);
	assert_int_equal(classify("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
				  name),
			 SQL_OTHER);
	assert_int_equal(classify("SET", name), SQL_OTHER);
}

static void
test_classify_set_special(void **state)
{
	char name[SQL_NAME_MAX];

	(void)state;
	assert_int_equal(classify("SET TIME ZONE 'UTC'", name), SQL_SET);
	assert_string_equal(name, "timezone");
	assert_int_equal(classify("SET NAMES 'UTF8'", name), SQL_SET);
	assert_string_equal(name, "client_encoding");
	assert_int_equal(classify("SET SCHEMA 'app'", name), SQL_SET);
	assert_string_equal(name, "search_path");
	assert_int_equal(classify("SET SESSION AUTHORIZATION 'bob'", name),
			 SQL_SET);
	assert_string_equal(name, "session_authorization");
	assert_int_equal(classify("SET SESSION CHARACTERISTICS AS TRANSACTION "
				  "READ ONLY",
				  name),
			 SQL_SET);
	assert_string_equal(name, "session characteristics");
}

static void
test_classify_set_default(void **state)
{
	char name[SQL_NAME_MAX];

	(void)state;
	assert_int_equal(classify("SET search_path TO DEFAULT", name),
			 SQL_RESET);
	assert_string_equal(name, "search_path");
	assert_int_equal(classify("set x = default  ", name), SQL_RESET);
	assert_string_equal(name, "x");
	assert_int_equal(classify("SET SESSION x TO DEFAULT", name),
			 SQL_RESET);
	/* DEFAULT followed by more is not a plain reset. */
	assert_int_equal(classify("SET x TO default, other", name), SQL_SET);
	assert_int_equal(classify("SET x TO 'default'", name), SQL_SET);
}

static void
test_classify_reset(void **state)
{
	char name[SQL_NAME_MAX];

	(void)state;
	assert_int_equal(classify("RESET ALL", name), SQL_RESET_ALL);
	assert_int_equal(classify("reset all", name), SQL_RESET_ALL);
	assert_int_equal(classify("RESET Work_Mem", name), SQL_RESET);
	assert_string_equal(name, "work_mem");
	assert_int_equal(classify("RESET", name), SQL_OTHER);
}

static void
test_classify_discard(void **state)
{
	char name[SQL_NAME_MAX];

	(void)state;
	assert_int_equal(classify("DISCARD ALL", name), SQL_DISCARD_ALL);
	/* Partial discards change state we cannot track: pin. */
	assert_int_equal(classify("DISCARD PLANS", name), SQL_PIN);
	assert_int_equal(classify("DISCARD", name), SQL_PIN);
}

static void
test_classify_deallocate(void **state)
{
	char name[SQL_NAME_MAX];

	(void)state;
	assert_int_equal(classify("DEALLOCATE s1", name), SQL_DEALLOCATE);
	assert_string_equal(name, "s1");
	assert_int_equal(classify("DEALLOCATE PREPARE s2", name),
			 SQL_DEALLOCATE);
	assert_string_equal(name, "s2");
	assert_int_equal(classify("deallocate \"MixedCase\"", name),
			 SQL_DEALLOCATE);
	assert_string_equal(name, "MixedCase");
	assert_int_equal(classify("DEALLOCATE ALL", name), SQL_DEALLOCATE_ALL);
	assert_int_equal(classify("DEALLOCATE PREPARE ALL", name),
			 SQL_DEALLOCATE_ALL);
	assert_int_equal(classify("DEALLOCATE", name), SQL_OTHER);
	assert_int_equal(classify("DEALLOCATE PREPARE", name), SQL_OTHER);
}

static void
test_classify_pin(void **state)
{
	char name[SQL_NAME_MAX];

	(void)state;
	assert_int_equal(classify("LISTEN chan", name), SQL_PIN);
	assert_int_equal(classify("PREPARE p AS SELECT 1", name), SQL_PIN);
	assert_int_equal(classify("LOAD 'auto_explain'", name), SQL_PIN);
	assert_int_equal(classify("CREATE TEMP TABLE t (a int)", name),
			 SQL_PIN);
	assert_int_equal(classify("create temporary table t (a int)", name),
			 SQL_PIN);
	assert_int_equal(classify("CREATE LOCAL TEMP TABLE t (a int)", name),
			 SQL_PIN);
	assert_int_equal(classify("DECLARE c CURSOR WITH HOLD FOR SELECT 1",
				  name),
			 SQL_PIN);
	assert_int_equal(classify("SELECT pg_advisory_lock(1)", name),
			 SQL_PIN);
	assert_int_equal(classify("SELECT PG_TRY_ADVISORY_LOCK(1)", name),
			 SQL_PIN);
	assert_int_equal(classify("select set_config('a.b', 'c', false)",
				  name),
			 SQL_PIN);
}

static void
test_classify_other(void **state)
{
	char name[SQL_NAME_MAX];

	(void)state;
	strcpy(name, "stale");
	assert_int_equal(classify("SELECT 1", name), SQL_OTHER);
	assert_string_equal(name, "");	/* always cleared */
	assert_int_equal(classify("", name), SQL_OTHER);
	assert_int_equal(classify("   -- c\n", name), SQL_OTHER);
	assert_int_equal(classify("CREATE TABLE t (a int)", name), SQL_OTHER);
	assert_int_equal(classify("DECLARE c CURSOR FOR SELECT 1", name),
			 SQL_OTHER);
	assert_int_equal(classify("INSERT INTO t VALUES (1)", name),
			 SQL_OTHER);
	assert_int_equal(classify("UPDATE settings SET x = 1", name),
			 SQL_OTHER);
	assert_int_equal(classify("settle", name), SQL_OTHER);
}

static void
test_classify_long_names(void **state)
{
	char name[SQL_NAME_MAX], small[4];
	char sql[400];

	(void)state;
	/* A name that does not fit is not a SET of a truncated name. */
	strcpy(sql, "SET ");
	memset(sql + 4, 'a', 300);
	strcpy(sql + 304, " = 1");
	assert_int_equal(classify(sql, name), SQL_OTHER);
	/* A small output buffer truncates but stays terminated. */
	assert_int_equal(sqlclass_classify("SET abcdef = 1", 14, small,
					   sizeof(small)),
			 SQL_SET);
	assert_string_equal(small, "abc");
}

/* ---- interesting -------------------------------------------------------- */

static void
test_interesting(void **state)
{
	static const char *const yes[] = {
		"SET x = 1",
		"RESET ALL",
		"DISCARD ALL",
		"DEALLOCATE s",
		"LISTEN c",
		"CREATE TEMP TABLE t ()",
		"SELECT 1; SELECT 2",
		"SELECT 1; SET x = 1;",
		"SELECT pg_advisory_lock(1)",
		"SELECT PG_TRY_ADVISORY_LOCK(1)",
		"select pg_advisory_xact_lock(1)",
		"with x as (select set_config('a','b',false)) select 1",
		"SELECT Set_Config('a','b',false)",
		"SELECT \"pg_advisory_lock\"(1)",
		"EXPLAIN SELECT 1",
	};
	static const char *const no[] = {
		"",
		"SELECT 1",
		"select * from t where a = 'x'",
		"INSERT INTO t VALUES (1)",
		"INSERT INTO t VALUES (1);",
		"SELECT abalance FROM a WHERE aid = 1;  ",
		"SELECT abalance FROM pgbench_accounts WHERE aid = 1",
		"SELECT _ FROM t_ WHERE x_ = 1 AND set_ = 2 AND _config = 3",
		"SELECT advisory FROM config",
		"SELECT _",
		"SELECT t._a_ FROM t",
		"UPDATE t SET a = 1",
		"DELETE FROM t",
		"BEGIN",
		"COMMIT",
		"ROLLBACK",
		"  -- just a comment",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!sqlclass_interesting(yes[i], strlen(yes[i])))
			fail_msg("should be interesting: %s", yes[i]);
	}
	for (i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		if (sqlclass_interesting(no[i], strlen(no[i])))
			fail_msg("should not be interesting: %s", no[i]);
	}
}

/* Inputs that once fooled the classifier. */
static void
test_tricky_inputs(void **state)
{
	static const char paren[] = "(SELECT pg_advisory_lock(1))";
	char name[SQL_NAME_MAX];

	(void)state;
	/* A leading '(' hides the advisory lock from both functions. */
	assert_int_equal(classify(paren, name), SQL_PIN);
	assert_true(sqlclass_interesting(paren, strlen(paren)));
	/* WITH HOLD is only found with exactly one space in between. */
	assert_int_equal(classify("DECLARE c CURSOR WITH\n HOLD FOR SELECT 1",
				  name),
			 SQL_PIN);
	/* A doubled quote inside a quoted GUC name. */
	assert_int_equal(classify("SET \"a\"\"b\" = 1", name), SQL_SET);
	assert_string_equal(name, "a\"b");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_plain),
		cmocka_unit_test(test_split_quotes),
		cmocka_unit_test(test_split_escape_string),
		cmocka_unit_test(test_split_quoted_ident),
		cmocka_unit_test(test_split_dollar),
		cmocka_unit_test(test_split_dollar_param_semicolon),
		cmocka_unit_test(test_split_unterminated),
		cmocka_unit_test(test_split_comments),
		cmocka_unit_test(test_split_empty),
		cmocka_unit_test(test_split_classifies),
		cmocka_unit_test(test_split_max),
		cmocka_unit_test(test_split_not_nul_terminated),
		cmocka_unit_test(test_classify_set),
		cmocka_unit_test(test_classify_set_local),
		cmocka_unit_test(test_classify_set_special),
		cmocka_unit_test(test_classify_set_default),
		cmocka_unit_test(test_classify_reset),
		cmocka_unit_test(test_classify_discard),
		cmocka_unit_test(test_classify_deallocate),
		cmocka_unit_test(test_classify_pin),
		cmocka_unit_test(test_classify_other),
		cmocka_unit_test(test_classify_long_names),
		cmocka_unit_test(test_interesting),
		cmocka_unit_test(test_tricky_inputs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
