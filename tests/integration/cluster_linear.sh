#!/usr/bin/env bash
# tests/integration/cluster_linear.sh — linearizability of cache/ and config/ under leader
# kills (issue 9). Three nodes from tools/cluster; histrec (tests/lin/histrec.c) runs 2
# client processes per mount doing random reads and writes of 3 cache/ keys and 3 config/
# keys, each op stamped on one monotonic clock; meanwhile the leader of a shard holding keys
# (tests/lin/shardof.c says which) is killed with kill -9 and restarted, twice. lincheck (tests/lin/lincheck.c, the simulator's WGL checker)
# then checks the history per key against a register: a write that failed (EIO, ENOTCONN)
# may take effect at any time after its invoke, or never. The checker's own verdicts on a
# stale read and on a legal history are checked first; too few successful operations fail
# the test. On failure the history and the node logs are kept under $TEST_LOGDIR.
# Every wait is bounded; lib_cluster.sh's trap takes the cluster down.
# Ports: $CLUSTER_BASE_PORT (3 from it) when set, else 3 free ones in lib_cluster.sh's range.
# KILL_ROUNDS (default 2): how many times the leader is killed and restarted.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"
BIN=$(dirname "$QUORUMFS")
HISTREC=$BIN/histrec
LINCHECK=$BIN/lincheck
SHARDOF=$BIN/shardof
ROUNDS=${KILL_ROUNDS:-2}
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || { echo "KILL_ROUNDS: 1 to 99" >&2; exit 2; }
KEEP=${TEST_LOGDIR:-$QI_ROOT/build/test-logs}/cluster_linear-$(date +%Y%m%d-%H%M%S)

for b in "$HISTREC" "$LINCHECK" "$SHARDOF"; do
    [ -x "$b" ] || { not_ok tools "$b missing (build it: make BUILD=$BIN, rules in mk/lin.mk)"; finish; }
done

# keep the history and the node logs for a failure report
keep() { keep_logs "$KEEP" "$T/hist"; }

# ---- the checker itself: a stale read is refused, a legal history with unknowns accepted
out=$("$LINCHECK" "$QI_ROOT/tests/lin/stale-read.hist" 2>&1); rc=$?
checke checker-rejects-stale-read '[ $rc = 1 ] && [[ $out == *"NOT linearizable: key cache/k"* ]] && [[ $out == *"culprit"*"read  cache/k -> 100"* ]]' ||
    note "$out"
out=$("$LINCHECK" "$QI_ROOT/tests/lin/good.hist" 2>&1); rc=$?
checke checker-accepts-legal-history '[ $rc = 0 ]' || note "$out"
out=$("$LINCHECK" --min-writes 5 "$QI_ROOT/tests/lin/good.hist" 2>&1); rc=$?
checke checker-wants-enough-ops '[ $rc = 3 ]' || note "$out"

# ---- three nodes
cluster_up 3 ${CLUSTER_BASE_PORT:+--port "$CLUSTER_BASE_PORT"}

completed() { local c; c=$(grep -c '^C .* ok ' "$T/hist" 2>/dev/null); echo "${c:-0}"; }
more_ok() { [ "$(completed)" -ge "$1" ]; }

mkdir "${M[1]}/config/lin" || { not_ok mkdir-config "mkdir config/lin failed"; finish; }
# the shards of the keys' units (cache/lk0..2 are three units, config/lin one): round r kills
# the leader of the shard of unit r (mod 4), so the keys' own leaders die
KEYS=(cache/lk0 cache/lk1 cache/lk2 config/lin/k0 config/lin/k1 config/lin/k2)
nshards=$(wc -l <"${M[1]}/.cluster/shards")
UNIT_SHARDS=($("$SHARDOF" "$nshards" cache/lk0 cache/lk1 cache/lk2 config/lin/k0))
checke key-shards '[ ${#UNIT_SHARDS[@]} = 4 ]' || finish
note "$nshards shards; the units cache/lk0, lk1, lk2 and config/lin are on shards ${UNIT_SHARDS[*]}"

# ---- record while the leader is killed and restarted twice
"$HISTREC" --out "$T/hist" --duration $((40 * ROUNDS)) --grace 20 --clients-per-mount 2 --read-pct 50 \
    --seed "$RANDOM" --mount "${M[1]}" --mount "${M[2]}" --mount "${M[3]}" \
    $(printf -- '--key %s ' "${KEYS[@]}") 2>"$T/histrec.err" &
rec=$!
wait_for 20 more_ok 300 && ok recording || not_ok recording "$(completed) ops completed ok after 20 s: $(cat "$T/histrec.err")"

mark() { "$HISTREC" --mark "$T/hist" "$1"; }
# round r kills the leader of shard UNIT_SHARDS[r - 1 mod 4]; the restart is marked before it
kill_leader_rounds "$ROUNDS" mark completed 300 before "${UNIT_SHARDS[@]}"; rounds_rc=$?
checke leader-killed-and-restarted-$ROUNDS-times '[ $rounds_rc = 0 ]'

# a last stretch after the second restart, then stop the clients
n0=$(completed)
sleep 2
wait_for 15 more_ok $((n0 + 400))
stop_recorder "$rec" histrec
[ -s "$T/histrec.err" ] && note "histrec: $(cat "$T/histrec.err")"

# the clients of the node restarted last (client c uses mount (c-1)%3+1) completed reads and
# writes after its restart: the restarted mount served, not only the survivors
served=$(awk -v n="$L" -v m="M restart$ROUNDS-" 'index($0, m) == 1 { on = 1; next } on && $1 == "C" && $4 == "ok" && ($2 - 1) % 3 + 1 == n { c++ } END { print c + 0 }' "$T/hist")
checke restarted-node-served-clients '[ "$served" -ge 50 ]' || note "only $served ops of node $L's clients completed after its restart"

# ---- the verdict
out=$(timeout 120 "$LINCHECK" --min-writes 300 --min-reads 300 --min-after-last-mark 200 --max-states 3000000 "$T/hist" 2>&1); rc=$?
while IFS= read -r l; do echo "$l"; done <<<"$out"
case $rc in
    0) ok linearizable; ok enough-operations ;;
    3) ok linearizable; not_ok enough-operations "too few successful operations (above)"; keep ;;
    1) not_ok linearizable "a history that no order explains (above)"; keep ;;
    *) not_ok linearizable "lincheck exit $rc (inconclusive or a malformed history)"; keep ;;
esac
# the cluster still serves on every node afterwards
echo "after" >"${M[1]}/cache/final" 2>/dev/null
checke all-nodes-serve-after '[ "$(cat "${M[2]}/cache/final" 2>/dev/null)" = after ] && [ "$(cat "${M[3]}/cache/final" 2>/dev/null)" = after ]'

finish
