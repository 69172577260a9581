/*
 * json.c - the writer helpers and the flat-object reader of json.h.
 */
#include "http/json.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct reader {
	const char *s;
	size_t len, pos;
	char *err;
	size_t errlen;
};

static int
fail(struct reader *r, const char *what)
{
	snprintf(r->err, r->errlen, "%s at byte %zu", what, r->pos);
	return -1;
}

static void
skip_space(struct reader *r)
{
	while (r->pos < r->len && (r->s[r->pos] == ' ' || r->s[r->pos] == '\t' ||
				   r->s[r->pos] == '\n' || r->s[r->pos] == '\r'))
		r->pos++;
}

static bool
eat(struct reader *r, char c)
{
	skip_space(r);
	if (r->pos < r->len && r->s[r->pos] == c) {
		r->pos++;
		return true;
	}
	return false;
}

static int
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Append code point cp as UTF-8 if it fits (cap includes the NUL). */
static void
put_utf8(char *out, size_t cap, size_t *n, unsigned cp)
{
	char b[4];
	size_t k;

	if (cp < 0x80) {
		b[0] = (char)cp;
		k = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3f));
		k = 2;
	} else {
		b[0] = (char)(0xe0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		k = 3;
	}
	if (*n + k < cap) {
		memcpy(out + *n, b, k);
		*n += k;
	}
}

/* A string at r->pos (after its opening quote) into out. */
static int
read_string(struct reader *r, char *out, size_t cap)
{
	size_t n = 0;
	unsigned cp;
	int i, d;

	while (r->pos < r->len) {
		char c = r->s[r->pos++];

		if (c == '"') {
			out[n] = '\0';
			return 0;
		}
		if ((unsigned char)c < 0x20)
			return fail(r, "control character in string");
		if (c != '\\') {
			if (n + 1 < cap)
				out[n++] = c;
			continue;
		}
		if (r->pos >= r->len)
			break;
		c = r->s[r->pos++];
		switch (c) {
		case '"': case '\\': case '/':
			cp = (unsigned char)c;
			break;
		case 'b': cp = '\b'; break;
		case 'f': cp = '\f'; break;
		case 'n': cp = '\n'; break;
		case 'r': cp = '\r'; break;
		case 't': cp = '\t'; break;
		case 'u':
			if (r->len - r->pos < 4)
				return fail(r, "short \\u escape");
			for (cp = 0, i = 0; i < 4; i++) {
				if ((d = hex_digit(r->s[r->pos + i])) < 0)
					return fail(r, "bad \\u escape");
				cp = cp * 16 + (unsigned)d;
			}
			r->pos += 4;
			break;
		default:
			return fail(r, "bad escape in string");
		}
		put_utf8(out, cap, &n, cp);
	}
	return fail(r, "unterminated string");
}

static bool
word_at(struct reader *r, const char *w)
{
	size_t n = strlen(w);

	if (r->len - r->pos < n || memcmp(r->s + r->pos, w, n) != 0)
		return false;
	r->pos += n;
	return true;
}

static int
read_number(struct reader *r, struct json_value *v)
{
	size_t start = r->pos, n;
	char buf[64], *end;

	while (r->pos < r->len && strchr("+-0123456789.eE", r->s[r->pos]))
		r->pos++;
	n = r->pos - start;
	if (n == 0 || n >= sizeof(buf))
		return fail(r, "expected a value");
	memcpy(buf, r->s + start, n);
	buf[n] = '\0';
	v->number = strtod(buf, &end);
	if (*end || !isfinite(v->number))
		return fail(r, "bad number");
	v->type = JSON_NUMBER;
	return 0;
}

static int
read_value(struct reader *r, struct json_value *v)
{
	size_t start, n;
	int rc;

	memset(v, 0, sizeof(*v));
	skip_space(r);
	start = r->pos;
	if (r->pos < r->len && r->s[r->pos] == '"') {
		r->pos++;
		v->type = JSON_STRING;
		rc = read_string(r, v->text, sizeof(v->text));
	} else if (word_at(r, "true") || word_at(r, "false")) {
		v->type = JSON_BOOL;
		v->boolean = r->s[start] == 't';
		rc = 0;
	} else if (word_at(r, "null")) {
		v->type = JSON_NULL;
		rc = 0;
	} else {
		rc = read_number(r, v);
	}
	n = r->pos - start;
	if (n >= sizeof(v->raw))
		n = sizeof(v->raw) - 1;
	memcpy(v->raw, r->s + start, n);
	v->raw[n] = '\0';
	return rc;
}

int
json_flat_parse(const char *s, size_t len, json_member_fn fn, void *arg,
		char *err, size_t errlen)
{
	struct reader r = { .s = s, .len = len, .err = err,
			    .errlen = errlen };
	char key[JSON_KEY_MAX];
	struct json_value v;
	int rc;

	if (!eat(&r, '{'))
		return fail(&r, "expected '{'");
	if (eat(&r, '}'))
		goto end;
	do {
		if (!eat(&r, '"'))
			return fail(&r, "expected a key");
		if (read_string(&r, key, sizeof(key)))
			return -1;
		if (!eat(&r, ':'))
			return fail(&r, "expected ':'");
		if (read_value(&r, &v))
			return -1;
		if ((rc = fn(key, &v, arg)) != 0)
			return rc;
	} while (eat(&r, ','));
	if (!eat(&r, '}'))
		return fail(&r, "expected ',' or '}'");
end:
	skip_space(&r);
	if (r.pos != r.len)
		return fail(&r, "trailing bytes");
	return 0;
}

/* ---- writing -------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t
utf8_len(const unsigned char *s)
{
	size_t n, i;

	if (s[0] < 0xc2 || s[0] > 0xf4)
		return 0;
	n = s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
	for (i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

void
json_put_str(FILE *f, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n;

	fputc('"', f);
	while (*s) {
		if (*s == '"' || *s == '\\') {
			fputc('\\', f);
			fputc(*s++, f);
		} else if (*s < 0x20) {
			fprintf(f, "\\u%04x", *s++);
		} else if (*s < 0x80) {
			fputc(*s++, f);
		} else if ((n = utf8_len(s))) {
			fwrite(s, 1, n, f);
			s += n;
		} else {
			fputs("\\ufffd", f);
			s++;
		}
	}
	fputc('"', f);
}

void
json_put_num(FILE *f, double v)
{
	if (!isfinite(v))
		fputs("null", f);
	else if (v == (double)(int64_t)v && fabs(v) < 9e15)
		fprintf(f, "%lld", (long long)v);
	else
		fprintf(f, "%.15g", v);
}
