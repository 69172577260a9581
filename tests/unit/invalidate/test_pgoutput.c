/*
 * test_pgoutput.c - the replication protocol's CopyData payloads and the
 * pgoutput decoder (invalidate/pgoutput.h).  Messages are built byte by
 * byte with the small encoder below, plus a few captured from a real
 * PostgreSQL 15 walsender (proto_version '1').  Every byte comes from the
 * network, so truncations, counts, missing NULs and trailing bytes are
 * checked for every kind.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "invalidate/pgoutput.h"

/* One decoded message, shared: it is ~100 KB. */
static struct pgo_msg m;

/* ---- a tiny encoder ------------------------------------------------------ */

struct enc {
	uint8_t b[32768];
	size_t n;
};

static void
put_u8(struct enc *e, uint8_t v)
{
	assert_true(e->n < sizeof(e->b));
	e->b[e->n++] = v;
}

static void
put_u16(struct enc *e, uint16_t v)
{
	put_u8(e, (uint8_t)(v >> 8));
	put_u8(e, (uint8_t)v);
}

static void
put_u32(struct enc *e, uint32_t v)
{
	put_u16(e, (uint16_t)(v >> 16));
	put_u16(e, (uint16_t)v);
}

static void
put_u64(struct enc *e, uint64_t v)
{
	put_u32(e, (uint32_t)(v >> 32));
	put_u32(e, (uint32_t)v);
}

static void
put_bytes(struct enc *e, const void *p, size_t n)
{
	assert_true(n <= sizeof(e->b) - e->n);
	memcpy(e->b + e->n, p, n);
	e->n += n;
}

static void
put_str(struct enc *e, const char *s)
{
	put_bytes(e, s, strlen(s) + 1);
}

/* A 't' column. */
static void
put_text(struct enc *e, const char *s)
{
	put_u8(e, 't');
	put_u32(e, (uint32_t)strlen(s));
	put_bytes(e, s, strlen(s));
}

/* Parse e's bytes from an exact-size heap copy, so ASan sees overreads. */
static int
parse_exact(const uint8_t *p, size_t n)
{
	uint8_t *copy = malloc(n ? n : 1);
	int rc;

	assert_non_null(copy);
	memcpy(copy, p, n);
	rc = pgo_parse(copy, n, &m);
	free(copy);
	return rc;
}

static void
assert_value(const struct pgo_value *v, char kind, const char *text)
{
	assert_int_equal(v->kind, kind);
	if (text) {
		assert_int_equal(v->len, strlen(text));
		assert_memory_equal(v->data, text, v->len);
	} else {
		assert_int_equal(v->len, 0);
		assert_null(v->data);
	}
}

/* ---- one valid message of each kind -------------------------------------- */

static void
build_begin(struct enc *e)
{
	put_u8(e, 'B');
	put_u64(e, 0x16B374D848ull);
	put_u64(e, (uint64_t)INT64_C(764000000123456));
	put_u32(e, 0xfffffff0u);
}

static void
build_commit(struct enc *e)
{
	put_u8(e, 'C');
	put_u8(e, 0);
	put_u64(e, 0x100000010ull);
	put_u64(e, 0x100000040ull);
	put_u64(e, (uint64_t)INT64_C(-1));	/* before 2000: negative */
}

static void
build_origin(struct enc *e)
{
	put_u8(e, 'O');
	put_u64(e, 0xABCDEF0123ull);
	put_str(e, "upstream1");
}

static void
build_relation(struct enc *e)
{
	put_u8(e, 'R');
	put_u32(e, 16415);
	put_str(e, "app");
	put_str(e, "users");
	put_u8(e, 'd');
	put_u16(e, 3);
	put_u8(e, 1);
	put_str(e, "id");
	put_u32(e, 20);
	put_u32(e, 0xffffffffu);
	put_u8(e, 0);
	put_str(e, "name");
	put_u32(e, 1043);
	put_u32(e, 68);		/* varchar(64) */
	put_u8(e, 0);
	put_str(e, "");		/* an empty name is still a string */
	put_u32(e, 0x80000000u);
	put_u32(e, 0x7fffffffu);
}

static void
build_type(struct enc *e)
{
	put_u8(e, 'Y');
	put_u32(e, 16409);
	put_str(e, "public");
	put_str(e, "mood");
}

static void
build_insert(struct enc *e)
{
	put_u8(e, 'I');
	put_u32(e, 16415);
	put_u8(e, 'N');
	put_u16(e, 4);
	put_text(e, "42");
	put_u8(e, 'n');
	put_u8(e, 'b');
	put_u32(e, 3);
	put_bytes(e, "\0\1\2", 3);
	put_text(e, "");
}

static void
build_update(struct enc *e)
{
	put_u8(e, 'U');
	put_u32(e, 7);
	put_u8(e, 'N');
	put_u16(e, 2);
	put_text(e, "1");
	put_u8(e, 'u');
}

static void
build_update_key(struct enc *e)
{
	put_u8(e, 'U');
	put_u32(e, 7);
	put_u8(e, 'K');
	put_u16(e, 2);
	put_text(e, "1");
	put_u8(e, 'n');
	put_u8(e, 'N');
	put_u16(e, 2);
	put_text(e, "2");
	put_text(e, "x");
}

static void
build_update_old(struct enc *e)
{
	put_u8(e, 'U');
	put_u32(e, 8);
	put_u8(e, 'O');
	put_u16(e, 1);
	put_text(e, "old");
	put_u8(e, 'N');
	put_u16(e, 1);
	put_text(e, "new");
}

static void
build_delete(struct enc *e)
{
	put_u8(e, 'D');
	put_u32(e, 9);
	put_u8(e, 'K');
	put_u16(e, 3);
	put_text(e, "-5");
	put_u8(e, 'n');
	put_u8(e, 'n');
}

static void
build_delete_old(struct enc *e)
{
	put_u8(e, 'D');
	put_u32(e, 10);
	put_u8(e, 'O');
	put_u16(e, 0);
}

static void
build_truncate(struct enc *e)
{
	put_u8(e, 'T');
	put_u32(e, 3);
	put_u8(e, 2);
	put_u32(e, 16415);
	put_u32(e, 16422);
	put_u32(e, 0xfffffffeu);
}

static void
build_message(struct enc *e)
{
	put_u8(e, 'M');
	put_u8(e, 1);
	put_u64(e, 0x1932F48ull);
	put_str(e, "pfx");
	put_u32(e, 5);
	put_bytes(e, "he\0lo", 5);
}

static void (*const builders[])(struct enc *) = {
	build_begin, build_commit, build_origin, build_relation,
	build_type, build_insert, build_update, build_update_key,
	build_update_old, build_delete, build_delete_old, build_truncate,
	build_message,
};

/* Fields of other kinds stay zero. */
static void
assert_no_change_fields(void)
{
	assert_int_equal(m.old_kind, 0);
	assert_int_equal(m.oldtup.n, 0);
	assert_int_equal(m.newtup.n, 0);
	assert_int_equal(m.ncols, 0);
	assert_null(m.relname);
	assert_int_equal(m.ntrunc, 0);
	assert_null(m.msg_prefix);
}

/* ---- replication protocol ------------------------------------------------ */

static void
test_copy_xlogdata(void **state)
{
	struct enc e = { .n = 0 };
	struct repl_copy c;
	size_t n;

	(void)state;
	put_u8(&e, 'w');
	put_u64(&e, 0x16B374D848ull);
	put_u64(&e, 0x16B374D900ull);
	put_u64(&e, (uint64_t)INT64_C(764000000000001));
	build_begin(&e);
	assert_int_equal(repl_copy_parse(e.b, e.n, &c), 0);
	assert_int_equal(c.kind, 'w');
	assert_true(c.wal_start == 0x16B374D848ull);
	assert_true(c.wal_end == 0x16B374D900ull);
	assert_true(c.send_time == INT64_C(764000000000001));
	assert_false(c.reply_requested);
	assert_ptr_equal(c.data, e.b + 25);
	assert_int_equal(c.len, 21);
	assert_int_equal(pgo_parse(c.data, c.len, &m), 0);
	assert_int_equal(m.kind, 'B');

	/* The header alone is an XLogData with no data; shorter is not. */
	assert_int_equal(repl_copy_parse(e.b, 25, &c), 0);
	assert_int_equal(c.len, 0);
	assert_int_equal(pgo_parse(c.data, c.len, &m), -1);
	for (n = 0; n < 25; n++)
		assert_int_equal(repl_copy_parse(e.b, n, &c), -1);
}

static void
test_copy_keepalive(void **state)
{
	uint8_t k[19] = {
		'k', 0, 0, 0, 0x16, 0xB3, 0x74, 0xD8, 0x48,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 1, 0,
	};
	struct repl_copy c;
	size_t n;

	(void)state;
	assert_int_equal(repl_copy_parse(k, 18, &c), 0);
	assert_int_equal(c.kind, 'k');
	assert_true(c.wal_end == 0x16B374D848ull);
	assert_true(c.wal_start == 0);
	assert_true(c.send_time == -2);
	assert_true(c.reply_requested);
	assert_null(c.data);
	assert_int_equal(c.len, 0);
	k[17] = 0;
	assert_int_equal(repl_copy_parse(k, 18, &c), 0);
	assert_false(c.reply_requested);
	/* exactly 18 bytes */
	assert_int_equal(repl_copy_parse(k, 19, &c), -1);
	for (n = 0; n < 18; n++)
		assert_int_equal(repl_copy_parse(k, n, &c), -1);
	/* other kinds, including our own 'r' */
	k[0] = 'r';
	assert_int_equal(repl_copy_parse(k, 18, &c), -1);
	k[0] = 'W';
	assert_int_equal(repl_copy_parse(k, 18, &c), -1);
	assert_int_equal(repl_copy_parse(NULL, 0, &c), -1);
}

/* Captured: an XLogData carrying an Insert into big (id int, n int, doc). */
static const uint8_t real_xlog_insert[] = {
	0x77, 0x00, 0x00, 0x00, 0x00, 0x01, 0x93, 0xb1, 0x18, 0x00, 0x00,
	0x00, 0x00, 0x01, 0x93, 0xb1, 0x18, 0x00, 0x03, 0x03, 0xf0, 0xce,
	0xdd, 0xcd, 0x8a, 0x49, 0x00, 0x00, 0x40, 0x33, 0x4e, 0x00, 0x03,
	0x74, 0x00, 0x00, 0x00, 0x02, 0x34, 0x33, 0x74, 0x00, 0x00, 0x00,
	0x01, 0x33, 0x74, 0x00, 0x00, 0x00, 0x05, 0x73, 0x6d, 0x61, 0x6c,
	0x6c
};

/* Captured: the keepalive that followed its commit. */
static const uint8_t real_keepalive[] = {
	0x6b, 0x00, 0x00, 0x00, 0x00, 0x01, 0x93, 0xb1, 0xd0, 0x00, 0x03,
	0x03, 0xf0, 0xce, 0xdd, 0xce, 0xaf, 0x00
};

static void
test_copy_real(void **state)
{
	struct repl_copy c;
	char lsn[24];
	int64_t v;

	(void)state;
	assert_int_equal(repl_copy_parse(real_xlog_insert,
					 sizeof(real_xlog_insert), &c), 0);
	assert_int_equal(c.kind, 'w');
	repl_lsn_format(c.wal_start, lsn);
	assert_string_equal(lsn, "0/193B118");
	assert_true(c.send_time == INT64_C(0x000303f0ceddcd8a));
	assert_int_equal(pgo_parse(c.data, c.len, &m), 0);
	assert_int_equal(m.kind, 'I');
	assert_int_equal(m.relid, 0x4033);
	assert_int_equal(m.old_kind, 0);
	assert_int_equal(m.newtup.n, 3);
	assert_value(&m.newtup.cols[0], 't', "43");
	assert_value(&m.newtup.cols[1], 't', "3");
	assert_value(&m.newtup.cols[2], 't', "small");
	assert_int_equal(pgo_value_int64(&m.newtup.cols[0], &v), 0);
	assert_true(v == 43);

	assert_int_equal(repl_copy_parse(real_keepalive,
					 sizeof(real_keepalive), &c), 0);
	assert_int_equal(c.kind, 'k');
	repl_lsn_format(c.wal_end, lsn);
	assert_string_equal(lsn, "0/193B1D0");
	assert_false(c.reply_requested);
	/* sent 293 us after the XLogData */
	assert_true(c.send_time - INT64_C(0x000303f0ceddcd8a) == 0x125);
}

static void
test_status_update(void **state)
{
	static const uint8_t want[34] = {
		'r',
		0, 0, 0, 0x16, 0xB3, 0x74, 0xD8, 0x48,
		0, 0, 0, 0x16, 0xB3, 0x74, 0xD8, 0x48,
		0, 0, 0, 0x16, 0xB3, 0x74, 0xD8, 0x48,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd,
		1,
	};
	uint8_t out[34];

	(void)state;
	memset(out, 0xaa, sizeof(out));
	assert_int_equal(repl_status_update(out, 0x16B374D848ull, -3, true),
			 34);
	assert_memory_equal(out, want, 34);
	assert_int_equal(repl_status_update(out, 0, 0, false), 34);
	assert_int_equal(out[0], 'r');
	assert_int_equal(out[33], 0);
}

static void
test_pg_time(void **state)
{
	(void)state;
	assert_true(repl_pg_time(INT64_C(946684800000000)) == 0);
	assert_true(repl_unix_time(0) == INT64_C(946684800000000));
	assert_true(repl_pg_time(0) == -INT64_C(946684800000000));
	/* 2024-01-01 00:00:00 UTC is 1704067200 s after 1970 */
	assert_true(repl_pg_time(INT64_C(1704067200000000)) ==
		    INT64_C(757382400000000));
	assert_true(repl_unix_time(repl_pg_time(123456789)) == 123456789);
	/* saturating, not overflowing */
	assert_true(repl_pg_time(INT64_MIN) == INT64_MIN);
	assert_true(repl_unix_time(INT64_MAX) == INT64_MAX);
	assert_true(repl_unix_time(INT64_MIN) ==
		    INT64_MIN + INT64_C(946684800000000));
	assert_true(repl_pg_time(INT64_MAX) ==
		    INT64_MAX - INT64_C(946684800000000));
}

static void
test_lsn(void **state)
{
	static const char *const good[] = {
		"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", "0/193B118",
		"1/0",
	};
	static const char *const bad[] = {
		"", "/", "1/", "/1", "x/1", "1/x", "1/2/3", "1//2",
		"123456789/0", "0/123456789", " 1/2", "1/2 ", "1 /2",
		"-1/2", "+1/2", "0x1/2", "1/2\n",
	};
	char buf[24];
	uint64_t v;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 12345;
		assert_int_equal(repl_lsn_parse(good[i], &v), 0);
		repl_lsn_format(v, buf);
		assert_string_equal(buf, good[i]);
	}
	assert_int_equal(repl_lsn_parse("16/B374D848", &v), 0);
	assert_true(v == 0x16B374D848ull);
	assert_int_equal(repl_lsn_parse("FFFFFFFF/FFFFFFFF", &v), 0);
	assert_true(v == UINT64_MAX);
	/* lower case and leading zeros in, canonical form out */
	assert_int_equal(repl_lsn_parse("00000016/b374d848", &v), 0);
	assert_true(v == 0x16B374D848ull);
	repl_lsn_format(v, buf);
	assert_string_equal(buf, "16/B374D848");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 12345;
		assert_int_equal(repl_lsn_parse(bad[i], &v), -1);
		assert_true(v == 12345);	/* untouched */
	}
}

/* ---- each kind ----------------------------------------------------------- */

static void
test_begin_commit(void **state)
{
	struct enc e = { .n = 0 };

	(void)state;
	build_begin(&e);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.kind, 'B');
	assert_true(m.final_lsn == 0x16B374D848ull);
	assert_true(m.commit_time == INT64_C(764000000123456));
	assert_int_equal(m.xid, 0xfffffff0u);
	assert_int_equal(m.relid, 0);
	assert_no_change_fields();

	e.n = 0;
	build_commit(&e);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.kind, 'C');
	assert_int_equal(m.commit_flags, 0);
	assert_true(m.commit_lsn == 0x100000010ull);
	assert_true(m.end_lsn == 0x100000040ull);
	assert_true(m.commit_time == -1);
	assert_true(m.final_lsn == 0);	/* not the Begin's any more */
	assert_int_equal(m.xid, 0);
	assert_no_change_fields();
	/* flags are kept as sent */
	e.b[1] = 0x80;
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.commit_flags, 0x80);
}

static void
test_origin_type(void **state)
{
	struct enc e = { .n = 0 };

	(void)state;
	build_origin(&e);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.kind, 'O');
	assert_true(m.origin_lsn == 0xABCDEF0123ull);
	assert_string_equal(m.origin, "upstream1");
	assert_ptr_equal(m.origin, (const char *)e.b + 9);

	e.n = 0;
	build_type(&e);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.kind, 'Y');
	assert_int_equal(m.type_oid, 16409);
	assert_string_equal(m.type_nsp, "public");
	assert_string_equal(m.type_name, "mood");
	assert_null(m.origin);
	assert_no_change_fields();
}

static void
test_relation(void **state)
{
	struct enc e = { .n = 0 };

	(void)state;
	build_relation(&e);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.kind, 'R');
	assert_int_equal(m.relid, 16415);
	assert_string_equal(m.nspname, "app");
	assert_string_equal(m.relname, "users");
	assert_int_equal(m.replident, 'd');
	assert_int_equal(m.ncols, 3);
	assert_int_equal(m.columns[0].flags, 1);
	assert_string_equal(m.columns[0].name, "id");
	assert_int_equal(m.columns[0].type_oid, 20);
	assert_int_equal(m.columns[0].typmod, -1);
	assert_int_equal(m.columns[1].flags, 0);
	assert_string_equal(m.columns[1].name, "name");
	assert_int_equal(m.columns[1].type_oid, 1043);
	assert_int_equal(m.columns[1].typmod, 68);
	assert_string_equal(m.columns[2].name, "");
	assert_int_equal(m.columns[2].type_oid, 0x80000000u);
	assert_int_equal(m.columns[2].typmod, INT32_MAX);
	assert_true((const uint8_t *)m.columns[2].name > e.b &&
		    (const uint8_t *)m.columns[2].name < e.b + e.n);
	assert_int_equal(m.old_kind, 0);
	assert_int_equal(m.newtup.n, 0);

	/* no columns at all */
	e.n = 0;
	put_u8(&e, 'R');
	put_u32(&e, 1);
	put_str(&e, "");
	put_str(&e, "pg_x");
	put_u8(&e, 'n');
	put_u16(&e, 0);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_string_equal(m.nspname, "");
	assert_int_equal(m.replident, 'n');
	assert_int_equal(m.ncols, 0);
}

static void
test_insert(void **state)
{
	struct enc e = { .n = 0 };
	int64_t v;

	(void)state;
	build_insert(&e);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.kind, 'I');
	assert_int_equal(m.relid, 16415);
	assert_int_equal(m.old_kind, 0);
	assert_int_equal(m.oldtup.n, 0);
	assert_int_equal(m.newtup.n, 4);
	assert_ptr_equal(m.newtup.cols, m.newvals);
	assert_ptr_equal(m.oldtup.cols, m.oldvals);
	assert_value(&m.newtup.cols[0], 't', "42");
	assert_ptr_equal(m.newtup.cols[0].data, e.b + 13);
	assert_value(&m.newtup.cols[1], 'n', NULL);
	assert_int_equal(m.newtup.cols[2].kind, 'b');
	assert_int_equal(m.newtup.cols[2].len, 3);
	assert_memory_equal(m.newtup.cols[2].data, "\0\1\2", 3);
	assert_int_equal(m.newtup.cols[3].kind, 't');
	assert_int_equal(m.newtup.cols[3].len, 0);
	assert_int_equal(pgo_value_int64(&m.newtup.cols[0], &v), 0);
	assert_true(v == 42);
	assert_int_equal(pgo_value_int64(&m.newtup.cols[1], &v), -1);
	assert_int_equal(pgo_value_int64(&m.newtup.cols[2], &v), -1);
	assert_int_equal(pgo_value_int64(&m.newtup.cols[3], &v), -1);

	/* an Insert has no old row */
	e.b[5] = 'K';
	assert_int_equal(pgo_parse(e.b, e.n, &m), -1);
	e.b[5] = 'O';
	assert_int_equal(pgo_parse(e.b, e.n, &m), -1);
}

static void
test_update(void **state)
{
	struct enc e = { .n = 0 };

	(void)state;
	build_update(&e);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.kind, 'U');
	assert_int_equal(m.relid, 7);
	assert_int_equal(m.old_kind, 0);
	assert_int_equal(m.oldtup.n, 0);
	assert_int_equal(m.newtup.n, 2);
	assert_value(&m.newtup.cols[0], 't', "1");
	assert_value(&m.newtup.cols[1], 'u', NULL);

	e.n = 0;
	build_update_key(&e);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.kind, 'U');
	assert_int_equal(m.old_kind, 'K');
	assert_int_equal(m.oldtup.n, 2);
	assert_value(&m.oldtup.cols[0], 't', "1");
	assert_value(&m.oldtup.cols[1], 'n', NULL);
	assert_int_equal(m.newtup.n, 2);
	assert_value(&m.newtup.cols[0], 't', "2");
	assert_value(&m.newtup.cols[1], 't', "x");

	e.n = 0;
	build_update_old(&e);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.relid, 8);
	assert_int_equal(m.old_kind, 'O');
	assert_int_equal(m.oldtup.n, 1);
	assert_value(&m.oldtup.cols[0], 't', "old");
	assert_int_equal(m.newtup.n, 1);
	assert_value(&m.newtup.cols[0], 't', "new");

	/* the new tuple must follow as 'N' */
	e.b[5 + 1 + 2 + 1 + 4 + 3] = 'K';
	assert_int_equal(pgo_parse(e.b, e.n, &m), -1);
	e.n = 0;
	build_update(&e);
	e.b[5] = 'X';
	assert_int_equal(pgo_parse(e.b, e.n, &m), -1);
	/* an old tuple and no new one */
	e.n = 0;
	put_u8(&e, 'U');
	put_u32(&e, 1);
	put_u8(&e, 'K');
	put_u16(&e, 0);
	assert_int_equal(pgo_parse(e.b, e.n, &m), -1);
}

static void
test_delete(void **state)
{
	struct enc e = { .n = 0 };
	int64_t v;

	(void)state;
	build_delete(&e);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.kind, 'D');
	assert_int_equal(m.relid, 9);
	assert_int_equal(m.old_kind, 'K');
	assert_int_equal(m.oldtup.n, 3);
	assert_value(&m.oldtup.cols[0], 't', "-5");
	assert_value(&m.oldtup.cols[1], 'n', NULL);
	assert_value(&m.oldtup.cols[2], 'n', NULL);
	assert_int_equal(m.newtup.n, 0);
	assert_int_equal(pgo_value_int64(&m.oldtup.cols[0], &v), 0);
	assert_true(v == -5);

	e.n = 0;
	build_delete_old(&e);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.relid, 10);
	assert_int_equal(m.old_kind, 'O');
	assert_int_equal(m.oldtup.n, 0);

	/* a Delete's tuple is 'K' or 'O', never 'N' */
	e.b[5] = 'N';
	assert_int_equal(pgo_parse(e.b, e.n, &m), -1);
	/* and it carries no new tuple after it */
	e.b[5] = 'K';
	put_u8(&e, 'N');
	put_u16(&e, 0);
	assert_int_equal(pgo_parse(e.b, e.n, &m), -1);
}

static void
test_truncate(void **state)
{
	struct enc e = { .n = 0 };

	(void)state;
	build_truncate(&e);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.kind, 'T');
	assert_int_equal(m.ntrunc, 3);
	assert_int_equal(m.trunc_options, 2);
	assert_ptr_equal(m.trunc_relids, e.b + 6);
	assert_int_equal(pgo_trunc_relid(&m, 0), 16415);
	assert_int_equal(pgo_trunc_relid(&m, 1), 16422);
	assert_int_equal(pgo_trunc_relid(&m, 2), 0xfffffffeu);
	assert_int_equal(pgo_trunc_relid(&m, 3), 0);	/* out of range */
	assert_int_equal(pgo_trunc_relid(&m, UINT32_MAX), 0);
	assert_int_equal(m.relid, 0);
	assert_int_equal(m.ncols, 0);

	/* zero relations is well formed */
	e.n = 0;
	put_u8(&e, 'T');
	put_u32(&e, 0);
	put_u8(&e, 0);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.ntrunc, 0);
	assert_int_equal(pgo_trunc_relid(&m, 0), 0);

	/* a count the bytes cannot hold, up to one that wraps size_t math */
	e.n = 0;
	put_u8(&e, 'T');
	put_u32(&e, 0x40000001u);
	put_u8(&e, 0);
	put_u32(&e, 1);
	assert_int_equal(pgo_parse(e.b, e.n, &m), -1);
	e.b[4] = 2;	/* 0x40000002 */
	assert_int_equal(pgo_parse(e.b, e.n, &m), -1);
	memset(e.b + 1, 0xff, 4);
	assert_int_equal(pgo_parse(e.b, e.n, &m), -1);
}

static void
test_message(void **state)
{
	struct enc e = { .n = 0 };

	(void)state;
	build_message(&e);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.kind, 'M');
	assert_true(m.msg_transactional);
	assert_true(m.msg_lsn == 0x1932F48ull);
	assert_string_equal(m.msg_prefix, "pfx");
	assert_int_equal(m.msg_len, 5);
	assert_ptr_equal(m.msg_content, e.b + 18);
	assert_memory_equal(m.msg_content, "he\0lo", 5);
	e.b[1] = 0;
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_false(m.msg_transactional);

	/* a length over what is left, and a negative one */
	e.b[17] = 6;
	assert_int_equal(pgo_parse(e.b, e.n, &m), -1);
	memset(e.b + 14, 0xff, 4);
	assert_int_equal(pgo_parse(e.b, e.n, &m), -1);
	/* empty content */
	e.n = 0;
	put_u8(&e, 'M');
	put_u8(&e, 0);
	put_u64(&e, 1);
	put_str(&e, "");
	put_u32(&e, 0);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.msg_len, 0);
	assert_string_equal(m.msg_prefix, "");
}

/* ---- malformed input ----------------------------------------------------- */

static void
test_truncations(void **state)
{
	struct enc e;
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(builders) / sizeof(builders[0]); i++) {
		e.n = 0;
		builders[i](&e);
		assert_int_equal(parse_exact(e.b, e.n), 0);
		for (n = 0; n < e.n; n++)
			if (parse_exact(e.b, n) != -1)
				fail_msg("builder %zu: %zu of %zu bytes parsed",
					 i, n, e.n);
	}
}

static void
test_trailing_bytes(void **state)
{
	struct enc e;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(builders) / sizeof(builders[0]); i++) {
		e.n = 0;
		builders[i](&e);
		put_u8(&e, 0);
		assert_int_equal(parse_exact(e.b, e.n), -1);
		e.b[e.n - 1] = 'N';
		assert_int_equal(parse_exact(e.b, e.n), -1);
	}
}

static void
test_unknown_kinds(void **state)
{
	/* v2 streaming, v3 two-phase, and things that are no kind at all */
	static const char kinds[] = "SEcAbPKrpw\0kQ";
	struct enc e;
	size_t i;

	(void)state;
	assert_int_equal(pgo_parse(NULL, 0, &m), -1);
	for (i = 0; i < sizeof(kinds) - 1; i++) {
		e.n = 0;
		build_begin(&e);
		e.b[0] = (uint8_t)kinds[i];
		assert_int_equal(parse_exact(e.b, e.n), -1);
	}
}

static void
test_bad_tuple_kind(void **state)
{
	static const char kinds[] = "xNTU\0\xff";
	struct enc e;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(kinds) - 1; i++) {
		e.n = 0;
		put_u8(&e, 'I');
		put_u32(&e, 1);
		put_u8(&e, 'N');
		put_u16(&e, 1);
		put_u8(&e, (uint8_t)kinds[i]);
		assert_int_equal(parse_exact(e.b, e.n), -1);
	}
	/* a value length past the end, and a negative one */
	e.n = 0;
	put_u8(&e, 'I');
	put_u32(&e, 1);
	put_u8(&e, 'N');
	put_u16(&e, 1);
	put_u8(&e, 't');
	put_u32(&e, 4);
	put_bytes(&e, "abc", 3);
	assert_int_equal(parse_exact(e.b, e.n), -1);
	memset(e.b + 9, 0xff, 4);
	assert_int_equal(parse_exact(e.b, e.n), -1);
	/* fewer columns than the count says */
	e.n = 0;
	put_u8(&e, 'I');
	put_u32(&e, 1);
	put_u8(&e, 'N');
	put_u16(&e, 3);
	put_u8(&e, 'n');
	put_u8(&e, 'n');
	assert_int_equal(parse_exact(e.b, e.n), -1);
}

/* A tuple of n NULLs, or a Relation of n columns. */
static void
build_wide(struct enc *e, char kind, uint16_t n)
{
	uint16_t i;

	e->n = 0;
	put_u8(e, (uint8_t)kind);
	put_u32(e, 1);
	if (kind == 'R') {
		put_str(e, "s");
		put_str(e, "w");
		put_u8(e, 'd');
		put_u16(e, n);
		for (i = 0; i < n; i++) {
			put_u8(e, 0);
			put_str(e, "c");
			put_u32(e, 23);
			put_u32(e, 0xffffffffu);
		}
		return;
	}
	put_u8(e, 'N');
	put_u16(e, n);
	for (i = 0; i < n; i++)
		put_u8(e, 'n');
}

static void
test_counts_over_max(void **state)
{
	static struct enc e;

	(void)state;
	build_wide(&e, 'I', PGO_MAX_COLS);
	assert_int_equal(parse_exact(e.b, e.n), 0);
	assert_int_equal(m.newtup.n, PGO_MAX_COLS);
	assert_int_equal(m.newtup.cols[PGO_MAX_COLS - 1].kind, 'n');
	build_wide(&e, 'I', PGO_MAX_COLS + 1);
	assert_int_equal(parse_exact(e.b, e.n), -1);
	build_wide(&e, 'R', PGO_MAX_COLS);
	assert_int_equal(parse_exact(e.b, e.n), 0);
	assert_int_equal(m.ncols, PGO_MAX_COLS);
	build_wide(&e, 'R', PGO_MAX_COLS + 1);
	assert_int_equal(parse_exact(e.b, e.n), -1);
	/* 0xffff as a count: over the max (and negative as an Int16) */
	e.n = 0;
	put_u8(&e, 'D');
	put_u32(&e, 1);
	put_u8(&e, 'K');
	put_u16(&e, 0xffff);
	assert_int_equal(parse_exact(e.b, e.n), -1);
	e.n = 0;
	put_u8(&e, 'R');
	put_u32(&e, 1);
	put_str(&e, "");
	put_str(&e, "");
	put_u8(&e, 'd');
	put_u16(&e, 0x8000);
	assert_int_equal(parse_exact(e.b, e.n), -1);
}

static void
test_string_without_nul(void **state)
{
	struct enc e = { .n = 0 };

	(void)state;
	/* An Origin whose name runs to the end of the buffer. */
	build_origin(&e);
	assert_int_equal(parse_exact(e.b, e.n - 1), -1);
	/* A Relation whose name's NUL is past the end: the ncols word. */
	e.n = 0;
	put_u8(&e, 'R');
	put_u32(&e, 1);
	put_str(&e, "public");
	put_bytes(&e, "t", 1);
	assert_int_equal(parse_exact(e.b, e.n), -1);
	/* A Type with its name unterminated, a Message's prefix too. */
	e.n = 0;
	put_u8(&e, 'Y');
	put_u32(&e, 1);
	put_str(&e, "public");
	put_bytes(&e, "mood", 4);
	assert_int_equal(parse_exact(e.b, e.n), -1);
	e.n = 0;
	put_u8(&e, 'M');
	put_u8(&e, 0);
	put_u64(&e, 1);
	put_bytes(&e, "pfx", 3);
	assert_int_equal(parse_exact(e.b, e.n), -1);
}

static void
test_reuse_clears(void **state)
{
	struct enc e = { .n = 0 };

	(void)state;
	build_relation(&e);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	e.n = 0;
	build_update_key(&e);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.ncols, 0);
	assert_null(m.nspname);
	e.n = 0;
	build_insert(&e);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.old_kind, 0);
	assert_int_equal(m.oldtup.n, 0);
	e.n = 0;
	build_message(&e);
	assert_int_equal(pgo_parse(e.b, e.n, &m), 0);
	assert_int_equal(m.relid, 0);
	assert_int_equal(m.newtup.n, 0);
}

/* ---- captured from PostgreSQL 15 ----------------------------------------- */

/* Relation t (id bigint PK, name text, n int, m mood) */
static const uint8_t real_relation[] = {
	0x52, 0x00, 0x00, 0x40, 0x1f, 0x70, 0x75, 0x62, 0x6c, 0x69, 0x63,
	0x00, 0x74, 0x00, 0x64, 0x00, 0x04, 0x01, 0x69, 0x64, 0x00, 0x00,
	0x00, 0x00, 0x14, 0xff, 0xff, 0xff, 0xff, 0x00, 0x6e, 0x61, 0x6d,
	0x65, 0x00, 0x00, 0x00, 0x00, 0x19, 0xff, 0xff, 0xff, 0xff, 0x00,
	0x6e, 0x00, 0x00, 0x00, 0x00, 0x17, 0xff, 0xff, 0xff, 0xff, 0x00,
	0x6d, 0x00, 0x00, 0x00, 0x40, 0x19, 0xff, 0xff, 0xff, 0xff
};

/* UPDATE t SET id = 2 WHERE id = 1: the old key, then the new row. */
static const uint8_t real_update_key[] = {
	0x55, 0x00, 0x00, 0x40, 0x1f, 0x4b, 0x00, 0x04, 0x74, 0x00, 0x00,
	0x00, 0x01, 0x31, 0x6e, 0x6e, 0x6e, 0x4e, 0x00, 0x04, 0x74, 0x00,
	0x00, 0x00, 0x01, 0x32, 0x74, 0x00, 0x00, 0x00, 0x03, 0x75, 0x6e,
	0x6f, 0x74, 0x00, 0x00, 0x00, 0x02, 0x31, 0x30, 0x74, 0x00, 0x00,
	0x00, 0x02, 0x6f, 0x6b
};

/* An Update leaving a TOASTed column alone: 'u'. */
static const uint8_t real_update_toast[] = {
	0x55, 0x00, 0x00, 0x40, 0x33, 0x4e, 0x00, 0x03, 0x74, 0x00, 0x00,
	0x00, 0x01, 0x37, 0x74, 0x00, 0x00, 0x00, 0x01, 0x32, 0x75
};

/* A transaction replayed from origin 'upstream1' at AB/CDEF0123. */
static const uint8_t real_origin[] = {
	0x4f, 0x00, 0x00, 0x00, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x75, 0x70,
	0x73, 0x74, 0x72, 0x65, 0x61, 0x6d, 0x31, 0x00
};

/* TRUNCATE t, full_t RESTART IDENTITY */
static const uint8_t real_truncate[] = {
	0x54, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x40, 0x1f, 0x00,
	0x00, 0x40, 0x26
};

static void
test_real_messages(void **state)
{
	int64_t v;

	(void)state;
	assert_int_equal(parse_exact(real_relation, sizeof(real_relation)), 0);
	assert_int_equal(m.kind, 'R');
	assert_int_equal(m.relid, 16415);
	assert_int_equal(m.replident, 'd');
	assert_int_equal(m.ncols, 4);
	assert_int_equal(m.columns[0].flags, 1);
	assert_int_equal(m.columns[0].type_oid, 20);	/* int8 */
	assert_int_equal(m.columns[0].typmod, -1);
	assert_int_equal(m.columns[1].flags, 0);
	assert_int_equal(m.columns[1].type_oid, 25);	/* text */
	assert_int_equal(m.columns[2].type_oid, 23);	/* int4 */
	assert_int_equal(m.columns[3].type_oid, 16409);	/* mood */
	assert_int_equal(pgo_parse(real_relation, sizeof(real_relation), &m),
			 0);
	assert_string_equal(m.nspname, "public");
	assert_string_equal(m.relname, "t");
	assert_string_equal(m.columns[0].name, "id");
	assert_string_equal(m.columns[3].name, "m");

	assert_int_equal(pgo_parse(real_update_key, sizeof(real_update_key),
				   &m), 0);
	assert_int_equal(m.kind, 'U');
	assert_int_equal(m.old_kind, 'K');
	assert_int_equal(m.oldtup.n, 4);
	assert_value(&m.oldtup.cols[0], 't', "1");
	assert_value(&m.oldtup.cols[3], 'n', NULL);
	assert_int_equal(m.newtup.n, 4);
	assert_value(&m.newtup.cols[1], 't', "uno");
	assert_value(&m.newtup.cols[3], 't', "ok");
	assert_int_equal(pgo_value_int64(&m.oldtup.cols[0], &v), 0);
	assert_true(v == 1);
	assert_int_equal(pgo_value_int64(&m.newtup.cols[0], &v), 0);
	assert_true(v == 2);

	assert_int_equal(pgo_parse(real_update_toast, sizeof(real_update_toast),
				   &m), 0);
	assert_int_equal(m.old_kind, 0);
	assert_int_equal(m.newtup.n, 3);
	assert_value(&m.newtup.cols[2], 'u', NULL);

	assert_int_equal(pgo_parse(real_origin, sizeof(real_origin), &m), 0);
	assert_int_equal(m.kind, 'O');
	assert_true(m.origin_lsn == 0xABCDEF0123ull);
	assert_string_equal(m.origin, "upstream1");

	assert_int_equal(pgo_parse(real_truncate, sizeof(real_truncate), &m),
			 0);
	assert_int_equal(m.ntrunc, 2);
	assert_int_equal(m.trunc_options, 2);	/* RESTART IDENTITY */
	assert_int_equal(pgo_trunc_relid(&m, 0), 16415);
	assert_int_equal(pgo_trunc_relid(&m, 1), 16422);
}

/* ---- pgo_value_int64 ----------------------------------------------------- */

static int
int64_of(const char *s, int64_t *out)
{
	struct pgo_value v = { 't', (uint32_t)strlen(s),
			       (const uint8_t *)s };

	return pgo_value_int64(&v, out);
}

static void
test_value_int64(void **state)
{
	static const char *const bad[] = {
		"", "-", "12a", "a12", " 1", "1 ", "+1", "--1", "-0", "01",
		"00", "-01", "1.0", "1e3", "0x10",
		"9223372036854775808", "-9223372036854775809",
		"18446744073709551616", "99999999999999999999999",
	};
	struct pgo_value v;
	int64_t out;
	size_t i;

	(void)state;
	assert_int_equal(int64_of("0", &out), 0);
	assert_true(out == 0);
	assert_int_equal(int64_of("7", &out), 0);
	assert_true(out == 7);
	assert_int_equal(int64_of("-42", &out), 0);
	assert_true(out == -42);
	assert_int_equal(int64_of("9223372036854775807", &out), 0);
	assert_true(out == INT64_MAX);
	assert_int_equal(int64_of("-9223372036854775808", &out), 0);
	assert_true(out == INT64_MIN);
	assert_int_equal(int64_of("4294967295", &out), 0);	/* an oid */
	assert_true(out == INT64_C(4294967295));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		out = 99;
		if (int64_of(bad[i], &out) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_true(out == 99);
	}
	/* only the value's len bytes count: "12" out of "123" */
	v = (struct pgo_value){ 't', 2, (const uint8_t *)"123" };
	assert_int_equal(pgo_value_int64(&v, &out), 0);
	assert_true(out == 12);
	/* NULL, unchanged and binary are not text */
	v = (struct pgo_value){ 'n', 0, NULL };
	assert_int_equal(pgo_value_int64(&v, &out), -1);
	v = (struct pgo_value){ 'u', 0, NULL };
	assert_int_equal(pgo_value_int64(&v, &out), -1);
	v = (struct pgo_value){ 'b', 1, (const uint8_t *)"1" };
	assert_int_equal(pgo_value_int64(&v, &out), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_copy_xlogdata),
		cmocka_unit_test(test_copy_keepalive),
		cmocka_unit_test(test_copy_real),
		cmocka_unit_test(test_status_update),
		cmocka_unit_test(test_pg_time),
		cmocka_unit_test(test_lsn),
		cmocka_unit_test(test_begin_commit),
		cmocka_unit_test(test_origin_type),
		cmocka_unit_test(test_relation),
		cmocka_unit_test(test_insert),
		cmocka_unit_test(test_update),
		cmocka_unit_test(test_delete),
		cmocka_unit_test(test_truncate),
		cmocka_unit_test(test_message),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_trailing_bytes),
		cmocka_unit_test(test_unknown_kinds),
		cmocka_unit_test(test_bad_tuple_kind),
		cmocka_unit_test(test_counts_over_max),
		cmocka_unit_test(test_string_without_nul),
		cmocka_unit_test(test_reuse_clears),
		cmocka_unit_test(test_real_messages),
		cmocka_unit_test(test_value_int64),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
