/*
 * jsonbuf.h - a growable text buffer for building small JSON documents
 * (the advisor's advice, the audit log, N+1 findings) by hand.
 *
 * One owner, no locking.  Out of memory latches 'oom': later appends do
 * nothing and jsonbuf_finish() returns NULL.
 */
#ifndef PGVALET_OBSERVE_JSONBUF_H
#define PGVALET_OBSERVE_JSONBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jsonbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

void jsonbuf_raw(struct jsonbuf *b, const char *s, size_t n);
void jsonbuf_printf(struct jsonbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A JSON string literal: quotes added, escapes and control bytes encoded;
 * bytes that are not UTF-8 pass through (Postgres text is UTF-8 here). */
void jsonbuf_str(struct jsonbuf *b, const char *s, size_t n);
/* "key": "value" with the comma before it unless 'first'. */
void jsonbuf_kv_str(struct jsonbuf *b, bool first, const char *key,
		    const char *value);
/* The NUL-terminated text, now the caller's to free(); NULL on OOM. */
char *jsonbuf_finish(struct jsonbuf *b);

#endif
