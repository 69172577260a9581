/*
 * gucstate.h - a client's session-level settings, as the SET statements
 * that produced them, so they can be replayed on whichever backend the
 * client lands on in transaction mode.
 *
 * One entry per setting name, in first-set order; the signature is a hash
 * of the whole list (0 = server defaults).  Owned by one client.
 */
#ifndef PGVALET_POOL_GUCSTATE_H
#define PGVALET_POOL_GUCSTATE_H

#include <stddef.h>
#include <stdint.h>

struct guc_entry {
	char *name;
	char *sql;		/* the statement that sets it, replayable */
};

struct guc_state {
	struct guc_entry *v;
	size_t n;
	size_t cap;
	uint64_t sig;		/* 0 when empty */
};

void guc_state_init(struct guc_state *s);
void guc_state_free(struct guc_state *s);
/* Record 'sql' as the statement that sets 'name'; -1 on OOM. */
int guc_state_set(struct guc_state *s, const char *name, const char *sql,
		  size_t sqllen);
void guc_state_reset(struct guc_state *s, const char *name);
void guc_state_clear(struct guc_state *s);
/* Apply every entry of src on top of dst (a committed transaction). */
int guc_state_merge(struct guc_state *dst, const struct guc_state *src);
int guc_state_copy(struct guc_state *dst, const struct guc_state *src);
/*
 * The SQL that turns a backend in default state into this state:
 * "SET SESSION AUTHORIZATION DEFAULT;RESET ALL;<each SET>".  Caller frees.
 */
char *guc_state_replay_sql(const struct guc_state *s);
/*
 * Hand send() the Queries that turn a backend in any state into this one,
 * in order: guc_state_replay_sql() as one Query; or, when a setting's SQL
 * holds a backslash, "SET SESSION AUTHORIZATION DEFAULT;RESET ALL" and
 * then each SET as a Query of its own.  (A string literal with a
 * backslash reads as standard_conforming_strings says when it is parsed,
 * and a Query is parsed whole before any of it runs; one Query per SET
 * reads each as the client's session did.)  Returns the first non-zero
 * send() result, or -1 on OOM.
 */
int guc_state_replay(const struct guc_state *s,
		     int (*send)(void *arg, const char *sql), void *arg);

#endif
