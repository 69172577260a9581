/*
 * pgconn.h - the proxy's own libpq connections to the upstream (catalog
 * facts, the replication stream, `pgvalet clean`): host, port, user,
 * password and TLS settings from the upstream URL, one database, an
 * application_name that says which part of pgvalet it is.
 *
 * Blocking (libpq's PQconnectdbParams); call from the thread that owns
 * the connection.  The caller checks PQstatus() and PQfinish()es it.
 */
#ifndef PGVALET_CORE_PGCONN_H
#define PGVALET_CORE_PGCONN_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "core/pgurl.h"

struct pgconn_opts {
	const char *dbname;		/* NULL: the URL's */
	const char *application_name;	/* e.g. "pgvalet-catalog" */
	const char *options;		/* libpq "options", or NULL */
	int connect_timeout_s;		/* 0: libpq's default */
	bool replication;		/* replication=database */
};

PGconn *pgconn_open(const struct pg_url *u, const struct pgconn_opts *o);

#endif
