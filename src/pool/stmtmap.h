/*
 * stmtmap.h - named prepared statements, virtualised for transaction
 * pooling.
 *
 * A client's statement "foo" becomes "_pgv_<hash>" on the server, where
 * the hash covers the query text and parameter types; a backend remembers
 * which hashes it has prepared, so any client can use any backend: a
 * statement missing there is re-Parsed first.  Owned by one client
 * (stmt_map) or one backend (name_set); single thread.
 */
#ifndef PGVALET_POOL_STMTMAP_H
#define PGVALET_POOL_STMTMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool/sqlclass.h"

struct pstmt {
	struct pstmt *next;	/* hash chain */
	char *name;		/* the client's name */
	uint64_t hash;		/* server name is _pgv_<hash as 16 hex> */
	uint8_t *parse_rest;	/* Parse body after the name: query, types */
	size_t rest_len;
	enum sql_kind kind;	/* what executing it does to session state */
	char guc[SQL_NAME_MAX];
	char *query;		/* points into parse_rest */
	uint64_t fingerprint;	/* of query, once observed; 0 = not yet */
};

struct stmt_map {
	struct pstmt **slots;
	size_t nslots;
	size_t count;
};

enum { STMT_SERVER_NAME_LEN = 22 };	/* "_pgv_" + 16 hex + NUL */

void stmt_map_init(struct stmt_map *m);
void stmt_map_free(struct stmt_map *m);
struct pstmt *stmt_map_get(const struct stmt_map *m, const char *name);
/*
 * Add a statement from a Parse body (name, query, nparams, oids);
 * NULL on OOM.  The caller checks for duplicates first.
 */
struct pstmt *stmt_map_add(struct stmt_map *m, const char *name,
			   const uint8_t *rest, size_t rest_len);
void stmt_map_del(struct stmt_map *m, const char *name);
void stmt_map_clear(struct stmt_map *m);
void stmt_server_name(uint64_t hash, char out[STMT_SERVER_NAME_LEN]);
/* The hash a Parse body (after the name) gets: text + parameter types. */
uint64_t stmt_hash_of(const uint8_t *rest, size_t rest_len);

/* Open-addressing set of statement hashes prepared on one backend. */
struct name_set {
	uint64_t *v;
	size_t cap;		/* power of two */
	size_t count;
};

void name_set_init(struct name_set *s);
void name_set_free(struct name_set *s);
bool name_set_has(const struct name_set *s, uint64_t h);
int name_set_add(struct name_set *s, uint64_t h);
void name_set_del(struct name_set *s, uint64_t h);
void name_set_clear(struct name_set *s);

#endif
