/*
 * stats.h - workload statistics from the observation feed: per statement
 * shape (fingerprint) calls, time (total, mean, p95, max), rows, cache
 * hits, failures, last seen and one example text; and global counters
 * (statements, qps, latency histogram, hit rate).
 *
 * Thread-safe.  Writers (observe.h listener, worker threads) go to one of
 * STATS_SHARDS shards chosen by client id, each under its own mutex, so
 * two workers rarely meet; readers (admin console, dashboard) merge the
 * shards.  Memory is bounded: each shard keeps at most max_shapes shapes
 * and drops the least recently seen one for a new one.
 *
 * A shape is "slow" when its mean time is at least threshold_duration_ms,
 * or when it takes at least threshold_impact percent of the time of all
 * statements observed (its "impact") with a mean of at least a tenth of
 * threshold_duration_ms (so a hot, fast, cached read is not called slow).
 * Thresholds can change at run time (stats_set_thresholds()).
 */
#ifndef PGVALET_OBSERVE_STATS_H
#define PGVALET_OBSERVE_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "observe/observe.h"

enum {
	STATS_SHARDS = 8,
	STATS_EXAMPLE_MAX = 512,	/* example text kept, bytes with NUL */
	STATS_DB_MAX = 64,
	/* latency histogram of all statements, Prometheus-style upper
	 * bounds in microseconds (stats_latency_bounds_us), +Inf last */
	STATS_LAT_BUCKETS = 15,
};

struct stats;

struct stats_config {
	int max_shapes;			/* per shard; at least 1 */
	int threshold_duration_ms;
	int threshold_impact_pct;	/* 0: impact never marks slow */
};

struct stats_global {
	uint64_t statements, cache_hits, failures, rows;
	double total_ms;
	double qps;			/* over the last few seconds */
	double window_mean_ms;		/* mean time over the same window */
	double window_hit_rate;		/* 0..1 over the same window */
	double hit_rate;		/* 0..1 since start */
	double mean_ms, p95_ms, p99_ms;	/* since start */
	uint64_t latency_buckets[STATS_LAT_BUCKETS];	/* not cumulative */
	double latency_sum_s;
	uint64_t shapes;		/* distinct shapes kept */
	uint64_t shapes_evicted;
	int64_t started_us;
	bool seeded;			/* pg_stat_statements was read */
};

struct stats_shape {
	uint64_t fingerprint;
	uint64_t calls, cache_hits, failures, rows;
	double total_ms, mean_ms, p95_ms, max_ms;
	double impact;			/* share of all statements' time, 0..1 */
	int64_t last_seen_us;		/* 0: seeded, not seen through us */
	bool slow;
	bool seeded;			/* counts include pg_stat_statements' */
	char db[STATS_DB_MAX];
	char example[STATS_EXAMPLE_MAX];
};

/* NULL on OOM. */
struct stats *stats_new(const struct stats_config *cfg);
void stats_free(struct stats *st);

/* The observe.h listener: arg is the struct stats. */
void stats_observe(const struct stmt_observation *o, void *arg);

void stats_set_thresholds(struct stats *st, int duration_ms, int impact_pct);
void stats_get_thresholds(const struct stats *st, int *duration_ms,
			  int *impact_pct);

/*
 * A shape's history from elsewhere (pg_stat_statements): counted as
 * calls that took total_ms in all, without latency histogram.  Calls of
 * the shape already seen through the proxy that reached Postgres are
 * taken off (pg_stat_statements counted them too).
 */
void stats_seed(struct stats *st, uint64_t fingerprint, const char *db,
		const char *sql, uint64_t calls, double total_ms,
		uint64_t rows);
void stats_mark_seeded(struct stats *st);

void stats_get_global(struct stats *st, struct stats_global *out);

/*
 * Every shape kept, merged over the shards and sorted by total time
 * (largest first), at most 'max' of them (0 = all).  *out is malloc'ed
 * (free it); returns the count, or 0 with *out NULL on OOM or none.
 */
size_t stats_get_shapes(struct stats *st, size_t max,
			struct stats_shape **out);

/* Drop every shape and counter (the dashboard's reset). */
void stats_reset(struct stats *st);

/* Upper bounds of the global latency histogram's buckets, microseconds;
 * the last is INT64_MAX (+Inf). */
extern const int64_t stats_latency_bounds_us[STATS_LAT_BUCKETS];

#endif
