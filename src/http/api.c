/*
 * api.c - the JSON and Prometheus documents of api.h.  Every figure is
 * read through a thread-safe getter (stats_get_*, cache_store_stats,
 * stream_set_stats, push_get_stats, bus_get_stats, the shared pools'
 * atomics under pools_lock).
 */
#include "http/api.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/store.h"
#include "core/clock.h"
#include "core/server.h"
#include "core/version.h"
#include "http/json.h"
#include "invalidate/bus.h"
#include "invalidate/push.h"
#include "invalidate/stream.h"
#include "observe/advisor.h"
#include "observe/stats.h"

/* ---- gathering ------------------------------------------------------------ */

struct pools_total {
	int pools, server_conns, waiting, capacity;
};

static void
pools_total(struct server *srv, struct pools_total *t)
{
	struct shared_pool *sp;

	memset(t, 0, sizeof(*t));
	pthread_mutex_lock(&srv->pools_lock);
	for (sp = srv->pools; sp; sp = sp->next) {
		t->pools++;
		t->server_conns += atomic_load(&sp->total);
		t->waiting += atomic_load(&sp->waiting);
		t->capacity += srv->cfg.pool_size;
	}
	pthread_mutex_unlock(&srv->pools_lock);
}

static const char *
stream_state(struct server *srv, struct stream_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!srv->streams)
		return "off";
	stream_set_stats(srv->streams, st);
	return st->databases && st->up == st->databases ? "up" : "down";
}

static char *
finish(FILE *f, char **buf)
{
	if (fclose(f) != 0) {
		free(*buf);
		return NULL;
	}
	return *buf;
}

static void
put_key(FILE *f, const char *key, bool *first)
{
	if (!*first)
		fputc(',', f);
	*first = false;
	json_put_str(f, key);
	fputc(':', f);
}

static void
num(FILE *f, const char *key, double v, bool *first)
{
	put_key(f, key, first);
	json_put_num(f, v);
}

static void
str(FILE *f, const char *key, const char *v, bool *first)
{
	put_key(f, key, first);
	json_put_str(f, v);
}

static void
boolean(FILE *f, const char *key, bool v, bool *first)
{
	put_key(f, key, first);
	fputs(v ? "true" : "false", f);
}

/* ---- /api/stats ------------------------------------------------------------ */

static void
put_pools(FILE *f, struct server *srv)
{
	struct shared_pool *sp;
	bool first_pool = true, first;

	fputc('[', f);
	pthread_mutex_lock(&srv->pools_lock);
	for (sp = srv->pools; sp; sp = sp->next) {
		if (!first_pool)
			fputc(',', f);
		first_pool = false;
		first = true;
		fputc('{', f);
		str(f, "database", sp->database, &first);
		str(f, "user", sp->user, &first);
		num(f, "server_connections", atomic_load(&sp->total), &first);
		num(f, "clients_waiting", atomic_load(&sp->waiting), &first);
		num(f, "pool_size", srv->cfg.pool_size, &first);
		fputc('}', f);
	}
	pthread_mutex_unlock(&srv->pools_lock);
	fputc(']', f);
}

static void
put_stream(FILE *f, struct server *srv)
{
	struct stream_stats ss;
	const char *state = stream_state(srv, &ss);
	bool first = true;

	fputc('{', f);
	str(f, "state", state, &first);
	num(f, "databases", ss.databases, &first);
	num(f, "up", ss.up, &first);
	num(f, "lag_bytes", (double)ss.lag_bytes, &first);
	num(f, "lag_ms", (double)ss.lag_ms, &first);
	num(f, "transactions", (double)ss.transactions, &first);
	num(f, "reconnects", (double)ss.reconnects, &first);
	fputc('}', f);
}

static void
put_global(FILE *f, struct server *srv, bool *first)
{
	struct stats_global g;
	struct stats_shape *shapes = NULL;
	size_t n, i, slow = 0;

	boolean(f, "stats_enabled", srv->stats != NULL, first);
	if (!srv->stats)
		return;
	stats_get_global(srv->stats, &g);
	n = stats_get_shapes(srv->stats, 0, &shapes);
	for (i = 0; i < n; i++)
		slow += shapes[i].slow;
	free(shapes);
	num(f, "statements", (double)g.statements, first);
	num(f, "qps", g.qps, first);
	num(f, "mean_ms", g.mean_ms, first);
	num(f, "window_mean_ms", g.window_mean_ms, first);
	num(f, "p95_ms", g.p95_ms, first);
	num(f, "p99_ms", g.p99_ms, first);
	num(f, "cache_hits", (double)g.cache_hits, first);
	num(f, "hit_rate", g.hit_rate, first);
	num(f, "window_hit_rate", g.window_hit_rate, first);
	num(f, "failures", (double)g.failures, first);
	num(f, "rows", (double)g.rows, first);
	num(f, "shapes", (double)g.shapes, first);
	num(f, "slow_shapes", (double)slow, first);
	boolean(f, "seeded_from_pg_stat_statements", g.seeded, first);
}

char *
api_stats_json(struct server *srv)
{
	struct pools_total pt;
	char *buf = NULL;
	size_t len;
	bool first = true;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	pools_total(srv, &pt);
	fputc('{', f);
	str(f, "version", PGVALET_VERSION, &first);
	num(f, "uptime_s", (double)(clock_unix_us() - srv->started_us) / 1e6,
	    &first);
	num(f, "now", (double)clock_unix_us() / 1e6, &first);
	put_global(f, srv, &first);
	num(f, "clients", atomic_load(&srv->nclients), &first);
	num(f, "server_connections", pt.server_conns, &first);
	num(f, "clients_waiting", pt.waiting, &first);
	num(f, "pool_capacity", pt.capacity, &first);
	num(f, "pool_size", srv->cfg.pool_size, &first);
	str(f, "pool_mode", srv->cfg.pool_mode == POOL_SESSION ? "session" :
		"transaction", &first);
	boolean(f, "cache_enabled", srv->cache != NULL, &first);
	put_key(f, "pools", &first);
	put_pools(f, srv);
	put_key(f, "stream", &first);
	put_stream(f, srv);
	fputc('}', f);
	return finish(f, &buf);
}

/* ---- /api/shapes ----------------------------------------------------------- */

static void
put_shape(FILE *f, const struct stats_shape *s)
{
	char fp[20];
	bool first = true;

	snprintf(fp, sizeof(fp), "%016" PRIx64, s->fingerprint);
	fputc('{', f);
	str(f, "fingerprint", fp, &first);
	num(f, "calls", (double)s->calls, &first);
	num(f, "total_ms", s->total_ms, &first);
	num(f, "mean_ms", s->mean_ms, &first);
	num(f, "p95_ms", s->p95_ms, &first);
	num(f, "max_ms", s->max_ms, &first);
	num(f, "rows", (double)s->rows, &first);
	num(f, "cache_hits", (double)s->cache_hits, &first);
	num(f, "failures", (double)s->failures, &first);
	num(f, "impact", s->impact, &first);
	boolean(f, "slow", s->slow, &first);
	boolean(f, "seeded", s->seeded, &first);
	put_key(f, "last_seen", &first);
	if (s->last_seen_us)
		json_put_num(f, (double)s->last_seen_us / 1e6);
	else
		fputs("null", f);
	str(f, "database", s->db, &first);
	str(f, "query", s->example, &first);
	fputc('}', f);
}

char *
api_shapes_json(struct server *srv, size_t limit)
{
	struct stats_shape *shapes = NULL;
	char *buf = NULL;
	size_t len, n = 0, i;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	if (srv->stats)
		n = stats_get_shapes(srv->stats, limit, &shapes);
	fputc('[', f);
	for (i = 0; i < n; i++) {
		if (i)
			fputc(',', f);
		put_shape(f, &shapes[i]);
	}
	fputc(']', f);
	free(shapes);
	return finish(f, &buf);
}

/* ---- /api/cache ------------------------------------------------------------ */

char *
api_cache_json(struct server *srv)
{
	struct cache_stats cs;
	char *buf = NULL;
	size_t len;
	bool first = true;
	FILE *f = open_memstream(&buf, &len);
	uint64_t lookups;

	if (!f)
		return NULL;
	memset(&cs, 0, sizeof(cs));
	if (srv->cache)
		cache_store_stats(srv->cache, &cs);
	lookups = cs.hits + cs.misses;
	fputc('{', f);
	boolean(f, "enabled", srv->cache != NULL, &first);
	num(f, "hits", (double)cs.hits, &first);
	num(f, "misses", (double)cs.misses, &first);
	num(f, "hit_rate", lookups ? (double)cs.hits / (double)lookups : 0,
	    &first);
	num(f, "stores", (double)cs.stores, &first);
	num(f, "entries", (double)cs.entries, &first);
	num(f, "bytes", (double)cs.bytes, &first);
	num(f, "budget_bytes", (double)cs.budget_bytes, &first);
	num(f, "metadata_bytes", (double)cs.metadata_bytes, &first);
	num(f, "evicted_capacity", (double)cs.evicted_capacity, &first);
	num(f, "evicted_invalidated", (double)cs.evicted_invalidated, &first);
	num(f, "evicted_ttl", (double)cs.evicted_ttl, &first);
	num(f, "rejected_stale", (double)cs.rejected_stale, &first);
	num(f, "rejected_too_big", (double)cs.rejected_too_big, &first);
	num(f, "invalidations", (double)cs.invalidations, &first);
	num(f, "coalesced", (double)cs.coalesced, &first);
	fputc('}', f);
	return finish(f, &buf);
}

/* ---- settings -------------------------------------------------------------- */

struct settings {
	int duration_ms, impact_pct;
	int64_t ttl_ms;
	struct server *srv;
	char *err;
	size_t errlen;
};

char *
api_settings_json(struct server *srv)
{
	char *buf = NULL;
	size_t len;
	bool first = true;
	FILE *f = open_memstream(&buf, &len);
	int dur = srv->cfg.threshold_duration_ms;
	int impact = srv->cfg.threshold_impact_pct;

	if (!f)
		return NULL;
	if (srv->stats)
		stats_get_thresholds(srv->stats, &dur, &impact);
	fputc('{', f);
	num(f, "threshold_duration_ms", dur, &first);
	num(f, "threshold_impact", impact, &first);
	num(f, "cache_ttl_ms", (double)atomic_load(&srv->cache_ttl_ms),
	    &first);
	fputc('}', f);
	return finish(f, &buf);
}

static int
bad(struct settings *s, const char *key, const struct json_value *v,
    const char *expected)
{
	snprintf(s->err, s->errlen, "invalid value for %s: %s (expected %s)",
		 key, v->raw, expected);
	return -1;
}

static bool
int_in(const struct json_value *v, double lo, double hi)
{
	return v->type == JSON_NUMBER && v->number == (double)(int64_t)v->number &&
	       v->number >= lo && v->number <= hi;
}

static int
one_setting(const char *key, const struct json_value *v, void *arg)
{
	struct settings *s = arg;

	if (strcmp(key, "threshold_duration_ms") == 0) {
		if (!int_in(v, 1, 86400000))
			return bad(s, key, v, "an integer 1..86400000");
		s->duration_ms = (int)v->number;
	} else if (strcmp(key, "threshold_impact") == 0) {
		if (!int_in(v, 0, 100))
			return bad(s, key, v, "a percentage 0..100");
		s->impact_pct = (int)v->number;
	} else if (strcmp(key, "cache_ttl_ms") == 0) {
		if (!int_in(v, 0, 86400000))
			return bad(s, key, v, "milliseconds 0..86400000");
		if (!s->srv->cache)
			return bad(s, key, v, "nothing: the cache is off");
		s->ttl_ms = (int64_t)v->number;
	} else {
		snprintf(s->err, s->errlen, "unknown setting: %s", key);
		return -1;
	}
	return 0;
}

int
api_apply_settings(struct server *srv, const char *body, size_t len,
		   char *err, size_t errlen)
{
	struct settings s = { .srv = srv, .err = err, .errlen = errlen,
			      .ttl_ms = -1 };
	char perr[128];

	err[0] = '\0';
	s.duration_ms = srv->cfg.threshold_duration_ms;
	s.impact_pct = srv->cfg.threshold_impact_pct;
	if (srv->stats)
		stats_get_thresholds(srv->stats, &s.duration_ms, &s.impact_pct);
	switch (json_flat_parse(body, len, one_setting, &s, perr,
				sizeof(perr))) {
	case 0:
		break;
	case -1:
		if (!err[0])
			snprintf(err, errlen, "invalid JSON object: %s", perr);
		return -1;
	default:
		return -1;
	}
	if (srv->stats)
		stats_set_thresholds(srv->stats, s.duration_ms, s.impact_pct);
	if (srv->advisor)
		advisor_set_threshold(srv->advisor, s.duration_ms);
	if (s.ttl_ms >= 0) {
		cache_set_ttl(srv->cache, (uint64_t)s.ttl_ms);
		atomic_store(&srv->cache_ttl_ms, s.ttl_ms);
	}
	return 0;
}

/* ---- /metrics ----------------------------------------------------------------- */

static void
metric(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
metric_value(FILE *f, const char *name, const char *type, const char *help,
	     double v)
{
	metric(f, name, type, help);
	fprintf(f, "%s ", name);
	json_put_num(f, v);
	fputc('\n', f);
}

/* A label value, escaped as the text format wants. */
static void
label(FILE *f, const char *v)
{
	fputc('"', f);
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fputc('\\', f);
		if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
	fputc('"', f);
}

static void
metrics_latency(FILE *f, const struct stats_global *g)
{
	static const char name[] = "pgvalet_statement_duration_seconds";
	uint64_t cum = 0;
	int i;

	metric(f, name, "histogram",
	       "Time from a statement's arrival to the end of its answer.");
	for (i = 0; i < STATS_LAT_BUCKETS; i++) {
		cum += g->latency_buckets[i];
		if (i == STATS_LAT_BUCKETS - 1)
			fprintf(f, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name,
				cum);
		else
			fprintf(f, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
				(double)stats_latency_bounds_us[i] / 1e6, cum);
	}
	fprintf(f, "%s_sum %.6f\n%s_count %" PRIu64 "\n", name,
		g->latency_sum_s, name, cum);
}

static void
metrics_stats(FILE *f, struct server *srv)
{
	struct stats_global g;

	if (!srv->stats)
		return;
	stats_get_global(srv->stats, &g);
	metric_value(f, "pgvalet_statements_total", "counter",
		     "Statements completed through the proxy.",
		     (double)g.statements);
	metric_value(f, "pgvalet_statements_failed_total", "counter",
		     "Statements that ended in an error.", (double)g.failures);
	metric_value(f, "pgvalet_statements_cached_total", "counter",
		     "Statements answered from the result cache.",
		     (double)g.cache_hits);
	metric_value(f, "pgvalet_rows_total", "counter",
		     "Rows returned or affected.", (double)g.rows);
	metric_value(f, "pgvalet_qps", "gauge",
		     "Statements per second over the last seconds.", g.qps);
	metric_value(f, "pgvalet_statement_shapes", "gauge",
		     "Statement shapes the statistics keep.", (double)g.shapes);
	metrics_latency(f, &g);
}

static void
metrics_pools(FILE *f, struct server *srv)
{
	struct shared_pool *sp;

	metric_value(f, "pgvalet_clients", "gauge", "Client connections.",
		     atomic_load(&srv->nclients));
	metric_value(f, "pgvalet_pool_size", "gauge",
		     "Server connections allowed per database and user.",
		     srv->cfg.pool_size);
	metric(f, "pgvalet_server_connections", "gauge",
	       "Server connections open or opening, by pool.");
	pthread_mutex_lock(&srv->pools_lock);
	for (sp = srv->pools; sp; sp = sp->next) {
		fputs("pgvalet_server_connections{database=", f);
		label(f, sp->database);
		fputs(",user=", f);
		label(f, sp->user);
		fprintf(f, "} %d\n", atomic_load(&sp->total));
	}
	metric(f, "pgvalet_clients_waiting", "gauge",
	       "Clients waiting for a server connection, by pool.");
	for (sp = srv->pools; sp; sp = sp->next) {
		fputs("pgvalet_clients_waiting{database=", f);
		label(f, sp->database);
		fputs(",user=", f);
		label(f, sp->user);
		fprintf(f, "} %d\n", atomic_load(&sp->waiting));
	}
	pthread_mutex_unlock(&srv->pools_lock);
}

static void
metrics_cache(FILE *f, struct server *srv)
{
	struct cache_stats cs;

	if (!srv->cache)
		return;
	cache_store_stats(srv->cache, &cs);
	metric_value(f, "pgvalet_cache_hits_total", "counter",
		     "Result cache lookups that hit.", (double)cs.hits);
	metric_value(f, "pgvalet_cache_misses_total", "counter",
		     "Result cache lookups that missed.", (double)cs.misses);
	metric_value(f, "pgvalet_cache_stores_total", "counter",
		     "Results stored.", (double)cs.stores);
	metric_value(f, "pgvalet_cache_entries", "gauge", "Results cached.",
		     (double)cs.entries);
	metric_value(f, "pgvalet_cache_bytes", "gauge",
		     "Bytes the cache holds, metadata included.",
		     (double)cs.bytes);
	metric_value(f, "pgvalet_cache_budget_bytes", "gauge",
		     "The cache's byte budget (--cache-size).",
		     (double)cs.budget_bytes);
	metric(f, "pgvalet_cache_evictions_total", "counter",
	       "Results dropped, by source.");
	fprintf(f, "pgvalet_cache_evictions_total{source=\"capacity\"} %"
		PRIu64 "\n", cs.evicted_capacity);
	fprintf(f, "pgvalet_cache_evictions_total{source=\"invalidation\"} %"
		PRIu64 "\n", cs.evicted_invalidated);
	fprintf(f, "pgvalet_cache_evictions_total{source=\"ttl\"} %" PRIu64
		"\n", cs.evicted_ttl);
	metric(f, "pgvalet_cache_rejected_total", "counter",
	       "Results not stored, by reason.");
	fprintf(f, "pgvalet_cache_rejected_total{reason=\"stale\"} %" PRIu64
		"\n", cs.rejected_stale);
	fprintf(f, "pgvalet_cache_rejected_total{reason=\"too_big\"} %" PRIu64
		"\n", cs.rejected_too_big);
	metric_value(f, "pgvalet_cache_invalidations_total", "counter",
		     "Invalidation tags bumped (writes seen).",
		     (double)cs.invalidations);
	metric_value(f, "pgvalet_cache_coalesced_total", "counter",
		     "Identical misses served by one upstream query.",
		     (double)cs.coalesced);
}

static void
metrics_stream(FILE *f, struct server *srv)
{
	struct stream_stats ss;
	const char *state = stream_state(srv, &ss);
	static const char *const states[] = { "up", "down", "off" };

	metric(f, "pgvalet_stream_state", "gauge",
	       "The replication stream's state (1 for the current one).");
	for (int i = 0; i < 3; i++)
		fprintf(f, "pgvalet_stream_state{state=\"%s\"} %d\n",
			states[i], strcmp(state, states[i]) == 0);
	if (!srv->streams)
		return;
	metric_value(f, "pgvalet_replication_lag_bytes", "gauge",
		     "Worst database: server WAL end minus applied position.",
		     (double)ss.lag_bytes);
	metric_value(f, "pgvalet_replication_lag_ms", "gauge",
		     "Worst database: last commit applied minus its commit "
		     "time, milliseconds.", (double)ss.lag_ms);
	metric_value(f, "pgvalet_stream_transactions_total", "counter",
		     "Transactions the stream applied.",
		     (double)ss.transactions);
	metric(f, "pgvalet_stream_evictions_total", "counter",
	       "Invalidations the stream made, by kind.");
	fprintf(f, "pgvalet_stream_evictions_total{kind=\"row\"} %" PRIu64
		"\n", ss.row_evictions);
	fprintf(f, "pgvalet_stream_evictions_total{kind=\"table\"} %" PRIu64
		"\n", ss.table_evictions);
	fprintf(f, "pgvalet_stream_evictions_total{kind=\"flush\"} %" PRIu64
		"\n", ss.flushes);
	metric_value(f, "pgvalet_stream_reconnects_total", "counter",
		     "Times a stream went down.", (double)ss.reconnects);
}

static void
metrics_push_bus(FILE *f, struct server *srv)
{
	struct push_stats ps;
	struct bus_stats bs;

	if (srv->push) {
		push_get_stats(srv->push, &ps);
		metric_value(f, "pgvalet_push_subscribers", "gauge",
			     "In-process caches subscribed now.",
			     (double)ps.subscribers);
		metric_value(f, "pgvalet_push_events_total", "counter",
			     "Invalidation events pushed.", (double)ps.events);
		metric_value(f, "pgvalet_push_dropped_total", "counter",
			     "Subscribers dropped as too slow.",
			     (double)ps.dropped_slow);
	}
	if (srv->bus) {
		bus_get_stats(srv->bus, &bs);
		metric_value(f, "pgvalet_bus_up", "gauge",
			     "1 when the Redis bus is connected.", bs.up);
		metric_value(f, "pgvalet_bus_received_total", "counter",
			     "Invalidations received from other proxies.",
			     (double)bs.received);
		metric_value(f, "pgvalet_bus_published_total", "counter",
			     "Invalidations published to other proxies.",
			     (double)bs.published);
	}
}

char *
api_metrics_text(struct server *srv)
{
	char *buf = NULL;
	size_t len;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	metric_value(f, "pgvalet_uptime_seconds", "gauge",
		     "Seconds since the proxy started.",
		     (double)(clock_unix_us() - srv->started_us) / 1e6);
	metrics_stats(f, srv);
	metrics_pools(f, srv);
	metrics_cache(f, srv);
	metrics_stream(f, srv);
	metrics_push_bus(f, srv);
	return finish(f, &buf);
}
