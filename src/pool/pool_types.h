/*
 * pool_types.h - the objects of the pooler (types only; functions live
 * in session.h, backend.h and pool.h).
 *
 *   client --(srv)--> backend --(pool)--> pool --(shared)--> shared_pool
 *      ^                 |                  per worker         all workers
 *      +----(client)-----+
 *
 * Every object here belongs to one worker thread.
 */
#ifndef PGVALET_POOL_POOL_TYPES_H
#define PGVALET_POOL_POOL_TYPES_H

#include <stdbool.h>
#include <stdint.h>

#include "core/qlist.h"
#include "net/buf.h"
#include "net/conn.h"
#include "pool/gucstate.h"
#include "pool/sqlclass.h"
#include "pool/stmtmap.h"
#include "proto/scram.h"

struct worker;
struct stream_db;
struct shared_pool;
struct capture;
struct plan;
struct user_cred;
struct cancel_slot;
struct client_info;

/* A session-state change made by a client statement, applied when the
 * statement's transaction commits. */
struct guc_op {
	enum sql_kind kind;
	char name[SQL_NAME_MAX];
	char *sql;
};

/* What the backend owes for one message sent to it (see backend.c). */
enum pend_kind {
	PEND_QUERY,		/* Q or F: everything up to Z */
	PEND_ONE,		/* P, B or C: one 1/2/3 */
	PEND_DESCRIBE,		/* up to T or n */
	PEND_EXECUTE,		/* up to C, I or s */
	PEND_SYNC,		/* up to Z */
	PEND_SYNTH,		/* nothing from the server: we answer */
	PEND_HIDDEN_PARSE,	/* our re-Parse: swallow the 1 */
	PEND_HIDDEN_QUERY,	/* our state sync or reset: swallow to Z */
};

enum synth_kind {
	SYNTH_PARSE_COMPLETE,
	SYNTH_CLOSE_COMPLETE,
	SYNTH_DEALLOCATE,	/* CommandComplete + ReadyForQuery */
	SYNTH_ERROR_EXISTS,	/* 42P05 for a duplicate statement name */
	SYNTH_BYTES,		/* the messages in 'bytes' */
};

/* A statement being observed (observe/observe.h), from its arrival to
 * the end of its answer: one allocation with the text after it. */
struct obs_rec {
	int64_t started_us;
	uint64_t params_hash;
	uint64_t tag_rows;	/* from CommandComplete tags */
	uint64_t data_rows;	/* DataRow messages seen */
	bool failed;
	uint64_t fingerprint;	/* of sql when known; 0 = compute it */
	size_t sql_len;
	char sql[];		/* NUL-terminated */
};

struct pending {
	uint8_t kind;		/* enum pend_kind */
	uint8_t synth;		/* enum synth_kind */
	bool failed;		/* an ErrorResponse came for it */
	uint64_t stmt_hash;	/* Parse: server statement it creates */
	char *stmt_name;	/* Parse: client name it creates (owned) */
	struct guc_op *ops;	/* Q/Execute: state changes (owned) */
	uint16_t nops;
	uint8_t *bytes;		/* SYNTH_BYTES: messages to send (owned) */
	uint32_t nbytes;
	struct capture *capture;	/* Q, Sync: response to cache (owned) */
	struct capture *feed;		/* Describe, Execute: the group's
					   capture, owned by its Sync */
	struct obs_rec *obs;		/* Q/Execute being observed (owned) */
};

enum { DIRTY_MAX = 64 };

enum client_state {
	CL_STARTUP,		/* waiting for the start-up packet */
	CL_TLS,			/* TLS handshake */
	CL_AUTH_INIT,		/* sent AuthenticationSASL */
	CL_AUTH_CONT,		/* sent SASLContinue */
	CL_WAIT_LOGIN,		/* authenticated, need server parameters */
	CL_ACTIVE,
	CL_CLOSED,
};

struct client {
	struct conn c;
	struct worker *w;
	struct qlist link;		/* worker->clients or pool->waiting */
	enum client_state state;
	bool waiting;
	bool pinned;			/* session-bound feature used */
	bool skip_until_sync;		/* extended-protocol error recovery */
	bool in_block;			/* tx_settings valid */
	bool flush_pending;
	uint64_t wait_since_ms;
	char user[128];
	char database[128];
	char *startup;			/* raw key\0value\0... pairs */
	size_t startup_len;
	const struct user_cred *cred;	/* NULL: unknown user (mock auth) */
	struct scram_server scram;
	struct pool *pool;
	struct backend *srv;
	struct cancel_slot *cancel;
	struct stream_db *stream;	/* its database's stream, or NULL */
	struct stmt_map stmts;		/* virtualised names (transaction) */
	struct guc_state startup_settings;	/* from the start-up packet */
	struct guc_state settings;		/* committed session state */
	struct guc_state tx_settings;		/* inside a transaction block */
	struct guc_op *batch_ops;	/* extended: executed since Sync */
	uint16_t nbatch_ops;
	/* unnamed statement / portal classification (extended protocol) */
	enum sql_kind unnamed_kind;
	char unnamed_guc[SQL_NAME_MAX];
	char *unnamed_sql;
	bool unnamed_local;		/* unnamed statement answered by us */
	bool portal_local;		/* unnamed portal answered by us */
	enum sql_kind portal_kind;
	char portal_guc[SQL_NAME_MAX];
	char *portal_sql;
	/* result cache: what the open transaction wrote, invalidated when
	 * it ends (before the client hears of it) */
	bool dirty_flood;		/* the whole database */
	bool dirty_forget;		/* and the catalog facts */
	uint8_t n_dirty;
	uint64_t dirty[DIRTY_MAX];
	char *unnamed_query;		/* text of the unnamed statement */
	uint8_t *unnamed_parse;		/* its Parse body (after the name),
					   when answered from the cache: no
					   backend has it yet */
	size_t unnamed_parse_len;
	struct capture *group_capture;	/* extended group being sent */
	char *lazy_begin;		/* BEGIN answered by us, not sent yet */
	bool lazy_failed;		/* ... and a statement in it failed */
	struct cache_wait *cache_wait;	/* parked behind an identical query */
	struct cache_wait *spare_wait;	/* next lookup's waiter, unused yet */
	struct read_miss *read_miss;	/* the Query just missed (reused) */
	struct fp_memo *fp_memo;	/* the last Bind-ed texts' fingerprints */
	unsigned fp_memo_next;		/* the way to replace next */
	bool no_claim;			/* just woken: look up, never wait */
	uint8_t *claim_key;		/* we lead this key's miss (owned) */
	size_t claim_keylen;
	uint64_t claim_hash;
	char *tier_stamp;		/* the shared tier missed this key: */
	uint64_t tier_stamp_hash;	/* a store must match (cache/tier.h) */
	bool block_clean;		/* a lazy READ COMMITTED block, sent, that
					   has run only cacheable reads: its
					   reads are what autocommit would see */
	struct plan *portal_plan;	/* unnamed portal's writes, or NULL */
	bool l1;			/* start-up pgvalet.l1=on: an in-process
					   cache rides on this client (session.h) */
	/* statement observation (only while observe_enabled()) */
	uint64_t id;			/* unique per connection, never reused */
	int64_t arrival_us;		/* the message being handled arrived */
	int64_t held_us;		/* arrival of a message left waiting */
	struct obs_rec *bound;		/* last Bind's statement, for Execute */
	uint64_t bound_portal;		/* hash of that Bind's portal name */
	struct stmt_map obs_stmts;	/* session mode: named statements' texts */
	bool admin;			/* on the admin console (pool/admin.h) */
	struct client_info *info;	/* in server->client_infos once in */
};

enum backend_state {
	BE_CONNECTING,
	BE_SSL_REQUEST,
	BE_TLS,
	BE_LOGIN,
	BE_READY,		/* idle in the pool or serving a client */
	BE_CLOSED,
};

struct backend {
	struct conn c;
	struct worker *w;
	struct pool *pool;
	struct client *client;
	struct qlist link;		/* pool->idle / ->busy / ->connecting */
	enum backend_state state;
	uint8_t tx_status;		/* from the last ReadyForQuery */
	bool skipping;			/* server discards until Sync */
	bool last_tag_rollback;
	bool releasing;			/* client gone: reset then pool */
	uint32_t pid, key;		/* BackendKeyData */
	uint64_t state_sig;		/* session state it has (gucstate) */
	uint64_t since_ms;		/* connect start / idle since */
	struct name_set prepared;	/* server statements present */
	struct pending *q;		/* ring of owed responses */
	uint32_t qhead, qlen, qcap;
	struct scram_client *scram;
	struct buf login_params;	/* ParameterStatus messages at login */
};

enum { STATE_SIG_UNKNOWN = 1 };	/* real signatures are never 1 */

struct pool {
	struct qlist link;		/* worker->pools */
	struct worker *w;
	struct shared_pool *shared;
	const struct user_cred *cred;
	struct qlist idle;		/* most recently used first */
	struct qlist busy;
	struct qlist connecting;
	struct qlist waiting;		/* clients, FIFO */
	int nwaiting;
	int nbackends;			/* this worker's, any state */
	int nconnecting;		/* of which still logging in */
	struct buf params;		/* ParameterStatus messages for login */
	struct name_set parsed_ok;	/* statements some backend accepted */
	bool have_params;
	char last_error[256];
};

#endif
