/*
 * session.h - one client connection: start-up, TLS, SCRAM, then the
 * message loop that forwards to (or answers instead of) its backend.
 *
 * Owned by one worker thread.  A client holds a backend for a whole
 * session (session mode) or one transaction (transaction mode).
 */
#ifndef PGVALET_POOL_SESSION_H
#define PGVALET_POOL_SESSION_H

#include "pool/pool_types.h"

void session_accept(struct worker *w, int fd);
/* A backend was attached, or the backend's output drained: go on. */
void session_resume(struct client *cl);
/* Answer the client's pending request with an error, keep the session
 * (pool timeout, upstream down). */
void session_fail_request(struct client *cl, const char *sqlstate,
			  const char *msg);
/* The backend died under the client: tell it and close. */
void session_backend_lost(struct client *cl, const char *why);
void session_close(struct client *cl, const char *why);
void session_flush(struct client *cl);
void session_free(struct client *cl);
/* Resume the clients whose coalesced cache wait ended (worker thread). */
void session_cache_mail(struct worker *w);
/*
 * State changes of a finished statement: ok adds copies of ops to the
 * current batch, !ok drops the batch (the statement's transaction or
 * pipeline failed).  Called by backend.c.
 */
void session_apply_ops(struct client *cl, const struct guc_op *ops,
		       uint16_t n, bool ok);
/* ReadyForQuery reached the client: settle the batch against the
 * transaction status; idle = the backend owes nothing more. */
void session_ready(struct client *cl, uint8_t tx_status, bool rolled_back,
		   bool idle);
/*
 * In-process caches (the Python package's L1).  A client that starts with
 * the setting pgvalet.l1=on (options=-c pgvalet.l1=on, or a start-up
 * parameter) gets, just before a ReadyForQuery, a NoticeResponse
 * (severity LOG, SQLSTATE 00000) whose message is one of:
 *
 *   pgvalet-l1 fill <token> <tag>,<tag>,... <db>
 *	the statement's answer is cacheable and the proxy cached it (or
 *	answered it from its cache): an in-process cache may keep it under
 *	the key (token, statement, parameters) with these tags, until the
 *	push channel names one of them (or flushes db).
 *   pgvalet-l1 evict <tag>,<tag>,... <db>
 *   pgvalet-l1 evict-db <db>
 *	the transaction that just ended (committed or autocommit) wrote:
 *	drop what carries these tags (or all of db) before going on, so the
 *	writing process reads its own write.
 *
 * token and tags are 16 lowercase hex digits; token names the session
 * state (database, user, settings) the answer depends on; db runs to the
 * end of the message.  Only one fill notice per ReadyForQuery, and only
 * when the request held exactly one cacheable statement.
 *
 * Called by backend.c with the ReadyForQuery of pending p, before it is
 * forwarded: finishes p's capture early to know whether it was stored.
 */
void session_before_ready(struct client *cl, struct pending *p,
			  uint8_t tx_status);
void guc_ops_free(struct guc_op *ops, uint16_t n);
/* The statement observed in r got its whole answer: report it to
 * observe.h's listeners.  Called by backend.c. */
void session_observe(struct client *cl, const struct obs_rec *r);
/* Rows in a CommandComplete tag body ("SELECT 5", "INSERT 0 5"); 0 if
 * it names none. */
uint64_t session_tag_rows(const uint8_t *tag, size_t len);

#endif
