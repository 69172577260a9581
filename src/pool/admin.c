/*
 * admin.c - the admin console's commands (admin.h): each builds a
 * RowDescription (all columns text), DataRows and CommandComplete.
 */
#include "pool/admin.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cache/store.h"
#include "core/clock.h"
#include "core/server.h"
#include "invalidate/stream.h"
#include "observe/advisor.h"
#include "observe/audit.h"
#include "observe/nplus1.h"
#include "observe/stats.h"
#include "proto/msg.h"

enum { TEXT_OID = 25, MAX_COLS = 16, VALUE_MAX = 64 };

struct table {
	struct buf *b;
	int ncols;
	uint64_t rows;
	int rc;
};

static void
table_begin(struct table *t, struct buf *b, const char *const *cols, int n)
{
	size_t start;
	int i;

	t->b = b;
	t->ncols = n;
	t->rows = 0;
	t->rc = msg_begin(b, 'T', &start) | msg_put_i16(b, (int16_t)n);
	for (i = 0; i < n; i++)
		t->rc |= msg_put_str(b, cols[i]) | msg_put_i32(b, 0) |
			 msg_put_i16(b, 0) | msg_put_i32(b, TEXT_OID) |
			 msg_put_i16(b, -1) | msg_put_i32(b, -1) |
			 msg_put_i16(b, 0);
	msg_end(b, start);
}

/* vals[i] NULL is SQL NULL. */
static void
table_row(struct table *t, const char *const *vals)
{
	size_t start, len;
	int i;

	t->rc |= msg_begin(t->b, 'D', &start) |
		 msg_put_i16(t->b, (int16_t)t->ncols);
	for (i = 0; i < t->ncols; i++) {
		if (!vals[i]) {
			t->rc |= msg_put_i32(t->b, -1);
			continue;
		}
		len = strlen(vals[i]);
		t->rc |= msg_put_i32(t->b, (int32_t)len) |
			 msg_put_bytes(t->b, vals[i], len);
	}
	msg_end(t->b, start);
	t->rows++;
}

static int
table_end(struct table *t)
{
	size_t start;

	t->rc |= msg_begin(t->b, 'C', &start) | msg_put_str(t->b, "SHOW");
	msg_end(t->b, start);
	return t->rc ? -1 : 0;
}

static void
u64(char *out, uint64_t v)
{
	snprintf(out, VALUE_MAX, "%" PRIu64, v);
}

static void
dbl(char *out, double v)
{
	snprintf(out, VALUE_MAX, "%.3f", v);
}

static void
when(char *out, int64_t unix_us)
{
	time_t t = (time_t)(unix_us / 1000000);
	struct tm tm;

	if (!unix_us || !gmtime_r(&t, &tm))
		snprintf(out, VALUE_MAX, "%s", "");
	else
		strftime(out, VALUE_MAX, "%Y-%m-%d %H:%M:%SZ", &tm);
}

/* ---- the commands --------------------------------------------------------------- */

static int
show_stats(struct server *srv, struct buf *b)
{
	static const char *const cols[] = {
		"statements", "qps", "mean_ms", "p95_ms", "p99_ms",
		"cache_hits", "hit_rate", "failures", "rows", "shapes",
		"clients", "uptime_s",
	};
	char v[12][VALUE_MAX];
	const char *vals[12];
	struct stats_global g;
	struct table t;
	int i;

	if (!srv->stats)
		return msg_put_error(b, 'E', "ERROR", "55000",
				     "statistics are off (--stats off)");
	stats_get_global(srv->stats, &g);
	u64(v[0], g.statements);
	dbl(v[1], g.qps);
	dbl(v[2], g.mean_ms);
	dbl(v[3], g.p95_ms);
	dbl(v[4], g.p99_ms);
	u64(v[5], g.cache_hits);
	dbl(v[6], g.hit_rate);
	u64(v[7], g.failures);
	u64(v[8], g.rows);
	u64(v[9], g.shapes);
	u64(v[10], (uint64_t)atomic_load(&srv->nclients));
	u64(v[11], (uint64_t)((clock_unix_us() - srv->started_us) / 1000000));
	for (i = 0; i < 12; i++)
		vals[i] = v[i];
	table_begin(&t, b, cols, 12);
	table_row(&t, vals);
	return table_end(&t);
}

static int
show_pools(struct server *srv, struct buf *b)
{
	static const char *const cols[] = {
		"database", "user", "server_connections", "clients_waiting",
		"pool_size", "pool_mode",
	};
	char v[3][VALUE_MAX];
	const char *vals[6];
	struct shared_pool *sp;
	struct table t;

	table_begin(&t, b, cols, 6);
	pthread_mutex_lock(&srv->pools_lock);
	for (sp = srv->pools; sp; sp = sp->next) {
		u64(v[0], (uint64_t)atomic_load(&sp->total));
		u64(v[1], (uint64_t)atomic_load(&sp->waiting));
		u64(v[2], (uint64_t)srv->cfg.pool_size);
		vals[0] = sp->database;
		vals[1] = sp->user;
		vals[2] = v[0];
		vals[3] = v[1];
		vals[4] = v[2];
		vals[5] = srv->cfg.pool_mode == POOL_SESSION ? "session" :
							       "transaction";
		table_row(&t, vals);
	}
	pthread_mutex_unlock(&srv->pools_lock);
	return table_end(&t);
}

static int
show_clients(struct server *srv, struct buf *b)
{
	static const char *const cols[] = {
		"id", "user", "database", "addr", "port", "state",
		"connect_time",
	};
	static const char *const states[] = { "idle", "active", "waiting" };
	char v[3][VALUE_MAX];
	const char *vals[7];
	struct client_info *ci;
	struct qlist *it;
	struct table t;
	int st;

	table_begin(&t, b, cols, 7);
	pthread_mutex_lock(&srv->clients_lock);
	for (it = srv->client_infos.next; it != &srv->client_infos;
	     it = it->next) {
		ci = qlist_entry(it, struct client_info, link);
		st = atomic_load(&ci->state);
		u64(v[0], ci->id);
		u64(v[1], (uint64_t)ci->port);
		when(v[2], ci->connected_us);
		vals[0] = v[0];
		vals[1] = ci->user;
		vals[2] = ci->database;
		vals[3] = ci->addr;
		vals[4] = v[1];
		vals[5] = ci->admin ? "admin" : states[st >= 0 && st < 3 ? st : 0];
		vals[6] = v[2];
		table_row(&t, vals);
	}
	pthread_mutex_unlock(&srv->clients_lock);
	return table_end(&t);
}

static int
show_cache(struct server *srv, struct buf *b)
{
	static const char *const cols[] = {
		"enabled", "hits", "misses", "hit_rate", "stores", "entries",
		"bytes", "budget_bytes", "evicted_capacity",
		"evicted_invalidated", "evicted_ttl", "invalidations",
		"coalesced", "stream", "lag_bytes", "lag_ms",
	};
	char v[16][VALUE_MAX];
	const char *vals[16];
	struct cache_stats cs;
	struct stream_stats ss;
	struct table t;
	uint64_t lookups;
	int i;

	memset(&cs, 0, sizeof(cs));
	memset(&ss, 0, sizeof(ss));
	if (srv->cache)
		cache_store_stats(srv->cache, &cs);
	if (srv->streams)
		stream_set_stats(srv->streams, &ss);
	lookups = cs.hits + cs.misses;
	snprintf(v[0], VALUE_MAX, "%s", srv->cache ? "on" : "off");
	u64(v[1], cs.hits);
	u64(v[2], cs.misses);
	dbl(v[3], lookups ? (double)cs.hits / (double)lookups : 0);
	u64(v[4], cs.stores);
	u64(v[5], cs.entries);
	u64(v[6], cs.bytes);
	u64(v[7], cs.budget_bytes);
	u64(v[8], cs.evicted_capacity);
	u64(v[9], cs.evicted_invalidated);
	u64(v[10], cs.evicted_ttl);
	u64(v[11], cs.invalidations);
	u64(v[12], cs.coalesced);
	snprintf(v[13], VALUE_MAX, "%s", !srv->streams ? "off" :
		 ss.databases && ss.up == ss.databases ? "up" : "down");
	u64(v[14], ss.lag_bytes);
	u64(v[15], ss.lag_ms);
	for (i = 0; i < 16; i++)
		vals[i] = v[i];
	table_begin(&t, b, cols, 16);
	table_row(&t, vals);
	return table_end(&t);
}

static int
show_shapes(struct server *srv, struct buf *b)
{
	static const char *const cols[] = {
		"fingerprint", "calls", "total_ms", "mean_ms", "p95_ms",
		"max_ms", "rows", "cache_hits", "failures", "impact", "slow",
		"last_seen", "database", "query",
	};
	char v[12][VALUE_MAX];
	const char *vals[14];
	struct stats_shape *shapes = NULL, *s;
	struct table t;
	size_t n, i;
	int j;

	if (!srv->stats)
		return msg_put_error(b, 'E', "ERROR", "55000",
				     "statistics are off (--stats off)");
	n = stats_get_shapes(srv->stats, 0, &shapes);
	table_begin(&t, b, cols, 14);
	for (i = 0; i < n; i++) {
		s = &shapes[i];
		snprintf(v[0], VALUE_MAX, "%016" PRIx64, s->fingerprint);
		u64(v[1], s->calls);
		dbl(v[2], s->total_ms);
		dbl(v[3], s->mean_ms);
		dbl(v[4], s->p95_ms);
		dbl(v[5], s->max_ms);
		u64(v[6], s->rows);
		u64(v[7], s->cache_hits);
		u64(v[8], s->failures);
		dbl(v[9], s->impact);
		snprintf(v[10], VALUE_MAX, "%s", s->slow ? "yes" : "no");
		when(v[11], s->last_seen_us);
		for (j = 0; j < 12; j++)
			vals[j] = v[j];
		vals[12] = s->db;
		vals[13] = s->example;
		table_row(&t, vals);
	}
	free(shapes);
	return table_end(&t);
}

/* SHOW ADVICE, SHOW AUDIT, SHOW NPLUS1: the self-optimizer's records. */
static void
add_row(void *table, const char *const *vals)
{
	table_row(table, vals);
}

static int
show_rows(struct buf *b, const char *const *cols, int ncols,
	  void (*rows)(void *obj, observe_row_fn fn, void *arg), void *obj)
{
	struct table t;

	table_begin(&t, b, cols, ncols);
	if (obj)
		rows(obj, add_row, &t);
	return table_end(&t);
}

static void
advice_rows(void *ad, observe_row_fn fn, void *arg)
{
	advisor_advice_rows(ad, fn, arg);
}

static void
audit_rows_of(void *au, observe_row_fn fn, void *arg)
{
	audit_rows(au, fn, arg);
}

static void
nplus1_rows_of(void *np, observe_row_fn fn, void *arg)
{
	nplus1_rows(np, fn, arg);
}

static int
show_help(struct buf *b)
{
	static const char *const cols[] = { "command", "shows" };
	static const char *const rows[][2] = {
		{ "SHOW STATS", "statements, qps, latency, hit rate" },
		{ "SHOW POOLS", "server connections per database and user" },
		{ "SHOW CLIENTS", "client connections" },
		{ "SHOW CACHE", "result cache and replication stream" },
		{ "SHOW SHAPES", "per statement shape statistics" },
		{ "SHOW ADVICE", "index advice, verified with hypopg" },
		{ "SHOW AUDIT", "what the index advisor did, and why" },
		{ "SHOW NPLUS1", "N+1 query loops and deep OFFSETs" },
	};
	struct table t;

	table_begin(&t, b, cols, 2);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		table_row(&t, rows[i]);
	return table_end(&t);
}

/* ---- dispatch ---------------------------------------------------------------- */

/* The text upper-cased, spaces collapsed, trailing ';' and blanks gone. */
void
admin_normalise(const char *text, size_t len, char *out, size_t cap)
{
	size_t n = 0;
	bool space = false;

	for (size_t i = 0; i < len && n + 1 < cap; i++) {
		unsigned char c = (unsigned char)text[i];

		if (isspace(c)) {
			space = n > 0;
			continue;
		}
		if (space && n + 2 < cap)
			out[n++] = ' ';
		space = false;
		out[n++] = (char)toupper(c);
	}
	while (n && (out[n - 1] == ';' || out[n - 1] == ' '))
		n--;
	out[n] = '\0';
}

static bool
first_word(const char *cmd, const char *word)
{
	size_t n = strlen(word);

	return strncmp(cmd, word, n) == 0 && (!cmd[n] || cmd[n] == ' ');
}

/* Driver chatter that changes nothing here: its tag, or NULL. */
static const char *
no_op_tag(const char *cmd)
{
	static const char *const words[] = { "BEGIN", "COMMIT", "ROLLBACK",
					     "SET", "RESET", "DISCARD" };

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (first_word(cmd, words[i]))
			return words[i];
	return NULL;
}

int
admin_query(struct server *srv, struct buf *out, const char *text,
	    size_t len)
{
	char cmd[128], msg[200];
	const char *tag;
	size_t start;

	admin_normalise(text, len, cmd, sizeof(cmd));
	if (!cmd[0]) {
		if (msg_begin(out, 'I', &start))
			return -1;
		msg_end(out, start);
		return 0;
	}
	if (strcmp(cmd, "SHOW STATS") == 0)
		return show_stats(srv, out);
	if (strcmp(cmd, "SHOW POOLS") == 0)
		return show_pools(srv, out);
	if (strcmp(cmd, "SHOW CLIENTS") == 0)
		return show_clients(srv, out);
	if (strcmp(cmd, "SHOW CACHE") == 0)
		return show_cache(srv, out);
	if (strcmp(cmd, "SHOW SHAPES") == 0)
		return show_shapes(srv, out);
	if (strcmp(cmd, "SHOW ADVICE") == 0)
		return show_rows(out, advisor_advice_columns,
				 ADVISOR_ADVICE_NCOLS, advice_rows, srv->advisor);
	if (strcmp(cmd, "SHOW AUDIT") == 0)
		return show_rows(out, audit_columns, AUDIT_NCOLS, audit_rows_of,
				 srv->audit);
	if (strcmp(cmd, "SHOW NPLUS1") == 0)
		return show_rows(out, nplus1_columns, NPLUS1_NCOLS,
				 nplus1_rows_of, srv->nplus1);
	if (strcmp(cmd, "SHOW HELP") == 0 || strcmp(cmd, "SHOW") == 0)
		return show_help(out);
	if ((tag = no_op_tag(cmd))) {
		if (msg_begin(out, 'C', &start) || msg_put_str(out, tag))
			return -1;
		msg_end(out, start);
		return 0;
	}
	snprintf(msg, sizeof(msg),
		 "unknown admin console command: \"%.60s\" (try SHOW HELP)",
		 cmd);
	return msg_put_error(out, 'E', "ERROR", "42601", msg);
}

bool
admin_user_allowed(const char *upstream_user, const char *admin_users,
		   const char *user)
{
	size_t n = strlen(user);
	const char *p = admin_users, *end;

	if (strcmp(user, upstream_user) == 0)
		return true;
	while (n && *p) {
		while (*p == ' ' || *p == ',')
			p++;
		end = p + strcspn(p, ", ");
		if ((size_t)(end - p) == n && strncmp(p, user, n) == 0)
			return true;
		p = end;
	}
	return false;
}
