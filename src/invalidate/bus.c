/*
 * bus.c - the Redis invalidation bus (see bus.h).
 */
#include "invalidate/bus.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/rand.h>

#include "cache/store.h"
#include "cache/tags.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/redis.h"
#include "invalidate/events.h"
#include "invalidate/push.h"

enum {
	BUS_QUEUE_MAX = 10000,		/* messages waiting to be published */
	BUS_BACKOFF_MIN_MS = 100,
	BUS_BACKOFF_MAX_MS = 5000,
	BUS_TIMEOUT_MS = 2000,		/* connect and publish */
};

static const char CHANNEL[] = "pgvalet:invalidate";

struct bus_msg {
	struct bus_msg *next;
	size_t len;
	char text[];
};

struct bus {
	struct redis_target redis;
	char id[17];			/* this proxy's, hex */
	struct cache_store *cache;
	struct push *push;
	pthread_t thread;
	bool started;
	int wake_fd;			/* eventfd: queue or stop */
	pthread_mutex_t lock;
	struct bus_msg *head, *tail;
	size_t queued;
	_Atomic bool stopping, up;
	_Atomic uint64_t published, received, applied_tags, dropped;
	_Atomic uint64_t reconnects;
	/* the thread's own */
	redisContext *sub, *pub;
	struct bus_line *line;		/* the message being applied */
};

struct bus *
bus_new(const char *url, struct cache_store *cache, struct push *push,
	char *err, size_t errlen)
{
	struct bus *b = calloc(1, sizeof(*b));
	uint8_t rnd[8];

	if (!b) {
		snprintf(err, errlen, "out of memory for the bus");
		return NULL;
	}
	if (redis_target_parse(&b->redis, url)) {
		snprintf(err, errlen, "invalid value for bus: '%s' (expected "
			 "redis://[[user]:password@]host[:port][/db])", url);
		free(b);
		return NULL;
	}
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		snprintf(err, errlen, "bus: no randomness for the proxy id");
		free(b);
		return NULL;
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(b->id + 2 * i, 3, "%02x", rnd[i]);
	b->cache = cache;
	b->push = push;
	if (!(b->line = malloc(sizeof(*b->line)))) {
		snprintf(err, errlen, "out of memory for the bus");
		free(b);
		return NULL;
	}
	b->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->wake_fd < 0) {
		snprintf(err, errlen, "bus: eventfd: %s", strerror(errno));
		free(b->line);
		free(b);
		return NULL;
	}
	pthread_mutex_init(&b->lock, NULL);
	return b;
}

static void
wake(struct bus *b)
{
	uint64_t one = 1;

	if (write(b->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("bus: cannot wake its thread: %s", strerror(errno));
}

void
bus_publish(struct bus *b, const char *db, const uint64_t *tags, size_t n)
{
	size_t cap = 40 + strlen(db) + (n ? n * 17 : 1), len, i;
	struct bus_msg *m;

	if (!atomic_load_explicit(&b->up, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&b->dropped, 1, memory_order_relaxed);
		return;
	}
	if (!(m = malloc(sizeof(*m) + cap))) {
		atomic_fetch_add_explicit(&b->dropped, 1, memory_order_relaxed);
		return;
	}
	len = (size_t)snprintf(m->text, cap, "%s|%s|", b->id, db);
	if (!n)
		m->text[len++] = '*';
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(m->text + len, cap - len, "%s%016" PRIx64,
					i ? "," : "", tags[i]);
	m->len = len;
	m->next = NULL;
	pthread_mutex_lock(&b->lock);
	if (b->queued >= BUS_QUEUE_MAX) {
		pthread_mutex_unlock(&b->lock);
		free(m);
		atomic_fetch_add_explicit(&b->dropped, 1, memory_order_relaxed);
		return;
	}
	if (b->tail)
		b->tail->next = m;
	else
		b->head = m;
	b->tail = m;
	b->queued++;
	pthread_mutex_unlock(&b->lock);
	wake(b);
}

/* ---- the thread ---------------------------------------------------------- */

static bool
bus_open(struct bus *b, char *e, size_t elen)
{
	redisReply *r;

	if (!(b->pub = redis_connect(&b->redis, BUS_TIMEOUT_MS, e, elen)) ||
	    !(b->sub = redis_connect(&b->redis, BUS_TIMEOUT_MS, e, elen)))
		return false;
	r = redisCommand(b->sub, "SUBSCRIBE %s", CHANNEL);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		snprintf(e, elen, "SUBSCRIBE: %s", r ? r->str : b->sub->errstr);
		freeReplyObject(r);
		return false;
	}
	freeReplyObject(r);
	return true;
}

static void
bus_close(struct bus *b)
{
	if (b->sub)
		redisFree(b->sub);
	if (b->pub)
		redisFree(b->pub);
	b->sub = b->pub = NULL;
}

/* Apply one message from another proxy. */
static void
on_message(struct bus *b, const char *s, size_t len)
{
	struct bus_line *m = b->line;
	uint64_t tag;

	if (bus_line_parse(s, len, m)) {
		log_warn("bus: ignored a malformed message (%zu bytes)", len);
		return;
	}
	if (memcmp(m->id, b->id, 16) == 0)
		return;		/* our own */
	atomic_fetch_add_explicit(&b->received, 1, memory_order_relaxed);
	if (m->all) {
		tag = cache_tag_db(m->db);
		cache_tag_bump(b->cache, &tag, 1);
		if (b->push)
			push_flush(b->push, m->db, "a write through another proxy");
		return;
	}
	cache_tag_bump(b->cache, m->tags, m->ntags);
	atomic_fetch_add_explicit(&b->applied_tags, m->ntags,
				  memory_order_relaxed);
	if (b->push)
		push_tags(b->push, m->db, m->tags, m->ntags, "bus");
}

/* Read what the subscription has; false when the connection failed. */
static bool
drain_sub(struct bus *b)
{
	redisReply *r;
	void *reply;

	if (redisBufferRead(b->sub) != REDIS_OK)
		return false;
	for (;;) {
		if (redisGetReplyFromReader(b->sub, &reply) != REDIS_OK)
			return false;
		if (!reply)
			return true;
		r = reply;
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
		    r->element[0]->type == REDIS_REPLY_STRING &&
		    strcmp(r->element[0]->str, "message") == 0 &&
		    r->element[2]->type == REDIS_REPLY_STRING)
			on_message(b, r->element[2]->str, r->element[2]->len);
		freeReplyObject(r);
	}
}

/* Publish what is queued; false when the connection failed. */
static bool
drain_queue(struct bus *b)
{
	struct bus_msg *m;
	redisReply *r;
	uint64_t v;

	if (read(b->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return false;
	for (;;) {
		pthread_mutex_lock(&b->lock);
		m = b->head;
		if (m) {
			b->head = m->next;
			if (!b->head)
				b->tail = NULL;
			b->queued--;
		}
		pthread_mutex_unlock(&b->lock);
		if (!m)
			return true;
		r = redisCommand(b->pub, "PUBLISH %s %b", CHANNEL, m->text,
				 m->len);
		free(m);
		if (!r)
			return false;
		freeReplyObject(r);
		atomic_fetch_add_explicit(&b->published, 1,
					  memory_order_relaxed);
	}
}

static void
drop_queue(struct bus *b)
{
	struct bus_msg *m;

	pthread_mutex_lock(&b->lock);
	while ((m = b->head)) {
		b->head = m->next;
		free(m);
		atomic_fetch_add_explicit(&b->dropped, 1, memory_order_relaxed);
	}
	b->tail = NULL;
	b->queued = 0;
	pthread_mutex_unlock(&b->lock);
}

/* Sleep up to ms unless stopping; true when stopping. */
static bool
bus_pause(struct bus *b, int ms)
{
	struct pollfd p = { .fd = b->wake_fd, .events = POLLIN };
	uint64_t until = clock_mono_ms() + (uint64_t)ms, now, v;

	while (!atomic_load(&b->stopping)) {
		now = clock_mono_ms();
		if (now >= until)
			return false;
		if (poll(&p, 1, (int)(until - now)) > 0 &&
		    read(b->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			return false;
		drop_queue(b);	/* down: the WAL stream carries them */
	}
	return true;
}

static void *
bus_thread(void *arg)
{
	struct bus *b = arg;
	int backoff = BUS_BACKOFF_MIN_MS;
	bool warned = false;
	struct pollfd p[2];
	char e[256];

	while (!atomic_load(&b->stopping)) {
		if (!bus_open(b, e, sizeof(e))) {
			bus_close(b);
			if (!warned)
				log_warn("bus: cannot reach %s (%s); evictions "
					 "by other proxies arrive through the "
					 "replication stream only, retrying",
					 b->redis.display, e);
			warned = true;
			if (bus_pause(b, backoff))
				break;
			backoff = backoff * 2 > BUS_BACKOFF_MAX_MS
					  ? BUS_BACKOFF_MAX_MS : backoff * 2;
			continue;
		}
		log_info("bus: connected to %s (channel %s, proxy id %s)",
			 b->redis.display, CHANNEL, b->id);
		atomic_store(&b->up, true);
		warned = false;
		e[0] = 0;
		backoff = BUS_BACKOFF_MIN_MS;
		for (;;) {
			p[0] = (struct pollfd){ .fd = b->sub->fd,
						.events = POLLIN };
			p[1] = (struct pollfd){ .fd = b->wake_fd,
						.events = POLLIN };
			if (poll(p, 2, 1000) < 0 && errno != EINTR)
				break;
			if (atomic_load(&b->stopping))
				break;
			if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) &&
			    !drain_sub(b)) {
				snprintf(e, sizeof(e), "%s", b->sub->errstr);
				break;
			}
			if ((p[1].revents & POLLIN) && !drain_queue(b)) {
				snprintf(e, sizeof(e), "%s", b->pub->errstr);
				break;
			}
		}
		atomic_store(&b->up, false);
		bus_close(b);
		drop_queue(b);
		if (atomic_load(&b->stopping))
			break;
		atomic_fetch_add_explicit(&b->reconnects, 1,
					  memory_order_relaxed);
		log_warn("bus: lost %s (%s); evictions by other proxies arrive "
			 "through the replication stream only, reconnecting",
			 b->redis.display, e[0] ? e : "connection closed");
		warned = true;
		if (bus_pause(b, BUS_BACKOFF_MIN_MS))
			break;
	}
	bus_close(b);
	return NULL;
}

int
bus_start(struct bus *b)
{
	if (pthread_create(&b->thread, NULL, bus_thread, b))
		return -1;
	b->started = true;
	return 0;
}

void
bus_free(struct bus *b)
{
	if (!b)
		return;
	atomic_store(&b->stopping, true);
	wake(b);
	if (b->started)
		pthread_join(b->thread, NULL);
	drop_queue(b);
	close(b->wake_fd);
	pthread_mutex_destroy(&b->lock);
	free(b->line);
	free(b);
}

void
bus_get_stats(struct bus *b, struct bus_stats *out)
{
	out->up = atomic_load(&b->up);
	out->published = atomic_load(&b->published);
	out->received = atomic_load(&b->received);
	out->applied_tags = atomic_load(&b->applied_tags);
	out->dropped = atomic_load(&b->dropped);
	out->reconnects = atomic_load(&b->reconnects);
}
