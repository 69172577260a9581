/*
 * clean.c - `pgvalet clean` (see clean.h).
 */
#include "invalidate/clean.h"

#include <stdbool.h>
#include <string.h>

#include <libpq-fe.h>

#include "core/pgconn.h"

/* Every pgvalet trigger, as "ON table" clauses; then what to drop. */
static const char TRIGGERS_SQL[] =
	"SELECT format('DROP TRIGGER %I ON %I.%I', t.tgname, n.nspname,"
	" c.relname) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
	" JOIN pg_namespace n ON n.oid = c.relnamespace"
	" WHERE t.tgname IN ('pgvalet_ins', 'pgvalet_upd', 'pgvalet_del',"
	"  'pgvalet_trunc') ORDER BY 1";

/*
 * The indexes --mode optimize created (pgvalet_idx_*, commented so by
 * the advisor: an index someone else named so stays), and hypopg when
 * the advisor installed it.
 */
static const char INDEXES_SQL[] =
	"SELECT format('DROP INDEX CONCURRENTLY IF EXISTS %I.%I', n.nspname,"
	" c.relname) FROM pg_class c JOIN pg_namespace n ON"
	" n.oid = c.relnamespace WHERE c.relkind = 'i' AND"
	" c.relname LIKE 'pgvalet\\_idx\\_%' AND"
	" obj_description(c.oid, 'pg_class') LIKE 'created by pgvalet%'"
	" ORDER BY 1";
static const char HYPOPG_SQL[] =
	"SELECT 'DROP EXTENSION hypopg' FROM pg_extension WHERE"
	" extname = 'hypopg' AND obj_description(oid, 'pg_extension') LIKE"
	" 'created by pgvalet%'";

static bool
exec_print(PGconn *conn, const char *sql, FILE *out)
{
	PGresult *res = PQexec(conn, sql);
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK ||
		  PQresultStatus(res) == PGRES_TUPLES_OK;

	if (ok)
		fprintf(out, "%s\n", sql);
	else
		fprintf(stderr, "pgvalet clean: %s: %s", sql,
			PQerrorMessage(conn));
	PQclear(res);
	return ok;
}

/* Run every statement a query produces (one per row, column 0). */
static bool
exec_generated(PGconn *conn, const char *query, const char *param, FILE *out)
{
	PGresult *res = PQexecParams(conn, query, param ? 1 : 0, NULL,
				     param ? &param : NULL, NULL, NULL, 0);
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	int i;

	if (!ok)
		fprintf(stderr, "pgvalet clean: %s", PQerrorMessage(conn));
	for (i = 0; ok && i < PQntuples(res); i++)
		ok = exec_print(conn, PQgetvalue(res, i, 0), out);
	PQclear(res);
	return ok;
}

int
pgvalet_clean(const struct config *cfg, FILE *out)
{
	const struct pgconn_opts o = {
		.application_name = "pgvalet-clean",
		.connect_timeout_s = 10,
	};
	PGconn *conn = pgconn_open(&cfg->upstream, &o);
	bool ok;

	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "pgvalet clean: cannot connect: %s",
			PQerrorMessage(conn));
		PQfinish(conn);
		return 1;
	}
	ok = exec_generated(conn, TRIGGERS_SQL, NULL, out) &&
	     exec_generated(conn, INDEXES_SQL, NULL, out) &&
	     exec_generated(conn, HYPOPG_SQL, NULL, out) &&
	     exec_generated(conn,
			    "SELECT 'DROP SCHEMA _pgvalet CASCADE' FROM"
			    " pg_namespace WHERE nspname = '_pgvalet' AND"
			    " obj_description(oid, 'pg_namespace') ="
			    " 'managed by pgvalet'", NULL, out) &&
	     exec_generated(conn,
			    "SELECT format('DROP PUBLICATION %I', pubname)"
			    " FROM pg_publication WHERE pubname = $1 AND"
			    " obj_description(oid, 'pg_publication') ="
			    " 'managed by pgvalet'", cfg->publication, out);
	if (ok && cfg->replication_slot[0])
		ok = exec_generated(conn,
				    "SELECT format('SELECT"
				    " pg_drop_replication_slot(%L)', slot_name)"
				    " FROM pg_replication_slots WHERE"
				    " slot_name = $1 AND NOT active",
				    cfg->replication_slot, out);
	PQfinish(conn);
	return ok ? 0 : 1;
}
