/*
 * fuzz_indexcols.c - the index advisor's column extraction
 * (analysis/indexcols.h) on arbitrary SQL text, as the advisor hands it
 * a client's statement: it must return 0 or -1, keep its counts within
 * the arrays, give every column a rel of its own FROM list (or -1),
 * terminate every name, and report an OFFSET only for a SELECT.
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
	FUZZ_CHECK(ic.is_select || (ic.n_rels == 0 && ic.n_cols == 0 &&
				    ic.offset == -1 && !ic.offset_param));
	for (i = 0; i < ic.n_rels; i++) {
		check_name(ic.rels[i].schema);
		check_name(ic.rels[i].name);
		check_name(ic.rels[i].alias);
	}
	for (i = 0; i < ic.n_cols; i++) {
		FUZZ_CHECK(ic.cols[i].rel >= -1 && ic.cols[i].rel < ic.n_rels);
		FUZZ_CHECK((unsigned)ic.cols[i].role <= IDXCOLS_ORDER);
		check_name(ic.cols[i].name);
	}
	free(text);
	return 0;
}
