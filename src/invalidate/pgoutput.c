#include "invalidate/pgoutput.h"

#include <string.h>

#include "proto/msg.h"	/* the bounds-checked big-endian reader */

static void
put_be64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

/* ---- replication protocol ------------------------------------------------ */

int
repl_copy_parse(const uint8_t *buf, size_t len, struct repl_copy *out)
{
	memset(out, 0, sizeof(*out));
	if (len == 0)
		return -1;
	switch (buf[0]) {
	case 'w':	/* XLogData: walStart, walEnd, sendTime, data */
		if (len < 25)
			return -1;
		out->wal_start = msg_be64(buf + 1);
		out->wal_end = msg_be64(buf + 9);
		out->send_time = (int64_t)msg_be64(buf + 17);
		out->data = buf + 25;
		out->len = len - 25;
		break;
	case 'k':	/* keepalive: walEnd, sendTime, replyRequested */
		if (len != 18)
			return -1;
		out->wal_end = msg_be64(buf + 1);
		out->send_time = (int64_t)msg_be64(buf + 9);
		out->reply_requested = buf[17] != 0;
		break;
	default:
		return -1;
	}
	out->kind = (char)buf[0];
	return 0;
}

size_t
repl_status_update(uint8_t out[REPL_STATUS_LEN], uint64_t lsn,
		   int64_t now_pg_us, bool reply_requested)
{
	out[0] = 'r';
	put_be64(out + 1, lsn);		/* written */
	put_be64(out + 9, lsn);		/* flushed */
	put_be64(out + 17, lsn);	/* applied */
	put_be64(out + 25, (uint64_t)now_pg_us);
	out[33] = reply_requested ? 1 : 0;
	return REPL_STATUS_LEN;
}

int64_t
repl_pg_time(int64_t unix_us)
{
	if (unix_us < INT64_MIN + REPL_PG_EPOCH_UNIX_US)
		return INT64_MIN;
	return unix_us - REPL_PG_EPOCH_UNIX_US;
}

int64_t
repl_unix_time(int64_t pg_us)
{
	if (pg_us > INT64_MAX - REPL_PG_EPOCH_UNIX_US)
		return INT64_MAX;
	return pg_us + REPL_PG_EPOCH_UNIX_US;
}

static int
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* 1 to 8 hex digits ending at 'end' ('/' or NUL); NULL when not. */
static const char *
lsn_half(const char *s, char end, uint32_t *v)
{
	int n = 0, d;

	*v = 0;
	while ((d = hex_digit(*s)) >= 0) {
		if (++n > 8)
			return NULL;
		*v = *v << 4 | (uint32_t)d;
		s++;
	}
	return n > 0 && *s == end ? s : NULL;
}

int
repl_lsn_parse(const char *s, uint64_t *out)
{
	uint32_t hi, lo;

	if (!(s = lsn_half(s, '/', &hi)) || !lsn_half(s + 1, '\0', &lo))
		return -1;
	*out = (uint64_t)hi << 32 | lo;
	return 0;
}

void
repl_lsn_format(uint64_t lsn, char out[REPL_LSN_STRLEN])
{
	static const char hex[] = "0123456789ABCDEF";
	char tmp[8];
	size_t o = 0;
	int half, n;

	for (half = 0; half < 2; half++) {
		uint32_t v = half ? (uint32_t)lsn : (uint32_t)(lsn >> 32);

		n = 0;
		do {
			tmp[n++] = hex[v & 15];
			v >>= 4;
		} while (v);
		while (n > 0)
			out[o++] = tmp[--n];
		if (!half)
			out[o++] = '/';
	}
	out[o] = '\0';
}

/* ---- pgoutput ------------------------------------------------------------ */

/* Everything but the big arrays, so a message never shows another's. */
static void
msg_reset(struct pgo_msg *m)
{
	m->kind = 0;
	m->relid = 0;
	m->final_lsn = 0;
	m->commit_time = 0;
	m->xid = 0;
	m->commit_flags = 0;
	m->commit_lsn = m->end_lsn = 0;
	m->nspname = m->relname = NULL;
	m->replident = 0;
	m->ncols = 0;
	m->old_kind = 0;
	m->oldtup.n = 0;
	m->oldtup.cols = m->oldvals;
	m->newtup.n = 0;
	m->newtup.cols = m->newvals;
	m->ntrunc = 0;
	m->trunc_options = 0;
	m->trunc_relids = NULL;
	m->origin = NULL;
	m->origin_lsn = 0;
	m->type_oid = 0;
	m->type_nsp = m->type_name = NULL;
	m->msg_transactional = false;
	m->msg_lsn = 0;
	m->msg_prefix = NULL;
	m->msg_len = 0;
	m->msg_content = NULL;
}

/* TupleData: Int16 n, then per column a kind and, for 't'/'b', the value. */
static int
read_tuple(struct msg_reader *r, struct pgo_tuple *t)
{
	uint16_t i, n = (uint16_t)msg_read_i16(r);

	if (r->bad || n > PGO_MAX_COLS)
		return -1;
	for (i = 0; i < n; i++) {
		struct pgo_value *v = &t->cols[i];

		v->kind = (char)msg_read_u8(r);
		v->len = 0;
		v->data = NULL;
		switch (v->kind) {
		case 'n':
		case 'u':
			break;
		case 't':
		case 'b':
			v->len = (uint32_t)msg_read_i32(r);
			v->data = msg_read_bytes(r, v->len);
			if (!v->data)
				return -1;
			break;
		default:
			return -1;
		}
		if (r->bad)
			return -1;
	}
	t->n = n;
	return 0;
}

static int
read_relation(struct msg_reader *r, struct pgo_msg *m)
{
	uint16_t i, n;

	m->relid = (uint32_t)msg_read_i32(r);
	m->nspname = msg_read_str(r, NULL);
	m->relname = msg_read_str(r, NULL);
	m->replident = (char)msg_read_u8(r);
	n = (uint16_t)msg_read_i16(r);
	if (r->bad || n > PGO_MAX_COLS)
		return -1;
	for (i = 0; i < n && !r->bad; i++) {
		struct pgo_column *c = &m->columns[i];

		c->flags = msg_read_u8(r);
		c->name = msg_read_str(r, NULL);
		c->type_oid = (uint32_t)msg_read_i32(r);
		c->typmod = (int32_t)(uint32_t)msg_read_i32(r);
	}
	m->ncols = n;
	return 0;
}

/* Insert, Update, Delete: Int32 relid, then tagged tuples. */
static int
read_change(struct msg_reader *r, struct pgo_msg *m)
{
	uint8_t tag;

	m->relid = (uint32_t)msg_read_i32(r);
	tag = msg_read_u8(r);
	if (m->kind != 'I' && (tag == 'K' || tag == 'O')) {
		m->old_kind = (char)tag;
		if (read_tuple(r, &m->oldtup))
			return -1;
		if (m->kind == 'D')
			return 0;
		tag = msg_read_u8(r);
	}
	if (m->kind == 'D' || tag != 'N')
		return -1;
	return read_tuple(r, &m->newtup);
}

static int
read_truncate(struct msg_reader *r, struct pgo_msg *m)
{
	m->ntrunc = (uint32_t)msg_read_i32(r);
	m->trunc_options = msg_read_u8(r);
	if (r->bad || m->ntrunc > (r->len - r->pos) / 4)
		return -1;
	m->trunc_relids = msg_read_bytes(r, (size_t)m->ntrunc * 4);
	return 0;
}

static int
read_message(struct msg_reader *r, struct pgo_msg *m)
{
	m->msg_transactional = (msg_read_u8(r) & 1) != 0;
	m->msg_lsn = (uint64_t)msg_read_i64(r);
	m->msg_prefix = msg_read_str(r, NULL);
	m->msg_len = (uint32_t)msg_read_i32(r);
	m->msg_content = msg_read_bytes(r, m->msg_len);
	return 0;
}

int
pgo_parse(const uint8_t *buf, size_t len, struct pgo_msg *out)
{
	struct msg_reader r;

	msg_reader_init(&r, buf, len);
	int rc = 0;

	msg_reset(out);
	out->kind = (char)msg_read_u8(&r);
	switch (out->kind) {
	case 'B':	/* Begin: final LSN, commit time, xid */
		out->final_lsn = (uint64_t)msg_read_i64(&r);
		out->commit_time = (int64_t)(uint64_t)msg_read_i64(&r);
		out->xid = (uint32_t)msg_read_i32(&r);
		break;
	case 'C':	/* Commit: flags, commit LSN, end LSN, commit time */
		out->commit_flags = msg_read_u8(&r);
		out->commit_lsn = (uint64_t)msg_read_i64(&r);
		out->end_lsn = (uint64_t)msg_read_i64(&r);
		out->commit_time = (int64_t)(uint64_t)msg_read_i64(&r);
		break;
	case 'O':	/* Origin: the origin's commit LSN, its name */
		out->origin_lsn = (uint64_t)msg_read_i64(&r);
		out->origin = msg_read_str(&r, NULL);
		break;
	case 'R':
		rc = read_relation(&r, out);
		break;
	case 'Y':	/* Type: OID, namespace, name */
		out->type_oid = (uint32_t)msg_read_i32(&r);
		out->type_nsp = msg_read_str(&r, NULL);
		out->type_name = msg_read_str(&r, NULL);
		break;
	case 'I':
	case 'U':
	case 'D':
		rc = read_change(&r, out);
		break;
	case 'T':
		rc = read_truncate(&r, out);
		break;
	case 'M':
		rc = read_message(&r, out);
		break;
	default:	/* an unknown kind, or a v2+ one, or nothing at all */
		return -1;
	}
	if (rc || r.bad || r.pos != r.len)
		return -1;
	return 0;
}

uint32_t
pgo_trunc_relid(const struct pgo_msg *m, uint32_t i)
{
	if (i >= m->ntrunc || !m->trunc_relids)
		return 0;
	return msg_be32(m->trunc_relids + (size_t)i * 4);
}

int
pgo_value_int64(const struct pgo_value *v, int64_t *out)
{
	const uint8_t *p = v->data, *end;
	bool neg = false;
	uint64_t acc = 0, limit;

	if (v->kind != 't' || !p || v->len == 0)
		return -1;
	end = p + v->len;
	if (*p == '-') {
		neg = true;
		p++;
	}
	/* at least one digit, no leading zero except "0" itself, no "-0" */
	if (p == end || *p < '0' || *p > '9' ||
	    (*p == '0' && (end - p > 1 || neg)))
		return -1;
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; p < end; p++) {
		unsigned d;

		if (*p < '0' || *p > '9')
			return -1;
		d = (unsigned)(*p - '0');
		if (acc > (limit - d) / 10)
			return -1;
		acc = acc * 10 + d;
	}
	if (!neg)
		*out = (int64_t)acc;
	else if (acc == (uint64_t)INT64_MAX + 1)
		*out = INT64_MIN;
	else
		*out = -(int64_t)acc;
	return 0;
}
