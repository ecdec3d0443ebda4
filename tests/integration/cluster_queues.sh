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
# Every wait is bounded; lib.sh's trap unmounts and kills everything under $T.
# Ports: $CLUSTER_BASE_PORT (3 from it) when set, else 3 free ones picked at random.
# KILL_ROUNDS (default 2): how many times the leader is killed and restarted.
. "$(dirname "$0")/lib.sh"
CL="$QI_ROOT/tools/cluster"
C=$T/cluster
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

keep() {
    mkdir -p "$KEEP" && cp "$T/qlog" "$KEEP/" 2>/dev/null
    for i in 1 2 3; do cp "$C/n$i/log" "$KEEP/n$i.log" 2>/dev/null; done
    note "queue log and node logs kept in $KEEP"
}

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
base=${CLUSTER_BASE_PORT:-$(free_ports 3)}
[ -n "$base" ] || { not_ok free-ports "no 3 free ports"; finish; }
up_out=$(CLUSTER_WAIT_S=30 timeout 90 "$CL" up 3 --dir "$C" --base-port "$base" --bin "$QUORUMFS" 2>&1)
if [ $? -ne 0 ]; then not_ok cluster-up "$up_out"; finish; fi
ok cluster-up
M=("" "$C/n1/mnt" "$C/n2/mnt" "$C/n3/mnt")
Q=${M[1]}/queues/q

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

faults_ok=1
for round in $(seq 1 "$ROUNDS"); do
    L=$(leader_not 0 "$S")
    if [ -z "$L" ] || [ "$L" = 0 ]; then faults_ok=0; note "round $round: no leader of shard $S known"; break; fi
    "$QREC" --mark "$T/qlog" "kill$round-node$L"
    "$CL" kill "$L" --dir "$C" >/dev/null 2>&1 || { faults_ok=0; note "round $round: kill of node $L failed"; }
    t0=$(now_ms)
    NL=
    wait_for 20 leader_not "$L" "$S" >/dev/null && NL=$(leader_not "$L" "$S")
    note "round $round: killed node $L, leader of shard $S; new leader ${NL:-none} after $(( $(now_ms) - t0 )) ms"
    [ -n "$NL" ] || faults_ok=0
    n0=$(acks)
    sleep 3
    wait_for 10 more_acks $((n0 + 100))
    if ! start_out=$(CLUSTER_WAIT_S=30 timeout 60 "$CL" start "$L" --dir "$C" 2>&1); then
        faults_ok=0; note "round $round: restart of node $L failed: $start_out"
    fi
    "$QREC" --mark "$T/qlog" "restart$round-node$L"
    n0=$(acks)
    sleep 3
    wait_for 15 more_acks $((n0 + 100))
done
checke leader-killed-and-restarted-$ROUNDS-times '[ $faults_ok = 1 ]'

kill -TERM "$rec" 2>/dev/null
if wait_for 45 pid_gone "$rec"; then
    wait "$rec"; rc=$?
    checke recorder-exit '[ $rc = 0 ]' || note "$(cat "$T/qrec.err")"
else
    not_ok recorder-exit "qrec still running 45 s after SIGTERM"
    kill -9 "$rec" 2>/dev/null
fi
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

timeout 40 "$CL" down --dir "$C" >/dev/null 2>&1
finish
