/* store.h - durable state: the SQLite database in the state directory.
 *
 * This is the contract the rest of finetuned sees; a PostgreSQL implementation
 * could sit behind it later. The store never logs and never exits: every
 * function returns 0 or a negative errno and fills a struct ft_error.
 *
 * Threads: a struct store is one connection and belongs to one thread. Open
 * one per thread (store_open on the same path is cheap after the first).
 */
#pragma once

#include "common/common.h"

struct store;

/* Open (creating if needed) "<state_dir>/finetuned.db", enable WAL and apply
 * migrations. state_dir must exist. An existing file that is not a finetuned
 * database is refused, never truncated or overwritten. */
int store_open(const char *state_dir, struct store **ret, struct ft_error *err);
void store_close(struct store *s); /* NULL is a no-op */

/* The schema version after migrations (PRAGMA user_version). */
int store_schema_version(struct store *s);
