/* metadata.c - labels on jobs: the limits on the pairs, their rows in
 * job_metadata (one per pair, for ?metadata[key]=value lists) and the job
 * list's query that filters by them.
 * Not for: the job queue itself (jobs.c), the JSON the API shows (the caller
 * gives it). */
#include "store/internal.h"

#include <stdio.h>
#include <string.h>

int store_job_metadata_check(const struct store_metadata_pair *pairs, size_t n, const char *param,
                             struct ft_error *err) {
        if (n > STORE_METADATA_MAX)
                return ft_error_set(err, -EINVAL, param, "'%s' has %zu pairs: at most %d", param, n,
                                    STORE_METADATA_MAX);
        for (size_t i = 0; i < n; i++) {
                const char *k = pairs[i].key, *v = pairs[i].value;
                if (!k || !*k || strnlen(k, STORE_METADATA_KEY_MAX + 1) > STORE_METADATA_KEY_MAX)
                        return ft_error_set(err, -EINVAL, param, "'%s' keys must be 1 to %d bytes", param,
                                            STORE_METADATA_KEY_MAX);
                if (!v || strnlen(v, STORE_METADATA_VALUE_MAX + 1) > STORE_METADATA_VALUE_MAX)
                        return ft_error_set(err, -EINVAL, param, "'%s.%.64s' must be a string of at most %d bytes",
                                            param, k, STORE_METADATA_VALUE_MAX);
                for (size_t j = 0; j < i; j++)
                        if (strcmp(pairs[j].key, k) == 0)
                                return ft_error_set(err, -EINVAL, param, "'%s' names the key '%.64s' twice", param, k);
        }
        return 0;
}

int store_job_metadata_insert_locked(struct store *s, int64_t job_seq, const struct store_metadata_pair *pairs,
                                     size_t n, struct ft_error *err) {
        for (size_t i = 0; i < n; i++) {
                sqlite3_stmt *st =
                        store_stmt(s, "INSERT INTO job_metadata (job_seq, key, value) VALUES (?1, ?2, ?3)", err);
                if (!st)
                        return -EIO;
                sqlite3_bind_int64(st, 1, job_seq);
                sqlite3_bind_text(st, 2, pairs[i].key, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, pairs[i].value, -1, SQLITE_STATIC);
                int r = store_step_done(s, st, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The first pair drives: job_metadata_kv read backwards from the cursor, so a page costs the rows of that label
 * up to the page, never a sort; further pairs and the states are checks on each row. */
int store_job_list_metadata_sql(unsigned states, size_t n_pairs, const char *cols, char *buf, size_t size,
                                struct ft_error *err) {
        if (n_pairs == 0 || n_pairs > STORE_METADATA_FILTER_MAX)
                return ft_error_set(err, -EINVAL, "metadata", "filter by 1 to %d metadata pairs",
                                    STORE_METADATA_FILTER_MAX);
        if (states >> STORE_JOB_STATE_COUNT)
                return ft_error_set(err, -EINVAL, "state", "'state' filter names an unknown state");
        size_t n = (size_t)snprintf(buf, size,
                                    "SELECT %s FROM job_metadata m JOIN jobs ON jobs.seq = m.job_seq"
                                    " WHERE m.key = ?3 AND m.value = ?4 AND m.job_seq < ?1",
                                    cols);
        for (size_t i = 1; i < n_pairs && n < size; i++)
                n += (size_t)snprintf(buf + n, size - n,
                                      " AND EXISTS (SELECT 1 FROM job_metadata m%zu WHERE m%zu.job_seq = m.job_seq"
                                      " AND m%zu.key = ?%zu AND m%zu.value = ?%zu)",
                                      i, i, i, 3 + 2 * i, i, 4 + 2 * i);
        if (states && states != (1u << STORE_JOB_STATE_COUNT) - 1) {
                bool first = true;
                for (int i = 0; i < STORE_JOB_STATE_COUNT && n < size; i++)
                        if (states & STORE_JOB_STATE_BIT(i)) {
                                n += (size_t)snprintf(buf + n, size - n, "%s'%s'",
                                                      first ? " AND jobs.state IN (" : ", ",
                                                      store_job_state_name((enum store_job_state)i));
                                first = false;
                        }
                if (n < size)
                        n += (size_t)snprintf(buf + n, size - n, ")");
        }
        if (n < size)
                n += (size_t)snprintf(buf + n, size - n, " ORDER BY m.job_seq DESC LIMIT ?2");
        if (n >= size)
                return ft_error_set(err, -ENAMETOOLONG, NULL, "job list query too long");
        return 0;
}
