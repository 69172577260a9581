/*
 * fuzz_analysis.c - statement analysis (analysis/shape.h) on arbitrary
 * SQL text.  The input becomes a NUL-terminated heap copy, as the proxy
 * hands analysis_parse() a copy of a Query body; everything the result
 * indexes must lie inside its pools and the text, every name must be
 * terminated, and the summary must agree with the statements.  The
 * fingerprint and normalised text are taken too.
 */
#include <string.h>

#include "analysis/shape.h"
#include "fuzz.h"

static void
check_name(const char *name)
{
	FUZZ_CHECK(memchr(name, '\0', ANALYSIS_NAME_MAX) != NULL);
}

static void
check_pools(const struct analysis *a)
{
	const struct analysis_value *v;
	size_t i;

	FUZZ_CHECK(a->n_stmts <= ANALYSIS_MAX_ITEMS);
	FUZZ_CHECK(a->n_rels <= ANALYSIS_MAX_ITEMS);
	FUZZ_CHECK(a->n_funcs <= ANALYSIS_MAX_ITEMS);
	FUZZ_CHECK(a->n_preds <= ANALYSIS_MAX_ITEMS);
	FUZZ_CHECK(a->n_values <= ANALYSIS_MAX_ITEMS);
	FUZZ_CHECK(a->n_cols <= ANALYSIS_MAX_ITEMS);
	for (i = 0; i < a->n_rels; i++) {
		check_name(a->rels[i].schema);
		check_name(a->rels[i].name);
	}
	for (i = 0; i < a->n_funcs; i++) {
		check_name(a->funcs[i].schema);
		check_name(a->funcs[i].name);
	}
	for (i = 0; i < a->n_cols; i++)
		check_name(a->cols[i].name);
	for (i = 0; i < a->n_values; i++) {
		v = &a->values[i];
		FUZZ_CHECK((unsigned)v->kind <= ANALYSIS_VALUE_DEFAULT);
		FUZZ_CHECK((unsigned)v->ctype <= ANALYSIS_CONST_BITSTRING);
		FUZZ_CHECK(v->text != NULL && strlen(v->text) == v->len);
		FUZZ_CHECK(v->kind == ANALYSIS_VALUE_CONST ||
			   (v->len == 0 && v->ctype == ANALYSIS_CONST_NONE));
		/* The walk that finds $n may stop short of deep ones. */
		if (v->kind == ANALYSIS_VALUE_PARAM ||
		    v->kind == ANALYSIS_VALUE_PARAM_ARRAY)
			FUZZ_CHECK(v->param <= a->max_param || a->overflow);
	}
}

static void
check_preds(const struct analysis *a, const struct analysis_stmt *st)
{
	const struct analysis_pred *p;
	size_t i;

	FUZZ_CHECK(st->preds_first <= a->n_preds &&
		   st->n_preds <= a->n_preds - st->preds_first);
	for (i = 0; i < st->n_preds; i++) {
		p = &a->preds[st->preds_first + i];
		/* A predicate names a relation of its own statement. */
		FUZZ_CHECK(p->rel >= st->rels_first &&
			   p->rel - st->rels_first < st->n_rels);
		FUZZ_CHECK(p->values_first <= a->n_values &&
			   p->n_values <= a->n_values - p->values_first);
		check_name(p->column);
	}
}

static void
check_stmt(const struct analysis *a, const struct analysis_stmt *st,
	   size_t text_len)
{
	FUZZ_CHECK((unsigned)st->kind <= (unsigned)a->kind);
	FUZZ_CHECK((unsigned)st->tx <= ANALYSIS_TX_SET);
	FUZZ_CHECK((unsigned)st->isolation <= ANALYSIS_ISO_SERIALIZABLE);
	FUZZ_CHECK(st->tx_read_only >= -1 && st->tx_read_only <= 1);
	FUZZ_CHECK((unsigned)st->on_conflict <= ANALYSIS_CONFLICT_UPDATE);
	FUZZ_CHECK(st->offset <= text_len &&
		   st->length <= text_len - st->offset);
	check_name(st->name);
	FUZZ_CHECK(st->rels_first <= a->n_rels &&
		   st->n_rels <= a->n_rels - st->rels_first);
	FUZZ_CHECK(st->funcs_first <= a->n_funcs &&
		   st->n_funcs <= a->n_funcs - st->funcs_first);
	FUZZ_CHECK(st->cols_first <= a->n_cols &&
		   st->n_cols <= a->n_cols - st->cols_first);
	FUZZ_CHECK(st->rows_first <= a->n_values);
	FUZZ_CHECK(st->row_width == 0 ||
		   st->n_rows <=
			   (a->n_values - st->rows_first) / st->row_width);
	FUZZ_CHECK(!st->rows_known || st->n_rows == 0 || st->row_width > 0);
	FUZZ_CHECK(st->max_param <= a->max_param);
	FUZZ_CHECK(!st->overflow || a->overflow);
	check_preds(a, st);
}

/* The text's summary is the union of its statements'. */
static void
check_summary(const struct analysis *a)
{
	bool lock = false, temp = false, sys = false, vol = false;
	bool clock = false, creates = false;
	size_t i;

	for (i = 0; i < a->n_stmts; i++) {
		lock |= a->stmts[i].has_row_lock;
		temp |= a->stmts[i].has_temp_ref;
		sys |= a->stmts[i].uses_system_catalog;
		vol |= a->stmts[i].has_volatile_func;
		clock |= a->stmts[i].uses_clock;
		creates |= a->stmts[i].creates_relation;
	}
	FUZZ_CHECK(lock == a->has_row_lock && temp == a->has_temp_ref);
	FUZZ_CHECK(sys == a->uses_system_catalog);
	FUZZ_CHECK(vol == a->has_volatile_func);
	FUZZ_CHECK(clock == a->uses_clock && creates == a->creates_relation);
	FUZZ_CHECK(a->n_stmts > 0 || a->kind == ANALYSIS_READ);
}

static void
check_empty(const struct analysis *a)
{
	FUZZ_CHECK(a->n_stmts == 0 && a->stmts == NULL);
	FUZZ_CHECK(a->n_rels == 0 && a->rels == NULL);
	FUZZ_CHECK(a->n_values == 0 && a->values == NULL);
	FUZZ_CHECK(a->text_pool == NULL && a->fingerprint == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), err[128], *norm;
	struct analysis a;
	size_t i, len;
	int rc;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	len = strlen(text);	/* an embedded NUL ends the text */
	memset(err, 'x', sizeof(err));
	rc = analysis_parse(text, &a, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -1);
	if (rc == 0) {
		FUZZ_CHECK((unsigned)a.kind <= ANALYSIS_UNKNOWN);
		check_pools(&a);
		for (i = 0; i < a.n_stmts; i++)
			check_stmt(&a, &a.stmts[i], len);
		check_summary(&a);
		FUZZ_CHECK(a.fingerprint == analysis_fingerprint(text));
	} else {
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
		check_empty(&a);
	}
	analysis_free(&a);
	check_empty(&a);
	norm = analysis_normalize(text);
	free(norm);
	free(text);
	return 0;
}
