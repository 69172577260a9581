/*
 * api.h - the documents the dashboard serves, built from the server's
 * shared state: JSON for /api/... and Prometheus text for /metrics, and
 * the run-time settings of POST /api/settings.
 *
 * Any thread (the dashboard's); each returns a malloc'ed, NUL-terminated
 * text the caller frees, or NULL on OOM.
 */
#ifndef PGVALET_HTTP_API_H
#define PGVALET_HTTP_API_H

#include <stddef.h>

struct server;

char *api_stats_json(struct server *srv);
/* limit 0 = every shape kept */
char *api_shapes_json(struct server *srv, size_t limit);
char *api_cache_json(struct server *srv);
char *api_settings_json(struct server *srv);
char *api_metrics_text(struct server *srv);

/*
 * Apply a JSON object of settings (threshold_duration_ms,
 * threshold_impact, cache_ttl_ms): all or none.  0, or -1 with err naming
 * the key and value that are unknown or out of range.
 */
int api_apply_settings(struct server *srv, const char *body, size_t len,
		       char *err, size_t errlen);

#endif
