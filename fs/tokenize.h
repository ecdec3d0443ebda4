/* fs/tokenize.h — the tokenizer of search/ (FILE-API §9, docs/SEARCH.md "Tokenizer"): turns
 * UTF-8 text into the terms the index stores and queries look up. Pure and deterministic
 * (no locale, no tables built at run time): every replica and every query tokenizes the same
 * bytes the same way, which is what lets the index be rebuilt from the documents at restore.
 *
 * Rules, in short:
 *  - Letters and digits make words; everything else separates them (punctuation, spaces,
 *    symbols, '_', invalid UTF-8 bytes, which are skipped one byte at a time).
 *  - Words are lower-cased; Latin letters with diacritics fold to their base letters
 *    (é -> e, Å -> a, ç -> c), and a few to two letters (ß -> ss, æ -> ae, œ -> oe,
 *    þ -> th, ĳ -> ij); combining marks (U+0300..U+036F) are dropped, so a decomposed "é"
 *    folds the same as a composed one. Greek and Cyrillic capitals are lower-cased.
 *    Fullwidth ASCII letters and digits fold to ASCII.
 *  - CJK (Han, Hiragana, Katakana, Hangul syllables) have no spaces between words: each run
 *    of them gives its overlapping character bigrams ("日本語" -> "日本", "本語"), a run of
 *    one character gives that character. Bigrams need no dictionary and find any two-
 *    character sequence; the cost is a larger index and no match for one character inside
 *    a longer run.
 *  - A term is at most TOK_TERM_MAX bytes: a longer word is cut at a character boundary.
 * Positions count terms from 0, so consecutive terms (and consecutive bigrams of one run)
 * have consecutive positions, which phrases use. */
#ifndef QFS_FS_TOKENIZE_H
#define QFS_FS_TOKENIZE_H

#include <stddef.h>
#include <stdint.h>

#define TOK_TERM_MAX 64

typedef struct tok_term {
    const char *term;    /* the folded term (not NUL-terminated), valid during the call */
    size_t len;          /* 1..TOK_TERM_MAX */
    uint32_t pos;        /* position: the term's index in the text */
    size_t start, end;   /* the bytes of the text it came from: [start, end) */
} tok_term_t;

/* For each byte: an ASCII letter or digit gives its folded (lower-case) form, any other
 * byte 0 (a separator for ASCII; bytes from 0x80 are decoded by tokenize, never looked up
 * here). In ASCII text, tokenize's terms are exactly the runs of bytes with a nonzero
 * entry, folded and cut to TOK_TERM_MAX bytes (their start and end: the whole run's). */
extern const unsigned char tokenize_ascii_fold[256];

/* Calls fn(arg, t) for every term of text[0..len) in order, until fn returns nonzero (that
 * value is returned); 0 when every term was given. Any bytes are accepted. */
int tokenize(const char *text, size_t len, int (*fn)(void *arg, const tok_term_t *t),
             void *arg);

/* The number of terms tokenize would give. */
uint32_t tokenize_count(const char *text, size_t len);

/* Folds one word of a query the same way (for `prefix*`: the prefix's folded form). Writes
 * at most size-1 bytes and a NUL into out. Returns the folded length, which is 0 when the
 * word has no letter or digit; a word that would give more than one term (a separator
 * inside, or CJK) gives -1. */
int tokenize_fold_word(const char *word, size_t len, char *out, size_t size);

#endif
