/*
 * server.h - the process: settings, credentials, TLS contexts, the worker
 * threads and what they share (pool counters, cancel keys).
 *
 * struct server is built by server_init() in the main thread and is
 * read-only afterwards except for the fields marked shared, which use
 * atomics or the named mutex.  Each struct worker is owned by its thread.
 */
#ifndef PGVALET_CORE_SERVER_H
#define PGVALET_CORE_SERVER_H

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/config.h"
#include "core/qlist.h"
#include "observe/seed.h"
#include "net/loop.h"
#include "proto/scram.h"

struct server;
struct cache_store;
struct catalog;
struct plan_table;
struct stream_set;
struct push;
struct bus;
struct cache_tier;
struct cache_wait;
struct fp_cache;
struct stats;
struct dashboard;
struct advisor;
struct audit;
struct nplus1;

/* Someone allowed to log in: the upstream URL's user or an auth-file one. */
struct user_cred {
	char name[128];
	char password[256];		/* plaintext, "" when only a secret */
	struct scram_secret secret;	/* what clients are checked against */
};

/* Counters shared by every worker's pool for one (database, user). */
struct shared_pool {
	struct shared_pool *next;	/* server->pools, under pools_lock */
	char database[128];
	char user[128];
	atomic_int total;		/* server connections open or opening */
	atomic_int waiting;		/* clients waiting, all workers */
	atomic_bool slot_wanted;	/* a worker is at the cap with waiters */
	/* Idle backends given up by one worker for another to adopt. */
	pthread_mutex_t handoff_lock;
	struct qlist handoff;		/* struct backend.link */
	atomic_int handoff_count;
	/* Set by the first client that logged in with SCRAM, for users
	 * known only by secret: lets the proxy log in upstream as them. */
	pthread_mutex_t key_lock;
	bool have_keys;
	uint8_t client_key[SCRAM_KEY_LEN];
};

/* What the admin console shows of a logged-in client (SHOW CLIENTS).
 * Its worker writes 'state'; readers hold server.clients_lock. */
enum client_info_state { CLIENT_IDLE, CLIENT_ACTIVE, CLIENT_WAITING };

struct client_info {
	struct qlist link;		/* server->client_infos */
	uint64_t id;
	char user[128];
	char database[128];
	char addr[64];
	int port;
	int64_t connected_us;
	bool admin;
	atomic_int state;		/* enum client_info_state */
};

/* A client's cancel key, findable from any worker. */
struct cancel_slot {
	struct cancel_slot *next;	/* hash chain, under cancel_lock */
	uint32_t pid, secret;		/* what the client was given */
	_Atomic uint64_t upstream;	/* backend pid<<32 | key, 0 if none */
};

struct worker {
	struct server *srv;
	int id;
	pthread_t thread;
	struct loop loop;
	int listen_fd;
	struct loop_watch listen_watch;
	struct loop_watch unix_watch;	/* on srv->unix_fd, shared */
	struct qlist clients;		/* struct client.link, not waiting */
	struct qlist pools;		/* struct pool.link */
	struct qlist dirty;		/* conns with output to flush */
	struct qlist graveyard;		/* clients closed during dispatch */
	struct qlist dead_backends;	/* backends closed during dispatch */
	uint64_t now_ms;		/* monotonic, read once per loop */
	uint64_t next_tick_ms;
	uint32_t rng;			/* xorshift state for cancel keys */
	atomic_int steal_requests;	/* other workers want a slot */
	/* Database tags to invalidate again later: a client left while its
	 * COMMIT was on the wire, so the commit may land after our first
	 * invalidation. */
	struct {
		uint64_t tag, due_ms;
	} recheck[16];
	int nrecheck;
	/* Clients whose wait for another client's identical query ended
	 * (woken from any thread; run by this worker). */
	pthread_mutex_t mail_lock;
	struct cache_wait *mail;
};

struct server {
	struct config cfg;
	struct sockaddr_storage upstream_addr;
	socklen_t upstream_addrlen;
	char upstream_host[256];	/* for verify-full */
	SSL_CTX *client_tls;		/* NULL: SSLRequest answered 'N' */
	SSL_CTX *upstream_tls;		/* NULL: sslmode=disable */
	struct user_cred *users;
	size_t nusers;
	struct scram_secret mock_secret;	/* for unknown users */
	struct worker *workers;
	int nworkers;
	/* --unix-socket-dir: one listener all workers accept from. */
	int unix_fd;			/* -1: none */
	bool unix_bound;		/* we made unix_path: unlink it */
	char unix_path[300];
	atomic_bool stopping;
	atomic_int nclients;		/* all workers, for --max-clients */
	_Atomic uint64_t next_client_id;	/* last client's id */
	pthread_mutex_t pools_lock;
	struct shared_pool *pools;
	pthread_mutex_t cancel_lock;
	struct cancel_slot *cancel[1024];
	/* The result cache; all NULL when it is off. */
	struct cache_store *cache;
	struct catalog *catalog;
	struct plan_table *plans;
	/* Writes that bypass the proxy (NULL with --invalidation ttl), and
	 * the channel telling in-process caches what changed (NULL: off). */
	struct stream_set *streams;
	struct push *push;
	struct bus *bus;		/* --bus: other proxies (NULL: none) */
	struct cache_tier *tier;	/* --cache-tier: shared L2 (NULL: none) */
	/* Statement observation (observe/): fingerprints of texts seen,
	 * workload statistics (NULL: --stats off), the dashboard (NULL:
	 * none) and the token its API writes need. */
	struct fp_cache *fingerprints;
	struct stats *stats;
	struct stats_seeder seeder;
	struct dashboard *dashboard;
	char dashboard_token[128];
	_Atomic int64_t cache_ttl_ms;	/* changed by POST /api/settings */
	int64_t started_us;
	pthread_mutex_t clients_lock;
	struct qlist client_infos;	/* struct client_info.link */
	/* The self-optimizer (observe/): index advisor and its audit log,
	 * N+1 and deep-OFFSET detection. */
	struct advisor *advisor;
	struct audit *audit;
	struct nplus1 *nplus1;
};

/* Build everything from cfg: resolve, TLS, auth file; -1 with err set. */
int server_init(struct server *srv, const struct config *cfg, char *err,
		size_t errlen);
/* Start the workers and block until SIGINT/SIGTERM; then clean up. */
int server_run(struct server *srv);
void server_free(struct server *srv);

const struct user_cred *server_find_user(const struct server *srv,
					 const char *name);
struct shared_pool *server_shared_pool(struct server *srv, const char *db,
				       const char *user);
void server_cancel_register(struct server *srv, struct cancel_slot *slot);
void server_cancel_unregister(struct server *srv, struct cancel_slot *slot);
/* Forward a CancelRequest for (pid, secret) to the upstream, if known. */
void server_cancel_forward(struct server *srv, uint32_t pid, uint32_t secret);
void server_client_register(struct server *srv, struct client_info *ci);
void server_client_unregister(struct server *srv, struct client_info *ci);
/* Ask other workers to give back an idle connection of this pool. */
void server_request_steal(struct server *srv, struct worker *from);

#endif
