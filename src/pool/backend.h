/*
 * backend.h - one connection to the upstream server: log-in, then the
 * queue of responses it owes to the client using it.
 *
 * Every message sent to the server that expects an answer pushes a
 * struct pending; server messages are matched against the queue head, so
 * the proxy knows at each byte whose answer it is, can answer messages
 * it did not forward (virtual prepared statements), swallow answers to
 * its own (state sync, re-Parse), and knows when the backend is free.
 * Owned by one worker thread.
 */
#ifndef PGVALET_POOL_BACKEND_H
#define PGVALET_POOL_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "pool/pool_types.h"

/* Open a connection for pool p (non-blocking); NULL if it failed at once. */
struct backend *backend_connect(struct pool *p, char *err, size_t errlen);
/* Close and free (deferred to the end of the loop iteration). */
void backend_close(struct backend *be, const char *why);
/* Append a message for the server, owing 'pend' (NULL: owes nothing). */
int backend_send(struct backend *be, const uint8_t *msg, size_t len,
		 const struct pending *pend);
/* Queue our own simple Query whose answers are swallowed. */
int backend_send_hidden_query(struct backend *be, const char *sql);
/* Process what the server sent (also called when the client drained). */
void backend_process(struct backend *be);
void backend_flush(struct backend *be);
/* Nothing owed, not in a transaction: can go back to the pool. */
bool backend_is_idle(const struct backend *be);
/* Outside a transaction (or also inside one: in_block), with nothing owed to the
 * client (only our own state-sync queries may be queued). */
bool backend_owes_nothing(const struct backend *be, bool in_block);
/* The request sent last (the tail of the queue), or NULL. */
struct pending *backend_last_pending(struct backend *be);
void backend_free(struct backend *be);

#endif
