/* fs/names.h — the name grammar of the mount (FILE-API §1): which object names are valid,
 * which are reserved for control files, and the `name@rev` history form of config/. Pure
 * functions over bytes, so they are unit-tested and fuzzed directly. */
#ifndef QFS_FS_NAMES_H
#define QFS_FS_NAMES_H

#include <stddef.h>
#include <stdint.h>

#define NAME_MAX_BYTES 255

/* Checks that name (len bytes, not NUL-terminated necessarily) may be created as an object
 * in a namespace: 1..255 bytes, no '/' or NUL, valid UTF-8 (no overlongs, no surrogates),
 * not "." or "..", and, when in_config is nonzero, no '@' and not the control name ".events"
 * (names beginning with '.' are otherwise ordinary, FILE-API §1).
 * Returns 0, -ENAMETOOLONG (over 255 bytes) or -EINVAL. */
int names_check(const char *name, size_t len, int in_config);

/* Nonzero when buf[0..len) is valid UTF-8 (RFC 3629: shortest forms, <= U+10FFFF, no
 * surrogates). */
int names_utf8_valid(const char *buf, size_t len);

/* Splits "base@rev" (config history form). On success stores the length of base in *baselen
 * and the revision in *rev and returns 0. Returns -EINVAL when there is no '@', the base is
 * empty, or rev is not a decimal number in 1..2^63-1 without leading zeros or sign. */
int names_split_rev(const char *name, size_t len, size_t *baselen, uint64_t *rev);

/* Parses a non-negative decimal integer (an xattr value such as "30" or "30\n"): digits
 * only, at most one trailing newline, value <= max. Returns 0 and *out, or -EINVAL. */
int names_parse_uint(const char *buf, size_t len, uint64_t max, uint64_t *out);

#endif
