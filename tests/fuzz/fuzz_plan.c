/*
 * fuzz_plan.c - the cache's statement planner (cache/plan.h) on arbitrary
 * text: the literal normaliser that runs on every simple-protocol read,
 * the summary table, and the Bind parameters row keys are read from.
 * The first input byte picks the mode: odd, the text goes in as a simple
 * Query (normalised); even, the input's tail after a NUL is taken as a
 * Bind body.  The catalog is never started, so relations stay unknown
 * (lookups queue them, bounded); the plan must still keep its bounds and
 * never call a read that writes cacheable.
 */
#include <string.h>

#include "analysis/catalog.h"
#include "cache/plan.h"
#include "core/pgurl.h"
#include "fuzz.h"

static struct plan_table *table;

static void
check_plan(const struct plan *p)
{
	FUZZ_CHECK(p->n_tags <= CACHE_MAX_TAGS);
	FUZZ_CHECK(p->n_inval <= CACHE_MAX_TAGS);
	FUZZ_CHECK(!(p->cacheable && p->writes));
	FUZZ_CHECK(p->cacheable || p->n_tags == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pg_url url;
	const uint8_t *bind = NULL, *nul;
	size_t len, bind_len = 0;
	struct plan p;

	if (!table) {
		struct catalog *cat = catalog_new(&url);

		FUZZ_CHECK(cat != NULL);
		table = plan_table_new(cat, 1 << 20);
		FUZZ_CHECK(table != NULL);
	}
	if (size < 1)
		return 0;
	len = size - 1;
	if (!(data[0] & 1) && (nul = memchr(data + 1, 0, len)) != NULL) {
		bind = nul + 1;
		bind_len = (size_t)(data + size - bind);
		len = (size_t)(nul - (data + 1));
	}
	memset(&p, 0xab, sizeof(p));	/* a plan left unwritten shows */
	plan_make(table, "fuzzdb", (const char *)data + 1, len, bind, bind_len,
		  &p);
	check_plan(&p);
	return 0;
}
