/*
 * fuzz_scram_client.c - the client side of SCRAM-SHA-256 (proto/scram.h):
 * what the proxy parses from the upstream server while it logs in
 * (server-first, server-final), before the server has proved anything.
 *
 * Input: two bytes, big-endian, the length of server-first; then
 * server-first and, after it, server-final, each copied to a heap buffer
 * of exactly its size (no NUL after it).  The client nonce, the password
 * ("pencil"), salt and iterations are those of fuzz_scram.c, so seeds can
 * carry a real server signature.  The clients start from keys (no PBKDF2
 * per input), as the proxy does with a client's recovered ClientKey.
 *
 * Checked: client-final is "c=biws,r=<server nonce>,p=<44 base64>" with
 * a nonce extending ours; a 512-byte buffer (backend.c's) gives the same
 * answer as a large one whenever it fits; a client given the secret's
 * salt and iterations agrees with one given keys only, or names the
 * mismatch; pgvalet's own server, given the same nonce, accepts the
 * proof exactly when it would have sent this server-first, and then
 * sends the signature computed here with HMAC from the server key; a
 * fuzzed server-final verifies when it is that signature and only then;
 * "e=" reasons come back printable; failed clients refuse to go on.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fuzz.h"
#include "proto/scram.h"

/* Must match fuzz_scram.c and the seeds in corpus/fuzz_scram_client/. */
#define FUZZ_PASSWORD "pencil"
#define FUZZ_CNONCE "fuzzClientNonce4567"
#define FUZZ_SNONCE "fuzzServerNonce0123"
#define FUZZ_ITER 4096

enum { BACKEND_OUT = 512, BIG_OUT = 4096 };

#define PROOF_B64 ((SCRAM_KEY_LEN + 2) / 3 * 4)	/* 44 */

static const uint8_t fuzz_salt[16] = { 0x46, 0x55, 0x5a, 0x5a, 0x73, 0x61,
				       0x6c, 0x74, 0x01, 0x02, 0x03, 0x04,
				       0x05, 0x06, 0x07, 0x08 };

static const char client_first[] = "n,,n=,r=" FUZZ_CNONCE;

static struct scram_secret secret;
static uint8_t client_key[SCRAM_KEY_LEN];
static bool ready;

struct run {
	struct scram_client c;
	char out[BIG_OUT];
	char err[160];
	int n;
};

static void
start(struct scram_client *c)
{
	char out[128];

	FUZZ_CHECK(scram_client_set_nonce(c, "", FUZZ_CNONCE) == 0);
	FUZZ_CHECK(scram_client_first(c, out, sizeof(out)) ==
		   (int)strlen(client_first));
	FUZZ_CHECK(strcmp(out, client_first) == 0);
}

/* The secret, and the ClientKey a real exchange recovers from it. */
static void
setup(void)
{
	struct scram_client c;
	struct scram_server s;
	char a[256], b[256];
	int n;

	FUZZ_CHECK(scram_secret_from_password_salt(FUZZ_PASSWORD, FUZZ_ITER,
						   fuzz_salt,
						   sizeof(fuzz_salt),
						   &secret) == 0);
	FUZZ_CHECK(scram_client_init(&c, FUZZ_PASSWORD) == 0);
	start(&c);
	scram_server_init(&s, &secret);
	FUZZ_CHECK(scram_server_set_nonce(&s, FUZZ_SNONCE) == 0);
	n = scram_server_first(&s, client_first, strlen(client_first), a,
			       sizeof(a), NULL, 0);
	FUZZ_CHECK(n > 0);
	n = scram_client_final(&c, a, (size_t)n, b, sizeof(b), NULL, 0);
	FUZZ_CHECK(n > 0);
	n = scram_server_final(&s, b, (size_t)n, a, sizeof(a), NULL, 0);
	FUZZ_CHECK(n > 0);
	FUZZ_CHECK(scram_client_verify(&c, a, (size_t)n, NULL, 0) == 0);
	FUZZ_CHECK(scram_server_client_key(&s) != NULL);
	memcpy(client_key, scram_server_client_key(&s), SCRAM_KEY_LEN);
	scram_client_clear(&c);
	scram_server_clear(&s);
}

static bool
is_b64(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
	       (ch >= '0' && ch <= '9') || ch == '+' || ch == '/' || ch == '=';
}

/* client-final for this server-first: its shape and its nonce. */
static void
check_final(const struct run *r, const char *sf, size_t sflen)
{
	const char *nonce = r->out + 9, *p;
	size_t nlen, cn = strlen(FUZZ_CNONCE);

	FUZZ_CHECK((size_t)r->n == strlen(r->out));
	FUZZ_CHECK(strncmp(r->out, "c=biws,r=", 9) == 0);
	p = strstr(nonce, ",p=");
	FUZZ_CHECK(p != NULL);
	nlen = (size_t)(p - nonce);
	FUZZ_CHECK(nlen > cn && memcmp(nonce, FUZZ_CNONCE, cn) == 0);
	FUZZ_CHECK(strlen(p + 3) == PROOF_B64);
	for (size_t i = 0; i < PROOF_B64; i++)
		FUZZ_CHECK(is_b64(p[3 + i]));
	/* the nonce is server-first's r= attribute, which comes first */
	FUZZ_CHECK(sflen > nlen + 2 && memcmp(sf, "r=", 2) == 0 &&
		   memcmp(sf + 2, nonce, nlen) == 0 && sf[nlen + 2] == ',');
}

static void
client_final(struct run *r, bool with_secret, const char *sf, size_t sflen,
	     size_t outlen)
{
	if (with_secret)
		FUZZ_CHECK(scram_client_init_secret(&r->c, client_key,
						    &secret) == 0);
	else
		FUZZ_CHECK(scram_client_init_keys(&r->c, client_key,
						  secret.server_key) == 0);
	start(&r->c);
	r->err[0] = '\0';
	r->n = scram_client_final(&r->c, sf, sflen, r->out, outlen, r->err,
				  sizeof(r->err));
	FUZZ_CHECK(memchr(r->err, 0, sizeof(r->err)) != NULL);
	if (r->n < 0)
		FUZZ_CHECK(r->n == -1 && r->err[0] != '\0');
}

/*
 * pgvalet's server with the nonce this server-first claims: its own
 * server-first into sv_first, or false when the claim cannot be one.
 */
static bool
own_server(struct scram_server *s, const char *sf, size_t sflen,
	   char *sv_first, size_t cap)
{
	size_t cn = strlen(FUZZ_CNONCE), start_at = 2 + cn, end;
	char nonce[SCRAM_MAX_OWN_NONCE + 1];

	if (sflen < start_at || memcmp(sf, "r=" FUZZ_CNONCE, start_at) != 0)
		return false;
	for (end = start_at; end < sflen && sf[end] != ','; end++)
		;
	if (end - start_at > SCRAM_MAX_OWN_NONCE || memchr(sf, 0, end))
		return false;
	memcpy(nonce, sf + start_at, end - start_at);
	nonce[end - start_at] = '\0';
	scram_server_init(s, &secret);
	if (scram_server_set_nonce(s, nonce) != 0)
		return false;	/* empty or not printable */
	FUZZ_CHECK(scram_server_first(s, client_first, strlen(client_first),
				      sv_first, cap, NULL, 0) > 0);
	return true;
}

/*
 * "v=" and the base64 of the signature the server key gives this
 * exchange, computed here: HMAC(ServerKey, client-first-bare ","
 * server-first "," client-final-without-proof).
 */
static void
expected_final(const char *sf, size_t sflen, const char *final,
	       char out[2 + PROOF_B64 + 1])
{
	const char *bare = client_first + 3;
	size_t wp = (size_t)(strstr(final, ",p=") - final);
	size_t blen = strlen(bare), alen = blen + 1 + sflen + 1 + wp;
	uint8_t sig[SCRAM_KEY_LEN];
	unsigned int siglen = 0;
	char *auth = malloc(alen);

	FUZZ_CHECK(auth != NULL);
	memcpy(auth, bare, blen);
	auth[blen] = ',';
	memcpy(auth + blen + 1, sf, sflen);
	auth[blen + 1 + sflen] = ',';
	memcpy(auth + blen + 2 + sflen, final, wp);
	FUZZ_CHECK(HMAC(EVP_sha256(), secret.server_key, SCRAM_KEY_LEN,
			(const uint8_t *)auth, alen, sig, &siglen) != NULL &&
		   siglen == SCRAM_KEY_LEN);
	free(auth);
	memcpy(out, "v=", 2);
	FUZZ_CHECK(EVP_EncodeBlock((uint8_t *)out + 2, sig, SCRAM_KEY_LEN) ==
		   PROOF_B64);
}

/* A server-final from the fuzzer, on a client waiting for one. */
static void
check_verify(struct run *r, const char *sfin, size_t len, const char *want)
{
	size_t wlen = strlen(want);
	uint8_t got[SCRAM_KEY_LEN + 2], sig[SCRAM_KEY_LEN + 2];
	char err[160];
	int rc;

	err[0] = '\0';
	rc = scram_client_verify(&r->c, sfin, len, err, sizeof(err));
	FUZZ_CHECK(memchr(err, 0, sizeof(err)) != NULL);
	if (len == wlen && memcmp(sfin, want, wlen) == 0)
		FUZZ_CHECK(rc == 0);
	if (rc == 0) {
		/* the same signature, if not the same letters */
		FUZZ_CHECK(len == wlen && memcmp(sfin, "v=", 2) == 0);
		FUZZ_CHECK(EVP_DecodeBlock(got, (const uint8_t *)sfin + 2,
					   (int)len - 2) ==
			   (int)sizeof(got) - 1);
		FUZZ_CHECK(EVP_DecodeBlock(sig, (const uint8_t *)want + 2,
					   (int)wlen - 2) ==
			   (int)sizeof(sig) - 1);
		FUZZ_CHECK(memcmp(got, sig, SCRAM_KEY_LEN) == 0);
	} else {
		FUZZ_CHECK(rc == -1 && err[0] != '\0');
	}
	if (len >= 2 && len <= SCRAM_MAX_MESSAGE &&
	    memcmp(sfin, "e=", 2) == 0) {
		FUZZ_CHECK(rc == -1);
		FUZZ_CHECK(strncmp(err, "SCRAM server error: ", 20) == 0);
		for (const char *p = err; *p; p++)
			FUZZ_CHECK(*p >= 0x20 && *p < 0x7f);
	}
	/* done or failed: no second answer */
	FUZZ_CHECK(scram_client_verify(&r->c, sfin, len, NULL, 0) == -1);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run keys, with_secret, big;
	struct scram_server s;
	char sv_first[SCRAM_MAX_MESSAGE + 200], sv_final[128],
	     want[2 + PROOF_B64 + 1];
	size_t sflen, finlen;
	char *sf = NULL, *sfin = NULL;
	bool equal;
	int rs;

	if (!ready) {
		setup();
		ready = true;
	}
	if (size < 2)
		return 0;
	sflen = (size_t)data[0] << 8 | data[1];
	if (sflen > size - 2)
		sflen = size - 2;
	finlen = size - 2 - sflen;
	sf = fuzz_dup_exact(data + 2, sflen);
	sfin = fuzz_dup_exact(data + 2 + sflen, finlen);
	if (!sf || !sfin)
		goto out;

	client_final(&keys, false, sf, sflen, BACKEND_OUT);
	client_final(&with_secret, true, sf, sflen, BACKEND_OUT);
	client_final(&big, false, sf, sflen, sizeof(big.out));
	if (big.n >= 0) {
		check_final(&big, sf, sflen);
		if (big.n < BACKEND_OUT)
			FUZZ_CHECK(keys.n == big.n &&
				   strcmp(keys.out, big.out) == 0);
		else
			FUZZ_CHECK(keys.n == -1);
	} else {
		FUZZ_CHECK(keys.n == -1);
	}
	if (with_secret.n >= 0)
		FUZZ_CHECK(keys.n == with_secret.n &&
			   strcmp(keys.out, with_secret.out) == 0);
	else if (keys.n >= 0)
		FUZZ_CHECK(strstr(with_secret.err, "differs") != NULL);

	if (big.n >= 0)
		expected_final(sf, sflen, big.out, want);
	if (own_server(&s, sf, sflen, sv_first, sizeof(sv_first))) {
		equal = sflen == strlen(sv_first) &&
			memcmp(sf, sv_first, sflen) == 0;
		if (equal)
			FUZZ_CHECK(keys.n >= 0 && with_secret.n >= 0);
		if (big.n >= 0) {
			/* the proof covers server-first: only ours passes */
			rs = scram_server_final(&s, big.out, (size_t)big.n,
						sv_final, sizeof(sv_final),
						NULL, 0);
			FUZZ_CHECK((rs >= 0) == equal);
			if (rs >= 0) {
				FUZZ_CHECK(strcmp(sv_final, want) == 0);
				FUZZ_CHECK(scram_client_verify(
						   &with_secret.c, sv_final,
						   (size_t)rs, NULL, 0) == 0);
			}
		}
		scram_server_clear(&s);
	}

	if (big.n >= 0)
		check_verify(&big, sfin, finlen, want);
	else	/* a failed client refuses to go on */
		FUZZ_CHECK(scram_client_verify(&big.c, sfin, finlen, NULL, 0) ==
			   -1);
out:
	scram_client_clear(&keys.c);
	scram_client_clear(&with_secret.c);
	scram_client_clear(&big.c);
	free(sf);
	free(sfin);
	return 0;
}
