/*
 * md5auth.c - PostgreSQL MD5 authentication hashes; see md5auth.h.
 */
#include "proto/md5auth.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

enum { MD5AUTH_HEX_LEN = 32, MD5AUTH_RAW_LEN = 16 };

/* out = "md5" + hex(MD5(a || b)), NUL-terminated; 0 or -1. */
static int
md5auth_hash(const void *a, size_t alen, const void *b, size_t blen,
	     char out[MD5AUTH_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[EVP_MAX_MD_SIZE];
	unsigned int rawlen = 0;
	EVP_MD_CTX *ctx;
	int ok;
	size_t i;

	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return -1;
	ok = EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, a, alen) == 1 &&
	     EVP_DigestUpdate(ctx, b, blen) == 1 &&
	     EVP_DigestFinal_ex(ctx, raw, &rawlen) == 1 &&
	     rawlen == MD5AUTH_RAW_LEN;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	memcpy(out, "md5", 3);
	for (i = 0; i < MD5AUTH_RAW_LEN; i++) {
		out[3 + 2 * i] = hex[raw[i] >> 4];
		out[4 + 2 * i] = hex[raw[i] & 0xf];
	}
	out[MD5AUTH_LEN] = '\0';
	return 0;
}

void
md5auth_secret(const char *user, const char *password,
	       char out[MD5AUTH_LEN + 1])
{
	if (md5auth_hash(password, strlen(password), user, strlen(user), out) <
	    0)
		out[0] = '\0';
}

/* A stored secret is "md5" + 32 lowercase hex digits, as PG writes it. */
static int
md5auth_secret_valid(const char *secret)
{
	size_t i;

	if (strncmp(secret, "md5", 3) != 0 ||
	    strnlen(secret, MD5AUTH_LEN + 1) != MD5AUTH_LEN)
		return 0;
	for (i = 3; i < MD5AUTH_LEN; i++) {
		if (!((secret[i] >= '0' && secret[i] <= '9') ||
		      (secret[i] >= 'a' && secret[i] <= 'f')))
			return 0;
	}
	return 1;
}

int
md5auth_response_from_secret(const char *secret, const uint8_t salt[4],
			     char out[MD5AUTH_LEN + 1])
{
	if (secret == NULL || !md5auth_secret_valid(secret))
		return -1;
	/* The outer hash covers the hex digits only, without "md5". */
	return md5auth_hash(secret + 3, MD5AUTH_HEX_LEN, salt, 4, out);
}

void
md5auth_response(const char *user, const char *password,
		 const uint8_t salt[4], char out[MD5AUTH_LEN + 1])
{
	char secret[MD5AUTH_LEN + 1];

	md5auth_secret(user, password, secret);
	if (secret[0] == '\0' ||
	    md5auth_response_from_secret(secret, salt, out) < 0)
		out[0] = '\0';
	OPENSSL_cleanse(secret, sizeof(secret));
}

int
md5auth_verify(const char *secret, const uint8_t salt[4],
	       const char *response, size_t len)
{
	char expected[MD5AUTH_LEN + 1];
	int rc = -1;

	if (response == NULL)
		return -1;
	if (len == MD5AUTH_LEN + 1 && response[MD5AUTH_LEN] == '\0')
		len = MD5AUTH_LEN;
	if (len == MD5AUTH_LEN &&
	    md5auth_response_from_secret(secret, salt, expected) == 0 &&
	    CRYPTO_memcmp(expected, response, MD5AUTH_LEN) == 0)
		rc = 0;
	OPENSSL_cleanse(expected, sizeof(expected));
	return rc;
}
