#include "pool/sqlclass.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/sqlchar.h"

struct lexer {
	const char *s;
	size_t len;
	size_t pos;
};

/* Skip a quoted run starting at pos (the opening quote). */
static void
skip_quoted(struct lexer *lx, char q, bool backslash)
{
	lx->pos++;
	while (lx->pos < lx->len) {
		char c = lx->s[lx->pos++];

		if (backslash && c == '\\') {
			lx->pos++;
			continue;
		}
		if (c != q)
			continue;
		if (lx->pos < lx->len && lx->s[lx->pos] == q) {
			lx->pos++;	/* doubled quote */
			continue;
		}
		return;
	}
}

/* $tag$ ... $tag$; pos at the first '$'.  Returns false if not a tag. */
static bool
skip_dollar(struct lexer *lx)
{
	size_t start = lx->pos, p = lx->pos + 1, taglen;
	const char *end;

	if (p < lx->len && isdigit((unsigned char)lx->s[p]))
		return false;	/* $1: a parameter, not a quote */
	while (p < lx->len && lx->s[p] != '$') {
		if (!sqlch_ident(lx->s[p]))
			return false;
		p++;
	}
	if (p >= lx->len)
		return false;
	taglen = p - start + 1;
	p++;
	while (p + taglen <= lx->len) {
		end = memchr(lx->s + p, '$', lx->len - p);
		if (!end || (size_t)(end - lx->s) + taglen > lx->len)
			break;
		if (memcmp(end, lx->s + start, taglen) == 0) {
			lx->pos = (size_t)(end - lx->s) + taglen;
			return true;
		}
		p = (size_t)(end - lx->s) + 1;
	}
	lx->pos = lx->len;
	return true;
}

static void
skip_block_comment(struct lexer *lx)
{
	int depth = 1;

	lx->pos += 2;
	while (lx->pos + 1 < lx->len && depth > 0) {
		if (lx->s[lx->pos] == '/' && lx->s[lx->pos + 1] == '*') {
			depth++;
			lx->pos += 2;
		} else if (lx->s[lx->pos] == '*' && lx->s[lx->pos + 1] == '/') {
			depth--;
			lx->pos += 2;
		} else {
			lx->pos++;
		}
	}
	if (depth > 0)
		lx->pos = lx->len;
}

/* Skip whitespace and comments. */
static void
skip_space(struct lexer *lx)
{
	while (lx->pos < lx->len) {
		char c = lx->s[lx->pos];

		if (isspace((unsigned char)c)) {
			lx->pos++;
		} else if (c == '-' && lx->pos + 1 < lx->len &&
			   lx->s[lx->pos + 1] == '-') {
			while (lx->pos < lx->len && lx->s[lx->pos] != '\n')
				lx->pos++;
		} else if (c == '/' && lx->pos + 1 < lx->len &&
			   lx->s[lx->pos + 1] == '*') {
			skip_block_comment(lx);
		} else {
			return;
		}
	}
}

/* Next word (identifier or quoted identifier) into out, lower-cased. */
static bool
next_word(struct lexer *lx, char *out, size_t outlen)
{
	size_t n = 0;

	skip_space(lx);
	if (lx->pos >= lx->len)
		return false;
	if (lx->s[lx->pos] == '"') {
		/* Quoted identifier: case kept, "" stands for one quote. */
		for (lx->pos++; lx->pos < lx->len; lx->pos++) {
			if (lx->s[lx->pos] == '"') {
				if (lx->pos + 1 >= lx->len ||
				    lx->s[lx->pos + 1] != '"')
					break;
				lx->pos++;
			}
			if (n + 1 >= outlen)
				return false;
			out[n++] = lx->s[lx->pos];
		}
		if (lx->pos < lx->len)
			lx->pos++;
		out[n] = 0;
		return true;
	}
	while (lx->pos < lx->len &&
	       (sqlch_ident(lx->s[lx->pos]) || lx->s[lx->pos] == '.')) {
		if (n + 1 >= outlen)
			return false;
		out[n++] = (char)tolower((unsigned char)lx->s[lx->pos++]);
	}
	out[n] = 0;
	return n > 0;
}

/* needle is lower case; its first letter is matched inline, so that
 * strncasecmp is called only where the rest may match. */
static bool
contains_ci(const char *text, size_t len, const char *needle)
{
	size_t nlen = strlen(needle), i;
	char lo = needle[0], up = (char)toupper((unsigned char)lo);

	for (i = 0; i + nlen <= len; i++)
		if ((text[i] == lo || text[i] == up) &&
		    strncasecmp(text + i + 1, needle + 1, nlen - 1) == 0)
			return true;
	return false;
}

/* "first" then "second" as whole words, any space or comment between. */
static bool
contains_words(const char *text, size_t len, const char *first,
	       const char *second)
{
	size_t flen = strlen(first), i;
	struct lexer lx = { .s = text, .len = len };
	char w[16];

	for (i = 0; i + flen <= len; i++) {
		if (strncasecmp(text + i, first, flen) != 0 ||
		    (i > 0 && sqlch_ident(text[i - 1])))
			continue;
		lx.pos = i + flen;
		if (lx.pos < len && sqlch_ident(text[lx.pos]))
			continue;
		if (next_word(&lx, w, sizeof(w)) && strcmp(w, second) == 0)
			return true;
	}
	return false;
}

static enum sql_kind
classify_set(struct lexer *lx, char *name, size_t namelen)
{
	char w[SQL_NAME_MAX];

	if (!next_word(lx, w, sizeof(w)))
		return SQL_OTHER;
	if (strcmp(w, "local") == 0 || strcmp(w, "transaction") == 0)
		return SQL_OTHER;	/* ends with the transaction */
	if (strcmp(w, "session") == 0) {
		if (!next_word(lx, w, sizeof(w)))
			return SQL_OTHER;
		if (strcmp(w, "characteristics") == 0)
			snprintf(name, namelen, "%s", "session characteristics");
		else if (strcmp(w, "authorization") == 0)
			snprintf(name, namelen, "%s", "session_authorization");
		else
			snprintf(name, namelen, "%s", w);
	} else if (strcmp(w, "time") == 0) {
		snprintf(name, namelen, "%s", "timezone");
	} else if (strcmp(w, "names") == 0) {
		snprintf(name, namelen, "%s", "client_encoding");
	} else if (strcmp(w, "schema") == 0) {
		snprintf(name, namelen, "%s", "search_path");
	} else {
		snprintf(name, namelen, "%s", w);
	}
	/* SET x TO DEFAULT / = DEFAULT is a RESET. */
	skip_space(lx);
	if (lx->pos < lx->len && lx->s[lx->pos] == '=')
		lx->pos++;
	else if (next_word(lx, w, sizeof(w)) && strcmp(w, "to") != 0)
		return SQL_SET;
	if (next_word(lx, w, sizeof(w)) && strcmp(w, "default") == 0) {
		skip_space(lx);
		if (lx->pos >= lx->len)
			return SQL_RESET;
	}
	return SQL_SET;
}

static enum sql_kind
classify_words(struct lexer *lx, const char *w0, char *name, size_t namelen)
{
	char w[SQL_NAME_MAX];

	if (strcmp(w0, "set") == 0)
		return classify_set(lx, name, namelen);
	if (strcmp(w0, "reset") == 0) {
		if (!next_word(lx, w, sizeof(w)))
			return SQL_OTHER;
		if (strcmp(w, "all") == 0)
			return SQL_RESET_ALL;
		snprintf(name, namelen, "%s", w);
		return SQL_RESET;
	}
	if (strcmp(w0, "discard") == 0)
		return next_word(lx, w, sizeof(w)) && strcmp(w, "all") == 0 ?
			       SQL_DISCARD_ALL : SQL_PIN;
	if (strcmp(w0, "deallocate") == 0) {
		if (!next_word(lx, w, sizeof(w)))
			return SQL_OTHER;
		if (strcmp(w, "prepare") == 0 && !next_word(lx, w, sizeof(w)))
			return SQL_OTHER;
		if (strcmp(w, "all") == 0)
			return SQL_DEALLOCATE_ALL;
		snprintf(name, namelen, "%s", w);
		return SQL_DEALLOCATE;
	}
	if (strcmp(w0, "listen") == 0 || strcmp(w0, "prepare") == 0 ||
	    strcmp(w0, "load") == 0)
		return SQL_PIN;
	if (strcmp(w0, "create") == 0 || strcmp(w0, "declare") == 0) {
		if (!next_word(lx, w, sizeof(w)))
			return SQL_OTHER;
		if (strcmp(w, "temp") == 0 || strcmp(w, "temporary") == 0 ||
		    contains_words(lx->s, lx->len, "with", "hold"))
			return SQL_PIN;
		if (strcmp(w, "local") == 0 || strcmp(w, "global") == 0)
			return SQL_PIN;	/* CREATE LOCAL TEMP TABLE */
	}
	return SQL_OTHER;
}

enum sql_kind
sqlclass_classify(const char *text, size_t len, char *name, size_t namelen)
{
	struct lexer lx = { .s = text, .len = len };
	char w0[SQL_NAME_MAX];
	enum sql_kind kind;

	name[0] = 0;
	if (next_word(&lx, w0, sizeof(w0))) {
		kind = classify_words(&lx, w0, name, namelen);
		if (kind != SQL_OTHER)
			return kind;
	}
	/* Session-lifetime side effects hidden in function calls. */
	if (contains_ci(text, len, "pg_advisory_lock") ||
	    contains_ci(text, len, "pg_try_advisory_lock") ||
	    contains_ci(text, len, "set_config"))
		return SQL_PIN;
	return SQL_OTHER;
}

static void
emit(const char *text, size_t start, size_t end, struct sql_stmt *out,
     size_t max, size_t *count)
{
	struct lexer lx = { .s = text + start, .len = end - start };
	struct sql_stmt *st;

	skip_space(&lx);
	if (lx.pos >= lx.len)
		return;		/* empty statement */
	if (*count < max) {
		st = &out[*count];
		st->off = start;
		st->len = end - start;
		st->kind = sqlclass_classify(text + start, end - start,
					     st->name, sizeof(st->name));
	}
	(*count)++;
}

size_t
sqlclass_split(const char *text, size_t len, struct sql_stmt *out,
	       size_t max)
{
	struct lexer lx = { .s = text, .len = len };
	size_t start = 0, count = 0;
	char c;

	while (lx.pos < lx.len) {
		c = text[lx.pos];
		if (c == '\'') {
			bool esc = lx.pos > 0 &&
				   (text[lx.pos - 1] == 'E' ||
				    text[lx.pos - 1] == 'e');
			skip_quoted(&lx, '\'', esc);
		} else if (c == '"') {
			skip_quoted(&lx, '"', false);
		} else if (c == '$' && (lx.pos == 0 ||
					!sqlch_ident(text[lx.pos - 1]))) {
			if (!skip_dollar(&lx))
				lx.pos++;
		} else if ((c == '-' || c == '/') && lx.pos + 1 < lx.len &&
			   text[lx.pos + 1] == (c == '-' ? '-' : '*')) {
			skip_space(&lx);
		} else if (c == ';') {
			emit(text, start, lx.pos, out, max, &count);
			start = ++lx.pos;
		} else {
			lx.pos++;
		}
	}
	emit(text, start, len, out, max, &count);
	return count;
}

/*
 * Whether the text may call pg_[try_]advisory_* or set_config: functions
 * whose effects outlive the transaction.  Both names hold a '_', so only
 * the underscores (found by memchr) need a closer look; this runs on
 * every SELECT.
 */
static bool
calls_session_function(const char *text, size_t len)
{
	const char *end = text + len, *u = text;

	while ((u = memchr(u, '_', (size_t)(end - u)))) {
		if (end - u >= 9 && (u[1] | 0x20) == 'a' &&
		    strncasecmp(u + 1, "advisory", 8) == 0)
			return true;
		if (u - text >= 3 && end - u >= 7 && (u[-3] | 0x20) == 's' &&
		    strncasecmp(u - 3, "set_config", 10) == 0)
			return true;
		u++;
	}
	return false;
}

int
sqlclass_interesting(const char *text, size_t len)
{
	struct lexer lx = { .s = text, .len = len };
	char w0[16];

	/* A trailing ';' (and space) does not make a second statement. */
	while (len && (text[len - 1] == ';' || isspace((unsigned char)text[len - 1])))
		len--;
	lx.len = len;
	if (memchr(text, ';', len))
		return 1;
	if (!next_word(&lx, w0, sizeof(w0)))
		return lx.pos < lx.len;	/* "(SELECT ...)": have a look */
	if (strcmp(w0, "select") == 0 || strcmp(w0, "with") == 0)
		return calls_session_function(text, len);
	return strcmp(w0, "insert") != 0 && strcmp(w0, "update") != 0 &&
	       strcmp(w0, "delete") != 0 && strcmp(w0, "begin") != 0 &&
	       strcmp(w0, "commit") != 0 && strcmp(w0, "rollback") != 0;
}
