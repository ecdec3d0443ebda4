/* tests/sim/linearize.h — linearizability checker for the simulator's client histories.
 * Wing & Gong's search with Lowe's memoisation (the WGL algorithm Porcupine also uses),
 * run per key (a KV history is linearizable iff each key's sub-history is). The model is a
 * register with put, get and compare-and-set; value 0 stands for "absent". An operation
 * whose outcome is unknown may take effect at any point after its call, or never. */
#ifndef QFS_SIM_LINEARIZE_H
#define QFS_SIM_LINEARIZE_H

#include <stddef.h>
#include <stdint.h>

typedef enum lin_kind { LIN_PUT, LIN_GET, LIN_CAS } lin_kind_t;

typedef struct lin_op {
    uint32_t client;   /* for reports only */
    uint32_t key;
    lin_kind_t kind;
    uint64_t value;    /* PUT: value written; CAS: new value */
    uint64_t expect;   /* CAS: value it must find (0 = key absent) */
    uint64_t result;   /* GET: value read (0 = absent); CAS: 1 swapped, 0 did not; PUT: unused */
    int known;         /* 0 = outcome unknown (timed out, leader lost): result is ignored */
    uint64_t call;     /* invocation stamp */
    uint64_t ret;      /* response stamp, >= call; ignored when !known. Op a precedes op b
                        * in real time iff a.ret < b.call; equal stamps count as concurrent. */
} lin_op_t;

typedef struct lin_result {
    uint32_t bad_key;     /* when not linearizable: the first key found to fail */
    size_t key_ops;       /* ... the number of ops on that key */
    size_t best;          /* ... the most of them any search path linearized */
    uint64_t states;      /* search states memoised, over all keys checked */
} lin_result_t;

/* Checks ops[0..n) (any order; the array is not modified). max_states bounds the memo
 * entries of one key's search (0 = 4 million). Returns 1 if linearizable, 0 if not (res
 * says which key), -1 if memory or the state budget ran out (inconclusive). res may be NULL. */
int lin_check(const lin_op_t *ops, size_t n, uint64_t max_states, lin_result_t *res);

/* Writes a one-line description of op to buf (always NUL-terminated). */
void lin_format(const lin_op_t *op, char *buf, size_t len);

#endif
