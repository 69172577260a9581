/*
 * test_indexer.c - the pure parts of the index advisor's database half
 * (observe/indexer.h): index names (recognizable, legal, <= 63 bytes,
 * distinct when shortened) and the --exclude-tables match.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "observe/indexer.h"

static void
test_names(void **state)
{
	const char *const cols[3] = { "customer_id", "Created At", "x" };
	char a[INDEXER_NAME_MAX], b[INDEXER_NAME_MAX];
	char longt[ANALYSIS_NAME_MAX];

	(void)state;
	indexer_name("orders", cols, 1, a);
	assert_string_equal(a, "pgvalet_idx_orders_customer_id");
	indexer_name("Orders", cols, 2, a);
	assert_string_equal(a, "pgvalet_idx_orders_customer_id_created_at");
	memset(longt, 't', sizeof(longt) - 1);
	longt[sizeof(longt) - 1] = '\0';
	indexer_name(longt, cols, 2, a);
	indexer_name(longt, cols, 3, b);
	assert_true(strlen(a) <= 63 && strlen(b) <= 63);
	assert_int_equal(strncmp(a, INDEXER_PREFIX, strlen(INDEXER_PREFIX)), 0);
	assert_string_not_equal(a, b);
}

static void
test_excluded(void **state)
{
	(void)state;
	assert_true(indexer_excluded("orders", "public", "orders"));
	assert_true(indexer_excluded("a, Orders ,b", "shop", "orders"));
	assert_true(indexer_excluded("shop.orders", "shop", "orders"));
	assert_false(indexer_excluded("shop.orders", "public", "orders"));
	assert_false(indexer_excluded("order", "public", "orders"));
	assert_false(indexer_excluded("orders_x", "public", "orders"));
	assert_false(indexer_excluded("", "public", "orders"));
	assert_false(indexer_excluded(",,", "public", "orders"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_excluded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
