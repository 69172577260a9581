/*
 * fuzz_msg.c - protocol framing and the message reader (proto/msg.h).
 *
 * The input is a byte stream as a peer would send it: an optional
 * untyped startup packet is peeked (and parsed when it is a v3 one), then
 * the stream is cut into typed messages with msg_frame_peek and every
 * complete body is read field by field the way the proxy reads it.  The
 * reader must never step outside a body, whatever the length words and
 * counts claim.
 */
#include <string.h>

#include "fuzz.h"
#include "net/buf.h"
#include "proto/msg.h"

/* Read a whole string; false when the reader failed. */
static bool
read_str(struct msg_reader *r)
{
	size_t len = 0;
	const char *s = msg_read_str(r, &len);

	if (!s)
		return false;
	FUZZ_CHECK(s[len] == '\0' && memchr(s, 0, len) == NULL);
	return true;
}

/* Parse/Bind/Describe/Execute/Close and the backend's common replies. */
static void
read_body(uint8_t type, const uint8_t *body, size_t len)
{
	struct msg_reader r;
	int16_t n, i;
	int32_t clen;

	msg_reader_init(&r, body, len);
	switch (type) {
	case 'Q':		/* Query */
	case 'C':		/* CommandComplete */
		read_str(&r);
		break;
	case 'P':		/* Parse: name, query, n, n oids */
		read_str(&r);
		read_str(&r);
		n = msg_read_i16(&r);
		for (i = 0; i < n && !r.bad; i++)
			msg_read_i32(&r);
		break;
	case 'B':		/* Bind */
		read_str(&r);
		read_str(&r);
		n = msg_read_i16(&r);
		for (i = 0; i < n && !r.bad; i++)
			msg_read_i16(&r);
		n = msg_read_i16(&r);
		for (i = 0; i < n && !r.bad; i++) {
			clen = msg_read_i32(&r);
			if (clen > 0)
				msg_read_bytes(&r, (size_t)clen);
		}
		n = msg_read_i16(&r);
		for (i = 0; i < n && !r.bad; i++)
			msg_read_i16(&r);
		break;
	case 'D':		/* Describe or DataRow: try both shapes */
		msg_read_u8(&r);
		read_str(&r);
		msg_reader_init(&r, body, len);
		n = msg_read_i16(&r);
		for (i = 0; i < n && !r.bad; i++) {
			clen = msg_read_i32(&r);
			if (clen > 0)
				msg_read_bytes(&r, (size_t)clen);
		}
		break;
	case 'E':		/* Execute, or ErrorResponse */
	case 'N':
		read_str(&r);
		msg_read_i32(&r);
		msg_error_field(body, len, 'M', NULL);
		msg_error_field(body, len, 'C', NULL);
		break;
	case 'R':		/* Authentication*: code, SASL mechanisms */
		if (msg_read_i32(&r) == 10)
			while (!r.bad && !msg_reader_done(&r) && read_str(&r))
				;
		break;
	case 'S':		/* ParameterStatus, or Sync */
		read_str(&r);
		read_str(&r);
		break;
	default:
		msg_read_bytes(&r, len);
		break;
	}
	FUZZ_CHECK(r.pos <= r.len);
	if (r.bad)
		FUZZ_CHECK(!msg_reader_done(&r) && msg_read_bytes(&r, 0) == NULL);
}

/* A Query that reads back cleanly must rebuild to the same bytes. */
static void
rebuild_query(const uint8_t *msg, const struct msg_frame *f)
{
	struct msg_reader r;
	struct buf b = { 0 };
	const char *q;
	size_t start;

	msg_reader_init(&r, f->body, f->body_len);
	q = msg_read_str(&r, NULL);
	if (!q || !msg_reader_done(&r))
		return;
	FUZZ_CHECK(msg_begin(&b, 'Q', &start) == 0);
	FUZZ_CHECK(msg_put_str(&b, q) == 0);
	msg_end(&b, start);
	FUZZ_CHECK(b.len == f->len && memcmp(b.data, msg, b.len) == 0);
	buf_free(&b);
}

/*
 * A client opens with an untyped packet; returns its length when it is
 * complete (the typed stream starts after it), else 0.
 */
static size_t
read_startup(const uint8_t *data, size_t size, uint32_t *code_out)
{
	struct msg_reader r;
	uint32_t len, code;

	*code_out = 0;
	if (msg_startup_peek(data, size, &len, &code) != FRAME_OK)
		return 0;
	FUZZ_CHECK(len >= 8 && len <= MSG_STARTUP_MAX);
	if (len > size)
		return 0;
	*code_out = code;
	if (code != PROTO_V3)
		return len;
	/* name/value pairs ending with an empty name */
	msg_reader_init(&r, data + 8, len - 8);
	for (;;) {
		size_t nlen = 0;
		const char *name = msg_read_str(&r, &nlen);

		if (!name || nlen == 0 || !read_str(&r))
			break;
	}
	return len;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg_frame f;
	enum msg_frame_status st;
	size_t off, want;
	uint32_t code;

	off = read_startup(data, size, &code);
	/* After a refused SSLRequest or GSSENCRequest comes the real one. */
	if (code == PROTO_SSL || code == PROTO_GSSENC)
		off += read_startup(data + off, size - off, &code);
	while (off < size) {
		/* Alternate limits so both the small and large paths run. */
		uint32_t max = data[off] == 'D' ? (1u << 30) : MSG_SMALL_MAX;

		want = msg_read_want(data + off, size - off, 8192, 1u << 30);
		FUZZ_CHECK(want >= 8192);
		st = msg_frame_peek(data + off, size - off, max, &f);
		if (st == FRAME_NEED_MORE) {
			FUZZ_CHECK(size - off < MSG_HEADER_LEN);
			break;
		}
		if (st == FRAME_BAD_LENGTH)
			break;
		FUZZ_CHECK(st == FRAME_OK);
		FUZZ_CHECK(f.len == f.body_len + MSG_HEADER_LEN);
		FUZZ_CHECK(f.body == data + off + MSG_HEADER_LEN);
		FUZZ_CHECK(f.avail <= f.body_len);
		FUZZ_CHECK(f.avail <= size - off - MSG_HEADER_LEN);
		FUZZ_CHECK(want >= f.len);
		if (f.avail < f.body_len)
			break;	/* incomplete: the proxy waits for more */
		read_body(f.type, f.body, f.body_len);
		if (f.type == 'Q')
			rebuild_query(data + off, &f);
		off += f.len;
	}
	return 0;
}
