/*
 * tier.c - the shared result tier on Redis (see tier.h).
 */
#include "cache/tier.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "cache/store.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/redis.h"

enum {
	TIER_CONNECT_TIMEOUT_MS = 1000,	/* also every command's, in the thread */
	TIER_BACKOFF_MIN_MS = 100,
	TIER_BACKOFF_MAX_MS = 5000,
	TIER_KEY_MAX = 48,
	TIER_ARGS_MAX = CACHE_MAX_TAGS + 10,
	TIER_SLOTS = 16384,		/* Redis Cluster hash slots */
};

/*
 * A missing counter is created from Redis' clock (microseconds), so it
 * never takes a value it had before (tier.h).
 */
#define LUA_FRESH                                                        \
	"local function fresh()\n"                                       \
	"  local t = redis.call('TIME')\n"                               \
	"  return t[1] .. string.format('%06d', tonumber(t[2]))\n"       \
	"end\n"

/* KEYS: entry, epoch, versions...  ARGV: version ttl ms. */
static const char LUA_GET[] = LUA_FRESH
	"local parts = {}\n"
	"for i = 2, #KEYS do\n"
	"  local v = redis.call('GET', KEYS[i])\n"
	"  if not v then v = fresh(); redis.call('SET', KEYS[i], v) end\n"
	"  redis.call('PEXPIRE', KEYS[i], ARGV[1])\n"
	"  parts[#parts + 1] = v\n"
	"end\n"
	"local stamp = table.concat(parts, ',')\n"
	"local e = redis.call('HMGET', KEYS[1], 's', 'k', 'd')\n"
	"if e[1] == stamp then\n"
	"  return {1, e[2], e[3], redis.call('PTTL', KEYS[1])}\n"
	"end\n"
	"if e[1] then redis.call('DEL', KEYS[1]) end\n"
	"return {0, stamp}\n";

/* KEYS: entry, epoch, versions...
 * ARGV: stamp, full key, bytes, entry ttl ms, version ttl ms. */
static const char LUA_PUT[] =
	"local parts = {}\n"
	"for i = 2, #KEYS do\n"
	"  local v = redis.call('GET', KEYS[i])\n"
	"  if not v then return 0 end\n"
	"  parts[#parts + 1] = v\n"
	"end\n"
	"if table.concat(parts, ',') ~= ARGV[1] then return 0 end\n"
	"for i = 2, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[5]) end\n"
	"redis.call('DEL', KEYS[1])\n"
	"redis.call('HSET', KEYS[1], 's', ARGV[1], 'k', ARGV[2], 'd', ARGV[3])\n"
	"redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
	"return 1\n";

/* KEYS: counters (versions or the epoch).  ARGV: version ttl ms. */
static const char LUA_BUMP[] = LUA_FRESH
	"for i = 1, #KEYS do\n"
	"  if redis.call('INCR', KEYS[i]) == 1 then\n"
	"    redis.call('SET', KEYS[i], fresh())\n"
	"  end\n"
	"  redis.call('PEXPIRE', KEYS[i], ARGV[1])\n"
	"end\n"
	"return #KEYS\n";

enum tier_op { OP_GET, OP_PUT, OP_BUMP, OP_EPOCH };

struct tier_req {
	struct tier_req *next;
	enum tier_op op;
	bool waited;		/* a caller waits for it (GET, BUMP) */
	bool abandoned;		/* ... and gave up: the thread frees it */
	bool done, ok;
	enum tier_found found;
	uint64_t gen;		/* the connection it was queued under */
	uint64_t db_tag, hash;
	uint8_t *key, *data;
	size_t keylen, len;
	uint64_t age_ms;	/* GET hit: since the entry was stored */
	char *stamp;		/* PUT: expected; GET: current on a miss */
	uint32_t ntags;
	uint64_t tags[];
};

/* A Redis server the thread talks to: the URL's, or a cluster master. */
struct tier_node {
	char host[256];
	int port;
	redisContext *c;
};

struct tier_db {
	uint64_t tag, bumped_gen;	/* epoch bumped on that connection */
};

struct cache_tier {
	struct redis_target redis;
	uint64_t ttl_ms, ver_ttl_ms;
	int lookup_timeout_ms;
	pthread_t thread;
	bool started;
	/* under lock */
	pthread_mutex_t lock;
	pthread_cond_t work, done;
	struct tier_req *head, *tail;
	size_t queued;
	struct tier_db *dbs;
	size_t ndbs, capdbs;
	bool stopping;
	uint64_t gen;			/* connections made */
	_Atomic bool up;
	_Atomic uint64_t hits, misses, stores, rejected, invalidations;
	_Atomic uint64_t timeouts, errors, downs, dropped;
	/* the thread's own */
	struct tier_node *nodes;	/* [0]: the URL's; more in a cluster */
	size_t nnodes;
	uint16_t *slot_node;		/* hash slot -> index in nodes */
	char sha_get[41], sha_put[41], sha_bump[41];
};

struct cache_tier *
cache_tier_new(const struct cache_tier_config *cfg, char *err, size_t errlen)
{
	struct cache_tier *t = calloc(1, sizeof(*t));
	pthread_condattr_t ca;

	if (!t) {
		snprintf(err, errlen, "out of memory for the cache tier");
		return NULL;
	}
	if (redis_target_parse(&t->redis, cfg->url)) {
		snprintf(err, errlen, "invalid value for cache-tier: '%s' "
			 "(expected redis://[[user]:password@]host[:port][/db])",
			 cfg->url);
		free(t);
		return NULL;
	}
	t->ttl_ms = cfg->ttl_ms ? cfg->ttl_ms : TIER_DEFAULT_TTL_MS;
	/* versions outlive every entry that refers to them */
	t->ver_ttl_ms = 2 * t->ttl_ms + 60000;
	t->lookup_timeout_ms = cfg->lookup_timeout_ms;
	pthread_mutex_init(&t->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->work, &ca);
	pthread_cond_init(&t->done, &ca);
	pthread_condattr_destroy(&ca);
	return t;
}

const char *
cache_tier_display(const struct cache_tier *t)
{
	return t->redis.display;
}

bool
cache_tier_up(const struct cache_tier *t)
{
	return atomic_load(&t->up);
}

/* ---- requests ------------------------------------------------------------ */

static struct tier_req *
req_new(enum tier_op op, uint64_t db_tag, const uint64_t *tags, size_t n)
{
	struct tier_req *r;

	if (n > CACHE_MAX_TAGS)
		return NULL;
	r = calloc(1, sizeof(*r) + n * sizeof(r->tags[0]));
	if (!r)
		return NULL;
	r->op = op;
	r->db_tag = db_tag;
	r->ntags = (uint32_t)n;
	if (n)
		memcpy(r->tags, tags, n * sizeof(tags[0]));
	r->found = TIER_UNAVAILABLE;
	return r;
}

static void
req_free(struct tier_req *r)
{
	free(r->key);
	free(r->data);
	free(r->stamp);
	free(r);
}

/* Under lock: remember a database, whose epoch each connection bumps. */
static void
note_db(struct cache_tier *t, uint64_t db_tag)
{
	struct tier_db *d;
	size_t i;

	for (i = 0; i < t->ndbs; i++)
		if (t->dbs[i].tag == db_tag)
			return;
	if (t->ndbs == t->capdbs) {
		size_t cap = t->capdbs ? 2 * t->capdbs : 8;

		if (!(d = realloc(t->dbs, cap * sizeof(*d))))
			return;	/* the request is refused below */
		t->dbs = d;
		t->capdbs = cap;
	}
	t->dbs[t->ndbs++] = (struct tier_db){ db_tag, 0 };
}

static bool
db_known(const struct cache_tier *t, uint64_t db_tag)
{
	for (size_t i = 0; i < t->ndbs; i++)
		if (t->dbs[i].tag == db_tag)
			return true;
	return false;
}

/* Queue r; false (r still the caller's) when the tier is not up. */
static bool
submit(struct cache_tier *t, struct tier_req *r)
{
	pthread_mutex_lock(&t->lock);
	note_db(t, r->db_tag);
	if (!atomic_load(&t->up) || t->stopping || !db_known(t, r->db_tag) ||
	    t->queued >= TIER_QUEUE_MAX) {
		pthread_mutex_unlock(&t->lock);
		return false;
	}
	r->gen = t->gen;
	if (t->tail)
		t->tail->next = r;
	else
		t->head = r;
	t->tail = r;
	t->queued++;
	pthread_cond_signal(&t->work);
	pthread_mutex_unlock(&t->lock);
	return true;
}

/* Wait for a queued r; false when it timed out (the thread frees it). */
static bool
wait_done(struct cache_tier *t, struct tier_req *r, int timeout_ms)
{
	struct timespec ts;
	bool done;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	ts.tv_sec += timeout_ms / 1000 + ts.tv_nsec / 1000000000;
	ts.tv_nsec %= 1000000000;
	pthread_mutex_lock(&t->lock);
	while (!r->done &&
	       pthread_cond_timedwait(&t->done, &t->lock, &ts) != ETIMEDOUT)
		;
	done = r->done;
	if (!done)
		r->abandoned = true;
	pthread_mutex_unlock(&t->lock);
	return done;
}

/*
 * The tier cannot be trusted since connection gen: stop using it (logged
 * once per outage).  The thread sees it and reconnects.
 */
static void
mark_down(struct cache_tier *t, uint64_t gen, const char *why)
{
	bool was;

	pthread_mutex_lock(&t->lock);
	was = t->gen == gen && atomic_load(&t->up);
	if (was) {
		atomic_store(&t->up, false);
		atomic_fetch_add(&t->downs, 1);
		pthread_cond_signal(&t->work);
	}
	pthread_mutex_unlock(&t->lock);
	if (was)
		log_warn("cache tier %s down: %s; serving from the local cache "
			 "only", t->redis.display, why);
}

enum tier_found
cache_tier_get(struct cache_tier *t, uint64_t db_tag, uint64_t hash,
	       const void *key, size_t keylen, const uint64_t *tags,
	       size_t ntags, uint8_t **data, size_t *len, uint64_t *age_ms,
	       char **stamp)
{
	struct tier_req *r;
	enum tier_found f;

	*data = NULL;
	*stamp = NULL;
	if (!atomic_load(&t->up) ||
	    !(r = req_new(OP_GET, db_tag, tags, ntags)))
		return TIER_UNAVAILABLE;
	r->hash = hash;
	r->waited = true;
	if (!(r->key = malloc(keylen ? keylen : 1))) {
		req_free(r);
		return TIER_UNAVAILABLE;
	}
	memcpy(r->key, key, keylen);	/* a hit's key is compared whole */
	r->keylen = keylen;
	if (!submit(t, r)) {
		req_free(r);
		return TIER_UNAVAILABLE;
	}
	if (!wait_done(t, r, t->lookup_timeout_ms)) {
		atomic_fetch_add(&t->timeouts, 1);
		return TIER_UNAVAILABLE;
	}
	f = r->found;
	if (f == TIER_HIT) {
		*data = r->data;
		*len = r->len;
		*age_ms = r->age_ms;
		r->data = NULL;
	} else if (f == TIER_MISS) {
		*stamp = r->stamp;
		r->stamp = NULL;
	}
	req_free(r);
	return f;
}

void
cache_tier_put(struct cache_tier *t, uint64_t db_tag, uint64_t hash,
	       const void *key, size_t keylen, const uint64_t *tags,
	       size_t ntags, const void *data, size_t len, char *stamp)
{
	struct tier_req *r = req_new(OP_PUT, db_tag, tags, ntags);

	if (!r) {
		free(stamp);
		return;
	}
	r->hash = hash;
	r->stamp = stamp;
	r->key = malloc(keylen ? keylen : 1);
	r->data = malloc(len ? len : 1);
	if (r->key && r->data) {
		memcpy(r->key, key, keylen);
		r->keylen = keylen;
		memcpy(r->data, data, len);
		r->len = len;
		if (submit(t, r))
			return;
	}
	atomic_fetch_add(&t->dropped, 1);
	req_free(r);
}

static uint64_t
current_gen(struct cache_tier *t)
{
	uint64_t gen;

	pthread_mutex_lock(&t->lock);
	gen = t->gen;
	pthread_mutex_unlock(&t->lock);
	return gen;
}

int
cache_tier_invalidate(struct cache_tier *t, uint64_t db_tag,
		      const uint64_t *tags, size_t ntags)
{
	struct tier_req *r = req_new(OP_BUMP, db_tag, tags, ntags);
	uint64_t gen;
	bool ok;

	if (!r) {	/* too many tags: the database's tag covers them */
		r = req_new(OP_BUMP, db_tag, &db_tag, 1);
		if (!r) {
			mark_down(t, current_gen(t),
				  "out of memory for an invalidation");
			return -1;
		}
	}
	r->waited = true;
	if (!submit(t, r)) {
		/* down: the epoch bump when it is back covers these tags */
		req_free(r);
		if (atomic_load(&t->up))
			mark_down(t, current_gen(t), "invalidation queue full");
		return -1;
	}
	gen = r->gen;
	if (!wait_done(t, r, TIER_WRITE_TIMEOUT_MS)) {
		atomic_fetch_add(&t->timeouts, 1);
		mark_down(t, gen, "an invalidation was not confirmed in time");
		return -1;
	}
	ok = r->ok;
	req_free(r);
	if (!ok) {
		mark_down(t, gen, "an invalidation failed");
		return -1;
	}
	atomic_fetch_add(&t->invalidations, ntags);
	return 0;
}

void
cache_tier_get_stats(struct cache_tier *t, struct cache_tier_stats *out)
{
	out->up = atomic_load(&t->up);
	out->hits = atomic_load(&t->hits);
	out->misses = atomic_load(&t->misses);
	out->stores = atomic_load(&t->stores);
	out->rejected_stores = atomic_load(&t->rejected);
	out->invalidations = atomic_load(&t->invalidations);
	out->timeouts = atomic_load(&t->timeouts);
	out->errors = atomic_load(&t->errors);
	out->downs = atomic_load(&t->downs);
	out->dropped = atomic_load(&t->dropped);
}

/* ---- the thread: commands ------------------------------------------------ */

struct cmd {
	int argc;
	const char *argv[TIER_ARGS_MAX];
	size_t argvlen[TIER_ARGS_MAX];
	char keys[CACHE_MAX_TAGS + 2][TIER_KEY_MAX];
	char nums[4][24];
	int nkeys, nnums;
};

static void
arg(struct cmd *c, const void *p, size_t len)
{
	c->argv[c->argc] = p;
	c->argvlen[c->argc++] = len;
}

static void
arg_str(struct cmd *c, const char *s)
{
	arg(c, s, strlen(s));
}

static void
arg_num(struct cmd *c, uint64_t v)
{
	char *s = c->nums[c->nnums++];

	snprintf(s, sizeof(c->nums[0]), "%" PRIu64, v);
	arg_str(c, s);
}

/* pgv:{<db tag>}:<kind>[<id>] */
static void
arg_key(struct cmd *c, uint64_t db_tag, const char *kind, const uint64_t *id)
{
	char *s = c->keys[c->nkeys++];

	if (id)
		snprintf(s, TIER_KEY_MAX, "pgv:{%016" PRIx64 "}:%s%016" PRIx64,
			 db_tag, kind, *id);
	else
		snprintf(s, TIER_KEY_MAX, "pgv:{%016" PRIx64 "}:%s", db_tag,
			 kind);
	arg_str(c, s);
}

/* EVALSHA <sha> <numkeys> entry epoch versions... of a GET or PUT. */
static void
entry_keys(struct cache_tier *t, struct cmd *c, const struct tier_req *r,
	   const char *sha)
{
	arg_str(c, "EVALSHA");
	arg_str(c, sha);
	arg_num(c, 2 + r->ntags);
	arg_key(c, r->db_tag, "e:", &r->hash);
	arg_key(c, r->db_tag, "epoch", NULL);
	for (uint32_t i = 0; i < r->ntags; i++)
		arg_key(c, r->db_tag, "v:", &r->tags[i]);
	(void)t;
}

/* CRC16-CCITT (XMODEM), as Redis Cluster hashes keys to slots. */
static uint16_t
crc16(const char *p, size_t n)
{
	uint16_t crc = 0;

	for (size_t i = 0; i < n; i++) {
		crc ^= (uint16_t)((uint8_t)p[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021
						      : crc << 1);
	}
	return crc;
}

/* The server holding a database's keys: the slot of its hash tag. */
static struct tier_node *
node_of(struct cache_tier *t, uint64_t db_tag)
{
	char tag[17];

	if (t->nnodes == 1)
		return &t->nodes[0];
	snprintf(tag, sizeof(tag), "%016" PRIx64, db_tag);
	return &t->nodes[t->slot_node[crc16(tag, 16) % TIER_SLOTS]];
}

static void
append_req(struct cache_tier *t, const struct tier_req *r)
{
	struct cmd c;

	c.argc = c.nkeys = c.nnums = 0;
	switch (r->op) {
	case OP_GET:
		entry_keys(t, &c, r, t->sha_get);
		arg_num(&c, t->ver_ttl_ms);
		break;
	case OP_PUT:
		entry_keys(t, &c, r, t->sha_put);
		arg_str(&c, r->stamp);
		arg(&c, r->key, r->keylen);
		arg(&c, r->data, r->len);
		arg_num(&c, t->ttl_ms);
		arg_num(&c, t->ver_ttl_ms);
		break;
	case OP_BUMP:
	case OP_EPOCH:
		arg_str(&c, "EVALSHA");
		arg_str(&c, t->sha_bump);
		arg_num(&c, r->op == OP_EPOCH ? 1 : r->ntags);
		if (r->op == OP_EPOCH)
			arg_key(&c, r->db_tag, "epoch", NULL);
		for (uint32_t i = 0; r->op == OP_BUMP && i < r->ntags; i++)
			arg_key(&c, r->db_tag, "v:", &r->tags[i]);
		arg_num(&c, t->ver_ttl_ms);
		break;
	}
	redisAppendCommandArgv(node_of(t, r->db_tag)->c, c.argc, c.argv,
			       c.argvlen);
}

/* A GET's reply: {1, key, bytes} or {0, stamp}. */
static void
got_get(struct cache_tier *t, struct tier_req *r, const redisReply *y)
{
	const redisReply *k, *d;

	if (y->type != REDIS_REPLY_ARRAY || y->elements < 2 ||
	    y->element[0]->type != REDIS_REPLY_INTEGER) {
		atomic_fetch_add(&t->errors, 1);
		return;
	}
	if (y->element[0]->integer == 0) {
		if (y->element[1]->type == REDIS_REPLY_STRING &&
		    (r->stamp = strdup(y->element[1]->str)))
			r->found = TIER_MISS;
		atomic_fetch_add(&t->misses, 1);
		return;
	}
	if (y->elements != 4) {
		atomic_fetch_add(&t->errors, 1);
		return;
	}
	k = y->element[1];
	d = y->element[2];
	if (k->type != REDIS_REPLY_STRING || d->type != REDIS_REPLY_STRING ||
	    k->len != r->keylen || memcmp(k->str, r->key, r->keylen) != 0) {
		atomic_fetch_add(&t->misses, 1);	/* a hash collision */
		return;
	}
	if ((r->data = malloc(d->len ? d->len : 1))) {
		memcpy(r->data, d->str, d->len);
		r->len = d->len;
		r->found = TIER_HIT;
		if (y->element[3]->type == REDIS_REPLY_INTEGER &&
		    y->element[3]->integer > 0 &&
		    (uint64_t)y->element[3]->integer < t->ttl_ms)
			r->age_ms = t->ttl_ms - (uint64_t)y->element[3]->integer;
		atomic_fetch_add(&t->hits, 1);
	}
}

/* Hand a finished request back (or free it); ok: Redis answered. */
static void
complete(struct cache_tier *t, struct tier_req *r, bool ok)
{
	pthread_mutex_lock(&t->lock);
	r->ok = ok;
	r->done = true;
	if (!r->waited || r->abandoned) {
		pthread_mutex_unlock(&t->lock);
		req_free(r);
		return;
	}
	pthread_cond_broadcast(&t->done);
	pthread_mutex_unlock(&t->lock);
}

/*
 * One reply; false when the connection can no longer be trusted (an
 * epoch or version bump failed, a script is missing, the link broke).
 */
static bool
handle_reply(struct cache_tier *t, struct tier_req *r, const redisReply *y)
{
	if (y->type == REDIS_REPLY_ERROR) {
		atomic_fetch_add(&t->errors, 1);
		log_debug("cache tier: %s", y->str);
		/* a missing script or a slot that moved (cluster): the
		 * connection is rebuilt, epochs bumped */
		return r->op != OP_BUMP && r->op != OP_EPOCH &&
		       strncmp(y->str, "NOSCRIPT", 8) != 0 &&
		       strncmp(y->str, "MOVED", 5) != 0 &&
		       strncmp(y->str, "ASK", 3) != 0 &&
		       strncmp(y->str, "CLUSTERDOWN", 11) != 0;
	}
	if (r->op == OP_GET)
		got_get(t, r, y);
	else if (r->op == OP_PUT)
		atomic_fetch_add(y->type == REDIS_REPLY_INTEGER && y->integer
					 ? &t->stores : &t->rejected, 1);
	return true;
}

/* Under lock: the first command for a database on a connection bumps
 * its epoch (queued before it, so Redis runs it first). */
static struct tier_req *
epoch_first(struct cache_tier *t, struct tier_req *r)
{
	struct tier_req *e;

	for (size_t i = 0; i < t->ndbs; i++) {
		if (t->dbs[i].tag != r->db_tag)
			continue;
		if (t->dbs[i].bumped_gen == t->gen ||
		    !(e = req_new(OP_EPOCH, r->db_tag, NULL, 0)))
			break;
		t->dbs[i].bumped_gen = t->gen;
		e->next = r;
		return e;
	}
	return r;
}

/* Under lock: take every queued request, in order. */
static struct tier_req *
take_batch(struct cache_tier *t)
{
	struct tier_req *head = NULL, **tail = &head, *r, *next, *first;

	for (r = t->head; r; r = next) {
		next = r->next;
		r->next = NULL;
		first = epoch_first(t, r);
		*tail = first;
		tail = &r->next;
	}
	t->head = t->tail = NULL;
	t->queued = 0;
	return head;
}

static void
fail_all(struct cache_tier *t, struct tier_req *r)
{
	struct tier_req *next;

	for (; r; r = next) {
		next = r->next;
		complete(t, r, false);
	}
}

/* Send a batch in one write, then read its replies in order. */
static void
run_batch(struct cache_tier *t, struct tier_req *batch)
{
	struct tier_req *r, *next;
	redisReply *y;
	void *reply;
	char why[300];

	for (r = batch; r; r = r->next)
		append_req(t, r);
	for (r = batch; r; r = next) {
		next = r->next;
		redisContext *c = node_of(t, r->db_tag)->c;

		if (redisGetReply(c, &reply) != REDIS_OK) {
			snprintf(why, sizeof(why), "%s", c->errstr[0] ?
				 c->errstr : "connection lost");
			mark_down(t, t->gen, why);
			fail_all(t, r);
			return;
		}
		y = reply;
		if (!handle_reply(t, r, y)) {
			snprintf(why, sizeof(why), "%s", y->type ==
				 REDIS_REPLY_ERROR ? y->str : "bad reply");
			freeReplyObject(y);
			mark_down(t, t->gen, why);
			fail_all(t, r);
			return;
		}
		freeReplyObject(y);
		complete(t, r, true);
	}
}

/* Serve the queue until the tier goes down or stops. */
static void
serve(struct cache_tier *t)
{
	struct tier_req *batch;

	for (;;) {
		pthread_mutex_lock(&t->lock);
		while (!t->head && !t->stopping && atomic_load(&t->up))
			pthread_cond_wait(&t->work, &t->lock);
		if (t->stopping || !atomic_load(&t->up)) {
			atomic_store(&t->up, false);
			batch = t->head;
			t->head = t->tail = NULL;
			t->queued = 0;
			pthread_mutex_unlock(&t->lock);
			fail_all(t, batch);
			return;
		}
		batch = take_batch(t);
		pthread_mutex_unlock(&t->lock);
		run_batch(t, batch);
	}
}

static bool
load_script(redisContext *c, const char *lua, char *sha, char *e,
	    size_t elen)
{
	redisReply *y = redisCommand(c, "SCRIPT LOAD %s", lua);
	bool ok = y && y->type == REDIS_REPLY_STRING && y->len == 40;

	if (ok)
		memcpy(sha, y->str, 41);
	else
		snprintf(e, elen, "SCRIPT LOAD: %s", y ? y->str : c->errstr);
	freeReplyObject(y);
	return ok;
}

/* Bump the epoch of one database on the open connection. */
static bool
bump_epoch(struct cache_tier *t, uint64_t db_tag, char *e, size_t elen)
{
	struct tier_req *r = req_new(OP_EPOCH, db_tag, NULL, 0);
	redisReply *y = NULL;
	void *reply;
	bool ok = false;

	redisContext *c = node_of(t, db_tag)->c;

	if (r) {
		append_req(t, r);
		if (redisGetReply(c, &reply) == REDIS_OK) {
			y = reply;
			ok = y->type == REDIS_REPLY_INTEGER;
		}
		req_free(r);
	}
	if (!ok)
		snprintf(e, elen, "epoch bump: %s", y && y->type ==
			 REDIS_REPLY_ERROR ? y->str : c->errstr);
	freeReplyObject(y);
	return ok;
}

/* Index of host:port in t->nodes, added when new; -1 when full. */
static int
node_index(struct cache_tier *t, const char *host, int port, size_t cap)
{
	size_t i;

	for (i = 0; i < t->nnodes; i++)
		if (t->nodes[i].port == port &&
		    strcmp(t->nodes[i].host, host) == 0)
			return (int)i;
	if (t->nnodes == cap)
		return -1;
	snprintf(t->nodes[i].host, sizeof(t->nodes[i].host), "%s", host);
	t->nodes[i].port = port;
	t->nodes[i].c = NULL;
	t->nnodes++;
	return (int)i;
}

/*
 * CLUSTER SLOTS: which master serves which slots.  false with e set when
 * the reply cannot be used; a server without cluster support has every
 * slot (single node).
 */
static bool
map_slots(struct cache_tier *t, char *e, size_t elen)
{
	redisReply *y = redisCommand(t->nodes[0].c, "CLUSTER SLOTS"), *r, *m;
	struct tier_node *grown;
	size_t cap = 1 + (y && y->type == REDIS_REPLY_ARRAY ? y->elements : 0);
	bool ok = true;
	int idx;

	memset(t->slot_node, 0, TIER_SLOTS * sizeof(t->slot_node[0]));
	if (!y || y->type != REDIS_REPLY_ARRAY) {
		freeReplyObject(y);	/* "cluster support disabled" */
		return true;
	}
	if (!(grown = realloc(t->nodes, cap * sizeof(*t->nodes)))) {
		snprintf(e, elen, "out of memory");
		freeReplyObject(y);
		return false;
	}
	t->nodes = grown;
	for (size_t i = 0; ok && i < y->elements; i++) {
		r = y->element[i];
		ok = r->type == REDIS_REPLY_ARRAY && r->elements >= 3 &&
		     (m = r->element[2])->type == REDIS_REPLY_ARRAY &&
		     m->elements >= 2 && m->element[0]->type == REDIS_REPLY_STRING &&
		     m->element[1]->type == REDIS_REPLY_INTEGER &&
		     r->element[0]->integer >= 0 &&
		     r->element[1]->integer < TIER_SLOTS &&
		     r->element[0]->integer <= r->element[1]->integer;
		if (!ok)
			break;
		/* an empty address: the node we asked */
		idx = node_index(t, m->element[0]->len ? m->element[0]->str :
				 t->redis.host, (int)m->element[1]->integer, cap);
		ok = idx >= 0;
		for (long long s = r->element[0]->integer;
		     ok && s <= r->element[1]->integer; s++)
			t->slot_node[s] = (uint16_t)idx;
	}
	if (!ok)
		snprintf(e, elen, "CLUSTER SLOTS: unexpected reply");
	freeReplyObject(y);
	return ok;
}

/* Connect to the URL's server and, in a cluster, to every master. */
static bool
connect_nodes(struct cache_tier *t, char *e, size_t elen)
{
	struct redis_target nt = t->redis;

	if (!t->nodes && !(t->nodes = calloc(1, sizeof(*t->nodes)))) {
		snprintf(e, elen, "out of memory");
		return false;
	}
	if (!t->slot_node &&
	    !(t->slot_node = calloc(TIER_SLOTS, sizeof(*t->slot_node)))) {
		snprintf(e, elen, "out of memory");
		return false;
	}
	t->nnodes = 1;
	snprintf(t->nodes[0].host, sizeof(t->nodes[0].host), "%s",
		 t->redis.host);
	t->nodes[0].port = t->redis.port;
	if (!(t->nodes[0].c = redis_connect(&t->redis, TIER_CONNECT_TIMEOUT_MS,
					    e, elen)) ||
	    !map_slots(t, e, elen))
		return false;
	for (size_t i = 0; i < t->nnodes; i++) {
		if (!t->nodes[i].c) {
			snprintf(nt.host, sizeof(nt.host), "%s", t->nodes[i].host);
			nt.port = t->nodes[i].port;
			t->nodes[i].c = redis_connect(&nt, TIER_CONNECT_TIMEOUT_MS,
						      e, elen);
		}
		if (!t->nodes[i].c ||
		    !load_script(t->nodes[i].c, LUA_GET, t->sha_get, e, elen) ||
		    !load_script(t->nodes[i].c, LUA_PUT, t->sha_put, e, elen) ||
		    !load_script(t->nodes[i].c, LUA_BUMP, t->sha_bump, e, elen))
			return false;
	}
	return true;
}

/*
 * Connect, load the scripts and bump the epoch of every database known so
 * far (entries stored before may be stale, tier.h), then go up.
 */
static bool
tier_open(struct cache_tier *t, char *e, size_t elen)
{
	uint64_t *tags = NULL;
	size_t n, i, j;

	if (!connect_nodes(t, e, elen))
		return false;
	pthread_mutex_lock(&t->lock);
	n = t->ndbs;
	if (n && (tags = malloc(n * sizeof(*tags))))
		for (i = 0; i < n; i++)
			tags[i] = t->dbs[i].tag;
	pthread_mutex_unlock(&t->lock);
	if (n && !tags) {
		snprintf(e, elen, "out of memory");
		return false;
	}
	for (i = 0; i < n; i++) {
		if (!bump_epoch(t, tags[i], e, elen)) {
			free(tags);
			return false;
		}
	}
	pthread_mutex_lock(&t->lock);
	t->gen++;
	for (i = 0; i < n; i++)
		for (j = 0; j < t->ndbs; j++)
			if (t->dbs[j].tag == tags[i])
				t->dbs[j].bumped_gen = t->gen;
	atomic_store(&t->up, true);
	pthread_mutex_unlock(&t->lock);
	free(tags);
	log_info("cache tier %s up (%zu node%s; epoch bumped for %zu "
		 "database%s: nothing stored before is served)",
		 t->redis.display, t->nnodes, t->nnodes == 1 ? "" : "s", n,
		 n == 1 ? "" : "s");
	return true;
}

static void
tier_close(struct cache_tier *t)
{
	for (size_t i = 0; i < t->nnodes; i++)
		if (t->nodes[i].c)
			redisFree(t->nodes[i].c);
	t->nnodes = 0;
}

/* Sleep up to ms unless stopping; true when stopping. */
static bool
tier_pause(struct cache_tier *t, int ms)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	ts.tv_sec += ms / 1000 + ts.tv_nsec / 1000000000;
	ts.tv_nsec %= 1000000000;
	pthread_mutex_lock(&t->lock);
	while (!t->stopping &&
	       pthread_cond_timedwait(&t->work, &t->lock, &ts) != ETIMEDOUT)
		;
	stop = t->stopping;
	pthread_mutex_unlock(&t->lock);
	return stop;
}

static void *
tier_thread(void *arg)
{
	struct cache_tier *t = arg;
	int backoff = TIER_BACKOFF_MIN_MS;
	bool warned = false;
	char e[256];

	while (!tier_pause(t, 0)) {
		if (!tier_open(t, e, sizeof(e))) {
			tier_close(t);
			if (!warned)
				log_warn("cache tier %s down: %s; serving from "
					 "the local cache only (retrying)",
					 t->redis.display, e);
			warned = true;
			if (tier_pause(t, backoff))
				break;
			backoff = backoff * 2 > TIER_BACKOFF_MAX_MS ?
				TIER_BACKOFF_MAX_MS : backoff * 2;
			continue;
		}
		warned = true;	/* mark_down logs the next outage */
		backoff = TIER_BACKOFF_MIN_MS;
		serve(t);
		tier_close(t);
	}
	tier_close(t);
	return NULL;
}

int
cache_tier_start(struct cache_tier *t)
{
	if (pthread_create(&t->thread, NULL, tier_thread, t))
		return -1;
	t->started = true;
	return 0;
}

void
cache_tier_free(struct cache_tier *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->stopping = true;
	pthread_cond_broadcast(&t->work);
	pthread_mutex_unlock(&t->lock);
	if (t->started)
		pthread_join(t->thread, NULL);
	fail_all(t, t->head);
	free(t->nodes);
	free(t->slot_node);
	free(t->dbs);
	pthread_cond_destroy(&t->work);
	pthread_cond_destroy(&t->done);
	pthread_mutex_destroy(&t->lock);
	free(t);
}
