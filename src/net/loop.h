/*
 * loop.h - one worker's event loop: raw epoll, edge-triggered.
 *
 * Each fd is registered once for IN|OUT|RDHUP|ET; the callback gets the
 * event bits.  Owned and run by one thread; only loop_wake() may be
 * called from another thread.
 */
#ifndef PGVALET_NET_LOOP_H
#define PGVALET_NET_LOOP_H

#include <stdint.h>

struct loop_watch {
	void (*cb)(struct loop_watch *w, uint32_t events);
};

struct loop {
	int epfd;
	int wakefd;			/* eventfd: cross-thread wake-ups */
	struct loop_watch wake_watch;
};

int loop_init(struct loop *l, void (*on_wake)(struct loop_watch *, uint32_t));
void loop_destroy(struct loop *l);
/* Register fd edge-triggered for read and write readiness. */
int loop_add(struct loop *l, int fd, struct loop_watch *w);
/* Register fd for read readiness only, level-triggered (listeners). */
int loop_add_listener(struct loop *l, int fd, struct loop_watch *w);
/* The same for a listener several loops watch: a new connection wakes
 * one of them, not all (EPOLLEXCLUSIVE). */
int loop_add_shared_listener(struct loop *l, int fd, struct loop_watch *w);
void loop_del(struct loop *l, int fd);
/* Wait up to timeout_ms and dispatch; returns events handled or -1. */
int loop_run_once(struct loop *l, int timeout_ms);
/* Thread-safe: make loop_run_once() return soon. */
void loop_wake(struct loop *l);
/* Drain the wake eventfd (called from the wake callback). */
void loop_wake_drain(struct loop *l);

#endif
