/*
 * fuzz_admin.c - the admin console's reading of a client's Query text
 * (pool/admin.h) on arbitrary bytes, in a heap buffer of exactly 'size'
 * bytes (no NUL after it), so ASan reports any read past the length.
 *
 *  - admin_normalise() must equal a plain reference (words of non-blank
 *    bytes upper-cased, one ' ' between, trailing ';' and blanks gone)
 *    when out is large enough; cut shorter, it must stay terminated,
 *    well formed, idempotent and a prefix of the full result (blanks
 *    aside), and equal to it whenever that fits.
 *  - admin_query() on a server with everything off must answer with
 *    whole messages only, and the answer must be the one the normalised
 *    command names: EmptyQueryResponse, a table whose rows have as many
 *    columns as its RowDescription, a no-op's tag, or error 42601 quoting
 *    the command.
 *  - With two NULs in the input ("upstream\0admin_users\0user"),
 *    admin_user_allowed() must agree with a reference split of the list.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/server.h"
#include "fuzz.h"
#include "net/buf.h"
#include "pool/admin.h"
#include "proto/msg.h"

enum { CMD_CAP = 128 };		/* admin_query's */

static struct server srv;
static bool srv_ready;

/* The normalised text, built the obvious way; its length. */
static size_t
reference(const char *text, size_t len, char *out)
{
	size_t n = 0, i = 0;

	for (;;) {
		while (i < len && isspace((unsigned char)text[i]))
			i++;
		if (i == len)
			break;
		if (n)
			out[n++] = ' ';
		while (i < len && !isspace((unsigned char)text[i]))
			out[n++] = (char)toupper((unsigned char)text[i++]);
	}
	while (n && (out[n - 1] == ';' || out[n - 1] == ' '))
		n--;
	out[n] = '\0';
	return n;
}

/* Blank-free, lower-case-free, no blank at either end or twice. */
static void
check_shape(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(!isspace((unsigned char)s[i]) || s[i] == ' ');
		FUZZ_CHECK(!(s[i] >= 'a' && s[i] <= 'z'));
		if (s[i] == ' ')
			FUZZ_CHECK(i > 0 && i + 1 < n && s[i + 1] != ' ');
	}
	FUZZ_CHECK(!n || (s[n - 1] != ' ' && s[n - 1] != ';'));
}

/* a with its blanks dropped is a prefix of b with its blanks dropped. */
static bool
prefix_but_blanks(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t i = 0, j = 0;

	for (;;) {
		while (i < alen && a[i] == ' ')
			i++;
		while (j < blen && b[j] == ' ')
			j++;
		if (i == alen)
			return true;
		if (j == blen || a[i] != b[j])
			return false;
		i++;
		j++;
	}
}

static void
check_normalise(const char *text, size_t len, size_t small_cap)
{
	char *ref = malloc(len + 1), *full = malloc(len + 2), *again;
	size_t caps[2] = { CMD_CAP, small_cap }, rlen, n, cap;
	bool has_nul = memchr(text, 0, len) != NULL;
	char *cut;

	if (!ref || !full)
		goto out;
	rlen = reference(text, len, ref);
	check_shape(ref, rlen);
	admin_normalise(text, len, full, len + 2);
	FUZZ_CHECK(memcmp(full, ref, rlen + 1) == 0);

	for (int k = 0; k < 2; k++) {
		cap = caps[k];
		if (!(cut = malloc(cap)))
			break;
		admin_normalise(text, len, cut, cap);
		FUZZ_CHECK(memchr(cut, 0, cap) != NULL);
		if (rlen < cap)
			FUZZ_CHECK(memcmp(cut, ref, rlen + 1) == 0);
		/* with a NUL inside, the text ends early: only the above */
		if (!has_nul) {
			n = strlen(cut);
			check_shape(cut, n);
			FUZZ_CHECK(prefix_but_blanks(cut, n, ref, rlen));
			if ((again = malloc(n + 1))) {
				admin_normalise(cut, n, again, n + 1);
				FUZZ_CHECK(strcmp(again, cut) == 0);
				free(again);
			}
		}
		free(cut);
	}
	admin_normalise(text, len, full, 1);	/* room for the NUL only */
	FUZZ_CHECK(full[0] == '\0');
out:
	free(ref);
	free(full);
}

/* ---- admin_query ------------------------------------------------------- */

static const char *const tables[] = {
	"SHOW POOLS", "SHOW CLIENTS", "SHOW CACHE", "SHOW ADVICE",
	"SHOW AUDIT", "SHOW NPLUS1", "SHOW HELP", "SHOW",
};
static const char *const no_ops[] = {
	"BEGIN", "COMMIT", "ROLLBACK", "SET", "RESET", "DISCARD",
};

/* What admin_query must answer to cmd: 'I', 'T', 'C' (tag) or 'E'. */
static char
expected(const char *cmd, const char **tag, const char **code)
{
	size_t w = strcspn(cmd, " ");

	*tag = NULL;
	*code = NULL;
	if (!cmd[0])
		return 'I';
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
		if (strcmp(cmd, tables[i]) == 0)
			return 'T';
	if (strcmp(cmd, "SHOW STATS") == 0 || strcmp(cmd, "SHOW SHAPES") == 0) {
		*code = "55000";	/* --stats off */
		return 'E';
	}
	for (size_t i = 0; i < sizeof(no_ops) / sizeof(no_ops[0]); i++)
		if (strlen(no_ops[i]) == w && strncmp(cmd, no_ops[i], w) == 0) {
			*tag = no_ops[i];
			return 'C';
		}
	*code = "42601";
	return 'E';
}

/* The body of a message that must hold one string and nothing else. */
static void
check_one_str(const struct msg_frame *f, const char *want)
{
	struct msg_reader r;
	const char *s;

	msg_reader_init(&r, f->body, f->body_len);
	s = msg_read_str(&r, NULL);
	FUZZ_CHECK(s && strcmp(s, want) == 0 && msg_reader_done(&r));
}

static void
check_error(const struct msg_frame *f, const char *code, const char *cmd)
{
	char want[200];
	const char *s;
	size_t n;

	s = msg_error_field(f->body, f->body_len, 'C', &n);
	FUZZ_CHECK(s && strcmp(s, code) == 0);
	s = msg_error_field(f->body, f->body_len, 'M', &n);
	FUZZ_CHECK(s && n == strlen(s));
	if (strcmp(code, "42601") == 0) {
		snprintf(want, sizeof(want), "unknown admin console command: "
			 "\"%.60s\" (try SHOW HELP)", cmd);
		FUZZ_CHECK(strcmp(s, want) == 0);
	}
}

static void
check_query(const char *text, size_t len)
{
	struct buf out = { 0 };
	struct msg_frame f = { 0 };
	struct msg_reader r;
	char cmd[CMD_CAP];
	const char *tag, *code;
	size_t off = 0, nmsg = 0;
	int16_t ncols = -1;
	char want;

	if (admin_query(&srv, &out, text, len) != 0)
		goto out;	/* out of memory */
	admin_normalise(text, len, cmd, sizeof(cmd));
	want = expected(cmd, &tag, &code);
	while (off < out.len) {
		FUZZ_CHECK(msg_frame_peek(out.data + off, out.len - off,
					  1u << 24, &f) == FRAME_OK);
		FUZZ_CHECK(f.avail == f.body_len);	/* whole */
		nmsg++;
		switch (want) {
		case 'I':
			FUZZ_CHECK(f.type == 'I' && f.body_len == 0);
			break;
		case 'C':
			FUZZ_CHECK(f.type == 'C');
			check_one_str(&f, tag);
			break;
		case 'E':
			FUZZ_CHECK(f.type == 'E');
			check_error(&f, code, cmd);
			break;
		case 'T':
			msg_reader_init(&r, f.body, f.body_len);
			if (nmsg == 1) {
				FUZZ_CHECK(f.type == 'T');
				ncols = msg_read_i16(&r);
				FUZZ_CHECK(ncols > 0 && !r.bad);
			} else if (f.type == 'D') {
				FUZZ_CHECK(msg_read_i16(&r) == ncols);
			} else {
				FUZZ_CHECK(f.type == 'C');
				check_one_str(&f, "SHOW");
			}
			break;
		}
		off += f.len;
	}
	FUZZ_CHECK(off == out.len);
	/* one message, or a table ended by its CommandComplete */
	FUZZ_CHECK(want == 'T' ? nmsg >= 2 && f.type == 'C' : nmsg == 1);
out:
	buf_free(&out);
}

/* ---- admin_user_allowed ------------------------------------------------ */

static bool
ref_allowed(const char *upstream, const char *list, const char *user)
{
	const char *p = list;
	size_t n;

	if (strcmp(user, upstream) == 0)
		return true;
	while (*p) {
		p += strspn(p, ", ");
		n = strcspn(p, ", ");
		if (n && strlen(user) == n && strncmp(p, user, n) == 0)
			return true;
		p += n;
	}
	return false;
}

static void
check_users(const uint8_t *data, size_t size)
{
	const uint8_t *z1 = memchr(data, 0, size), *z2;
	char *user;

	if (!z1 || !(z2 = memchr(z1 + 1, 0, size - (size_t)(z1 + 1 - data))))
		return;
	/* the user ends at the next NUL or the end of the input */
	user = strndup((const char *)z2 + 1, size - (size_t)(z2 + 1 - data));
	if (!user)
		return;
	FUZZ_CHECK(admin_user_allowed((const char *)data,
				      (const char *)z1 + 1, user) ==
		   ref_allowed((const char *)data, (const char *)z1 + 1, user));
	free(user);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_dup_exact(data, size);

	if (!srv_ready) {
		pthread_mutex_init(&srv.pools_lock, NULL);
		pthread_mutex_init(&srv.clients_lock, NULL);
		qlist_init(&srv.client_infos);
		srv_ready = true;
	}
	if (!text)
		return 0;
	check_normalise(text, size, size ? 1 + data[0] % 24 : 1);
	check_query(text, size);
	check_users(data, size);
	free(text);
	return 0;
}
