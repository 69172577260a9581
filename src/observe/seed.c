/*
 * seed.c - the pg_stat_statements read behind seed.h.
 */
#include "observe/seed.h"

#include <stdio.h>
#include <stdlib.h>

#include <libpq-fe.h>

#include "analysis/shape.h"
#include "core/log.h"
#include "core/pgconn.h"

static const char HAVE_EXTENSION[] =
	"SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'";

/* The database's statements, heaviest first (pg_stat_statements 1.8+
 * names the column total_exec_time; older ones total_time). */
static const char READ_STATEMENTS[] =
	"SELECT query, calls, total_exec_time, rows FROM pg_stat_statements "
	"WHERE dbid = (SELECT oid FROM pg_database "
	"WHERE datname = current_database()) AND calls > 0 "
	"ORDER BY total_exec_time DESC LIMIT %d";

static void
seed_from(struct stats_seeder *sd, PGconn *conn)
{
	char sql[sizeof(READ_STATEMENTS) + 16];
	const char *db = PQdb(conn);
	PGresult *res;
	int i, n, used = 0;

	res = PQexec(conn, HAVE_EXTENSION);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) == 0) {
		log_info("stats: pg_stat_statements is not installed in \"%s\": "
			 "statistics start empty", db);
		PQclear(res);
		return;
	}
	PQclear(res);
	snprintf(sql, sizeof(sql), READ_STATEMENTS, sd->max_shapes);
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_warn("stats: cannot read pg_stat_statements: %s",
			 PQerrorMessage(conn));
		PQclear(res);
		return;
	}
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		const char *q = PQgetvalue(res, i, 0);
		uint64_t fp = analysis_fingerprint(q);

		if (!fp)
			continue;	/* "<insufficient privilege>" and such */
		stats_seed(sd->stats, fp, db, q,
			   strtoull(PQgetvalue(res, i, 1), NULL, 10),
			   strtod(PQgetvalue(res, i, 2), NULL),
			   strtoull(PQgetvalue(res, i, 3), NULL, 10));
		used++;
	}
	PQclear(res);
	stats_mark_seeded(sd->stats);
	log_info("stats: seeded %d statement shapes from pg_stat_statements",
		 used);
}

static void *
seed_main(void *arg)
{
	struct stats_seeder *sd = arg;
	const struct pgconn_opts o = {
		.application_name = "pgvalet-stats",
		.options = "-c statement_timeout=10000",
		.connect_timeout_s = 5,
	};
	PGconn *conn = pgconn_open(sd->upstream, &o);

	if (PQstatus(conn) != CONNECTION_OK)
		log_warn("stats: cannot read pg_stat_statements: %s",
			 PQerrorMessage(conn));
	else
		seed_from(sd, conn);
	PQfinish(conn);
	return NULL;
}

int
stats_seed_start(struct stats_seeder *sd)
{
	if (pthread_create(&sd->thread, NULL, seed_main, sd) != 0)
		return -1;
	sd->started = 1;
	return 0;
}

void
stats_seed_join(struct stats_seeder *sd)
{
	if (sd->started)
		pthread_join(sd->thread, NULL);
	sd->started = 0;
}
