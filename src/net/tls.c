#include "net/tls.h"

#include <stdio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "net/conn.h"

static void
tls_last_error(const char *what, char *err, size_t errlen)
{
	char detail[256];
	unsigned long e = ERR_get_error();

	if (e)
		ERR_error_string_n(e, detail, sizeof(detail));
	else
		snprintf(detail, sizeof(detail), "unknown error");
	snprintf(err, errlen, "%s: %s", what, detail);
	ERR_clear_error();
}

SSL_CTX *
tls_server_ctx(const char *cert, const char *key, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx) {
		tls_last_error("TLS context", err, errlen);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
			 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
			 SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		tls_last_error("tls-cert", err, errlen);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		tls_last_error("tls-key", err, errlen);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *
tls_client_ctx(const struct pg_url *url, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx) {
		tls_last_error("TLS context", err, errlen);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
			 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
			 SSL_MODE_RELEASE_BUFFERS);
	if (url->sslmode >= SSLMODE_VERIFY_CA) {
		if (!url->sslrootcert[0] ||
		    SSL_CTX_load_verify_locations(ctx, url->sslrootcert,
						  NULL) != 1) {
			tls_last_error("sslrootcert (needed by verify-ca/"
				       "verify-full)", err, errlen);
			goto fail;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	if (url->sslcert[0] &&
	    (SSL_CTX_use_certificate_chain_file(ctx, url->sslcert) != 1 ||
	     SSL_CTX_use_PrivateKey_file(ctx, url->sslkey[0] ? url->sslkey :
					 url->sslcert, SSL_FILETYPE_PEM) != 1)) {
		tls_last_error("sslcert/sslkey", err, errlen);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int
tls_attach(struct conn *c, SSL_CTX *ctx, int server_side,
	   const char *verify_host)
{
	c->ssl = SSL_new(ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
		return -1;
	if (server_side) {
		SSL_set_accept_state(c->ssl);
		return 0;
	}
	SSL_set_connect_state(c->ssl);
	if (verify_host) {
		SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(c->ssl, verify_host) != 1)
			return -1;
		SSL_set_tlsext_host_name(c->ssl, verify_host);
	}
	return 0;
}

int
tls_handshake(struct conn *c, char *err, size_t errlen)
{
	int r = SSL_do_handshake(c->ssl);
	int e;

	if (r == 1)
		return 0;
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 1;
	tls_last_error("TLS handshake", err, errlen);
	return -1;
}
