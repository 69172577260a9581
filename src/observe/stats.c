/*
 * stats.c - the shards behind stats.h.  Each shard: a chained hash table
 * of shapes plus a recency list (most recent first) for eviction, global
 * counters, and a ring of per-second counters for the "now" figures.
 */
#include "observe/stats.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/qlist.h"

enum {
	HIST_BUCKETS = 56,	/* two per octave of microseconds: to ~4.5 h */
	TABLE_SIZE = 1024,	/* hash buckets per shard */
	RING_SECONDS = 8,
	WINDOW_SECONDS = 5,	/* qps etc. over the last complete seconds */
};

const int64_t stats_latency_bounds_us[STATS_LAT_BUCKETS] = {
	100,     250,     500,      1000,     2500,     5000,    10000, 25000,
	50000,   100000,  250000,   500000,   1000000,  5000000, INT64_MAX,
};

struct shape {
	struct shape *next;		/* hash chain */
	struct qlist lru;		/* shard->recent, most recent first */
	uint64_t fingerprint;
	uint64_t calls, cache_hits, failures, rows;
	uint64_t seeded_calls;		/* of calls, from pg_stat_statements */
	int64_t total_us, max_us, last_seen_us;
	uint64_t hist[HIST_BUCKETS];
	char db[STATS_DB_MAX];
	char example[STATS_EXAMPLE_MAX];
};

struct second {
	int64_t sec;
	uint64_t calls, hits;
	int64_t total_us;
};

struct shard {
	pthread_mutex_t lock;
	struct shape *table[TABLE_SIZE];
	struct qlist recent;
	int count;
	uint64_t evicted;
	/* global counters of this shard */
	uint64_t statements, cache_hits, failures, rows;
	int64_t total_us;
	uint64_t lat[STATS_LAT_BUCKETS];
	uint64_t hist[HIST_BUCKETS];
	struct second ring[RING_SECONDS];
};

struct stats {
	int max_shapes;
	atomic_int threshold_duration_ms;
	atomic_int threshold_impact_pct;
	atomic_bool seeded;
	int64_t started_us;
	struct shard shards[STATS_SHARDS];
};

struct stats *
stats_new(const struct stats_config *cfg)
{
	struct stats *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	st->max_shapes = cfg->max_shapes > 0 ? cfg->max_shapes : 1;
	atomic_init(&st->threshold_duration_ms, cfg->threshold_duration_ms);
	atomic_init(&st->threshold_impact_pct, cfg->threshold_impact_pct);
	st->started_us = clock_unix_us();
	for (int i = 0; i < STATS_SHARDS; i++) {
		pthread_mutex_init(&st->shards[i].lock, NULL);
		qlist_init(&st->shards[i].recent);
	}
	return st;
}

static void
shard_clear(struct shard *sh)
{
	struct shape *s;

	while (!qlist_empty(&sh->recent)) {
		s = qlist_entry(sh->recent.next, struct shape, lru);
		qlist_remove(&s->lru);
		free(s);
	}
	memset(sh->table, 0, sizeof(sh->table));
	sh->count = 0;
	sh->evicted = 0;
	sh->statements = sh->cache_hits = sh->failures = sh->rows = 0;
	sh->total_us = 0;
	memset(sh->lat, 0, sizeof(sh->lat));
	memset(sh->hist, 0, sizeof(sh->hist));
	memset(sh->ring, 0, sizeof(sh->ring));
}

void
stats_free(struct stats *st)
{
	if (!st)
		return;
	for (int i = 0; i < STATS_SHARDS; i++) {
		shard_clear(&st->shards[i]);
		pthread_mutex_destroy(&st->shards[i].lock);
	}
	free(st);
}

void
stats_reset(struct stats *st)
{
	for (int i = 0; i < STATS_SHARDS; i++) {
		pthread_mutex_lock(&st->shards[i].lock);
		shard_clear(&st->shards[i]);
		pthread_mutex_unlock(&st->shards[i].lock);
	}
}

void
stats_set_thresholds(struct stats *st, int duration_ms, int impact_pct)
{
	atomic_store(&st->threshold_duration_ms, duration_ms);
	atomic_store(&st->threshold_impact_pct, impact_pct);
}

void
stats_get_thresholds(const struct stats *st, int *duration_ms,
		     int *impact_pct)
{
	*duration_ms = atomic_load(&st->threshold_duration_ms);
	*impact_pct = atomic_load(&st->threshold_impact_pct);
}

void
stats_mark_seeded(struct stats *st)
{
	atomic_store(&st->seeded, true);
}

/* ---- recording ------------------------------------------------------------ */

/* Bucket 0: under 1 us; then two per octave: [2^b, 1.5*2^b), [1.5*2^b, 2^(b+1)). */
static int
hist_bucket(int64_t us)
{
	int b, idx;

	if (us < 1)
		return 0;
	b = 63 - __builtin_clzll((unsigned long long)us);
	idx = 1 + 2 * b + (b ? (int)((us >> (b - 1)) & 1) : 0);
	return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* Upper bound of a bucket, microseconds. */
static double
hist_upper_us(int idx)
{
	int b;

	if (idx == 0)
		return 1;
	b = (idx - 1) / 2;
	return (double)(1ULL << b) * ((idx - 1) % 2 ? 2.0 : 1.5);
}

static int
lat_bucket(int64_t us)
{
	int i = 0;

	while (us > stats_latency_bounds_us[i])
		i++;
	return i;
}

static void
copy_text(char *dst, size_t cap, const char *src, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

static struct shape **
find_slot(struct shard *sh, uint64_t fingerprint)
{
	struct shape **link = &sh->table[(fingerprint >> 7) % TABLE_SIZE];

	while (*link && (*link)->fingerprint != fingerprint)
		link = &(*link)->next;
	return link;
}

static void
evict_oldest(struct shard *sh)
{
	struct shape *old = qlist_entry(sh->recent.prev, struct shape, lru);
	struct shape **link = find_slot(sh, old->fingerprint);

	*link = old->next;
	qlist_remove(&old->lru);
	free(old);
	sh->count--;
	sh->evicted++;
}

/* The shape of fingerprint in sh, made most recent; NULL on OOM. */
static struct shape *
get_shape(struct stats *st, struct shard *sh, uint64_t fingerprint,
	  const char *db, const char *sql, size_t sql_len)
{
	struct shape **link = find_slot(sh, fingerprint), *s = *link;

	if (s) {
		if (sh->recent.next != &s->lru) {	/* not the newest yet */
			qlist_remove(&s->lru);
			qlist_insert_head(&sh->recent, &s->lru);
		}
		return s;
	}
	if (sh->count >= st->max_shapes) {
		evict_oldest(sh);
		link = find_slot(sh, fingerprint);
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->fingerprint = fingerprint;
	copy_text(s->db, sizeof(s->db), db, strlen(db));
	copy_text(s->example, sizeof(s->example), sql, sql_len);
	s->next = *link;
	*link = s;
	qlist_insert_head(&sh->recent, &s->lru);
	sh->count++;
	return s;
}

static void
count_second(struct shard *sh, const struct stmt_observation *o,
	     int64_t now_us)
{
	int64_t sec = now_us / 1000000;
	struct second *r = &sh->ring[sec % RING_SECONDS];

	if (r->sec != sec) {
		memset(r, 0, sizeof(*r));
		r->sec = sec;
	}
	r->calls++;
	r->hits += o->cache_hit;
	r->total_us += o->duration_us;
}

void
stats_observe(const struct stmt_observation *o, void *arg)
{
	struct stats *st = arg;
	struct shard *sh = &st->shards[o->client_id % STATS_SHARDS];
	int64_t us = o->duration_us > 0 ? o->duration_us : 0;
	int64_t now_us = o->started_us + us;
	int hb = hist_bucket(us), lb = lat_bucket(us);
	struct shape *s;

	pthread_mutex_lock(&sh->lock);
	sh->statements++;
	sh->cache_hits += o->cache_hit;
	sh->failures += o->failed;
	sh->rows += o->rows;
	sh->total_us += us;
	sh->lat[lb]++;
	sh->hist[hb]++;
	count_second(sh, o, now_us);
	s = get_shape(st, sh, o->fingerprint, o->db, o->sql, o->sql_len);
	if (s) {
		s->calls++;
		s->cache_hits += o->cache_hit;
		s->failures += o->failed;
		s->rows += o->rows;
		s->total_us += us;
		if (us > s->max_us)
			s->max_us = us;
		s->last_seen_us = now_us;
		s->hist[hb]++;
	}
	pthread_mutex_unlock(&sh->lock);
}

/* Calls of fingerprint seen through us that reached Postgres (not hits). */
static uint64_t
upstream_calls(struct stats *st, uint64_t fingerprint)
{
	uint64_t n = 0;
	struct shape *s;

	for (int i = 0; i < STATS_SHARDS; i++) {
		pthread_mutex_lock(&st->shards[i].lock);
		if ((s = *find_slot(&st->shards[i], fingerprint)))
			n += s->calls - s->seeded_calls - s->cache_hits;
		pthread_mutex_unlock(&st->shards[i].lock);
	}
	return n;
}

void
stats_seed(struct stats *st, uint64_t fingerprint, const char *db,
	   const char *sql, uint64_t calls, double total_ms, uint64_t rows)
{
	struct shard *sh = &st->shards[fingerprint % STATS_SHARDS];
	uint64_t seen = upstream_calls(st, fingerprint), keep;
	struct shape *s;

	/* pg_stat_statements also counts what ran through us before it was
	 * read: keep only the older calls (time and rows pro rata). */
	if (calls <= seen)
		return;
	keep = calls - seen;
	total_ms = total_ms * (double)keep / (double)calls;
	rows = (uint64_t)((double)rows * (double)keep / (double)calls);
	calls = keep;
	pthread_mutex_lock(&sh->lock);
	s = get_shape(st, sh, fingerprint, db, sql, strlen(sql));
	if (s) {
		s->calls += calls;
		s->seeded_calls += calls;
		s->rows += rows;
		s->total_us += (int64_t)(total_ms * 1000.0);
	}
	pthread_mutex_unlock(&sh->lock);
}

/* ---- reading -------------------------------------------------------------- */

/* The value under which 'q' (0..1) of the histogram's counts fall, ms. */
static double
hist_quantile_ms(const uint64_t *hist, double q)
{
	uint64_t total = 0, seen = 0;
	int i;

	for (i = 0; i < HIST_BUCKETS; i++)
		total += hist[i];
	if (!total)
		return 0;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += hist[i];
		if ((double)seen >= q * (double)total)
			break;
	}
	return hist_upper_us(i < HIST_BUCKETS ? i : HIST_BUCKETS - 1) / 1000.0;
}

void
stats_get_global(struct stats *st, struct stats_global *out)
{
	uint64_t hist[HIST_BUCKETS] = { 0 }, wcalls = 0, whits = 0;
	int64_t total_us = 0, wus = 0, now_sec = clock_unix_us() / 1000000;
	int64_t window = (now_sec - st->started_us / 1000000);
	int i, j;

	memset(out, 0, sizeof(*out));
	if (window > WINDOW_SECONDS)
		window = WINDOW_SECONDS;
	if (window < 1)
		window = 1;
	for (i = 0; i < STATS_SHARDS; i++) {
		struct shard *sh = &st->shards[i];

		pthread_mutex_lock(&sh->lock);
		out->statements += sh->statements;
		out->cache_hits += sh->cache_hits;
		out->failures += sh->failures;
		out->rows += sh->rows;
		out->shapes += (uint64_t)sh->count;
		out->shapes_evicted += sh->evicted;
		total_us += sh->total_us;
		for (j = 0; j < STATS_LAT_BUCKETS; j++)
			out->latency_buckets[j] += sh->lat[j];
		for (j = 0; j < HIST_BUCKETS; j++)
			hist[j] += sh->hist[j];
		for (j = 0; j < RING_SECONDS; j++) {
			const struct second *r = &sh->ring[j];

			if (r->sec < now_sec - window || r->sec >= now_sec)
				continue;
			wcalls += r->calls;
			whits += r->hits;
			wus += r->total_us;
		}
		pthread_mutex_unlock(&sh->lock);
	}
	out->total_ms = (double)total_us / 1000.0;
	out->latency_sum_s = (double)total_us / 1e6;
	if (out->statements) {
		out->mean_ms = out->total_ms / (double)out->statements;
		out->hit_rate = (double)out->cache_hits /
				(double)out->statements;
	}
	out->p95_ms = hist_quantile_ms(hist, 0.95);
	out->p99_ms = hist_quantile_ms(hist, 0.99);
	out->qps = (double)wcalls / (double)window;
	if (wcalls) {
		out->window_mean_ms = (double)wus / 1000.0 / (double)wcalls;
		out->window_hit_rate = (double)whits / (double)wcalls;
	}
	out->started_us = st->started_us;
	out->seeded = atomic_load(&st->seeded);
}

static int
by_fingerprint(const void *a, const void *b)
{
	const struct shape *x = *(const struct shape *const *)a;
	const struct shape *y = *(const struct shape *const *)b;

	if (x->fingerprint != y->fingerprint)
		return x->fingerprint < y->fingerprint ? -1 : 1;
	return x->last_seen_us < y->last_seen_us ? 1 :
	       x->last_seen_us > y->last_seen_us ? -1 : 0;
}

static int
by_total(const void *a, const void *b)
{
	const struct stats_shape *x = a, *y = b;

	if (x->total_ms != y->total_ms)
		return x->total_ms < y->total_ms ? 1 : -1;
	return x->fingerprint < y->fingerprint ? -1 : 1;
}

/* Copies of every shard's shapes (one allocation each); NULL if none. */
static struct shape **
snapshot(struct stats *st, size_t *n)
{
	struct shape **all = NULL, **grown, *s, *c;
	struct qlist *it;
	size_t cap = 0;

	*n = 0;
	for (int i = 0; i < STATS_SHARDS; i++) {
		struct shard *sh = &st->shards[i];

		pthread_mutex_lock(&sh->lock);
		if (*n + (size_t)sh->count > cap) {
			cap = *n + (size_t)sh->count + 64;
			grown = realloc(all, cap * sizeof(*all));
			if (!grown) {
				pthread_mutex_unlock(&sh->lock);
				break;
			}
			all = grown;
		}
		for (it = sh->recent.next; it != &sh->recent; it = it->next) {
			s = qlist_entry(it, struct shape, lru);
			if (!(c = malloc(sizeof(*c))))
				break;
			*c = *s;
			all[(*n)++] = c;
		}
		pthread_mutex_unlock(&sh->lock);
	}
	return all;
}

/* Fold b into a (same fingerprint; a is the more recently seen). */
static void
merge_into(struct shape *a, const struct shape *b)
{
	a->calls += b->calls;
	a->seeded_calls += b->seeded_calls;
	a->cache_hits += b->cache_hits;
	a->failures += b->failures;
	a->rows += b->rows;
	a->total_us += b->total_us;
	if (b->max_us > a->max_us)
		a->max_us = b->max_us;
	for (int i = 0; i < HIST_BUCKETS; i++)
		a->hist[i] += b->hist[i];
}

static void
describe(const struct stats *st, const struct shape *s, double all_ms,
	 struct stats_shape *out)
{
	int dur_ms = atomic_load(&st->threshold_duration_ms);
	int impact_pct = atomic_load(&st->threshold_impact_pct);

	memset(out, 0, sizeof(*out));
	out->fingerprint = s->fingerprint;
	out->calls = s->calls;
	out->cache_hits = s->cache_hits;
	out->failures = s->failures;
	out->rows = s->rows;
	out->total_ms = (double)s->total_us / 1000.0;
	out->mean_ms = s->calls ? out->total_ms / (double)s->calls : 0;
	out->max_ms = (double)s->max_us / 1000.0;
	out->p95_ms = s->calls > s->seeded_calls ?
			      hist_quantile_ms(s->hist, 0.95) : out->mean_ms;
	if (s->max_us && out->p95_ms > out->max_ms)
		out->p95_ms = out->max_ms;
	out->impact = all_ms > 0 ? out->total_ms / all_ms : 0;
	out->last_seen_us = s->last_seen_us;
	out->seeded = s->seeded_calls > 0;
	out->slow = s->calls &&
		    (out->mean_ms >= dur_ms ||
		     (impact_pct > 0 && out->impact * 100.0 >= impact_pct &&
		      out->mean_ms * 10.0 >= dur_ms));
	memcpy(out->db, s->db, sizeof(out->db));
	memcpy(out->example, s->example, sizeof(out->example));
}

size_t
stats_get_shapes(struct stats *st, size_t max, struct stats_shape **out)
{
	struct shape **all;
	size_t n, i, m = 0;
	double all_ms = 0;

	*out = NULL;
	all = snapshot(st, &n);
	if (!n) {
		free(all);
		return 0;
	}
	qsort(all, n, sizeof(*all), by_fingerprint);
	for (i = 0; i < n; i++) {
		if (m && all[m - 1]->fingerprint == all[i]->fingerprint) {
			merge_into(all[m - 1], all[i]);
			free(all[i]);
		} else {
			all[m++] = all[i];
		}
	}
	for (i = 0; i < m; i++)
		all_ms += (double)all[i]->total_us / 1000.0;
	*out = malloc(m * sizeof(**out));
	for (i = 0; i < m; i++) {
		if (*out)
			describe(st, all[i], all_ms, &(*out)[i]);
		free(all[i]);
	}
	free(all);
	if (!*out)
		return 0;
	qsort(*out, m, sizeof(**out), by_total);
	return max && m > max ? max : m;
}
