/*
 * json.h - the little JSON the dashboard needs: writing values into a
 * memstream, and reading one flat object ({"key": scalar, ...}) from an
 * untrusted request body (POST /api/settings).
 *
 * Pure; json_flat_parse() is fuzzed (tests/fuzz/fuzz_json.c).
 */
#ifndef PGVALET_HTTP_JSON_H
#define PGVALET_HTTP_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum json_type { JSON_NUMBER, JSON_STRING, JSON_BOOL, JSON_NULL };

enum { JSON_KEY_MAX = 64, JSON_STRING_MAX = 256 };

struct json_value {
	enum json_type type;
	double number;			/* JSON_NUMBER */
	bool boolean;			/* JSON_BOOL */
	char text[JSON_STRING_MAX];	/* JSON_STRING (unescaped) */
	char raw[JSON_STRING_MAX];	/* the value as written, for errors */
};

/* Called per member; non-zero stops the parse and is returned. */
typedef int (*json_member_fn)(const char *key, const struct json_value *v,
			      void *arg);

/*
 * Parse 'len' bytes holding one object whose values are numbers,
 * strings, true, false or null (no nesting).  0 when the whole text was
 * read; -1 with err set ("expected ':' at byte 12") when it is not such
 * an object; or the callback's non-zero result.
 */
int json_flat_parse(const char *s, size_t len, json_member_fn fn, void *arg,
		    char *err, size_t errlen);

/* Write s as a JSON string (quoted, escaped; invalid UTF-8 becomes U+FFFD). */
void json_put_str(FILE *f, const char *s);
/* Write a finite number ("null" for NaN and infinities). */
void json_put_num(FILE *f, double v);

#endif
