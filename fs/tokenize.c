/* fs/tokenize.c — the tokenizer of search/ (see tokenize.h): a strict UTF-8 decoder, a
 * classification of code points (word, CJK, combining mark, separator) with their folded
 * forms, and the walk that makes words and CJK bigrams out of them. */
#include <string.h>
#include "fs/tokenize.h"

enum cls { C_SEP, C_WORD, C_CJK, C_MARK };

/* Decodes one code point at p (n > 0 bytes left): its length, or 0 for an invalid sequence
 * (RFC 3629: shortest form, no surrogates, at most U+10FFFF). */
static size_t utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
    unsigned c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

static size_t utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* U+00C0..U+017F folded: one or two ASCII letters, "" for a separator (× and ÷). */
static const char *const latin[0x180 - 0xc0] = {
    /* C0 */ "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
    /* D0 */ "d", "n", "o", "o", "o", "o", "o", "", "o", "u", "u", "u", "u", "y", "th", "ss",
    /* E0 */ "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
    /* F0 */ "d", "n", "o", "o", "o", "o", "o", "", "o", "u", "u", "u", "u", "y", "th", "y",
    /* 100 */ "a", "a", "a", "a", "a", "a", "c", "c", "c", "c", "c", "c", "c", "c", "d", "d",
    /* 110 */ "d", "d", "e", "e", "e", "e", "e", "e", "e", "e", "e", "e", "g", "g", "g", "g",
    /* 120 */ "g", "g", "g", "g", "h", "h", "h", "h", "i", "i", "i", "i", "i", "i", "i", "i",
    /* 130 */ "i", "i", "ij", "ij", "j", "j", "k", "k", "k", "l", "l", "l", "l", "l", "l", "l",
    /* 140 */ "l", "l", "l", "n", "n", "n", "n", "n", "n", "n", "n", "n", "o", "o", "o", "o",
    /* 150 */ "o", "o", "oe", "oe", "r", "r", "r", "r", "r", "r", "s", "s", "s", "s", "s", "s",
    /* 160 */ "s", "s", "t", "t", "t", "t", "t", "t", "u", "u", "u", "u", "u", "u", "u", "u",
    /* 170 */ "u", "u", "u", "u", "w", "w", "y", "y", "y", "z", "z", "z", "z", "z", "z", "s",
};

static int in(uint32_t cp, uint32_t lo, uint32_t hi) { return cp >= lo && cp <= hi; }

/* The class of code point cp; for C_WORD and C_CJK its folded bytes in out (at most 4),
 * their count in *n. */
static enum cls classify(uint32_t cp, char *out, size_t *n)
{
    if (cp < 0x80) {
        if (cp >= 'A' && cp <= 'Z')
            cp += 'a' - 'A';
        else if (!(in(cp, 'a', 'z') || in(cp, '0', '9')))
            return C_SEP;
        out[0] = (char)cp;
        *n = 1;
        return C_WORD;
    }
    if (in(cp, 0xc0, 0x17f)) {
        const char *f = latin[cp - 0xc0];
        if (!*f)
            return C_SEP;
        *n = strlen(f);
        memcpy(out, f, *n);
        return C_WORD;
    }
    if (in(cp, 0x80, 0xbf) || in(cp, 0x2b0, 0x2ff) || in(cp, 0x2000, 0x2bff) ||
        in(cp, 0x2e00, 0x2e7f) || in(cp, 0x3000, 0x303f) || in(cp, 0xe000, 0xf8ff) ||
        in(cp, 0xfe10, 0xfe1f) || in(cp, 0xfe30, 0xfe6f) || in(cp, 0xfeff, 0xfeff) ||
        in(cp, 0xff00, 0xff0f) || in(cp, 0xff1a, 0xff20) || in(cp, 0xff3b, 0xff40) ||
        in(cp, 0xff5b, 0xff65) || in(cp, 0xfff0, 0xffff) || in(cp, 0x1f000, 0x1faff))
        return C_SEP;
    if (in(cp, 0x300, 0x36f) || in(cp, 0x1ab0, 0x1aff) || in(cp, 0x1dc0, 0x1dff) ||
        in(cp, 0xfe20, 0xfe2f))
        return C_MARK;
    if (in(cp, 0x3040, 0x30ff) || in(cp, 0x3400, 0x4dbf) || in(cp, 0x4e00, 0x9fff) ||
        in(cp, 0xac00, 0xd7af) || in(cp, 0xf900, 0xfaff) || in(cp, 0xff66, 0xff9f) ||
        in(cp, 0x20000, 0x2fa1f)) {
        *n = utf8_encode(cp, out);
        return C_CJK;
    }
    /* lower-casing outside Latin-1 and Extended-A */
    if (in(cp, 0xff21, 0xff3a) || in(cp, 0xff41, 0xff5a)) {
        out[0] = (char)('a' + (cp & 0x1f) - 1);
        *n = 1;
        return C_WORD;
    }
    if (in(cp, 0xff10, 0xff19)) {
        out[0] = (char)('0' + (cp - 0xff10));
        *n = 1;
        return C_WORD;
    }
    if (cp == 0x218 || cp == 0x219 || cp == 0x15e || cp == 0x15f) {
        out[0] = 's';            /* Romanian ș with a comma below */
        *n = 1;
        return C_WORD;
    }
    if (cp == 0x21a || cp == 0x21b) {
        out[0] = 't';
        *n = 1;
        return C_WORD;
    }
    if (in(cp, 0x391, 0x3a9) && cp != 0x3a2)
        cp += 0x20;                                /* Greek capitals */
    else if (cp == 0x386)
        cp = 0x3ac;
    else if (in(cp, 0x388, 0x38a))
        cp += 0x25;
    else if (cp == 0x38c)
        cp = 0x3cc;
    else if (in(cp, 0x38e, 0x38f))
        cp += 0x3f;
    else if (cp == 0x3c2)
        cp = 0x3c3;                                /* final sigma */
    else if (in(cp, 0x410, 0x42f))
        cp += 0x20;                                /* Cyrillic capitals */
    else if (in(cp, 0x400, 0x40f))
        cp += 0x50;
    else if ((in(cp, 0x1e00, 0x1e95) || in(cp, 0x1ea0, 0x1eff)) && !(cp & 1))
        cp += 1;                                   /* Latin Extended Additional pairs */
    *n = utf8_encode(cp, out);
    return C_WORD;
}

typedef struct walk {
    int (*fn)(void *arg, const tok_term_t *t);
    void *arg;
    uint32_t pos;
    /* the open word */
    char word[TOK_TERM_MAX];
    size_t wlen, wstart, wend;
    int inword, full;             /* full: a character did not fit, the rest is cut */
    /* the open CJK run: its previous character and length */
    char prev[4];
    size_t plen, pstart, pend;
    uint32_t run;
} walk_t;

static int emit(walk_t *w, const char *term, size_t len, size_t start, size_t end)
{
    tok_term_t t = { .term = term, .len = len, .pos = w->pos++, .start = start, .end = end };
    return w->fn(w->arg, &t);
}

static int end_word(walk_t *w)
{
    int rc = 0;
    if (w->inword && w->wlen)
        rc = emit(w, w->word, w->wlen, w->wstart, w->wend);
    w->inword = w->full = 0;
    w->wlen = 0;
    return rc;
}

static int end_run(walk_t *w)
{
    int rc = 0;
    if (w->run == 1)
        rc = emit(w, w->prev, w->plen, w->pstart, w->pend);
    w->run = 0;
    return rc;
}

/* tokenize.h */
#define FOLD_RANGE8(c) (c), (c) + 1, (c) + 2, (c) + 3, (c) + 4, (c) + 5, (c) + 6, (c) + 7
const unsigned char tokenize_ascii_fold[256] = {
    ['0'] = FOLD_RANGE8('0'), ['8'] = '8', ['9'] = '9',
    ['A'] = FOLD_RANGE8('a'), ['I'] = FOLD_RANGE8('i'), ['Q'] = FOLD_RANGE8('q'),
    ['Y'] = 'y', ['Z'] = 'z',
    ['a'] = FOLD_RANGE8('a'), ['i'] = FOLD_RANGE8('i'), ['q'] = FOLD_RANGE8('q'),
    ['y'] = 'y', ['z'] = 'z',
};

int tokenize(const char *text, size_t len, int (*fn)(void *arg, const tok_term_t *t),
             void *arg)
{
    walk_t w = { .fn = fn, .arg = arg };
    const unsigned char *p = (const unsigned char *)text;
    size_t i = 0;
    int rc = 0;
    while (i < len && rc == 0) {
        if (p[i] < 0x80) {
            /* ASCII, the common case, without decoding: as classify() and the cases below
             * would do it, a run of letters and digits at a time */
            if (!tokenize_ascii_fold[p[i]]) {
                if (w.inword)
                    rc = end_word(&w);
                if (rc == 0 && w.run)
                    rc = end_run(&w);
                for (i++; i < len && p[i] < 0x80 && !tokenize_ascii_fold[p[i]]; i++)
                    ;                      /* the rest of an ASCII separator run */
                continue;
            }
            if (w.run && (rc = end_run(&w)) != 0)
                break;
            if (!w.inword) {
                w.inword = 1;
                w.wstart = i;
            }
            /* the run's bytes, folded, as far as the term has room; a byte that does not
             * fit cuts the word (full) */
            size_t j = i + 1;
            while (j < len && tokenize_ascii_fold[p[j]])
                j++;
            size_t room = w.full ? 0 : TOK_TERM_MAX - w.wlen;
            size_t take = j - i < room ? j - i : room;
            for (size_t k = 0; k < take; k++)
                w.word[w.wlen + k] = (char)tokenize_ascii_fold[p[i + k]];
            w.wlen += take;
            if (j - i > take)
                w.full = 1;
            i = j;
            w.wend = i;
            continue;
        }
        uint32_t cp = 0;
        size_t step = utf8_decode(p + i, len - i, &cp);
        char f[4];
        size_t n = 0;
        enum cls c = step ? classify(cp, f, &n) : C_SEP;
        if (!step)
            step = 1;                      /* an invalid byte separates */
        switch (c) {
        case C_WORD:
            rc = end_run(&w);
            if (rc)
                break;
            if (!w.inword) {
                w.inword = 1;
                w.wstart = i;
            }
            if (!w.full && w.wlen + n <= TOK_TERM_MAX) {
                memcpy(w.word + w.wlen, f, n);
                w.wlen += n;
            } else {
                w.full = 1;
            }
            w.wend = i + step;
            break;
        case C_MARK:
            if (w.inword)
                w.wend = i + step;         /* dropped, the word goes on */
            break;
        case C_CJK: {
            rc = end_word(&w);
            if (rc)
                break;
            if (w.run > 0) {
                char bi[8];
                memcpy(bi, w.prev, w.plen);
                memcpy(bi + w.plen, f, n);
                rc = emit(&w, bi, w.plen + n, w.pstart, i + step);
            }
            memcpy(w.prev, f, n);
            w.plen = n;
            w.pstart = i;
            w.pend = i + step;
            w.run++;
            break;
        }
        case C_SEP:
            rc = end_word(&w);
            if (rc == 0)
                rc = end_run(&w);
            break;
        }
        i += step;
    }
    if (rc == 0)
        rc = end_word(&w);
    if (rc == 0)
        rc = end_run(&w);
    return rc;
}

static int count_one(void *arg, const tok_term_t *t)
{
    (void)t;
    (*(uint32_t *)arg)++;
    return 0;
}

uint32_t tokenize_count(const char *text, size_t len)
{
    uint32_t n = 0;
    tokenize(text, len, count_one, &n);
    return n;
}

struct fold1 {
    char *out;
    size_t size;
    int n;
    size_t len;
};

static int fold_one(void *arg, const tok_term_t *t)
{
    struct fold1 *f = arg;
    if (++f->n > 1)
        return 1;
    f->len = t->len < f->size ? t->len : f->size - 1;
    memcpy(f->out, t->term, f->len);
    return 0;
}

int tokenize_fold_word(const char *word, size_t len, char *out, size_t size)
{
    if (size == 0)
        return -1;
    struct fold1 f = { .out = out, .size = size };
    if (tokenize(word, len, fold_one, &f) != 0)
        return -1;
    out[f.n ? f.len : 0] = '\0';
    return f.n ? (int)f.len : 0;
}
