/*
 * audit.c - see audit.h.
 */
#include "observe/audit.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "observe/jsonbuf.h"

struct audit_entry {
	int64_t at_us;
	enum audit_action action;
	uint64_t shape;
	char db[64];
	char table[130];
	char index[512];
	char detail[1200];
};

struct audit {
	pthread_mutex_t lock;
	struct audit_entry ring[AUDIT_RING];
	uint64_t n;		/* entries ever added; ring[n % AUDIT_RING] next */
	uint64_t counts[AUDIT_DROPPED + 1];
};

struct audit *
audit_new(void)
{
	struct audit *a = calloc(1, sizeof(*a));

	if (a)
		pthread_mutex_init(&a->lock, NULL);
	return a;
}

void
audit_free(struct audit *a)
{
	if (!a)
		return;
	pthread_mutex_destroy(&a->lock);
	free(a);
}

const char *
audit_action_name(enum audit_action action)
{
	static const char *const names[] = { "recommended", "created",
					     "skipped", "failed", "dropped" };

	if ((unsigned)action < sizeof(names) / sizeof(*names))
		return names[action];
	return "?";
}

void
audit_add(struct audit *a, enum audit_action action, uint64_t shape,
	  const char *db, const char *table, const char *index,
	  const char *detail)
{
	struct audit_entry *e;

	log_msg(action == AUDIT_FAILED ? LOG_WARN : LOG_INFO,
		"advisor: %s%s%s%s%s%s%s (shape %016" PRIx64 ", db %s)",
		audit_action_name(action), table[0] ? " on " : "", table,
		index[0] ? ": " : "", index, detail[0] ? ": " : "", detail,
		shape, db);
	pthread_mutex_lock(&a->lock);
	e = &a->ring[a->n % AUDIT_RING];
	e->at_us = clock_unix_us();
	e->action = action;
	e->shape = shape;
	snprintf(e->db, sizeof(e->db), "%s", db);
	snprintf(e->table, sizeof(e->table), "%s", table);
	snprintf(e->index, sizeof(e->index), "%s", index);
	snprintf(e->detail, sizeof(e->detail), "%s", detail);
	a->n++;
	a->counts[action]++;
	pthread_mutex_unlock(&a->lock);
}

uint64_t
audit_count(struct audit *a, enum audit_action action)
{
	uint64_t n;

	pthread_mutex_lock(&a->lock);
	n = a->counts[action];
	pthread_mutex_unlock(&a->lock);
	return n;
}

const char *const audit_columns[AUDIT_NCOLS] = {
	"at", "action", "db", "table", "index", "detail", "shape",
};

void
audit_rows(struct audit *a, observe_row_fn fn, void *arg)
{
	const struct audit_entry *e;
	char at[32], shape[24];
	uint64_t i, first;

	pthread_mutex_lock(&a->lock);
	first = a->n > AUDIT_RING ? a->n - AUDIT_RING : 0;
	for (i = a->n; i-- > first;) {
		e = &a->ring[i % AUDIT_RING];
		observe_format_time(e->at_us, at, sizeof(at));
		snprintf(shape, sizeof(shape), "%016" PRIx64, e->shape);
		fn(arg, (const char *const[AUDIT_NCOLS]){
			at, audit_action_name(e->action), e->db, e->table,
			e->index, e->detail, shape });
	}
	pthread_mutex_unlock(&a->lock);
}

/* "created on public.t: pgvalet_idx_t_v: detail" (as the log line). */
static void
summary(const struct audit_entry *e, char *out, size_t len)
{
	snprintf(out, len, "%s%s%s%s%.200s%s%.600s", audit_action_name(e->action),
		 e->table[0] ? " on " : "", e->table, e->index[0] ? ": " : "",
		 e->index, e->detail[0] ? ": " : "", e->detail);
}

char *
audit_json(struct audit *a)
{
	struct jsonbuf b = { 0 };
	const struct audit_entry *e;
	uint64_t i, first;
	char shape[24], text[1100];

	pthread_mutex_lock(&a->lock);
	first = a->n > AUDIT_RING ? a->n - AUDIT_RING : 0;
	jsonbuf_raw(&b, "[", 1);
	for (i = a->n; i-- > first;) {	/* newest first */
		e = &a->ring[i % AUDIT_RING];
		snprintf(shape, sizeof(shape), "%016" PRIx64, e->shape);
		summary(e, text, sizeof(text));
		jsonbuf_printf(&b, "%s{\"at\":%.3f", i == a->n - 1 ? "" : ",",
			       (double)e->at_us / 1e6);
		jsonbuf_kv_str(&b, false, "action",
			       audit_action_name(e->action));
		jsonbuf_kv_str(&b, false, "summary", text);
		jsonbuf_kv_str(&b, false, "shape", shape);
		jsonbuf_kv_str(&b, false, "db", e->db);
		jsonbuf_kv_str(&b, false, "table", e->table);
		jsonbuf_kv_str(&b, false, "index", e->index);
		jsonbuf_kv_str(&b, false, "detail", e->detail);
		jsonbuf_raw(&b, "}", 1);
	}
	pthread_mutex_unlock(&a->lock);
	jsonbuf_raw(&b, "]", 1);
	return jsonbuf_finish(&b);
}
