/* test_store_plan.c - the job list's queries read an index, never the whole table: EXPLAIN QUERY PLAN of the
 * query store_job_list runs for every state filter (all 64 subsets, first page and after a cursor), before and
 * after ANALYZE, has no full scan of jobs and no sort of the matching rows; the pages those queries return are
 * the filtered table newest first, without gaps or repeats. A negative control shows the checker catches the
 * old "state IN (...) ORDER BY seq" form. The lists filtered by labels (metadata[KEY]=VALUE, issue 18) walk
 * job_metadata_kv the same way. Not for: timings (bench/store_bench.c measures those). */
#include <sqlite3.h>

#include "store/internal.h"
#include "tests/unit/store_fixture.h"

/* The plan of sql, its lines joined by "; " (empty on failure, with the error in the text). */
static void plan_text(sqlite3 *db, const char *sql, char *buf, size_t size) {
        char q[STORE_JOB_LIST_SQL_MAX + 32];
        size_t n = 0;
        sqlite3_stmt *st;
        buf[0] = '\0';
        snprintf(q, sizeof(q), "EXPLAIN QUERY PLAN %s", sql);
        if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK) {
                snprintf(buf, size, "prepare: %s", sqlite3_errmsg(db));
                return;
        }
        while (sqlite3_step(st) == SQLITE_ROW && n < size) {
                const char *detail = (const char *)sqlite3_column_text(st, 3);
                n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? "; " : "", detail ? detail : "");
        }
        sqlite3_finalize(st);
}

/* 1 when the plan of sql reads jobs only through an index and sorts nothing; the plan in bad. */
static int plan_bounded(sqlite3 *db, const char *sql, char *bad, size_t size) {
        plan_text(db, sql, bad, size);
        if (!bad[0] || strncmp(bad, "prepare:", 8) == 0 || strstr(bad, "TEMP B-TREE"))
                return 0;
        /* "SCAN jobs" at the start of any line: a full scan (a scan of a subquery is of its bounded rows) */
        for (const char *p = bad; (p = strstr(p, "SCAN jobs")); p++)
                if (p == bad || p[-1] == ' ')
                        return 0;
        return 1;
}

static void check_all_filters(sqlite3 *db, const char *when) {
        int bounded = 0;
        for (unsigned states = 0; states < (1u << STORE_JOB_STATE_COUNT); states++) {
                char sql[STORE_JOB_LIST_SQL_MAX], bad[1024] = "";
                struct ft_error err = {0};
                if (store_job_list_sql(states, sql, sizeof(sql), &err) < 0) {
                        ok(0, "query for states 0x%x: %s", states, err.message);
                        continue;
                }
                if (plan_bounded(db, sql, bad, sizeof(bad)))
                        bounded++;
                else
                        diag("states 0x%x (%s): %s", states, when, bad);
        }
        is_int(bounded, 1 << STORE_JOB_STATE_COUNT, "every state filter's list is an index search, no sort (%s)", when);

        /* with labels (issue 18): led by job_metadata_kv, whatever the states, 1 to 4 pairs */
        int labelled = 0, n = 0;
        for (unsigned states = 0; states < (1u << STORE_JOB_STATE_COUNT); states++)
                for (size_t pairs = 1; pairs <= STORE_METADATA_FILTER_MAX; pairs++, n++) {
                        char sql[STORE_JOB_LIST_SQL_MAX], bad[1024] = "";
                        struct ft_error err = {0};
                        if (store_job_list_metadata_sql(states, pairs, "jobs.id", sql, sizeof(sql), &err) < 0) {
                                diag("labels: %s", err.message);
                                continue;
                        }
                        if (plan_bounded(db, sql, bad, sizeof(bad)) && strstr(bad, "job_metadata_kv"))
                                labelled++;
                        else
                                diag("states 0x%x, %zu pairs (%s): %s", states, pairs, when, bad);
                }
        is_int(labelled, n, "every labelled list walks job_metadata_kv, no sort, no scan of jobs (%s)", when);
}

/* Page through the list with a filter and compare with the whole table filtered here. */
static void check_pages(struct store *s, unsigned states, const char *name) {
        struct ft_error err = {0};
        struct store_job_list all = {0}, l = {0};
        char(*want)[STORE_ID_MAX] = calloc(2000, STORE_ID_MAX);
        size_t n_want = 0, n_got = 0, mismatch = 0;
        char cursor[STORE_ID_MAX] = "";
        /* the whole table, newest first, by pages of the unfiltered list */
        for (;;) {
                if (store_job_list(s, NULL, &(struct store_page){.limit = 100, .after = cursor}, &all, &err) < 0)
                        break;
                for (size_t i = 0; i < all.n; i++)
                        if (states & STORE_JOB_STATE_BIT(all.items[i]->state))
                                snprintf(want[n_want++], STORE_ID_MAX, "%s", all.items[i]->id);
                bool more = all.has_more;
                if (all.n)
                        snprintf(cursor, sizeof(cursor), "%s", all.items[all.n - 1]->id);
                store_job_list_deinit(&all);
                if (!more)
                        break;
        }
        cursor[0] = '\0';
        struct store_job_filter f = {states};
        for (;;) {
                if (store_job_list(s, &f, &(struct store_page){.limit = 7, .after = cursor}, &l, &err) < 0) {
                        mismatch++;
                        break;
                }
                for (size_t i = 0; i < l.n; i++, n_got++)
                        if (n_got >= n_want || strcmp(want[n_got], l.items[i]->id) != 0 ||
                            !(states & STORE_JOB_STATE_BIT(l.items[i]->state)))
                                mismatch++;
                bool more = l.has_more;
                if (l.n)
                        snprintf(cursor, sizeof(cursor), "%s", l.items[l.n - 1]->id);
                store_job_list_deinit(&l);
                if (!more)
                        break;
        }
        ok(n_want > 0 && n_got == n_want && mismatch == 0, "pages of %s: %zu jobs in order (want %zu, %zu wrong)", name,
           n_got, n_want, mismatch);
        free(want);
}

int main(void) {
        struct ft_error err = {0};
        struct store *s = NULL;
        char *d = tmpdir_make("plan"), path[600];
        struct refs r;
        if (store_open_with(d, &(struct store_options){.relaxed_sync = true}, &s, &err) < 0) {
                printf("Bail out! open: %s\n", err.message);
                return 1;
        }
        refs_make(s, &r);
        struct store_job_new in = job_new(&r);
        /* 600 jobs (75 of them deleted again): mostly queued, some running, cancelling, succeeded, failed, cancelled,
         * paused, interleaved */
        int made = 0;
        struct store_metadata_pair labels[] = {{"team", "vision"}, {"run", "1"}};
        for (int i = 0; i < 600; i++) {
                struct store_job *j = NULL;
                in.priority = i % 5 == 0;
                in.metadata = i % 3 == 0 ? labels : NULL; /* a third of the jobs are labelled */
                in.n_metadata = i % 3 == 0 ? 2 : 0;
                if (store_job_enqueue(s, &in, &j, &err) < 0)
                        break;
                made++;
                if (i % 4 == 3 && i % 3 == 0) {
                        store_job_pause(s, j->id, NULL, &err); /* paused, interleaved with the rest */
                } else if (i % 4 == 1) {
                        store_job_cancel(s, j->id, NULL, &err);
                        if (i % 8 == 1)
                                store_job_delete(s, j->id, &err);
                } else if (i % 4 == 2) {
                        struct store_job *c = NULL;
                        if (store_job_claim(s, "w", 600000, &c, &err) == 1) {
                                if (i % 3 == 0)
                                        store_job_finish(s, c->id, c->attempt, STORE_JOB_SUCCEEDED, NULL, NULL, NULL,
                                                         NULL, &err);
                                else if (i % 3 == 1)
                                        store_job_finish(s, c->id, c->attempt, STORE_JOB_FAILED, NULL, NULL, NULL, NULL,
                                                         &err);
                                else if (i % 7 == 0)
                                        store_job_cancel(s, c->id, NULL, &err);
                                store_job_free(c);
                        }
                }
                store_job_free(j);
        }
        is_int(made, 600, "600 jobs enqueued");

        ft_path_join(path, sizeof(path), d, "finetuned.db", NULL);
        sqlite3 *db = NULL;
        ok(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK, "raw connection");

        /* negative control: the checker flags the sort the old query did for two states */
        char bad[1024] = "";
        ok(!plan_bounded(db,
                         "SELECT id FROM jobs WHERE seq < ?1 AND state IN ('queued', 'running')"
                         " ORDER BY seq DESC LIMIT ?2",
                         bad, sizeof(bad)) &&
                   strstr(bad, "TEMP B-TREE"),
           "checker flags 'state IN (...) ORDER BY seq'");
        ok(!plan_bounded(db, "SELECT id FROM jobs WHERE spec_json = ?1", bad, sizeof(bad)), "checker flags a scan");

        /* the counters the triggers keep agree with the table, for every filter; a count never reads jobs */
        int agree = 0, bounded = 0;
        for (unsigned states = 0; states < (1u << STORE_JOB_STATE_COUNT); states++) {
                char sql[256], where[256] = "", *p = where;
                int64_t got = -1, want = -2;
                if (store_job_count(s, states, &got, &err) < 0 ||
                    store_job_count_sql(states, sql, sizeof(sql), &err) < 0)
                        continue;
                if (plan_bounded(db, sql, bad, sizeof(bad)) && strstr(bad, "job_counts") && !strstr(bad, "jobs"))
                        bounded++;
                else
                        diag("count for states 0x%x: %s", states, bad);
                for (int i = 0; i < STORE_JOB_STATE_COUNT; i++)
                        if (states & STORE_JOB_STATE_BIT(i))
                                p += snprintf(p, sizeof(where) - (size_t)(p - where), "%s'%s'", p == where ? "" : ",",
                                              store_job_state_name(i));
                char q[400];
                snprintf(q, sizeof(q), "SELECT COUNT(*) FROM jobs%s%s%s", states ? " WHERE state IN (" : "", where,
                         states ? ")" : "");
                sqlite3_stmt *st;
                if (sqlite3_prepare_v2(db, q, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
                        want = sqlite3_column_int64(st, 0);
                sqlite3_finalize(st);
                if (got == want)
                        agree++;
                else
                        diag("count for states 0x%x: %lld, the table has %lld", states, (long long)got,
                             (long long)want);
        }
        is_int(agree, 1 << STORE_JOB_STATE_COUNT, "store_job_count agrees with COUNT(*) for every filter");
        is_int(bounded, 1 << STORE_JOB_STATE_COUNT, "no count reads the jobs table");

        check_all_filters(db, "no statistics");
        ok(sqlite3_exec(db, "ANALYZE", NULL, NULL, NULL) == SQLITE_OK, "ANALYZE");
        check_all_filters(db, "after ANALYZE");
        sqlite3_close(db);

        /* a fresh connection reads the statistics */
        store_close(s);
        ok(store_open(d, &s, &err) == 0, "reopen");
        struct {
                unsigned states;
                const char *name;
        } filters[] = {
                {STORE_JOB_STATE_BIT(STORE_JOB_QUEUED), "queued"},
                {STORE_JOB_STATE_BIT(STORE_JOB_QUEUED) | STORE_JOB_STATE_BIT(STORE_JOB_RUNNING), "queued|running"},
                {STORE_JOB_STATE_BIT(STORE_JOB_RUNNING) | STORE_JOB_STATE_BIT(STORE_JOB_CANCELLING) |
                         STORE_JOB_STATE_BIT(STORE_JOB_CANCELLED),
                 "running|cancelling|cancelled"},
                {(1u << STORE_JOB_STATE_COUNT) - 1 - STORE_JOB_STATE_BIT(STORE_JOB_QUEUED), "all but queued"},
                {(1u << STORE_JOB_STATE_COUNT) - 1, "all states"},
        };
        for (size_t i = 0; i < ARRAY_SIZE(filters); i++)
                check_pages(s, filters[i].states, filters[i].name);
        store_close(s);
        tmpdir_remove(d);
        free(d);
        return tap_done();
}
