/* tests/fuzz/fuzz_names.c — libFuzzer target for the path/name grammar (fs/names.c): any
 * bytes must give a verdict without crashing, and the verdicts must agree with each other. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fs/names.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    int plain = names_check(s, size, 0);
    int cfg = names_check(s, size, 1);
    /* Anything valid in config/ is valid elsewhere; valid names are valid UTF-8. */
    if (cfg == 0 && plain != 0)
        abort();
    if (plain == 0 && (!names_utf8_valid(s, size) || size == 0 || size > NAME_MAX_BYTES ||
                       memchr(s, '/', size) || memchr(s, 0, size) ||
                       (size == 1 && s[0] == '.') || (size == 2 && !memcmp(s, "..", 2))))
        abort();
    size_t base;
    uint64_t rev, v;
    if (names_split_rev(s, size, &base, &rev) == 0 && (base == 0 || base >= size || s[base] != '@' || rev == 0))
        abort();
    if (names_parse_uint(s, size, UINT64_MAX, &v) == 0 && size == 0)
        abort();
    return 0;
}
