/*
 * push.c - see push.h.
 *
 * One thread runs a level-triggered epoll loop over the listeners, an
 * eventfd and the subscribers.  Each subscriber has two buffers: q, which
 * producers append whole lines to under p->mu, and out, which only the
 * thread touches.  When out has been sent the thread swaps the two under
 * the mutex, so the mutex covers copying lines, never a system call on a
 * subscriber's socket.
 *
 * A producer formats everything after the sequence number (the "tail")
 * before taking the lock; under it, it takes the next seq and appends
 * head + seq + tail to every subscriber, so every subscriber gets the
 * lines in seq order.  Then it writes the eventfd, unless a wake-up is
 * already pending.
 *
 * Nothing is ever silently skipped: a subscriber that cannot take a line
 * (over max_pending, or out of memory) is marked dead by the producer and
 * closed by the thread, which the subscriber sees as a lost connection
 * (so it flushes).  An event that cannot be formatted (out of memory)
 * kills every subscriber for the same reason.
 */
#include "invalidate/push.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "net/unixsock.h"

enum {
	EPOLL_BATCH = 64,
	ACCEPT_BATCH = 16,
	ACCEPT_PAUSE_MS = 100,	/* after EMFILE and the like */
	LISTEN_BACKLOG = 128,
	BUF_MIN = 4096,
	BUF_KEEP = 1 << 20,	/* an idle buffer larger than this is freed */
};

enum watch_kind { W_LISTEN_UNIX, W_LISTEN_TCP, W_EVENT, W_SUB };

struct watch {
	enum watch_kind kind;
};

/* A growable byte buffer; off is how much of it has been sent. */
struct buf {
	char *data;
	size_t len, off, cap;
	bool oom;		/* a builder's append failed */
};

struct sub {
	struct watch w;		/* first: epoll's data.ptr */
	struct sub *next;	/* p->subs, or p->zombies once closed */
	int fd;			/* -1 once closed */
	bool want_out;		/* thread: EPOLLOUT is registered */
	struct buf out;		/* thread only: being sent */
	atomic_size_t inflight;	/* out.len - out.off, read by producers */
	/* under p->mu: */
	struct buf q;
	uint64_t last_ms;	/* when a line was last queued (monotonic) */
	bool dead, slow, oom;
	char peer[96];		/* for log lines */
};

struct dbstate {
	char *db;
	bool up;
};

struct push {
	struct push_config cfg;
	int unix_fd, tcp_fd, epfd, evfd;
	int tcp_port;
	bool unix_bound;	/* we created cfg.unix_path: unlink it */
	bool started;
	pthread_t thread;
	struct watch w_unix, w_tcp, w_event;
	atomic_bool stop;
	atomic_bool wake_pending;

	/* thread only */
	struct sub *zombies;		/* closed, freed after the batch */
	uint64_t accept_resume_ms;	/* 0 = accepting */

	pthread_mutex_t mu;
	struct sub *subs;		/* changed by the thread, under mu */
	uint64_t seq;			/* under mu */
	struct dbstate *states;		/* under mu, in the order first set */
	size_t nstates, capstates;

	atomic_uint_fast64_t nsubs, events, dropped_slow, bytes_sent;
};

/* ---- small helpers ------------------------------------------------------- */

static int
buf_reserve(struct buf *b, size_t more)
{
	size_t cap = b->cap ? b->cap : BUF_MIN;
	char *d;

	if (b->len + more <= b->cap)
		return 0;
	while (cap < b->len + more)
		cap *= 2;
	d = realloc(b->data, cap);
	if (!d)
		return -1;
	b->data = d;
	b->cap = cap;
	return 0;
}

static void
buf_put(struct buf *b, const void *s, size_t n)
{
	if (b->oom)
		return;
	if (buf_reserve(b, n)) {
		b->oom = true;
		return;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
}

static void
buf_puts(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

static void buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->oom = true;	/* only short numbers are printed here */
		return;
	}
	buf_put(b, tmp, (size_t)n);
}

static void
buf_free(struct buf *b)
{
	free(b->data);
	*b = (struct buf){ 0 };
}

/*
 * Length of the valid UTF-8 sequence of 2 to 4 bytes at u, or 0 (overlong
 * forms, surrogates and values past U+10FFFF are not valid).  Stops at the
 * first byte that does not fit, so it never reads past a NUL.
 */
static size_t
utf8_seq(const unsigned char *u)
{
	unsigned lo = 0x80, hi = 0xbf;

	if (u[0] < 0xc2 || u[0] > 0xf4)
		return 0;
	if (u[0] < 0xe0)
		return (u[1] & 0xc0) == 0x80 ? 2 : 0;
	if (u[0] < 0xf0) {
		if (u[0] == 0xe0)
			lo = 0xa0;
		else if (u[0] == 0xed)
			hi = 0x9f;
		return u[1] >= lo && u[1] <= hi && (u[2] & 0xc0) == 0x80 ? 3
									 : 0;
	}
	if (u[0] == 0xf0)
		lo = 0x90;
	else if (u[0] == 0xf4)
		hi = 0x8f;
	return u[1] >= lo && u[1] <= hi && (u[2] & 0xc0) == 0x80 &&
			       (u[3] & 0xc0) == 0x80 ? 4 : 0;
}

/*
 * s as a JSON string (NULL as null).  Names come from Postgres in the
 * database's encoding: invalid UTF-8 is sent byte by byte as \u00XX so a
 * strict parser never rejects the line.
 */
static void
buf_json_str(struct buf *b, const char *s)
{
	const unsigned char *u = (const unsigned char *)s;

	if (!s) {
		buf_puts(b, "null");
		return;
	}
	buf_put(b, "\"", 1);
	while (*u) {
		size_t n = utf8_seq(u);

		if (n) {
			buf_put(b, u, n);
			u += n;
		} else if (*u == '"' || *u == '\\') {
			buf_put(b, "\\", 1);
			buf_put(b, u++, 1);
		} else if (*u < 0x20 || *u >= 0x80) {
			buf_printf(b, "\\u%04x", *u++);
		} else {
			buf_put(b, u++, 1);
		}
	}
	buf_put(b, "\"", 1);
}

static void
buf_tags(struct buf *b, const uint64_t *tags, size_t n)
{
	size_t i;

	buf_puts(b, ",\"tags\":[");
	for (i = 0; i < n; i++)
		buf_printf(b, "%s\"%016" PRIx64 "\"", i ? "," : "", tags[i]);
	buf_puts(b, "]");
}

/* ---- producers ----------------------------------------------------------- */

static bool
nobody(const struct push *p)
{
	/*
	 * seq_cst, and a new subscriber is counted before its hello is
	 * queued: an event skipped here came before that hello, and the
	 * subscriber bypasses its cache until hello.
	 */
	return atomic_load(&p->nsubs) == 0;
}

/* Make the thread pump the queues; one eventfd write per wake-up. */
static void
wake(struct push *p)
{
	uint64_t one = 1;

	if (atomic_exchange(&p->wake_pending, true))
		return;
	if (write(p->evfd, &one, sizeof(one)) < 0)
		return;	/* EAGAIN: the counter is full, a wake-up is due */
}

/* Queue a + b (one line) for s, or mark s dead when it cannot take it. */
static void
queue_locked(struct push *p, struct sub *s, const char *a, size_t alen,
	     const char *b, size_t blen, uint64_t now)
{
	size_t n = alen + blen;

	if (s->dead)
		return;
	if (s->q.len + n + atomic_load(&s->inflight) > p->cfg.max_pending) {
		s->dead = s->slow = true;
		s->q.len = 0;
		return;
	}
	if (buf_reserve(&s->q, n)) {
		s->dead = s->oom = true;
		s->q.len = 0;
		return;
	}
	memcpy(s->q.data + s->q.len, a, alen);
	memcpy(s->q.data + s->q.len + alen, b, blen);
	s->q.len += n;
	s->last_ms = now;
}

/*
 * Number one event and queue '{"type":"<type>","seq":N' + tail for every
 * subscriber.  False when nobody was there (no number is used up).
 */
static bool
broadcast_locked(struct push *p, const char *type, const struct buf *tail)
{
	uint64_t now = clock_mono_ms();
	char head[64];
	struct sub *s;
	int n;

	if (!p->subs)
		return false;
	if (tail->oom) {
		for (s = p->subs; s; s = s->next)
			s->dead = s->oom = true;
		return true;
	}
	p->seq++;
	n = snprintf(head, sizeof(head), "{\"type\":\"%s\",\"seq\":%" PRIu64,
		     type, p->seq);
	for (s = p->subs; s; s = s->next)
		queue_locked(p, s, head, (size_t)n, tail->data, tail->len,
			     now);
	atomic_fetch_add(&p->events, 1);
	return true;
}

static void
broadcast(struct push *p, const char *type, const struct buf *tail)
{
	bool queued;

	pthread_mutex_lock(&p->mu);
	queued = broadcast_locked(p, type, tail);
	pthread_mutex_unlock(&p->mu);
	if (queued)
		wake(p);
}

/* The invalidate line's tail up to the tags, included. */
static void
tail_start(struct buf *t, const char *db, const char *source,
	   const uint64_t *tags, size_t n)
{
	buf_puts(t, ",\"db\":");
	buf_json_str(t, db);
	if (source) {
		buf_puts(t, ",\"source\":");
		buf_json_str(t, source);
	}
	buf_tags(t, tags, n);
}

void
push_tags(struct push *p, const char *db, const uint64_t *tags, size_t n,
	  const char *source)
{
	struct buf t = { 0 };

	if (nobody(p))
		return;
	tail_start(&t, db, source, tags, n);
	buf_puts(&t, "}\n");
	broadcast(p, "invalidate", &t);
	buf_free(&t);
}

void
push_rows(struct push *p, const char *db, uint32_t oid, const char *schema,
	  const char *table, const uint64_t *tags, size_t ntags,
	  const int64_t *rows, size_t nrows, const char *source)
{
	struct buf t = { 0 };
	size_t i;

	if (nobody(p))
		return;
	tail_start(&t, db, source, tags, ntags);
	if (oid)
		buf_printf(&t, ",\"oid\":%" PRIu32, oid);
	if (schema) {
		buf_puts(&t, ",\"schema\":");
		buf_json_str(&t, schema);
	}
	if (table) {
		buf_puts(&t, ",\"table\":");
		buf_json_str(&t, table);
	}
	if (rows && nrows) {
		buf_puts(&t, ",\"rows\":[");
		for (i = 0; i < nrows; i++)
			buf_printf(&t, "%s%" PRId64, i ? "," : "", rows[i]);
		buf_puts(&t, "]");
	}
	buf_puts(&t, "}\n");
	broadcast(p, "invalidate", &t);
	buf_free(&t);
}

void
push_flush(struct push *p, const char *db, const char *reason)
{
	struct buf t = { 0 };

	if (nobody(p))
		return;
	buf_puts(&t, ",\"db\":");
	buf_json_str(&t, db);
	if (reason) {
		buf_puts(&t, ",\"reason\":");
		buf_json_str(&t, reason);
	}
	buf_puts(&t, "}\n");
	broadcast(p, "flush", &t);
	buf_free(&t);
}

/* The state line's tail: ',"db":"app","stream":"up"}\n'. */
static void
state_tail(struct buf *t, const char *db, bool up)
{
	buf_puts(t, ",\"db\":");
	buf_json_str(t, db);
	buf_puts(t, up ? ",\"stream\":\"up\"}\n" : ",\"stream\":\"down\"}\n");
}

/*
 * Remember db's state for later subscribers.  Out of memory, a new
 * database is not remembered: later subscribers then take it as down,
 * which is safe.
 */
static void
state_set_locked(struct push *p, const char *db, bool up)
{
	struct dbstate *st;
	size_t i, cap;

	for (i = 0; i < p->nstates; i++) {
		if (!strcmp(p->states[i].db, db)) {
			p->states[i].up = up;
			return;
		}
	}
	if (p->nstates == p->capstates) {
		cap = p->capstates ? p->capstates * 2 : 8;
		st = realloc(p->states, cap * sizeof(*st));
		if (!st)
			return;
		p->states = st;
		p->capstates = cap;
	}
	p->states[p->nstates].db = strdup(db);
	if (!p->states[p->nstates].db)
		return;
	p->states[p->nstates++].up = up;
}

void
push_stream_state(struct push *p, const char *db, bool up)
{
	struct buf t = { 0 };
	bool queued;

	if (!db)
		return;
	state_tail(&t, db, up);
	pthread_mutex_lock(&p->mu);
	state_set_locked(p, db, up);
	queued = broadcast_locked(p, "state", &t);
	pthread_mutex_unlock(&p->mu);
	if (queued)
		wake(p);
	buf_free(&t);
}

void
push_get_stats(struct push *p, struct push_stats *out)
{
	out->subscribers = atomic_load(&p->nsubs);
	out->events = atomic_load(&p->events);
	out->dropped_slow = atomic_load(&p->dropped_slow);
	out->bytes_sent = atomic_load(&p->bytes_sent);
}

int
push_tcp_port(const struct push *p)
{
	return p->tcp_port;
}

/* ---- the thread: subscribers --------------------------------------------- */

static void
sub_free(struct sub *s)
{
	buf_free(&s->q);
	buf_free(&s->out);
	free(s);
}

/*
 * Unlink and close s; it is freed after the current batch of epoll events,
 * which may still name it.
 */
static void
sub_close(struct push *p, struct sub *s, const char *why)
{
	struct sub **pp;
	bool slow, oom;

	pthread_mutex_lock(&p->mu);
	for (pp = &p->subs; *pp != s; pp = &(*pp)->next)
		;
	*pp = s->next;
	slow = s->slow;
	oom = s->oom;
	atomic_fetch_sub(&p->nsubs, 1);
	pthread_mutex_unlock(&p->mu);

	epoll_ctl(p->epfd, EPOLL_CTL_DEL, s->fd, NULL);
	close(s->fd);
	s->fd = -1;
	if (slow) {
		atomic_fetch_add(&p->dropped_slow, 1);
		log_warn("push channel: dropped subscriber %s: more than %zu "
			 "bytes queued (reading too slowly)", s->peer,
			 p->cfg.max_pending);
	} else if (oom) {
		log_warn("push channel: dropped subscriber %s: out of memory",
			 s->peer);
	} else {
		log_debug("push channel: subscriber %s gone: %s", s->peer,
			  why);
	}
	s->next = p->zombies;
	p->zombies = s;
}

static void
sub_want_out(struct push *p, struct sub *s, bool want)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->w };

	if (want == s->want_out)
		return;
	if (want)
		ev.events |= EPOLLOUT;
	if (epoll_ctl(p->epfd, EPOLL_CTL_MOD, s->fd, &ev) == 0)
		s->want_out = want;
}

/*
 * Send what is queued for s until it is all gone or the socket is full
 * (then wait for EPOLLOUT).  Closes s when it was marked dead.
 */
static void
sub_pump(struct push *p, struct sub *s)
{
	struct buf t;
	bool dead;
	ssize_t n;

	if (s->fd < 0)
		return;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		dead = s->dead;
		if (!dead && s->out.off == s->out.len) {
			t = s->out;
			s->out = s->q;
			s->q = t;
			s->q.len = s->q.off = 0;
			if (s->q.cap > BUF_KEEP)
				buf_free(&s->q);
			atomic_store(&s->inflight, s->out.len);
		}
		pthread_mutex_unlock(&p->mu);
		if (dead) {
			sub_close(p, s, "dropped");
			return;
		}
		if (s->out.off == s->out.len)
			break;
		n = send(s->fd, s->out.data + s->out.off,
			 s->out.len - s->out.off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			sub_close(p, s, strerror(errno));
			return;
		}
		s->out.off += (size_t)n;
		atomic_fetch_sub(&s->inflight, (size_t)n);
		atomic_fetch_add(&p->bytes_sent, (uint64_t)n);
	}
	sub_want_out(p, s, s->out.off < s->out.len);
}

static void
pump_all(struct push *p)
{
	struct sub *s, *next;

	for (s = p->subs; s; s = next) {
		next = s->next;	/* the thread alone unlinks */
		sub_pump(p, s);
	}
}

/* Subscribers say nothing: read and discard, close on EOF. */
static void
sub_read(struct push *p, struct sub *s)
{
	char scratch[4096];
	ssize_t n;

	n = recv(s->fd, scratch, sizeof(scratch), MSG_DONTWAIT);
	if (n == 0)
		sub_close(p, s, "closed by the subscriber");
	else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
		 errno != EINTR)
		sub_close(p, s, strerror(errno));
}

/* hello, then the state of every database known, under p->mu. */
static void
hello_locked(struct push *p, struct sub *s)
{
	struct buf b = { 0 };
	char head[64];
	size_t i;
	int n;

	buf_printf(&b, "{\"type\":\"hello\",\"version\":%d,"
		   "\"keepalive_ms\":%d,\"seq\":%" PRIu64 "}\n",
		   PUSH_VERSION, p->cfg.keepalive_ms, p->seq);
	n = snprintf(head, sizeof(head), "{\"type\":\"state\",\"seq\":%"
		     PRIu64, p->seq);
	for (i = 0; i < p->nstates; i++) {
		buf_put(&b, head, (size_t)n);
		state_tail(&b, p->states[i].db, p->states[i].up);
	}
	if (b.oom)
		s->dead = s->oom = true;
	else
		queue_locked(p, s, b.data, b.len, "", 0,
			     clock_mono_ms());
	buf_free(&b);
}

static void
peer_name(struct sub *s, const struct sockaddr_storage *sa)
{
	char host[64], serv[16];

	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (sa->ss_family == AF_UNIX) {
		if (getsockopt(s->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len))
			cr.pid = 0;
		snprintf(s->peer, sizeof(s->peer), "pid %ld (unix socket)",
			 (long)cr.pid);
		return;
	}
	if (getnameinfo((const struct sockaddr *)sa, sizeof(*sa), host,
			sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV))
		snprintf(s->peer, sizeof(s->peer), "fd %d", s->fd);
	else
		snprintf(s->peer, sizeof(s->peer), "%s%s%s:%s",
			 strchr(host, ':') ? "[" : "", host,
			 strchr(host, ':') ? "]" : "", serv);
}

static void
sub_add(struct push *p, int fd, const struct sockaddr_storage *sa, bool tcp)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct sub *s = calloc(1, sizeof(*s));
	int one = 1;

	if (!s) {
		log_warn("push channel: out of memory for a subscriber");
		close(fd);
		return;
	}
	s->w.kind = W_SUB;
	s->fd = fd;
	atomic_init(&s->inflight, 0);
	peer_name(s, sa);
	if (tcp)	/* small lines that should leave at once */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ev.data.ptr = &s->w;
	if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev)) {
		log_warn("push channel: cannot watch a subscriber: %s",
			 strerror(errno));
		close(fd);
		free(s);
		return;
	}
	pthread_mutex_lock(&p->mu);
	atomic_fetch_add(&p->nsubs, 1);	/* before hello: see nobody() */
	s->next = p->subs;
	p->subs = s;
	hello_locked(p, s);
	pthread_mutex_unlock(&p->mu);
	log_debug("push channel: subscriber %s connected", s->peer);
	sub_pump(p, s);
}

/* ---- the thread: listeners, keep-alives, the loop ------------------------ */

static void
listeners_ctl(struct push *p, int op)
{
	struct epoll_event ev = { .events = EPOLLIN };

	if (p->unix_fd >= 0) {
		ev.data.ptr = &p->w_unix;
		epoll_ctl(p->epfd, op, p->unix_fd, &ev);
	}
	if (p->tcp_fd >= 0) {
		ev.data.ptr = &p->w_tcp;
		epoll_ctl(p->epfd, op, p->tcp_fd, &ev);
	}
}

static void
on_accept(struct push *p, int lfd, bool tcp)
{
	struct sockaddr_storage sa;
	socklen_t len;
	int i, fd;

	for (i = 0; i < ACCEPT_BATCH; i++) {
		len = sizeof(sa);
		memset(&sa, 0, sizeof(sa));
		fd = accept4(lfd, (struct sockaddr *)&sa, &len,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			sub_add(p, fd, &sa, tcp);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		/*
		 * Out of descriptors or memory: the listener stays readable,
		 * so stop watching it for a while instead of spinning.
		 */
		log_warn("push channel: cannot accept a subscriber: %s",
			 strerror(errno));
		listeners_ctl(p, EPOLL_CTL_DEL);
		p->accept_resume_ms = clock_mono_ms() +
				      ACCEPT_PAUSE_MS;
		return;
	}
}

/*
 * Queue a keepalive for every subscriber idle for keepalive_ms; returns
 * the milliseconds until the next one is due (-1: none connected).
 */
static int
keepalives(struct push *p, bool *queued)
{
	uint64_t ka = (uint64_t)p->cfg.keepalive_ms;
	uint64_t now = clock_mono_ms(), next = UINT64_MAX;
	char line[96];
	struct sub *s;
	int n = 0;

	pthread_mutex_lock(&p->mu);
	for (s = p->subs; s; s = s->next) {
		if (s->dead)
			continue;
		if (s->last_ms + ka <= now) {
			if (!n)
				n = snprintf(line, sizeof(line),
					     "{\"type\":\"keepalive\","
					     "\"seq\":%" PRIu64 ",\"time_ms\":%"
					     PRIu64 "}\n", p->seq,
					     (uint64_t)(clock_unix_us() / 1000));
			queue_locked(p, s, line, (size_t)n, "", 0, now);
			*queued = true;
		}
		if (s->last_ms + ka < next)
			next = s->last_ms + ka;
	}
	pthread_mutex_unlock(&p->mu);
	if (next == UINT64_MAX)
		return -1;
	return next <= now ? 0 : (int)(next - now);
}

static void *
push_thread(void *arg)
{
	struct push *p = arg;
	struct epoll_event evs[EPOLL_BATCH];
	struct watch *w;
	struct sub *s;
	int i, n, timeout = -1, left;
	uint64_t now, junk;
	bool pump;

	while (!atomic_load(&p->stop)) {
		if (p->accept_resume_ms) {
			now = clock_mono_ms();
			left = p->accept_resume_ms > now
				       ? (int)(p->accept_resume_ms - now) : 0;
			if (timeout < 0 || left < timeout)
				timeout = left;
		}
		n = epoll_wait(p->epfd, evs, EPOLL_BATCH, timeout);
		if (n < 0 && errno != EINTR) {
			log_error("push channel: epoll_wait: %s",
				  strerror(errno));
			break;
		}
		pump = false;
		for (i = 0; i < n; i++) {
			w = evs[i].data.ptr;
			switch (w->kind) {
			case W_LISTEN_UNIX:
				on_accept(p, p->unix_fd, false);
				break;
			case W_LISTEN_TCP:
				on_accept(p, p->tcp_fd, true);
				break;
			case W_EVENT:
				/*
				 * Drain, then clear: a producer that finds
				 * the flag clear after this writes the
				 * eventfd again, so no wake-up is lost.
				 */
				if (read(p->evfd, &junk, sizeof(junk)) < 0)
					junk = 0;	/* EAGAIN: drained */
				atomic_store(&p->wake_pending, false);
				pump = true;
				break;
			case W_SUB:
				s = (struct sub *)w;
				if (s->fd < 0)
					break;	/* closed in this batch */
				if (evs[i].events & (EPOLLERR | EPOLLHUP))
					sub_close(p, s, "connection lost");
				else if (evs[i].events & EPOLLIN)
					sub_read(p, s);
				if (s->fd >= 0 && (evs[i].events & EPOLLOUT))
					sub_pump(p, s);
				break;
			}
		}
		if (p->accept_resume_ms &&
		    clock_mono_ms() >= p->accept_resume_ms) {
			p->accept_resume_ms = 0;
			listeners_ctl(p, EPOLL_CTL_ADD);
		}
		timeout = keepalives(p, &pump);
		if (pump)
			pump_all(p);
		while ((s = p->zombies)) {
			p->zombies = s->next;
			sub_free(s);
		}
	}
	return NULL;
}

int
push_start(struct push *p)
{
	if (p->started || pthread_create(&p->thread, NULL, push_thread, p))
		return -1;
	p->started = true;
	return 0;
}

/* ---- set-up -------------------------------------------------------------- */

static int
listen_unix(struct push *p, char *err, size_t errlen)
{
	char why[256];

	/* Anyone may subscribe: the events carry no secrets. */
	p->unix_fd = unix_listen(p->cfg.unix_path, LISTEN_BACKLOG,
				 &p->unix_bound, why, sizeof(why));
	if (p->unix_fd < 0) {
		snprintf(err, errlen, "push channel: cannot listen on %s", why);
		return -1;
	}
	return 0;
}

static int
listen_tcp(struct push *p, char *err, size_t errlen)
{
	const struct addrinfo hints = {
		.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
		.ai_socktype = SOCK_STREAM,
	};
	const char *addr = p->cfg.tcp_addr[0] ? p->cfg.tcp_addr : "127.0.0.1";
	bool v6 = strchr(addr, ':') != NULL;
	int port = p->cfg.tcp_port < 0 ? 0 : p->cfg.tcp_port;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	struct addrinfo *ai = NULL;
	char serv[16];
	int rc, one = 1;

	snprintf(serv, sizeof(serv), "%d", port);
	rc = getaddrinfo(addr, serv, &hints, &ai);
	if (rc) {
		snprintf(err, errlen, "push channel: invalid address '%s': "
			 "%s", addr, gai_strerror(rc));
		return -1;
	}
	p->tcp_fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK |
			   SOCK_CLOEXEC, 0);
	if (p->tcp_fd < 0 ||
	    setsockopt(p->tcp_fd, SOL_SOCKET, SO_REUSEADDR, &one,
		       sizeof(one)) ||
	    bind(p->tcp_fd, ai->ai_addr, ai->ai_addrlen) ||
	    listen(p->tcp_fd, LISTEN_BACKLOG) ||
	    getsockname(p->tcp_fd, (struct sockaddr *)&ss, &sslen)) {
		snprintf(err, errlen, "push channel: cannot listen on "
			 "%s%s%s:%d: %s", v6 ? "[" : "", addr, v6 ? "]" : "",
			 port, strerror(errno));
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	p->tcp_port = ntohs(ss.ss_family == AF_INET6
			    ? ((struct sockaddr_in6 *)&ss)->sin6_port
			    : ((struct sockaddr_in *)&ss)->sin_port);
	return 0;
}

struct push *
push_new(const struct push_config *cfg, char *err, size_t errlen)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct push *p;

	if (cfg->tcp_port < PUSH_TCP_ANY_PORT || cfg->tcp_port > 65535) {
		snprintf(err, errlen, "push channel: invalid port %d",
			 cfg->tcp_port);
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "push channel: out of memory");
		return NULL;
	}
	p->cfg = *cfg;
	if (p->cfg.keepalive_ms <= 0)
		p->cfg.keepalive_ms = PUSH_KEEPALIVE_MS;
	if (!p->cfg.max_pending)
		p->cfg.max_pending = PUSH_MAX_PENDING;
	p->unix_fd = p->tcp_fd = p->evfd = -1;
	p->w_unix.kind = W_LISTEN_UNIX;
	p->w_tcp.kind = W_LISTEN_TCP;
	p->w_event.kind = W_EVENT;
	pthread_mutex_init(&p->mu, NULL);
	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (p->epfd >= 0)
		p->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ev.data.ptr = &p->w_event;
	if (p->epfd < 0 || p->evfd < 0 ||
	    epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->evfd, &ev)) {
		snprintf(err, errlen, "push channel: cannot set up epoll: %s",
			 strerror(errno));
		goto fail;
	}
	if (p->cfg.unix_path[0] && listen_unix(p, err, errlen))
		goto fail;
	if (p->cfg.tcp_port && listen_tcp(p, err, errlen))
		goto fail;
	listeners_ctl(p, EPOLL_CTL_ADD);
	return p;

fail:
	push_free(p);
	return NULL;
}

void
push_free(struct push *p)
{
	uint64_t one = 1;
	struct sub *s;
	size_t i;

	if (!p)
		return;
	if (p->started) {
		atomic_store(&p->stop, true);
		if (write(p->evfd, &one, sizeof(one)) < 0)
			one = 0;	/* full: a wake-up is pending anyway */
		pthread_join(p->thread, NULL);
	}
	while ((s = p->subs)) {
		p->subs = s->next;
		close(s->fd);
		sub_free(s);
	}
	while ((s = p->zombies)) {
		p->zombies = s->next;
		sub_free(s);
	}
	if (p->unix_fd >= 0)
		close(p->unix_fd);
	if (p->unix_bound)
		unlink(p->cfg.unix_path);
	if (p->tcp_fd >= 0)
		close(p->tcp_fd);
	if (p->evfd >= 0)
		close(p->evfd);
	if (p->epfd >= 0)
		close(p->epfd);
	for (i = 0; i < p->nstates; i++)
		free(p->states[i].db);
	free(p->states);
	pthread_mutex_destroy(&p->mu);
	free(p);
}
