/*
 * test_md5auth.c - PostgreSQL MD5 password hashes against values from
 * Python's hashlib and from PostgreSQL 15's pg_authid.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "proto/md5auth.h"

static const uint8_t salt1234[4] = { 1, 2, 3, 4 };

/* hashlib: "md5" + md5(md5hex("postgrespostgres") + salt). */
#define PY_RESPONSE "md568be9ed08db75f318087ab337aaea044"

static void
test_response_known(void **state)
{
	char out[36];

	(void)state;
	md5auth_response("postgres", "postgres", salt1234, out);
	assert_string_equal(out, PY_RESPONSE);
	assert_int_equal(strlen(out), MD5AUTH_LEN);
}

static void
test_secret_known(void **state)
{
	char out[MD5AUTH_LEN + 1];

	(void)state;
	md5auth_secret("postgres", "postgres", out);
	assert_string_equal(out, "md53175bce1d3201d16594cebf9d7eb3f9d");
	/* ALTER ROLE m PASSWORD 'postgres' with password_encryption=md5. */
	md5auth_secret("m", "postgres", out);
	assert_string_equal(out, "md5e55f71fef883ee8efa627b60ba1e4c26");
}

static void
test_response_from_secret(void **state)
{
	char out[MD5AUTH_LEN + 1];

	(void)state;
	assert_int_equal(md5auth_response_from_secret(
				 "md53175bce1d3201d16594cebf9d7eb3f9d",
				 salt1234, out),
			 0);
	assert_string_equal(out, PY_RESPONSE);
	assert_int_equal(md5auth_response_from_secret("secret", salt1234, out),
			 -1);
	assert_int_equal(md5auth_response_from_secret(
				 "md53175BCE1d3201d16594cebf9d7eb3f9d",
				 salt1234, out),
			 -1);
	assert_int_equal(md5auth_response_from_secret(
				 "md53175bce1d3201d16594cebf9d7eb3f9", salt1234,
				 out),
			 -1);
	assert_int_equal(md5auth_response_from_secret(
				 "md53175bce1d3201d16594cebf9d7eb3f9d0",
				 salt1234, out),
			 -1);
	assert_int_equal(md5auth_response_from_secret(NULL, salt1234, out),
			 -1);
}

static void
test_verify(void **state)
{
	static const char secret[] = "md53175bce1d3201d16594cebf9d7eb3f9d";
	static const uint8_t other[4] = { 1, 2, 3, 5 };

	(void)state;
	assert_int_equal(md5auth_verify(secret, salt1234, PY_RESPONSE,
					MD5AUTH_LEN),
			 0);
	/* PasswordMessage carries a NUL terminator; tolerate it. */
	assert_int_equal(md5auth_verify(secret, salt1234, PY_RESPONSE,
					MD5AUTH_LEN + 1),
			 0);
	assert_int_equal(md5auth_verify(secret, other, PY_RESPONSE,
					MD5AUTH_LEN),
			 -1);
	assert_int_equal(md5auth_verify(secret, salt1234, PY_RESPONSE,
					MD5AUTH_LEN - 1),
			 -1);
	assert_int_equal(md5auth_verify(secret, salt1234, "", 0), -1);
	assert_int_equal(md5auth_verify(secret, salt1234,
					"md568be9ed08db75f318087ab337aaea045",
					MD5AUTH_LEN),
			 -1);
	assert_int_equal(md5auth_verify("plain", salt1234, PY_RESPONSE,
					MD5AUTH_LEN),
			 -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_response_known),
		cmocka_unit_test(test_secret_known),
		cmocka_unit_test(test_response_from_secret),
		cmocka_unit_test(test_verify),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
