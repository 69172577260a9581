/*
 * stream.c - the logical replication consumers (see stream.h).
 *
 * Each database's thread owns its libpq connection, a map from relation
 * OID to what the last Relation message said (name, key column) and the
 * tags of the transaction being received.  Workers only read its state
 * word; counters are relaxed atomics.
 */
#include "invalidate/stream.h"

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

#include <libpq-fe.h>
#include <xxhash.h>

#include "analysis/catalog.h"
#include "cache/store.h"
#include "cache/tags.h"
#include "cache/tier.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/pgconn.h"
#include "invalidate/events.h"
#include "invalidate/pgoutput.h"
#include "invalidate/push.h"

enum {
	BACKOFF_MIN_MS = 100,
	BACKOFF_MAX_MS = 5000,
	STATUS_EVERY_MS = 1000,		/* standby status updates */
	CATALOG_WAIT_MS = 2000,		/* for a relation's key column */
	TXN_MAX_RELS = 256,		/* beyond: flood the database */
	TXN_MAX_ROWS = 1024,		/* per relation; beyond: the table */
	REL_BUCKETS = 256,
	NAME_LEN = 64,
};

/* What the stream said about one relation (its last Relation message). */
struct rel {
	struct rel *next;
	uint32_t relid;
	uint64_t shape;			/* hash of the column names and types */
	char nsp[NAME_LEN], name[NAME_LEN];
	int key;			/* column index rows are tagged by, or -1 */
	bool known;			/* catalog facts fetched */
	uint64_t table;			/* its table tag */
	uint8_t n_up;
	uint64_t up[CAT_MAX_TAGS];
};

/* One relation's changes in the transaction being received. */
struct txn_rel {
	struct rel *rel;
	bool whole;			/* a change without a usable key */
	size_t nrows;
	int64_t rows[TXN_MAX_ROWS];
};

struct stream_db {
	struct stream_db *next;
	struct stream_set *ss;
	char name[128];
	pthread_t thread;
	_Atomic int state;		/* enum stream_state */
	_Atomic uint64_t server_end;	/* WAL end the server reported */
	_Atomic uint64_t applied;	/* what we have applied and confirm */
	_Atomic uint64_t lag_ms;

	/* the thread's own */
	PGconn *conn;
	struct pgo_msg *msg;
	struct notify_change *notice;	/* NOTIFY mode: the one being applied */
	struct rel *rels[REL_BUCKETS];
	bool in_txn, txn_flood;
	size_t ntxn;
	struct txn_rel *txn;		/* TXN_MAX_RELS */
	int64_t txn_commit_time;
	uint64_t next_status_ms;
	bool failing;			/* failed to open since the last up */
	bool ddl_seen, ddl_warned;	/* the DDL event trigger exists */
	bool txn_ddl;			/* this transaction ran DDL */
	char slot[96];
};

struct stream_set {
	struct stream_config cfg;
	pthread_mutex_t lock;
	struct stream_db *dbs;
	int stop_fd;			/* eventfd: readable once stopping */
	_Atomic bool stopping;
	_Atomic uint64_t transactions, row_evictions, table_evictions;
	_Atomic uint64_t flushes, reconnects, slot_seq;
};

#define RELAXED memory_order_relaxed

/* Sleep up to ms, or less when the set is stopping.  True if stopping. */
static bool
pause_ms(struct stream_set *ss, int ms)
{
	struct pollfd p = { .fd = ss->stop_fd, .events = POLLIN };

	if (atomic_load(&ss->stopping))
		return true;
	(void)poll(&p, 1, ms);
	return atomic_load(&ss->stopping);
}

/* ---- connecting ---------------------------------------------------------- */

static PGconn *
connect_db(const struct stream_config *cfg, const char *db, bool replication)
{
	const struct pgconn_opts o = {
		.dbname = db,
		.application_name = "pgvalet-stream",
		.connect_timeout_s = 5,
		.replication = replication,
	};

	return pgconn_open(&cfg->upstream, &o);
}

/* A one-line error text from libpq (its messages end with newlines). */
static const char *
pq_error(PGconn *conn, char *buf, size_t len)
{
	size_t n;

	snprintf(buf, len, "%s", PQerrorMessage(conn));
	n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = 0;
	for (char *p = buf; *p; p++)
		if (*p == '\n')
			*p = ' ';
	return buf;
}

/* Run one command; true when it gave 'want'.  Logs why not. */
static bool
exec_ok(struct stream_db *d, const char *sql, ExecStatusType want,
	PGresult **out)
{
	PGresult *res = PQexec(d->conn, sql);
	char e[512];

	if (PQresultStatus(res) != want) {
		if (d->failing)	/* said once per failure streak */
			log_debug("stream %s: %s: %s", d->name, sql,
				  pq_error(d->conn, e, sizeof(e)));
		else
			log_warn("stream %s: %s: %s", d->name, sql,
				 pq_error(d->conn, e, sizeof(e)));
		PQclear(res);
		return false;
	}
	if (out)
		*out = res;
	else
		PQclear(res);
	return true;
}

/*
 * DDL is not in the WAL stream: a view, policy or grant changed outside
 * the proxy would leave results computed under the old definition.  An
 * event trigger (superuser only) puts a transactional logical message in
 * the WAL at the end of every DDL command; its commit flushes the
 * database and the catalog's facts.
 */
static const char DDL_TRIGGER_SQL[] =
	"CREATE SCHEMA IF NOT EXISTS _pgvalet;"
	"COMMENT ON SCHEMA _pgvalet IS 'managed by pgvalet';"
	"CREATE OR REPLACE FUNCTION _pgvalet.ddl_seen() RETURNS event_trigger"
	" LANGUAGE plpgsql AS $f$ BEGIN"
	/* temp objects only (CREATE TEMP TABLE...): nothing cached changed */
	"  IF tg_tag LIKE 'DROP%' OR EXISTS (SELECT 1"
	"   FROM pg_event_trigger_ddl_commands() c WHERE c.schema_name IS NULL"
	"   OR c.schema_name NOT LIKE 'pg\\_temp%') THEN"
	"   PERFORM pg_logical_emit_message(true, 'pgvalet_ddl', tg_tag);"
	"  END IF;"
	" END $f$";

static void
ensure_ddl_trigger(struct stream_db *d)
{
	PGresult *res;
	bool have, super;

	d->ddl_seen = false;
	res = PQexec(d->conn, "SELECT EXISTS (SELECT 1 FROM pg_event_trigger"
			      " WHERE evtname = 'pgvalet_ddl'),"
			      " (SELECT rolsuper FROM pg_roles"
			      "  WHERE rolname = current_user)");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		PQclear(res);
		return;
	}
	have = PQgetvalue(res, 0, 0)[0] == 't';
	super = PQgetvalue(res, 0, 1)[0] == 't';
	PQclear(res);
	if (super) {	/* this version's function, then the trigger */
		PQclear(PQexec(d->conn, DDL_TRIGGER_SQL));
		if (!have) {
			res = PQexec(d->conn, "CREATE EVENT TRIGGER pgvalet_ddl"
					      " ON ddl_command_end EXECUTE"
					      " FUNCTION _pgvalet.ddl_seen()");
			have = PQresultStatus(res) == PGRES_COMMAND_OK;
			PQclear(res);
		}
		if (!have) {	/* another proxy may have made it meanwhile */
			res = PQexec(d->conn, "SELECT 1 FROM pg_event_trigger"
					      " WHERE evtname = 'pgvalet_ddl'");
			have = PQntuples(res) == 1;
			PQclear(res);
		}
	}
	d->ddl_seen = have;
	if (!have && !d->ddl_warned)
		log_warn("stream %s: DDL made outside pgvalet (views, policies,"
			 " grants) is not seen: creating its event trigger needs"
			 " a superuser (run pgvalet once as one, or DDL through"
			 " pgvalet)", d->name);
	d->ddl_warned = true;
}

/*
 * The publication: use it as it is, or create it (empty, marked as
 * pgvalet's) when missing.  Tables are added by the catalog.
 */
static bool
ensure_publication(struct stream_db *d)
{
	const char *pub = d->ss->cfg.publication;
	char sql[512], *lit = PQescapeLiteral(d->conn, pub, strlen(pub));
	PGresult *res;
	bool have, ours;

	if (!lit)
		return false;
	snprintf(sql, sizeof(sql),
		 "SELECT coalesce(obj_description(oid, 'pg_publication'), '')"
		 " = 'managed by pgvalet' FROM pg_publication"
		 " WHERE pubname = %s", lit);
	PQfreemem(lit);
	if (!exec_ok(d, sql, PGRES_TUPLES_OK, &res))
		return false;
	have = PQntuples(res) == 1;
	ours = have && PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	if (!have) {
		snprintf(sql, sizeof(sql),
			 "CREATE PUBLICATION \"%s\"; COMMENT ON PUBLICATION"
			 " \"%s\" IS 'managed by pgvalet'", pub, pub);
		if (!exec_ok(d, sql, PGRES_COMMAND_OK, NULL))
			return false;
		log_info("stream %s: created publication %s", d->name, pub);
		ours = true;
	}
	catalog_manage_coverage(d->ss->cfg.cat, d->name, ours);
	ensure_ddl_trigger(d);
	return true;
}

/* The slot: a new temporary one, or the named one (created if missing). */
static bool
ensure_slot(struct stream_db *d)
{
	const struct stream_config *cfg = &d->ss->cfg;
	char sql[512];
	PGresult *res;
	bool have;

	if (!cfg->slot[0]) {
		snprintf(d->slot, sizeof(d->slot), "pgvalet_%d_%" PRIu64,
			 (int)getpid(),
			 atomic_fetch_add(&d->ss->slot_seq, 1));
		snprintf(sql, sizeof(sql),
			 "CREATE_REPLICATION_SLOT \"%s\" TEMPORARY LOGICAL"
			 " pgoutput NOEXPORT_SNAPSHOT", d->slot);
		return exec_ok(d, sql, PGRES_TUPLES_OK, NULL);
	}
	/* one permanent slot per database: the URL's gets the name as is */
	if (strcmp(d->name, cfg->upstream.dbname) == 0)
		snprintf(d->slot, sizeof(d->slot), "%s", cfg->slot);
	else
		snprintf(d->slot, sizeof(d->slot), "%.46s_%016" PRIx64,
			 cfg->slot, XXH3_64bits(d->name, strlen(d->name)));
	snprintf(sql, sizeof(sql),
		 "SELECT 1 FROM pg_replication_slots WHERE slot_name = '%s'",
		 d->slot);
	if (!exec_ok(d, sql, PGRES_TUPLES_OK, &res))
		return false;
	have = PQntuples(res) == 1;
	PQclear(res);
	if (have)
		return true;
	snprintf(sql, sizeof(sql),
		 "CREATE_REPLICATION_SLOT \"%s\" LOGICAL pgoutput"
		 " NOEXPORT_SNAPSHOT", d->slot);
	if (!exec_ok(d, sql, PGRES_TUPLES_OK, NULL))
		return false;
	log_info("stream %s: created replication slot %s", d->name, d->slot);
	return true;
}

static bool
start_streaming(struct stream_db *d)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
		 "START_REPLICATION SLOT \"%s\" LOGICAL 0/0 (proto_version"
		 " '1', publication_names '\"%s\"'%s)", d->slot,
		 d->ss->cfg.publication,
		 d->ddl_seen ? ", messages 'true'" : "");
	return exec_ok(d, sql, PGRES_COPY_BOTH, NULL);
}

/* ---- applying changes ---------------------------------------------------- */

static void
flush_db(struct stream_db *d, const char *reason)
{
	uint64_t tag = cache_tag_db(d->name);

	if (d->ss->cfg.tier)	/* the shared tier first (cache/tier.h) */
		(void)cache_tier_invalidate(d->ss->cfg.tier, tag, &tag, 1);
	cache_tag_bump(d->ss->cfg.cache, &tag, 1);
	atomic_fetch_add_explicit(&d->ss->flushes, 1, RELAXED);
	if (d->ss->cfg.push)
		push_flush(d->ss->cfg.push, d->name, reason);
}

static struct rel *
rel_find(struct stream_db *d, uint32_t relid)
{
	struct rel *r;

	for (r = d->rels[relid % REL_BUCKETS]; r; r = r->next)
		if (r->relid == relid)
			return r;
	return NULL;
}

static void
rels_free(struct stream_db *d)
{
	struct rel *r, *next;
	size_t i;

	for (i = 0; i < REL_BUCKETS; i++) {
		for (r = d->rels[i]; r; r = next) {
			next = r->next;
			free(r);
		}
		d->rels[i] = NULL;
	}
}

static uint64_t
columns_shape(const struct pgo_msg *m)
{
	uint64_t h = m->ncols;
	uint16_t i;

	for (i = 0; i < m->ncols; i++)
		h = XXH3_64bits_withSeed(m->columns[i].name,
					 strlen(m->columns[i].name),
					 h ^ m->columns[i].type_oid);
	return h;
}

/*
 * A Relation message: remember its name and the index of the column rows
 * are tagged by (the catalog's key column, when the stream sends it as
 * part of the key).  Columns that changed since the last one: the table's
 * results are dropped and the catalog's facts refetched.
 */
static void
on_relation(struct stream_db *d, const struct pgo_msg *m)
{
	struct rel *r = rel_find(d, m->relid);
	uint64_t shape = columns_shape(m);
	struct cat_rel facts;
	uint16_t i;

	if (!r) {
		if (!(r = calloc(1, sizeof(*r)))) {
			d->txn_flood = true;
			return;
		}
		r->relid = m->relid;
		r->next = d->rels[m->relid % REL_BUCKETS];
		d->rels[m->relid % REL_BUCKETS] = r;
	} else if (r->shape != shape) {
		/* the table's columns changed behind the proxy's back */
		catalog_forget(d->ss->cfg.cat, d->name);
		d->txn_flood = true;
	}
	r->shape = shape;
	snprintf(r->nsp, sizeof(r->nsp), "%s", m->nspname);
	snprintf(r->name, sizeof(r->name), "%s", m->relname);
	r->table = cache_tag_table(d->name, m->relname);
	r->key = -1;
	r->known = catalog_rel_wait(d->ss->cfg.cat, d->name, m->relname,
				    &facts, CATALOG_WAIT_MS) == CAT_KNOWN;
	if (!r->known) {
		r->n_up = 0;
		return;
	}
	r->n_up = facts.n_up;
	memcpy(r->up, facts.up_tags, sizeof(r->up));
	for (i = 0; i < m->ncols && facts.key_col[0]; i++)
		if ((m->columns[i].flags & 1) &&
		    strcmp(m->columns[i].name, facts.key_col) == 0)
			r->key = i;
}

static struct txn_rel *
txn_rel_for(struct stream_db *d, struct rel *r)
{
	size_t i;

	for (i = 0; i < d->ntxn; i++)
		if (d->txn[i].rel == r)
			return &d->txn[i];
	if (d->ntxn == TXN_MAX_RELS)
		return NULL;
	d->txn[d->ntxn].rel = r;
	d->txn[d->ntxn].whole = false;
	d->txn[d->ntxn].nrows = 0;
	return &d->txn[d->ntxn++];
}

/* The key of one tuple: true and *v, or false when it is not there. */
static bool
tuple_key(const struct rel *r, const struct pgo_tuple *t, int64_t *v)
{
	if (r->key < 0 || r->key >= t->n)
		return false;
	return pgo_value_int64(&t->cols[r->key], v) == 0;
}

static void
add_row(struct txn_rel *tr, int64_t v)
{
	size_t i;

	for (i = 0; i < tr->nrows; i++)
		if (tr->rows[i] == v)
			return;
	if (tr->nrows == TXN_MAX_ROWS)
		tr->whole = true;
	else
		tr->rows[tr->nrows++] = v;
}

static void
on_change(struct stream_db *d, const struct pgo_msg *m)
{
	struct rel *r = rel_find(d, m->relid);
	struct txn_rel *tr;
	int64_t v;

	if (!r || !r->known || r->n_up == CAT_MAX_TAGS ||
	    !(tr = txn_rel_for(d, r))) {
		d->txn_flood = true;
		return;
	}
	if (tr->whole)
		return;
	if (m->kind != 'D') {	/* the new row */
		if (!tuple_key(r, &m->newtup, &v)) {
			tr->whole = true;
			return;
		}
		add_row(tr, v);
	}
	if (m->old_kind) {	/* the old row, when its key may differ */
		if (!tuple_key(r, &m->oldtup, &v)) {
			tr->whole = true;
			return;
		}
		add_row(tr, v);
	} else if (m->kind == 'D') {
		tr->whole = true;
	}
}

static void
on_truncate(struct stream_db *d, const struct pgo_msg *m)
{
	struct txn_rel *tr;
	struct rel *r;
	uint32_t i;

	for (i = 0; i < m->ntrunc; i++) {
		r = rel_find(d, pgo_trunc_relid(m, i));
		if (!r || !r->known || !(tr = txn_rel_for(d, r))) {
			d->txn_flood = true;
			return;
		}
		tr->whole = true;
	}
}

/* Bump one relation's tags for the transaction, and tell the L1s. */
static void
apply_rel(struct stream_db *d, const struct txn_rel *tr, uint64_t *tags)
{
	const struct rel *r = tr->rel;
	size_t n = 0, i;

	tags[n++] = r->table;
	if (tr->whole)
		tags[n++] = cache_tag_rows(r->table);
	else
		for (i = 0; i < tr->nrows; i++)
			tags[n++] = cache_tag_row(r->table, tr->rows[i]);
	for (i = 0; i < r->n_up; i++) {
		tags[n++] = r->up[i];
		tags[n++] = cache_tag_rows(r->up[i]);
	}
	if (d->ss->cfg.tier)	/* the shared tier first (cache/tier.h) */
		(void)cache_tier_invalidate(d->ss->cfg.tier,
					    cache_tag_db(d->name), tags, n);
	cache_tag_bump(d->ss->cfg.cache, tags, n);
	atomic_fetch_add_explicit(&d->ss->table_evictions, 1 + r->n_up,
				  RELAXED);
	if (!tr->whole)
		atomic_fetch_add_explicit(&d->ss->row_evictions, tr->nrows,
					  RELAXED);
	if (d->ss->cfg.push)
		push_rows(d->ss->cfg.push, d->name, r->relid, r->nsp, r->name,
			  tags, n, tr->whole ? NULL : tr->rows,
			  tr->whole ? 0 : tr->nrows, "wal");
}

static void
on_commit(struct stream_db *d, const struct pgo_msg *m)
{
	uint64_t tags[2 + TXN_MAX_ROWS + 2 * CAT_MAX_TAGS];
	int64_t lag;
	size_t i;

	if (d->txn_ddl) {	/* definitions changed: nothing is known */
		catalog_forget(d->ss->cfg.cat, d->name);
		flush_db(d, "DDL");
	} else if (d->txn_flood)
		flush_db(d, "a change the stream could not place");
	else
		for (i = 0; i < d->ntxn; i++)
			apply_rel(d, &d->txn[i], tags);
	d->in_txn = d->txn_flood = d->txn_ddl = false;
	d->ntxn = 0;
	atomic_store(&d->applied, m->end_lsn);
	atomic_fetch_add_explicit(&d->ss->transactions, 1, RELAXED);
	lag = (clock_unix_us() - repl_unix_time(m->commit_time)) / 1000;
	atomic_store_explicit(&d->lag_ms, lag > 0 ? (uint64_t)lag : 0,
			      RELAXED);
}

/* One pgoutput message; -1 when it cannot be decoded. */
static int
on_message(struct stream_db *d, const uint8_t *data, size_t len)
{
	struct pgo_msg *m = d->msg;

	if (pgo_parse(data, len, m))
		return -1;
	switch (m->kind) {
	case 'B':
		d->in_txn = true;
		d->txn_flood = d->txn_ddl = false;
		d->ntxn = 0;
		break;
	case 'M':	/* pgvalet's DDL event trigger */
		if (m->msg_transactional && m->msg_prefix &&
		    strcmp(m->msg_prefix, "pgvalet_ddl") == 0)
			d->txn_ddl = true;
		break;
	case 'C':
		on_commit(d, m);
		break;
	case 'R':
		on_relation(d, m);
		break;
	case 'I':
	case 'U':
	case 'D':
		on_change(d, m);
		break;
	case 'T':
		on_truncate(d, m);
		break;
	default:	/* origin, type, logical message: nothing to evict */
		break;
	}
	return 0;
}

/* ---- NOTIFY mode ----------------------------------------------------------- */

/*
 * NOTIFY mode: the trigger function the catalog's triggers call.  It
 * reports the table and the keys of the rows a statement changed (or "*":
 * the whole table) in one notification, sent by Postgres at commit.
 */
static const char NOTIFY_FUNCTION_SQL[] =
	"CREATE SCHEMA IF NOT EXISTS _pgvalet;"
	"COMMENT ON SCHEMA _pgvalet IS 'managed by pgvalet';"
	"CREATE OR REPLACE FUNCTION _pgvalet.notify_change() RETURNS trigger"
	" LANGUAGE plpgsql AS $f$"
	" DECLARE keys text; n bigint := 1;"
	" BEGIN"
	"  IF TG_OP = 'TRUNCATE' OR TG_NARGS = 0 THEN"
	"   keys := '*';"
	"  ELSIF TG_OP = 'INSERT' THEN"
	"   EXECUTE format('SELECT count(*), string_agg(DISTINCT %1$I::text,"
	"    '','') FROM pgvalet_new', TG_ARGV[0]) INTO n, keys;"
	"  ELSIF TG_OP = 'DELETE' THEN"
	"   EXECUTE format('SELECT count(*), string_agg(DISTINCT %1$I::text,"
	"    '','') FROM pgvalet_old', TG_ARGV[0]) INTO n, keys;"
	"  ELSE"
	"   EXECUTE format('SELECT count(*), string_agg(DISTINCT k::text, '','')"
	"    FROM (SELECT %1$I AS k FROM pgvalet_old UNION ALL"
	"    SELECT %1$I FROM pgvalet_new) s', TG_ARGV[0]) INTO n, keys;"
	"  END IF;"
	"  IF n = 0 THEN RETURN NULL; END IF;"
	"  IF keys IS NULL OR n > 300 THEN keys := '*'; END IF;"
	"  PERFORM pg_notify('pgvalet_invalidate',"
	"   octet_length(TG_TABLE_SCHEMA) || ':' || TG_TABLE_SCHEMA ||"
	"   octet_length(TG_TABLE_NAME) || ':' || TG_TABLE_NAME || '|' ||"
	"   keys);"
	"  RETURN NULL;"
	" END $f$";

static bool
ensure_notify(struct stream_db *d)
{
	if (!exec_ok(d, NOTIFY_FUNCTION_SQL, PGRES_COMMAND_OK, NULL) ||
	    !exec_ok(d, "LISTEN pgvalet_invalidate", PGRES_COMMAND_OK, NULL))
		return false;
	catalog_manage_coverage(d->ss->cfg.cat, d->name, true);
	return true;
}

/* One notification (events.h: notify_parse). */
static void
on_notify(struct stream_db *d, const char *payload)
{
	struct notify_change *n = d->notice;
	struct txn_rel tr = { 0 };
	struct rel r = { .key = -1 };
	struct cat_rel facts;
	uint64_t tags[2 + TXN_MAX_ROWS + 2 * CAT_MAX_TAGS];
	size_t i;

	if (notify_parse(payload, strlen(payload), n)) {
		flush_db(d, "a notification pgvalet could not read");
		return;
	}
	snprintf(r.nsp, sizeof(r.nsp), "%s", n->schema);
	snprintf(r.name, sizeof(r.name), "%s", n->table);
	r.table = cache_tag_table(d->name, r.name);
	if (catalog_rel_wait(d->ss->cfg.cat, d->name, r.name, &facts,
			     CATALOG_WAIT_MS) != CAT_KNOWN ||
	    facts.n_up == CAT_MAX_TAGS) {
		flush_db(d, "a change to a relation the catalog does not know");
		return;
	}
	r.n_up = facts.n_up;
	memcpy(r.up, facts.up_tags, sizeof(r.up));
	tr.rel = &r;
	tr.whole = n->whole;
	for (i = 0; i < n->nrows; i++)
		add_row(&tr, n->rows[i]);
	apply_rel(d, &tr, tags);
	atomic_fetch_add_explicit(&d->ss->transactions, 1, RELAXED);
}

/* NOTIFY mode: receive until the connection breaks or the set stops. */
static void
notify_loop(struct stream_db *d)
{
	struct pollfd p[2];
	PGnotify *n;
	char e[512];

	for (;;) {
		if (atomic_load(&d->ss->stopping))
			return;
		while ((n = PQnotifies(d->conn))) {
			on_notify(d, n->extra);
			PQfreemem(n);
		}
		p[0] = (struct pollfd){ .fd = PQsocket(d->conn),
					.events = POLLIN };
		p[1] = (struct pollfd){ .fd = d->ss->stop_fd,
					.events = POLLIN };
		if (poll(p, 2, 1000) < 0 && errno != EINTR)
			return;
		if (p[0].revents && !PQconsumeInput(d->conn)) {
			log_warn("stream %s: connection lost: %s", d->name,
				 pq_error(d->conn, e, sizeof(e)));
			return;
		}
		if (PQstatus(d->conn) != CONNECTION_OK)
			return;
	}
}

/* ---- the loop ------------------------------------------------------------ */

static bool
send_status(struct stream_db *d, bool reply)
{
	uint8_t buf[34];
	size_t n = repl_status_update(buf, atomic_load(&d->applied),
				      repl_pg_time(clock_unix_us()), reply);
	char e[256];

	if (PQputCopyData(d->conn, (const char *)buf, (int)n) != 1 ||
	    PQflush(d->conn) != 0) {
		log_warn("stream %s: cannot send status: %s", d->name,
			 pq_error(d->conn, e, sizeof(e)));
		return false;
	}
	d->next_status_ms = clock_mono_ms() + STATUS_EVERY_MS;
	return true;
}

/* One CopyData from the server; false when the stream must restart. */
static bool
on_copy(struct stream_db *d, const uint8_t *buf, size_t len)
{
	struct repl_copy c;

	if (repl_copy_parse(buf, len, &c)) {
		log_warn("stream %s: malformed replication message", d->name);
		return false;
	}
	if (c.wal_end > atomic_load(&d->server_end))
		atomic_store(&d->server_end, c.wal_end);
	if (c.kind == 'k') {
		/* idle and all delivered: confirm up to the server's end */
		if (!d->in_txn && c.wal_end > atomic_load(&d->applied))
			atomic_store(&d->applied, c.wal_end);
		return !c.reply_requested || send_status(d, false);
	}
	if (on_message(d, c.data, c.len)) {
		log_warn("stream %s: malformed pgoutput message at %" PRIX64,
			 d->name, c.wal_start);
		return false;
	}
	return true;
}

/* Receive until the stream breaks or the set stops. */
static void
stream_loop(struct stream_db *d)
{
	struct pollfd p[2];
	char *buf, e[512];
	int n, timeout;
	uint64_t now;

	for (;;) {
		if (atomic_load(&d->ss->stopping))
			return;
		n = PQgetCopyData(d->conn, &buf, 1);
		if (n > 0) {
			bool ok = on_copy(d, (const uint8_t *)buf, (size_t)n);

			PQfreemem(buf);
			if (!ok)
				return;
			continue;
		}
		if (n < 0) {
			log_warn("stream %s: replication stream ended: %s",
				 d->name, pq_error(d->conn, e, sizeof(e)));
			return;
		}
		now = clock_mono_ms();
		if (now >= d->next_status_ms && !send_status(d, false))
			return;
		timeout = (int)(d->next_status_ms - now);
		p[0] = (struct pollfd){ .fd = PQsocket(d->conn),
					.events = POLLIN };
		p[1] = (struct pollfd){ .fd = d->ss->stop_fd,
					.events = POLLIN };
		if (poll(p, 2, timeout) < 0 && errno != EINTR)
			return;
		if ((p[0].revents & (POLLIN | POLLERR | POLLHUP)) &&
		    !PQconsumeInput(d->conn)) {
			log_warn("stream %s: connection lost: %s", d->name,
				 pq_error(d->conn, e, sizeof(e)));
			return;
		}
	}
}

/*
 * A permanent slot the server invalidated (max_slot_wal_keep_size) can
 * never stream again: drop it, so the next attempt creates it anew (the
 * database is flushed when that stream comes up).
 */
static void
drop_lost_slot(struct stream_db *d)
{
	char sql[256];
	PGresult *res;
	bool lost;

	PQclear(PQgetResult(d->conn));
	snprintf(sql, sizeof(sql),
		 "SELECT 1 FROM pg_replication_slots WHERE slot_name = '%s'"
		 " AND wal_status = 'lost' AND NOT active", d->slot);
	if (!exec_ok(d, sql, PGRES_TUPLES_OK, &res))
		return;
	lost = PQntuples(res) == 1;
	PQclear(res);
	if (!lost)
		return;
	log_warn("stream %s: slot %s lost the WAL it needed; recreating it",
		 d->name, d->slot);
	snprintf(sql, sizeof(sql), "DROP_REPLICATION_SLOT \"%s\"", d->slot);
	(void)exec_ok(d, sql, PGRES_COMMAND_OK, NULL);
}

/* Connect, set up and start streaming; false (logged) on any failure. */
static bool
stream_open(struct stream_db *d)
{
	char e[512];

	d->conn = connect_db(&d->ss->cfg, d->name, !d->ss->cfg.notify);
	if (PQstatus(d->conn) != CONNECTION_OK) {
		if (d->failing)
			log_debug("stream %s: cannot connect: %s", d->name,
				  pq_error(d->conn, e, sizeof(e)));
		else
			log_warn("stream %s: cannot connect%s: %s", d->name,
				 d->ss->cfg.notify ? "" : " for replication",
				 pq_error(d->conn, e, sizeof(e)));
		return false;
	}
	if (d->ss->cfg.notify)
		return ensure_notify(d);
	if (!ensure_publication(d) || !ensure_slot(d))
		return false;
	if (start_streaming(d))
		return true;
	if (d->ss->cfg.slot[0])
		drop_lost_slot(d);
	return false;
}

static void
stream_close(struct stream_db *d)
{
	if (d->conn)
		PQfinish(d->conn);
	d->conn = NULL;
	rels_free(d);
	d->in_txn = d->txn_flood = false;
	d->ntxn = 0;
}

static void *
stream_thread(void *arg)
{
	struct stream_db *d = arg;
	int backoff = BACKOFF_MIN_MS;

	while (!atomic_load(&d->ss->stopping)) {
		if (!stream_open(d)) {
			if (!d->failing)
				log_warn("stream %s: retrying (backoff up to %d"
					 " ms); no cached answers for this "
					 "database until it is up", d->name,
					 BACKOFF_MAX_MS);
			d->failing = true;
			stream_close(d);
			if (pause_ms(d->ss, backoff))
				break;
			backoff = backoff * 2 > BACKOFF_MAX_MS
					  ? BACKOFF_MAX_MS : backoff * 2;
			continue;
		}
		d->failing = false;
		/* anything may have changed while nobody listened */
		flush_db(d, "replication stream up");
		d->next_status_ms = 0;
		atomic_store(&d->state, STREAM_UP);
		if (d->ss->cfg.push)
			push_stream_state(d->ss->cfg.push, d->name, true);
		if (d->ss->cfg.notify)
			log_info("stream %s: up (LISTEN pgvalet_invalidate)",
				 d->name);
		else
			log_info("stream %s: up (slot %s, publication %s)",
				 d->name, d->slot, d->ss->cfg.publication);
		backoff = BACKOFF_MIN_MS;
		if (d->ss->cfg.notify)
			notify_loop(d);
		else
			stream_loop(d);
		atomic_store(&d->state, STREAM_DOWN);
		flush_db(d, "replication stream down");
		if (d->ss->cfg.push)
			push_stream_state(d->ss->cfg.push, d->name, false);
		stream_close(d);
		if (atomic_load(&d->ss->stopping))
			break;
		atomic_fetch_add_explicit(&d->ss->reconnects, 1, RELAXED);
		log_warn("stream %s: down; its cached results are flushed and"
			 " bypassed until it is back", d->name);
		if (pause_ms(d->ss, BACKOFF_MIN_MS))
			break;
	}
	stream_close(d);
	return NULL;
}

/* ---- the set ------------------------------------------------------------- */

struct stream_set *
stream_set_new(const struct stream_config *cfg)
{
	struct stream_set *ss = calloc(1, sizeof(*ss));

	if (!ss)
		return NULL;
	ss->cfg = *cfg;
	ss->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ss->stop_fd < 0) {
		free(ss);
		return NULL;
	}
	pthread_mutex_init(&ss->lock, NULL);
	return ss;
}

void
stream_set_free(struct stream_set *ss)
{
	struct stream_db *d, *next;
	uint64_t one = 1;

	if (!ss)
		return;
	atomic_store(&ss->stopping, true);
	if (write(ss->stop_fd, &one, sizeof(one)) < 0)
		log_warn("stream: cannot wake the consumers: %s",
			 strerror(errno));
	for (d = ss->dbs; d; d = next) {
		next = d->next;
		pthread_join(d->thread, NULL);
		free(d->msg);
		free(d->notice);
		free(d->txn);
		free(d);
	}
	close(ss->stop_fd);
	pthread_mutex_destroy(&ss->lock);
	free(ss);
}

struct stream_db *
stream_db_get(struct stream_set *ss, const char *db)
{
	struct stream_db *d;

	pthread_mutex_lock(&ss->lock);
	for (d = ss->dbs; d; d = d->next)
		if (strcmp(d->name, db) == 0)
			goto out;
	d = calloc(1, sizeof(*d));
	if (!d)
		goto out;
	d->ss = ss;
	snprintf(d->name, sizeof(d->name), "%s", db);
	d->msg = malloc(sizeof(*d->msg));
	d->notice = malloc(sizeof(*d->notice));
	d->txn = malloc(TXN_MAX_RELS * sizeof(*d->txn));
	if (!d->msg || !d->notice || !d->txn ||
	    pthread_create(&d->thread, NULL, stream_thread, d)) {
		log_error("stream %s: cannot start its consumer", db);
		free(d->msg);
		free(d->notice);
		free(d->txn);
		free(d);
		d = NULL;
		goto out;
	}
	d->next = ss->dbs;
	ss->dbs = d;
out:
	pthread_mutex_unlock(&ss->lock);
	return d;
}

bool
stream_db_up(const struct stream_db *d)
{
	return atomic_load_explicit(&d->state, memory_order_acquire) ==
	       STREAM_UP;
}

void
stream_set_stats(struct stream_set *ss, struct stream_stats *out)
{
	struct stream_db *d;
	uint64_t end, applied, lag;

	memset(out, 0, sizeof(*out));
	out->transactions = atomic_load(&ss->transactions);
	out->row_evictions = atomic_load(&ss->row_evictions);
	out->table_evictions = atomic_load(&ss->table_evictions);
	out->flushes = atomic_load(&ss->flushes);
	out->reconnects = atomic_load(&ss->reconnects);
	pthread_mutex_lock(&ss->lock);
	for (d = ss->dbs; d; d = d->next) {
		out->databases++;
		if (stream_db_up(d))
			out->up++;
		end = atomic_load(&d->server_end);
		applied = atomic_load(&d->applied);
		if (end > applied && end - applied > out->lag_bytes)
			out->lag_bytes = end - applied;
		lag = atomic_load(&d->lag_ms);
		if (lag > out->lag_ms)
			out->lag_ms = lag;
	}
	pthread_mutex_unlock(&ss->lock);
}

/* ---- start-up check ------------------------------------------------------ */

int
stream_preflight(const struct stream_config *cfg, char *err, size_t errlen)
{
	PGconn *conn;
	PGresult *res;
	char e[512];
	int rc = 0;

	if (cfg->notify)
		return 0;	/* needs only CREATE: the consumer says so */
	conn = connect_db(cfg, cfg->upstream.dbname, false);
	if (PQstatus(conn) != CONNECTION_OK) {
		log_warn("stream: cannot check the upstream now (%s); the"
			 " cache stays off until the replication stream is up",
			 pq_error(conn, e, sizeof(e)));
		PQfinish(conn);
		return 0;
	}
	res = PQexec(conn, "SELECT current_setting('wal_level'),"
			   " (SELECT rolreplication OR rolsuper FROM pg_roles"
			   "  WHERE rolname = current_user), current_user");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_warn("stream: cannot check the upstream: %s",
			 pq_error(conn, e, sizeof(e)));
	} else if (strcmp(PQgetvalue(res, 0, 0), "logical") != 0) {
		snprintf(err, errlen,
			 "the upstream's wal_level is '%s': pgvalet cannot see"
			 " writes that bypass it. Set wal_level = logical in"
			 " postgresql.conf and restart Postgres, or run with"
			 " --invalidation notify (pgvalet installs NOTIFY"
			 " triggers on the tables it caches; `pgvalet clean`"
			 " removes them) or --invalidation ttl --cache-ttl 30s"
			 " (staleness of up to the TTL), or --cache-size 0",
			 PQgetvalue(res, 0, 0));
		rc = -1;
	} else if (PQgetvalue(res, 0, 1)[0] != 't') {
		snprintf(err, errlen,
			 "role \"%s\" may not read the replication stream:"
			 " run ALTER ROLE \"%s\" REPLICATION as a superuser,"
			 " or run with --invalidation ttl --cache-ttl 30s or"
			 " --cache-size 0",
			 PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 2));
		rc = -1;
	}
	PQclear(res);
	PQfinish(conn);
	return rc;
}
