#!/usr/bin/env bash
# tests/integration/membership.sh — membership changes under load (issue 10): a 3-node
# cluster with 16 shards grows to 5 (quorumfs cluster add, then the new node started with
# the command it printed, through tools/cluster add) and shrinks back to 3 (quorumfs cluster
# remove of an original node and of a new one) while 16 clients (8 per mount on the two
# nodes that stay, half of their operations reads) read and write 3 cache/ and 3 config/ keys
# through the mounts; histrec records the history and lincheck (the simulator's checker)
# checks it is linearizable, so nothing acknowledged is lost. At 5 nodes every node holds
# 9 or 10 of the 48 voter replicas and leads 3 or 4 shards; a new node serves data written
# before it joined; removed nodes are refused by the others. Every wait is bounded;
# lib_cluster.sh's trap takes the cluster down.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"
BIN=$(dirname "$QUORUMFS")
HISTREC=$BIN/histrec
LINCHECK=$BIN/lincheck
KEEP=${TEST_LOGDIR:-$QI_ROOT/build/test-logs}/membership-$(date +%Y%m%d-%H%M%S)
for b in "$HISTREC" "$LINCHECK"; do
    [ -x "$b" ] || { not_ok tools "$b missing (build it: make BUILD=$BIN, rules in mk/lin.mk)"; finish; }
done
keep() { keep_logs "$KEEP" "$T/hist"; }

CLUSTER_SPARE=2 cluster_up 3 --node-args "--shards 16"

# plan FIELD...: the rebalance plan as node $1 sees it
plan() { timeout 20 "$QUORUMFS" cluster rebalance --dry-run --cluster "${A[$1]}" 2>&1; }
# settled N ASKED: the plan asked of node ASKED lists N members, all active, nothing to move,
# and every member leading the shards the layout gives it (the balancer moved the leaders)
settled() {
    local p; p=$(plan "$2")
    [[ $p == *"0 changes to make"* ]] &&
        [ "$(grep -c ' active: voter of' <<<"$p")" = "$1" ] &&
        ! grep -q -E ' (joining|leaving):' <<<"$p" &&
        awk '$3 == "voter" && $9 != $11 { bad = 1 } END { exit bad }' <<<"$p"
}
# counts_within ASKED VMIN VMAX LMIN LMAX: every member's voter count and leader count now
# (the plan's "voter of V -> ..., leads L -> ..." lines) within the bounds
counts_within() {
    plan "$1" | awk -v a="$2" -v b="$3" -v c="$4" -v d="$5" '
        $3 == "voter" { n++; v = $5; l = $9; if (v < a || v > b || l < c || l > d) bad = 1 }
        END { exit (n == 0 || bad) }'
}

completed() { local c; c=$(grep -c '^C .* ok ' "$T/hist" 2>/dev/null); echo "${c:-0}"; }
more_ok() { [ "$(completed)" -ge "$1" ]; }

mkdir "${M[2]}/config/lin" || { not_ok mkdir-config "mkdir config/lin failed"; finish; }
for i in $(seq 1 40); do echo "before-$i" >"${M[1]}/cache/pre$i" || break; done
checke data-before '[ "$(cat "${M[3]}/cache/pre40" 2>/dev/null)" = before-40 ]'

KEYS=(cache/mk0 cache/mk1 cache/mk2 config/lin/k0 config/lin/k1 config/lin/k2)
"$HISTREC" --out "$T/hist" --duration 240 --grace 20 --clients-per-mount 8 --read-pct 50 --think-ms 3 \
    --seed "$RANDOM" --mount "${M[2]}" --mount "${M[3]}" \
    $(printf -- '--key %s ' "${KEYS[@]}") 2>"$T/histrec.err" &
rec=$!
wait_for 20 more_ok 300 && ok recording || not_ok recording "$(completed) ops completed after 20 s: $(cat "$T/histrec.err")"

# ---- 3 -> 5
for n in 4 5; do
    out=$(timeout 90 "$CL" add "$n" --dir "$C" 2>&1); rc=$?
    checke "add-node-$n" '[ $rc = 0 ]' || note "$out"
    M[$n]=$C/n$n/mnt
    A[$n]=127.0.0.1:$((BASE + n - 1))
done
NODES=5
wait_for 90 settled 5 1 && ok grown-to-5-settled || { not_ok grown-to-5-settled "$(plan 1)"; keep; }
counts_within 1 9 10 3 4 && ok five-balanced || { not_ok five-balanced "$(plan 1)"; keep; }
note "$(plan 1 | tail -6 | tr '\n' ';')"
checke new-node-reads-old-data '[ "$(cat "${M[4]}/cache/pre7" 2>/dev/null)" = before-7 ] && [ "$(cat "${M[5]}/cache/pre33" 2>/dev/null)" = before-33 ]'
echo "on-5" >"${M[5]}/cache/from5" 2>/dev/null
checke new-node-writes '[ "$(cat "${M[1]}/cache/from5" 2>/dev/null)" = on-5 ]'
wait_for 20 more_ok $(( $(completed) + 200 )) && ok served-while-growing || not_ok served-while-growing "$(completed) ops"

# ---- a member added but never started stays joining (no voter seat, no leadership), and
# can be removed
IDLE_PORT=$(cluster_ports 1)
out=$(timeout 30 "$QUORUMFS" cluster add "7=127.0.0.1:$IDLE_PORT" --cluster "${A[2]}" 2>&1)
checke add-never-started '[[ $out == *"--join"* ]]' || note "$out"
# once every group has it (as a learner) it is still joining, with no voter seat
wait_for 30 sh -c "! '$QUORUMFS' cluster rebalance --dry-run --cluster '${A[2]}' 2>&1 | grep -q 'add 7 as learner'" &&
    sleep 2 && plan 2 | grep -q "^7 joining: voter of 0 -> 0, leads 0 -> 0" &&
    ok never-started-stays-joining || not_ok never-started-stays-joining "$(plan 2)"
out=$(timeout 60 "$QUORUMFS" cluster remove 7 --cluster "${A[2]}" 2>&1)
checke remove-never-started '[[ $out == *"has left"* ]]' || note "$out"

# ---- a new node started with another --replicas than the cluster's stops with an error
out=$(timeout 30 "$QUORUMFS" cluster add "8=127.0.0.1:$IDLE_PORT" --cluster "${A[2]}" 2>&1)
join=$(sed -n 's/.*--join \([0-9a-f]*\).*/\1/p' <<<"$out" | head -1)
mkdir -p "$T/n8/mnt" "$T/n8/data"
"$QUORUMFS" mount "$T/n8/mnt" --foreground --data "$T/n8/data" --id 8 --listen "127.0.0.1:$IDLE_PORT" \
    --peers "$(grep '^PEERS=' "$C/cluster.env" | cut -d= -f2-),8=127.0.0.1:$IDLE_PORT" \
    --join "$join" --shards 16 --replicas 2 >"$T/n8.log" 2>&1 &
n8=$!
if wait_for 60 pid_gone "$n8"; then
    wait "$n8"; rc=$?
    # a clean stop: exit 0, the mount gone by itself (not killed by the signal's default)
    checke wrong-replicas-stops '[ $rc = 0 ] && ! mountpoint -q "$T/n8/mnt"' || note "exit $rc"
else
    not_ok wrong-replicas-stops "still running"; kill -9 "$n8"
fi
checke wrong-replicas-says-why 'grep -q "the cluster with --shards 16 --replicas 3" "$T/n8.log"' ||
    note "$(tail -5 "$T/n8.log")"
fusermount3 -uz "$T/n8/mnt" 2>/dev/null
out=$(timeout 60 "$QUORUMFS" cluster remove 8 --cluster "${A[2]}" 2>&1)
checke remove-stopped-joiner '[[ $out == *"has left"* ]]' || note "$out"

# ---- 5 -> 3: three removes at once (asked of three nodes), of an original node and two new
# ones: the record takes them in log order and refuses the one that would leave fewer active
# members than replicas; the two others leave
# (asked of node 2, which stays: a node being removed stops learning the record)
declare -A RM_RC
for n in 1 4 5; do
    ( timeout 120 "$QUORUMFS" cluster remove "$n" --cluster "${A[2]}" --timeout-ms 90000 \
          >"$T/rm$n.out" 2>&1; echo $? >"$T/rm$n.rc" ) &
done
wait_for 150 sh -c "[ -s '$T/rm1.rc' ] && [ -s '$T/rm4.rc' ] && [ -s '$T/rm5.rc' ]"
gone=() kept=()
for n in 1 4 5; do
    RM_RC[$n]=$(cat "$T/rm$n.rc" 2>/dev/null)
    if [ "${RM_RC[$n]}" = 0 ]; then gone+=("$n"); else kept+=("$n"); fi
done
checke two-of-three-removes '[ ${#gone[@]} = 2 ] && [ ${#kept[@]} = 1 ] && grep -q "refused" "$T/rm${kept[0]}.out"' ||
    note "rc: 1=${RM_RC[1]} 4=${RM_RC[4]} 5=${RM_RC[5]}; $(cat "$T"/rm*.out | tr '\n' ' ')"
K=${kept[0]:-5}
for n in "${gone[@]}"; do cl kill "$n" >/dev/null 2>&1; done
wait_for 60 settled 3 2 && ok shrunk-to-3-settled || { not_ok shrunk-to-3-settled "$(plan 2)"; keep; }
counts_within 2 16 16 5 6 && ok three-balanced || { not_ok three-balanced "$(plan 2)"; keep; }
checke removed-not-listed '! grep -q -E "^(${gone[0]:-x}|${gone[1]:-x}) " "${M[3]}/.cluster/members"'
checke old-data-after '[ "$(cat "${M[$K]}/cache/pre12" 2>/dev/null)" = before-12 ] && [ "$(cat "${M[3]}/cache/from5" 2>/dev/null)" = on-5 ]'
wait_for 20 more_ok $(( $(completed) + 200 )) && ok served-while-shrinking || not_ok served-while-shrinking "$(completed) ops"

# ---- the verdict on the history
stop_recorder "$rec" histrec
# (a 240 s history of 16 clients may need more than the default 300,000 search states:
#  1.2 M took 13 s and 460 MB here)
out=$(timeout 120 "$LINCHECK" --min-writes 300 --min-reads 300 --max-states 3000000 "$T/hist" 2>&1); rc=$?
while IFS= read -r l; do echo "# $l"; done <<<"$out"
case $rc in
    0) ok linearizable ;;
    3) not_ok linearizable "too few successful operations (above)"; keep ;;
    1) not_ok linearizable "a history that no order explains (above)"; keep ;;
    *) not_ok linearizable "lincheck exit $rc"; keep ;;
esac
failed=$(grep -c '^C .* fail ' "$T/hist" 2>/dev/null)
note "operations: $(completed) ok, ${failed:-0} failed (EIO/ENOTCONN while members moved)"
finish
