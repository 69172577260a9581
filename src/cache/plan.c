/*
 * plan.c - statement text -> what the cache does with it (see plan.h).
 *
 * A summary per distinct text keeps the few facts of the parse the plan
 * needs (names read, written and called, the kind, transaction control).
 * Summaries live in 16 shards, each a chained hash with a FIFO of
 * insertion order that drops the oldest text when the shard is full.
 */
#include "cache/plan.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <xxhash.h>

#include "analysis/shape.h"
#include "cache/tags.h"
#include "core/sqlchar.h"

enum {
	PLAN_SHARDS = 16,
	PLAN_BUCKETS = 1024,	/* per shard */
	NAME_MAX_LEN = ANALYSIS_NAME_MAX,
	MAX_TEXT = 64 * 1024,	/* longer texts are planned, not kept */
	PLAN_MIN_BYTES = 1 << 20,
	ALLOC_OVERHEAD = 16,	/* malloc's header and rounding, roughly */
};

enum base {
	BASE_PASS,		/* tx control, SET, SHOW, LISTEN ... */
	BASE_READ,		/* may be cached */
	BASE_READ_NOCACHE,	/* a read that must not be cached */
	BASE_WRITE,		/* writes the 'write' names */
	BASE_CREATE,		/* CTAS / SELECT INTO: a new relation */
	BASE_FLOOD,		/* may write anything: EXECUTE, DO, CALL */
	BASE_DDL,		/* flood, and the catalog changed */
	BASE_BAD,		/* the parser rejects it: so will the server */
};

enum name_role { ROLE_READ, ROLE_WRITE, ROLE_FUNC };

struct sname {
	char name[NAME_MAX_LEN];
	uint8_t role;		/* enum name_role */
	bool maybe_cte;
};

/* A value a row-level decision can use: an integer literal or a $n. */
enum sval_kind { SV_UNKNOWN, SV_INT, SV_PARAM };

struct sval {
	uint8_t kind;		/* enum sval_kind */
	int16_t param;		/* SV_PARAM: 1-based */
	int64_t v;		/* SV_INT */
};

enum { MAX_VALS = 8, MAX_ROWCOLS = 8, MAX_ROW_TAGS = 16 };

/* column = one of vals (a WHERE term), or the values a write stores. */
struct scol {
	char name[NAME_MAX_LEN];
	uint8_t nvals;
	bool unknown;		/* some value is not usable */
	struct sval vals[MAX_VALS];
};

enum wkind { W_NONE, W_INSERT, W_UPDATE, W_DELETE };

/* Single-statement texts on one relation: what row tags need. */
struct rowinfo {
	char rel[NAME_MAX_LEN];	/* the relation read or written */
	uint8_t wkind;		/* enum wkind; W_NONE for a read */
	bool wcols_complete;	/* INSERT: every stored column is listed */
	bool upsert;		/* INSERT ... ON CONFLICT DO UPDATE */
	uint8_t n_preds, n_wcols;
	struct scol cols[];	/* n_preds WHERE terms, then n_wcols */
};

struct summary {
	struct summary *next;	/* hash chain */
	struct summary *older;	/* FIFO towards the oldest */
	struct summary *newer;
	uint64_t hash;
	size_t len;
	char *text;
	uint8_t base;		/* enum base */
	uint8_t tx;		/* enum plan_tx */
	bool repeatable;
	uint32_t n_names;
	struct sname *names;
	struct rowinfo *rows;	/* NULL: table level only */
	size_t bytes;		/* everything above, as charged */
};

struct plan_shard {
	pthread_mutex_t lock;
	struct summary *buckets[PLAN_BUCKETS];
	struct summary *oldest, *newest;
	size_t bytes, max_bytes;
};

struct plan_table {
	struct catalog *cat;
	struct plan_shard shards[PLAN_SHARDS];
};

struct plan_table *
plan_table_new(struct catalog *cat, size_t max_bytes)
{
	struct plan_table *pt = calloc(1, sizeof(*pt));
	size_t i;

	if (!pt)
		return NULL;
	if (max_bytes < PLAN_MIN_BYTES)
		max_bytes = PLAN_MIN_BYTES;
	pt->cat = cat;
	for (i = 0; i < PLAN_SHARDS; i++) {
		pthread_mutex_init(&pt->shards[i].lock, NULL);
		pt->shards[i].max_bytes = max_bytes / PLAN_SHARDS;
	}
	return pt;
}

static void
summary_free(struct summary *s)
{
	if (!s)
		return;
	free(s->text);
	free(s->names);
	free(s->rows);
	free(s);
}

void
plan_table_free(struct plan_table *pt)
{
	struct summary *s, *next;
	size_t i;

	if (!pt)
		return;
	for (i = 0; i < PLAN_SHARDS; i++) {
		for (s = pt->shards[i].oldest; s; s = next) {
			next = s->newer;
			summary_free(s);
		}
		pthread_mutex_destroy(&pt->shards[i].lock);
	}
	free(pt);
}

/* ---- summarising a parse ------------------------------------------------ */

static int
add_name(struct summary *s, size_t *cap, const char *name,
	 enum name_role role, bool maybe_cte)
{
	struct sname *n;
	size_t i;

	for (i = 0; i < s->n_names; i++)
		if (s->names[i].role == role &&
		    strcmp(s->names[i].name, name) == 0)
			return 0;
	if (s->n_names == *cap) {
		*cap = *cap ? *cap * 2 : 4;
		n = realloc(s->names, *cap * sizeof(*n));
		if (!n)
			return -1;
		s->names = n;
	}
	n = &s->names[s->n_names++];
	memset(n, 0, sizeof(*n));
	memcpy(n->name, name, strnlen(name, NAME_MAX_LEN - 1));
	n->role = (uint8_t)role;
	n->maybe_cte = maybe_cte;
	return 0;
}

static bool
is_repeatable(enum analysis_isolation iso)
{
	return iso == ANALYSIS_ISO_REPEATABLE_READ ||
	       iso == ANALYSIS_ISO_SERIALIZABLE;
}

/* The base of one statement. */
static enum base
stmt_base(const struct analysis_stmt *st, const char *text)
{
	switch (st->kind) {
	case ANALYSIS_READ:
		if (st->is_explain || st->has_row_lock || st->has_temp_ref ||
		    st->uses_system_catalog || st->has_volatile_func ||
		    st->uses_clock || st->overflow)
			return BASE_READ_NOCACHE;
		return BASE_READ;
	case ANALYSIS_TX:
		return BASE_PASS;
	case ANALYSIS_SESSION:
		/* EXECUTE runs a statement we did not see prepared. */
		if (strncasecmp(text + st->offset, "execute", 7) == 0)
			return BASE_FLOOD;
		return BASE_PASS;
	case ANALYSIS_WRITE:
		return st->creates_relation ? BASE_CREATE : BASE_WRITE;
	case ANALYSIS_DDL:
		return BASE_DDL;
	default:
		return BASE_DDL;	/* DO, CALL: anything at all */
	}
}

/* Combine two statements' bases: the more dangerous wins, and any
 * write makes the text's reads uncacheable. */
static enum base
combine(enum base a, enum base b)
{
	if (a == BASE_PASS)
		return b;
	if (b == BASE_PASS)
		return a;
	if (a == BASE_READ && b == BASE_READ)
		return BASE_READ;
	if (a <= BASE_READ_NOCACHE && b <= BASE_READ_NOCACHE)
		return BASE_READ_NOCACHE;
	return a > b ? a : b;
}

static void
summarise_tx(struct summary *s, const struct analysis_stmt *st)
{
	switch (st->tx) {
	case ANALYSIS_TX_BEGIN:
		s->tx = PLAN_TX_BEGIN;
		break;
	case ANALYSIS_TX_COMMIT:
	case ANALYSIS_TX_ROLLBACK:
	case ANALYSIS_TX_PREPARE:
		s->tx = PLAN_TX_END;
		break;
	case ANALYSIS_TX_NONE:
		break;
	default:
		s->tx = PLAN_TX_OTHER;
		break;
	}
	s->repeatable |= is_repeatable(st->isolation);
}

static int
summarise(struct summary *s, const struct analysis *a, const char *text)
{
	const struct analysis_stmt *st;
	const struct analysis_rel *r;
	size_t cap = 0, i, j;
	enum base b = BASE_PASS;

	for (i = 0; i < a->n_stmts; i++) {
		st = &a->stmts[i];
		b = combine(b, stmt_base(st, text));
		if (st->kind == ANALYSIS_TX || st->kind == ANALYSIS_SESSION) {
			summarise_tx(s, st);
			if (s->tx == PLAN_TX_NONE)
				s->tx = PLAN_TX_OTHER;	/* SET, SHOW ... */
		}
		for (j = 0; j < st->n_rels; j++) {
			r = &a->rels[st->rels_first + j];
			if (r->written &&
			    add_name(s, &cap, r->name, ROLE_WRITE, false))
				return -1;
			if (r->read && add_name(s, &cap, r->name, ROLE_READ,
						r->maybe_cte))
				return -1;
		}
		for (j = 0; j < st->n_funcs; j++)
			if (add_name(s, &cap, a->funcs[st->funcs_first + j].name,
				     ROLE_FUNC, false))
				return -1;
	}
	if (a->n_stmts > 1) {
		/* "SET x = 1; SELECT ...": a replay would skip the SET. */
		if (s->tx && b == BASE_READ)
			b = BASE_READ_NOCACHE;
		s->tx = s->tx ? PLAN_TX_OTHER : PLAN_TX_NONE;
	}
	if (a->overflow && b < BASE_FLOOD)
		b = b <= BASE_READ_NOCACHE ? BASE_READ_NOCACHE : BASE_FLOOD;
	s->base = (uint8_t)b;
	return 0;
}

static bool
is_pg_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
	       c == '\f';
}

/* An integer the way Postgres' int8 input reads it (blanks around an
 * optional sign and decimal digits), or false; by hand, as it runs for
 * every planned point read. */
static bool
parse_int64(const char *t, size_t len, int64_t *out)
{
	size_t i = 0, first;
	bool neg = false;
	uint64_t v = 0, limit;

	while (i < len && is_pg_space(t[i]))
		i++;
	if (i < len && (t[i] == '+' || t[i] == '-'))
		neg = t[i++] == '-';
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (first = i; i < len && t[i] >= '0' && t[i] <= '9'; i++) {
		unsigned d = (unsigned)(t[i] - '0');

		if (v > (limit - d) / 10)
			return false;	/* out of range: the server says so */
		v = v * 10 + d;
	}
	if (i == first)
		return false;
	while (i < len && is_pg_space(t[i]))
		i++;
	if (i != len)
		return false;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return true;
}

static struct sval
sval_of(const struct analysis_value *v)
{
	struct sval out = { .kind = SV_UNKNOWN };

	if (v->kind == ANALYSIS_VALUE_PARAM && v->param > 0 &&
	    v->param < INT16_MAX) {
		out.kind = SV_PARAM;
		out.param = (int16_t)v->param;
	} else if (v->kind == ANALYSIS_VALUE_CONST &&
		   (v->ctype == ANALYSIS_CONST_INT ||
		    v->ctype == ANALYSIS_CONST_STRING) &&
		   parse_int64(v->text, v->len, &out.v)) {
		out.kind = SV_INT;
	}
	return out;
}

static void
scol_add(struct scol *c, const struct analysis_value *v)
{
	struct sval sv = sval_of(v);

	if (sv.kind == SV_UNKNOWN || c->nvals == MAX_VALS)
		c->unknown = true;
	else
		c->vals[c->nvals++] = sv;
}

static struct scol *
scol_for(struct rowinfo *ri, size_t first, size_t n, const char *name)
{
	size_t i;

	for (i = first; i < first + n; i++)
		if (strcmp(ri->cols[i].name, name) == 0)
			return &ri->cols[i];
	return NULL;
}

static enum wkind
write_kind(const char *text, const struct analysis_stmt *st)
{
	const char *t = text + st->offset;

	t += strspn(t, " \t\r\n");
	if (strncasecmp(t, "insert", 6) == 0)
		return W_INSERT;
	if (strncasecmp(t, "update", 6) == 0)
		return W_UPDATE;
	if (strncasecmp(t, "delete", 6) == 0)
		return W_DELETE;
	return W_NONE;	/* WITH ..., MERGE, COPY: table level */
}

/*
 * The row-level facts of a one-statement text on one relation: its
 * WHERE terms on that relation, and for a write the values it stores.
 */
static struct rowinfo *
summarise_rows(const struct analysis *a, const char *text)
{
	const struct analysis_stmt *st = &a->stmts[0];
	const struct analysis_rel *rel;
	const struct analysis_pred *pr;
	struct rowinfo *ri;
	struct scol *c;
	size_t i, r, npreds, nw = 0, target = SIZE_MAX;
	enum wkind wk = W_NONE;

	if (a->n_stmts != 1 || st->overflow)
		return NULL;
	for (i = 0; i < st->n_rels; i++) {
		rel = &a->rels[st->rels_first + i];
		if (st->kind == ANALYSIS_READ ? rel->read : rel->written) {
			if (target != SIZE_MAX || rel->maybe_cte)
				return NULL;	/* one relation only */
			target = st->rels_first + i;
		}
	}
	if (target == SIZE_MAX)
		return NULL;
	if (st->kind == ANALYSIS_WRITE) {
		wk = write_kind(text, st);
		if (wk == W_NONE || st->creates_relation)
			return NULL;
		if (st->n_rels != 1)	/* UPDATE ... FROM, DELETE ... USING */
			wk = wk == W_INSERT ? W_NONE : wk;
		if (wk == W_NONE)
			return NULL;
		nw = st->n_cols < MAX_ROWCOLS ? st->n_cols : MAX_ROWCOLS;
	} else if (st->kind != ANALYSIS_READ) {
		return NULL;
	}
	npreds = st->n_preds < MAX_ROWCOLS ? st->n_preds : MAX_ROWCOLS;
	ri = calloc(1, sizeof(*ri) + (npreds + nw) * sizeof(struct scol));
	if (!ri)
		return NULL;
	memcpy(ri->rel, a->rels[target].name, NAME_MAX_LEN);
	ri->wkind = (uint8_t)wk;
	ri->upsert = st->on_conflict == ANALYSIS_CONFLICT_UPDATE;
	for (i = 0; i < st->n_preds && ri->n_preds < npreds; i++) {
		pr = &a->preds[st->preds_first + i];
		if (pr->rel != target)
			continue;
		c = &ri->cols[ri->n_preds++];
		memcpy(c->name, pr->column, NAME_MAX_LEN);
		for (r = 0; r < pr->n_values; r++)
			scol_add(c, &a->values[pr->values_first + r]);
	}
	if (wk == W_INSERT || wk == W_UPDATE) {
		ri->wcols_complete = st->rows_known && st->n_cols > 0 &&
				     st->n_cols <= MAX_ROWCOLS;
		for (i = 0; i < nw; i++) {
			c = &ri->cols[ri->n_preds + ri->n_wcols++];
			memcpy(c->name, a->cols[st->cols_first + i].name,
			       NAME_MAX_LEN);
			if (!st->rows_known)
				c->unknown = true;
			for (r = 0; r < st->n_rows && st->rows_known; r++)
				scol_add(c, &a->values[st->rows_first +
						       r * st->row_width + i]);
		}
	}
	return ri;
}

static bool
has_skip_hint(const char *text, size_t len)
{
	static const char hint[] = "pgvalet:skip";

	return len >= sizeof(hint) - 1 &&
	       memmem(text, len, hint, sizeof(hint) - 1) != NULL;
}

/* A new summary of text, or NULL on OOM. */
static struct summary *
build(const char *text, size_t len, uint64_t hash)
{
	struct summary *s = calloc(1, sizeof(*s));
	struct analysis a;

	if (!s || !(s->text = malloc(len + 1))) {
		free(s);
		return NULL;
	}
	memcpy(s->text, text, len);
	s->text[len] = '\0';
	s->len = len;
	s->hash = hash;
	if (memchr(text, '\0', len) ||
	    analysis_parse(s->text, &a, NULL, 0) < 0) {
		s->base = BASE_BAD;
		return s;
	}
	if (summarise(s, &a, s->text)) {
		analysis_free(&a);
		summary_free(s);
		return NULL;
	}
	if (s->base == BASE_READ || s->base == BASE_WRITE)
		s->rows = summarise_rows(&a, s->text);
	analysis_free(&a);
	s->bytes = sizeof(*s) + len + 1 + s->n_names * sizeof(*s->names) +
		   3 * ALLOC_OVERHEAD;
	if (s->rows)
		s->bytes += sizeof(*s->rows) + ALLOC_OVERHEAD +
			    (s->rows->n_preds + s->rows->n_wcols) *
				    sizeof(struct scol);
	if (s->base == BASE_READ && has_skip_hint(text, len))
		s->base = BASE_READ_NOCACHE;
	return s;
}

/* ---- planning ------------------------------------------------------------ */

static void
conservative(struct plan *p)
{
	memset(p, 0, sizeof(*p));
	p->flood = true;
	p->writes = true;
}

static bool
push_tags(uint64_t *dst, uint32_t *n, const uint64_t *src, size_t k)
{
	if (*n + k > CACHE_MAX_TAGS)
		return false;
	memcpy(dst + *n, src, k * sizeof(*src));
	*n += (uint32_t)k;
	return true;
}

/* The Bind parameters a plan may read row keys from. */
struct params {
	const uint8_t *p;	/* Bind body after portal and statement */
	size_t len;
};

static int
be16(const uint8_t *p)
{
	return (int16_t)((p[0] << 8) | p[1]);
}

static int64_t
be_int(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < n; i++)
		v = (v << 8) | p[i];
	if (n < 8 && (p[0] & 0x80))	/* sign-extend */
		v |= ~UINT64_C(0) << (8 * n);
	return (int64_t)v;
}

/* Parameter 'idx' (1-based) as an integer, text or binary int2/4/8. */
static bool
param_int(const struct params *pp, int idx, int64_t *out)
{
	size_t off = 2, i;
	int nfmt, nparams, fmt = 0;
	int32_t len;

	if (!pp || !pp->p || pp->len < 2)
		return false;
	nfmt = be16(pp->p);
	if (nfmt < 0 || off + 2 * (size_t)nfmt + 2 > pp->len)
		return false;
	if (nfmt == 1)
		fmt = be16(pp->p + off);
	else if (nfmt > 1 && idx <= nfmt)
		fmt = be16(pp->p + off + 2 * (size_t)(idx - 1));
	off += 2 * (size_t)nfmt;
	nparams = be16(pp->p + off);
	off += 2;
	if (idx > nparams)
		return false;
	for (i = 1;; i++) {
		if (off + 4 > pp->len)
			return false;
		len = (int32_t)((uint32_t)pp->p[off] << 24 |
				(uint32_t)pp->p[off + 1] << 16 |
				(uint32_t)pp->p[off + 2] << 8 | pp->p[off + 3]);
		off += 4;
		if (len > 0 && off + (size_t)len > pp->len)
			return false;
		if ((int)i == idx)
			break;
		if (len > 0)
			off += (size_t)len;
	}
	if (len <= 0)
		return false;	/* NULL matches no row, but keep it simple */
	if (fmt == 0)
		return parse_int64((const char *)pp->p + off, (size_t)len, out);
	if (fmt == 1 && (len == 2 || len == 4 || len == 8)) {
		*out = be_int(pp->p + off, (size_t)len);
		return true;
	}
	return false;
}

/* Every value of c as an integer into v (n of them), or false. */
static bool
resolve(const struct scol *c, const struct params *pp, int64_t *v,
	size_t *n)
{
	size_t i;

	if (c->unknown || c->nvals == 0)
		return false;
	for (i = 0; i < c->nvals; i++) {
		if (*n == MAX_ROW_TAGS)
			return false;
		if (c->vals[i].kind == SV_INT)
			v[(*n)++] = c->vals[i].v;
		else if (!param_int(pp, c->vals[i].param, &v[(*n)++]))
			return false;
	}
	return true;
}

/* A point lookup: the rows and row tags of a read by key, or false. */
static bool
plan_read_rows(const struct summary *s, const struct sname *n,
	       const struct cat_rel *r, uint64_t table, const struct params *pp,
	       struct plan *p)
{
	const struct rowinfo *ri = s->rows;
	const struct scol *c;
	int64_t v[MAX_ROW_TAGS];
	size_t nv = 0, i;

	if (!ri || ri->wkind != W_NONE || strcmp(ri->rel, n->name) != 0 ||
	    !r->key_col[0] || r->n_read != 1 || r->read_tags[0] != table ||
	    !(c = scol_for((struct rowinfo *)ri, 0, ri->n_preds, r->key_col)) ||
	    !resolve(c, pp, v, &nv) ||
	    p->n_tags + 1 + nv > CACHE_MAX_TAGS)
		return false;
	p->tags[p->n_tags++] = cache_tag_rows(table);
	for (i = 0; i < nv; i++)
		p->tags[p->n_tags++] = cache_tag_row(table, v[i]);
	return true;
}

/* A relation read: its tags into the plan, or false (not cacheable). */
static bool
plan_read(struct plan_table *pt, const char *db, const struct summary *s,
	  const struct sname *n, const struct params *pp, struct plan *p)
{
	struct cat_rel r;

	if (catalog_rel(pt->cat, db, n->name, &r) != CAT_KNOWN)
		return false;
	if (!r.exists)
		return n->maybe_cte;	/* a WITH query; else an error */
	if (r.uncacheable)
		return false;
	if (plan_read_rows(s, n, &r, cache_tag_table(db, n->name), pp, p))
		return true;
	return push_tags(p->tags, &p->n_tags, r.read_tags, r.n_read);
}

/* The key values of every row a write changes (old and new), or false. */
static bool
write_rows(const struct rowinfo *ri, const char *key, const struct params *pp,
	   int64_t *v, size_t *nv)
{
	const struct scol *c;

	*nv = 0;
	if (ri->wkind == W_UPDATE || ri->wkind == W_DELETE) {
		c = scol_for((struct rowinfo *)ri, 0, ri->n_preds, key);
		if (!c || !resolve(c, pp, v, nv))
			return false;
	}
	if (ri->wkind == W_INSERT && (ri->upsert || !ri->wcols_complete))
		return false;
	c = scol_for((struct rowinfo *)ri, ri->n_preds, ri->n_wcols, key);
	if (c)	/* the key column is set: its new values too */
		return resolve(c, pp, v, nv);
	return ri->wkind != W_INSERT;	/* INSERT: key from a default */
}

static bool
push_one(struct plan *p, uint64_t tag)
{
	return push_tags(p->inval, &p->n_inval, &tag, 1);
}

static void
plan_write(struct plan_table *pt, const char *db, const struct summary *s,
	   const struct sname *n, const struct params *pp, struct plan *p)
{
	uint64_t table = cache_tag_table(db, n->name);
	const struct rowinfo *ri = s->rows;
	int64_t v[MAX_ROW_TAGS];
	struct cat_rel r;
	bool by_row;
	size_t nv = 0, i;

	if (catalog_rel(pt->cat, db, n->name, &r) != CAT_KNOWN ||
	    r.write_floods) {
		p->flood = true;
		return;
	}
	by_row = ri && ri->wkind != W_NONE && r.key_col[0] &&
		 strcmp(ri->rel, n->name) == 0 &&
		 write_rows(ri, r.key_col, pp, v, &nv);
	for (i = 0; i < nv && by_row; i++)
		if (!push_one(p, cache_tag_row(table, v[i])))
			p->flood = true;
	for (i = 0; i < r.n_write; i++) {
		if (!push_one(p, r.write_tags[i]))
			p->flood = true;
		if ((!by_row || r.write_tags[i] != table) &&
		    !push_one(p, cache_tag_rows(r.write_tags[i])))
			p->flood = true;
	}
}

static void
plan_from(struct plan_table *pt, const char *db, const struct summary *s,
	  const struct params *pp, struct plan *p)
{
	const struct sname *n;
	enum cat_func f;
	uint64_t dbtag = cache_tag_db(db);
	bool cacheable = s->base == BASE_READ;
	uint32_t i;

	memset(p, 0, sizeof(*p));
	p->tx = (enum plan_tx)s->tx;
	p->repeatable = s->repeatable;
	if (s->base == BASE_BAD)
		return;
	p->writes = s->base >= BASE_WRITE;
	p->flood = s->base >= BASE_FLOOD;
	p->forget_catalog = s->base == BASE_DDL || s->base == BASE_CREATE;
	p->tags[p->n_tags++] = dbtag;
	for (i = 0; i < s->n_names; i++) {
		n = &s->names[i];
		switch (n->role) {
		case ROLE_FUNC:
			if (catalog_func(pt->cat, db, n->name, &f) !=
			    CAT_KNOWN) {
				/* it may be a user function that writes */
				cacheable = false;
				if (s->base != BASE_PASS)
					p->writes = p->flood = true;
			} else if (f != CAT_FUNC_SAFE) {
				cacheable = false;
				if (f == CAT_FUNC_WRITES)
					p->writes = p->flood = true;
			}
			break;
		case ROLE_READ:
			if (cacheable && !plan_read(pt, db, s, n, pp, p))
				cacheable = false;
			break;
		default:
			if (!p->flood)
				plan_write(pt, db, s, n, pp, p);
			break;
		}
	}
	p->cacheable = cacheable && !p->writes;
	if (!p->cacheable)
		p->n_tags = 0;
	if (p->flood)
		p->n_inval = 0;
}

/* ---- numeric literals out of simple-protocol texts ----------------------- */

enum { NORM_MAX_TEXT = 16384, NORM_MAX_LITS = 256 };

/* End of the quoted run starting at t[i] (its opening quote q). */
static size_t
skip_quoted(const char *t, size_t len, size_t i, char q, bool backslash)
{
	for (i++; i < len; i++) {
		if (backslash && t[i] == '\\' && i + 1 < len) {
			i++;
		} else if (t[i] == q) {
			if (i + 1 < len && t[i + 1] == q)
				i++;	/* doubled quote */
			else
				return i + 1;
		}
	}
	return len;
}

/* $tag$ ... $tag$ starting at t[i], or 0 when t[i] starts none. */
static size_t
skip_dollar(const char *t, size_t len, size_t i)
{
	size_t j = i + 1, tag;

	while (j < len && t[j] != '$' && sqlch_ident(t[j]))
		j++;
	if (j >= len || t[j] != '$' || (j > i + 1 && t[i + 1] >= '0' &&
					    t[i + 1] <= '9'))
		return 0;
	tag = j - i + 1;
	for (j++; j + tag <= len; j++)
		if (memcmp(t + j, t + i, tag) == 0)
			return j + tag;
	return len;
}

static size_t
skip_comment(const char *t, size_t len, size_t i)
{
	int depth = 1;

	for (i += 2; i < len && depth; i++) {
		if (t[i] == '/' && i + 1 < len && t[i + 1] == '*')
			depth++, i++;
		else if (t[i] == '*' && i + 1 < len && t[i + 1] == '/')
			depth--, i++;
	}
	return i;
}

/* Length of the numeric literal at t[i], or 0. */
static size_t
number_at(const char *t, size_t len, size_t i)
{
	size_t j = i;
	bool digits = false;

	while (j < len && t[j] >= '0' && t[j] <= '9')
		j++, digits = true;
	if (j < len && t[j] == '.' && !(j + 1 < len && t[j + 1] == '.')) {
		j++;
		while (j < len && t[j] >= '0' && t[j] <= '9')
			j++, digits = true;
	}
	if (!digits)
		return 0;
	if (j < len && (t[j] == 'e' || t[j] == 'E')) {
		size_t k = j + 1;

		if (k < len && (t[k] == '+' || t[k] == '-'))
			k++;
		if (k < len && t[k] >= '0' && t[k] <= '9') {
			while (k < len && t[k] >= '0' && t[k] <= '9')
				k++;
			j = k;
		}
	}
	if (j < len && (sqlch_ident(t[j]) || t[j] == '.'))
		return (size_t)-1;	/* 123abc: leave the text alone */
	return j - i;
}

struct normalised {
	char text[NORM_MAX_TEXT + NORM_MAX_LITS * 4];
	size_t len;
	uint8_t params[NORM_MAX_TEXT + NORM_MAX_LITS * 4 + 4];
	size_t params_len;
	int nlits;
};

/* "$n" at dst (n <= NORM_MAX_LITS); returns its length. */
static size_t
put_placeholder(char *dst, unsigned n)
{
	char digits[8];
	size_t k = 0, len;

	do
		digits[k++] = (char)('0' + n % 10);
	while ((n /= 10) && k < sizeof(digits));
	dst[0] = '$';
	for (len = 1; k; len++)
		dst[len] = digits[--k];
	return len;
}

/*
 * The text with each numeric literal replaced by $1, $2 ... and the
 * literals as a Bind body (text format), so that texts differing only in
 * their numbers share one parse.  Strings are left alone ('now' must stay
 * visible).  False when nothing was replaced or the text does not lend
 * itself (too long, positional parameters, odd numbers).
 */
static bool
normalise(const char *t, size_t len, struct normalised *n)
{
	size_t i = 0, k, out = 0, p = 4, copied = 0;

	if (len > NORM_MAX_TEXT)
		return false;
	n->nlits = 0;
	while (i < len) {
		char c = t[i];
		uint8_t cls = sqlchar_class[(unsigned char)c];

		/* blanks, operators, punctuation: nothing starts here */
		if (!(cls & (SQLCH_IDENT | SQLCH_SHAPE))) {
			i++;
			continue;
		}
		/* a word (not a number, not '$'): skip it whole, unless it is
		 * the E of an E'...' string */
		if ((cls & (SQLCH_IDENT | SQLCH_DIGIT)) == SQLCH_IDENT &&
		    c != '$') {
			if ((c == 'e' || c == 'E') && i + 1 < len &&
			    t[i + 1] == '\'' &&
			    (i == 0 || !sqlch_ident(t[i - 1]))) {
				i = skip_quoted(t, len, i + 1, '\'', true);
				continue;
			}
			for (i++; i < len && sqlch_ident(t[i]); i++)
				;
			continue;
		}
		if (c == '\'' || c == '"') {
			i = skip_quoted(t, len, i, c, false);
		} else if (c == '-' && i + 1 < len && t[i + 1] == '-') {
			while (i < len && t[i] != '\n')
				i++;
		} else if (c == '/' && i + 1 < len && t[i + 1] == '*') {
			i = skip_comment(t, len, i);
		} else if (c == '$') {
			if (i + 1 < len && t[i + 1] >= '0' && t[i + 1] <= '9')
				return false;	/* a $n already */
			k = skip_dollar(t, len, i);
			i = k ? k : i + 1;
		} else if ((cls & SQLCH_DIGIT) ||
			   (c == '.' && i + 1 < len && t[i + 1] >= '0' &&
			    t[i + 1] <= '9' && (i == 0 || !sqlch_ident(t[i - 1])))) {
			k = number_at(t, len, i);
			if (k == (size_t)-1 || n->nlits == NORM_MAX_LITS)
				return false;
			memcpy(n->text + out, t + copied, i - copied);
			out += i - copied;
			out += put_placeholder(n->text + out, ++n->nlits);
			n->params[p++] = (uint8_t)(k >> 24);
			n->params[p++] = (uint8_t)(k >> 16);
			n->params[p++] = (uint8_t)(k >> 8);
			n->params[p++] = (uint8_t)k;
			memcpy(n->params + p, t + i, k);
			p += k;
			i += k;
			copied = i;
		} else {
			i++;
		}
	}
	if (!n->nlits)
		return false;
	memcpy(n->text + out, t + copied, len - copied);
	n->len = out + len - copied;
	n->params[0] = 0;	/* no format codes: all text */
	n->params[1] = 0;
	n->params[2] = (uint8_t)(n->nlits >> 8);
	n->params[3] = (uint8_t)n->nlits;
	n->params_len = p;
	return true;
}

static void plan_text(struct plan_table *pt, const char *db, const char *text,
		      size_t len, const struct params *pp, bool normalised,
		      struct plan *out, bool *fallback);

void
plan_make(struct plan_table *pt, const char *db, const char *text,
	  size_t len, const uint8_t *bind, size_t bind_len, struct plan *out)
{
	static _Thread_local struct normalised n;
	struct params pp = { .p = bind, .len = bind_len };
	bool fallback = false;

	if (!bind && normalise(text, len, &n)) {
		pp.p = n.params;
		pp.len = n.params_len;
		plan_text(pt, db, n.text, n.len, &pp, true, out, &fallback);
		if (!fallback)
			return;
		pp.p = NULL;
		pp.len = 0;
	}
	plan_text(pt, db, text, len, &pp, false, out, &fallback);
}

/* Plan from the summary of 'text' (normalised or as sent). */
static void
plan_text(struct plan_table *pt, const char *db, const char *text,
	  size_t len, const struct params *ppa, bool normalised,
	  struct plan *out, bool *fallback)
{
	struct params pp = *ppa;
	uint64_t h = XXH3_64bits(text, len);
	struct plan_shard *sh = &pt->shards[h % PLAN_SHARDS];
	size_t b = (size_t)(h / PLAN_SHARDS) % PLAN_BUCKETS;
	struct summary *s, *old, **link;

	pthread_mutex_lock(&sh->lock);
	for (s = sh->buckets[b]; s; s = s->next)
		if (s->hash == h && s->len == len &&
		    memcmp(s->text, text, len) == 0) {
			*fallback = normalised && s->base == BASE_BAD;
			if (!*fallback)
				plan_from(pt, db, s, &pp, out);
			pthread_mutex_unlock(&sh->lock);
			return;
		}
	pthread_mutex_unlock(&sh->lock);

	/* Parse outside the lock; a racing twin is harmless. */
	s = build(text, len, h);
	if (!s) {
		conservative(out);
		return;
	}
	/* "SET x = $1", "CREATE SEQUENCE s START $1" and the like do not
	 * parse: a normalised text sends the caller back to the text as
	 * sent.  Decided per call, not stored: the same text may come as
	 * sent too (a Parse), and then its plan is the parser's verdict. */
	*fallback = normalised && s->base == BASE_BAD;
	if (!*fallback)
		plan_from(pt, db, s, &pp, out);
	if (len > MAX_TEXT || s->bytes > sh->max_bytes / 4) {
		summary_free(s);
		return;
	}
	pthread_mutex_lock(&sh->lock);
	while (sh->bytes + s->bytes > sh->max_bytes && (old = sh->oldest)) {
		for (link = &sh->buckets[(old->hash / PLAN_SHARDS) %
					 PLAN_BUCKETS];
		     *link != old; link = &(*link)->next)
			;
		*link = old->next;
		sh->oldest = old->newer;
		if (sh->oldest)
			sh->oldest->older = NULL;
		else
			sh->newest = NULL;
		sh->bytes -= old->bytes;
		summary_free(old);
	}
	s->next = sh->buckets[b];
	sh->buckets[b] = s;
	s->older = sh->newest;
	if (sh->newest)
		sh->newest->newer = s;
	else
		sh->oldest = s;
	sh->newest = s;
	sh->bytes += s->bytes;
	pthread_mutex_unlock(&sh->lock);
}
