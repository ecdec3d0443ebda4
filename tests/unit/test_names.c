/* tests/unit/test_names.c — the name grammar of FILE-API §1: valid and invalid object names,
 * UTF-8 validation, the config `name@rev` form and numeric xattr values. */
#include <errno.h>
#include <string.h>
#include "fs/names.h"
#include "tests/unit/check.h"

static int chk(const char *s, int cfg) { return names_check(s, strlen(s), cfg); }

TEST(valid_names)
{
    CHECK_EQ(chk("k", 0), 0);
    CHECK_EQ(chk("order-1.json", 0), 0);
    CHECK_EQ(chk("caf\xc3\xa9", 0), 0);                 /* é */
    CHECK_EQ(chk("\xf0\x9f\x98\x80", 0), 0);            /* emoji, 4 bytes */
    CHECK_EQ(chk("a@b", 0), 0);                         /* '@' is fine outside config */
    char n255[256];
    memset(n255, 'x', 255);
    n255[255] = 0;
    CHECK_EQ(chk(n255, 1), 0);
}

TEST(invalid_names)
{
    char n256[257];
    memset(n256, 'x', 256);
    n256[256] = 0;
    CHECK_EQ(chk("", 0), -EINVAL);
    CHECK_EQ(chk(n256, 0), -ENAMETOOLONG);
    CHECK_EQ(chk(".hidden", 0), 0);                     /* dot names are ordinary */
    CHECK_EQ(chk(".git", 1), 0);
    CHECK_EQ(chk(".events", 0), 0);                     /* reserved in config/ only */
    CHECK_EQ(chk(".events", 1), -EINVAL);
    CHECK_EQ(chk(".", 0), -EINVAL);
    CHECK_EQ(chk("..", 0), -EINVAL);
    CHECK_EQ(chk("a/b", 0), -EINVAL);
    CHECK_EQ(names_check("a\0b", 3, 0), -EINVAL);
    CHECK_EQ(chk("db@41", 1), -EINVAL);
    CHECK_EQ(chk("\xff", 0), -EINVAL);                  /* not UTF-8 */
    CHECK_EQ(chk("\xc0\xaf", 0), -EINVAL);              /* overlong '/' */
    CHECK_EQ(chk("\xed\xa0\x80", 0), -EINVAL);          /* surrogate */
    CHECK_EQ(chk("\xf4\x90\x80\x80", 0), -EINVAL);      /* > U+10FFFF */
    CHECK_EQ(chk("abc\xc3", 0), -EINVAL);               /* truncated sequence */
}

TEST(split_rev)
{
    size_t base;
    uint64_t rev;
    CHECK_EQ(names_split_rev("db_url@41", 9, &base, &rev), 0);
    CHECK_EQ(base, 6);
    CHECK_EQ(rev, 41);
    CHECK_EQ(names_split_rev("a@b@7", 5, &base, &rev), 0);
    CHECK_EQ(base, 3);
    CHECK_EQ(rev, 7);
    CHECK_EQ(names_split_rev("db", 2, &base, &rev), -EINVAL);
    CHECK_EQ(names_split_rev("@5", 2, &base, &rev), -EINVAL);
    CHECK_EQ(names_split_rev("db@", 3, &base, &rev), -EINVAL);
    CHECK_EQ(names_split_rev("db@0", 4, &base, &rev), -EINVAL);
    CHECK_EQ(names_split_rev("db@07", 5, &base, &rev), -EINVAL);
    CHECK_EQ(names_split_rev("db@-1", 5, &base, &rev), -EINVAL);
    CHECK_EQ(names_split_rev("db@99999999999999999999", 23, &base, &rev), -EINVAL);
}

TEST(parse_uint)
{
    uint64_t v;
    CHECK_EQ(names_parse_uint("30", 2, 100, &v), 0);
    CHECK_EQ(v, 30);
    CHECK_EQ(names_parse_uint("30\n", 3, 100, &v), 0);
    CHECK_EQ(names_parse_uint("101", 3, 100, &v), -EINVAL);
    CHECK_EQ(names_parse_uint("", 0, 100, &v), -EINVAL);
    CHECK_EQ(names_parse_uint("-1", 2, 100, &v), -EINVAL);
    CHECK_EQ(names_parse_uint("1x", 2, 100, &v), -EINVAL);
    CHECK_EQ(names_parse_uint(" 1", 2, 100, &v), -EINVAL);
    CHECK_EQ(names_parse_uint("18446744073709551616", 20, UINT64_MAX, &v), -EINVAL);
}

int main(void)
{
    RUN(valid_names);
    RUN(invalid_names);
    RUN(split_rev);
    RUN(parse_uint);
    return CHECK_DONE();
}
