/*
 * pool.h - server connections per (database, user), per worker.
 *
 * A worker's pool hands idle backends to clients, opens new ones while
 * the pool-size cap shared by all workers allows, queues clients FIFO
 * otherwise, and times out waits, connects and idle backends on the
 * worker's tick.  Single thread; the cap is an atomic in shared_pool.
 */
#ifndef PGVALET_POOL_POOL_H
#define PGVALET_POOL_POOL_H

#include <stdbool.h>

#include "pool/pool_types.h"

struct pool *pool_get(struct worker *w, const char *db,
		      const struct user_cred *cred);
/* Give cl a backend now (true) or queue it (false; resumed later). */
bool pool_acquire(struct pool *p, struct client *cl);
/* The client is done with its backend: next waiter or idle list. */
void pool_release(struct backend *be);
/* A new backend finished logging in. */
void pool_backend_ready(struct backend *be);
/* A backend is being closed: fix counts; err set if it never worked. */
void pool_backend_gone(struct backend *be, const char *err);
void pool_cancel_wait(struct client *cl);
/* Timeouts and cross-worker hand-back; called a few times a second. */
void pool_tick(struct worker *w);
void pool_free_all(struct worker *w);

#endif
