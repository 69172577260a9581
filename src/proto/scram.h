/*
 * scram.h - SCRAM-SHA-256 (RFC 5802/7677) as PostgreSQL speaks it, for
 * both directions of the proxy: scram_client logs the proxy in to the
 * upstream server, scram_server checks a connecting client against a
 * pg_authid-style secret.  Pure functions over SASL payloads (the caller
 * unwraps/wraps the AuthenticationSASL* and SASLResponse messages); no I/O.
 * The caller owns every struct (embed or allocate it); nothing here
 * allocates memory that outlives a call.  Different objects may be used
 * on different threads at once; one object is not thread-safe.
 *
 * No channel binding: the gs2 header is "n,," or "y,,"; we never advertise
 * SCRAM-SHA-256-PLUS, so a 'y' client is no downgrade.  The user name in
 * the messages is ignored (PostgreSQL takes it from the startup packet);
 * the client sends "n=".
 *
 * SASLprep limitation: PostgreSQL normalises the password with SASLprep
 * (RFC 4013) and falls back to the raw bytes when that fails.  We always
 * use the raw bytes.  For ASCII passwords this is exactly what PostgreSQL
 * does.  A UTF-8 password differs from PostgreSQL only if it is not in
 * NFKC form or contains characters SASLprep maps (non-ASCII spaces, soft
 * hyphen, zero-width characters); such users fail to authenticate.
 *
 * Client flow:                       Server flow:
 *   scram_client_init[_keys|_secret]   scram_server_init(secret)
 *   scram_client_first  -> send        recv -> scram_server_first  -> send
 *   recv -> scram_client_final -> send recv -> scram_server_final  -> send
 *   recv -> scram_client_verify        scram_server_client_key (optional)
 *   scram_client_clear                 scram_server_clear
 *
 * Functions that write a message NUL-terminate 'out' and return the length
 * without the NUL, or -1 (out too small, malformed input, RAND/crypto
 * failure, call out of order) with a reason in 'err' (may be NULL).
 */
#ifndef PGVALET_PROTO_SCRAM_H
#define PGVALET_PROTO_SCRAM_H

#include <stddef.h>
#include <stdint.h>

#ifndef MUST_CHECK
#define MUST_CHECK __attribute__((warn_unused_result))
#endif

#define SCRAM_KEY_LEN 32
#define SCRAM_MAX_SALT_LEN 64
/* Bounds PBKDF2 work an upstream (or a secret) can make us do. */
#define SCRAM_MAX_ITERATIONS 1000000
#define SCRAM_DEFAULT_ITERATIONS 4096
/* Longest SASL payload we accept from the network; PG's are ~100 bytes. */
#define SCRAM_MAX_MESSAGE 1024
#define SCRAM_MAX_PASSWORD 1024
/* Longest nonce we generate or accept via scram_*_set_nonce. */
#define SCRAM_MAX_OWN_NONCE 64
/* Longest text scram_secret_format writes, NUL included. */
#define SCRAM_SECRET_TEXT_MAX 256

/* scram_server_final's result for a well-formed but wrong proof. */
#define SCRAM_BAD_PASSWORD (-2)

/* What pg_authid.rolpassword holds for a SCRAM user, decoded. */
struct scram_secret {
	int iterations;
	uint8_t salt[SCRAM_MAX_SALT_LEN];
	size_t salt_len;
	uint8_t stored_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
};

/* Fields are private to scram.c. */
struct scram_client {
	int state;
	int have_keys;		/* keys given: no PBKDF2 */
	char password[SCRAM_MAX_PASSWORD + 1];
	size_t password_len;
	uint8_t client_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
	uint8_t server_signature[SCRAM_KEY_LEN];	/* expected v= */
	int expect_iterations;	/* 0: accept whatever the server sends */
	uint8_t expect_salt[SCRAM_MAX_SALT_LEN];
	size_t expect_salt_len;
	/* client-first-bare "n=<user>,r=<nonce>" */
	char first_bare[16 + 2 * SCRAM_MAX_OWN_NONCE];
	size_t first_bare_len;
	size_t nonce_off;	/* client nonce = first_bare[nonce_off..len) */
};

/* Fields are private to scram.c. */
struct scram_server {
	int state;
	char cbind_flag;	/* 'n' or 'y' */
	struct scram_secret secret;
	char client_first_bare[SCRAM_MAX_MESSAGE];
	size_t client_first_bare_len;
	char server_first[SCRAM_MAX_MESSAGE + 160];
	size_t server_first_len;
	size_t nonce_len;	/* combined nonce = server_first[2..2+len) */
	char own_nonce[SCRAM_MAX_OWN_NONCE + 1];	/* "" -> random */
	uint8_t client_key[SCRAM_KEY_LEN];
};

/* ---- secrets ---------------------------------------------------------- */

/*
 * Derive a secret from 'password' with a random 16-byte salt (RAND_bytes).
 * iterations: 1..SCRAM_MAX_ITERATIONS.  Returns 0, or -1 on bad arguments
 * or a crypto failure.
 */
MUST_CHECK int scram_secret_from_password(const char *password,
					  int iterations,
					  struct scram_secret *out);

/* The same with a caller-chosen salt (1..SCRAM_MAX_SALT_LEN bytes). */
MUST_CHECK int scram_secret_from_password_salt(const char *password,
					       int iterations,
					       const uint8_t *salt,
					       size_t salt_len,
					       struct scram_secret *out);

/*
 * Parse "SCRAM-SHA-256$<iter>:<b64salt>$<b64StoredKey>:<b64ServerKey>"
 * (NUL-terminated, as in pg_authid).  Strict: canonical base64, keys of
 * exactly 32 bytes, iterations 1..SCRAM_MAX_ITERATIONS.  0 or -1.
 */
MUST_CHECK int scram_secret_parse(const char *text, struct scram_secret *out);

/* Write the pg_authid text of 'secret' into out; its length or -1. */
MUST_CHECK int scram_secret_format(const struct scram_secret *secret,
				   char *out, size_t outlen);

/* ---- client side: the proxy logs in upstream ------------------------- */

/*
 * Start an exchange with 'password' (copied; at most SCRAM_MAX_PASSWORD
 * bytes) and a fresh nonce of 18 random bytes in base64.  0 or -1.
 */
MUST_CHECK int scram_client_init(struct scram_client *c, const char *password);

/*
 * Start an exchange from keys instead of a password: the ClientKey
 * recovered by scram_server_client_key and the ServerKey of the same
 * secret.  The server's salt and iterations are not checked (a mismatch
 * shows up as the server rejecting us or as a bad server signature); use
 * scram_client_init_secret to fail early with a clear error.  0 or -1.
 */
MUST_CHECK int scram_client_init_keys(struct scram_client *c,
				      const uint8_t client_key[SCRAM_KEY_LEN],
				      const uint8_t server_key[SCRAM_KEY_LEN]);

/*
 * scram_client_init_keys with the server key, salt and iterations taken
 * from 'secret': scram_client_final then fails with "upstream SCRAM
 * secret differs ..." if the server sends another salt or iteration
 * count.  0 or -1.
 */
MUST_CHECK int scram_client_init_secret(struct scram_client *c,
					const uint8_t client_key[SCRAM_KEY_LEN],
					const struct scram_secret *secret);

/*
 * For tests (RFC 7677 vectors): after init and before scram_client_first,
 * replace the random nonce and the empty user name.  user: no ',' or '='.
 * nonce: 1..SCRAM_MAX_OWN_NONCE printable ASCII characters except ','.
 * 0 or -1.
 */
MUST_CHECK int scram_client_set_nonce(struct scram_client *c, const char *user,
				      const char *nonce);

/* Write client-first-message "n,,n=,r=<nonce>"; its length or -1. */
MUST_CHECK int scram_client_first(struct scram_client *c, char *out,
				  size_t outlen);

/*
 * Parse server-first-message (r=,s=,i=; 'len' bytes, need not be
 * NUL-terminated), check that its nonce extends ours, compute the proof
 * (PBKDF2 runs here unless initialised from keys) and write
 * client-final-message "c=biws,r=...,p=...".  Its length or -1 with err.
 */
MUST_CHECK int scram_client_final(struct scram_client *c,
				  const char *server_first, size_t len,
				  char *out, size_t outlen, char *err,
				  size_t errlen);

/*
 * Check server-final-message: "v=<signature>" must match (constant
 * time); "e=<reason>" is reported in err.  0 when the server proved it
 * knows the secret, else -1 with err.
 */
MUST_CHECK int scram_client_verify(struct scram_client *c,
				   const char *server_final, size_t len,
				   char *err, size_t errlen);

/* Wipe password and keys (OPENSSL_cleanse); 'c' may be re-initialised. */
void scram_client_clear(struct scram_client *c);

/* ---- server side: the proxy checks a connecting client --------------- */

/* Start an exchange against 'secret' (copied). */
void scram_server_init(struct scram_server *s,
		       const struct scram_secret *secret);

/*
 * For tests: after init and before scram_server_first, use 'nonce'
 * (1..SCRAM_MAX_OWN_NONCE printable ASCII except ',') as the server's
 * part of the nonce instead of 18 random bytes.  0 or -1.
 */
MUST_CHECK int scram_server_set_nonce(struct scram_server *s,
				      const char *nonce);

/*
 * Parse client-first-message ('len' bytes, at most SCRAM_MAX_MESSAGE)
 * and write server-first-message "r=<nonce>,s=<salt>,i=<iter>".  Rejects
 * channel binding ('p='), an authzid, the 'm' extension and malformed
 * input.  Its length or -1 with err.
 */
MUST_CHECK int scram_server_first(struct scram_server *s,
				  const char *client_first, size_t len,
				  char *out, size_t outlen, char *err,
				  size_t errlen);

/*
 * Parse client-final-message, check the channel-binding echo and the
 * nonce, verify the proof in constant time.  On success writes
 * server-final-message "v=..." and returns its length; a wrong password
 * returns SCRAM_BAD_PASSWORD (err set, out untouched; PG would answer
 * with FATAL 28P01); malformed input returns -1 with err.
 */
MUST_CHECK int scram_server_final(struct scram_server *s,
				  const char *client_final, size_t len,
				  char *out, size_t outlen, char *err,
				  size_t errlen);

/*
 * After scram_server_final succeeded: the ClientKey the client proved
 * (proof XOR ClientSignature), SCRAM_KEY_LEN bytes inside 's'; feed it
 * to scram_client_init_secret to log in upstream as this user when the
 * upstream holds the same secret (PgBouncer's trick).  NULL otherwise.
 */
const uint8_t *scram_server_client_key(const struct scram_server *s);

/* Wipe the recovered key and the secret copy (OPENSSL_cleanse). */
void scram_server_clear(struct scram_server *s);

#endif /* PGVALET_PROTO_SCRAM_H */
