#!/usr/bin/env bash
# tests/integration/drain.sh — `quorumfs cluster drain|undrain ID` (docs/OPERATIONS.md
# "Draining a node", issue 10 item 4) on 3 nodes with 16 shards (tools/cluster): while
# writers and readers run through all three mounts, draining the node that leads the most
# shards moves every leadership away (the CLI returns once it leads none; bounded here by
# 10 s, the issue asks 5), every node's .cluster/members marks it drained, and no client
# operation fails; undrain lets it lead again. Bad input: an unknown member, a bad id, no
# --cluster, draining the last voter of a shard. Every wait bounded; lib_cluster.sh's trap
# takes the cluster down.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_cluster.sh"
FSBENCH=${FSBENCH:-$(dirname "$QUORUMFS")/fsbench}
[ -x "$FSBENCH" ] || { not_ok fsbench-built "no $FSBENCH (make all)"; finish; }
cluster_up 3
# leads I [M]: how many shards node I leads, as node M's .cluster/members says
leads() { awk -v id="$1" '$1 == id { for (i = 1; i < NF; i++) if ($i == "leads") n = $(i + 1) } END { print n + 0 }' \
    "${M[${2:-1}]}/.cluster/members" 2>/dev/null; }
drained_on() { grep -q "^$1 .* drained" "${M[$2]}/.cluster/members" 2>/dev/null; }

# the node leading the most shards (leaders settle on their preferred nodes after up)
best=1
for i in 2 3; do [ "$(leads $i)" -gt "$(leads $best)" ] && best=$i; done
note "node $best leads $(leads $best) of 16 shards; members: $(tr '\n' ';' <"${M[1]}/.cluster/members")"
checke drained-node-leads-some '[ "$(leads $best)" -gt 0 ]'

# load through every mount for the whole drain: writers on two nodes, readers on the third
mkdir -p "${M[1]}/cache/dr"
"$FSBENCH" --dir "${M[1]}/cache/dr" --mode set --procs 2 --ops 100 --keys 100 >/dev/null 2>&1
for i in 1 2 3; do
    mode=set; [ $i = 3 ] && mode=get
    timeout 60 "$FSBENCH" --dir "${M[$i]}/cache/dr" --mode $mode --procs 3 --seconds 14 --ops 100000000 --keys 100 \
        --max-errors 1000 >"$T/load$i" 2>&1 &
done
sleep 2

t0=$(now_ms)
out=$(timeout 60 "$QUORUMFS" cluster drain "$best" --cluster "${A[1]}" --timeout-ms 10000 2>&1); rc=$?
dt=$(( $(now_ms) - t0 ))
checke drain-returns-0 '[ $rc = 0 ]' || note "rc $rc: $out"
note "drain of node $best took $dt ms: $(tr '\n' ' ' <<<"$out")"
checke drained-leads-nothing '[ "$(leads $best)" = 0 ]' || note "node $best still leads $(leads $best)"
for i in 1 2 3; do
    wait_for 5 drained_on "$best" "$i" && ok "members-of-node-$i-say-drained" ||
        not_ok "members-of-node-$i-say-drained" "$(cat "${M[$i]}/.cluster/members")"
done
# it stays drained: no leadership comes back while the load runs on
sleep 4
checke still-leads-nothing '[ "$(leads $best)" = 0 ]' || note "node $best leads $(leads $best) again"
wait
for i in 1 2 3; do
    checke "no-operation-failed-$i" 'grep -qw "errors=0" "$T/load$i"' || note "$(cat "$T/load$i")"
done

out=$(timeout 60 "$QUORUMFS" cluster undrain "$best" --cluster "${A[2]}" 2>&1); rc=$?
checke undrain-returns-0 '[ $rc = 0 ]' || note "rc $rc: $out"
wait_for 30 sh -c "[ \"\$(awk -v id=$best '\$1 == id { for (i = 1; i < NF; i++) if (\$i == \"leads\") n = \$(i + 1) } END { print n + 0 }' '${M[1]}/.cluster/members')\" -gt 0 ]" &&
    ok undrained-leads-again || not_ok undrained-leads-again "$(cat "${M[1]}/.cluster/members")"
checke undrained-not-marked '! drained_on "$best" 1'

# draining every voter of a shard is refused (someone must lead); the others are kept
o2=
o1=$("$QUORUMFS" cluster drain 1 --no-wait --cluster "${A[3]}" 2>&1) && o2=$("$QUORUMFS" cluster drain 2 --no-wait --cluster "${A[3]}" 2>&1)
rc=$?
checke drain-two-of-three '[ $rc = 0 ]' || note "$o1 / $o2"
out=$("$QUORUMFS" cluster drain 3 --cluster "${A[3]}" 2>&1); rc=$?
checke drain-last-voter-refused '[ $rc = 1 ] && [[ $out == *"no voter left"* ]]' || note "rc $rc: $out"
"$QUORUMFS" cluster undrain 1 --cluster "${A[3]}" >/dev/null 2>&1 && "$QUORUMFS" cluster undrain 2 --cluster "${A[3]}" >/dev/null 2>&1 ||
    not_ok undrain-both "undrain failed"
wait_for 10 sh -c "! grep -q drained '${M[3]}/.cluster/members'" && ok none-drained || not_ok none-drained "$(cat "${M[3]}/.cluster/members")"

# bad input: clear errors, exit 1 for a refusal by the cluster, 2 for a bad command line
out=$("$QUORUMFS" cluster drain 99 --cluster "${A[1]}" 2>&1); rc=$?
checke drain-unknown-member '[ $rc = 1 ] && [[ $out == *"not a member"* ]]' || note "rc $rc: $out"
out=$("$QUORUMFS" cluster drain x1 --cluster "${A[1]}" 2>&1); rc=$?
checke drain-bad-id '[ $rc = 2 ] && [[ $out == *"not a node id"* ]]' || note "rc $rc: $out"
out=$("$QUORUMFS" cluster drain 1 2>&1); rc=$?
checke drain-needs-cluster '[ $rc = 2 ] && [[ $out == *"needs --cluster"* ]]' || note "rc $rc: $out"
# membership changes refused before anything is written (tests/integration/membership.sh
# runs the real ones)
out=$("$QUORUMFS" cluster add 4 --cluster "${A[1]}" 2>&1); rc=$?
checke add-needs-address '[ $rc = 2 ] && [[ $out == *"not ID=HOST:PORT"* ]]' || note "rc $rc: $out"
out=$("$QUORUMFS" cluster add 2=127.0.0.1:1 --cluster "${A[1]}" 2>&1); rc=$?
checke add-existing-member '[ $rc = 1 ] && [[ $out == *"member already"* ]]' || note "rc $rc: $out"
out=$("$QUORUMFS" cluster add 7=no-port --cluster "${A[1]}" 2>&1); rc=$?
checke add-bad-address '[ $rc = 1 ] && [[ $out == *"not HOST:PORT"* ]]' || note "rc $rc: $out"
out=$("$QUORUMFS" cluster remove 99 --cluster "${A[1]}" 2>&1); rc=$?
checke remove-unknown-member '[ $rc = 1 ] && [[ $out == *"not a member"* ]]' || note "rc $rc: $out"
out=$("$QUORUMFS" cluster remove 3 --cluster "${A[1]}" 2>&1); rc=$?
checke remove-below-replicas '[ $rc = 1 ] && [[ $out == *"refused"* ]]' || note "rc $rc: $out"
grep -q leaving "${M[1]}/.cluster/members" && not_ok nothing-leaving "$(cat "${M[1]}/.cluster/members")" || ok nothing-leaving

"$CL" down --dir "$C" >/dev/null 2>&1
finish
