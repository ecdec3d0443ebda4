/* fs/names.c — the name grammar of the mount; see names.h for the rules. */
#include <errno.h>
#include <string.h>
#include "fs/names.h"

int names_utf8_valid(const char *buf, size_t len)
{
    const unsigned char *s = (const unsigned char *)buf;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1; cp = c & 0x1F; min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2; cp = c & 0x0F; min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3; cp = c & 0x07; min = 0x10000;
        } else {
            return 0;
        }
        if (len - i <= n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

int names_check(const char *name, size_t len, int in_config)
{
    if (len == 0)
        return -EINVAL;
    if (len > NAME_MAX_BYTES)
        return -ENAMETOOLONG;
    /* Names beginning with '.' are ordinary (editors, rsync, git, mkstemp use them), except
     * "." and ".." and the control name config/ reserves in every directory. */
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return -EINVAL;
    if (in_config && len == 7 && memcmp(name, ".events", 7) == 0)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (name[i] == '/' || name[i] == '\0')
            return -EINVAL;
        if (in_config && name[i] == '@')
            return -EINVAL;
    }
    return names_utf8_valid(name, len) ? 0 : -EINVAL;
}

int names_parse_uint(const char *buf, size_t len, uint64_t max, uint64_t *out)
{
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len == 0 || len > 20)
        return -EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return -EINVAL;
        uint64_t d = (uint64_t)(buf[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    if (v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

int names_split_rev(const char *name, size_t len, size_t *baselen, uint64_t *rev)
{
    size_t at = len;
    while (at > 0 && name[at - 1] != '@')
        at--;
    if (at == 0)
        return -EINVAL;
    at--; /* index of '@' */
    if (at == 0 || at + 1 == len)
        return -EINVAL;
    const char *r = name + at + 1;
    size_t rlen = len - at - 1;
    if (r[0] == '0' || r[rlen - 1] == '\n')
        return -EINVAL;
    uint64_t v;
    if (names_parse_uint(r, rlen, INT64_MAX, &v) < 0 || v == 0)
        return -EINVAL;
    *baselen = at;
    *rev = v;
    return 0;
}
