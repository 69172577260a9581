/*
 * nplus1.c - see nplus1.h.
 *
 * Two counting tables, one keyed by (shape, client), one by shape, each
 * cut in stripes of STRIPE_SLOTS slots under one mutex.  A slot counts
 * the calls of its window and how often the parameter changed from one
 * call to the next (the hash of the bound values, or of the text when
 * the constants are inline): a loop over parents changes it every time,
 * a hot identical query never does.
 */
#include "observe/nplus1.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <xxhash.h>

#include "core/clock.h"
#include "core/log.h"
#include "observe/jsonbuf.h"

enum { STRIPES = 64, STRIPE_SLOTS = 64, EXAMPLE_MAX = 1024 };

enum scope { SCOPE_CONNECTION = 0, SCOPE_CONNECTIONS, SCOPE_OFFSET };

struct slot {
	uint64_t shape;
	uint64_t client;	/* 0 in the across-connections table */
	int64_t window_start_us;
	uint64_t last_param;
	uint64_t first_client;
	uint32_t calls;
	uint32_t changes;
	bool used;
	bool many_clients;
	bool reported;		/* in this window */
};

struct stripe {
	pthread_mutex_t lock;
	struct slot slots[STRIPE_SLOTS];
};

struct finding {
	enum scope scope;
	uint64_t shape;
	char db[64];
	char example[EXAMPLE_MAX];
	int64_t first_us, last_us;
	uint64_t detections;	/* windows in which it was seen */
	uint64_t max_calls;	/* most calls in one window */
	int64_t offset;		/* SCOPE_OFFSET: the deepest seen */
};

struct nplus1 {
	struct stripe per_client[STRIPES];
	struct stripe per_shape[STRIPES];
	pthread_mutex_t findings_lock;
	unsigned n_findings;
	struct finding findings[NPLUS1_MAX_FINDINGS];
};

struct nplus1 *
nplus1_new(void)
{
	struct nplus1 *np = calloc(1, sizeof(*np));
	int i;

	if (!np)
		return NULL;
	for (i = 0; i < STRIPES; i++) {
		pthread_mutex_init(&np->per_client[i].lock, NULL);
		pthread_mutex_init(&np->per_shape[i].lock, NULL);
	}
	pthread_mutex_init(&np->findings_lock, NULL);
	return np;
}

void
nplus1_free(struct nplus1 *np)
{
	int i;

	if (!np)
		return;
	for (i = 0; i < STRIPES; i++) {
		pthread_mutex_destroy(&np->per_client[i].lock);
		pthread_mutex_destroy(&np->per_shape[i].lock);
	}
	pthread_mutex_destroy(&np->findings_lock);
	free(np);
}

static const char *
scope_name(enum scope s)
{
	return s == SCOPE_CONNECTION ? "one connection" :
	       s == SCOPE_CONNECTIONS ? "across connections" : "deep offset";
}

/* The finding for (scope, shape), added if new; NULL when full. */
static struct finding *
finding_get(struct nplus1 *np, enum scope scope, uint64_t shape,
	    const char *db, const char *sql, size_t sql_len, bool *fresh)
{
	struct finding *f;
	unsigned i;

	*fresh = false;
	for (i = 0; i < np->n_findings; i++) {
		f = &np->findings[i];
		if (f->scope == scope && f->shape == shape)
			return f;
	}
	if (np->n_findings == NPLUS1_MAX_FINDINGS)
		return NULL;
	f = &np->findings[np->n_findings++];
	memset(f, 0, sizeof(*f));
	f->scope = scope;
	f->shape = shape;
	snprintf(f->db, sizeof(f->db), "%s", db ? db : "");
	if (sql_len >= sizeof(f->example))
		sql_len = sizeof(f->example) - 1;
	memcpy(f->example, sql, sql_len);
	f->example[sql_len] = '\0';
	*fresh = true;
	return f;
}

/* At most 300 bytes of 'sql' on one line, for a log record. */
static void
one_line(char *out, size_t cap, const char *sql, size_t len)
{
	size_t i;

	if (len > cap - 1)
		len = cap - 1;
	for (i = 0; i < len; i++)
		out[i] = (unsigned char)sql[i] < 0x20 ? ' ' : sql[i];
	out[len] = '\0';
}

static void
report(struct nplus1 *np, enum scope scope,
       const struct stmt_observation *o, uint32_t calls)
{
	struct finding *f;
	char example[301];
	bool fresh;

	pthread_mutex_lock(&np->findings_lock);
	f = finding_get(np, scope, o->fingerprint, o->db, o->sql, o->sql_len,
			&fresh);
	if (f) {
		if (fresh)
			f->first_us = o->started_us;
		f->last_us = o->started_us;
		f->detections++;
		if (calls > f->max_calls)
			f->max_calls = calls;
	}
	pthread_mutex_unlock(&np->findings_lock);
	if (!fresh)
		return;
	one_line(example, sizeof(example), o->sql, o->sql_len);
	log_warn("N+1 queries (%s): shape %016" PRIx64 " ran %u times within "
		 "%d ms with a different parameter each time, e.g.: %s",
		 scope_name(scope), o->fingerprint, calls, NPLUS1_WINDOW_MS,
		 example);
}

/* A window's final count, for a finding it had reported. */
static void
window_closed(struct nplus1 *np, enum scope scope, uint64_t shape,
	      uint32_t calls)
{
	unsigned i;

	pthread_mutex_lock(&np->findings_lock);
	for (i = 0; i < np->n_findings; i++) {
		struct finding *f = &np->findings[i];

		if (f->scope == scope && f->shape == shape &&
		    calls > f->max_calls)
			f->max_calls = calls;
	}
	pthread_mutex_unlock(&np->findings_lock);
}

/*
 * The slot for (shape, client) in its stripe, probing from 'h' (slots
 * are reused, never emptied, so a probe may stop at the first unused
 * one); NULL when every slot holds a live window.
 */
static struct slot *
slot_find(struct stripe *st, uint64_t h, uint64_t shape, uint64_t client,
	  int64_t now)
{
	struct slot *s, *spare = NULL;
	int i;

	for (i = 0; i < STRIPE_SLOTS; i++) {
		s = &st->slots[(h + (uint64_t)i) % STRIPE_SLOTS];
		if (s->used && s->shape == shape && s->client == client)
			return s;
		if (!s->used) {
			if (!spare)
				spare = s;
			break;
		}
		if (!spare && now - s->window_start_us >
			      2000 * NPLUS1_WINDOW_MS)
			spare = s;
	}
	if (spare) {
		memset(spare, 0, sizeof(*spare));
		spare->used = true;
		spare->shape = shape;
		spare->client = client;
		spare->window_start_us = now;
	}
	return spare;
}

/* Count one call; true when this call makes the window an N+1. */
static bool
count_call(struct slot *s, const struct stmt_observation *o,
	   uint64_t param, bool need_many, uint32_t *old_calls, bool *closed)
{
	*closed = false;
	if (o->started_us - s->window_start_us > 1000 * NPLUS1_WINDOW_MS ||
	    s->calls == 0) {
		*closed = s->reported;
		*old_calls = s->calls;
		s->window_start_us = o->started_us;
		s->calls = 0;
		s->changes = 0;
		s->reported = false;
		s->many_clients = false;
		s->first_client = o->client_id;
	} else if (param != s->last_param) {
		s->changes++;
	}
	s->calls++;
	s->last_param = param;
	if (o->client_id != s->first_client)
		s->many_clients = true;
	if (s->reported || s->calls < NPLUS1_MIN_CALLS ||
	    s->changes + 1 < NPLUS1_MIN_CALLS || (need_many && !s->many_clients))
		return false;
	s->reported = true;
	return true;
}

static void
track(struct nplus1 *np, struct stripe *table, enum scope scope,
      const struct stmt_observation *o, uint64_t param)
{
	uint64_t client = scope == SCOPE_CONNECTION ? o->client_id : 0;
	uint64_t h = XXH64(&client, sizeof(client), o->fingerprint);
	struct stripe *st = &table[h % STRIPES];
	uint32_t calls = 0, old_calls = 0;
	bool hit = false, closed = false;
	struct slot *s;

	pthread_mutex_lock(&st->lock);
	s = slot_find(st, h / STRIPES, o->fingerprint, client, o->started_us);
	if (s) {
		hit = count_call(s, o, param, scope == SCOPE_CONNECTIONS,
				 &old_calls, &closed);
		calls = s->calls;
	}
	pthread_mutex_unlock(&st->lock);
	if (closed)
		window_closed(np, scope, o->fingerprint, old_calls);
	if (hit)
		report(np, scope, o, calls);
}

/* SELECT or WITH first (after blanks and parentheses). */
static bool
is_select(const char *sql, size_t len)
{
	size_t i = 0;

	while (i < len && (sql[i] == ' ' || sql[i] == '\t' ||
			   sql[i] == '\n' || sql[i] == '\r' || sql[i] == '('))
		i++;
	if (i == len || ((sql[i] | 0x20) != 's' && (sql[i] | 0x20) != 'w'))
		return false;
	return (len - i >= 6 && strncasecmp(sql + i, "select", 6) == 0) ||
	       (len - i >= 4 && strncasecmp(sql + i, "with", 4) == 0);
}

void
nplus1_observe(const struct stmt_observation *o, void *arg)
{
	struct nplus1 *np = arg;
	uint64_t param;

	if (o->failed || !o->fingerprint || !is_select(o->sql, o->sql_len))
		return;
	param = o->params_hash ? o->params_hash : XXH3_64bits(o->sql,
							       o->sql_len);
	track(np, np->per_client, SCOPE_CONNECTION, o, param);
	track(np, np->per_shape, SCOPE_CONNECTIONS, o, param);
}

void
nplus1_note_offset(struct nplus1 *np, uint64_t shape, const char *db,
		   const char *sql, int64_t offset)
{
	struct finding *f;
	char example[301];
	bool fresh;

	pthread_mutex_lock(&np->findings_lock);
	f = finding_get(np, SCOPE_OFFSET, shape, db, sql, strlen(sql), &fresh);
	if (f) {
		f->last_us = clock_unix_us();
		if (fresh)
			f->first_us = f->last_us;
		f->detections++;
		if (offset > f->offset)
			f->offset = offset;
	}
	pthread_mutex_unlock(&np->findings_lock);
	if (!fresh)
		return;
	one_line(example, sizeof(example), sql, strlen(sql));
	log_warn("deep OFFSET pagination: shape %016" PRIx64 " skips %" PRId64
		 " rows (each page reads and throws away every row before it; "
		 "paginate by key instead), e.g.: %s", shape, offset, example);
}

unsigned
nplus1_count(struct nplus1 *np)
{
	unsigned n;

	pthread_mutex_lock(&np->findings_lock);
	n = np->n_findings;
	pthread_mutex_unlock(&np->findings_lock);
	return n;
}

const char *const nplus1_columns[NPLUS1_NCOLS] = {
	"kind", "scope", "db", "shape", "max_calls", "detections", "offset",
	"last_at", "example",
};

void
nplus1_rows(struct nplus1 *np, observe_row_fn fn, void *arg)
{
	char shape[24], calls[24], det[24], off[24], last[32];
	unsigned i;

	pthread_mutex_lock(&np->findings_lock);
	for (i = 0; i < np->n_findings; i++) {
		const struct finding *f = &np->findings[i];
		bool deep = f->scope == SCOPE_OFFSET;

		snprintf(shape, sizeof(shape), "%016" PRIx64, f->shape);
		snprintf(calls, sizeof(calls), "%" PRIu64, f->max_calls);
		snprintf(det, sizeof(det), "%" PRIu64, f->detections);
		snprintf(off, sizeof(off), "%" PRId64, f->offset);
		observe_format_time(f->last_us, last, sizeof(last));
		fn(arg, (const char *const[NPLUS1_NCOLS]){
			deep ? "deep_offset" : "n+1",
			deep ? NULL : f->scope == SCOPE_CONNECTION ?
			"connection" : "connections", f->db, shape,
			deep ? NULL : calls, det, deep ? off : NULL, last,
			f->example });
	}
	pthread_mutex_unlock(&np->findings_lock);
}

static void
finding_summary(const struct finding *f, char *out, size_t len)
{
	if (f->scope == SCOPE_OFFSET)
		snprintf(out, len, "deep OFFSET %" PRId64 ": %.600s", f->offset,
			 f->example);
	else
		snprintf(out, len, "N+1 (%s): up to %" PRIu64 " calls in %d ms: "
			 "%.600s", scope_name(f->scope), f->max_calls,
			 NPLUS1_WINDOW_MS, f->example);
}

char *
nplus1_json(struct nplus1 *np)
{
	struct jsonbuf b = { 0 };
	char shape[24], text[700];
	unsigned i;

	jsonbuf_raw(&b, "[", 1);
	pthread_mutex_lock(&np->findings_lock);
	for (i = 0; i < np->n_findings; i++) {
		const struct finding *f = &np->findings[i];

		snprintf(shape, sizeof(shape), "%016" PRIx64, f->shape);
		finding_summary(f, text, sizeof(text));
		jsonbuf_printf(&b, "%s{", i ? "," : "");
		jsonbuf_kv_str(&b, true, "kind", f->scope == SCOPE_OFFSET ?
				       "deep_offset" : "n+1");
		jsonbuf_kv_str(&b, false, "scope", f->scope == SCOPE_CONNECTION ?
				       "connection" : f->scope ==
				       SCOPE_CONNECTIONS ? "connections" : "");
		jsonbuf_kv_str(&b, false, "summary", text);
		jsonbuf_kv_str(&b, false, "shape", shape);
		jsonbuf_kv_str(&b, false, "db", f->db);
		jsonbuf_kv_str(&b, false, "example", f->example);
		jsonbuf_printf(&b, ",\"first_at\":%.3f,\"last_at\":%.3f,"
			       "\"detections\":%" PRIu64 ",\"max_calls\":%"
			       PRIu64 ",\"offset\":%" PRId64 ",\"window_ms\":%d}",
			       (double)f->first_us / 1e6,
			       (double)f->last_us / 1e6, f->detections,
			       f->max_calls, f->offset, NPLUS1_WINDOW_MS);
	}
	pthread_mutex_unlock(&np->findings_lock);
	jsonbuf_raw(&b, "]", 1);
	return jsonbuf_finish(&b);
}
