/*
 * fingerprint.c - the literal-blind shape hash and the fingerprint cache
 * behind fingerprint.h.
 */
#include "observe/fingerprint.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/shape.h"
#include "core/sqlchar.h"

enum {
	FP_SHARDS = 64,
	FP_SLOTS = 1024,	/* per shard: 64K texts, 1 MB in all */
};

struct fp_slot {
	uint64_t key;		/* shape hash; 0 = empty */
	uint64_t fingerprint;
};

struct fp_shard {
	pthread_mutex_t lock;
	struct fp_slot slots[FP_SLOTS];
};

struct fp_cache {
	struct fp_shard shards[FP_SHARDS];
};

/* ---- the shape hash ----------------------------------------------------- */

static const uint64_t FNV_OFFSET = 0xcbf29ce484222325ULL;
static const uint64_t FNV_PRIME = 0x100000001b3ULL;

static uint64_t
mix(uint64_t h, unsigned char c)
{
	return (h ^ c) * FNV_PRIME;
}

/* End of the string literal whose opening quote is at i. */
static size_t
skip_string(const char *t, size_t len, size_t i, bool backslash)
{
	for (i++; i < len; i++) {
		if (backslash && t[i] == '\\') {
			i++;
			continue;
		}
		if (t[i] != '\'')
			continue;
		if (i + 1 < len && t[i + 1] == '\'') {
			i++;
			continue;
		}
		return i + 1;
	}
	return len;
}

/* End of the numeric literal starting at i (digits, '.', exponent). */
static size_t
skip_number(const char *t, size_t len, size_t i)
{
	while (i < len && (sqlch_digit(t[i]) || t[i] == '.'))
		i++;
	if (i < len && (t[i] == 'e' || t[i] == 'E')) {
		size_t j = i + 1;

		if (j < len && (t[j] == '+' || t[j] == '-'))
			j++;
		if (j < len && sqlch_digit(t[j])) {
			while (j < len && sqlch_digit(t[j]))
				j++;
			i = j;
		}
	}
	return i;
}

/* End of the comment at i ("--" or a nested block comment). */
static size_t
skip_comment(const char *t, size_t len, size_t i)
{
	int depth = 0;

	if (t[i] == '-') {
		while (i < len && t[i] != '\n')
			i++;
		return i;
	}
	while (i < len) {
		if (i + 1 < len && t[i] == '/' && t[i + 1] == '*') {
			depth++;
			i += 2;
		} else if (i + 1 < len && t[i] == '*' && t[i + 1] == '/') {
			i += 2;
			if (--depth == 0)
				return i;
		} else {
			i++;
		}
	}
	return len;
}

/* End of the quoted identifier at i, hashed as written. */
static size_t
hash_ident(const char *t, size_t len, size_t i, uint64_t *h)
{
	for (*h = mix(*h, '"'), i++; i < len; i++) {
		*h = mix(*h, (unsigned char)t[i]);
		if (t[i] == '"')
			return i + 1;
	}
	return len;
}

/* Length of the "$tag$" opening a dollar-quoted body at i, or 0. */
static size_t
dollar_tag(const char *t, size_t len, size_t i)
{
	size_t j = i + 1;

	if (j < len && sqlch_digit(t[j]))
		return 0;	/* $1: a parameter */
	while (j < len && t[j] != '$' && sqlch_ident(t[j]))
		j++;
	return j < len && t[j] == '$' ? j - i + 1 : 0;
}

/* End of the dollar-quoted body at i, hashed as written (it holds code,
 * a function body, rather than one value). */
static size_t
hash_dollar(const char *t, size_t len, size_t i, size_t tag_len,
	    uint64_t *h)
{
	size_t j;

	for (j = i; j < i + tag_len; j++)
		*h = mix(*h, (unsigned char)t[j]);
	for (; j < len; j++) {
		*h = mix(*h, (unsigned char)t[j]);
		if (t[j] == '$' && j + 1 >= i + 2 * tag_len &&
		    memcmp(t + j + 1 - tag_len, t + i, tag_len) == 0)
			return j + 1;
	}
	return len;
}

/* A string literal opens at i; backslash escapes in E'...'. */
static bool
escape_string(const char *t, size_t i)
{
	return i >= 1 && (t[i - 1] == 'e' || t[i - 1] == 'E') &&
	       (i < 2 || !sqlch_ident(t[i - 2]));
}

uint64_t
fp_shape_hash(const char *t, size_t len)
{
	uint64_t h = FNV_OFFSET;
	size_t i = 0, tag;

	while (i < len) {
		char c, prev;

		/* Plain text (most of it) is hashed as it stands. */
		while (i < len && !sqlch_is(t[i], SQLCH_SHAPE))
			h = mix(h, (unsigned char)t[i++]);
		if (i == len)
			break;
		c = t[i];
		prev = i ? t[i - 1] : ' ';
		if (c == '\'') {
			h = mix(h, '\'');
			i = skip_string(t, len, i, escape_string(t, i));
		} else if (sqlch_digit(c) && !sqlch_ident(prev)) {
			h = mix(h, '0');
			i = skip_number(t, len, i);
		} else if (c == '.' && i + 1 < len && sqlch_digit(t[i + 1]) &&
			   !sqlch_ident(prev)) {
			h = mix(h, '0');
			i = skip_number(t, len, i);
		} else if ((c == '-' && i + 1 < len && t[i + 1] == '-') ||
			   (c == '/' && i + 1 < len && t[i + 1] == '*')) {
			i = skip_comment(t, len, i);
		} else if (c == '"') {
			i = hash_ident(t, len, i, &h);
		} else if (c == '$' && !sqlch_ident(prev) &&
			   (tag = dollar_tag(t, len, i))) {
			i = hash_dollar(t, len, i, tag, &h);
		} else {
			h = mix(h, (unsigned char)c);
			i++;
		}
	}
	return h ? h : 1;
}

/* ---- the cache ------------------------------------------------------------ */

struct fp_cache *
fp_cache_new(void)
{
	struct fp_cache *fc = calloc(1, sizeof(*fc));

	if (!fc)
		return NULL;
	for (int i = 0; i < FP_SHARDS; i++)
		pthread_mutex_init(&fc->shards[i].lock, NULL);
	return fc;
}

void
fp_cache_free(struct fp_cache *fc)
{
	if (!fc)
		return;
	for (int i = 0; i < FP_SHARDS; i++)
		pthread_mutex_destroy(&fc->shards[i].lock);
	free(fc);
}

uint64_t
fp_cache_get(struct fp_cache *fc, const char *sql, size_t len)
{
	uint64_t key = fp_shape_hash(sql, len), fp;
	struct fp_shard *sh = &fc->shards[key % FP_SHARDS];
	struct fp_slot *slot = &sh->slots[(key / FP_SHARDS) % FP_SLOTS];
	bool hit;

	pthread_mutex_lock(&sh->lock);
	hit = slot->key == key;
	fp = slot->fingerprint;
	pthread_mutex_unlock(&sh->lock);
	if (hit)
		return fp;
	fp = analysis_fingerprint(sql);	/* parse outside the lock */
	pthread_mutex_lock(&sh->lock);
	slot->key = key;
	slot->fingerprint = fp;
	pthread_mutex_unlock(&sh->lock);
	return fp;
}
