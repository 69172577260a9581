/*
 * fuzz_pgoutput.c - the logical replication decoder (invalidate/pgoutput.h)
 * on arbitrary bytes, as a walsender would send them.
 *
 * The input goes to repl_copy_parse as a CopyData payload (an XLogData's
 * data then to pgo_parse), and to pgo_parse directly.  On success every
 * pointer must lie inside the input, every string end with a NUL inside
 * it, every count stay under PGO_MAX_COLS, and re-encoding the decoded
 * fields must give back the input byte for byte (the parser takes exactly
 * one whole message).  Integers read from text values must print back to
 * the same text.  The input is also tried as an LSN string.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "invalidate/pgoutput.h"

/* One decoded message (~100 KB): not on the stack. */
static struct pgo_msg msg;

struct span {
	const uint8_t *p;
	size_t len;
};

static bool
inside(const struct span *in, const void *p, size_t n)
{
	const uint8_t *q = p;

	return q >= in->p && q <= in->p + in->len &&
	       n <= (size_t)(in->p + in->len - q);
}

/* A string inside the input, its NUL too. */
static void
check_str(const struct span *in, const char *s)
{
	FUZZ_CHECK(s != NULL && inside(in, s, 0));
	FUZZ_CHECK(memchr(s, 0, (size_t)(in->p + in->len -
					 (const uint8_t *)s)) != NULL);
}

static void
check_tuple(const struct span *in, const struct pgo_tuple *t,
	    const struct pgo_value *storage)
{
	char txt[32];
	int64_t v;
	uint16_t i;

	FUZZ_CHECK(t->n <= PGO_MAX_COLS);
	FUZZ_CHECK(t->cols == storage);
	for (i = 0; i < t->n; i++) {
		const struct pgo_value *c = &t->cols[i];

		switch (c->kind) {
		case 'n':
		case 'u':
			FUZZ_CHECK(c->len == 0 && c->data == NULL);
			break;
		case 't':
		case 'b':
			FUZZ_CHECK(c->data && inside(in, c->data, c->len));
			break;
		default:
			FUZZ_CHECK(0);
		}
		if (pgo_value_int64(c, &v) == 0) {
			/* only canonical text: it prints back the same */
			FUZZ_CHECK(c->kind == 't');
			snprintf(txt, sizeof(txt), "%" PRId64, v);
			FUZZ_CHECK(strlen(txt) == c->len &&
				   memcmp(txt, c->data, c->len) == 0);
		}
	}
}

/* ---- re-encoding --------------------------------------------------------- */

struct out {
	uint8_t *b;
	size_t n, cap;
};

/* The input's length is the most a faithful re-encoding can need. */
static void
put(struct out *o, const void *p, size_t n)
{
	FUZZ_CHECK(n <= o->cap - o->n);
	if (n)
		memcpy(o->b + o->n, p, n);
	o->n += n;
}

static void
put_be(struct out *o, uint64_t v, int bytes)
{
	uint8_t b[8];
	int i;

	for (i = bytes - 1; i >= 0; i--) {
		b[i] = (uint8_t)v;
		v >>= 8;
	}
	put(o, b, (size_t)bytes);
}

static void
put_str(struct out *o, const char *s)
{
	put(o, s, strlen(s) + 1);
}

static void
put_tuple(struct out *o, const struct pgo_tuple *t)
{
	uint16_t i;

	put_be(o, t->n, 2);
	for (i = 0; i < t->n; i++) {
		put_be(o, (uint8_t)t->cols[i].kind, 1);
		if (t->cols[i].kind == 't' || t->cols[i].kind == 'b') {
			put_be(o, t->cols[i].len, 4);
			put(o, t->cols[i].data, t->cols[i].len);
		}
	}
}

static void
encode(struct out *o, const struct pgo_msg *m)
{
	uint32_t i;

	put_be(o, (uint8_t)m->kind, 1);
	switch (m->kind) {
	case 'B':
		put_be(o, m->final_lsn, 8);
		put_be(o, (uint64_t)m->commit_time, 8);
		put_be(o, m->xid, 4);
		break;
	case 'C':
		put_be(o, m->commit_flags, 1);
		put_be(o, m->commit_lsn, 8);
		put_be(o, m->end_lsn, 8);
		put_be(o, (uint64_t)m->commit_time, 8);
		break;
	case 'O':
		put_be(o, m->origin_lsn, 8);
		put_str(o, m->origin);
		break;
	case 'R':
		put_be(o, m->relid, 4);
		put_str(o, m->nspname);
		put_str(o, m->relname);
		put_be(o, (uint8_t)m->replident, 1);
		put_be(o, m->ncols, 2);
		for (i = 0; i < m->ncols; i++) {
			put_be(o, m->columns[i].flags, 1);
			put_str(o, m->columns[i].name);
			put_be(o, m->columns[i].type_oid, 4);
			put_be(o, (uint32_t)m->columns[i].typmod, 4);
		}
		break;
	case 'Y':
		put_be(o, m->type_oid, 4);
		put_str(o, m->type_nsp);
		put_str(o, m->type_name);
		break;
	case 'I':
	case 'U':
	case 'D':
		put_be(o, m->relid, 4);
		if (m->old_kind) {
			put_be(o, (uint8_t)m->old_kind, 1);
			put_tuple(o, &m->oldtup);
		}
		if (m->kind != 'D') {
			put_be(o, 'N', 1);
			put_tuple(o, &m->newtup);
		}
		break;
	case 'T':
		put_be(o, m->ntrunc, 4);
		put_be(o, m->trunc_options, 1);
		for (i = 0; i < m->ntrunc; i++)
			put_be(o, pgo_trunc_relid(m, i), 4);
		break;
	case 'M':
		/* only the transactional bit is kept: the caller patches */
		put_be(o, m->msg_transactional ? 1 : 0, 1);
		put_be(o, m->msg_lsn, 8);
		put_str(o, m->msg_prefix);
		put_be(o, m->msg_len, 4);
		put(o, m->msg_content, m->msg_len);
		break;
	default:
		FUZZ_CHECK(0);
	}
}

/* ---- the checks ---------------------------------------------------------- */

static void
check_msg(const uint8_t *data, size_t size)
{
	struct span in = { data, size };
	const struct pgo_msg *m = &msg;
	struct out o;
	uint16_t i;

	if (pgo_parse(data, size, &msg) != 0)
		return;
	FUZZ_CHECK(size > 0 && m->kind == (char)data[0]);
	FUZZ_CHECK(m->ncols <= PGO_MAX_COLS);
	switch (m->kind) {
	case 'O':
		check_str(&in, m->origin);
		break;
	case 'R':
		check_str(&in, m->nspname);
		check_str(&in, m->relname);
		for (i = 0; i < m->ncols; i++)
			check_str(&in, m->columns[i].name);
		break;
	case 'Y':
		check_str(&in, m->type_nsp);
		check_str(&in, m->type_name);
		break;
	case 'I':
	case 'U':
	case 'D':
		FUZZ_CHECK(m->kind == 'U' ? (m->old_kind == 0 ||
					     m->old_kind == 'K' ||
					     m->old_kind == 'O')
			   : m->kind == 'D' ? (m->old_kind == 'K' ||
					       m->old_kind == 'O')
			   : m->old_kind == 0);
		check_tuple(&in, &m->oldtup, m->oldvals);
		check_tuple(&in, &m->newtup, m->newvals);
		FUZZ_CHECK(m->old_kind || m->oldtup.n == 0);
		FUZZ_CHECK(m->kind != 'D' || m->newtup.n == 0);
		break;
	case 'T':
		FUZZ_CHECK(m->trunc_relids &&
			   m->ntrunc <= size / 4 &&
			   inside(&in, m->trunc_relids,
				  (size_t)m->ntrunc * 4));
		FUZZ_CHECK(pgo_trunc_relid(m, m->ntrunc) == 0);
		break;
	case 'M':
		check_str(&in, m->msg_prefix);
		FUZZ_CHECK(m->msg_content &&
			   inside(&in, m->msg_content, m->msg_len));
		break;
	default:
		break;
	}
	if (m->kind != 'R')
		FUZZ_CHECK(m->ncols == 0 && m->relname == NULL);
	if (m->kind != 'I' && m->kind != 'U' && m->kind != 'D')
		FUZZ_CHECK(m->old_kind == 0 && m->oldtup.n == 0 &&
			   m->newtup.n == 0);

	o.b = malloc(size);
	FUZZ_CHECK(o.b != NULL);
	o.n = 0;
	o.cap = size;
	encode(&o, m);
	FUZZ_CHECK(o.n == size);
	if (m->kind == 'M') {
		FUZZ_CHECK(o.b[1] == (data[1] & 1));
		o.b[1] = data[1];
	}
	FUZZ_CHECK(memcmp(o.b, data, size) == 0);
	free(o.b);
}

static void
check_copy(const uint8_t *data, size_t size)
{
	struct span in = { data, size };
	struct repl_copy c;
	uint8_t st[REPL_STATUS_LEN];
	char lsn[REPL_LSN_STRLEN];
	uint64_t back;

	if (repl_copy_parse(data, size, &c) != 0)
		return;
	FUZZ_CHECK(c.kind == (char)data[0]);
	if (c.kind == 'w') {
		FUZZ_CHECK(size >= 25 && c.len == size - 25);
		FUZZ_CHECK(c.data == data + 25 && inside(&in, c.data, c.len));
		check_msg(c.data, c.len);
	} else {
		FUZZ_CHECK(c.kind == 'k' && size == 18);
		FUZZ_CHECK(c.reply_requested == (data[17] != 0));
		FUZZ_CHECK(c.data == NULL && c.len == 0 && c.wal_start == 0);
	}
	/* what the consumer does with the fields */
	FUZZ_CHECK(repl_status_update(st, c.wal_end,
				      repl_pg_time(repl_unix_time(c.send_time)),
				      c.reply_requested) == REPL_STATUS_LEN);
	FUZZ_CHECK(st[0] == 'r' && st[33] == (c.reply_requested ? 1 : 0));
	FUZZ_CHECK(memcmp(st + 1, data + (c.kind == 'w' ? 9 : 1), 8) == 0);
	repl_lsn_format(c.wal_end, lsn);
	FUZZ_CHECK(strlen(lsn) <= 17);
	FUZZ_CHECK(repl_lsn_parse(lsn, &back) == 0 && back == c.wal_end);
}

/* The input as text: an LSN that parses formats to the same value. */
static void
check_lsn(const uint8_t *data, size_t size)
{
	char *s, again[REPL_LSN_STRLEN];
	uint64_t v, w;

	if (size > 64)
		return;
	s = malloc(size + 1);
	FUZZ_CHECK(s != NULL);
	memcpy(s, data, size);
	s[size] = '\0';
	if (repl_lsn_parse(s, &v) == 0) {
		FUZZ_CHECK(strchr(s, '/') != NULL && strlen(s) <= 17);
		repl_lsn_format(v, again);
		FUZZ_CHECK(repl_lsn_parse(again, &w) == 0 && w == v);
	}
	free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_copy(data, size);
	check_msg(data, size);
	check_lsn(data, size);
	return 0;
}
