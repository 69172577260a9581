/*
 * test_gucstate.c - a client's session settings (pool/gucstate.h).  The
 * signature decides whether a backend needs the replay SQL, so its
 * reserved values (0 = defaults, never 1) and its sensitivity to content
 * are checked as closely as the SQL text itself.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool/gucstate.h"

#define PREFIX "SET SESSION AUTHORIZATION DEFAULT;RESET ALL;"

static void
set(struct guc_state *s, const char *name, const char *sql)
{
	assert_int_equal(guc_state_set(s, name, sql, strlen(sql)), 0);
}

static void
assert_replay(const struct guc_state *s, const char *want)
{
	char *sql = guc_state_replay_sql(s);

	assert_non_null(sql);
	assert_string_equal(sql, want);
	free(sql);
}

static void
test_empty(void **state)
{
	struct guc_state s;

	(void)state;
	guc_state_init(&s);
	assert_int_equal(s.n, 0);
	assert_int_equal(s.sig, 0);
	assert_replay(&s, PREFIX);
	guc_state_reset(&s, "x");	/* absent: a no-op */
	guc_state_clear(&s);
	assert_int_equal(s.sig, 0);
	guc_state_free(&s);
}

static void
test_set_replace_reset(void **state)
{
	struct guc_state s;
	uint64_t sig1, sig2;

	(void)state;
	guc_state_init(&s);
	set(&s, "search_path", "SET search_path TO app");
	assert_int_equal(s.n, 1);
	sig1 = s.sig;
	assert_int_not_equal(sig1, 0);
	set(&s, "work_mem", "SET work_mem = '64MB'");
	assert_int_equal(s.n, 2);
	sig2 = s.sig;
	assert_int_not_equal(sig2, sig1);
	assert_replay(&s, PREFIX "SET search_path TO app;"
			      "SET work_mem = '64MB';");

	/* Replacing keeps the first-set position. */
	set(&s, "search_path", "SET search_path TO other");
	assert_int_equal(s.n, 2);
	assert_string_equal(s.v[0].name, "search_path");
	assert_replay(&s, PREFIX "SET search_path TO other;"
			      "SET work_mem = '64MB';");
	assert_int_not_equal(s.sig, sig2);

	/* Setting it back restores the earlier signature. */
	set(&s, "search_path", "SET search_path TO app");
	assert_int_equal(s.sig, sig2);

	guc_state_reset(&s, "search_path");
	assert_int_equal(s.n, 1);
	assert_string_equal(s.v[0].name, "work_mem");
	assert_replay(&s, PREFIX "SET work_mem = '64MB';");
	guc_state_reset(&s, "work_mem");
	assert_int_equal(s.n, 0);
	assert_int_equal(s.sig, 0);	/* back to server defaults */
	assert_replay(&s, PREFIX);
	guc_state_free(&s);
}

static void
test_sqllen_bounds_copy(void **state)
{
	/* Only sqllen bytes are taken: a statement inside a longer text. */
	static const char text[] = "SET a = 1;SET b = 2";
	struct guc_state s;

	(void)state;
	guc_state_init(&s);
	assert_int_equal(guc_state_set(&s, "a", text, 9), 0);
	assert_string_equal(s.v[0].sql, "SET a = 1");
	assert_int_equal(guc_state_set(&s, "b", text + 10, 9), 0);
	assert_replay(&s, PREFIX "SET a = 1;SET b = 2;");
	guc_state_free(&s);
}

static void
test_reset_middle_keeps_order(void **state)
{
	struct guc_state s;
	char name[16], sql[64], want[1024];
	size_t i, off;

	(void)state;
	guc_state_init(&s);
	/* More than the initial capacity, so the array grows. */
	for (i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "g%zu", i);
		snprintf(sql, sizeof(sql), "SET g%zu = %zu", i, i);
		set(&s, name, sql);
	}
	assert_int_equal(s.n, 20);
	guc_state_reset(&s, "g0");
	guc_state_reset(&s, "g10");
	guc_state_reset(&s, "g19");
	assert_int_equal(s.n, 17);
	off = (size_t)snprintf(want, sizeof(want), "%s", PREFIX);
	for (i = 0; i < 20; i++) {
		if (i == 0 || i == 10 || i == 19)
			continue;
		off += (size_t)snprintf(want + off, sizeof(want) - off,
					"SET g%zu = %zu;", i, i);
	}
	assert_replay(&s, want);
	guc_state_free(&s);
}

static void
test_signature(void **state)
{
	struct guc_state a, b;
	char sql[32];
	size_t i;

	(void)state;
	guc_state_init(&a);
	guc_state_init(&b);
	/* Same content, same signature, independent of history. */
	set(&a, "x", "SET x = 1");
	set(&a, "y", "SET y = 2");
	set(&b, "x", "SET x = 0");
	set(&b, "y", "SET y = 2");
	set(&b, "x", "SET x = 1");
	assert_int_equal(a.sig, b.sig);
	/* Order is content: a replay in another order may differ. */
	guc_state_clear(&b);
	set(&b, "y", "SET y = 2");
	set(&b, "x", "SET x = 1");
	assert_int_not_equal(a.sig, b.sig);
	/* Never the reserved values, whatever the content. */
	for (i = 0; i < 2000; i++) {
		snprintf(sql, sizeof(sql), "SET z = %zu", i);
		set(&a, "z", sql);
		assert_int_not_equal(a.sig, 0);
		assert_int_not_equal(a.sig, 1);
	}
	guc_state_clear(&a);
	assert_int_equal(a.n, 0);
	assert_int_equal(a.sig, 0);
	assert_replay(&a, PREFIX);
	/* Usable after clear. */
	set(&a, "x", "SET x = 1");
	assert_int_equal(a.n, 1);
	guc_state_free(&a);
	guc_state_free(&b);
}

static void
test_merge_copy(void **state)
{
	struct guc_state sess, txn, cp;

	(void)state;
	guc_state_init(&sess);
	guc_state_init(&txn);
	guc_state_init(&cp);
	set(&sess, "a", "SET a = 1");
	set(&sess, "b", "SET b = 1");
	set(&txn, "b", "SET b = 2");
	set(&txn, "c", "SET c = 3");
	assert_int_equal(guc_state_merge(&sess, &txn), 0);
	assert_replay(&sess, PREFIX "SET a = 1;SET b = 2;SET c = 3;");

	set(&cp, "junk", "SET junk = 1");
	assert_int_equal(guc_state_copy(&cp, &sess), 0);
	assert_int_equal(cp.n, 3);
	assert_int_equal(cp.sig, sess.sig);
	assert_replay(&cp, PREFIX "SET a = 1;SET b = 2;SET c = 3;");
	/* A deep copy: changing one leaves the other alone. */
	set(&sess, "a", "SET a = 9");
	assert_string_equal(cp.v[0].sql, "SET a = 1");
	assert_int_not_equal(cp.sig, sess.sig);

	guc_state_clear(&txn);
	assert_int_equal(guc_state_copy(&cp, &txn), 0);
	assert_int_equal(cp.n, 0);
	assert_int_equal(cp.sig, 0);
	guc_state_free(&sess);
	guc_state_free(&txn);
	guc_state_free(&cp);
}

/* The Queries guc_state_replay() sends, joined with '|'. */
struct sent {
	char text[512];
	int n;
};

static int
collect(void *arg, const char *sql)
{
	struct sent *out = arg;
	size_t len = strlen(out->text);

	snprintf(out->text + len, sizeof(out->text) - len, "%s%s",
		 out->n++ ? "|" : "", sql);
	return 0;
}

static struct sent
replayed(const struct guc_state *s)
{
	struct sent out = { .n = 0 };

	assert_int_equal(guc_state_replay(s, collect, &out), 0);
	return out;
}

/* Only a backslash makes the parse-time standard_conforming_strings
 * matter: then one Query per SET, else one Query for all. */
static void
test_replay_queries(void **state)
{
	struct guc_state s;
	struct sent out;

	(void)state;
	guc_state_init(&s);
	out = replayed(&s);
	assert_int_equal(out.n, 1);
	assert_string_equal(out.text, PREFIX);
	set(&s, "standard_conforming_strings",
	    "SET standard_conforming_strings = off");
	set(&s, "search_path", "SET search_path = 'a', b");
	out = replayed(&s);
	assert_int_equal(out.n, 1);
	assert_string_equal(out.text,
			    PREFIX "SET standard_conforming_strings = off;"
				   "SET search_path = 'a', b;");
	set(&s, "app.path", "SET app.path = 'c:\\\\temp'");
	out = replayed(&s);
	assert_int_equal(out.n, 4);
	assert_string_equal(out.text,
			    "SET SESSION AUTHORIZATION DEFAULT;RESET ALL|"
			    "SET standard_conforming_strings = off|"
			    "SET search_path = 'a', b|"
			    "SET app.path = 'c:\\\\temp'");
	guc_state_reset(&s, "app.path");
	assert_int_equal(replayed(&s).n, 1);
	guc_state_free(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_set_replace_reset),
		cmocka_unit_test(test_sqllen_bounds_copy),
		cmocka_unit_test(test_reset_middle_keeps_order),
		cmocka_unit_test(test_signature),
		cmocka_unit_test(test_merge_copy),
		cmocka_unit_test(test_replay_queries),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
