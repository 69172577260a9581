/*
 * version.h - the release number, printed by --version and in logs.
 * Bump it in the same commit as the release notes.
 */
#ifndef PGVALET_CORE_VERSION_H
#define PGVALET_CORE_VERSION_H

#define PGVALET_VERSION "0.1.0"

#endif
