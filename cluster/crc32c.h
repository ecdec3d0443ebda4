/* cluster/crc32c.h — CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
 * every WAL record, WAL segment header and snapshot. Uses the SSE4.2 crc32 instruction when
 * the CPU has it and a slicing-by-8 table otherwise; both give identical results. */
#ifndef QFS_CLUSTER_CRC32C_H
#define QFS_CLUSTER_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 for a fresh checksum) with len bytes of buf and returns the new value, so
 * crc32c(crc32c(0, a, n), b, m) == crc32c over a followed by b. buf may be NULL iff len is
 * 0. Thread-safe. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The two implementations behind crc32c(), exposed for tests and benchmarks.
 * crc32c_hw() may only be called when crc32c_hw_available() returns nonzero. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);
int crc32c_hw_available(void);

#endif
