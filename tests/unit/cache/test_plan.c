/*
 * test_plan.c - the cache's statement planner (cache/plan.h) without a
 * server: the catalog is never started, so only what the text itself
 * says is checked here (the integration suites cover tags and rows).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "analysis/catalog.h"
#include "cache/plan.h"
#include "core/pgurl.h"

/* A Bind body with no formats and no parameters. */
static const uint8_t NO_PARAMS[] = { 0, 0, 0, 0, 0, 0 };

/* A plan table over a catalog that is never started. */
static struct plan_table *
table_new(struct catalog **cat)
{
	static struct pg_url url;
	struct plan_table *pt;

	*cat = catalog_new(&url);
	assert_non_null(*cat);
	pt = plan_table_new(*cat, 1 << 20);
	assert_non_null(pt);
	return pt;
}

static struct plan
plan_of(struct plan_table *pt, const char *text, bool extended)
{
	struct plan p;

	memset(&p, 0xab, sizeof(p));	/* what a fresh stack frame may hold */
	plan_make(pt, "db", text, strlen(text),
		  extended ? NO_PARAMS : NULL, extended ? sizeof(NO_PARAMS) : 0,
		  &p);
	assert_true(p.n_tags <= CACHE_MAX_TAGS);
	assert_true(p.n_inval <= CACHE_MAX_TAGS);
	return p;
}

/*
 * A simple Query's numbers become $n and the texts share one summary; a
 * normalised text the parser rejects falls back to the text as sent.
 * That must not depend on which of the two forms came first: the same
 * "$n" text also arrives as itself, in a Parse.
 */
static void
test_fallback_either_order(void **state)
{
	struct catalog *cat;
	struct plan_table *pt = table_new(&cat);
	struct plan p;

	(void)state;
	/* Parse first: its verdict (a syntax error) is about that text... */
	p = plan_of(pt, "CREATE SEQUENCE s START $1", true);
	assert_false(p.cacheable);
	assert_false(p.forget_catalog);
	/* ...and the simple Query it normalises to is still planned from
	 * its own text: DDL, so the catalog is forgotten. */
	p = plan_of(pt, "CREATE SEQUENCE s START 5", false);
	assert_true(p.forget_catalog);
	assert_false(p.cacheable);

	/* Simple Query first, then the "$n" text as a Parse: a plan is made
	 * (it used to be left unwritten, stack bytes and all). */
	p = plan_of(pt, "CREATE SEQUENCE s2 START 7", false);
	assert_true(p.forget_catalog);
	p = plan_of(pt, "CREATE SEQUENCE s2 START $1", true);
	assert_false(p.cacheable);
	assert_false(p.writes);
	assert_false(p.forget_catalog);
	assert_int_equal(p.n_tags, 0);
	assert_int_equal(p.n_inval, 0);
	plan_table_free(pt);
	catalog_free(cat);
}

/* Numbers in strings, comments and quoted names are not literals. */
static void
test_literals_left_alone(void **state)
{
	struct catalog *cat;
	struct plan_table *pt = table_new(&cat);
	struct plan p;

	(void)state;
	p = plan_of(pt, "SELECT 'a 1' /* 2 */ , E'\\'3' -- 4\n, \"t5\"", false);
	assert_true(p.cacheable);
	p = plan_of(pt, "INSERT INTO t5 VALUES (1), (2.5), (.5), (1e3)", false);
	assert_true(p.writes);
	assert_false(p.cacheable);
	plan_table_free(pt);
	catalog_free(cat);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fallback_either_order),
		cmocka_unit_test(test_literals_left_alone),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
