/*
 * seed.h - start the workload statistics from what Postgres already knows:
 * one read of pg_stat_statements (when the extension is installed in the
 * upstream URL's database), in a thread of its own, at start-up.
 *
 * The thread connects with libpq (blocking, its own connection), feeds
 * stats_seed() and exits; the workers never wait for it.
 */
#ifndef PGVALET_OBSERVE_SEED_H
#define PGVALET_OBSERVE_SEED_H

#include <pthread.h>

#include "core/pgurl.h"
#include "observe/stats.h"

struct stats_seeder {
	pthread_t thread;
	struct stats *stats;
	const struct pg_url *upstream;	/* outlives the thread */
	int max_shapes;
	int started;
};

/* 0, or -1 when the thread cannot start (the stats simply start empty). */
int stats_seed_start(struct stats_seeder *sd);
/* Wait for the thread (it gives up within its connect/statement timeouts). */
void stats_seed_join(struct stats_seeder *sd);

#endif
