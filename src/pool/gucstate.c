#include "pool/gucstate.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

void
guc_state_init(struct guc_state *s)
{
	*s = (struct guc_state){ 0 };
}

static void
entry_free(struct guc_entry *e)
{
	free(e->name);
	free(e->sql);
}

void
guc_state_clear(struct guc_state *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		entry_free(&s->v[i]);
	s->n = 0;
	s->sig = 0;
}

void
guc_state_free(struct guc_state *s)
{
	guc_state_clear(s);
	free(s->v);
	s->v = NULL;
	s->cap = 0;
}

static void
recompute_sig(struct guc_state *s)
{
	uint64_t h = 0;
	size_t i;

	for (i = 0; i < s->n; i++)
		h = XXH3_64bits_withSeed(s->v[i].sql, strlen(s->v[i].sql), h);
	s->sig = s->n ? h | 2 : 0;	/* 0: server defaults; never 1 */
}

static struct guc_entry *
find(struct guc_state *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (strcmp(s->v[i].name, name) == 0)
			return &s->v[i];
	return NULL;
}

int
guc_state_set(struct guc_state *s, const char *name, const char *sql,
	      size_t sqllen)
{
	struct guc_entry *e = find(s, name);
	char *copy = strndup(sql, sqllen);
	struct guc_entry *nv;

	if (!copy)
		return -1;
	if (e) {
		free(e->sql);
		e->sql = copy;
		recompute_sig(s);
		return 0;
	}
	if (s->n == s->cap) {
		nv = realloc(s->v, (s->cap ? s->cap * 2 : 8) * sizeof(*nv));
		if (!nv)
			goto oom;
		s->v = nv;
		s->cap = s->cap ? s->cap * 2 : 8;
	}
	s->v[s->n].name = strdup(name);
	if (!s->v[s->n].name)
		goto oom;
	s->v[s->n++].sql = copy;
	recompute_sig(s);
	return 0;
oom:
	free(copy);
	return -1;
}

void
guc_state_reset(struct guc_state *s, const char *name)
{
	struct guc_entry *e = find(s, name);

	if (!e)
		return;
	entry_free(e);
	memmove(e, e + 1, (size_t)(&s->v[s->n] - (e + 1)) * sizeof(*e));
	s->n--;
	recompute_sig(s);
}

int
guc_state_merge(struct guc_state *dst, const struct guc_state *src)
{
	size_t i;

	for (i = 0; i < src->n; i++)
		if (guc_state_set(dst, src->v[i].name, src->v[i].sql,
				  strlen(src->v[i].sql)))
			return -1;
	return 0;
}

int
guc_state_copy(struct guc_state *dst, const struct guc_state *src)
{
	guc_state_clear(dst);
	return guc_state_merge(dst, src);
}

static const char RESET_SQL[] = "SET SESSION AUTHORIZATION DEFAULT;RESET ALL";

char *
guc_state_replay_sql(const struct guc_state *s)
{
	size_t len = sizeof(RESET_SQL) + 1, i, off;
	char *out;

	for (i = 0; i < s->n; i++)
		len += strlen(s->v[i].sql) + 1;
	out = malloc(len);
	if (!out)
		return NULL;
	memcpy(out, RESET_SQL, sizeof(RESET_SQL) - 1);
	off = sizeof(RESET_SQL) - 1;
	out[off++] = ';';
	for (i = 0; i < s->n; i++) {
		size_t l = strlen(s->v[i].sql);

		memcpy(out + off, s->v[i].sql, l);
		off += l;
		out[off++] = ';';
	}
	out[off] = 0;
	return out;
}

static bool
has_backslash(const struct guc_state *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (strchr(s->v[i].sql, '\\'))
			return true;
	return false;
}

int
guc_state_replay(const struct guc_state *s,
		 int (*send)(void *arg, const char *sql), void *arg)
{
	char *sql;
	size_t i;
	int rc;

	if (has_backslash(s)) {
		rc = send(arg, RESET_SQL);
		for (i = 0; i < s->n && !rc; i++)
			rc = send(arg, s->v[i].sql);
		return rc;
	}
	sql = guc_state_replay_sql(s);
	if (!sql)
		return -1;
	rc = send(arg, sql);
	free(sql);
	return rc;
}
