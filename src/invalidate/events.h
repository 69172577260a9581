/*
 * events.h - parsers of the invalidation messages other processes send
 * pgvalet: lines on the Redis bus (other proxies) and the payloads of
 * pgvalet's NOTIFY triggers.  Both arrive from the network, so any bytes
 * must give either a whole, valid message or -1.  Pure functions, no
 * allocation; any thread.
 */
#ifndef PGVALET_INVALIDATE_EVENTS_H
#define PGVALET_INVALIDATE_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	EVENT_NAME_MAX = 64,		/* NAMEDATALEN */
	EVENT_DB_MAX = 128,
	EVENT_MAX_ROWS = 1024,		/* more keys in one payload: malformed */
	EVENT_MAX_TAGS = 4096,		/* per bus line */
};

/*
 * A NOTIFY payload: "<n>:<schema><n>:<table>|<keys>", n the byte length
 * of the name that follows (names may hold any byte but NUL), keys "*"
 * (the whole table) or decimal int64 keys separated by commas.
 */
struct notify_change {
	char schema[EVENT_NAME_MAX], table[EVENT_NAME_MAX];
	bool whole;
	size_t nrows;
	int64_t rows[EVENT_MAX_ROWS];
};

int notify_parse(const char *payload, size_t len, struct notify_change *out);

/*
 * A bus line: "<16 hex: proxy id>|<database>|<tags>", tags "*" (the whole
 * database) or 16-hex-digit tags separated by commas.  The database is
 * the bytes between the first two '|' (it cannot contain one).
 */
struct bus_line {
	char id[17];
	char db[EVENT_DB_MAX];
	bool all;
	size_t ntags;
	uint64_t tags[EVENT_MAX_TAGS];
};

int bus_line_parse(const char *s, size_t len, struct bus_line *out);

#endif
