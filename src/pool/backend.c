#include "pool/backend.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cache/capture.h"
#include "core/log.h"
#include "core/server.h"
#include "net/tls.h"
#include "pool/pool.h"
#include "pool/session.h"
#include "proto/md5auth.h"
#include "proto/msg.h"

enum {
	BE_MAX_MESSAGE = 0x3fffffff,	/* 1 GB, like the server's limit */
	BE_READ_LIMIT = 256 * 1024,
	CLIENT_OUT_LIMIT = 512 * 1024,	/* stop reading the server above */
};

static void backend_on_event(struct loop_watch *wt, uint32_t events);

/* ---- the queue of owed responses ------------------------------------ */

static struct pending *
q_head(struct backend *be)
{
	return be->qlen ? &be->q[be->qhead] : NULL;
}

static int
q_push(struct backend *be, const struct pending *p)
{
	struct pending *nq;
	uint32_t i, cap;

	if (be->qlen == be->qcap) {
		cap = be->qcap ? be->qcap * 2 : 16;
		nq = malloc(cap * sizeof(*nq));
		if (!nq)
			return -1;
		for (i = 0; i < be->qlen; i++)
			nq[i] = be->q[(be->qhead + i) % be->qcap];
		free(be->q);
		be->q = nq;
		be->qcap = cap;
		be->qhead = 0;
	}
	be->q[(be->qhead + be->qlen) % be->qcap] = *p;
	be->qlen++;
	return 0;
}

static void
pending_free(struct pending *p)
{
	free(p->stmt_name);
	free(p->bytes);
	guc_ops_free(p->ops, p->nops);
	capture_free(p->capture);
	free(p->obs);
	p->obs = NULL;
	p->capture = NULL;
	p->bytes = NULL;
	p->stmt_name = NULL;
	p->ops = NULL;
	p->nops = 0;
}

static void
q_pop(struct backend *be)
{
	pending_free(&be->q[be->qhead]);
	be->qhead = (be->qhead + 1) % be->qcap;
	be->qlen--;
}

/* A Parse that will not happen after all: forget what it created. */
static void
undo_parse(struct backend *be, struct pending *p)
{
	if (p->stmt_hash)
		name_set_del(&be->prepared, p->stmt_hash);
	if (p->stmt_name && be->client)
		stmt_map_del(&be->client->stmts, p->stmt_name);
}

bool
backend_is_idle(const struct backend *be)
{
	return be->state == BE_READY && be->qlen == 0 &&
	       be->tx_status == 'I' && !be->skipping;
}

struct pending *
backend_last_pending(struct backend *be)
{
	return be->qlen ? &be->q[(be->qhead + be->qlen - 1) % be->qcap] : NULL;
}

bool
backend_owes_nothing(const struct backend *be, bool in_block)
{
	uint32_t i;

	if (be->state != BE_READY || be->skipping ||
	    (be->tx_status != 'I' && !(in_block && be->tx_status == 'T')))
		return false;
	for (i = 0; i < be->qlen; i++)
		if (be->q[(be->qhead + i) % be->qcap].kind !=
		    PEND_HIDDEN_QUERY)
			return false;
	return true;
}

/* ---- sending ---------------------------------------------------------- */

static void run_synth(struct backend *be);

int
backend_send(struct backend *be, const uint8_t *msg, size_t len,
	     const struct pending *pend)
{
	struct pending copy;

	if (len && buf_append(&be->c.out, msg, len))
		return -1;
	if (!pend)
		return 0;
	if (pend->kind == PEND_SYNC)
		be->skipping = false;
	if (be->skipping || q_push(be, pend)) {
		copy = *pend;	/* the server ignores it: nothing is owed */
		pending_free(&copy);
		return be->skipping ? 0 : -1;
	}
	if (pend->kind == PEND_SYNTH)
		run_synth(be);
	return 0;
}

int
backend_send_hidden_query(struct backend *be, const char *sql)
{
	struct pending p = { .kind = PEND_HIDDEN_QUERY };
	size_t start;

	if (msg_begin(&be->c.out, 'Q', &start) ||
	    msg_put_str(&be->c.out, sql))
		return -1;
	msg_end(&be->c.out, start);
	return q_push(be, &p);
}

void
backend_flush(struct backend *be)
{
	if (be->state == BE_CLOSED || !buf_pending(&be->c.out))
		return;
	if (conn_flush(&be->c) == CONN_IO_ERROR)
		backend_close(be, be->c.error);
}

/* ---- life cycle ------------------------------------------------------- */

static int
open_socket(const struct server *srv)
{
	int fd = socket(srv->upstream_addr.ss_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (srv->upstream_addr.ss_family != AF_UNIX)
		conn_tune_socket(fd);
	if (connect(fd, (const struct sockaddr *)&srv->upstream_addr,
		    srv->upstream_addrlen) < 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

struct backend *
backend_connect(struct pool *p, char *err, size_t errlen)
{
	struct worker *w = p->w;
	struct backend *be;
	int fd = open_socket(w->srv);

	if (fd < 0) {
		snprintf(err, errlen, "could not connect to upstream: %s",
			 strerror(errno));
		return NULL;
	}
	be = calloc(1, sizeof(*be));
	if (!be) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	conn_init(&be->c, fd);
	be->c.watch.cb = backend_on_event;
	be->w = w;
	be->pool = p;
	be->state = BE_CONNECTING;
	be->since_ms = w->now_ms;
	be->tx_status = 'I';
	name_set_init(&be->prepared);
	qlist_init(&be->link);
	if (loop_add(&w->loop, fd, &be->c.watch)) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		conn_close(&be->c);
		free(be);
		return NULL;
	}
	qlist_insert_tail(&p->connecting, &be->link);
	p->nbackends++;
	return be;
}

void
backend_free(struct backend *be)
{
	uint32_t i;

	for (i = 0; i < be->qlen; i++)
		pending_free(&be->q[(be->qhead + i) % be->qcap]);
	free(be->q);
	name_set_free(&be->prepared);
	buf_free(&be->login_params);
	if (be->scram) {
		scram_client_clear(be->scram);
		free(be->scram);
	}
	free(be);
}

void
backend_close(struct backend *be, const char *why)
{
	struct client *cl = be->client;
	bool never_ready = be->state != BE_READY;

	if (be->state == BE_CLOSED)
		return;
	log_debug("backend pid=%u closed: %s", be->pid, why ? why : "");
	be->state = BE_CLOSED;
	loop_del(&be->w->loop, be->c.fd);
	conn_close(&be->c);
	qlist_remove(&be->link);
	be->client = NULL;
	pool_backend_gone(be, never_ready ? (why ? why : "connection failed") :
				       NULL);
	qlist_insert_tail(&be->w->dead_backends, &be->link);
	if (cl) {
		cl->srv = NULL;
		session_backend_lost(cl, why);
	}
}

/* ---- log-in ------------------------------------------------------------ */

static int
send_startup(struct backend *be)
{
	struct buf *b = &be->c.out;
	size_t start = b->len;
	static const uint8_t zero[4];

	if (buf_append(b, zero, 4) || msg_put_i32(b, PROTO_V3) ||
	    msg_put_str(b, "user") || msg_put_str(b, be->pool->shared->user) ||
	    msg_put_str(b, "database") ||
	    msg_put_str(b, be->pool->shared->database) ||
	    msg_put_u8(b, 0))
		return -1;
	b->data[start] = (uint8_t)((b->len - start) >> 24);
	b->data[start + 1] = (uint8_t)((b->len - start) >> 16);
	b->data[start + 2] = (uint8_t)((b->len - start) >> 8);
	b->data[start + 3] = (uint8_t)(b->len - start);
	be->state = BE_LOGIN;
	return 0;
}

static int
send_ssl_request(struct backend *be)
{
	uint8_t req[8];

	req[0] = 0, req[1] = 0, req[2] = 0, req[3] = 8;
	req[4] = (uint8_t)(PROTO_SSL >> 24);
	req[5] = (uint8_t)(PROTO_SSL >> 16);
	req[6] = (uint8_t)(PROTO_SSL >> 8);
	req[7] = (uint8_t)PROTO_SSL;
	be->state = BE_SSL_REQUEST;
	return buf_append(&be->c.out, req, sizeof(req));
}

static void
on_connected(struct backend *be)
{
	const struct server *srv = be->w->srv;
	int soerr = 0;
	socklen_t sl = sizeof(soerr);

	if (getsockopt(be->c.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		soerr = errno;
	if (soerr) {
		char why[160];

		snprintf(why, sizeof(why), "could not connect to upstream: %s",
			 strerror(soerr));
		backend_close(be, why);
		return;
	}
	if (srv->upstream_tls && srv->upstream_addr.ss_family != AF_UNIX ?
		    send_ssl_request(be) : send_startup(be))
		backend_close(be, "out of memory");
}

static int
send_password_msg(struct backend *be, const void *data, size_t len)
{
	size_t start;

	if (msg_begin(&be->c.out, 'p', &start) ||
	    msg_put_bytes(&be->c.out, data, len))
		return -1;
	msg_end(&be->c.out, start);
	return 0;
}

static int
sasl_start(struct backend *be, struct msg_reader *r, char *err, size_t el)
{
	const struct user_cred *cred = be->pool->cred;
	struct shared_pool *sp = be->pool->shared;
	char first[256];
	const char *mech;
	bool found = false;
	size_t start;
	int n, rc = 0;

	while ((mech = msg_read_str(r, NULL)) && *mech)
		if (strcmp(mech, "SCRAM-SHA-256") == 0)
			found = true;
	if (!found) {
		snprintf(err, el, "upstream offers no SCRAM-SHA-256");
		return -1;
	}
	be->scram = calloc(1, sizeof(*be->scram));
	if (!be->scram)
		return -1;
	if (cred->password[0]) {
		rc = scram_client_init(be->scram, cred->password);
	} else {
		pthread_mutex_lock(&sp->key_lock);
		rc = sp->have_keys ? scram_client_init_secret(be->scram,
				sp->client_key, &cred->secret) : -1;
		pthread_mutex_unlock(&sp->key_lock);
	}
	n = rc ? -1 : scram_client_first(be->scram, first, sizeof(first));
	if (n < 0) {
		snprintf(err, el, "no credentials to log in upstream as %s",
			 cred->name);
		return -1;
	}
	if (msg_begin(&be->c.out, 'p', &start) ||
	    msg_put_str(&be->c.out, "SCRAM-SHA-256") ||
	    msg_put_i32(&be->c.out, n) ||
	    msg_put_bytes(&be->c.out, first, (size_t)n))
		return -1;
	msg_end(&be->c.out, start);
	return 0;
}

static int
handle_auth(struct backend *be, const struct msg_frame *f, char *err,
	    size_t el)
{
	const struct user_cred *cred = be->pool->cred;
	struct msg_reader r;
	int32_t code;
	char out[512], md5[36];
	int n;

	msg_reader_init(&r, f->body, f->body_len);
	code = msg_read_i32(&r);
	switch (code) {
	case 0:
		return 0;
	case 3:
		return send_password_msg(be, cred->password,
					 strlen(cred->password) + 1);
	case 5: {
		const uint8_t *salt = msg_read_bytes(&r, 4);

		if (!salt)
			break;
		md5auth_response(cred->name, cred->password, salt, md5);
		return send_password_msg(be, md5, strlen(md5) + 1);
	}
	case 10:
		return sasl_start(be, &r, err, el);
	case 11:
		if (!be->scram)
			break;
		n = scram_client_final(be->scram, (const char *)f->body + 4,
				       f->body_len - 4, out, sizeof(out), err,
				       el);
		return n < 0 ? -1 : send_password_msg(be, out, (size_t)n);
	case 12:
		if (!be->scram)
			break;
		return scram_client_verify(be->scram,
					   (const char *)f->body + 4,
					   f->body_len - 4, err, el);
	default:
		snprintf(err, el, "upstream asks for unsupported auth %d",
			 code);
		return -1;
	}
	snprintf(err, el, "malformed authentication request from upstream");
	return -1;
}

static void
login_error(struct backend *be, const struct msg_frame *f)
{
	char why[300];
	size_t ml = 0, cl = 0;
	const char *m = msg_error_field(f->body, f->body_len, 'M', &ml);
	const char *c = msg_error_field(f->body, f->body_len, 'C', &cl);

	snprintf(why, sizeof(why), "upstream refused log-in: %.*s (%.*s)",
		 (int)(m ? ml : 0), m ? m : "", (int)(c ? cl : 0),
		 c ? c : "");
	backend_close(be, why);
}

/* Returns false when the backend was closed. */
static bool
handle_login_msg(struct backend *be, const struct msg_frame *f)
{
	char err[256] = "";

	switch (f->type) {
	case 'R':
		if (handle_auth(be, f, err, sizeof(err)) == 0)
			return true;
		backend_close(be, err[0] ? err : "authentication failed");
		return false;
	case 'E':
		login_error(be, f);
		return false;
	case 'S':
		if (buf_append(&be->login_params, f->body - MSG_HEADER_LEN,
			       f->len) == 0)
			return true;
		backend_close(be, "out of memory");
		return false;
	case 'K':
		if (f->body_len >= 8) {
			be->pid = msg_be32(f->body);
			be->key = msg_be32(f->body + 4);
		}
		return true;
	case 'Z':
		be->state = BE_READY;
		be->tx_status = 'I';
		if (be->scram) {
			scram_client_clear(be->scram);
			free(be->scram);
			be->scram = NULL;
		}
		pool_backend_ready(be);
		return be->state == BE_READY;
	default:
		return true;	/* NoticeResponse, NegotiateProtocolVersion */
	}
}

static bool drive_tls(struct backend *be);

static bool
handle_ssl_answer(struct backend *be)
{
	const struct server *srv = be->w->srv;
	char err[256];
	uint8_t answer;

	if (buf_pending(&be->c.in) < 1)
		return false;
	answer = *buf_head(&be->c.in);
	buf_consume(&be->c.in, 1);
	if (answer == 'S') {
		if (buf_pending(&be->c.in)) {
			backend_close(be, "upstream sent data before TLS");
			return false;
		}
		if (tls_attach(&be->c, srv->upstream_tls, 0,
			       srv->cfg.upstream.sslmode == SSLMODE_VERIFY_FULL ?
				       srv->upstream_host : NULL)) {
			backend_close(be, "TLS setup failed");
			return false;
		}
		be->state = BE_TLS;
		drive_tls(be);	/* send ClientHello: the server waits for it */
		return be->state != BE_CLOSED;
	}
	if (answer == 'N' && srv->cfg.upstream.sslmode < SSLMODE_REQUIRE) {
		if (send_startup(be) == 0)
			return true;
	}
	snprintf(err, sizeof(err), "upstream %s TLS (sslmode requires it)",
		 answer == 'N' ? "refused" : "answered SSLRequest badly:");
	backend_close(be, err);
	return false;
}

static bool
drive_tls(struct backend *be)
{
	char err[256];
	int r = tls_handshake(&be->c, err, sizeof(err));

	if (r == 1)
		return false;
	if (r < 0) {
		backend_close(be, err);
		return false;
	}
	if (send_startup(be)) {
		backend_close(be, "out of memory");
		return false;
	}
	be->c.readable = true;	/* TLS may hold decrypted bytes */
	return true;
}

/* ---- routing server messages to the client ------------------------------ */

static void
to_client(struct backend *be, const uint8_t *msg, size_t len)
{
	struct client *cl = be->client;

	if (!cl || cl->state == CL_CLOSED)
		return;
	if (buf_append(&cl->c.out, msg, len)) {
		session_close(cl, "out of memory");
		return;
	}
	cl->flush_pending = true;
}

static void inject_synth(struct backend *be, struct pending *p);
/* Answer every SYNTH entry that reached the head of the queue. */
static void
run_synth(struct backend *be)
{
	struct client *cl = be->client;
	struct pending *p;
	bool answered_query = false;

	while ((p = q_head(be)) && p->kind == PEND_SYNTH) {
		inject_synth(be, p);
		answered_query |= p->synth == SYNTH_DEALLOCATE;
		q_pop(be);
	}
	/* A DEALLOCATE we answered ends a request like a ReadyForQuery. */
	if (answered_query && cl && cl->srv == be)
		session_ready(cl, be->tx_status, false, be->qlen == 0);
}

static void
inject_synth(struct backend *be, struct pending *p)
{
	struct client *cl = be->client;
	struct buf *b;
	size_t start;
	char msg[200];

	if (!cl || cl->state == CL_CLOSED)
		return;
	b = &cl->c.out;
	switch (p->synth) {
	case SYNTH_PARSE_COMPLETE:
	case SYNTH_CLOSE_COMPLETE:
		msg_begin(b, p->synth == SYNTH_PARSE_COMPLETE ? '1' : '3',
			  &start);
		msg_end(b, start);
		break;
	case SYNTH_DEALLOCATE:
		msg_begin(b, 'C', &start);
		msg_put_str(b, p->stmt_name ? "DEALLOCATE" : "DEALLOCATE ALL");
		msg_end(b, start);
		msg_begin(b, 'Z', &start);
		msg_put_u8(b, be->tx_status);
		msg_end(b, start);
		break;
	case SYNTH_BYTES:
		buf_append(b, p->bytes, p->nbytes);
		break;
	case SYNTH_ERROR_EXISTS:
		snprintf(msg, sizeof(msg),
			 "prepared statement \"%.100s\" already exists",
			 p->stmt_name ? p->stmt_name : "");
		msg_put_error(b, 'E', "ERROR", "42P05", msg);
		break;
	}
	cl->flush_pending = true;
}

static void observe_finish(struct backend *be, struct pending *p);

/* An ErrorResponse in the extended protocol: the server now skips every
 * message up to Sync, so nothing is owed for them. */
static void
extended_error(struct backend *be)
{
	struct pending *p;

	while ((p = q_head(be)) && p->kind != PEND_SYNC &&
	       p->kind != PEND_QUERY && p->kind != PEND_HIDDEN_QUERY) {
		if (p->kind == PEND_ONE || p->kind == PEND_HIDDEN_PARSE ||
		    p->kind == PEND_SYNTH)
			undo_parse(be, p);
		if (p->obs) {	/* an Execute the error cancelled */
			p->obs->failed = true;
			observe_finish(be, p);
		}
		q_pop(be);
	}
	if (!p)
		be->skipping = true;
	if (be->client)
		session_apply_ops(be->client, NULL, 0, false);
}

static void
finish_ready(struct backend *be, const struct msg_frame *f, bool hidden)
{
	struct pending *p = q_head(be);
	struct client *cl = be->client;

	be->tx_status = f->body_len ? f->body[0] : 'I';
	if (cl && !hidden)
		session_apply_ops(cl, p->ops, p->nops, !p->failed);
	q_pop(be);
	run_synth(be);
	if (cl && !hidden && cl->srv == be)
		session_ready(cl, be->tx_status, be->last_tag_rollback,
			      be->qlen == 0);
	else if (!cl && be->releasing && be->qlen == 0)
		pool_release(be);
}

static bool
route_async(struct backend *be, const struct msg_frame *f,
	    const uint8_t *raw)
{
	struct pending *p;

	switch (f->type) {
	case 'N':	/* NoticeResponse */
	case 'S':	/* ParameterStatus */
		/* A replay could not repeat it: do not cache this answer. */
		if ((p = q_head(be)) && (p->capture || p->feed))
			capture_spoil(p->capture ? p->capture : p->feed);
		/* fall through */
	case 'A':	/* NotificationResponse */
		to_client(be, raw, f->len);
		return true;
	default:
		return false;
	}
}

static void
route_hidden(struct backend *be, struct pending *p, const struct msg_frame *f)
{
	if (f->type == 'E') {
		size_t ml = 0;
		const char *m = msg_error_field(f->body, f->body_len, 'M', &ml);

		log_warn("backend pid=%u: internal query failed: %.*s",
			 be->pid, (int)(m ? ml : 0), m ? m : "");
		be->state_sig = STATE_SIG_UNKNOWN;
		p->failed = true;
	} else if (f->type == 'Z') {
		finish_ready(be, f, true);
	}
}

/* A cacheable query's answer: copy it aside, store it when it is over. */
static void
feed_capture(struct backend *be, struct pending *p, const struct msg_frame *f,
	     const uint8_t *raw)
{
	if (f->type == 'E') {
		capture_spoil(p->capture);
	} else if (f->type != 'Z') {
		capture_add(p->capture, raw, f->len);
	} else {
		capture_finish(be->w->srv->cache, p->capture,
			       f->body_len ? f->body[0] : 'E', be->w->now_ms);
		p->capture = NULL;
	}
}

/* Report the statement observed in p, which is over. */
static void
observe_finish(struct backend *be, struct pending *p)
{
	if (be->client && be->client->state != CL_CLOSED)
		session_observe(be->client, p->obs);
	free(p->obs);
	p->obs = NULL;
}

/* An observed statement's answer goes by: count its rows; at its end,
 * report it (before the pending entry is gone). */
static void
observe_answer(struct backend *be, struct pending *p, const struct msg_frame *f)
{
	struct obs_rec *r = p->obs;

	switch (f->type) {
	case 'D':
		r->data_rows++;
		return;
	case 'C':
		r->tag_rows += session_tag_rows(f->body, f->body_len);
		if (p->kind == PEND_EXECUTE)
			break;
		return;
	case 'E':
		r->failed = true;
		if (p->kind == PEND_EXECUTE)
			break;
		return;
	case 'I':
	case 's':
		if (p->kind == PEND_EXECUTE)
			break;
		return;
	case 'Z':
		break;
	default:
		return;
	}
	observe_finish(be, p);
}

static void
route_owed(struct backend *be, struct pending *p, const struct msg_frame *f,
	   const uint8_t *raw)
{
	uint8_t t = f->type;

	if (t == '1' && p->stmt_hash)
		(void)name_set_add(&be->pool->parsed_ok, p->stmt_hash);
	if (p->kind == PEND_HIDDEN_PARSE && t == '1') {
		q_pop(be);
		return;
	}
	if (t == 'Z' && be->client && be->client->l1)
		session_before_ready(be->client, p,
				     f->body_len ? f->body[0] : 'E');
	to_client(be, raw, f->len);
	if (p->obs)
		observe_answer(be, p, f);
	if (p->feed) {
		/* PortalSuspended is part of the answer: the group's Sync
		 * follows at once and closes the portal (session.c) */
		if (t == 'E')
			capture_spoil(p->feed);
		else
			capture_add(p->feed, raw, f->len);
	}
	if (t == 'C') {
		be->last_tag_rollback = f->body_len >= 8 &&
					memcmp(f->body, "ROLLBACK", 8) == 0;
	}
	switch (p->kind) {
	case PEND_QUERY:
	case PEND_SYNC:
		if (p->capture)
			feed_capture(be, p, f, raw);
		if (t == 'E')
			p->failed = true;
		else if (t == 'Z')
			finish_ready(be, f, false);
		return;
	case PEND_EXECUTE:
		if (t == 'C' && p->nops && be->client)
			session_apply_ops(be->client, p->ops, p->nops, true);
		if (t == 'C' || t == 'I' || t == 's')
			break;
		goto check_error;
	case PEND_DESCRIBE:
		if (t == 'T' || t == 'n')
			break;
		goto check_error;
	default:	/* PEND_ONE, PEND_HIDDEN_PARSE */
		if (t == '1' || t == '2' || t == '3')
			break;
		goto check_error;
	}
	q_pop(be);
	run_synth(be);
	return;
check_error:
	if (t == 'E')
		extended_error(be);
}

/* Returns false if the backend was closed. */
static bool
route(struct backend *be, const struct msg_frame *f, const uint8_t *raw)
{
	struct pending *p;

	if (route_async(be, f, raw))
		return true;
	run_synth(be);
	p = q_head(be);
	if (!p) {
		if (f->type == 'E') {
			size_t ml = 0;
			const char *m = msg_error_field(f->body, f->body_len,
							'M', &ml);
			char why[256];

			snprintf(why, sizeof(why), "server error: %.*s",
				 (int)(m ? ml : 0), m ? m : "");
			backend_close(be, why);
		} else {
			backend_close(be, "unexpected message from server");
		}
		return false;
	}
	if (p->kind == PEND_HIDDEN_QUERY)
		route_hidden(be, p, f);
	else
		route_owed(be, p, f, raw);
	return be->state == BE_READY;
}

/* ---- input ------------------------------------------------------------ */

static bool
client_blocked(const struct backend *be)
{
	const struct client *cl = be->client;

	return cl && cl->state != CL_CLOSED &&
	       buf_pending(&cl->c.out) > CLIENT_OUT_LIMIT;
}

static void
flush_client(struct backend *be)
{
	if (be->client && be->client->flush_pending)
		session_flush(be->client);
}

/* Handle complete messages in be->c.in; false if the backend closed. */
static bool
process_messages(struct backend *be)
{
	struct msg_frame f;
	enum msg_frame_status st;
	const uint8_t *raw;
	bool ok;

	for (;;) {
		if (be->state == BE_SSL_REQUEST)
			return handle_ssl_answer(be);
		if (client_blocked(be))
			return true;
		raw = buf_head(&be->c.in);
		st = msg_frame_peek(raw, buf_pending(&be->c.in), BE_MAX_MESSAGE,
				    &f);
		if (st == FRAME_NEED_MORE || (st == FRAME_OK &&
					      f.avail < f.body_len))
			return true;
		if (st == FRAME_BAD_LENGTH) {
			backend_close(be, "invalid message length from server");
			return false;
		}
		ok = be->state == BE_READY ? route(be, &f, raw) :
					     handle_login_msg(be, &f);
		if (be->state == BE_CLOSED)
			return false;
		buf_consume(&be->c.in, f.len);
		if (!ok)
			return false;
	}
}


void
backend_process(struct backend *be)
{
	enum conn_io io = CONN_IO_DONE;
	size_t want, before;

	for (;;) {
		if (be->state == BE_CLOSED)
			return;
		if (be->state == BE_TLS && !drive_tls(be))
			break;
		want = msg_read_want(buf_head(&be->c.in),
				     buf_pending(&be->c.in), BE_READ_LIMIT,
				     BE_MAX_MESSAGE);
		if (be->c.readable && buf_pending(&be->c.in) < want)
			io = conn_read(&be->c, want);
		before = buf_pending(&be->c.in);
		if (!process_messages(be))
			return;
		buf_compact(&be->c.in);
		if (client_blocked(be)) {
			/* Only a full socket brings an EPOLLOUT to resume us. */
			flush_client(be);
			if (be->state == BE_CLOSED || client_blocked(be))
				break;
			continue;
		}
		if (io == CONN_IO_ERROR || !be->c.readable ||
		    buf_pending(&be->c.in) >= before)
			break;	/* drained, or waiting for more */
	}
	flush_client(be);
	backend_flush(be);
	if (be->state == BE_CLOSED)
		return;
	if (io == CONN_IO_ERROR)
		backend_close(be, be->c.error ? be->c.error :
			      "server closed the connection");
	else if (!buf_pending(&be->c.in))
		buf_release(&be->c.in);
}

static void
backend_on_event(struct loop_watch *wt, uint32_t events)
{
	struct backend *be = qlist_entry(wt, struct backend, c.watch);

	if (be->state == BE_CLOSED)
		return;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		be->c.readable = true;
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		be->c.hangup = true;
	if (be->state == BE_CONNECTING) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		on_connected(be);
		if (be->state == BE_CLOSED)
			return;
	}
	if (events & EPOLLOUT) {
		backend_flush(be);
		if (be->state == BE_CLOSED)
			return;
		if (be->client && buf_pending(&be->c.out) == 0)
			session_resume(be->client);
		if (be->state == BE_CLOSED)
			return;
	}
	backend_process(be);
}
