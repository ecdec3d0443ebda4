/* tests/unit/test_search.c — the search/ state machine (fs/search_sm.c) driven through its
 * encoders with every invariant checked after each apply, and the query engine
 * (fs/bm25.c): statistics after add, replace and delete; declared and undeclared indexes;
 * rename; malformed commands that change nothing; a snapshot round trip (same bytes, same
 * answers); BM25 scores against the formula computed here; +must, -mustnot, phrases,
 * prefix*, limit:N and snippets; refused queries; and the same ranked answer whether the
 * documents sit on one shard or are spread over several. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cluster/placement.h"
#include "fs/bm25.h"
#include "fs/cmd.h"
#include "fs/ns_sm.h"
#include "fs/search_cache.h"
#include "fs/search_sm.h"
#include "fs/state.h"
#include "tests/unit/check.h"
#include "tests/unit/statesnap.h"

/* ---------------------------------------------------------------- harness */

static uint64_t idx_no;

static state_t *fresh(void)
{
    state_t *st = state_new(1 << 20);
    if (!st->ns_state[NS_SEARCH])        /* not in the registry yet */
        search_sm.init(st);
    return st;
}

static void done(state_t *st)
{
    if (!ns_sms[NS_SEARCH])
        search_sm.free(st);
    state_free(st);
}

static int run(state_t *st, cmdbuf_t *b, uint64_t *id)
{
    sm_result_t res;
    memset(&res, 0, sizeof(res));
    state_sm_ops.apply(st, ++idx_no, b->p, b->len, &res);
    free(b->p);
    ns_sm_check(st);
    search_sm_check(st);
    if (id && res.code == 0 && res.len == 8)
        memcpy(id, res.data, 8);
    return res.code;
}

static int put(state_t *st, const char *ix, const char *doc, const char *text)
{
    cmdbuf_t b;
    search_cmd_put(&b, 1000, ix, doc, 0, text, strlen(text));
    return run(st, &b, NULL);
}

static int del(state_t *st, const char *ix, const char *doc)
{
    cmdbuf_t b;
    search_cmd_del(&b, 1000, ix, doc);
    return run(st, &b, NULL);
}

static int mkidx(state_t *st, const char *ix, int excl)
{
    cmdbuf_t b;
    search_cmd_mkidx(&b, 1000, ix, excl);
    return run(st, &b, NULL);
}

static uint32_t df(state_t *st, const char *ix, const char *term)
{
    const sindex_t *x = search_sm_index(st, ix);
    const sterm_t *t = x ? search_sm_term(x, term, strlen(term)) : NULL;
    return t ? t->n : 0;
}

/* The answer of query q on index ix over shards st[0..n) (static buffer; "ERR <errno>"). */
static const char *query(state_t **st, uint32_t n, const char *ix, const char *q)
{
    static char buf[65536];
    char *out;
    size_t len;
    int rc = bm25_query(st, n, ix, q, strlen(q), &out, &len, NULL);
    if (rc < 0) {
        snprintf(buf, sizeof(buf), "ERR %d", -rc);
        return buf;
    }
    snprintf(buf, sizeof(buf), "%.*s", (int)len, out ? out : "");
    free(out);
    return buf;
}

/* ---------------------------------------------------------------- state machine */

TEST(add_replace_delete_stats)
{
    state_t *st = fresh();
    CHECK_EQ(put(st, "i", "a", "the quick brown fox"), 0);
    CHECK_EQ(put(st, "i", "b", "the lazy dog, the end"), 0);
    const sindex_t *x = search_sm_index(st, "i");
    CHECK(x && !x->declared);
    CHECK_EQ(x->ndocs, 2);
    CHECK_EQ(x->total_len, 4 + 5);
    CHECK_EQ(df(st, "i", "the"), 2);
    CHECK_EQ(df(st, "i", "fox"), 1);
    const sdoc_t *a = search_sm_doc(x, "a");
    uint64_t aid = a->id;
    CHECK_EQ(put(st, "i", "a", "a slow red fox"), 0);      /* replace */
    a = search_sm_doc(x, "a");
    CHECK_EQ(a->id, aid);
    CHECK_EQ(df(st, "i", "quick"), 0);
    CHECK_EQ(df(st, "i", "slow"), 1);
    CHECK_EQ(df(st, "i", "the"), 1);
    CHECK_EQ(x->total_len, 4 + 5);
    CHECK(memcmp(a->text->data, "a slow red fox", 14) == 0);
    CHECK_EQ(del(st, "i", "b"), 0);
    CHECK_EQ(del(st, "i", "b"), -ENOENT);
    CHECK_EQ(x->ndocs, 1);
    CHECK_EQ(df(st, "i", "dog"), 0);
    CHECK_EQ(del(st, "i", "a"), 0);
    CHECK(search_sm_index(st, "i") == NULL);            /* undeclared: gone with its docs */
    done(st);
}

TEST(declared_indexes)
{
    state_t *st = fresh();
    CHECK_EQ(mkidx(st, "idx", 1), 0);
    CHECK_EQ(mkidx(st, "idx", 1), -EEXIST);
    CHECK_EQ(mkidx(st, "idx", 0), 0);
    CHECK_EQ(put(st, "idx", "d", "x"), 0);
    cmdbuf_t b;
    search_cmd_rmidx(&b, 1000, "idx");
    CHECK_EQ(run(st, &b, NULL), -ENOTEMPTY);
    CHECK_EQ(del(st, "idx", "d"), 0);
    CHECK(search_sm_index(st, "idx") != NULL);          /* declared: stays empty */
    search_cmd_rmidx(&b, 1000, "idx");
    CHECK_EQ(run(st, &b, NULL), 0);
    search_cmd_rmidx(&b, 1000, "idx");
    CHECK_EQ(run(st, &b, NULL), -ENOENT);
    done(st);
}

TEST(put_flags_and_rename)
{
    state_t *st = fresh();
    cmdbuf_t b;
    search_cmd_put(&b, 1000, "i", "d", SEARCH_PUT_MUSTEXIST, "x", 1);
    CHECK_EQ(run(st, &b, NULL), -ENOENT);
    CHECK(search_sm_index(st, "i") == NULL);
    search_cmd_put(&b, 1000, "i", "d", SEARCH_PUT_EXCL, "alpha beta", 10);
    CHECK_EQ(run(st, &b, NULL), 0);
    search_cmd_put(&b, 1000, "i", "d", SEARCH_PUT_EXCL, "x", 1);
    CHECK_EQ(run(st, &b, NULL), -EEXIST);
    CHECK_EQ(put(st, "i", "e", "gamma"), 0);
    search_cmd_rename(&b, 1000, "i", "d", "e", 1);
    CHECK_EQ(run(st, &b, NULL), -EEXIST);
    search_cmd_rename(&b, 1000, "i", "d", "e", 0);
    CHECK_EQ(run(st, &b, NULL), 0);
    const sindex_t *x = search_sm_index(st, "i");
    CHECK_EQ(x->ndocs, 1);
    CHECK(search_sm_doc(x, "d") == NULL);
    CHECK_EQ(df(st, "i", "gamma"), 0);
    CHECK_EQ(df(st, "i", "alpha"), 1);
    state_t *one[1] = { st };
    CHECK(strncmp(query(one, 1, "i", "alpha"), "0.", 2) == 0);
    CHECK(strstr(query(one, 1, "i", "alpha"), "\te\t[alpha] beta\n") != NULL);
    done(st);
}

TEST(malformed_commands_change_nothing)
{
    state_t *st = fresh();
    CHECK_EQ(put(st, "i", "d", "text"), 0);
    cmdbuf_t b;
    CHECK_EQ(put(st, "i", ".q", "x"), -EINVAL);          /* the reserved name */
    CHECK_EQ(put(st, ".q", "d", "x"), -EINVAL);
    CHECK_EQ(put(st, "i", "..", "x"), -EINVAL);
    char big[300];
    memset(big, 'n', 299);
    big[299] = '\0';
    CHECK_EQ(put(st, "i", big, "x"), -ENAMETOOLONG);
    search_cmd_put(&b, 1000, "i", "d", 0x80, "x", 1);
    CHECK_EQ(run(st, &b, NULL), -EINVAL);
    search_cmd_put(&b, 1000, "i", "d", 0, "zzz", 3);
    b.len -= 2;                                          /* truncated */
    CHECK_EQ(run(st, &b, NULL), -EINVAL);
    cmd_begin(&b, 99, NS_SEARCH, 1000);
    CHECK_EQ(run(st, &b, NULL), -EINVAL);
    char *huge = calloc(1, SEARCH_DOC_MAX + 1);
    memset(huge, 'a', SEARCH_DOC_MAX + 1);
    search_cmd_put(&b, 1000, "i", "d", 0, huge, SEARCH_DOC_MAX + 1);
    free(huge);
    CHECK_EQ(run(st, &b, NULL), -EFBIG);
    const sindex_t *x = search_sm_index(st, "i");
    CHECK_EQ(x->ndocs, 1);
    CHECK(memcmp(search_sm_doc(x, "d")->text->data, "text", 4) == 0);
    done(st);
}

TEST(snapshot_round_trip)
{
    if (!ns_sms[NS_SEARCH]) {
        printf("# search/ is not in the registry yet: the shard's snapshot has no section\n");
        return;
    }
    state_t *st = fresh();
    CHECK_EQ(mkidx(st, "docs", 0), 0);
    CHECK_EQ(put(st, "docs", "one", "Über café 日本語 text"), 0);
    CHECK_EQ(put(st, "docs", "two", "another text with more text"), 0);
    CHECK_EQ(put(st, "other", "x", "the other index"), 0);
    CHECK_EQ(put(st, "docs", "one", "replaced café"), 0);
    char dir1[] = "/tmp/test_search.XXXXXX", dir2[] = "/tmp/test_search.XXXXXX";
    CHECK(mkdtemp(dir1) && mkdtemp(dir2));
    size_t l1 = 0, l2 = 0;
    char *s1 = snap_bytes(st, dir1, &l1);
    state_t *st2 = fresh();
    uint64_t before = search_sm_gen(st2);
    CHECK_EQ(restore_dir(st2, dir1), 0);
    CHECK(search_sm_gen(st2) != before && search_sm_gen(st2) != search_sm_gen(st));
    ns_sm_check(st2);
    char *s2 = snap_bytes(st2, dir2, &l2);
    CHECK(s1 && s2 && l1 == l2 && memcmp(s1, s2, l1) == 0);
    state_t *a[1] = { st }, *b[1] = { st2 };
    char q1[4096];
    snprintf(q1, sizeof(q1), "%s", query(a, 1, "docs", "text cafe"));
    CHECK(strcmp(q1, query(b, 1, "docs", "text cafe")) == 0);
    CHECK(strstr(q1, "\tone\t") && strstr(q1, "\ttwo\t"));
    free(s1);
    free(s2);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf %s %s", dir1, dir2);
    CHECK_EQ(system(cmd), 0);
    done(st);
    done(st2);
}

/* ---------------------------------------------------------------- queries */

static const char *corpus[][2] = {
    { "d1", "the cat sat on the mat" },
    { "d2", "the dog sat on the log" },
    { "d3", "cats and dogs living together" },
    { "d4", "a catalog of cat pictures: cat cat" },
    { "d5", "nothing to see here at all, the end" },
    { "d6", "Le café est très bon; CAFÉ noir" },
    { "d7", "東京は日本の首都です" },
};
#define NCORPUS (sizeof(corpus) / sizeof(corpus[0]))

/* Loads the corpus onto n shards, placing each document by name as the cluster does. */
static void load(state_t **st, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++)
        st[k] = fresh();
    for (size_t i = 0; i < NCORPUS; i++) {
        char key[64];
        int l = snprintf(key, sizeof(key), "search/i/%s", corpus[i][0]);
        uint32_t k = n == 1 ? 0 : shard_for_key(key, (size_t)l, n);
        if (put(st[k], "i", corpus[i][0], corpus[i][1]) != 0)
            abort();
    }
}

static void unload(state_t **st, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++)
        done(st[k]);
}

static double bm25(double N, double dfv, double tf, double dl, double avgdl)
{
    double w = log(1.0 + (N - dfv + 0.5) / (dfv + 0.5));
    return w * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * dl / avgdl));
}

TEST(scores_follow_the_formula)
{
    state_t *st[1];
    load(st, 1);
    const sindex_t *x = search_sm_index(st[0], "i");
    double avgdl = (double)x->total_len / (double)x->ndocs;
    /* "cat": d1 (tf 1, dl 6) and d4 (tf 3, dl 7) */
    char want[256];
    snprintf(want, sizeof(want), "%.6f\td4\t", bm25(7, 2, 3, 7, avgdl));
    const char *got = query(st, 1, "i", "cat");
    CHECK(strncmp(got, want, strlen(want)) == 0);
    snprintf(want, sizeof(want), "%.6f\td1\t", bm25(7, 2, 1, 6, avgdl));
    CHECK(strstr(got, want) != NULL);
    /* the snippet shows the matched terms */
    CHECK(strstr(got, "\td1\tthe [cat] sat on the mat\n") != NULL);
    unload(st, 1);
}

static int lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

TEST(operators)
{
    state_t *st[1];
    load(st, 1);
    /* plain terms: any of them */
    CHECK_EQ(lines(query(st, 1, "i", "cat dog")), 3);
    /* +must */
    CHECK_EQ(lines(query(st, 1, "i", "+sat cat")), 2);
    CHECK(strncmp(query(st, 1, "i", "+sat cat"), "", 0) == 0);
    CHECK(strstr(query(st, 1, "i", "+sat cat"), "\td1\t") == query(st, 1, "i", "+sat cat") + 8);
    /* -mustnot */
    CHECK_EQ(lines(query(st, 1, "i", "the -sat")), 1);
    CHECK(strstr(query(st, 1, "i", "the -sat"), "\td5\t") != NULL);
    /* phrases */
    CHECK_EQ(lines(query(st, 1, "i", "\"sat on the mat\"")), 1);
    CHECK_EQ(lines(query(st, 1, "i", "\"mat the\"")), 0);
    CHECK_EQ(lines(query(st, 1, "i", "\"cat cat\"")), 1);
    CHECK_EQ(lines(query(st, 1, "i", "-\"the cat\" sat")), 1);
    /* prefix */
    CHECK_EQ(lines(query(st, 1, "i", "cat*")), 3);        /* cat, cats, catalog */
    CHECK_EQ(lines(query(st, 1, "i", "+cat* -catalog")), 2);
    /* folding reaches queries too; CJK bigrams, a word of many terms is a phrase */
    CHECK_EQ(lines(query(st, 1, "i", "CAFE")), 1);
    CHECK(strstr(query(st, 1, "i", "cafe"), "[café]") != NULL);
    CHECK_EQ(lines(query(st, 1, "i", "日本")), 1);
    CHECK_EQ(lines(query(st, 1, "i", "日本の首都")), 1);
    CHECK_EQ(lines(query(st, 1, "i", "首都日本")), 0);
    /* limit */
    CHECK_EQ(lines(query(st, 1, "i", "the limit:2")), 2);
    CHECK_EQ(lines(query(st, 1, "i", "the")), 3);
    /* unknown terms and empty indexes answer nothing */
    CHECK_EQ(lines(query(st, 1, "i", "zebra")), 0);
    CHECK_EQ(lines(query(st, 1, "nope", "cat")), 0);
    unload(st, 1);
}

TEST(refused_queries)
{
    state_t *st[1];
    load(st, 1);
    CHECK(strcmp(query(st, 1, "i", "\"open quote"), "ERR 22") == 0);
    CHECK(strcmp(query(st, 1, "i", "cat limit:0"), "ERR 22") == 0);
    CHECK(strcmp(query(st, 1, "i", "cat limit:x"), "ERR 22") == 0);
    CHECK(strcmp(query(st, 1, "i", "cat limit:100000"), "ERR 22") == 0);
    CHECK(strcmp(query(st, 1, "i", "-cat"), "ERR 22") == 0);
    CHECK(strcmp(query(st, 1, "i", "a-b*"), "ERR 22") == 0);
    CHECK(strcmp(query(st, 1, "i", "..."), "ERR 22") == 0);
    unload(st, 1);
}

TEST(prefix_too_broad)
{
    state_t *st = fresh();
    char text[BM25_PREFIX_MAX * 8 + 64], *p = text;
    for (int i = 0; i < BM25_PREFIX_MAX + 1; i++)
        p += sprintf(p, "w%d ", i);
    CHECK_EQ(put(st, "i", "d", text), 0);
    state_t *one[1] = { st };
    CHECK(strcmp(query(one, 1, "i", "w*"), "ERR 7") == 0);
    CHECK_EQ(lines(query(one, 1, "i", "w10*")), 1);
    done(st);
}

TEST(shards_give_the_same_answer)
{
    const char *qs[] = { "cat", "the", "cat dog", "+sat cat", "the -sat", "\"sat on\"",
                         "cat* limit:2", "cafe noir", "日本", "+the +sat -mat" };
    state_t *one[1], *many[5];
    load(one, 1);
    load(many, 5);
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        char a[8192];
        snprintf(a, sizeof(a), "%s", query(one, 1, "i", qs[i]));
        const char *b = query(many, 5, "i", qs[i]);
        if (strcmp(a, b) != 0)
            printf("# query %s:\n# one shard:\n%s# five:\n%s", qs[i], a, b);
        CHECK(strcmp(a, b) == 0);
    }
    unload(one, 1);
    unload(many, 5);
}

/* Removed documents free their slots, which new ones take (no growth); the answers are those
 * of an index loaded afresh. */
TEST(slots_reused_same_answers)
{
    const char *qs[] = { "cat", "the", "cat dog", "+sat cat", "the -sat", "\"sat on\"",
                         "cat* limit:2", "cafe noir" };
    state_t *fresh1[1], *st[1];
    load(fresh1, 1);
    load(st, 1);
    CHECK_EQ(del(st[0], "i", "d1"), 0);
    CHECK_EQ(del(st[0], "i", "d4"), 0);
    CHECK_EQ(put(st[0], "i", "d1", corpus[0][1]), 0);     /* takes d4's slot (the last freed) */
    CHECK_EQ(put(st[0], "i", "d4", corpus[3][1]), 0);
    const sindex_t *ix = search_sm_index(st[0], "i");
    CHECK(ix && ix->nslots == NCORPUS && ix->nfree == 0);
    CHECK_EQ(search_sm_doc(ix, "d1")->slot, 3u);            /* loaded in order: d1 0, d4 3 */
    CHECK_EQ(search_sm_doc(ix, "d4")->slot, 0u);
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        char a[8192];
        snprintf(a, sizeof(a), "%s", query(fresh1, 1, "i", qs[i]));
        CHECK(strcmp(a, query(st, 1, "i", qs[i])) == 0);
    }
    unload(fresh1, 1);
    unload(st, 1);
}

/* The best N of many hits are the first N of the whole ranking (the top-k selection). */
TEST(limit_keeps_the_best)
{
    state_t *st = fresh();
    srand(3);
    for (int i = 0; i < 300; i++) {
        char name[16], text[256], *p = text;
        snprintf(name, sizeof(name), "doc%03d", i);
        int n = 1 + rand() % 12;
        for (int j = 0; j < n; j++)
            p += sprintf(p, "%s ", rand() % 3 ? "common" : "filler");
        CHECK_EQ(put(st, "i", name, text), 0);
    }
    state_t *one[1] = { st };
    char all[65536];
    snprintf(all, sizeof(all), "%s", query(one, 1, "i", "common limit:1000"));
    CHECK(lines(all) > 100);
    for (int k = 1; k <= 40; k += 13) {
        char q[64];
        snprintf(q, sizeof(q), "common limit:%d", k);
        const char *top = query(one, 1, "i", q);
        CHECK_EQ(lines(top), k);
        CHECK(strncmp(all, top, strlen(top)) == 0);
    }
    done(st);
}

/* A snippet far into a document starts three terms before the first match (the tokenizing
 * starts at a checkpoint, fs/search_sm.h), also inside a long CJK run. */
/* Phrases are first scored with a bound and only the documents that may rank scored
 * exactly (fs/bm25.c "bounds"): the ranking must be that of scoring every document. Here
 * many documents hold both terms of "x y" without the phrase, and tf bounds far above the
 * phrase's frequency; the reference scores every document from its words. */
struct phr_ref {
    char name[16];
    double score;
    long long key;
};

static int phr_ref_cmp(const void *a, const void *b)
{
    const struct phr_ref *x = a, *y = b;
    if (x->key != y->key)
        return x->key > y->key ? -1 : 1;
    return strcmp(x->name, y->name);
}

TEST(phrase_bounds_rank_exactly)
{
    enum { N = 400 };
    static char texts[N][160];
    static const char *words[] = { "x", "y", "z", "w" };
    int ntok[N], has_z[N];
    state_t *st[3] = { fresh(), fresh(), fresh() };
    srand(7);
    double total = 0;
    int dfz = 0, dfx = 0, dfy = 0;
    for (int i = 0; i < N; i++) {
        char name[16], *p = texts[i];
        snprintf(name, sizeof(name), "d%03d", i);
        int n = 1 + rand() % 24, hx = 0, hy = 0;
        has_z[i] = 0;
        for (int j = 0; j < n; j++) {
            const char *w = words[rand() % 4];
            hx |= w[0] == 'x', hy |= w[0] == 'y', has_z[i] |= w[0] == 'z';
            p += sprintf(p, "%s ", w);
        }
        ntok[i] = n;
        total += n;
        dfx += hx, dfy += hy, dfz += has_z[i];
        CHECK_EQ(put(st[0], "i", name, texts[i]), 0);
        state_t *sh = st[1 + i % 2];      /* the same documents on two shards */
        CHECK_EQ(put(sh, "i", name, texts[i]), 0);
    }
    double avgdl = total / N;
    const char *qs[] = { "\"x y\"", "\"x y\" z", "+\"x y\" z", "\"y x\" -z", "\"x y\" \"y x\"" };
    for (size_t qi = 0; qi < sizeof(qs) / sizeof(qs[0]); qi++) {
        /* the reference: every document scored from its words */
        static struct phr_ref ref[N];
        int nref = 0;
        /* df of the phrases' terms is N - (documents without them); the phrase's idf is
         * the sum of its terms' */
        double idf_x = log(1.0 + (N - dfx + 0.5) / (dfx + 0.5));
        double idf_y = log(1.0 + (N - dfy + 0.5) / (dfy + 0.5));
        double idf_z = log(1.0 + (N - dfz + 0.5) / (dfz + 0.5));
        for (int i = 0; i < N; i++) {
            int fxy = 0, fyx = 0, tz = 0;
            const char *t = texts[i];
            for (size_t j = 0; t[j]; j += 2) {
                tz += t[j] == 'z';
                fxy += t[j] == 'x' && t[j + 2] == 'y';
                fyx += t[j] == 'y' && t[j + 2] == 'x';
            }
            double norm = 1.2 * (0.25 + 0.75 * ntok[i] / avgdl), score = 0;
            int any = 0, ok = 1;
            int f1 = qi == 3 ? fyx : fxy;
            if (f1) {
                score += (idf_x + idf_y) * (f1 * 2.2) / (f1 + norm);
                any = 1;
            } else if (qi == 2) {
                ok = 0;                   /* +"x y" */
            }
            if ((qi == 1 || qi == 2) && tz) {
                score += idf_z * (tz * 2.2) / (tz + norm);
                any = 1;
            }
            if (qi == 3 && tz)
                ok = 0;                   /* -z */
            if (qi == 4 && fyx) {
                score += (idf_y + idf_x) * (fyx * 2.2) / (fyx + norm);
                any = 1;
            }
            if (any && ok) {
                snprintf(ref[nref].name, sizeof(ref[nref].name), "d%03d", i);
                ref[nref].score = score;
                ref[nref].key = llround(score * 1e6);
                nref++;
            }
        }
        qsort(ref, (size_t)nref, sizeof(ref[0]), phr_ref_cmp);
        CHECK(nref > 20 || (qi == 3 && nref > 3));
        for (int lim = 1; lim <= 1000; lim = lim < 10 ? lim + 4 : lim * 10) {
            char q[64];
            snprintf(q, sizeof(q), "%s limit:%d", qs[qi], lim);
            char one[65536];
            snprintf(one, sizeof(one), "%s", query(st, 1, "i", q));
            CHECK_EQ(strcmp(one, query(st + 1, 2, "i", q)), 0);
            /* the names in the reference's order; scores within printing's rounding */
            int k = 0;
            for (const char *l = one; *l; l = strchr(l, '\n') + 1, k++) {
                double sc = strtod(l, NULL);
                const char *nm = strchr(l, '\t') + 1;
                CHECK(k < nref);
                if (k >= nref)
                    break;
                CHECK(strncmp(nm, ref[k].name, strlen(ref[k].name)) == 0 &&
                      nm[strlen(ref[k].name)] == '\t');
                CHECK(fabs(sc - ref[k].score) < 2e-6);
            }
            CHECK_EQ(k, lim < nref ? lim : nref);
        }
    }
    done(st[0]);
    done(st[1]);
    done(st[2]);
}

TEST(snippet_deep_in_a_document)
{
    state_t *st = fresh();
    char text[8192], *p = text;
    for (int i = 0; i < 500; i++)
        p += sprintf(p, i == 300 ? "Target, " : "w%d ", i);
    CHECK_EQ(put(st, "i", "words", text), 0);
    /* 100 CJK characters (U+4E00 + k): 99 bigrams */
    p = text;
    for (int k = 0; k < 100; k++) {
        unsigned cp = 0x4e00 + (unsigned)k;
        *p++ = (char)(0xe0 | (cp >> 12));
        *p++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *p++ = (char)(0x80 | (cp & 0x3f));
    }
    *p = '\0';
    CHECK_EQ(put(st, "i", "cjk", text), 0);
    state_t *one[1] = { st };
    const char *got = query(one, 1, "i", "target");
    CHECK(strstr(got, "\twords\tw297 w298 w299 [Target], w301 ") != NULL);
    /* the bigram of characters 70 and 71; the snippet starts at character 67 */
    char q[16], want[64];
    memcpy(q, text + 70 * 3, 6);
    q[6] = '\0';
    got = query(one, 1, "i", q);
    snprintf(want, sizeof(want), "\tcjk\t%.9s[%.6s]", text + 67 * 3, text + 70 * 3);
    CHECK(strstr(got, want) != NULL);
    done(st);
}

/* A snippet is made the short way while its text is ASCII and the full way when a byte
 * from 0x80 follows (tokenize.h): a combining mark or a Latin letter after an ASCII word is
 * more of the word (highlighted with it), a dash is a separator. */
TEST(snippet_ascii_then_more_of_the_word)
{
    state_t *st = fresh();
    CHECK_EQ(put(st, "i", "ascii", "x cafe y"), 0);
    CHECK_EQ(put(st, "i", "mark", "x cafe\xcc\x81 y"), 0);
    CHECK_EQ(put(st, "i", "latin", "x caf\xc3\xa9 y"), 0);
    CHECK_EQ(put(st, "i", "dash", "x cafe\xe2\x80\x94y"), 0);
    state_t *one[1] = { st };
    const char *got = query(one, 1, "i", "cafe");
    CHECK_EQ(lines(got), 4);
    CHECK(strstr(got, "\tascii\tx [cafe] y\n") != NULL);
    CHECK(strstr(got, "\tmark\tx [cafe\xcc\x81] y\n") != NULL);
    CHECK(strstr(got, "\tlatin\tx [caf\xc3\xa9] y\n") != NULL);
    CHECK(strstr(got, "\tdash\tx [cafe]\xe2\x80\x94y\n") != NULL);
    done(st);
}

/* ---------------------------------------------------------------- the query cache */

/* Every command applied (whatever its result) and every restore give the shard a new
 * version, never one seen before; reads do not. */
TEST(versions_change_with_every_command)
{
    state_t *st = fresh(), *other = fresh();
    uint64_t v0 = search_sm_gen(st);
    CHECK(v0 != search_sm_gen(other));
    CHECK_EQ(put(st, "i", "a", "one text"), 0);
    uint64_t v1 = search_sm_gen(st);
    CHECK(v1 != v0);
    CHECK(strstr(query(&st, 1, "i", "text"), "\ta\t") != NULL);
    CHECK_EQ(search_sm_gen(st), v1);                      /* a query changes nothing */
    CHECK_EQ(del(st, "i", "missing"), -ENOENT);
    uint64_t v2 = search_sm_gen(st);
    CHECK(v2 != v1 && v2 != v0);
    CHECK_EQ(put(st, "i", "a", "one text again"), 0);      /* a replacement */
    CHECK(search_sm_gen(st) != v2);
    CHECK_EQ(del(st, "i", "a"), 0);
    CHECK(search_sm_gen(st) != v2);
    done(st);
    done(other);
}

/* The answer a hit gives: its bytes as a string (the test's answers have no NUL). */
static int answer_is(blob_t *b, const char *text)
{
    int ok = b && b->len == strlen(text) && memcmp(b->data, text, b->len) == 0;
    blob_unref(b);
    return ok;
}

static void put_text(search_cache_t *c, const char *index, const char *q, const uint64_t *g,
                     uint32_t n, const char *text, size_t len)
{
    blob_t *b = blob_new(text, len);
    search_cache_put(c, index, q, g, n, b);
    blob_unref(b);                        /* the cache keeps its own reference */
}

TEST(cache_serves_only_unchanged_versions)
{
    search_cache_t *c = search_cache_new(1 << 20);
    CHECK(c != NULL);
    uint64_t g1[3] = { 1, 2, 3 }, g2[3] = { 1, 2, 4 };
    CHECK(search_cache_get(c, "i", "q", g1, 3) == NULL);
    put_text(c, "i", "q", g1, 3, "answer\n", 7);
    CHECK(answer_is(search_cache_get(c, "i", "q", g1, 3), "answer\n"));
    /* another index, another query, one shard's version changed: misses */
    CHECK(search_cache_get(c, "j", "q", g1, 3) == NULL);
    CHECK(search_cache_get(c, "i", "q2", g1, 3) == NULL);
    CHECK(search_cache_get(c, "i\0q", "", g1, 3) == NULL);
    CHECK(search_cache_get(c, "i", "q", g2, 3) == NULL);
    CHECK(search_cache_get(c, "i", "q", g1, 2) == NULL);
    /* the changed version dropped the entry: the old versions do not bring it back */
    CHECK(search_cache_get(c, "i", "q", g1, 3) == NULL);
    /* an empty answer is an answer */
    put_text(c, "i", "none", g2, 3, NULL, 0);
    CHECK(answer_is(search_cache_get(c, "i", "none", g2, 3), ""));
    /* a newer answer replaces the older one */
    put_text(c, "i", "q", g1, 3, "old", 3);
    put_text(c, "i", "q", g2, 3, "new", 3);
    CHECK(answer_is(search_cache_get(c, "i", "q", g2, 3), "new"));
    search_cache_stats_t s;
    search_cache_stats(c, &s);
    CHECK_EQ(s.entries, 2u);
    CHECK_EQ(s.hits, 3u);
    search_cache_free(c);
}

/* A hit is the kept answer itself (a reference, not a copy), and the reference outlives
 * the entry: replaced, or the whole cache freed. Keys longer than the stack buffer work. */
TEST(cache_hits_share_the_answer)
{
    search_cache_t *c = search_cache_new(1 << 20);
    uint64_t g[2] = { 5, 6 }, g2[2] = { 5, 7 };
    blob_t *kept = blob_new("one\n", 4);
    search_cache_put(c, "i", "q", g, 2, kept);
    blob_t *hit = search_cache_get(c, "i", "q", g, 2);
    CHECK(hit == kept);
    CHECK_EQ(kept->refs, 3u);             /* ours, the cache's, the hit's */
    put_text(c, "i", "q", g2, 2, "two\n", 4);
    CHECK_EQ(kept->refs, 2u);             /* the cache let go of it */
    CHECK(answer_is(search_cache_get(c, "i", "q", g2, 2), "two\n"));
    char longi[400], longq[400];
    memset(longi, 'a', sizeof(longi) - 1);
    longi[sizeof(longi) - 1] = '\0';
    memset(longq, 'b', sizeof(longq) - 1);
    longq[sizeof(longq) - 1] = '\0';
    search_cache_put(c, longi, longq, g, 2, kept);
    CHECK(search_cache_get(c, longi, "b", g, 2) == NULL);
    hit = search_cache_get(c, longi, longq, g, 2);
    CHECK(hit == kept);
    search_cache_free(c);
    CHECK_EQ(kept->refs, 3u);             /* ours and the two hits' */
    CHECK(memcmp(kept->data, "one\n", 4) == 0);
    blob_unref(hit);
    blob_unref(kept);
    blob_unref(kept);
}

TEST(cache_is_bounded_lru)
{
    const size_t max = 64 * 1024;
    search_cache_t *c = search_cache_new(max);
    uint64_t g[1] = { 7 };
    char text[1000], q[32];
    memset(text, 'x', sizeof(text));
    for (int i = 0; i < 1000; i++) {
        snprintf(q, sizeof(q), "q%d", i);
        put_text(c, "i", q, g, 1, text, sizeof(text));
        if (i >= 1) {                     /* keep q0 the most recently used */
            blob_t *b = search_cache_get(c, "i", "q0", g, 1);
            CHECK(b != NULL);
            blob_unref(b);
        }
        search_cache_stats_t s;
        search_cache_stats(c, &s);
        CHECK(s.bytes <= max);
    }
    search_cache_stats_t s;
    search_cache_stats(c, &s);
    CHECK(s.entries > 10 && s.entries < 70);
    blob_t *b = search_cache_get(c, "i", "q999", g, 1);   /* the newest */
    CHECK(b != NULL);
    blob_unref(b);
    CHECK(search_cache_get(c, "i", "q1", g, 1) == NULL);  /* evicted */
    /* an answer over a quarter of the cap is not kept */
    char *big = calloc(1, max / 4 + 1);
    put_text(c, "i", "big", g, 1, big, max / 4 + 1);
    CHECK(search_cache_get(c, "i", "big", g, 1) == NULL);
    free(big);
    search_cache_free(c);
}

int main(void)
{
    RUN(add_replace_delete_stats);
    RUN(declared_indexes);
    RUN(put_flags_and_rename);
    RUN(malformed_commands_change_nothing);
    RUN(snapshot_round_trip);
    RUN(scores_follow_the_formula);
    RUN(operators);
    RUN(refused_queries);
    RUN(prefix_too_broad);
    RUN(shards_give_the_same_answer);
    RUN(slots_reused_same_answers);
    RUN(limit_keeps_the_best);
    RUN(phrase_bounds_rank_exactly);
    RUN(snippet_deep_in_a_document);
    RUN(snippet_ascii_then_more_of_the_word);
    RUN(versions_change_with_every_command);
    RUN(cache_serves_only_unchanged_versions);
    RUN(cache_hits_share_the_answer);
    RUN(cache_is_bounded_lru);
    return CHECK_DONE();
}
