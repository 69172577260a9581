/*
 * test_observe.c - the shape hash and fingerprint cache, the workload
 * statistics (merging shards, eviction, quantiles, slow shapes) and the
 * admin console's user list.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "observe/fingerprint.h"
#include "observe/stats.h"
#include "pool/admin.h"

static uint64_t
h(const char *s)
{
	return fp_shape_hash(s, strlen(s));
}

static void
shape_hash_ignores_literals_only(void **state)
{
	(void)state;
	assert_int_equal(h("SELECT * FROM t WHERE id = 1"),
			 h("SELECT * FROM t WHERE id = 12345"));
	assert_int_equal(h("SELECT 'a', 1.5e3-- x\n"), h("SELECT 'bb''c', 7\n"));
	assert_int_equal(h("SELECT E'\\'', 1"), h("SELECT E'zz', 2"));
	assert_int_equal(h("/* c */SELECT 1"), h("SELECT 2"));
	/* identifiers, parameters, quoted names and bodies are shape */
	assert_int_not_equal(h("SELECT * FROM t1"), h("SELECT * FROM t2"));
	assert_int_not_equal(h("SELECT $1"), h("SELECT $2"));
	assert_int_not_equal(h("SELECT \"a1\""), h("SELECT \"a2\""));
	assert_int_not_equal(h("SELECT $$1$$"), h("SELECT $$2$$"));
	assert_int_not_equal(h("SELECT a FROM t"), h("SELECT b FROM t"));
	assert_int_not_equal(h("SELECT 1 FROM t"), h("SELECT 1 FROM t;"));
}

static void
fingerprint_cache_agrees_with_the_parser(void **state)
{
	struct fp_cache *fc = fp_cache_new();
	const char *a = "SELECT v FROM t WHERE id = 5";
	const char *b = "select v from t where id = $1";
	uint64_t fa, fb;

	(void)state;
	assert_non_null(fc);
	fa = fp_cache_get(fc, a, strlen(a));
	assert_int_not_equal(fa, 0);
	assert_int_equal(fp_cache_get(fc, a, strlen(a)), fa);	/* cached */
	fb = fp_cache_get(fc, b, strlen(b));
	assert_int_equal(fa, fb);	/* constants and $n: one shape */
	assert_int_equal(fp_cache_get(fc, "SELEC nonsense", 14), 0);
	fp_cache_free(fc);
}

static void
observe(struct stats *st, uint64_t client, uint64_t fp, const char *sql,
	int64_t us, bool hit, bool failed)
{
	struct stmt_observation o = {
		.fingerprint = fp, .sql = sql, .sql_len = strlen(sql),
		.db = "db", .user = "u", .client_id = client,
		.started_us = 1000000, .duration_us = us, .rows = 2,
		.cache_hit = hit, .failed = failed,
	};

	stats_observe(&o, st);
}

static void
stats_merge_shards_and_mark_slow(void **state)
{
	struct stats_config cfg = { .max_shapes = 100,
				    .threshold_duration_ms = 100,
				    .threshold_impact_pct = 50 };
	struct stats *st = stats_new(&cfg);
	struct stats_shape *sh = NULL;
	struct stats_global g;
	size_t n;
	int i;

	(void)state;
	assert_non_null(st);
	/* shape 1: 100 fast calls spread over every shard, 5 of them hits */
	for (i = 0; i < 100; i++)
		observe(st, (uint64_t)i, 1, "SELECT 1", 1000, i < 5, false);
	/* shape 2: two slow calls, one failed */
	observe(st, 1, 2, "SELECT pg_sleep(1)", 200000, false, false);
	observe(st, 2, 2, "SELECT pg_sleep(1)", 400000, false, true);
	n = stats_get_shapes(st, 0, &sh);
	assert_int_equal(n, 2);
	assert_int_equal(sh[0].fingerprint, 2);	/* most total time first */
	assert_int_equal(sh[0].calls, 2);
	assert_int_equal(sh[0].failures, 1);
	assert_true(sh[0].slow);
	assert_true(sh[0].max_ms == 400.0);
	assert_true(sh[0].mean_ms == 300.0);
	assert_int_equal(sh[1].calls, 100);
	assert_int_equal(sh[1].cache_hits, 5);
	assert_int_equal(sh[1].rows, 200);
	assert_false(sh[1].slow);
	assert_true(sh[1].p95_ms >= 1.0 && sh[1].p95_ms <= 1.5);
	assert_string_equal(sh[1].example, "SELECT 1");
	free(sh);
	stats_get_global(st, &g);
	assert_int_equal(g.statements, 102);
	assert_int_equal(g.cache_hits, 5);
	assert_int_equal(g.failures, 1);
	assert_int_equal(g.latency_buckets[STATS_LAT_BUCKETS - 1], 0);
	/* limit, then thresholds at run time: impact alone marks shape 2 */
	assert_int_equal(stats_get_shapes(st, 1, &sh), 1);
	free(sh);
	stats_set_thresholds(st, 1000, 50);
	n = stats_get_shapes(st, 0, &sh);
	assert_true(sh[0].slow && sh[0].impact > 0.5);
	free(sh);
	stats_reset(st);
	assert_int_equal(stats_get_shapes(st, 0, &sh), 0);
	stats_free(st);
}

static void
stats_memory_is_bounded(void **state)
{
	struct stats_config cfg = { .max_shapes = 10,
				    .threshold_duration_ms = 100 };
	struct stats *st = stats_new(&cfg);
	struct stats_shape *sh = NULL;
	struct stats_global g;
	size_t n;
	uint64_t fp;

	(void)state;
	for (fp = 1; fp <= 1000; fp++)
		observe(st, 7, fp, "SELECT x", 10, false, false);
	observe(st, 7, 995, "SELECT x", 10, false, false);
	n = stats_get_shapes(st, 0, &sh);
	assert_int_equal(n, 10);	/* one shard, max_shapes each */
	for (size_t i = 0; i < n; i++)
		assert_true(sh[i].fingerprint > 990);	/* the most recent */
	free(sh);
	stats_get_global(st, &g);
	assert_int_equal(g.statements, 1001);
	assert_int_equal(g.shapes_evicted, 990);
	stats_seed(st, 5000, "db", "SELECT seeded", 40, 400.0, 80);
	n = stats_get_shapes(st, 0, &sh);
	assert_int_equal(sh[0].fingerprint, 5000);
	assert_true(sh[0].seeded && sh[0].mean_ms == 10.0);
	free(sh);
	stats_free(st);
}

static void
stats_seed_does_not_count_twice(void **state)
{
	struct stats_config cfg = { .max_shapes = 10,
				    .threshold_duration_ms = 100 };
	struct stats *st = stats_new(&cfg);
	struct stats_shape *sh = NULL;

	(void)state;
	/* 3 calls seen through the proxy, one a cache hit: 2 reached Postgres
	 * and are in its pg_stat_statements' 10 too */
	observe(st, 1, 77, "SELECT 77", 1000, false, false);
	observe(st, 2, 77, "SELECT 77", 1000, true, false);
	observe(st, 3, 77, "SELECT 77", 1000, false, false);
	stats_seed(st, 77, "db", "SELECT $1", 10, 100.0, 10);
	assert_int_equal(stats_get_shapes(st, 0, &sh), 1);
	assert_int_equal(sh[0].calls, 3 + 8);
	assert_int_equal(sh[0].rows, 6 + 8);
	assert_true(sh[0].seeded && sh[0].total_ms == 3.0 + 80.0);
	free(sh);
	stats_seed(st, 78, "db", "SELECT 78", 0, 0, 0);	/* nothing to add */
	assert_int_equal(stats_get_shapes(st, 0, &sh), 1);
	free(sh);
	stats_free(st);
}

static void
admin_users(void **state)
{
	(void)state;
	assert_true(admin_user_allowed("owner", "", "owner"));
	assert_false(admin_user_allowed("owner", "", "app"));
	assert_true(admin_user_allowed("owner", "ops, app", "app"));
	assert_true(admin_user_allowed("owner", "ops,app", "ops"));
	assert_false(admin_user_allowed("owner", "ops,app", "ap"));
	assert_false(admin_user_allowed("owner", "ops,app", "apps"));
	assert_false(admin_user_allowed("owner", "ops,app", ""));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(shape_hash_ignores_literals_only),
		cmocka_unit_test(fingerprint_cache_agrees_with_the_parser),
		cmocka_unit_test(stats_merge_shards_and_mark_slow),
		cmocka_unit_test(stats_memory_is_bounded),
		cmocka_unit_test(stats_seed_does_not_count_twice),
		cmocka_unit_test(admin_users),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
