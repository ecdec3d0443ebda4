/* tests/unit/test_tokenize.c — the search/ tokenizer (fs/tokenize.c): lower-casing and
 * splitting, Latin diacritics folded (composed and decomposed alike), ß and ligatures,
 * Greek and Cyrillic, fullwidth forms, CJK bigrams, positions and byte offsets, long words
 * cut at a character boundary, invalid UTF-8 and random bytes (no crash, every term valid
 * UTF-8 of bounded length), and the folding of one query word. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fs/names.h"
#include "fs/tokenize.h"
#include "tests/unit/check.h"

/* The terms of text joined by '|' (and each one's pos/start/end checked for order). */
struct joined {
    char out[4096];
    size_t len;
    uint32_t next_pos;
    int bad;
    const char *text;
    size_t tlen;
};

static int join_one(void *arg, const tok_term_t *t)
{
    struct joined *j = arg;
    if (t->pos != j->next_pos++ || t->len == 0 || t->len > TOK_TERM_MAX ||
        t->start >= t->end || t->end > j->tlen || !names_utf8_valid(t->term, t->len))
        j->bad = 1;
    if (j->len + t->len + 2 < sizeof(j->out)) {
        if (j->len)
            j->out[j->len++] = '|';
        memcpy(j->out + j->len, t->term, t->len);
        j->len += t->len;
        j->out[j->len] = '\0';
    }
    return 0;
}

static const char *terms(const char *text)
{
    static struct joined j;
    memset(&j, 0, sizeof(j));
    j.text = text;
    j.tlen = strlen(text);
    tokenize(text, strlen(text), join_one, &j);
    return j.bad ? "BAD" : j.out;
}

TEST(ascii_split_and_lower)
{
    CHECK(strcmp(terms("Hello, World! foo_bar x86-64 don't"),
                 "hello|world|foo|bar|x86|64|don|t") == 0);
    CHECK(strcmp(terms(""), "") == 0);
    CHECK(strcmp(terms("  ...  "), "") == 0);
    CHECK_EQ(tokenize_count("a b  c", 6), 3);
}

TEST(latin_diacritics_fold)
{
    CHECK(strcmp(terms("Café CRÈME brûlée Ångström"), "cafe|creme|brulee|angstrom") == 0);
    /* decomposed: e + U+0301 */
    CHECK(strcmp(terms("Cafe\xcc\x81 cafe"), "cafe|cafe") == 0);
    CHECK(strcmp(terms("Straße ÆON œuvre Þór Łódź Ĳssel"), "strasse|aeon|oeuvre|thor|lodz|ijssel") == 0);
    CHECK(strcmp(terms("Ștefan Țară"), "stefan|tara") == 0);
    CHECK(strcmp(terms("3×4÷2"), "3|4|2") == 0);      /* × and ÷ separate */
}

TEST(greek_cyrillic_fullwidth)
{
    CHECK(strcmp(terms("ΑΘΗΝΑ Москва"), "αθηνα|москва") == 0);
    CHECK(strcmp(terms("ＡＢＣ１２"), "abc12") == 0);
    CHECK(strcmp(terms("«quoted» — dash…"), "quoted|dash") == 0);
}

TEST(cjk_bigrams)
{
    CHECK(strcmp(terms("日本語"), "日本|本語") == 0);
    CHECK(strcmp(terms("日"), "日") == 0);
    CHECK(strcmp(terms("東京、大阪"), "東京|大阪") == 0);    /* CJK punctuation splits */
    CHECK(strcmp(terms("abc中文def"), "abc|中文|def") == 0);
    CHECK(strcmp(terms("한국어 テスト"), "한국|국어|テス|スト") == 0);
}

struct offs {
    uint32_t pos[8];
    size_t start[8], end[8];
    int n;
};

static int off_one(void *arg, const tok_term_t *t)
{
    struct offs *o = arg;
    if (o->n < 8) {
        o->pos[o->n] = t->pos;
        o->start[o->n] = t->start;
        o->end[o->n] = t->end;
        o->n++;
    }
    return 0;
}

TEST(positions_and_offsets)
{
    const char *s = "ab, Cé 日本語";
    struct offs o = { 0 };
    tokenize(s, strlen(s), off_one, &o);
    CHECK_EQ(o.n, 4);
    CHECK_EQ(o.start[0], 0);
    CHECK_EQ(o.end[0], 2);
    CHECK_EQ(o.start[1], 4);
    CHECK_EQ(o.end[1], 7);            /* 'C' + 2-byte é */
    CHECK_EQ(o.start[2], 8);
    CHECK_EQ(o.end[2], 14);           /* 日本 */
    CHECK_EQ(o.start[3], 11);
    CHECK_EQ(o.end[3], 17);           /* 本語 */
    CHECK_EQ(o.pos[3], 3);
}

TEST(long_word_cut)
{
    char buf[300];
    memset(buf, 'x', 200);
    buf[200] = '\0';
    const char *t = terms(buf);
    CHECK_EQ(strlen(t), TOK_TERM_MAX);
    /* 63 ASCII letters then ß (2 bytes folded): cut before it, and nothing after */
    memset(buf, 'a', 63);
    strcpy(buf + 63, "\xc3\x9f" "b");
    t = terms(buf);
    CHECK_EQ(strlen(t), 63);
}

TEST(invalid_utf8)
{
    /* a lone continuation, an overlong, a surrogate, a truncated sequence */
    CHECK(strcmp(terms("ab\x80" "cd \xc0\xaf" "ef \xed\xa0\x80" "gh \xe6\x97"), "ab|cd|ef|gh") == 0);
    srand(12);
    for (int round = 0; round < 2000; round++) {
        char buf[256];
        size_t n = (size_t)(rand() % 255);
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)(rand() % 4 == 0 ? 0x80 + rand() % 0x80 : rand() % 256);
        struct joined j = { .text = buf, .tlen = n };
        tokenize(buf, n, join_one, &j);
        CHECK(!j.bad);
    }
}

TEST(fold_word)
{
    char out[TOK_TERM_MAX + 1];
    CHECK_EQ(tokenize_fold_word("Éco", 4, out, sizeof(out)), 3);
    CHECK(strcmp(out, "eco") == 0);
    CHECK_EQ(tokenize_fold_word("a-b", 3, out, sizeof(out)), -1);
    CHECK_EQ(tokenize_fold_word("--", 2, out, sizeof(out)), 0);
    CHECK_EQ(tokenize_fold_word("日本", strlen("日本"), out, sizeof(out)), (int)strlen("日本"));
    CHECK_EQ(tokenize_fold_word("日本語", strlen("日本語"), out, sizeof(out)), -1);
}

int main(void)
{
    RUN(ascii_split_and_lower);
    RUN(latin_diacritics_fold);
    RUN(greek_cyrillic_fullwidth);
    RUN(cjk_bigrams);
    RUN(positions_and_offsets);
    RUN(long_word_cut);
    RUN(invalid_utf8);
    RUN(fold_word);
    return CHECK_DONE();
}
