/*
 * test_config.c - option table, the four layers and their error messages.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/config.h"
#include "core/version.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UP "postgresql://app:s3cret@db:6432/shop"
#define MAX_WORDS 32

/* One config_load() call: args and env are NULL-terminated lists. */
struct run {
	struct config cfg;
	char err[512];
	enum config_result rc;
};

static struct run *
run(const char *const *args, const char *const *env)
{
	static struct run r;	/* tests are sequential; keeps stacks small */
	char *argv[MAX_WORDS + 2], *envp[MAX_WORDS + 1];
	int argc = 0, n = 0;

	argv[argc++] = (char *)"pgvalet";
	for (; args != NULL && *args != NULL && argc <= MAX_WORDS; args++)
		argv[argc++] = (char *)*args;
	argv[argc] = NULL;
	for (; env != NULL && *env != NULL && n < MAX_WORDS; env++)
		envp[n++] = (char *)*env;
	envp[n] = NULL;
	memset(&r, 0xAB, sizeof(r));	/* config_load must set everything */
	r.rc = config_load(&r.cfg, argc, argv, envp, r.err, sizeof(r.err));
	return &r;
}

#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define ENV(...) ((const char *const[]){ __VA_ARGS__, NULL })

static void
expect_error(const char *const *args, const char *const *env,
	     const char *message)
{
	struct run *r = run(args, env);

	if (r->rc != CONFIG_ERROR || strcmp(r->err, message) != 0)
		fail_msg("rc=%d\n  got:  %s\n  want: %s", r->rc, r->err,
			 message);
}

/* Write an ini file; the caller unlinks it. */
static void
write_ini(char *path, size_t len, const char *text)
{
	int fd;

	snprintf(path, len, "/tmp/pgvalet-test-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void
test_defaults(void **state)
{
	struct run *r = run(ARGS("--upstream", UP), NULL);

	(void)state;
	assert_int_equal(r->rc, CONFIG_OK);
	assert_string_equal(r->err, "");
	assert_string_equal(r->cfg.listen_addr, "127.0.0.1");
	assert_int_equal(r->cfg.port, 7932);
	assert_int_equal(r->cfg.pool_mode, POOL_TRANSACTION);
	assert_int_equal(r->cfg.pool_size, 20);
	assert_int_equal(r->cfg.pool_timeout_ms, 30000);
	assert_int_equal(r->cfg.idle_timeout_ms, 600000);
	assert_int_equal(r->cfg.connect_timeout_ms, 5000);
	assert_int_equal(r->cfg.max_clients, 10000);
	assert_int_equal(r->cfg.workers, 1);
	assert_int_equal(r->cfg.verbose, 0);
	assert_string_equal(r->cfg.auth_file, "");
	assert_string_equal(r->cfg.tls_cert, "");
	assert_string_equal(r->cfg.tls_key, "");
	assert_string_equal(r->cfg.config_file, "");
	assert_string_equal(r->cfg.upstream.user, "app");
	assert_string_equal(r->cfg.upstream.password, "s3cret");
	assert_string_equal(r->cfg.upstream.host, "db");
	assert_int_equal(r->cfg.upstream.port, 6432);
	assert_string_equal(r->cfg.upstream.dbname, "shop");
}

static void
test_upstream_required(void **state)
{
	(void)state;
	expect_error(NULL, NULL,
		     "missing required setting: upstream (--upstream or "
		     "PGVALET_UPSTREAM)");
	expect_error(ARGS("--port", "7000"), ENV("PGVALET_UPSTREAM="),
		     "missing required setting: upstream (--upstream or "
		     "PGVALET_UPSTREAM)");
}

static void
test_upstream_never_shows_password(void **state)
{
	struct run *r;
	char shown[256];

	(void)state;
	r = run(ARGS("-u", UP "?sslmode=require&password=other"), NULL);
	assert_int_equal(r->rc, CONFIG_OK);
	assert_string_equal(r->cfg.upstream_raw,
			    "postgresql://app@db:6432/shop?sslmode=require");
	config_upstream_display(&r->cfg, shown, sizeof(shown));
	assert_string_equal(shown, "postgresql://app@db:6432/shop");

	expect_error(ARGS("--upstream", "postgresql://app:s3cret@db:0/x"), NULL,
		     "invalid value for upstream: 'postgresql://app@db:0/x' "
		     "(invalid port '0': expected a number 1..65535)");
	expect_error(ARGS("--upstream", "postgresql://a:s3/cret@db/x"), NULL,
		     "invalid value for upstream: unexpected '@' after the "
		     "host; percent-encode '@', '/' and '?' in the user or "
		     "password (%40, %2F, %3F)");
	expect_error(ARGS("--upstream", "host=db password=s3cret"), NULL,
		     "invalid value for upstream: not a postgresql:// or "
		     "postgres:// URL");
	expect_error(NULL, ENV("PGVALET_UPSTREAM=postgresql://a:s3cret@h?sslmode=x"),
		     "invalid value for upstream from PGVALET_UPSTREAM: "
		     "'postgresql://a@h?sslmode=x' (invalid sslmode 'x': "
		     "expected disable, allow, prefer, require, verify-ca or "
		     "verify-full)");
}

static void
test_every_flag(void **state)
{
	struct run *r = run(ARGS("--upstream=" UP, "--listen", "0.0.0.0",
				 "--port=6000", "--pool-mode", "session",
				 "--pool-size", "50", "--pool-timeout", "250ms",
				 "--server-idle-timeout", "5m",
				 "--connect-timeout", "1h", "--max-clients",
				 "100", "--workers", "64", "--verbose", "2",
				 "--auth-file", "/etc/users", "--tls-cert",
				 "/c.pem", "--tls-key", "/k.pem"),
			    NULL);

	(void)state;
	assert_int_equal(r->rc, CONFIG_OK);
	assert_string_equal(r->cfg.listen_addr, "0.0.0.0");
	assert_int_equal(r->cfg.port, 6000);
	assert_int_equal(r->cfg.pool_mode, POOL_SESSION);
	assert_int_equal(r->cfg.pool_size, 50);
	assert_int_equal(r->cfg.pool_timeout_ms, 250);
	assert_int_equal(r->cfg.idle_timeout_ms, 300000);
	assert_int_equal(r->cfg.connect_timeout_ms, 3600000);
	assert_int_equal(r->cfg.max_clients, 100);
	assert_int_equal(r->cfg.workers, 64);
	assert_int_equal(r->cfg.verbose, 2);
	assert_string_equal(r->cfg.auth_file, "/etc/users");
	assert_string_equal(r->cfg.tls_cert, "/c.pem");
	assert_string_equal(r->cfg.tls_key, "/k.pem");
}

static void
test_short_flags(void **state)
{
	struct run *r = run(ARGS("-u", UP, "-p7001", "-l", "::", "-vvv"), NULL);

	(void)state;
	assert_int_equal(r->rc, CONFIG_OK);
	assert_int_equal(r->cfg.port, 7001);
	assert_string_equal(r->cfg.listen_addr, "::");
	assert_int_equal(r->cfg.verbose, 3);

	r = run(ARGS("-u", UP, "-v", "-p", "7002", "-v"), NULL);
	assert_int_equal(r->cfg.port, 7002);
	assert_int_equal(r->cfg.verbose, 2);

	r = run(ARGS("-u", UP, "-vp", "7003"), NULL);
	assert_int_equal(r->rc, CONFIG_OK);
	assert_int_equal(r->cfg.port, 7003);
	assert_int_equal(r->cfg.verbose, 1);
}

static void
test_verbose_counting(void **state)
{
	struct run *r;

	(void)state;
	r = run(ARGS("-u", UP, "--verbose", "2", "-v"), NULL);
	assert_int_equal(r->cfg.verbose, 3);
	r = run(ARGS("-u", UP, "-vv", "--verbose=1"), NULL);
	assert_int_equal(r->cfg.verbose, 1);
	r = run(ARGS("-u", UP, "-vvvvvvvvvv"), NULL);
	assert_int_equal(r->rc, CONFIG_OK);
	assert_int_equal(r->cfg.verbose, 5);	/* saturates at the max */
	/* A flag replaces the env level instead of adding to it. */
	r = run(ARGS("-u", UP, "-v"), ENV("PGVALET_VERBOSE=4"));
	assert_int_equal(r->cfg.verbose, 1);
	r = run(ARGS("-u", UP), ENV("PGVALET_VERBOSE=4"));
	assert_int_equal(r->cfg.verbose, 4);
	expect_error(ARGS("-u", UP, "--verbose", "6"), NULL,
		     "invalid value for verbose: '6' (expected an integer "
		     "0..5)");
	expect_error(ARGS("-u", UP, "--verbose"), NULL,
		     "missing value for --verbose");
}

static void
test_env_names(void **state)
{
	struct run *r = run(NULL, ENV("HOME=/root", "PGVALET_UPSTREAM=" UP,
				      "PGVALET_LISTEN=10.0.0.1",
				      "PGVALET_PORT=6001",
				      "PGVALET_POOL_MODE=session",
				      "PGVALET_POOL_SIZE=7",
				      "PGVALET_POOL_TIMEOUT=2",
				      "PGVALET_SERVER_IDLE_TIMEOUT=1h",
				      "PGVALET_CONNECT_TIMEOUT=100ms",
				      "PGVALET_MAX_CLIENTS=9",
				      "PGVALET_WORKERS=2", "PGVALET_VERBOSE=1",
				      "PGVALET_AUTH_FILE=/a",
				      "PGVALET_TLS_CERT=/c",
				      "PGVALET_TLS_KEY=/k",
				      "PGVALET_BINARY=/ignored/unknown/var"));

	(void)state;
	assert_int_equal(r->rc, CONFIG_OK);
	assert_string_equal(r->cfg.upstream.host, "db");
	assert_string_equal(r->cfg.listen_addr, "10.0.0.1");
	assert_int_equal(r->cfg.port, 6001);
	assert_int_equal(r->cfg.pool_mode, POOL_SESSION);
	assert_int_equal(r->cfg.pool_size, 7);
	assert_int_equal(r->cfg.pool_timeout_ms, 2000);
	assert_int_equal(r->cfg.idle_timeout_ms, 3600000);
	assert_int_equal(r->cfg.connect_timeout_ms, 100);
	assert_int_equal(r->cfg.max_clients, 9);
	assert_int_equal(r->cfg.workers, 2);
	assert_int_equal(r->cfg.verbose, 1);
	assert_string_equal(r->cfg.auth_file, "/a");
	assert_string_equal(r->cfg.tls_cert, "/c");
	assert_string_equal(r->cfg.tls_key, "/k");
}

static void
test_env_edge_cases(void **state)
{
	struct run *r;

	(void)state;
	/* Empty means unset; prefixes and lowercase names do not match. */
	r = run(ARGS("-u", UP), ENV("PGVALET_POOL_SIZE=", "PGVALET_POOL=3",
				    "PGVALET_POOL_SIZEX=3",
				    "pgvalet_pool_size=3",
				    "PGVALET_HELP=1", "PGVALET_VERSION=1"));
	assert_int_equal(r->rc, CONFIG_OK);
	assert_int_equal(r->cfg.pool_size, 20);
	/* NULL envp is allowed. */
	{
		char *argv[] = { (char *)"pgvalet", (char *)"-u",
				 (char *)UP, NULL };
		struct config cfg;
		char err[256];

		assert_int_equal(config_load(&cfg, 3, argv, NULL, err,
					     sizeof(err)),
				 CONFIG_OK);
	}
}

static void
test_flag_beats_env(void **state)
{
	struct run *r = run(ARGS("--pool-size", "9", "--upstream",
				 "postgresql://flag/x"),
			    ENV("PGVALET_POOL_SIZE=3", "PGVALET_WORKERS=4",
				"PGVALET_UPSTREAM=postgresql://env/x"));

	(void)state;
	assert_int_equal(r->rc, CONFIG_OK);
	assert_int_equal(r->cfg.pool_size, 9);
	assert_int_equal(r->cfg.workers, 4);
	assert_string_equal(r->cfg.upstream.host, "flag");
	/* Last flag wins. */
	r = run(ARGS("-u", UP, "--port", "1", "--port", "2"), NULL);
	assert_int_equal(r->cfg.port, 2);
}

static void
test_ini_file_and_precedence(void **state)
{
	char path[64], flag[80], env[96];
	struct run *r;

	(void)state;
	write_ini(path, sizeof(path),
		  "; comment\n"
		  "# another\n"
		  "upstream = postgresql://ini/x\n"
		  "pool_size = 11\n"
		  "[pgvalet]\n"
		  "pool-size = 12 ; inline comment\n"
		  "workers=3\n"
		  "MAX_CLIENTS = 77\n"
		  "pool-mode = session\n"
		  "server_idle_timeout = 90s\n");
	snprintf(flag, sizeof(flag), "--config=%s", path);
	snprintf(env, sizeof(env), "PGVALET_CONFIG=%s", path);

	/* ini over defaults (later lines over earlier ones). */
	r = run(ARGS(flag), NULL);
	assert_int_equal(r->rc, CONFIG_OK);
	assert_string_equal(r->cfg.upstream.host, "ini");
	assert_int_equal(r->cfg.pool_size, 12);
	assert_int_equal(r->cfg.workers, 3);
	assert_int_equal(r->cfg.max_clients, 77);
	assert_int_equal(r->cfg.pool_mode, POOL_SESSION);
	assert_int_equal(r->cfg.idle_timeout_ms, 90000);
	assert_int_equal(r->cfg.port, 7932);
	assert_string_equal(r->cfg.config_file, path);

	/* env over ini; the path itself may come from env. */
	r = run(NULL, ENV(env, "PGVALET_WORKERS=5"));
	assert_int_equal(r->rc, CONFIG_OK);
	assert_int_equal(r->cfg.workers, 5);
	assert_int_equal(r->cfg.pool_size, 12);
	assert_string_equal(r->cfg.config_file, path);

	/* flags over env over ini. */
	r = run(ARGS("-c", path, "--workers", "6"),
		ENV("PGVALET_WORKERS=5", "PGVALET_POOL_SIZE=13"));
	assert_int_equal(r->rc, CONFIG_OK);
	assert_int_equal(r->cfg.workers, 6);
	assert_int_equal(r->cfg.pool_size, 13);
	assert_int_equal(r->cfg.max_clients, 77);
	unlink(path);
}

static void
test_config_flag_beats_config_env(void **state)
{
	char a[64], b[64], env[96];
	struct run *r;

	(void)state;
	write_ini(a, sizeof(a), "upstream = postgresql://a/x\nworkers = 2\n");
	write_ini(b, sizeof(b), "upstream = postgresql://b/x\n");
	snprintf(env, sizeof(env), "PGVALET_CONFIG=%s", a);
	r = run(ARGS("--config", b), ENV(env));
	assert_int_equal(r->rc, CONFIG_OK);
	assert_string_equal(r->cfg.upstream.host, "b");
	assert_int_equal(r->cfg.workers, 1);	/* a was not read */
	assert_string_equal(r->cfg.config_file, b);
	unlink(a);
	unlink(b);
}

/* Copy msg into out with "FILE" replaced by path. */
static void
subst_file(char *out, size_t len, const char *msg, const char *path)
{
	const char *at = strstr(msg, "FILE");

	assert_non_null(at);
	snprintf(out, len, "%.*s%s%s", (int)(at - msg), msg, path, at + 4);
}

static void
test_ini_errors(void **state)
{
	static const struct {
		const char *text;
		const char *message;	/* FILE = path */
	} cases[] = {
		{ "workers = 2\nfrob = 1\n", "unknown key 'frob' in FILE:2" },
		{ "[pgvalet]\nworkers = 2\n[pgbouncer]\npool_size = 3\n",
		  "unknown section [pgbouncer] in FILE:4 (only [pgvalet])" },
		{ "\n\npool-size = abc\n",
		  "invalid value for pool-size in FILE:3: 'abc' (expected an "
		  "integer 1..10000)" },
		{ "pool-timeout = 1d\n",
		  "invalid value for pool-timeout in FILE:1: '1d' (expected a "
		  "duration 0..24h such as 250ms, 30s, 5m or 1h; a bare number "
		  "is seconds)" },
		{ "config = /other.ini\n",
		  "key 'config' is not allowed in an ini file (FILE:1)" },
		{ "help = 1\n", "key 'help' is not allowed in an ini file (FILE:1)" },
		{ "workers 2\n",
		  "syntax error in FILE:1 (expected key = value or [pgvalet])" },
		{ "[pgvalet\n",
		  "syntax error in FILE:1 (expected key = value or [pgvalet])" },
		{ "listen =\n",
		  "invalid value for listen in FILE:1: '' (expected a non-empty "
		  "value)" },
	};
	char path[64], flag[80], want[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_ini(path, sizeof(path), cases[i].text);
		snprintf(flag, sizeof(flag), "--config=%s", path);
		subst_file(want, sizeof(want), cases[i].message, path);
		expect_error(ARGS("-u", UP, flag), NULL, want);
		unlink(path);
	}
}

static void
test_ini_long_line_and_missing_file(void **state)
{
	char path[64], text[400], want[256];

	(void)state;
	memset(text, 'x', sizeof(text));
	memcpy(text, "auth-file = /", 13);
	text[sizeof(text) - 2] = '\n';
	text[sizeof(text) - 1] = '\0';
	write_ini(path, sizeof(path), text);
	snprintf(want, sizeof(want), "line too long in %s:1 (max 197 bytes)",
		 path);
	expect_error(ARGS("-u", UP, "-c", path), NULL, want);
	unlink(path);

	expect_error(ARGS("-u", UP, "-c", "/nonexistent/pgvalet.ini"), NULL,
		     "cannot read config file '/nonexistent/pgvalet.ini': No "
		     "such file or directory");
	expect_error(ARGS("-u", UP), ENV("PGVALET_CONFIG=/nonexistent/x.ini"),
		     "cannot read config file '/nonexistent/x.ini': No such "
		     "file or directory");
}

static void
test_durations(void **state)
{
	static const struct {
		const char *text;
		int ms;
	} good[] = {
		{ "250ms", 250 }, { "30s", 30000 }, { "5m", 300000 },
		{ "1h", 3600000 }, { "7", 7000 },   { "0", 0 },
		{ "0ms", 0 },	  { "24h", 86400000 }, { "1440m", 86400000 },
		{ "007s", 7000 },
	};
	static const char *const bad[] = {
		"", "1.5s", "-1s", "10x", "s", "ms", "25h", "86400001ms",
		"99999999999999999999", " 5", "5 ", "5S", "1h30m", "+5",
	};
	char want[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct run *r = run(ARGS("-u", UP, "--pool-timeout",
					 good[i].text),
				    NULL);

		assert_int_equal(r->rc, CONFIG_OK);
		assert_int_equal(r->cfg.pool_timeout_ms, good[i].ms);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(want, sizeof(want),
			 "invalid value for pool-timeout: '%s' (expected a "
			 "duration 0..24h such as 250ms, 30s, 5m or 1h; a bare "
			 "number is seconds)",
			 bad[i]);
		expect_error(ARGS("-u", UP, "--pool-timeout", bad[i]), NULL,
			     want);
	}
	expect_error(ARGS("-u", UP, "--connect-timeout", "0"), NULL,
		     "invalid value for connect-timeout: '0' (expected a "
		     "duration 1ms..24h such as 250ms, 30s, 5m or 1h; a bare "
		     "number is seconds)");
}

static void
test_integer_errors(void **state)
{
	static const struct {
		const char *name, *value, *range;
	} cases[] = {
		{ "pool-size", "abc", "1..10000" },
		{ "pool-size", "0", "1..10000" },
		{ "pool-size", "10001", "1..10000" },
		{ "pool-size", "-5", "1..10000" },
		{ "pool-size", "1e3", "1..10000" },
		{ "pool-size", "", "1..10000" },
		{ "pool-size", "+5", "1..10000" },
		{ "pool-size", "99999999999999999999", "1..10000" },
		{ "port", "0", "1..65535" },
		{ "port", "65536", "1..65535" },
		{ "workers", "65", "1..64" },
		{ "workers", "0", "1..64" },
		{ "max-clients", "0", "1..1000000" },
	};
	char flag[64], want[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(flag, sizeof(flag), "--%s", cases[i].name);
		snprintf(want, sizeof(want),
			 "invalid value for %s: '%s' (expected an integer %s)",
			 cases[i].name, cases[i].value, cases[i].range);
		expect_error(ARGS("-u", UP, flag, cases[i].value), NULL, want);
	}
	expect_error(ARGS("-u", UP), ENV("PGVALET_POOL_SIZE=abc"),
		     "invalid value for pool-size from PGVALET_POOL_SIZE: "
		     "'abc' (expected an integer 1..10000)");
	expect_error(ARGS("-u", UP), ENV("PGVALET_PORT=http"),
		     "invalid value for port from PGVALET_PORT: 'http' "
		     "(expected an integer 1..65535)");
}

static void
test_enum_and_string_errors(void **state)
{
	char longpath[600], want[1024];

	(void)state;
	expect_error(ARGS("-u", UP, "--pool-mode", "Session"), NULL,
		     "invalid value for pool-mode: 'Session' (expected one "
		     "of: session, transaction)");
	expect_error(ARGS("-u", UP), ENV("PGVALET_POOL_MODE=statement"),
		     "invalid value for pool-mode from PGVALET_POOL_MODE: "
		     "'statement' (expected one of: session, transaction)");
	expect_error(ARGS("-u", UP, "--listen="), NULL,
		     "invalid value for listen: '' (expected a non-empty "
		     "value)");

	memset(longpath, 'p', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	snprintf(want, sizeof(want),
		 "invalid value for auth-file: '%s' (longer than 511 bytes)",
		 longpath);
	{
		struct run *r = run(ARGS("-u", UP, "--auth-file", longpath),
				    NULL);

		assert_int_equal(r->rc, CONFIG_ERROR);
		/* err is 512 bytes: the message is cut, but it starts right. */
		assert_memory_equal(r->err, want, sizeof(r->err) - 1);
	}
	longpath[512] = '\0';
	assert_int_equal(run(ARGS("-u", UP, "--auth-file", longpath), NULL)->rc,
			 CONFIG_ERROR);
	longpath[511] = '\0';	/* 511 bytes + NUL fill auth_file exactly */
	assert_int_equal(run(ARGS("-u", UP, "--auth-file", longpath), NULL)->rc,
			 CONFIG_OK);
}

static void
test_command_line_errors(void **state)
{
	(void)state;
	expect_error(ARGS("-u", UP, "--frob"), NULL,
		     "unknown option: --frob (see --help)");
	expect_error(ARGS("-u", UP, "--frob=3"), NULL,
		     "unknown option: --frob (see --help)");
	expect_error(ARGS("-u", UP, "--pool_size", "3"), NULL,
		     "unknown option: --pool_size (see --help)");
	expect_error(ARGS("-u", UP, "-x"), NULL,
		     "unknown option: -x (see --help)");
	expect_error(ARGS("-u", UP, "-vx"), NULL,
		     "unknown option: -x (see --help)");
	expect_error(ARGS("-u", UP, "--pool-size"), NULL,
		     "missing value for --pool-size");
	expect_error(ARGS("-u"), NULL, "missing value for -u");
	expect_error(ARGS("-u", UP, "--help=yes"), NULL,
		     "option --help takes no value");
	expect_error(ARGS("-u", UP, "extra"), NULL,
		     "unexpected argument: 'extra' (see --help)");
	expect_error(ARGS("-u", UP, "-"), NULL,
		     "unexpected argument: '-' (see --help)");
	expect_error(ARGS("-u", UP, "--"), NULL,
		     "unexpected argument: '--' (see --help)");
	/* Unknown options are reported even when the values are fine. */
	expect_error(ARGS("--frob", "--pool-size", "abc"), NULL,
		     "unknown option: --frob (see --help)");
}

static void
test_tls_pair(void **state)
{
	struct run *r;

	(void)state;
	expect_error(ARGS("-u", UP, "--tls-cert", "/c.pem"), NULL,
		     "tls-cert and tls-key must be set together (only "
		     "tls-cert is set)");
	expect_error(ARGS("-u", UP), ENV("PGVALET_TLS_KEY=/k.pem"),
		     "tls-cert and tls-key must be set together (only "
		     "tls-key is set)");
	r = run(ARGS("-u", UP, "--tls-cert", "/c.pem"),
		ENV("PGVALET_TLS_KEY=/k.pem"));
	assert_int_equal(r->rc, CONFIG_OK);
}

/* --stats off turns all observation off: only in cache mode. */
static void
test_stats_off_needs_cache_mode(void **state)
{
	struct run *r;

	(void)state;
	expect_error(ARGS("-u", UP, "--stats", "off", "--mode", "optimize"),
		     NULL, "invalid value for stats: 'off' with mode "
			   "'optimize': index advice comes from the "
			   "statistics (use --mode cache, or --stats on)");
	expect_error(ARGS("-u", UP, "--mode", "observe"),
		     ENV("PGVALET_STATS=off"),
		     "invalid value for stats: 'off' with mode 'observe': "
		     "index advice comes from the statistics (use --mode "
		     "cache, or --stats on)");
	r = run(ARGS("-u", UP, "--stats", "off"), NULL);
	assert_int_equal(r->rc, CONFIG_OK);
	assert_false(r->cfg.stats_on);
}

/* Run config_load with stdout going to a file; return what it printed. */
static char *
capture_stdout(const char *const *args, enum config_result *rc)
{
	char path[64];
	static char buf[16384];
	int saved, fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/tmp/pgvalet-out-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	dup2(fd, STDOUT_FILENO);
	*rc = run(args, NULL)->rc;
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	return buf;
}

static void
test_help_and_version(void **state)
{
	enum config_result rc;
	const char *out;

	(void)state;
	out = capture_stdout(ARGS("--version"), &rc);
	assert_int_equal(rc, CONFIG_EXIT);
	assert_string_equal(out, "pgvalet " PGVALET_VERSION "\n");
	out = capture_stdout(ARGS("-V"), &rc);
	assert_int_equal(rc, CONFIG_EXIT);

	/* --help works without an upstream and before bad values. */
	out = capture_stdout(ARGS("--pool-size", "abc", "--help"), &rc);
	assert_int_equal(rc, CONFIG_EXIT);
	assert_non_null(strstr(out, "Usage: pgvalet"));
	out = capture_stdout(ARGS("-h"), &rc);
	assert_int_equal(rc, CONFIG_EXIT);
	assert_non_null(strstr(out, "Usage: pgvalet"));
}

static void
test_help_lists_every_option(void **state)
{
	static const char *const expected[] = {
		"--upstream URL", "PGVALET_UPSTREAM; required",
		"--listen ADDR", "PGVALET_LISTEN; default 127.0.0.1",
		"--port N", "PGVALET_PORT; default 7932",
		"--pool-mode session|transaction",
		"PGVALET_POOL_MODE; default transaction",
		"PGVALET_POOL_SIZE; default 20",
		"PGVALET_POOL_TIMEOUT; default 30s",
		"PGVALET_SERVER_IDLE_TIMEOUT; default 600s",
		"PGVALET_CONNECT_TIMEOUT; default 5s",
		"PGVALET_MAX_CLIENTS; default 10000",
		"PGVALET_WORKERS; default 1", "-v, --verbose N",
		"PGVALET_VERBOSE; default 0", "--auth-file PATH",
		"PGVALET_AUTH_FILE", "PGVALET_TLS_CERT", "PGVALET_TLS_KEY",
		"-c, --config PATH", "PGVALET_CONFIG", "-h, --help",
		"-V, --version",
	};
	char *text = NULL;
	size_t len = 0, i;
	FILE *f = open_memstream(&text, &len);

	(void)state;
	assert_non_null(f);
	config_print_help(f);
	fclose(f);
	for (i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
		if (strstr(text, expected[i]) == NULL)
			fail_msg("help lacks '%s'", expected[i]);
	assert_null(strstr(text, "PGVALET_HELP"));
	assert_non_null(strstr(text, "Precedence: command-line flags > "
				     "PGVALET_* environment variables > ini "
				     "file\n(--config) > defaults.\n"));
	/* It ends with the precedence line. */
	assert_string_equal(text + len - strlen("(--config) > defaults.\n"),
			    "(--config) > defaults.\n");
	free(text);
}

static void
test_error_buffer_edge_cases(void **state)
{
	char *argv[] = { (char *)"pgvalet", (char *)"--frob", NULL };
	struct config cfg;
	char err[8];

	(void)state;
	assert_int_equal(config_load(&cfg, 2, argv, NULL, err, sizeof(err)),
			 CONFIG_ERROR);
	assert_string_equal(err, "unknown");
	assert_int_equal(config_load(&cfg, 2, argv, NULL, NULL, 0),
			 CONFIG_ERROR);
	assert_int_equal(config_load(&cfg, 0, argv, NULL, err, sizeof(err)),
			 CONFIG_ERROR);	/* argc 0: no upstream */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_upstream_required),
		cmocka_unit_test(test_upstream_never_shows_password),
		cmocka_unit_test(test_every_flag),
		cmocka_unit_test(test_short_flags),
		cmocka_unit_test(test_verbose_counting),
		cmocka_unit_test(test_env_names),
		cmocka_unit_test(test_env_edge_cases),
		cmocka_unit_test(test_flag_beats_env),
		cmocka_unit_test(test_ini_file_and_precedence),
		cmocka_unit_test(test_config_flag_beats_config_env),
		cmocka_unit_test(test_ini_errors),
		cmocka_unit_test(test_ini_long_line_and_missing_file),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_integer_errors),
		cmocka_unit_test(test_enum_and_string_errors),
		cmocka_unit_test(test_command_line_errors),
		cmocka_unit_test(test_tls_pair),
		cmocka_unit_test(test_stats_off_needs_cache_mode),
		cmocka_unit_test(test_help_and_version),
		cmocka_unit_test(test_help_lists_every_option),
		cmocka_unit_test(test_error_buffer_edge_cases),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
