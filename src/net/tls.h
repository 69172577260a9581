/*
 * tls.h - OpenSSL contexts and non-blocking handshakes.
 *
 * Contexts are made once at start-up and shared read-only by the workers
 * (OpenSSL 3 contexts are thread-safe once configured).
 */
#ifndef PGVALET_NET_TLS_H
#define PGVALET_NET_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

#include "core/pgurl.h"

struct conn;

/* Client-facing context from a PEM certificate chain and key. */
SSL_CTX *tls_server_ctx(const char *cert, const char *key, char *err,
			size_t errlen);
/* Upstream context honouring sslmode and sslrootcert/cert/key. */
SSL_CTX *tls_client_ctx(const struct pg_url *url, char *err, size_t errlen);
/* Attach a TLS session to c; accept or connect side; host for verify-full. */
int tls_attach(struct conn *c, SSL_CTX *ctx, int server_side,
	       const char *verify_host);
/* Drive the handshake: 0 done, 1 waiting for I/O, -1 failed (err set). */
int tls_handshake(struct conn *c, char *err, size_t errlen);

#endif
