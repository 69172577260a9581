/*
 * config.h - pgvalet's settings: defaults < ini file < PGVALET_* env < flags.
 *
 * One table describes every option (name, type, default, help); --help,
 * the env lookup and the ini reader all come from it.  config_load() fills
 * a struct config owned by the caller; it allocates nothing that outlives
 * the call except what struct config holds inline.  Not thread-safe: call
 * once at start-up, before the workers run.
 */
#ifndef PGVALET_CORE_CONFIG_H
#define PGVALET_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/pgurl.h"

enum pool_mode { POOL_SESSION = 0, POOL_TRANSACTION = 1 };
enum invalidation {
	INVALIDATION_WAL = 0,
	INVALIDATION_TTL = 1,
	INVALIDATION_NOTIFY = 2,
};
/* cache: cache + advice; observe: advice only, no cached answers;
 * optimize: cache + advice + the indexes it verified (see advisor.h). */
enum run_mode { MODE_CACHE = 0, MODE_OBSERVE = 1, MODE_OPTIMIZE = 2 };

struct config {
	struct pg_url upstream;		/* --upstream (required) */
	char upstream_raw[1024];	/* as given, for messages (no password) */
	char listen_addr[128];		/* --listen, default 127.0.0.1 */
	int port;			/* --port, default 7932 */
	char unix_socket_dir[256];	/* --unix-socket-dir, "" = none */
	enum pool_mode pool_mode;	/* --pool-mode, default transaction */
	int pool_size;			/* --pool-size, default 20 */
	int pool_timeout_ms;		/* --pool-timeout, default 30s */
	int idle_timeout_ms;		/* --server-idle-timeout, default 600s */
	int connect_timeout_ms;		/* --connect-timeout, default 5s */
	int max_clients;		/* --max-clients, default 10000 */
	int max_server_statements;	/* --max-server-statements, 1000 */
	int workers;			/* --workers, default 1 */
	uint64_t cache_size;		/* --cache-size bytes, 256MB; 0 = off */
	uint64_t cache_max_entry;	/* --cache-max-entry bytes, 1MB */
	int cache_ttl_ms;		/* --cache-ttl, 0 = none */
	enum invalidation invalidation;	/* --invalidation, default wal */
	char publication[64];		/* --publication, default pgvalet */
	char replication_slot[64];	/* --replication-slot, "" = temporary */
	int push_port;			/* --push-port, -1 = port + 2, 0 = off */
	char push_socket_dir[256];	/* --push-socket-dir, "" = none */
	char bus[512];			/* --bus redis://..., "" = none */
	char cache_tier[512];		/* --cache-tier redis://..., "" = none */
	int cache_tier_timeout_ms;	/* --cache-tier-timeout, default 2ms */
	int stats_period_ms;		/* --stats-period, 60s; 0 = never */
	enum run_mode mode;		/* --mode, default cache */
	int max_indexes_per_hour;	/* --max-indexes-per-hour, 2 */
	char exclude_tables[1024];	/* --exclude-tables, comma list */
	int stats_on;			/* --stats on|off, default on */
	int stats_max_shapes;		/* --stats-max-shapes, default 1000 */
	int threshold_duration_ms;	/* --threshold-duration-ms, 100 */
	int threshold_impact_pct;	/* --threshold-impact, 20 (percent) */
	char admin_users[512];		/* --admin-users, comma-separated */
	int dashboard_port;		/* --dashboard-port, -1 = port + 1, 0 = off */
	char dashboard_token[128];	/* --dashboard-token, "" = random */
	int debug_skip_invalidation;	/* testing the consistency checker */
	int verbose;			/* -v (repeatable) / --verbose N */
	char auth_file[512];		/* --auth-file, optional */
	char tls_cert[512];		/* --tls-cert, optional (client side) */
	char tls_key[512];		/* --tls-key, optional */
	char config_file[512];		/* --config, optional */
};

enum config_result {
	CONFIG_OK = 0,		/* run the proxy */
	CONFIG_EXIT = 1,	/* --help / --version printed: exit 0 */
	CONFIG_ERROR = 2,	/* err holds one line naming key and value: exit 2 */
};

/*
 * Fill *cfg from defaults, the ini file named by --config / PGVALET_CONFIG,
 * PGVALET_* variables in envp, then argv (argv[0] is the program name).
 * --help and --version print to stdout.  On CONFIG_ERROR, err holds e.g.
 * "invalid value for pool-size: 'abc' (expected an integer 1..10000)".
 */
enum config_result config_load(struct config *cfg, int argc, char **argv,
			       char **envp, char *err, size_t errlen);

/* Print --help text (every option, its env var, default and meaning). */
void config_print_help(FILE *out);

/* "postgresql://user@host:port/db" with the password left out. */
void config_upstream_display(const struct config *cfg, char *out, size_t len);

#endif
