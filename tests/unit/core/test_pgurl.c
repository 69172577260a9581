/*
 * test_pgurl.c - the postgresql:// URL parser, display and redaction.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/pgurl.h"

#include <stdio.h>
#include <string.h>

struct parsed {
	struct pg_url u;
	char err[256];
	int rc;
};

static struct parsed
parse(const char *url)
{
	struct parsed p;

	memset(&p, 0, sizeof(p));
	p.rc = pgurl_parse(url, &p.u, p.err, sizeof(p.err));
	return p;
}

static void
assert_parse_error(const char *url, const char *expected_part)
{
	struct parsed p = parse(url);

	if (p.rc != -1 || strstr(p.err, expected_part) == NULL)
		fail_msg("url %s: rc=%d err='%s', wanted '%s'", url, p.rc,
			 p.err, expected_part);
}

static void
test_full_url(void **state)
{
	struct parsed p = parse("postgresql://alice:pw@db.example.com:6432/"
				"shop?sslmode=verify-full&sslrootcert=/ca.pem"
				"&sslcert=/c.pem&sslkey=/k.pem");

	(void)state;
	assert_int_equal(p.rc, 0);
	assert_string_equal(p.u.user, "alice");
	assert_string_equal(p.u.password, "pw");
	assert_string_equal(p.u.host, "db.example.com");
	assert_int_equal(p.u.port, 6432);
	assert_string_equal(p.u.dbname, "shop");
	assert_int_equal(p.u.sslmode, SSLMODE_VERIFY_FULL);
	assert_string_equal(p.u.sslrootcert, "/ca.pem");
	assert_string_equal(p.u.sslcert, "/c.pem");
	assert_string_equal(p.u.sslkey, "/k.pem");
}

static void
test_schemes(void **state)
{
	(void)state;
	assert_int_equal(parse("postgres://h/d").rc, 0);
	assert_int_equal(parse("postgresql://h/d").rc, 0);
	assert_int_equal(parse("PostgreSQL://h/d").rc, 0);
	assert_parse_error("http://h/d", "not a postgresql://");
	assert_parse_error("host=h dbname=d", "not a postgresql://");
	assert_parse_error("postgresql:/h/d", "not a postgresql://");
	assert_parse_error("", "not a postgresql://");
	assert_parse_error(NULL, "not a postgresql://");
}

static void
test_defaults_when_parts_missing(void **state)
{
	struct parsed p = parse("postgresql://");

	(void)state;
	assert_int_equal(p.rc, 0);
	assert_string_equal(p.u.host, "127.0.0.1");
	assert_int_equal(p.u.port, 5432);
	assert_string_equal(p.u.user, "");
	assert_string_equal(p.u.password, "");
	assert_string_equal(p.u.dbname, "");
	assert_int_equal(p.u.sslmode, SSLMODE_PREFER);
	assert_string_equal(p.u.sslrootcert, "");

	p = parse("postgresql://bob@");
	assert_int_equal(p.rc, 0);
	assert_string_equal(p.u.user, "bob");
	assert_string_equal(p.u.dbname, "bob");	/* dbname defaults to user */
	assert_string_equal(p.u.host, "127.0.0.1");

	p = parse("postgresql://bob@:7000/");
	assert_int_equal(p.rc, 0);
	assert_string_equal(p.u.host, "127.0.0.1");
	assert_int_equal(p.u.port, 7000);
	assert_string_equal(p.u.dbname, "bob");

	p = parse("postgresql:///app");
	assert_int_equal(p.rc, 0);
	assert_string_equal(p.u.dbname, "app");
	assert_string_equal(p.u.user, "");

	p = parse("postgresql://carol:@h");
	assert_int_equal(p.rc, 0);
	assert_string_equal(p.u.user, "carol");
	assert_string_equal(p.u.password, "");

	p = parse("postgresql://h?sslmode=disable");
	assert_int_equal(p.rc, 0);
	assert_string_equal(p.u.host, "h");
	assert_int_equal(p.u.sslmode, SSLMODE_DISABLE);
}

static void
test_percent_decoding(void **state)
{
	struct parsed p = parse("postgresql://us%65r%20x:p%40ss%2Fw%3Ard%25@h/"
				"my%2Ddb%C3%A9");

	(void)state;
	assert_int_equal(p.rc, 0);
	assert_string_equal(p.u.user, "user x");
	assert_string_equal(p.u.password, "p@ss/w:rd%");
	assert_string_equal(p.u.dbname, "my-db\xc3\xa9");

	/* A unix socket directory is a percent-encoded host, as in libpq. */
	p = parse("postgresql://%2Fvar%2Frun%2Fpostgresql/db");
	assert_int_equal(p.rc, 0);
	assert_string_equal(p.u.host, "/var/run/postgresql");

	/* A ':' in the password is fine: only the first one splits. */
	p = parse("postgresql://u:a:b@h");
	assert_int_equal(p.rc, 0);
	assert_string_equal(p.u.password, "a:b");

	/* The user info ends at the last '@' of the authority. */
	p = parse("postgresql://u:a@b@h/d");
	assert_int_equal(p.rc, 0);
	assert_string_equal(p.u.password, "a@b");
	assert_string_equal(p.u.host, "h");
}

static void
test_bad_percent_escapes(void **state)
{
	(void)state;
	assert_parse_error("postgresql://u%zz@h", "bad percent-escape in user");
	assert_parse_error("postgresql://u:p%4@h", "bad percent-escape in password");
	assert_parse_error("postgresql://u:p%@h", "bad percent-escape in password");
	assert_parse_error("postgresql://h/d%G0", "bad percent-escape in database name");
	assert_parse_error("postgresql://u%00x@h", "user contains %00");
	assert_parse_error("postgresql://h?sslcert=%0", "bad percent-escape in sslcert");
}

static void
test_ipv6_hosts(void **state)
{
	struct parsed p = parse("postgresql://u@[::1]/d");

	(void)state;
	assert_int_equal(p.rc, 0);
	assert_string_equal(p.u.host, "::1");
	assert_int_equal(p.u.port, 5432);

	p = parse("postgresql://[2001:db8::7]:6543");
	assert_int_equal(p.rc, 0);
	assert_string_equal(p.u.host, "2001:db8::7");
	assert_int_equal(p.u.port, 6543);

	p = parse("postgresql://[fe80::1%25eth0]:5433/x");
	assert_int_equal(p.rc, 0);
	assert_string_equal(p.u.host, "fe80::1%eth0");

	assert_parse_error("postgresql://[::1/d", "missing ']'");
	assert_parse_error("postgresql://[]/d", "is not an IPv6 address");
	assert_parse_error("postgresql://[abc]/d", "'[abc]' is not an IPv6");
	assert_parse_error("postgresql://[::1]x/d", "unexpected 'x' after ']'");
	assert_parse_error("postgresql://[::1]:/d", "invalid port ''");
	assert_parse_error("postgresql://[::1]:0/d", "invalid port '0'");
}

static void
test_ports(void **state)
{
	(void)state;
	assert_int_equal(parse("postgresql://h:1").u.port, 1);
	assert_int_equal(parse("postgresql://h:65535/d").u.port, 65535);
	assert_int_equal(parse("postgresql://h:05432").u.port, 5432);
	assert_parse_error("postgresql://h:/d", "invalid port ''");
	assert_parse_error("postgresql://h:0/d", "invalid port '0': expected a number 1..65535");
	assert_parse_error("postgresql://h:65536/d", "invalid port '65536'");
	assert_parse_error("postgresql://h:99999999999999999999/d", "invalid port");
	assert_parse_error("postgresql://h:abc/d", "invalid port 'abc'");
	assert_parse_error("postgresql://h:-1/d", "invalid port '-1'");
	assert_parse_error("postgresql://h:54x/d", "invalid port '54x'");
	assert_parse_error("postgresql://h:5432:1/d", "invalid port '5432:1'");
	assert_parse_error("postgresql://h: 5432/d", "invalid port ' 5432'");
	assert_parse_error("postgresql://h?port=0", "invalid port '0'");
}

static void
test_sslmode(void **state)
{
	static const struct {
		const char *text;
		enum ssl_mode mode;
	} cases[] = {
		{ "disable", SSLMODE_DISABLE },	{ "allow", SSLMODE_ALLOW },
		{ "prefer", SSLMODE_PREFER },	{ "require", SSLMODE_REQUIRE },
		{ "verify-ca", SSLMODE_VERIFY_CA },
		{ "verify-full", SSLMODE_VERIFY_FULL },
	};
	char url[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct parsed p;

		snprintf(url, sizeof(url), "postgresql://h/d?sslmode=%s",
			 cases[i].text);
		p = parse(url);
		assert_int_equal(p.rc, 0);
		assert_int_equal(p.u.sslmode, cases[i].mode);
		assert_string_equal(pgurl_sslmode_name(cases[i].mode),
				    cases[i].text);
	}
	assert_string_equal(pgurl_sslmode_name((enum ssl_mode)42), "?");
	assert_parse_error("postgresql://h/d?sslmode=REQUIRE", "invalid sslmode 'REQUIRE'");
	assert_parse_error("postgresql://h/d?sslmode=", "invalid sslmode ''");
	assert_parse_error("postgresql://h/d?sslmode=on", "expected disable, allow, prefer, require, verify-ca or verify-full");
	/* The last occurrence wins, as in libpq. */
	assert_int_equal(parse("postgresql://h?sslmode=disable&sslmode=require").u.sslmode,
			 SSLMODE_REQUIRE);
}

static void
test_query_params(void **state)
{
	struct parsed p;

	(void)state;
	p = parse("postgresql://h/d?application_name=x&connect_timeout=3&"
		  "keepalives=1&keepalives_idle=5&keepalives_interval=1&"
		  "keepalives_count=3&tcp_user_timeout=9&"
		  "fallback_application_name=y");
	assert_int_equal(p.rc, 0);

	p = parse("postgresql://h/d?&&sslmode=require&");
	assert_int_equal(p.rc, 0);
	assert_int_equal(p.u.sslmode, SSLMODE_REQUIRE);

	p = parse("postgresql:///d?host=%2Ftmp&port=6000&user=u&password=pw&"
		  "dbname=other");
	assert_int_equal(p.rc, 0);
	assert_string_equal(p.u.host, "/tmp");
	assert_int_equal(p.u.port, 6000);
	assert_string_equal(p.u.user, "u");
	assert_string_equal(p.u.password, "pw");
	assert_string_equal(p.u.dbname, "other");

	p = parse("postgresql://h?ssl%6Dode=require");	/* encoded key */
	assert_int_equal(p.rc, 0);
	assert_int_equal(p.u.sslmode, SSLMODE_REQUIRE);

	assert_parse_error("postgresql://h/d?options=-csearch_path%3Dx", "unsupported query parameter 'options'");
	assert_parse_error("postgresql://h/d?frob=1", "unsupported query parameter 'frob'");
	assert_parse_error("postgresql://h/d?sslmode", "query parameter 'sslmode' has no value");
	assert_parse_error("postgresql://h/d?sslmode=require&x", "query parameter 'x' has no value");
}

static void
test_too_long_fields_are_errors(void **state)
{
	char url[2048], user[200], host[300], cert[600];

	(void)state;
	memset(user, 'u', sizeof(user) - 1);
	user[sizeof(user) - 1] = '\0';
	memset(host, 'h', sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	memset(cert, 'c', sizeof(cert) - 1);
	cert[sizeof(cert) - 1] = '\0';

	snprintf(url, sizeof(url), "postgresql://%s@h/d", user);
	assert_parse_error(url, "user is too long: max 127 bytes");
	snprintf(url, sizeof(url), "postgresql://%s/d", host);
	assert_parse_error(url, "host is too long: max 255 bytes");
	snprintf(url, sizeof(url), "postgresql://h/%s", user);
	assert_parse_error(url, "database name is too long: max 127 bytes");
	snprintf(url, sizeof(url), "postgresql://h/d?sslrootcert=%s", cert);
	assert_parse_error(url, "sslrootcert is too long: max 511 bytes");

	/* 127 bytes fit exactly; "%41" counts as one decoded byte. */
	user[127] = '\0';
	snprintf(url, sizeof(url), "postgresql://%s@h", user);
	assert_int_equal(parse(url).rc, 0);
	snprintf(url, sizeof(url), "postgresql://%.126s%%41%%41@h", user);
	assert_parse_error(url, "user is too long");
	snprintf(url, sizeof(url), "postgresql://%.125s%%41%%41@h", user);
	assert_int_equal(parse(url).rc, 0);
}

static void
test_misplaced_at_and_multiple_hosts(void **state)
{
	struct parsed p;

	(void)state;
	/* A raw '/' or '?' in a password would otherwise shift the parts. */
	p = parse("postgresql://u:SECRET/PW@h/d");
	assert_int_equal(p.rc, -1);
	assert_non_null(strstr(p.err, "percent-encode"));
	assert_null(strstr(p.err, "SECRET"));
	p = parse("postgresql://u:SECRET?PW@h/d");
	assert_int_equal(p.rc, -1);
	assert_null(strstr(p.err, "SECRET"));

	assert_parse_error("postgresql://h1,h2/d", "multiple hosts are not supported");
	assert_parse_error("postgresql://h1:5432,h2:5433/d", "invalid port '5432,h2:5433'");
}

static void
test_errors_never_show_password(void **state)
{
	static const char *const bad[] = {
		"postgresql://u:TOPSECRET@h:99999/d",
		"postgresql://u:TOPSECRET@h/d?sslmode=nope",
		"postgresql://u:TOPSECRET%zz@h/d",
		"postgresql://u:TOPSECRET@[::1/d",
		"postgresql://u:TOPSECRET@h/d?password=TOPSECRET%",
		"postgresql://u:TOPSECRET@h/d?frob=1",
		"postgresql://u:TOPSECRET@h/d?password",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct parsed p = parse(bad[i]);

		assert_int_equal(p.rc, -1);
		assert_true(p.err[0] != '\0');
		assert_null(strstr(p.err, "TOPSECRET"));
	}
}

static void
test_small_error_buffer(void **state)
{
	struct pg_url u;
	char err[8];

	(void)state;
	assert_int_equal(pgurl_parse("postgresql://h:x", &u, err, sizeof(err)), -1);
	assert_int_equal(strlen(err), 7);
	assert_int_equal(pgurl_parse("postgresql://h:x", &u, NULL, 0), -1);
}

static void
test_display(void **state)
{
	struct parsed p = parse("postgresql://bob:hunter2@db:6000/app?sslmode=require");
	char out[256];

	(void)state;
	pgurl_display(&p.u, out, sizeof(out));
	assert_string_equal(out, "postgresql://bob@db:6000/app");
	assert_null(strstr(out, "hunter2"));

	p = parse("postgresql://:hunter2@[::1]/x");
	pgurl_display(&p.u, out, sizeof(out));
	assert_string_equal(out, "postgresql://[::1]:5432/x");

	p = parse("postgresql://a%40b:pw@%2Ftmp/my%20db");
	pgurl_display(&p.u, out, sizeof(out));
	assert_string_equal(out, "postgresql://a%40b@%2Ftmp:5432/my%20db");
	/* The display form parses back to the same fields. */
	{
		struct parsed q = parse(out);

		assert_int_equal(q.rc, 0);
		assert_string_equal(q.u.user, "a@b");
		assert_string_equal(q.u.host, "/tmp");
		assert_string_equal(q.u.dbname, "my db");
	}

	p = parse("postgresql://");
	pgurl_display(&p.u, out, sizeof(out));
	assert_string_equal(out, "postgresql://127.0.0.1:5432/");

	p = parse("postgresql://bob:pw@h/d");
	pgurl_display(&p.u, out, 10);
	assert_string_equal(out, "postgresq");
	pgurl_display(&p.u, out, 1);
	assert_string_equal(out, "");
	pgurl_display(&p.u, out, 0);	/* must not write */
}

static void
test_redact(void **state)
{
	char out[256];

	(void)state;
	assert_int_equal(pgurl_redact("postgresql://bob:hunter2@h:1/d?sslmode=require",
				      out, sizeof(out)), 0);
	assert_string_equal(out, "postgresql://bob@h:1/d?sslmode=require");

	assert_int_equal(pgurl_redact("postgres://h/d?password=hunter2&sslmode=disable&pass%77ord=x",
				      out, sizeof(out)), 0);
	assert_string_equal(out, "postgres://h/d?sslmode=disable");

	assert_int_equal(pgurl_redact("postgresql://bob@h?password=a&x=1&password=b&y",
				      out, sizeof(out)), 0);
	assert_string_equal(out, "postgresql://bob@h?x=1&y");

	/* Long parameter names are kept, not mistaken for passwords. */
	assert_int_equal(pgurl_redact("postgresql://u:pw@h/db?application_name=x"
				      "&fallback_application_name=y&sslmode=require",
				      out, sizeof(out)), 0);
	assert_string_equal(out, "postgresql://u@h/db?application_name=x"
			    "&fallback_application_name=y&sslmode=require");

	assert_int_equal(pgurl_redact("postgresql://u:a@b@h", out, sizeof(out)), 0);
	assert_string_equal(out, "postgresql://u@h");

	assert_int_equal(pgurl_redact("postgresql://", out, sizeof(out)), 0);
	assert_string_equal(out, "postgresql://");

	assert_int_equal(pgurl_redact("host=h password=hunter2", out, sizeof(out)), -1);
	assert_string_equal(out, "");
	assert_int_equal(pgurl_redact("postgresql://u:hun/ter2@h", out, sizeof(out)), -1);
	assert_int_equal(pgurl_redact("postgresql://bob:pw@host/db", out, 12), -1);
	assert_string_equal(out, "");
	assert_int_equal(pgurl_redact("postgresql://h", out, 0), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_url),
		cmocka_unit_test(test_schemes),
		cmocka_unit_test(test_defaults_when_parts_missing),
		cmocka_unit_test(test_percent_decoding),
		cmocka_unit_test(test_bad_percent_escapes),
		cmocka_unit_test(test_ipv6_hosts),
		cmocka_unit_test(test_ports),
		cmocka_unit_test(test_sslmode),
		cmocka_unit_test(test_query_params),
		cmocka_unit_test(test_too_long_fields_are_errors),
		cmocka_unit_test(test_misplaced_at_and_multiple_hosts),
		cmocka_unit_test(test_errors_never_show_password),
		cmocka_unit_test(test_small_error_buffer),
		cmocka_unit_test(test_display),
		cmocka_unit_test(test_redact),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
