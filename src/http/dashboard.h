/*
 * dashboard.h - the HTTP side of pgvalet on 127.0.0.1:<dashboard port>
 * (libmicrohttpd, its own thread): a page for people (/), a JSON API
 * (/api/stats, /api/shapes, /api/cache, /api/advice, /api/audit,
 * POST /api/settings, POST /api/cache/flush, POST /api/stats/reset) and
 * /metrics in Prometheus' text format.  POSTs need the server's token
 * (Authorization: Bearer <token>, or X-Pgvalet-Token); without it 403.
 *
 * Reads the server's shared state (stats, cache, pools, streams) through
 * their thread-safe getters; never touches a worker's objects.
 */
#ifndef PGVALET_HTTP_DASHBOARD_H
#define PGVALET_HTTP_DASHBOARD_H

#include <stddef.h>

struct server;
struct dashboard;

/*
 * A JSON document another module serves at 'path' (e.g. "/api/advice"):
 * fn returns a malloc'ed, NUL-terminated JSON text (or NULL on OOM).
 * Register during start-up, before dashboard_start(); at most 8.  The
 * page shows /api/advice and /api/audit ("[]" until someone registers).
 */
typedef char *(*dashboard_json_fn)(void *arg);
int dashboard_add_json(const char *path, dashboard_json_fn fn, void *arg);

/* Listen on 127.0.0.1:port; NULL with err set on failure. */
struct dashboard *dashboard_start(struct server *srv, int port, char *err,
				  size_t errlen);
/* Stop serving and free (NULL is fine). */
void dashboard_stop(struct dashboard *d);

#endif
