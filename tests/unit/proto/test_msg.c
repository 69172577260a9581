/*
 * test_msg.c - message framing, the bounds-checked reader and the builder
 * (proto/msg.h).  The reader and framing see every byte a peer sends, so
 * the edge cases (short headers, bad lengths, missing NULs) matter most.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "net/buf.h"
#include "proto/msg.h"

/* ---- framing ------------------------------------------------------------ */

static void
test_frame_need_more(void **state)
{
	static const uint8_t in[] = { 'Q', 0, 0, 0, 9, 'x' };
	struct msg_frame f;
	size_t n;

	(void)state;
	for (n = 0; n < MSG_HEADER_LEN; n++)
		assert_int_equal(msg_frame_peek(in, n, MSG_SMALL_MAX, &f),
				 FRAME_NEED_MORE);
	/* A complete header with a partial body is OK, avail says how much. */
	assert_int_equal(msg_frame_peek(in, 5, MSG_SMALL_MAX, &f), FRAME_OK);
	assert_int_equal(f.avail, 0);
	assert_int_equal(msg_frame_peek(in, 6, MSG_SMALL_MAX, &f), FRAME_OK);
	assert_int_equal(f.avail, 1);
	assert_int_equal(f.body_len, 5);
}

static void
test_frame_exact(void **state)
{
	/* Query "SELECT 1": length word 4 + 9. */
	static const uint8_t in[] = { 'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E',
				      'C', 'T', ' ', '1', 0 };
	struct msg_frame f;

	(void)state;
	assert_int_equal(msg_frame_peek(in, sizeof(in), MSG_SMALL_MAX, &f),
			 FRAME_OK);
	assert_int_equal(f.type, 'Q');
	assert_int_equal(f.len, sizeof(in));
	assert_ptr_equal(f.body, in + MSG_HEADER_LEN);
	assert_int_equal(f.body_len, 9);
	assert_int_equal(f.avail, 9);
	assert_string_equal((const char *)f.body, "SELECT 1");
}

static void
test_frame_empty_body(void **state)
{
	/* Sync: a length word of exactly 4 is the smallest valid message. */
	static const uint8_t in[] = { 'S', 0, 0, 0, 4 };
	struct msg_frame f;

	(void)state;
	assert_int_equal(msg_frame_peek(in, sizeof(in), MSG_SMALL_MAX, &f),
			 FRAME_OK);
	assert_int_equal(f.len, 5);
	assert_int_equal(f.body_len, 0);
	assert_int_equal(f.avail, 0);
}

static void
test_frame_bad_length(void **state)
{
	uint8_t in[] = { 'Q', 0, 0, 0, 0, 0, 0, 0 };
	struct msg_frame f;
	uint32_t l;

	(void)state;
	for (l = 0; l < 4; l++) {
		in[4] = (uint8_t)l;
		assert_int_equal(msg_frame_peek(in, sizeof(in), MSG_SMALL_MAX,
						&f),
				 FRAME_BAD_LENGTH);
	}
	/* Over max_len is refused even before the body arrives. */
	in[1] = 0x7f;
	assert_int_equal(msg_frame_peek(in, 5, MSG_SMALL_MAX, &f),
			 FRAME_BAD_LENGTH);
	in[1] = 0xff;
	in[2] = 0xff;
	in[3] = 0xff;
	in[4] = 0xff;
	assert_int_equal(msg_frame_peek(in, 5, UINT32_MAX - 1, &f),
			 FRAME_BAD_LENGTH);
}

static void
test_frame_max_boundary(void **state)
{
	uint8_t in[] = { 'D', 0, 0, 0x75, 0x30 };	/* 30000 */
	struct msg_frame f;

	(void)state;
	assert_int_equal(msg_frame_peek(in, sizeof(in), MSG_SMALL_MAX, &f),
			 FRAME_OK);
	assert_int_equal(f.body_len, MSG_SMALL_MAX - 4);
	assert_int_equal(f.avail, 0);
	in[4] = 0x31;
	assert_int_equal(msg_frame_peek(in, sizeof(in), MSG_SMALL_MAX, &f),
			 FRAME_BAD_LENGTH);
}

static void
test_frame_avail_clamp(void **state)
{
	/* Two Syncs back to back: the first frame must not claim the second. */
	static const uint8_t in[] = { 'X', 0, 0, 0, 6, 'a', 'b',
				      'S', 0, 0, 0, 4 };
	struct msg_frame f;

	(void)state;
	assert_int_equal(msg_frame_peek(in, sizeof(in), MSG_SMALL_MAX, &f),
			 FRAME_OK);
	assert_int_equal(f.body_len, 2);
	assert_int_equal(f.avail, 2);
	assert_int_equal(msg_frame_peek(in + f.len, sizeof(in) - f.len,
					MSG_SMALL_MAX, &f),
			 FRAME_OK);
	assert_int_equal(f.type, 'S');
	assert_int_equal(f.avail, 0);
}

static void
test_startup_peek(void **state)
{
	/* SSLRequest, then a v3 startup header with a too-long length. */
	static const uint8_t ssl[] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f };
	uint8_t big[] = { 0, 0, 0x27, 0x11, 0, 3, 0, 0 };	/* 10001 */
	uint8_t small[] = { 0, 0, 0, 7, 0, 3, 0, 0 };
	uint32_t len = 0, code = 0;
	size_t n;

	(void)state;
	for (n = 0; n < 8; n++)
		assert_int_equal(msg_startup_peek(ssl, n, &len, &code),
				 FRAME_NEED_MORE);
	assert_int_equal(msg_startup_peek(ssl, sizeof(ssl), &len, &code),
			 FRAME_OK);
	assert_int_equal(len, 8);
	assert_int_equal(code, PROTO_SSL);
	assert_int_equal(msg_startup_peek(big, sizeof(big), &len, &code),
			 FRAME_BAD_LENGTH);
	big[3] = 0x10;		/* exactly MSG_STARTUP_MAX */
	assert_int_equal(msg_startup_peek(big, sizeof(big), &len, &code),
			 FRAME_OK);
	assert_int_equal(len, MSG_STARTUP_MAX);
	assert_int_equal(code, PROTO_V3);
	assert_int_equal(msg_startup_peek(small, sizeof(small), &len, &code),
			 FRAME_BAD_LENGTH);
}

static void
test_read_want(void **state)
{
	static const uint8_t big[] = { 'D', 0, 1, 0, 0 };	/* 65536 */
	static const uint8_t tiny[] = { 'S', 0, 0, 0, 4 };
	struct msg_frame f;

	(void)state;
	assert_int_equal(msg_read_want(big, 3, 4096, 1 << 20), 4096);
	assert_int_equal(msg_read_want(big, sizeof(big), 4096, 1 << 20), 65537);
	assert_int_equal(msg_read_want(tiny, sizeof(tiny), 4096, 1 << 20), 4096);
	assert_int_equal(msg_read_want(NULL, 0, 7, 1 << 20), 7);
	/* a length field of exactly max is one msg_frame_peek accepts: the
	 * whole message must fit (it once got the floor and never completed) */
	assert_int_equal(msg_frame_peek(big, sizeof(big), 65536, &f), FRAME_OK);
	assert_int_equal(msg_read_want(big, sizeof(big), 4096, 65536), f.len);
	assert_int_equal(msg_read_want(big, sizeof(big), 4096, 65535), 4096);
}

/* ---- reader ------------------------------------------------------------- */

static void
test_reader_values(void **state)
{
	static const uint8_t body[] = { 0x7f, 0xff, 0xfe, 0x80, 0, 0, 1,
					'a', 'b', 0, 0, 'z', 'z' };
	struct msg_reader r;
	const char *s;
	const uint8_t *p;
	size_t slen = 99;

	(void)state;
	msg_reader_init(&r, body, sizeof(body));
	assert_int_equal(msg_read_u8(&r), 0x7f);
	assert_int_equal(msg_read_i16(&r), -2);
	assert_int_equal(msg_read_i32(&r), (int32_t)0x80000001u);
	s = msg_read_str(&r, &slen);
	assert_non_null(s);
	assert_string_equal(s, "ab");
	assert_int_equal(slen, 2);
	s = msg_read_str(&r, NULL);	/* an empty string is fine */
	assert_non_null(s);
	assert_string_equal(s, "");
	assert_false(msg_reader_done(&r));
	p = msg_read_bytes(&r, 2);
	assert_ptr_equal(p, body + 11);
	assert_true(msg_reader_done(&r));
	assert_false(r.bad);
}

static void
test_reader_str_without_nul(void **state)
{
	static const uint8_t body[] = { 'a', 'b', 'c' };
	struct msg_reader r;
	size_t slen = 42;

	(void)state;
	msg_reader_init(&r, body, sizeof(body));
	assert_null(msg_read_str(&r, &slen));
	assert_true(r.bad);
	assert_int_equal(slen, 42);	/* untouched on failure */
	assert_int_equal(r.pos, 0);
	assert_false(msg_reader_done(&r));
	/* Everything after the failure fails too. */
	assert_null(msg_read_bytes(&r, 0));
	assert_int_equal(msg_read_u8(&r), 0);

	msg_reader_init(&r, body, 0);
	assert_null(msg_read_str(&r, NULL));
	assert_true(r.bad);
}

static void
test_reader_overrun(void **state)
{
	static const uint8_t body[] = { 1, 2, 3, 'x', 0 };
	struct msg_reader r;

	(void)state;
	msg_reader_init(&r, body, sizeof(body));
	assert_int_equal(msg_read_i16(&r), 0x0102);
	assert_int_equal(msg_read_i32(&r), 0);	/* only 3 bytes left */
	assert_true(r.bad);
	assert_int_equal(r.pos, 2);
	/* Data is there, but the reader stays failed. */
	assert_int_equal(msg_read_u8(&r), 0);
	assert_int_equal(msg_read_i16(&r), 0);
	assert_null(msg_read_str(&r, NULL));
	assert_null(msg_read_bytes(&r, 1));
	assert_false(msg_reader_done(&r));

	/* A huge n must not wrap the bounds check. */
	msg_reader_init(&r, body, sizeof(body));
	assert_int_equal(msg_read_u8(&r), 1);
	assert_null(msg_read_bytes(&r, SIZE_MAX));
	assert_true(r.bad);
}

static void
test_reader_done(void **state)
{
	static const uint8_t body[] = { 0, 0, 0, 5, 9 };
	struct msg_reader r;

	(void)state;
	msg_reader_init(&r, body, 0);
	assert_true(msg_reader_done(&r));
	msg_reader_init(&r, body, sizeof(body));
	assert_int_equal(msg_read_i32(&r), 5);
	assert_false(msg_reader_done(&r));	/* trailing garbage */
	assert_int_equal(msg_read_u8(&r), 9);
	assert_true(msg_reader_done(&r));
	assert_int_equal(msg_read_u8(&r), 0);	/* reading past the end */
	assert_false(msg_reader_done(&r));
}

/* ---- builder ------------------------------------------------------------ */

static void
test_builder_round_trip(void **state)
{
	struct buf b = { 0 };
	struct msg_frame f;
	struct msg_reader r;
	size_t start, start2;

	(void)state;
	/* Something in front, so msg_end must patch relative to 'start'. */
	assert_int_equal(buf_append(&b, "junk", 4), 0);
	assert_int_equal(msg_begin(&b, 'P', &start), 0);
	assert_int_equal(start, 4);
	assert_int_equal(msg_put_str(&b, "s1"), 0);
	assert_int_equal(msg_put_str(&b, "SELECT $1"), 0);
	assert_int_equal(msg_put_i16(&b, 1), 0);
	assert_int_equal(msg_put_i32(&b, 23), 0);
	msg_end(&b, start);
	assert_int_equal(msg_begin(&b, 'S', &start2), 0);
	msg_end(&b, start2);

	assert_int_equal(b.len, 4 + 1 + 4 + 3 + 10 + 2 + 4 + 5);
	assert_memory_equal(b.data + start, "P\0\0\0\x17", 5);
	assert_int_equal(msg_frame_peek(b.data + start, b.len - start,
					MSG_SMALL_MAX, &f),
			 FRAME_OK);
	assert_int_equal(f.type, 'P');
	assert_int_equal(f.len, 24);
	assert_int_equal(f.avail, f.body_len);
	msg_reader_init(&r, f.body, f.body_len);
	assert_string_equal(msg_read_str(&r, NULL), "s1");
	assert_string_equal(msg_read_str(&r, NULL), "SELECT $1");
	assert_int_equal(msg_read_i16(&r), 1);
	assert_int_equal(msg_read_i32(&r), 23);
	assert_true(msg_reader_done(&r));

	assert_memory_equal(b.data + start2, "S\0\0\0\x04", 5);
	buf_free(&b);
}

static void
test_builder_negative_and_bytes(void **state)
{
	struct buf b = { 0 };
	struct msg_reader r;
	size_t start;

	(void)state;
	assert_int_equal(msg_begin(&b, 'd', &start), 0);
	assert_int_equal(msg_put_i16(&b, -1), 0);
	assert_int_equal(msg_put_i32(&b, -1), 0);
	assert_int_equal(msg_put_u8(&b, 0xab), 0);
	assert_int_equal(msg_put_bytes(&b, "\0\1\2", 3), 0);
	msg_end(&b, start);
	assert_memory_equal(b.data, "d\0\0\0\x0e\xff\xff\xff\xff\xff\xff\xab\0\1\2",
			    15);
	msg_reader_init(&r, b.data + 5, b.len - 5);
	assert_int_equal(msg_read_i16(&r), -1);
	assert_int_equal(msg_read_i32(&r), -1);
	assert_int_equal(msg_read_u8(&r), 0xab);
	assert_memory_equal(msg_read_bytes(&r, 3), "\0\1\2", 3);
	assert_true(msg_reader_done(&r));
	buf_free(&b);
}

static void
test_builder_large(void **state)
{
	/* Bigger than BUF_MIN_CAP, so the buffer grows mid-message. */
	size_t n = 3 * BUF_MIN_CAP, start;
	char *big = malloc(n + 1);
	struct buf b = { 0 };
	struct msg_frame f;

	(void)state;
	assert_non_null(big);
	memset(big, 'q', n);
	big[n] = 0;
	assert_int_equal(msg_begin(&b, 'Q', &start), 0);
	assert_int_equal(msg_put_str(&b, big), 0);
	msg_end(&b, start);
	assert_int_equal(msg_frame_peek(b.data, b.len, UINT32_MAX, &f),
			 FRAME_OK);
	assert_int_equal(f.len, n + 1 + 5);
	assert_int_equal(f.body_len, n + 1);
	assert_int_equal(msg_be32(b.data + 1), n + 1 + 4);
	free(big);
	buf_free(&b);
}

static void
test_put_error(void **state)
{
	struct buf b = { 0 };
	struct msg_frame f;
	const char *v;
	size_t flen = 0, start;

	(void)state;
	assert_int_equal(msg_put_error(&b, 'E', "FATAL", "28P01",
				       "password authentication failed"),
			 0);
	assert_int_equal(msg_frame_peek(b.data, b.len, MSG_SMALL_MAX, &f),
			 FRAME_OK);
	assert_int_equal(f.type, 'E');
	assert_int_equal(f.len, b.len);
	assert_int_equal(f.body[f.body_len - 1], 0);	/* terminator */

	v = msg_error_field(f.body, f.body_len, 'S', &flen);
	assert_non_null(v);
	assert_string_equal(v, "FATAL");
	assert_int_equal(flen, 5);
	v = msg_error_field(f.body, f.body_len, 'V', NULL);
	assert_string_equal(v, "FATAL");
	v = msg_error_field(f.body, f.body_len, 'C', &flen);
	assert_string_equal(v, "28P01");
	v = msg_error_field(f.body, f.body_len, 'M', &flen);
	assert_string_equal(v, "password authentication failed");
	assert_int_equal(flen, strlen(v));
	assert_null(msg_error_field(f.body, f.body_len, 'D', &flen));

	/* A NoticeResponse appended after it frames on its own. */
	start = b.len;
	assert_int_equal(msg_put_error(&b, 'N', "WARNING", "01000", "w"), 0);
	assert_int_equal(msg_frame_peek(b.data + start, b.len - start,
					MSG_SMALL_MAX, &f),
			 FRAME_OK);
	assert_int_equal(f.type, 'N');
	assert_int_equal(f.len, b.len - start);
	buf_free(&b);
}

static void
test_error_field_malformed(void **state)
{
	/* Field value without NUL, no terminator, empty body. */
	static const uint8_t cut[] = { 'S', 'E', 'R' };
	static const uint8_t noterm[] = { 'S', 'X', 0, 'M', 'm', 0 };
	static const uint8_t empty[] = { 0 };

	(void)state;
	assert_null(msg_error_field(cut, sizeof(cut), 'S', NULL));
	assert_null(msg_error_field(cut, sizeof(cut), 'M', NULL));
	assert_string_equal(msg_error_field(noterm, sizeof(noterm), 'M', NULL),
			    "m");
	assert_null(msg_error_field(noterm, sizeof(noterm), 'C', NULL));
	assert_null(msg_error_field(empty, sizeof(empty), 'S', NULL));
	assert_null(msg_error_field(empty, 0, 'S', NULL));
	/* Code 0 is the terminator, never a field. */
	assert_null(msg_error_field(noterm, sizeof(noterm), 0, NULL));
}

static void
test_be_helpers(void **state)
{
	static const uint8_t p[] = { 0xde, 0xad, 0xbe, 0xef };

	(void)state;
	assert_int_equal(msg_be32(p), 0xdeadbeefu);
	assert_int_equal(msg_be16(p), 0xdead);
}

/* ---- the buffer (net/buf.h) --------------------------------------------- */

static void
test_buf_release_and_stash(void **state)
{
	struct buf a = { 0 }, b = { 0 };
	uint8_t *first;
	char big[BUF_MIN_CAP + 1];

	(void)state;
	/* without a stash, an emptied buffer gives its storage back */
	assert_int_equal(buf_append(&a, "abc", 3), 0);
	assert_int_equal(buf_pending(&a), 3);
	buf_consume(&a, 3);
	buf_release(&a);
	assert_null(a.data);
	assert_int_equal(a.cap, 0);

	/* with one, the block is kept and handed to the next empty buffer */
	buf_stash_begin();
	assert_int_equal(buf_append(&a, "abc", 3), 0);
	first = a.data;
	buf_release(&a);	/* not empty: kept */
	assert_ptr_equal(a.data, first);
	buf_consume(&a, 3);
	buf_release(&a);
	assert_null(a.data);
	assert_int_equal(buf_append(&b, "xy", 2), 0);
	assert_ptr_equal(b.data, first);
	assert_int_equal(b.cap, BUF_MIN_CAP);
	assert_memory_equal(buf_head(&b), "xy", 2);
	/* a grown buffer is freed, not stashed */
	memset(big, 'z', sizeof(big));
	assert_int_equal(buf_append(&b, big, sizeof(big)), 0);
	assert_true(b.cap > BUF_MIN_CAP);
	buf_consume(&b, buf_pending(&b));
	buf_release(&b);
	assert_null(b.data);
	assert_int_equal(buf_append(&a, big, sizeof(big)), 0);
	assert_true(a.cap > BUF_MIN_CAP);
	buf_free(&a);
	buf_stash_end();	/* frees what is kept (ASan would see a leak) */
	assert_int_equal(buf_append(&a, "q", 1), 0);
	buf_free(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_need_more),
		cmocka_unit_test(test_frame_exact),
		cmocka_unit_test(test_frame_empty_body),
		cmocka_unit_test(test_frame_bad_length),
		cmocka_unit_test(test_frame_max_boundary),
		cmocka_unit_test(test_frame_avail_clamp),
		cmocka_unit_test(test_startup_peek),
		cmocka_unit_test(test_read_want),
		cmocka_unit_test(test_reader_values),
		cmocka_unit_test(test_reader_str_without_nul),
		cmocka_unit_test(test_reader_overrun),
		cmocka_unit_test(test_reader_done),
		cmocka_unit_test(test_builder_round_trip),
		cmocka_unit_test(test_builder_negative_and_bytes),
		cmocka_unit_test(test_builder_large),
		cmocka_unit_test(test_put_error),
		cmocka_unit_test(test_error_field_malformed),
		cmocka_unit_test(test_be_helpers),
		cmocka_unit_test(test_buf_release_and_stash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
