/*
 * jsonbuf.c - see jsonbuf.h.
 */
#include "observe/jsonbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool
reserve(struct jsonbuf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->oom)
		return false;
	if (b->len + n + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + n + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void
jsonbuf_raw(struct jsonbuf *b, const char *s, size_t n)
{
	if (!reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void
jsonbuf_printf(struct jsonbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void
jsonbuf_str(struct jsonbuf *b, const char *s, size_t n)
{
	char esc[8];
	size_t i;

	jsonbuf_raw(b, "\"", 1);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			jsonbuf_raw(b, esc, 2);
		} else if (c == '\n') {
			jsonbuf_raw(b, "\\n", 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			jsonbuf_raw(b, esc, 6);
		} else {
			jsonbuf_raw(b, (const char *)&s[i], 1);
		}
	}
	jsonbuf_raw(b, "\"", 1);
}

void
jsonbuf_kv_str(struct jsonbuf *b, bool first, const char *key,
	       const char *value)
{
	jsonbuf_printf(b, "%s\"%s\":", first ? "" : ",", key);
	jsonbuf_str(b, value ? value : "", value ? strlen(value) : 0);
}

char *
jsonbuf_finish(struct jsonbuf *b)
{
	char *p = b->p;

	if (b->oom || !reserve(b, 0)) {
		free(b->p);
		p = NULL;
	}
	b->p = NULL;
	b->len = b->cap = 0;
	return p;
}
