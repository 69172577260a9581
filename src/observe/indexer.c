/*
 * indexer.c - verified index advice and creation (see indexer.h).
 *
 * A candidate is a column list on one table: each equality or join
 * column alone, the range and the ORDER BY column alone, and the
 * equality columns together followed by the range (or else the ORDER BY)
 * column.  Each is created as a hypothetical index (hypopg), the example
 * is EXPLAINed, and the cheapest plan that uses its index and costs at
 * most (1 - INDEXER_MIN_GAIN) of the plan without it wins.
 */
#include "observe/indexer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <xxhash.h>

#include "analysis/indexcols.h"

enum { MAX_CANDIDATES = 12 };

/* The example's plans, planned with or without its $n parameters. */
struct example {
	const char *sql;
	int nparams;
};

struct table {
	bool found;
	char oid[16];
	char schema[ANALYSIS_NAME_MAX];
	char name[ANALYSIS_NAME_MAX];
	int n_leading;
	char leading[32][ANALYSIS_NAME_MAX];	/* first columns of indexes */
};

struct candidate {
	int rel;
	int n_cols;
	char cols[INDEXER_MAX_COLS][ANALYSIS_NAME_MAX];
};

static void
set_why(char *why, size_t len, const char *what, const PGconn *c)
{
	const char *msg = c ? PQerrorMessage(c) : "";
	size_t n;

	snprintf(why, len, "%s%s%s", what, msg[0] ? ": " : "", msg);
	n = strlen(why);
	while (n && (why[n - 1] == '\n' || why[n - 1] == ' '))
		why[--n] = '\0';
}

static PGresult *
query(PGconn *c, const char *sql, int n, const char *const *params)
{
	return PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
}

static bool
ok(const PGresult *r)
{
	ExecStatusType s = PQresultStatus(r);

	return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

/* Run a statement whose result does not matter beyond success. */
static bool
exec_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	bool good = ok(r);

	PQclear(r);
	return good;
}

static bool
quote_ident(PGconn *c, const char *name, char *out, size_t len)
{
	char *q = PQescapeIdentifier(c, name, strlen(name));
	bool fits;

	if (!q)
		return false;
	fits = strlen(q) < len;
	if (fits)
		memcpy(out, q, strlen(q) + 1);
	PQfreemem(q);
	return fits;
}

int
indexer_hypopg(PGconn *c, char *why, size_t whylen)
{
	PGresult *r = PQexec(c, "SELECT 1 FROM pg_extension WHERE extname = "
				"'hypopg'");
	bool have = ok(r) && PQntuples(r) == 1;

	PQclear(r);
	if (have)
		return 0;
	if (!exec_ok(c, "CREATE EXTENSION IF NOT EXISTS hypopg")) {
		set_why(why, whylen, "hypopg is not available (CREATE "
				     "EXTENSION hypopg failed)", c);
		return -1;
	}
	exec_ok(c, "COMMENT ON EXTENSION hypopg IS '" INDEXER_COMMENT
		   " (index advice)'");
	return 0;
}

/* ---- plans --------------------------------------------------------------- */

/* EXPLAIN (FORMAT JSON) of the example, as text the caller frees. */
static char *
explain(PGconn *c, const struct example *ex, char *why, size_t whylen)
{
	char sql[256], *out = NULL, *text;
	PGresult *r;
	int i;
	size_t len;

	if (ex->nparams == 0) {
		len = strlen(ex->sql) + 32;
		text = malloc(len);
		if (!text)
			return NULL;
		snprintf(text, len, "EXPLAIN (FORMAT JSON) %s", ex->sql);
		r = query(c, text, 0, NULL);
		free(text);
	} else {
		/* A generic plan: the parameters' values are not known. */
		r = PQprepare(c, "pgvalet_advisor", ex->sql, 0, NULL);
		PQclear(r);
		len = (size_t)snprintf(sql, sizeof(sql), "EXPLAIN (FORMAT JSON)"
				       " EXECUTE pgvalet_advisor(");
		for (i = 0; i < ex->nparams && len < sizeof(sql) - 8; i++)
			len += (size_t)snprintf(sql + len, sizeof(sql) - len,
						"%sNULL", i ? "," : "");
		snprintf(sql + len, sizeof(sql) - len, ")");
		exec_ok(c, "SET plan_cache_mode = force_generic_plan");
		r = query(c, sql, 0, NULL);
		exec_ok(c, "RESET plan_cache_mode");
		exec_ok(c, "DEALLOCATE pgvalet_advisor");
	}
	if (ok(r) && PQntuples(r) == 1)
		out = strdup(PQgetvalue(r, 0, 0));
	else
		set_why(why, whylen, "EXPLAIN failed", c);
	PQclear(r);
	return out;
}

/* The top plan node's total cost: the first "Total Cost" of the JSON. */
static double
plan_cost(const char *plan)
{
	const char *p = strstr(plan, "\"Total Cost\": ");

	return p ? strtod(p + 14, NULL) : -1.0;
}

/* How many $n the example has (0 when it cannot be prepared). */
static int
count_params(PGconn *c, const char *sql)
{
	PGresult *r = PQprepare(c, "pgvalet_advisor", sql, 0, NULL);
	int n = 0;

	if (ok(r)) {
		PQclear(r);
		r = PQdescribePrepared(c, "pgvalet_advisor");
		if (ok(r))
			n = PQnparams(r);
		exec_ok(c, "DEALLOCATE pgvalet_advisor");
	}
	PQclear(r);
	return n;
}

/* ---- tables and columns ------------------------------------------------- */

static void
find_table(PGconn *c, const struct idxcols_rel *rel, struct table *t)
{
	char qs[2 * ANALYSIS_NAME_MAX + 4], qn[2 * ANALYSIS_NAME_MAX + 4];
	char full[4 * ANALYSIS_NAME_MAX + 16];
	const char *p[1] = { full };
	PGresult *r;
	int i;

	memset(t, 0, sizeof(*t));
	if (!quote_ident(c, rel->name, qn, sizeof(qn)) ||
	    (rel->schema[0] && !quote_ident(c, rel->schema, qs, sizeof(qs))))
		return;
	snprintf(full, sizeof(full), "%s%s%s", rel->schema[0] ? qs : "",
		 rel->schema[0] ? "." : "", qn);
	r = query(c, "SELECT c.oid, n.nspname, c.relname FROM pg_class c JOIN"
		     " pg_namespace n ON n.oid = c.relnamespace WHERE c.oid ="
		     " to_regclass($1) AND c.relkind IN ('r', 'p', 'm')", 1, p);
	if (ok(r) && PQntuples(r) == 1) {
		t->found = true;
		snprintf(t->oid, sizeof(t->oid), "%s", PQgetvalue(r, 0, 0));
		snprintf(t->schema, sizeof(t->schema), "%s", PQgetvalue(r, 0, 1));
		snprintf(t->name, sizeof(t->name), "%s", PQgetvalue(r, 0, 2));
	}
	PQclear(r);
	if (!t->found)
		return;
	p[0] = t->oid;
	r = query(c, "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON"
		     " a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
		     " WHERE i.indrelid = $1::oid", 1, p);
	for (i = 0; ok(r) && i < PQntuples(r) && i < 32; i++)
		snprintf(t->leading[t->n_leading++], ANALYSIS_NAME_MAX, "%s",
			 PQgetvalue(r, i, 0));
	PQclear(r);
}

static bool
has_column(PGconn *c, const struct table *t, const char *col)
{
	const char *p[2] = { t->oid, col };
	PGresult *r = query(c, "SELECT 1 FROM pg_attribute WHERE attrelid ="
			       " $1::oid AND attname = $2 AND attnum > 0 AND"
			       " NOT attisdropped", 2, p);
	bool has = ok(r) && PQntuples(r) == 1;

	PQclear(r);
	return has;
}

/* Give every column its table (or -2: not a column of a known table). */
static void
resolve_columns(PGconn *c, struct idxcols *ic, const struct table *tabs)
{
	int i, r, hit;

	for (i = 0; i < ic->n_cols; i++) {
		struct idxcols_col *col = &ic->cols[i];

		if (col->rel >= 0) {
			if (!tabs[col->rel].found ||
			    !has_column(c, &tabs[col->rel], col->name))
				col->rel = -2;
			continue;
		}
		for (hit = -2, r = 0; r < ic->n_rels; r++) {
			if (ic->rels[r].query != col->query ||
			    !tabs[r].found || !has_column(c, &tabs[r], col->name))
				continue;
			hit = hit == -2 ? r : -3;	/* -3: ambiguous */
		}
		col->rel = hit < 0 ? -2 : hit;
	}
}

/* ---- candidates --------------------------------------------------------- */

static bool
leads_index(const struct table *t, const char *col)
{
	int i;

	for (i = 0; i < t->n_leading; i++)
		if (strcmp(t->leading[i], col) == 0)
			return true;
	return false;
}

static bool
in_list(char (*list)[ANALYSIS_NAME_MAX], int n, const char *col)
{
	int i;

	for (i = 0; i < n; i++)
		if (strcmp(list[i], col) == 0)
			return true;
	return false;
}

static void
add_candidate(struct candidate *cands, int *n, const struct table *t,
	      int rel, char (*cols)[ANALYSIS_NAME_MAX], int n_cols)
{
	int i, j;

	if (n_cols < 1 || *n == MAX_CANDIDATES || leads_index(t, cols[0]))
		return;
	for (i = 0; i < *n; i++) {
		if (cands[i].rel != rel || cands[i].n_cols != n_cols)
			continue;
		for (j = 0; j < n_cols; j++)
			if (strcmp(cands[i].cols[j], cols[j]) != 0)
				break;
		if (j == n_cols)
			return;		/* already there */
	}
	cands[*n].rel = rel;
	cands[*n].n_cols = n_cols;
	for (j = 0; j < n_cols; j++)
		memcpy(cands[*n].cols[j], cols[j], ANALYSIS_NAME_MAX);
	(*n)++;
}

/* Candidates on one table: singles first, then the composite. */
static void
table_candidates(const struct idxcols *ic, int rel, const struct table *t,
		 struct candidate *cands, int *n)
{
	char eq[INDEXER_MAX_COLS][ANALYSIS_NAME_MAX];
	char range[ANALYSIS_NAME_MAX] = "", order[ANALYSIS_NAME_MAX] = "";
	int i, n_eq = 0;

	for (i = 0; i < ic->n_cols; i++) {
		const struct idxcols_col *col = &ic->cols[i];

		if (col->rel != rel)
			continue;
		if ((col->role == IDXCOLS_EQ || col->role == IDXCOLS_JOIN) &&
		    n_eq < INDEXER_MAX_COLS - 1 && !in_list(eq, n_eq, col->name))
			memcpy(eq[n_eq++], col->name, ANALYSIS_NAME_MAX);
	}
	for (i = 0; i < ic->n_cols; i++) {
		const struct idxcols_col *col = &ic->cols[i];

		if (col->rel != rel || in_list(eq, n_eq, col->name))
			continue;
		if (col->role == IDXCOLS_RANGE && !range[0])
			memcpy(range, col->name, ANALYSIS_NAME_MAX);
		if (col->role == IDXCOLS_ORDER && !order[0])
			memcpy(order, col->name, ANALYSIS_NAME_MAX);
	}
	for (i = 0; i < n_eq; i++)
		add_candidate(cands, n, t, rel, &eq[i], 1);
	if (range[0])
		add_candidate(cands, n, t, rel, &range, 1);
	if (order[0])
		add_candidate(cands, n, t, rel, &order, 1);
	if (n_eq >= 2)
		add_candidate(cands, n, t, rel, eq, n_eq);
	if (n_eq >= 1 && (range[0] || order[0])) {
		memcpy(eq[n_eq], range[0] ? range : order, ANALYSIS_NAME_MAX);
		add_candidate(cands, n, t, rel, eq, n_eq + 1);
	}
}

/* "(a, b)" with quoted names; false if it does not fit. */
static bool
column_list(PGconn *c, char (*cols)[ANALYSIS_NAME_MAX], int n, char *out,
	    size_t len)
{
	char q[2 * ANALYSIS_NAME_MAX + 4];
	size_t used = 0;
	int i;

	for (i = 0; i < n; i++) {
		if (!quote_ident(c, cols[i], q, sizeof(q)))
			return false;
		used += (size_t)snprintf(out + used, len - used, "%s%s",
					 i ? ", " : "(", q);
		if (used >= len)
			return false;
	}
	used += (size_t)snprintf(out + used, len - used, ")");
	return used < len;
}

/* "schema"."table" */
static bool
table_ref(PGconn *c, const struct table *t, char *out, size_t len)
{
	char qs[2 * ANALYSIS_NAME_MAX + 4], qn[2 * ANALYSIS_NAME_MAX + 4];

	return quote_ident(c, t->schema, qs, sizeof(qs)) &&
	       quote_ident(c, t->name, qn, sizeof(qn)) &&
	       (size_t)snprintf(out, len, "%s.%s", qs, qn) < len;
}

/*
 * The cost of the example's plan with a hypothetical index on the
 * candidate, and whether the plan uses it; -1 on an error.
 */
static double
try_candidate(PGconn *c, const struct example *ex, const struct table *t,
	      struct candidate *cand, bool *used, char *why, size_t whylen)
{
	char tref[300], cols[600], ddl[1000], hypo[128] = "", *plan;
	const char *p[1] = { ddl };
	double cost = -1;
	PGresult *r;

	*used = false;
	if (!table_ref(c, t, tref, sizeof(tref)) ||
	    !column_list(c, cand->cols, cand->n_cols, cols, sizeof(cols)))
		return -1;
	snprintf(ddl, sizeof(ddl), "CREATE INDEX ON %s %s", tref, cols);
	r = query(c, "SELECT indexname FROM hypopg_create_index($1)", 1, p);
	if (ok(r) && PQntuples(r) == 1)
		snprintf(hypo, sizeof(hypo), "\"Index Name\": \"%s\"",
			 PQgetvalue(r, 0, 0));
	else
		set_why(why, whylen, "hypopg_create_index failed", c);
	PQclear(r);
	if (hypo[0] && (plan = explain(c, ex, why, whylen))) {
		cost = plan_cost(plan);
		*used = strstr(plan, hypo) != NULL;
		free(plan);
	}
	exec_ok(c, "SELECT hypopg_reset()");
	return cost;
}

static void
fill_advice(PGconn *c, const struct table *t, const struct candidate *cand,
	    struct indexer_advice *out)
{
	char tref[300], cols[600], qname[2 * INDEXER_NAME_MAX + 4];
	const char *names[INDEXER_MAX_COLS];
	int i;

	snprintf(out->schema, sizeof(out->schema), "%s", t->schema);
	snprintf(out->table, sizeof(out->table), "%s", t->name);
	out->n_cols = cand->n_cols;
	for (i = 0; i < cand->n_cols; i++) {
		memcpy(out->cols[i], cand->cols[i], ANALYSIS_NAME_MAX);
		names[i] = out->cols[i];
	}
	indexer_name(t->name, names, cand->n_cols, out->name);
	if (table_ref(c, t, tref, sizeof(tref)) &&
	    column_list(c, out->cols, out->n_cols, cols, sizeof(cols)) &&
	    quote_ident(c, out->name, qname, sizeof(qname)))
		snprintf(out->ddl, sizeof(out->ddl),
			 "CREATE INDEX CONCURRENTLY %s ON %s %s", qname, tref,
			 cols);
}

/* Parse, find the tables, list the candidates; INDEXER_NONE if none. */
static enum indexer_result
gather(PGconn *c, const char *sql, struct table *tabs,
       struct candidate *cands, int *n, char *why, size_t whylen)
{
	struct idxcols ic;
	char err[256];
	int r;

	if (idxcols_parse(sql, &ic, err, sizeof(err)) < 0) {
		snprintf(why, whylen, "cannot parse the statement: %s", err);
		return INDEXER_NONE;
	}
	if (!ic.is_select && !ic.is_write) {
		snprintf(why, whylen, "not one plain SELECT over tables, "
				      "UPDATE or DELETE");
		return INDEXER_NONE;
	}
	for (r = 0; r < ic.n_rels; r++)
		find_table(c, &ic.rels[r], &tabs[r]);
	resolve_columns(c, &ic, tabs);
	*n = 0;
	for (r = 0; r < ic.n_rels; r++)
		if (tabs[r].found)
			table_candidates(&ic, r, &tabs[r], cands, n);
	if (*n == 0) {
		snprintf(why, whylen, "no candidate column (none filtered, "
				      "joined or sorted on, or each already "
				      "leads an index)");
		return INDEXER_NONE;
	}
	return INDEXER_ADVICE;
}

enum indexer_result
indexer_advise(PGconn *c, const char *sql, struct indexer_advice *out,
	       char *why, size_t whylen)
{
	struct table tabs[IDXCOLS_MAX_RELS];
	struct candidate cands[MAX_CANDIDATES];
	struct example ex = { sql, 0 };
	double base, cost, best_cost = -1, seen_best = -1;
	int n, i, best = -1;
	bool used;
	char *plan;
	enum indexer_result res;

	memset(out, 0, sizeof(*out));
	res = gather(c, sql, tabs, cands, &n, why, whylen);
	if (res != INDEXER_ADVICE)
		return res;
	ex.nparams = count_params(c, sql);
	exec_ok(c, "SELECT hypopg_reset()");
	if (!(plan = explain(c, &ex, why, whylen)))
		return INDEXER_ERROR;
	base = plan_cost(plan);
	free(plan);
	for (i = 0; i < n; i++) {
		cost = try_candidate(c, &ex, &tabs[cands[i].rel], &cands[i],
				     &used, why, whylen);
		if (cost < 0)
			return INDEXER_ERROR;
		if (used && (seen_best < 0 || cost < seen_best))
			seen_best = cost;
		/* a wider index must be clearly cheaper than a narrower one */
		if (used && cost <= base * (1 - INDEXER_MIN_GAIN) &&
		    (best < 0 || cost < best_cost * 0.98)) {
			best = i;
			best_cost = cost;
		}
	}
	out->candidates = n;
	out->cost_before = base;
	if (best < 0) {
		if (seen_best >= 0)
			snprintf(why, whylen, "%d candidate%s, none lowers the "
				 "cost by %.0f%% (best %.2f -> %.2f)", n,
				 n == 1 ? "" : "s", INDEXER_MIN_GAIN * 100,
				 base, seen_best);
		else
			snprintf(why, whylen, "%d candidate%s, the planner "
				 "uses none (cost %.2f)", n, n == 1 ? "" : "s",
				 base);
		return INDEXER_NONE;
	}
	out->cost_after = best_cost;
	fill_advice(c, &tabs[cands[best].rel], &cands[best], out);
	return INDEXER_ADVICE;
}

/* ---- creation ----------------------------------------------------------- */

/* 1 valid, 0 invalid, -1 no such index. */
static int
index_state(PGconn *c, const struct indexer_advice *a)
{
	const char *p[2] = { a->schema, a->name };
	PGresult *r = query(c, "SELECT i.indisvalid FROM pg_class c JOIN"
			       " pg_namespace n ON n.oid = c.relnamespace JOIN"
			       " pg_index i ON i.indexrelid = c.oid WHERE"
			       " n.nspname = $1 AND c.relname = $2", 2, p);
	int st = -1;

	if (ok(r) && PQntuples(r) == 1)
		st = PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	return st;
}

static bool
drop_index(PGconn *c, const char *qualified)
{
	char sql[400];

	snprintf(sql, sizeof(sql), "DROP INDEX CONCURRENTLY IF EXISTS %s",
		 qualified);
	return exec_ok(c, sql);
}

int
indexer_create(PGconn *c, const struct indexer_advice *a, uint64_t shape,
	       bool *existed, bool *dropped_invalid, char *why, size_t whylen)
{
	char qs[2 * ANALYSIS_NAME_MAX + 4], qn[2 * INDEXER_NAME_MAX + 4];
	char qualified[300], comment[400];
	bool built;
	int st = index_state(c, a);

	*existed = *dropped_invalid = false;
	if (!quote_ident(c, a->schema, qs, sizeof(qs)) ||
	    !quote_ident(c, a->name, qn, sizeof(qn)) || !a->ddl[0]) {
		snprintf(why, whylen, "names too long");
		return -1;
	}
	snprintf(qualified, sizeof(qualified), "%s.%s", qs, qn);
	if (st == 1) {
		*existed = true;
		snprintf(why, whylen, "index %s already exists", a->name);
		return 0;
	}
	if (st == 0)	/* left by an earlier failed build */
		*dropped_invalid = drop_index(c, qualified);
	/* A concurrent build waits for every older transaction to end. */
	exec_ok(c, "SET statement_timeout = 0");
	built = exec_ok(c, a->ddl);
	if (!built)
		set_why(why, whylen, "CREATE INDEX CONCURRENTLY failed", c);
	exec_ok(c, "RESET statement_timeout");
	if (!built) {
		if (index_state(c, a) == 0)
			*dropped_invalid |= drop_index(c, qualified);
		return -1;
	}
	snprintf(comment, sizeof(comment), "COMMENT ON INDEX %s IS '"
		 INDEXER_COMMENT " for shape %016" PRIx64 "'", qualified,
		 shape);
	exec_ok(c, comment);
	return 0;
}

int
indexer_check_plan(PGconn *c, const char *sql, const char *name, bool *used,
		   double *cost, char *why, size_t whylen)
{
	struct example ex = { sql, count_params(c, sql) };
	char needle[INDEXER_NAME_MAX + 20];
	char *plan = explain(c, &ex, why, whylen);

	if (!plan)
		return -1;
	snprintf(needle, sizeof(needle), "\"Index Name\": \"%s\"", name);
	*used = strstr(plan, needle) != NULL;
	*cost = plan_cost(plan);
	free(plan);
	return 0;
}

int
indexer_set_role(PGconn *c, const char *role, char *why, size_t whylen)
{
	char q[2 * 128 + 4], sql[300];

	if (!role || !role[0])
		return exec_ok(c, "RESET ROLE") ? 0 : -1;
	if (!quote_ident(c, role, q, sizeof(q))) {
		snprintf(why, whylen, "role name too long");
		return -1;
	}
	snprintf(sql, sizeof(sql), "SET ROLE %s", q);
	if (exec_ok(c, sql))
		return 0;
	set_why(why, whylen, "cannot plan as the statement's role", c);
	return -1;
}

/* ---- names -------------------------------------------------------------- */

static void
append_clean(char *out, size_t *len, size_t cap, const char *s)
{
	for (; *s && *len < cap - 1; s++) {
		char ch = *s;

		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')))
			ch = '_';
		out[(*len)++] = ch;
	}
	out[*len] = '\0';
}

void
indexer_name(const char *table, const char *const *cols, int n_cols,
	     char out[INDEXER_NAME_MAX])
{
	char full[(INDEXER_MAX_COLS + 2) * ANALYSIS_NAME_MAX];
	size_t len = 0;
	int i;

	full[0] = '\0';
	append_clean(full, &len, sizeof(full), INDEXER_PREFIX);
	append_clean(full, &len, sizeof(full), table);
	for (i = 0; i < n_cols; i++) {
		append_clean(full, &len, sizeof(full), "_");
		append_clean(full, &len, sizeof(full), cols[i]);
	}
	if (len < INDEXER_NAME_MAX) {
		memcpy(out, full, len + 1);
		return;
	}
	/* shortened: keep it unique with a hash of the whole name */
	snprintf(out, INDEXER_NAME_MAX, "%.*s_%08x", INDEXER_NAME_MAX - 10,
		 full, (unsigned)XXH32(full, len, 0));
}

bool
indexer_excluded(const char *list, const char *schema, const char *table)
{
	const char *p = list, *end, *dot;
	size_t n, sl = strlen(schema), tl = strlen(table);

	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		end = p;
		while (*end && *end != ',')
			end++;
		n = (size_t)(end - p);
		while (n && p[n - 1] == ' ')
			n--;
		dot = memchr(p, '.', n);
		if (n && !dot && n == tl && strncasecmp(p, table, n) == 0)
			return true;
		if (n && dot && (size_t)(dot - p) == sl &&
		    strncasecmp(p, schema, sl) == 0 &&
		    n - sl - 1 == tl && strncasecmp(dot + 1, table, tl) == 0)
			return true;
		p = end;
	}
	return false;
}
