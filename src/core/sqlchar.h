/*
 * sqlchar.h - character classes of SQL text for the lexers that run on
 * every statement (the stats shape hash, the cache's literal normaliser,
 * the pooler's classifier): one table lookup per byte instead of a chain
 * of comparisons.  Header only; pure; any thread.
 *
 *   SQLCH_IDENT  may continue an identifier: [A-Za-z0-9_$] and bytes >= 0x80
 *   SQLCH_DIGIT  [0-9]
 *   SQLCH_SHAPE  may start a token fp_shape_hash treats specially: a quote,
 *                a digit, '.', '-', '/' or '$'
 */
#ifndef PGVALET_CORE_SQLCHAR_H
#define PGVALET_CORE_SQLCHAR_H

#include <stdbool.h>
#include <stdint.h>

enum { SQLCH_IDENT = 1, SQLCH_DIGIT = 2, SQLCH_SHAPE = 4 };

#define ID SQLCH_IDENT
#define DG SQLCH_DIGIT
#define SH SQLCH_SHAPE
static const uint8_t sqlchar_class[256] = {
	/* 0x00 */ 0, 0, 0, 0, 0, 0, 0, 0,
	/* 0x08 */ 0, 0, 0, 0, 0, 0, 0, 0,
	/* 0x10 */ 0, 0, 0, 0, 0, 0, 0, 0,
	/* 0x18 */ 0, 0, 0, 0, 0, 0, 0, 0,
	/* 0x20 */ 0, 0, SH, 0, ID|SH, 0, 0, SH,
	/* 0x28 */ 0, 0, 0, 0, 0, SH, SH, SH,
	/* 0x30 */ ID|DG|SH, ID|DG|SH, ID|DG|SH, ID|DG|SH, ID|DG|SH, ID|DG|SH, ID|DG|SH, ID|DG|SH,
	/* 0x38 */ ID|DG|SH, ID|DG|SH, 0, 0, 0, 0, 0, 0,
	/* 0x40 */ 0, ID, ID, ID, ID, ID, ID, ID,
	/* 0x48 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0x50 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0x58 */ ID, ID, ID, 0, 0, 0, 0, ID,
	/* 0x60 */ 0, ID, ID, ID, ID, ID, ID, ID,
	/* 0x68 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0x70 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0x78 */ ID, ID, ID, 0, 0, 0, 0, 0,
	/* 0x80 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0x88 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0x90 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0x98 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0xa0 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0xa8 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0xb0 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0xb8 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0xc0 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0xc8 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0xd0 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0xd8 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0xe0 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0xe8 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0xf0 */ ID, ID, ID, ID, ID, ID, ID, ID,
	/* 0xf8 */ ID, ID, ID, ID, ID, ID, ID, ID,
};
#undef ID
#undef DG
#undef SH

static inline bool
sqlch_ident(char c)
{
	return sqlchar_class[(unsigned char)c] & SQLCH_IDENT;
}

static inline bool
sqlch_digit(char c)
{
	return sqlchar_class[(unsigned char)c] & SQLCH_DIGIT;
}

static inline bool
sqlch_is(char c, uint8_t classes)
{
	return sqlchar_class[(unsigned char)c] & classes;
}

#endif
