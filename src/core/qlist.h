/*
 * qlist.h - intrusive circular doubly linked lists.
 *
 * Prefixed qlist_ because libpg_query exports the Postgres parser's own
 * list_* symbols.  Header-only; no allocation; not thread-safe.
 */
#ifndef PGVALET_CORE_QLIST_H
#define PGVALET_CORE_QLIST_H

#include <stdbool.h>
#include <stddef.h>

struct qlist {
	struct qlist *next;
	struct qlist *prev;
};

#define qlist_entry(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

static inline void
qlist_init(struct qlist *l)
{
	l->next = l->prev = l;
}

static inline bool
qlist_empty(const struct qlist *l)
{
	return l->next == l;
}

static inline void
qlist_insert_tail(struct qlist *head, struct qlist *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

static inline void
qlist_insert_head(struct qlist *head, struct qlist *n)
{
	n->next = head->next;
	n->prev = head;
	head->next->prev = n;
	head->next = n;
}

/* Unlink n and leave it self-linked (safe to remove twice). */
static inline void
qlist_remove(struct qlist *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}

#endif
