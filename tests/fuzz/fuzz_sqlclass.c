/*
 * fuzz_sqlclass.c - the SQL splitter and classifier (pool/sqlclass.h) on
 * arbitrary client text.  The text is copied to a heap buffer of exactly
 * 'size' bytes with no NUL after it, as a Query body is not guaranteed
 * to be, so ASan reports any read past the length.
 */
#include <string.h>

#include "fuzz.h"
#include "pool/sqlclass.h"

enum { MAXST = 8 };

static void
check_name(const char *name)
{
	FUZZ_CHECK(memchr(name, 0, SQL_NAME_MAX) != NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sql_stmt st[MAXST];
	char name[SQL_NAME_MAX], tiny[3];
	char *text = malloc(size ? size : 1);
	size_t n, i, prev_end = 0;
	enum sql_kind k;

	if (!text)
		return 0;
	if (size)
		memcpy(text, data, size);
	n = sqlclass_split(text, size, st, MAXST);
	FUZZ_CHECK(n <= size);
	FUZZ_CHECK(sqlclass_split(text, size, NULL, 0) == n);
	for (i = 0; i < n && i < MAXST; i++) {
		/* In order, inside the text, never overlapping. */
		FUZZ_CHECK(st[i].off >= prev_end);
		FUZZ_CHECK(st[i].off + st[i].len <= size);
		FUZZ_CHECK(st[i].len > 0);
		FUZZ_CHECK((unsigned)st[i].kind <= SQL_PIN);
		check_name(st[i].name);
		prev_end = st[i].off + st[i].len;
		/* No statement ends in the middle of the text on a non-';'. */
		FUZZ_CHECK(prev_end == size || text[prev_end] == ';');
		/* Only SET, RESET and DEALLOCATE name something. */
		if (st[i].kind != SQL_SET && st[i].kind != SQL_RESET &&
		    st[i].kind != SQL_DEALLOCATE)
			FUZZ_CHECK(st[i].name[0] == '\0');
	}
	k = sqlclass_classify(text, size, name, sizeof(name));
	FUZZ_CHECK((unsigned)k <= SQL_PIN);
	check_name(name);
	/* A short name buffer truncates, it never overflows. */
	sqlclass_classify(text, size, tiny, sizeof(tiny));
	FUZZ_CHECK(memchr(tiny, 0, sizeof(tiny)) != NULL);
	sqlclass_interesting(text, size);
	free(text);
	return 0;
}
