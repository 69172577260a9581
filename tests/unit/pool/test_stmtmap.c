/*
 * test_stmtmap.c - the per-client statement map and the per-backend set
 * of prepared statement hashes (pool/stmtmap.h).  The name_set cases use
 * hashes that share their low bits, so probe runs, wrap-around and
 * deletion inside a run are exercised on purpose rather than by luck.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "pool/stmtmap.h"

/* A Parse body after the name: query, nparams = 1, oid 23. */
static size_t
make_rest(uint8_t *out, const char *query)
{
	size_t ql = strlen(query) + 1;

	memcpy(out, query, ql);
	memcpy(out + ql, "\0\1\0\0\0\x17", 6);
	return ql + 6;
}

/* ---- stmt_map ----------------------------------------------------------- */

static void
test_map_empty(void **state)
{
	struct stmt_map m;

	(void)state;
	stmt_map_init(&m);
	/* Lookups and deletes on a never-used map touch no memory. */
	assert_null(stmt_map_get(&m, "x"));
	stmt_map_del(&m, "x");
	stmt_map_clear(&m);
	assert_int_equal(m.count, 0);
	stmt_map_free(&m);
}

static void
test_map_add_get_del(void **state)
{
	struct stmt_map m;
	struct pstmt *p, *q;
	uint8_t rest[64];
	size_t rl;

	(void)state;
	stmt_map_init(&m);
	rl = make_rest(rest, "SELECT $1");
	p = stmt_map_add(&m, "s1", rest, rl);
	assert_non_null(p);
	assert_string_equal(p->name, "s1");
	assert_int_equal(p->rest_len, rl);
	assert_memory_equal(p->parse_rest, rest, rl);
	assert_ptr_not_equal(p->parse_rest, rest);	/* a copy */
	assert_string_equal(p->query, "SELECT $1");
	assert_int_equal(p->hash, XXH3_64bits(rest, rl));
	assert_int_equal(m.count, 1);
	memset(rest, 0, sizeof(rest));
	assert_string_equal(p->query, "SELECT $1");

	assert_ptr_equal(stmt_map_get(&m, "s1"), p);
	assert_null(stmt_map_get(&m, "s2"));
	assert_null(stmt_map_get(&m, "S1"));

	/* Same text under another name: same server statement. */
	rl = make_rest(rest, "SELECT $1");
	q = stmt_map_add(&m, "s2", rest, rl);
	assert_non_null(q);
	assert_int_equal(q->hash, p->hash);
	/* The parameter types are part of the hash. */
	rest[rl - 1] = 25;
	q = stmt_map_add(&m, "s3", rest, rl);
	assert_non_null(q);
	assert_int_not_equal(q->hash, p->hash);

	stmt_map_del(&m, "s1");
	assert_null(stmt_map_get(&m, "s1"));
	assert_non_null(stmt_map_get(&m, "s2"));
	assert_int_equal(m.count, 2);
	stmt_map_del(&m, "s1");		/* absent: a no-op */
	assert_int_equal(m.count, 2);
	stmt_map_free(&m);
	assert_null(m.slots);
	assert_int_equal(m.count, 0);
}

static void
test_map_empty_name_and_rest(void **state)
{
	struct stmt_map m;
	struct pstmt *p;

	(void)state;
	stmt_map_init(&m);
	/* The unnamed statement and a zero-length rest are legal keys. */
	p = stmt_map_add(&m, "", (const uint8_t *)"", 0);
	assert_non_null(p);
	assert_int_equal(p->rest_len, 0);
	assert_int_equal(p->hash, XXH3_64bits("", 0));
	assert_ptr_equal(stmt_map_get(&m, ""), p);
	stmt_map_free(&m);
}

static void
test_map_growth(void **state)
{
	enum { N = 2000 };
	struct stmt_map m;
	struct pstmt *p;
	char name[32], query[64];
	uint8_t rest[96];
	size_t i, rl;

	(void)state;
	stmt_map_init(&m);
	for (i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "stmt_%zu", i);
		snprintf(query, sizeof(query), "SELECT %zu", i);
		rl = make_rest(rest, query);
		assert_non_null(stmt_map_add(&m, name, rest, rl));
		assert_int_equal(m.count, i + 1);
		/* The table grows and stays a power of two. */
		assert_true(m.nslots >= m.count);
		assert_int_equal(m.nslots & (m.nslots - 1), 0);
	}
	for (i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "stmt_%zu", i);
		snprintf(query, sizeof(query), "SELECT %zu", i);
		p = stmt_map_get(&m, name);
		assert_non_null(p);
		assert_string_equal(p->query, query);
	}
	for (i = 0; i < N; i += 2) {
		snprintf(name, sizeof(name), "stmt_%zu", i);
		stmt_map_del(&m, name);
	}
	assert_int_equal(m.count, N / 2);
	for (i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "stmt_%zu", i);
		if (i % 2)
			assert_non_null(stmt_map_get(&m, name));
		else
			assert_null(stmt_map_get(&m, name));
	}
	stmt_map_clear(&m);
	assert_int_equal(m.count, 0);
	snprintf(name, sizeof(name), "stmt_%d", 1);
	assert_null(stmt_map_get(&m, name));
	/* Still usable after clear. */
	rl = make_rest(rest, "SELECT 1");
	assert_non_null(stmt_map_add(&m, "again", rest, rl));
	assert_non_null(stmt_map_get(&m, "again"));
	stmt_map_free(&m);
}

static void
test_server_name(void **state)
{
	char out[STMT_SERVER_NAME_LEN];

	(void)state;
	stmt_server_name(0, out);
	assert_string_equal(out, "_pgv_0000000000000000");
	stmt_server_name(0xdeadbeefull, out);
	assert_string_equal(out, "_pgv_00000000deadbeef");
	stmt_server_name(UINT64_MAX, out);
	assert_string_equal(out, "_pgv_ffffffffffffffff");
	assert_int_equal(strlen(out), STMT_SERVER_NAME_LEN - 1);
}

/* ---- name_set ----------------------------------------------------------- */

/* Hashes with identical low 32 bits all start probing at one slot. */
#define COLLIDE(k, low) (((uint64_t)(k) << 32) | (uint64_t)(low))

static void
test_set_basic(void **state)
{
	struct name_set s;

	(void)state;
	name_set_init(&s);
	assert_false(name_set_has(&s, 42));
	name_set_del(&s, 42);		/* empty: a no-op */
	assert_int_equal(name_set_add(&s, 42), 0);
	assert_true(name_set_has(&s, 42));
	assert_false(name_set_has(&s, 43));
	assert_int_equal(name_set_add(&s, 42), 0);	/* duplicate */
	assert_int_equal(s.count, 1);
	name_set_del(&s, 42);
	assert_false(name_set_has(&s, 42));
	assert_int_equal(s.count, 0);
	name_set_free(&s);
}

static void
test_set_zero_hash(void **state)
{
	struct name_set s;

	(void)state;
	/* 0 marks an empty slot, so it is stored as 1 (and aliases it). */
	name_set_init(&s);
	assert_int_equal(name_set_add(&s, 0), 0);
	assert_true(name_set_has(&s, 0));
	assert_true(name_set_has(&s, 1));
	assert_int_equal(s.count, 1);
	name_set_del(&s, 0);
	assert_false(name_set_has(&s, 0));
	assert_int_equal(s.count, 0);
	name_set_free(&s);
}

static void
test_set_collisions(void **state)
{
	enum { N = 20 };
	struct name_set s;
	size_t k;

	(void)state;
	name_set_init(&s);
	for (k = 1; k <= N; k++)
		assert_int_equal(name_set_add(&s, COLLIDE(k, 7)), 0);
	assert_int_equal(s.count, N);
	for (k = 1; k <= N; k++)
		assert_true(name_set_has(&s, COLLIDE(k, 7)));
	assert_false(name_set_has(&s, COLLIDE(N + 1, 7)));

	/* Delete from the front, the middle and the end of the run. */
	name_set_del(&s, COLLIDE(1, 7));
	name_set_del(&s, COLLIDE(10, 7));
	name_set_del(&s, COLLIDE(N, 7));
	assert_int_equal(s.count, N - 3);
	for (k = 1; k <= N; k++) {
		bool gone = k == 1 || k == 10 || k == N;

		assert_int_equal(name_set_has(&s, COLLIDE(k, 7)), !gone);
	}
	/* Re-adding reuses the freed slots without duplicates. */
	assert_int_equal(name_set_add(&s, COLLIDE(10, 7)), 0);
	assert_int_equal(name_set_add(&s, COLLIDE(10, 7)), 0);
	assert_int_equal(s.count, N - 2);
	assert_true(name_set_has(&s, COLLIDE(10, 7)));
	name_set_free(&s);
}

static void
test_set_wraparound(void **state)
{
	struct name_set s;
	size_t k, cap;

	(void)state;
	name_set_init(&s);
	assert_int_equal(name_set_add(&s, 1), 0);
	cap = s.cap;
	assert_true(cap >= 16);
	/*
	 * A run starting at the last slot wraps to slot 0, and interleaves
	 * with a run that starts at slot 1 (hash 1 above).
	 */
	for (k = 1; k <= 5; k++)
		assert_int_equal(name_set_add(&s, COLLIDE(k, cap - 1)), 0);
	for (k = 1; k <= 3; k++)
		assert_int_equal(name_set_add(&s, COLLIDE(k, 0)), 0);
	assert_int_equal(s.cap, cap);	/* no growth hid the wrap */
	name_set_del(&s, COLLIDE(1, cap - 1));
	name_set_del(&s, 1);
	for (k = 2; k <= 5; k++)
		assert_true(name_set_has(&s, COLLIDE(k, cap - 1)));
	for (k = 1; k <= 3; k++)
		assert_true(name_set_has(&s, COLLIDE(k, 0)));
	assert_false(name_set_has(&s, 1));
	assert_false(name_set_has(&s, COLLIDE(1, cap - 1)));
	assert_int_equal(s.count, 7);
	name_set_free(&s);
}

static void
test_set_growth_and_clear(void **state)
{
	enum { N = 5000 };
	struct name_set s;
	uint64_t h;
	size_t i;

	(void)state;
	name_set_init(&s);
	for (i = 0; i < N; i++) {
		/* Half collide on the low bits, half are spread out. */
		h = i % 2 ? COLLIDE(i, 3) : XXH3_64bits(&i, sizeof(i));
		assert_int_equal(name_set_add(&s, h), 0);
		assert_true(s.count * 2 <= s.cap);	/* load stays <= 1/2 */
	}
	assert_int_equal(s.count, N);
	for (i = 0; i < N; i++) {
		h = i % 2 ? COLLIDE(i, 3) : XXH3_64bits(&i, sizeof(i));
		assert_true(name_set_has(&s, h));
	}
	for (i = 0; i < N; i += 3) {
		h = i % 2 ? COLLIDE(i, 3) : XXH3_64bits(&i, sizeof(i));
		name_set_del(&s, h);
	}
	for (i = 0; i < N; i++) {
		h = i % 2 ? COLLIDE(i, 3) : XXH3_64bits(&i, sizeof(i));
		assert_int_equal(name_set_has(&s, h), i % 3 != 0);
	}
	name_set_clear(&s);
	assert_int_equal(s.count, 0);
	assert_true(s.cap > 0);		/* storage kept for reuse */
	for (i = 0; i < N; i++) {
		h = i % 2 ? COLLIDE(i, 3) : XXH3_64bits(&i, sizeof(i));
		assert_false(name_set_has(&s, h));
	}
	assert_int_equal(name_set_add(&s, 99), 0);
	assert_true(name_set_has(&s, 99));
	name_set_free(&s);
	assert_null(s.v);
	assert_false(name_set_has(&s, 99));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_map_empty),
		cmocka_unit_test(test_map_add_get_del),
		cmocka_unit_test(test_map_empty_name_and_rest),
		cmocka_unit_test(test_map_growth),
		cmocka_unit_test(test_server_name),
		cmocka_unit_test(test_set_basic),
		cmocka_unit_test(test_set_zero_hash),
		cmocka_unit_test(test_set_collisions),
		cmocka_unit_test(test_set_wraparound),
		cmocka_unit_test(test_set_growth_and_clear),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
