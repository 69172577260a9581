/*
 * clean.h - `pgvalet clean`: remove from the upstream database what
 * pgvalet created there: its NOTIFY triggers, the _pgvalet schema and its
 * trigger function, the indexes --mode optimize created and hypopg if
 * the index advisor installed it, its publication (only when pgvalet
 * created it) and
 * the permanent replication slot named by --replication-slot (when no one
 * is using it).  Idempotent; prints one line per object dropped.
 */
#ifndef PGVALET_INVALIDATE_CLEAN_H
#define PGVALET_INVALIDATE_CLEAN_H

#include <stdio.h>

#include "core/config.h"

/* 0 on success, 1 with the reason on 'out' (stderr) when it could not. */
int pgvalet_clean(const struct config *cfg, FILE *out);

#endif
