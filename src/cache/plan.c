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
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "analysis/shape.h"
#include "cache/tags.h"

enum {
	PLAN_SHARDS = 16,
	PLAN_BUCKETS = 1024,	/* per shard */
	NAME_MAX_LEN = ANALYSIS_NAME_MAX,
	MAX_TEXT = 64 * 1024,	/* longer texts are planned, not kept */
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
};

struct plan_shard {
	pthread_mutex_t lock;
	struct summary *buckets[PLAN_BUCKETS];
	struct summary *oldest, *newest;
	size_t n, max;
};

struct plan_table {
	struct catalog *cat;
	struct plan_shard shards[PLAN_SHARDS];
};

struct plan_table *
plan_table_new(struct catalog *cat, size_t max_texts)
{
	struct plan_table *pt = calloc(1, sizeof(*pt));
	size_t i;

	if (!pt)
		return NULL;
	if (!max_texts)
		max_texts = 65536;
	pt->cat = cat;
	for (i = 0; i < PLAN_SHARDS; i++) {
		pthread_mutex_init(&pt->shards[i].lock, NULL);
		pt->shards[i].max = max_texts / PLAN_SHARDS + 1;
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
	analysis_free(&a);
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

/* A relation read: its tags into the plan, or false (not cacheable). */
static bool
plan_read(struct plan_table *pt, const char *db, const struct sname *n,
	  struct plan *p)
{
	struct cat_rel r;

	if (catalog_rel(pt->cat, db, n->name, &r) != CAT_KNOWN)
		return false;
	if (!r.exists)
		return n->maybe_cte;	/* a WITH query; else an error */
	if (r.uncacheable)
		return false;
	return push_tags(p->tags, &p->n_tags, r.read_tags, r.n_read);
}

static void
plan_write(struct plan_table *pt, const char *db, const struct sname *n,
	   struct plan *p)
{
	struct cat_rel r;

	if (catalog_rel(pt->cat, db, n->name, &r) != CAT_KNOWN ||
	    r.write_floods ||
	    !push_tags(p->inval, &p->n_inval, r.write_tags, r.n_write))
		p->flood = true;
}

static void
plan_from(struct plan_table *pt, const char *db, const struct summary *s,
	  struct plan *p)
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
			if (cacheable && !plan_read(pt, db, n, p))
				cacheable = false;
			break;
		default:
			if (!p->flood)
				plan_write(pt, db, n, p);
			break;
		}
	}
	p->cacheable = cacheable && !p->writes;
	if (!p->cacheable)
		p->n_tags = 0;
	if (p->flood)
		p->n_inval = 0;
}

void
plan_make(struct plan_table *pt, const char *db, const char *text,
	  size_t len, struct plan *out)
{
	uint64_t h = XXH3_64bits(text, len);
	struct plan_shard *sh = &pt->shards[h % PLAN_SHARDS];
	size_t b = (size_t)(h / PLAN_SHARDS) % PLAN_BUCKETS;
	struct summary *s, *old, **pp;

	pthread_mutex_lock(&sh->lock);
	for (s = sh->buckets[b]; s; s = s->next)
		if (s->hash == h && s->len == len &&
		    memcmp(s->text, text, len) == 0) {
			plan_from(pt, db, s, out);
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
	plan_from(pt, db, s, out);
	if (len > MAX_TEXT) {
		summary_free(s);
		return;
	}
	pthread_mutex_lock(&sh->lock);
	if (sh->n >= sh->max && (old = sh->oldest)) {
		for (pp = &sh->buckets[(old->hash / PLAN_SHARDS) %
				       PLAN_BUCKETS];
		     *pp != old; pp = &(*pp)->next)
			;
		*pp = old->next;
		sh->oldest = old->newer;
		if (sh->oldest)
			sh->oldest->older = NULL;
		else
			sh->newest = NULL;
		sh->n--;
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
	sh->n++;
	pthread_mutex_unlock(&sh->lock);
}
