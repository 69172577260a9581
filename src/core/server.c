#include "core/server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "analysis/catalog.h"
#include "cache/plan.h"
#include "cache/store.h"
#include "cache/tier.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/version.h"
#include "invalidate/bus.h"
#include "invalidate/push.h"
#include "invalidate/stream.h"
#include "http/dashboard.h"
#include "net/buf.h"
#include "net/tls.h"
#include "net/unixsock.h"
#include "observe/advisor.h"
#include "observe/audit.h"
#include "observe/fingerprint.h"
#include "observe/nplus1.h"
#include "observe/observe.h"
#include "observe/stats.h"
#include "pool/backend.h"
#include "pool/pool.h"
#include "pool/session.h"
#include "proto/msg.h"

enum { TICK_MS = 100, LISTEN_BACKLOG = 4096 };

/* ---- credentials ----------------------------------------------------------- */

static int
add_user(struct server *srv, const char *name, const char *password,
	 char *err, size_t errlen)
{
	struct user_cred *u, *nu;
	int rc;

	if (server_find_user(srv, name))
		return 0;	/* first definition wins: URL, then file */
	nu = realloc(srv->users, (srv->nusers + 1) * sizeof(*nu));
	if (!nu)
		return -1;
	srv->users = nu;
	u = &srv->users[srv->nusers];
	memset(u, 0, sizeof(*u));
	snprintf(u->name, sizeof(u->name), "%s", name);
	if (strncmp(password, "SCRAM-SHA-256$", 14) == 0) {
		rc = scram_secret_parse(password, &u->secret);
	} else {
		snprintf(u->password, sizeof(u->password), "%s", password);
		rc = scram_secret_from_password(password, 4096, &u->secret);
	}
	if (rc) {
		snprintf(err, errlen, "bad password or SCRAM secret for user "
			 "'%s'", name);
		return -1;
	}
	srv->nusers++;
	return 0;
}

/* One user per line: "name" "password-or-SCRAM-secret" (PgBouncer's). */
static int
parse_quoted(const char **p, char *out, size_t outlen)
{
	size_t n = 0;

	while (**p == ' ' || **p == '\t')
		(*p)++;
	if (**p != '"')
		return -1;
	for ((*p)++; **p && !(**p == '"' && (*p)[1] != '"'); (*p)++) {
		if (**p == '"')
			(*p)++;	/* "" is a quote */
		if (n + 1 >= outlen)
			return -1;
		out[n++] = **p;
	}
	if (**p != '"')
		return -1;
	(*p)++;
	out[n] = 0;
	return 0;
}

static int
load_auth_file(struct server *srv, const char *path, char *err,
	       size_t errlen)
{
	char line[1024], name[128], pass[512];
	const char *p;
	FILE *f = fopen(path, "r");
	int lineno = 0;

	if (!f) {
		snprintf(err, errlen, "auth-file '%s': %s", path,
			 strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		p = line + strspn(line, " \t\r\n");
		if (!*p || *p == '#' || *p == ';')
			continue;
		if (parse_quoted(&p, name, sizeof(name)) ||
		    parse_quoted(&p, pass, sizeof(pass))) {
			snprintf(err, errlen, "auth-file %s:%d: expected "
				 "\"user\" \"password\"", path, lineno);
			fclose(f);
			return -1;
		}
		if (add_user(srv, name, pass, err, errlen)) {
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return 0;
}

const struct user_cred *
server_find_user(const struct server *srv, const char *name)
{
	size_t i;

	for (i = 0; i < srv->nusers; i++)
		if (strcmp(srv->users[i].name, name) == 0)
			return &srv->users[i];
	return NULL;
}

static int
init_credentials(struct server *srv, char *err, size_t errlen)
{
	const struct pg_url *u = &srv->cfg.upstream;
	char mock[33];
	uint8_t rnd[16];
	int i;

	if (u->password[0] && add_user(srv, u->user, u->password, err, errlen))
		return -1;
	if (srv->cfg.auth_file[0] &&
	    load_auth_file(srv, srv->cfg.auth_file, err, errlen))
		return -1;
	if (!server_find_user(srv, u->user)) {
		snprintf(err, errlen, "no password for upstream user '%s': put "
			 "it in the upstream URL or in --auth-file", u->user);
		return -1;
	}
	/* Unknown users run SCRAM against a secret nobody knows. */
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return -1;
	for (i = 0; i < 16; i++)
		snprintf(mock + 2 * i, 3, "%02x", rnd[i]);
	return scram_secret_from_password(mock, 4096, &srv->mock_secret);
}

/* ---- upstream address and TLS ------------------------------------------------ */

static int
resolve_upstream(struct server *srv, char *err, size_t errlen)
{
	const struct pg_url *u = &srv->cfg.upstream;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	struct sockaddr_un *sun;
	char port[16];
	int rc;

	snprintf(srv->upstream_host, sizeof(srv->upstream_host), "%s",
		 u->host);
	if (u->host[0] == '/') {
		sun = (struct sockaddr_un *)&srv->upstream_addr;
		sun->sun_family = AF_UNIX;
		if ((size_t)snprintf(sun->sun_path, sizeof(sun->sun_path),
				     "%s/.s.PGSQL.%d", u->host, u->port) >=
		    sizeof(sun->sun_path)) {
			snprintf(err, errlen, "unix socket path too long");
			return -1;
		}
		srv->upstream_addrlen = sizeof(*sun);
		return 0;
	}
	snprintf(port, sizeof(port), "%d", u->port);
	rc = getaddrinfo(u->host, port, &hints, &res);
	if (rc) {
		snprintf(err, errlen, "cannot resolve upstream host '%s': %s",
			 u->host, gai_strerror(rc));
		return -1;
	}
	memcpy(&srv->upstream_addr, res->ai_addr, res->ai_addrlen);
	srv->upstream_addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static int open_listener(const struct config *cfg, bool reuseport,
			 bool probe, char *err, size_t errlen);
static int open_unix_listener(struct server *srv, char *err, size_t errlen);

/* The push channel: loopback TCP on --push-port, a unix socket. */
static int
init_push(struct server *srv, char *err, size_t errlen)
{
	const struct config *cfg = &srv->cfg;
	struct push_config pc = { .tcp_addr = "127.0.0.1" };

	pc.tcp_port = cfg->push_port < 0 ? cfg->port + 2 : cfg->push_port;
	if (pc.tcp_port > 65535) {
		snprintf(err, errlen, "invalid value for push-port: %d + 2 is"
			 " not a port (set --push-port)", cfg->port);
		return -1;
	}
	if (cfg->push_socket_dir[0] && pc.tcp_port) {
		if ((size_t)snprintf(pc.unix_path, sizeof(pc.unix_path),
				     "%s/.s.PGVALET.%d", cfg->push_socket_dir,
				     pc.tcp_port) >= sizeof(pc.unix_path)) {
			snprintf(err, errlen, "invalid value for "
				 "push-socket-dir: '%s' (too long)",
				 cfg->push_socket_dir);
			return -1;
		}
	}
	if (!pc.tcp_port)
		return 0;
	srv->push = push_new(&pc, err, errlen);
	return srv->push ? 0 : -1;
}

/* Logical replication consumers, after checking what they need. */
static int
init_streams(struct server *srv, char *err, size_t errlen)
{
	const struct config *cfg = &srv->cfg;
	struct stream_config sc = {
		.upstream = cfg->upstream,
		.cache = srv->cache,
		.cat = srv->catalog,
		.push = srv->push,
		.tier = srv->tier,
		.notify = cfg->invalidation == INVALIDATION_NOTIFY,
	};

	snprintf(sc.publication, sizeof(sc.publication), "%s",
		 cfg->publication);
	snprintf(sc.slot, sizeof(sc.slot), "%s", cfg->replication_slot);
	if (stream_preflight(&sc, err, errlen))
		return -1;
	catalog_set_coverage(srv->catalog, sc.notify ? CAT_COVER_TRIGGERS :
			     CAT_COVER_PUBLICATION, cfg->publication);
	srv->streams = stream_set_new(&sc);
	if (!srv->streams) {
		snprintf(err, errlen, "out of memory for the replication "
			 "stream");
		return -1;
	}
	return 0;
}

/* The shared result tier on Redis (--cache-tier), behind the store. */
static int
init_tier(struct server *srv, char *err, size_t errlen)
{
	const struct config *cfg = &srv->cfg;
	struct cache_tier_config tc = {
		.url = cfg->cache_tier,
		.ttl_ms = (uint64_t)cfg->cache_ttl_ms,
		.lookup_timeout_ms = cfg->cache_tier_timeout_ms,
	};

	if (!cfg->cache_tier[0])
		return 0;
	srv->tier = cache_tier_new(&tc, err, errlen);
	return srv->tier ? 0 : -1;
}

/*
 * The result cache works in transaction pooling mode, where the proxy
 * follows every statement's text; in session mode it stays off.
 */
static int
init_cache(struct server *srv, char *err, size_t errlen)
{
	const struct config *cfg = &srv->cfg;
	struct cache_store_config cc = {
		.max_bytes = (size_t)cfg->cache_size,
		.max_entry = (size_t)cfg->cache_max_entry,
		.ttl_ms = (uint64_t)cfg->cache_ttl_ms,
	};

	if (!cfg->cache_size || cfg->pool_mode != POOL_TRANSACTION) {
		if (cfg->cache_tier[0])
			log_warn("--cache-tier ignored: the result cache is off "
				 "(it needs --pool-mode transaction and a "
				 "--cache-size)");
		return 0;
	}
	/* Statement summaries get 1/16 of the budget, the results the rest. */
	cc.max_bytes -= cc.max_bytes / 16;
	srv->cache = cache_store_new(&cc);
	srv->catalog = catalog_new(&cfg->upstream);
	srv->plans = srv->catalog ?
		plan_table_new(srv->catalog, (size_t)cfg->cache_size / 16) :
		NULL;
	if (!srv->cache || !srv->plans) {
		snprintf(err, errlen, "out of memory for a %llu-byte cache",
			 (unsigned long long)cfg->cache_size);
		return -1;
	}
	if (init_push(srv, err, errlen))
		return -1;
	if (cfg->bus[0] &&
	    !(srv->bus = bus_new(cfg->bus, srv->cache, srv->push, err, errlen)))
		return -1;
	if (init_tier(srv, err, errlen))
		return -1;
	if (cfg->invalidation == INVALIDATION_TTL) {
		log_warn("--invalidation ttl: writes that bypass pgvalet (psql, "
			 "cron jobs, other services) are NOT seen; their rows "
			 "may be served stale for up to %d ms (--cache-ttl)",
			 cfg->cache_ttl_ms);
		return 0;
	}
	return init_streams(srv, err, errlen);
}

/* The API write token: --dashboard-token, or 128 random bits in hex. */
static int
init_token(struct server *srv)
{
	uint8_t rnd[16];
	int i;

	if (srv->cfg.dashboard_token[0]) {
		snprintf(srv->dashboard_token, sizeof(srv->dashboard_token),
			 "%s", srv->cfg.dashboard_token);
		return 0;
	}
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return -1;
	for (i = 0; i < 16; i++)
		snprintf(srv->dashboard_token + 2 * i, 3, "%02x", rnd[i]);
	return 0;
}

/* Statement fingerprints, workload statistics and the client registry. */
static int
init_observe(struct server *srv, char *err, size_t errlen)
{
	const struct config *cfg = &srv->cfg;
	const struct stats_config sc = {
		.max_shapes = cfg->stats_max_shapes,
		.threshold_duration_ms = cfg->threshold_duration_ms,
		.threshold_impact_pct = cfg->threshold_impact_pct,
	};

	srv->started_us = clock_unix_us();
	atomic_init(&srv->cache_ttl_ms, cfg->cache_ttl_ms);
	pthread_mutex_init(&srv->clients_lock, NULL);
	qlist_init(&srv->client_infos);
	if (!(srv->fingerprints = fp_cache_new()) || init_token(srv) ||
	    (cfg->stats_on && !(srv->stats = stats_new(&sc)))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (srv->stats && observe_add_listener(stats_observe, srv->stats)) {
		snprintf(err, errlen, "too many statement listeners");
		return -1;
	}
	srv->seeder.stats = srv->stats;
	srv->seeder.upstream = &srv->cfg.upstream;
	srv->seeder.max_shapes = cfg->stats_max_shapes;
	return 0;
}

static char *
advice_json(void *advisor)
{
	return advisor_advice_json(advisor);
}

static char *
audit_json_of(void *advisor)
{
	return advisor_audit_json(advisor);
}

static char *
nplus1_json_of(void *np)
{
	return nplus1_json(np);
}

/*
 * The index advisor and N+1 detector listen to every statement (unless
 * --stats off); the dashboard serves their findings at /api/advice,
 * /api/audit and /api/nplus1.
 */
static int
init_optimizer(struct server *srv, char *err, size_t errlen)
{
	srv->audit = audit_new();
	srv->nplus1 = nplus1_new();
	srv->advisor = srv->audit && srv->nplus1 ?
		advisor_new(&srv->cfg, srv->nplus1, srv->audit) : NULL;
	if (!srv->advisor) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* --stats off: no listener at all, so no statement is observed */
	if (srv->cfg.stats_on &&
	    (observe_add_listener(advisor_observe, srv->advisor) ||
	     observe_add_listener(nplus1_observe, srv->nplus1))) {
		snprintf(err, errlen, "too many statement listeners");
		return -1;
	}
	if (dashboard_add_json("/api/advice", advice_json, srv->advisor) ||
	    dashboard_add_json("/api/audit", audit_json_of, srv->advisor) ||
	    dashboard_add_json("/api/nplus1", nplus1_json_of, srv->nplus1)) {
		snprintf(err, errlen, "too many dashboard documents");
		return -1;
	}
	return 0;
}

int
server_init(struct server *srv, const struct config *cfg, char *err,
	    size_t errlen)
{
	int fd;

	memset(srv, 0, sizeof(*srv));
	srv->cfg = *cfg;
	srv->unix_fd = -1;
	pthread_mutex_init(&srv->pools_lock, NULL);
	pthread_mutex_init(&srv->cancel_lock, NULL);
	if (resolve_upstream(srv, err, errlen) ||
	    init_credentials(srv, err, errlen))
		return -1;
	if (cfg->tls_cert[0]) {
		srv->client_tls = tls_server_ctx(cfg->tls_cert, cfg->tls_key,
						 err, errlen);
		if (!srv->client_tls)
			return -1;
	}
	if (cfg->upstream.sslmode != SSLMODE_DISABLE) {
		srv->upstream_tls = tls_client_ctx(&cfg->upstream, err, errlen);
		if (!srv->upstream_tls)
			return -1;
	}
	/* The port must be ours (not another pgvalet's) before anything
	 * else listens or connects; the workers open their own sockets.  A
	 * bind without listen: it fails if anyone listens there, and never
	 * accepts a client it would then reset. */
	fd = open_listener(cfg, false, true, err, errlen);
	if (fd < 0)
		return -1;
	close(fd);
	if (open_unix_listener(srv, err, errlen))
		return -1;
	if (init_observe(srv, err, errlen))
		return -1;
	if (init_optimizer(srv, err, errlen))
		return -1;
	return init_cache(srv, err, errlen);
}

void
server_free(struct server *srv)
{
	struct shared_pool *sp;

	/* Cancel slots are owned and freed by their clients. */
	while ((sp = srv->pools)) {
		srv->pools = sp->next;
		while (!qlist_empty(&sp->handoff)) {
			struct backend *be = qlist_entry(sp->handoff.next,
							 struct backend, link);

			qlist_remove(&be->link);
			conn_close(&be->c);
			backend_free(be);
		}
		pthread_mutex_destroy(&sp->handoff_lock);
		pthread_mutex_destroy(&sp->key_lock);
		free(sp);
	}
	dashboard_stop(srv->dashboard);	/* its threads read what follows */
	stats_seed_join(&srv->seeder);
	stream_set_free(srv->streams);	/* its threads use what follows */
	bus_free(srv->bus);
	cache_tier_free(srv->tier);
	if (srv->push)
		push_free(srv->push);
	plan_table_free(srv->plans);
	catalog_free(srv->catalog);
	fp_cache_free(srv->fingerprints);
	stats_free(srv->stats);
	advisor_free(srv->advisor);	/* stops its thread first */
	nplus1_free(srv->nplus1);
	audit_free(srv->audit);
	if (srv->cache)
		cache_store_free(srv->cache);
	if (srv->client_tls)
		SSL_CTX_free(srv->client_tls);
	if (srv->upstream_tls)
		SSL_CTX_free(srv->upstream_tls);
	if (srv->users)
		OPENSSL_cleanse(srv->users, srv->nusers * sizeof(*srv->users));
	free(srv->users);
	free(srv->workers);
	if (srv->unix_fd >= 0)
		close(srv->unix_fd);
	if (srv->unix_bound)
		unlink(srv->unix_path);
}

/* ---- shared pools and cancel keys ------------------------------------------ */

struct shared_pool *
server_shared_pool(struct server *srv, const char *db, const char *user)
{
	struct shared_pool *sp;

	pthread_mutex_lock(&srv->pools_lock);
	for (sp = srv->pools; sp; sp = sp->next)
		if (strcmp(sp->database, db) == 0 &&
		    strcmp(sp->user, user) == 0)
			break;
	if (!sp && (sp = calloc(1, sizeof(*sp)))) {
		snprintf(sp->database, sizeof(sp->database), "%s", db);
		snprintf(sp->user, sizeof(sp->user), "%s", user);
		pthread_mutex_init(&sp->key_lock, NULL);
		pthread_mutex_init(&sp->handoff_lock, NULL);
		qlist_init(&sp->handoff);
		sp->next = srv->pools;
		srv->pools = sp;
	}
	pthread_mutex_unlock(&srv->pools_lock);
	return sp;
}

static struct cancel_slot **
cancel_bucket(struct server *srv, uint32_t pid)
{
	return &srv->cancel[pid % (sizeof(srv->cancel) /
				   sizeof(srv->cancel[0]))];
}

void
server_client_register(struct server *srv, struct client_info *ci)
{
	pthread_mutex_lock(&srv->clients_lock);
	qlist_insert_tail(&srv->client_infos, &ci->link);
	pthread_mutex_unlock(&srv->clients_lock);
}

void
server_client_unregister(struct server *srv, struct client_info *ci)
{
	pthread_mutex_lock(&srv->clients_lock);
	qlist_remove(&ci->link);
	pthread_mutex_unlock(&srv->clients_lock);
}

void
server_cancel_register(struct server *srv, struct cancel_slot *slot)
{
	struct cancel_slot **b;

	pthread_mutex_lock(&srv->cancel_lock);
	b = cancel_bucket(srv, slot->pid);
	slot->next = *b;
	*b = slot;
	pthread_mutex_unlock(&srv->cancel_lock);
}

void
server_cancel_unregister(struct server *srv, struct cancel_slot *slot)
{
	struct cancel_slot **pp;

	pthread_mutex_lock(&srv->cancel_lock);
	for (pp = cancel_bucket(srv, slot->pid); *pp; pp = &(*pp)->next) {
		if (*pp == slot) {
			*pp = slot->next;
			break;
		}
	}
	pthread_mutex_unlock(&srv->cancel_lock);
}

struct cancel_job {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	uint64_t target;
};

/* Blocking connect+send in its own short-lived thread, off the workers. */
static void *
cancel_thread(void *arg)
{
	struct cancel_job *job = arg;
	uint8_t pkt[16];
	uint32_t v[4] = { 16, PROTO_CANCEL, (uint32_t)(job->target >> 32),
			  (uint32_t)job->target };
	struct timeval tv = { .tv_sec = 5 };
	int fd, i;

	for (i = 0; i < 4; i++) {
		pkt[4 * i] = (uint8_t)(v[i] >> 24);
		pkt[4 * i + 1] = (uint8_t)(v[i] >> 16);
		pkt[4 * i + 2] = (uint8_t)(v[i] >> 8);
		pkt[4 * i + 3] = (uint8_t)v[i];
	}
	fd = socket(job->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (connect(fd, (struct sockaddr *)&job->addr,
			    job->addrlen) == 0 &&
		    send(fd, pkt, sizeof(pkt), MSG_NOSIGNAL) == sizeof(pkt))
			(void)recv(fd, pkt, 1, 0);	/* server closes */
		close(fd);
	}
	free(job);
	return NULL;
}

void
server_cancel_forward(struct server *srv, uint32_t pid, uint32_t secret)
{
	struct cancel_slot *c;
	struct cancel_job *job;
	uint64_t target = 0;
	pthread_t t;

	pthread_mutex_lock(&srv->cancel_lock);
	for (c = *cancel_bucket(srv, pid); c; c = c->next)
		if (c->pid == pid && c->secret == secret)
			target = atomic_load(&c->upstream);
	pthread_mutex_unlock(&srv->cancel_lock);
	if (!target || !(job = calloc(1, sizeof(*job))))
		return;
	job->addr = srv->upstream_addr;
	job->addrlen = srv->upstream_addrlen;
	job->target = target;
	if (pthread_create(&t, NULL, cancel_thread, job) != 0) {
		free(job);
		return;
	}
	pthread_detach(t);
}

void
server_request_steal(struct server *srv, struct worker *from)
{
	int i;

	for (i = 0; i < srv->nworkers; i++) {
		if (&srv->workers[i] == from)
			continue;
		atomic_fetch_add(&srv->workers[i].steal_requests, 1);
		loop_wake(&srv->workers[i].loop);
	}
}

/* ---- workers ------------------------------------------------------------------ */

/*
 * reuseport: the workers' sockets share the port.  A probe without it
 * first proves nobody else holds the port: another process's
 * SO_REUSEPORT sockets would otherwise silently share it with us.
 */
static int
open_listener(const struct config *cfg, bool reuseport, bool probe,
	      char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE }, *res;
	const char *host = strcmp(cfg->listen_addr, "*") ? cfg->listen_addr :
							    NULL;
	char port[16];
	int fd, one = 1, rc;

	snprintf(port, sizeof(port), "%d", cfg->port);
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc) {
		snprintf(err, errlen, "cannot resolve listen address '%s': %s",
			 cfg->listen_addr, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd >= 0 &&
	    (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	     (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
				      sizeof(one))) ||
	     bind(fd, res->ai_addr, res->ai_addrlen) ||
	     (!probe && listen(fd, LISTEN_BACKLOG)))) {
		snprintf(err, errlen, "could not listen on %s:%d: %s",
			 cfg->listen_addr, cfg->port, strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/*
 * --unix-socket-dir: the socket Postgres clients look for in that
 * directory (psql -h DIR -p PORT).  One socket, opened before the workers,
 * which all accept from it.
 */
static int
open_unix_listener(struct server *srv, char *err, size_t errlen)
{
	const struct config *cfg = &srv->cfg;
	char why[400];

	if (!cfg->unix_socket_dir[0])
		return 0;
	snprintf(srv->unix_path, sizeof(srv->unix_path), "%s/.s.PGSQL.%d",
		 cfg->unix_socket_dir, cfg->port);
	srv->unix_fd = unix_listen(srv->unix_path, LISTEN_BACKLOG,
				   &srv->unix_bound, why, sizeof(why));
	if (srv->unix_fd < 0) {
		snprintf(err, errlen, "invalid value for unix-socket-dir: "
			 "'%s': cannot listen on %s", cfg->unix_socket_dir,
			 why);
		return -1;
	}
	return 0;
}

static void
accept_batch(struct worker *w, int listen_fd)
{
	int fd, i;

	/* Bounded batch: other events of this loop get their turn. */
	for (i = 0; i < 64; i++) {
		fd = accept4(listen_fd, NULL, NULL,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("accept: %s", strerror(errno));
			return;
		}
		session_accept(w, fd);
	}
}

static void
on_accept(struct loop_watch *wt, uint32_t events)
{
	struct worker *w = qlist_entry(wt, struct worker, listen_watch);

	(void)events;
	accept_batch(w, w->listen_fd);
}

static void
on_accept_unix(struct loop_watch *wt, uint32_t events)
{
	struct worker *w = qlist_entry(wt, struct worker, unix_watch);

	(void)events;
	accept_batch(w, w->srv->unix_fd);
}

static void
on_wake(struct loop_watch *wt, uint32_t events)
{
	struct worker *w = qlist_entry(wt, struct worker, loop.wake_watch);

	(void)events;
	loop_wake_drain(&w->loop);
	session_cache_mail(w);
}

static void
bury_dead(struct worker *w)
{
	struct client *cl;
	struct backend *be;

	while (!qlist_empty(&w->graveyard)) {
		cl = qlist_entry(w->graveyard.next, struct client, link);
		qlist_remove(&cl->link);
		session_free(cl);
	}
	while (!qlist_empty(&w->dead_backends)) {
		be = qlist_entry(w->dead_backends.next, struct backend, link);
		qlist_remove(&be->link);
		backend_free(be);
	}
}

static void
close_clients(struct worker *w)
{
	struct client *cl;

	while (!qlist_empty(&w->clients)) {
		cl = qlist_entry(w->clients.next, struct client, link);
		session_close(cl, "shutdown");
	}
	pool_free_all(w);	/* also closes waiting clients' backends */
}

static void
run_rechecks(struct worker *w)
{
	int i = 0;

	while (i < w->nrecheck) {
		if (w->recheck[i].due_ms > w->now_ms) {
			i++;
			continue;
		}
		if (w->srv->tier)	/* the tag is the database's */
			(void)cache_tier_invalidate(w->srv->tier,
						    w->recheck[i].tag,
						    &w->recheck[i].tag, 1);
		cache_tag_bump(w->srv->cache, &w->recheck[i].tag, 1);
		w->recheck[i] = w->recheck[--w->nrecheck];
	}
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct server *srv = w->srv;

	buf_stash_begin();
	w->now_ms = clock_mono_ms();
	w->next_tick_ms = w->now_ms + TICK_MS;
	while (!atomic_load(&srv->stopping)) {
		loop_run_once(&w->loop, TICK_MS);
		w->now_ms = clock_mono_ms();
		if (w->now_ms >= w->next_tick_ms ||
		    atomic_load(&w->steal_requests)) {
			pool_tick(w);
			run_rechecks(w);
			w->next_tick_ms = w->now_ms + TICK_MS;
		}
		bury_dead(w);
	}
	close_clients(w);
	session_cache_mail(w);	/* waits that ended as their clients left */
	bury_dead(w);
	buf_stash_end();
	return NULL;
}

static int
worker_init(struct server *srv, struct worker *w, int id, char *err,
	    size_t errlen)
{
	w->srv = srv;
	w->id = id;
	qlist_init(&w->clients);
	qlist_init(&w->pools);
	qlist_init(&w->graveyard);
	qlist_init(&w->dead_backends);
	pthread_mutex_init(&w->mail_lock, NULL);
	if (loop_init(&w->loop, on_wake)) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		return -1;
	}
	w->listen_fd = open_listener(&srv->cfg, true, false, err, errlen);
	if (w->listen_fd < 0)
		return -1;
	w->listen_watch.cb = on_accept;
	if (loop_add_listener(&w->loop, w->listen_fd, &w->listen_watch)) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		return -1;
	}
	w->unix_watch.cb = on_accept_unix;
	if (srv->unix_fd >= 0 &&
	    loop_add_shared_listener(&w->loop, srv->unix_fd, &w->unix_watch)) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void
print_banner(const struct server *srv)
{
	const struct config *cfg = &srv->cfg;
	char up[600];

	config_upstream_display(cfg, up, sizeof(up));
	log_info("pgvalet %s listening on %s:%d%s%s -> %s (sslmode=%s)",
		 PGVALET_VERSION, cfg->listen_addr, cfg->port,
		 srv->unix_fd >= 0 ? " and " : "",
		 srv->unix_fd >= 0 ? srv->unix_path : "", up,
		 pgurl_sslmode_name(cfg->upstream.sslmode));
	log_info("pool mode %s, pool size %d, %d worker%s, client TLS %s",
		 cfg->pool_mode == POOL_SESSION ? "session" : "transaction",
		 cfg->pool_size, srv->nworkers, srv->nworkers == 1 ? "" : "s",
		 srv->client_tls ? "on" : "off");
	if (!srv->cache) {
		log_info("result cache off (%s)", cfg->mode == MODE_OBSERVE ?
			 "--mode observe serves no cached answers" :
			 cfg->cache_size ? "it needs --pool-mode transaction" :
			 "--cache-size 0");
		return;
	}
	log_info("result cache %llu MB, entries up to %llu kB, ttl %s",
		 (unsigned long long)(cfg->cache_size >> 20),
		 (unsigned long long)(cfg->cache_max_entry >> 10),
		 cfg->cache_ttl_ms ? "set" : "none");
	if (cfg->debug_skip_invalidation)
		log_warn("--debug-skip-invalidation: cached results are NEVER "
			 "invalidated; stale reads will be served (testing only)");
	if (srv->streams && cfg->invalidation == INVALIDATION_NOTIFY)
		log_info("writes that bypass the proxy: from NOTIFY triggers "
			 "pgvalet installs on the tables it caches (`pgvalet "
			 "clean` removes them)");
	else if (srv->streams)
		log_info("writes that bypass the proxy: from the logical "
			 "replication stream (publication %s, %s slot)",
			 cfg->publication, cfg->replication_slot[0] ?
			 cfg->replication_slot : "temporary");
	if (srv->tier)
		log_info("shared result tier on %s (entries expire after %d s, "
			 "lookups wait %d ms at most)",
			 cache_tier_display(srv->tier),
			 (cfg->cache_ttl_ms ? cfg->cache_ttl_ms :
					      TIER_DEFAULT_TTL_MS) / 1000,
			 cfg->cache_tier_timeout_ms);
	if (srv->push) {
		int port = cfg->push_port < 0 ? cfg->port + 2 : cfg->push_port;

		if (cfg->push_socket_dir[0])
			log_info("push channel for in-process caches on "
				 "127.0.0.1:%d and %s/.s.PGVALET.%d", port,
				 cfg->push_socket_dir, port);
		else
			log_info("push channel for in-process caches on "
				 "127.0.0.1:%d", port);
	}
}

static void
log_stream_stats(const struct server *srv)
{
	struct stream_stats st;

	if (!srv->streams)
		return;
	stream_set_stats(srv->streams, &st);
	log_info("stream: %u database%s (%u up), %llu transactions, %llu row "
		 "and %llu table evictions, %llu flushes, %llu reconnects, "
		 "lag %llu bytes / %llu ms",
		 st.databases, st.databases == 1 ? "" : "s", st.up,
		 (unsigned long long)st.transactions,
		 (unsigned long long)st.row_evictions,
		 (unsigned long long)st.table_evictions,
		 (unsigned long long)st.flushes,
		 (unsigned long long)st.reconnects,
		 (unsigned long long)st.lag_bytes,
		 (unsigned long long)st.lag_ms);
}

static void
log_bus_stats(const struct server *srv)
{
	struct bus_stats st;

	if (!srv->bus)
		return;
	bus_get_stats(srv->bus, &st);
	log_info("bus: %s, %llu published, %llu received (%llu tags "
		 "applied), %llu dropped, %llu reconnects",
		 st.up ? "up" : "down", (unsigned long long)st.published,
		 (unsigned long long)st.received,
		 (unsigned long long)st.applied_tags,
		 (unsigned long long)st.dropped,
		 (unsigned long long)st.reconnects);
}

static void
log_tier_stats(const struct server *srv)
{
	struct cache_tier_stats st;

	if (!srv->tier)
		return;
	cache_tier_get_stats(srv->tier, &st);
	log_info("cache tier: %s, %llu hits, %llu misses, %llu stores, %llu "
		 "rejected stores, %llu tags invalidated, %llu timeouts, %llu "
		 "errors, %llu times down, %llu dropped",
		 st.up ? "up" : "down", (unsigned long long)st.hits,
		 (unsigned long long)st.misses, (unsigned long long)st.stores,
		 (unsigned long long)st.rejected_stores,
		 (unsigned long long)st.invalidations,
		 (unsigned long long)st.timeouts,
		 (unsigned long long)st.errors, (unsigned long long)st.downs,
		 (unsigned long long)st.dropped);
}

static void
log_cache_stats(const struct server *srv)
{
	struct cache_stats st;

	if (!srv->cache)
		return;
	log_stream_stats(srv);
	log_bus_stats(srv);
	log_tier_stats(srv);
	cache_store_stats(srv->cache, &st);
	log_info("cache: %llu hits, %llu misses, %llu stores, %llu stale "
		 "(not stored), %llu too big, %llu evicted (%llu capacity, "
		 "%llu invalidated, %llu ttl), %llu entries, %llu bytes",
		 (unsigned long long)st.hits, (unsigned long long)st.misses,
		 (unsigned long long)st.stores,
		 (unsigned long long)st.rejected_stale,
		 (unsigned long long)st.rejected_too_big,
		 (unsigned long long)(st.evicted_capacity +
				      st.evicted_invalidated + st.evicted_ttl),
		 (unsigned long long)st.evicted_capacity,
		 (unsigned long long)st.evicted_invalidated,
		 (unsigned long long)st.evicted_ttl,
		 (unsigned long long)st.entries, (unsigned long long)st.bytes);
}

static void
log_push_stats(const struct server *srv)
{
	struct push_stats st;

	if (!srv->push)
		return;
	push_get_stats(srv->push, &st);
	log_info("push: %llu subscribers, %llu events, %llu bytes sent, %llu "
		 "dropped as too slow",
		 (unsigned long long)st.subscribers,
		 (unsigned long long)st.events,
		 (unsigned long long)st.bytes_sent,
		 (unsigned long long)st.dropped_slow);
}

/*
 * Block until SIGINT/SIGTERM; every --stats-period meanwhile, log the
 * cache, stream, bus and push counters (metrics until the dashboard).
 */
static int
wait_for_signal(struct server *srv, const sigset_t *set)
{
	int period = srv->cfg.stats_period_ms, sig;
	struct timespec ts = { period / 1000, (long)(period % 1000) * 1000000 };

	if (!period || !srv->cache) {
		while (sigwait(set, &sig))
			;
		return sig;
	}
	for (;;) {
		sig = sigtimedwait(set, NULL, &ts);
		if (sig > 0)
			return sig;
		if (errno == EAGAIN) {
			log_cache_stats(srv);
			log_push_stats(srv);
		}
	}
}

static int
start_dashboard(struct server *srv)
{
	int port = srv->cfg.dashboard_port;
	char err[300];

	if (port == -1)
		port = srv->cfg.port + 1;
	if (port == 0 || port > 65535) {
		log_info("dashboard off (--dashboard-port 0)");
		return 0;
	}
	srv->dashboard = dashboard_start(srv, port, err, sizeof(err));
	if (!srv->dashboard) {
		log_error("%s", err);
		return -1;
	}
	log_info("dashboard on http://127.0.0.1:%d/ (API writes need the "
		 "token %s)", port, srv->dashboard_token);
	return 0;
}

int
server_run(struct server *srv)
{
	char err[300];
	sigset_t set;
	int i, sig;

	/* Every thread started from here on inherits the blocked signals. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Before the workers listen: once clients get in, so can the
	 * dashboard's. */
	if (start_dashboard(srv))
		return -1;
	if (srv->stats && stats_seed_start(&srv->seeder))
		log_warn("stats: cannot start the pg_stat_statements reader");
	srv->nworkers = srv->cfg.workers;
	srv->workers = calloc((size_t)srv->nworkers, sizeof(*srv->workers));
	if (!srv->workers)
		return -1;
	for (i = 0; i < srv->nworkers; i++) {
		if (worker_init(srv, &srv->workers[i], i, err, sizeof(err))) {
			log_error("%s", err);
			return -1;
		}
	}
	if (srv->catalog && catalog_start(srv->catalog)) {
		log_error("cannot start the catalog thread");
		return -1;
	}
	if (srv->tier && cache_tier_start(srv->tier)) {
		log_error("cannot start the cache tier's thread");
		return -1;
	}
	if (srv->bus && bus_start(srv->bus)) {
		log_error("cannot start the bus thread");
		return -1;
	}
	if (srv->push && push_start(srv->push)) {
		log_error("cannot start the push channel's thread");
		return -1;
	}
	if (advisor_start(srv->advisor)) {
		log_error("cannot start the index advisor's thread");
		return -1;
	}
	/* the URL's database streams from the start; others on first use */
	if (srv->streams && !stream_db_get(srv->streams,
					   srv->cfg.upstream.dbname)) {
		log_error("cannot start the replication stream");
		return -1;
	}
	for (i = 0; i < srv->nworkers; i++)
		pthread_create(&srv->workers[i].thread, NULL, worker_main,
			       &srv->workers[i]);
	print_banner(srv);
	sig = wait_for_signal(srv, &set);
	log_info("received %s, shutting down", sig == SIGINT ? "SIGINT" :
							       "SIGTERM");
	atomic_store(&srv->stopping, true);
	log_cache_stats(srv);
	log_push_stats(srv);
	for (i = 0; i < srv->nworkers; i++) {
		loop_wake(&srv->workers[i].loop);
		pthread_join(srv->workers[i].thread, NULL);
		close(srv->workers[i].listen_fd);
		loop_destroy(&srv->workers[i].loop);
	}
	advisor_stop(srv->advisor);
	return 0;
}
