#include "pool/stmtmap.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

void
stmt_map_init(struct stmt_map *m)
{
	*m = (struct stmt_map){ 0 };
}

static size_t
slot_of(const struct stmt_map *m, const char *name)
{
	return XXH3_64bits(name, strlen(name)) & (m->nslots - 1);
}

static void
pstmt_free(struct pstmt *p)
{
	free(p->name);
	free(p->parse_rest);
	free(p);
}

void
stmt_map_clear(struct stmt_map *m)
{
	struct pstmt *p, *next;
	size_t i;

	for (i = 0; i < m->nslots; i++) {
		for (p = m->slots[i]; p; p = next) {
			next = p->next;
			pstmt_free(p);
		}
		m->slots[i] = NULL;
	}
	m->count = 0;
}

void
stmt_map_free(struct stmt_map *m)
{
	stmt_map_clear(m);
	free(m->slots);
	*m = (struct stmt_map){ 0 };
}

struct pstmt *
stmt_map_get(const struct stmt_map *m, const char *name)
{
	struct pstmt *p;

	if (!m->nslots)
		return NULL;
	for (p = m->slots[slot_of(m, name)]; p; p = p->next)
		if (strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

static int
grow(struct stmt_map *m)
{
	size_t n = m->nslots ? m->nslots * 2 : 16, i;
	struct pstmt **slots = calloc(n, sizeof(*slots)), *p, *next;
	struct stmt_map tmp = { .slots = slots, .nslots = n };

	if (!slots)
		return -1;
	for (i = 0; i < m->nslots; i++) {
		for (p = m->slots[i]; p; p = next) {
			size_t s = slot_of(&tmp, p->name);

			next = p->next;
			p->next = slots[s];
			slots[s] = p;
		}
	}
	free(m->slots);
	m->slots = slots;
	m->nslots = n;
	return 0;
}

struct pstmt *
stmt_map_add(struct stmt_map *m, const char *name, const uint8_t *rest,
	     size_t rest_len)
{
	struct pstmt *p;
	size_t s;

	if (m->count >= m->nslots && grow(m))
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->name = strdup(name);
	p->parse_rest = malloc(rest_len ? rest_len : 1);
	if (!p->name || !p->parse_rest) {
		pstmt_free(p);
		return NULL;
	}
	memcpy(p->parse_rest, rest, rest_len);
	p->rest_len = rest_len;
	p->query = (char *)p->parse_rest;
	p->hash = stmt_hash_of(rest, rest_len);
	s = slot_of(m, name);
	p->next = m->slots[s];
	m->slots[s] = p;
	m->count++;
	return p;
}

void
stmt_map_del(struct stmt_map *m, const char *name)
{
	struct pstmt **pp, *p;

	if (!m->nslots)
		return;
	for (pp = &m->slots[slot_of(m, name)]; (p = *pp); pp = &p->next) {
		if (strcmp(p->name, name) == 0) {
			*pp = p->next;
			pstmt_free(p);
			m->count--;
			return;
		}
	}
}

uint64_t
stmt_hash_of(const uint8_t *rest, size_t rest_len)
{
	return XXH3_64bits(rest, rest_len);
}

/* "_pgv_%016llx", written by hand: it runs for every Bind of a named
 * statement, where snprintf showed in profiles. */
void
stmt_server_name(uint64_t hash, char out[STMT_SERVER_NAME_LEN])
{
	static const char hex[] = "0123456789abcdef";
	int i;

	_Static_assert(STMT_SERVER_NAME_LEN >= 5 + 16 + 1, "name too short");
	memcpy(out, "_pgv_", 5);
	for (i = 15; i >= 0; i--, hash >>= 4)
		out[5 + i] = hex[hash & 15];
	out[21] = '\0';
}

/* name_set: linear probing; 0 marks an empty slot, so hash 0 maps to 1. */

static uint64_t
nonzero(uint64_t h)
{
	return h ? h : 1;
}

void
name_set_init(struct name_set *s)
{
	*s = (struct name_set){ 0 };
}

void
name_set_free(struct name_set *s)
{
	free(s->v);
	*s = (struct name_set){ 0 };
}

void
name_set_clear(struct name_set *s)
{
	if (s->v)
		memset(s->v, 0, s->cap * sizeof(*s->v));
	s->count = 0;
}

bool
name_set_has(const struct name_set *s, uint64_t h)
{
	size_t i;

	if (!s->cap)
		return false;
	h = nonzero(h);
	for (i = h & (s->cap - 1); s->v[i]; i = (i + 1) & (s->cap - 1))
		if (s->v[i] == h)
			return true;
	return false;
}

static void
insert_raw(uint64_t *v, size_t cap, uint64_t h)
{
	size_t i;

	for (i = h & (cap - 1); v[i] && v[i] != h; i = (i + 1) & (cap - 1))
		;
	v[i] = h;
}

int
name_set_add(struct name_set *s, uint64_t h)
{
	size_t cap, i;
	uint64_t *v;

	if (name_set_has(s, h))
		return 0;
	if ((s->count + 1) * 2 > s->cap) {
		cap = s->cap ? s->cap * 2 : 64;
		v = calloc(cap, sizeof(*v));
		if (!v)
			return -1;
		for (i = 0; i < s->cap; i++)
			if (s->v[i])
				insert_raw(v, cap, s->v[i]);
		free(s->v);
		s->v = v;
		s->cap = cap;
	}
	insert_raw(s->v, s->cap, nonzero(h));
	s->count++;
	return 0;
}

void
name_set_del(struct name_set *s, uint64_t h)
{
	size_t i, j;
	uint64_t moved;

	if (!name_set_has(s, h))
		return;
	h = nonzero(h);
	for (i = h & (s->cap - 1); s->v[i] != h; i = (i + 1) & (s->cap - 1))
		;
	s->v[i] = 0;
	s->count--;
	/* Re-insert the rest of the probe run so lookups still find it. */
	for (j = (i + 1) & (s->cap - 1); s->v[j]; j = (j + 1) & (s->cap - 1)) {
		moved = s->v[j];
		s->v[j] = 0;
		insert_raw(s->v, s->cap, moved);
	}
}
