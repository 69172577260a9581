/*
 * store.c - see store.h.
 *
 * Per shard: a chained hash of entries (fixed bucket array), two FIFO
 * queues and a ghost table, the S3-FIFO policy (Yang et al., SOSP 2023)
 * counted in bytes:
 *
 *   new key ──▶ small (10 % of the shard) ──tail, hit while there──▶ main
 *                 │ tail, never hit                 ▲   │ tail, freq > 0:
 *                 ▼                                 │   └─ freq--, back to head
 *   ghost (hashes only) ──key comes back──▶─────────┘   tail, freq 0: evicted
 *
 * A hit only bumps a 2-bit counter (no list move), so the lock is held for
 * a few loads and stores.  A one-pass scan flows through the small queue
 * and out, leaving main alone.  Entries that can no longer hit (expired,
 * or a tag moved) are dropped first whenever they reach a queue's tail.
 *
 * Memory: each entry is one malloc (header, tags and versions, key,
 * data), charged at glibc's chunk size.  The fixed tables are charged up
 * front; entries share what is left, split evenly per shard, so the sum
 * never passes max_bytes.  Released entries are freed after the shard
 * lock is dropped.
 */
#include "cache/store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/qlist.h"

enum {
	NSHARDS = 16,
	SHARD_SHIFT = 60,	/* the top 4 hash bits pick the shard */
	CLAIM_BUCKETS = 16,
	FREQ_MAX = 3,
	SMALL_PERCENT = 10,
	VERSION_SLOTS_MIN = 4096,
	VERSION_SLOTS_MAX = 1 << 20,
	BYTES_PER_VERSION_SLOT = 4096,
	BYTES_PER_BUCKET = 1024,	/* 1-2 buckets per KiB of budget */
	BUCKETS_MIN = 16,	/* per shard */
	MALLOC_HEADER = 8,	/* glibc: size word before each chunk */
	MALLOC_ALIGN = 16,
	CACHE_LINE = 64,
};

enum entry_queue { QUEUE_NONE, QUEUE_SMALL, QUEUE_MAIN };
enum entry_state { ENTRY_LIVE, ENTRY_EXPIRED, ENTRY_INVALID };

/*
 * Layout of one allocation: this header, tags[ntags], versions[ntags],
 * key[keylen], data[len].  Only refs changes after the entry is visible to
 * holders; chain, q, freq and queue belong to the shard lock.
 */
struct cache_entry {
	struct cache_entry *chain;	/* bucket chain, or the dead list */
	struct qlist q;			/* in small or main, newest at head */
	uint64_t hash;
	uint64_t expires_ms;		/* 0: never */
	_Atomic uint32_t refs;
	uint32_t keylen;
	uint32_t len;
	uint8_t ntags;
	uint8_t freq;			/* 0..FREQ_MAX, bumped on hit */
	uint8_t queue;			/* enum entry_queue */
	uint64_t tv[];			/* tags, then versions */
};

struct fifo {
	struct qlist head;		/* head.next newest, head.prev oldest */
	size_t bytes;
};

struct claim {
	struct claim *next;
	uint64_t hash;
	uint64_t started_ms;
	struct cache_waiter *waiters;
	struct cache_waiter **tail;	/* &last->next, or &waiters */
	size_t keylen;
	unsigned char key[];
};

/*
 * One slot of a shard's table: a bucket's chain head and a ghost way,
 * side by side, so that a miss and the store after it (which reads the
 * ghosts) touch one cache line of the table, not two.  Slots 2k and 2k+1
 * share a line and form the 2-way ghost set of both their buckets.
 */
struct slot {
	struct cache_entry *head;
	uint64_t ghost;			/* fingerprint << 32 | seq; 0 = empty */
};

struct shard {
	_Alignas(CACHE_LINE) pthread_mutex_t lock;
	struct slot *slots;		/* NULL when the store holds nothing */
	size_t mask;			/* slots - 1 */
	uint32_t ghost_seq;
	struct fifo small, main;
	size_t budget, small_target, bytes, count;
	struct claim *claims[CLAIM_BUCKETS];
	uint64_t hits, misses, stores, coalesced;
	uint64_t evicted_capacity, evicted_invalidated, evicted_ttl;
};

struct cache_store {
	struct shard *shards;		/* NSHARDS */
	_Atomic uint64_t *versions;	/* in the tables mapping */
	void *tables;			/* versions, then slots */
	size_t tables_len;
	unsigned vshift;		/* 64 - log2(version slots) */
	bool enabled;
	size_t max_entry;
	_Atomic uint64_t ttl_ms;	/* cache_set_ttl() at run time */
	size_t budget, metadata;
	_Atomic uint64_t invalidations, rejected_stale, rejected_too_big;
};

/* ---- sizes --------------------------------------------------------------- */

static size_t
pow2_ceil(size_t n)
{
	size_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

static size_t
clamp_size(size_t v, size_t lo, size_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* What malloc really takes for a request: glibc chunks on 64-bit. */
static size_t
alloc_charge(size_t size)
{
	return (size + MALLOC_HEADER + MALLOC_ALIGN - 1) &
	       ~(size_t)(MALLOC_ALIGN - 1);
}

static size_t
entry_alloc_size(size_t ntags, size_t keylen, size_t len)
{
	return sizeof(struct cache_entry) + ntags * 2 * sizeof(uint64_t) +
	       keylen + len;
}

static size_t
entry_charge(const struct cache_entry *e)
{
	return alloc_charge(entry_alloc_size(e->ntags, e->keylen, e->len));
}

size_t
cache_entry_overhead(void)
{
	return sizeof(struct cache_entry) + MALLOC_HEADER;
}

/* ---- entries ------------------------------------------------------------- */

static const unsigned char *
entry_key(const struct cache_entry *e)
{
	return (const unsigned char *)(e->tv + 2 * (size_t)e->ntags);
}

const uint8_t *
cache_entry_data(const struct cache_entry *e, size_t *len)
{
	*len = e->len;
	return entry_key(e) + e->keylen;
}

struct cache_entry *
cache_entry_ref(struct cache_entry *e)
{
	atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
	return e;
}

void
cache_entry_release(struct cache_entry *e)
{
	if (e && atomic_fetch_sub_explicit(&e->refs, 1,
					   memory_order_acq_rel) == 1)
		free(e);
}

/* Release a list of dead entries linked through chain (outside locks). */
static void
release_list(struct cache_entry *e)
{
	struct cache_entry *next;

	for (; e; e = next) {
		next = e->chain;
		cache_entry_release(e);
	}
}

static struct cache_entry *
entry_new(const struct cache_store *s, uint64_t hash, const void *key,
	  size_t keylen, const void *data, size_t len,
	  const struct cache_stamp *stamp, uint64_t now_ms)
{
	size_t ntags = stamp ? stamp->n : 0;
	struct cache_entry *e;
	unsigned char *p;
	uint64_t ttl;

	e = malloc(entry_alloc_size(ntags, keylen, len));
	if (!e)
		return NULL;
	e->chain = NULL;
	qlist_init(&e->q);
	e->hash = hash;
	ttl = atomic_load_explicit(&s->ttl_ms, memory_order_relaxed);
	e->expires_ms = ttl ? now_ms + ttl : 0;
	atomic_init(&e->refs, 1);	/* the store's */
	e->keylen = (uint32_t)keylen;
	e->len = (uint32_t)len;
	e->ntags = (uint8_t)ntags;
	e->freq = 0;
	e->queue = QUEUE_NONE;
	if (ntags) {
		memcpy(e->tv, stamp->tags, ntags * sizeof(uint64_t));
		memcpy(e->tv + ntags, stamp->versions,
		       ntags * sizeof(uint64_t));
	}
	p = (unsigned char *)(e->tv + 2 * ntags);
	if (keylen)
		memcpy(p, key, keylen);
	if (len)
		memcpy(p + keylen, data, len);
	return e;
}

/* ---- version stamps ------------------------------------------------------ */

/* Fibonacci hashing: callers' tags may be small integers, not hashes. */
static _Atomic uint64_t *
version_slot(const struct cache_store *s, uint64_t tag)
{
	return &s->versions[(tag * 0x9E3779B97F4A7C15ull) >> s->vshift];
}

uint64_t
cache_tag_version(const struct cache_store *s, uint64_t tag)
{
	return atomic_load_explicit(version_slot(s, tag),
				    memory_order_acquire);
}

void
cache_tag_bump(struct cache_store *s, const uint64_t *tags, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		atomic_fetch_add_explicit(version_slot(s, tags[i]), 1,
					  memory_order_acq_rel);
	atomic_fetch_add_explicit(&s->invalidations, n, memory_order_relaxed);
}

int
cache_stamp_take(const struct cache_store *s, struct cache_stamp *st,
		 const uint64_t *tags, size_t n)
{
	size_t i;

	if (n > CACHE_MAX_TAGS)
		return -1;
	st->n = (uint32_t)n;
	for (i = 0; i < n; i++) {
		st->tags[i] = tags[i];
		st->versions[i] = cache_tag_version(s, tags[i]);
	}
	return 0;
}

static bool
versions_current(const struct cache_store *s, const uint64_t *tags,
		 const uint64_t *versions, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (cache_tag_version(s, tags[i]) != versions[i])
			return false;
	return true;
}

static enum entry_state
entry_state(const struct cache_store *s, const struct cache_entry *e,
	    uint64_t now_ms)
{
	if (e->expires_ms && now_ms >= e->expires_ms)
		return ENTRY_EXPIRED;
	if (!versions_current(s, e->tv, e->tv + e->ntags, e->ntags))
		return ENTRY_INVALID;
	return ENTRY_LIVE;
}

/* ---- shard tables -------------------------------------------------------- */

static struct shard *
shard_of(const struct cache_store *s, uint64_t hash)
{
	return &s->shards[hash >> SHARD_SHIFT];
}

static bool
key_equal(const struct cache_entry *e, uint64_t hash, const void *key,
	  size_t keylen)
{
	return e->hash == hash && e->keylen == keylen &&
	       memcmp(entry_key(e), key, keylen) == 0;
}

/* The link that points at the entry with this key, or at the chain's end. */
static struct cache_entry **
find_link(struct shard *sh, uint64_t hash, const void *key, size_t keylen)
{
	struct cache_entry **pp = &sh->slots[hash & sh->mask].head;

	while (*pp && !key_equal(*pp, hash, key, keylen))
		pp = &(*pp)->chain;
	return pp;
}

static void
fifo_push(struct fifo *f, struct cache_entry *e, size_t charge)
{
	qlist_insert_head(&f->head, &e->q);
	f->bytes += charge;
}

static struct cache_entry *
fifo_oldest(struct fifo *f)
{
	if (qlist_empty(&f->head))
		return NULL;
	return qlist_entry(f->head.prev, struct cache_entry, q);
}

static struct fifo *
queue_of(struct shard *sh, const struct cache_entry *e)
{
	return e->queue == QUEUE_MAIN ? &sh->main : &sh->small;
}

/*
 * Unlink e (found through *link) from the table and its queue, and push it
 * on *dead, whose references are dropped once the lock is released.
 */
static void
unlink_at(struct shard *sh, struct cache_entry **link,
	  struct cache_entry **dead)
{
	struct cache_entry *e = *link;
	size_t charge = entry_charge(e);

	*link = e->chain;
	qlist_remove(&e->q);
	queue_of(sh, e)->bytes -= charge;
	sh->bytes -= charge;
	sh->count--;
	e->queue = QUEUE_NONE;
	e->chain = *dead;
	*dead = e;
}

static void
unlink_entry(struct shard *sh, struct cache_entry *e,
	     struct cache_entry **dead)
{
	struct cache_entry **pp = &sh->slots[e->hash & sh->mask].head;

	while (*pp != e)
		pp = &(*pp)->chain;
	unlink_at(sh, pp, dead);
}

static void
count_drop(struct shard *sh, enum entry_state st)
{
	if (st == ENTRY_EXPIRED)
		sh->evicted_ttl++;
	else if (st == ENTRY_INVALID)
		sh->evicted_invalidated++;
	else
		sh->evicted_capacity++;
}

/* ---- ghost: hashes of keys evicted from small ---------------------------- */

/*
 * A 2-way table of (32-bit fingerprint, insertion number).  A ghost counts
 * until as many keys as main holds have been ghosted after it: the paper's
 * ghost FIFO, as long as main, without the queue.  A collision can only
 * send a new key to main instead of small.
 */
static size_t
ghost_window(const struct shard *sh)
{
	size_t avg;

	if (!sh->count)
		return sh->mask + 1;
	avg = sh->bytes / sh->count;
	return (sh->budget - sh->small_target) / (avg ? avg : 1);
}

static uint32_t
ghost_age(const struct shard *sh, uint64_t v)
{
	return sh->ghost_seq - (uint32_t)v;
}

static bool
ghost_take(struct shard *sh, uint64_t hash)
{
	size_t i = hash & sh->mask, k;
	uint64_t fp = hash >> 32;

	for (k = 0; k < 2; k++, i ^= 1) {
		uint64_t v = sh->slots[i].ghost;

		if (v && v >> 32 == fp && ghost_age(sh, v) < ghost_window(sh)) {
			sh->slots[i].ghost = 0;
			return true;
		}
	}
	return false;
}

static void
ghost_put(struct shard *sh, uint64_t hash)
{
	size_t i = hash & sh->mask;
	uint64_t a = sh->slots[i].ghost, b = sh->slots[i ^ 1].ghost;

	if (++sh->ghost_seq == 0)
		sh->ghost_seq = 1;
	/* Take an empty way, else the older one. */
	if (a && (!b || ghost_age(sh, b) > ghost_age(sh, a)))
		i ^= 1;
	sh->slots[i].ghost = (hash >> 32) << 32 | sh->ghost_seq;
}

/* ---- eviction ------------------------------------------------------------ */

static void
move_to_main(struct shard *sh, struct cache_entry *e)
{
	size_t charge = entry_charge(e);

	qlist_remove(&e->q);
	queue_of(sh, e)->bytes -= charge;
	e->queue = QUEUE_MAIN;
	fifo_push(&sh->main, e, charge);
}

/* Drop the oldest entry of either queue if it can never hit again. */
static bool
evict_dead_tail(const struct cache_store *s, struct shard *sh,
		uint64_t now_ms, struct cache_entry **dead)
{
	struct fifo *qs[2] = { &sh->small, &sh->main };
	struct cache_entry *e;
	enum entry_state st;
	int i;

	for (i = 0; i < 2; i++) {
		e = fifo_oldest(qs[i]);
		if (!e)
			continue;
		st = entry_state(s, e, now_ms);
		if (st != ENTRY_LIVE) {
			count_drop(sh, st);
			unlink_entry(sh, e, dead);
			return true;
		}
	}
	return false;
}

/*
 * Free at least one entry (the shard is not empty).  Small is worked while
 * it is over its share: entries hit there move to main, the rest leave a
 * ghost.  Otherwise main's oldest goes unless it was hit since its last
 * pass, then it gets another round with one hit fewer.
 */
static void
evict_one(const struct cache_store *s, struct shard *sh, uint64_t now_ms,
	  struct cache_entry **dead)
{
	struct cache_entry *e;
	enum entry_state st;
	bool from_small;

	if (evict_dead_tail(s, sh, now_ms, dead))
		return;
	for (;;) {
		from_small = sh->small.bytes > sh->small_target ||
			     qlist_empty(&sh->main.head);
		e = fifo_oldest(from_small ? &sh->small : &sh->main);
		st = entry_state(s, e, now_ms);
		if (st == ENTRY_LIVE && e->freq) {
			if (!from_small)
				e->freq--;
			else
				e->freq = 0;
			move_to_main(sh, e);
			continue;
		}
		if (from_small && st == ENTRY_LIVE)
			ghost_put(sh, e->hash);
		count_drop(sh, st);
		unlink_entry(sh, e, dead);
		return;
	}
}

/* ---- lookup -------------------------------------------------------------- */

/*
 * Under the shard lock: a new reference to the live entry for key, or
 * NULL.  A dead entry found is dropped, and its hash ghosted: the key is
 * in demand, so its next put goes straight to main.
 */
static struct cache_entry *
lookup(const struct cache_store *s, struct shard *sh, uint64_t hash,
       const void *key, size_t keylen, uint64_t now_ms,
       struct cache_entry **dead)
{
	struct cache_entry **link, *e;
	enum entry_state st;

	if (!sh->slots) {
		sh->misses++;
		return NULL;
	}
	link = find_link(sh, hash, key, keylen);
	e = *link;
	if (!e) {
		sh->misses++;
		return NULL;
	}
	st = entry_state(s, e, now_ms);
	if (st != ENTRY_LIVE) {
		count_drop(sh, st);
		unlink_at(sh, link, dead);
		ghost_put(sh, hash);
		sh->misses++;
		return NULL;
	}
	if (e->freq < FREQ_MAX)
		e->freq++;
	sh->hits++;
	return cache_entry_ref(e);
}

struct cache_entry *
cache_get(struct cache_store *s, uint64_t hash, const void *key,
	  size_t keylen, uint64_t now_ms)
{
	struct shard *sh = shard_of(s, hash);
	struct cache_entry *e, *dead = NULL;

	pthread_mutex_lock(&sh->lock);
	e = lookup(s, sh, hash, key, keylen, now_ms, &dead);
	pthread_mutex_unlock(&sh->lock);
	release_list(dead);
	return e;
}

/* ---- claims -------------------------------------------------------------- */

static struct claim **
claim_link(struct shard *sh, uint64_t hash, const void *key, size_t keylen)
{
	struct claim **pp = &sh->claims[hash & (CLAIM_BUCKETS - 1)];

	while (*pp && !((*pp)->hash == hash && (*pp)->keylen == keylen &&
			memcmp((*pp)->key, key, keylen) == 0))
		pp = &(*pp)->next;
	return pp;
}

static struct cache_waiter *
claim_take_waiters(struct claim *c)
{
	struct cache_waiter *w = c->waiters;

	c->waiters = NULL;
	c->tail = &c->waiters;
	return w;
}

/*
 * Under the lock: end the key's claim, if any, and return its waiters,
 * each given a reference to e when e is not NULL.
 */
static struct cache_waiter *
claim_end(struct shard *sh, uint64_t hash, const void *key, size_t keylen,
	  struct cache_entry *e)
{
	struct claim **link = claim_link(sh, hash, key, keylen), *c = *link;
	struct cache_waiter *list, *w;

	if (!c)
		return NULL;
	*link = c->next;
	list = claim_take_waiters(c);
	free(c);
	if (e) {
		for (w = list; w; w = w->next) {
			cache_entry_ref(e);
			sh->coalesced++;
		}
	}
	return list;
}

/* Outside the lock: wake() may free the waiter, so read next first. */
static void
wake_all(struct cache_waiter *w, struct cache_entry *e)
{
	struct cache_waiter *next;

	for (; w; w = next) {
		next = w->next;
		w->next = NULL;
		w->wake(w, e);
	}
}

/* Under the lock: become the key's leader, or queue behind it. */
static enum cache_claim
claim_or_wait(struct shard *sh, uint64_t hash, const void *key,
	      size_t keylen, uint64_t now_ms, struct cache_waiter *waiter,
	      struct cache_waiter **timed_out)
{
	struct claim **link = claim_link(sh, hash, key, keylen), *c = *link;

	if (!c) {
		c = malloc(sizeof(*c) + keylen);
		if (!c)
			return CACHE_CLAIM_MISS;
		*c = (struct claim){ .hash = hash, .started_ms = now_ms,
				     .keylen = keylen };
		c->tail = &c->waiters;
		if (keylen)
			memcpy(c->key, key, keylen);
		*link = c;
		return CACHE_CLAIM_LEADER;
	}
	if (now_ms > c->started_ms &&
	    now_ms - c->started_ms >= CACHE_CLAIM_TIMEOUT_MS) {
		*timed_out = claim_take_waiters(c);
		c->started_ms = now_ms;
		return CACHE_CLAIM_LEADER;
	}
	waiter->next = NULL;
	*c->tail = waiter;
	c->tail = &waiter->next;
	return CACHE_CLAIM_WAIT;
}

enum cache_claim
cache_claim(struct cache_store *s, uint64_t hash, const void *key,
	    size_t keylen, uint64_t now_ms, struct cache_waiter *waiter,
	    struct cache_entry **out)
{
	struct shard *sh = shard_of(s, hash);
	struct cache_entry *dead = NULL;
	struct cache_waiter *timed_out = NULL;
	enum cache_claim r = CACHE_CLAIM_MISS;

	pthread_mutex_lock(&sh->lock);
	*out = lookup(s, sh, hash, key, keylen, now_ms, &dead);
	if (*out)
		r = CACHE_CLAIM_HIT;
	else if (waiter && s->enabled)
		r = claim_or_wait(sh, hash, key, keylen, now_ms, waiter,
				  &timed_out);
	pthread_mutex_unlock(&sh->lock);
	release_list(dead);
	wake_all(timed_out, NULL);
	return r;
}

void
cache_abandon(struct cache_store *s, uint64_t hash, const void *key,
	      size_t keylen)
{
	struct shard *sh = shard_of(s, hash);
	struct cache_waiter *w;

	pthread_mutex_lock(&sh->lock);
	w = claim_end(sh, hash, key, keylen, NULL);
	pthread_mutex_unlock(&sh->lock);
	wake_all(w, NULL);
}

bool
cache_cancel_wait(struct cache_store *s, uint64_t hash, const void *key,
		  size_t keylen, struct cache_waiter *w)
{
	struct shard *sh = shard_of(s, hash);
	struct cache_waiter **pp;
	struct claim *c;
	bool found = false;

	pthread_mutex_lock(&sh->lock);
	c = *claim_link(sh, hash, key, keylen);
	for (pp = c ? &c->waiters : NULL; pp && *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			if (c->tail == &w->next)
				c->tail = pp;
			w->next = NULL;
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&sh->lock);
	return found;
}

/* ---- put ----------------------------------------------------------------- */

/* The checks that need no lock; CACHE_STORED means "go on". */
static enum cache_put_result
put_check(struct cache_store *s, const struct shard *sh, size_t keylen,
	  size_t len, const struct cache_stamp *stamp)
{
	size_t ntags = stamp ? stamp->n : 0;

	if (!s->enabled)
		return CACHE_DISABLED;
	if (ntags > CACHE_MAX_TAGS)
		return CACHE_STALE;	/* cannot be checked: never cache */
	if (keylen > UINT32_MAX || len > UINT32_MAX ||
	    keylen + len > s->max_entry ||
	    alloc_charge(entry_alloc_size(ntags, keylen, len)) > sh->budget) {
		atomic_fetch_add_explicit(&s->rejected_too_big, 1,
					  memory_order_relaxed);
		return CACHE_TOO_BIG;
	}
	if (ntags && !versions_current(s, stamp->tags, stamp->versions,
				       ntags)) {
		atomic_fetch_add_explicit(&s->rejected_stale, 1,
					  memory_order_relaxed);
		return CACHE_STALE;
	}
	return CACHE_STORED;
}

/*
 * Under the lock: replace any entry with e's key, make room, and link e.
 * A replaced key keeps its place (main or small, and its hits); a new key
 * goes to main if it left a ghost recently, else to small.
 */
static void
insert_locked(const struct cache_store *s, struct shard *sh,
	      struct cache_entry *e, const void *key, uint64_t now_ms,
	      struct cache_entry **dead)
{
	struct cache_entry **link = find_link(sh, e->hash, key, e->keylen);
	struct cache_entry *old = *link;
	size_t charge = entry_charge(e);
	bool to_main;

	if (old) {
		to_main = old->queue == QUEUE_MAIN;
		e->freq = old->freq;
		unlink_at(sh, link, dead);
	} else {
		to_main = ghost_take(sh, e->hash);
	}
	while (sh->bytes + charge > sh->budget)
		evict_one(s, sh, now_ms, dead);
	link = &sh->slots[e->hash & sh->mask].head;
	e->chain = *link;
	*link = e;
	e->queue = to_main ? QUEUE_MAIN : QUEUE_SMALL;
	fifo_push(to_main ? &sh->main : &sh->small, e, charge);
	sh->bytes += charge;
	sh->count++;
	sh->stores++;
}

/* End the key's claim after a put that stored nothing. */
static enum cache_put_result
put_failed(struct cache_store *s, uint64_t hash, const void *key,
	   size_t keylen, enum cache_put_result r)
{
	if (r != CACHE_DISABLED)
		cache_abandon(s, hash, key, keylen);
	return r;
}

enum cache_put_result
cache_put(struct cache_store *s, uint64_t hash, const void *key,
	  size_t keylen, const void *data, size_t len,
	  const struct cache_stamp *stamp, uint64_t now_ms)
{
	struct shard *sh = shard_of(s, hash);
	struct cache_entry *e, *dead = NULL;
	struct cache_waiter *w;
	enum cache_put_result r;

	r = put_check(s, sh, keylen, len, stamp);
	if (r != CACHE_STORED)
		return put_failed(s, hash, key, keylen, r);
	e = entry_new(s, hash, key, keylen, data, len, stamp, now_ms);
	if (!e)
		return put_failed(s, hash, key, keylen, CACHE_NOMEM);
	pthread_mutex_lock(&sh->lock);
	insert_locked(s, sh, e, key, now_ms, &dead);
	w = claim_end(sh, hash, key, keylen, e);
	pthread_mutex_unlock(&sh->lock);
	release_list(dead);
	wake_all(w, e);
	return CACHE_STORED;
}

/* ---- whole store --------------------------------------------------------- */

static void
shard_clear(struct shard *sh)
{
	struct cache_entry *dead = NULL, *e;
	struct fifo *qs[2] = { &sh->small, &sh->main };
	int i;

	pthread_mutex_lock(&sh->lock);
	for (i = 0; i < 2; i++) {
		while ((e = fifo_oldest(qs[i])))
			unlink_entry(sh, e, &dead);
	}
	if (sh->slots)	/* the chains are empty now: clear the ghosts */
		memset(sh->slots, 0, (sh->mask + 1) * sizeof(*sh->slots));
	pthread_mutex_unlock(&sh->lock);
	release_list(dead);
}

void
cache_set_ttl(struct cache_store *s, uint64_t ttl_ms)
{
	atomic_store_explicit(&s->ttl_ms, ttl_ms, memory_order_relaxed);
}

void
cache_clear(struct cache_store *s)
{
	size_t i;

	for (i = 0; i < NSHARDS; i++)
		shard_clear(&s->shards[i]);
}

void
cache_store_stats(const struct cache_store *s, struct cache_stats *out)
{
	size_t i;

	*out = (struct cache_stats){
		.invalidations = atomic_load(&s->invalidations),
		.rejected_stale = atomic_load(&s->rejected_stale),
		.rejected_too_big = atomic_load(&s->rejected_too_big),
		.budget_bytes = s->budget,
		.metadata_bytes = s->metadata,
		.bytes = s->enabled ? s->metadata : 0,
	};
	for (i = 0; i < NSHARDS; i++) {
		struct shard *sh = &s->shards[i];

		pthread_mutex_lock(&sh->lock);
		out->hits += sh->hits;
		out->misses += sh->misses;
		out->stores += sh->stores;
		out->coalesced += sh->coalesced;
		out->evicted_capacity += sh->evicted_capacity;
		out->evicted_invalidated += sh->evicted_invalidated;
		out->evicted_ttl += sh->evicted_ttl;
		out->bytes += sh->bytes;
		out->entries += sh->count;
		pthread_mutex_unlock(&sh->lock);
	}
}

/*
 * Size the tables from the budget and charge them to it.  Buckets and
 * ghost slots: one per 0.5-1 KiB of budget, so chains stay short for
 * results of a few hundred bytes and longer ones cost little.
 */
static size_t
plan_tables(const struct cache_store_config *cfg, size_t *vslots,
	    size_t *buckets)
{
	size_t fixed;

	*vslots = clamp_size(pow2_ceil(cfg->max_bytes / BYTES_PER_VERSION_SLOT),
			     VERSION_SLOTS_MIN, VERSION_SLOTS_MAX);
	*buckets = pow2_ceil(cfg->max_bytes / BYTES_PER_BUCKET / NSHARDS);
	if (*buckets < BUCKETS_MIN)
		*buckets = BUCKETS_MIN;
	fixed = alloc_charge(sizeof(struct cache_store)) +
		NSHARDS * sizeof(struct shard) + CACHE_LINE +
		alloc_charge(*vslots * sizeof(uint64_t));
	return fixed + NSHARDS * 2 * alloc_charge(*buckets * sizeof(void *));
}

enum { HUGE_PAGE = 2u << 20 };

/*
 * The fixed tables (version slots, then the shards' slots) in one zeroed
 * mapping, aligned and advised for transparent huge pages.  Every lookup
 * and store reads them at random; with 4 KB pages nearly each of those
 * reads also missed the TLB (two-dimensional page walks in a VM), which
 * made the first load of a bucket head the costliest instruction of a
 * cache miss.
 */
static void *
tables_map(struct cache_store *s, size_t bytes)
{
	bool huge = bytes >= HUGE_PAGE;	/* small stores stay small */
	size_t len = huge ? (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE +
			    HUGE_PAGE : bytes;
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *start;

	if (p == MAP_FAILED)
		return NULL;
	s->tables = p;
	s->tables_len = len;
	if (!huge)
		return p;
	start = (uint8_t *)(((uintptr_t)p + HUGE_PAGE - 1) &
			    ~(uintptr_t)(HUGE_PAGE - 1));
#ifdef MADV_HUGEPAGE
	(void)madvise(start, len - (size_t)(start - p), MADV_HUGEPAGE);
#endif
	return start;
}

/*
 * Shard locks are held for a few hundred nanoseconds: an adaptive mutex
 * spins briefly before sleeping in the kernel, which keeps a collision
 * between two workers from costing a futex round trip.
 */
static void
shards_init(struct cache_store *s, size_t buckets, bool tables,
	    struct slot *slots)
{
	size_t i, room = tables ? s->budget - s->metadata : 0;
	pthread_mutexattr_t ma;

	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
	/* Every shard gets its lock and queues, even when the store is off. */
	for (i = 0; i < NSHARDS; i++) {
		struct shard *sh = &s->shards[i];

		pthread_mutex_init(&sh->lock, &ma);
		qlist_init(&sh->small.head);
		qlist_init(&sh->main.head);
	}
	pthread_mutexattr_destroy(&ma);
	for (i = 0; i < NSHARDS && tables; i++) {
		struct shard *sh = &s->shards[i];

		sh->slots = slots + i * buckets;
		sh->mask = buckets - 1;
		sh->budget = room / NSHARDS;
		sh->small_target = sh->budget / 100 * SMALL_PERCENT;
	}
}

struct cache_store *
cache_store_new(const struct cache_store_config *cfg)
{
	struct cache_store *s;
	size_t vslots, buckets, meta;
	size_t shards_size = NSHARDS * sizeof(struct shard);
	uint64_t *table;

	meta = plan_tables(cfg, &vslots, &buckets);
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->budget = cfg->max_bytes;
	s->enabled = cfg->max_bytes >= meta + NSHARDS * cache_entry_overhead();
	s->metadata = s->enabled ? meta : meta - NSHARDS * 2 *
		alloc_charge(buckets * sizeof(void *));
	s->max_entry = cfg->max_entry ? cfg->max_entry : SIZE_MAX;
	atomic_init(&s->ttl_ms, cfg->ttl_ms);
	s->vshift = 64 - (unsigned)__builtin_ctzll(vslots);
	s->shards = aligned_alloc(CACHE_LINE, shards_size);
	table = tables_map(s, (vslots + (s->enabled ? 2 * NSHARDS * buckets :
					  0)) * sizeof(uint64_t));
	if (!s->shards || !table) {
		free(s->shards);
		if (table)
			munmap(s->tables, s->tables_len);
		free(s);
		return NULL;
	}
	s->versions = (_Atomic uint64_t *)table;
	memset(s->shards, 0, shards_size);
	shards_init(s, buckets, s->enabled, (struct slot *)(table + vslots));
	return s;
}

static struct cache_waiter *
shard_end_claims(struct shard *sh)
{
	struct cache_waiter *all = NULL, *w;
	struct claim *c, *next;
	size_t i;

	for (i = 0; i < CLAIM_BUCKETS; i++) {
		for (c = sh->claims[i]; c; c = next) {
			next = c->next;
			while ((w = c->waiters)) {
				c->waiters = w->next;
				w->next = all;
				all = w;
			}
			free(c);
		}
		sh->claims[i] = NULL;
	}
	return all;
}

void
cache_store_free(struct cache_store *s)
{
	size_t i;

	if (!s)
		return;
	cache_clear(s);
	for (i = 0; i < NSHARDS; i++) {
		struct shard *sh = &s->shards[i];

		wake_all(shard_end_claims(sh), NULL);
		pthread_mutex_destroy(&sh->lock);
	}
	free(s->shards);
	munmap(s->tables, s->tables_len);
	free(s);
}
