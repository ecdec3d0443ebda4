/* tests/unit/check.h — the tiny test harness of the unit tests. A test file defines cases
 * with TEST(name) { ... CHECK(cond); ... } and runs them from main() with RUN(name); each
 * case prints "ok <name>" or "not ok <name>" (read by tests/run), and CHECK_DONE() returns
 * the exit status. CHECK failures report file:line and the expression, and end the case. */
#ifndef QFS_TESTS_CHECK_H
#define QFS_TESTS_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_case_failed;
static int check_failures;

#define TEST(name) static void name(void)

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stdout, "# %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            check_case_failed = 1;                                               \
            return;                                                              \
        }                                                                        \
    } while (0)

/* Like CHECK but for two integers; prints both values on failure. */
#define CHECK_EQ(a, b)                                                           \
    do {                                                                         \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);          \
        if (check_a_ != check_b_) {                                              \
            fprintf(stdout, "# %s:%d: %s == %s failed: %lld != %lld\n", __FILE__, \
                    __LINE__, #a, #b, check_a_, check_b_);                       \
            check_case_failed = 1;                                               \
            return;                                                              \
        }                                                                        \
    } while (0)

#define RUN(name)                                                                \
    do {                                                                         \
        check_case_failed = 0;                                                   \
        name();                                                                  \
        printf("%s %s\n", check_case_failed ? "not ok" : "ok", #name);           \
        fflush(stdout);                                                          \
        check_failures += check_case_failed;                                     \
    } while (0)

#define CHECK_DONE() (check_failures ? 1 : 0)

#endif
