/*
 * msg.h - PostgreSQL v3 message framing, a bounds-checked reader and a
 * builder.
 *
 * Framing and reading are pure functions over (ptr, len) that never read
 * past len: safe on any thread, fuzzed by tests/fuzz/fuzz_msg.c.  The
 * builder appends to a struct buf (net/buf.h) and patches the length word
 * when the message is finished.
 */
#ifndef PGVALET_PROTO_MSG_H
#define PGVALET_PROTO_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

enum {
	MSG_HEADER_LEN = 5,		/* type byte + int32 length */
	MSG_STARTUP_MAX = 10000,	/* as the PG server allows */
	MSG_SMALL_MAX = 30000,		/* libpq's limit for short types */
};

/* Protocol codes (no protocol.h in PG 15: our own names). */
enum msg_code {
	PROTO_V3 = 196608,		/* 3.0 */
	PROTO_CANCEL = 80877102,
	PROTO_SSL = 80877103,
	PROTO_GSSENC = 80877104,
};

enum msg_frame_status {
	FRAME_OK = 0,
	FRAME_NEED_MORE = 1,	/* header not complete yet */
	FRAME_BAD_LENGTH = -1,	/* sync lost: the peer must be dropped */
};

struct msg_frame {
	uint8_t type;
	uint32_t len;		/* whole message incl. type byte: 1 + length word */
	const uint8_t *body;	/* len - 5 bytes, may be incomplete */
	uint32_t body_len;
	uint32_t avail;		/* body bytes present so far */
};

/* A cursor over one message body. */
struct msg_reader {
	const uint8_t *p;
	size_t len;
	size_t pos;
	bool bad;		/* an overrun happened: every later read fails */
};

uint32_t msg_be32(const uint8_t *p);
uint16_t msg_be16(const uint8_t *p);
uint64_t msg_be64(const uint8_t *p);

/*
 * Describe the next typed message in 'in'.  Lengths are checked like
 * libpq's pqParseInput3: < 4 is invalid; over max_len is refused.
 */
enum msg_frame_status msg_frame_peek(const uint8_t *in, size_t in_len,
				     uint32_t max_len, struct msg_frame *out);

/* Untyped start-up packet: int32 length, int32 code, body. */
enum msg_frame_status msg_startup_peek(const uint8_t *in, size_t in_len,
				       uint32_t *len, uint32_t *code);

/*
 * How many unread bytes a buffer should be allowed to hold so the message
 * at its head can complete: at least 'floor', more for a larger message
 * whose length field msg_frame_peek(max) accepts (at most max + 1 bytes).
 */
size_t msg_read_want(const uint8_t *in, size_t in_len, size_t floor,
		     size_t max);

void msg_reader_init(struct msg_reader *r, const uint8_t *p, size_t len);
uint8_t msg_read_u8(struct msg_reader *r);
int16_t msg_read_i16(struct msg_reader *r);
int32_t msg_read_i32(struct msg_reader *r);
int64_t msg_read_i64(struct msg_reader *r);
/* A NUL-terminated string inside the body; NULL (and r->bad) if none. */
const char *msg_read_str(struct msg_reader *r, size_t *slen);
/* n raw bytes; NULL when fewer remain. */
const uint8_t *msg_read_bytes(struct msg_reader *r, size_t n);
/* true when nothing is left and nothing went wrong (pq_getmsgend). */
bool msg_reader_done(const struct msg_reader *r);

/*
 * Builder: msg_begin() reserves the header, the put functions append,
 * msg_end() patches the length.  All return -1 only on allocation failure.
 */
int msg_begin(struct buf *b, uint8_t type, size_t *start);
int msg_put_u8(struct buf *b, uint8_t v);
int msg_put_i16(struct buf *b, int16_t v);
int msg_put_i32(struct buf *b, int32_t v);
int msg_put_str(struct buf *b, const char *s);
int msg_put_bytes(struct buf *b, const void *p, size_t n);
void msg_end(struct buf *b, size_t start);

/*
 * ErrorResponse/NoticeResponse with severity, SQLSTATE and message (the
 * fields every client reads).  type is 'E' or 'N'.
 */
int msg_put_error(struct buf *b, uint8_t type, const char *severity,
		  const char *sqlstate, const char *message);

/* Extract field 'code' ('C', 'M', ...) of an ErrorResponse body. */
const char *msg_error_field(const uint8_t *body, size_t len, char code,
			    size_t *flen);

#endif
