/*
 * advisor.c - slow shapes -> verified index advice -> (optimize) indexes;
 * see advisor.h.
 *
 * Workers only count: per shape, calls and total upstream time (cache
 * hits left out) in a striped table.  The first time a shape's mean
 * reaches the threshold its example is queued for the advisor thread,
 * which owns one libpq connection per database and does all the
 * talking to Postgres.  A shape is looked at again after RETRY_US.
 */
#include "observe/advisor.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

#include "analysis/indexcols.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/pgconn.h"
#include "observe/audit.h"
#include "observe/indexer.h"
#include "observe/jsonbuf.h"
#include "observe/nplus1.h"

enum {
	STRIPES = 64,
	STRIPE_SLOTS = 64,
	MAX_QUEUE = 64,
	MAX_ADVICE = 128,
	MAX_DBS = 16,
	EXAMPLE_MAX = 16384,	/* longer statements are not examined */
	MAX_CREATED = 1000,	/* creation times kept for the hourly cap */
};

#define RETRY_US (INT64_C(600) * 1000000)	/* look again after 10 min */
#define HOUR_US (INT64_C(3600) * 1000000)
#define OFFSET_SAMPLE_US INT64_C(1000000)

enum shape_state { SHAPE_WATCHED = 0, SHAPE_QUEUED, SHAPE_DONE };
enum offset_state { OFF_UNKNOWN = 0, OFF_QUEUED, OFF_NONE, OFF_SAMPLE };

struct shape {
	uint64_t fp;
	uint64_t calls, total_us;	/* upstream answers only */
	int64_t retry_us;		/* SHAPE_DONE: look again after */
	int64_t next_offset_us;		/* OFF_SAMPLE: next sample */
	int64_t last_us;		/* last seen */
	uint8_t state, offset;
	bool used;
};

struct stripe {
	pthread_mutex_t lock;
	struct shape shapes[STRIPE_SLOTS];
};

enum job_kind { JOB_ADVISE, JOB_OFFSET };

struct job {
	struct job *next;
	enum job_kind kind;
	uint64_t fp;
	uint64_t calls;
	double mean_ms;
	char db[64];
	char user[128];
	char sql[];
};

struct db_conn {
	char name[64];
	PGconn *conn;
	int hypopg;		/* 0 unknown, 1 usable, -1 missing */
};

struct advice {
	int64_t at_us;
	uint64_t shape;
	char db[64];
	struct indexer_advice a;
	double mean_ms;
	uint64_t calls;
	char example[1024];
	char status[160];
	enum run_mode mode;
};

struct advisor {
	const struct config *cfg;
	struct nplus1 *np;
	struct audit *au;
	_Atomic int64_t threshold_us;
	struct stripe stripes[STRIPES];

	pthread_mutex_t lock;		/* the queue, stopping, busy */
	pthread_cond_t cond;
	struct job *head, *tail;
	int queued;
	bool stopping, running;
	PGconn *busy;			/* the connection in use, to cancel */
	pthread_t thread;

	/* the thread's own */
	struct db_conn dbs[MAX_DBS];
	int n_dbs;
	int64_t created_us[MAX_CREATED];
	int n_created;

	pthread_mutex_t advice_lock;	/* advice and notes */
	struct advice advice[MAX_ADVICE];
	int n_advice;			/* ever added; ring */
	char notes[MAX_DBS][320];
	int n_notes;
};

static const char *const mode_names[] = { "cache", "observe", "optimize" };

struct advisor *
advisor_new(const struct config *cfg, struct nplus1 *np, struct audit *au)
{
	struct advisor *ad = calloc(1, sizeof(*ad));
	int i;

	if (!ad)
		return NULL;
	ad->cfg = cfg;
	ad->np = np;
	ad->au = au;
	atomic_init(&ad->threshold_us,
		    (int64_t)cfg->threshold_duration_ms * 1000);
	for (i = 0; i < STRIPES; i++)
		pthread_mutex_init(&ad->stripes[i].lock, NULL);
	pthread_mutex_init(&ad->lock, NULL);
	pthread_cond_init(&ad->cond, NULL);
	pthread_mutex_init(&ad->advice_lock, NULL);
	return ad;
}

/* ---- the workers' side -------------------------------------------------- */

/* SELECT, WITH, UPDATE or DELETE first (after blanks and parentheses):
 * statements whose rows an index could find faster. */
static bool
may_use_index(const char *sql, size_t len)
{
	static const char *const words[] = { "select", "with", "update",
					     "delete" };
	size_t i = 0, k, n;

	while (i < len && (sql[i] == ' ' || sql[i] == '\t' ||
			   sql[i] == '\n' || sql[i] == '\r' || sql[i] == '('))
		i++;
	for (k = 0; k < sizeof(words) / sizeof(*words); k++) {
		n = strlen(words[k]);
		if (len - i >= n && (sql[i] | 0x20) == words[k][0] &&
		    strncasecmp(sql + i, words[k], n) == 0)
			return true;
	}
	return false;
}

/*
 * The shape's slot, added if new.  Probes from the fingerprint; slots are
 * never emptied, so an unused slot ends the search.  A full stripe gives
 * a new shape the slot of the shape seen least recently (not one queued
 * for the thread); NULL only when all of them are queued.
 */
static struct shape *
shape_get(struct stripe *st, uint64_t fp, bool add, int64_t now)
{
	struct shape *s, *oldest = NULL;
	int i;

	for (i = 0; i < STRIPE_SLOTS; i++) {
		s = &st->shapes[(fp / STRIPES + (uint64_t)i) % STRIPE_SLOTS];
		if (s->used && s->fp == fp)
			return s;
		if (!s->used) {
			oldest = s;
			break;
		}
		if (s->state != SHAPE_QUEUED && s->offset != OFF_QUEUED &&
		    (!oldest || s->last_us < oldest->last_us))
			oldest = s;
	}
	if (!add || !oldest)
		return NULL;
	memset(oldest, 0, sizeof(*oldest));
	oldest->used = true;
	oldest->fp = fp;
	oldest->last_us = now;
	return oldest;
}

static bool
enqueue(struct advisor *ad, enum job_kind kind,
	const struct stmt_observation *o, const struct shape *s)
{
	struct job *j;
	bool ok = false;

	j = malloc(sizeof(*j) + o->sql_len + 1);
	if (!j)
		return false;
	j->next = NULL;
	j->kind = kind;
	j->fp = o->fingerprint;
	j->calls = s->calls;
	j->mean_ms = s->calls ? (double)s->total_us / (double)s->calls / 1e3 :
				0;
	snprintf(j->db, sizeof(j->db), "%s", o->db ? o->db : "");
	snprintf(j->user, sizeof(j->user), "%s", o->user ? o->user : "");
	memcpy(j->sql, o->sql, o->sql_len);
	j->sql[o->sql_len] = '\0';
	pthread_mutex_lock(&ad->lock);
	if (ad->running && !ad->stopping && ad->queued < MAX_QUEUE) {
		if (ad->tail)
			ad->tail->next = j;
		else
			ad->head = j;
		ad->tail = j;
		ad->queued++;
		ok = true;
		pthread_cond_signal(&ad->cond);
	}
	pthread_mutex_unlock(&ad->lock);
	if (!ok)
		free(j);
	return ok;
}

void
advisor_set_threshold(struct advisor *ad, int ms)
{
	atomic_store(&ad->threshold_us, (int64_t)ms * 1000);
}

void
advisor_observe(const struct stmt_observation *o, void *arg)
{
	struct advisor *ad = arg;
	int64_t threshold_us = atomic_load_explicit(&ad->threshold_us,
						    memory_order_relaxed);
	struct stripe *st;
	struct shape *s, copy;
	bool offset_job = false, advise_job = false, offset_lost, advise_lost;

	if (o->failed || !o->fingerprint || o->sql_len >= EXAMPLE_MAX ||
	    !may_use_index(o->sql, o->sql_len))
		return;
	st = &ad->stripes[o->fingerprint % STRIPES];
	pthread_mutex_lock(&st->lock);
	s = shape_get(st, o->fingerprint, true, o->started_us);
	if (!s) {
		pthread_mutex_unlock(&st->lock);
		return;
	}
	s->last_us = o->started_us;
	if (s->offset == OFF_UNKNOWN ||
	    (s->offset == OFF_SAMPLE && o->started_us >= s->next_offset_us)) {
		s->offset = OFF_QUEUED;
		offset_job = true;
	}
	if (!o->cache_hit) {
		s->calls++;
		s->total_us += (uint64_t)o->duration_us;
		if (o->duration_us >= threshold_us &&
		    s->total_us >= (uint64_t)threshold_us * s->calls &&
		    (s->state == SHAPE_WATCHED ||
		     (s->state == SHAPE_DONE && o->started_us >= s->retry_us))) {
			s->state = SHAPE_QUEUED;
			advise_job = true;
		}
	}
	copy = *s;
	pthread_mutex_unlock(&st->lock);
	/* a job that did not fit in the queue: try again on a later call */
	offset_lost = offset_job && !enqueue(ad, JOB_OFFSET, o, &copy);
	advise_lost = advise_job && !enqueue(ad, JOB_ADVISE, o, &copy);
	if (!offset_lost && !advise_lost)
		return;
	pthread_mutex_lock(&st->lock);
	if ((s = shape_get(st, o->fingerprint, false, 0))) {
		if (offset_lost)
			s->offset = OFF_UNKNOWN;
		if (advise_lost)
			s->state = SHAPE_WATCHED;
	}
	pthread_mutex_unlock(&st->lock);
}

/* ---- the thread's side -------------------------------------------------- */

static void
shape_done(struct advisor *ad, uint64_t fp, int64_t retry_us)
{
	struct stripe *st = &ad->stripes[fp % STRIPES];
	struct shape *s;

	pthread_mutex_lock(&st->lock);
	if ((s = shape_get(st, fp, false, 0))) {
		s->state = SHAPE_DONE;
		s->retry_us = retry_us;
	}
	pthread_mutex_unlock(&st->lock);
}

static void
shape_offset(struct advisor *ad, uint64_t fp, enum offset_state state)
{
	struct stripe *st = &ad->stripes[fp % STRIPES];
	struct shape *s;

	pthread_mutex_lock(&st->lock);
	if ((s = shape_get(st, fp, false, 0))) {
		s->offset = (uint8_t)state;
		s->next_offset_us = clock_unix_us() + OFFSET_SAMPLE_US;
	}
	pthread_mutex_unlock(&st->lock);
}

static void
add_note(struct advisor *ad, const char *db, const char *text)
{
	int i;

	pthread_mutex_lock(&ad->advice_lock);
	for (i = 0; i < ad->n_notes; i++)
		if (strncmp(ad->notes[i], db, strlen(db)) == 0 &&
		    ad->notes[i][strlen(db)] == ':')
			break;
	if (i < MAX_DBS) {
		snprintf(ad->notes[i], sizeof(ad->notes[i]), "%.63s: %.250s", db,
			 text);
		if (i == ad->n_notes)
			ad->n_notes++;
	}
	pthread_mutex_unlock(&ad->advice_lock);
}

/* The thread's connection to 'db' (opened or reopened as needed). */
static struct db_conn *
get_db(struct advisor *ad, const char *db, char *why, size_t whylen)
{
	const struct pgconn_opts o = {
		.dbname = db[0] ? db : NULL,
		.application_name = "pgvalet-advisor",
		.options = "-c statement_timeout=10000",
		.connect_timeout_s = 10,
	};
	struct db_conn *d = NULL;
	int i;

	for (i = 0; i < ad->n_dbs; i++)
		if (strcmp(ad->dbs[i].name, db) == 0)
			d = &ad->dbs[i];
	if (!d) {
		if (ad->n_dbs == MAX_DBS) {
			snprintf(why, whylen, "advising %d databases already",
				 MAX_DBS);
			return NULL;
		}
		d = &ad->dbs[ad->n_dbs++];
		snprintf(d->name, sizeof(d->name), "%s", db);
	}
	if (d->conn && PQstatus(d->conn) == CONNECTION_OK)
		return d;
	PQfinish(d->conn);
	d->conn = pgconn_open(&ad->cfg->upstream, &o);
	if (PQstatus(d->conn) != CONNECTION_OK) {
		snprintf(why, whylen, "cannot connect: %s",
			 PQerrorMessage(d->conn));
		PQfinish(d->conn);
		d->conn = NULL;
		return NULL;
	}
	return d;
}

static void
set_busy(struct advisor *ad, PGconn *c)
{
	pthread_mutex_lock(&ad->lock);
	ad->busy = c;
	pthread_mutex_unlock(&ad->lock);
}

static struct advice *
record_advice(struct advisor *ad, const struct job *j,
	      const struct indexer_advice *a)
{
	struct advice *r;

	pthread_mutex_lock(&ad->advice_lock);
	r = &ad->advice[ad->n_advice++ % MAX_ADVICE];
	memset(r, 0, sizeof(*r));
	r->at_us = clock_unix_us();
	r->shape = j->fp;
	snprintf(r->db, sizeof(r->db), "%s", j->db);
	r->a = *a;
	r->mean_ms = j->mean_ms;
	r->calls = j->calls;
	snprintf(r->example, sizeof(r->example), "%s", j->sql);
	r->mode = ad->cfg->mode;
	snprintf(r->status, sizeof(r->status), "%s",
		 ad->cfg->mode == MODE_OPTIMIZE ? "recommended, creating" :
		 "recommended");
	pthread_mutex_unlock(&ad->advice_lock);
	return r;
}

static void
set_status(struct advisor *ad, struct advice *r, const char *status)
{
	pthread_mutex_lock(&ad->advice_lock);
	snprintf(r->status, sizeof(r->status), "%s", status);
	pthread_mutex_unlock(&ad->advice_lock);
}

static int
created_last_hour(struct advisor *ad, int64_t now)
{
	int i, n = 0;

	for (i = 0; i < ad->n_created && i < MAX_CREATED; i++)
		if (now - ad->created_us[i] < HOUR_US)
			n++;
	return n;
}

/* Plan as the role that sent the statement (the proxy's own role may be
 * a superuser's, and planning may run a role's IMMUTABLE functions). */
static int
plan_as(struct advisor *ad, struct db_conn *d, const struct job *j,
	char *why, size_t whylen)
{
	if (!j->user[0] || strcmp(j->user, ad->cfg->upstream.user) == 0)
		return indexer_set_role(d->conn, NULL, why, whylen);
	return indexer_set_role(d->conn, j->user, why, whylen);
}

/* --mode optimize: create the advised index unless a rule forbids it. */
static void
create(struct advisor *ad, struct db_conn *d, const struct job *j,
       const struct indexer_advice *a, struct advice *rec)
{
	const struct config *cfg = ad->cfg;
	char table[140], why[600], detail[1800];
	int64_t now = clock_unix_us();
	bool existed, dropped, used = false;
	double cost = 0;

	snprintf(table, sizeof(table), "%s.%s", a->schema, a->table);
	if (indexer_excluded(cfg->exclude_tables, a->schema, a->table)) {
		audit_add(ad->au, AUDIT_SKIPPED, j->fp, j->db, table, a->name,
			  "not created: the table is in --exclude-tables");
		set_status(ad, rec, "not created: table excluded");
		return;
	}
	if (created_last_hour(ad, now) >= cfg->max_indexes_per_hour) {
		snprintf(detail, sizeof(detail), "not created: "
			 "--max-indexes-per-hour %d reached",
			 cfg->max_indexes_per_hour);
		audit_add(ad->au, AUDIT_SKIPPED, j->fp, j->db, table, a->name,
			  detail);
		set_status(ad, rec, "not created: hourly limit reached");
		return;
	}
	set_busy(ad, d->conn);
	why[0] = '\0';
	if (indexer_create(d->conn, a, j->fp, &existed, &dropped, why,
			   sizeof(why)) < 0) {
		set_busy(ad, NULL);
		audit_add(ad->au, AUDIT_FAILED, j->fp, j->db, table, a->ddl,
			  why);
		if (dropped)
			audit_add(ad->au, AUDIT_DROPPED, j->fp, j->db, table,
				  a->name, "invalid index left by the failed "
				  "concurrent build");
		set_status(ad, rec, "creation failed");
		return;
	}
	set_busy(ad, NULL);
	if (existed) {
		audit_add(ad->au, AUDIT_SKIPPED, j->fp, j->db, table, a->name,
			  why);
		set_status(ad, rec, "exists");
		return;
	}
	ad->created_us[ad->n_created++ % MAX_CREATED] = now;
	/* the real plan, planned as the statement's role again */
	if (plan_as(ad, d, j, why, sizeof(why)) ||
	    indexer_check_plan(d->conn, j->sql, a->name, &used, &cost, why,
			       sizeof(why)))
		snprintf(detail, sizeof(detail), "%s; the example's plan could "
			 "not be checked: %s", a->ddl, why);
	else
		snprintf(detail, sizeof(detail), "%s; the example's plan %s it "
			 "(cost %.2f, was %.2f)", a->ddl, used ? "uses" :
			 "does NOT use", cost, a->cost_before);
	indexer_set_role(d->conn, NULL, why, sizeof(why));
	audit_add(ad->au, AUDIT_CREATED, j->fp, j->db, table, a->name, detail);
	set_status(ad, rec, used ? "created, used by the plan" :
				   "created, not used by the plan");
}

static void
advise(struct advisor *ad, const struct job *j)
{
	struct indexer_advice a;
	struct db_conn *d;
	struct advice *rec;
	char why[600], detail[1800], table[140];
	enum indexer_result r;

	why[0] = '\0';
	if (!(d = get_db(ad, j->db, why, sizeof(why)))) {
		audit_add(ad->au, AUDIT_FAILED, j->fp, j->db, "", "", why);
		shape_done(ad, j->fp, clock_unix_us() + RETRY_US);
		return;
	}
	if (d->hypopg == 0) {
		d->hypopg = indexer_hypopg(d->conn, why, sizeof(why)) ? -1 : 1;
		if (d->hypopg < 0) {
			log_warn("advisor: database %s: %s; index advice is off "
				 "there (install postgresql-15-hypopg and run "
				 "CREATE EXTENSION hypopg as a superuser)",
				 j->db, why);
			add_note(ad, j->db, why);
		}
	}
	if (d->hypopg < 0) {
		audit_add(ad->au, AUDIT_SKIPPED, j->fp, j->db, "", "",
			  "hypopg is missing: nothing can be verified");
		shape_done(ad, j->fp, clock_unix_us() + RETRY_US);
		return;
	}
	if (plan_as(ad, d, j, why, sizeof(why))) {
		audit_add(ad->au, AUDIT_SKIPPED, j->fp, j->db, "", "", why);
		shape_done(ad, j->fp, clock_unix_us() + RETRY_US);
		return;
	}
	set_busy(ad, d->conn);
	r = indexer_advise(d->conn, j->sql, &a, why, sizeof(why));
	set_busy(ad, NULL);
	indexer_set_role(d->conn, NULL, NULL, 0);
	if (r != INDEXER_ADVICE) {
		snprintf(detail, sizeof(detail), "no index advised (mean %.1f "
			 "ms over %" PRIu64 " calls): %s", j->mean_ms, j->calls,
			 why);
		audit_add(ad->au, r == INDEXER_NONE ? AUDIT_SKIPPED :
			  AUDIT_FAILED, j->fp, j->db, "", "", detail);
		shape_done(ad, j->fp, clock_unix_us() + RETRY_US);
		return;
	}
	rec = record_advice(ad, j, &a);
	snprintf(table, sizeof(table), "%s.%s", a.schema, a.table);
	snprintf(detail, sizeof(detail), "%s; cost %.2f -> %.2f (-%.0f%%), "
		 "verified with hypopg; mean %.1f ms over %" PRIu64 " calls",
		 a.ddl, a.cost_before, a.cost_after,
		 100.0 * (1 - a.cost_after / a.cost_before), j->mean_ms,
		 j->calls);
	audit_add(ad->au, AUDIT_RECOMMENDED, j->fp, j->db, table, a.name,
		  detail);
	if (ad->cfg->mode == MODE_OPTIMIZE)
		create(ad, d, j, &a, rec);
	shape_done(ad, j->fp, clock_unix_us() + HOUR_US);
}

static void
check_offset(struct advisor *ad, const struct job *j)
{
	struct idxcols ic;
	char err[128];

	if (idxcols_parse(j->sql, &ic, err, sizeof(err)) < 0 ||
	    !ic.is_select || ic.offset < 0) {
		shape_offset(ad, j->fp, OFF_NONE);
		return;
	}
	if (ic.offset >= NPLUS1_DEEP_OFFSET && ad->np)
		nplus1_note_offset(ad->np, j->fp, j->db, j->sql, ic.offset);
	shape_offset(ad, j->fp, OFF_SAMPLE);
}

static void *
advisor_main(void *arg)
{
	struct advisor *ad = arg;
	struct job *j;
	int i;

	for (;;) {
		pthread_mutex_lock(&ad->lock);
		while (!ad->head && !ad->stopping)
			pthread_cond_wait(&ad->cond, &ad->lock);
		if (ad->stopping) {
			pthread_mutex_unlock(&ad->lock);
			break;
		}
		j = ad->head;
		ad->head = j->next;
		if (!ad->head)
			ad->tail = NULL;
		ad->queued--;
		pthread_mutex_unlock(&ad->lock);
		if (j->kind == JOB_ADVISE)
			advise(ad, j);
		else
			check_offset(ad, j);
		free(j);
	}
	for (i = 0; i < ad->n_dbs; i++) {
		PQfinish(ad->dbs[i].conn);
		ad->dbs[i].conn = NULL;
	}
	return NULL;
}

int
advisor_start(struct advisor *ad)
{
	pthread_mutex_lock(&ad->lock);
	ad->running = true;
	pthread_mutex_unlock(&ad->lock);
	if (pthread_create(&ad->thread, NULL, advisor_main, ad) != 0) {
		ad->running = false;
		return -1;
	}
	log_info("index advisor: mode %s, slow shapes from %lld ms, %s",
		 mode_names[ad->cfg->mode],
		 (long long)atomic_load(&ad->threshold_us) / 1000,
		 ad->cfg->mode == MODE_OPTIMIZE ?
		 "verified indexes are created" : "advice only (nothing is "
		 "created; --mode optimize creates them)");
	return 0;
}

void
advisor_stop(struct advisor *ad)
{
	char err[256];
	PGcancel *cancel;
	bool was_running;

	if (!ad)
		return;
	pthread_mutex_lock(&ad->lock);
	was_running = ad->running;
	ad->stopping = true;
	ad->running = false;
	if (ad->busy && (cancel = PQgetCancel(ad->busy))) {
		PQcancel(cancel, err, sizeof(err));
		PQfreeCancel(cancel);
	}
	pthread_cond_signal(&ad->cond);
	pthread_mutex_unlock(&ad->lock);
	if (was_running)
		pthread_join(ad->thread, NULL);
}

void
advisor_free(struct advisor *ad)
{
	struct job *j;
	int i;

	if (!ad)
		return;
	advisor_stop(ad);
	while ((j = ad->head)) {
		ad->head = j->next;
		free(j);
	}
	for (i = 0; i < STRIPES; i++)
		pthread_mutex_destroy(&ad->stripes[i].lock);
	pthread_mutex_destroy(&ad->lock);
	pthread_cond_destroy(&ad->cond);
	pthread_mutex_destroy(&ad->advice_lock);
	free(ad);
}

/* ---- JSON --------------------------------------------------------------- */

static void
advice_json(struct jsonbuf *b, const struct advice *r)
{
	char shape[24], text[1400];
	int i;

	snprintf(shape, sizeof(shape), "%016" PRIx64, r->shape);
	snprintf(text, sizeof(text), "%.1100s: cost %.2f -> %.2f (%s)", r->a.ddl,
		 r->a.cost_before, r->a.cost_after, r->status);
	jsonbuf_printf(b, "{\"at\":%.3f", (double)r->at_us / 1e6);
	jsonbuf_kv_str(b, false, "kind", "index");
	jsonbuf_kv_str(b, false, "summary", text);
	jsonbuf_kv_str(b, false, "shape", shape);
	jsonbuf_kv_str(b, false, "db", r->db);
	jsonbuf_kv_str(b, false, "schema", r->a.schema);
	jsonbuf_kv_str(b, false, "table", r->a.table);
	jsonbuf_raw(b, ",\"columns\":[", 12);
	for (i = 0; i < r->a.n_cols; i++) {
		if (i)
			jsonbuf_raw(b, ",", 1);
		jsonbuf_str(b, r->a.cols[i], strlen(r->a.cols[i]));
	}
	jsonbuf_raw(b, "]", 1);
	jsonbuf_kv_str(b, false, "index", r->a.name);
	jsonbuf_kv_str(b, false, "ddl", r->a.ddl);
	jsonbuf_printf(b, ",\"cost_before\":%.2f,\"cost_after\":%.2f,"
		       "\"candidates\":%d,\"mean_ms\":%.3f,\"calls\":%" PRIu64,
		       r->a.cost_before, r->a.cost_after, r->a.candidates,
		       r->mean_ms, r->calls);
	jsonbuf_kv_str(b, false, "example", r->example);
	jsonbuf_kv_str(b, false, "status", r->status);
	jsonbuf_kv_str(b, false, "mode", mode_names[r->mode]);
	jsonbuf_raw(b, "}", 1);
}

char *
advisor_advice_json(struct advisor *ad)
{
	struct jsonbuf b = { 0 };
	int i, first;
	bool any = false;

	jsonbuf_raw(&b, "[", 1);
	pthread_mutex_lock(&ad->advice_lock);
	for (i = 0; i < ad->n_notes; i++, any = true) {
		jsonbuf_printf(&b, "%s{", any ? "," : "");
		jsonbuf_kv_str(&b, true, "kind", "note");
		jsonbuf_kv_str(&b, false, "summary", ad->notes[i]);
		jsonbuf_raw(&b, "}", 1);
	}
	first = ad->n_advice > MAX_ADVICE ? ad->n_advice - MAX_ADVICE : 0;
	for (i = ad->n_advice; i-- > first; any = true) {	/* newest first */
		if (any)
			jsonbuf_raw(&b, ",", 1);
		advice_json(&b, &ad->advice[i % MAX_ADVICE]);
	}
	pthread_mutex_unlock(&ad->advice_lock);
	jsonbuf_raw(&b, "]", 1);
	return jsonbuf_finish(&b);
}

const char *const advisor_advice_columns[ADVISOR_ADVICE_NCOLS] = {
	"at", "db", "table", "index", "columns", "cost_before", "cost_after",
	"status", "shape", "ddl", "example",
};

void
advisor_advice_rows(struct advisor *ad, observe_row_fn fn, void *arg)
{
	char at[32], table[140], cols[300], before[32], after[32], shape[24];
	const struct advice *r;
	size_t used;
	int i, c, first;

	pthread_mutex_lock(&ad->advice_lock);
	first = ad->n_advice > MAX_ADVICE ? ad->n_advice - MAX_ADVICE : 0;
	for (i = ad->n_advice; i-- > first;) {
		r = &ad->advice[i % MAX_ADVICE];
		observe_format_time(r->at_us, at, sizeof(at));
		snprintf(table, sizeof(table), "%s.%s", r->a.schema, r->a.table);
		for (used = 0, c = 0; c < r->a.n_cols && used < sizeof(cols); c++)
			used += (size_t)snprintf(cols + used, sizeof(cols) - used,
						 "%s%s", c ? ", " : "",
						 r->a.cols[c]);
		snprintf(before, sizeof(before), "%.2f", r->a.cost_before);
		snprintf(after, sizeof(after), "%.2f", r->a.cost_after);
		snprintf(shape, sizeof(shape), "%016" PRIx64, r->shape);
		fn(arg, (const char *const[ADVISOR_ADVICE_NCOLS]){
			at, r->db, table, r->a.name, cols, before, after,
			r->status, shape, r->a.ddl, r->example });
	}
	pthread_mutex_unlock(&ad->advice_lock);
}

char *
advisor_audit_json(struct advisor *ad)
{
	return audit_json(ad->au);
}
