/*
 * tags.h - the ids that tie cached results to what can change them.
 *
 * A cached result carries the tag of its database and of every base
 * relation it reads; a write bumps the tags of the relations it may
 * change, a write the proxy cannot bound bumps the database's tag.
 *
 * Row level: a point lookup of a table by its key column (k = v, or k IN
 * a list) carries the table's "rows" tag and one "row" tag per value
 * instead of the table tag.  A write that knows the key values of every
 * row it changes (old and new) bumps the table tag and those row tags;
 * any other write bumps the table tag and the rows tag.  Tags
 * name relations by (database, relation name) whatever the schema: two
 * tables of the same name in different schemas share a tag, which only
 * costs extra invalidation, and lets a write be tagged before its name is
 * resolved against search_path.  Pure functions; any thread.
 */
#ifndef PGVALET_CACHE_TAGS_H
#define PGVALET_CACHE_TAGS_H

#include <stdint.h>
#include <string.h>

#include <xxhash.h>

enum { TAG_SEED_DB = 0x5d1, TAG_SEED_TABLE = 0x7ab };

/* Every result of database 'db'. */
static inline uint64_t
cache_tag_db(const char *db)
{
	return XXH3_64bits_withSeed(db, strlen(db), TAG_SEED_DB);
}

/* Every result that reads a relation named 'rel' in database 'db'. */
static inline uint64_t
cache_tag_table(const char *db, const char *rel)
{
	return XXH3_64bits_withSeed(rel, strlen(rel),
				    cache_tag_db(db) ^ TAG_SEED_TABLE);
}

/* Point lookups of a table (by its key column): every one of them. */
static inline uint64_t
cache_tag_rows(uint64_t table_tag)
{
	return table_tag ^ UINT64_C(0x9e3779b97f4a7c15);
}

/* Point lookups of the rows whose key column equals v. */
static inline uint64_t
cache_tag_row(uint64_t table_tag, int64_t v)
{
	return XXH3_64bits_withSeed(&v, sizeof(v), cache_tag_rows(table_tag));
}

#endif
