#include "proto/msg.h"

#include <string.h>

#include "net/buf.h"

uint32_t
msg_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

uint16_t
msg_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

uint64_t
msg_be64(const uint8_t *p)
{
	return (uint64_t)msg_be32(p) << 32 | msg_be32(p + 4);
}

enum msg_frame_status
msg_frame_peek(const uint8_t *in, size_t in_len, uint32_t max_len,
	       struct msg_frame *out)
{
	uint32_t len;

	if (in_len < MSG_HEADER_LEN)
		return FRAME_NEED_MORE;
	len = msg_be32(in + 1);
	if (len < 4 || len > max_len)
		return FRAME_BAD_LENGTH;
	out->type = in[0];
	out->len = len + 1;
	out->body = in + MSG_HEADER_LEN;
	out->body_len = len - 4;
	out->avail = (uint32_t)(in_len - MSG_HEADER_LEN);
	if (out->avail > out->body_len)
		out->avail = out->body_len;
	return FRAME_OK;
}

enum msg_frame_status
msg_startup_peek(const uint8_t *in, size_t in_len, uint32_t *len,
		 uint32_t *code)
{
	if (in_len < 8)
		return FRAME_NEED_MORE;
	*len = msg_be32(in);
	if (*len < 8 || *len > MSG_STARTUP_MAX)
		return FRAME_BAD_LENGTH;
	*code = msg_be32(in + 4);
	return FRAME_OK;
}

size_t
msg_read_want(const uint8_t *in, size_t in_len, size_t floor, size_t max)
{
	size_t field;

	if (in_len < MSG_HEADER_LEN)
		return floor;
	/* the same bound as msg_frame_peek's: on the length field */
	field = msg_be32(in + 1);
	return field + 1 > floor && field <= max ? field + 1 : floor;
}

void
msg_reader_init(struct msg_reader *r, const uint8_t *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->pos = 0;
	r->bad = false;
}

const uint8_t *
msg_read_bytes(struct msg_reader *r, size_t n)
{
	const uint8_t *p;

	if (r->bad || r->len - r->pos < n) {
		r->bad = true;
		return NULL;
	}
	p = r->p + r->pos;
	r->pos += n;
	return p;
}

uint8_t
msg_read_u8(struct msg_reader *r)
{
	const uint8_t *p = msg_read_bytes(r, 1);

	return p ? p[0] : 0;
}

int16_t
msg_read_i16(struct msg_reader *r)
{
	const uint8_t *p = msg_read_bytes(r, 2);

	return p ? (int16_t)msg_be16(p) : 0;
}

int32_t
msg_read_i32(struct msg_reader *r)
{
	const uint8_t *p = msg_read_bytes(r, 4);

	return p ? (int32_t)msg_be32(p) : 0;
}

int64_t
msg_read_i64(struct msg_reader *r)
{
	const uint8_t *p = msg_read_bytes(r, 8);

	return p ? (int64_t)msg_be64(p) : 0;
}

const char *
msg_read_str(struct msg_reader *r, size_t *slen)
{
	const uint8_t *start, *nul;

	if (r->bad)
		return NULL;
	start = r->p + r->pos;
	nul = memchr(start, 0, r->len - r->pos);
	if (!nul) {
		r->bad = true;
		return NULL;
	}
	if (slen)
		*slen = (size_t)(nul - start);
	r->pos += (size_t)(nul - start) + 1;
	return (const char *)start;
}

bool
msg_reader_done(const struct msg_reader *r)
{
	return !r->bad && r->pos == r->len;
}

int
msg_begin(struct buf *b, uint8_t type, size_t *start)
{
	static const uint8_t zero[4];

	*start = b->len;
	if (msg_put_u8(b, type))
		return -1;
	return buf_append(b, zero, 4);
}

int
msg_put_u8(struct buf *b, uint8_t v)
{
	return buf_append(b, &v, 1);
}

int
msg_put_i16(struct buf *b, int16_t v)
{
	uint8_t p[2] = { (uint8_t)((uint16_t)v >> 8), (uint8_t)v };

	return buf_append(b, p, 2);
}

int
msg_put_i32(struct buf *b, int32_t v)
{
	uint32_t u = (uint32_t)v;
	uint8_t p[4] = { (uint8_t)(u >> 24), (uint8_t)(u >> 16),
			 (uint8_t)(u >> 8), (uint8_t)u };

	return buf_append(b, p, 4);
}

int
msg_put_str(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s) + 1);
}

int
msg_put_bytes(struct buf *b, const void *p, size_t n)
{
	return buf_append(b, p, n);
}

void
msg_end(struct buf *b, size_t start)
{
	uint32_t len = (uint32_t)(b->len - start - 1);
	uint8_t *p = b->data + start + 1;

	p[0] = (uint8_t)(len >> 24);
	p[1] = (uint8_t)(len >> 16);
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
}

int
msg_put_error(struct buf *b, uint8_t type, const char *severity,
	      const char *sqlstate, const char *message)
{
	size_t start;
	int rc = 0;

	rc |= msg_begin(b, type, &start);
	rc |= msg_put_u8(b, 'S');
	rc |= msg_put_str(b, severity);
	rc |= msg_put_u8(b, 'V');
	rc |= msg_put_str(b, severity);
	rc |= msg_put_u8(b, 'C');
	rc |= msg_put_str(b, sqlstate);
	rc |= msg_put_u8(b, 'M');
	rc |= msg_put_str(b, message);
	rc |= msg_put_u8(b, 0);
	if (rc)
		return -1;
	msg_end(b, start);
	return 0;
}

const char *
msg_error_field(const uint8_t *body, size_t len, char code, size_t *flen)
{
	struct msg_reader r;
	uint8_t c;
	const char *s;

	msg_reader_init(&r, body, len);
	while ((c = msg_read_u8(&r)) != 0) {
		s = msg_read_str(&r, flen);
		if (!s)
			return NULL;
		if (c == (uint8_t)code)
			return s;
	}
	return NULL;
}
