/*
 * test_events.c - the parsers of bus lines and NOTIFY payloads
 * (invalidate/events.h): what valid messages give, and that every
 * malformed or truncated one is refused rather than half-applied.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "invalidate/events.h"

static struct notify_change nc;
static struct bus_line bl;

static int
notify(const char *s)
{
	return notify_parse(s, strlen(s), &nc);
}

static int
bus(const char *s)
{
	return bus_line_parse(s, strlen(s), &bl);
}

static void
test_notify_rows(void **state)
{
	(void)state;
	assert_int_equal(notify("6:public5:items|5,-6,9223372036854775807"), 0);
	assert_string_equal(nc.schema, "public");
	assert_string_equal(nc.table, "items");
	assert_false(nc.whole);
	assert_int_equal(nc.nrows, 3);
	assert_true(nc.rows[0] == 5 && nc.rows[1] == -6 &&
		    nc.rows[2] == INT64_MAX);
	assert_int_equal(notify("1:s1:t|-9223372036854775808"), 0);
	assert_true(nc.rows[0] == INT64_MIN);
}

static void
test_notify_whole_and_odd_names(void **state)
{
	(void)state;
	assert_int_equal(notify("6:public5:items|*"), 0);
	assert_true(nc.whole);
	assert_int_equal(nc.nrows, 0);
	/* names with the separators in them are counted, not scanned */
	assert_int_equal(notify("3:a|b7:x.y|z:5|7"), 0);
	assert_string_equal(nc.schema, "a|b");
	assert_string_equal(nc.table, "x.y|z:5");
	assert_int_equal(nc.nrows, 1);
	assert_true(nc.rows[0] == 7);
}

static void
test_notify_malformed(void **state)
{
	static const char *const bad[] = {
		"", "6:public", "6:public5:items", "6:public5:items|",
		"6:public5:items|x", "6:public5:items|5,", "6:public5:items|,5",
		"6:public5:items|05", "6:public5:items|-0x1",
		"6:public5:items|9223372036854775808",
		"6:public5:items|-9223372036854775809",
		"6:public5:items|*,5", "6:public5:items|5 ", "x:public5:items|5",
		"7:public5:items|5", "99999999999999999999:a1:b|*",
		"64:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1:b|*",
		"6:public0:|*x",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		if (notify(bad[i]) != -1)
			fail_msg("accepted: %s", bad[i]);
	}
	/* a NUL inside a counted name */
	assert_int_equal(notify_parse("3:a\0b1:t|*", 10, &nc), -1);
}

static void
test_notify_row_limit(void **state)
{
	static char s[EVENT_MAX_ROWS * 8 + 64];
	size_t n = (size_t)snprintf(s, sizeof(s), "1:s1:t|"), i;

	(void)state;
	for (i = 0; i < EVENT_MAX_ROWS; i++)
		n += (size_t)snprintf(s + n, sizeof(s) - n, "%s%zu",
				      i ? "," : "", i);
	assert_int_equal(notify(s), 0);
	assert_int_equal(nc.nrows, EVENT_MAX_ROWS);
	snprintf(s + n, sizeof(s) - n, ",1");
	assert_int_equal(notify(s), -1);
}

static void
test_bus_lines(void **state)
{
	(void)state;
	assert_int_equal(bus("0123456789abcdef|app|59b7c21f9830f980,"
			     "0000000000000001"), 0);
	assert_string_equal(bl.id, "0123456789abcdef");
	assert_string_equal(bl.db, "app");
	assert_false(bl.all);
	assert_int_equal(bl.ntags, 2);
	assert_true(bl.tags[0] == UINT64_C(0x59b7c21f9830f980) &&
		    bl.tags[1] == 1);
	assert_int_equal(bus("0123456789abcdef|my db|*"), 0);
	assert_true(bl.all);
	assert_string_equal(bl.db, "my db");
}

static void
test_bus_malformed(void **state)
{
	static const char *const bad[] = {
		"", "0123456789abcdef", "0123456789abcdef|", "0123456789abcdef|app",
		"0123456789abcdef||*", "0123456789ABCDEF|app|*",
		"0123456789abcde|app|*", "0123456789abcdefg|app|*",
		"0123456789abcdef|app|", "0123456789abcdef|app|59b7c21f9830f98",
		"0123456789abcdef|app|59b7c21f9830f980,",
		"0123456789abcdef|app|59b7c21f9830f980x",
		"0123456789abcdef|app|59B7C21F9830F980",
		"0123456789abcdef|app|*,59b7c21f9830f980",
		"0123456789abcdef|a|b|*",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		if (bus(bad[i]) != -1)
			fail_msg("accepted: %s", bad[i]);
	}
}

static void
test_truncations_refused(void **state)
{
	const char *good[] = { "6:public5:items|*",
			       "0123456789abcdef|app|59b7c21f9830f980" };
	size_t n;

	(void)state;
	for (n = 0; n < strlen(good[0]); n++)
		assert_int_equal(notify_parse(good[0], n, &nc), -1);
	for (n = 0; n < strlen(good[1]); n++)
		assert_int_equal(bus_line_parse(good[1], n, &bl), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_notify_rows),
		cmocka_unit_test(test_notify_whole_and_odd_names),
		cmocka_unit_test(test_notify_malformed),
		cmocka_unit_test(test_notify_row_limit),
		cmocka_unit_test(test_bus_lines),
		cmocka_unit_test(test_bus_malformed),
		cmocka_unit_test(test_truncations_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
