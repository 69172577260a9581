/*
 * fuzz_pgurl.c - the postgresql:// URL parser, display and redaction
 * (core/pgurl.h) on arbitrary text.  URLs come from configuration, not
 * the network, but a crash or a leaked password in a log line is still a
 * bug.  The input is NUL-terminated in an exact-size heap copy.
 */
#include <string.h>

#include "core/pgurl.h"
#include "fuzz.h"

static void
check_terminated(const char *s, size_t cap)
{
	FUZZ_CHECK(memchr(s, 0, cap) != NULL);
}

/* What a redacted URL must still say: everything but the password. */
static void
check_redacted(const struct pg_url *u, const char *redacted)
{
	struct pg_url r;
	char err[256];

	FUZZ_CHECK(pgurl_parse(redacted, &r, err, sizeof(err)) == 0);
	FUZZ_CHECK(r.password[0] == '\0');
	FUZZ_CHECK(strcmp(r.host, u->host) == 0);
	FUZZ_CHECK(r.port == u->port);
	FUZZ_CHECK(strcmp(r.user, u->user) == 0);
	FUZZ_CHECK(strcmp(r.dbname, u->dbname) == 0);
	FUZZ_CHECK(r.sslmode == u->sslmode);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_url u;
	char err[256], small[24], big[4096];
	char *url = malloc(size + 1);
	int rc;

	if (!url)
		return 0;
	memcpy(url, data, size);
	url[size] = 0;

	err[0] = 0;
	rc = pgurl_parse(url, &u, err, sizeof(err));
	check_terminated(err, sizeof(err));
	if (rc == 0) {
		check_terminated(u.host, sizeof(u.host));
		check_terminated(u.user, sizeof(u.user));
		check_terminated(u.password, sizeof(u.password));
		check_terminated(u.dbname, sizeof(u.dbname));
		check_terminated(u.sslrootcert, sizeof(u.sslrootcert));
		FUZZ_CHECK(u.host[0] != '\0');
		FUZZ_CHECK(u.port >= 1 && u.port <= 65535);
		FUZZ_CHECK(strcmp(pgurl_sslmode_name(u.sslmode), "?") != 0);
		pgurl_display(&u, big, sizeof(big));
		check_terminated(big, sizeof(big));
		pgurl_display(&u, small, sizeof(small));
		FUZZ_CHECK(strlen(small) < sizeof(small));
		pgurl_display(&u, small, 1);
		FUZZ_CHECK(small[0] == '\0');
	} else {
		FUZZ_CHECK(err[0] != '\0');
	}

	rc = pgurl_redact(url, big, sizeof(big));
	check_terminated(big, sizeof(big));
	if (rc == 0 && pgurl_parse(url, &u, err, sizeof(err)) == 0)
		check_redacted(&u, big);
	rc = pgurl_redact(url, small, sizeof(small));
	FUZZ_CHECK(strlen(small) < sizeof(small));
	if (rc != 0)
		FUZZ_CHECK(small[0] == '\0');
	free(url);
	return 0;
}
