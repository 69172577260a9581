/*
 * dashboard.c - routing, the token check and request bodies on top of
 * libmicrohttpd (one internal polling thread: requests are short).
 */
#include "http/dashboard.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "cache/store.h"
#include "core/server.h"
#include "http/api.h"
#include "http/json.h"
#include "http/page.h"
#include "observe/stats.h"

enum {
	MAX_JSON_ROUTES = 8,
	MAX_BODY = 64 * 1024,
	MAX_CONNECTIONS = 64,
	CONNECTION_TIMEOUT_S = 10,
};

/* Written only during start-up (dashboard_add_json), read after. */
static struct {
	const char *path;
	dashboard_json_fn fn;
	void *arg;
} json_routes[MAX_JSON_ROUTES];
static int n_json_routes;

struct dashboard {
	struct MHD_Daemon *mhd;
	struct server *srv;
};

/* A request's body, gathered across calls. */
struct upload {
	char *data;
	size_t len;
	bool too_big;
};

int
dashboard_add_json(const char *path, dashboard_json_fn fn, void *arg)
{
	if (n_json_routes == MAX_JSON_ROUTES)
		return -1;
	json_routes[n_json_routes].path = path;
	json_routes[n_json_routes].fn = fn;
	json_routes[n_json_routes].arg = arg;
	n_json_routes++;
	return 0;
}

/* ---- responses ------------------------------------------------------------ */

static enum MHD_Result
respond(struct MHD_Connection *conn, unsigned status, char *body,
	const char *type)
{
	struct MHD_Response *r;
	enum MHD_Result rc;

	if (!body)
		return MHD_NO;	/* out of memory: drop the connection */
	r = MHD_create_response_from_buffer(strlen(body), body,
					    MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	rc = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result
respond_json(struct MHD_Connection *conn, unsigned status, char *body)
{
	return respond(conn, status, body, "application/json");
}

/* {"error": msg} with msg escaped. */
static enum MHD_Result
respond_error(struct MHD_Connection *conn, unsigned status, const char *msg)
{
	char *buf = NULL;
	size_t len;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return MHD_NO;
	fputs("{\"error\":", f);
	json_put_str(f, msg);
	fputc('}', f);
	if (fclose(f) != 0) {
		free(buf);
		return MHD_NO;
	}
	return respond_json(conn, status, buf);
}

static enum MHD_Result
respond_page(struct MHD_Connection *conn)
{
	struct MHD_Response *r;
	enum MHD_Result rc;

	r = MHD_create_response_from_buffer(strlen(dashboard_page),
					    (void *)dashboard_page,
					    MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "Content-Security-Policy",
				"default-src 'self'; style-src 'unsafe-inline'; "
				"script-src 'unsafe-inline'; img-src data:");
	rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return rc;
}

/* ---- the token -------------------------------------------------------------- */

static bool
token_ok(const struct dashboard *d, struct MHD_Connection *conn)
{
	const char *want = d->srv->dashboard_token;
	const char *got = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						      "X-Pgvalet-Token");
	const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						       "Authorization");
	size_t n = strlen(want);

	if (!got && auth && strncasecmp(auth, "Bearer ", 7) == 0)
		got = auth + 7;
	return got && n && strlen(got) == n && CRYPTO_memcmp(got, want, n) == 0;
}

/* ---- routes ------------------------------------------------------------------ */

static enum MHD_Result
get_route(struct dashboard *d, struct MHD_Connection *conn, const char *url)
{
	struct server *srv = d->srv;
	const char *limit;

	if (strcmp(url, "/") == 0)
		return respond_page(conn);
	if (strcmp(url, "/metrics") == 0)
		return respond(conn, MHD_HTTP_OK, api_metrics_text(srv),
			       "text/plain; version=0.0.4; charset=utf-8");
	if (strcmp(url, "/api/stats") == 0)
		return respond_json(conn, MHD_HTTP_OK, api_stats_json(srv));
	if (strcmp(url, "/api/shapes") == 0) {
		limit = MHD_lookup_connection_value(conn,
						    MHD_GET_ARGUMENT_KIND,
						    "limit");
		return respond_json(conn, MHD_HTTP_OK,
				    api_shapes_json(srv, limit ?
					    strtoul(limit, NULL, 10) : 0));
	}
	if (strcmp(url, "/api/cache") == 0)
		return respond_json(conn, MHD_HTTP_OK, api_cache_json(srv));
	if (strcmp(url, "/api/settings") == 0)
		return respond_json(conn, MHD_HTTP_OK, api_settings_json(srv));
	for (int i = 0; i < n_json_routes; i++)
		if (strcmp(url, json_routes[i].path) == 0)
			return respond_json(conn, MHD_HTTP_OK,
					    json_routes[i].fn(json_routes[i].arg));
	if (strcmp(url, "/api/advice") == 0 || strcmp(url, "/api/audit") == 0)
		return respond_json(conn, MHD_HTTP_OK, strdup("[]"));
	return respond_error(conn, MHD_HTTP_NOT_FOUND, "no such page");
}

static enum MHD_Result
post_route(struct dashboard *d, struct MHD_Connection *conn, const char *url,
	   const struct upload *up)
{
	struct server *srv = d->srv;
	char err[256];

	if (!token_ok(d, conn))
		return respond_error(conn, MHD_HTTP_FORBIDDEN,
				     "writes need the dashboard token "
				     "(Authorization: Bearer <token>)");
	if (up->too_big)
		return respond_error(conn, MHD_HTTP_CONTENT_TOO_LARGE,
				     "request body too large");
	if (strcmp(url, "/api/settings") == 0) {
		if (api_apply_settings(srv, up->data ? up->data : "",
				       up->len, err, sizeof(err)))
			return respond_error(conn, MHD_HTTP_BAD_REQUEST, err);
		return respond_json(conn, MHD_HTTP_OK, api_settings_json(srv));
	}
	if (strcmp(url, "/api/cache/flush") == 0) {
		if (!srv->cache)
			return respond_error(conn, MHD_HTTP_CONFLICT,
					     "the result cache is off");
		cache_clear(srv->cache);
		return respond_json(conn, MHD_HTTP_OK,
				    strdup("{\"flushed\":true}"));
	}
	if (strcmp(url, "/api/stats/reset") == 0) {
		if (srv->stats)
			stats_reset(srv->stats);
		return respond_json(conn, MHD_HTTP_OK,
				    strdup("{\"reset\":true}"));
	}
	return respond_error(conn, MHD_HTTP_NOT_FOUND, "no such page");
}

/* Gather a POST body; true while more of it may come. */
static bool
gather(struct upload *up, const char *data, size_t *size)
{
	char *grown;

	if (!*size)
		return false;
	if (up->too_big || up->len + *size > MAX_BODY) {
		up->too_big = true;
	} else if ((grown = realloc(up->data, up->len + *size + 1))) {
		memcpy(grown + up->len, data, *size);
		up->data = grown;
		up->len += *size;
		up->data[up->len] = '\0';
	} else {
		up->too_big = true;
	}
	*size = 0;
	return true;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
	   const char *method, const char *version, const char *data,
	   size_t *data_size, void **con_cls)
{
	struct dashboard *d = cls;
	struct upload *up = *con_cls;

	(void)version;
	if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
		return get_route(d, conn, url);
	if (strcmp(method, "POST") != 0)
		return respond_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
				     "use GET or POST");
	if (!up) {	/* first call: headers only */
		if (!(up = calloc(1, sizeof(*up))))
			return MHD_NO;
		*con_cls = up;
		return MHD_YES;
	}
	if (gather(up, data, data_size))
		return MHD_YES;
	return post_route(d, conn, url, up);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
	     enum MHD_RequestTerminationCode toe)
{
	struct upload *up = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (up) {
		free(up->data);
		free(up);
		*con_cls = NULL;
	}
}

struct dashboard *
dashboard_start(struct server *srv, int port, char *err, size_t errlen)
{
	struct dashboard *d = calloc(1, sizeof(*d));
	struct sockaddr_in sin = { .sin_family = AF_INET };

	if (!d) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	d->srv = srv;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	d->mhd = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_LINUX_ONLY,
		(uint16_t)port, NULL, NULL, on_request, d,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT_S,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, d,
		MHD_OPTION_END);
	if (!d->mhd) {
		snprintf(err, errlen,
			 "cannot start the dashboard on 127.0.0.1:%d (port in "
			 "use? set --dashboard-port, or 0 for none)", port);
		free(d);
		return NULL;
	}
	return d;
}

void
dashboard_stop(struct dashboard *d)
{
	if (!d)
		return;
	MHD_stop_daemon(d->mhd);
	free(d);
}
