#include "pool/session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "analysis/catalog.h"
#include "cache/capture.h"
#include "cache/plan.h"
#include "cache/store.h"
#include "cache/tags.h"
#include "cache/tier.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/server.h"
#include "core/version.h"
#include "invalidate/bus.h"
#include "invalidate/push.h"
#include "invalidate/stream.h"
#include "net/tls.h"
#include "observe/fingerprint.h"
#include "observe/observe.h"
#include "pool/admin.h"
#include "pool/backend.h"
#include "pool/pool.h"
#include "proto/msg.h"

#include <openssl/rand.h>

enum {
	CLIENT_READ_LIMIT = 256 * 1024,
	SERVER_OUT_LIMIT = 512 * 1024,	/* stop reading the client above */
	LARGE_MESSAGE_MAX = 0x3fffffff,
	SMALL_MESSAGE_MAX = 10000,
	MAX_STATEMENTS = 64,
};

static void client_on_event(struct loop_watch *wt, uint32_t events);
static void session_process(struct client *cl);
static struct cache_store *cache_of(const struct client *cl);
static void cache_wait_cancel(struct client *cl);
static void claim_end(struct client *cl);
static void invalidate_on_leave(struct client *cl, bool in_flight);

/* ---- helpers ---------------------------------------------------------- */

void
guc_ops_free(struct guc_op *ops, uint16_t n)
{
	uint16_t i;

	for (i = 0; i < n; i++)
		free(ops[i].sql);
	free(ops);
}

static void
send_error(struct client *cl, const char *severity, const char *sqlstate,
	   const char *msg)
{
	if (msg_put_error(&cl->c.out, 'E', severity, sqlstate, msg) == 0)
		cl->flush_pending = true;
}

static void
send_ready(struct client *cl, uint8_t status)
{
	size_t start;

	if (msg_begin(&cl->c.out, 'Z', &start) ||
	    msg_put_u8(&cl->c.out, status))
		return;
	msg_end(&cl->c.out, start);
	cl->flush_pending = true;
}

/* Send a FATAL error and close: the end of a bad session. */
static void
fatal(struct client *cl, const char *sqlstate, const char *msg)
{
	send_error(cl, "FATAL", sqlstate, msg);
	session_flush(cl);
	session_close(cl, msg);
}

void
session_flush(struct client *cl)
{
	cl->flush_pending = false;
	if (cl->state == CL_CLOSED || !buf_pending(&cl->c.out))
		return;
	if (conn_flush(&cl->c) == CONN_IO_ERROR)
		session_close(cl, cl->c.error);
}

/*
 * A simple Query the cache missed, handed from answer_from_cache to
 * handle_query in the same turn of the loop, so that the statement is
 * planned and its key built once.
 */
struct read_miss {
	struct plan plan;
	uint8_t *key;			/* owned; NULL = no hand-off */
	size_t keylen;
	size_t textlen;			/* the text ends the key */
	uint64_t hash;
	uint64_t ms;			/* valid in this loop turn only */
};

static void
drop_read_miss(struct read_miss *m)
{
	if (m) {
		free(m->key);
		m->key = NULL;
	}
}

enum { FP_MEMO_WAYS = 4, FP_MEMO_MAX = 4096 };

struct fp_memo {
	char *text;
	size_t len, cap;
	uint64_t fp;
};

static void
fp_memo_free(struct fp_memo *m)
{
	if (!m)
		return;
	for (int i = 0; i < FP_MEMO_WAYS; i++)
		free(m[i].text);
	free(m);
}

/* ---- life cycle ---------------------------------------------------------- */

void
session_accept(struct worker *w, int fd)
{
	struct client *cl = calloc(1, sizeof(*cl));

	if (!cl) {
		close(fd);
		return;
	}
	conn_init(&cl->c, fd);
	conn_tune_socket(fd);
	cl->c.watch.cb = client_on_event;
	cl->w = w;
	cl->state = CL_STARTUP;
	stmt_map_init(&cl->stmts);
	stmt_map_init(&cl->obs_stmts);
	cl->id = atomic_fetch_add(&w->srv->next_client_id, 1) + 1;
	guc_state_init(&cl->startup_settings);
	guc_state_init(&cl->settings);
	guc_state_init(&cl->tx_settings);
	qlist_init(&cl->link);
	if (loop_add(&w->loop, fd, &cl->c.watch)) {
		conn_close(&cl->c);
		free(cl);
		return;
	}
	qlist_insert_tail(&w->clients, &cl->link);
	if (atomic_fetch_add(&w->srv->nclients, 1) >= w->srv->cfg.max_clients)
		fatal(cl, "53300", "sorry, too many clients already");
}

void
session_free(struct client *cl)
{
	atomic_fetch_sub(&cl->w->srv->nclients, 1);
	if (cl->info) {
		server_client_unregister(cl->w->srv, cl->info);
		free(cl->info);
	}
	guc_state_free(&cl->startup_settings);
	guc_state_free(&cl->settings);
	guc_state_free(&cl->tx_settings);
	stmt_map_free(&cl->stmts);
	stmt_map_free(&cl->obs_stmts);
	free(cl->bound);
	guc_ops_free(cl->batch_ops, cl->nbatch_ops);
	free(cl->unnamed_sql);
	free(cl->portal_sql);
	free(cl->unnamed_query);
	free(cl->unnamed_parse);
	free(cl->portal_plan);
	capture_free(cl->group_capture);
	free(cl->lazy_begin);
	free(cl->claim_key);
	free(cl->tier_stamp);
	drop_read_miss(cl->read_miss);
	free(cl->read_miss);
	fp_memo_free(cl->fp_memo);
	free(cl->spare_wait);
	free(cl->startup);
	free(cl->cancel);
	scram_server_clear(&cl->scram);
	free(cl);
}

/* The client leaves while holding a backend: make it reusable or drop. */
static void
detach_backend(struct client *cl)
{
	struct backend *be = cl->srv;
	bool reset = cl->pinned ||
		     cl->w->srv->cfg.pool_mode == POOL_SESSION;

	cl->srv = NULL;
	be->client = NULL;
	if (be->qlen || be->skipping || be->state != BE_READY) {
		backend_close(be, "client left during a request");
		return;
	}
	if (be->tx_status != 'I' && backend_send_hidden_query(be, "ROLLBACK"))
		goto fail;
	if (reset) {
		if (backend_send_hidden_query(be, "DISCARD ALL"))
			goto fail;
		be->state_sig = 0;
		name_set_clear(&be->prepared);
	}
	if (be->qlen == 0) {
		pool_release(be);
		return;
	}
	be->releasing = true;
	backend_flush(be);
	return;
fail:
	backend_close(be, "out of memory");
}

void
session_close(struct client *cl, const char *why)
{
	if (cl->state == CL_CLOSED)
		return;
	log_debug("client %s@%s closed: %s", cl->user, cl->database,
		  why ? why : "");
	if (cl->waiting)
		pool_cancel_wait(cl);
	if (cache_of(cl)) {
		cache_wait_cancel(cl);
		claim_end(cl);
		invalidate_on_leave(cl, cl->srv && cl->srv->qlen);
	}
	if (cl->srv)
		detach_backend(cl);
	if (cl->cancel)
		server_cancel_unregister(cl->w->srv, cl->cancel);
	cl->state = CL_CLOSED;
	loop_del(&cl->w->loop, cl->c.fd);
	conn_close(&cl->c);
	qlist_remove(&cl->link);
	qlist_insert_tail(&cl->w->graveyard, &cl->link);
}

void
session_backend_lost(struct client *cl, const char *why)
{
	char msg[300];

	snprintf(msg, sizeof(msg), "pgvalet: server connection lost: %s",
		 why ? why : "closed");
	fatal(cl, "08006", msg);
}

/* ---- start-up ------------------------------------------------------------ */

static void
send_byte(struct client *cl, char b)
{
	if (buf_append(&cl->c.out, &b, 1) == 0)
		session_flush(cl);
}

/*
 * Append s to sql[*n] as an escape-string literal (E'it''s a \\ b'): the
 * same text whatever the server's standard_conforming_strings, so no
 * value can end the literal early.  False when full.
 */
static bool
put_literal(char *sql, size_t cap, size_t *n, const char *s)
{
	if (*n + 4 > cap)	/* E, quote, quote, NUL */
		return false;
	sql[(*n)++] = 'E';
	sql[(*n)++] = '\'';
	for (; *s; s++) {
		if (*n + 3 >= cap)
			return false;
		if (*s == '\'' || *s == '\\')
			sql[(*n)++] = *s;
		sql[(*n)++] = *s;
	}
	sql[(*n)++] = '\'';
	sql[*n] = 0;
	return true;
}

/*
 * A setting from the start-up packet, applied as Postgres applies those:
 * set_config() parses the value by the setting's type, so a list such as
 * search_path=a,b stays a list (SET x = 'a,b' would make it one name).
 */
static int
add_startup_setting(struct client *cl, const char *name, const char *value)
{
	static const char head[] = "SELECT pg_catalog.set_config(";
	char sql[1200];
	size_t n = sizeof(head) - 1;

	if (strcmp(name, "pgvalet.l1") == 0) {	/* ours, not the server's */
		cl->l1 = strcmp(value, "on") == 0 || strcmp(value, "1") == 0 ||
			 strcmp(value, "true") == 0;
		return 0;
	}

	if (strlen(name) > 200)
		return -1;
	memcpy(sql, head, n);
	if (!put_literal(sql, sizeof(sql), &n, name) || n + 2 >= sizeof(sql))
		return -1;
	sql[n++] = ',';
	sql[n++] = ' ';
	if (!put_literal(sql, sizeof(sql), &n, value) ||
	    n + sizeof(", false)") >= sizeof(sql))
		return -1;
	memcpy(sql + n, ", false)", sizeof(", false)"));
	n += sizeof(", false)") - 1;
	return guc_state_set(&cl->startup_settings, name, sql, n);
}

/*
 * options=-c a=b --c=d : each becomes a startup setting.  As Postgres
 * reads it: words split at unescaped white space, a backslash takes the
 * next character as is, and --name-with-dashes means name_with_dashes.
 */
static int
parse_options(struct client *cl, const char *opts)
{
	char words[1024], *word[64], *eq, *w;
	size_t n = 0, nw = 0, i;
	const char *p = opts;
	bool want_c = false;

	while (*p) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		if (nw == sizeof(word) / sizeof(*word))
			return -1;
		word[nw++] = words + n;
		for (; *p && *p != ' ' && *p != '\t'; p++) {
			if (*p == '\\' && p[1])
				p++;
			if (n + 2 >= sizeof(words))
				return -1;
			words[n++] = *p;
		}
		words[n++] = 0;
	}
	for (i = 0; i < nw; i++) {
		w = word[i];
		if (strcmp(w, "-c") == 0) {
			want_c = true;
			continue;
		}
		if (strncmp(w, "-c", 2) == 0) {
			w += 2;
		} else if (strncmp(w, "--", 2) == 0) {
			w += 2;
			for (eq = w; *eq && *eq != '='; eq++)
				if (*eq == '-')
					*eq = '_';
		} else if (!want_c) {
			return -1;
		}
		want_c = false;
		eq = strchr(w, '=');
		if (!eq)
			return -1;
		*eq = 0;
		if (add_startup_setting(cl, w, eq + 1))
			return -1;
	}
	return 0;
}

static int
read_startup_params(struct client *cl, const uint8_t *p, size_t len)
{
	struct msg_reader r;
	const char *k, *v;

	msg_reader_init(&r, p, len);
	while ((k = msg_read_str(&r, NULL)) && *k) {
		v = msg_read_str(&r, NULL);
		if (!v)
			return -1;
		if (strcmp(k, "user") == 0)
			snprintf(cl->user, sizeof(cl->user), "%s", v);
		else if (strcmp(k, "database") == 0)
			snprintf(cl->database, sizeof(cl->database), "%s", v);
		else if (strcmp(k, "options") == 0) {
			if (parse_options(cl, v))
				return -2;
		} else if (strcmp(k, "replication") == 0) {
			if (strcmp(v, "false") && strcmp(v, "0") &&
			    strcmp(v, "off") && strcmp(v, "no"))
				return -3;
		} else if (strncmp(k, "_pq_.", 5) != 0) {
			if (add_startup_setting(cl, k, v))
				return -2;
		}
	}
	return r.bad ? -1 : 0;
}

static void
begin_auth(struct client *cl)
{
	const struct server *srv = cl->w->srv;
	struct buf *b = &cl->c.out;
	size_t start;

	cl->cred = server_find_user(srv, cl->user);
	scram_server_init(&cl->scram, cl->cred ? &cl->cred->secret :
						 &srv->mock_secret);
	msg_begin(b, 'R', &start);
	msg_put_i32(b, 10);
	msg_put_str(b, "SCRAM-SHA-256");
	msg_put_u8(b, 0);
	msg_end(b, start);
	cl->state = CL_AUTH_INIT;
	session_flush(cl);
}

static void
handle_startup_message(struct client *cl, const uint8_t *body, size_t len,
		       uint32_t code)
{
	int rc;

	if (code >> 16 != 3) {
		fatal(cl, "0A000", "unsupported frontend protocol");
		return;
	}
	rc = read_startup_params(cl, body, len);
	if (rc == -3) {
		fatal(cl, "08P01", "pgvalet does not proxy replication "
				   "connections");
		return;
	}
	if (rc || !cl->user[0]) {
		fatal(cl, rc == -2 ? "22023" : "28000",
		      rc == -2 ? "invalid startup setting" :
				 "no PostgreSQL user name specified in "
				 "startup packet");
		return;
	}
	if (!cl->database[0])
		snprintf(cl->database, sizeof(cl->database), "%s", cl->user);
	cl->startup = malloc(len ? len : 1);
	if (!cl->startup) {
		fatal(cl, "53200", "out of memory");
		return;
	}
	memcpy(cl->startup, body, len);
	cl->startup_len = len;
	begin_auth(cl);
}

static void
handle_cancel(struct client *cl, const uint8_t *body, size_t len)
{
	if (len == 8)
		server_cancel_forward(cl->w->srv, msg_be32(body),
				      msg_be32(body + 4));
	session_close(cl, "cancel request");
}

static void
answer_ssl(struct client *cl)
{
	const struct server *srv = cl->w->srv;

	if (!srv->client_tls || cl->c.ssl) {
		send_byte(cl, 'N');
		return;
	}
	/* Bytes sent before the handshake could be injected (CVE-2021-23222). */
	if (buf_pending(&cl->c.in)) {
		fatal(cl, "08P01", "unencrypted data after SSL request");
		return;
	}
	send_byte(cl, 'S');
	if (cl->state == CL_CLOSED)
		return;
	if (tls_attach(&cl->c, srv->client_tls, 1, NULL)) {
		session_close(cl, "TLS setup failed");
		return;
	}
	cl->state = CL_TLS;
}

/* Returns true when it consumed a packet and the caller should go on. */
static bool
process_startup(struct client *cl)
{
	uint32_t len, code;
	uint8_t body[MSG_STARTUP_MAX];
	enum msg_frame_status st;

	st = msg_startup_peek(buf_head(&cl->c.in), buf_pending(&cl->c.in),
			      &len, &code);
	if (st == FRAME_BAD_LENGTH) {
		fatal(cl, "08P01", "invalid length of startup packet");
		return false;
	}
	if (st == FRAME_NEED_MORE || buf_pending(&cl->c.in) < len)
		return false;
	memcpy(body, buf_head(&cl->c.in) + 8, len - 8);
	buf_consume(&cl->c.in, len);
	if (code == PROTO_SSL && len == 8)
		answer_ssl(cl);
	else if (code == PROTO_GSSENC && len == 8)
		send_byte(cl, 'N');
	else if (code == PROTO_CANCEL)
		handle_cancel(cl, body, len - 8);
	else
		handle_startup_message(cl, body, len - 8, code);
	return cl->state == CL_STARTUP;
}

/* ---- authentication and log-in ------------------------------------------ */

static const char *
startup_value(const struct client *cl, const char *name)
{
	struct msg_reader r;
	const char *k, *v;

	msg_reader_init(&r, (const uint8_t *)cl->startup, cl->startup_len);
	while ((k = msg_read_str(&r, NULL)) && *k) {
		v = msg_read_str(&r, NULL);
		if (!v)
			return NULL;
		if (strcasecmp(k, name) == 0)
			return v;
	}
	return NULL;
}

/* ParameterStatus from the pool's server, with the client's own values. */
static int
send_parameters(struct client *cl)
{
	const struct buf *params = &cl->pool->params;
	struct buf *b = &cl->c.out;
	struct msg_frame f;
	struct msg_reader r;
	const char *name, *value, *mine;
	size_t off = 0, start;
	int rc = 0;

	while (off < params->len &&
	       msg_frame_peek(params->data + off, params->len - off,
			      SMALL_MESSAGE_MAX, &f) == FRAME_OK) {
		msg_reader_init(&r, f.body, f.body_len);
		name = msg_read_str(&r, NULL);
		value = msg_read_str(&r, NULL);
		off += f.len;
		if (!name || !value)
			continue;
		mine = startup_value(cl, name);
		rc |= msg_begin(b, 'S', &start);
		rc |= msg_put_str(b, name);
		rc |= msg_put_str(b, mine ? mine : value);
		msg_end(b, start);
	}
	return rc;
}

static void
send_welcome(struct client *cl)
{
	struct buf *b = &cl->c.out;
	size_t start;

	if (send_parameters(cl) || msg_begin(b, 'K', &start) ||
	    msg_put_i32(b, (int32_t)cl->cancel->pid) ||
	    msg_put_i32(b, (int32_t)cl->cancel->secret)) {
		session_close(cl, "out of memory");
		return;
	}
	msg_end(b, start);
	cl->state = CL_ACTIVE;
	send_ready(cl, 'I');
	session_flush(cl);
}

static int
register_cancel(struct client *cl)
{
	struct cancel_slot *slot = calloc(1, sizeof(*slot));
	uint8_t rnd[8];

	if (!slot)
		return -1;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		free(slot);
		return -1;
	}
	slot->pid = msg_be32(rnd) & 0x7fffffff;
	slot->secret = msg_be32(rnd + 4);
	cl->cancel = slot;
	server_cancel_register(cl->w->srv, slot);
	return 0;
}

static void
remember_client_key(struct client *cl)
{
	struct shared_pool *sp = cl->pool->shared;

	if (cl->cred->password[0])
		return;
	pthread_mutex_lock(&sp->key_lock);
	memcpy(sp->client_key, scram_server_client_key(&cl->scram),
	       SCRAM_KEY_LEN);
	sp->have_keys = true;
	pthread_mutex_unlock(&sp->key_lock);
}

/* Show the client in SHOW CLIENTS. */
static int
register_info(struct client *cl)
{
	struct client_info *ci = calloc(1, sizeof(*ci));
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (!ci)
		return -1;
	ci->id = cl->id;
	snprintf(ci->user, sizeof(ci->user), "%s", cl->user);
	snprintf(ci->database, sizeof(ci->database), "%s", cl->database);
	if (getpeername(cl->c.fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *in = (struct sockaddr_in *)&ss;

			inet_ntop(AF_INET, &in->sin_addr, ci->addr,
				  sizeof(ci->addr));
			ci->port = ntohs(in->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

			inet_ntop(AF_INET6, &in6->sin6_addr, ci->addr,
				  sizeof(ci->addr));
			ci->port = ntohs(in6->sin6_port);
		} else {
			snprintf(ci->addr, sizeof(ci->addr), "unix");
		}
	}
	ci->connected_us = clock_unix_us();
	ci->admin = cl->admin;
	atomic_init(&ci->state, CLIENT_IDLE);
	cl->info = ci;
	server_client_register(cl->w->srv, ci);
	return 0;
}

/* Log-in to the admin console: parameters of our own, no backend. */
static void
admin_login(struct client *cl)
{
	static const char *const params[][2] = {
		{ "server_version", "15.0 (pgvalet " PGVALET_VERSION ")" },
		{ "server_encoding", "UTF8" },
		{ "client_encoding", "UTF8" },
		{ "DateStyle", "ISO, MDY" },
		{ "integer_datetimes", "on" },
		{ "standard_conforming_strings", "on" },
		{ "application_name", "" },
	};
	const struct server *srv = cl->w->srv;
	struct buf *b = &cl->c.out;
	size_t start, i;
	int rc = 0;

	if (!admin_user_allowed(srv->cfg.upstream.user, srv->cfg.admin_users,
				cl->user)) {
		fatal(cl, "28000", "not allowed to use the admin console "
				   "(see --admin-users)");
		return;
	}
	cl->admin = true;
	if (register_info(cl)) {
		fatal(cl, "53200", "out of memory");
		return;
	}
	for (i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
		rc |= msg_begin(b, 'S', &start) | msg_put_str(b, params[i][0]) |
		      msg_put_str(b, params[i][1]);
		msg_end(b, start);
	}
	if (rc) {
		session_close(cl, "out of memory");
		return;
	}
	cl->state = CL_ACTIVE;
	send_ready(cl, 'I');
	session_flush(cl);
}

/* A message on the admin console: simple queries only. */
static void
admin_message(struct client *cl, const struct msg_frame *f)
{
	if (f->type == 'Q') {
		if (!f->body_len || f->body[f->body_len - 1] != 0) {
			fatal(cl, "08P01", "malformed message");
			return;
		}
		if (admin_query(cl->w->srv, &cl->c.out,
				(const char *)f->body, f->body_len - 1)) {
			fatal(cl, "53200", "out of memory");
			return;
		}
		send_ready(cl, 'I');
	} else if (f->type == 'S') {
		send_ready(cl, 'I');
	} else {
		send_error(cl, "ERROR", "0A000", "the admin console answers "
			   "simple queries only");
		if (f->type == 'F')	/* a function call ends like a Query */
			send_ready(cl, 'I');
		else	/* extended protocol: the rest waits for Sync */
			cl->skip_until_sync = f->type != 'H';
	}
	cl->flush_pending = true;
}

static void
logged_in(struct client *cl)
{
	if (strcmp(cl->database, ADMIN_DATABASE) == 0) {
		admin_login(cl);
		return;
	}
	if (register_info(cl)) {
		fatal(cl, "53200", "out of memory");
		return;
	}
	cl->pool = pool_get(cl->w, cl->database, cl->cred);
	if (!cl->pool || register_cancel(cl) ||
	    guc_state_copy(&cl->settings, &cl->startup_settings)) {
		fatal(cl, "53200", "out of memory");
		return;
	}
	remember_client_key(cl);
	if (cache_of(cl)) {	/* have the catalog learn what BEGIN means */
		bool rc;

		if (cl->w->srv->streams &&
		    !(cl->stream = stream_db_get(cl->w->srv->streams,
						 cl->database))) {
			fatal(cl, "53200", "out of memory");
			return;
		}

		(void)catalog_read_committed(cl->w->srv->catalog, cl->database,
					     cl->user, &rc);
	}
	if (cl->pool->have_params) {
		send_welcome(cl);
		return;
	}
	cl->state = CL_WAIT_LOGIN;
	if (pool_acquire(cl->pool, cl))
		session_resume(cl);
}

static void
sasl_reply(struct client *cl, int32_t code, const char *data, int len)
{
	struct buf *b = &cl->c.out;
	size_t start;

	msg_begin(b, 'R', &start);
	msg_put_i32(b, code);
	msg_put_bytes(b, data, (size_t)len);
	msg_end(b, start);
}

static void
auth_failed(struct client *cl)
{
	char msg[200];

	snprintf(msg, sizeof(msg),
		 "password authentication failed for user \"%.100s\"",
		 cl->user);
	fatal(cl, "28P01", msg);
}

static void
handle_password(struct client *cl, const struct msg_frame *f)
{
	char out[1100], err[200];
	struct msg_reader r;
	const char *mech, *data;
	int32_t dlen;
	int n;

	msg_reader_init(&r, f->body, f->body_len);
	if (cl->state == CL_AUTH_INIT) {
		mech = msg_read_str(&r, NULL);
		dlen = msg_read_i32(&r);
		data = (const char *)msg_read_bytes(&r, dlen > 0 ?
						    (size_t)dlen : 0);
		if (!mech || strcmp(mech, "SCRAM-SHA-256") || dlen <= 0 ||
		    !data || !msg_reader_done(&r)) {
			fatal(cl, "08P01", "malformed SASL initial response");
			return;
		}
		n = scram_server_first(&cl->scram, data, (size_t)dlen, out,
				       sizeof(out), err, sizeof(err));
		if (n < 0) {
			fatal(cl, "08P01", err);
			return;
		}
		sasl_reply(cl, 11, out, n);
		cl->state = CL_AUTH_CONT;
		session_flush(cl);
		return;
	}
	n = scram_server_final(&cl->scram, (const char *)f->body, f->body_len,
			       out, sizeof(out), err, sizeof(err));
	if (n == SCRAM_BAD_PASSWORD || (n >= 0 && !cl->cred)) {
		auth_failed(cl);
		return;
	}
	if (n < 0) {
		fatal(cl, "08P01", err);
		return;
	}
	sasl_reply(cl, 12, out, n);
	sasl_reply(cl, 0, "", 0);
	logged_in(cl);
}

/* ---- session state (transaction pooling) --------------------------------- */

static bool
changes_state(enum sql_kind k)
{
	return k == SQL_SET || k == SQL_RESET || k == SQL_RESET_ALL ||
	       k == SQL_DISCARD_ALL;
}

static bool
transaction_mode(const struct client *cl)
{
	return cl->w->srv->cfg.pool_mode == POOL_TRANSACTION;
}

void
session_apply_ops(struct client *cl, const struct guc_op *ops, uint16_t n,
		  bool ok)
{
	struct guc_op *nb;
	uint16_t i;

	if (!ok) {
		guc_ops_free(cl->batch_ops, cl->nbatch_ops);
		cl->batch_ops = NULL;
		cl->nbatch_ops = 0;
		return;
	}
	if (!n)
		return;
	nb = realloc(cl->batch_ops, (cl->nbatch_ops + n) * sizeof(*nb));
	if (!nb) {
		cl->pinned = true;	/* cannot track it: keep the backend */
		return;
	}
	cl->batch_ops = nb;
	for (i = 0; i < n; i++) {
		nb[cl->nbatch_ops] = ops[i];
		nb[cl->nbatch_ops].sql = ops[i].sql ? strdup(ops[i].sql) : NULL;
		cl->nbatch_ops++;
	}
}

static void
reset_setting(struct client *cl, struct guc_state *st, const char *name)
{
	size_t i;

	guc_state_reset(st, name);
	for (i = 0; i < cl->startup_settings.n; i++) {
		const struct guc_entry *e = &cl->startup_settings.v[i];

		if (strcmp(e->name, name) == 0)
			guc_state_set(st, name, e->sql, strlen(e->sql));
	}
}

/* Apply the batch to tx_settings; true if the server's state is now
 * something other than a replay of ours (RESET goes to server defaults). */
static bool
apply_batch(struct client *cl)
{
	struct guc_state *st = &cl->tx_settings;
	bool reset_seen = false;
	uint16_t i;

	if (!cl->in_block)
		guc_state_copy(st, &cl->settings);
	cl->in_block = true;
	for (i = 0; i < cl->nbatch_ops; i++) {
		const struct guc_op *op = &cl->batch_ops[i];

		if (op->kind == SQL_SET && op->sql) {
			guc_state_set(st, op->name, op->sql, strlen(op->sql));
			continue;
		}
		reset_seen = true;
		if (op->kind == SQL_RESET) {
			reset_setting(cl, st, op->name);
			continue;
		}
		guc_state_copy(st, &cl->startup_settings);
		if (op->kind == SQL_DISCARD_ALL) {
			stmt_map_clear(&cl->stmts);
			if (cl->srv)
				name_set_clear(&cl->srv->prepared);
		}
	}
	session_apply_ops(cl, NULL, 0, false);
	return reset_seen;
}

/* ---- result cache ------------------------------------------------------ */

/* ---- statement observation ------------------------------------------------ */

/*
 * Statements are reported to observe.h's listeners once each: a simple
 * Query as one statement (a multi-statement string is one observation
 * of the whole text), an extended-protocol Execute as one, with the text
 * and parameters of the Bind before it.  Timing runs from the loop turn
 * that read the message (or first tried to, when it had to wait for a
 * backend or an identical query) to the last byte of the answer.
 */

static struct obs_rec *
obs_new(const struct client *cl, const char *sql, size_t len,
	uint64_t params_hash)
{
	struct obs_rec *r = malloc(sizeof(*r) + len + 1);

	if (!r)
		return NULL;
	r->started_us = cl->arrival_us;
	r->params_hash = params_hash;
	r->tag_rows = 0;
	r->data_rows = 0;
	r->failed = false;
	r->fingerprint = 0;
	r->sql_len = len;
	memcpy(r->sql, sql, len);
	r->sql[len] = '\0';
	return r;
}

/*
 * The fingerprint of a statement's text.  A client running extended-
 * protocol statements (params_hash != 0) sends a few texts over and over
 * (BEGIN, a SELECT, ROLLBACK): its last FP_MEMO_WAYS are remembered, so
 * they are not hashed again.
 */
static uint64_t
text_fingerprint(struct client *cl, const char *sql, size_t len,
		 uint64_t params_hash)
{
	struct fp_cache *fc = cl->w->srv->fingerprints;
	struct fp_memo *m;
	uint64_t fp;
	char *t;
	int i;

	if (!params_hash || !len || len > FP_MEMO_MAX ||
	    (!cl->fp_memo &&
	     !(cl->fp_memo = calloc(FP_MEMO_WAYS, sizeof(*cl->fp_memo)))))
		return fp_cache_get(fc, sql, len);
	for (i = 0; i < FP_MEMO_WAYS; i++) {
		m = &cl->fp_memo[i];
		if (m->len == len && memcmp(m->text, sql, len) == 0)
			return m->fp;
	}
	fp = fp_cache_get(fc, sql, len);
	m = &cl->fp_memo[cl->fp_memo_next++ % FP_MEMO_WAYS];
	if (len > m->cap) {
		if (!(t = realloc(m->text, len)))
			return fp;
		m->text = t;
		m->cap = len;
	}
	memcpy(m->text, sql, len);
	m->len = len;
	m->fp = fp;
	return fp;
}

/* 'sql' is NUL-terminated at sql[len]; fingerprint 0 = compute it. */
static void
observe_text(struct client *cl, const char *sql, size_t len,
	     uint64_t fingerprint, uint64_t params_hash, int64_t started_us,
	     uint64_t rows, bool cache_hit, bool failed)
{
	struct stmt_observation o = {
		.fingerprint = fingerprint ? fingerprint :
			       text_fingerprint(cl, sql, len, params_hash),
		.sql = sql,
		.sql_len = len,
		.db = cl->database,
		.user = cl->user,
		.client_id = cl->id,
		.params_hash = params_hash,
		.started_us = started_us,
		.rows = rows,
		.cache_hit = cache_hit,
		.failed = failed,
	};

	o.duration_us = clock_unix_us() - started_us;
	observe_statement(&o);
}

void
session_observe(struct client *cl, const struct obs_rec *r)
{
	observe_text(cl, r->sql, r->sql_len, r->fingerprint, r->params_hash,
		     r->started_us,
		     r->tag_rows > r->data_rows ? r->tag_rows : r->data_rows,
		     false, r->failed);
}

uint64_t
session_tag_rows(const uint8_t *tag, size_t len)
{
	size_t i = len, end;
	uint64_t n = 0;

	while (i && tag[i - 1] == '\0')
		i--;
	end = i;
	while (i && tag[i - 1] >= '0' && tag[i - 1] <= '9')
		i--;
	if (i == end || (i && tag[i - 1] != ' '))
		return 0;
	for (; i < end && n < UINT64_MAX / 10; i++)
		n = n * 10 + (uint64_t)(tag[i] - '0');
	return n;
}

/* Rows in a cached answer: its CommandComplete tags, or its DataRows. */
static uint64_t
answer_rows(const uint8_t *data, size_t len)
{
	uint64_t tag_rows = 0, data_rows = 0;
	size_t off = 0, n;

	while (len - off >= MSG_HEADER_LEN) {
		n = msg_be32(data + off + 1);
		if (n < 4 || n > len - off - 1)
			break;
		if (data[off] == 'D')
			data_rows++;
		else if (data[off] == 'C')
			tag_rows += session_tag_rows(data + off + MSG_HEADER_LEN,
						     n - 4);
		off += 1 + n;
	}
	return tag_rows > data_rows ? tag_rows : data_rows;
}

/* A Query answered by the proxy itself (cache hit or lazy BEGIN/END). */
static void
observe_answered(struct client *cl, const char *sql, size_t len,
		 uint64_t params_hash, const uint8_t *answer,
		 size_t answer_len, bool cache_hit)
{
	if (!observe_enabled())
		return;
	observe_text(cl, sql, len, 0, params_hash, cl->arrival_us,
		     answer ? answer_rows(answer, answer_len) : 0, cache_hit,
		     false);
}

static uint64_t
params_hash_of(const uint8_t *bind_rest, size_t len)
{
	return len ? XXH3_64bits(bind_rest, len) : 0;
}

/* Remember a Bind's statement text and parameters for its Execute. */
static void
observe_bind(struct client *cl, const char *portal, size_t portal_len,
	     const char *stmt, const uint8_t *rest, size_t rest_len)
{
	struct pstmt *p = NULL;
	const char *text = NULL;
	size_t len;

	free(cl->bound);
	cl->bound = NULL;
	if (!*stmt)
		text = cl->unnamed_query;
	else if ((p = stmt_map_get(transaction_mode(cl) ? &cl->stmts :
							  &cl->obs_stmts,
				   stmt)))
		text = p->query;
	if (!text)
		return;
	len = strlen(text);
	cl->bound = obs_new(cl, text, len, params_hash_of(rest, rest_len));
	cl->bound_portal = XXH3_64bits(portal, portal_len);
	/* a named statement's shape is worked out once, not per Execute */
	if (p && cl->bound) {
		if (!p->fingerprint)
			p->fingerprint = fp_cache_get(cl->w->srv->fingerprints,
						      text, len);
		cl->bound->fingerprint = p->fingerprint;
	}
}

/* The observation an Execute of 'portal' carries, or NULL. */
static struct obs_rec *
observe_execute(struct client *cl, const uint8_t *body, size_t len)
{
	const uint8_t *nul = memchr(body, '\0', len);
	struct obs_rec *r = cl->bound;

	if (!r || !nul ||
	    XXH3_64bits(body, (size_t)(nul - body)) != cl->bound_portal)
		return NULL;
	cl->bound = NULL;	/* one observation per Bind */
	return r;
}

/* Session mode: the statement texts behind names, for observe_bind(). */
static void
observe_parse(struct client *cl, const char *name, const uint8_t *rest,
	      size_t rest_len, const char *query)
{
	if (!*name) {
		free(cl->unnamed_query);
		cl->unnamed_query = strdup(query);
		return;
	}
	stmt_map_del(&cl->obs_stmts, name);
	(void)stmt_map_add(&cl->obs_stmts, name, rest, rest_len);
}

static struct cache_store *
cache_of(const struct client *cl)
{
	return cl->w->srv->cache;
}

/*
 * Plan a statement for this client.  Reads are cacheable only while the
 * replication stream of the client's database is up: a write that
 * bypasses the proxy could not evict them otherwise.
 */
static void
plan_stmt(struct client *cl, const char *text, size_t len,
	  const uint8_t *bind, size_t bind_len, struct plan *out)
{
	plan_make(cl->w->srv->plans, cl->database, text, len, bind, bind_len,
		  out);
	if (out->cacheable && cl->stream && !stream_db_up(cl->stream)) {
		out->cacheable = false;
		out->n_tags = 0;
	}
}

/* What a statement's transaction must invalidate when it ends. */
static void
note_writes(struct client *cl, const struct plan *p)
{
	uint32_t i;
	uint8_t j;

	if (!p->writes)
		return;
	cl->dirty_flood |= p->flood;
	cl->dirty_forget |= p->forget_catalog;
	for (i = 0; i < p->n_inval && !cl->dirty_flood; i++) {
		for (j = 0; j < cl->n_dirty; j++)
			if (cl->dirty[j] == p->inval[i])
				break;
		if (j < cl->n_dirty)
			continue;
		if (cl->n_dirty == DIRTY_MAX)
			cl->dirty_flood = true;
		else
			cl->dirty[cl->n_dirty++] = p->inval[i];
	}
}

static bool
is_dirty(const struct client *cl)
{
	return cl->dirty_flood || cl->dirty_forget || cl->n_dirty;
}

/* The transaction is over: drop every result it may have changed.  Runs
 * before the client can read the ReadyForQuery that tells it so. */
static void
invalidate_dirty(struct client *cl)
{
	struct server *srv = cl->w->srv;
	uint64_t tag;

	if (srv->cfg.debug_skip_invalidation) {	/* testing the checker */
		cl->dirty_flood = false;
		cl->n_dirty = 0;
	}
	tag = cache_tag_db(cl->database);
	/* the shared tier first: its copies must be dead before ours are
	 * (a tier hit refills the local store, cache/tier.h) */
	if (srv->tier && (cl->dirty_flood || cl->dirty_forget))
		(void)cache_tier_invalidate(srv->tier, tag, &tag, 1);
	else if (srv->tier && cl->n_dirty)
		(void)cache_tier_invalidate(srv->tier, tag, cl->dirty,
					    cl->n_dirty);
	if (cl->dirty_flood || cl->dirty_forget) {
		cache_tag_bump(srv->cache, &tag, 1);
		if (srv->push)
			push_flush(srv->push, cl->database,
				   "a write through the proxy");
		if (srv->bus)
			bus_publish(srv->bus, cl->database, NULL, 0);
	} else if (cl->n_dirty) {
		cache_tag_bump(srv->cache, cl->dirty, cl->n_dirty);
		if (srv->push)
			push_tags(srv->push, cl->database, cl->dirty,
				  cl->n_dirty, "proxy");
		if (srv->bus)
			bus_publish(srv->bus, cl->database, cl->dirty,
				    cl->n_dirty);
	}
	if (cl->dirty_forget)
		catalog_forget(srv->catalog, cl->database);
	cl->dirty_flood = cl->dirty_forget = false;
	cl->n_dirty = 0;
}

/* The client left with a write maybe still committing upstream. */
static void
invalidate_on_leave(struct client *cl, bool in_flight)
{
	struct worker *w = cl->w;

	if (!is_dirty(cl))
		return;
	if (in_flight) {
		cl->dirty_flood = true;
		if (w->nrecheck < (int)(sizeof(w->recheck) /
					sizeof(w->recheck[0]))) {
			w->recheck[w->nrecheck].tag =
				cache_tag_db(cl->database);
			w->recheck[w->nrecheck++].due_ms = w->now_ms + 1000;
		}
	}
	invalidate_dirty(cl);
}

/* ---- in-process caches riding on this client (session.h) ------------ */

/*
 * A plain BEGIN of this client is READ COMMITTED (the catalog says so for
 * this user and database; until it knows, not) and the client has not
 * changed its own transaction defaults.
 */
static bool
blocks_read_committed(const struct client *cl)
{
	bool rc = false;
	size_t i;

	if (catalog_read_committed(cl->w->srv->catalog, cl->database, cl->user,
				   &rc) != CAT_KNOWN || !rc)
		return false;
	for (i = 0; i < cl->settings.n; i++)
		if (strstr(cl->settings.v[i].name, "transaction_isolation") ||
		    strstr(cl->settings.v[i].name, "transaction_read_only") ||
		    strstr(cl->settings.v[i].name, "transaction_deferrable"))
			return false;
	return true;
}

static void
l1_notice(struct client *cl, const char *verb, uint64_t token,
	  const uint64_t *tags, size_t n)
{
	char msg[64 + 17 * CACHE_MAX_TAGS + 256];
	size_t len, i;

	len = (size_t)snprintf(msg, sizeof(msg), "pgvalet-l1 %s ", verb);
	if (token)
		len += (size_t)snprintf(msg + len, sizeof(msg) - len,
					"%016llx ", (unsigned long long)token);
	for (i = 0; i < n && i < CACHE_MAX_TAGS; i++)
		len += (size_t)snprintf(msg + len, sizeof(msg) - len, "%s%016llx",
					i ? "," : "", (unsigned long long)tags[i]);
	snprintf(msg + len, sizeof(msg) - len, "%s%.200s", n ? " " : "",
		 cl->database);
	(void)msg_put_error(&cl->c.out, 'N', "LOG", "00000", msg);
}

/* The session state an answer depends on, as the cache keys see it. */
static uint64_t
l1_token(const struct client *cl)
{
	size_t dl = strlen(cl->database) + 1, ul = strlen(cl->user) + 1;
	uint64_t sig = cl->settings.sig;
	uint8_t k[2 * 256 + sizeof(sig)];

	if (dl + ul > 2 * 256)
		return 1;	/* never: names are at most NAMEDATALEN */
	memcpy(k, cl->database, dl);
	memcpy(k + dl, cl->user, ul);
	memcpy(k + dl + ul, &sig, sizeof(sig));
	return XXH3_64bits(k, dl + ul + sizeof(sig)) | 1;	/* never 0 */
}

/*
 * A cacheable answer is going out.  Only for sessions whose transactions
 * are READ COMMITTED: an in-process cache serves inside transactions too
 * (before the driver's BEGIN reached anyone), which is only equivalent
 * to reading the database when each statement takes its own snapshot.
 */
static void
l1_fill(struct client *cl, const uint64_t *tags, size_t n)
{
	if (cl->l1 && n && blocks_read_committed(cl))
		l1_notice(cl, "fill", l1_token(cl), tags, n);
}

void
session_before_ready(struct client *cl, struct pending *p, uint8_t tx_status)
{
	struct server *srv = cl->w->srv;
	struct cache_stamp st;

	if (p->capture && (p->kind == PEND_QUERY || p->kind == PEND_SYNC)) {
		st.n = p->capture->stamp.n;
		memcpy(st.tags, p->capture->stamp.tags,
		       st.n * sizeof(st.tags[0]));
		if (capture_finish(srv->cache, p->capture, tx_status,
				   cl->w->now_ms) == CACHE_STORED)
			l1_fill(cl, st.tags, st.n);
		p->capture = NULL;
	}
	if (tx_status != 'I' || !is_dirty(cl))
		return;
	if (cl->dirty_flood || cl->dirty_forget)
		l1_notice(cl, "evict-db", 0, NULL, 0);
	else
		l1_notice(cl, "evict", 0, cl->dirty, cl->n_dirty);
}

/* Key of a simple-protocol query: who asks, in which session state. */
static uint8_t *
query_key(const struct client *cl, const char *text, size_t len,
	  size_t *keylen, uint64_t *hash)
{
	size_t dl = strlen(cl->database) + 1, ul = strlen(cl->user) + 1;
	uint64_t sig = cl->settings.sig;
	uint8_t *k;

	*keylen = 1 + dl + ul + sizeof(sig) + len;
	k = malloc(*keylen);
	if (!k)
		return NULL;
	k[0] = 'Q';
	memcpy(k + 1, cl->database, dl);
	memcpy(k + 1 + dl, cl->user, ul);
	memcpy(k + 1 + dl + ul, &sig, sizeof(sig));
	memcpy(k + 1 + dl + ul + sizeof(sig), text, len);
	*hash = XXH3_64bits(k, *keylen);
	return k;
}

/* ---- coalescing: identical misses in flight go upstream once ---------- */

struct cache_wait {
	struct cache_waiter node;	/* the store's; first */
	struct worker *w;
	struct client *cl;		/* NULL: the client left */
	struct cache_wait *next;	/* in w->mail */
	uint64_t hash;
	uint8_t *key;
	size_t keylen;
};

/* Any thread: the leader's answer is in (or it gave up). */
static void
cache_woken(struct cache_waiter *node, struct cache_entry *e)
{
	struct cache_wait *cw = (struct cache_wait *)node;
	struct worker *w = cw->w;

	if (e)
		cache_entry_release(e);	/* the retry finds it */
	pthread_mutex_lock(&w->mail_lock);
	cw->next = w->mail;
	w->mail = cw;
	pthread_mutex_unlock(&w->mail_lock);
	loop_wake(&w->loop);
}

void
session_cache_mail(struct worker *w)
{
	struct cache_wait *cw, *next;
	struct client *cl;

	pthread_mutex_lock(&w->mail_lock);
	cw = w->mail;
	w->mail = NULL;
	pthread_mutex_unlock(&w->mail_lock);
	for (; cw; cw = next) {
		next = cw->next;
		cl = cw->cl;
		free(cw->key);
		free(cw);
		if (!cl)
			continue;
		cl->cache_wait = NULL;
		cl->no_claim = true;
		session_resume(cl);
	}
}

static void
cache_wait_cancel(struct client *cl)
{
	struct cache_wait *cw = cl->cache_wait;

	if (!cw)
		return;
	cl->cache_wait = NULL;
	if (cache_cancel_wait(cache_of(cl), cw->hash, cw->key, cw->keylen,
			      &cw->node)) {
		free(cw->key);
		free(cw);
	} else {
		cw->cl = NULL;	/* its mail is on the way: dropped there */
	}
}

/* We led a key's miss and will not answer it after all. */
static void
claim_end(struct client *cl)
{
	if (!cl->claim_key)
		return;
	cache_abandon(cache_of(cl), cl->claim_hash, cl->claim_key,
		      cl->claim_keylen);
	free(cl->claim_key);
	cl->claim_key = NULL;
}

/* Hand the claim we lead to the capture that will answer it. */
static void
claim_to_capture(struct client *cl, struct capture *c)
{
	if (!cl->claim_key)
		return;
	if (c && c->keylen == cl->claim_keylen &&
	    memcmp(c->key, cl->claim_key, c->keylen) == 0) {
		c->claim = cache_of(cl);
		free(cl->claim_key);
		cl->claim_key = NULL;
		return;
	}
	claim_end(cl);
}

enum lookup { LOOKUP_HIT, LOOKUP_MISS, LOOKUP_LEAD, LOOKUP_PARKED };

static void
tier_stamp_drop(struct client *cl)
{
	free(cl->tier_stamp);
	cl->tier_stamp = NULL;
}

/*
 * A local miss: ask the shared tier (cache/tier.h).  A hit is put in the
 * local store under a stamp taken before asking, so an invalidation
 * applied meanwhile refuses it, and is returned from there.  A miss
 * leaves in cl->tier_stamp what a store of the upstream answer must
 * match.  The put ends the key's claim, ours or not.
 */
static struct cache_entry *
tier_lookup(struct client *cl, uint64_t hash, const uint8_t *key,
	    size_t keylen, const struct plan *p)
{
	struct server *srv = cl->w->srv;
	struct cache_stamp st;
	enum cache_put_result r;
	enum tier_found found;
	uint64_t age, born;
	uint8_t *data;
	size_t len;
	char *stamp;

	tier_stamp_drop(cl);
	if (!srv->tier || !cache_tier_up(srv->tier) ||
	    cache_stamp_take(srv->cache, &st, p->tags, p->n_tags))
		return NULL;
	found = cache_tier_get(srv->tier, cache_tag_db(cl->database), hash,
			       key, keylen, p->tags, p->n_tags, &data, &len,
			       &age, &stamp);
	if (found == TIER_MISS) {
		cl->tier_stamp = stamp;
		cl->tier_stamp_hash = hash;
	}
	if (found != TIER_HIT)
		return NULL;
	/* born when the tier got it: --cache-ttl bounds the age of the
	 * answer, not of this copy */
	born = cl->w->now_ms > age ? cl->w->now_ms - age : 0;
	r = cache_put(srv->cache, hash, key, keylen, data, len, &st, born);
	free(data);
	if (cl->claim_key && cl->claim_keylen == keylen &&
	    memcmp(cl->claim_key, key, keylen) == 0) {
		free(cl->claim_key);	/* the put ended it */
		cl->claim_key = NULL;
	}
	return r == CACHE_STORED ?
		cache_get(srv->cache, hash, key, keylen, cl->w->now_ms) : NULL;
}

/* A capture of the key the tier just missed stores there too. */
static void
tier_stamp_to_capture(struct client *cl, struct capture *c)
{
	if (c && cl->tier_stamp && cl->tier_stamp_hash == c->hash) {
		capture_set_tier(c, cl->w->srv->tier,
				 cache_tag_db(cl->database), cl->tier_stamp);
		cl->tier_stamp = NULL;
	}
	tier_stamp_drop(cl);
}

/*
 * Look a key up.  On a miss the first client becomes the key's leader
 * (it goes upstream); the others park until its answer is stored, then
 * look again (once, without waiting).  key stays the caller's.
 */
static enum lookup
lookup(struct client *cl, uint64_t hash, const uint8_t *key, size_t keylen,
       struct cache_entry **e)
{
	struct cache_store *s = cache_of(cl);
	struct cache_wait *cw;

	*e = NULL;
	if (cl->claim_key && cl->claim_keylen == keylen &&
	    memcmp(cl->claim_key, key, keylen) == 0)
		return LOOKUP_LEAD;	/* ours already: we were held up */
	/*
	 * A client holding a backend (a READ COMMITTED block) never parks
	 * behind another client's miss: the leader may itself be waiting
	 * for a backend, and parked holders would starve the pool.
	 */
	if (cl->srv)
		cl->no_claim = true;
	/* a waiter is only consumed when we park: reuse one per client */
	if (!cl->no_claim && !cl->spare_wait)
		cl->spare_wait = calloc(1, sizeof(*cl->spare_wait));
	if (cl->no_claim || !(cw = cl->spare_wait)) {
		cl->no_claim = false;
		*e = cache_get(s, hash, key, keylen, cl->w->now_ms);
		return *e ? LOOKUP_HIT : LOOKUP_MISS;
	}
	cw->node.wake = cache_woken;
	cw->w = cl->w;
	cw->cl = cl;
	switch (cache_claim(s, hash, key, keylen, cl->w->now_ms, &cw->node,
			    e)) {
	case CACHE_CLAIM_HIT:
		return LOOKUP_HIT;
	case CACHE_CLAIM_WAIT:
		/* its wake only posts to our mailbox: fill in the rest */
		cw->hash = hash;
		cw->keylen = keylen;
		cw->key = malloc(keylen);
		if (cw->key)
			memcpy(cw->key, key, keylen);
		cl->cache_wait = cw;
		cl->spare_wait = NULL;
		return LOOKUP_PARKED;
	case CACHE_CLAIM_LEADER:
		claim_end(cl);
		cl->claim_key = malloc(keylen);
		if (!cl->claim_key) {
			cache_abandon(s, hash, key, keylen);
			return LOOKUP_MISS;
		}
		memcpy(cl->claim_key, key, keylen);
		cl->claim_keylen = keylen;
		cl->claim_hash = hash;
		return LOOKUP_LEAD;
	default:
		return LOOKUP_MISS;
	}
}

/*
 * Lazy BEGIN: a READ COMMITTED block is opened here and reaches the
 * server only with the first statement the cache cannot answer, so
 * "BEGIN; <cached SELECT>; ROLLBACK" never touches Postgres.  Only when
 * a plain BEGIN is READ COMMITTED for this user and database (the
 * catalog says so; until it knows, not) and the client has not changed
 * its own transaction defaults.
 */
static bool
lazy_begin_ok(const struct client *cl, const struct plan *p)
{
	if (p->tx != PLAN_TX_BEGIN || p->repeatable || cl->lazy_begin)
		return false;
	return blocks_read_committed(cl);
}

/* COMMIT/END -> "COMMIT", ROLLBACK/ABORT -> "ROLLBACK", else NULL. */
static const char *
lazy_end_tag(const struct client *cl, const struct plan *p, const char *text)
{
	const char *tag, *rest;
	size_t n;

	if (p->tx != PLAN_TX_END || !cl->lazy_begin)
		return NULL;
	text += strspn(text, " \t\r\n(");
	n = strcspn(text, " \t\r\n;");
	if ((n == 6 && strncasecmp(text, "commit", 6) == 0) ||
	    (n == 3 && strncasecmp(text, "end", 3) == 0))
		tag = "COMMIT";
	else if ((n == 8 && strncasecmp(text, "rollback", 8) == 0) ||
		 (n == 5 && strncasecmp(text, "abort", 5) == 0))
		tag = "ROLLBACK";
	else
		return NULL;
	/* AND CHAIN, COMMIT/ROLLBACK PREPARED: the server's business */
	rest = text + n;
	if (rest[strspn(rest, " \t\r\n;")] != '\0' &&
	    (strcasestr(rest, "chain") || strcasestr(rest, "prepare")))
		return NULL;
	return tag;
}

static void
put_tag(struct buf *b, const char *tag)
{
	size_t start;

	if (msg_begin(b, 'C', &start) == 0 && msg_put_str(b, tag) == 0)
		msg_end(b, start);
}

/* The tag to answer a BEGIN or the end of a lazy block with, or NULL. */
static const char *
lazy_tag(const struct client *cl, const struct plan *p, const char *text)
{
	const char *tag;

	if (cl->srv)
		return NULL;	/* the block is real: the server answers */
	tag = lazy_end_tag(cl, p, text);
	if (tag)
		return tag;
	return lazy_begin_ok(cl, p) ? "BEGIN" : NULL;
}

/* Enter or leave the lazy block as 'tag' says; -1 on OOM. */
static int
lazy_apply(struct client *cl, const char *tag, const char *text)
{
	if (cl->lazy_failed)	/* COMMIT of a failed block rolls back */
		tag = "ROLLBACK";
	cl->lazy_failed = false;
	free(cl->lazy_begin);
	cl->lazy_begin = NULL;
	if (strcmp(tag, "BEGIN") == 0 && !(cl->lazy_begin = strdup(text)))
		return -1;
	put_tag(&cl->c.out, tag);
	return 0;
}

static uint8_t
lazy_status(const struct client *cl)
{
	if (!cl->lazy_begin)
		return 'I';
	return cl->lazy_failed ? 'E' : 'T';
}

/*
 * May the cache answer now?  With no backend (outside a block, or in a
 * lazy one), or inside a READ COMMITTED block that has run only
 * cacheable reads and has nothing in flight: its next read would see
 * what an autocommit read sees.
 */
static bool
may_serve(const struct client *cl)
{
	return !cl->srv || (cl->block_clean && !cl->skip_until_sync &&
			    backend_owes_nothing(cl->srv, true));
}

/* The ReadyForQuery status after a cached answer. */
static uint8_t
served_status(const struct client *cl)
{
	return cl->srv ? 'T' : lazy_status(cl);
}


/* The lazy block needs the server after all: open it there first. */
static int
materialize_begin(struct client *cl)
{
	int rc;

	if (!cl->lazy_begin)
		return 0;
	cl->block_clean = true;
	rc = backend_send_hidden_query(cl->srv, cl->lazy_begin);
	free(cl->lazy_begin);
	cl->lazy_begin = NULL;
	return rc;
}

/* Hand a missed Query's plan and key (taken over) to handle_query. */
static void
keep_read_miss(struct client *cl, const struct plan *plan, uint8_t *key,
	       size_t keylen, size_t textlen, uint64_t hash)
{
	struct read_miss *m = cl->read_miss;

	if (!m && !(m = cl->read_miss = calloc(1, sizeof(*m)))) {
		free(key);
		return;
	}
	free(m->key);
	m->plan = *plan;
	m->key = key;
	m->keylen = keylen;
	m->textlen = textlen;
	m->hash = hash;
	m->ms = cl->w->now_ms;
}

/* The hand-off for this text, if answer_from_cache just made it (its key
 * still to be taken or dropped). */
static struct read_miss *
take_read_miss(struct client *cl, const char *text, size_t len)
{
	struct read_miss *m = cl->read_miss;

	if (!m || !m->key)
		return NULL;
	if (m->ms == cl->w->now_ms && m->textlen == len &&
	    memcmp(m->key + m->keylen - len, text, len) == 0)
		return m;
	drop_read_miss(m);
	return NULL;
}

/*
 * A simple Query from a client outside any transaction, with no backend:
 * answer it from the cache if we can.  True when answered.
 */
static bool
answer_from_cache(struct client *cl, const struct msg_frame *f)
{
	const char *text = (const char *)f->body, *tag;
	enum lookup found;
	struct cache_entry *e;
	struct plan plan;
	const uint8_t *data;
	size_t len, keylen;
	uint64_t hash;
	uint8_t *key;

	if (f->type != 'Q' || !cache_of(cl) || cl->pinned || cl->in_block ||
	    !f->body_len || f->body[f->body_len - 1] != 0)
		return false;
	plan_stmt(cl, text, f->body_len - 1,
		  NULL, 0, &plan);
	if ((tag = lazy_tag(cl, &plan, text)) && lazy_apply(cl, tag, text) == 0) {
		send_ready(cl, lazy_status(cl));
		observe_answered(cl, text, f->body_len - 1, 0, NULL, 0, false);
		buf_consume(&cl->c.in, f->len);
		return true;
	}
	if (!plan.cacheable)
		return false;
	key = query_key(cl, text, f->body_len - 1, &keylen, &hash);
	if (!key)
		return false;
	found = lookup(cl, hash, key, keylen, &e);
	if (!e && found != LOOKUP_PARKED)
		e = tier_lookup(cl, hash, key, keylen, &plan);
	if (!e && found != LOOKUP_PARKED) {
		keep_read_miss(cl, &plan, key, keylen, f->body_len - 1, hash);
		return false;	/* handle_query sends it */
	}
	free(key);
	if (found == LOOKUP_PARKED)
		return true;	/* the message waits in the buffer */
	data = cache_entry_data(e, &len);
	if (buf_append(&cl->c.out, data, len)) {
		cache_entry_release(e);
		return false;
	}
	l1_fill(cl, plan.tags, plan.n_tags);
	send_ready(cl, served_status(cl));
	observe_answered(cl, text, f->body_len - 1, 0, data, len, true);
	cache_entry_release(e);
	buf_consume(&cl->c.in, f->len);
	return true;
}

/* A simple Query going upstream: note its writes, capture a read. */
static int
plan_query(struct client *cl, const char *text, size_t len,
	   struct pending *p)
{
	struct server *srv = cl->w->srv;
	struct read_miss *m = take_read_miss(cl, text, len);
	struct plan own;
	const struct plan *plan = m ? &m->plan : &own;
	size_t keylen;
	uint64_t hash;
	uint8_t *key;

	if (!m)
		plan_stmt(cl, text, len, NULL, 0, &own);
	note_writes(cl, plan);
	if (!plan->cacheable)
		cl->block_clean = false;
	/* in a clean READ COMMITTED block a read is what autocommit sees */
	if (!plan->cacheable || cl->pinned ||
	    (cl->in_block && !cl->block_clean) ||
	    !backend_owes_nothing(cl->srv, cl->block_clean)) {
		drop_read_miss(m);
		claim_end(cl);
		return 0;
	}
	if (m) {	/* answer_from_cache built it this turn of the loop */
		key = m->key;
		keylen = m->keylen;
		hash = m->hash;
		m->key = NULL;
	} else if (!(key = query_key(cl, text, len, &keylen, &hash))) {
		claim_end(cl);
		return -1;
	}
	p->capture = capture_new(srv->cache, key, keylen, hash, plan->tags,
				 plan->n_tags, (size_t)srv->cfg.cache_max_entry);
	if (p->capture)
		p->capture->in_block_ok = cl->block_clean;
	tier_stamp_to_capture(cl, p->capture);
	claim_to_capture(cl, p->capture);
	return 0;
}

/*
 * An extended-protocol request the cache can answer whole: an optional
 * Parse of the unnamed statement, Bind of the unnamed portal, optional
 * Describe of it, Execute of all its rows, Sync; all in the buffer.
 */
struct ext_group {
	const uint8_t *parse_rest;	/* query + parameter types */
	size_t parse_rest_len;
	const char *text;
	const uint8_t *bind_rest;	/* formats, values, result formats */
	size_t bind_rest_len;
	uint32_t max_rows;		/* Execute's row limit, 0 = all */
	bool has_parse, has_describe;
};

static bool
group_parse(struct client *cl, const struct msg_frame *f,
	    struct ext_group *g)
{
	struct msg_reader r;
	const char *name;

	msg_reader_init(&r, f->body, f->body_len);
	name = msg_read_str(&r, NULL);
	if (!name || *name)
		return false;
	g->parse_rest = f->body + r.pos;
	g->parse_rest_len = f->body_len - r.pos;
	g->text = msg_read_str(&r, NULL);
	g->has_parse = true;
	(void)cl;
	return g->text != NULL;
}

static bool
group_bind(struct client *cl, const struct msg_frame *f, struct ext_group *g)
{
	const struct pstmt *p;
	struct msg_reader r;
	const char *portal, *stmt;

	msg_reader_init(&r, f->body, f->body_len);
	portal = msg_read_str(&r, NULL);
	stmt = msg_read_str(&r, NULL);
	if (!portal || !stmt || *portal || (g->has_parse && *stmt))
		return false;
	if (!g->has_parse) {
		if (!*stmt || !(p = stmt_map_get(&cl->stmts, stmt)))
			return false;
		g->parse_rest = p->parse_rest;
		g->parse_rest_len = p->rest_len;
		g->text = p->query;
	}
	g->bind_rest = f->body + r.pos;
	g->bind_rest_len = f->body_len - r.pos;
	return true;
}

/* Peek the group at the head of the input; its length, or 0. */
static size_t
read_group(struct client *cl, struct ext_group *g)
{
	const uint8_t *in = buf_head(&cl->c.in);
	size_t avail = buf_pending(&cl->c.in), off = 0;
	struct msg_frame f;
	char want = 'P';

	memset(g, 0, sizeof(*g));
	for (;;) {
		if (msg_frame_peek(in + off, avail - off, LARGE_MESSAGE_MAX,
				   &f) != FRAME_OK || f.avail < f.body_len)
			return 0;
		if (want == 'P' && f.type == 'P') {
			if (!group_parse(cl, &f, g))
				return 0;
			want = 'B';
		} else if ((want == 'P' || want == 'B') && f.type == 'B') {
			if (!group_bind(cl, &f, g))
				return 0;
			want = 'D';
		} else if (want == 'D' && f.type == 'D') {
			if (f.body_len != 2 || f.body[0] != 'P' || f.body[1])
				return 0;
			g->has_describe = true;
			want = 'E';
		} else if ((want == 'D' || want == 'E') && f.type == 'E') {
			/* unnamed portal; a row limit (asyncpg's fetchrow asks
			 * for 1) is part of the key: the answer may end in
			 * PortalSuspended, and the Sync right after closes
			 * the portal, so it is complete all the same */
			if (f.body_len != 5 || f.body[0])
				return 0;
			g->max_rows = msg_be32(f.body + 1);
			want = 'S';
		} else if (want == 'S' && f.type == 'S') {
			return off + f.len;
		} else {
			return 0;
		}
		off += f.len;
	}
}

static uint8_t *
group_key(const struct client *cl, const struct ext_group *g,
	  size_t *keylen, uint64_t *hash)
{
	size_t dl = strlen(cl->database) + 1, ul = strlen(cl->user) + 1;
	uint64_t sig = cl->settings.sig;
	uint32_t plen = (uint32_t)g->parse_rest_len;
	uint8_t *k, *w;

	*keylen = 2 + sizeof(g->max_rows) + dl + ul + sizeof(sig) +
		  sizeof(plen) + g->parse_rest_len + g->bind_rest_len;
	k = w = malloc(*keylen);
	if (!k)
		return NULL;
	*w++ = 'E';
	*w++ = g->has_describe;
	memcpy(w, &g->max_rows, sizeof(g->max_rows));
	w += sizeof(g->max_rows);
	memcpy(w, cl->database, dl);
	w += dl;
	memcpy(w, cl->user, ul);
	w += ul;
	memcpy(w, &sig, sizeof(sig));
	w += sizeof(sig);
	memcpy(w, &plen, sizeof(plen));
	w += sizeof(plen);
	memcpy(w, g->parse_rest, g->parse_rest_len);
	w += g->parse_rest_len;
	memcpy(w, g->bind_rest, g->bind_rest_len);
	*hash = XXH3_64bits(k, *keylen);
	return k;
}

/* A hit on a group with a Parse: the client now has this unnamed
 * statement, which no backend has: re-Parse it if it is bound again. */
static int
remember_unnamed(struct client *cl, const struct ext_group *g)
{
	free(cl->unnamed_query);
	free(cl->unnamed_parse);
	cl->unnamed_query = strdup(g->text);
	cl->unnamed_parse = malloc(g->parse_rest_len);
	cl->unnamed_parse_len = g->parse_rest_len;
	if (!cl->unnamed_query || !cl->unnamed_parse)
		return -1;
	memcpy(cl->unnamed_parse, g->parse_rest, g->parse_rest_len);
	cl->unnamed_kind = SQL_OTHER;
	cl->unnamed_guc[0] = 0;
	free(cl->unnamed_sql);
	cl->unnamed_sql = NULL;
	cl->unnamed_local = false;
	return 0;
}

static void
put_empty(struct buf *b, char type)
{
	size_t start;

	if (msg_begin(b, type, &start) == 0)
		msg_end(b, start);
}

/*
 * The client, with no backend, sent an extended-protocol group: answer
 * it from the cache, or arm a capture for its answer.  True if answered.
 */
static bool
answer_group_from_cache(struct client *cl, const struct msg_frame *f)
{
	struct server *srv = cl->w->srv;
	struct cache_entry *e;
	struct ext_group g;
	struct plan plan;
	enum lookup found;
	const char *tag;
	const uint8_t *data;
	size_t total, len, keylen;
	uint64_t hash;
	uint8_t *key;

	if ((f->type != 'P' && f->type != 'B') || !srv->cache || cl->pinned ||
	    cl->in_block || !(total = read_group(cl, &g))) {
		capture_free(cl->group_capture);
		cl->group_capture = NULL;
		return false;
	}
	plan_stmt(cl, g.text, strlen(g.text),
		  g.bind_rest, g.bind_rest_len, &plan);
	if ((tag = lazy_tag(cl, &plan, g.text))) {
		if (g.has_parse && remember_unnamed(cl, &g))
			return false;
		if (g.has_parse)
			put_empty(&cl->c.out, '1');
		put_empty(&cl->c.out, '2');
		if (g.has_describe)
			put_empty(&cl->c.out, 'n');
		if (lazy_apply(cl, tag, g.text))
			return false;
		send_ready(cl, lazy_status(cl));
		observe_answered(cl, g.text, strlen(g.text),
				 params_hash_of(g.bind_rest, g.bind_rest_len),
				 NULL, 0, false);
		buf_consume(&cl->c.in, total);
		return true;
	}
	if (!plan.cacheable || !(key = group_key(cl, &g, &keylen, &hash))) {
		capture_free(cl->group_capture);
		cl->group_capture = NULL;
		return false;
	}
	if (cl->group_capture && cl->group_capture->keylen == keylen &&
	    memcmp(cl->group_capture->key, key, keylen) == 0) {
		free(key);	/* armed already: we were held up */
		return false;
	}
	capture_free(cl->group_capture);
	cl->group_capture = NULL;
	found = lookup(cl, hash, key, keylen, &e);
	if (found == LOOKUP_PARKED) {
		free(key);
		return true;	/* the group waits in the buffer */
	}
	if (!e)
		e = tier_lookup(cl, hash, key, keylen, &plan);
	if (!e) {	/* a miss: catch the answer on its way */
		cl->group_capture = capture_new(srv->cache, key, keylen, hash,
						plan.tags, plan.n_tags,
						srv->cfg.cache_max_entry);
		/* in a lazy block the group opens it: clean so far */
		if (cl->group_capture)
			cl->group_capture->in_block_ok =
				cl->lazy_begin || (cl->srv && cl->block_clean);
		tier_stamp_to_capture(cl, cl->group_capture);
		claim_to_capture(cl, cl->group_capture);
		return false;
	}
	free(key);
	if (g.has_parse && remember_unnamed(cl, &g)) {
		cache_entry_release(e);
		return false;
	}
	free(cl->portal_plan);
	cl->portal_plan = NULL;
	cl->portal_local = false;
	if (g.has_parse)
		put_empty(&cl->c.out, '1');
	put_empty(&cl->c.out, '2');
	data = cache_entry_data(e, &len);
	buf_append(&cl->c.out, data, len);
	l1_fill(cl, plan.tags, plan.n_tags);
	send_ready(cl, served_status(cl));
	observe_answered(cl, g.text, strlen(g.text),
			 params_hash_of(g.bind_rest, g.bind_rest_len), data, len,
			 true);
	cache_entry_release(e);
	buf_consume(&cl->c.in, total);
	return true;
}

/*
 * A statement other than the block's end in a failed lazy block: what
 * the server would say.  True when answered (the message is consumed;
 * extended messages are skipped up to their Sync).
 */
static bool
answer_failed_block(struct client *cl, const struct msg_frame *f)
{
	static const char msg[] = "current transaction is aborted, commands "
				  "ignored until end of transaction block";

	if (!cl->lazy_failed || cl->srv)
		return false;
	if (f->type == 'Q') {
		struct plan plan;

		plan_stmt(cl, (const char *)f->body, f->body_len - 1, NULL, 0,
			  &plan);
		if (lazy_end_tag(cl, &plan, (const char *)f->body))
			return false;	/* ROLLBACK: the lazy path ends it */
		send_error(cl, "ERROR", "25P02", msg);
		send_ready(cl, 'E');
	} else if (f->type == 'S') {
		send_ready(cl, 'E');
	} else if (f->type == 'P' || f->type == 'B') {
		struct ext_group g;
		struct plan plan;

		if (read_group(cl, &g)) {
			plan_stmt(cl, g.text,
				  strlen(g.text), NULL, 0, &plan);
			if (lazy_end_tag(cl, &plan, g.text))
				return false;
		}
		send_error(cl, "ERROR", "25P02", msg);
		cl->skip_until_sync = true;
	} else {
		send_error(cl, "ERROR", "25P02", msg);
		cl->skip_until_sync = true;
	}
	buf_consume(&cl->c.in, f->len);
	return true;
}

/* The group's Describe and Execute feed its capture; its Sync owns it. */
static void
attach_group_capture(struct client *cl, uint8_t type)
{
	struct pending *p;

	if (!cl->group_capture || !cl->srv ||
	    !(p = backend_last_pending(cl->srv)))
		return;
	if (type == 'D' || type == 'E') {
		p->feed = cl->group_capture;
	} else if (type == 'S') {
		p->capture = cl->group_capture;
		cl->group_capture = NULL;
	}
}

/* Bind of a statement that may write: remember it for its Execute. */
static int
plan_portal(struct client *cl, const char *portal, const char *text,
	    const uint8_t *bind, size_t bind_len)
{
	struct plan plan;

	free(cl->portal_plan);
	cl->portal_plan = NULL;
	if (!cache_of(cl) || !text)
		return 0;
	if (cl->group_capture && !*portal)
		return 0;	/* a group planned as a cacheable read */
	plan_stmt(cl, text, strlen(text), bind,
		  bind_len, &plan);
	if (!plan.cacheable)
		cl->block_clean = false;
	if (!plan.writes)
		return 0;
	if (*portal) {		/* named portals: count it as executed */
		note_writes(cl, &plan);
		return 0;
	}
	cl->portal_plan = malloc(sizeof(plan));
	if (!cl->portal_plan)
		return -1;
	*cl->portal_plan = plan;
	return 0;
}

/* What SHOW CLIENTS says of the client. */
static void
note_state(struct client *cl)
{
	if (cl->info && !cl->admin)
		atomic_store_explicit(&cl->info->state,
				      cl->srv ? CLIENT_ACTIVE :
				      cl->waiting ? CLIENT_WAITING :
						    CLIENT_IDLE,
				      memory_order_relaxed);
}

void
session_ready(struct client *cl, uint8_t tx_status, bool rolled_back,
	      bool idle)
{
	struct backend *be = cl->srv;
	bool reset_seen = false;

	if (cl->nbatch_ops)
		reset_seen = apply_batch(cl);
	if (tx_status != 'I')
		return;
	cl->block_clean = false;
	if (is_dirty(cl))
		invalidate_dirty(cl);
	if (cl->in_block && !rolled_back) {
		guc_state_copy(&cl->settings, &cl->tx_settings);
		if (be)
			be->state_sig = reset_seen ? STATE_SIG_UNKNOWN :
						     cl->settings.sig;
	}
	cl->in_block = false;
	if (be && idle && transaction_mode(cl) && !cl->pinned &&
	    backend_is_idle(be))
		pool_release(be);
	note_state(cl);
}

static int
send_hidden_query(void *be, const char *sql)
{
	return backend_send_hidden_query(be, sql);
}

/* Before a transaction starts on a backend, give it the client's state. */
static int
sync_settings(struct client *cl)
{
	struct backend *be = cl->srv;

	if (!backend_is_idle(be) || be->state_sig == cl->settings.sig)
		return 0;
	be->state_sig = cl->settings.sig;
	return guc_state_replay(&cl->settings, send_hidden_query, be);
}

/* ---- client messages ------------------------------------------------------ */

static int
send_plain(struct client *cl, const uint8_t *raw, size_t len,
	   enum pend_kind kind)
{
	struct pending p = { .kind = (uint8_t)kind };

	return backend_send(cl->srv, raw, len, &p);
}

static int
make_ops(const char *text, size_t len, struct client *cl,
	 struct guc_op **ops, uint16_t *nops)
{
	struct sql_stmt st[MAX_STATEMENTS];
	size_t n, i;

	*ops = NULL;
	*nops = 0;
	n = sqlclass_split(text, len, st, MAX_STATEMENTS);
	if (n > MAX_STATEMENTS) {
		cl->pinned = true;	/* too long to follow: keep it simple */
		return 0;
	}
	for (i = 0; i < n; i++) {
		if (st[i].kind == SQL_PIN)
			cl->pinned = true;
		if (!changes_state(st[i].kind))
			continue;
		if (!*ops && !(*ops = calloc(n, sizeof(**ops))))
			return -1;
		(*ops)[*nops].kind = st[i].kind;
		memcpy((*ops)[*nops].name, st[i].name, SQL_NAME_MAX);
		(*ops)[*nops].sql = strndup(text + st[i].off, st[i].len);
		(*nops)++;
	}
	return 0;
}

/* Answer with messages of our own, in order with the server's answers. */
static int
push_synth(struct client *cl, uint8_t type, const void *body, size_t len)
{
	struct pending p = { .kind = PEND_SYNTH, .synth = SYNTH_BYTES };
	uint8_t *m = malloc(MSG_HEADER_LEN + len);
	uint32_t n = (uint32_t)(len + 4);

	if (!m)
		return -1;
	m[0] = type;
	m[1] = (uint8_t)(n >> 24);
	m[2] = (uint8_t)(n >> 16);
	m[3] = (uint8_t)(n >> 8);
	m[4] = (uint8_t)n;
	if (len)
		memcpy(m + MSG_HEADER_LEN, body, len);
	p.bytes = m;
	p.nbytes = (uint32_t)(MSG_HEADER_LEN + len);
	return backend_send(cl->srv, NULL, 0, &p);
}

/* Drop a virtual statement (or all) as DEALLOCATE would. */
static const char *
deallocate_local(struct client *cl, enum sql_kind kind, const char *name)
{
	if (kind == SQL_DEALLOCATE_ALL) {
		stmt_map_clear(&cl->stmts);
		return "DEALLOCATE ALL";
	}
	stmt_map_del(&cl->stmts, name);
	return "DEALLOCATE";
}

/* DEALLOCATE of a virtual statement is answered by the proxy. */
static bool
local_deallocate(struct client *cl, const char *text, size_t len, int *rc)
{
	struct sql_stmt st;
	struct pending p = { .kind = PEND_SYNTH, .synth = SYNTH_DEALLOCATE };

	if (sqlclass_split(text, len, &st, 1) != 1 ||
	    (st.kind != SQL_DEALLOCATE && st.kind != SQL_DEALLOCATE_ALL))
		return false;
	if (st.kind == SQL_DEALLOCATE) {
		if (!stmt_map_get(&cl->stmts, st.name))
			return false;	/* not ours: let the server answer */
		p.stmt_name = strdup(st.name);
	}
	deallocate_local(cl, st.kind, st.name);
	*rc = backend_send(cl->srv, NULL, 0, &p);
	return true;
}

static int
handle_query(struct client *cl, const struct msg_frame *f, const uint8_t *raw)
{
	const char *text = (const char *)f->body;
	size_t len = f->body_len - 1;
	struct pending p = { .kind = PEND_QUERY };
	int rc = 0;

	if (cache_of(cl) && plan_query(cl, text, len, &p))
		return -1;
	if (!transaction_mode(cl) || !sqlclass_interesting(text, len))
		goto send;
	if (local_deallocate(cl, text, len, &rc)) {
		capture_free(p.capture);
		return rc;
	}
	if (make_ops(text, len, cl, &p.ops, &p.nops)) {
		capture_free(p.capture);
		return -1;
	}
send:
	if (observe_enabled())
		p.obs = obs_new(cl, text, len, 0);
	rc = backend_send(cl->srv, raw, f->len, &p);
	if (rc) {
		capture_free(p.capture);
		guc_ops_free(p.ops, p.nops);
	}
	return rc;
}

static void
classify(const char *query, enum sql_kind *kind, char *guc,
	 struct client *cl)
{
	size_t len = strlen(query);

	*kind = SQL_OTHER;
	guc[0] = 0;
	if (!sqlclass_interesting(query, len))
		return;
	*kind = sqlclass_classify(query, len, guc, SQL_NAME_MAX);
	if (*kind == SQL_PIN || memchr(query, ';', len))
		cl->pinned = true;
}

/* Parse p under its server name on the client's backend, owing pend. */
static int
send_server_parse(struct client *cl, const struct pstmt *p,
		  struct pending *pend)
{
	struct backend *be = cl->srv;
	char name[STMT_SERVER_NAME_LEN];
	size_t start;

	stmt_server_name(p->hash, name);
	if (msg_begin(&be->c.out, 'P', &start) ||
	    msg_put_str(&be->c.out, name) ||
	    msg_put_bytes(&be->c.out, p->parse_rest, p->rest_len))
		return -1;
	msg_end(&be->c.out, start);
	if (name_set_add(&be->prepared, p->hash))
		return -1;
	pend->stmt_hash = p->hash;
	return backend_send(be, NULL, 0, pend);
}

/* Make sure the backend has the server statement for p. */
static int
ensure_prepared(struct client *cl, const struct pstmt *p)
{
	struct pending pend = { .kind = PEND_HIDDEN_PARSE };

	if (name_set_has(&cl->srv->prepared, p->hash))
		return 0;
	return send_server_parse(cl, p, &pend);
}

static int
parse_named(struct client *cl, const char *name, const uint8_t *rest,
	    size_t rest_len, enum sql_kind kind, const char *guc)
{
	struct backend *be = cl->srv;
	struct pending pend = { .kind = PEND_SYNTH };
	struct pstmt *p;

	if (stmt_map_get(&cl->stmts, name)) {
		pend.synth = SYNTH_ERROR_EXISTS;
		pend.stmt_name = strdup(name);
		cl->skip_until_sync = true;
		return backend_send(be, NULL, 0, &pend);
	}
	p = stmt_map_add(&cl->stmts, name, rest, rest_len);
	if (!p)
		return -1;
	p->kind = kind;
	memcpy(p->guc, guc, SQL_NAME_MAX);
	pend.stmt_name = strdup(name);
	if (!pend.stmt_name)
		return -1;
	if (name_set_has(&be->prepared, p->hash)) {
		pend.synth = SYNTH_PARSE_COMPLETE;
		return backend_send(be, NULL, 0, &pend);
	}
	pend.kind = PEND_ONE;
	return send_server_parse(cl, p, &pend);
}

static int
handle_parse(struct client *cl, const struct msg_frame *f, const uint8_t *raw)
{
	struct msg_reader r;
	const char *name, *query;
	size_t rest_off;
	enum sql_kind kind;
	char guc[SQL_NAME_MAX];

	msg_reader_init(&r, f->body, f->body_len);
	name = msg_read_str(&r, NULL);
	rest_off = r.pos;
	query = msg_read_str(&r, NULL);
	if (!name || !query)
		return -2;
	if (!transaction_mode(cl)) {
		if (observe_enabled())
			observe_parse(cl, name, f->body + rest_off,
				      f->body_len - rest_off, query);
		return send_plain(cl, raw, f->len, PEND_ONE);
	}
	classify(query, &kind, guc, cl);
	if (*name)
		return parse_named(cl, name, f->body + rest_off,
				   f->body_len - rest_off, kind, guc);
	cl->unnamed_kind = kind;
	memcpy(cl->unnamed_guc, guc, SQL_NAME_MAX);
	free(cl->unnamed_query);
	cl->unnamed_query = cache_of(cl) || observe_enabled() ? strdup(query)
							       : NULL;
	free(cl->unnamed_parse);
	cl->unnamed_parse = NULL;
	free(cl->unnamed_sql);
	cl->unnamed_sql = changes_state(kind) ? strdup(query) : NULL;
	/* psycopg 3 sends DEALLOCATE through the extended protocol. */
	cl->unnamed_local = kind == SQL_DEALLOCATE_ALL ||
			    (kind == SQL_DEALLOCATE &&
			     stmt_map_get(&cl->stmts, guc));
	if (cl->unnamed_local)
		return push_synth(cl, '1', NULL, 0);
	return send_plain(cl, raw, f->len, PEND_ONE);
}

/* Rewrite a message whose statement name sits after 'prefix_len' bytes
 * of the body (Bind: portal; Describe/Close: the 'S' byte). */
static int
send_renamed(struct client *cl, const struct msg_frame *f, size_t prefix_len,
	     size_t name_len, const struct pstmt *p, enum pend_kind kind)
{
	struct backend *be = cl->srv;
	struct pending pend = { .kind = (uint8_t)kind };
	char name[STMT_SERVER_NAME_LEN];
	size_t start, tail = prefix_len + name_len + 1;

	if (ensure_prepared(cl, p))
		return -1;
	stmt_server_name(p->hash, name);
	if (msg_begin(&be->c.out, f->type, &start) ||
	    msg_put_bytes(&be->c.out, f->body, prefix_len) ||
	    msg_put_str(&be->c.out, name) ||
	    msg_put_bytes(&be->c.out, f->body + tail, f->body_len - tail))
		return -1;
	msg_end(&be->c.out, start);
	return backend_send(be, NULL, 0, &pend);
}

static void
track_portal(struct client *cl, const char *portal, const struct pstmt *p)
{
	if (*portal)
		return;
	free(cl->portal_sql);
	cl->portal_sql = NULL;
	cl->portal_kind = p ? p->kind : cl->unnamed_kind;
	memcpy(cl->portal_guc, p ? p->guc : cl->unnamed_guc, SQL_NAME_MAX);
	if (changes_state(cl->portal_kind))
		cl->portal_sql = strdup(p ? p->query : cl->unnamed_sql ?
						     cl->unnamed_sql : "");
}

/* The unnamed statement was answered from the cache: give it to the
 * backend before it is used. */
static int
reparse_unnamed(struct client *cl)
{
	struct pending pend = { .kind = PEND_HIDDEN_PARSE };
	struct backend *be = cl->srv;
	size_t start;

	if (!cl->unnamed_parse)
		return 0;
	if (msg_begin(&be->c.out, 'P', &start) ||
	    msg_put_str(&be->c.out, "") ||
	    msg_put_bytes(&be->c.out, cl->unnamed_parse,
			  cl->unnamed_parse_len))
		return -1;
	msg_end(&be->c.out, start);
	free(cl->unnamed_parse);
	cl->unnamed_parse = NULL;
	return backend_send(be, NULL, 0, &pend);
}

static int
handle_bind(struct client *cl, const struct msg_frame *f, const uint8_t *raw)
{
	struct msg_reader r;
	const char *portal, *stmt;
	size_t plen = 0, slen = 0;
	const struct pstmt *p = NULL;

	msg_reader_init(&r, f->body, f->body_len);
	portal = msg_read_str(&r, &plen);
	stmt = msg_read_str(&r, &slen);
	if (!portal || !stmt)
		return -2;
	if (observe_enabled())
		observe_bind(cl, portal, plen, stmt, f->body + r.pos,
			     f->body_len - r.pos);
	if (!transaction_mode(cl))
		return send_plain(cl, raw, f->len, PEND_ONE);
	if (!*stmt && reparse_unnamed(cl))
		return -1;
	if (*stmt)
		p = stmt_map_get(&cl->stmts, stmt);
	track_portal(cl, portal, p);
	if (plan_portal(cl, portal, p ? p->query : !*stmt ? cl->unnamed_query
						      : NULL,
			f->body + r.pos, f->body_len - r.pos))
		return -1;
	if (!*portal)
		cl->portal_local = !*stmt && cl->unnamed_local;
	if (!*stmt && cl->unnamed_local)
		return push_synth(cl, '2', NULL, 0);
	if (!p)
		return send_plain(cl, raw, f->len, PEND_ONE);
	return send_renamed(cl, f, plen + 1, slen, p, PEND_ONE);
}

static int
handle_describe_close(struct client *cl, const struct msg_frame *f,
		      const uint8_t *raw)
{
	enum pend_kind kind = f->type == 'D' ? PEND_DESCRIBE : PEND_ONE;
	struct pending pend = { .kind = PEND_SYNTH,
				.synth = SYNTH_CLOSE_COMPLETE };
	const struct pstmt *p;
	struct msg_reader r;
	const char *name;
	size_t nlen = 0;
	uint8_t what;

	msg_reader_init(&r, f->body, f->body_len);
	what = msg_read_u8(&r);
	name = msg_read_str(&r, &nlen);
	if (!name || (what != 'S' && what != 'P'))
		return -2;
	if (f->type == 'D' && !*name &&
	    (what == 'P' ? cl->portal_local : cl->unnamed_local)) {
		static const uint8_t no_params[2];

		if (what == 'S' && push_synth(cl, 't', no_params, 2))
			return -1;
		return push_synth(cl, 'n', NULL, 0);
	}
	if (what == 'S' && !*name && reparse_unnamed(cl))
		return -1;
	if (!transaction_mode(cl) && f->type == 'C' && what == 'S' && *name)
		stmt_map_del(&cl->obs_stmts, name);
	if (!transaction_mode(cl) || what == 'P' || !*name ||
	    !(p = stmt_map_get(&cl->stmts, name)))
		return send_plain(cl, raw, f->len, kind);
	if (f->type == 'D')
		return send_renamed(cl, f, 1, nlen, p, PEND_DESCRIBE);
	/* Close of a virtual statement: other clients may share it. */
	stmt_map_del(&cl->stmts, name);
	return backend_send(cl->srv, NULL, 0, &pend);
}

static int
handle_execute(struct client *cl, const struct msg_frame *f,
	       const uint8_t *raw)
{
	struct pending p = { .kind = PEND_EXECUTE };
	const char *tag;

	if (f->body_len && f->body[0] == 0 && cl->portal_plan)
		note_writes(cl, cl->portal_plan);
	if (f->body_len && f->body[0] == 0 && cl->portal_local) {
		tag = deallocate_local(cl, cl->portal_kind, cl->portal_guc);
		return push_synth(cl, 'C', tag, strlen(tag) + 1);
	}
	if (transaction_mode(cl) && f->body_len && f->body[0] == 0 &&
	    changes_state(cl->portal_kind)) {
		p.ops = calloc(1, sizeof(*p.ops));
		if (!p.ops)
			return -1;
		p.nops = 1;
		p.ops[0].kind = cl->portal_kind;
		memcpy(p.ops[0].name, cl->portal_guc, SQL_NAME_MAX);
		p.ops[0].sql = cl->portal_sql ? strdup(cl->portal_sql) : NULL;
	}
	if (observe_enabled())
		p.obs = observe_execute(cl, f->body, f->body_len);
	return backend_send(cl->srv, raw, f->len, &p);
}

static int
dispatch(struct client *cl, const struct msg_frame *f, const uint8_t *raw)
{
	switch (f->type) {
	case 'Q':
		if (f->body_len == 0 || f->body[f->body_len - 1] != 0)
			return -2;
		return handle_query(cl, f, raw);
	case 'P':
		return handle_parse(cl, f, raw);
	case 'B':
		return handle_bind(cl, f, raw);
	case 'D':
	case 'C':
		return handle_describe_close(cl, f, raw);
	case 'E':
		return handle_execute(cl, f, raw);
	case 'S':
		return send_plain(cl, raw, f->len, PEND_SYNC);
	case 'F':
		return send_plain(cl, raw, f->len, PEND_QUERY);
	default:	/* H, d, c, f: nothing is owed for them */
		return backend_send(cl->srv, raw, f->len, NULL);
	}
}

/* ---- the message loop ------------------------------------------------------- */

static bool
server_blocked(const struct client *cl)
{
	return cl->srv && buf_pending(&cl->srv->c.out) > SERVER_OUT_LIMIT;
}

static bool
valid_type(uint8_t t, uint32_t *max)
{
	*max = SMALL_MESSAGE_MAX;
	switch (t) {
	case 'Q': case 'P': case 'B': case 'd': case 'F':
		*max = LARGE_MESSAGE_MAX;
		return true;
	case 'E': case 'D': case 'C': case 'S': case 'H': case 'X':
	case 'c': case 'f':
		return true;
	default:
		return false;
	}
}

/* Peek the next complete message; 1 = got one, 0 = need more, -1 = bad. */
static int
next_message(struct client *cl, struct msg_frame *f)
{
	const uint8_t *in = buf_head(&cl->c.in);
	size_t avail = buf_pending(&cl->c.in);
	char msg[80];
	uint32_t max;

	if (avail < MSG_HEADER_LEN)
		return 0;
	if (!valid_type(in[0], &max)) {
		snprintf(msg, sizeof(msg), "invalid frontend message type %d",
			 in[0]);
		fatal(cl, "08P01", msg);
		return -1;
	}
	if (msg_frame_peek(in, avail, max, f) != FRAME_OK) {
		fatal(cl, "08P01", "invalid message length");
		return -1;
	}
	return f->avail == f->body_len;
}

/* Messages the server would discard anyway (after an error, before
 * Sync) are dropped here.  Returns true when the message was consumed. */
static bool
skip_message(struct client *cl, const struct msg_frame *f)
{
	if (f->type != 'S' && (cl->skip_until_sync ||
			       (cl->srv && cl->srv->skipping))) {
		buf_consume(&cl->c.in, f->len);
		return true;
	}
	if (f->type == 'S' && cl->skip_until_sync && !cl->srv) {
		cl->skip_until_sync = false;
		buf_consume(&cl->c.in, f->len);
		send_ready(cl, lazy_status(cl));
		return true;
	}
	cl->skip_until_sync = false;
	return false;
}

/*
 * Parse + Sync (libpq's PQprepare) of a statement that some backend has
 * already accepted, by a client outside any transaction: answer it here.
 * A client blocked in PQprepare would otherwise hold up every other
 * client of its thread (pgbench) while the pool is busy.  If the
 * statement has gone bad since, the re-Parse before its Bind reports it.
 */
static bool
prepare_locally(struct client *cl, const struct msg_frame *f)
{
	const uint8_t *next = f->body + f->body_len;
	size_t after = buf_pending(&cl->c.in) - f->len, rest_off;
	struct msg_reader r;
	const char *name, *query;
	enum sql_kind kind;
	char guc[SQL_NAME_MAX];
	struct pstmt *p;

	if (f->type != 'P' || !transaction_mode(cl) || after < 5 ||
	    next[0] != 'S' || msg_be32(next + 1) != 4)
		return false;
	msg_reader_init(&r, f->body, f->body_len);
	name = msg_read_str(&r, NULL);
	rest_off = r.pos;
	query = msg_read_str(&r, NULL);
	if (!name || !*name || !query || stmt_map_get(&cl->stmts, name) ||
	    !name_set_has(&cl->pool->parsed_ok,
			  stmt_hash_of(f->body + rest_off,
				       f->body_len - rest_off)))
		return false;
	classify(query, &kind, guc, cl);
	p = stmt_map_add(&cl->stmts, name, f->body + rest_off,
			 f->body_len - rest_off);
	if (!p)
		return false;
	p->kind = kind;
	memcpy(p->guc, guc, SQL_NAME_MAX);
	put_empty(&cl->c.out, '1');
	send_ready(cl, 'I');
	buf_consume(&cl->c.in, f->len + 5);
	return true;
}

/* A message that must wait keeps its arrival time for when it goes on. */
static void
hold_message(struct client *cl)
{
	cl->held_us = cl->arrival_us;
}

static void
process_messages(struct client *cl)
{
	int64_t turn_us = observe_enabled() ? clock_unix_us() : 0;
	struct msg_frame f;
	int rc;

	while (cl->state == CL_ACTIVE && !cl->cache_wait) {
		rc = next_message(cl, &f);
		if (rc <= 0)
			return;
		cl->arrival_us = cl->held_us ? cl->held_us : turn_us;
		cl->held_us = 0;
		if (skip_message(cl, &f))
			continue;
		if (f.type == 'X') {
			session_close(cl, "client terminated");
			return;
		}
		if (cl->admin) {
			admin_message(cl, &f);
			if (cl->state == CL_ACTIVE)
				buf_consume(&cl->c.in, f.len);
			continue;
		}
		if (!cl->srv && prepare_locally(cl, &f))
			continue;
		if (answer_failed_block(cl, &f) ||
		    (may_serve(cl) && (answer_from_cache(cl, &f) ||
				       answer_group_from_cache(cl, &f))))
			continue;
		if (!cl->srv && (cl->waiting || !pool_acquire(cl->pool, cl))) {
			hold_message(cl);
			return;
		}
		if (server_blocked(cl)) {
			hold_message(cl);
			return;	/* session_process flushes and resumes */
		}
		/* session mode: only the start-up settings, once */
		if ((transaction_mode(cl) || cl->startup_settings.n) &&
		    (sync_settings(cl) || materialize_begin(cl)))
			rc = -1;
		else
			rc = dispatch(cl, &f, buf_head(&cl->c.in));
		if (rc == -2) {
			fatal(cl, "08P01", "malformed message");
			return;
		}
		if (rc < 0) {
			fatal(cl, "53200", "out of memory");
			return;
		}
		attach_group_capture(cl, f.type);
		buf_consume(&cl->c.in, f.len);
	}
	if (cl->cache_wait)	/* parked behind an identical query */
		hold_message(cl);
}

static bool
process_auth(struct client *cl)
{
	struct msg_frame f;
	enum msg_frame_status st;

	st = msg_frame_peek(buf_head(&cl->c.in), buf_pending(&cl->c.in),
			    SMALL_MESSAGE_MAX, &f);
	if (st == FRAME_NEED_MORE || (st == FRAME_OK && f.avail < f.body_len))
		return false;
	if (st != FRAME_OK || f.type != 'p') {
		fatal(cl, "08P01", "expected SASL response");
		return false;
	}
	handle_password(cl, &f);
	if (cl->state != CL_CLOSED)
		buf_consume(&cl->c.in, f.len);
	return cl->state == CL_AUTH_CONT;
}

static bool
drive_client_tls(struct client *cl)
{
	char err[256];
	int r = tls_handshake(&cl->c, err, sizeof(err));

	if (r == 1)
		return false;
	if (r < 0) {
		log_debug("client TLS: %s", err);
		session_close(cl, err);
		return false;
	}
	cl->state = CL_STARTUP;
	cl->c.readable = true;	/* TLS may hold decrypted bytes */
	return true;
}

static void
dispatch_by_state(struct client *cl)
{
	switch (cl->state) {
	case CL_STARTUP:
		while (process_startup(cl))
			;
		break;
	case CL_AUTH_INIT:
	case CL_AUTH_CONT:
		while (process_auth(cl))
			;
		break;
	case CL_ACTIVE:
		process_messages(cl);
		break;
	default:
		break;
	}
}

static void
session_process(struct client *cl)
{
	enum conn_io io = CONN_IO_DONE;
	size_t want, before;

	for (;;) {
		if (cl->state == CL_CLOSED)
			return;
		if (cl->state == CL_TLS && !drive_client_tls(cl))
			break;
		want = cl->state == CL_ACTIVE ?
			       msg_read_want(buf_head(&cl->c.in),
					     buf_pending(&cl->c.in),
					     CLIENT_READ_LIMIT,
					     LARGE_MESSAGE_MAX) :
			       CLIENT_READ_LIMIT;
		if (cl->c.readable && buf_pending(&cl->c.in) < want)
			io = conn_read(&cl->c, want);
		before = buf_pending(&cl->c.in);
		dispatch_by_state(cl);
		if (cl->state == CL_CLOSED)
			return;
		buf_compact(&cl->c.in);
		if (server_blocked(cl)) {
			/* Only a full socket brings an EPOLLOUT to resume us. */
			backend_flush(cl->srv);
			if (cl->state == CL_CLOSED || !cl->srv ||
			    server_blocked(cl))
				break;
			continue;
		}
		if (io == CONN_IO_ERROR || !cl->c.readable ||
		    buf_pending(&cl->c.in) >= before)
			break;	/* drained, or waiting for a backend */
	}
	if (cl->srv)
		backend_flush(cl->srv);
	session_flush(cl);
	if (cl->state == CL_CLOSED)
		return;
	note_state(cl);
	if (io == CONN_IO_ERROR)
		session_close(cl, cl->c.error);
	else if (!buf_pending(&cl->c.in))
		buf_release(&cl->c.in);
}

void
session_resume(struct client *cl)
{
	if (cl->state == CL_WAIT_LOGIN && cl->srv) {
		send_welcome(cl);
		if (transaction_mode(cl) && backend_is_idle(cl->srv))
			pool_release(cl->srv);
	}
	session_process(cl);
}

/* Drop the client's request up to its end (Query or Sync). */
static void
drop_request(struct client *cl)
{
	struct msg_frame f;

	if (cl->lazy_begin)	/* the block it was in has failed */
		cl->lazy_failed = true;
	while (next_message(cl, &f) > 0) {
		buf_consume(&cl->c.in, f.len);
		if (f.type == 'Q' || f.type == 'F' || f.type == 'S') {
			send_ready(cl, lazy_status(cl));
			return;
		}
	}
	if (cl->state != CL_CLOSED)
		cl->skip_until_sync = true;
}

void
session_fail_request(struct client *cl, const char *sqlstate,
		     const char *msg)
{
	if (cl->state == CL_WAIT_LOGIN) {
		fatal(cl, sqlstate, msg);
		return;
	}
	if (cache_of(cl)) {	/* waiters behind us must not wait longer */
		claim_end(cl);
		capture_free(cl->group_capture);
		cl->group_capture = NULL;
	}
	send_error(cl, "ERROR", sqlstate, msg);
	drop_request(cl);
	session_flush(cl);
}

static void
client_on_event(struct loop_watch *wt, uint32_t events)
{
	struct client *cl = qlist_entry(wt, struct client, c.watch);

	if (cl->state == CL_CLOSED)
		return;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		cl->c.readable = true;
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		cl->c.hangup = true;
	if (events & EPOLLOUT && buf_pending(&cl->c.out)) {
		session_flush(cl);
		if (cl->state == CL_CLOSED)
			return;
		/* The backend stopped reading while we were full. */
		if (cl->srv && !buf_pending(&cl->c.out) &&
		    (buf_pending(&cl->srv->c.in) || cl->srv->c.readable))
			backend_process(cl->srv);
		if (cl->state == CL_CLOSED)
			return;
	}
	session_process(cl);
}
