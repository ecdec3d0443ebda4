/* tests/unit/test_crc32c.c — CRC32C against published check values (RFC 3720 B.4 and the
 * "123456789" check), both implementations, incremental use and odd alignments. */
#include <stdint.h>
#include <stdlib.h>

#include "cluster/crc32c.h"
#include "tests/unit/check.h"

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static void check_vectors(crc_fn f)
{
    uint8_t buf[48];
    CHECK_EQ(f(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ(f(0, NULL, 0), 0);
    CHECK_EQ(f(0, "a", 1), 0xC1D04330u);
    memset(buf, 0, 32);
    CHECK_EQ(f(0, buf, 32), 0x8A9136AAu); /* RFC 3720 B.4: 32 bytes of zeros */
    memset(buf, 0xff, 32);
    CHECK_EQ(f(0, buf, 32), 0x62A8AB43u); /* 32 bytes of 0xff */
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    CHECK_EQ(f(0, buf, 32), 0x46DD794Eu); /* incrementing */
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    CHECK_EQ(f(0, buf, 32), 0x113FDB5Cu); /* decrementing */
}

TEST(known_vectors_dispatch)
{
    check_vectors(crc32c);
    if (check_case_failed)
        return;
}

TEST(known_vectors_table)
{
    check_vectors(crc32c_sw);
}

TEST(known_vectors_sse42)
{
    if (!crc32c_hw_available()) {
        printf("# no SSE4.2 on this CPU: hardware path not tested\n");
        return;
    }
    check_vectors(crc32c_hw);
}

/* Incremental == one shot, and hw == sw, for every split and misalignment. */
TEST(incremental_and_alignment)
{
    enum { N = 1000 };
    uint8_t *buf = malloc(N + 8);
    CHECK(buf);
    for (int i = 0; i < N + 8; i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (int align = 0; align < 8; align++) {
        uint32_t whole = crc32c_sw(0, buf + align, N);
        if (crc32c_hw_available() && crc32c_hw(0, buf + align, N) != whole) {
            free(buf);
            CHECK(!"hw and sw disagree");
        }
        for (int split = 0; split <= N; split += 37) {
            uint32_t c = crc32c(crc32c(0, buf + align, (size_t)split), buf + align + split,
                                (size_t)(N - split));
            if (c != whole) {
                free(buf);
                CHECK_EQ(c, whole);
            }
        }
    }
    free(buf);
}

/* A single flipped bit changes the checksum. */
TEST(detects_bit_flip)
{
    uint8_t buf[100];
    memset(buf, 0x5a, sizeof(buf));
    uint32_t good = crc32c(0, buf, sizeof(buf));
    for (int bit = 0; bit < 800; bit += 13) {
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        CHECK(crc32c(0, buf, sizeof(buf)) != good);
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
}

int main(void)
{
    RUN(known_vectors_dispatch);
    RUN(known_vectors_table);
    RUN(known_vectors_sse42);
    RUN(incremental_and_alignment);
    RUN(detects_bit_flip);
    return CHECK_DONE();
}
