/*
 * fuzz_scram.c - the server side of SCRAM-SHA-256 (proto/scram.h), which
 * parses whatever a connecting client sends before it has proved
 * anything.
 *
 * The first input byte says how long client-first-message is; the bytes
 * after it are split there into client-first and client-final.  Each half
 * is copied to a heap buffer of exactly its size (no NUL after it).  The
 * secret and the server nonce are fixed, so the seeds in
 * corpus/fuzz_scram/ can carry a correct proof and reach the success
 * path.  The whole input is also fed to scram_secret_parse.
 */
#include <string.h>

#include "fuzz.h"
#include "proto/scram.h"

/* Must match tests/fuzz/make_corpus.py. */
#define FUZZ_PASSWORD "pencil"
#define FUZZ_SNONCE "fuzzServerNonce0123"
#define FUZZ_ITER 4096

static const uint8_t fuzz_salt[16] = { 0x46, 0x55, 0x5a, 0x5a, 0x73, 0x61,
				       0x6c, 0x74, 0x01, 0x02, 0x03, 0x04,
				       0x05, 0x06, 0x07, 0x08 };

static struct scram_secret secret;
static int have_secret;

static void
run_exchange(const uint8_t *first, size_t flen, const uint8_t *final,
	     size_t finlen)
{
	struct scram_server s;
	char out[SCRAM_MAX_MESSAGE + 200], err[128];
	char *a = fuzz_dup_exact(first, flen), *b = fuzz_dup_exact(final, finlen);
	int rc;

	if (!a || !b)
		goto out;
	scram_server_init(&s, &secret);
	FUZZ_CHECK(scram_server_set_nonce(&s, FUZZ_SNONCE) == 0);
	err[0] = 0;
	rc = scram_server_first(&s, a, flen, out, sizeof(out), err,
				sizeof(err));
	FUZZ_CHECK(memchr(err, 0, sizeof(err)) != NULL);
	if (rc < 0) {
		FUZZ_CHECK(err[0] != 0);
		/* A failed object refuses to go on. */
		FUZZ_CHECK(scram_server_final(&s, b, finlen, out, sizeof(out),
					      NULL, 0) == -1);
		goto clear;
	}
	FUZZ_CHECK((size_t)rc == strlen(out));
	FUZZ_CHECK(strncmp(out, "r=", 2) == 0);
	err[0] = 0;
	rc = scram_server_final(&s, b, finlen, out, sizeof(out), err,
				sizeof(err));
	FUZZ_CHECK(memchr(err, 0, sizeof(err)) != NULL);
	if (rc >= 0) {
		FUZZ_CHECK((size_t)rc == strlen(out));
		FUZZ_CHECK(strncmp(out, "v=", 2) == 0);
		FUZZ_CHECK(scram_server_client_key(&s) != NULL);
	} else {
		FUZZ_CHECK(rc == -1 || rc == SCRAM_BAD_PASSWORD);
		FUZZ_CHECK(err[0] != 0);
		FUZZ_CHECK(scram_server_client_key(&s) == NULL);
	}
clear:
	scram_server_clear(&s);
out:
	free(a);
	free(b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct scram_secret parsed;
	size_t flen;
	char *text;

	if (!have_secret) {
		FUZZ_CHECK(scram_secret_from_password_salt(
				   FUZZ_PASSWORD, FUZZ_ITER, fuzz_salt,
				   sizeof(fuzz_salt), &secret) == 0);
		have_secret = 1;
	}
	/* pg_authid text is NUL-terminated: give it a terminated copy. */
	text = malloc(size + 1);
	if (text) {
		memcpy(text, data, size);
		text[size] = 0;
		if (scram_secret_parse(text, &parsed) == 0)
			FUZZ_CHECK(parsed.iterations >= 1 &&
				   parsed.iterations <= SCRAM_MAX_ITERATIONS &&
				   parsed.salt_len >= 1 &&
				   parsed.salt_len <= SCRAM_MAX_SALT_LEN);
		free(text);
	}
	if (size == 0)
		return 0;
	flen = data[0];
	if (flen > size - 1)
		flen = size - 1;
	run_exchange(data + 1, flen, data + 1 + flen, size - 1 - flen);
	return 0;
}
