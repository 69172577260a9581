/*
 * test_store.c - the shared result cache (cache/store.h): lookups with
 * full key compare, version-stamp invalidation and the stale-set race,
 * TTL, the byte cap, S3-FIFO scan resistance, refcounts, coalescing of
 * in-flight misses, captured responses (cache/capture.h),
 * and a multi-threaded stress run.  Hashes are chosen
 * by hand where a test needs a collision or one particular shard (the top
 * 4 bits pick it); time is always the now_ms passed in.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "cache/capture.h"
#include "cache/store.h"

enum { MiB = 1 << 20 };

static struct cache_store *
store_new(size_t max_bytes, size_t max_entry, uint64_t ttl_ms)
{
	struct cache_store_config cfg = { .max_bytes = max_bytes,
					  .max_entry = max_entry,
					  .ttl_ms = ttl_ms };
	struct cache_store *s = cache_store_new(&cfg);

	assert_non_null(s);
	return s;
}

static uint64_t
hash_of(const char *key)
{
	return XXH3_64bits(key, strlen(key));
}

/* A hash that lands in shard 'shard', otherwise the key's own. */
static uint64_t
hash_in_shard(const char *key, unsigned shard)
{
	return (hash_of(key) & ~(0xfull << 60)) | (uint64_t)shard << 60;
}

static enum cache_put_result
put_str(struct cache_store *s, const char *key, const char *val,
	const struct cache_stamp *st, uint64_t now)
{
	return cache_put(s, hash_of(key), key, strlen(key), val, strlen(val),
			 st, now);
}

/* Hit with exactly 'val', or miss when val is NULL. */
static void
expect_get(struct cache_store *s, const char *key, const char *val,
	   uint64_t now)
{
	struct cache_entry *e = cache_get(s, hash_of(key), key, strlen(key),
					  now);
	const uint8_t *d;
	size_t len;

	if (!val) {
		assert_null(e);
		return;
	}
	assert_non_null(e);
	d = cache_entry_data(e, &len);
	assert_int_equal(len, strlen(val));
	assert_memory_equal(d, val, len);
	cache_entry_release(e);
}

static struct cache_stats
stats_of(const struct cache_store *s)
{
	struct cache_stats st;

	cache_store_stats(s, &st);
	assert_true(st.bytes <= st.budget_bytes);
	return st;
}

static struct cache_stamp
stamp_of(const struct cache_store *s, const uint64_t *tags, size_t n)
{
	struct cache_stamp st;

	assert_int_equal(cache_stamp_take(s, &st, tags, n), 0);
	return st;
}

/* ---- basics -------------------------------------------------------------- */

static void
test_hit_miss(void **state)
{
	struct cache_store *s = store_new(4 * MiB, 0, 0);
	struct cache_stats st;

	(void)state;
	expect_get(s, "q1", NULL, 0);
	assert_int_equal(put_str(s, "q1", "result one", NULL, 0),
			 CACHE_STORED);
	expect_get(s, "q1", "result one", 1);
	expect_get(s, "q2", NULL, 1);
	expect_get(s, "q", NULL, 1);	/* a prefix is another key */
	/* Empty key and empty value are legal. */
	assert_int_equal(put_str(s, "", "", NULL, 0), CACHE_STORED);
	expect_get(s, "", "", 2);

	st = stats_of(s);
	assert_int_equal(st.hits, 2);
	assert_int_equal(st.misses, 3);
	assert_int_equal(st.stores, 2);
	assert_int_equal(st.entries, 2);
	assert_int_equal(st.budget_bytes, 4 * MiB);
	assert_true(st.metadata_bytes > 0);
	assert_true(st.bytes > st.metadata_bytes);
	cache_store_free(s);
}

static void
test_collision(void **state)
{
	struct cache_store *s = store_new(4 * MiB, 0, 0);
	uint64_t h = 0x1234;
	struct cache_entry *e;
	const uint8_t *d;
	size_t len;

	(void)state;
	/* Same hash, different keys: the key bytes decide. */
	assert_int_equal(cache_put(s, h, "alpha", 5, "A", 1, NULL, 0),
			 CACHE_STORED);
	assert_null(cache_get(s, h, "bravo", 5, 0));
	assert_null(cache_get(s, h, "alph", 4, 0));
	assert_null(cache_get(s, h, "alphab", 6, 0));
	assert_int_equal(cache_put(s, h, "bravo", 5, "B", 1, NULL, 0),
			 CACHE_STORED);
	e = cache_get(s, h, "alpha", 5, 0);
	assert_non_null(e);
	d = cache_entry_data(e, &len);
	assert_int_equal(len, 1);
	assert_int_equal(d[0], 'A');
	cache_entry_release(e);
	e = cache_get(s, h, "bravo", 5, 0);
	assert_non_null(e);
	d = cache_entry_data(e, &len);
	assert_int_equal(d[0], 'B');
	cache_entry_release(e);
	/* Same key under another hash is not found either. */
	assert_null(cache_get(s, h + 1, "alpha", 5, 0));
	assert_int_equal(stats_of(s).entries, 2);
	cache_store_free(s);
}

static void
test_replace(void **state)
{
	struct cache_store *s = store_new(4 * MiB, 0, 0);
	struct cache_entry *old;
	const uint8_t *d;
	size_t len;

	(void)state;
	assert_int_equal(put_str(s, "k", "old value", NULL, 0), CACHE_STORED);
	old = cache_get(s, hash_of("k"), "k", 1, 0);
	assert_non_null(old);
	assert_int_equal(put_str(s, "k", "new", NULL, 0), CACHE_STORED);
	expect_get(s, "k", "new", 0);
	/* The holder of the old entry still reads the old bytes. */
	d = cache_entry_data(old, &len);
	assert_int_equal(len, 9);
	assert_memory_equal(d, "old value", 9);
	cache_entry_release(old);
	assert_int_equal(stats_of(s).entries, 1);
	cache_store_free(s);
}

static void
test_overhead(void **state)
{
	struct cache_store *s = store_new(4 * MiB, 0, 0);
	uint64_t tags[3] = { 1, 2, 3 };
	struct cache_stamp st = stamp_of(s, tags, 3);
	struct cache_stats a, b;
	size_t raw = 10 + 100 + 3 * 16, charged;
	char data[100] = { 0 };

	(void)state;
	assert_true(cache_entry_overhead() <= 96);
	a = stats_of(s);
	assert_int_equal(a.bytes, a.metadata_bytes);
	assert_int_equal(cache_put(s, 7, "0123456789", 10, data, 100, &st, 0),
			 CACHE_STORED);
	b = stats_of(s);
	charged = b.bytes - a.bytes;
	/* Header, key, data, tags, rounded up to malloc's 16 bytes. */
	assert_true(charged >= raw + cache_entry_overhead());
	assert_true(charged < raw + cache_entry_overhead() + 16);
	cache_store_free(s);
}

/* ---- invalidation -------------------------------------------------------- */

static void
test_bump_invalidates(void **state)
{
	struct cache_store *s = store_new(4 * MiB, 0, 0);
	uint64_t t1 = 101, t2 = 202, both[2] = { 101, 202 };
	struct cache_stamp s1 = stamp_of(s, &t1, 1);
	struct cache_stamp s2 = stamp_of(s, &t2, 1);
	struct cache_stamp s12 = stamp_of(s, both, 2);
	struct cache_stats st;
	uint64_t v;

	(void)state;
	assert_int_equal(put_str(s, "a", "A", &s1, 0), CACHE_STORED);
	assert_int_equal(put_str(s, "b", "B", &s2, 0), CACHE_STORED);
	assert_int_equal(put_str(s, "ab", "AB", &s12, 0), CACHE_STORED);
	assert_int_equal(put_str(s, "none", "N", NULL, 0), CACHE_STORED);
	expect_get(s, "a", "A", 0);

	v = cache_tag_version(s, t1);
	cache_tag_bump(s, &t1, 1);
	assert_int_equal(cache_tag_version(s, t1), v + 1);
	expect_get(s, "a", NULL, 1);
	expect_get(s, "ab", NULL, 1);
	expect_get(s, "b", "B", 1);
	expect_get(s, "none", "N", 1);
	st = stats_of(s);
	assert_int_equal(st.evicted_invalidated, 2);
	assert_int_equal(st.invalidations, 1);
	assert_int_equal(st.entries, 2);

	/* A fresh stamp stores again; bumping both tags at once. */
	s1 = stamp_of(s, &t1, 1);
	assert_int_equal(put_str(s, "a", "A2", &s1, 2), CACHE_STORED);
	expect_get(s, "a", "A2", 2);
	cache_tag_bump(s, both, 2);
	expect_get(s, "a", NULL, 3);
	expect_get(s, "b", NULL, 3);
	assert_int_equal(stats_of(s).invalidations, 3);
	cache_store_free(s);
}

static void
test_stale_set_race(void **state)
{
	struct cache_store *s = store_new(4 * MiB, 0, 0);
	uint64_t t = 77, other = 78;
	struct cache_stamp st;

	(void)state;
	/* stamp, bump (a write lands while the query runs), put: refused. */
	st = stamp_of(s, &t, 1);
	cache_tag_bump(s, &t, 1);
	assert_int_equal(put_str(s, "q", "old", &st, 0), CACHE_STALE);
	expect_get(s, "q", NULL, 0);
	assert_int_equal(stats_of(s).rejected_stale, 1);

	/* stamp, put, bump: stored, then never served. */
	st = stamp_of(s, &t, 1);
	assert_int_equal(put_str(s, "q", "v1", &st, 0), CACHE_STORED);
	expect_get(s, "q", "v1", 0);
	cache_tag_bump(s, &t, 1);
	expect_get(s, "q", NULL, 0);

	/* A bump of an unrelated tag in flight does not spoil the put. */
	st = stamp_of(s, &t, 1);
	cache_tag_bump(s, &other, 1);
	assert_int_equal(put_str(s, "q", "v2", &st, 0), CACHE_STORED);
	expect_get(s, "q", "v2", 0);
	cache_store_free(s);
}

static void
test_stamp_limits(void **state)
{
	struct cache_store *s = store_new(4 * MiB, 0, 0);
	uint64_t tags[CACHE_MAX_TAGS + 1];
	struct cache_stamp st;
	size_t i;

	(void)state;
	for (i = 0; i <= CACHE_MAX_TAGS; i++)
		tags[i] = 1000 + i;
	assert_int_equal(cache_stamp_take(s, &st, tags, CACHE_MAX_TAGS + 1),
			 -1);
	assert_int_equal(cache_stamp_take(s, &st, tags, CACHE_MAX_TAGS), 0);
	assert_int_equal(st.n, CACHE_MAX_TAGS);
	assert_int_equal(put_str(s, "many", "tags", &st, 0), CACHE_STORED);
	expect_get(s, "many", "tags", 0);
	/* The last tag counts as much as the first. */
	cache_tag_bump(s, &tags[CACHE_MAX_TAGS - 1], 1);
	expect_get(s, "many", NULL, 0);
	/* A forged stamp with too many tags is never stored. */
	st.n = CACHE_MAX_TAGS + 1;
	assert_int_equal(put_str(s, "forged", "x", &st, 0), CACHE_STALE);
	cache_store_free(s);
}

/* ---- TTL and size limits ------------------------------------------------- */

static void
test_ttl(void **state)
{
	struct cache_store *s = store_new(4 * MiB, 0, 1000);

	(void)state;
	assert_int_equal(put_str(s, "k", "v", NULL, 5000), CACHE_STORED);
	expect_get(s, "k", "v", 5000);
	expect_get(s, "k", "v", 5999);
	expect_get(s, "k", NULL, 6000);
	assert_int_equal(stats_of(s).evicted_ttl, 1);
	assert_int_equal(stats_of(s).entries, 0);
	/* A replacement restarts the clock. */
	assert_int_equal(put_str(s, "k", "v", NULL, 6000), CACHE_STORED);
	assert_int_equal(put_str(s, "k", "w", NULL, 6900), CACHE_STORED);
	expect_get(s, "k", "w", 7500);
	cache_store_free(s);

	/* ttl 0: never expires. */
	s = store_new(4 * MiB, 0, 0);
	assert_int_equal(put_str(s, "k", "v", NULL, 0), CACHE_STORED);
	expect_get(s, "k", "v", UINT64_MAX / 2);
	cache_store_free(s);
}

/* Fill shard 3 at t=0, then add at t=2000: the expired go first. */
static void
test_ttl_evicted_first(void **state)
{
	struct cache_store *s = store_new(2 * MiB, 0, 1000);
	struct cache_stats st;
	char key[32], val[200];
	int i;

	(void)state;
	memset(val, 'x', sizeof(val));
	for (i = 0; i < 2000; i++) {
		snprintf(key, sizeof(key), "old%d", i);
		assert_int_equal(cache_put(s, hash_in_shard(key, 3), key,
					   strlen(key), val, sizeof(val),
					   NULL, 0),
				 CACHE_STORED);
	}
	st = stats_of(s);
	assert_true(st.evicted_capacity > 0);	/* the shard is full */
	for (i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "new%d", i);
		assert_int_equal(cache_put(s, hash_in_shard(key, 3), key,
					   strlen(key), val, sizeof(val),
					   NULL, 2000),
				 CACHE_STORED);
	}
	assert_int_equal(stats_of(s).evicted_capacity, st.evicted_capacity);
	assert_true(stats_of(s).evicted_ttl >= 100);
	cache_store_free(s);
}

static void
test_max_entry(void **state)
{
	struct cache_store *s = store_new(4 * MiB, 100, 0);
	static const char data[200 * 1024];

	(void)state;
	/* key + value up to max_entry. */
	assert_int_equal(cache_put(s, 1, "0123456789", 10, data, 90, NULL, 0),
			 CACHE_STORED);
	assert_int_equal(cache_put(s, 2, "0123456789", 10, data, 91, NULL, 0),
			 CACHE_TOO_BIG);
	assert_int_equal(stats_of(s).rejected_too_big, 1);
	cache_store_free(s);

	/* max_entry 0: bounded by a shard's share of the budget (~1/16). */
	s = store_new(2 * MiB, 0, 0);
	assert_int_equal(cache_put(s, 3, "k", 1, data, sizeof(data), NULL, 0),
			 CACHE_TOO_BIG);
	assert_int_equal(cache_put(s, 3, "k", 1, data, 64 * 1024, NULL, 0),
			 CACHE_STORED);
	assert_int_equal(stats_of(s).entries, 1);
	cache_store_free(s);
}

static void
test_disabled(void **state)
{
	/* Off, tiny, and just short of the tables a store needs (~45 KiB). */
	size_t budgets[] = { 0, 1000, 40 * 1024 };
	struct cache_entry *e = NULL;
	struct cache_waiter w = { 0 };
	struct cache_stats st;
	uint64_t t = 5;
	size_t i;

	(void)state;
	for (i = 0; i < 3; i++) {
		struct cache_store *s = store_new(budgets[i], 0, 0);
		struct cache_stamp sp = stamp_of(s, &t, 1);

		assert_int_equal(put_str(s, "k", "v", &sp, 0), CACHE_DISABLED);
		expect_get(s, "k", NULL, 0);
		/* No claims either: waiters would only wait for nothing. */
		assert_int_equal(cache_claim(s, hash_of("k"), "k", 1, 0, &w,
					     &e),
				 CACHE_CLAIM_MISS);
		assert_null(e);
		cache_tag_bump(s, &t, 1);
		assert_int_equal(cache_tag_version(s, t), 1);
		st = stats_of(s);
		assert_int_equal(st.bytes, 0);
		assert_int_equal(st.entries, 0);
		assert_int_equal(st.misses, 2);
		assert_int_equal(st.budget_bytes, budgets[i]);
		cache_store_free(s);
	}
}

/* ---- the byte cap and the policy ----------------------------------------- */

static uint64_t
rng_next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void
test_byte_cap(void **state)
{
	struct cache_store *s = store_new(8 * MiB, 64 * 1024, 0);
	static uint8_t data[64 * 1024];
	uint64_t rng = 42, tags[4];
	struct cache_stamp sp;
	struct cache_stats st;
	char key[32];
	size_t len, kl;
	int i;

	(void)state;
	memset(data, 0xab, sizeof(data));
	for (i = 0; i < 100000; i++) {
		kl = (size_t)snprintf(key, sizeof(key), "key-%d", i);
		/* Mostly small, some up to 60 KiB; 0-3 tags. */
		len = rng_next(&rng) % 8 ? rng_next(&rng) % 2000
					 : rng_next(&rng) % (60 * 1024);
		tags[0] = rng_next(&rng);
		tags[1] = tags[0] + 1;
		tags[2] = tags[0] + 2;
		sp = stamp_of(s, tags, i % 4);
		assert_int_equal(cache_put(s, XXH3_64bits(key, kl), key, kl,
					   data, len, &sp, (uint64_t)i),
				 CACHE_STORED);
		cache_store_stats(s, &st);
		assert_true(st.bytes <= st.budget_bytes);
	}
	assert_true(st.evicted_capacity > 0);
	assert_true(st.entries > 1000);
	/* Nearly full: the cap is used, not just respected. */
	assert_true(st.bytes > st.budget_bytes / 10 * 9);
	assert_int_equal(st.stores - st.evicted_capacity, st.entries);
	cache_store_free(s);
}

/* get, and put the value on a miss; true on a hit. */
static bool
access_key(struct cache_store *s, const char *prefix, int i, uint64_t now)
{
	char key[32], val[160];
	size_t kl = (size_t)snprintf(key, sizeof(key), "%s%d", prefix, i);
	uint64_t h = XXH3_64bits(key, kl);
	struct cache_entry *e = cache_get(s, h, key, kl, now);

	if (e) {
		cache_entry_release(e);
		return true;
	}
	memset(val, i & 0xff, sizeof(val));
	assert_int_equal(cache_put(s, h, key, kl, val, sizeof(val), NULL, now),
			 CACHE_STORED);
	return false;
}

/*
 * A hot set of 1k keys, used a few times, then one pass over 50k cold
 * keys with a cache of about 4k entries: a FIFO or LRU would be flushed
 * and miss every hot key after the scan.
 */
static void
test_scan_resistance(void **state)
{
	struct cache_store *s = store_new(1 * MiB, 0, 0);
	int round, i, hits = 0;

	(void)state;
	for (round = 0; round < 4; round++)
		for (i = 0; i < 1000; i++)
			access_key(s, "hot", i, 0);
	for (i = 0; i < 50000; i++)
		access_key(s, "cold", i, 0);
	assert_true(stats_of(s).evicted_capacity > 40000);
	for (i = 0; i < 1000; i++)
		hits += access_key(s, "hot", i, 0);
	print_message("hot-set hit ratio after the scan: %.3f\n",
		      hits / 1000.0);
	assert_true(hits > 800);
	cache_store_free(s);
}

/* ---- refcounts ----------------------------------------------------------- */

static void
test_refcount(void **state)
{
	struct cache_store *s = store_new(1 * MiB, 0, 0);
	struct cache_entry *e, *e2;
	const uint8_t *d;
	size_t len;
	int i;

	(void)state;
	assert_int_equal(put_str(s, "held", "still here", NULL, 0),
			 CACHE_STORED);
	e = cache_get(s, hash_of("held"), "held", 4, 0);
	assert_non_null(e);
	e2 = cache_entry_ref(e);
	/*
	 * Evicted by capacity while held: fillers used twice each reach
	 * main too, and push "held" (hit once, long ago) out of it.
	 */
	for (i = 0; i < 20000; i++) {
		access_key(s, "filler", i, 0);
		access_key(s, "filler", i, 0);
	}
	expect_get(s, "held", NULL, 0);
	d = cache_entry_data(e, &len);
	assert_int_equal(len, 10);
	assert_memory_equal(d, "still here", 10);
	cache_entry_release(e);
	d = cache_entry_data(e2, &len);
	assert_memory_equal(d, "still here", 10);
	cache_entry_release(e2);

	/* Dropped by clear while held, and still held at store free. */
	assert_int_equal(put_str(s, "held", "again", NULL, 0), CACHE_STORED);
	e = cache_get(s, hash_of("held"), "held", 4, 0);
	cache_clear(s);
	assert_int_equal(stats_of(s).entries, 0);
	assert_int_equal(stats_of(s).bytes, stats_of(s).metadata_bytes);
	expect_get(s, "held", NULL, 0);
	cache_store_free(s);
	d = cache_entry_data(e, &len);
	assert_memory_equal(d, "again", 5);
	cache_entry_release(e);
	cache_entry_release(NULL);
}

/* ---- coalescing ---------------------------------------------------------- */

struct test_waiter {
	struct cache_waiter w;
	int woken;
	struct cache_entry *e;
};

static void
test_wake(struct cache_waiter *w, struct cache_entry *e)
{
	struct test_waiter *tw = (struct test_waiter *)w;

	tw->woken++;
	tw->e = e;
}

static enum cache_claim
claim_str(struct cache_store *s, const char *key, uint64_t now,
	  struct test_waiter *tw, struct cache_entry **out)
{
	if (tw)
		*tw = (struct test_waiter){ .w.wake = test_wake };
	return cache_claim(s, hash_of(key), key, strlen(key), now,
			   tw ? &tw->w : NULL, out);
}

static void
expect_woken(struct test_waiter *tw, const char *val)
{
	const uint8_t *d;
	size_t len;

	assert_int_equal(tw->woken, 1);
	if (!val) {
		assert_null(tw->e);
		return;
	}
	assert_non_null(tw->e);
	d = cache_entry_data(tw->e, &len);
	assert_int_equal(len, strlen(val));
	assert_memory_equal(d, val, len);
	cache_entry_release(tw->e);
}

static void
test_coalesce_put(void **state)
{
	struct cache_store *s = store_new(4 * MiB, 0, 0);
	struct test_waiter lead, w[3];
	struct cache_entry *e;
	int i;

	(void)state;
	assert_int_equal(claim_str(s, "q", 0, &lead, &e), CACHE_CLAIM_LEADER);
	assert_null(e);
	for (i = 0; i < 3; i++)
		assert_int_equal(claim_str(s, "q", 1, &w[i], &e),
				 CACHE_CLAIM_WAIT);
	/* Another key is not affected. */
	assert_int_equal(claim_str(s, "other", 1, &lead, &e),
			 CACHE_CLAIM_LEADER);
	cache_abandon(s, hash_of("other"), "other", 5);
	for (i = 0; i < 3; i++)
		assert_int_equal(w[i].woken, 0);

	assert_int_equal(put_str(s, "q", "answer", NULL, 2), CACHE_STORED);
	for (i = 0; i < 3; i++)
		expect_woken(&w[i], "answer");
	assert_int_equal(lead.woken, 0);
	assert_int_equal(stats_of(s).coalesced, 3);

	/* Now a hit. */
	assert_int_equal(claim_str(s, "q", 3, &lead, &e), CACHE_CLAIM_HIT);
	assert_non_null(e);
	cache_entry_release(e);
	/* The claim is over: a later put wakes nobody. */
	assert_int_equal(put_str(s, "q", "answer2", NULL, 4), CACHE_STORED);
	assert_int_equal(stats_of(s).coalesced, 3);
	cache_store_free(s);
}

/* ---- captures (cache/capture.h) ----------------------------------------- */

/* A response captured message by message, across the buffer's growth. */
static void
test_capture(void **state)
{
	struct cache_store *s = store_new(4 * MiB, 64 * 1024, 0);
	char want[3001], msg[100];
	uint64_t t = 42;
	struct capture *c;
	size_t i, len = 0;
	char *key;

	(void)state;
	key = strdup("SELECT big");
	c = capture_new(s, (uint8_t *)key, strlen(key), hash_of("SELECT big"),
			&t, 1, 64 * 1024);
	assert_non_null(c);
	for (i = 0; i < 30; i++) {	/* 3,000 bytes: grows from 512 */
		memset(msg, 'a' + (int)(i % 26), sizeof(msg));
		capture_add(c, (const uint8_t *)msg, sizeof(msg));
		memcpy(want + len, msg, sizeof(msg));
		len += sizeof(msg);
	}
	want[len] = 0;
	assert_int_equal(capture_finish(s, c, 'I', 0), CACHE_STORED);
	expect_get(s, "SELECT big", want, 0);
	cache_tag_bump(s, &t, 1);
	expect_get(s, "SELECT big", NULL, 1);

	/* Over max_entry: spoiled, not stored. */
	key = strdup("SELECT huge");
	c = capture_new(s, (uint8_t *)key, strlen(key),
			hash_of("SELECT huge"), &t, 1, 1000);
	assert_non_null(c);
	for (i = 0; i < 30; i++)
		capture_add(c, (const uint8_t *)msg, sizeof(msg));
	assert_int_equal(capture_finish(s, c, 'I', 1), CACHE_TOO_BIG);
	expect_get(s, "SELECT huge", NULL, 1);

	/* Ended inside a transaction block nobody vouched for: not stored. */
	key = strdup("SELECT in block");
	c = capture_new(s, (uint8_t *)key, strlen(key),
			hash_of("SELECT in block"), &t, 1, 1000);
	assert_non_null(c);
	capture_add(c, (const uint8_t *)"D", 1);
	capture_finish(s, c, 'T', 2);
	expect_get(s, "SELECT in block", NULL, 2);
	cache_store_free(s);
}

static void
test_coalesce_abandon(void **state)
{
	struct cache_store *s = store_new(4 * MiB, 0, 0);
	struct test_waiter lead, w[2];
	struct cache_entry *e;
	uint64_t t = 9;
	struct cache_stamp sp;

	(void)state;
	assert_int_equal(claim_str(s, "q", 0, &lead, &e), CACHE_CLAIM_LEADER);
	assert_int_equal(claim_str(s, "q", 0, &w[0], &e), CACHE_CLAIM_WAIT);
	assert_int_equal(claim_str(s, "q", 0, &w[1], &e), CACHE_CLAIM_WAIT);
	cache_abandon(s, hash_of("q"), "q", 1);
	expect_woken(&w[0], NULL);
	expect_woken(&w[1], NULL);
	cache_abandon(s, hash_of("q"), "q", 1);	/* no claim: a no-op */

	/* A put that is refused ends the claim too, with NULL. */
	assert_int_equal(claim_str(s, "q", 0, &lead, &e), CACHE_CLAIM_LEADER);
	assert_int_equal(claim_str(s, "q", 0, &w[0], &e), CACHE_CLAIM_WAIT);
	sp = stamp_of(s, &t, 1);
	cache_tag_bump(s, &t, 1);
	assert_int_equal(put_str(s, "q", "stale", &sp, 0), CACHE_STALE);
	expect_woken(&w[0], NULL);
	assert_int_equal(stats_of(s).coalesced, 0);
	assert_int_equal(claim_str(s, "q", 0, &lead, &e), CACHE_CLAIM_LEADER);
	cache_abandon(s, hash_of("q"), "q", 1);
	cache_store_free(s);
}

static void
test_cancel_wait(void **state)
{
	struct cache_store *s = store_new(4 * MiB, 0, 0);
	struct test_waiter lead, w[3];
	struct cache_entry *e;
	int i;

	(void)state;
	assert_int_equal(claim_str(s, "q", 0, &lead, &e), CACHE_CLAIM_LEADER);
	for (i = 0; i < 3; i++)
		assert_int_equal(claim_str(s, "q", 0, &w[i], &e),
				 CACHE_CLAIM_WAIT);
	/* Cancel the last one, then the first: the queue stays linked. */
	assert_true(cache_cancel_wait(s, hash_of("q"), "q", 1, &w[2].w));
	assert_false(cache_cancel_wait(s, hash_of("q"), "q", 1, &w[2].w));
	assert_true(cache_cancel_wait(s, hash_of("q"), "q", 1, &w[0].w));
	/* Queued after a cancel of the tail: appended correctly. */
	assert_int_equal(claim_str(s, "q", 0, &w[2], &e), CACHE_CLAIM_WAIT);
	assert_false(cache_cancel_wait(s, hash_of("other"), "other", 5,
				       &w[1].w));
	assert_int_equal(put_str(s, "q", "v", NULL, 0), CACHE_STORED);
	assert_int_equal(w[0].woken, 0);
	expect_woken(&w[1], "v");
	expect_woken(&w[2], "v");
	/* Woken already: cancel says so. */
	assert_false(cache_cancel_wait(s, hash_of("q"), "q", 1, &w[1].w));
	cache_store_free(s);
}

static void
test_claim_without_waiter(void **state)
{
	struct cache_store *s = store_new(4 * MiB, 0, 0);
	struct test_waiter lead, w;
	struct cache_entry *e;

	(void)state;
	/* No waiter: a plain miss, no claim taken. */
	assert_int_equal(claim_str(s, "q", 0, NULL, &e), CACHE_CLAIM_MISS);
	assert_null(e);
	assert_int_equal(claim_str(s, "q", 0, &lead, &e), CACHE_CLAIM_LEADER);
	/* Not even behind an existing claim. */
	assert_int_equal(claim_str(s, "q", 0, NULL, &e), CACHE_CLAIM_MISS);
	assert_int_equal(claim_str(s, "q", 0, &w, &e), CACHE_CLAIM_WAIT);
	assert_int_equal(put_str(s, "q", "v", NULL, 0), CACHE_STORED);
	expect_woken(&w, "v");
	assert_int_equal(claim_str(s, "q", 0, NULL, &e), CACHE_CLAIM_HIT);
	cache_entry_release(e);
	cache_store_free(s);
}

static void
test_claim_timeout(void **state)
{
	struct cache_store *s = store_new(4 * MiB, 0, 0);
	struct test_waiter lead, w, lead2, late;
	struct cache_entry *e;

	(void)state;
	assert_int_equal(claim_str(s, "q", 1000, &lead, &e),
			 CACHE_CLAIM_LEADER);
	assert_int_equal(claim_str(s, "q", 2000, &w, &e), CACHE_CLAIM_WAIT);
	/* A clock a little behind the leader's does not expire it. */
	assert_int_equal(claim_str(s, "q", 999, &late, &e), CACHE_CLAIM_WAIT);
	assert_int_equal(claim_str(s, "q", 1000 + CACHE_CLAIM_TIMEOUT_MS - 1,
				   &lead2, &e),
			 CACHE_CLAIM_WAIT);
	assert_true(cache_cancel_wait(s, hash_of("q"), "q", 1, &lead2.w));
	/* The leader went silent: the next caller takes over. */
	assert_int_equal(claim_str(s, "q", 1000 + CACHE_CLAIM_TIMEOUT_MS,
				   &lead2, &e),
			 CACHE_CLAIM_LEADER);
	expect_woken(&w, NULL);
	expect_woken(&late, NULL);
	assert_int_equal(lead2.woken, 0);
	assert_int_equal(claim_str(s, "q", 40000, &w, &e), CACHE_CLAIM_WAIT);
	assert_int_equal(put_str(s, "q", "v", NULL, 40000), CACHE_STORED);
	expect_woken(&w, "v");
	cache_store_free(s);
}

/* Waiters still queued when the store goes are woken with NULL. */
static void
test_free_wakes_waiters(void **state)
{
	struct cache_store *s = store_new(4 * MiB, 0, 0);
	struct test_waiter lead, w;
	struct cache_entry *e;

	(void)state;
	assert_int_equal(claim_str(s, "q", 0, &lead, &e), CACHE_CLAIM_LEADER);
	assert_int_equal(claim_str(s, "q", 0, &w, &e), CACHE_CLAIM_WAIT);
	cache_store_free(s);
	expect_woken(&w, NULL);
}

/* ---- threads ------------------------------------------------------------- */

enum { STRESS_THREADS = 4, STRESS_KEYS = 20000, STRESS_TAGS = 64 };

struct stress {
	struct cache_store *s;
	_Atomic bool stop;
	_Atomic uint64_t lookups, stores, wakes_with_entry, errors;
};

struct stress_waiter {
	struct cache_waiter w;
	_Atomic int woken;
	struct cache_entry *_Atomic e;
};

static void
stress_wake(struct cache_waiter *w, struct cache_entry *e)
{
	struct stress_waiter *sw = (struct stress_waiter *)w;

	atomic_store(&sw->e, e);
	atomic_store(&sw->woken, 1);
}

/* Key i's value: length and bytes both derived from i. */
static size_t
stress_value(uint32_t i, uint8_t *out)
{
	size_t len = 16 + XXH32(&i, sizeof(i), 1) % 3000, k;
	uint32_t x = i * 2654435761u;

	for (k = 0; k < len; k++)
		out[k] = (uint8_t)(x >> (k % 4 * 8)) ^ (uint8_t)k;
	return len;
}

static bool
stress_check(uint32_t i, const struct cache_entry *e)
{
	uint8_t want[4096];
	size_t len, wl = stress_value(i, want);
	const uint8_t *d = cache_entry_data(e, &len);

	return len == wl && memcmp(d, want, len) == 0;
}

static void
stress_put(struct stress *st, uint32_t i, uint64_t h, const char *key,
	   size_t kl, const struct cache_stamp *sp)
{
	uint8_t val[4096];
	size_t len = stress_value(i, val);

	if (cache_put(st->s, h, key, kl, val, len, sp, 0) == CACHE_STORED)
		atomic_fetch_add(&st->stores, 1);
}

/* Claim key i: hit, lead (and put), or wait for the leader. */
static void
stress_claim(struct stress *st, uint32_t i, uint64_t h, const char *key,
	     size_t kl, const struct cache_stamp *sp)
{
	struct stress_waiter sw = { .w.wake = stress_wake };
	struct timespec upstream = { 0, 20 * 1000 };
	struct cache_entry *e;

	switch (cache_claim(st->s, h, key, kl, 0, &sw.w, &e)) {
	case CACHE_CLAIM_HIT:
		if (!stress_check(i, e))
			atomic_fetch_add(&st->errors, 1);
		cache_entry_release(e);
		break;
	case CACHE_CLAIM_LEADER:
		nanosleep(&upstream, NULL);	/* the query's round trip */
		stress_put(st, i, h, key, kl, sp);
		break;
	case CACHE_CLAIM_WAIT:
		/* Leaders put at once, so this wait is short. */
		while (!atomic_load(&sw.woken))
			sched_yield();
		e = atomic_load(&sw.e);
		if (e) {
			atomic_fetch_add(&st->wakes_with_entry, 1);
			if (!stress_check(i, e))
				atomic_fetch_add(&st->errors, 1);
			cache_entry_release(e);
		}
		break;
	case CACHE_CLAIM_MISS:
		atomic_fetch_add(&st->errors, 1);	/* OOM only */
		break;
	}
}

static void *
stress_thread(void *arg)
{
	struct stress *st = arg;
	uint64_t rng = (uint64_t)(uintptr_t)&rng | 1, tag;
	struct cache_stamp sp;
	struct cache_entry *e;
	struct cache_stats cs;
	char key[32];
	uint64_t n = 0;

	while (!atomic_load_explicit(&st->stop, memory_order_relaxed)) {
		uint64_t r = rng_next(&rng);
		unsigned op = (unsigned)(r >> 32) % 16;
		/*
		 * Claims go to STRESS_TAGS hot keys, one tag each, so leaders
		 * and waiters meet; gets are skewed: half of them go to 1/16
		 * of the keys.
		 */
		uint32_t i = (uint32_t)(r % (op >= 2 && op <= 6 ? STRESS_TAGS
					     : r & 1	? STRESS_KEYS / 16
							: STRESS_KEYS));
		size_t kl = (size_t)snprintf(key, sizeof(key), "k%u", i);
		uint64_t h = XXH3_64bits(key, kl);

		tag = i % STRESS_TAGS;
		if (cache_stamp_take(st->s, &sp, &tag, 1))
			atomic_fetch_add(&st->errors, 1);
		switch (op) {
		case 0:
			cache_tag_bump(st->s, &tag, 1);
			break;
		case 1:
			cache_store_stats(st->s, &cs);
			if (cs.bytes > cs.budget_bytes)
				atomic_fetch_add(&st->errors, 1);
			break;
		case 2: case 3: case 4: case 5: case 6:
			atomic_fetch_add(&st->lookups, 1);
			stress_claim(st, i, h, key, kl, &sp);
			break;
		default:
			atomic_fetch_add(&st->lookups, 1);
			e = cache_get(st->s, h, key, kl, 0);
			if (e && !stress_check(i, e))
				atomic_fetch_add(&st->errors, 1);
			if (e)
				cache_entry_release(e);
			else
				stress_put(st, i, h, key, kl, &sp);
		}
		n++;
	}
	return (void *)(uintptr_t)n;
}

static void
test_threads(void **state)
{
	struct stress st = { .s = store_new(8 * MiB, 0, 0) };
	pthread_t th[STRESS_THREADS];
	struct timespec ts = { 0, 500 * 1000 * 1000 };
	struct cache_stats cs;
	uint64_t ops = 0;
	void *ret;
	int i;

	(void)state;
	for (i = 0; i < STRESS_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, stress_thread,
						&st),
				 0);
	nanosleep(&ts, NULL);
	atomic_store(&st.stop, true);
	for (i = 0; i < STRESS_THREADS; i++) {
		assert_int_equal(pthread_join(th[i], &ret), 0);
		ops += (uintptr_t)ret;
	}
	cache_store_stats(st.s, &cs);
	print_message("%llu ops, %llu hits, %llu stores, %llu coalesced, "
		      "%llu entries, %llu / %llu bytes\n",
		      (unsigned long long)ops, (unsigned long long)cs.hits,
		      (unsigned long long)cs.stores,
		      (unsigned long long)cs.coalesced,
		      (unsigned long long)cs.entries,
		      (unsigned long long)cs.bytes,
		      (unsigned long long)cs.budget_bytes);
	assert_int_equal(atomic_load(&st.errors), 0);
	assert_true(cs.bytes <= cs.budget_bytes);
	assert_int_equal(cs.hits + cs.misses, atomic_load(&st.lookups));
	assert_int_equal(cs.stores, atomic_load(&st.stores));
	assert_int_equal(cs.coalesced, atomic_load(&st.wakes_with_entry));
	assert_true(cs.hits > 0);
	assert_true(cs.evicted_invalidated > 0);
	assert_true(cs.entries <= cs.stores);
	cache_store_free(st.s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hit_miss),
		cmocka_unit_test(test_collision),
		cmocka_unit_test(test_replace),
		cmocka_unit_test(test_overhead),
		cmocka_unit_test(test_bump_invalidates),
		cmocka_unit_test(test_stale_set_race),
		cmocka_unit_test(test_stamp_limits),
		cmocka_unit_test(test_ttl),
		cmocka_unit_test(test_ttl_evicted_first),
		cmocka_unit_test(test_max_entry),
		cmocka_unit_test(test_disabled),
		cmocka_unit_test(test_byte_cap),
		cmocka_unit_test(test_scan_resistance),
		cmocka_unit_test(test_refcount),
		cmocka_unit_test(test_coalesce_put),
		cmocka_unit_test(test_coalesce_abandon),
		cmocka_unit_test(test_capture),
		cmocka_unit_test(test_cancel_wait),
		cmocka_unit_test(test_claim_without_waiter),
		cmocka_unit_test(test_claim_timeout),
		cmocka_unit_test(test_free_wakes_waiters),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
