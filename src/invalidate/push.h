/*
 * push.h - the push channel: invalidation events streamed to in-process
 * caches (an "L1" inside application processes) so they drop what the
 * proxy drops, at once.  Subscribers connect to a unix socket and/or a
 * loopback TCP port; any number may be connected.
 *
 * Event functions are thread-safe and never wait on the network: the line
 * is formatted once, appended under a mutex to each subscriber's queue,
 * and the channel's one thread (epoll) writes it out.  With nobody
 * subscribed they return after one atomic load (push_stream_state() still
 * records the state).  The unix socket is mode 0777: it carries no
 * secrets (names and tags only) and subscribers cannot change anything.
 *
 * Wire format, server to subscriber only.  Newline-delimited JSON: one
 * object per line, each ending in "\n" (no raw newline inside one).  What
 * the subscriber sends is read and discarded; its EOF closes the
 * connection.  Keys come in the order shown, but a subscriber should not
 * depend on that, and should skip keys and "type"s it does not know.
 * Strings escape '"' and '\' with a backslash and bytes below 0x20 as
 * \u00XX; names are Postgres' bytes, passed through when valid UTF-8;
 * bytes that are not are sent as \u00XX (read as Latin-1), so every line
 * is valid JSON.
 *
 *   {"type":"hello","version":1,"keepalive_ms":1000,"seq":41}
 *	First line of every connection.  seq is the number of the latest
 *	event (0 before any); the next event is seq + 1.  Then one line for
 *	each database whose stream state was ever set, in the order first
 *	set, repeating hello's seq (a snapshot, not new events):
 *   {"type":"state","seq":41,"db":"app","stream":"up"}
 *
 * Events: one counter shared by every subscriber, +1 per event line:
 *
 *   {"type":"invalidate","seq":42,"db":"app","source":"wal",
 *    "tags":["9f3c0a1b2c3d4e5f","00000000000004d2"],"oid":16385,
 *    "schema":"public","table":"items","rows":[5,6]}
 *	(one line on the wire.)  Drop every entry carrying any of the tags:
 *	exact 64-bit values as 16 lowercase hex digits (a JSON number would
 *	lose precision past 2^53).  The tags are what the proxy itself
 *	bumped, so they alone say everything to drop.  source is "proxy" (a
 *	write the proxy forwarded) or "wal" (logical replication).  oid,
 *	schema and table appear only when known; rows (the changed rows'
 *	int64 keys, as JSON integers) only when the changed rows are known:
 *	without rows, the whole table changed.
 *   {"type":"flush","seq":43,"db":"app","reason":"stream reconnected"}
 *	Drop everything of that database; "db":null = of every database.
 *   {"type":"state","seq":44,"db":"app","stream":"down"}
 *	"down": flush that database and bypass the cache for it (neither
 *	serve nor store) until a state line says "up".  A database no state
 *	line has named yet counts as down.
 *   {"type":"keepalive","seq":44,"time_ms":1718000000000}
 *	Sent when nothing else was sent to this subscriber for
 *	keepalive_ms; not an event: seq repeats the latest event's number.
 *	time_ms is the proxy's wall clock, Unix milliseconds.  Hearing
 *	nothing for several keepalive_ms means the connection is lost.
 *
 * A subscriber must flush its whole cache and bypass it when seq skips a
 * number, and when it loses the connection, until it has reconnected and
 * read hello (then the state lines say which databases are up).  A
 * subscriber whose queue passes max_pending bytes (it reads too slowly) is
 * dropped: the proxy closes the connection, possibly after half a line,
 * which the subscriber discards; for it that is a lost connection.
 */
#ifndef PGVALET_INVALIDATE_PUSH_H
#define PGVALET_INVALIDATE_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct push;

enum {
	PUSH_VERSION = 1,
	PUSH_KEEPALIVE_MS = 1000,		/* when keepalive_ms is 0 */
	PUSH_MAX_PENDING = 8 << 20,		/* when max_pending is 0 */
	PUSH_TCP_ANY_PORT = -1,			/* tcp_port: any free one */
};

struct push_config {
	/*
	 * "" = no unix socket.  A stale socket file left at the path is
	 * replaced; a live one (connect succeeds) is an error, and so is
	 * anything there that is not a socket.
	 */
	char unix_path[108];
	char tcp_addr[64];	/* numeric, e.g. "127.0.0.1" or "::1" */
	int tcp_port;		/* 0 = no TCP listener; PUSH_TCP_ANY_PORT =
				   any free port (see push_tcp_port()) */
	int keepalive_ms;	/* 0 = PUSH_KEEPALIVE_MS */
	size_t max_pending;	/* bytes queued for one subscriber before it
				   is dropped as too slow; 0 = 8 MB */
};

/*
 * Binds and listens, so the caller can report errors before starting
 * threads.  NULL with err filled, e.g. "push channel: cannot listen on
 * 127.0.0.1:7934: Address already in use".
 */
struct push *push_new(const struct push_config *cfg, char *err,
		      size_t errlen);
/* Starts the channel's one thread; -1 on failure (or when started). */
int push_start(struct push *p);
/*
 * Stops the thread, closes every connection and listener and unlinks the
 * unix socket.  No event function may be running or called any more.
 */
void push_free(struct push *p);
/* The bound TCP port (useful with PUSH_TCP_ANY_PORT); 0 when none. */
int push_tcp_port(const struct push *p);

/* ---- events: any thread, never blocking ---------------------------------- */

/* Tags bumped in db; source names who saw the write ("proxy"). */
void push_tags(struct push *p, const char *db, const uint64_t *tags,
	       size_t n, const char *source);
/*
 * Tags bumped for a change to one table.  oid 0, schema or table NULL:
 * unknown (left out).  rows NULL or nrows 0: the whole table changed.
 */
void push_rows(struct push *p, const char *db, uint32_t oid,
	       const char *schema, const char *table, const uint64_t *tags,
	       size_t ntags, const int64_t *rows, size_t nrows,
	       const char *source);
/* Everything of db was dropped (db NULL: of every database). */
void push_flush(struct push *p, const char *db, const char *reason);
/*
 * db's stream went up or down.  Remembered even with nobody subscribed:
 * every new subscriber gets the latest state of each database.
 */
void push_stream_state(struct push *p, const char *db, bool up);

/* ---- metrics ------------------------------------------------------------- */

struct push_stats {
	uint64_t subscribers;	/* connected now */
	uint64_t events;	/* numbered events sent (seq) */
	uint64_t dropped_slow;	/* subscribers dropped over max_pending */
	uint64_t bytes_sent;
};

void push_get_stats(struct push *p, struct push_stats *out);

#endif
