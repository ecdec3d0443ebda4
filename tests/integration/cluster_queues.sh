#!/usr/bin/env bash
# tests/integration/cluster_queues.sh — a queue under leader kills (issue 9). Three nodes from
# tools/cluster; qrec (tests/lin/qrec.c) runs 8 producers (unique payloads; a push counts as
# acknowledged when open, write and close returned 0), 8 consumers (claim, then rm
# claimed/<id>) and 2 poppers spread over the three mounts, while the leader of the queue's
# shard (tests/lin/shardof.c says which) is killed with kill -9 and restarted, twice. Then
# the queue is drained with pops from every mount once no claim is in flight, and qcheck.py
# checks the log: every acknowledged push was delivered (a pop whose node died while it read
# may excuse one: pop is at most once across a crash), no message
# acknowledged twice, popped twice or both, nothing delivered after its acknowledgement,
# no payload in the queue twice (a push applied twice), nothing delivered that no one pushed.
# Errors during the kills are allowed and counted (a push that failed has an unknown outcome).
# On failure the log and the node logs are kept under $TEST_LOGDIR.
# Every wait is bounded; lib_cluster.sh's trap takes the cluster down.
# Ports: $CLUSTER_BASE_PORT (3 from it) when set, else 3 free ones in lib_cluster.sh's range.
# KILL_ROUNDS (default 2): how many times the leader is killed and restarted.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"
BIN=$(dirname "$QUORUMFS")
QREC=$BIN/qrec
SHARDOF=$BIN/shardof
QCHECK="$PY $QI_ROOT/tests/lin/qcheck.py"
ROUNDS=${KILL_ROUNDS:-2}
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || { echo "KILL_ROUNDS: 1 to 99" >&2; exit 2; }
KEEP=${TEST_LOGDIR:-$QI_ROOT/build/test-logs}/cluster_queues-$(date +%Y%m%d-%H%M%S)

for b in "$QREC" "$SHARDOF"; do
    [ -x "$b" ] || { not_ok tools "$b missing (build it: make BUILD=$BIN, rules in mk/lin.mk)"; finish; }
done

keep() { keep_logs "$KEEP" "$T/qlog"; }

# ---- the checker itself, on hand-made logs: a clean one passes, each fault is caught
# ql LINES...: qcheck.py on a log of these lines; its exit status, its output in $out
ql() { printf '%s\n' "$@" >"$T/ql"; out=$($QCHECK "$T/ql" 2>&1); }
good=("I 1 1 push m1-1 10" "C 1 1 ok - 20" "I 1 2 push m1-2 30" "C 1 2 err EIO@close 40"
      "I 2 1 claim - 50" "C 2 1 ok 7:m1-1 60" "I 2 2 ack 7:m1-1 70" "C 2 2 ok - 80")
checke checker-accepts-clean-log 'ql "${good[@]}"' || note "$out"
checke checker-finds-lost-push 'ql "${good[@]:0:4}"; [ $? = 1 ] && [[ $out == *"never delivered"*m1-1* ]]' || note "$out"
checke checker-excuses-loss-to-pop-of-dead-node 'ql "${good[@]:0:4}" "I 4 1 pop - 30" "C 4 1 err ECONNABORTED@read 40"' || note "$out"
checke checker-no-excuse-for-pop-failed-at-open 'ql "${good[@]:0:4}" "I 4 1 pop - 30" "C 4 1 err ENOTCONN@open 40"; [ $? = 1 ]' || note "$out"
checke checker-no-excuse-for-pop-failed-on-live-node 'ql "${good[@]:0:4}" "I 4 1 pop - 30" "C 4 1 err EIO@read 40"; [ $? = 1 ]' || note "$out"
checke checker-finds-double-ack 'ql "${good[@]}" "I 3 1 claim - 90" "C 3 1 ok 7:m1-1 95" "I 3 2 ack 7:m1-1 96" "C 3 2 ok - 97"; [ $? = 1 ] && [[ $out == *"acknowledged 2 times"* ]]' || note "$out"
checke checker-finds-double-pop 'ql "${good[@]}" "I 4 1 pop - 90" "C 4 1 ok m1-2 91" "I 5 1 pop - 92" "C 5 1 ok m1-2 93"; [ $? = 1 ] && [[ $out == *"popped 2 times"* ]]' || note "$out"
checke checker-finds-duplicate-push 'ql "${good[@]}" "I 4 1 claim - 90" "C 4 1 ok 9:m1-2 91" "I 5 1 claim - 92" "C 5 1 ok 8:m1-2 93"; [ $? = 1 ] && [[ $out == *"push applied twice"* ]]' || note "$out"

# ---- three nodes
cluster_up 3 ${CLUSTER_BASE_PORT:+--port "$CLUSTER_BASE_PORT"}
Q=${M[1]}/queues/q

# the queue's shard: each round kills its leader
nshards=$(wc -l <"${M[1]}/.cluster/shards")
S=$("$SHARDOF" "$nshards" queues/q)
checke queue-shard '[ -n "$S" ]' || finish
note "$nshards shards; queues/q is on shard $S"
acks() { local c; c=$(grep -c '^I [0-9]* [0-9]* ack ' "$T/qlog" 2>/dev/null); echo "${c:-0}"; }
more_acks() { [ "$(acks)" -ge "$1" ]; }

# short leases, so that claims of a killed consumer's node or of a stalled ack come back
# during the test; no dead-lettering
if mkdir "$Q" && setfattr -n user.visibility_timeout -v 5 "$Q" && setfattr -n user.max_deliveries -v 1000 "$Q"; then
    ok queue-made
else
    not_ok queue-made "mkdir or setfattr on $Q failed"; finish
fi

# ---- producers, consumers and poppers while the leader is killed and restarted twice
"$QREC" --out "$T/qlog" --queue q --producers 8 --consumers 8 --poppers 2 --think-ms 10 \
    --duration $((40 * ROUNDS)) --grace 20 --seed "$RANDOM" \
    --mount "${M[1]}" --mount "${M[2]}" --mount "${M[3]}" 2>"$T/qrec.err" &
rec=$!
wait_for 20 more_acks 100 && ok traffic || not_ok traffic "$(acks) acks after 20 s: $(cat "$T/qrec.err")"

mark() { "$QREC" --mark "$T/qlog" "$1"; }
# every round kills the queue's shard's leader; the restart is marked once the node is back
kill_leader_rounds "$ROUNDS" mark acks 100 after "$S"; rounds_rc=$?
checke leader-killed-and-restarted-$ROUNDS-times '[ $rounds_rc = 0 ]'

stop_recorder "$rec" qrec
[ -s "$T/qrec.err" ] && note "qrec: $(cat "$T/qrec.err")"

# ---- drain: once every claim is back or acknowledged (leases of 5 s; the killed nodes'
# sessions ended at their restart), pop everything from all three mounts
qlen() { timeout 10 cat "$Q/len" 2>/dev/null; }
no_inflight() { set -- $(qlen); [ "${2:-x}" = 0 ]; }
wait_for 40 no_inflight && ok claims-settled || not_ok claims-settled "len still '$(qlen)' 40 s after the load stopped"
note "before the drain: len (ready inflight dead) = $(qlen)"
"$QREC" --drain "$T/qlog" --queue q --duration 60 --mount "${M[1]}" --mount "${M[2]}" --mount "${M[3]}" 2>>"$T/qrec.err"
checke drained '[ "$(qlen)" = "0 0 0" ]' || note "len after the drain: $(qlen)"

# ---- the verdict
out=$(timeout 120 $QCHECK --min-pushes 300 --min-acks 200 --min-after-last-mark 100 "$T/qlog" 2>&1); rc=$?
while IFS= read -r l; do echo "$l"; done <<<"$out"
case $rc in
    0) ok queue-guarantees; ok enough-operations ;;
    3) ok queue-guarantees; not_ok enough-operations "too few successful operations (above)"; keep ;;
    1) not_ok queue-guarantees "see the FAIL lines above"; keep ;;
    *) not_ok queue-guarantees "qcheck exit $rc (malformed log?)"; keep ;;
esac

finish
