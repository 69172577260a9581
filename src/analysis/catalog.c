/*
 * catalog.c - relation and function facts from the upstream's catalogs,
 * fetched by a background thread over libpq (see catalog.h).
 *
 * Items live in one chained hash under one mutex (lookups are a hash and
 * a copy; the network is only touched by the thread, without the lock).
 * An item is never freed before catalog_free(): forgetting a database
 * bumps its generation, and an item of an older generation reads as
 * unknown and is queued again.
 */
#include "analysis/catalog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <xxhash.h>

#include "cache/tags.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/pgconn.h"

enum {
	CAT_BUCKETS = 4096,
	CAT_MAX_ITEMS = 50000,	/* beyond: unknown forever (never cached) */
	CAT_RETRY_MS = 1000,	/* after a failed fetch */
	CAT_NAME = 64,
	CAT_DB = 128,
};

enum item_kind { ITEM_REL, ITEM_FUNC, ITEM_ROLE };
enum item_state { ITEM_QUEUED, ITEM_READY, ITEM_FAILED };

struct cat_item {
	struct cat_item *next;		/* hash chain */
	struct cat_item *qnext;		/* fetch queue */
	char db[CAT_DB];
	char name[CAT_NAME];
	uint8_t kind;			/* enum item_kind */
	uint8_t state;			/* enum item_state */
	bool queued;
	uint64_t gen;			/* database generation of the facts */
	uint64_t retry_at_ms;
	struct cat_rel rel;
	enum cat_func func;
	bool read_committed;		/* ITEM_ROLE */
};

/* One database: its generation and the thread's connection to it. */
struct cat_db {
	struct cat_db *next;
	char name[CAT_DB];
	uint64_t gen;			/* under the lock */
	PGconn *conn;			/* the thread's only */
	uint64_t failed_until_ms;	/* the thread's only */
	_Atomic bool manage;		/* add tables to the publication */
};

struct catalog {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_cond_t fetched;		/* broadcast after every fetch */
	struct cat_item *buckets[CAT_BUCKETS];
	size_t nitems;
	struct cat_item *qhead, *qtail;
	struct cat_db *dbs;
	struct pg_url url;
	enum cat_cover cover;
	char publication[CAT_NAME];
	pthread_t thread;
	bool started, stopping;
};

struct catalog *
catalog_new(const struct pg_url *upstream)
{
	struct catalog *cat = calloc(1, sizeof(*cat));

	if (!cat)
		return NULL;
	pthread_mutex_init(&cat->lock, NULL);
	pthread_cond_init(&cat->wake, NULL);
	pthread_cond_init(&cat->fetched, NULL);
	cat->url = *upstream;
	return cat;
}

/* Under the lock. */
static struct cat_db *
find_db(struct catalog *cat, const char *db, bool create)
{
	struct cat_db *d;

	for (d = cat->dbs; d; d = d->next)
		if (strcmp(d->name, db) == 0)
			return d;
	if (!create || !(d = calloc(1, sizeof(*d))))
		return NULL;
	snprintf(d->name, sizeof(d->name), "%s", db);
	d->next = cat->dbs;
	cat->dbs = d;
	return d;
}

void
catalog_set_coverage(struct catalog *cat, enum cat_cover how, const char *pub)
{
	cat->cover = how;
	snprintf(cat->publication, sizeof(cat->publication), "%s",
		 pub ? pub : "");
}

void
catalog_manage_coverage(struct catalog *cat, const char *db, bool manage)
{
	struct cat_db *d;

	pthread_mutex_lock(&cat->lock);
	d = find_db(cat, db, true);
	if (d && atomic_load(&d->manage) != manage) {
		atomic_store(&d->manage, manage);
		d->gen++;
	}
	pthread_mutex_unlock(&cat->lock);
}

static size_t
bucket_of(const char *db, const char *name, enum item_kind kind)
{
	uint64_t h = XXH3_64bits_withSeed(name, strlen(name), kind) ^
		     XXH3_64bits(db, strlen(db));

	return (size_t)(h & (CAT_BUCKETS - 1));
}

static void
enqueue(struct catalog *cat, struct cat_item *it, uint64_t gen)
{
	it->state = ITEM_QUEUED;
	it->gen = gen;
	if (it->queued)
		return;
	it->queued = true;
	it->qnext = NULL;
	if (cat->qtail)
		cat->qtail->qnext = it;
	else
		cat->qhead = it;
	cat->qtail = it;
	pthread_cond_signal(&cat->wake);
}

/*
 * The item for (db, name, kind) if its facts are current; otherwise
 * queue a fetch and return NULL.  Under the lock.
 */
static struct cat_item *
lookup(struct catalog *cat, const char *db, const char *name,
       enum item_kind kind)
{
	size_t b = bucket_of(db, name, kind);
	struct cat_item *it;
	struct cat_db *d;

	if (strlen(db) >= CAT_DB || strlen(name) >= CAT_NAME)
		return NULL;
	d = find_db(cat, db, true);
	if (!d)
		return NULL;
	for (it = cat->buckets[b]; it; it = it->next)
		if (it->kind == kind && strcmp(it->name, name) == 0 &&
		    strcmp(it->db, db) == 0)
			break;
	if (!it) {
		if (cat->nitems >= CAT_MAX_ITEMS ||
		    !(it = calloc(1, sizeof(*it))))
			return NULL;
		snprintf(it->db, sizeof(it->db), "%s", db);
		snprintf(it->name, sizeof(it->name), "%s", name);
		it->kind = (uint8_t)kind;
		it->next = cat->buckets[b];
		cat->buckets[b] = it;
		cat->nitems++;
		enqueue(cat, it, d->gen);
		return NULL;
	}
	if (it->state == ITEM_READY && it->gen == d->gen)
		return it;
	if (it->state == ITEM_FAILED && clock_mono_ms() >= it->retry_at_ms)
		enqueue(cat, it, d->gen);
	else if (it->state == ITEM_READY)	/* an older generation */
		enqueue(cat, it, d->gen);
	return NULL;
}

enum cat_status
catalog_rel(struct catalog *cat, const char *db, const char *name,
	    struct cat_rel *out)
{
	struct cat_item *it;

	pthread_mutex_lock(&cat->lock);
	it = lookup(cat, db, name, ITEM_REL);
	if (it)
		*out = it->rel;
	pthread_mutex_unlock(&cat->lock);
	return it ? CAT_KNOWN : CAT_UNKNOWN;
}

enum cat_status
catalog_rel_wait(struct catalog *cat, const char *db, const char *name,
		 struct cat_rel *out, int timeout_ms)
{
	struct cat_item *it;
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&cat->lock);
	while (!(it = lookup(cat, db, name, ITEM_REL)) && !cat->stopping &&
	       pthread_cond_timedwait(&cat->fetched, &cat->lock,
				      &deadline) == 0)
		;
	if (it)
		*out = it->rel;
	pthread_mutex_unlock(&cat->lock);
	return it ? CAT_KNOWN : CAT_UNKNOWN;
}

enum cat_status
catalog_func(struct catalog *cat, const char *db, const char *name,
	     enum cat_func *out)
{
	struct cat_item *it;

	pthread_mutex_lock(&cat->lock);
	it = lookup(cat, db, name, ITEM_FUNC);
	if (it)
		*out = it->func;
	pthread_mutex_unlock(&cat->lock);
	return it ? CAT_KNOWN : CAT_UNKNOWN;
}

enum cat_status
catalog_read_committed(struct catalog *cat, const char *db, const char *user,
		       bool *out)
{
	struct cat_item *it;

	pthread_mutex_lock(&cat->lock);
	it = lookup(cat, db, user, ITEM_ROLE);
	if (it)
		*out = it->read_committed;
	pthread_mutex_unlock(&cat->lock);
	return it ? CAT_KNOWN : CAT_UNKNOWN;
}

void
catalog_forget(struct catalog *cat, const char *db)
{
	struct cat_db *d;

	pthread_mutex_lock(&cat->lock);
	d = find_db(cat, db, true);
	if (d)
		d->gen++;
	pthread_mutex_unlock(&cat->lock);
}

/* ---- the fetching thread ------------------------------------------------ */

/*
 * Everything a read of the name depends on: the relations themselves,
 * and through view rules and row-security policies what those read.
 * 'calls' marks a rule or policy that calls a function whose answer
 * can change without a write to a relation we tag.
 */
static const char REL_READ_SQL[] =
	"WITH RECURSIVE edges(src, dst) AS ("
	" SELECT r.ev_class, d.refobjid FROM pg_rewrite r"
	"  JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass"
	"   AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass"
	"   AND d.refobjid <> r.ev_class"
	" UNION ALL"
	" SELECT p.polrelid, d.refobjid FROM pg_policy p"
	"  JOIN pg_depend d ON d.classid = 'pg_policy'::regclass"
	"   AND d.objid = p.oid AND d.refclassid = 'pg_class'::regclass"
	"   AND d.refobjid <> p.polrelid),"
	" deps(oid) AS ("
	" SELECT oid FROM pg_class WHERE relname = $1"
	"  AND relkind IN ('r','p','v','m','f','S')"
	" UNION SELECT e.dst FROM deps JOIN edges e ON e.src = deps.oid)"
	" SELECT c.relname, c.relkind, c.relpersistence,"
	"  EXISTS (SELECT 1 FROM pg_depend d JOIN pg_proc f"
	"   ON f.oid = d.refobjid AND d.refclassid = 'pg_proc'::regclass"
	"   WHERE ((d.classid = 'pg_rewrite'::regclass AND d.objid IN"
	"     (SELECT oid FROM pg_rewrite WHERE ev_class = c.oid))"
	"    OR (d.classid = 'pg_policy'::regclass AND d.objid IN"
	"     (SELECT oid FROM pg_policy WHERE polrelid = c.oid)))"
	"   AND (f.provolatile = 'v' OR (f.provolatile = 's'"
	"    AND f.pronamespace <> 'pg_catalog'::regnamespace))) AS calls,"
	"  c.oid"
	" FROM deps JOIN pg_class c ON c.oid = deps.oid";

/*
 * Does publication $2 carry every change to relation $1 (all its leaf
 * partitions), and does every leaf have a replica identity (adding one
 * without would make UPDATE and DELETE on it fail)?
 */
static const char COVER_SQL[] =
	"WITH leaves(relid) AS ("
	" SELECT relid FROM pg_partition_tree($1::oid) WHERE isleaf"
	" UNION SELECT $1::oid WHERE (SELECT relkind FROM pg_class"
	"  WHERE oid = $1::oid) <> 'p'),"
	" l AS (SELECT c.oid, c.relname, n.nspname, c.relreplident"
	"  FROM leaves JOIN pg_class c ON c.oid = leaves.relid"
	"  JOIN pg_namespace n ON n.oid = c.relnamespace)"
	" SELECT n.nspname, c.relname,"
	"  NOT EXISTS (SELECT 1 FROM l WHERE NOT EXISTS (SELECT 1"
	"   FROM pg_publication_tables pt WHERE pt.pubname = $2"
	"   AND pt.schemaname = l.nspname AND pt.tablename = l.relname)),"
	"  NOT EXISTS (SELECT 1 FROM l WHERE NOT (l.relreplident IN ('f','i')"
	"   OR (l.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_index i"
	"    WHERE i.indrelid = l.oid AND i.indisprimary))))"
	" FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
	" WHERE c.oid = $1::oid";

/*
 * Relation $1's qualified name, whether it has all four pgvalet NOTIFY
 * triggers, and the column its rows are keyed by (as KEY_SQL).
 */
static const char TRIGGERS_SQL[] =
	"SELECT format('%I.%I', n.nspname, c.relname),"
	" (SELECT count(*) = 4 FROM pg_trigger t WHERE t.tgrelid = c.oid"
	"  AND t.tgname IN ('pgvalet_ins', 'pgvalet_upd', 'pgvalet_del',"
	"   'pgvalet_trunc')),"
	" (SELECT a.attname FROM pg_index i"
	"  JOIN pg_attribute a ON a.attrelid = i.indrelid"
	"   AND a.attnum = i.indkey[0]"
	"  WHERE i.indrelid = c.oid AND i.indisunique AND i.indnkeyatts = 1"
	"   AND i.indpred IS NULL AND i.indexprs IS NULL"
	"   AND a.atttypid IN ('int2'::regtype, 'int4'::regtype,"
	"    'int8'::regtype)"
	"  ORDER BY i.indisprimary DESC, i.indexrelid LIMIT 1)"
	" FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
	" WHERE c.oid = $1::oid";

/* Inheritance and partition ancestors of every relation of the name. */
static const char UP_SQL[] =
	"WITH RECURSIVE up(oid) AS ("
	" SELECT i.inhparent FROM pg_inherits i JOIN pg_class c"
	"  ON c.oid = i.inhrelid WHERE c.relname = $1"
	" UNION SELECT i.inhparent FROM pg_inherits i"
	"  JOIN up ON i.inhrelid = up.oid)"
	" SELECT c.relname FROM up JOIN pg_class c ON c.oid = up.oid";

/*
 * Everything a write to the name may change: the whole inheritance or
 * partition tree, tables reached by cascading foreign keys, the tables
 * under an updatable view; 'floods' marks user triggers and rules,
 * whose effects are unbounded.
 */
static const char REL_WRITE_SQL[] =
	"WITH RECURSIVE edges(src, dst) AS ("
	" SELECT inhrelid, inhparent FROM pg_inherits"
	" UNION ALL SELECT inhparent, inhrelid FROM pg_inherits"
	" UNION ALL SELECT confrelid, conrelid FROM pg_constraint"
	"  WHERE contype = 'f' AND (confdeltype IN ('c','n','d')"
	"   OR confupdtype IN ('c','n','d'))"
	" UNION ALL SELECT r.ev_class, d.refobjid FROM pg_rewrite r"
	"  JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass"
	"   AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass"
	"   AND d.refobjid <> r.ev_class),"
	" w(oid) AS ("
	" SELECT oid FROM pg_class WHERE relname = $1"
	"  AND relkind IN ('r','p','v','m','f')"
	" UNION SELECT e.dst FROM w JOIN edges e ON e.src = w.oid)"
	" SELECT c.relname,"
	"  EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid"
	"   AND NOT t.tgisinternal AND t.tgname NOT LIKE 'pgvalet\\_%')"
	"  OR (c.relkind <> 'v' AND c.relhasrules) AS floods"
	" FROM w JOIN pg_class c ON c.oid = w.oid";

/*
 * The column rows are tagged by: a single-column unique integer key of
 * every table of that name (the primary key first), if they all agree.
 */
static const char KEY_SQL[] =
	"SELECT c.oid, a.attname FROM pg_class c"
	" LEFT JOIN LATERAL (SELECT a.attname FROM pg_index i"
	"  JOIN pg_attribute a ON a.attrelid = i.indrelid"
	"   AND a.attnum = i.indkey[0]"
	"  WHERE i.indrelid = c.oid AND i.indisunique AND i.indnkeyatts = 1"
	"   AND i.indpred IS NULL AND i.indexprs IS NULL"
	"   AND a.atttypid IN ('int2'::regtype, 'int4'::regtype,"
	"    'int8'::regtype)"
	"  ORDER BY i.indisprimary DESC, i.indexrelid LIMIT 1) a ON true"
	" WHERE c.relname = $1 AND c.relkind IN ('r','p')";

static const char FUNC_SQL[] =
	"SELECT count(*),"
	" coalesce(bool_or(provolatile = 'v'), false),"
	" coalesce(bool_or(provolatile = 's'), false),"
	" coalesce(bool_or(provolatile = 'v'"
	"  AND pronamespace <> 'pg_catalog'::regnamespace), false),"
	" coalesce(bool_or(provolatile <> 'i'"
	"  AND pronamespace <> 'pg_catalog'::regnamespace), false)"
	" FROM pg_proc WHERE proname = $1";

/*
 * The isolation a plain BEGIN gets: the server's default (as this
 * connection sees it, which includes its own role's) and any database
 * or role setting for the client's role.
 */
static const char ROLE_SQL[] =
	"SELECT current_setting('default_transaction_isolation') ="
	"  'read committed' AND NOT EXISTS (SELECT 1"
	" FROM pg_db_role_setting s, unnest(s.setconfig) c"
	" WHERE c LIKE 'default_transaction_isolation=%'"
	"  AND c <> 'default_transaction_isolation=read committed'"
	"  AND s.setdatabase IN (0, (SELECT oid FROM pg_database"
	"   WHERE datname = current_database()))"
	"  AND s.setrole IN (0, (SELECT oid FROM pg_roles"
	"   WHERE rolname = $1)))";

/* Built-in stable functions that read catalogs or statistics. */
static const char *const catalog_readers[] = {
	"pg_", "has_", "to_reg", "obj_description", "col_description",
	"shobj_description", "format_type", "txid_", "current_setting",
	"row_security_active", "current_schema", "version",
};

static bool
reads_catalogs(const char *name)
{
	size_t i, n;

	for (i = 0; i < sizeof(catalog_readers) / sizeof(*catalog_readers);
	     i++) {
		n = strlen(catalog_readers[i]);
		if (strncmp(name, catalog_readers[i], n) == 0)
			return true;
	}
	return false;
}

static PGconn *
connect_db(struct catalog *cat, struct cat_db *d)
{
	const struct pgconn_opts o = {
		.dbname = d->name,
		.application_name = "pgvalet-catalog",
		.options = "-c statement_timeout=10000",
		.connect_timeout_s = 5,
	};
	PGconn *conn = pgconn_open(&cat->url, &o);

	if (PQstatus(conn) != CONNECTION_OK) {
		log_warn("catalog: cannot connect to database \"%s\": %s",
			 d->name, PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

static PGresult *
run_params(PGconn *conn, const char *sql, int n, const char *const *params)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL,
				     0);

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_warn("catalog: query failed: %s", PQerrorMessage(conn));
		PQclear(res);
		return NULL;
	}
	return res;
}

static PGresult *
run(PGconn *conn, const char *sql, const char *param)
{
	return run_params(conn, sql, 1, &param);
}

static bool
is_true(const PGresult *res, int row, int col)
{
	return PQgetvalue(res, row, col)[0] == 't';
}

/* Is relation 'oid' (every leaf of it) in the publication now? */
static bool
published(struct catalog *cat, PGconn *conn, const char *oid)
{
	const char *params[2] = { oid, cat->publication };
	PGresult *res = run_params(conn, COVER_SQL, 2, params);
	bool yes = res && PQntuples(res) == 1 && is_true(res, 0, 2);

	PQclear(res);
	return yes;
}

/*
 * Does the stream carry every change to relation 'oid'?  With a managed
 * publication, a table that has a replica identity is added to it.
 */
static bool
covered(struct catalog *cat, struct cat_db *d, const char *oid, char kind)
{
	const char *params[2] = { oid, cat->publication };
	PGconn *conn = d->conn;
	PGresult *res;
	char *nsp = NULL, *rel = NULL, sql[512];
	bool ok;

	if (kind == 'm') {	/* REFRESH is not in the stream */
		return false;
	}
	if (!(res = run_params(conn, COVER_SQL, 2, params)))
		return false;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return false;
	}
	if (is_true(res, 0, 2)) {
		PQclear(res);
		return true;
	}
	ok = atomic_load(&d->manage) && is_true(res, 0, 3);
	if (!ok) {
		log_warn("catalog: reads of %s.%s are not cached: %s",
			 PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
			 !is_true(res, 0, 3)
				 ? "it has no replica identity (no primary key; "
				   "ALTER TABLE ... REPLICA IDENTITY FULL would "
				   "let pgvalet see its changes)"
				 : "it is not in the publication pgvalet "
				   "was told to use");
		PQclear(res);
		return false;
	}
	nsp = PQescapeIdentifier(conn, PQgetvalue(res, 0, 0),
				 strlen(PQgetvalue(res, 0, 0)));
	rel = PQescapeIdentifier(conn, PQgetvalue(res, 0, 1),
				 strlen(PQgetvalue(res, 0, 1)));
	PQclear(res);
	if (!nsp || !rel) {
		PQfreemem(nsp);
		PQfreemem(rel);
		return false;
	}
	snprintf(sql, sizeof(sql), "ALTER PUBLICATION \"%s\" ADD TABLE %s.%s",
		 cat->publication, nsp, rel);
	res = PQexec(conn, sql);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (ok)
		log_info("catalog: %s.%s added to publication %s", nsp, rel,
			 cat->publication);
	else if (!(ok = published(cat, conn, oid)))	/* another proxy won? */
		log_warn("catalog: reads of %s.%s are not cached: %s: %s", nsp,
			 rel, sql, PQerrorMessage(conn));
	PQclear(res);
	PQfreemem(nsp);
	PQfreemem(rel);
	return ok;
}

/*
 * Does relation 'oid' carry pgvalet's NOTIFY triggers?  When coverage is
 * managed, a plain table gets them (row keys reported by its
 * single-column unique integer key, when it has one).
 */
static bool
triggered(struct cat_db *d, const char *oid, char kind)
{
	PGconn *conn = d->conn;
	PGresult *res;
	char *rel = NULL, *key = NULL, sql[2048], arg[200] = "";
	bool ok;

	if (kind != 'r')	/* partitions, matviews: not covered */
		return false;
	if (!(res = run(conn, TRIGGERS_SQL, oid)))
		return false;
	ok = PQntuples(res) == 1 && is_true(res, 0, 1);
	if (ok || PQntuples(res) != 1 || !atomic_load(&d->manage)) {
		PQclear(res);
		return ok;
	}
	rel = strdup(PQgetvalue(res, 0, 0));	/* quoted by format() */
	if (!PQgetisnull(res, 0, 2))
		key = PQescapeLiteral(conn, PQgetvalue(res, 0, 2),
				      strlen(PQgetvalue(res, 0, 2)));
	PQclear(res);
	if (!rel) {
		PQfreemem(key);
		return false;
	}
	if (key)
		snprintf(arg, sizeof(arg), "%s", key);
	snprintf(sql, sizeof(sql),
		 "BEGIN;"
		 "CREATE TRIGGER pgvalet_ins AFTER INSERT ON %s REFERENCING"
		 " NEW TABLE AS pgvalet_new FOR EACH STATEMENT EXECUTE FUNCTION"
		 " _pgvalet.notify_change(%s);"
		 "CREATE TRIGGER pgvalet_upd AFTER UPDATE ON %s REFERENCING"
		 " OLD TABLE AS pgvalet_old NEW TABLE AS pgvalet_new FOR EACH"
		 " STATEMENT EXECUTE FUNCTION _pgvalet.notify_change(%s);"
		 "CREATE TRIGGER pgvalet_del AFTER DELETE ON %s REFERENCING"
		 " OLD TABLE AS pgvalet_old FOR EACH STATEMENT EXECUTE FUNCTION"
		 " _pgvalet.notify_change(%s);"
		 "CREATE TRIGGER pgvalet_trunc AFTER TRUNCATE ON %s FOR EACH"
		 " STATEMENT EXECUTE FUNCTION _pgvalet.notify_change();"
		 "COMMIT", rel, arg, rel, arg, rel, arg, rel);
	res = PQexec(conn, sql);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	PQclear(res);
	if (ok) {
		log_info("catalog: NOTIFY triggers installed on %s", rel);
	} else {
		snprintf(sql, sizeof(sql), "%s", PQerrorMessage(conn));
		PQclear(PQexec(conn, "ROLLBACK"));
		res = run(conn, TRIGGERS_SQL, oid);	/* another proxy won? */
		ok = res && PQntuples(res) == 1 && is_true(res, 0, 1);
		PQclear(res);
		if (!ok)
			log_warn("catalog: reads of %s are not cached: cannot "
				 "install its NOTIFY triggers: %s", rel, sql);
	}
	free(rel);
	PQfreemem(key);
	return ok;
}

static int
fetch_rel(struct catalog *cat, struct cat_db *d, const char *name,
	  struct cat_rel *r)
{
	PGconn *conn = d->conn;
	const char *db = d->name;
	PGresult *res = run(conn, REL_READ_SQL, name);
	int i, n;
	char kind;

	if (!res)
		return -1;
	memset(r, 0, sizeof(*r));
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		kind = PQgetvalue(res, i, 1)[0];
		if (strcmp(PQgetvalue(res, i, 0), name) == 0)
			r->exists = true;
		if (kind == 'f' || kind == 'S' ||
		    PQgetvalue(res, i, 2)[0] == 't' || is_true(res, i, 3))
			r->uncacheable = true;
		if (kind == 'v')
			continue;	/* its rules' relations are rows too */
		if (r->n_read == CAT_MAX_TAGS) {
			r->uncacheable = true;
			break;
		}
		if (!r->uncacheable && cat->cover == CAT_COVER_PUBLICATION &&
		    !covered(cat, d, PQgetvalue(res, i, 4), kind))
			r->uncacheable = true;
		if (!r->uncacheable && cat->cover == CAT_COVER_TRIGGERS &&
		    !triggered(d, PQgetvalue(res, i, 4), kind))
			r->uncacheable = true;
		r->read_tags[r->n_read++] =
			cache_tag_table(db, PQgetvalue(res, i, 0));
	}
	PQclear(res);
	if (!(res = run(conn, KEY_SQL, name)))
		return -1;
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		const char *col = PQgetvalue(res, i, 1);

		if (PQgetisnull(res, i, 1) || strlen(col) >= sizeof(r->key_col) ||
		    (i > 0 && strcmp(col, r->key_col) != 0)) {
			r->key_col[0] = 0;
			break;
		}
		memcpy(r->key_col, col, strlen(col) + 1);
	}
	PQclear(res);
	if (!(res = run(conn, REL_WRITE_SQL, name)))
		return -1;
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		if (is_true(res, i, 1))
			r->write_floods = true;
		if (r->n_write == CAT_MAX_TAGS) {
			r->write_floods = true;
			break;
		}
		r->write_tags[r->n_write++] =
			cache_tag_table(db, PQgetvalue(res, i, 0));
	}
	PQclear(res);
	if (!(res = run(conn, UP_SQL, name)))
		return -1;
	n = PQntuples(res);
	for (i = 0; i < n && r->n_up < CAT_MAX_TAGS; i++)
		r->up_tags[r->n_up++] =
			cache_tag_table(db, PQgetvalue(res, i, 0));
	PQclear(res);
	return 0;
}

static int
fetch_func(PGconn *conn, const char *name, enum cat_func *f)
{
	PGresult *res = run(conn, FUNC_SQL, name);

	if (!res)
		return -1;
	if (atoi(PQgetvalue(res, 0, 0)) == 0 || is_true(res, 0, 4))
		*f = is_true(res, 0, 3) ? CAT_FUNC_WRITES : CAT_FUNC_UNSAFE;
	else if (is_true(res, 0, 1))
		*f = CAT_FUNC_UNSAFE;
	else if (is_true(res, 0, 2) && reads_catalogs(name))
		*f = CAT_FUNC_UNSAFE;
	else
		*f = CAT_FUNC_SAFE;
	PQclear(res);
	return 0;
}

static int
fetch_role(PGconn *conn, const char *user, bool *rc_default)
{
	PGresult *res = run(conn, ROLE_SQL, user);

	if (!res)
		return -1;
	*rc_default = PQntuples(res) == 1 && is_true(res, 0, 0);
	PQclear(res);
	return 0;
}

/* Fetch one item's facts into *out; -1 on any failure. */
static int
fetch(struct catalog *cat, struct cat_db *d, const struct cat_item *job,
      struct cat_item *out)
{
	int rc;

	if (!d->conn && clock_mono_ms() < d->failed_until_ms)
		return -1;
	if (!d->conn && !(d->conn = connect_db(cat, d))) {
		d->failed_until_ms = clock_mono_ms() + CAT_RETRY_MS;
		return -1;
	}
	if (job->kind == ITEM_REL)
		rc = fetch_rel(cat, d, job->name, &out->rel);
	else if (job->kind == ITEM_FUNC)
		rc = fetch_func(d->conn, job->name, &out->func);
	else
		rc = fetch_role(d->conn, job->name, &out->read_committed);
	if (rc && PQstatus(d->conn) != CONNECTION_OK) {
		PQfinish(d->conn);
		d->conn = NULL;
	}
	return rc;
}

static void *
catalog_thread(void *arg)
{
	struct catalog *cat = arg;
	struct cat_item *it, job;
	struct cat_db *d;
	int rc;

	pthread_mutex_lock(&cat->lock);
	for (;;) {
		while (!cat->qhead && !cat->stopping)
			pthread_cond_wait(&cat->wake, &cat->lock);
		if (cat->stopping)
			break;
		it = cat->qhead;
		cat->qhead = it->qnext;
		if (!cat->qhead)
			cat->qtail = NULL;
		it->queued = false;
		job = *it;
		d = find_db(cat, it->db, true);
		pthread_mutex_unlock(&cat->lock);
		rc = d ? fetch(cat, d, &job, &job) : -1;
		pthread_mutex_lock(&cat->lock);
		pthread_cond_broadcast(&cat->fetched);
		if (it->queued || it->gen != job.gen)
			continue;	/* asked for again meanwhile */
		if (rc || !d || d->gen != job.gen) {
			it->state = ITEM_FAILED;
			it->retry_at_ms = clock_mono_ms() + (rc ? CAT_RETRY_MS : 0);
			continue;
		}
		it->rel = job.rel;
		it->func = job.func;
		it->read_committed = job.read_committed;
		it->state = ITEM_READY;
	}
	pthread_mutex_unlock(&cat->lock);
	return NULL;
}

int
catalog_start(struct catalog *cat)
{
	if (pthread_create(&cat->thread, NULL, catalog_thread, cat))
		return -1;
	cat->started = true;
	return 0;
}

void
catalog_free(struct catalog *cat)
{
	struct cat_item *it, *next;
	struct cat_db *d, *dn;
	size_t i;

	if (!cat)
		return;
	if (cat->started) {
		pthread_mutex_lock(&cat->lock);
		cat->stopping = true;
		pthread_cond_signal(&cat->wake);
		pthread_cond_broadcast(&cat->fetched);
		pthread_mutex_unlock(&cat->lock);
		pthread_join(cat->thread, NULL);
	}
	for (i = 0; i < CAT_BUCKETS; i++)
		for (it = cat->buckets[i]; it; it = next) {
			next = it->next;
			free(it);
		}
	for (d = cat->dbs; d; d = dn) {
		dn = d->next;
		if (d->conn)
			PQfinish(d->conn);
		free(d);
	}
	pthread_cond_destroy(&cat->wake);
	pthread_cond_destroy(&cat->fetched);
	pthread_mutex_destroy(&cat->lock);
	free(cat);
}
