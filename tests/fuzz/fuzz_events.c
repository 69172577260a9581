/*
 * fuzz_events.c - the bus-line and NOTIFY-payload parsers
 * (invalidate/events.h) on arbitrary bytes: Redis and Postgres hand them
 * whatever a peer sent.  On success every field must be in range and the
 * message must print back to the exact input.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "invalidate/events.h"

static struct notify_change nc;
static struct bus_line bl;
static char out[1 << 17];

static void
check_notify(const uint8_t *data, size_t size)
{
	size_t n, i;

	if (notify_parse((const char *)data, size, &nc))
		return;
	FUZZ_CHECK(memchr(nc.schema, 0, sizeof(nc.schema)));
	FUZZ_CHECK(memchr(nc.table, 0, sizeof(nc.table)));
	FUZZ_CHECK(nc.nrows <= EVENT_MAX_ROWS);
	FUZZ_CHECK(!nc.whole || nc.nrows == 0);
	n = (size_t)snprintf(out, sizeof(out), "%zu:%s%zu:%s|",
			     strlen(nc.schema), nc.schema, strlen(nc.table),
			     nc.table);
	if (nc.whole)
		n += (size_t)snprintf(out + n, sizeof(out) - n, "*");
	for (i = 0; i < nc.nrows; i++)
		n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%lld",
				      i ? "," : "", (long long)nc.rows[i]);
	FUZZ_CHECK(n == size && memcmp(out, data, size) == 0);
}

static void
check_bus(const uint8_t *data, size_t size)
{
	size_t n, i;

	if (bus_line_parse((const char *)data, size, &bl))
		return;
	FUZZ_CHECK(strlen(bl.id) == 16 && bl.db[0]);
	FUZZ_CHECK(bl.ntags <= EVENT_MAX_TAGS && (!bl.all || !bl.ntags));
	n = (size_t)snprintf(out, sizeof(out), "%s|%s|%s", bl.id, bl.db,
			     bl.all ? "*" : "");
	for (i = 0; i < bl.ntags && n < sizeof(out); i++)
		n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%016llx",
				      i ? "," : "",
				      (unsigned long long)bl.tags[i]);
	FUZZ_CHECK(n == size && memcmp(out, data, size) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_notify(data, size);
	check_bus(data, size);
	return 0;
}
