/*
 * test_scram.c - SCRAM-SHA-256 client and server: RFC 7677 vectors, a
 * secret made by PostgreSQL 15, round trips and malformed input.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/scram.h"

/* RFC 7677 section 3. */
#define RFC_NONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_NONCE
#define RFC_SERVER_FIRST \
	"r=" RFC_NONCE RFC_SNONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define RFC_CLIENT_FINAL \
	"c=biws,r=" RFC_NONCE RFC_SNONCE \
	",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
/* RFC 7677 and ongres/scram; recomputed with Python hashlib/hmac. */
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/* SELECT rolpassword FROM pg_authid, after CREATE ROLE u PASSWORD 'secret'
 * on PostgreSQL 15. */
#define PG_SECRET                                                     \
	"SCRAM-SHA-256$4096:+DDYQ0OXovCdH0Mg9MuvGA==$"                \
	"RGym+parPaufoAsj+b8t7RrIC72V6SlVlmfemCmOkT0=:"               \
	"NKXKoxtTV9wplMKFJwB+DD6nI/lSwYnRuLvu0n+eBnA="

/* Python hashlib/hmac for "secret", salt 01..10, 4096 iterations. */
#define PY_SALT "AQIDBAUGBwgJCgsMDQ4PEA=="
#define PY_STORED "8rrDg00OqaiWXJ7p+sCgHEIaBSHY89ZJl3mfIsf32oY="
#define PY_SERVER "05L1f+yZbiN8O0AnO40Og85NNRhvzTS57naKRWCcsIA="
#define PY_SECRET \
	"SCRAM-SHA-256$4096:" PY_SALT "$" PY_STORED ":" PY_SERVER

/* Low iteration count keeps the many round trips fast. */
#define FAST_ITER 64

static const uint8_t rfc_salt[] = { 0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12,
				    0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14,
				    0x12, 0x36, 0xfa, 0x81 };

static void
make_secret(const char *password, int iter, struct scram_secret *sec)
{
	assert_int_equal(scram_secret_from_password(password, iter, sec), 0);
}

/*
 * Run a whole exchange between 'c' (already initialised) and a server
 * holding 'sec'.  Returns scram_server_final's result; on success also
 * checks that the client accepts the server's signature.
 */
static int
exchange(struct scram_client *c, const struct scram_secret *sec,
	 struct scram_server *s)
{
	char m1[SCRAM_MAX_MESSAGE], m2[SCRAM_MAX_MESSAGE + 200];
	char m3[SCRAM_MAX_MESSAGE + 200], m4[128], err[256];
	int n1, n2, n3, n4;

	scram_server_init(s, sec);
	n1 = scram_client_first(c, m1, sizeof(m1));
	assert_true(n1 > 0);
	assert_int_equal((size_t)n1, strlen(m1));
	n2 = scram_server_first(s, m1, (size_t)n1, m2, sizeof(m2), err,
				sizeof(err));
	assert_true(n2 > 0);
	n3 = scram_client_final(c, m2, (size_t)n2, m3, sizeof(m3), err,
				sizeof(err));
	if (n3 < 0)
		return -1;
	n4 = scram_server_final(s, m3, (size_t)n3, m4, sizeof(m4), err,
				sizeof(err));
	if (n4 < 0)
		return n4;
	assert_int_equal(scram_client_verify(c, m4, (size_t)n4, err,
					     sizeof(err)),
			 0);
	return 0;
}

static void
test_rfc7677_client(void **state)
{
	struct scram_client c;
	char out[256], err[128];
	int n;

	(void)state;
	assert_int_equal(scram_client_init(&c, "pencil"), 0);
	assert_int_equal(scram_client_set_nonce(&c, "user", RFC_NONCE), 0);
	n = scram_client_first(&c, out, sizeof(out));
	assert_int_equal(n, (int)strlen(RFC_CLIENT_FIRST));
	assert_string_equal(out, RFC_CLIENT_FIRST);

	n = scram_client_final(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST),
			       out, sizeof(out), err, sizeof(err));
	assert_int_equal(n, (int)strlen(RFC_CLIENT_FINAL));
	assert_string_equal(out, RFC_CLIENT_FINAL);
	assert_int_equal(scram_client_verify(&c, RFC_SERVER_FINAL,
					     strlen(RFC_SERVER_FINAL), err,
					     sizeof(err)),
			 0);
	scram_client_clear(&c);
}

static void
test_rfc7677_server(void **state)
{
	struct scram_secret sec;
	struct scram_server s;
	const char *cf = RFC_CLIENT_FIRST;
	char out[256], err[128];
	int n;

	(void)state;
	assert_int_equal(scram_secret_from_password_salt("pencil", 4096,
							 rfc_salt,
							 sizeof(rfc_salt),
							 &sec),
			 0);
	scram_server_init(&s, &sec);
	assert_int_equal(scram_server_set_nonce(&s, RFC_SNONCE), 0);
	n = scram_server_first(&s, cf, strlen(cf), out, sizeof(out), err,
			       sizeof(err));
	assert_int_equal(n, (int)strlen(RFC_SERVER_FIRST));
	assert_string_equal(out, RFC_SERVER_FIRST);
	n = scram_server_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL),
			       out, sizeof(out), err, sizeof(err));
	assert_int_equal(n, (int)strlen(RFC_SERVER_FINAL));
	assert_string_equal(out, RFC_SERVER_FINAL);
	assert_non_null(scram_server_client_key(&s));
	scram_server_clear(&s);
}

/* The client rejects a server that answers with the wrong signature. */
static void
test_rfc7677_bad_server_signature(void **state)
{
	static const char bad[] =
		"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
	struct scram_client c;
	char out[256], err[128];

	(void)state;
	assert_int_equal(scram_client_init(&c, "pencil"), 0);
	assert_int_equal(scram_client_set_nonce(&c, "user", RFC_NONCE), 0);
	assert_true(scram_client_first(&c, out, sizeof(out)) > 0);
	assert_true(scram_client_final(&c, RFC_SERVER_FIRST,
				       strlen(RFC_SERVER_FIRST), out,
				       sizeof(out), err, sizeof(err)) > 0);
	assert_int_equal(scram_client_verify(&c, bad, strlen(bad), err,
					     sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "signature"));
}

static void
test_server_error_reported(void **state)
{
	static const char e[] = "e=invalid-proof\x01";
	struct scram_client c;
	char out[256], err[128];

	(void)state;
	assert_int_equal(scram_client_init(&c, "pencil"), 0);
	assert_int_equal(scram_client_set_nonce(&c, "user", RFC_NONCE), 0);
	assert_true(scram_client_first(&c, out, sizeof(out)) > 0);
	assert_true(scram_client_final(&c, RFC_SERVER_FIRST,
				       strlen(RFC_SERVER_FIRST), out,
				       sizeof(out), err, sizeof(err)) > 0);
	assert_int_equal(scram_client_verify(&c, e, strlen(e), err,
					     sizeof(err)),
			 -1);
	assert_string_equal(err, "SCRAM server error: invalid-proof?");
}

static void
test_round_trip(void **state)
{
	struct scram_secret sec;
	struct scram_client c;
	struct scram_server s;

	(void)state;
	make_secret("correct horse", FAST_ITER, &sec);
	assert_int_equal(scram_client_init(&c, "correct horse"), 0);
	assert_int_equal(exchange(&c, &sec, &s), 0);
	assert_non_null(scram_server_client_key(&s));

	assert_int_equal(scram_client_init(&c, "wrong horse"), 0);
	assert_int_equal(exchange(&c, &sec, &s), SCRAM_BAD_PASSWORD);
	assert_null(scram_server_client_key(&s));

	make_secret("", FAST_ITER, &sec);
	assert_int_equal(scram_client_init(&c, ""), 0);
	assert_int_equal(exchange(&c, &sec, &s), 0);
	scram_client_clear(&c);
	scram_server_clear(&s);
}

/* A secret PostgreSQL itself wrote authenticates "secret" only. */
static void
test_pg_secret(void **state)
{
	struct scram_secret sec, py;
	struct scram_client c;
	struct scram_server s;
	char text[SCRAM_SECRET_TEXT_MAX];
	int n;

	(void)state;
	assert_int_equal(scram_secret_parse(PG_SECRET, &sec), 0);
	assert_int_equal(sec.iterations, 4096);
	assert_int_equal(sec.salt_len, 16);
	n = scram_secret_format(&sec, text, sizeof(text));
	assert_int_equal(n, (int)strlen(PG_SECRET));
	assert_string_equal(text, PG_SECRET);

	assert_int_equal(scram_client_init(&c, "secret"), 0);
	assert_int_equal(exchange(&c, &sec, &s), 0);
	assert_int_equal(scram_client_init(&c, "Secret"), 0);
	assert_int_equal(exchange(&c, &sec, &s), SCRAM_BAD_PASSWORD);

	/* Same derivation as an independent implementation. */
	assert_int_equal(scram_secret_parse(PY_SECRET, &py), 0);
	assert_int_equal(scram_secret_from_password_salt("secret", 4096,
							 py.salt, py.salt_len,
							 &sec),
			 0);
	assert_int_equal(scram_secret_format(&sec, text, sizeof(text)),
			 (int)strlen(PY_SECRET));
	assert_string_equal(text, PY_SECRET);
}

static void
test_secret_generate(void **state)
{
	struct scram_secret a, b, parsed;
	char text[SCRAM_SECRET_TEXT_MAX];

	(void)state;
	make_secret("pw", FAST_ITER, &a);
	make_secret("pw", FAST_ITER, &b);
	assert_int_equal(a.salt_len, 16);
	assert_memory_not_equal(a.salt, b.salt, 16);
	assert_true(scram_secret_format(&a, text, sizeof(text)) > 0);
	assert_int_equal(scram_secret_parse(text, &parsed), 0);
	assert_int_equal(parsed.iterations, FAST_ITER);
	assert_memory_equal(parsed.salt, a.salt, 16);
	assert_memory_equal(parsed.stored_key, a.stored_key, SCRAM_KEY_LEN);
	assert_memory_equal(parsed.server_key, a.server_key, SCRAM_KEY_LEN);
	assert_int_equal(scram_secret_format(&a, text, 20), -1);

	assert_int_equal(scram_secret_from_password("pw", 0, &a), -1);
	assert_int_equal(scram_secret_from_password("pw", 1000001, &a), -1);
}

static void
test_secret_parse_malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"SCRAM-SHA-256$",
		"SCRAM-SHA-1$4096:" PY_SALT "$" PY_STORED ":" PY_SERVER,
		/* iterations: zero, too many, sign, empty */
		"SCRAM-SHA-256$0:" PY_SALT "$" PY_STORED ":" PY_SERVER,
		"SCRAM-SHA-256$1000001:" PY_SALT "$" PY_STORED ":" PY_SERVER,
		"SCRAM-SHA-256$+4096:" PY_SALT "$" PY_STORED ":" PY_SERVER,
		"SCRAM-SHA-256$:" PY_SALT "$" PY_STORED ":" PY_SERVER,
		/* bad base64 in the salt; empty salt */
		"SCRAM-SHA-256$4096:AQIDBAUG*wgJCgsMDQ4PEA==$" PY_STORED
		":" PY_SERVER,
		"SCRAM-SHA-256$4096:$" PY_STORED ":" PY_SERVER,
		/* keys of the wrong length, missing padding, trailing junk */
		"SCRAM-SHA-256$4096:" PY_SALT
		"$8rrDg00OqaiWXJ7p+sCgHEIaBSHY89ZJl3mfIsf3:" PY_SERVER,
		"SCRAM-SHA-256$4096:" PY_SALT
		"$8rrDg00OqaiWXJ7p+sCgHEIaBSHY89ZJl3mfIsf32oY:" PY_SERVER,
		"SCRAM-SHA-256$4096:" PY_SALT "$" PY_STORED ":" PY_SERVER " ",
		"SCRAM-SHA-256$4096:" PY_SALT "$" PY_STORED ":" PY_SERVER ":x",
		"SCRAM-SHA-256$4096:" PY_SALT "$" PY_STORED,
		"md5e55f71fef883ee8efa627b60ba1e4c26",
	};
	struct scram_secret sec;
	size_t i;

	(void)state;
	assert_int_equal(scram_secret_parse(PY_SECRET, &sec), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (scram_secret_parse(bad[i], &sec) != -1)
			fail_msg("accepted bad secret %zu: %s", i, bad[i]);
	}
	assert_int_equal(scram_secret_parse(NULL, &sec), -1);
}

/* The PgBouncer trick: the key a client proved logs us in upstream. */
static void
test_client_key_reuse(void **state)
{
	struct scram_secret sec, other;
	struct scram_client c;
	struct scram_server s, up;
	uint8_t key[SCRAM_KEY_LEN];
	char m1[128], m2[512], err[256];
	int n;

	(void)state;
	make_secret("hunter2", FAST_ITER, &sec);
	assert_int_equal(scram_client_init(&c, "hunter2"), 0);
	assert_int_equal(exchange(&c, &sec, &s), 0);
	memcpy(key, scram_server_client_key(&s), SCRAM_KEY_LEN);

	assert_int_equal(scram_client_init_keys(&c, key, sec.server_key), 0);
	assert_int_equal(exchange(&c, &sec, &up), 0);
	assert_int_equal(scram_client_init_secret(&c, key, &sec), 0);
	assert_int_equal(exchange(&c, &sec, &up), 0);

	/* Upstream re-hashed the same password with another salt. */
	make_secret("hunter2", FAST_ITER, &other);
	assert_int_equal(scram_client_init_keys(&c, key, sec.server_key), 0);
	assert_int_equal(exchange(&c, &other, &up), SCRAM_BAD_PASSWORD);
	assert_int_equal(scram_client_init_secret(&c, key, &sec), 0);
	scram_server_init(&up, &other);
	n = scram_client_first(&c, m1, sizeof(m1));
	n = scram_server_first(&up, m1, (size_t)n, m2, sizeof(m2), err,
			       sizeof(err));
	assert_true(n > 0);
	assert_int_equal(scram_client_final(&c, m2, (size_t)n, m1, sizeof(m1),
					    err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "secret differs"));
}

/* Feed 'msg' to a fresh client after its first message; expect -1. */
static void
expect_client_final_fails(const char *msg)
{
	struct scram_client c;
	char out[512], err[128];
	char *copy;
	size_t len = strlen(msg);

	assert_int_equal(scram_client_init(&c, "pencil"), 0);
	assert_int_equal(scram_client_set_nonce(&c, "", RFC_NONCE), 0);
	assert_true(scram_client_first(&c, out, sizeof(out)) > 0);
	/* An exact-size heap copy lets ASan catch any read past 'len'. */
	copy = malloc(len ? len : 1);
	assert_non_null(copy);
	memcpy(copy, msg, len);
	err[0] = '\0';
	if (scram_client_final(&c, copy, len, out, sizeof(out), err,
			       sizeof(err)) != -1)
		fail_msg("client accepted server-first: %s", msg);
	assert_true(err[0] != '\0');
	free(copy);
}

static void
test_client_malformed_server_first(void **state)
{
	static const char *const bad[] = {
		"",
		"r=",
		"r=" RFC_NONCE,
		"r=" RFC_NONCE "x",
		"r=" RFC_NONCE "x,s=W22ZaJ0SNY7soEsUEjb6gQ==",
		"r=" RFC_NONCE "x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=",
		"r=" RFC_NONCE "x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
		"r=" RFC_NONCE "x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
		"r=" RFC_NONCE "x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000001",
		"r=" RFC_NONCE "x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999",
		"r=" RFC_NONCE "x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,",
		"r=" RFC_NONCE "x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,x=1",
		"r=" RFC_NONCE "x,s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096",
		"r=" RFC_NONCE "x,s=W22ZaJ0S NY7soEsUEjb6gQ==,i=4096",
		"r=" RFC_NONCE "x,s=,i=4096",
		"r=" RFC_NONCE "x,i=4096,s=W22ZaJ0SNY7soEsUEjb6gQ==",
		"r=rOprNGfwEbeRWgbNEkqX%hvY,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"r=rOprNGfwEbeRWgb,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"r=" RFC_NONCE "\x7f,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"m=ext,r=" RFC_NONCE "x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"e=other-error",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_client_final_fails(bad[i]);
}

/* Every prefix of a valid message is malformed and must not overread. */
static void
test_truncated_messages(void **state)
{
	struct scram_client c;
	struct scram_server s;
	struct scram_secret sec;
	char out[512], err[128], *copy;
	const char *cf = RFC_CLIENT_FIRST;
	size_t len;

	(void)state;
	/* Prefixes up to ",i=" (later ones are valid counts like "i=40"). */
	for (len = 0; len < strlen(RFC_SERVER_FIRST) - 3; len++) {
		char tmp[sizeof(RFC_SERVER_FIRST)];

		memcpy(tmp, RFC_SERVER_FIRST, len);
		tmp[len] = '\0';
		expect_client_final_fails(tmp);
	}
	assert_int_equal(scram_secret_from_password_salt("pencil", FAST_ITER,
							 rfc_salt,
							 sizeof(rfc_salt),
							 &sec),
			 0);
	for (len = 0; len < strlen(cf); len++) {
		scram_server_init(&s, &sec);
		copy = malloc(len ? len : 1);
		memcpy(copy, cf, len);
		/* "n,,n=user,r=r" etc. are valid; only shorter ones fail. */
		if (len < strlen("n,,n=user,r=r"))
			assert_int_equal(scram_server_first(&s, copy, len, out,
							    sizeof(out), err,
							    sizeof(err)),
					 -1);
		free(copy);
	}
	for (len = 0; len < strlen(RFC_CLIENT_FINAL); len++) {
		scram_server_init(&s, &sec);
		assert_int_equal(scram_server_set_nonce(&s, RFC_SNONCE), 0);
		assert_true(scram_server_first(&s, cf, strlen(cf), out,
					       sizeof(out), err,
					       sizeof(err)) > 0);
		copy = malloc(len ? len : 1);
		memcpy(copy, RFC_CLIENT_FINAL, len);
		assert_int_equal(scram_server_final(&s, copy, len, out,
						    sizeof(out), err,
						    sizeof(err)),
				 -1);
		free(copy);
	}
	(void)c;
}

static void
test_server_malformed_client_first(void **state)
{
	static const char *const bad[] = {
		"p=tls-server-end-point,,n=,r=abc",
		"n,a=admin,n=,r=abc",
		"x,,n=,r=abc",
		"n,,m=x,n=,r=abc",
		"n,,n=,r=",
		"n,,r=abc",
		"n,,n=,r=abc,",
		"n,,n=,r=abc,1=x",
		"n,,n=,r=ab c",
		"n,n=,r=abc",
		"n,,n=,x=abc",
		"n,,n=,r=a\0bc",
	};
	struct scram_secret sec;
	struct scram_server s;
	char out[512], err[128];
	size_t i, len;

	(void)state;
	make_secret("pw", FAST_ITER, &sec);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		len = i == sizeof(bad) / sizeof(bad[0]) - 1 ? 12
							     : strlen(bad[i]);
		scram_server_init(&s, &sec);
		err[0] = '\0';
		if (scram_server_first(&s, bad[i], len, out, sizeof(out), err,
				       sizeof(err)) != -1)
			fail_msg("server accepted client-first %zu", i);
		assert_true(err[0] != '\0');
	}
	scram_server_init(&s, &sec);
	assert_int_equal(scram_server_first(&s, bad[0], strlen(bad[0]), out,
					    sizeof(out), err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "channel binding"));

	/* Extensions after the nonce and a 'y' flag are fine. */
	scram_server_init(&s, &sec);
	assert_true(scram_server_first(&s, "y,,n=bob,r=abc,x=1", 18, out,
				       sizeof(out), err, sizeof(err)) > 0);
	assert_int_equal(strncmp(out, "r=abc", 5), 0);

	/* Over-long input is refused before anything is copied. */
	{
		char *big = malloc(SCRAM_MAX_MESSAGE + 1);

		memcpy(big, "n,,n=,r=", 8);
		memset(big + 8, 'a', SCRAM_MAX_MESSAGE + 1 - 8);
		scram_server_init(&s, &sec);
		assert_int_equal(scram_server_first(&s, big,
						    SCRAM_MAX_MESSAGE + 1,
						    out, sizeof(out), err,
						    sizeof(err)),
				 -1);
		free(big);
	}
}

/* Run the server against the RFC client-first, then 'final'; expect rc. */
static void
expect_server_final(const char *cf, const char *final, int want)
{
	struct scram_secret sec;
	struct scram_server s;
	char out[512], err[128];
	char *copy;
	size_t len = strlen(final);
	int rc;

	assert_int_equal(scram_secret_from_password_salt("pencil", 4096,
							 rfc_salt,
							 sizeof(rfc_salt),
							 &sec),
			 0);
	scram_server_init(&s, &sec);
	assert_int_equal(scram_server_set_nonce(&s, RFC_SNONCE), 0);
	assert_true(scram_server_first(&s, cf, strlen(cf), out, sizeof(out),
				       err, sizeof(err)) > 0);
	copy = malloc(len ? len : 1);
	memcpy(copy, final, len);
	rc = scram_server_final(&s, copy, len, out, sizeof(out), err,
				sizeof(err));
	free(copy);
	if (rc != want)
		fail_msg("client-final %s: got %d, want %d (%s)", final, rc,
			 want, err);
	if (want < 0)
		assert_null(scram_server_client_key(&s));
	else
		assert_non_null(scram_server_client_key(&s));
}

#define R_ "r=" RFC_NONCE RFC_SNONCE
#define P_ "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="

static void
test_server_malformed_client_final(void **state)
{
	static const char *const bad[] = {
		"c=eSws," R_ "," P_,	/* echo of a gs2 header not sent */
		"c=biwx," R_ "," P_,
		"c=," R_ "," P_,
		/* the nonce without the server's part */
		"c=biws,r=" RFC_NONCE "," P_,
		"c=biws," R_ "x," P_,
		"c=biws," R_,
		"c=biws," R_ ",",
		"c=biws," R_ ",p=",
		"c=biws," R_ ",p=!!!!",
		"c=biws," R_ ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndV==",
		"c=biws," R_ ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ",
		"c=biws," R_ "," P_ ",",
		"c=biws," R_ "," P_ ",x=1",
		R_ ",c=biws," P_,
		"c=biws," P_ "," R_,
		"c=biws," R_ ",1=2," P_,
	};
	size_t i;

	(void)state;
	/* Control: the RFC message itself, and with an extension. */
	expect_server_final(RFC_CLIENT_FIRST, RFC_CLIENT_FINAL,
			    (int)strlen(RFC_SERVER_FINAL));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_server_final(RFC_CLIENT_FIRST, bad[i], -1);
	/* The 'y' flag must be echoed as "eSws", and the proof changes. */
	expect_server_final("y,,n=user,r=" RFC_NONCE, RFC_CLIENT_FINAL, -1);
	/* A well-formed but wrong proof is a wrong password. */
	expect_server_final(RFC_CLIENT_FIRST,
			    "c=biws," R_
			    ",p=dHzcZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
			    SCRAM_BAD_PASSWORD);
	/* An extension changes the AuthMessage, so the RFC proof fails. */
	expect_server_final(RFC_CLIENT_FIRST, "c=biws," R_ ",x=1," P_,
			    SCRAM_BAD_PASSWORD);
}

static void
test_out_of_order_and_small_buffers(void **state)
{
	struct scram_secret sec;
	struct scram_client c;
	struct scram_server s;
	char out[512], err[128];

	(void)state;
	assert_int_equal(scram_client_init(&c, "pencil"), 0);
	assert_int_equal(scram_client_final(&c, RFC_SERVER_FIRST,
					    strlen(RFC_SERVER_FIRST), out,
					    sizeof(out), err, sizeof(err)),
			 -1);
	assert_int_equal(scram_client_verify(&c, RFC_SERVER_FINAL,
					     strlen(RFC_SERVER_FINAL), err,
					     sizeof(err)),
			 -1);
	assert_int_equal(scram_client_first(&c, out, 10), -1);
	assert_true(scram_client_first(&c, out, sizeof(out)) > 0);
	assert_int_equal(scram_client_first(&c, out, sizeof(out)), -1);
	assert_int_equal(scram_client_set_nonce(&c, "", "abc"), -1);

	assert_int_equal(scram_client_init(&c, "pencil"), 0);
	assert_int_equal(scram_client_set_nonce(&c, "a,b", "abc"), -1);
	assert_int_equal(scram_client_set_nonce(&c, "", "a,c"), -1);
	assert_int_equal(scram_client_set_nonce(&c, "", ""), -1);
	assert_int_equal(scram_client_set_nonce(&c, "user", RFC_NONCE), 0);
	assert_true(scram_client_first(&c, out, sizeof(out)) > 0);
	assert_int_equal(scram_client_final(&c, RFC_SERVER_FIRST,
					    strlen(RFC_SERVER_FIRST), out, 40,
					    err, sizeof(err)),
			 -1);

	make_secret("pw", FAST_ITER, &sec);
	scram_server_init(&s, &sec);
	assert_int_equal(scram_server_final(&s, RFC_CLIENT_FINAL,
					    strlen(RFC_CLIENT_FINAL), out,
					    sizeof(out), err, sizeof(err)),
			 -1);
	scram_server_init(&s, &sec);
	assert_int_equal(scram_server_first(&s, RFC_CLIENT_FIRST,
					    strlen(RFC_CLIENT_FIRST), out, 8,
					    err, sizeof(err)),
			 -1);
	/* err may be NULL. */
	scram_server_init(&s, &sec);
	assert_int_equal(scram_server_first(&s, "x", 1, out, sizeof(out),
					    NULL, 0),
			 -1);
}

static void
test_long_password(void **state)
{
	char *pw = malloc(SCRAM_MAX_PASSWORD + 2);
	struct scram_client c;

	(void)state;
	memset(pw, 'p', SCRAM_MAX_PASSWORD + 1);
	pw[SCRAM_MAX_PASSWORD + 1] = '\0';
	assert_int_equal(scram_client_init(&c, pw), -1);
	pw[SCRAM_MAX_PASSWORD] = '\0';
	assert_int_equal(scram_client_init(&c, pw), 0);
	free(pw);
}

/* Deterministic xorshift, so a failure reproduces. */
static uint32_t
next_rand(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

/* Flip, drop or insert a byte or truncate; result in an exact-size heap
 * buffer so ASan sees any overread. */
static char *
mutate(const char *msg, size_t *len, uint32_t *seed)
{
	static const char pool[] = ",=abrspciv0+/\0\x80";
	size_t n = strlen(msg), at;
	char *out = malloc(n + 2);

	assert_non_null(out);
	memcpy(out, msg, n);
	at = n ? next_rand(seed) % n : 0;
	switch (next_rand(seed) % 4) {
	case 0:
		out[at] = pool[next_rand(seed) % (sizeof(pool) - 1)];
		break;
	case 1:
		memmove(out + at, out + at + 1, n - at - 1);
		n--;
		break;
	case 2:
		memmove(out + at + 1, out + at, n - at);
		out[at] = pool[next_rand(seed) % (sizeof(pool) - 1)];
		n++;
		break;
	default:
		n = at;
		break;
	}
	*len = n;
	return out;
}

/* Mutated messages are rejected or accepted, never crash or overread. */
static void
test_mutations(void **state)
{
	static const uint8_t zero_key[SCRAM_KEY_LEN];
	struct scram_secret sec;
	struct scram_server s;
	struct scram_client c;
	char out[2048], err[128], *m;
	uint32_t seed = 0x9e3779b9;
	size_t len;
	int i, rc;

	(void)state;
	assert_int_equal(scram_secret_from_password_salt("pencil", 4096,
							 rfc_salt,
							 sizeof(rfc_salt),
							 &sec),
			 0);
	for (i = 0; i < 3000; i++) {
		scram_server_init(&s, &sec);
		assert_int_equal(scram_server_set_nonce(&s, RFC_SNONCE), 0);
		m = mutate(RFC_CLIENT_FIRST, &len, &seed);
		rc = scram_server_first(&s, m, len, out, sizeof(out), err,
					sizeof(err));
		assert_true(rc == -1 || (rc > 0 && (size_t)rc == strlen(out)));
		free(m);

		scram_server_init(&s, &sec);
		assert_int_equal(scram_server_set_nonce(&s, RFC_SNONCE), 0);
		assert_true(scram_server_first(&s, RFC_CLIENT_FIRST,
					       strlen(RFC_CLIENT_FIRST), out,
					       sizeof(out), err,
					       sizeof(err)) > 0);
		m = mutate(RFC_CLIENT_FINAL, &len, &seed);
		rc = scram_server_final(&s, m, len, out, sizeof(out), err,
					sizeof(err));
		assert_true(rc == -1 || rc == SCRAM_BAD_PASSWORD ||
			    rc == (int)strlen(RFC_SERVER_FINAL));
		free(m);

		/* Keys, not a password: a mutated i= must not cost PBKDF2. */
		assert_int_equal(scram_client_init_keys(&c, zero_key,
							zero_key),
				 0);
		assert_int_equal(scram_client_set_nonce(&c, "user", RFC_NONCE),
				 0);
		assert_true(scram_client_first(&c, out, sizeof(out)) > 0);
		m = mutate(RFC_SERVER_FIRST, &len, &seed);
		if (scram_client_final(&c, m, len, out, sizeof(out), err,
				       sizeof(err)) > 0) {
			char *v = mutate(RFC_SERVER_FINAL, &len, &seed);

			rc = scram_client_verify(&c, v, len, err,
						 sizeof(err));
			assert_true(rc == 0 || rc == -1);
			free(v);
		}
		free(m);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc7677_client),
		cmocka_unit_test(test_rfc7677_server),
		cmocka_unit_test(test_rfc7677_bad_server_signature),
		cmocka_unit_test(test_server_error_reported),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_pg_secret),
		cmocka_unit_test(test_secret_generate),
		cmocka_unit_test(test_secret_parse_malformed),
		cmocka_unit_test(test_client_key_reuse),
		cmocka_unit_test(test_client_malformed_server_first),
		cmocka_unit_test(test_truncated_messages),
		cmocka_unit_test(test_server_malformed_client_first),
		cmocka_unit_test(test_server_malformed_client_final),
		cmocka_unit_test(test_out_of_order_and_small_buffers),
		cmocka_unit_test(test_long_password),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
