/*
 * pgoutput.h - the logical replication stream's bytes: the replication
 * protocol's CopyData payloads (XLogData, keepalive, the standby status
 * update we send back) and the pgoutput plugin's messages (protocol
 * version 1: no streamed or two-phase transactions), LSN text and the
 * PostgreSQL epoch.
 *
 * Pure functions: no allocation, no I/O, no global state, so safe on any
 * thread.  The parsers never read outside (buf, len) whatever the bytes
 * say (fuzzed by tests/fuzz/fuzz_pgoutput.c) and refuse anything that is
 * not exactly one well-formed message.  What they return points into
 * the caller's buffer (strings are NUL-terminated there): it is valid as
 * long as that buffer is.  A pgo_msg's tuples point into the pgo_msg
 * itself, so it must not be copied by value and used.
 */
#ifndef PGVALET_INVALIDATE_PGOUTPUT_H
#define PGVALET_INVALIDATE_PGOUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	REPL_STATUS_LEN = 34,		/* 'r' + 4 x Int64 + Byte1 */
	REPL_LSN_STRLEN = 24,		/* "FFFFFFFF/FFFFFFFF" + NUL */
	PGO_MAX_COLS = 1664,		/* MaxTupleAttributeNumber */
};

/* Unix time of the PostgreSQL epoch, 2000-01-01 00:00:00 UTC, in us. */
#define REPL_PG_EPOCH_UNIX_US INT64_C(946684800000000)

/* The replication protocol's CopyData payloads (server -> client). */
struct repl_copy {
	char kind;		/* 'w' XLogData or 'k' primary keepalive */
	uint64_t wal_start;	/* 'w': WAL position of the data */
	uint64_t wal_end;	/* 'w' and 'k': the server's end of WAL */
	int64_t send_time;	/* microseconds since 2000-01-01 (PG epoch) */
	bool reply_requested;	/* 'k': answer at once */
	const uint8_t *data;	/* 'w': the pgoutput message (input) */
	size_t len;
};

/*
 * 0, or -1 when the payload is malformed or of another kind.  A keepalive
 * is exactly 18 bytes; an XLogData's data is everything after its
 * 25-byte header (possibly empty).  Fields a kind does not have are 0.
 */
int repl_copy_parse(const uint8_t *buf, size_t len, struct repl_copy *out);

/*
 * Standby status update ('r') into out: written = flushed = applied =
 * lsn, the client's clock now_pg_us (PG epoch).  Returns the length
 * (REPL_STATUS_LEN).
 */
size_t repl_status_update(uint8_t out[REPL_STATUS_LEN], uint64_t lsn,
			  int64_t now_pg_us, bool reply_requested);

/*
 * Microseconds since 2000-01-01 from a Unix time in microseconds, and
 * back.  Saturate at the int64 range instead of overflowing (the
 * server's timestamps come from the network).
 */
int64_t repl_pg_time(int64_t unix_us);
int64_t repl_unix_time(int64_t pg_us);

/*
 * "16/B374D848" <-> uint64, as pg_lsn prints it: two groups of 1 to 8
 * hex digits (either case) around one '/', nothing else.  Parse returns
 * 0, or -1 (and leaves *out alone); format writes upper case.
 */
int repl_lsn_parse(const char *s, uint64_t *out);
void repl_lsn_format(uint64_t lsn, char out[REPL_LSN_STRLEN]);

struct pgo_value {
	/* 'n' NULL, 'u' unchanged TOAST value, 't' text, 'b' binary */
	char kind;
	uint32_t len;		/* 't'/'b'; 0 otherwise */
	const uint8_t *data;	/* 't'/'b': in the input, no NUL after it */
};

struct pgo_tuple {
	uint16_t n;
	struct pgo_value *cols;	/* points into the pgo_msg's arrays */
};

struct pgo_column {
	uint8_t flags;		/* 1: part of the replica identity key */
	const char *name;	/* NUL-terminated, into the input */
	uint32_t type_oid;
	int32_t typmod;
};

/*
 * One decoded pgoutput message.  On success every field the kind does not
 * carry is zero (NULL), the tuples' n included.
 */
struct pgo_msg {
	char kind;	/* 'B','C','O','R','Y','I','U','D','T','M' */
	uint32_t relid;		/* R, I, U, D */

	/* B: Begin */
	uint64_t final_lsn;
	int64_t commit_time;	/* B and C, PG epoch */
	uint32_t xid;

	/* C: Commit */
	uint8_t commit_flags;
	uint64_t commit_lsn, end_lsn;

	/* R: Relation ("" namespace: pg_catalog) */
	const char *nspname, *relname;
	char replident;		/* relreplident: 'd', 'n', 'f' or 'i' */
	uint16_t ncols;
	struct pgo_column columns[PGO_MAX_COLS];

	/* I, U, D: Insert, Update, Delete */
	/* U/D: 'K' (key only) or 'O' (whole old row); 0: none (I, some U) */
	char old_kind;
	struct pgo_tuple oldtup;	/* when old_kind */
	struct pgo_tuple newtup;	/* I and U */

	/* T: Truncate: ntrunc big-endian uint32s, see pgo_trunc_relid() */
	uint32_t ntrunc;
	uint8_t trunc_options;	/* 1 CASCADE, 2 RESTART IDENTITY */
	const uint8_t *trunc_relids;

	/* O: Origin */
	const char *origin;
	uint64_t origin_lsn;

	/* Y: Type */
	uint32_t type_oid;
	const char *type_nsp, *type_name;

	/* M: logical decoding Message (pg_logical_emit_message) */
	bool msg_transactional;
	uint64_t msg_lsn;
	const char *msg_prefix;
	uint32_t msg_len;
	const uint8_t *msg_content;

	/* storage for the tuples' columns */
	struct pgo_value oldvals[PGO_MAX_COLS], newvals[PGO_MAX_COLS];
};

/*
 * Decode one pgoutput message (a repl_copy's data).  0, or -1 when
 * malformed: truncated, an unknown kind, a bad tuple or column kind, a
 * string without its NUL inside the buffer, a count over PGO_MAX_COLS,
 * bytes after the end.  On -1 *out is unspecified.  The msg is big
 * (~100 KB): callers allocate it once and reuse it.
 */
int pgo_parse(const uint8_t *buf, size_t len, struct pgo_msg *out);

/* Truncate's i-th relation OID; 0 when i >= m->ntrunc. */
uint32_t pgo_trunc_relid(const struct pgo_msg *m, uint32_t i);

/*
 * A text value as int64: 0 and *out, or -1 (NULL, unchanged, binary,
 * not an integer, overflow).  Only the form int2/int4/int8/oid output
 * writes is accepted (an optional '-', then digits without leading
 * zeros; no '+', spaces or "-0"), so two different texts never give the
 * same number.
 */
int pgo_value_int64(const struct pgo_value *v, int64_t *out);

#endif
