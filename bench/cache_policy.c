/*
 * cache_policy.c - hit ratios of the result cache's eviction (S3-FIFO, the
 * real store from src/cache/store.c) against LRU and FIFO on the same
 * synthetic traces, and the store's get throughput on hits.
 *
 * Every trace is generated once (fixed seed) and replayed against each
 * policy: a get, and on a miss a put of the key's value, as the proxy
 * does.  All entries have the same size, and LRU and FIFO are given
 * exactly as many entries as the store's byte budget holds (about 5 % of
 * the key space), so the comparison is entry for entry.  LRU and FIFO are
 * exact, single-queue simulations; the store is the production code,
 * sharded 16 ways.
 *
 *   cache_policy [requests per trace, default 10000000; 0: throughput only]
 */
#include <pthread.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "cache/store.h"

enum {
	NKEYS = 1000000,
	VALUE_LEN = 64,
	SCAN_EVERY = 1000000,	/* requests between scans */
	SCAN_LEN = 200000,	/* fresh keys per scan */
	WARMUP = 1000000,	/* requests not counted */
	TP_OPS = 4000000,	/* gets per throughput thread */
	TP_KEYS = 40000,	/* resident keys they get */
	NONE = -1,
};

struct trace {
	const char *name;
	uint32_t *ids;		/* ids >= NKEYS are scan keys */
	size_t n;
	uint32_t max_id;
};

struct result {
	uint64_t hits, counted;
};

/* ---- traces -------------------------------------------------------------- */

static uint64_t
rng_next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static double
rng_unit(uint64_t *x)
{
	return (double)(rng_next(x) >> 11) / (double)(1ull << 53);
}

/* cdf[i] = P(rank <= i) for Zipf(alpha) over NKEYS ranks. */
static double *
zipf_cdf(double alpha)
{
	double *cdf = malloc(NKEYS * sizeof(*cdf)), sum = 0;
	size_t i;

	if (!cdf)
		abort();
	for (i = 0; i < NKEYS; i++) {
		sum += 1.0 / pow((double)(i + 1), alpha);
		cdf[i] = sum;
	}
	for (i = 0; i < NKEYS; i++)
		cdf[i] /= sum;
	return cdf;
}

static uint32_t
zipf_draw(const double *cdf, uint64_t *rng)
{
	double u = rng_unit(rng);
	size_t lo = 0, hi = NKEYS - 1;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (uint32_t)lo;
}

/* Zipf requests; with scans, SCAN_LEN fresh keys every SCAN_EVERY. */
static struct trace
trace_make(const char *name, double alpha, size_t n, int scans)
{
	struct trace t = { .name = name, .n = n, .max_id = NKEYS };
	double *cdf = zipf_cdf(alpha);
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	uint32_t next_scan = NKEYS;
	size_t i = 0, k;

	t.ids = malloc(n * sizeof(*t.ids));
	if (!t.ids)
		abort();
	while (i < n) {
		t.ids[i++] = zipf_draw(cdf, &rng);
		if (scans && i % SCAN_EVERY == 0) {
			for (k = 0; k < SCAN_LEN && i < n; k++)
				t.ids[i++] = next_scan++;
		}
	}
	t.max_id = next_scan;
	free(cdf);
	return t;
}

/* Hits count only after the warm-up, and only on non-scan keys. */
static void
tally(struct result *r, const struct trace *t, size_t i, int hit)
{
	if (i < WARMUP || t->ids[i] >= NKEYS)
		return;
	r->counted++;
	r->hits += (uint64_t)hit;
}

/* ---- the store ----------------------------------------------------------- */

struct key {
	uint32_t id;
	uint32_t salt;
};

static uint64_t
key_of(uint32_t id, struct key *k)
{
	*k = (struct key){ .id = id, .salt = 0x5ca1ab1e };
	return XXH3_64bits(k, sizeof(*k));
}

static struct cache_store *
store_new(size_t max_bytes)
{
	struct cache_store_config cfg = { .max_bytes = max_bytes };
	struct cache_store *s = cache_store_new(&cfg);

	if (!s)
		abort();
	return s;
}

/* get, then put on a miss; 1 on a hit. */
static int
store_access(struct cache_store *s, uint32_t id)
{
	static const uint8_t value[VALUE_LEN];
	struct cache_entry *e;
	struct key k;
	uint64_t h = key_of(id, &k);

	e = cache_get(s, h, &k, sizeof(k), 0);
	if (e) {
		cache_entry_release(e);
		return 1;
	}
	if (cache_put(s, h, &k, sizeof(k), value, VALUE_LEN, NULL, 0) !=
	    CACHE_STORED)
		abort();
	return 0;
}

/* What one entry costs the budget. */
static size_t
entry_charge(void)
{
	struct cache_store *s = store_new(16 << 20);
	struct cache_stats a, b;

	cache_store_stats(s, &a);
	store_access(s, 1);
	cache_store_stats(s, &b);
	cache_store_free(s);
	return (size_t)(b.bytes - a.bytes);
}

/*
 * A budget whose room for entries is 'entries' entries, and the number
 * the store really holds (each of the 16 shards holds a whole number).
 */
static size_t
budget_for(size_t entries, size_t *holds)
{
	size_t charge = entry_charge(), budget = entries * charge, room;
	struct cache_store *s;
	struct cache_stats st;
	int i;

	/* The metadata grows with the budget: settle in a few rounds. */
	for (i = 0; i < 3; i++) {
		s = store_new(budget);
		cache_store_stats(s, &st);
		cache_store_free(s);
		budget = entries * charge + (size_t)st.metadata_bytes;
	}
	room = budget - (size_t)st.metadata_bytes;
	*holds = 16 * (room / 16 / charge);
	return budget;
}

static struct result
run_store(const struct trace *t, size_t budget)
{
	struct cache_store *s = store_new(budget);
	struct result r = { 0 };
	size_t i;

	for (i = 0; i < t->n; i++)
		tally(&r, t, i, store_access(s, t->ids[i]));
	cache_store_free(s);
	return r;
}

/* ---- LRU and FIFO, exact, counted in entries ----------------------------- */

static struct result
run_lru(const struct trace *t, size_t cap)
{
	int32_t *prev = malloc(t->max_id * sizeof(int32_t));
	int32_t *next = malloc(t->max_id * sizeof(int32_t));
	uint8_t *in = calloc(t->max_id, 1);
	int32_t head = NONE, tail = NONE, id, victim;
	struct result r = { 0 };
	size_t i, count = 0;

	if (!prev || !next || !in)
		abort();
	for (i = 0; i < t->n; i++) {
		id = (int32_t)t->ids[i];
		tally(&r, t, i, in[id]);
		if (in[id]) {
			if (head == id)
				continue;
			/* Unlink, then push at the head below. */
			next[prev[id]] = next[id];
			if (next[id] != NONE)
				prev[next[id]] = prev[id];
			else
				tail = prev[id];
		} else if (count == cap) {
			victim = tail;
			tail = prev[victim];
			next[tail] = NONE;
			in[victim] = 0;
		} else {
			count++;
		}
		in[id] = 1;
		prev[id] = NONE;
		next[id] = head;
		if (head != NONE)
			prev[head] = id;
		head = id;
		if (tail == NONE)
			tail = id;
	}
	free(prev);
	free(next);
	free(in);
	return r;
}

static struct result
run_fifo(const struct trace *t, size_t cap)
{
	uint32_t *ring = malloc(cap * sizeof(uint32_t));
	uint8_t *in = calloc(t->max_id, 1);
	struct result r = { 0 };
	size_t i, pos = 0, count = 0;
	uint32_t id;

	if (!ring || !in)
		abort();
	for (i = 0; i < t->n; i++) {
		id = t->ids[i];
		tally(&r, t, i, in[id]);
		if (in[id])
			continue;
		if (count == cap)
			in[ring[pos]] = 0;
		else
			count++;
		ring[pos] = id;
		in[id] = 1;
		pos = (pos + 1) % cap;
	}
	free(ring);
	free(in);
	return r;
}

/* ---- throughput ---------------------------------------------------------- */

struct tp_arg {
	struct cache_store *s;
	const uint32_t *ids;	/* resident keys */
	size_t nids;
	uint64_t seed;
	uint64_t misses;
	double cpu_s;		/* this thread's CPU time */
	pthread_barrier_t *start;
};

static double
clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *
tp_thread(void *arg)
{
	struct tp_arg *a = arg;
	uint64_t rng = a->seed;
	struct cache_entry *e;
	const uint8_t *d;
	struct key k;
	size_t i, len;
	uint64_t h;
	volatile uint8_t sink = 0;

	pthread_barrier_wait(a->start);
	a->cpu_s = clock_s(CLOCK_THREAD_CPUTIME_ID);
	for (i = 0; i < TP_OPS; i++) {
		h = key_of(a->ids[rng_next(&rng) % a->nids], &k);
		e = cache_get(a->s, h, &k, sizeof(k), 0);
		if (!e) {
			a->misses++;
			continue;
		}
		d = cache_entry_data(e, &len);
		sink ^= d[len - 1];
		cache_entry_release(e);
	}
	a->cpu_s = clock_s(CLOCK_THREAD_CPUTIME_ID) - a->cpu_s;
	(void)sink;
	return NULL;
}

/*
 * Print gets per second of wall time over 'threads' threads, all hitting
 * resident keys, and per second of CPU time: on a box shared with other
 * work the second one still shows what a get costs.
 */
static void
throughput(struct cache_store *s, const uint32_t *ids, size_t nids,
	   int threads)
{
	pthread_t th[8];
	struct tp_arg args[8];
	pthread_barrier_t start;
	double t0, t1, cpu = 0, ops = (double)TP_OPS * threads;
	int i;

	pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
	for (i = 0; i < threads; i++) {
		args[i] = (struct tp_arg){ .s = s, .ids = ids, .nids = nids,
					   .seed = 0x1234567ull * (i + 1),
					   .start = &start };
		if (pthread_create(&th[i], NULL, tp_thread, &args[i]))
			abort();
	}
	t0 = clock_s(CLOCK_MONOTONIC);
	pthread_barrier_wait(&start);
	for (i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	t1 = clock_s(CLOCK_MONOTONIC);
	pthread_barrier_destroy(&start);
	for (i = 0; i < threads; i++) {
		if (args[i].misses)
			abort();
		cpu += args[i].cpu_s;
	}
	printf("  %d thread%s: %6.2f M gets/s, %6.2f M gets per CPU-second\n",
	       threads, threads > 1 ? "s" : " ", ops / (t1 - t0) / 1e6,
	       ops / cpu / 1e6);
}

static void
run_throughput(size_t budget)
{
	struct cache_store *s = store_new(budget);
	uint32_t *ids = malloc(NKEYS * sizeof(*ids));
	size_t n = 0, id;
	struct key k;

	if (!ids)
		abort();
	/* 40,000 keys fit in the 50,000-entry budget. */
	for (id = 0; id < TP_KEYS; id++)
		store_access(s, (uint32_t)id);
	/* Keep only the keys that stayed: every timed get is a hit. */
	for (id = 0; id < NKEYS; id++) {
		struct cache_entry *e = cache_get(
			s, key_of((uint32_t)id, &k), &k, sizeof(k), 0);

		if (e) {
			ids[n++] = (uint32_t)id;
			cache_entry_release(e);
		}
	}
	printf("\nget throughput on hits (%zu resident keys, key 8 B, "
	       "value %d B):\n", n, VALUE_LEN);
	throughput(s, ids, n, 1);
	throughput(s, ids, n, 2);
	free(ids);
	cache_store_free(s);
}

/* ---- main ---------------------------------------------------------------- */

static double
ratio(struct result r)
{
	return r.counted ? (double)r.hits / (double)r.counted : 0;
}

int
main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000000;
	size_t holds, budget = budget_for(NKEYS / 20, &holds);
	struct trace traces[3];
	int i;

	if (n == 0) {
		run_throughput(budget);
		return 0;
	}
	if (n <= WARMUP) {
		fprintf(stderr, "need 0 or more than %d requests\n", WARMUP);
		return 2;
	}
	traces[0] = trace_make("zipf 0.9", 0.9, n, 0);
	traces[1] = trace_make("zipf 1.1", 1.1, n, 0);
	traces[2] = trace_make("zipf 0.9 + scans", 0.9, n, 1);
	printf("keys %d, requests %zu (first %d not counted), cache %zu "
	       "entries = %.1f %% of keys, budget %zu B, entry %zu B\n",
	       NKEYS, n, WARMUP, holds, 100.0 * (double)holds / NKEYS, budget,
	       entry_charge());
	printf("scans: %d fresh keys every %d requests, not counted\n\n",
	       SCAN_LEN, SCAN_EVERY);
	printf("%-18s %9s %9s %9s\n", "trace", "S3-FIFO", "LRU", "FIFO");
	for (i = 0; i < 3; i++) {
		struct trace *t = &traces[i];

		printf("%-18s %9.4f %9.4f %9.4f\n", t->name,
		       ratio(run_store(t, budget)), ratio(run_lru(t, holds)),
		       ratio(run_fifo(t, holds)));
		fflush(stdout);
		free(t->ids);
	}
	run_throughput(budget);
	return 0;
}
