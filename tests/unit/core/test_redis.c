/*
 * test_redis.c - the redis:// URL of --bus and --cache-tier.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/redis.h"

#include <string.h>

static void
test_host_port_db(void **state)
{
	struct redis_target t;

	(void)state;
	assert_int_equal(redis_target_parse(&t, "redis://cache.local:6380/3"), 0);
	assert_string_equal(t.host, "cache.local");
	assert_int_equal(t.port, 6380);
	assert_int_equal(t.dbindex, 3);
	assert_string_equal(t.user, "");
	assert_string_equal(t.password, "");
	assert_string_equal(t.display, "redis://cache.local:6380/3");
	assert_int_equal(redis_target_parse(&t, "redis://h"), 0);
	assert_int_equal(t.port, 6379);
	assert_int_equal(t.dbindex, 0);
	assert_string_equal(t.display, "redis://h:6379");
}

static void
test_credentials_stay_out_of_the_display(void **state)
{
	struct redis_target t;

	(void)state;
	assert_int_equal(redis_target_parse(&t, "redis://:s3cret@h:1"), 0);
	assert_string_equal(t.user, "");
	assert_string_equal(t.password, "s3cret");
	assert_int_equal(redis_target_parse(&t, "redis://app:pw@h:2/0"), 0);
	assert_string_equal(t.user, "app");
	assert_string_equal(t.password, "pw");
	assert_string_equal(t.host, "h");
	assert_null(strstr(t.display, "pw"));
	assert_int_equal(redis_target_parse(&t, "redis://app@h"), 0);
	assert_string_equal(t.user, "app");
	assert_string_equal(t.password, "");
}

static void
test_bad_urls(void **state)
{
	static const char *const bad[] = {
		"http://h", "redis://", "redis://:6379", "redis://h:0",
		"redis://h:65536", "redis://h:12x", "redis://h/x",
		"redis://h/1001", "redis://u:p@", "redis:/h",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct redis_target t;

		if (redis_target_parse(&t, bad[i]) != -1)
			fail_msg("accepted %s", bad[i]);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_port_db),
		cmocka_unit_test(test_credentials_stay_out_of_the_display),
		cmocka_unit_test(test_bad_urls),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
