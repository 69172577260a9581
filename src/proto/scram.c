/*
 * scram.c - SCRAM-SHA-256 client and server halves; see scram.h.
 *
 * Every message from the network is parsed with a cursor over (ptr, len)
 * and never read past 'len'.  All crypto comes from OpenSSL.
 */
#include "proto/scram.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

enum scram_state {
	SCRAM_ST_INIT = 0,
	SCRAM_ST_FIRST,		/* first messages exchanged */
	SCRAM_ST_FINAL,		/* client: final sent, awaiting verify */
	SCRAM_ST_DONE,
	SCRAM_ST_FAILED,	/* terminal: re-init to try again */
};

enum {
	SCRAM_RAW_NONCE_LEN = 18,	/* what libpq and the PG server use */
	SCRAM_SALT_GEN_LEN = 16,	/* what PG's scram_build_secret uses */
	SCRAM_KEY_B64_LEN = 44,
};

/* The "c=" value for each gs2 header we accept: base64("n,,"), ("y,,"). */
#define SCRAM_CBIND_N "biws"
#define SCRAM_CBIND_Y "eSws"

/* A read position inside one SASL message; 'sep' is set when the last
 * attribute ended with a ',' so "a=1," is not mistaken for complete. */
struct scram_cursor {
	const char *p;
	const char *end;
	int sep;
};

/* What server-first-message carries, with the nonce left in place. */
struct scram_server_first_fields {
	const char *nonce;
	size_t nonce_len;
	uint8_t salt[SCRAM_MAX_SALT_LEN];
	size_t salt_len;
	int iterations;
};

__attribute__((format(printf, 3, 4))) static void
scram_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- base64 ------------------------------------------------------------ */

/* Encoded length of n raw bytes; a macro so it can size arrays. */
#define SCRAM_B64_LEN(n) (((n) + 2) / 3 * 4)

/* NUL-terminated base64 of 'in' into out; its length or -1 if too small. */
static int
b64_encode(const uint8_t *in, size_t len, char *out, size_t outlen)
{
	if (outlen < SCRAM_B64_LEN(len) + 1)
		return -1;
	return EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

static int
b64_is_alpha(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
	       (ch >= '0' && ch <= '9') || ch == '+' || ch == '/';
}

/*
 * Strictly decode padded base64 into out (at most SCRAM_MAX_SALT_LEN
 * bytes): no whitespace, '=' only as the final padding.  EVP_DecodeBlock
 * counts padding as zero bytes, so the real length is computed here.
 * Returns the decoded length, or -1.
 */
static int
b64_decode(const char *in, size_t len, uint8_t *out, size_t outcap)
{
	uint8_t tmp[SCRAM_MAX_SALT_LEN + 3];
	size_t pad = 0;
	size_t i;
	int n;

	if (len == 0 || len % 4 != 0 || outcap > SCRAM_MAX_SALT_LEN ||
	    len > SCRAM_B64_LEN(outcap))
		return -1;
	if (in[len - 1] == '=')
		pad = in[len - 2] == '=' ? 2 : 1;
	for (i = 0; i < len - pad; i++) {
		if (!b64_is_alpha(in[i]))
			return -1;
	}
	n = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)len);
	if (n < 0 || (size_t)n != len / 4 * 3 || (size_t)n - pad > outcap)
		return -1;
	memcpy(out, tmp, (size_t)n - pad);
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return n - (int)pad;
}

/* ---- message parsing ---------------------------------------------------- */

/* RFC 5802 "printable": %x21-2B / %x2D-7E, i.e. no ',' and no controls. */
static int
nonce_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++) {
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
			return 0;
	}
	return 1;
}

static void
cursor_init(struct scram_cursor *cur, const char *msg, size_t len)
{
	cur->p = msg;
	cur->end = msg + len;
	cur->sep = 0;
}

static int
cursor_done(const struct scram_cursor *cur)
{
	return cur->p == cur->end && !cur->sep;
}

/* Read "<attr>=<value>" up to the next ',' (consumed) or the end. */
static int
cursor_attr(struct scram_cursor *cur, char attr, const char **val,
	    size_t *vlen)
{
	const char *comma;

	if (cur->end - cur->p < 2 || cur->p[0] != attr || cur->p[1] != '=')
		return -1;
	*val = cur->p + 2;
	comma = memchr(*val, ',', (size_t)(cur->end - *val));
	*vlen = (size_t)((comma ? comma : cur->end) - *val);
	cur->p = comma ? comma + 1 : cur->end;
	cur->sep = comma != NULL;
	return 0;
}

/* Read any extension attribute (a letter, '=', value); the value is
 * ignored, as PG does. */
static int
cursor_any_attr(struct scram_cursor *cur, char *attr)
{
	const char *val;
	size_t vlen;
	char ch;

	if (cur->p == cur->end)
		return -1;
	ch = cur->p[0];
	if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')))
		return -1;
	*attr = ch;
	return cursor_attr(cur, ch, &val, &vlen);
}

/* Decimal 1..SCRAM_MAX_ITERATIONS, digits only. */
static int
parse_iterations(const char *s, size_t len, int *out)
{
	long v = 0;
	size_t i;

	if (len == 0 || len > 7)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > SCRAM_MAX_ITERATIONS)
		return -1;
	*out = (int)v;
	return 0;
}

/* ---- crypto ------------------------------------------------------------- */

static int
scram_hmac(const uint8_t *key, size_t keylen, const void *msg, size_t len,
	   uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int outlen = 0;

	if (HMAC(EVP_sha256(), key, (int)keylen, msg, len, out, &outlen) ==
		    NULL ||
	    outlen != SCRAM_KEY_LEN)
		return -1;
	return 0;
}

static int
scram_sha256(const uint8_t *in, size_t len, uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int outlen = 0;

	if (!EVP_Digest(in, len, out, &outlen, EVP_sha256(), NULL) ||
	    outlen != SCRAM_KEY_LEN)
		return -1;
	return 0;
}

/* SaltedPassword = Hi(password, salt, i); ClientKey and ServerKey from it. */
static int
keys_from_password(const char *password, size_t plen, const uint8_t *salt,
		   size_t salt_len, int iterations,
		   uint8_t client_key[SCRAM_KEY_LEN],
		   uint8_t server_key[SCRAM_KEY_LEN])
{
	uint8_t salted[SCRAM_KEY_LEN];
	int rc = -1;

	if (PKCS5_PBKDF2_HMAC(password, (int)plen, salt, (int)salt_len,
			      iterations, EVP_sha256(), SCRAM_KEY_LEN,
			      salted) != 1)
		goto out;
	if (scram_hmac(salted, sizeof(salted), "Client Key", 10,
		       client_key) < 0 ||
	    scram_hmac(salted, sizeof(salted), "Server Key", 10,
		       server_key) < 0)
		goto out;
	rc = 0;
out:
	OPENSSL_cleanse(salted, sizeof(salted));
	return rc;
}

/* AuthMessage = client-first-bare "," server-first "," final-without-proof */
static size_t
auth_message(char *buf, size_t cap, const char *a, size_t alen,
	     const char *b, size_t blen, const char *c, size_t clen)
{
	if (alen + blen + clen + 2 > cap)
		return 0;
	memcpy(buf, a, alen);
	buf[alen] = ',';
	memcpy(buf + alen + 1, b, blen);
	buf[alen + 1 + blen] = ',';
	memcpy(buf + alen + blen + 2, c, clen);
	return alen + blen + clen + 2;
}

/* ---- secrets ------------------------------------------------------------ */

int
scram_secret_from_password_salt(const char *password, int iterations,
				const uint8_t *salt, size_t salt_len,
				struct scram_secret *out)
{
	uint8_t client_key[SCRAM_KEY_LEN];
	struct scram_secret sec;
	int rc = -1;

	if (password == NULL || salt == NULL || out == NULL ||
	    iterations < 1 || iterations > SCRAM_MAX_ITERATIONS ||
	    salt_len == 0 || salt_len > SCRAM_MAX_SALT_LEN ||
	    strlen(password) > SCRAM_MAX_PASSWORD)
		return -1;
	memset(&sec, 0, sizeof(sec));
	sec.iterations = iterations;
	memcpy(sec.salt, salt, salt_len);
	sec.salt_len = salt_len;
	if (keys_from_password(password, strlen(password), salt, salt_len,
			       iterations, client_key, sec.server_key) < 0 ||
	    scram_sha256(client_key, sizeof(client_key), sec.stored_key) < 0)
		goto out;
	*out = sec;
	rc = 0;
out:
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(&sec, sizeof(sec));
	return rc;
}

int
scram_secret_from_password(const char *password, int iterations,
			   struct scram_secret *out)
{
	uint8_t salt[SCRAM_SALT_GEN_LEN];

	if (RAND_bytes(salt, sizeof(salt)) != 1)
		return -1;
	return scram_secret_from_password_salt(password, iterations, salt,
					       sizeof(salt), out);
}

int
scram_secret_parse(const char *text, struct scram_secret *out)
{
	static const char prefix[] = "SCRAM-SHA-256$";
	const char *p, *end, *colon, *dollar, *colon2;
	struct scram_secret sec;
	int n, rc = -1;

	if (text == NULL || out == NULL ||
	    strncmp(text, prefix, sizeof(prefix) - 1) != 0)
		return -1;
	p = text + sizeof(prefix) - 1;
	end = p + strnlen(p, SCRAM_SECRET_TEXT_MAX);
	if (*end != '\0')
		return -1;
	colon = memchr(p, ':', (size_t)(end - p));
	dollar = colon ? memchr(colon, '$', (size_t)(end - colon)) : NULL;
	colon2 = dollar ? memchr(dollar, ':', (size_t)(end - dollar)) : NULL;
	if (colon2 == NULL)
		return -1;

	memset(&sec, 0, sizeof(sec));
	if (parse_iterations(p, (size_t)(colon - p), &sec.iterations) < 0)
		goto out;
	n = b64_decode(colon + 1, (size_t)(dollar - colon - 1), sec.salt,
		       sizeof(sec.salt));
	if (n <= 0)
		goto out;
	sec.salt_len = (size_t)n;
	if (b64_decode(dollar + 1, (size_t)(colon2 - dollar - 1),
		       sec.stored_key, SCRAM_KEY_LEN) != SCRAM_KEY_LEN ||
	    b64_decode(colon2 + 1, (size_t)(end - colon2 - 1), sec.server_key,
		       SCRAM_KEY_LEN) != SCRAM_KEY_LEN)
		goto out;
	*out = sec;
	rc = 0;
out:
	OPENSSL_cleanse(&sec, sizeof(sec));
	return rc;
}

int
scram_secret_format(const struct scram_secret *secret, char *out,
		    size_t outlen)
{
	char salt[SCRAM_B64_LEN(SCRAM_MAX_SALT_LEN) + 1];
	char stored[SCRAM_KEY_B64_LEN + 1], server[SCRAM_KEY_B64_LEN + 1];
	int n;

	if (secret == NULL || out == NULL || secret->salt_len == 0 ||
	    secret->salt_len > SCRAM_MAX_SALT_LEN ||
	    b64_encode(secret->salt, secret->salt_len, salt, sizeof(salt)) <
		    0 ||
	    b64_encode(secret->stored_key, SCRAM_KEY_LEN, stored,
		       sizeof(stored)) < 0 ||
	    b64_encode(secret->server_key, SCRAM_KEY_LEN, server,
		       sizeof(server)) < 0)
		return -1;
	n = snprintf(out, outlen, "SCRAM-SHA-256$%d:%s$%s:%s",
		     secret->iterations, salt, stored, server);
	if (n < 0 || (size_t)n >= outlen)
		return -1;
	return n;
}

/* ---- client ------------------------------------------------------------- */

/* Build client-first-bare "n=<user>,r=<nonce>". */
static int
client_set_bare(struct scram_client *c, const char *user, const char *nonce)
{
	size_t ulen = strlen(user), nlen = strlen(nonce);
	int n;

	if (ulen > SCRAM_MAX_OWN_NONCE || strpbrk(user, ",=") != NULL ||
	    nlen > SCRAM_MAX_OWN_NONCE || !nonce_valid(nonce, nlen))
		return -1;
	n = snprintf(c->first_bare, sizeof(c->first_bare), "n=%s,r=%s", user,
		     nonce);
	if (n < 0 || (size_t)n >= sizeof(c->first_bare))
		return -1;
	c->first_bare_len = (size_t)n;
	c->nonce_off = (size_t)n - nlen;
	return 0;
}

/* Common start: clear 'c' and give it a random nonce. */
static int
client_start(struct scram_client *c)
{
	uint8_t raw[SCRAM_RAW_NONCE_LEN];
	char nonce[SCRAM_B64_LEN(SCRAM_RAW_NONCE_LEN) + 1];

	memset(c, 0, sizeof(*c));
	if (RAND_bytes(raw, sizeof(raw)) != 1 ||
	    b64_encode(raw, sizeof(raw), nonce, sizeof(nonce)) < 0)
		return -1;
	return client_set_bare(c, "", nonce);
}

int
scram_client_init(struct scram_client *c, const char *password)
{
	size_t plen;

	if (c == NULL || password == NULL)
		return -1;
	plen = strnlen(password, SCRAM_MAX_PASSWORD + 1);
	if (plen > SCRAM_MAX_PASSWORD || client_start(c) < 0)
		return -1;
	memcpy(c->password, password, plen);
	c->password_len = plen;
	return 0;
}

int
scram_client_init_keys(struct scram_client *c,
		       const uint8_t client_key[SCRAM_KEY_LEN],
		       const uint8_t server_key[SCRAM_KEY_LEN])
{
	if (c == NULL || client_key == NULL || server_key == NULL ||
	    client_start(c) < 0)
		return -1;
	memcpy(c->client_key, client_key, SCRAM_KEY_LEN);
	memcpy(c->server_key, server_key, SCRAM_KEY_LEN);
	c->have_keys = 1;
	return 0;
}

int
scram_client_init_secret(struct scram_client *c,
			 const uint8_t client_key[SCRAM_KEY_LEN],
			 const struct scram_secret *secret)
{
	if (secret == NULL || secret->salt_len == 0 ||
	    secret->salt_len > SCRAM_MAX_SALT_LEN ||
	    scram_client_init_keys(c, client_key, secret->server_key) < 0)
		return -1;
	c->expect_iterations = secret->iterations;
	memcpy(c->expect_salt, secret->salt, secret->salt_len);
	c->expect_salt_len = secret->salt_len;
	return 0;
}

int
scram_client_set_nonce(struct scram_client *c, const char *user,
		       const char *nonce)
{
	if (c == NULL || user == NULL || nonce == NULL ||
	    c->state != SCRAM_ST_INIT)
		return -1;
	return client_set_bare(c, user, nonce);
}

int
scram_client_first(struct scram_client *c, char *out, size_t outlen)
{
	if (c == NULL || out == NULL || c->state != SCRAM_ST_INIT ||
	    c->first_bare_len == 0 || outlen < c->first_bare_len + 4)
		return -1;
	memcpy(out, "n,,", 3);
	memcpy(out + 3, c->first_bare, c->first_bare_len);
	out[3 + c->first_bare_len] = '\0';
	c->state = SCRAM_ST_FIRST;
	return (int)c->first_bare_len + 3;
}

/* Parse "r=<nonce>,s=<salt>,i=<iterations>" (libpq accepts nothing more). */
static int
client_parse_server_first(const struct scram_client *c, const char *msg,
			  size_t len, struct scram_server_first_fields *f,
			  char *err, size_t errlen)
{
	const char *cnonce = c->first_bare + c->nonce_off;
	size_t cnonce_len = c->first_bare_len - c->nonce_off;
	struct scram_cursor cur;
	const char *v;
	size_t vlen;
	int n;

	cursor_init(&cur, msg, len);
	if (cursor_attr(&cur, 'r', &f->nonce, &f->nonce_len) < 0 ||
	    !nonce_valid(f->nonce, f->nonce_len)) {
		scram_err(err, errlen, "malformed SCRAM server-first: nonce");
		return -1;
	}
	if (f->nonce_len <= cnonce_len ||
	    memcmp(f->nonce, cnonce, cnonce_len) != 0) {
		scram_err(err, errlen,
			  "invalid SCRAM response (nonce mismatch)");
		return -1;
	}
	n = -1;
	if (cursor_attr(&cur, 's', &v, &vlen) == 0)
		n = b64_decode(v, vlen, f->salt, sizeof(f->salt));
	if (n <= 0) {
		scram_err(err, errlen, "malformed SCRAM server-first: salt");
		return -1;
	}
	f->salt_len = (size_t)n;
	if (cursor_attr(&cur, 'i', &v, &vlen) < 0 ||
	    parse_iterations(v, vlen, &f->iterations) < 0 ||
	    !cursor_done(&cur)) {
		scram_err(err, errlen,
			  "malformed SCRAM server-first: iteration count "
			  "(1..%d) or trailing data",
			  SCRAM_MAX_ITERATIONS);
		return -1;
	}
	return 0;
}

/*
 * Given client-final-without-proof in out[0..wp_len), append ",p=<proof>"
 * and remember the server signature we expect.  Returns the total length.
 */
static int
client_append_proof(struct scram_client *c, const char *server_first,
		    size_t sf_len, char *out, size_t wp_len, size_t outlen)
{
	char auth[sizeof(c->first_bare) + 2 * SCRAM_MAX_MESSAGE + 2];
	uint8_t stored[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN];
	size_t alen, i;
	int n, rc = -1;

	alen = auth_message(auth, sizeof(auth), c->first_bare,
			    c->first_bare_len, server_first, sf_len, out,
			    wp_len);
	if (alen == 0 || outlen < wp_len + 3 ||
	    scram_sha256(c->client_key, SCRAM_KEY_LEN, stored) < 0 ||
	    scram_hmac(stored, SCRAM_KEY_LEN, auth, alen, sig) < 0 ||
	    scram_hmac(c->server_key, SCRAM_KEY_LEN, auth, alen,
		       c->server_signature) < 0)
		goto out;
	for (i = 0; i < SCRAM_KEY_LEN; i++)
		sig[i] ^= c->client_key[i];	/* ClientProof */
	memcpy(out + wp_len, ",p=", 3);
	n = b64_encode(sig, SCRAM_KEY_LEN, out + wp_len + 3,
		       outlen - wp_len - 3);
	if (n < 0)
		goto out;
	rc = (int)wp_len + 3 + n;
out:
	OPENSSL_cleanse(sig, sizeof(sig));
	return rc;
}

int
scram_client_final(struct scram_client *c, const char *server_first,
		   size_t len, char *out, size_t outlen, char *err,
		   size_t errlen)
{
	struct scram_server_first_fields f;
	int n;

	if (c == NULL || server_first == NULL || out == NULL ||
	    c->state != SCRAM_ST_FIRST) {
		scram_err(err, errlen, "SCRAM client used out of order");
		return -1;
	}
	c->state = SCRAM_ST_FAILED;
	if (len > SCRAM_MAX_MESSAGE || memchr(server_first, '\0', len)) {
		scram_err(err, errlen, "malformed SCRAM server-first message");
		return -1;
	}
	if (client_parse_server_first(c, server_first, len, &f, err, errlen) <
	    0)
		return -1;
	if (c->expect_iterations != 0 &&
	    (f.iterations != c->expect_iterations ||
	     f.salt_len != c->expect_salt_len ||
	     memcmp(f.salt, c->expect_salt, f.salt_len) != 0)) {
		scram_err(err, errlen,
			  "upstream SCRAM secret differs from the proxy's "
			  "(salt or iteration count); cannot log in with "
			  "the client's key");
		return -1;
	}
	if (!c->have_keys &&
	    keys_from_password(c->password, c->password_len, f.salt,
			       f.salt_len, f.iterations, c->client_key,
			       c->server_key) < 0) {
		scram_err(err, errlen, "SCRAM key derivation failed");
		return -1;
	}
	n = snprintf(out, outlen, "c=" SCRAM_CBIND_N ",r=%.*s",
		     (int)f.nonce_len, f.nonce);
	if (n < 0 || (size_t)n >= outlen ||
	    (n = client_append_proof(c, server_first, len, out, (size_t)n,
				     outlen)) < 0) {
		scram_err(err, errlen, "SCRAM client-final does not fit");
		return -1;
	}
	c->state = SCRAM_ST_FINAL;
	return n;
}

/* Copy an "e=" reason into err, printable ASCII only: it is untrusted. */
static void
client_server_error(const char *v, size_t vlen, char *err, size_t errlen)
{
	char clean[128];
	size_t i;

	if (vlen >= sizeof(clean))
		vlen = sizeof(clean) - 1;
	for (i = 0; i < vlen; i++)
		clean[i] = (v[i] >= 0x20 && v[i] < 0x7f) ? v[i] : '?';
	clean[vlen] = '\0';
	scram_err(err, errlen, "SCRAM server error: %s", clean);
}

int
scram_client_verify(struct scram_client *c, const char *server_final,
		    size_t len, char *err, size_t errlen)
{
	struct scram_cursor cur;
	uint8_t sig[SCRAM_KEY_LEN];
	const char *v;
	size_t vlen;

	if (c == NULL || server_final == NULL || c->state != SCRAM_ST_FINAL) {
		scram_err(err, errlen, "SCRAM client used out of order");
		return -1;
	}
	c->state = SCRAM_ST_FAILED;
	cursor_init(&cur, server_final, len);
	if (len <= SCRAM_MAX_MESSAGE &&
	    cursor_attr(&cur, 'e', &v, &vlen) == 0) {
		client_server_error(v, vlen, err, errlen);
		return -1;
	}
	if (len > SCRAM_MAX_MESSAGE || cursor_attr(&cur, 'v', &v, &vlen) < 0 ||
	    b64_decode(v, vlen, sig, sizeof(sig)) != SCRAM_KEY_LEN ||
	    !cursor_done(&cur)) {
		scram_err(err, errlen, "malformed SCRAM server-final message");
		return -1;
	}
	if (CRYPTO_memcmp(sig, c->server_signature, SCRAM_KEY_LEN) != 0) {
		scram_err(err, errlen,
			  "invalid SCRAM server signature: the server "
			  "does not know the password");
		return -1;
	}
	c->state = SCRAM_ST_DONE;
	return 0;
}

void
scram_client_clear(struct scram_client *c)
{
	if (c != NULL)
		OPENSSL_cleanse(c, sizeof(*c));
}

/* ---- server ------------------------------------------------------------- */

void
scram_server_init(struct scram_server *s, const struct scram_secret *secret)
{
	memset(s, 0, sizeof(*s));
	s->secret = *secret;
}

int
scram_server_set_nonce(struct scram_server *s, const char *nonce)
{
	size_t len;

	if (s == NULL || nonce == NULL || s->state != SCRAM_ST_INIT)
		return -1;
	len = strlen(nonce);
	if (len > SCRAM_MAX_OWN_NONCE || !nonce_valid(nonce, len))
		return -1;
	memcpy(s->own_nonce, nonce, len + 1);
	return 0;
}

/*
 * Parse the gs2 header ("n,," or "y,,") and return where client-first-bare
 * starts, or NULL.  Channel binding and authzid are refused, as PG does
 * on a connection where it does not offer SCRAM-SHA-256-PLUS.
 */
static const char *
server_parse_gs2(struct scram_server *s, const char *msg, size_t len,
		 char *err, size_t errlen)
{
	if (len >= 1 && msg[0] == 'p') {
		scram_err(err, errlen,
			  "SCRAM channel binding is not supported");
		return NULL;
	}
	if (len < 3 || (msg[0] != 'n' && msg[0] != 'y') || msg[1] != ',') {
		scram_err(err, errlen, "malformed SCRAM message: gs2 header");
		return NULL;
	}
	if (msg[2] == 'a') {
		scram_err(err, errlen,
			  "SCRAM authorization identity is not supported");
		return NULL;
	}
	if (msg[2] != ',') {
		scram_err(err, errlen, "malformed SCRAM message: gs2 header");
		return NULL;
	}
	s->cbind_flag = msg[0];
	return msg + 3;
}

/* Parse client-first-bare "n=<ignored>,r=<nonce>[,ext...]"; get the nonce. */
static int
server_parse_bare(const char *bare, size_t len, const char **nonce,
		  size_t *nonce_len, char *err, size_t errlen)
{
	struct scram_cursor cur;
	const char *v;
	size_t vlen;
	char attr;

	cursor_init(&cur, bare, len);
	if (len > 0 && bare[0] == 'm') {
		scram_err(err, errlen, "unsupported SCRAM extension 'm'");
		return -1;
	}
	if (cursor_attr(&cur, 'n', &v, &vlen) < 0 ||
	    cursor_attr(&cur, 'r', nonce, nonce_len) < 0 ||
	    !nonce_valid(*nonce, *nonce_len)) {
		scram_err(err, errlen, "malformed SCRAM client-first message");
		return -1;
	}
	while (!cursor_done(&cur)) {
		if (cursor_any_attr(&cur, &attr) < 0) {
			scram_err(err, errlen,
				  "malformed SCRAM client-first extension");
			return -1;
		}
	}
	return 0;
}

/* Write "r=<cnonce><snonce>,s=<salt>,i=<n>" into s->server_first. */
static int
server_build_first(struct scram_server *s, const char *cnonce,
		   size_t cnonce_len)
{
	char salt[SCRAM_B64_LEN(SCRAM_MAX_SALT_LEN) + 1];
	char snonce[SCRAM_MAX_OWN_NONCE + 1];
	uint8_t raw[SCRAM_RAW_NONCE_LEN];
	int n;

	if (s->own_nonce[0] != '\0')
		memcpy(snonce, s->own_nonce, sizeof(snonce));
	else if (RAND_bytes(raw, sizeof(raw)) != 1 ||
		 b64_encode(raw, sizeof(raw), snonce, sizeof(snonce)) < 0)
		return -1;
	if (s->secret.salt_len == 0 ||
	    s->secret.salt_len > SCRAM_MAX_SALT_LEN ||
	    b64_encode(s->secret.salt, s->secret.salt_len, salt,
		       sizeof(salt)) < 0)
		return -1;
	n = snprintf(s->server_first, sizeof(s->server_first),
		     "r=%.*s%s,s=%s,i=%d", (int)cnonce_len, cnonce, snonce,
		     salt, s->secret.iterations);
	if (n < 0 || (size_t)n >= sizeof(s->server_first))
		return -1;
	s->server_first_len = (size_t)n;
	s->nonce_len = cnonce_len + strlen(snonce);
	return 0;
}

int
scram_server_first(struct scram_server *s, const char *client_first,
		   size_t len, char *out, size_t outlen, char *err,
		   size_t errlen)
{
	const char *bare, *cnonce;
	size_t bare_len, cnonce_len;

	if (s == NULL || client_first == NULL || out == NULL ||
	    s->state != SCRAM_ST_INIT) {
		scram_err(err, errlen, "SCRAM server used out of order");
		return -1;
	}
	s->state = SCRAM_ST_FAILED;
	if (len > SCRAM_MAX_MESSAGE || memchr(client_first, '\0', len)) {
		scram_err(err, errlen, "malformed SCRAM client-first message");
		return -1;
	}
	bare = server_parse_gs2(s, client_first, len, err, errlen);
	if (bare == NULL)
		return -1;
	bare_len = len - (size_t)(bare - client_first);
	if (server_parse_bare(bare, bare_len, &cnonce, &cnonce_len, err,
			      errlen) < 0)
		return -1;
	if (server_build_first(s, cnonce, cnonce_len) < 0 ||
	    outlen <= s->server_first_len) {
		scram_err(err, errlen, "SCRAM server-first does not fit");
		return -1;
	}
	memcpy(s->client_first_bare, bare, bare_len);
	s->client_first_bare_len = bare_len;
	memcpy(out, s->server_first, s->server_first_len + 1);
	s->state = SCRAM_ST_FIRST;
	return (int)s->server_first_len;
}

/*
 * Parse "c=<cbind>,r=<nonce>[,ext...],p=<proof>".  Sets *wp_len to the
 * length of client-final-without-proof (everything before ",p=").
 */
static int
server_parse_final(const struct scram_server *s, const char *msg, size_t len,
		   uint8_t proof[SCRAM_KEY_LEN], size_t *wp_len, char *err,
		   size_t errlen)
{
	const char *want = s->cbind_flag == 'y' ? SCRAM_CBIND_Y : SCRAM_CBIND_N;
	struct scram_cursor cur;
	const char *v, *p_attr;
	size_t vlen;
	char attr;

	cursor_init(&cur, msg, len);
	if (cursor_attr(&cur, 'c', &v, &vlen) < 0 || vlen != strlen(want) ||
	    memcmp(v, want, vlen) != 0) {
		scram_err(err, errlen, "SCRAM channel binding check failed");
		return -1;
	}
	if (cursor_attr(&cur, 'r', &v, &vlen) < 0 || vlen != s->nonce_len ||
	    memcmp(v, s->server_first + 2, vlen) != 0) {
		scram_err(err, errlen, "SCRAM nonce mismatch");
		return -1;
	}
	do {
		p_attr = cur.p;
		if (cursor_any_attr(&cur, &attr) < 0) {
			scram_err(err, errlen,
				  "malformed SCRAM client-final message");
			return -1;
		}
	} while (attr != 'p');
	cur.p = p_attr;
	if (cursor_attr(&cur, 'p', &v, &vlen) < 0 ||
	    b64_decode(v, vlen, proof, SCRAM_KEY_LEN) != SCRAM_KEY_LEN ||
	    !cursor_done(&cur)) {
		scram_err(err, errlen, "malformed SCRAM client proof");
		return -1;
	}
	/* Without proof = everything before the ',' that precedes p=. */
	*wp_len = (size_t)(p_attr - msg) - 1;
	return 0;
}

/*
 * ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage) must hash to
 * StoredKey; compared in constant time.  Returns 0, SCRAM_BAD_PASSWORD
 * or -1, and on 0 fills s->client_key and the server signature.
 */
static int
server_check_proof(struct scram_server *s, const char *auth, size_t alen,
		   const uint8_t proof[SCRAM_KEY_LEN],
		   uint8_t server_sig[SCRAM_KEY_LEN])
{
	uint8_t key[SCRAM_KEY_LEN], hashed[SCRAM_KEY_LEN];
	size_t i;
	int rc = -1;

	if (scram_hmac(s->secret.stored_key, SCRAM_KEY_LEN, auth, alen, key) <
		    0 ||
	    scram_hmac(s->secret.server_key, SCRAM_KEY_LEN, auth, alen,
		       server_sig) < 0)
		goto out;
	for (i = 0; i < SCRAM_KEY_LEN; i++)
		key[i] ^= proof[i];
	if (scram_sha256(key, SCRAM_KEY_LEN, hashed) < 0)
		goto out;
	if (CRYPTO_memcmp(hashed, s->secret.stored_key, SCRAM_KEY_LEN) != 0) {
		rc = SCRAM_BAD_PASSWORD;
		goto out;
	}
	memcpy(s->client_key, key, SCRAM_KEY_LEN);
	rc = 0;
out:
	OPENSSL_cleanse(key, sizeof(key));
	return rc;
}

int
scram_server_final(struct scram_server *s, const char *client_final,
		   size_t len, char *out, size_t outlen, char *err,
		   size_t errlen)
{
	char auth[sizeof(s->client_first_bare) + sizeof(s->server_first) +
		  SCRAM_MAX_MESSAGE + 2];
	uint8_t proof[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN];
	size_t wp_len, alen;
	int rc;

	if (s == NULL || client_final == NULL || out == NULL ||
	    s->state != SCRAM_ST_FIRST) {
		scram_err(err, errlen, "SCRAM server used out of order");
		return -1;
	}
	s->state = SCRAM_ST_FAILED;
	if (outlen < 2 + SCRAM_KEY_B64_LEN + 1) {
		scram_err(err, errlen, "SCRAM server-final does not fit");
		return -1;
	}
	if (len > SCRAM_MAX_MESSAGE || memchr(client_final, '\0', len)) {
		scram_err(err, errlen, "malformed SCRAM client-final message");
		return -1;
	}
	if (server_parse_final(s, client_final, len, proof, &wp_len, err,
			       errlen) < 0)
		return -1;
	alen = auth_message(auth, sizeof(auth), s->client_first_bare,
			    s->client_first_bare_len, s->server_first,
			    s->server_first_len, client_final, wp_len);
	rc = alen == 0 ? -1 : server_check_proof(s, auth, alen, proof, sig);
	if (rc == SCRAM_BAD_PASSWORD)
		scram_err(err, errlen, "SCRAM authentication failed");
	else if (rc < 0)
		scram_err(err, errlen, "SCRAM proof check failed");
	if (rc < 0)
		return rc;
	memcpy(out, "v=", 2);
	rc = b64_encode(sig, SCRAM_KEY_LEN, out + 2, outlen - 2);
	s->state = SCRAM_ST_DONE;
	return rc + 2;
}

const uint8_t *
scram_server_client_key(const struct scram_server *s)
{
	if (s == NULL || s->state != SCRAM_ST_DONE)
		return NULL;
	return s->client_key;
}

void
scram_server_clear(struct scram_server *s)
{
	if (s != NULL)
		OPENSSL_cleanse(s, sizeof(*s));
}
