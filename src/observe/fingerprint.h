/*
 * fingerprint.h - statement fingerprints (analysis_fingerprint()) without
 * parsing every statement: a bounded cache keyed by a hash of the text
 * with its literal values left out, so "... WHERE id = 1" and
 * "... WHERE id = 2" parse once between them.
 *
 * fp_shape_hash() is pure and reads untrusted bytes (fuzz_fingerprint).
 * The cache is shared by all workers: lock-striped, fixed size (a new
 * text replaces whatever sat in its slot), never blocks on I/O.
 */
#ifndef PGVALET_OBSERVE_FINGERPRINT_H
#define PGVALET_OBSERVE_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

struct fp_cache;

/*
 * Hash of 'sql' (len bytes) ignoring what the fingerprint ignores too:
 * the contents of string literals, numeric literals and comments.  Two
 * texts with the same shape hash have the same fingerprint.
 */
uint64_t fp_shape_hash(const char *sql, size_t len);

/* NULL on OOM. */
struct fp_cache *fp_cache_new(void);
void fp_cache_free(struct fp_cache *fc);

/*
 * The fingerprint of 'sql' (NUL-terminated at sql[len]); 0 for a text
 * Postgres' parser rejects.  Parses only on a cache miss.
 */
uint64_t fp_cache_get(struct fp_cache *fc, const char *sql, size_t len);

#endif
