/*
 * test_nplus1.c - N+1 detection (observe/nplus1.h) fed synthetic
 * observations: a loop over parents on one connection, the same loop
 * spread over connections, a hot query repeated with one parameter, a
 * slow loop spread over more than the window; and the findings' JSON
 * (observe/jsonbuf.h escaping included).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "observe/nplus1.h"

static const char CHILD_SQL[] = "SELECT * FROM child WHERE parent_id = 7 "
				"AND note <> 'a\"b\\\\c\n'";

static void
feed(struct nplus1 *np, uint64_t client, uint64_t param, int64_t at_us,
     const char *sql)
{
	struct stmt_observation o = {
		.fingerprint = 0x1234,
		.sql = sql,
		.sql_len = strlen(sql),
		.db = "appdb",
		.user = "app",
		.client_id = client,
		.params_hash = param,
		.started_us = at_us,
		.duration_us = 100,
	};

	nplus1_observe(&o, np);
}

static void
test_one_connection_loop(void **state)
{
	struct nplus1 *np = nplus1_new();
	char *json;
	int i;

	(void)state;
	for (i = 0; i < 9; i++)
		feed(np, 1, 100 + (uint64_t)i, 1000000 + i * 1000, CHILD_SQL);
	assert_int_equal(nplus1_count(np), 0);
	for (i = 9; i < 15; i++)
		feed(np, 1, 100 + (uint64_t)i, 1000000 + i * 1000, CHILD_SQL);
	assert_int_equal(nplus1_count(np), 1);	/* not "across": one client */
	json = nplus1_json(np);
	assert_non_null(json);
	assert_non_null(strstr(json, "\"kind\":\"n+1\",\"scope\":\"connection\""));
	assert_non_null(strstr(json, "\"shape\":\"0000000000001234\""));
	/* quotes, backslashes and newlines escaped */
	assert_non_null(strstr(json, "note <> 'a\\\"b\\\\\\\\c\\n'"));
	free(json);
	nplus1_free(np);
}

static void
test_across_connections(void **state)
{
	struct nplus1 *np = nplus1_new();
	char *json;
	int i;

	(void)state;
	for (i = 0; i < 12; i++)
		feed(np, 10 + (uint64_t)i, 500 + (uint64_t)i, 1000000 + i * 500,
		     "SELECT * FROM child WHERE parent_id = 1");
	assert_int_equal(nplus1_count(np), 1);
	json = nplus1_json(np);
	assert_non_null(strstr(json, "\"scope\":\"connections\""));
	free(json);
	nplus1_free(np);
}

static void
test_not_nplus1(void **state)
{
	struct nplus1 *np = nplus1_new();
	int i;

	(void)state;
	/* a hot query: same parameter every time */
	for (i = 0; i < 50; i++)
		feed(np, 1, 42, 1000000 + i * 100, "SELECT * FROM t WHERE id = 1");
	/* a loop slower than the window: 9 calls a second at most */
	for (i = 0; i < 40; i++)
		feed(np, 2, (uint64_t)i + 1, 5000000 + i * 120000,
		     "SELECT * FROM t WHERE id = 2");
	/* writes are not N+1 */
	for (i = 0; i < 40; i++)
		feed(np, 3, (uint64_t)i + 1, 9000000 + i * 100,
		     "INSERT INTO t VALUES (1)");
	assert_int_equal(nplus1_count(np), 0);
	nplus1_free(np);
}

static void
test_deep_offset(void **state)
{
	struct nplus1 *np = nplus1_new();
	char *json;

	(void)state;
	nplus1_note_offset(np, 0x99, "appdb", "SELECT * FROM t OFFSET 5000",
			   5000);
	nplus1_note_offset(np, 0x99, "appdb", "SELECT * FROM t OFFSET 9000",
			   9000);
	assert_int_equal(nplus1_count(np), 1);
	json = nplus1_json(np);
	assert_non_null(strstr(json, "\"kind\":\"deep_offset\""));
	assert_non_null(strstr(json, "\"offset\":9000"));
	free(json);
	nplus1_free(np);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_connection_loop),
		cmocka_unit_test(test_across_connections),
		cmocka_unit_test(test_not_nplus1),
		cmocka_unit_test(test_deep_offset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
