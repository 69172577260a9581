/*
 * pgurl.h - parse a libpq-style postgresql:// URL into fixed-size fields.
 *
 * Pure functions over caller-owned memory: nothing is allocated, nothing
 * global is touched, so any thread may call them.  A field that does not
 * fit its buffer is an error, never a silent truncation.
 */
#ifndef PGVALET_CORE_PGURL_H
#define PGVALET_CORE_PGURL_H

#include <stddef.h>

enum ssl_mode {
	SSLMODE_DISABLE = 0,
	SSLMODE_ALLOW,
	SSLMODE_PREFER,
	SSLMODE_REQUIRE,
	SSLMODE_VERIFY_CA,
	SSLMODE_VERIFY_FULL,
};

/* A parsed postgresql:// URL; every string is NUL-terminated. */
struct pg_url {
	char host[256];		/* "" -> 127.0.0.1; may be a unix socket dir */
	int port;		/* 5432 when absent */
	char user[128];		/* "" when absent */
	char password[256];	/* "" when absent */
	char dbname[128];	/* defaults to user */
	enum ssl_mode sslmode;	/* default SSLMODE_PREFER, like libpq */
	char sslrootcert[512];
	char sslcert[512];
	char sslkey[512];
};

/*
 * Parse 'url' (postgresql:// or postgres://) into *out.  user, password,
 * host, dbname and query values are percent-decoded.  Query parameters:
 * sslmode, sslrootcert, sslcert, sslkey, and libpq's host, port, user,
 * password and dbname (which override the URL's parts); the connection
 * knobs pgvalet sets itself (application_name, fallback_application_name,
 * connect_timeout, keepalives*, tcp_user_timeout) are accepted and
 * ignored; anything else, including options, is an error.  A raw '@'
 * after the host is refused (it means an unescaped '/', '?' or '@' in the
 * password), as is a comma-separated host list.
 * Returns 0, or -1 with a one-line message in err (which never contains
 * the password).  *out is unspecified after an error.
 */
int pgurl_parse(const char *url, struct pg_url *out, char *err,
		size_t errlen);

/*
 * Render "postgresql://user@host:port/dbname" (no password, no query) into
 * out, truncated to len - 1 bytes.  Meant for logs and messages only.
 */
void pgurl_display(const struct pg_url *u, char *out, size_t len);

/*
 * Copy 'url' into out with the password removed from the user info and
 * any password= query parameter dropped, keeping everything else as
 * written.  Returns 0, or -1 if url is not a postgresql:// URL or the
 * result does not fit in len bytes (out is then "").
 */
int pgurl_redact(const char *url, char *out, size_t len);

/* "disable", "allow", ..., "verify-full"; "?" for an unknown value. */
const char *pgurl_sslmode_name(enum ssl_mode mode);

#endif
