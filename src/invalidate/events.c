/*
 * events.c - bus lines and NOTIFY payloads (see events.h).
 */
#include "invalidate/events.h"

#include <string.h>

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* "<n>:<n bytes>" at *p into out (cap bytes with its NUL); -1 if not. */
static int
counted_name(const char **p, const char *end, char *out, size_t cap)
{
	const char *s = *p;
	size_t n = 0;

	if (s == end || !is_digit(*s) ||
	    (*s == '0' && s + 1 < end && is_digit(s[1])))
		return -1;	/* one spelling per length */
	while (s < end && is_digit(*s)) {
		n = n * 10 + (size_t)(*s++ - '0');
		if (n >= cap)
			return -1;
	}
	if (s == end || *s++ != ':' || (size_t)(end - s) < n ||
	    memchr(s, 0, n))
		return -1;
	memcpy(out, s, n);
	out[n] = 0;
	*p = s + n;
	return 0;
}

/* A decimal int64 in [s, end): the form Postgres prints. */
static int
parse_int64(const char *s, const char *end, int64_t *out)
{
	bool neg = s < end && *s == '-';
	uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : INT64_MAX;

	if (neg)
		s++;
	if (s == end || (*s == '0' && (end - s > 1 || neg)))
		return -1;	/* no leading zeros, no "-0" */
	for (; s < end; s++) {
		if (!is_digit(*s) || v > (limit - (uint64_t)(*s - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

int
notify_parse(const char *payload, size_t len, struct notify_change *out)
{
	const char *p = payload, *end = payload + len, *comma;

	out->whole = false;
	out->nrows = 0;
	if (counted_name(&p, end, out->schema, sizeof(out->schema)) ||
	    counted_name(&p, end, out->table, sizeof(out->table)) ||
	    p == end || *p++ != '|')
		return -1;
	if (end - p == 1 && *p == '*') {
		out->whole = true;
		return 0;
	}
	for (;;) {
		comma = memchr(p, ',', (size_t)(end - p));
		if (out->nrows == EVENT_MAX_ROWS ||
		    parse_int64(p, comma ? comma : end,
				&out->rows[out->nrows]))
			return -1;
		out->nrows++;
		if (!comma)
			return 0;
		p = comma + 1;
	}
}

int
bus_line_parse(const char *s, size_t len, struct bus_line *out)
{
	const char *end = s + len, *bar, *p;
	size_t i, n;
	uint64_t v;
	int h;

	out->all = false;
	out->ntags = 0;
	if (len < 17 || s[16] != '|')
		return -1;
	for (i = 0; i < 16; i++)
		if (hex_value(s[i]) < 0)
			return -1;
	memcpy(out->id, s, 16);
	out->id[16] = 0;
	p = s + 17;
	bar = memchr(p, '|', (size_t)(end - p));
	n = bar ? (size_t)(bar - p) : 0;
	if (!bar || n == 0 || n >= sizeof(out->db) || memchr(p, 0, n))
		return -1;
	memcpy(out->db, p, n);
	out->db[n] = 0;
	p = bar + 1;
	if (end - p == 1 && *p == '*') {
		out->all = true;
		return 0;
	}
	for (;;) {
		if (end - p < 16 || out->ntags == EVENT_MAX_TAGS)
			return -1;
		for (v = 0, i = 0; i < 16; i++) {
			if ((h = hex_value(p[i])) < 0)
				return -1;
			v = v << 4 | (uint64_t)h;
		}
		out->tags[out->ntags++] = v;
		p += 16;
		if (p == end)
			return 0;
		if (*p++ != ',')
			return -1;
	}
}
