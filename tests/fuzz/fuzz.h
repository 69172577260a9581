/*
 * fuzz.h - the libFuzzer entry point every target defines, declared so
 * the house warnings (-Wmissing-prototypes) accept it and replay_main.c
 * can call it without libFuzzer.
 */
#ifndef PGVALET_TESTS_FUZZ_H
#define PGVALET_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Abort on a broken invariant.  Not assert(): the checks must stay in
 * release (-DNDEBUG) builds, and abort() is what libFuzzer reports.
 */
#define FUZZ_CHECK(cond)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			abort();                                               \
	} while (0)

/* A heap copy of exactly n bytes (no NUL after it), so ASan sees reads
 * past the end; NULL when out of memory.  The caller frees it. */
static inline char *
fuzz_dup_exact(const uint8_t *p, size_t n)
{
	char *c = malloc(n ? n : 1);

	if (c && n)
		memcpy(c, p, n);
	return c;
}

#endif
