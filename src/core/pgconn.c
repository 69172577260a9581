/*
 * pgconn.c - libpq connections to the upstream (see pgconn.h).
 */
#include "core/pgconn.h"

#include <stdio.h>

enum { MAX_PARAMS = 16 };

struct params {
	const char *keys[MAX_PARAMS], *vals[MAX_PARAMS];
	int n;
};

/* libpq ignores empty values too; leaving them out keeps it explicit. */
static void
add(struct params *p, const char *key, const char *val)
{
	if (val && *val && p->n < MAX_PARAMS - 1) {
		p->keys[p->n] = key;
		p->vals[p->n++] = val;
	}
}

PGconn *
pgconn_open(const struct pg_url *u, const struct pgconn_opts *o)
{
	struct params p = { .n = 0 };
	char port[16], timeout[16];

	snprintf(port, sizeof(port), "%d", u->port);
	snprintf(timeout, sizeof(timeout), "%d", o->connect_timeout_s);
	add(&p, "host", u->host[0] ? u->host : "127.0.0.1");
	add(&p, "port", port);
	add(&p, "user", u->user);
	add(&p, "password", u->password);
	add(&p, "dbname", o->dbname ? o->dbname : u->dbname);
	add(&p, "sslmode", pgurl_sslmode_name(u->sslmode));
	add(&p, "sslrootcert", u->sslrootcert);
	add(&p, "sslcert", u->sslcert);
	add(&p, "sslkey", u->sslkey);
	add(&p, "application_name", o->application_name);
	if (o->connect_timeout_s > 0)
		add(&p, "connect_timeout", timeout);
	add(&p, "options", o->options);
	if (o->replication)
		add(&p, "replication", "database");
	p.keys[p.n] = p.vals[p.n] = NULL;
	return PQconnectdbParams(p.keys, p.vals, 0);
}
