/*
 * fuzz_indexcols.c - the index advisor's column extraction
 * (analysis/indexcols.h) on arbitrary SQL text, as the advisor hands it
 * a client's statement: it must return 0 or -1, keep its counts within
 * the arrays, give every column a rel of its own query or of one around
 * it (or -1: several in its own), terminate every name, read only a
 * SELECT, UPDATE or DELETE, and report an OFFSET only for a SELECT.
 */
#include <string.h>

#include "analysis/indexcols.h"
#include "fuzz.h"

static void
check_name(const char *name)
{
	FUZZ_CHECK(memchr(name, '\0', ANALYSIS_NAME_MAX) != NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), err[128];
	struct idxcols ic;
	int i, rc;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	memset(err, 'x', sizeof(err));
	rc = idxcols_parse(text, &ic, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -1);
	if (rc < 0)
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
	FUZZ_CHECK(ic.n_rels >= 0 && ic.n_rels <= IDXCOLS_MAX_RELS);
	FUZZ_CHECK(ic.n_cols >= 0 && ic.n_cols <= IDXCOLS_MAX_COLS);
	FUZZ_CHECK(!(ic.is_select && ic.is_write));
	FUZZ_CHECK(ic.is_select || ic.is_write ||
		   (ic.n_rels == 0 && ic.n_cols == 0 && ic.n_queries == 0));
	FUZZ_CHECK(ic.is_select || (ic.offset == -1 && !ic.offset_param));
	for (i = 0; i < ic.n_rels; i++) {
		check_name(ic.rels[i].schema);
		check_name(ic.rels[i].name);
		check_name(ic.rels[i].alias);
		FUZZ_CHECK(ic.rels[i].query >= 0 &&
			   ic.rels[i].query <= ic.n_queries);
	}
	for (i = 0; i < ic.n_cols; i++) {
		const struct idxcols_col *c = &ic.cols[i];
		int r, mine = 0;

		FUZZ_CHECK(c->rel >= -1 && c->rel < ic.n_rels);
		FUZZ_CHECK((unsigned)c->role <= IDXCOLS_ORDER);
		FUZZ_CHECK(c->query >= 0 && c->query <= ic.n_queries);
		check_name(c->name);
		/* queries around a query have smaller ids */
		if (c->rel >= 0)
			FUZZ_CHECK(ic.rels[c->rel].query <= c->query);
		for (r = 0; r < ic.n_rels; r++)
			mine += ic.rels[r].query == c->query;
		if (c->rel == -1)
			FUZZ_CHECK(mine >= 2);
	}
	free(text);
	return 0;
}
