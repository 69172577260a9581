/*
 * config.c - one option table, read in four layers:
 *
 *   defaults  <  ini file (--config)  <  PGVALET_* env  <  argv flags
 *
 * Each layer parses its text through the same set_value(), so a value is
 * checked the same way wherever it comes from, and the defaults printed by
 * --help are the very strings that are applied.  argv is read twice: once
 * for --help, --version and --config (which decide what else to read), and
 * once, last, to apply the flags over everything else.
 */
#include "core/config.h"

#include "core/pgurl.h"
#include "core/redis.h"
#include "core/version.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum opt_type {
	OPT_STRING,	/* copied into a char array; too long is an error */
	OPT_INT,	/* decimal integer, min..max */
	OPT_DURATION,	/* 250ms, 30s, 5m, 1h or bare seconds; stored in ms */
	OPT_ENUM,	/* one of choices[], stored as its index */
	OPT_COUNTER,	/* integer; the short flag adds one per use */
	OPT_URL,	/* the upstream postgresql:// URL */
	OPT_SIZE,	/* bytes: 512kB, 64MB, 1GB or a bare byte count */
	OPT_HELP,
	OPT_VERSION,
};

enum opt_flag {
	OPT_NO_ENV = 1,		/* command line only */
	OPT_NO_INI = 2,		/* not accepted in the ini file */
	OPT_NONEMPTY = 4,	/* "" is not a valid value */
};

struct opt {
	const char *name;	/* kebab-case: --name, ini key, env suffix */
	char short_name;	/* 0 when there is none */
	enum opt_type type;
	unsigned flags;		/* enum opt_flag bits */
	const char *metavar;	/* shown in --help after the flag */
	const char *def;	/* default as text; NULL = none */
	const char *help;
	size_t offset;		/* field in struct config */
	size_t size;
	int min, max;		/* OPT_INT, OPT_DURATION (ms), OPT_COUNTER */
	const char *const *choices;	/* OPT_ENUM, NULL-terminated */
};

/* Enum fields are written through an int; gcc makes them int-sized. */
_Static_assert(sizeof(enum pool_mode) == sizeof(int), "enum is not an int");

enum { DAY_MS = 24 * 60 * 60 * 1000 };

#define FIELD(f)                                                               \
	.offset = offsetof(struct config, f),                                  \
	.size = sizeof(((struct config *)0)->f)

static const char *const pool_mode_names[] = { "session", "transaction",
					       NULL };
static const char *const invalidation_names[] = { "wal", "ttl", "notify",
						  NULL };
_Static_assert(sizeof(enum invalidation) == sizeof(int), "enum is not an int");
static const char *const mode_names[] = { "cache", "observe", "optimize",
					  NULL };
_Static_assert(sizeof(enum run_mode) == sizeof(int), "enum is not an int");
static const char *const off_on_names[] = { "off", "on", NULL };

static const struct opt options[] = {
	{ .name = "upstream", .short_name = 'u', .type = OPT_URL,
	  .metavar = "URL", FIELD(upstream),
	  .help = "the server: postgresql://user:password@host:port/dbname"
		  "?sslmode=prefer" },
	{ .name = "listen", .short_name = 'l', .type = OPT_STRING,
	  .flags = OPT_NONEMPTY, .metavar = "ADDR", .def = "127.0.0.1",
	  FIELD(listen_addr), .help = "address to accept clients on" },
	{ .name = "port", .short_name = 'p', .type = OPT_INT, .metavar = "N",
	  .def = "7932", .min = 1, .max = 65535, FIELD(port),
	  .help = "TCP port to accept clients on" },
	{ .name = "unix-socket-dir", .type = OPT_STRING, .metavar = "DIR",
	  .def = "", FIELD(unix_socket_dir),
	  .help = "also accept clients on the unix-domain socket "
		  "DIR/.s.PGSQL.<port>, named as Postgres names its own "
		  "(psql -h DIR -p PORT); \"\" = none" },
	{ .name = "pool-mode", .type = OPT_ENUM,
	  .metavar = "session|transaction", .def = "transaction",
	  .choices = pool_mode_names, FIELD(pool_mode),
	  .help = "hold a server connection for the whole client session, "
		  "or only for each transaction" },
	{ .name = "pool-size", .type = OPT_INT, .metavar = "N", .def = "20",
	  .min = 1, .max = 10000, FIELD(pool_size),
	  .help = "server connections per user/database pair" },
	{ .name = "pool-timeout", .type = OPT_DURATION, .metavar = "DURATION",
	  .def = "30s", .min = 0, .max = DAY_MS, FIELD(pool_timeout_ms),
	  .help = "how long a client waits for a server connection before "
		  "it gets an error (0 = forever)" },
	{ .name = "server-idle-timeout", .type = OPT_DURATION,
	  .metavar = "DURATION", .def = "600s", .min = 0, .max = DAY_MS,
	  FIELD(idle_timeout_ms),
	  .help = "close server connections unused for this long (0 = never)" },
	{ .name = "connect-timeout", .type = OPT_DURATION,
	  .metavar = "DURATION", .def = "5s", .min = 1, .max = DAY_MS,
	  FIELD(connect_timeout_ms),
	  .help = "give up connecting to the server after this long" },
	{ .name = "max-clients", .type = OPT_INT, .metavar = "N",
	  .def = "10000", .min = 1, .max = 1000000, FIELD(max_clients),
	  .help = "client connections accepted at once; more are refused" },
	{ .name = "max-server-statements", .type = OPT_INT, .metavar = "N",
	  .def = "1000", .min = 1, .max = 1000000,
	  FIELD(max_server_statements),
	  .help = "prepared statements a server connection may hold before "
		  "it is cleared (transaction mode)" },
	{ .name = "workers", .type = OPT_INT, .metavar = "N", .def = "1",
	  .min = 1, .max = 64, FIELD(workers),
	  .help = "worker threads, each with its own event loop" },
	{ .name = "cache-size", .type = OPT_SIZE, .metavar = "SIZE",
	  .def = "256MB", FIELD(cache_size),
	  .help = "memory for cached results, metadata included "
		  "(0 turns the result cache off)" },
	{ .name = "cache-max-entry", .type = OPT_SIZE, .metavar = "SIZE",
	  .def = "1MB", FIELD(cache_max_entry),
	  .help = "largest result stored; bigger ones are always fetched" },
	{ .name = "cache-ttl", .type = OPT_DURATION, .metavar = "DURATION",
	  .def = "0", .min = 0, .max = DAY_MS, FIELD(cache_ttl_ms),
	  .help = "drop cached results older than this (0 = only "
		  "invalidation removes them)" },
	{ .name = "invalidation", .type = OPT_ENUM,
	  .metavar = "wal|ttl|notify",
	  .def = "wal", .choices = invalidation_names, FIELD(invalidation),
	  .help = "how writes that bypass the proxy reach the cache: wal "
		  "(Postgres' logical replication stream; needs wal_level = "
		  "logical and the REPLICATION attribute), notify (triggers "
		  "pgvalet installs on the tables it caches; removed by "
		  "`pgvalet clean`) or ttl (they are not seen: results may be "
		  "stale for up to --cache-ttl)" },
	{ .name = "publication", .type = OPT_STRING, .flags = OPT_NONEMPTY,
	  .metavar = "NAME", .def = "pgvalet", FIELD(publication),
	  .help = "publication the stream reads; created (and managed: "
		  "tables are added as they are read) when missing" },
	{ .name = "replication-slot", .type = OPT_STRING, .metavar = "NAME",
	  .def = "", FIELD(replication_slot),
	  .help = "a permanent slot, created once and resumed after "
		  "restarts (default: a temporary slot per start)" },
	{ .name = "push-port", .type = OPT_INT, .metavar = "N", .def = "-1",
	  .min = -1, .max = 65535, FIELD(push_port),
	  .help = "loopback TCP port of the push channel that streams "
		  "invalidations to in-process caches (-1 = --port + 2, "
		  "0 = none)" },
	{ .name = "push-socket-dir", .type = OPT_STRING, .metavar = "DIR",
	  .def = "/tmp", FIELD(push_socket_dir),
	  .help = "directory of the push channel's unix socket "
		  ".s.PGVALET.<push port> (\"\" = none)" },
	{ .name = "bus", .type = OPT_STRING, .metavar = "URL", .def = "",
	  FIELD(bus),
	  .help = "redis://[:password@]host[:port][/db]: proxies sharing a "
		  "database tell each other at once what writes through them "
		  "evicted (each still reads the replication stream)" },
	{ .name = "cache-tier", .type = OPT_STRING, .metavar = "URL",
	  .def = "", FIELD(cache_tier),
	  .help = "redis://[[user]:password@]host[:port][/db]: a result cache "
		  "shared by the proxies of one database, read on a local "
		  "miss and filled with what they fetch (entries expire after "
		  "--cache-ttl, 1h when unset; Redis down = local cache only)" },
	{ .name = "cache-tier-timeout", .type = OPT_DURATION,
	  .metavar = "DURATION", .def = "2ms", .min = 1, .max = 1000,
	  FIELD(cache_tier_timeout_ms),
	  .help = "a shared-tier lookup slower than this counts as a miss "
		  "(the worker waits for it)" },
	{ .name = "stats-period", .type = OPT_DURATION, .metavar = "DURATION",
	  .def = "60s", .min = 0, .max = DAY_MS, FIELD(stats_period_ms),
	  .help = "log the cache, replication stream, bus and push channel "
		  "counters this often (0 = only at shutdown)" },
	{ .name = "mode", .type = OPT_ENUM,
	  .metavar = "cache|observe|optimize", .def = "cache",
	  .choices = mode_names, FIELD(mode),
	  .help = "cache: cache results and recommend indexes; observe: "
		  "recommend only and serve no cached answers; optimize: "
		  "cache and also create the indexes it verified with hypopg "
		  "(CREATE INDEX CONCURRENTLY pgvalet_idx_*)" },
	{ .name = "max-indexes-per-hour", .type = OPT_INT, .metavar = "N",
	  .def = "2", .min = 0, .max = 1000, FIELD(max_indexes_per_hour),
	  .help = "--mode optimize creates at most this many indexes in any "
		  "hour (0 = none)" },
	{ .name = "exclude-tables", .type = OPT_STRING, .metavar = "LIST",
	  .def = "", FIELD(exclude_tables),
	  .help = "comma-separated tables (schema.table or table) on which "
		  "--mode optimize never creates an index" },
	{ .name = "stats", .type = OPT_ENUM, .metavar = "on|off", .def = "on",
	  .choices = off_on_names, FIELD(stats_on),
	  .help = "watch the workload: per-statement-shape statistics (admin "
		  "console, dashboard, /metrics), N+1 detection and index "
		  "advice; off = no per-statement work at all (needs --mode "
		  "cache)" },
	{ .name = "stats-max-shapes", .type = OPT_INT, .metavar = "N",
	  .def = "1000", .min = 10, .max = 100000, FIELD(stats_max_shapes),
	  .help = "statement shapes the statistics keep (per shard, of 8); "
		  "the least recently seen one makes room for a new one" },
	{ .name = "threshold-duration-ms", .type = OPT_INT, .metavar = "MS",
	  .def = "100", .min = 1, .max = DAY_MS,
	  FIELD(threshold_duration_ms),
	  .help = "a statement shape whose mean time is at least this is "
		  "slow" },
	{ .name = "threshold-impact", .type = OPT_INT, .metavar = "PERCENT",
	  .def = "20", .min = 0, .max = 100, FIELD(threshold_impact_pct),
	  .help = "a statement shape that takes at least this share of the "
		  "time of all statements seen (and whose mean is at least a "
		  "tenth of --threshold-duration-ms) is slow too (0 = off)" },
	{ .name = "admin-users", .type = OPT_STRING, .metavar = "USER,...",
	  .def = "", FIELD(admin_users),
	  .help = "users besides the upstream URL's who may use the admin "
		  "console (database \"pgvalet\": SHOW STATS, POOLS, "
		  "CLIENTS, CACHE, SHAPES)" },
	{ .name = "dashboard-port", .type = OPT_INT, .metavar = "N",
	  .def = "-1", .min = -1, .max = 65535, FIELD(dashboard_port),
	  .help = "loopback TCP port of the dashboard, JSON API and "
		  "/metrics (-1 = --port + 1, 0 = none)" },
	{ .name = "dashboard-token", .type = OPT_STRING, .metavar = "TOKEN",
	  .def = "", FIELD(dashboard_token),
	  .help = "token the dashboard API's writes need (default: a random "
		  "one, printed at start-up)" },
	{ .name = "debug-skip-invalidation", .type = OPT_INT, .metavar = "0|1",
	  .def = "0", .min = 0, .max = 1, FIELD(debug_skip_invalidation),
	  .help = "TESTING ONLY: never invalidate cached results, so the "
		  "consistency checker can prove it catches stale reads" },
	{ .name = "verbose", .short_name = 'v', .type = OPT_COUNTER,
	  .metavar = "N", .def = "0", .min = 0, .max = 5, FIELD(verbose),
	  .help = "log more: -v, -vv, ... or --verbose N (0..5)" },
	{ .name = "auth-file", .type = OPT_STRING, .metavar = "PATH",
	  .def = "", FIELD(auth_file),
	  .help = "file of the users and passwords clients log in with" },
	{ .name = "tls-cert", .type = OPT_STRING, .metavar = "PATH",
	  .def = "", FIELD(tls_cert),
	  .help = "PEM certificate offered to clients (needs --tls-key)" },
	{ .name = "tls-key", .type = OPT_STRING, .metavar = "PATH", .def = "",
	  FIELD(tls_key),
	  .help = "PEM private key for --tls-cert" },
	{ .name = "config", .short_name = 'c', .type = OPT_STRING,
	  .flags = OPT_NO_INI, .metavar = "PATH", .def = "",
	  FIELD(config_file),
	  .help = "ini file with these settings (key = value, optionally "
		  "under [pgvalet])" },
	{ .name = "help", .short_name = 'h', .type = OPT_HELP,
	  .flags = OPT_NO_ENV | OPT_NO_INI,
	  .help = "print this help and exit" },
	{ .name = "version", .short_name = 'V', .type = OPT_VERSION,
	  .flags = OPT_NO_ENV | OPT_NO_INI,
	  .help = "print the version and exit" },
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static const char ENV_PREFIX[] = "PGVALET_";

enum src_kind { SRC_DEFAULT, SRC_INI, SRC_ENV, SRC_FLAG };

/* Where a value came from, so an error can point at it. */
struct src {
	enum src_kind kind;
	const char *name;	/* env variable or ini path */
	int line;		/* ini line */
};

struct loader {
	struct config *cfg;
	char *err;
	size_t errlen;
	bool set_by_flag[N_OPTIONS];	/* -v counts from 0 over env/ini */
};

__attribute__((format(printf, 2, 3))) static void
fail(struct loader *ld, const char *fmt, ...)
{
	va_list ap;

	if (ld->err == NULL || ld->errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(ld->err, ld->errlen, fmt, ap);
	va_end(ap);
}

static const struct opt *
find_long(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < N_OPTIONS; i++)
		if (strlen(options[i].name) == len &&
		    memcmp(options[i].name, name, len) == 0)
			return &options[i];
	return NULL;
}

static const struct opt *
find_short(char c)
{
	size_t i;

	for (i = 0; i < N_OPTIONS; i++)
		if (options[i].short_name == c)
			return &options[i];
	return NULL;
}

/* Ini keys may be pool-size, pool_size or POOL_SIZE. */
static const struct opt *
find_key(const char *key)
{
	size_t i;

	for (i = 0; i < N_OPTIONS; i++) {
		const char *k = key, *n = options[i].name;

		for (; *k != '\0' && *n != '\0'; k++, n++) {
			char c = *k == '_' ? '-' : *k;

			if (c >= 'A' && c <= 'Z')
				c = (char)(c - 'A' + 'a');
			if (c != *n)
				break;
		}
		if (*k == '\0' && *n == '\0')
			return &options[i];
	}
	return NULL;
}

/* PGVALET_ + the name in upper snake case: pool-size -> PGVALET_POOL_SIZE. */
static void
env_name(const struct opt *o, char *buf, size_t len)
{
	size_t i, n = sizeof(ENV_PREFIX) - 1;

	snprintf(buf, len, "%s%s", ENV_PREFIX, o->name);
	for (i = n; buf[i] != '\0'; i++) {
		if (buf[i] == '-')
			buf[i] = '_';
		else if (buf[i] >= 'a' && buf[i] <= 'z')
			buf[i] = (char)(buf[i] - 'a' + 'A');
	}
}

static const char *
env_lookup(char **envp, const char *name)
{
	size_t n = strlen(name);

	for (; envp != NULL && *envp != NULL; envp++)
		if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

/* Decimal digits only (an optional '-'), so "1e3" or " 5" are refused. */
static int
parse_int(const char *v, int min, int max, int *out)
{
	const char *p = v + (*v == '-');
	long long n = 0;

	if (*p == '\0')
		return -1;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9' || n > INT_MAX)
			return -1;
		n = n * 10 + (*p - '0');
	}
	if (*v == '-')
		n = -n;
	if (n < min || n > max)
		return -1;
	*out = (int)n;
	return 0;
}

static int
parse_duration(const char *v, int min, int max, int *out_ms)
{
	static const struct {
		const char *suffix;
		long long ms;
	} units[] = { { "", 1000 }, { "ms", 1 }, { "s", 1000 },
		      { "m", 60000 }, { "h", 3600000 } };
	const char *p = v;
	long long n = 0;
	size_t i;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (n > INT_MAX)
			return -1;
		n = n * 10 + (*p - '0');
	}
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(p, units[i].suffix) != 0)
			continue;
		n *= units[i].ms;
		if (n < min || n > max)
			return -1;
		*out_ms = (int)n;
		return 0;
	}
	return -1;
}

/* 512kB, 64MB, 1GB, 2TB (powers of 1024, as Postgres spells them) or bytes. */
static int
parse_size(const char *v, uint64_t *out)
{
	static const struct {
		const char *suffix;
		int shift;
	} units[] = { { "", 0 }, { "B", 0 }, { "kB", 10 }, { "MB", 20 },
		      { "GB", 30 }, { "TB", 40 } };
	const char *p = v;
	uint64_t n = 0;
	size_t i;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (n > (UINT64_C(1) << 40))
			return -1;
		n = n * 10 + (uint64_t)(*p - '0');
	}
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(p, units[i].suffix) != 0)
			continue;
		if (n > (UINT64_C(1) << (50 - units[i].shift)))
			return -1;
		*out = n << units[i].shift;
		return 0;
	}
	return -1;
}

/* The shortest exact spelling: 86400000 -> "24h", 1500 -> "1500ms". */
static void
format_ms(int ms, char *buf, size_t len)
{
	if (ms == 0)
		snprintf(buf, len, "0");
	else if (ms % 3600000 == 0)
		snprintf(buf, len, "%dh", ms / 3600000);
	else if (ms % 60000 == 0)
		snprintf(buf, len, "%dm", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(buf, len, "%ds", ms / 1000);
	else
		snprintf(buf, len, "%dms", ms);
}

static int
set_string(const struct opt *o, char *field, const char *v, char *why,
	   size_t whylen)
{
	size_t n = strlen(v);

	if (n >= o->size) {
		snprintf(why, whylen, "longer than %zu bytes", o->size - 1);
		return -1;
	}
	if (n == 0 && (o->flags & OPT_NONEMPTY)) {
		snprintf(why, whylen, "expected a non-empty value");
		return -1;
	}
	memcpy(field, v, n + 1);
	return 0;
}

static int
set_enum(const struct opt *o, char *field, const char *v, char *why,
	 size_t whylen)
{
	size_t i, used;

	for (i = 0; o->choices[i] != NULL; i++) {
		if (strcmp(v, o->choices[i]) == 0) {
			int index = (int)i;

			memcpy(field, &index, sizeof(index));
			return 0;
		}
	}
	used = (size_t)snprintf(why, whylen, "expected one of:");
	for (i = 0; o->choices[i] != NULL && used < whylen; i++)
		used += (size_t)snprintf(why + used, whylen - used, "%s %s",
					 i ? "," : "", o->choices[i]);
	return -1;
}

static int
set_upstream(struct config *cfg, const char *v, char *why, size_t whylen)
{
	if (strlen(v) >= sizeof(cfg->upstream_raw)) {
		snprintf(why, whylen, "longer than %zu bytes",
			 sizeof(cfg->upstream_raw) - 1);
		return -1;
	}
	if (pgurl_parse(v, &cfg->upstream, why, whylen) < 0)
		return -1;
	if (pgurl_redact(v, cfg->upstream_raw, sizeof(cfg->upstream_raw)) <
	    0) {
		snprintf(why, whylen, "cannot be shown without its password");
		return -1;
	}
	return 0;
}

/* Parse v into o's field; on error 'why' says what was expected. */
static int
set_value(const struct opt *o, struct config *cfg, const char *v, char *why,
	  size_t whylen)
{
	char *field = (char *)cfg + o->offset;
	char lo[16], hi[16];
	int n;

	switch (o->type) {
	case OPT_STRING:
		return set_string(o, field, v, why, whylen);
	case OPT_ENUM:
		return set_enum(o, field, v, why, whylen);
	case OPT_URL:
		return set_upstream(cfg, v, why, whylen);
	case OPT_INT:
	case OPT_COUNTER:
		if (parse_int(v, o->min, o->max, &n) == 0)
			break;
		snprintf(why, whylen, "expected an integer %d..%d", o->min,
			 o->max);
		return -1;
	case OPT_DURATION:
		if (parse_duration(v, o->min, o->max, &n) == 0)
			break;
		format_ms(o->min, lo, sizeof(lo));
		format_ms(o->max, hi, sizeof(hi));
		snprintf(why, whylen,
			 "expected a duration %s..%s such as 250ms, 30s, 5m "
			 "or 1h; a bare number is seconds",
			 lo, hi);
		return -1;
	case OPT_SIZE: {
		uint64_t bytes;

		if (parse_size(v, &bytes) == 0) {
			memcpy(field, &bytes, sizeof(bytes));
			return 0;
		}
		snprintf(why, whylen,
			 "expected a size such as 512kB, 64MB or 1GB; a bare "
			 "number is bytes");
		return -1;
	}
	case OPT_HELP:
	case OPT_VERSION:
	default:
		snprintf(why, whylen, "takes no value");
		return -1;
	}
	memcpy(field, &n, sizeof(n));
	return 0;
}

/* " from PGVALET_X" / " in file.ini:3" / "" for flags. */
static void
src_suffix(const struct src *s, char *buf, size_t len)
{
	if (s->kind == SRC_ENV)
		snprintf(buf, len, " from %s", s->name);
	else if (s->kind == SRC_INI)
		snprintf(buf, len, " in %s:%d", s->name, s->line);
	else
		snprintf(buf, len, "%s", "");
}

static int
apply(struct loader *ld, const struct opt *o, const char *v,
      const struct src *s)
{
	char why[512], where[600], shown[1024];

	if (set_value(o, ld->cfg, v, why, sizeof(why)) == 0)
		return 0;
	src_suffix(s, where, sizeof(where));
	if (o->type != OPT_URL)
		fail(ld, "invalid value for %s%s: '%s' (%s)", o->name, where, v,
		     why);
	else if (pgurl_redact(v, shown, sizeof(shown)) == 0)
		fail(ld, "invalid value for %s%s: '%s' (%s)", o->name, where,
		     shown, why);
	else	/* the text may hold a password: do not echo it */
		fail(ld, "invalid value for %s%s: %s", o->name, where, why);
	return -1;
}

static void
apply_defaults(struct config *cfg)
{
	char why[512];
	size_t i;

	memset(cfg, 0, sizeof(*cfg));
	for (i = 0; i < N_OPTIONS; i++)
		if (options[i].def != NULL &&
		    set_value(&options[i], cfg, options[i].def, why,
			      sizeof(why)) < 0)
			abort();	/* the table itself is wrong */
}

/* --- command line ------------------------------------------------------ */

struct argv_iter {
	int argc;
	char **argv;
	int next;		/* index of the next argv word */
	const char *cluster;	/* rest of a "-vvp5" group, or NULL */
};

struct arg {
	const struct opt *opt;
	const char *value;	/* NULL for -v, --help, --version */
};

static bool
is_switch(const struct opt *o)
{
	return o->type == OPT_HELP || o->type == OPT_VERSION;
}

static int
next_short(struct argv_iter *it, struct arg *a, struct loader *ld)
{
	char c = *it->cluster++;

	a->opt = find_short(c);
	a->value = NULL;
	if (a->opt == NULL) {
		fail(ld, "unknown option: -%c (see --help)", c);
		return -1;
	}
	if (is_switch(a->opt) || a->opt->type == OPT_COUNTER)
		return 1;
	if (*it->cluster != '\0') {
		a->value = it->cluster;		/* -p7000 */
		it->cluster = NULL;
	} else if (it->next < it->argc) {
		a->value = it->argv[it->next++];
	} else {
		fail(ld, "missing value for -%c", c);
		return -1;
	}
	return 1;
}

static int
next_long(struct argv_iter *it, const char *name, struct arg *a,
	  struct loader *ld)
{
	const char *eq = strchr(name, '=');
	size_t len = eq ? (size_t)(eq - name) : strlen(name);

	a->opt = find_long(name, len);
	a->value = NULL;
	if (a->opt == NULL) {
		fail(ld, "unknown option: --%.*s (see --help)", (int)len, name);
		return -1;
	}
	if (is_switch(a->opt)) {
		if (eq == NULL)
			return 1;
		fail(ld, "option --%s takes no value", a->opt->name);
		return -1;
	}
	if (eq != NULL) {
		a->value = eq + 1;
	} else if (it->next < it->argc) {
		a->value = it->argv[it->next++];
	} else {
		fail(ld, "missing value for --%s", a->opt->name);
		return -1;
	}
	return 1;
}

/* 1 and *a filled, 0 at the end, -1 with ld->err set. */
static int
argv_next(struct argv_iter *it, struct arg *a, struct loader *ld)
{
	const char *w;

	if (it->cluster != NULL && *it->cluster != '\0')
		return next_short(it, a, ld);
	it->cluster = NULL;
	if (it->next >= it->argc)
		return 0;
	w = it->argv[it->next++];
	if (w[0] == '-' && w[1] == '-' && w[2] != '\0')
		return next_long(it, w + 2, a, ld);
	if (w[0] == '-' && w[1] != '\0' && w[1] != '-') {
		it->cluster = w + 1;
		return next_short(it, a, ld);
	}
	fail(ld, "unexpected argument: '%s' (see --help)", w);
	return -1;
}

/* First pass: stop at --help/--version, find --config, reject junk. */
static enum config_result
scan_argv(struct loader *ld, int argc, char **argv, const char **config)
{
	struct argv_iter it = { argc, argv, 1, NULL };
	struct arg a;
	int r;

	while ((r = argv_next(&it, &a, ld)) > 0) {
		if (a.opt->type == OPT_HELP) {
			config_print_help(stdout);
			return CONFIG_EXIT;
		}
		if (a.opt->type == OPT_VERSION) {
			printf("pgvalet %s\n", PGVALET_VERSION);
			return CONFIG_EXIT;
		}
		if (strcmp(a.opt->name, "config") == 0)
			*config = a.value;
	}
	return r < 0 ? CONFIG_ERROR : CONFIG_OK;
}

/* -v counts up from 0: a flag overrides an env or ini level. */
static void
bump_counter(struct loader *ld, const struct opt *o)
{
	size_t idx = (size_t)(o - options);
	int v = 0;

	if (ld->set_by_flag[idx])
		memcpy(&v, (char *)ld->cfg + o->offset, sizeof(v));
	if (v < o->max)
		v++;
	memcpy((char *)ld->cfg + o->offset, &v, sizeof(v));
	ld->set_by_flag[idx] = true;
}

/* Second pass: flags win over everything read before. */
static int
apply_argv(struct loader *ld, int argc, char **argv)
{
	static const struct src flag = { SRC_FLAG, NULL, 0 };
	struct argv_iter it = { argc, argv, 1, NULL };
	struct arg a;
	int r;

	while ((r = argv_next(&it, &a, ld)) > 0) {
		if (a.value == NULL) {
			if (a.opt->type == OPT_COUNTER)
				bump_counter(ld, a.opt);
			continue;
		}
		if (apply(ld, a.opt, a.value, &flag) < 0)
			return -1;
		ld->set_by_flag[a.opt - options] = true;
	}
	return r;
}

/* --- environment ------------------------------------------------------- */

static int
load_env(struct loader *ld, char **envp)
{
	char name[64];
	size_t i;

	for (i = 0; i < N_OPTIONS; i++) {
		const struct opt *o = &options[i];
		struct src s = { SRC_ENV, name, 0 };
		const char *v;

		if (o->flags & OPT_NO_ENV)
			continue;
		env_name(o, name, sizeof(name));
		v = env_lookup(envp, name);
		/* FOO= usually means "not set" (compose files, shell
		 * templates), so an empty value keeps the lower layer. */
		if (v == NULL || *v == '\0')
			continue;
		if (apply(ld, o, v, &s) < 0)
			return -1;
	}
	return 0;
}

/* --- ini file ---------------------------------------------------------- */

struct ini_ctx {
	struct loader *ld;
	FILE *f;
	const char *path;
	int line;		/* counted here: Debian's inih has no lineno */
	bool failed;
};

/* fgets() for inih that counts lines and refuses to split long ones. */
static char *
ini_read_line(char *str, int num, void *stream)
{
	struct ini_ctx *c = stream;
	size_t n;

	if (c->failed || fgets(str, num, c->f) == NULL)
		return NULL;
	c->line++;
	n = strlen(str);
	if (n > 0 && str[n - 1] != '\n' && !feof(c->f)) {
		fail(c->ld, "line too long in %s:%d (max %d bytes)", c->path,
		     c->line, num - 3);
		c->failed = true;
		return NULL;
	}
	return str;
}

static int
ini_on_value(void *user, const char *section, const char *key,
	     const char *value)
{
	struct ini_ctx *c = user;
	struct src s = { SRC_INI, c->path, c->line };
	const struct opt *o;

	if (c->failed)
		return 0;
	c->failed = true;	/* until the value is applied */
	if (section[0] != '\0' && strcasecmp(section, "pgvalet") != 0) {
		fail(c->ld, "unknown section [%s] in %s:%d (only [pgvalet])",
		     section, c->path, c->line);
		return 0;
	}
	o = find_key(key);
	if (o == NULL) {
		fail(c->ld, "unknown key '%s' in %s:%d", key, c->path,
		     c->line);
		return 0;
	}
	if (o->flags & OPT_NO_INI) {
		fail(c->ld, "key '%s' is not allowed in an ini file (%s:%d)",
		     key, c->path, c->line);
		return 0;
	}
	if (apply(c->ld, o, value, &s) < 0)
		return 0;
	c->failed = false;
	return 1;
}

static int
load_ini(struct loader *ld, const char *path)
{
	struct ini_ctx c = { ld, NULL, path, 0, false };
	int r;

	c.f = fopen(path, "r");
	if (c.f == NULL) {
		fail(ld, "cannot read config file '%s': %s", path,
		     strerror(errno));
		return -1;
	}
	r = ini_parse_stream(ini_read_line, &c, ini_on_value, &c);
	fclose(c.f);
	if (c.failed)
		return -1;
	if (r != 0) {
		fail(ld, "syntax error in %s:%d (expected key = value or "
			 "[pgvalet])",
		     path, r);
		return -1;
	}
	return 0;
}

/* --- entry points ------------------------------------------------------ */

/* --cache-tier must be a redis:// URL; its password is not echoed. */
static int
check_cache_tier(struct loader *ld)
{
	const char *url = ld->cfg->cache_tier, *at = strrchr(url, '@');
	struct redis_target t;

	if (!url[0] || redis_target_parse(&t, url) == 0)
		return 0;
	fail(ld, "invalid value for cache-tier: '%s%s' (expected "
		 "redis://[[user]:password@]host[:port][/db])",
	     at ? "redis://***" : url, at ? at : "");
	return -1;
}

static int
check_final(struct loader *ld)
{
	const struct config *cfg = ld->cfg;

	if (cfg->upstream_raw[0] == '\0') {
		fail(ld, "missing required setting: upstream (--upstream or "
			 "PGVALET_UPSTREAM)");
		return -1;
	}
	if (cfg->invalidation == INVALIDATION_TTL && cfg->cache_size &&
	    cfg->cache_ttl_ms == 0) {
		fail(ld, "invalid value for invalidation: 'ttl' needs "
			 "cache-ttl (e.g. --cache-ttl 30s): nothing else would "
			 "ever drop a result changed behind the proxy");
		return -1;
	}
	if (check_cache_tier(ld) < 0)
		return -1;
	if (!cfg->stats_on && cfg->mode != MODE_CACHE) {
		fail(ld, "invalid value for stats: 'off' with mode '%s': "
			 "index advice comes from the statistics (use --mode "
			 "cache, or --stats on)", mode_names[cfg->mode]);
		return -1;
	}
	/* observe mode serves no cached answer: the cache is simply off */
	if (cfg->mode == MODE_OBSERVE)
		ld->cfg->cache_size = 0;
	if ((cfg->tls_cert[0] == '\0') != (cfg->tls_key[0] == '\0')) {
		fail(ld, "tls-cert and tls-key must be set together (only %s "
			 "is set)",
		     cfg->tls_cert[0] ? "tls-cert" : "tls-key");
		return -1;
	}
	return 0;
}

/* Record the ini path in cfg (checking its length), then read it. */
static int
load_config_file(struct loader *ld, const char *path, bool from_flag)
{
	struct src s = { from_flag ? SRC_FLAG : SRC_ENV, "PGVALET_CONFIG", 0 };
	const struct opt *o = find_long("config", strlen("config"));

	if (o == NULL)
		abort();	/* the table lost its config entry */
	if (apply(ld, o, path, &s) < 0)
		return -1;
	return load_ini(ld, path);
}

enum config_result
config_load(struct config *cfg, int argc, char **argv, char **envp,
	    char *err, size_t errlen)
{
	struct loader ld = { .cfg = cfg, .err = err, .errlen = errlen };
	const char *path = NULL;
	enum config_result r;
	bool from_flag;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	apply_defaults(cfg);
	r = scan_argv(&ld, argc, argv, &path);
	if (r != CONFIG_OK)
		return r;
	from_flag = path != NULL;
	if (path == NULL)
		path = env_lookup(envp, "PGVALET_CONFIG");
	if (path != NULL && path[0] != '\0' &&
	    load_config_file(&ld, path, from_flag) < 0)
		return CONFIG_ERROR;
	if (load_env(&ld, envp) < 0 || apply_argv(&ld, argc, argv) < 0 ||
	    check_final(&ld) < 0)
		return CONFIG_ERROR;
	return CONFIG_OK;
}

static void
print_option(FILE *out, const struct opt *o)
{
	char env[64];

	if (o->short_name != 0)
		fprintf(out, "  -%c, --%s", o->short_name, o->name);
	else
		fprintf(out, "      --%s", o->name);
	if (o->metavar != NULL)
		fprintf(out, " %s", o->metavar);
	fprintf(out, "\n        %s\n", o->help);
	if (o->flags & OPT_NO_ENV)
		return;
	env_name(o, env, sizeof(env));
	if (o->type == OPT_URL)
		fprintf(out, "        env %s; required\n", env);
	else if (o->def != NULL && o->def[0] != '\0')
		fprintf(out, "        env %s; default %s\n", env, o->def);
	else
		fprintf(out, "        env %s; not set by default\n", env);
}

void
config_print_help(FILE *out)
{
	size_t i;

	fprintf(out,
		"Usage: pgvalet --upstream URL [options]\n"
		"       pgvalet clean --upstream URL [options]   (drop the "
		"triggers, schema,\n"
		"       indexes, publication and --replication-slot pgvalet "
		"created)\n"
		"\n"
		"pgvalet %s: a PostgreSQL connection pooler.  Clients connect "
		"to it\nas if it were the server at URL.\n"
		"\n"
		"Options (--name value or --name=value):\n",
		PGVALET_VERSION);
	for (i = 0; i < N_OPTIONS; i++)
		print_option(out, &options[i]);
	fprintf(out,
		"\n"
		"Durations: 250ms, 30s, 5m or 1h; a bare number is seconds.\n"
		"Ini file keys are the option names (pool-size or pool_size),"
		" optionally\nunder [pgvalet].  An empty PGVALET_* variable "
		"counts as unset.\n"
		"Precedence: command-line flags > PGVALET_* environment "
		"variables > ini file\n(--config) > defaults.\n");
}

void
config_upstream_display(const struct config *cfg, char *out, size_t len)
{
	pgurl_display(&cfg->upstream, out, len);
}
