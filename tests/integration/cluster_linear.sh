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
# Every wait is bounded; lib.sh's trap unmounts and kills everything under $T.
# Ports: $CLUSTER_BASE_PORT (3 from it) when set, else 3 free ones picked at random.
# KILL_ROUNDS (default 2): how many times the leader is killed and restarted.
. "$(dirname "$0")/lib.sh"
CL="$QI_ROOT/tools/cluster"
C=$T/cluster
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

# keep HISTORY and the node logs for a failure report
keep() {
    mkdir -p "$KEEP" && cp "$T/hist" "$KEEP/" 2>/dev/null
    for i in 1 2 3; do cp "$C/n$i/log" "$KEEP/n$i.log" 2>/dev/null; done
    note "history and node logs kept in $KEEP"
}

# ---- the checker itself: a stale read is refused, a legal history with unknowns accepted
out=$("$LINCHECK" "$QI_ROOT/tests/lin/stale-read.hist" 2>&1); rc=$?
checke checker-rejects-stale-read '[ $rc = 1 ] && [[ $out == *"NOT linearizable: key cache/k"* ]] && [[ $out == *"culprit"*"read  cache/k -> 100"* ]]' ||
    note "$out"
out=$("$LINCHECK" "$QI_ROOT/tests/lin/good.hist" 2>&1); rc=$?
checke checker-accepts-legal-history '[ $rc = 0 ]' || note "$out"
out=$("$LINCHECK" --min-writes 5 "$QI_ROOT/tests/lin/good.hist" 2>&1); rc=$?
checke checker-wants-enough-ops '[ $rc = 3 ]' || note "$out"

# ---- three nodes
base=${CLUSTER_BASE_PORT:-$(free_ports 3)}
[ -n "$base" ] || { not_ok free-ports "no 3 free ports"; finish; }
up_out=$(CLUSTER_WAIT_S=30 timeout 90 "$CL" up 3 --dir "$C" --base-port "$base" --bin "$QUORUMFS" 2>&1)
if [ $? -ne 0 ]; then not_ok cluster-up "$up_out"; finish; fi
ok cluster-up
M=("" "$C/n1/mnt" "$C/n2/mnt" "$C/n3/mnt")

# leader MNT SHARD: the shard's leader as that node sees it (.cluster/shards: "shard leader
# replicas term commit applied"; 0 or empty: none known)
leader() { timeout 5 awk -v s="$2" '$1 == s {print $2}' "$1/.cluster/shards" 2>/dev/null; }
# leader_not L SHARD: the shard's leader as a live node other than L sees it, if not L
leader_not() {
    local i l
    for i in 1 2 3; do
        [ "$i" = "$1" ] && continue
        l=$(leader "${M[$i]}" "$2")
        [ -n "$l" ] && [ "$l" != 0 ] && [ "$l" != "$1" ] && { echo "$l"; return 0; }
    done
    return 1
}
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

faults_ok=1
for round in $(seq 1 "$ROUNDS"); do
    S=${UNIT_SHARDS[$(( (round - 1) % 4 ))]}
    L=$(leader_not 0 "$S")
    if [ -z "$L" ] || [ "$L" = 0 ]; then faults_ok=0; note "round $round: no leader of shard $S known"; break; fi
    "$HISTREC" --mark "$T/hist" "kill$round-node$L"
    "$CL" kill "$L" --dir "$C" >/dev/null 2>&1 || { faults_ok=0; note "round $round: kill of node $L failed"; }
    t0=$(now_ms)
    NL=
    wait_for 20 leader_not "$L" "$S" >/dev/null && NL=$(leader_not "$L" "$S")
    note "round $round: killed node $L, leader of shard $S; new leader ${NL:-none} after $(( $(now_ms) - t0 )) ms"
    [ -n "$NL" ] || faults_ok=0
    # load on the survivors for a while, then the node comes back
    n0=$(completed)
    sleep 3
    wait_for 10 more_ok $((n0 + 300))
    "$HISTREC" --mark "$T/hist" "restart$round-node$L"
    if ! start_out=$(CLUSTER_WAIT_S=30 timeout 60 "$CL" start "$L" --dir "$C" 2>&1); then
        faults_ok=0; note "round $round: restart of node $L failed: $start_out"
    fi
    n0=$(completed)
    sleep 3
    wait_for 15 more_ok $((n0 + 300))
done
checke leader-killed-and-restarted-$ROUNDS-times '[ $faults_ok = 1 ]'

# a last stretch after the second restart, then stop the clients
n0=$(completed)
sleep 2
wait_for 15 more_ok $((n0 + 400))
kill -TERM "$rec" 2>/dev/null
if wait_for 45 pid_gone "$rec"; then
    wait "$rec"; rc=$?
    checke recorder-exit '[ $rc = 0 ]' || note "$(cat "$T/histrec.err")"
else
    not_ok recorder-exit "histrec still running 45 s after SIGTERM"
    kill -9 "$rec" 2>/dev/null
fi
[ -s "$T/histrec.err" ] && note "histrec: $(cat "$T/histrec.err")"

# the clients of the node restarted last (client c uses mount (c-1)%3+1) completed reads and
# writes after its restart: the restarted mount served, not only the survivors
served=$(awk -v n="$L" -v m="M restart$ROUNDS-" 'index($0, m) == 1 { on = 1; next } on && $1 == "C" && $4 == "ok" && ($2 - 1) % 3 + 1 == n { c++ } END { print c + 0 }' "$T/hist")
checke restarted-node-served-clients '[ "$served" -ge 50 ]' || note "only $served ops of node $L's clients completed after its restart"

# ---- the verdict
out=$(timeout 120 "$LINCHECK" --min-writes 300 --min-reads 300 --min-after-last-mark 200 "$T/hist" 2>&1); rc=$?
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

timeout 40 "$CL" down --dir "$C" >/dev/null 2>&1
finish
