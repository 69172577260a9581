/*
 * admin.h - the admin console, in PgBouncer's manner: a client that logs
 * in to the virtual database "pgvalet" (authenticated like any client;
 * allowed: the upstream URL's user and --admin-users) talks to the proxy
 * itself.  Simple Query only: SHOW STATS, SHOW POOLS, SHOW CLIENTS,
 * SHOW CACHE, SHOW SHAPES, SHOW ADVICE, SHOW AUDIT, SHOW NPLUS1, SHOW HELP; BEGIN/COMMIT/ROLLBACK/SET/RESET
 * are accepted and do nothing (drivers send them); anything else gets an
 * ErrorResponse and the session goes on.
 *
 * Runs on the client's worker thread; reads shared state only through
 * thread-safe getters.
 */
#ifndef PGVALET_POOL_ADMIN_H
#define PGVALET_POOL_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "net/buf.h"

struct server;

#define ADMIN_DATABASE "pgvalet"

/* True when 'user' may use the console (the upstream URL's user, or one
 * of the comma-separated 'admin_users'). */
bool admin_user_allowed(const char *upstream_user, const char *admin_users,
			const char *user);

/*
 * Answer one simple-protocol query text (len bytes, NUL-terminated) into
 * out: the result messages and CommandComplete, or an ErrorResponse;
 * not the ReadyForQuery.  -1 on OOM.
 */
int admin_query(struct server *srv, struct buf *out, const char *text,
		size_t len);

/* The command admin_query() matches: text upper-cased, blanks collapsed,
 * trailing ';' and blanks gone, cut to fit out (cap >= 1, NUL included). */
void admin_normalise(const char *text, size_t len, char *out, size_t cap);

#endif
