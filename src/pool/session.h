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
void guc_ops_free(struct guc_op *ops, uint16_t n);

#endif
