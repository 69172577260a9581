#include "pool/pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/server.h"
#include "pool/backend.h"
#include "pool/session.h"

struct pool *
pool_get(struct worker *w, const char *db, const struct user_cred *cred)
{
	struct qlist *it;
	struct pool *p;

	for (it = w->pools.next; it != &w->pools; it = it->next) {
		p = qlist_entry(it, struct pool, link);
		if (p->cred == cred && strcmp(p->shared->database, db) == 0)
			return p;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->shared = server_shared_pool(w->srv, db, cred->name);
	if (!p->shared) {
		free(p);
		return NULL;
	}
	p->w = w;
	p->cred = cred;
	qlist_init(&p->idle);
	qlist_init(&p->busy);
	qlist_init(&p->connecting);
	qlist_init(&p->waiting);
	qlist_insert_tail(&w->pools, &p->link);
	return p;
}

/* Reserve one of the pool-size slots shared by all workers. */
static bool
take_slot(struct pool *p)
{
	int limit = p->w->srv->cfg.pool_size;
	int cur = atomic_load(&p->shared->total);

	while (cur < limit) {
		if (atomic_compare_exchange_weak(&p->shared->total, &cur,
						 cur + 1))
			return true;
	}
	return false;
}

static void
attach(struct backend *be, struct client *cl)
{
	qlist_remove(&be->link);
	qlist_insert_tail(&be->pool->busy, &be->link);
	be->client = cl;
	be->releasing = false;
	cl->srv = be;
	if (cl->cancel)
		atomic_store(&cl->cancel->upstream,
			     (uint64_t)be->pid << 32 | be->key);
}

static void
open_backend(struct pool *p)
{
	char err[256];

	if (!take_slot(p)) {
		/* Others may sit on idle slots: ask for one back. */
		if (p->w->srv->nworkers > 1 && p->nwaiting > 0) {
			atomic_store(&p->shared->slot_wanted, true);
			server_request_steal(p->w->srv, p->w);
		}
		return;
	}
	if (backend_connect(p, err, sizeof(err))) {
		p->nconnecting++;
	} else {
		atomic_fetch_sub(&p->shared->total, 1);
		snprintf(p->last_error, sizeof(p->last_error), "%s", err);
		log_warn("%s", err);
	}
}

static void
enqueue(struct pool *p, struct client *cl)
{
	qlist_remove(&cl->link);
	qlist_insert_tail(&p->waiting, &cl->link);
	cl->waiting = true;
	cl->wait_since_ms = p->w->now_ms;
	p->nwaiting++;
	atomic_fetch_add(&p->shared->waiting, 1);
}

void
pool_cancel_wait(struct client *cl)
{
	struct pool *p = cl->pool;

	if (!cl->waiting)
		return;
	cl->waiting = false;
	qlist_remove(&cl->link);
	qlist_insert_tail(&cl->w->clients, &cl->link);
	p->nwaiting--;
	atomic_fetch_sub(&p->shared->waiting, 1);
}

bool
pool_acquire(struct pool *p, struct client *cl)
{
	struct backend *be;

	if (!qlist_empty(&p->idle) && p->nwaiting == 0) {
		be = qlist_entry(p->idle.next, struct backend, link);
		attach(be, cl);
		return true;
	}
	enqueue(p, cl);
	/* One new connection per waiter beyond those already opening. */
	if (p->nwaiting > p->nconnecting)
		open_backend(p);
	return false;
}

/* Hand be to the first waiting client, or park it as idle. */
static void
give_or_park(struct backend *be)
{
	struct pool *p = be->pool;
	struct client *cl;

	be->client = NULL;
	if (be->state != BE_READY)
		return;
	if (!qlist_empty(&p->waiting)) {
		cl = qlist_entry(p->waiting.next, struct client, link);
		pool_cancel_wait(cl);
		attach(be, cl);
		session_resume(cl);
		return;
	}
	/* Another worker is at the cap with clients waiting: our tick,
	 * right after this loop iteration, hands an idle backend over. */
	if (atomic_load(&p->shared->slot_wanted))
		atomic_fetch_add(&p->w->steal_requests, 1);
	qlist_remove(&be->link);
	qlist_insert_head(&p->idle, &be->link);
	be->since_ms = p->w->now_ms;
}

/*
 * Virtual statements pile up on a backend (every client's distinct
 * statements); past the cap, clear them before the next client: they are
 * re-Parsed on demand.
 */
static bool
clear_statements(struct backend *be)
{
	int cap = be->w->srv->cfg.max_server_statements;

	if ((int)be->prepared.count <= cap || be->releasing)
		return false;
	name_set_clear(&be->prepared);
	be->client = NULL;
	be->releasing = true;
	if (backend_send_hidden_query(be, "DEALLOCATE ALL"))
		backend_close(be, "out of memory");
	else
		backend_flush(be);
	return true;
}

void
pool_release(struct backend *be)
{
	struct client *cl = be->client;

	if (cl) {
		if (cl->flush_pending)
			session_flush(cl);	/* its answer, before we forget it */
		cl->srv = NULL;
		if (cl->cancel)
			atomic_store(&cl->cancel->upstream, 0);
	}
	if (clear_statements(be))
		return;		/* back in the pool after the reset */
	be->releasing = false;
	give_or_park(be);
}

void
pool_backend_ready(struct backend *be)
{
	struct pool *p = be->pool;

	if (!p->have_params) {
		buf_free(&p->params);
		if (buf_append(&p->params, be->login_params.data,
			       be->login_params.len) == 0)
			p->have_params = true;
	}
	buf_free(&be->login_params);
	p->nconnecting--;
	p->last_error[0] = 0;
	give_or_park(be);
}

/* No backend can be had: answer every waiting client with the error. */
static void
fail_waiters(struct pool *p, const char *err)
{
	struct client *cl;
	char msg[320];

	snprintf(msg, sizeof(msg), "pgvalet: %s", err);
	while (!qlist_empty(&p->waiting)) {
		cl = qlist_entry(p->waiting.next, struct client, link);
		pool_cancel_wait(cl);
		session_fail_request(cl, "08006", msg);
	}
}

void
pool_backend_gone(struct backend *be, const char *err)
{
	struct pool *p = be->pool;

	p->nbackends--;
	atomic_fetch_sub(&p->shared->total, 1);
	if (err)
		p->nconnecting--;
	if (!err)
		goto refill;
	snprintf(p->last_error, sizeof(p->last_error), "%s", err);
	log_warn("upstream connection failed: %s", err);
	/* Nothing left that could serve the waiters soon: tell them now. */
	if (p->nbackends == 0) {
		fail_waiters(p, err);
		return;
	}
refill:
	if (p->nwaiting > p->nconnecting)
		open_backend(p);
}

static void
expire_waits(struct pool *p, uint64_t now, int timeout_ms)
{
	struct client *cl;
	char msg[200];

	if (timeout_ms == 0)
		return;		/* wait as long as it takes */
	while (!qlist_empty(&p->waiting)) {
		cl = qlist_entry(p->waiting.next, struct client, link);
		if (cl->wait_since_ms + (uint64_t)timeout_ms > now)
			break;
		log_debug("client %s@%s waited since %llu, now %llu",
			  cl->user, cl->database,
			  (unsigned long long)cl->wait_since_ms,
			  (unsigned long long)now);
		pool_cancel_wait(cl);
		snprintf(msg, sizeof(msg),
			 "pgvalet: no server connection available within "
			 "pool-timeout (%d ms)", timeout_ms);
		session_fail_request(cl, "53300", msg);
	}
}

static void
expire_backends(struct pool *p, uint64_t now, const struct config *cfg)
{
	struct backend *be;

	while (!qlist_empty(&p->connecting)) {
		be = qlist_entry(p->connecting.next, struct backend, link);
		if (be->since_ms + (uint64_t)cfg->connect_timeout_ms > now)
			break;
		backend_close(be, "timeout connecting to upstream");
	}
	while (cfg->idle_timeout_ms && !qlist_empty(&p->idle)) {
		be = qlist_entry(p->idle.prev, struct backend, link);
		if (be->since_ms + (uint64_t)cfg->idle_timeout_ms > now)
			break;
		backend_close(be, "idle timeout");
	}
}

/*
 * Move an idle backend to the shared hand-off list for another worker.
 * Only from the tick, between loop iterations, so no event of this
 * worker's epoll batch can still name it.
 */
static void
hand_over(struct backend *be)
{
	struct pool *p = be->pool;
	struct shared_pool *sp = p->shared;

	log_debug("backend pid=%u handed to another worker", be->pid);
	loop_del(&p->w->loop, be->c.fd);
	qlist_remove(&be->link);
	p->nbackends--;
	be->w = NULL;
	be->pool = NULL;
	pthread_mutex_lock(&sp->handoff_lock);
	qlist_insert_tail(&sp->handoff, &be->link);
	atomic_fetch_add(&sp->handoff_count, 1);
	pthread_mutex_unlock(&sp->handoff_lock);
}

/* Other workers wait for a slot: hand over one idle backend per pool. */
static void
hand_back_idle(struct pool *p)
{
	struct backend *be;

	if (qlist_empty(&p->idle) || p->nwaiting > 0 ||
	    !atomic_exchange(&p->shared->slot_wanted, false))
		return;
	be = qlist_entry(p->idle.prev, struct backend, link);
	hand_over(be);
	server_request_steal(p->w->srv, p->w);	/* wake the one waiting */
}

static struct backend *
take_handed(struct shared_pool *sp)
{
	struct backend *be = NULL;

	if (atomic_load(&sp->handoff_count) == 0)
		return NULL;
	pthread_mutex_lock(&sp->handoff_lock);
	if (!qlist_empty(&sp->handoff)) {
		be = qlist_entry(sp->handoff.next, struct backend, link);
		qlist_remove(&be->link);
		atomic_fetch_sub(&sp->handoff_count, 1);
	}
	pthread_mutex_unlock(&sp->handoff_lock);
	return be;
}

/* Adopt backends other workers handed over while our clients wait. */
static void
adopt_handed(struct pool *p)
{
	struct backend *be;

	while (p->nwaiting > 0 && (be = take_handed(p->shared))) {
		be->w = p->w;
		be->pool = p;
		p->nbackends++;
		qlist_insert_tail(&p->idle, &be->link);
		if (loop_add(&p->w->loop, be->c.fd, &be->c.watch)) {
			backend_close(be, "epoll_ctl failed");
			continue;
		}
		give_or_park(be);
	}
}

void
pool_tick(struct worker *w)
{
	const struct config *cfg = &w->srv->cfg;
	struct qlist *it;
	struct pool *p;
	bool steal = atomic_exchange(&w->steal_requests, 0) > 0;

	for (it = w->pools.next; it != &w->pools; it = it->next) {
		p = qlist_entry(it, struct pool, link);
		expire_waits(p, w->now_ms, cfg->pool_timeout_ms);
		expire_backends(p, w->now_ms, cfg);
		adopt_handed(p);
		if (steal)
			hand_back_idle(p);
		if (p->nwaiting > p->nconnecting)
			open_backend(p);
	}
}

void
pool_free_all(struct worker *w)
{
	struct pool *p;
	struct backend *be;
	struct qlist *lists[3];
	int i;

	while (!qlist_empty(&w->pools)) {
		p = qlist_entry(w->pools.next, struct pool, link);
		lists[0] = &p->idle, lists[1] = &p->busy;
		lists[2] = &p->connecting;
		for (i = 0; i < 3; i++) {
			while (!qlist_empty(lists[i])) {
				be = qlist_entry(lists[i]->next,
						 struct backend, link);
				backend_close(be, "shutdown");
			}
		}
		qlist_remove(&p->link);
		buf_free(&p->params);
		name_set_free(&p->parsed_ok);
		free(p);
	}
}
