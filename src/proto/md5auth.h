/*
 * md5auth.h - PostgreSQL's MD5 password authentication, both directions:
 * the response the proxy sends upstream, and checking a client's response
 * against a pg_authid "md5..." secret.  Pure functions over strings (no
 * I/O, no allocation, no state): safe on any thread.  The caller owns all
 * buffers.  MD5 comes from OpenSSL's default provider; where it is
 * unavailable (FIPS mode) the functions report failure as documented.
 */
#ifndef PGVALET_PROTO_MD5AUTH_H
#define PGVALET_PROTO_MD5AUTH_H

#include <stddef.h>
#include <stdint.h>

#ifndef MUST_CHECK
#define MUST_CHECK __attribute__((warn_unused_result))
#endif

/* "md5" + 32 hex digits; buffers hold one more byte for the NUL. */
#define MD5AUTH_LEN 35

/*
 * The AuthenticationMD5Password response:
 * "md5" + md5hex(md5hex(password + user) + salt), NUL-terminated in out.
 * On an OpenSSL failure out is "" (never a valid response).
 */
void md5auth_response(const char *user, const char *password,
		      const uint8_t salt[4], char out[MD5AUTH_LEN + 1]);

/*
 * The pg_authid secret "md5" + md5hex(password + user), NUL-terminated.
 * On an OpenSSL failure out is "".
 */
void md5auth_secret(const char *user, const char *password,
		    char out[MD5AUTH_LEN + 1]);

/*
 * The response computed from a stored secret instead of the password
 * (PgBouncer's trick: log in upstream with only the hash).  secret must
 * be "md5" + 32 lowercase hex digits.  0, or -1 (bad secret, OpenSSL).
 */
MUST_CHECK int md5auth_response_from_secret(const char *secret,
					    const uint8_t salt[4],
					    char out[MD5AUTH_LEN + 1]);

/*
 * Check a client's PasswordMessage payload ('len' bytes, need not be
 * NUL-terminated; a trailing NUL is tolerated) against 'secret' and the
 * salt we sent, in constant time.  0 if it matches, else -1.
 */
MUST_CHECK int md5auth_verify(const char *secret, const uint8_t salt[4],
			      const char *response, size_t len);

#endif /* PGVALET_PROTO_MD5AUTH_H */
